"""G-SimCLR's denoising autoencoder, trained on the training core, and its pseudo-labels."""

from __future__ import annotations

import pytest
import torch

from contrastkit.eval import clustering_accuracy
from contrastkit.train.autoencoder import gsimclr_pseudo_labels, train_denoising_autoencoder
from contrastkit.train.core import NonFiniteLossError


def _blobs(n_per: int, k: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 4
    y = torch.arange(k).repeat_interleave(n_per)
    return centres[y] + torch.randn(k * n_per, dim, generator=g), y


def _weights_sums(model: torch.nn.Module) -> tuple[float, float]:
    values = [v.double() for v in model.state_dict().values()]
    return float(sum(v.sum() for v in values)), float(sum(v.abs().sum() for v in values))


def test_training_matches_the_hand_written_loop() -> None:
    """Epoch losses and weights recorded from the hand-written Adam loop (before the core)."""
    g = torch.Generator().manual_seed(11)
    images = torch.rand(64, 1, 8, 8, generator=g)
    model, losses = train_denoising_autoencoder(
        images, epochs=3, batch_size=16, seed=3, latent_dim=8
    )
    expected = [0.0821711290627718, 0.08215235359966755, 0.08212282881140709]
    assert losses == pytest.approx(expected, abs=1e-6)
    assert _weights_sums(model) == pytest.approx((13.444235208274563, 1572.7946590642737), abs=1e-3)
    vectors = torch.randn(50, 10, generator=g)  # MLP, a last batch of 2
    model, losses = train_denoising_autoencoder(
        vectors, epochs=2, batch_size=16, seed=5, latent_dim=4, noise_std=0.1, lr=3e-3
    )
    assert losses == pytest.approx([1.0801394987106323, 1.0205307507514954], abs=1e-6)
    assert _weights_sums(model) == pytest.approx((-15.732037242938532, 873.1036873070698), abs=1e-3)


def test_dae_training_lowers_loss_and_is_seeded() -> None:
    x = torch.rand(64, 1, 8, 8)
    state = torch.random.get_rng_state()
    m1, l1 = train_denoising_autoencoder(x, epochs=4, batch_size=16, seed=3, latent_dim=8)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    _, l2 = train_denoising_autoencoder(x, epochs=4, batch_size=16, seed=3, latent_dim=8)
    assert l1 == l2 and l1[-1] < l1[0]
    assert not m1.training


def test_non_finite_loss_stops_training() -> None:
    x = torch.full((8, 4), 1e25)  # finite input whose squared error overflows float32
    with pytest.raises(NonFiniteLossError, match="denoising-autoencoder training stopped"):
        train_denoising_autoencoder(x, epochs=1, batch_size=4)


def test_bad_arguments() -> None:
    x = torch.rand(8, 4)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        train_denoising_autoencoder(x, epochs=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        train_denoising_autoencoder(x, batch_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        train_denoising_autoencoder(torch.full((4, 2), float("nan")))
    with pytest.raises(TypeError, match="floating"):
        train_denoising_autoencoder(torch.ones(4, 2, dtype=torch.long))


def test_gsimclr_pseudo_labels_find_blobs() -> None:
    x, y = _blobs(30, 4, 12)
    pl = gsimclr_pseudo_labels(x, 4, epochs=30, batch_size=32, latent_dim=8, seed=0, noise_std=0.1)
    assert pl.labels.shape == (120,) and pl.latents.shape == (120, 8)
    assert sum(pl.cluster_sizes) == 120 and len(pl.cluster_sizes) == 4
    assert clustering_accuracy(y, pl.labels) > 0.9


def test_gsimclr_pseudo_labels_match_the_hand_written_loop() -> None:
    g = torch.Generator().manual_seed(11)
    images = torch.rand(64, 1, 8, 8, generator=g)
    pl = gsimclr_pseudo_labels(images, 4, epochs=2, batch_size=16, latent_dim=8, seed=1)
    assert pl.dae_losses == pytest.approx([0.08221271820366383, 0.08217035792768002], abs=1e-6)
    assert pl.cluster_sizes == [18, 20, 11, 15]
