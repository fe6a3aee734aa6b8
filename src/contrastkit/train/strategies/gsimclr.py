"""G-SimCLR: SimCLR whose batches spread over pseudo-label clusters (docs/methods.md 3.8).

Pseudo-labels come from k-means (``K = batch size``) on a denoising autoencoder's pooled latents
(:func:`~contrastkit.train.autoencoder.gsimclr_pseudo_labels`); batches follow
:class:`~contrastkit.data.samplers.ClusterSpreadBatchSampler`, so two samples of one cluster —
likely of one class — rarely meet as negatives. :func:`fit_gsimclr` trains it and, with the same
initialisation, loss, views, optimizer and number of epochs, plain SimCLR with random batches.

Paper: Chakraborty et al., "G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection
via Pseudo Labelling" (2020). The reference iterates without shuffling (``reshuffle=False``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from contrastkit.data.samplers import ClusterSpreadBatchSampler
from contrastkit.train.autoencoder import gsimclr_pseudo_labels
from contrastkit.train.config import FitConfig
from contrastkit.train.loop import build_model, evaluate_encoder
from contrastkit.train.strategies._common import (
    StrategyResult,
    batch_label_purity,
    random_batches,
    train_contrastive,
)

__all__ = ["fit_gsimclr"]


def fit_gsimclr(
    config: FitConfig,
    *,
    dae_epochs: int = 5,
    dae_latent_dim: int = 64,
    dae_noise_std: float = 0.2,
    n_clusters: int | None = None,
    reshuffle: bool = True,
    baseline: bool = True,
    log: Callable[[str], None] | None = None,
) -> StrategyResult:
    """Train G-SimCLR on ``config.data`` (and SimCLR with the same budget), then evaluate both.

    Args:
        config: The run (loss, data, epochs, batch size, optimizer, views, seed, device ...).
        dae_epochs: Epochs of the denoising autoencoder.
        dae_latent_dim: Channels of its latent code.
        dae_noise_std: Standard deviation of its input noise.
        n_clusters: k-means clusters (None: ``config.batch_size``, as G-SimCLR).
        reshuffle: Reshuffle members and cluster order every epoch (False: reference order).
        baseline: Also train SimCLR with random batches from the same initialisation.
        log: Called with progress lines.

    Returns:
        A :class:`StrategyResult`; ``metrics`` has ``gsimclr_knn_acc``, ``gsimclr_linear_acc``,
        ``simclr_*`` (with ``baseline``), the same-label pair fractions of both batch orders, the
        cluster sizes and the timings; ``extras["pseudo_labels"]`` holds the pseudo-labels.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    split = config.load_data()
    train, test = split.train, split.test
    k = config.batch_size if n_clusters is None else n_clusters
    t0 = time.perf_counter()
    pl = gsimclr_pseudo_labels(
        train.images,
        k,
        latent_dim=dae_latent_dim,
        epochs=dae_epochs,
        noise_std=dae_noise_std,
        seed=config.seed,
    )
    dae_seconds = time.perf_counter() - t0
    if log is not None:
        log(f"pseudo-labels: {k} clusters, sizes {min(pl.cluster_sizes)}..{max(pl.cluster_sizes)}")
    sampler = ClusterSpreadBatchSampler(
        pl.labels, config.batch_size, reshuffle=reshuffle, seed=config.seed
    )
    channels, size, _ = train.image_shape
    metrics: dict[str, Any] = {
        "n_clusters": k,
        "cluster_size_min": min(pl.cluster_sizes),
        "cluster_size_max": max(pl.cluster_sizes),
        "dae_seconds": dae_seconds,
        "dae_final_loss": pl.dae_losses[-1],
        "gsimclr_same_label_pairs": batch_label_purity(sampler.batches(0), train.labels),
        "gsimclr_same_cluster_batches": sum(
            int(torch.unique(pl.labels[b]).numel() < b.numel()) for b in sampler.batches(0)
        )
        / len(sampler),
    }
    torch.manual_seed(config.seed)
    model = build_model(config, channels, size)
    init = {k_: v.clone() for k_, v in model.state_dict().items()}
    t0 = time.perf_counter()
    history = train_contrastive(model, train, config, sampler.batches, tag="gsimclr", log=log)
    metrics["gsimclr_train_seconds"] = time.perf_counter() - t0
    for key, value in evaluate_encoder(model.encoder, train, test).items():
        metrics[f"gsimclr_{key}"] = value
    extras: dict[str, Any] = {"pseudo_labels": pl}
    if baseline:
        order = random_batches(len(train), config.batch_size, config.seed)
        metrics["simclr_same_label_pairs"] = batch_label_purity(order(0), train.labels)
        base = build_model(config, channels, size)
        base.load_state_dict(init)
        t0 = time.perf_counter()
        history += train_contrastive(base, train, config, order, tag="simclr", log=log)
        metrics["simclr_train_seconds"] = time.perf_counter() - t0
        for key, value in evaluate_encoder(base.encoder, train, test).items():
            metrics[f"simclr_{key}"] = value
        extras["simclr_model"] = base
    metrics.update({"epochs": config.epochs, "batch_size": config.batch_size, "data": config.data})
    metrics.update({"in_channels": channels, "image_size": size})
    return StrategyResult(metrics=metrics, model=model, history=history, extras=extras)
