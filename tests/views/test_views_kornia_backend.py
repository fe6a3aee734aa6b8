"""Tests of the optional kornia pipeline builder and of the CPU chunking of the colour ops."""

from __future__ import annotations

import sys

import pytest
import torch

from contrastkit.views import ViewAugment, ViewConfig, preset
from contrastkit.views import image as I
from contrastkit.views.kornia_backend import kornia_pipeline

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


def test_kornia_pipeline_runs_and_keeps_the_range() -> None:
    pytest.importorskip("kornia")
    torch.manual_seed(0)
    for channels in (1, 3):
        pipe = kornia_pipeline(EVERYTHING, channels=channels, image_size=16)
        y = pipe(torch.rand(4, channels, 16, 16))
        assert y.shape == (4, channels, 16, 16)
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    names = [
        type(m).__name__
        for m in kornia_pipeline(
            preset("simclr", channels=3, image_size=32), channels=3, image_size=32
        )
    ]
    assert names == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ColorJitter",
        "RandomGrayscale",
        "RandomGaussianBlur",
        "_Clamp",
    ]
    with pytest.raises(TypeError, match="ViewConfig"):
        kornia_pipeline({"hflip_p": 0.5}, channels=3, image_size=8)  # type: ignore[arg-type]


def test_kornia_pipeline_says_how_to_install_kornia(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kornia", None)
    monkeypatch.setitem(sys.modules, "kornia.augmentation", None)
    with pytest.raises(ImportError, match="pip install kornia"):
        kornia_pipeline(ViewConfig(), channels=3, image_size=8)


def test_cpu_chunking_of_the_colour_ops_does_not_change_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.rand(37, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    aug = ViewAugment(EVERYTHING)
    whole = aug.views(x, 2, generator=torch.Generator().manual_seed(1))
    jit = I.color_jitter(x, torch.Generator().manual_seed(2), p=1.0)
    assert I._cpu_chunk(x) == 37
    monkeypatch.setattr(I, "_CHUNK_ELEMENTS", 5 * 300)  # chunks of 5 images, the last of 2
    assert I._cpu_chunk(x) == 5
    assert torch.equal(aug.views(x, 2, generator=torch.Generator().manual_seed(1)), whole)
    assert torch.equal(I.color_jitter(x, torch.Generator().manual_seed(2), p=1.0), jit)
