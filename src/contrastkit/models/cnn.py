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


class SmallCNN(nn.Module):
    """Stages of two 3x3 conv-BN-ReLU layers, stride 2 between stages, global average pooling.

    With the default widths (32, 64, 128) it has about 0.29M parameters and maps an image of any size
    >= 4x4 to a ``widths[-1]``-dimensional feature vector (the representation that evaluation uses).

    Args:
        in_channels: image channels (1 for grayscale).
        widths: channels of each stage; the first stage keeps the resolution.
    """

    def __init__(self, *, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        if in_channels < 1 or not widths or any(w < 1 for w in widths):
            raise ValueError(
                f"in_channels must be >= 1 and widths a non-empty list of positive ints; "
                f"got in_channels={in_channels}, widths={list(widths)}"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [_conv_bn_relu(c, w, 1 if i == 0 else 2), _conv_bn_relu(w, w, 1)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.in_channels = in_channels
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SmallCNN expects images of shape (B, {self.in_channels}, H, W); got {tuple(x.shape)}"
            )
        return torch.flatten(self.pool(self.features(x)), 1)
