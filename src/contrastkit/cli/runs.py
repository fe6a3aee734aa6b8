"""``contrastkit eval``, ``report`` and ``embed``: commands on a finished run directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contrastkit.cli._output import print_metrics
from contrastkit.eval import embed_run, load_embeddings, write_report
from contrastkit.runs import load_run
from contrastkit.train import evaluate_encoder

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval``, ``report`` and ``embed`` sub-commands to ``sub``."""
    p = sub.add_parser("eval", help="recompute kNN and linear-probe accuracy of a run")
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
    p.set_defaults(handler=run_report)
    _add_embed_parser(sub)


def _add_embed_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="export a run's embeddings (.npz, .npy or .safetensors, by the extension of --out)",
    )
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="output file: .npz, .npy or .safetensors")
    p.add_argument("--data", default=None, help="dataset to embed (default: the run's own)")
    p.add_argument("--split", default="test", choices=["train", "test", "all"])
    p.add_argument("--layer", default="h", choices=["h", "z"], help="h: encoder, z: head output")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default=None, help="where to run the model (default: cpu)")
    p.set_defaults(handler=run_embed)


def run_eval(args: argparse.Namespace) -> int:
    """Recompute and print the kNN and linear-probe accuracy of a run's frozen encoder."""
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
            args.run_dir, data_root=args.data_root, max_points=args.max_points, device=args.device
        )
    except ImportError as exc:
        print(f"contrastkit report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written: {path.resolve()}")
    return 0


def run_embed(args: argparse.Namespace) -> int:
    """Export the run's embeddings and print what was written."""
    files = embed_run(
        args.run_dir,
        args.out,
        data=args.data,
        split=args.split,
        layer=args.layer,
        data_root=args.data_root,
        batch_size=args.batch_size,
        device=args.device,
    )
    feats = load_embeddings(files[0])["features"]
    print(f"embedded {feats.shape[0]} images into {feats.shape[1]} dimensions:")
    for path in files:
        print(f"  {path}")
    return 0
