"""Fashion-MNIST: SimCLR pretraining on the 60,000 training images (labels unused), then kNN and
linear-probe accuracy of the frozen encoder on the 10,000 test images, next to a randomly initialised copy
of the same encoder under the same protocol and to raw pixels.

Usage (from the repository root, after `make demo` or `make test` created .venv):

    .venv/bin/python benchmarks/fashion_mnist.py --epochs 30 --out runs/fmnist-simclr

The data come from Debian's package `dataset-fashion-mnist` (`apt-get install -y dataset-fashion-mnist`,
as root; this script runs that itself when it is root and the files are missing) or from `--data-root`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import torch

from contrastkit.data import DatasetNotFoundError, load_dataset
from contrastkit.eval import knn_accuracy, linear_probe
from contrastkit.train import FitConfig, build_model, evaluate_encoder, fit


def ensure_data(root: str | None) -> None:
    """Install Debian's dataset-fashion-mnist when the files are missing and we are root."""
    try:
        load_dataset("fashion-mnist", root=root)
        return
    except DatasetNotFoundError:
        if root is not None or os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise
    print("Fashion-MNIST not found: installing Debian's dataset-fashion-mnist ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--loss", default="ntxent")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--widths", default="32,64,128,256", help="encoder conv widths")
    parser.add_argument("--strides", default="2,1,2,1", help="encoder conv strides")
    parser.add_argument(
        "--pool", type=int, default=2, help="side of the encoder's final pooling grid"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default="runs/fmnist-simclr")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ensure_data(args.data_root)

    config = FitConfig(
        loss=args.loss,
        data="fashion-mnist",
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        views=args.views,
        temperature=args.temperature,
        lr=args.lr,
        seed=args.seed,
        out=args.out,
        precision=args.precision,
        threads=args.threads,
        encoder_widths=tuple(int(w) for w in args.widths.split(",")),
        encoder_strides=tuple(int(s) for s in args.strides.split(",")),
        encoder_pool=args.pool,
        progress=False,
    )
    wall = time.perf_counter()
    result = fit(config)
    wall = time.perf_counter() - wall

    split = load_dataset("fashion-mnist", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    random_model = build_model(config, split.train.image_shape[0])
    random_metrics = evaluate_encoder(random_model.encoder, split.train, split.test)
    train_px = split.train.images.flatten(1)
    test_px = split.test.images.flatten(1)
    raw = {
        "knn_acc": knn_accuracy(train_px, split.train.labels, test_px, split.test.labels, k=20),
        "linear_acc": linear_probe(
            train_px, split.train.labels, test_px, split.test.labels
        ).accuracy,
    }
    report = {
        "config": config.to_dict(),
        "simclr": result.metrics,
        "random_init": random_metrics,
        "raw_pixels": raw,
        "pretrain_seconds": result.metrics["train_seconds"],
        "wall_seconds_fit_and_eval": wall,
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(
        f"pretraining: {result.metrics['train_seconds'] / 60:.1f} min, {args.epochs} epochs, "
        f"precision {result.metrics['precision']}"
    )
    print("| encoder | linear probe | kNN (k=20) |")
    print("|---|---|---|")
    print(
        f"| SimCLR ({args.loss}) | {result.metrics['linear_acc']:.4f} | {result.metrics['knn_acc']:.4f} |"
    )
    print(f"| random init | {random_metrics['linear_acc']:.4f} | {random_metrics['knn_acc']:.4f} |")
    print(f"| raw pixels | {raw['linear_acc']:.4f} | {raw['knn_acc']:.4f} |")


if __name__ == "__main__":
    main()
