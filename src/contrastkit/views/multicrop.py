"""Multi-crop views: a few large "global" crops and several small "local" crops per image.

Multi-crop (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", SwAV, 2020) adds cheap low-resolution views: SwAV's ImageNet setting is 2 crops of
224 px with crop scale (0.14, 1) and 6 crops of 96 px with scale (0.05, 0.14); these scale ranges
are the defaults here. The sizes default to the input size for the global crops and 96/224 of it
(at least 1 px) for the local ones.

Each group is produced by one batched :meth:`ViewAugment.views` call: crop, resize to the group's
size and the rest of the pipeline in one pass, per-sample random parameters. Since the groups have
different sizes, the result is a list with one tensor per size, ``[global (B, V_g, C, Hg, Wg),
local (B, V_l, C, Hl, Wl)]`` (the local entry is left out when ``n_local = 0``).

To feed a multi-view loss, encode each group and concatenate along the view axis
(:func:`encode_crops`): ``(B, V_g + V_l, D)``, the ``(N, V, D)`` layout of the losses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from contrastkit._validation import check_int
from contrastkit.views import image as ops
from contrastkit.views.pipeline import ViewAugment, ViewConfig, check_size

__all__ = ["MultiCrop", "encode_crops"]

# SwAV (Caron et al., 2020), ImageNet multi-crop: 2 x 224 px, scale (0.14, 1); 6 x 96 px,
# scale (0.05, 0.14).
SWAV_GLOBAL_SCALE = (0.14, 1.0)
SWAV_LOCAL_SCALE = (0.05, 0.14)
SWAV_LOCAL_FRACTION = 96 / 224


class MultiCrop(nn.Module):
    """Global and local crops of every image, batched, with per-sample random parameters.

    Example:
        >>> from contrastkit.views import preset
        >>> mc = MultiCrop(preset("cifar", channels=3, image_size=32), global_size=32,
        ...                local_size=16, n_global=2, n_local=4)
        >>> g, l = mc(torch.rand(8, 3, 32, 32), torch.Generator().manual_seed(0))
        >>> g.shape, l.shape
        (torch.Size([8, 2, 3, 32, 32]), torch.Size([8, 4, 3, 16, 16]))

    Args:
        config: The augmentation pipeline for every crop (its ``crop_scale`` is replaced by
            ``global_scale`` / ``local_scale``); ``None`` uses ``ViewConfig()`` (SimCLR).
        global_size: Side (or ``(H, W)``) of the global crops; ``None``: the input size.
        local_size: Side (or ``(H, W)``) of the local crops; ``None``: 96/224 of the input size.
        n_global: Number of global crops (>= 1).
        n_local: Number of local crops (>= 0).
        global_scale: Crop area range of the global crops (SwAV: (0.14, 1)).
        local_scale: Crop area range of the local crops (SwAV: (0.05, 0.14)).
        local_config: A different pipeline for the local crops (default: ``config``).
    """

    def __init__(
        self,
        config: ViewConfig | None = None,
        *,
        global_size: int | tuple[int, int] | None = None,
        local_size: int | tuple[int, int] | None = None,
        n_global: int = 2,
        n_local: int = 6,
        global_scale: Sequence[float] = SWAV_GLOBAL_SCALE,
        local_scale: Sequence[float] = SWAV_LOCAL_SCALE,
        local_config: ViewConfig | None = None,
    ) -> None:
        super().__init__()
        config = ViewConfig() if config is None else config
        local_config = config if local_config is None else local_config
        for name, c in (("config", config), ("local_config", local_config)):
            if not isinstance(c, ViewConfig):
                raise TypeError(f"{name} must be a ViewConfig, got {type(c).__name__}")
        self.n_global = check_int(n_global, "n_global", minimum=1)
        self.n_local = check_int(n_local, "n_local", minimum=0)
        self.global_size = (
            check_size(global_size, "global_size") if global_size is not None else None
        )
        self.local_size = check_size(local_size, "local_size") if local_size is not None else None
        g_scale = ops._range(global_scale, "global_scale", low=0.0, high=1.0, strict_low=True)
        l_scale = ops._range(local_scale, "local_scale", low=0.0, high=1.0, strict_low=True)
        self.global_aug = ViewAugment(dataclasses.replace(config, crop_scale=g_scale))
        self.local_aug = ViewAugment(dataclasses.replace(local_config, crop_scale=l_scale))

    def extra_repr(self) -> str:
        """Show the crop counts and sizes in ``repr``."""
        return (
            f"n_global={self.n_global}, global_size={self.global_size}, "
            f"n_local={self.n_local}, local_size={self.local_size}"
        )

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Output sizes of the groups for an input of ``height x width``."""
        out = [self.global_size or (height, width)]
        if self.n_local > 0:
            out.append(
                self.local_size
                or (
                    max(1, round(height * SWAV_LOCAL_FRACTION)),
                    max(1, round(width * SWAV_LOCAL_FRACTION)),
                )
            )
        return out

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """All crops of a batch.

        Args:
            images: Batch ``(B, C, H, W)``, values in [0, 1].
            generator: Source of randomness (``None``: torch's global generator).

        Returns:
            ``[global, local]`` with ``global`` of shape ``(B, n_global, C, Hg, Wg)`` and
            ``local`` of shape ``(B, n_local, C, Hl, Wl)`` (only ``[global]`` if ``n_local = 0``);
            same dtype and device as ``images``.
        """
        ops.check_images(images)
        sizes = self.sizes(*images.shape[-2:])
        crops = [self.global_aug.views(images, self.n_global, generator=generator, size=sizes[0])]
        if self.n_local > 0:
            crops.append(
                self.local_aug.views(images, self.n_local, generator=generator, size=sizes[1])
            )
        return crops


def encode_crops(encoder: Callable[[Tensor], Tensor], crops: Sequence[Tensor]) -> Tensor:
    """Encode every crop group and stack the embeddings as ``(B, V_total, D)``.

    Each group ``(B, V, C, H, W)`` is encoded in one call as ``(B * V, C, H, W)``; the encoder
    must accept every group's size (e.g. it ends in global pooling). The views are ordered as the
    groups, global first, which is the ``(N, V, D)`` input of the multi-view losses.

    Args:
        encoder: Maps ``(n, C, H, W)`` to ``(n, D)`` (an encoder, or encoder + head).
        crops: The list returned by :class:`MultiCrop`.

    Returns:
        Tensor ``(B, sum of V, D)``.
    """
    if not crops:
        raise ValueError("crops must hold at least one group (B, V, C, H, W)")
    out = []
    b = crops[0].shape[0]
    for group in crops:
        if group.dim() != 5 or group.shape[0] != b:
            raise ValueError(
                f"every crop group must have shape ({b}, V, C, H, W); got {tuple(group.shape)}"
            )
        emb = encoder(group.flatten(0, 1))
        out.append(emb.view(b, group.shape[1], -1))
    return torch.cat(out, dim=1)
