"""Pseudo-labels: G-SimCLR's denoising autoencoder + k-means, MCL's stage clustering."""

from __future__ import annotations

import pytest
import torch

from contrastkit.data.pseudo_labels import (
    DenoisingAutoencoder,
    gsimclr_pseudo_labels,
    kmeans_labels,
    stage_clusters,
    train_denoising_autoencoder,
)
from contrastkit.eval import clustering_accuracy


def _blobs(n_per: int, k: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 4
    y = torch.arange(k).repeat_interleave(n_per)
    return centres[y] + torch.randn(k * n_per, dim, generator=g), y


def test_conv_and_mlp_shapes() -> None:
    conv = DenoisingAutoencoder((1, 8, 8), latent_dim=16)
    assert conv.conv
    x = torch.rand(3, 1, 8, 8)
    assert conv(x).shape == x.shape and conv.encode(x).shape == (3, 16)
    mlp = DenoisingAutoencoder((10,), latent_dim=4)
    assert not mlp.conv and mlp(torch.rand(5, 10)).shape == (5, 10)
    assert DenoisingAutoencoder((1, 7, 7)).conv is False  # not divisible by 4: MLP
    with pytest.raises(ValueError, match="expected inputs"):
        conv(torch.rand(2, 1, 4, 4))


def test_dae_training_lowers_loss_and_is_seeded() -> None:
    x = torch.rand(64, 1, 8, 8)
    state = torch.random.get_rng_state()
    m1, l1 = train_denoising_autoencoder(x, epochs=4, batch_size=16, seed=3, latent_dim=8)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    _, l2 = train_denoising_autoencoder(x, epochs=4, batch_size=16, seed=3, latent_dim=8)
    assert l1 == l2 and l1[-1] < l1[0]
    assert not m1.training


def test_gsimclr_pseudo_labels_find_blobs() -> None:
    x, y = _blobs(30, 4, 12)
    pl = gsimclr_pseudo_labels(x, 4, epochs=30, batch_size=32, latent_dim=8, seed=0, noise_std=0.1)
    assert pl.labels.shape == (120,) and pl.latents.shape == (120, 8)
    assert sum(pl.cluster_sizes) == 120 and len(pl.cluster_sizes) == 4
    assert clustering_accuracy(y, pl.labels) > 0.9


def test_kmeans_labels_and_errors() -> None:
    x, y = _blobs(20, 3, 5)
    labels, centres = kmeans_labels(x, 3, seed=0)
    assert centres.shape == (3, 5) and clustering_accuracy(y, labels) == 1.0
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_labels(x, 61)
    with pytest.raises(TypeError, match="floating"):
        kmeans_labels(torch.ones(4, 2, dtype=torch.long), 2)


def test_stage_clusters_use_directions_only() -> None:
    # two directions, wildly different norms: normalised clustering follows the direction
    g = torch.Generator().manual_seed(0)
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.arange(2).repeat(50)
    scale = torch.rand(100, 1, generator=g) * 100 + 0.1
    x = d[y] * scale + 0.01 * torch.randn(100, 2, generator=g)
    c = stage_clusters(x, 2, seed=0)
    assert c.dtype == torch.int64 and clustering_accuracy(y, c) == 1.0
    assert torch.equal(c, stage_clusters(x, 2, seed=0))
    with pytest.raises(ValueError, match="k must be"):
        stage_clusters(x, 101)
    with pytest.raises(ValueError, match="finite"):
        stage_clusters(torch.full((4, 2), float("nan")), 2)
