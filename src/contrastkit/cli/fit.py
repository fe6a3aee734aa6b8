"""``contrastkit fit``: train from a recipe, a recipe file or flags, or resume a run."""

from __future__ import annotations

import argparse
from typing import Any

from contrastkit.cli._output import print_metrics, print_two_tower_metrics
from contrastkit.data import known_datasets
from contrastkit.runs import FitConfig, config_from_mapping, default_out_dir
from contrastkit.train import FitResult, fit, resume_run
from contrastkit.train.loop import summary_line
from contrastkit.train.recipes import apply_overrides, load_recipe, parse_overrides

__all__ = ["add_parser"]

#: Config keys that have their own flag (``--batch-size`` for ``batch_size``); others take --set.
FLAG_KEYS = (
    "loss",
    "data",
    "data_root",
    "pairs",
    "csv_img_key",
    "csv_caption_key",
    "csv_separator",
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
#: Config keys a resumed run may change.
RESUME_FLAG_KEYS = ("progress", "threads", "device")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``fit`` sub-command to ``sub``."""
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
    _add_config_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that already holds a run: replace the files a run writes "
        "(no other file is touched)",
    )
    p.set_defaults(handler=run)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per key of :data:`FLAG_KEYS`; only flags given override the recipe."""
    d = FitConfig()
    hide = argparse.SUPPRESS
    p.add_argument(
        "--loss", default=hide, help=f"loss name (see `contrastkit losses`; default {d.loss})"
    )
    p.add_argument(
        "--data",
        default=hide,
        help=f"{', '.join(known_datasets())}, a path to an .npz file, or a folder of class "
        "folders of images; digits-captions or fashion-mnist-captions (generated captions) for "
        "two towers",
    )
    p.add_argument("--data-root", default=hide, help="folder holding the dataset files")
    p.add_argument(
        "--pairs",
        default=hide,
        help="a CSV/TSV file of image paths and captions, or an .npz of a_train, b_train, a_test, "
        "b_test: trains two towers (with clip, cliprocket, sogclr_bimodal, isogclr_bimodal)",
    )
    p.add_argument(
        "--csv-img-key", default=hide, help=f"column of the image paths (default {d.csv_img_key})"
    )
    p.add_argument(
        "--csv-caption-key",
        default=hide,
        help=f"column of the captions (default {d.csv_caption_key})",
    )
    p.add_argument(
        "--csv-separator",
        default=hide,
        help="field separator (default: ',' for a .csv file, a tab otherwise)",
    )
    p.add_argument("--epochs", type=int, default=hide, help=f"default {d.epochs}")
    p.add_argument(
        "--batch-size", type=int, default=hide, help=f"global batch (default {d.batch_size})"
    )
    p.add_argument(
        "--views", type=int, default=hide, help=f"views per instance V (default {d.views})"
    )
    p.add_argument(
        "--temperature", type=float, default=hide, help="default: the loss's own (its docstring)"
    )
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


def run(args: argparse.Namespace) -> int:
    """Train (or resume) as the arguments say, then print the summary and the accuracies."""
    flags = {key: getattr(args, key) for key in FLAG_KEYS if hasattr(args, key)}
    if args.no_progress:
        flags["progress"] = False
    overrides = parse_overrides(args.overrides)
    if args.resume is not None and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it; give one of them")
    if args.resume is not None:
        result = _resume(args, flags, overrides)
    else:
        config = _config(args.recipe, flags, overrides)
        result = fit(config, overwrite=args.overwrite, log=lambda line: print(line, flush=True))
    if result.metrics and "strategy" not in result.metrics:  # a strategy logs its own summary
        print(summary_line(result.metrics, result.run_dir), flush=True)
        if result.metrics.get("model") == "two-tower":
            print_two_tower_metrics(result.metrics, result.run_dir)
        else:
            print_metrics(result.metrics, result.run_dir)
    return 0


def _resume(
    args: argparse.Namespace, flags: dict[str, Any], overrides: dict[str, Any]
) -> FitResult:
    fixed = sorted((set(flags) | set(overrides)) - set(RESUME_FLAG_KEYS))
    if args.recipe is not None or fixed:
        what = ([f"recipe {args.recipe!r}"] if args.recipe is not None else []) + fixed
        raise ValueError(
            "--resume continues a run with its own configuration; it cannot take "
            f"{', '.join(what)} (allowed with --resume: {', '.join(RESUME_FLAG_KEYS)})"
        )
    return resume_run(args.resume, **{**flags, **overrides})


def _config(recipe: str | None, flags: dict[str, Any], overrides: dict[str, Any]) -> FitConfig:
    """Defaults < recipe < flags < ``--set``; ``out`` defaults to :func:`default_out_dir`."""
    name = None
    values: dict[str, Any] = {}
    if recipe is not None:
        loaded = load_recipe(recipe)
        name, values = loaded.name, dict(loaded.values)
    values = apply_overrides(values, flags, source="command line")
    values = apply_overrides(values, overrides, source="command line")
    values.setdefault("out", default_out_dir(values, recipe=name))
    return config_from_mapping(values, source="command line")
