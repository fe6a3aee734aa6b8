"""G-SimCLR's pseudo-labels: a denoising autoencoder trained on the core, then k-means on its codes.

A denoising autoencoder (:class:`~contrastkit.models.autoencoder.DenoisingAutoencoder`) is trained
briefly on the unlabelled data (:func:`train_denoising_autoencoder`, on the
:class:`~contrastkit.train.core.TrainingCore`); its latent codes (globally average-pooled) are
clustered with k-means, ``K = batch size`` (:func:`~contrastkit.data.pseudo_labels.kmeans_labels`);
the clusters feed :class:`~contrastkit.data.samplers.ClusterSpreadBatchSampler`.
:func:`gsimclr_pseudo_labels` does both steps.

Everything is seeded and leaves torch's global random state as it was.

Paper: Chakraborty et al., "G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection
via Pseudo Labelling" (2020).

>>> import torch
>>> x = torch.rand(32, 1, 8, 8)
>>> model, losses = train_denoising_autoencoder(x, epochs=2, batch_size=16, latent_dim=4)
>>> len(losses), model.training
(2, False)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_int, check_positive
from contrastkit.data.pseudo_labels import as_float_samples, kmeans_labels
from contrastkit.models.autoencoder import DenoisingAutoencoder
from contrastkit.train.core import StepOutput, TrainingCore

__all__ = ["PseudoLabels", "gsimclr_pseudo_labels", "train_denoising_autoencoder"]


def train_denoising_autoencoder(
    data: Tensor | np.ndarray,
    *,
    latent_dim: int = 64,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    noise_std: float = 0.2,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[DenoisingAutoencoder, list[float]]:
    """Train a :class:`DenoisingAutoencoder` to reconstruct ``data`` from Gaussian-noised copies.

    Adam, mean squared error against the clean input, shuffled mini-batches; the noise is
    ``N(0, noise_std^2)`` (clamped to ``[0, 1]`` for conv models, whose inputs are images in
    ``[0, 1]``). Seeded; torch's global random state is restored afterwards.

    Args:
        data: ``(N, ...)`` floating-point samples (images ``(N, C, H, W)`` or vectors ``(N, D)``).
        latent_dim: Channels (conv) or units (MLP) of the code.
        epochs: Passes over ``data``.
        batch_size: Samples per optimizer step.
        lr: Adam learning rate.
        noise_std: Standard deviation of the input noise (0: a plain autoencoder).
        seed: Seed of the initialisation, the batch order and the noise.
        device: Where to train (None: CPU).

    Returns:
        The trained model (eval mode, on ``device``) and the mean loss of every epoch.

    Raises:
        TypeError: ``data`` is not a floating-point tensor or array, or an int argument is not
            an int.
        ValueError: An argument is out of range or ``data`` holds NaN or inf.
        NonFiniteLossError: The reconstruction loss became NaN or infinite.
    """
    x = as_float_samples(data, "data")
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    check_positive(lr, "lr")
    check_positive(noise_std, "noise_std", allow_zero=True)
    seed = check_int(seed, "seed", minimum=0)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DenoisingAutoencoder(tuple(x.shape[1:]), latent_dim=latent_dim).to(dev)
        core = TrainingCore(
            torch.optim.Adam(model.parameters(), lr=lr),
            device=dev,
            name="denoising-autoencoder training",
        )
        g = torch.Generator().manual_seed(seed)

        def step(batch: tuple[Tensor, Tensor]) -> StepOutput:
            clean, noisy = batch
            loss = F.mse_loss(model(noisy), clean)
            return StepOutput(loss=loss, samples=clean.shape[0])

        for epoch in range(epochs):
            batches = _noisy_batches(x, batch_size, noise_std, g, clamp=model.conv, device=dev)
            losses.append(core.run_epoch(epoch, batches, step, train=[model]).loss)
    model.eval()
    return model, losses


def _noisy_batches(
    x: Tensor,
    batch_size: int,
    noise_std: float,
    generator: torch.Generator,
    *,
    clamp: bool,
    device: torch.device,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of shuffled ``(clean, noisy)`` batches on ``device``.

    The order is drawn from ``generator`` when the epoch starts (this call), the noise of each
    batch when it is reached, so the draws interleave as in a hand-written loop.
    """
    order = torch.randperm(x.shape[0], generator=generator)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        for s in range(0, x.shape[0], batch_size):
            clean = x[order[s : s + batch_size]].float()
            noisy = clean + noise_std * torch.randn(clean.shape, generator=generator)
            if clamp:
                noisy = noisy.clamp(0.0, 1.0)
            yield clean.to(device), noisy.to(device)

    return batches()


@dataclass
class PseudoLabels:
    """G-SimCLR pseudo-labels and how they were made.

    Attributes:
        labels: ``(N,)`` int64 cluster ids in ``[0, n_clusters)``.
        latents: ``(N, latent_dim)`` pooled autoencoder codes that were clustered.
        dae_losses: Mean reconstruction loss of every autoencoder epoch.
        cluster_sizes: Members of each cluster.
    """

    labels: Tensor
    latents: Tensor
    dae_losses: list[float] = field(default_factory=list)
    cluster_sizes: list[int] = field(default_factory=list)


def gsimclr_pseudo_labels(
    data: Tensor | np.ndarray,
    n_clusters: int,
    *,
    latent_dim: int = 64,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    noise_std: float = 0.2,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> PseudoLabels:
    """G-SimCLR's pseudo-labels: train a denoising autoencoder, k-means on its pooled latents.

    Use ``n_clusters = batch size`` of the contrastive training (G-SimCLR: 64 on CIFAR-10), so that
    :class:`~contrastkit.data.samplers.ClusterSpreadBatchSampler` can put one sample of each cluster
    in a batch.

    Args:
        data: ``(N, ...)`` floating-point samples.
        n_clusters: k-means clusters.
        latent_dim: Size of the autoencoder's code.
        epochs: Autoencoder epochs.
        batch_size: Autoencoder batch size.
        lr: Autoencoder learning rate (Adam).
        noise_std: Standard deviation of the autoencoder's input noise.
        seed: Seed of the autoencoder and of k-means.
        device: Where to train (None: CPU).

    Returns:
        The labels, the latents they cluster, the autoencoder's epoch losses and the cluster sizes.
    """
    x = as_float_samples(data, "data")
    model, losses = train_denoising_autoencoder(
        x,
        latent_dim=latent_dim,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        noise_std=noise_std,
        seed=seed,
        device=device,
    )
    dev = next(model.parameters()).device
    with torch.no_grad():
        latents = torch.cat(
            [model.encode(x[s : s + 1024].float().to(dev)).cpu() for s in range(0, len(x), 1024)]
        )
    labels, _ = kmeans_labels(latents, n_clusters, seed=seed)
    sizes = torch.bincount(labels, minlength=n_clusters).tolist()
    return PseudoLabels(labels=labels, latents=latents, dae_losses=losses, cluster_sizes=sizes)
