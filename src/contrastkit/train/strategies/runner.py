"""Run a batch-order strategy (G-SimCLR, MCL) from a configuration, as ``contrastkit fit`` does.

A recipe with ``strategy: gsimclr`` or ``strategy: mcl`` trains with :func:`fit_gsimclr` or
:func:`fit_mcl` (their extra arguments in ``strategy_kwargs``) and, unless
``strategy_kwargs.baseline`` is false, SimCLR with random batches, the same initialisation and the
same number of epochs, so that one command reports the method next to its baseline. The run
directory gets what a plain run writes — ``config.json``, ``epochs.jsonl`` (one record per epoch and
stage), ``metrics.json`` and ``model.safetensors`` (the strategy's model; for MCL the last stage's)
— so ``contrastkit eval``, ``report`` and ``embed`` work on it.

``metrics.json`` holds every number of the strategy (``gsimclr_*`` / ``mcl_*``, ``simclr_*``) and,
as ``knn_acc`` / ``linear_acc``, the method's own representation (for MCL the concatenation of the
stages' features, the paper's cross-stage integration). Strategy runs are single-process and are
not checkpointed: they cannot be resumed and refuse ``torchrun``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from contrastkit._validation import keyword_parameters
from contrastkit.train.checkpoint import atomic_write_json, save_weights
from contrastkit.train.config import FitConfig
from contrastkit.train.strategies._common import StrategyResult
from contrastkit.train.strategies.gsimclr import fit_gsimclr
from contrastkit.train.strategies.mcl import fit_mcl

__all__ = ["NOT_FROM_CONFIG", "STRATEGIES", "run_strategy", "strategy_arguments"]

STRATEGIES: dict[str, Callable[..., StrategyResult]] = {"gsimclr": fit_gsimclr, "mcl": fit_mcl}
#: Arguments of the strategy functions that the runner sets, not ``strategy_kwargs``.
NOT_FROM_CONFIG = ("config", "log")


def strategy_arguments(name: str) -> list[str]:
    """The ``strategy_kwargs`` keys that strategy ``name`` accepts."""
    if name not in STRATEGIES:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}"
        )
    names = keyword_parameters(STRATEGIES[name]) or []
    return sorted(n for n in names if n not in NOT_FROM_CONFIG)


def _own_metrics(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    prefix = "gsimclr_" if name == "gsimclr" else "mcl_"
    out = {
        key: metrics[prefix + key]
        for key in ("knn_acc", "linear_acc", "feature_dim")
        if prefix + key in metrics
    }
    seconds = metrics.get(prefix + "train_seconds")
    if seconds is not None:
        out["train_seconds"] = seconds
    return out


def run_strategy(config: FitConfig, *, log: Callable[[str], None] | None = None) -> Any:
    """Train ``config.strategy`` and write the run directory ``config.out``.

    Returns:
        A :class:`~contrastkit.train.run.FitResult`.
    """
    from contrastkit.models import count_parameters
    from contrastkit.runs import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE
    from contrastkit.train.logging import EPOCH_LOG
    from contrastkit.train.loop import check_data_fits, evaluation_problem
    from contrastkit.train.run import FitResult

    split = config.load_data()  # checked before anything is trained or written
    check_data_fits(config, len(split.train))
    problem = evaluation_problem(split.train, split.test)
    if problem is not None:
        raise ValueError(
            f"strategy {config.strategy!r} is judged by the kNN and linear probes, and {problem}"
        )
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / WEIGHTS_FILE).unlink(missing_ok=True)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
    strategy = STRATEGIES[config.strategy]
    start = time.perf_counter()
    result = strategy(config, log=log if config.progress else None, **config.strategy_kwargs)
    seconds = time.perf_counter() - start
    (run_dir / EPOCH_LOG).write_text("".join(json.dumps(r) + "\n" for r in result.history))
    model = result.model
    channels, size = int(result.metrics.get("in_channels", 0)), result.metrics.get("image_size")
    header = {"format": "contrastkit/1", "strategy": config.strategy}
    if channels:
        header["in_channels"] = str(channels)
    if size:
        header["image_size"] = str(size)
    save_weights(run_dir / WEIGHTS_FILE, model.state_dict(), metadata=header)
    metrics: dict[str, Any] = dict(result.metrics)
    metrics.update(_own_metrics(config.strategy, result.metrics))
    metrics.update(
        {
            "strategy": config.strategy,
            "epochs": config.epochs,
            "wall_seconds": seconds,
            "encoder_parameters": count_parameters(model.encoder),  # type: ignore[arg-type]
            "world_size": 1,
            "resumed_from": None,
        }
    )
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    if log is not None:
        line = f"contrastkit fit ({config.strategy}): done in {seconds:.1f} s"
        if "knn_acc" in metrics:
            line += f"; kNN {metrics['knn_acc']:.4f}, linear {metrics['linear_acc']:.4f}"
        if "simclr_knn_acc" in metrics:
            line += (
                f"; SimCLR with the same budget: kNN {metrics['simclr_knn_acc']:.4f}, linear "
                f"{metrics['simclr_linear_acc']:.4f}"
            )
        log(line + f"; run {run_dir}")
    return FitResult(run_dir=run_dir, metrics=metrics, model=model)
