"""Every registered loss that trains on image views, on the bundled digits, against the random-init encoder.

Each loss trains the default digits model (SmallCNN + MLP head) for a few epochs with its own default
temperature, then the frozen encoder's kNN (k = 20) and linear-probe accuracy on the held-out digits are
compared with the same encoder at random initialisation.

    .venv/bin/python benchmarks/zoo_digits.py --epochs 5 --out runs/zoo-digits

It prints a markdown table; a loss "beats random" when its kNN accuracy is above the random-init one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from contrastkit.data import load_dataset
from contrastkit.losses import loss_info, loss_names
from contrastkit.train import FitConfig, build_model, evaluate_encoder, fit

# Losses whose own default views count is not 2.
VIEWS = {"cacr": 4, "mvinfonce": 4, "mvdhel": 4, "pwe": 4, "avg": 4}


def image_losses() -> list[str]:
    """Registered losses the trainer can feed with image views."""
    return [name for name in loss_names() if loss_info(name).input_kind == "views"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--losses", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--out", default="runs/zoo-digits")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.losses.split(",") if args.losses else image_losses()

    split = load_dataset("digits", seed=args.seed)
    torch.manual_seed(args.seed)
    base = FitConfig(data="digits", seed=args.seed)
    random_metrics = evaluate_encoder(build_model(base, 1).encoder, split.train, split.test)
    print(f"# command: python benchmarks/zoo_digits.py --epochs {args.epochs} --seed {args.seed}")
    print(
        f"random-init encoder: kNN {random_metrics['knn_acc']:.4f}, "
        f"linear {random_metrics['linear_acc']:.4f}"
    )
    print("| loss | views | kNN | linear | beats random kNN | train s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in names:
        views = VIEWS.get(name, 2)
        config = FitConfig(
            loss=name,
            data="digits",
            epochs=args.epochs,
            views=views,
            temperature=None,
            seed=args.seed,
            out=str(Path(args.out) / name),
            progress=False,
            threads=args.threads,
        )
        start = time.perf_counter()
        try:
            metrics = fit(config).metrics
        except Exception as exc:  # a loss that cannot train is reported, not hidden
            print(f"| {name} | {views} | failed: {type(exc).__name__}: {exc} | | | |", flush=True)
            rows.append({"loss": name, "error": str(exc)})
            continue
        seconds = time.perf_counter() - start
        beats = metrics["knn_acc"] > random_metrics["knn_acc"]
        print(
            f"| {name} | {views} | {metrics['knn_acc']:.4f} | {metrics['linear_acc']:.4f} | "
            f"{'yes' if beats else 'NO'} | {seconds:.0f} |",
            flush=True,
        )
        rows.append({"loss": name, "views": views, **metrics, "beats_random_knn": beats})
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "zoo.json").write_text(
        json.dumps({"random_init": random_metrics, "losses": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
