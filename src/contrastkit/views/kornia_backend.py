"""An equivalent kornia pipeline for a :class:`ViewConfig` (optional: kornia is not a dependency).

kornia (``pip install kornia``) augments batches on tensors too. On this project's 2-core CPU
machine :class:`~contrastkit.views.pipeline.ViewAugment` is faster than the kornia pipeline built
here (``benchmarks/views.py``: 1.8-3.2x more views per second at 28x28 and 32x32, batches of 256,
kornia 0.9.0), so contrastkit does not use kornia itself. This builder is for comparisons and for
users who prefer kornia's ops; kornia is imported only when it is called.

The mapping covers the steps kornia has with the same meaning: random resized crop, flips,
rotation / translation / scale / shear, colour jitter (torchvision semantics, ``ColorJitter``),
grayscale, Gaussian blur, solarize, Gaussian noise, cutout (``RandomErasing``). Differences: the
steps are separate warps (contrastkit composes the geometry into one), kornia's noise has one
fixed standard deviation (the middle of ``noise_std`` is used) and is followed here by a clamp to
[0, 1], and its colour jitter draws one random order per call rather than per sample.
"""

from __future__ import annotations

from torch import Tensor, nn

from contrastkit.views.image import blur_kernel_size
from contrastkit.views.pipeline import ViewConfig, check_size

__all__ = ["kornia_pipeline"]


def kornia_pipeline(
    config: ViewConfig, *, channels: int, image_size: int | tuple[int, int]
) -> nn.Module:
    """Build kornia augmentations equivalent to ``config`` for ``(B, channels, H, W)`` batches.

    Args:
        config: The contrastkit pipeline to mirror.
        channels: Image channels (saturation, hue and grayscale are used only for 3).
        image_size: Output side or ``(H, W)`` of the random resized crop (the input size).

    Returns:
        An ``nn.Sequential`` of ``kornia.augmentation`` modules.

    Raises:
        ImportError: If kornia is not installed (the message says how to install it).
    """
    try:
        import kornia.augmentation as K
    except ImportError as err:  # pragma: no cover - exercised with kornia hidden
        raise ImportError(
            "kornia_pipeline needs kornia, an optional extra of contrastkit: "
            "pip install kornia (contrastkit's own ViewAugment needs nothing extra)"
        ) from err
    if not isinstance(config, ViewConfig):
        raise TypeError(f"config must be a ViewConfig, got {type(config).__name__}")
    h, w = check_size(image_size, "image_size")
    colour = channels == 3
    layers: list[nn.Module] = []
    if config.crop_scale is not None:
        layers.append(
            K.RandomResizedCrop(
                (h, w), scale=config.crop_scale, ratio=config.crop_ratio, cropping_mode="resample"
            )
        )
    if config.hflip_p > 0:
        layers.append(K.RandomHorizontalFlip(p=config.hflip_p))
    if config.vflip_p > 0:
        layers.append(K.RandomVerticalFlip(p=config.vflip_p))
    if config.uses_affine:
        layers.append(
            K.RandomAffine(
                config.degrees,
                translate=config.translate,
                scale=config.affine_scale,
                shear=config.shear,
                padding_mode=config.padding_mode,
                p=1.0,
            )
        )
    if config.jitter_p > 0:
        layers.append(
            K.ColorJitter(
                config.brightness,
                config.contrast,
                config.saturation if colour else 0.0,
                config.hue if colour else 0.0,
                p=config.jitter_p,
            )
        )
    if colour and config.grayscale_p > 0:
        layers.append(K.RandomGrayscale(p=config.grayscale_p))
    if config.blur_p > 0:
        k = config.blur_kernel_size or blur_kernel_size(h, w)
        layers.append(K.RandomGaussianBlur((k, k), config.blur_sigma, p=config.blur_p))
    if config.solarize_p > 0:
        layers.append(
            K.RandomSolarize(
                thresholds=(config.solarize_threshold,) * 2, additions=0.0, p=config.solarize_p
            )
        )
    if config.noise_p > 0 and config.noise_std[1] > 0:
        layers.append(K.RandomGaussianNoise(std=sum(config.noise_std) / 2, p=config.noise_p))
    if config.cutout_p > 0:
        layers.append(
            K.RandomErasing(
                scale=config.cutout_scale,
                ratio=config.cutout_ratio,
                value=config.cutout_value,
                p=config.cutout_p,
            )
        )
    layers.append(_Clamp())  # kornia's noise is not clamped; contrastkit's views stay in [0, 1]
    return nn.Sequential(*layers)


class _Clamp(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, 1.0)
