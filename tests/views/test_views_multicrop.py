"""Tests of multi-crop views, resized views and the colour-strength helper."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

from contrastkit.views import (
    MultiCrop,
    ViewAugment,
    ViewConfig,
    encode_crops,
    preset,
    with_color_strength,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def rgb() -> Tensor:
    return torch.rand(5, 3, 24, 24, generator=gen(1))


def test_multicrop_shapes_dtype_and_range(rgb: Tensor) -> None:
    mc = MultiCrop(
        preset("cifar", channels=3, image_size=24),
        global_size=20,
        local_size=(8, 10),
        n_global=2,
        n_local=3,
    )
    crops = mc(rgb, gen(0))
    assert isinstance(crops, list) and len(crops) == 2
    assert crops[0].shape == (5, 2, 3, 20, 20)
    assert crops[1].shape == (5, 3, 3, 8, 10)
    for c in crops:
        assert c.dtype == rgb.dtype and float(c.min()) >= 0 and float(c.max()) <= 1
    half = mc(rgb.bfloat16(), gen(0))
    assert [c.dtype for c in half] == [torch.bfloat16, torch.bfloat16]


def test_multicrop_default_sizes_and_no_local(rgb: Tensor) -> None:
    mc = MultiCrop(n_local=2)
    g, loc = mc(rgb, gen(0))
    assert g.shape == (5, 2, 3, 24, 24)
    assert loc.shape == (5, 2, 3, 10, 10)  # round(24 * 96 / 224) = 10
    only = MultiCrop(n_global=3, n_local=0)(rgb, gen(0))
    assert len(only) == 1 and only[0].shape == (5, 3, 3, 24, 24)


def test_multicrop_reproducible_and_per_sample(rgb: Tensor) -> None:
    mc = MultiCrop(global_size=16, local_size=8, n_local=2)
    a, b, c = mc(rgb, gen(3)), mc(rgb, gen(3)), mc(rgb, gen(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])
    same = rgb[:1].expand(6, -1, -1, -1).contiguous()
    g, loc = mc(same, gen(0))
    assert len({tuple(v.flatten().tolist()) for v in g[:, 0]}) == 6
    assert not torch.equal(loc[:, 0], loc[:, 1])


def test_multicrop_uses_its_crop_scales() -> None:
    # A bright square in the image centre: small local crops see a different share of it than
    # global ones; with scale (1, 1) a global crop is the resized whole image.
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:24, 8:24] = 1.0
    cfg = ViewConfig.identity(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    mc = MultiCrop(
        cfg,
        global_size=16,
        local_size=8,
        n_global=1,
        n_local=1,
        global_scale=(1.0, 1.0),
        local_scale=(0.05, 0.06),
    )
    g, loc = mc(x, gen(0))
    resized = torch.nn.functional.interpolate(x, size=16, mode="bilinear", align_corners=False)
    torch.testing.assert_close(g[:, 0], resized, atol=1e-5, rtol=0)
    assert loc.shape == (1, 1, 1, 8, 8)
    assert mc.local_aug.config.crop_scale == (0.05, 0.06)
    assert mc.global_aug.config.crop_scale == (1.0, 1.0)


def test_multicrop_validation() -> None:
    with pytest.raises(ValueError, match="n_global"):
        MultiCrop(n_global=0)
    with pytest.raises(ValueError, match="n_local"):
        MultiCrop(n_local=-1)
    with pytest.raises(ValueError, match="local_size"):
        MultiCrop(local_size=0)
    with pytest.raises(ValueError, match="global_scale"):
        MultiCrop(global_scale=(0.5, 0.1))
    with pytest.raises(TypeError, match="ViewConfig"):
        MultiCrop({"hflip_p": 0.5})  # type: ignore[arg-type]


def test_encode_crops_stacks_views_in_group_order(rgb: Tensor) -> None:
    enc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    crops = MultiCrop(global_size=16, local_size=8, n_global=2, n_local=3)(rgb, gen(0))
    z = encode_crops(enc, crops)
    assert z.shape == (5, 5, 4)
    torch.testing.assert_close(z[:, 0], enc(crops[0][:, 0]))
    torch.testing.assert_close(z[:, 4], enc(crops[1][:, 2]))
    with pytest.raises(ValueError, match="at least one"):
        encode_crops(enc, [])
    with pytest.raises(ValueError, match=r"\(5, V, C, H, W\)"):
        encode_crops(enc, [crops[0], crops[1][:2]])


def test_views_size_argument(rgb: Tensor) -> None:
    aug = ViewAugment(preset("simclr", channels=3, image_size=24))
    v = aug.views(rgb, 2, generator=gen(0), size=12)
    assert v.shape == (5, 2, 3, 12, 12)
    assert aug.views(rgb, 1, generator=gen(0), size=(8, 16)).shape == (5, 1, 3, 8, 16)
    # Without geometry the views are the plain resize.
    ident = ViewAugment(ViewConfig.identity())
    r = ident.views(rgb, 1, generator=gen(0), size=12)[:, 0]
    ref = torch.nn.functional.interpolate(rgb, size=12, mode="bilinear", align_corners=False)
    torch.testing.assert_close(r, ref, atol=1e-5, rtol=0)
    assert torch.equal(ident.views(rgb, 1, generator=gen(0), size=24)[:, 0], rgb)
    with pytest.raises(ValueError, match="size"):
        aug.views(rgb, 2, size=(0, 4))


def test_with_color_strength() -> None:
    base = preset("simclr", channels=3, image_size=32)
    strong = with_color_strength(base, 1.0)
    assert (strong.brightness, strong.contrast, strong.saturation, strong.hue) == pytest.approx(
        (0.8, 0.8, 0.8, 0.2)
    )
    assert (
        dataclasses.replace(strong, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1) == base
    )
    assert with_color_strength(base, 0.5) == base  # the presets use s = 0.5
    gray = with_color_strength(preset("fashion-mnist", channels=1, image_size=28), 1.0)
    assert gray.brightness == pytest.approx(0.8) and gray.saturation == 0 and gray.hue == 0
    with pytest.raises(ValueError, match="strength"):
        with_color_strength(base, 3.0)
