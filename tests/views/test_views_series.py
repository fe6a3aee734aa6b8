"""Tests of the batched time-series views (contrastkit.views.series)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from contrastkit.views import SeriesAugment
from contrastkit.views import series as S


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x() -> Tensor:
    return torch.randn(8, 3, 50, generator=gen(10))


OPS: list[tuple[str, Callable[..., Tensor], dict[str, Any]]] = [
    ("jitter", S.jitter, {"sigma": 0.1}),
    ("scaling", S.scaling, {"sigma": 0.2}),
    ("warp", S.time_warp, {"sigma": 0.3}),
    ("permute", S.permute_segments, {"max_segments": 6}),
    ("crop", S.crop, {"scale": (0.4, 0.9)}),
    ("mask_point", S.mask, {"ratio": 0.3}),
    ("mask_span", S.mask, {"ratio": 0.3, "mode": "span"}),
]
IDS = [name for name, _, _ in OPS]


@pytest.mark.parametrize(("name", "op", "kw"), OPS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_op_keeps_shape_and_dtype(
    name: str, op: Callable[..., Tensor], kw: dict[str, Any], dtype: torch.dtype, x: Tensor
) -> None:
    xi = x.to(dtype)
    y = op(xi, gen(1), **kw)
    assert y.shape == xi.shape and y.dtype == dtype and y.device == xi.device
    assert torch.isfinite(y.float()).all()
    assert not torch.equal(y, xi)


@pytest.mark.parametrize(("name", "op", "kw"), OPS, ids=IDS)
def test_op_reproducible_and_per_sample(
    name: str, op: Callable[..., Tensor], kw: dict[str, Any], x: Tensor
) -> None:
    assert torch.equal(op(x, gen(7), **kw), op(x, gen(7), **kw))
    assert not torch.equal(op(x, gen(7), **kw), op(x, gen(8), **kw))
    same = x[:1].expand(12, -1, -1).contiguous()
    y = op(same, gen(3), **kw)
    assert len({tuple(r.flatten().tolist()) for r in y}) > 1


@pytest.mark.parametrize(("name", "op", "kw"), OPS, ids=IDS)
def test_op_with_probability_zero_is_identity_where_supported(
    name: str, op: Callable[..., Tensor], kw: dict[str, Any], x: Tensor
) -> None:
    if name == "crop":
        return
    assert torch.equal(op(x, gen(0), **kw, p=0.0), x)


def test_jitter_and_scaling_statistics() -> None:
    x = torch.zeros(200, 2, 100)
    d = S.jitter(x, gen(0), sigma=0.05)
    assert 0.045 < float(d.std()) < 0.055
    ones = torch.ones(400, 2, 30)
    y = S.scaling(ones, gen(0), sigma=0.1)
    # One factor per sample and channel, constant over time.
    assert torch.equal(y, y[..., :1].expand_as(y))
    assert 0.08 < float(y[..., 0].std()) < 0.12 and abs(float(y.mean()) - 1) < 0.02


def test_permutation_keeps_the_values_of_each_row(x: Tensor) -> None:
    y = S.permute_segments(x, gen(0), max_segments=5)
    torch.testing.assert_close(y.sort(dim=-1).values, x.sort(dim=-1).values)
    # All channels of a sample are permuted the same way.
    ramp = torch.arange(20.0).expand(4, 2, 20).contiguous()
    z = S.permute_segments(ramp, gen(1), max_segments=4, min_segments=4)
    assert torch.equal(z[:, 0], z[:, 1])
    for row in z[:, 0]:
        # Four segments: the series is increasing by one except at the at most 3 seams.
        assert int((row.diff() != 1).sum()) <= 3
    assert not torch.equal(z, ramp)
    one = S.permute_segments(ramp, gen(1), max_segments=1, min_segments=1)
    assert torch.equal(one, ramp)


def test_time_warp_keeps_end_points_and_is_monotone_on_a_ramp() -> None:
    ramp = torch.linspace(0, 1, 40).expand(6, 1, 40).contiguous()
    y = S.time_warp(ramp, gen(0), sigma=0.5)
    torch.testing.assert_close(y[..., 0], ramp[..., 0])
    torch.testing.assert_close(y[..., -1], ramp[..., -1])
    assert bool((y.diff(dim=-1) >= -1e-6).all())
    assert not torch.allclose(y, ramp, atol=1e-3)
    torch.testing.assert_close(S.time_warp(ramp, gen(0), sigma=0.0), ramp)


def test_crop_windows_and_plain_crop() -> None:
    ramp = torch.arange(30.0).expand(5, 2, 30).contiguous()
    y = S.crop(ramp, gen(0), scale=(0.5, 0.5), size=15)
    # A window of exactly `size` steps is copied: consecutive integers from a random start.
    assert torch.equal(y.diff(dim=-1), torch.ones(5, 2, 14))
    starts = y[:, 0, 0]
    assert bool(((starts >= 0) & (starts <= 15)).all()) and len(set(starts.tolist())) > 1
    z = S.crop(ramp, gen(0), scale=(0.3, 0.6))  # resampled back to 30 steps
    assert z.shape == ramp.shape
    span = z[..., -1] - z[..., 0]
    assert bool((span >= 0.3 * 30 - 2).all()) and bool((span <= 0.6 * 30).all())
    assert torch.equal(S.crop(ramp, gen(0), scale=(1.0, 1.0)), ramp)


def test_mask_modes(x: Tensor) -> None:
    y = S.mask(x, gen(0), ratio=0.2, mode="span", value=7.0)
    masked = (y == 7.0).all(dim=1)  # (B, T): all channels together
    assert bool(((y == 7.0) == masked.unsqueeze(1)).all())
    for row in masked:
        idx = row.nonzero().flatten()
        assert idx.numel() == 10 and int(idx[-1] - idx[0]) == 9
    z = S.mask(torch.ones(100, 1, 100), gen(0), ratio=0.25)
    assert 0.22 < float((z == 0).float().mean()) < 0.28


def test_series_augment_views(x: Tensor) -> None:
    aug = SeriesAugment(warp_p=0.5, crop_p=0.5, mask_p=0.5)
    v = aug.views(x, 3, generator=gen(0))
    assert v.shape == (8, 3, 3, 50) and v.dtype == x.dtype
    assert torch.equal(v, aug.views(x, 3, generator=gen(0)))
    assert not torch.equal(v[:, 0], v[:, 1])
    assert aug(x.double(), gen(0)).dtype == torch.float64
    off = SeriesAugment(permute_p=0, scaling_p=0, jitter_p=0)
    assert torch.equal(off(x, gen(0)), x)


def test_series_validation(x: Tensor) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, T\).*unsqueeze"):
        S.jitter(x[:, 0])
    with pytest.raises(TypeError, match="floating-point"):
        S.scaling(x.long())
    with pytest.raises(ValueError, match="sigma"):
        S.jitter(x, sigma=-1.0)
    with pytest.raises(ValueError, match="max_segments"):
        S.permute_segments(x, max_segments=1, min_segments=2)
    with pytest.raises(ValueError, match="mode"):
        S.mask(x, mode="block")
    with pytest.raises(ValueError, match="scale"):
        S.crop(x, scale=(0.0, 0.5))
    with pytest.raises(ValueError, match="mask_p"):
        SeriesAugment(mask_p=2.0)
    with pytest.raises(ValueError, match="n_views"):
        SeriesAugment().views(x, 0)
