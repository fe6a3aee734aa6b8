"""Tests of ``ViewAugment``, ``ViewConfig`` and the presets."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from contrastkit.views import PRESETS, ViewAugment, ViewConfig, preset, preset_for_dataset


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def rgb() -> Tensor:
    return torch.rand(6, 3, 16, 16, generator=gen(11))


# Every step switched on, applied to every view.
EVERYTHING = ViewConfig(
    crop_scale=(0.3, 1.0),
    hflip_p=0.5,
    vflip_p=0.5,
    degrees=15,
    translate=(0.1, 0.1),
    affine_scale=(0.9, 1.1),
    shear=5,
    padding_mode="border",
    jitter_p=1.0,
    grayscale_p=0.5,
    blur_p=1.0,
    solarize_p=0.5,
    noise_p=1.0,
    noise_std=(0.01, 0.05),
    cutout_p=1.0,
)


def test_views_shape_dtype_and_independence(rgb: Tensor) -> None:
    aug = ViewAugment(EVERYTHING)
    v = aug.views(rgb, 3, generator=gen(0))
    assert v.shape == (6, 3, 3, 16, 16)
    assert v.dtype == rgb.dtype
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(v[:, i], v[:, j])
    # Per-sample parameters: views of identical images differ too.
    same = rgb[:1].expand(6, 3, 16, 16)
    w = aug.views(same, 1, generator=gen(0))[:, 0]
    assert len({tuple(x.flatten().tolist()) for x in w}) == 6


def test_input_is_not_modified(rgb: Tensor) -> None:
    before = rgb.clone()
    ViewAugment(EVERYTHING).views(rgb, 2, generator=gen(0))
    ViewAugment(EVERYTHING)(rgb, gen(1))
    assert torch.equal(rgb, before)


def test_views_reproducible_from_seed(rgb: Tensor) -> None:
    aug = ViewAugment(preset("simclr", channels=3, image_size=16))
    a = aug.views(rgb, 2, generator=gen(5))
    b = aug.views(rgb, 2, generator=gen(5))
    c = aug.views(rgb, 2, generator=gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    one = aug(rgb, gen(5))
    assert one.shape == rgb.shape
    assert torch.equal(one, aug(rgb, generator=gen(5)))


def test_identity_config_returns_the_input(rgb: Tensor) -> None:
    aug = ViewAugment(ViewConfig.identity())
    assert torch.equal(aug(rgb, gen(0)), rgb)
    v = aug.views(rgb, 2, generator=gen(0))
    assert torch.equal(v[:, 0], rgb) and torch.equal(v[:, 1], rgb)
    crop_only = ViewAugment(ViewConfig.identity(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)))
    torch.testing.assert_close(crop_only(rgb, gen(0)), rgb, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_dtypes(dtype: torch.dtype, rgb: Tensor) -> None:
    x = rgb.to(dtype)
    v = ViewAugment(EVERYTHING).views(x, 2, generator=gen(0))
    assert v.dtype == dtype and v.shape == (6, 2, 3, 16, 16)
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert torch.isfinite(v.float()).all()


def test_flip_only_pipeline_flips(rgb: Tensor) -> None:
    out = ViewAugment(ViewConfig.identity(hflip_p=1.0))(rgb, gen(0))
    torch.testing.assert_close(out, rgb.flip(-1), atol=1e-6, rtol=0)


def test_grayscale_only_pipeline_gives_equal_channels(rgb: Tensor) -> None:
    out = ViewAugment(ViewConfig.identity(grayscale_p=1.0))(rgb, gen(0))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


def test_module_behaviour() -> None:
    aug = ViewAugment.from_preset("cifar", channels=3, image_size=32)
    assert isinstance(aug, nn.Module)
    assert list(aug.parameters()) == []
    assert "cifar" in repr(aug)
    assert ViewAugment().config == ViewConfig()
    with pytest.raises(TypeError, match="ViewConfig"):
        ViewAugment({"hflip_p": 0.5})  # type: ignore[arg-type]


def test_bad_inputs(rgb: Tensor) -> None:
    aug = ViewAugment()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        aug.views(rgb[0], 2)
    with pytest.raises(TypeError, match="floating-point"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_views"):
            aug.views(rgb, bad)  # type: ignore[arg-type]


# --- config ---------------------------------------------------------------------------------------


def test_config_normalises_and_is_frozen() -> None:
    cfg = ViewConfig(
        crop_scale=[0.2, 1],
        translate=[0.1, 0],
        blur_sigma=[1, 2],  # type: ignore[arg-type]
    )
    assert cfg.crop_scale == (0.2, 1.0) and isinstance(cfg.crop_scale, tuple)
    assert cfg.translate == (0.1, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hflip_p = 0.0  # type: ignore[misc]
    assert dataclasses.replace(cfg, hflip_p=0.0).hflip_p == 0.0
    assert ViewConfig.identity().uses_geometry is False
    assert ViewConfig(degrees=5).uses_affine is True


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"hflip_p": 1.2}, r"hflip_p must be a probability in \[0, 1\]; got 1.2"),
        ({"jitter_p": -0.1}, "jitter_p"),
        ({"cutout_p": float("nan")}, "cutout_p"),
        ({"crop_scale": (0.9, 0.2)}, "crop_scale must be ordered"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale values must be > 0"),
        ({"crop_scale": (0.5, 2.0)}, "crop_scale values must be <= 1"),
        ({"crop_ratio": (1.0, 0.5)}, "crop_ratio"),
        ({"crop_ratio": 1.0}, "pair"),
        ({"translate": (0.1, 1.5)}, "translate"),
        ({"affine_scale": (1.2, 0.8)}, "affine_scale"),
        ({"shear": 90}, "shear"),
        ({"degrees": -5}, "degrees must be >= 0"),
        ({"brightness": -0.4}, "brightness"),
        ({"hue": 0.6}, "hue"),
        ({"padding_mode": "wrap"}, "padding_mode must be one of"),
        ({"jitter_order": "shuffled"}, "jitter_order"),
        ({"blur_sigma": (2.0, 1.0)}, "blur_sigma"),
        ({"blur_kernel_size": 4}, "blur_kernel_size must be an odd"),
        ({"noise_std": (0.1, 0.05)}, "noise_std"),
        ({"solarize_threshold": 1.5}, "solarize_threshold"),
        ({"cutout_scale": (0.0, 0.2)}, "cutout_scale"),
        ({"cutout_value": 2.0}, "cutout_value"),
    ],
)
def test_config_validation(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ViewConfig(**kw)


# --- presets --------------------------------------------------------------------------------------


def test_presets() -> None:
    assert set(PRESETS) == {"digits", "fashion-mnist", "simclr", "cifar"}
    digits = preset("digits", channels=1, image_size=8)
    assert digits.hflip_p == 0.0 and digits.vflip_p == 0.0
    assert digits.crop_scale == (0.6, 1.0) and digits.degrees == 10.0
    assert digits.blur_p == 0.0 and digits.noise_p > 0
    fm = preset("fashion-mnist", channels=1, image_size=28)
    assert fm.crop_scale == (0.3, 1.0) and fm.hflip_p == 0.5 and fm.blur_p > 0
    simclr = preset("SimCLR", channels=3, image_size=224)
    assert simclr.crop_scale == (0.08, 1.0) and simclr.hflip_p == 0.5
    assert (simclr.brightness, simclr.contrast, simclr.saturation, simclr.hue) == (
        0.4,
        0.4,
        0.4,
        0.1,
    )
    assert simclr.jitter_p == 0.8 and simclr.grayscale_p == 0.2 and simclr.blur_p == 0.5
    cifar = preset("cifar", channels=3, image_size=32)
    assert cifar.blur_p == 0.0 and dataclasses.replace(cifar, blur_p=0.5) == simclr
    gray_simclr = preset("simclr", channels=1, image_size=28)
    assert gray_simclr.saturation == 0.0 and gray_simclr.hue == 0.0
    assert gray_simclr.grayscale_p == 0.0


def test_preset_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown view preset 'byol'.*digits.*fashion-mnist"):
        preset("byol", channels=3, image_size=32)
    with pytest.raises(ValueError, match="channels"):
        preset("cifar", channels=0, image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        preset_for_dataset("cifar10", 3, -2)


def test_preset_for_dataset() -> None:
    assert preset_for_dataset("Fashion_MNIST", 1, 28).name == "fashion-mnist"
    assert preset_for_dataset("digits", 1, 8).name == "digits"
    assert preset_for_dataset("CIFAR-10", 3, 32).name == "cifar"
    assert preset_for_dataset("stl10", 3, 96).name == "simclr"
    mnist = preset_for_dataset("mnist", 1, 28)
    assert mnist.hflip_p == 0.0
    npz = preset_for_dataset("/data/my_arrays.npz", 1, 28)
    assert npz.name.startswith("generic") and npz.hflip_p == 0.5
    assert preset_for_dataset("x.npz", 1, 12).hflip_p == 0.0  # tiny images: digits-like
    assert preset_for_dataset("folder", 3, 32).blur_p == 0.0
    assert preset_for_dataset("folder", 3, 128).blur_p == 0.5
    assert preset_for_dataset("four-band", 4, 32).saturation == 0.0


@pytest.mark.parametrize("name", ["digits", "fashion-mnist", "simclr", "cifar"])
def test_every_preset_runs(name: str) -> None:
    shapes = {"digits": (1, 8), "fashion-mnist": (1, 28)}
    channels, size = shapes.get(name, (3, 32))
    x = torch.rand(4, channels, size, size, generator=gen(0))
    v = ViewAugment(preset(name, channels=channels, image_size=size)).views(x, 2, generator=gen(1))
    assert v.shape == (4, 2, channels, size, size)
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert not torch.equal(v[:, 0], v[:, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_views_on_gpu(rgb: Tensor) -> None:
    x = rgb.cuda()
    aug = ViewAugment(EVERYTHING)
    a = aug.views(x, 2, generator=gen(3))
    assert a.device == x.device and a.shape == (6, 2, 3, 16, 16)
    assert torch.equal(a, aug.views(x, 2, generator=gen(3)))
    g = torch.Generator(device="cuda").manual_seed(3)
    b = aug.views(x.bfloat16(), 2, generator=g)
    assert b.dtype == torch.bfloat16 and b.device == x.device
