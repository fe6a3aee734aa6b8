"""CIFAR-stem ResNet-18/34 in plain torch, and the residual block shared with the ScatNet adapter.

The network is He et al.'s ResNet ("Deep Residual Learning for Image Recognition", 2016) with the
stem that SimCLR uses for 32x32 images (Chen et al., "A Simple Framework for Contrastive Learning
of Visual Representations", 2020, appendix B.9): a 3x3 stride-1 convolution in place of the 7x7
stride-2 convolution, and no max-pool. Four stages of basic blocks with ``width * (1, 2, 4, 8)``
channels and strides (1, 2, 2, 2) follow; global average pooling gives the representation ``h`` of
size ``8 * width`` (512 for the standard width 64). There is no classifier layer.

Parameter counts (``in_channels=3``, ``width=64``): ResNet-18 11,168,832 and ResNet-34 21,276,992,
i.e. torchvision's counts without the fc layer and with the 3x3 stem.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from contrastkit._validation import check_int

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet34"]


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut, then ReLU.

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut is a 1x1
    convolution with batch norm when the stride is not 1 or the channel count changes.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (and of the shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, H / stride, W / stride)``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.relu(out)


def make_stage(in_channels: int, out_channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` basic blocks; the first changes channels / stride, the others keep them."""
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """ResNet with a CIFAR stem (3x3 conv, stride 1, no max-pool); returns pooled features.

    Args:
        layers: Number of basic blocks in each of the four stages ((2, 2, 2, 2) is ResNet-18,
            (3, 4, 6, 3) ResNet-34).
        in_channels: Image channels.
        width: Channels of the stem and the first stage (64 in the paper); stage ``i`` has
            ``width * 2**i``.
        zero_init_residual: Initialise the last batch norm of every block to zero, so that each
            block starts as the identity (Goyal et al., 2017); off by default as in torchvision.

    Attributes:
        out_dim: Size of the representation, ``8 * width``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        in_channels: int = 3,
        width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the block count of 4 stages; got {list(layers)}")
        for i, n in enumerate(layers):
            check_int(n, f"layers[{i}]", minimum=1)
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        width = check_int(width, "width", minimum=1)
        self.stem = nn.Sequential(
            _conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages = []
        c = width
        for i, n in enumerate(layers):
            out = width * 2**i
            stages.append(make_stage(c, out, n, stride=1 if i == 0 else 2))
            c = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Encode images ``(B, in_channels, H, W)`` into ``(B, out_dim)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet expects images of shape (B, {self.in_channels}, H, W); got "
                f"{tuple(x.shape)}"
            )
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


def resnet18(*, in_channels: int = 3, width: int = 64, zero_init_residual: bool = False) -> ResNet:
    """CIFAR-stem ResNet-18 (blocks (2, 2, 2, 2); 11.17 M parameters at width 64, RGB)."""
    return ResNet(
        (2, 2, 2, 2), in_channels=in_channels, width=width, zero_init_residual=zero_init_residual
    )


def resnet34(*, in_channels: int = 3, width: int = 64, zero_init_residual: bool = False) -> ResNet:
    """CIFAR-stem ResNet-34 (blocks (3, 4, 6, 3); 21.28 M parameters at width 64, RGB)."""
    return ResNet(
        (3, 4, 6, 3), in_channels=in_channels, width=width, zero_init_residual=zero_init_residual
    )
