"""Contrastive recipes for time series and tables, measured against the raw input.

``contrastkit fit-arrays DATA`` runs :func:`fit_modality` from the command line (a UCR name,
``mnist1d``, a scikit-learn table or the user's own ``.npz``).

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

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contrastkit.data.series import SeriesSplit, load_series_dataset
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import InfoNCE
from contrastkit.models import ContrastiveModel, Conv1dEncoder, MLPEncoder, MLPHead
from contrastkit.train.strategies._common import StrategyResult
from contrastkit.views import ScarfCorruption, SeriesAugment

__all__ = ["add_arrays_arguments", "fit_modality", "run_arrays"]


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
        log: Called with progress lines.

    Returns:
        A :class:`StrategyResult`; ``metrics`` holds ``linear_acc``, ``knn_acc`` (k = min(20, N // 10)),
        ``raw_linear_acc``, ``random_init_linear_acc``, sizes and timings.
    """
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
    loss_fn = InfoNCE(temperature=temperature)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = n // b
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / max(total, 1)))
    )
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for s in range(steps_per_epoch):
            xb = split.x_train[order[s * b : (s + 1) * b]]
            v = views(xb, gen).to(dev)
            flat = v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])
            _, z = model(flat)
            loss = loss_fn(z.reshape(v.shape[0], v.shape[1], -1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
        history.append({"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch})
        if log is not None and ((epoch + 1) % 10 == 0 or epoch + 1 == epochs):
            log(f"{split.name} epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f}")
    seconds = time.perf_counter() - start
    tr = extract_features(model.encoder, split.x_train)
    te = extract_features(model.encoder, split.x_test)
    k = min(20, max(1, n // 10))
    metrics: dict[str, Any] = {
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
        "epochs": epochs,
        "batch_size": b,
        "feature_dim": int(tr.shape[1]),
        "train_seconds": seconds,
        "final_loss": history[-1]["loss"] if history else float("nan"),
    }
    return StrategyResult(metrics=metrics, model=model, history=history)


def add_arrays_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``contrastkit fit-arrays``."""
    p.add_argument(
        "data",
        help="a UCR set (GunPoint, ArrowHead, ItalyPowerDemand, OSULeaf, BasicMotions, or "
        "ucr:NAME), mnist1d, a scikit-learn table (wine, breast-cancer, digits-table, ...), or an "
        ".npz with x_train, y_train, x_test, y_test (series (N, C, T) or (N, T); tables (N, F))",
    )
    p.add_argument("--root", default=None, help="folder of UCR .ts files (default: sktime's)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--width", type=int, default=128, help="encoder width (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="run directory for metrics, log and weights")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run_arrays(args: argparse.Namespace) -> int:
    """``contrastkit fit-arrays``: train on series or a table, print the accuracies vs raw input."""
    from contrastkit.train.checkpoint import atomic_write_json, save_weights

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in ("epochs", "batch_size", "width"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("lr", "temperature"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name} must be > 0, got {getattr(args, name)}")
    log = None if args.json else print
    result = fit_modality(
        args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        temperature=args.temperature,
        width=args.width,
        seed=args.seed,
        root=args.root,
        log=log,
    )
    m = result.metrics
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", {**m, "arguments": _arguments(args)})
        (out / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in result.history))
        save_weights(
            out / "model.safetensors",
            result.model.state_dict(),
            metadata={"format": "contrastkit/1", "kind": str(m["kind"])},
        )
    if args.json:
        print(json.dumps(m, indent=2, sort_keys=True))
        return 0
    print(
        f"{m['data']} ({m['kind']}, {m['train_size']} train / {m['test_size']} test, "
        f"{m['num_classes']} classes): linear probe {m['linear_acc']:.4f}, kNN {m['knn_acc']:.4f}; "
        f"raw input {m['raw_linear_acc']:.4f}; random-init encoder "
        f"{m['random_init_linear_acc']:.4f} ({m['train_seconds']:.1f} s)"
    )
    return 0


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("command", "json")}
