"""The denoising autoencoder whose pooled codes G-SimCLR clusters."""

from __future__ import annotations

import pytest
import torch

from contrastkit.models.autoencoder import DenoisingAutoencoder


def test_conv_and_mlp_shapes() -> None:
    conv = DenoisingAutoencoder((1, 8, 8), latent_dim=16)
    assert conv.conv
    x = torch.rand(3, 1, 8, 8)
    assert conv(x).shape == x.shape and conv.encode(x).shape == (3, 16)
    mlp = DenoisingAutoencoder((10,), latent_dim=4)
    assert not mlp.conv and mlp(torch.rand(5, 10)).shape == (5, 10)
    assert mlp.encode(torch.rand(5, 10)).shape == (5, 4)
    assert DenoisingAutoencoder((1, 7, 7)).conv is False  # not divisible by 4: MLP
    with pytest.raises(ValueError, match="expected inputs"):
        conv(torch.rand(2, 1, 4, 4))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        DenoisingAutoencoder(())
    with pytest.raises(ValueError, match="latent_dim must be an int >= 1"):
        DenoisingAutoencoder((4,), latent_dim=0)
    with pytest.raises(TypeError, match="latent_dim must be an int"):
        DenoisingAutoencoder((4,), latent_dim=2.5)  # type: ignore[arg-type]
