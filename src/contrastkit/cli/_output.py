"""What the commands print about a run's metrics (shared by ``fit`` and ``eval``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["add_overwrite_flag", "print_metrics", "print_two_tower_metrics", "refuse_existing"]


def print_metrics(metrics: Mapping[str, Any], run_dir: Path) -> None:
    """Print the kNN and linear-probe accuracy (when present; else why not) and the run directory."""
    if "evaluation_skipped" in metrics:
        print(f"evaluation skipped:     {metrics['evaluation_skipped']}")
    if "knn_acc" in metrics:
        label = f"kNN accuracy (k={metrics['knn_k']}):" if "knn_k" in metrics else "kNN accuracy:"
        print(f"{label:<24}{float(metrics['knn_acc']):.4f}")
        print(f"linear-probe accuracy:  {float(metrics['linear_acc']):.4f}")
    print(f"run directory:          {run_dir.resolve()}")


def print_two_tower_metrics(metrics: dict[str, float], run_dir: Path) -> None:
    """Zero-shot, retrieval (both ways) and probe lines of a two-tower evaluation."""
    if "zero_shot_top1" in metrics:
        tops = ", ".join(
            f"top-{k[len('zero_shot_top') :]} {metrics[k]:.4f}"
            for k in metrics
            if k.startswith("zero_shot_top")
        )
        print(f"zero-shot accuracy:     {tops}")
    for key in metrics:
        if key.endswith("_R@1"):
            direction = key[: -len("_R@1")]
            recalls = "  ".join(f"R@{k} {metrics[f'{direction}_R@{k}']:.4f}" for k in (1, 5, 10))
            median = metrics[f"{direction}_median_rank"]
            label = direction.replace("_to_", " -> ") + ":"
            print(f"{label:<24}{recalls}  median rank {median:g}")
    print_metrics(metrics, run_dir)


def add_overwrite_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace ``what`` when it already exists (refused otherwise)."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists")


def refuse_existing(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Refuse to write over files that exist, unless ``--overwrite`` was given.

    Raises:
        ValueError: One of ``paths`` exists and ``overwrite`` is False.
    """
    if overwrite:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise ValueError(
            f"{', '.join(existing)} already exists; choose another --out or pass --overwrite to "
            "replace it"
        )
