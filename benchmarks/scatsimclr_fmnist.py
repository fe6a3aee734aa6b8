"""ScatSimCLR on Fashion-MNIST: a fixed scattering transform + small trainable adapter, trained with
NT-Xent (and optionally the rotation pretext term), against the CNN SimCLR of
`benchmarks/fashion_mnist.py` under the same protocol (60,000 training images without labels; kNN and
linear probe of the frozen encoder on the 10,000 test images).

Usage (from the repository root, after `make test` created .venv):

    .venv/bin/python benchmarks/scatsimclr_fmnist.py run --epochs 5 --rotation off --out runs/scat-off
    .venv/bin/python benchmarks/scatsimclr_fmnist.py run --epochs 5 --rotation on --out runs/scat-rot
    .venv/bin/python benchmarks/scatsimclr_fmnist.py table runs/scat-off runs/scat-rot \\
        --cnn benchmarks/results/fashion_mnist_simclr.json

`run` trains one model and writes `<out>/benchmark.json` (with the random-init copy of the same
encoder evaluated under the same protocol); `table` prints the markdown table of several runs next to
the CNN SimCLR result file written by `benchmarks/fashion_mnist.py`. The adapter defaults to a
60-channel stem and one stage of two residual blocks (174k trainable parameters), under half of the
CNN's 388k.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from contrastkit.data import load_dataset
from contrastkit.models import count_parameters
from contrastkit.train import FitConfig, build_model, evaluate_encoder, fit


def _run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    encoder_kwargs = {
        "J": args.J,
        "L": args.L,
        "stem_width": args.width,
        "stages": [[args.width, args.blocks]],
        "pool_size": args.pool,
    }
    pretext: dict[str, Any] = {"pretext": "none"}
    if args.rotation == "on":
        pretext = {
            "pretext": "rotation",
            "pretext_weight": args.pretext_weight,
            "pretext_start_epoch": args.pretext_start_epoch,
            "pretext_kwargs": {"rotations_per_image": args.rotations_per_image},
        }
    config = FitConfig(
        loss="ntxent",
        data="fashion-mnist",
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        temperature=args.temperature,
        lr=args.lr,
        seed=args.seed,
        out=args.out,
        threads=args.threads,
        encoder="scatnet",
        encoder_kwargs=encoder_kwargs,
        progress=False,
        **pretext,
    )
    wall = time.perf_counter()
    result = fit(config)
    wall = time.perf_counter() - wall
    split = load_dataset("fashion-mnist", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    channels, size, _ = split.train.image_shape
    random_model = build_model(config, channels, size)
    random_metrics = evaluate_encoder(random_model.encoder, split.train, split.test)
    report = {
        "config": config.to_dict(),
        "scatsimclr": result.metrics,
        "random_init": random_metrics,
        "encoder_trainable_parameters": count_parameters(result.model.encoder),
        "encoder_all_parameters": count_parameters(result.model.encoder, trainable_only=False),
        "pretrain_seconds": result.metrics["train_seconds"],
        "wall_seconds_fit_and_eval": wall,
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "benchmark.json").write_text(json.dumps(report, indent=2))
    m = result.metrics
    print(
        f"ScatSimCLR (rotation {args.rotation}): linear {m['linear_acc']:.4f}, kNN {m['knn_acc']:.4f}, "
        f"{report['encoder_trainable_parameters']} trainable encoder parameters, "
        f"{m['train_seconds'] / 60:.1f} min; random init: linear {random_metrics['linear_acc']:.4f}"
    )


def _report(run: str) -> dict[str, Any]:
    """A run directory's benchmark.json, or a copy of one given as a file."""
    path = Path(run)
    data: dict[str, Any] = json.loads(
        (path if path.is_file() else path / "benchmark.json").read_text()
    )
    return data


def _table(args: argparse.Namespace) -> None:
    rows = []
    for path in args.cnn:
        cnn = json.loads(Path(path).read_text())
        cm = cnn["simclr"]
        params = cm["encoder_parameters"]
        name = f"CNN SimCLR ({cm['epochs']} epochs)"
        rows.append((name, params, cm["linear_acc"], cm["knn_acc"], cm["train_seconds"] / 60))
    random_cnn = cnn["random_init"]
    rows.append(("CNN, random init", params, random_cnn["linear_acc"], random_cnn["knn_acc"], 0.0))
    for run in args.runs:
        rep = _report(run)
        m, cfg = rep["scatsimclr"], rep["config"]
        if cfg["pretext"] == "none":
            label = "off"
        else:
            label = (
                f"rotation x{cfg['pretext_kwargs'].get('rotations_per_image', 4)}, weight "
                f"{cfg['pretext_weight']}, from epoch {cfg['pretext_start_epoch']}"
            )
        rows.append(
            (
                f"ScatSimCLR ({m['epochs']} epochs), pretext {label}",
                rep["encoder_trainable_parameters"],
                m["linear_acc"],
                m["knn_acc"],
                m["train_seconds"] / 60,
            )
        )
    rep0 = _report(args.runs[0])
    rows.append(
        (
            "ScatNet + adapter, random init",
            rep0["encoder_trainable_parameters"],
            rep0["random_init"]["linear_acc"],
            rep0["random_init"]["knn_acc"],
            0.0,
        )
    )
    print(
        "| encoder | trainable encoder parameters | linear probe | kNN (k=20) | pretraining (min) |"
    )
    print("|---|---|---|---|---|")
    for name, params, lin, knn, minutes in rows:
        print(f"| {name} | {params:,} | {lin:.4f} | {knn:.4f} | {minutes:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one ScatSimCLR model")
    run.add_argument("--epochs", type=int, default=5)
    run.add_argument("--rotation", choices=["on", "off"], default="off")
    run.add_argument("--rotations-per-image", type=int, choices=[1, 4], default=1)
    run.add_argument("--pretext-weight", type=float, default=0.3)
    run.add_argument("--pretext-start-epoch", type=int, default=0)
    run.add_argument("--J", type=int, default=2)
    run.add_argument("--L", type=int, default=8)
    run.add_argument("--width", type=int, default=60, help="adapter stem and stage width")
    run.add_argument("--blocks", type=int, default=2, help="residual blocks in the adapter")
    run.add_argument("--pool", type=int, default=4, help="side of the adapter's pooling grid")
    run.add_argument("--batch-size", type=int, default=256)
    run.add_argument("--temperature", type=float, default=0.2)
    run.add_argument("--lr", type=float, default=2e-3)
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--data-root", default=None)
    run.add_argument("--out", default="runs/scatsimclr-fmnist")
    table = sub.add_parser("table", help="markdown table of runs next to the CNN SimCLR")
    table.add_argument("runs", nargs="+", help="run directories or copies of their benchmark.json")
    table.add_argument(
        "--cnn",
        nargs="+",
        default=["benchmarks/results/fashion_mnist_simclr.json"],
        help="result files of benchmarks/fashion_mnist.py (CNN SimCLR runs)",
    )
    args = parser.parse_args()
    if args.command == "run":
        _run(args)
    else:
        _table(args)


if __name__ == "__main__":
    main()
