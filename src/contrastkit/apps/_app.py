"""What an application is (:class:`App`), what one run measures (:class:`Measured`) and the report
over seeds (:class:`AppReport`), with the verdict on the paper's claim computed from the numbers."""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "App",
    "AppReport",
    "AppSettings",
    "Measured",
    "VariantStats",
    "app_names",
    "get_app",
    "run_app",
]


@dataclass(frozen=True)
class AppSettings:
    """How one run of an application goes.

    Attributes:
        seed: Seeds the data simulator, the initialisation and the shuffles.
        quick: The seconds-long smoke form CI runs (tiny data, few steps); False: the full form
            whose numbers go to ``docs/examples.md``.
    """

    seed: int = 0
    quick: bool = False


@dataclass
class Measured:
    """What one variant (the method, a baseline) of one run measured.

    Attributes:
        metrics: Metric name -> value (the app's primary metric among them).
        losses: The training loss per epoch (empty for an untrained baseline); the smoke test
            checks that it falls.
    """

    metrics: dict[str, float]
    losses: list[float] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class App:
    """A seed paper's system, runnable end to end on offline data.

    Attributes:
        name: Registry name (``contrastkit apps run NAME``).
        title: One line: the system and what it does.
        paper: The paper (authors, title, venue, year).
        data: What the data is, said plainly: real (which package ships it) or simulated (what the
            simulator stands for).
        claim: The paper's qualitative claim that this app checks.
        method: The variant that is the paper's method.
        baselines: The variants it is compared with.
        metric: The primary metric (a key of every variant's :attr:`Measured.metrics`).
        higher_is_better: Direction of :attr:`metric`.
        chance: The primary metric of a guess (chance accuracy, the MAE of predicting the mean):
            the smoke test checks that the method beats it.
        run: ``AppSettings -> {variant: Measured}``: trains and measures every variant once.
        needs: Optional packages the app imports (it is skipped in tests when one is missing).
        needs_fashion_mnist: It reads Fashion-MNIST's files.
    """

    name: str
    title: str
    paper: str
    data: str
    claim: str
    method: str
    baselines: tuple[str, ...]
    metric: str
    higher_is_better: bool = True
    chance: float
    run: Callable[[AppSettings], dict[str, Measured]]
    needs: tuple[str, ...] = ()
    needs_fashion_mnist: bool = False

    @property
    def variants(self) -> tuple[str, ...]:
        """The method, then the baselines."""
        return (self.method, *self.baselines)

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is a better value of the primary metric than ``b``."""
        return a > b if self.higher_is_better else a < b


@dataclass
class VariantStats:
    """A variant's metrics over seeds: ``values[metric]`` lists one value per seed."""

    values: dict[str, list[float]]
    final_losses: list[float]

    def mean(self, metric: str) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values[metric])

    def std(self, metric: str) -> float:
        """Sample standard deviation over seeds (0 with one seed)."""
        v = self.values[metric]
        return statistics.stdev(v) if len(v) > 1 else 0.0


@dataclass
class AppReport:
    """An application's results over seeds, and the verdict on its claim."""

    app: App
    seeds: list[int]
    quick: bool
    seconds: float
    variants: dict[str, VariantStats]
    per_seed: list[dict[str, Measured]]

    def verdict(self, baseline: str) -> str:
        """``held``, ``did not hold`` or ``unclear`` for the method against ``baseline``.

        The claim held when the method's mean primary metric is better than the baseline's by more
        than their combined spread (the root sum of squares of the two standard deviations), did not
        hold when it is worse by more than that, and is unclear in between (or with one seed).
        """
        m, b = self.variants[self.app.method], self.variants[baseline]
        metric = self.app.metric
        gap = m.mean(metric) - b.mean(metric)
        if not self.app.higher_is_better:
            gap = -gap
        spread = math.hypot(m.std(metric), b.std(metric))
        if len(self.seeds) < 2:
            return "unclear (one seed)"
        if gap > spread:
            return "held"
        if gap < -spread:
            return "did not hold"
        return "unclear (within the spread)"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record: settings, per-variant mean/std/values, verdicts, environment."""
        return {
            "app": self.app.name,
            "title": self.app.title,
            "paper": self.app.paper,
            "data": self.app.data,
            "claim": self.app.claim,
            "method": self.app.method,
            "baselines": list(self.app.baselines),
            "metric": self.app.metric,
            "higher_is_better": self.app.higher_is_better,
            "seeds": self.seeds,
            "quick": self.quick,
            "seconds": round(self.seconds, 1),
            "variants": {
                name: {
                    metric: {
                        "mean": stats.mean(metric),
                        "std": stats.std(metric),
                        "values": stats.values[metric],
                    }
                    for metric in stats.values
                }
                for name, stats in self.variants.items()
            },
            "verdicts": {b: self.verdict(b) for b in self.app.baselines},
            "command": f"contrastkit apps run {self.app.name}"
            + (" --quick" if self.quick else "")
            + f" --seeds {' '.join(map(str, self.seeds))}",
            "torch": torch.__version__,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
            # the 1-minute load average when the report was made: wall times under load are longer
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        }


def _collect(app: App, runs: Sequence[Mapping[str, Measured]]) -> dict[str, VariantStats]:
    stats: dict[str, VariantStats] = {}
    for name in app.variants:
        values: dict[str, list[float]] = {}
        finals: list[float] = []
        for run in runs:
            if name not in run:
                raise RuntimeError(f"app {app.name!r} did not measure its variant {name!r}")
            measured = run[name]
            if app.metric not in measured.metrics:
                raise RuntimeError(
                    f"app {app.name!r}: variant {name!r} lacks metric {app.metric!r}"
                )
            for metric, value in measured.metrics.items():
                values.setdefault(metric, []).append(float(value))
            if measured.losses:
                finals.append(float(measured.losses[-1]))
        stats[name] = VariantStats(values=values, final_losses=finals)
    return stats


def run_app(
    app: App | str,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    quick: bool = False,
    on_seed: Callable[[int, dict[str, Measured]], None] | None = None,
) -> AppReport:
    """Run an application once per seed and gather its report.

    Args:
        app: An :class:`App` or its registry name.
        seeds: The seeds (each run re-seeds torch and numpy).
        quick: The smoke form.
        on_seed: Called after each seed with what it measured (progress).

    Raises:
        ValueError: Unknown app name, or no seed / a negative seed.
    """
    app = get_app(app) if isinstance(app, str) else app
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s!r}")
    start = time.perf_counter()
    runs: list[dict[str, Measured]] = []
    for seed in seeds:
        torch.manual_seed(seed)
        measured = app.run(AppSettings(seed=seed, quick=quick))
        runs.append(measured)
        if on_seed is not None:
            on_seed(seed, measured)
    return AppReport(
        app=app,
        seeds=seeds,
        quick=quick,
        seconds=time.perf_counter() - start,
        variants=_collect(app, runs),
        per_seed=runs,
    )


def _app_modules() -> list[str]:
    import contrastkit.apps as package

    return sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    )


def app_names() -> list[str]:
    """The registered applications: every public module of :mod:`contrastkit.apps` defines one."""
    return [get_app(module).name for module in _app_modules()]


def get_app(name: str) -> App:
    """The application ``name`` (``-`` and ``_`` are the same).

    Raises:
        ValueError: No application has that name (the message lists them).
    """
    key = str(name).replace("-", "_")
    modules = _app_modules()
    if key not in modules:
        raise ValueError(f"unknown app {name!r}; expected one of {', '.join(modules)}")
    app = importlib.import_module(f"contrastkit.apps.{key}").APP
    if not isinstance(app, App):
        raise TypeError(f"contrastkit.apps.{key}.APP is not an App")
    return app
