"""Batched views of the data: per-sample random augmentation of whole batches, in plain torch.

``contrastkit.views.image`` holds the image ops (each ``op(images, generator=None, **params)`` on a
``(B, C, H, W)`` batch in [0, 1]); ``contrastkit.views.pipeline`` composes them into
:class:`ViewAugment`, configured by a frozen :class:`ViewConfig`, with named presets.

Example:
    >>> import torch
    >>> from contrastkit.views import ViewAugment, preset
    >>> aug = ViewAugment(preset("cifar", channels=3, image_size=32))
    >>> x = torch.rand(4, 3, 32, 32)
    >>> aug.views(x, 2, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2, 3, 32, 32])
"""

from contrastkit.views.image import (
    affine_matrix,
    apply_affine,
    blur_kernel_size,
    check_images,
    color_jitter,
    crop_matrix,
    cutout,
    flip_matrix,
    gaussian_blur,
    gaussian_noise,
    random_affine,
    random_grayscale,
    random_horizontal_flip,
    random_resized_crop,
    rgb_to_grayscale,
    solarize,
)
from contrastkit.views.pipeline import PRESETS, ViewAugment, ViewConfig, preset, preset_for_dataset

__all__ = [
    "PRESETS",
    "ViewAugment",
    "ViewConfig",
    "affine_matrix",
    "apply_affine",
    "blur_kernel_size",
    "check_images",
    "color_jitter",
    "crop_matrix",
    "cutout",
    "flip_matrix",
    "gaussian_blur",
    "gaussian_noise",
    "preset",
    "preset_for_dataset",
    "random_affine",
    "random_grayscale",
    "random_horizontal_flip",
    "random_resized_crop",
    "rgb_to_grayscale",
    "solarize",
]
