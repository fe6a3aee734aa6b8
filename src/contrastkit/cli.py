"""``contrastkit`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


_FIT_FLAG_KEYS = (
    "loss",
    "data",
    "data_root",
    "epochs",
    "batch_size",
    "views",
    "temperature",
    "optimizer",
    "lr",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "augment",
    "seed",
    "out",
    "device",
    "precision",
    "threads",
    "checkpoint_every",
    "grad_clip",
)
_RESUME_FLAG_KEYS = ("progress", "threads", "device")


def _fit_parser(sub: argparse._SubParsersAction) -> None:
    from contrastkit.train.config import FitConfig

    d = FitConfig()
    hide = argparse.SUPPRESS  # only flags given on the command line override the recipe
    p = sub.add_parser(
        "fit",
        help="train an encoder contrastively, then evaluate it",
        description=(
            "Train from a recipe (`contrastkit recipes`), a recipe file, or flags alone. "
            "Precedence: defaults < recipe < flags < --set. Under `torchrun --nproc-per-node P "
            "-m contrastkit fit ...` the P processes share each batch (gloo on CPU, NCCL on GPU)."
        ),
    )
    p.add_argument(
        "recipe",
        nargs="?",
        default=None,
        help="recipe name (see `contrastkit recipes`) or a .yaml path",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (a YAML value; loss_kwargs.NAME=VALUE sets a loss argument)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue a killed run from its last checkpoint",
    )
    p.add_argument(
        "--loss", default=hide, help=f"loss name (see `contrastkit losses`; default {d.loss})"
    )
    p.add_argument("--data", default=hide, help="digits, fashion-mnist, or a path to an .npz file")
    p.add_argument("--data-root", default=hide, help="folder holding the dataset files")
    p.add_argument("--epochs", type=int, default=hide, help=f"default {d.epochs}")
    p.add_argument(
        "--batch-size", type=int, default=hide, help=f"global batch (default {d.batch_size})"
    )
    p.add_argument(
        "--views", type=int, default=hide, help=f"views per instance V (default {d.views})"
    )
    p.add_argument("--temperature", type=float, default=hide, help=f"default {d.temperature}")
    p.add_argument("--optimizer", default=hide, choices=["adamw", "sgd", "lars"])
    p.add_argument("--lr", type=float, default=hide, help=f"default {d.lr}")
    p.add_argument("--weight-decay", type=float, default=hide, help=f"default {d.weight_decay}")
    p.add_argument("--schedule", default=hide, choices=["cosine", "constant"])
    p.add_argument("--warmup-epochs", type=int, default=hide, help=f"default {d.warmup_epochs}")
    p.add_argument("--augment", default=hide, help="view preset (default: chosen by dataset)")
    p.add_argument("--seed", type=int, default=hide, help=f"default {d.seed}")
    p.add_argument(
        "--out", default=hide, help="run directory (default: runs/<recipe or loss>-<data>)"
    )
    p.add_argument("--device", default=hide, choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default=hide, choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=hide, help="torch CPU threads")
    p.add_argument(
        "--checkpoint-every", type=int, default=hide, help=f"steps (default {d.checkpoint_every})"
    )
    p.add_argument("--grad-clip", type=float, default=hide, help="clip the gradient norm")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_fit(args: argparse.Namespace) -> int:
    from contrastkit.train import fit, resume_run
    from contrastkit.train.config import config_from_mapping
    from contrastkit.train.recipes import apply_overrides, load_recipe, parse_overrides

    flags = {key: getattr(args, key) for key in _FIT_FLAG_KEYS if hasattr(args, key)}
    if args.no_progress:
        flags["progress"] = False
    overrides = parse_overrides(args.overrides)
    if args.resume is not None:
        fixed = sorted((set(flags) | set(overrides)) - set(_RESUME_FLAG_KEYS))
        if args.recipe is not None or fixed:
            what = ([f"recipe {args.recipe!r}"] if args.recipe is not None else []) + fixed
            raise ValueError(
                "--resume continues a run with its own configuration; it cannot take "
                f"{', '.join(what)} (allowed with --resume: {', '.join(_RESUME_FLAG_KEYS)})"
            )
        result = resume_run(args.resume, **{**flags, **overrides})
    else:
        name = "custom"
        values: dict[str, object] = {}
        if args.recipe is not None:
            recipe = load_recipe(args.recipe)
            name, values = recipe.name, dict(recipe.values)
        values = apply_overrides(values, flags, source="command line")
        values = apply_overrides(values, overrides, source="command line")
        if "out" not in values:
            data = str(values.get("data", "digits"))
            data_tag = Path(data).stem if data.endswith(".npz") else data
            label = name if args.recipe is not None else str(values.get("loss", "ntxent"))
            values["out"] = f"runs/{label}-{data_tag}"
        result = fit(config_from_mapping(values, source="command line"))
    if result.metrics:
        from contrastkit.train.loop import summary_line

        print(summary_line(result.metrics, result.run_dir), flush=True)
        _print_metrics(result.metrics, result.run_dir)
    return 0


def _run_recipes(args: argparse.Namespace) -> int:
    from contrastkit.train.recipes import load_recipe, recipe_names, recipe_text

    if args.name is not None:
        print(recipe_text(args.name), end="")
        return 0
    for name in recipe_names():
        recipe = load_recipe(name)
        print(f"{name:<12} {recipe.values.get('loss', ''):<12} {recipe.description}")
    return 0


def _print_metrics(metrics: Mapping[str, Any], run_dir: Path) -> None:
    if "knn_acc" in metrics:
        label = f"kNN accuracy (k={metrics['knn_k']}):" if "knn_k" in metrics else "kNN accuracy:"
        print(f"{label:<24}{float(metrics['knn_acc']):.4f}")
        print(f"linear-probe accuracy:  {float(metrics['linear_acc']):.4f}")
    print(f"run directory:          {run_dir.resolve()}")


def _run_eval(args: argparse.Namespace) -> int:
    from contrastkit.train import evaluate_encoder, load_run

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
        _print_metrics(metrics, Path(args.run_dir))
    return 0


def _run_losses(args: argparse.Namespace) -> int:
    import contrastkit.train  # noqa: F401  (registers the trainer's moco_v2 and mochi)
    from contrastkit.losses import loss_info, loss_names

    for name in loss_names():
        info = loss_info(name)
        print(f"{name:<12} {info.input_kind:<6} {info.summary}")
    return 0


def _report_embed_parsers(sub: argparse._SubParsersAction) -> None:
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


def _run_report(args: argparse.Namespace) -> int:
    from contrastkit.eval.report import write_report

    try:
        path = write_report(
            args.run_dir, data_root=args.data_root, max_points=args.max_points, device=args.device
        )
    except ImportError as exc:
        print(f"contrastkit report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written: {path.resolve()}")
    return 0


def _run_embed(args: argparse.Namespace) -> int:
    from contrastkit.eval.embed import embed_run, load_embeddings

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
    p_recipes = sub.add_parser("recipes", help="list the training recipes, or print one")
    p_recipes.add_argument("name", nargs="?", default=None, help="print this recipe's YAML")
    _report_embed_parsers(sub)
    from contrastkit.train.strategies.graph_clustering import add_cluster_arguments

    add_cluster_arguments(
        sub.add_parser("cluster", help="graph clustering (SCGC/SCGC*): ACC, NMI, ARI")
    )
    p_download = sub.add_parser(
        "download",
        help="download a dataset's files (needs a network): fashion-mnist, cifar10, cifar100",
    )
    p_download.add_argument("name", choices=list(DOWNLOADABLE))
    p_download.add_argument("--root", required=True, help="folder to put the files in")
    p_download.add_argument(
        "--url",
        default=None,
        help="other source (a mirror folder for fashion-mnist, the archive for CIFAR; file:// "
        "works); checksums are checked for the official source only",
    )
    p_download.add_argument("--force", action="store_true", help="download again if present")
    from contrastkit.train.strategies.modalities import add_arrays_arguments

    add_arrays_arguments(
        sub.add_parser(
            "fit-arrays",
            help="contrastive training on time series or a table; accuracy vs the raw input",
        )
    )
    return parser


DOWNLOADABLE = ("fashion-mnist", "cifar10", "cifar100")


def _run_download(args: argparse.Namespace) -> int:
    from contrastkit.data import DownloadError, download_cifar, download_fashion_mnist

    try:
        if args.name == "fashion-mnist":
            kwargs = {"base_url": args.url} if args.url is not None else {}
            folder = download_fashion_mnist(args.root, force=args.force, **kwargs)
        else:
            folder = download_cifar(args.name, args.root, url=args.url, force=args.force)
    except DownloadError as exc:
        print(f"contrastkit download: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: files in {folder}; use --data {args.name} --data-root {args.root}")
    return 0


def _run_arrays(args: argparse.Namespace) -> int:
    from contrastkit.train.strategies.modalities import run_arrays

    return run_arrays(args)


def _run_cluster(args: argparse.Namespace) -> int:
    from contrastkit.train.strategies.graph_clustering import run_cluster

    return run_cluster(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code. Bad input prints one clear line, not a
    traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"fit": _run_fit, "eval": _run_eval, "losses": _run_losses, "recipes": _run_recipes}
    handlers.update({"report": _run_report, "embed": _run_embed, "cluster": _run_cluster})
    handlers["fit-arrays"] = _run_arrays
    handlers["download"] = _run_download
    try:
        return handlers[args.command](args)
    except FloatingPointError as exc:  # a diverged run is a training failure, not bad input
        print(f"contrastkit {args.command}: training failed: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"contrastkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
