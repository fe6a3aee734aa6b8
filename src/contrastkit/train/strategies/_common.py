"""A small single-process contrastive loop with a pluggable batch order, for the strategies.

The trainer in :mod:`contrastkit.train.loop` fixes its batch order (a seeded permutation, sharded
across processes). G-SimCLR and MCL need other orders (cluster-spread batches, cell batches), so
they train with :func:`train_contrastive`, which reuses the trainer's pieces — the model
(:func:`~contrastkit.train.loop.build_model`), the views (:class:`~contrastkit.views.ViewAugment`
and the dataset presets), the loss registry (:func:`~contrastkit.train.loop.build_loss`), the
optimizer and warm-up/cosine schedule (:mod:`contrastkit.train.optim`) and the per-step view seeds
(:func:`~contrastkit.distributed.view_generator`) and the training core
(:class:`~contrastkit.train.core.TrainingCore`, in fp32) — but takes the batches from a callable.
It has no checkpoints, no resume and no multi-process support.
"""

from __future__ import annotations

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
from contrastkit.train.core import StepOutput, TrainingCore, require_finite, resolve_device
from contrastkit.train.loop import build_loss
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
    ``epochs * len(batches(0))`` steps. Labels are passed to losses that need them. The steps run
    on :class:`~contrastkit.train.core.TrainingCore` in fp32 (``config.precision`` is not used).

    Args:
        model: Encoder + projection head, trained in place.
        data: Training images.
        config: Loss, optimizer, schedule, views, seed, device, threads and gradient clipping.
        batches: The batch order of each epoch.
        epochs: Epochs to train (None: ``config.epochs``).
        loss_fn: A loss module to use instead of the config's (``reduction="none"`` or a scalar).
        augment_name: View preset name (None: ``config.augment`` or ``config.data``).
        tag: Added to every epoch record as ``stage`` when not empty.
        log: Called with one line per epoch.

    Returns:
        One record per epoch: ``epoch``, ``loss`` (mean over steps), ``steps``, ``seconds``.

    Raises:
        ValueError: The batch order yields no batch in epoch 0.
        NonFiniteLossError: A step's loss is NaN or infinite.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    epochs = config.epochs if epochs is None else epochs
    device = resolve_device(config.device)
    model.to(device)
    step = _ContrastiveStep.build(model, data, config, device, loss_fn, augment_name)
    steps_per_epoch = len(batches(0))
    if steps_per_epoch == 0:
        raise ValueError("the batch order yields no batch in epoch 0")
    core = _contrastive_core(step, config, epochs, steps_per_epoch, tag)
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        summary = core.run_epoch(
            epoch, enumerate(batches(epoch)), step.for_epoch(epoch), train=[model]
        )
        record = summary.record(**({"stage": tag} if tag else {}))
        history.append(record)
        if log is not None:
            log(
                f"{tag + ' ' if tag else ''}epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f} "
                f"({summary.steps} steps, {record['seconds']:.1f} s)"
            )
    return history


@dataclass(frozen=True)
class _ContrastiveStep:
    """What one step of :func:`train_contrastive` uses: views -> model -> loss."""

    model: ContrastiveModel
    data: ArrayDataset
    config: FitConfig
    device: torch.device
    augment: ViewAugment
    criterion: nn.Module
    needs_labels: bool

    @classmethod
    def build(
        cls,
        model: ContrastiveModel,
        data: ArrayDataset,
        config: FitConfig,
        device: torch.device,
        loss_fn: nn.Module | None,
        augment_name: str | None,
    ) -> _ContrastiveStep:
        """The views of ``augment_name`` (or the config's) and ``loss_fn`` (or the config's)."""
        channels, height, _ = data.image_shape
        name = augment_name or config.augment or config.data
        augment = ViewAugment(preset_for_dataset(name, channels=channels, image_size=height))
        criterion = (loss_fn if loss_fn is not None else build_loss(config, len(data))).to(device)
        needs_labels = loss_info(config.loss).needs_labels if loss_fn is None else False
        return cls(model, data, config, device, augment, criterion, needs_labels)

    def for_epoch(self, epoch: int) -> Callable[[tuple[int, Tensor]], StepOutput]:
        """The step function of ``epoch``: ``(step, indices) -> StepOutput``."""

        def step_fn(batch: tuple[int, Tensor]) -> StepOutput:
            step, idx = batch
            x = self.data.images[idx].to(self.device)
            gen = view_generator(seed=self.config.seed, epoch=epoch, step=step, rank=0)
            views = self.augment.views(x, self.config.views, generator=gen)
            b, v = views.shape[:2]
            _, z = self.model(views.reshape(b * v, *views.shape[2:]))
            z = require_finite(z.float().reshape(b, v, -1))
            if self.needs_labels:
                out = self.criterion(z, self.data.labels[idx].to(self.device))
            else:
                out = self.criterion(z)
            return StepOutput(loss=out.mean())

        return step_fn


def _contrastive_core(
    step: _ContrastiveStep, config: FitConfig, epochs: int, steps_per_epoch: int, tag: str
) -> TrainingCore:
    """The config's optimizer and schedule (sized to ``epochs``) on a fp32 training core."""
    params = list(step.model.parameters()) + list(step.criterion.parameters())
    optimizer = build_optimizer(config, params)
    step_config = FitConfig(**{**config.to_dict(), "epochs": epochs})
    return TrainingCore(
        optimizer,
        schedule=build_schedule(step_config, optimizer, steps_per_epoch),
        device=step.device,
        grad_clip=config.grad_clip,
        name=f"contrastive training ({tag})" if tag else "contrastive training",
    )


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
