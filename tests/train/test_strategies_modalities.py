"""Series and tabular contrastive recipes against the raw-input and random-init baselines."""

from __future__ import annotations

import pytest
import torch

from contrastkit.data.series import SeriesSplit
from contrastkit.train.strategies.modalities import fit_modality
from contrastkit.views import SeriesAugment


def _series(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(2).repeat(n // 2)
    t = torch.linspace(0, 6.28, 32)
    x = torch.where(y[:, None] == 0, torch.sin(t), torch.sign(torch.sin(t)))[:, None, :]
    return x + 0.1 * torch.randn(n, 1, 32, generator=g), y


def test_series_recipe_reports_baselines_and_is_seeded() -> None:
    (xtr, ytr), (xte, yte) = _series(24, 0), _series(16, 1)
    split = SeriesSplit(xtr, ytr, xte, yte, "toy", 2)
    kw = {"epochs": 2, "batch_size": 8, "width": 8, "series_augment": SeriesAugment(permute_p=0)}
    res = fit_modality(split, **kw)  # type: ignore[arg-type]
    m = res.metrics
    assert m["kind"] == "series" and m["feature_dim"] == 4 and m["train_size"] == 24
    for key in ("linear_acc", "knn_acc", "raw_linear_acc", "random_init_linear_acc"):
        assert 0.0 <= m[key] <= 1.0
    assert m["raw_linear_acc"] == 1.0  # sine vs square wave: linearly separable raw
    assert len(res.history) == 2
    again = fit_modality(split, **kw)  # type: ignore[arg-type]
    assert again.metrics["final_loss"] == m["final_loss"]


def test_tabular_recipe_uses_scarf_and_small_sets() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    y = torch.tensor([0, 1] * 20)
    split = SeriesSplit(x, y, x[:4].clone(), y[:4].clone(), "tiny", 2)
    res = fit_modality(split, epochs=1, batch_size=64, width=8)  # batch clipped to the 40 rows
    assert res.metrics["kind"] == "tabular" and res.metrics["batch_size"] == 40
    with pytest.raises(ValueError, match="at least 2"):
        fit_modality(SeriesSplit(x[:1], y[:1], x[:1], y[:1], "one", 2), epochs=1)


def test_named_tabular_set() -> None:
    res = fit_modality("wine", epochs=2, width=16)
    assert res.metrics["data"] == "wine" and res.metrics["raw_linear_acc"] > 0.9
