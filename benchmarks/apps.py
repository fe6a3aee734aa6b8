"""The applications' full forms (contrastkit.apps), and the docs/examples.md table written from them.

Usage (from the repository root; 1 torch thread, as the other CPU benchmarks):

    # run apps (default: every app without a result yet) over seeds 0 1 2; one JSON per app in
    # benchmarks/results/apps/NAME.json (the same record `contrastkit apps run NAME --out F` writes)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/apps.py run cvrl taco
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/apps.py run --all

    # rewrite docs/examples.md from benchmarks/results/apps/*.json (tests check it is in sync)
    .venv/bin/python benchmarks/apps.py docs

Every number in the table comes from those files; the verdict on each paper's claim is computed by
contrastkit.apps.AppReport.verdict (method vs baseline, mean gap against the combined spread).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contrastkit.apps import app_names, get_app, run_app

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "apps"
DOCS = ROOT / "docs" / "examples.md"

HEADER = """# Applications: the seed papers' systems, end to end

Each row is one system from the seed papers, runnable with one command (`contrastkit apps run NAME`;
`--quick` is the seconds-long form CI runs). The data column says whether the data is real (a package
that ships it offline) or simulated by a seeded generator (`contrastkit apps show NAME` describes it).
Results are mean ± standard deviation over the seeds listed, on this project's 2-core CPU with one
torch thread; the verdict compares the method with each baseline: **held** when the mean gap exceeds
the combined spread of the two, **did not hold** when it is that much worse, **unclear** otherwise.
This page is written by `benchmarks/apps.py docs` from `benchmarks/results/apps/*.json`; no number on
it is typed by hand.

"""


def _fmt(record: dict[str, Any], variant: str) -> str:
    stats = record["variants"][variant][record["metric"]]
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def _row(record: dict[str, Any]) -> str:
    method = record["method"]
    baselines = "<br>".join(f"{b}: {_fmt(record, b)}" for b in record["baselines"])
    verdicts = "<br>".join(f"vs {b}: **{v}**" for b, v in record["verdicts"].items())
    arrow = "↑" if record["higher_is_better"] else "↓"
    cells = [
        f"**{record['app']}**<br>{record['title']}",
        record["paper"],
        f"`{record['command']}`<br>({record['seconds']:.0f} s)",
        record["data"],
        f"{record['metric']} {arrow}",
        f"{method}: {_fmt(record, method)}",
        baselines,
        f"{record['claim']}<br>{verdicts}",
    ]
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def examples_markdown(records: list[dict[str, Any]]) -> str:
    """docs/examples.md for these result records (sorted by app name)."""
    lines = [HEADER.rstrip("\n"), ""]
    lines.append(
        "| System | Paper | Command | Data | Metric | Method | Baselines | Claim, verdict |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    lines += [_row(r) for r in sorted(records, key=lambda r: r["app"])]
    missing = sorted(set(app_names()) - {r["app"] for r in records})
    if missing:
        lines += [
            "",
            "Not yet measured in the full form: " + ", ".join(f"`{m}`" for m in missing) + ".",
        ]
    return "\n".join(lines) + "\n"


def load_records() -> list[dict[str, Any]]:
    """Every result record in benchmarks/results/apps/."""
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]


def _run(names: list[str], seeds: list[int]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        app = get_app(name)
        print(f"== {name}: {app.title}", flush=True)
        report = run_app(
            app, seeds=seeds, on_seed=lambda s, m: print(f"  seed {s}: {m}", flush=True)
        )
        record = report.to_json()
        (RESULTS / f"{app.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(_row(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run")
    run.add_argument("names", nargs="*")
    run.add_argument("--all", action="store_true", help="every app, even those with results")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    verbs.add_parser("docs")
    args = parser.parse_args(argv)
    if args.verb == "run":
        done = {p.stem for p in RESULTS.glob("*.json")}
        names = args.names or [n for n in app_names() if args.all or n not in done]
        _run(names, args.seeds)
    DOCS.write_text(examples_markdown(load_records()))
    print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
