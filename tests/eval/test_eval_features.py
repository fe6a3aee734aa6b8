"""Tests of contrastkit.eval.features.extract_features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from contrastkit.eval import extract_features


class _TwoHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.BatchNorm1d(5))
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, self.head(h)


def test_matches_one_full_batch_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = _TwoHead()
    model.train()
    model(torch.randn(16, 3, 4))  # update the batch-norm running stats
    images = torch.randn(37, 3, 4, dtype=torch.float32)
    feats = extract_features(model, images, batch_size=8)
    model.eval()
    with torch.no_grad():
        expected = model(images)[0]
    assert feats.shape == (37, 5)
    assert feats.dtype == torch.float32
    assert feats.device.type == "cpu"
    assert not feats.requires_grad
    torch.testing.assert_close(feats, expected)


def test_restores_each_submodule_mode() -> None:
    model = _TwoHead()
    model.train()
    model.body[2].eval()  # a frozen batch-norm inside a training model
    extract_features(model, torch.randn(4, 3, 4))
    assert model.training and model.head.training
    assert not model.body[2].training
    model.eval()
    extract_features(model, torch.randn(4, 3, 4))
    assert not model.training


def test_restores_mode_when_encoder_raises() -> None:
    model = nn.Linear(4, 2)
    model.train()
    with pytest.raises(RuntimeError):
        extract_features(model, torch.randn(3, 5))
    assert model.training


def test_numpy_input_and_flattening() -> None:
    model = nn.Conv2d(1, 2, kernel_size=1)
    images = np.random.default_rng(0).normal(size=(5, 1, 3, 3)).astype(np.float32)
    feats = extract_features(model, images, batch_size=2)
    assert feats.shape == (5, 18)


@pytest.mark.parametrize(
    ("images", "kwargs", "error"),
    [
        (torch.empty(0, 4), {}, ValueError),
        (torch.full((2, 4), float("nan")), {}, ValueError),
        (torch.randn(2, 4), {"batch_size": 0}, ValueError),
        ([[1.0, 2.0]], {}, TypeError),
    ],
)
def test_bad_input(images: object, kwargs: dict[str, int], error: type[Exception]) -> None:
    with pytest.raises(error):
        extract_features(nn.Linear(4, 2), images, **kwargs)  # type: ignore[arg-type]


def test_rejects_non_module() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        extract_features(lambda x: x, torch.randn(2, 2))  # type: ignore[arg-type]
