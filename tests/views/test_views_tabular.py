"""Tests of SCARF-style tabular corruption (contrastkit.views.tabular)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from contrastkit.views import ScarfCorruption, scarf_corrupt


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def table() -> Tensor:
    # Column j holds values in [100 j, 100 j + 50): a replacement is recognisable by its column.
    return torch.arange(50.0).view(50, 1) + 100.0 * torch.arange(10.0).view(1, 10)


def test_exact_count_and_values_from_the_column_marginal(table: Tensor) -> None:
    x = -torch.ones(16, 10)
    y = scarf_corrupt(x, table, corruption_rate=0.6, generator=gen(0))
    changed = y != x
    assert bool((changed.sum(1) == 6).all())  # round(0.6 * 10) per row
    col = torch.arange(10.0).expand(16, 10)
    vals = y[changed]
    assert bool(((vals - 100 * col[changed] >= 0) & (vals - 100 * col[changed] < 50)).all())
    # Rows draw different feature subsets.
    assert len({tuple(r.tolist()) for r in changed}) > 1


def test_rates_and_modes(table: Tensor) -> None:
    x = -torch.ones(400, 10)
    assert torch.equal(scarf_corrupt(x, table, corruption_rate=0.0, generator=gen(0)), x)
    full = scarf_corrupt(x, table, corruption_rate=1.0, generator=gen(0))
    assert bool((full >= 0).all())
    bern = scarf_corrupt(x, table, corruption_rate=0.3, mode="bernoulli", generator=gen(0))
    per_row = (bern != x).sum(1)
    assert 0.27 < float(per_row.float().mean()) / 10 < 0.33 and per_row.unique().numel() > 1


def test_batch_marginals_dtype_and_reproducibility() -> None:
    x = torch.randint(0, 5, (32, 6))  # categorical codes
    y = scarf_corrupt(x, generator=gen(1))
    assert y.dtype == x.dtype and y.shape == x.shape
    # Every value still comes from its own column of the batch.
    for j in range(6):
        assert set(y[:, j].tolist()) <= set(x[:, j].tolist())
    assert torch.equal(y, scarf_corrupt(x, generator=gen(1)))
    assert not torch.equal(y, scarf_corrupt(x, generator=gen(2)))
    xf = torch.randn(8, 4, dtype=torch.float64)
    assert scarf_corrupt(xf, torch.randn(20, 4), generator=gen(0)).dtype == torch.float64


def test_module_views_and_state(table: Tensor) -> None:
    scarf = ScarfCorruption(table, corruption_rate=0.5)
    x = -torch.ones(6, 10)
    v = scarf.views(x, 3, generator=gen(0))
    assert v.shape == (6, 3, 10)
    assert torch.equal(v[:, 0], x)
    assert bool(((v[:, 1:] != -1).sum(-1) == 5).all())
    assert not torch.equal(v[:, 1], v[:, 2])
    both = scarf.views(x, 2, generator=gen(0), keep_original=False)
    assert bool(((both != -1).sum(-1) == 5).all())
    assert torch.equal(scarf.state_dict()["marginals"], table)
    table[0, 0] = 1e6  # the module keeps its own copy
    assert float(scarf.marginals.max()) < 1e6  # type: ignore[union-attr]
    batch_only = ScarfCorruption()
    assert batch_only.marginals is None and "batch" in repr(batch_only)
    assert batch_only(x, gen(0)).shape == x.shape


def test_validation(table: Tensor) -> None:
    with pytest.raises(ValueError, match=r"\(rows, features\)"):
        scarf_corrupt(torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="10 columns"):
        scarf_corrupt(torch.ones(3, 10), torch.ones(5, 9))
    with pytest.raises(ValueError, match="corruption_rate"):
        scarf_corrupt(torch.ones(3, 10), corruption_rate=1.5)
    with pytest.raises(ValueError, match="mode"):
        ScarfCorruption(mode="swap")
    with pytest.raises(ValueError, match="finite"):
        ScarfCorruption(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="n_views"):
        ScarfCorruption().views(torch.ones(3, 2), 0)
