"""``contrastkit apps``: the seed papers' systems, run end to end (``list``, ``show``, ``run``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from contrastkit.apps import AppReport, Measured, app_names, get_app, run_app
from contrastkit.cli._output import add_overwrite_flag, refuse_existing

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``apps`` sub-command group to ``sub``."""
    p = sub.add_parser(
        "apps", help="the seed papers' applications (video, control, sensors, ...), run end to end"
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="one line per application").set_defaults(handler=run_list)
    show = verbs.add_parser("show", help="an application's paper, data and claim")
    show.add_argument("name")
    show.set_defaults(handler=run_show)
    run = verbs.add_parser("run", help="train and measure an application's method and baselines")
    run.add_argument("name", help="an application (contrastkit apps list)")
    run.add_argument("--quick", action="store_true", help="the seconds-long smoke form")
    run.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)"
    )
    run.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    run.add_argument("--out", default=None, help="write the results as JSON to this file")
    add_overwrite_flag(run, "the --out file")
    run.add_argument("--json", action="store_true", help="print the results as JSON")
    run.set_defaults(handler=run_run)


def run_list(args: argparse.Namespace) -> int:
    """One line per application: its name and title."""
    names = app_names()
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"{name:<{width}}  {get_app(name).title}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """The application's paper, data, claim, variants and command."""
    app = get_app(args.name)
    print(f"{app.name}: {app.title}")
    print(f"paper:     {app.paper}")
    print(f"data:      {app.data}")
    print(f"claim:     {app.claim}")
    print(f"method:    {app.method}; baselines: {', '.join(app.baselines)}")
    direction = "higher" if app.higher_is_better else "lower"
    print(f"metric:    {app.metric} ({direction} is better; chance {app.chance:g})")
    print(f"run:       contrastkit apps run {app.name} [--quick] [--seeds 0 1 2]")
    return 0


def _print_seed(seed: int, measured: dict[str, Measured]) -> None:
    parts = []
    for variant, m in measured.items():
        values = ", ".join(f"{k} {v:.4f}" for k, v in m.metrics.items())
        parts.append(f"{variant}: {values}")
    print(f"seed {seed}: " + "; ".join(parts), flush=True)


def _print_report(report: AppReport) -> None:
    app = report.app
    print(
        f"{app.name} ({'quick' if report.quick else 'full'}, seeds {report.seeds}, "
        f"{report.seconds:.0f} s): {app.metric}, mean ± std over seeds"
    )
    for variant, stats in report.variants.items():
        role = "method" if variant == app.method else "baseline"
        print(
            f"  {variant:<28}{stats.mean(app.metric):.4f} ± {stats.std(app.metric):.4f}  ({role})"
        )
    for baseline in app.baselines:
        print(f"claim vs {baseline}: {report.verdict(baseline)}")


def run_run(args: argparse.Namespace) -> int:
    """Run the application over the seeds, print the table and the verdicts, write ``--out``."""
    app = get_app(args.name)
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        refuse_existing([out], overwrite=args.overwrite)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    report = run_app(
        app, seeds=args.seeds, quick=args.quick, on_seed=None if args.json else _print_seed
    )
    record = report.to_json()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(out)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        _print_report(report)
    return 0
