"""``contrastkit eval``, ``report``, ``embed`` and ``compare``: commands on run directories."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contrastkit.cli._output import (
    add_overwrite_flag,
    print_metrics,
    print_two_tower_metrics,
    refuse_existing,
)
from contrastkit.eval import (
    embed_run,
    evaluate_two_tower,
    load_embeddings,
    write_comparison,
    write_report,
)
from contrastkit.eval.embed import embedding_files
from contrastkit.runs import is_two_tower_run, load_run, load_two_tower_run
from contrastkit.train import evaluate_encoder

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval``, ``report``, ``embed`` and ``compare`` sub-commands to ``sub``."""
    p = sub.add_parser(
        "eval",
        help="recompute kNN and linear-probe accuracy of a run (two-tower runs: also retrieval "
        "and zero-shot)",
    )
    p.add_argument("run_dir")
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(handler=run_eval)
    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report/: plots and a self-contained report.html",
        description="Plots (loss, kNN over epochs, alignment/uniformity, spectrum, t-SNE map, "
        "views, metrics) and report.html with every image embedded. Needs matplotlib: "
        "pip install 'contrastkit[plot]'.",
    )
    p.add_argument("run_dir")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--max-points", type=int, default=2000, help="test points in the t-SNE map")
    p.add_argument("--device", default=None, help="where to run the model (default: cpu)")
    p.add_argument(
        "--umap",
        action="store_true",
        help="add a UMAP map beside the t-SNE map (pip install 'contrastkit[umap]')",
    )
    p.set_defaults(handler=run_report)
    _add_embed_parser(sub)
    _add_compare_parser(sub)


def _add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="one HTML page (and PNGs) overlaying several runs: loss, kNN, geometry, metrics, "
        "config differences",
        description="Overlay the loss curves, monitored kNN accuracy and alignment/uniformity/"
        "tolerance trajectories (head output z and encoder features h) of several runs, with "
        "their final metrics side by side and the configuration keys that differ highlighted. "
        "Reads the run directories' logs only (no model is loaded). Needs matplotlib: pip "
        "install 'contrastkit[plot]'.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more run directories")
    p.add_argument(
        "--out", default="compare", help="output folder (default: ./compare): compare.html, PNGs"
    )
    p.add_argument(
        "--names",
        default=None,
        help="comma-separated labels of the runs (default: their folder names)",
    )
    p.set_defaults(handler=run_compare)


def _add_embed_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="export a run's embeddings (.npz, .npy or .safetensors, by the extension of --out)",
    )
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="output file: .npz, .npy or .safetensors")
    add_overwrite_flag(p, "the output file")
    p.add_argument("--data", default=None, help="dataset to embed (default: the run's own)")
    p.add_argument("--split", default="test", choices=["train", "test", "all"])
    p.add_argument(
        "--layer",
        default=None,
        choices=["h", "z"],
        help="h: encoder, z: head output / shared space (default: h; z for two-tower runs)",
    )
    p.add_argument(
        "--tower",
        default=None,
        help="two-tower runs: which tower, image|text (or series|vector, or the side a|b; "
        "default: a); --data then names other images or a text file, one text per line",
    )
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default=None, help="where to run the model (default: cpu)")
    p.set_defaults(handler=run_embed)


def run_eval(args: argparse.Namespace) -> int:
    """Recompute and print the kNN and linear-probe accuracy of a run's frozen encoder.

    For a two-tower run: retrieval both ways and zero-shot accuracy on the held-out pairs too.
    """
    if is_two_tower_run(args.run_dir):
        tt_config, tt_model = load_two_tower_run(args.run_dir)
        tt_metrics = evaluate_two_tower(
            tt_model,
            tt_config.load_pairs(root=args.data_root),
            knn_k=tt_config.knn_k,
            knn_temperature=tt_config.knn_temperature,
        )
        if args.json:
            print(json.dumps(tt_metrics, indent=2))
        else:
            print_two_tower_metrics(tt_metrics, Path(args.run_dir))
        return 0
    config, model = load_run(args.run_dir)
    split = config.load_data(root=args.data_root)
    metrics = evaluate_encoder(
        model.encoder,
        split.train,
        split.test,
        k=config.knn_k,
        knn_temperature=config.knn_temperature,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics, Path(args.run_dir))
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Write the run's report; a missing plotting extra is one line and exit code 2."""
    try:
        path = write_report(
            args.run_dir,
            data_root=args.data_root,
            max_points=args.max_points,
            device=args.device,
            umap=args.umap,
        )
    except ImportError as exc:
        print(f"contrastkit report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written: {path.resolve()}")
    return 0


def run_embed(args: argparse.Namespace) -> int:
    """Export the run's embeddings and print what was written."""
    refuse_existing(embedding_files(args.out), overwrite=args.overwrite)
    files = embed_run(
        args.run_dir,
        args.out,
        data=args.data,
        split=args.split,
        layer=args.layer,
        data_root=args.data_root,
        batch_size=args.batch_size,
        device=args.device,
        tower=args.tower,
    )
    feats = load_embeddings(files[0])["features"]
    what = "samples" if args.tower is not None else "images"
    print(f"embedded {feats.shape[0]} {what} into {feats.shape[1]} dimensions:")
    for path in files:
        print(f"  {path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Write the comparison page of several runs; a missing plotting extra is exit code 2."""
    names = None if args.names is None else [n.strip() for n in args.names.split(",")]
    try:
        path = write_comparison(args.run_dirs, args.out, names=names)
    except ImportError as exc:
        print(f"contrastkit compare: error: {exc}", file=sys.stderr)
        return 2
    print(f"comparison of {len(args.run_dirs)} runs written: {path.resolve()}")
    return 0
