"""A 1-D convolutional encoder for time series ``(B, C, T)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["Conv1dEncoder"]


class Conv1dEncoder(nn.Module):
    """Fully convolutional 1-D encoder: ``[Conv1d -> BatchNorm1d -> ReLU] x k -> global avg pool``.

    The default is the FCN time-series baseline of Wang, Yan & Oates, "Time Series Classification
    from Scratch with Deep Neural Networks: A Strong Baseline" (2017): three blocks of 128, 256 and
    128 filters with kernel sizes 8, 5 and 3, stride 1, "same" padding, then global average pooling
    over time; the representation has ``widths[-1]`` entries. Any series length works (the length
    only has to survive the strides).

    Args:
        in_channels: Channels (variables) of the series.
        widths: Filters of each block.
        kernel_sizes: Kernel size of each block (same length as ``widths``).
        strides: Stride of each block (default all 1).

    Attributes:
        out_dim: ``widths[-1]``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        widths: Sequence[int] = (128, 256, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        ws, ks = list(widths), list(kernel_sizes)
        ss = list(strides) if strides is not None else [1] * len(ws)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1; got {in_channels!r}")
        if not ws or len(ks) != len(ws) or len(ss) != len(ws):
            raise ValueError(
                f"widths, kernel_sizes and strides must be non-empty and of equal length; got "
                f"widths={ws}, kernel_sizes={ks}, strides={ss}"
            )
        for name, vals in (("widths", ws), ("kernel_sizes", ks), ("strides", ss)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
                raise ValueError(f"{name} must hold ints >= 1; got {vals}")
        layers: list[nn.Module] = []
        c = in_channels
        for w, k, s in zip(ws, ks, ss, strict=True):
            # "same" padding for odd and even kernels at stride 1 (even kernels pad one more on
            # the right); with a stride the output has ceil(T / s) steps.
            left, right = (k - 1) // 2, k // 2
            layers += [
                nn.ConstantPad1d((left, right), 0.0),
                nn.Conv1d(c, w, k, stride=s, bias=False),
                nn.BatchNorm1d(w),
                nn.ReLU(inplace=True),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        """Encode series ``(B, in_channels, T)`` into ``(B, out_dim)``."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv1dEncoder expects series of shape (B, {self.in_channels}, T); got "
                f"{tuple(x.shape)}"
            )
        return torch.mean(self.features(x), dim=-1)
