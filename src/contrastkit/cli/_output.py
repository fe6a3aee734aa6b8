"""What the commands print about a run's metrics (shared by ``fit`` and ``eval``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["print_metrics"]


def print_metrics(metrics: Mapping[str, Any], run_dir: Path) -> None:
    """Print the kNN and linear-probe accuracy (when present; else why not) and the run directory."""
    if "evaluation_skipped" in metrics:
        print(f"evaluation skipped:     {metrics['evaluation_skipped']}")
    if "knn_acc" in metrics:
        label = f"kNN accuracy (k={metrics['knn_k']}):" if "knn_k" in metrics else "kNN accuracy:"
        print(f"{label:<24}{float(metrics['knn_acc']):.4f}")
        print(f"linear-probe accuracy:  {float(metrics['linear_acc']):.4f}")
    print(f"run directory:          {run_dir.resolve()}")
