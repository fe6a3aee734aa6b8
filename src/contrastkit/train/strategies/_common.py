"""A small single-process contrastive loop with a pluggable batch order, for the strategies.

The trainer in :mod:`contrastkit.train.loop` fixes its batch order (a seeded permutation, sharded
across processes). G-SimCLR and MCL need other orders (cluster-spread batches, cell batches), so
they train with :func:`train_contrastive`, which reuses the trainer's pieces — the model
(:func:`~contrastkit.train.loop.build_model`), the views (:class:`~contrastkit.views.ViewAugment`
and the dataset presets), the loss registry (:func:`~contrastkit.train.loop.build_loss`), the
optimizer and warm-up/cosine schedule (:mod:`contrastkit.train.optim`) and the per-step view seeds
(:func:`~contrastkit.distributed.view_generator`) — but takes the batches from a callable. It has
no checkpoints, no resume and no multi-process support.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.data import ArrayDataset
from contrastkit.distributed import view_generator
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import loss_info
from contrastkit.models import ContrastiveModel
from contrastkit.train.config import FitConfig
from contrastkit.train.loop import build_loss, resolve_device
from contrastkit.train.optim import build_optimizer, build_schedule
from contrastkit.views import ViewAugment, preset_for_dataset

__all__ = [
    "BatchOrder",
    "StrategyResult",
    "batch_label_purity",
    "evaluate_features",
    "random_batches",
    "train_contrastive",
]

#: ``batches(epoch) -> list of index tensors``: the batch order of one epoch.
BatchOrder = Callable[[int], Sequence[Tensor]]


@dataclass
class StrategyResult:
    """What a strategy produced.

    Attributes:
        metrics: Accuracies, timings and settings (JSON-ready).
        model: The trained model (for MCL: the last stage's).
        history: One record per epoch (``loss``, ``seconds``, stage where relevant).
        extras: Strategy-specific objects (pseudo-labels, stage models, ...).
    """

    metrics: dict[str, Any]
    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def random_batches(n: int, batch_size: int, seed: int) -> BatchOrder:
    """SimCLR's order: a seeded permutation per epoch, cut into full batches."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training samples")

    def batches(epoch: int) -> list[Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g)
        return [order[s : s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]

    return batches


def batch_label_purity(batches: Sequence[Tensor], labels: Tensor) -> float:
    """Mean fraction of same-label pairs among the pairs of a batch (in-batch false negatives).

    For random batches over K balanced classes this is about ``1/K``; G-SimCLR aims to lower it,
    MCL's cell batches raise it (negatives share earlier clusters).
    """
    fractions = []
    for b in batches:
        y = labels[b]
        m = y.numel()
        if m < 2:
            continue
        same = int((y[:, None] == y[None, :]).sum()) - m
        fractions.append(same / (m * (m - 1)))
    return float(sum(fractions) / max(len(fractions), 1))


def train_contrastive(
    model: ContrastiveModel,
    data: ArrayDataset,
    config: FitConfig,
    batches: BatchOrder,
    *,
    epochs: int | None = None,
    loss_fn: nn.Module | None = None,
    augment_name: str | None = None,
    tag: str = "",
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` contrastively on ``data`` with the batch order ``batches``.

    Per step: the images of the batch, ``config.views`` augmented views each (seeded by
    ``(config.seed, epoch, step)``), encoder + head, the config's loss (``reduction="none"``,
    averaged), AdamW/SGD/LARS and the warm-up + cosine schedule of ``config`` sized to
    ``epochs * len(batches(0))`` steps. Labels are passed to losses that need them.

    Args:
        model: Encoder + projection head, trained in place.
        data: Training images.
        config: Loss, optimizer, schedule, views, seed, device and threads.
        batches: The batch order of each epoch.
        epochs: Epochs to train (None: ``config.epochs``).
        loss_fn: A loss module to use instead of the config's (``reduction="none"`` or a scalar).
        augment_name: View preset name (None: ``config.augment`` or ``config.data``).
        tag: Added to every epoch record as ``stage`` when not empty.
        log: Called with one line per epoch.

    Returns:
        One record per epoch: ``epoch``, ``loss`` (mean over steps), ``steps``, ``seconds``.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    epochs = config.epochs if epochs is None else epochs
    device = resolve_device(config.device)
    model.to(device)
    channels, height, _ = data.image_shape
    name = augment_name or config.augment or config.data
    augment = ViewAugment(preset_for_dataset(name, channels=channels, image_size=height))
    criterion = (loss_fn if loss_fn is not None else build_loss(config, len(data))).to(device)
    needs_labels = loss_info(config.loss).needs_labels if loss_fn is None else False
    steps_per_epoch = len(batches(0))
    if steps_per_epoch == 0:
        raise ValueError("the batch order yields no batch in epoch 0")
    params = list(model.parameters()) + list(criterion.parameters())
    optimizer = build_optimizer(config, params)
    step_config = FitConfig(**{**config.to_dict(), "epochs": epochs})
    schedule = build_schedule(step_config, optimizer, steps_per_epoch)
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        total, steps = 0.0, 0
        for step, idx in enumerate(batches(epoch)):
            x = data.images[idx].to(device)
            gen = view_generator(seed=config.seed, epoch=epoch, step=step, rank=0)
            views = augment.views(x, config.views, generator=gen)
            b, v = views.shape[:2]
            _, z = model(views.reshape(b * v, *views.shape[2:]))
            z = z.float().reshape(b, v, -1)
            if needs_labels:
                out = criterion(z, data.labels[idx].to(device))
            else:
                out = criterion(z)
            loss = out.mean()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss became {value} at epoch {epoch + 1}, step {step + 1}; lower the "
                    "learning rate or raise the temperature"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            schedule.step()
            total += value
            steps += 1
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": total / max(steps, 1),
            "steps": steps,
            "seconds": time.perf_counter() - start,
        }
        if tag:
            record["stage"] = tag
        history.append(record)
        if log is not None:
            log(
                f"{tag + ' ' if tag else ''}epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f} "
                f"({steps} steps, {record['seconds']:.1f} s)"
            )
    return history


def evaluate_features(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int = 20,
    knn_temperature: float = 0.07,
) -> dict[str, float]:
    """kNN and linear-probe accuracy of precomputed features (as the trainer reports them)."""
    knn = knn_accuracy(
        train_features, train_labels, test_features, test_labels, k=k, temperature=knn_temperature
    )
    probe = linear_probe(train_features, train_labels, test_features, test_labels)
    return {
        "knn_acc": float(knn),
        "linear_acc": float(probe.accuracy),
        "feature_dim": int(train_features.shape[1]),
    }


def encoder_features(encoders: Sequence[nn.Module], images: Tensor) -> Tensor:
    """Features of several encoders, each L2-normalised, concatenated (MCL's integration)."""
    parts = [F.normalize(extract_features(e, images), dim=1) for e in encoders]
    return torch.cat(parts, dim=1)
