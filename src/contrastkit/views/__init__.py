"""Batched views of the data: per-sample random augmentation of whole batches, in plain torch.

``contrastkit.views.image`` holds the image ops (each ``op(images, generator=None, **params)`` on a
``(B, C, H, W)`` batch in [0, 1]); ``contrastkit.views.pipeline`` composes them into
:class:`ViewAugment`, configured by a frozen :class:`ViewConfig`, with named presets;
``contrastkit.views.multicrop`` makes global + local crops. Other modalities:
``contrastkit.views.series`` (time series ``(B, C, T)``), ``contrastkit.views.tabular`` (SCARF
corruption of rows ``(B, F)``), ``contrastkit.views.graph`` (edge dropping, feature masking, kNN
edges), ``contrastkit.views.text`` (token-level text augmentation). ``contrastkit.views.pretext``
holds the rotation and jigsaw pretext tasks; ``contrastkit.views.quality`` scores views by the
foreground their crop keeps (GenView's quality weights). The package exports what a user composes
views from; the building blocks behind them (affine matrices, size and token checks, the pretext
batch builders) stay in their modules.

Example:
    >>> import torch
    >>> from contrastkit.views import ViewAugment, preset
    >>> aug = ViewAugment(preset("cifar", channels=3, image_size=32))
    >>> x = torch.rand(4, 3, 32, 32)
    >>> aug.views(x, 2, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2, 3, 32, 32])
"""

from contrastkit.views.graph import drop_edges, graph_view, knn_edges, mask_features
from contrastkit.views.image import (
    color_jitter,
    cutout,
    gaussian_blur,
    gaussian_noise,
    random_affine,
    random_grayscale,
    random_horizontal_flip,
    random_resized_crop,
    rgb_to_grayscale,
    solarize,
)
from contrastkit.views.multicrop import MultiCrop, encode_crops
from contrastkit.views.pipeline import (
    PRESETS,
    ViewAugment,
    ViewConfig,
    preset,
    preset_for_dataset,
    with_color_strength,
)
from contrastkit.views.pretext import JigsawPretext, PretextOutput, RotationPretext
from contrastkit.views.quality import crop_boxes, foreground_kept, foreground_mask, scored_views
from contrastkit.views.series import SeriesAugment
from contrastkit.views.tabular import ScarfCorruption, scarf_corrupt
from contrastkit.views.text import (
    TextAugment,
    TextAugmentConfig,
    random_deletion,
    random_insertion,
    random_swap,
    remove_stopwords,
    synonym_replacement,
    token_dropout,
)

__all__ = [
    "PRESETS",
    "JigsawPretext",
    "MultiCrop",
    "PretextOutput",
    "RotationPretext",
    "ScarfCorruption",
    "SeriesAugment",
    "TextAugment",
    "TextAugmentConfig",
    "ViewAugment",
    "ViewConfig",
    "color_jitter",
    "crop_boxes",
    "cutout",
    "drop_edges",
    "encode_crops",
    "foreground_kept",
    "foreground_mask",
    "gaussian_blur",
    "gaussian_noise",
    "graph_view",
    "knn_edges",
    "mask_features",
    "preset",
    "preset_for_dataset",
    "random_affine",
    "random_deletion",
    "random_grayscale",
    "random_horizontal_flip",
    "random_insertion",
    "random_resized_crop",
    "random_swap",
    "remove_stopwords",
    "rgb_to_grayscale",
    "scarf_corrupt",
    "scored_views",
    "solarize",
    "synonym_replacement",
    "token_dropout",
    "with_color_strength",
]
