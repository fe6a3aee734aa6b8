"""A small (2+1)-D convolutional encoder for short video clips.

:class:`VideoEncoder` maps clips ``(B, T, C, H, W)`` to ``(B, out_dim)`` features. Each stage is a
spatial ``1 x 3 x 3`` convolution (stride 2 in space) then a temporal ``3 x 1 x 1`` convolution,
each followed by batch norm and ReLU, as the R(2+1)D factorisation of Tran et al., "A Closer Look at
Spatiotemporal Convolutions for Action Recognition" (CVPR 2018); global average pooling over time
and space gives the features. ``temporal=False`` drops the temporal convolutions: every frame is
encoded alone and the features are averaged over time, a frame-only baseline that cannot see the
order of the frames (so not the direction of a motion).

Example:
    >>> import torch
    >>> enc = VideoEncoder(in_channels=1, width=8)
    >>> enc(torch.rand(2, 4, 1, 16, 16)).shape
    torch.Size([2, 32])
"""

from __future__ import annotations

from torch import Tensor, nn

from contrastkit._validation import check_int

__all__ = ["VideoEncoder"]


def _stage(c_in: int, c_out: int, temporal: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv3d(c_in, c_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    ]
    if temporal:
        layers += [
            nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(c_out),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class VideoEncoder(nn.Module):
    """(2+1)-D conv encoder of clips ``(B, T, C, H, W)``, or frame-only with ``temporal=False``.

    Stage ``i`` has ``width * 2**i`` channels and halves the frame side; the output has
    ``out_dim = width * 2**(stages - 1)`` features.

    Args:
        in_channels: Channels per frame.
        width: Channels of the first stage.
        stages: Number of stages (each halves ``H`` and ``W``).
        temporal: Include the temporal convolutions (False: a per-frame encoder averaged over time).
    """

    def __init__(
        self, *, in_channels: int = 1, width: int = 16, stages: int = 3, temporal: bool = True
    ) -> None:
        super().__init__()
        c_in = check_int(in_channels, "in_channels", minimum=1)
        width = check_int(width, "width", minimum=1)
        stages = check_int(stages, "stages", minimum=1)
        self.temporal = bool(temporal)
        blocks = []
        for i in range(stages):
            blocks.append(_stage(c_in, width * 2**i, self.temporal))
            c_in = width * 2**i
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = c_in

    def forward(self, clips: Tensor) -> Tensor:
        if not isinstance(clips, Tensor) or clips.dim() != 5:
            raise ValueError(
                f"clips must be a tensor (B, T, C, H, W), got shape {tuple(getattr(clips, 'shape', ()))}"
            )
        x = self.blocks(clips.transpose(1, 2))  # (B, C, T, H, W)
        out: Tensor = x.mean(dim=(2, 3, 4))
        return out

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, temporal={self.temporal}"
