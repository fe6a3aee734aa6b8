"""Every registered name resolves; regularisers and non-image kinds are refused by the image trainer."""

from __future__ import annotations

import pytest
import torch

from contrastkit.losses import get_loss, loss_info, loss_names
from contrastkit.train import FitConfig


def test_every_name_has_a_summary_and_kind() -> None:
    names = loss_names()
    assert len(names) >= 30
    for name in names:
        info = loss_info(name)
        assert info.summary and info.input_kind


@pytest.mark.parametrize("name", ["alignment", "uniformity", "koleo", "joint_entropy"])
def test_regularisers_are_registered_and_not_trainable_alone(name: str) -> None:
    assert loss_info(name).input_kind == "regularizer"
    with pytest.raises(ValueError, match="'regularizer' inputs"):
        FitConfig(loss=name)


def test_regulariser_values() -> None:
    torch.manual_seed(0)
    views = torch.randn(8, 2, 4)
    same = views[:, :1].expand(8, 2, 4)
    assert float(get_loss("alignment")(same)) == pytest.approx(0.0, abs=1e-6)
    assert float(get_loss("alignment")(views)) > 0
    assert torch.isfinite(get_loss("koleo")(views[:, 0]))


def test_pair_losses_are_refused_by_the_image_trainer() -> None:
    with pytest.raises(ValueError, match="'pair' inputs"):
        FitConfig(loss="clip")
