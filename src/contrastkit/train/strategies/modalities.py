"""Contrastive recipes for time series and tables, measured against the raw input.

``contrastkit fit-arrays DATA`` (:mod:`contrastkit.cli.arrays`) runs :func:`fit_modality` from the
command line (a UCR name, ``mnist1d``, a scikit-learn table or the user's own ``.npz``).

- Series ``(N, C, T)``: :class:`~contrastkit.models.Conv1dEncoder` (the FCN baseline) with
  :class:`~contrastkit.views.SeriesAugment` views (TS-TCC-style permutation, scaling, jitter).
- Tables ``(N, F)``: :class:`~contrastkit.models.MLPEncoder` with SCARF views
  (:class:`~contrastkit.views.ScarfCorruption`, the training rows as marginals; view 0 is the
  original row, as SCARF).

Both train NT-Xent (:class:`~contrastkit.losses.InfoNCE`) with AdamW and report the linear-probe
(and kNN) accuracy of the frozen features next to two baselines: a linear probe on the **raw
input** (flattened) and on the features of the **same encoder at random initialisation**.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.data.arrays import check_seed
from contrastkit.data.series import SeriesSplit, load_series_dataset
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import InfoNCE
from contrastkit.models import ContrastiveModel, Conv1dEncoder, MLPEncoder, MLPHead
from contrastkit.train.core import StepOutput, TrainingCore, require_finite
from contrastkit.train.strategies._common import StrategyResult
from contrastkit.views import ScarfCorruption, SeriesAugment

__all__ = ["fit_modality"]


def _views_fn(
    split: SeriesSplit, series_augment: SeriesAugment | None
) -> Callable[[Tensor, torch.Generator], Tensor]:
    if split.kind == "series":
        aug = series_augment if series_augment is not None else SeriesAugment()

        def series_views(x: Tensor, g: torch.Generator) -> Tensor:
            return aug.views(x, 2, generator=g)

        return series_views
    scarf = ScarfCorruption(split.x_train)

    def table_views(x: Tensor, g: torch.Generator) -> Tensor:
        return scarf.views(x, 2, generator=g)

    return table_views


def _encoder(split: SeriesSplit, width: int) -> Conv1dEncoder | MLPEncoder:
    if split.kind == "series":
        return Conv1dEncoder(
            split.x_train.shape[1], widths=(width // 2, width, width // 2), kernel_sizes=(8, 5, 3)
        )
    return MLPEncoder(split.x_train.shape[1], hidden_dims=(width, width))


def _probe(train_f: Tensor, split: SeriesSplit, test_f: Tensor) -> float:
    return float(linear_probe(train_f, split.y_train, test_f, split.y_test).accuracy)


def fit_modality(
    data: str | SeriesSplit,
    *,
    epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    temperature: float = 0.2,
    width: int = 128,
    seed: int = 0,
    device: torch.device | str | None = None,
    root: str | None = None,
    series_augment: SeriesAugment | None = None,
    log: Callable[[str], None] | None = None,
) -> StrategyResult:
    """Train a contrastive encoder on a series or tabular dataset and compare with the raw input.

    The steps run on :class:`~contrastkit.train.core.TrainingCore` (fp32).

    Args:
        data: A :class:`~contrastkit.data.series.SeriesSplit` or a name for
            :func:`~contrastkit.data.series.load_series_dataset` (``"GunPoint"``, ``"mnist1d"``,
            ``"wine"``, an ``.npz`` path, ...).
        epochs: Training epochs (the last incomplete batch of an epoch is dropped; with fewer
            training samples than ``batch_size`` the batch is the whole set).
        batch_size: Samples per step.
        lr: AdamW learning rate (cosine decay to 0).
        weight_decay: AdamW weight decay.
        temperature: NT-Xent temperature.
        width: Encoder width (Conv1d: ``(w/2, w, w/2)`` filters; MLP: two layers of ``w``).
        seed: Seed of the initialisation, batches and views.
        device: Where to train (None: CPU).
        root: Folder for UCR ``.ts`` files (None: the sktime wheel's).
        series_augment: The series views (None: ``SeriesAugment()``, TS-TCC's strong view;
            ``SeriesAugment(permute_p=0.0)`` is its weak view, scaling + jitter).
        log: Called with progress lines (every 10th epoch and the last).

    Returns:
        A :class:`StrategyResult`; ``metrics`` holds ``linear_acc``, ``knn_acc`` (k = min(20, N // 10)),
        ``raw_linear_acc``, ``random_init_linear_acc``, sizes and timings.

    Raises:
        ValueError: Fewer than 2 training samples, or bad data.
        NonFiniteLossError: A step's loss is NaN or infinite.
    """
    seed = check_seed(seed)  # before the data are read
    split = (
        data if isinstance(data, SeriesSplit) else load_series_dataset(data, root=root, seed=seed)
    )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    n = split.x_train.shape[0]
    b = min(batch_size, n)
    if b < 2:
        raise ValueError(f"contrastive training needs at least 2 training samples, got {n}")
    views = _views_fn(split, series_augment)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = _encoder(split, width)
        head = MLPHead(encoder.out_dim, hidden_dim=width, out_dim=min(64, width))
    model = ContrastiveModel(encoder, head).to(dev)
    random_encoder = copy.deepcopy(encoder).eval()
    core = _core(model, lr=lr, weight_decay=weight_decay, total=epochs * (n // b), device=dev)
    step_fn = _step_fn(model, InfoNCE(temperature=temperature), views, dev)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)  # before the epoch's views draw from ``gen``
        batches = ((split.x_train[order[s * b : (s + 1) * b]], gen) for s in range(n // b))
        summary = core.run_epoch(epoch, batches, step_fn, train=[model])
        history.append({"epoch": epoch + 1, "loss": summary.loss})
        if log is not None and ((epoch + 1) % 10 == 0 or epoch + 1 == epochs):
            log(f"{split.name} epoch {epoch + 1}/{epochs}: loss {summary.loss:.4f}")
    seconds = time.perf_counter() - start
    training = {"epochs": epochs, "batch_size": b, "train_seconds": seconds}
    metrics = _metrics(split, model, random_encoder, training, history)
    return StrategyResult(metrics=metrics, model=model, history=history)


def _core(
    model: ContrastiveModel, *, lr: float, weight_decay: float, total: int, device: torch.device
) -> TrainingCore:
    """AdamW with a cosine decay to 0 over ``total`` steps, on a fp32 training core."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / max(total, 1)))
    )
    return TrainingCore(opt, schedule=sched, device=device, name="fit-arrays training")


def _step_fn(
    model: ContrastiveModel,
    loss_fn: nn.Module,
    views: Callable[[Tensor, torch.Generator], Tensor],
    device: torch.device,
) -> Callable[[tuple[Tensor, torch.Generator]], StepOutput]:
    """One step: two views of the batch (drawn from its generator) -> model -> NT-Xent."""

    def step_fn(batch: tuple[Tensor, torch.Generator]) -> StepOutput:
        xb, gen = batch
        v = views(xb, gen).to(device)
        flat = v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])
        _, z = model(flat)
        return StepOutput(loss=loss_fn(require_finite(z.reshape(v.shape[0], v.shape[1], -1))))

    return step_fn


def _metrics(
    split: SeriesSplit,
    model: ContrastiveModel,
    random_encoder: nn.Module,
    training: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """Sizes, the linear-probe / kNN accuracy of the trained, raw and random-init features, and
    the ``training`` settings and timing (``epochs``, ``batch_size``, ``train_seconds``)."""
    n = split.x_train.shape[0]
    tr = extract_features(model.encoder, split.x_train)
    te = extract_features(model.encoder, split.x_test)
    k = min(20, max(1, n // 10))
    return {
        "data": split.name,
        "kind": split.kind,
        "train_size": n,
        "test_size": int(split.x_test.shape[0]),
        "num_classes": split.num_classes,
        "input_shape": list(split.x_train.shape[1:]),
        "linear_acc": _probe(tr, split, te),
        "knn_acc": float(knn_accuracy(tr, split.y_train, te, split.y_test, k=k, temperature=0.07)),
        "raw_linear_acc": _probe(
            split.x_train.reshape(n, -1), split, split.x_test.reshape(split.x_test.shape[0], -1)
        ),
        "random_init_linear_acc": _probe(
            extract_features(random_encoder, split.x_train),
            split,
            extract_features(random_encoder, split.x_test),
        ),
        "epochs": training["epochs"],
        "batch_size": training["batch_size"],
        "feature_dim": int(tr.shape[1]),
        "train_seconds": training["train_seconds"],
        "final_loss": history[-1]["loss"] if history else float("nan"),
    }
