"""Representation quality of trained runs on Fashion-MNIST, next to raw pixels and a random-init encoder.

For each run directory (made by `contrastkit fit ... --data fashion-mnist`), for the raw pixels, and for
a randomly initialised encoder of the first run's architecture, this computes on the 10,000 test images:

- kNN accuracy (cosine, k = 20, InstDisc weighted votes at temperature 0.07; memory bank = train set);
- linear-probe accuracy (`contrastkit.eval.linear_probe`: L-BFGS logistic regression, L2 strength
  chosen on a 10 % split of the train set);
- k-means (k = 10, 10 restarts) NMI and ARI on the L2-normalised test features;
- alignment (Wang & Isola, alpha = 2) of two augmented views of each test image (the dataset's view
  preset; the same views for every representation);
- uniformity (t = 2) and effective rank (Roy & Vetterli) of the test features,

then prints a markdown table with the command that produced each row, the command of this script, and
writes the numbers as JSON with `--json FILE`.

Usage (from the repository root):

    .venv/bin/python benchmarks/eval_fmnist.py runs/fmnist-simclr runs/fmnist-dcl ... --json out.json

Any dataset works with `--data` (default: the runs' own dataset, else fashion-mnist); e.g. a quick
check on a digits run: `.venv/bin/python benchmarks/eval_fmnist.py runs/demo`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contrastkit.data import ArrayDataset, load_dataset
from contrastkit.eval import (
    alignment,
    cluster_metrics,
    effective_rank,
    extract_features,
    knn_accuracy,
    linear_probe,
    uniformity,
)
from contrastkit.train import FitConfig, build_model, load_run
from contrastkit.views import ViewAugment, preset_for_dataset

KNN_K = 20
KNN_TEMPERATURE = 0.07
VIEW_SEED = 0

# Shown as flags in the reconstructed training command; every other key goes through --set.
_FLAG_KEYS = ("loss", "data", "epochs", "batch_size", "temperature", "lr", "seed", "out")
_IGNORED_KEYS = ("progress", "tensorboard", "device", "threads", "checkpoint_every")


def fit_command(config: dict[str, Any]) -> str:
    """The `contrastkit fit` command that reproduces a run's config.json (defaults left out)."""
    defaults = FitConfig().to_dict()
    parts = ["contrastkit", "fit"]
    for key in _FLAG_KEYS:
        if key in config and (config[key] != defaults.get(key) or key in ("loss", "data", "out")):
            parts += [f"--{key.replace('_', '-')}", str(config[key])]
    for key in sorted(config):
        if key in _FLAG_KEYS or key in _IGNORED_KEYS or config[key] == defaults.get(key):
            continue
        if key == "loss_kwargs" and isinstance(config[key], dict):
            for name, value in sorted(config[key].items()):
                parts += ["--set", f"loss_kwargs.{name}={json.dumps(value)}"]
            continue
        value = config[key]
        text = value if isinstance(value, str) else json.dumps(value).replace(" ", "")
        parts += ["--set", f"{key}={text}"]
    if config.get("progress") is False:
        parts.append("--no-progress")
    return shlex.join(parts)


def evaluate(
    name: str,
    features: Callable[[Tensor], Tensor],
    train: ArrayDataset,
    test: ArrayDataset,
    views: tuple[Tensor, Tensor],
    *,
    seed: int,
) -> dict[str, Any]:
    """All the numbers of one representation (``features`` maps images to (N, D) features)."""
    start = time.perf_counter()
    f_train = features(train.images)
    f_test = features(test.images)
    probe = linear_probe(f_train, train.labels, f_test, test.labels, seed=seed)
    km = cluster_metrics(f_test, test.labels, seed=seed)
    row = {
        "representation": name,
        "dim": int(f_test.shape[1]),
        "knn_acc": knn_accuracy(
            f_train, train.labels, f_test, test.labels, k=KNN_K, temperature=KNN_TEMPERATURE
        ),
        "linear_acc": probe.accuracy,
        "linear_weight_decay": probe.weight_decay,
        "kmeans_nmi": km["nmi"],
        "kmeans_ari": km["ari"],
        "alignment": alignment(features(views[0]), features(views[1])),
        "uniformity": uniformity(f_test, seed=seed),
        "effective_rank": effective_rank(f_test),
    }
    row["seconds"] = time.perf_counter() - start
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| representation | dim | kNN (k=20) | linear probe | k-means NMI | k-means ARI | "
        "alignment | uniformity | effective rank | command |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['representation']} | {r['dim']} | {r['knn_acc']:.4f} | {r['linear_acc']:.4f} | "
            f"{r['kmeans_nmi']:.4f} | {r['kmeans_ari']:.4f} | {r['alignment']:.4f} | "
            f"{r['uniformity']:.4f} | {r['effective_rank']:.1f} | `{r['command']}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", type=Path, help="run directories of contrastkit fit")
    parser.add_argument("--data", default=None, help="dataset (default: the runs' own)")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-pixel baseline")
    parser.add_argument("--no-random", action="store_true", help="skip the random-init encoder")
    parser.add_argument("--widths", default="32,64,128,256", help="random encoder, no runs given")
    parser.add_argument("--strides", default="2,1,2,1", help="random encoder, no runs given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init and probes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="where to run the encoders")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    this_command = shlex.join(["python", "benchmarks/eval_fmnist.py", *(argv or sys.argv[1:])])

    loaded = []
    for run in args.runs:
        config, model = load_run(run)
        loaded.append((run, config, model.to(args.device)))
    datasets = {config.data for _, config, _ in loaded}
    if args.data is None and len(datasets) > 1:
        parser.error(f"the runs were trained on different datasets {sorted(datasets)}; pass --data")
    data = args.data or (loaded[0][1].data if loaded else "fashion-mnist")
    first = loaded[0][1] if loaded else None
    split = load_dataset(
        data,
        root=args.data_root if args.data_root is not None else (first.data_root if first else None),
        seed=first.seed if first else 0,
    )
    train, test = split.train, split.test
    channels, size, _ = train.image_shape
    augment = ViewAugment(preset_for_dataset(data, channels=channels, image_size=size))
    both = augment.views(test.images, 2, generator=torch.Generator().manual_seed(VIEW_SEED))
    views = (both[:, 0].contiguous(), both[:, 1].contiguous())
    del both
    print(
        f"{data}: {len(train)} train / {len(test)} test images; view preset "
        f"{augment.config.name!r}",
        flush=True,
    )

    rows: list[dict[str, Any]] = []

    def add(name: str, fn: Callable[[Tensor], Tensor], command: str) -> None:
        row = evaluate(name, fn, train, test, views, seed=args.seed)
        row["command"] = command
        rows.append(row)
        print(
            f"  {name}: kNN {row['knn_acc']:.4f}, linear {row['linear_acc']:.4f} "
            f"({row['seconds']:.0f} s)",
            flush=True,
        )

    for run, config, model in loaded:
        add(
            f"{config.loss} ({run.name})",
            lambda x, enc=model.encoder: extract_features(enc, x),
            fit_command(config.to_dict()),
        )
    if not args.no_random:
        if first is not None:
            arch = first
        else:
            arch = FitConfig(
                encoder_widths=tuple(int(w) for w in args.widths.split(",")),
                encoder_strides=tuple(int(s) for s in args.strides.split(",")),
            )
        torch.manual_seed(args.seed)
        random_model = build_model(arch, channels).to(args.device)
        widths = ",".join(str(w) for w in arch.encoder_widths)
        add(
            f"random-init encoder (widths {widths})",
            lambda x: extract_features(random_model.encoder, x),
            this_command,
        )
    if not args.no_raw:
        add("raw pixels", lambda x: x.flatten(1).float(), this_command)

    print()
    print(f"Command: `{this_command}`")
    print()
    print(_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": this_command, "data": data, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
