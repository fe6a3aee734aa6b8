"""Two-tower benchmarks (issue 15): CLIP on Fashion-MNIST captions, the bimodal loss comparison, and a
two-sensor example. Every sub-command trains through `contrastkit.train.fit` (the recipes of
`contrastkit recipes`), writes its numbers to benchmarks/results/ and prints a Markdown table.

Usage (from the repository root; 1 torch thread, as the other CPU benchmarks):

    # (a) + (c): one CLIP run on the 60,000 Fashion-MNIST captions, with the image encoder of the
    # SimCLR benchmark (benchmarks/fashion_mnist.py: SmallCNN 32-64-128-256, strides 2-1-2-1, 2x2 pool)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/two_tower.py fashion --epochs 5 --out runs/tt-fmnist-clip-5ep

    # (b): clip, cliprocket, sogclr_bimodal, isogclr_bimodal at batch 64 and 512, 3 seeds, same epochs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/two_tower.py compare --epochs 15 --out runs/tt-compare
    .venv/bin/python benchmarks/two_tower.py compare-table

    # (d): two sensors of sktime's BasicMotions (accelerometer <-> gyroscope) as an .npz of pairs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/two_tower.py sensors --out runs/tt-basicmotions

The captions are generated (contrastkit.data.captions): class names and synonyms, templates, and words
for attributes measured from each image. Zero-shot uses templates no training caption uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastkit.data.captions import caption_vocabulary
from contrastkit.eval import (
    embed_side,
    retrieval_metrics,
    zero_shot_accuracy,
    zero_shot_classifier,
)
from contrastkit.runs import load_two_tower_run
from contrastkit.train import fit, load_recipe

RESULTS = Path(__file__).resolve().parent / "results"
LOSSES = ("clip", "cliprocket", "sogclr_bimodal", "isogclr_bimodal")
# The image encoder of benchmarks/fashion_mnist.py (BENCHMARKS.md, "Fashion-MNIST SimCLR").
SIMCLR_ENCODER = {
    "encoder_widths": [32, 64, 128, 256],
    "encoder_strides": [2, 1, 2, 1],
    "encoder_pool": 2,
}
RETRIEVAL = ("R@1", "R@5", "R@10", "median_rank")


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


# ----------------------------------------------------------------------------------------- fashion


def _extras(run_dir: str) -> dict[str, Any]:
    """Zero-shot with unseen synonyms and with the bare prompt; a class-only retrieval baseline."""
    config, model = load_two_tower_run(run_dir)
    split = config.load_pairs()
    labels = split.test.labels
    assert labels is not None
    vocab = caption_vocabulary("fashion-mnist-captions")
    emb = embed_side(model, "a", split.test.a)
    model.eval()

    def top1(names: list[str], templates: list[str]) -> float:
        """Zero-shot top-1 with ``names[i]`` standing for label ``i``."""
        with torch.no_grad():
            w = zero_shot_classifier(lambda t: model.encode_text(t).float(), names, templates)
        return zero_shot_accuracy(emb, labels, w, topk=(1,))["zero_shot_top1"]

    unseen = [syn[0] for syn in vocab.held_out_synonyms]
    # A ranking that knows only the class: one-hot class vectors with a tiny random tie-break.
    g = torch.Generator().manual_seed(0)
    onehot = torch.nn.functional.one_hot(labels, len(vocab.class_names)).float()
    oracle = retrieval_metrics(
        onehot + 1e-3 * torch.randn(onehot.shape, generator=g),
        onehot + 1e-3 * torch.randn(onehot.shape, generator=g),
    )
    return {
        # class synonyms no caption uses (the words were never trained on)
        "unseen_synonyms": unseen,
        "zero_shot_top1_unseen_synonyms": top1(unseen, list(vocab.zero_shot_templates)),
        # the bare prompt "a {}" against the held-out ensemble
        "zero_shot_top1_template_a": top1(list(vocab.class_names), ["a {}"]),
        "class_only_retrieval": oracle,
    }


def cmd_fashion(args: argparse.Namespace) -> None:
    overrides: dict[str, Any] = {
        "data": "fashion-mnist-captions",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "warmup_epochs": args.warmup_epochs,
        "precision": args.precision,
        "seed": args.seed,
        "out": args.out,
        "threads": 1,
        "progress": False,
        **SIMCLR_ENCODER,
    }
    if args.data_root:
        overrides["data_root"] = args.data_root
    config = load_recipe(args.recipe).config(overrides)
    path = RESULTS / f"two_tower_fmnist_{args.recipe}_{args.epochs}ep.json"
    if args.summarize_only:  # the run exists: recompute the extras below, keep its metrics
        m = json.loads((Path(args.out) / "metrics.json").read_text())
        wall = json.loads(path.read_text())["wall_seconds_fit_and_eval"] if path.is_file() else None
    else:
        wall = time.perf_counter()
        m = dict(fit(config, overwrite=True).metrics)
        wall = time.perf_counter() - wall
    extras = _extras(args.out)
    simclr = json.loads((RESULTS / "fashion_mnist_simclr.json").read_text())
    report = {
        "config": config.to_dict(),
        "metrics": m,
        **extras,
        "wall_seconds_fit_and_eval": wall,
        "simclr_reference": {
            "source": "benchmarks/results/fashion_mnist_simclr.json",
            "simclr": simclr["simclr"],
            "random_init": simclr["random_init"],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    s, r = simclr["simclr"], simclr["random_init"]
    print(f"written {path}")
    print(
        f"training: {m['train_seconds'] / 60:.1f} min, {m['epochs']} epochs, {m['steps']} steps, "
        f"precision {m['precision']}; fit + evaluation "
        + (f"{wall / 60:.1f} min" if wall is not None else "not timed")
    )
    print(
        "| image encoder (SmallCNN, 388,320 parameters) | zero-shot top-1 | zero-shot top-5 | "
        "linear probe | kNN (k=20) | pretraining (min) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.recipe} image tower, {m['epochs']} epochs | {m['zero_shot_top1']:.4f} | "
        f"{m['zero_shot_top5']:.4f} | {m['linear_acc']:.4f} | {m['knn_acc']:.4f} | "
        f"{m['train_seconds'] / 60:.1f} |"
    )
    print(
        f"| SimCLR, {s['epochs']} epochs (issue 2) | — | — | {s['linear_acc']:.4f} | "
        f"{s['knn_acc']:.4f} | {s['train_seconds'] / 60:.1f} |"
    )
    print(f"| random init | — | — | {r['linear_acc']:.4f} | {r['knn_acc']:.4f} | — |")
    print(
        f"zero-shot top-1 with unseen synonyms ({', '.join(extras['unseen_synonyms'])}): "
        f"{extras['zero_shot_top1_unseen_synonyms']:.4f}; with the bare prompt 'a {{}}': "
        f"{extras['zero_shot_top1_template_a']:.4f}"
    )
    print("| retrieval, 10,000 test pairs | R@1 | R@5 | R@10 | median rank | mean rank |")
    print("|---|---|---|---|---|---|")
    oracle = extras["class_only_retrieval"]
    for name, src in ((f"{args.recipe}, {m['epochs']} epochs", m), ("class only", oracle)):
        for d in ("image_to_text", "text_to_image"):
            cells = " | ".join(_fmt(src[f"{d}_{k}"]) for k in (*RETRIEVAL, "mean_rank"))
            print(f"| {name}, {d.replace('_', ' ')} | {cells} |")


# ----------------------------------------------------------------------------------------- compare

_KEEP = (
    "zero_shot_top1",
    "image_to_text_R@1",
    "image_to_text_R@10",
    "text_to_image_R@1",
    "text_to_image_R@10",
    "linear_acc",
    "train_seconds",
    "steps",
    "final_loss",
)


def cmd_compare(args: argparse.Namespace) -> None:
    out_dir = Path(args.out)
    results_path = RESULTS / "two_tower_compare.json"
    done: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    losses = args.losses.split(",")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:  # seeds outermost: a cut-short sweep still has every cell once
        for batch in batches:
            for loss in losses:
                key = f"{loss}/b{batch}/s{seed}"
                if key in done and done[key].get("epochs") == args.epochs:
                    continue
                config = load_recipe(loss).config(
                    {
                        "data": args.data,
                        "epochs": args.epochs,
                        "batch_size": batch,
                        "precision": args.precision,
                        "seed": seed,
                        "out": str(out_dir / f"{loss}-b{batch}-s{seed}"),
                        "threads": 1,
                        "progress": False,
                        "tensorboard": False,
                    }
                )
                t0 = time.perf_counter()
                m = fit(config, overwrite=True).metrics
                row = {k: m[k] for k in _KEEP if k in m}
                row.update(epochs=args.epochs, wall_seconds=time.perf_counter() - t0)
                done[key] = row
                RESULTS.mkdir(exist_ok=True)
                results_path.write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
                print(f"{key}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items()), flush=True)
    cmd_compare_table(args)


def _mean_spread(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def cmd_compare_table(args: argparse.Namespace) -> None:
    done = json.loads((RESULTS / "two_tower_compare.json").read_text())
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key, row in done.items():
        loss, b, _ = key.split("/")
        cells.setdefault((loss, int(b[1:])), []).append(row)
    batches = sorted({b for _, b in cells})
    metrics = ("zero_shot_top1", "image_to_text_R@1", "text_to_image_R@1", "linear_acc")
    print("mean ± sample standard deviation over seeds (n: seeds per cell)")
    print(
        "| loss | batch | n | zero-shot top-1 | image→text R@1 | text→image R@1 | linear probe | "
        "train s / run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for loss in LOSSES:
        for b in batches:
            rows = cells.get((loss, b), [])
            if not rows:
                continue
            vals = [_mean_spread([float(r[k]) for r in rows if k in r]) for k in metrics]
            secs = statistics.mean(float(r["train_seconds"]) for r in rows)
            print(f"| {loss} | {b} | {len(rows)} | " + " | ".join(vals) + f" | {secs:.0f} |")
    print("change from batch 512 to batch 64 (mean over seeds):")
    for loss in LOSSES:
        if (loss, 64) in cells and (loss, 512) in cells:
            diffs = []
            for k in metrics:
                lo = statistics.mean(float(r[k]) for r in cells[(loss, 64)])
                hi = statistics.mean(float(r[k]) for r in cells[(loss, 512)])
                diffs.append(f"{k} {lo - hi:+.3f}")
            print(f"  {loss}: " + ", ".join(diffs))


# ----------------------------------------------------------------------------------------- sensors


def cmd_sensors(args: argparse.Namespace) -> None:
    from sktime.datasets import load_basic_motions

    parts = {}
    for split in ("train", "test"):
        x, y = load_basic_motions(split=split, return_type="numpy3D")
        parts[split] = (np.asarray(x, dtype=np.float32), np.asarray(y))
    classes = sorted(set(parts["train"][1]) | set(parts["test"][1]))
    # Standardise each channel with the training statistics.
    mean = parts["train"][0].mean(axis=(0, 2), keepdims=True)
    std = parts["train"][0].std(axis=(0, 2), keepdims=True) + 1e-6
    arrays = {}
    for split, (x, y) in parts.items():
        x = (x - mean) / std
        arrays[f"a_{split}"] = x[:, :3]  # accelerometer x, y, z
        arrays[f"b_{split}"] = x[:, 3:]  # gyroscope x, y, z
        arrays[f"y_{split}"] = np.array([classes.index(c) for c in y], dtype=np.int64)
    npz = Path(args.npz)
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(npz, **arrays)
    cmd = [
        sys.executable,
        "-m",
        "contrastkit",
        "fit",
        "clip",
        "--pairs",
        str(npz),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        "--out",
        args.out,
        "--threads",
        "1",
        "--overwrite",
        "--no-progress",
    ]
    print("$ contrastkit " + " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)
    m = json.loads((Path(args.out) / "metrics.json").read_text())
    report = {
        "npz": str(npz),
        "classes": classes,
        "command": cmd[3:],
        "metrics": m,
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
    }
    (RESULTS / "two_tower_basicmotions.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| direction | R@1 | R@5 | R@10 | median rank |")
    print("|---|---|---|---|---|")
    for d in ("a_to_b", "b_to_a"):
        print(f"| {d} | " + " | ".join(_fmt(m[f"{d}_{k}"]) for k in RETRIEVAL) + " |")
    print(
        f"linear probe: accelerometer tower {m['linear_acc']:.4f}, gyroscope tower "
        f"{m['linear_acc_b']:.4f}; kNN {m['knn_acc']:.4f} / {m['knn_acc_b']:.4f}; "
        f"{len(arrays['y_test'])} test pairs, {len(classes)} classes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fashion")
    p.add_argument("--recipe", default="clip")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="runs/tt-fmnist-clip-5ep")
    p.add_argument(
        "--summarize-only", action="store_true", help="no training: summarise the run in --out"
    )
    p.set_defaults(func=cmd_fashion)
    p = sub.add_parser("compare")
    p.add_argument("--data", default="digits-captions")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--losses", default=",".join(LOSSES))
    p.add_argument("--batch-sizes", default="64,512")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="runs/tt-compare")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("compare-table")
    p.set_defaults(func=cmd_compare_table)
    p = sub.add_parser("sensors")
    p.add_argument("--npz", default="runs/basicmotions_pairs.npz")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/tt-basicmotions")
    p.set_defaults(func=cmd_sensors)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.func(args)


if __name__ == "__main__":
    main()
