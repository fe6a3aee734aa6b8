"""A small denoising autoencoder whose pooled latent code feeds G-SimCLR's k-means.

It is trained by :func:`contrastkit.train.autoencoder.train_denoising_autoencoder` and clustered by
:func:`contrastkit.train.autoencoder.gsimclr_pseudo_labels`.

>>> import torch
>>> model = DenoisingAutoencoder((1, 8, 8), latent_dim=16)
>>> x = torch.rand(3, 1, 8, 8)
>>> model(x).shape, model.encode(x).shape
(torch.Size([3, 1, 8, 8]), torch.Size([3, 16]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from contrastkit._validation import check_int

__all__ = ["DenoisingAutoencoder"]


class DenoisingAutoencoder(nn.Module):
    """A small denoising autoencoder whose pooled latent code feeds G-SimCLR's k-means.

    For images ``(C, H, W)`` with ``H`` and ``W`` divisible by 4 it is convolutional:
    ``Conv(C->32, s1) -> Conv(32->64, s2) -> Conv(64->latent, s2)`` (3x3, ReLU) and the mirror
    image with transposed convolutions, ending in a sigmoid (inputs in ``[0, 1]``); the code of a
    sample is the latent feature map **globally average-pooled** (G-SimCLR's "retrieval" layer +
    global average pooling). Other inputs (vectors, or images of other sizes) use an MLP
    ``D -> 256 -> latent -> 256 -> D`` with a linear output.

    The G-SimCLR notebook's exact architecture and noise level are not reproduced (unverified
    against it); this keeps the structure (conv DAE, pooled latent).

    Paper: Chakraborty et al., "G-SimCLR: Self-Supervised Contrastive Learning with Guided
    Projection via Pseudo Labelling" (2020).

    Args:
        input_shape: Shape of one sample, e.g. ``(1, 28, 28)`` or ``(64,)``.
        latent_dim: Channels (conv) or units (MLP) of the code.

    Raises:
        ValueError: ``input_shape`` is empty or holds a size < 1, or ``latent_dim < 1``.
        TypeError: ``latent_dim`` is not an int.
    """

    def __init__(self, input_shape: Sequence[int], *, latent_dim: int = 64) -> None:
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape must be non-empty positive sizes; got {input_shape!r}")
        self.input_shape = shape
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)
        self.conv = len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0
        if self.conv:
            self.encoder, self.decoder = _conv_halves(shape[0], self.latent_dim)
        else:
            self.encoder, self.decoder = _mlp_halves(math.prod(shape), self.latent_dim)

    def _check(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected inputs of shape (B, {', '.join(map(str, self.input_shape))}); got "
                f"{tuple(x.shape)}"
            )
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x`` (same shape)."""
        h = self.encoder(self._check(x))
        out: Tensor = self.decoder(h)
        return out.reshape(x.shape)

    def encode(self, x: Tensor) -> Tensor:
        """The pooled latent code ``(B, latent_dim)``."""
        h: Tensor = self.encoder(self._check(x))
        return h.mean(dim=(2, 3)) if self.conv else h


def _conv_halves(channels: int, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder of the convolutional autoencoder (two stride-2 stages)."""
    encoder = nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, latent_dim, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
    )
    decoder = nn.Sequential(
        nn.ConvTranspose2d(latent_dim, 64, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, channels, 3, padding=1),
        nn.Sigmoid(),
    )
    return encoder, decoder


def _mlp_halves(dim: int, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder of the MLP autoencoder ``D -> 256 -> latent -> 256 -> D``."""
    encoder = nn.Sequential(
        nn.Flatten(),
        nn.Linear(dim, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, latent_dim),
    )
    decoder = nn.Sequential(
        nn.ReLU(),
        nn.Linear(latent_dim, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, dim),
    )
    return encoder, decoder
