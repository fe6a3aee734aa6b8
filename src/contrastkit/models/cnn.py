"""A small convolutional encoder for small grayscale or RGB images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["SmallCNN", "count_parameters"]


def count_parameters(module: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


DEFAULT_WIDTHS = (32, 32, 64, 64, 128, 128)
DEFAULT_STRIDES = (1, 1, 2, 1, 2, 1)


class SmallCNN(nn.Module):
    """A stack of 3x3 conv-BN-ReLU layers followed by global average pooling.

    Layer ``i`` has ``widths[i]`` output channels and stride ``strides[i]``. The default
    (32, 32, 64, 64, 128, 128) with strides (1, 1, 2, 1, 2, 1) has about 0.29M parameters and suits
    8x8 digits; ``widths=(32, 64, 128, 256), strides=(2, 1, 2, 1)`` is a cheaper 0.39M-parameter encoder
    for 28x28 images. The output, of size ``widths[-1]``, is the representation that evaluation uses.

    Args:
        in_channels: image channels (1 for grayscale).
        widths: output channels of each conv layer.
        strides: stride of each conv layer (same length as ``widths``).
        pool_size: side of the final average pooling grid; the output has
            ``widths[-1] * pool_size**2`` features (2 keeps coarse spatial layout for 28x28 images).
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        strides: Sequence[int] | None = None,
        pool_size: int = 1,
    ) -> None:
        super().__init__()
        if strides is None:
            strides = DEFAULT_STRIDES if tuple(widths) == DEFAULT_WIDTHS else (1,) * len(widths)
        if in_channels < 1 or not widths or any(w < 1 for w in widths):
            raise ValueError(
                f"in_channels must be >= 1 and widths a non-empty list of positive ints; "
                f"got in_channels={in_channels}, widths={list(widths)}"
            )
        if len(strides) != len(widths) or any(s not in (1, 2) for s in strides):
            raise ValueError(
                f"strides must hold one stride (1 or 2) per width; got widths={list(widths)}, "
                f"strides={list(strides)}"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for w, s in zip(widths, strides, strict=True):
            layers.append(_conv_bn_relu(c, w, s))
            c = w
        self.features = nn.Sequential(*layers)
        if pool_size < 1:
            raise ValueError(f"pool_size must be a positive integer, got {pool_size}")
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.in_channels = in_channels
        self.out_dim = c * pool_size * pool_size

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SmallCNN expects images of shape (B, {self.in_channels}, H, W); got {tuple(x.shape)}"
            )
        return torch.flatten(self.pool(self.features(x)), 1)
