"""``contrastkit fit-arrays``: contrastive training on time series or a table, vs the raw input.

Parses the flags, calls :func:`~contrastkit.train.strategies.fit_modality`, writes the run directory
(``--out``: ``metrics.json``, ``epochs.jsonl``, ``model.safetensors``) and prints the accuracies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from contrastkit._validation import check_int
from contrastkit.cli._output import add_overwrite_flag
from contrastkit.runs import atomic_write_json, save_weights
from contrastkit.train.run import check_out_dir
from contrastkit.train.strategies import StrategyResult, fit_modality

__all__ = ["add_parser", "run_arrays"]

#: Namespace entries that are not arguments of the run (left out of ``metrics.json``).
_NOT_ARGUMENTS = ("command", "json", "handler")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``fit-arrays`` sub-command to ``sub``."""
    p = sub.add_parser(
        "fit-arrays",
        help="contrastive training on time series or a table; accuracy vs the raw input",
    )
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
    add_overwrite_flag(p, "the files of an earlier run in --out")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(handler=run_arrays)


def run_arrays(args: argparse.Namespace) -> int:
    """Train on series or a table, write ``--out``, print the accuracies vs the raw input.

    Raises:
        ValueError: A flag out of range, or data that cannot be loaded (exit code 2 in ``main``).
    """
    _check_flags(args)
    if args.threads is not None:
        torch.set_num_threads(check_int(args.threads, "--threads", minimum=1))
    if args.out is not None:  # before training: a user's files are never replaced unasked
        check_out_dir(Path(args.out), overwrite=args.overwrite)
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
        log=None if args.json else print,
    )
    if args.out is not None:
        _write_run(Path(args.out), result, args)
    m = result.metrics
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


def _check_flags(args: argparse.Namespace) -> None:
    for name in ("epochs", "batch_size", "width"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("lr", "temperature"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name} must be > 0, got {getattr(args, name)}")


def _write_run(out: Path, result: StrategyResult, args: argparse.Namespace) -> None:
    """``metrics.json`` (with the arguments), ``epochs.jsonl`` and ``model.safetensors``."""
    m = result.metrics
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", {**m, "arguments": _arguments(args)})
    (out / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in result.history))
    save_weights(
        out / "model.safetensors",
        result.model.state_dict(),
        metadata={"format": "contrastkit/1", "kind": str(m["kind"])},
    )


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in _NOT_ARGUMENTS}
