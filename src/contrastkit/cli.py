"""``contrastkit`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _fit_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from contrastkit.train.config import FitConfig

    d = FitConfig()
    p = sub.add_parser("fit", help="train an encoder contrastively, then evaluate it")
    p.add_argument("--loss", default=d.loss, help="loss name (see `contrastkit losses`)")
    p.add_argument("--data", default=d.data, help="digits, fashion-mnist, or a path to an .npz file")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--views", type=int, default=d.views, help="views per instance (V)")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--optimizer", default=d.optimizer, choices=["adamw", "sgd", "lars"])
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", default=d.schedule, choices=["cosine", "constant"])
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    p.add_argument("--augment", default=None, help="view preset (default: chosen by dataset)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=None, help="run directory (default: runs/<loss>-<data>)")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default=d.precision, choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_fit(args: argparse.Namespace) -> int:
    from contrastkit.train import FitConfig, fit

    data_tag = Path(args.data).stem if args.data.endswith(".npz") else args.data
    config = FitConfig(
        loss=args.loss,
        data=args.data,
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        views=args.views,
        temperature=args.temperature,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        augment=args.augment,
        seed=args.seed,
        out=args.out or f"runs/{args.loss}-{data_tag}",
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        progress=not args.no_progress,
    )
    result = fit(config)
    _print_metrics(result.metrics, result.run_dir)
    return 0


def _print_metrics(metrics: dict[str, object], run_dir: Path) -> None:
    print(f"kNN accuracy (k=20):    {float(metrics['knn_acc']):.4f}")  # type: ignore[arg-type]
    print(f"linear-probe accuracy:  {float(metrics['linear_acc']):.4f}")  # type: ignore[arg-type]
    print(f"run directory:          {run_dir.resolve()}")


def _run_eval(args: argparse.Namespace) -> int:
    from contrastkit.data import load_dataset
    from contrastkit.train import evaluate_encoder, load_run

    config, model = load_run(args.run_dir)
    split = load_dataset(config.data, root=args.data_root or config.data_root, seed=config.seed)
    metrics = evaluate_encoder(
        model.encoder, split.train, split.test, k=config.knn_k, knn_temperature=config.knn_temperature
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics, Path(args.run_dir))
    return 0


def _run_losses(args: argparse.Namespace) -> int:
    from contrastkit.losses import loss_info, loss_names

    for name in loss_names():
        info = loss_info(name)
        print(f"{name:<12} {info.input_kind:<6} {info.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``contrastkit`` command."""
    parser = argparse.ArgumentParser(prog="contrastkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(sub)
    p_eval = sub.add_parser("eval", help="recompute kNN and linear-probe accuracy of a run")
    p_eval.add_argument("run_dir")
    p_eval.add_argument("--data-root", default=None)
    p_eval.add_argument("--json", action="store_true", help="print the metrics as JSON")
    sub.add_parser("losses", help="list the available losses")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code. Bad input prints one clear line, not a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"fit": _run_fit, "eval": _run_eval, "losses": _run_losses}
    try:
        return handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"contrastkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
