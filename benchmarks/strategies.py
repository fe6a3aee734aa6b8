"""Training-strategy benchmarks: G-SimCLR, MCL, Core-tuning, continual SupCon, series and tables.

Each sub-command runs one comparison at the same budget and prints a markdown table (``--out``
also writes JSON). Run reniced on one thread; each takes a few minutes on a CPU::

    nice -n 10 python benchmarks/strategies.py gsimclr --data digits --epochs 20
    nice -n 10 python benchmarks/strategies.py mcl --data digits --epochs 20
    nice -n 10 python benchmarks/strategies.py coretuning --run-dir runs/fmnist-simclr
    nice -n 10 python benchmarks/strategies.py continual --data digits
    nice -n 10 python benchmarks/strategies.py modalities
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from contrastkit.train.config import FitConfig

SMALL_CNN = {"encoder_widths": (32, 64, 128), "encoder_strides": (1, 2, 1)}


def _config(args: argparse.Namespace, **kw: Any) -> FitConfig:
    base: dict[str, Any] = {
        "data": args.data,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "temperature": 0.2,  # the FitConfig default when these numbers were measured
        "device": "cpu",
        "threads": args.threads,
        "progress": False,
        "tensorboard": False,
        **SMALL_CNN,
    }
    base.update(kw)
    return FitConfig(**base)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def bench_gsimclr(args: argparse.Namespace) -> dict[str, Any]:
    from contrastkit.train.strategies import fit_gsimclr

    res = fit_gsimclr(_config(args), dae_epochs=args.dae_epochs, log=print)
    m = res.metrics
    rows = [
        [
            "G-SimCLR (cluster-spread batches)",
            m["gsimclr_knn_acc"],
            m["gsimclr_linear_acc"],
            m["gsimclr_same_label_pairs"],
            f"{m['gsimclr_train_seconds']:.0f} s",
        ],
        [
            "SimCLR (random batches)",
            m["simclr_knn_acc"],
            m["simclr_linear_acc"],
            m["simclr_same_label_pairs"],
            f"{m['simclr_train_seconds']:.0f} s",
        ],
    ]
    print(_table(["method", "kNN acc", "linear acc", "same-label pairs/batch", "time"], rows))
    print(
        f"pseudo-labels: K={m['n_clusters']}, cluster sizes {m['cluster_size_min']}.."
        f"{m['cluster_size_max']}, batches with a repeated cluster: "
        f"{m['gsimclr_same_cluster_batches']:.2%}"
    )
    return m


def bench_mcl(args: argparse.Namespace) -> dict[str, Any]:
    from contrastkit.train.strategies import fit_mcl

    res = fit_mcl(_config(args), stages=args.stages, k=args.k, log=print)
    m = res.metrics
    rows = [
        ["MCL, concatenated stages", m["mcl_knn_acc"], m["mcl_linear_acc"], m["mcl_feature_dim"]],
        [
            "MCL, last stage only",
            m["mcl_last_knn_acc"],
            m["mcl_last_linear_acc"],
            m["mcl_last_feature_dim"],
        ],
        [
            "SimCLR, same epochs",
            m["simclr_knn_acc"],
            m["simclr_linear_acc"],
            m["simclr_feature_dim"],
        ],
    ]
    print(_table(["method", "kNN acc", "linear acc", "dim"], rows))
    stages = ", ".join(
        f"stage {s}: same-label pairs {m[f'stage{s}_same_label_pairs']:.3f}"
        for s in range(args.stages)
    )
    print(stages)
    return m


FINETUNE_AUGMENTS = ("none", "standard")


def _finetune_augment(name: str) -> Any:
    """The fine-tuning augmentation: ``"none"`` or ``"standard"``.

    ``"standard"`` is the supervised fine-tuning recipe of the Core-tuning script scaled to 28x28
    images (rotation up to 15 degrees, a random shift of up to 10 % of the side, horizontal flip
    with p = 0.5), applied to every training batch of both methods with the same random draws.
    """
    if name == "none":
        return None
    from contrastkit.views import ViewAugment, ViewConfig

    return ViewAugment(
        ViewConfig.identity(hflip_p=0.5, degrees=15.0, translate=(0.1, 0.1), name="standard")
    )


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def bench_coretuning(args: argparse.Namespace) -> dict[str, Any]:
    """Core-tuning vs plain CE fine-tuning of a pretrained encoder, paired per seed.

    Seed ``s`` draws the labelled subset (``per_class`` images per class) and seeds both
    fine-tunings, which then share the classifier initialisation, the batches and the augmentation
    draws (see :func:`~contrastkit.train.strategies.core_tune`); only the objective differs. The
    table reports each method's mean +- std over seeds and the paired difference Core - CE.
    """
    from contrastkit.data import load_dataset
    from contrastkit.eval import extract_features, linear_probe
    from contrastkit.train.loop import load_run
    from contrastkit.train.strategies import core_tune

    cfg, model = load_run(args.run_dir)
    split = load_dataset(cfg.data)
    augment = _finetune_augment(args.augment)
    out: dict[str, list[float]] = {"ce": [], "core": []}
    probe: list[float] = []
    seeds = list(range(args.seed, args.seed + args.seeds))
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        idx = torch.cat(
            [
                torch.nonzero(split.train.labels == c).flatten()[
                    torch.randperm(int((split.train.labels == c).sum()), generator=g)[
                        : args.per_class
                    ]
                ]
                for c in range(split.train.num_classes)
            ]
        )
        train = (split.train.images[idx], split.train.labels[idx])
        test = (split.test.images, split.test.labels)
        for method in ("ce", "core"):
            run = core_tune(
                model.encoder,
                train,
                test,
                method=method,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                optimizer=args.optimizer,
                eta=args.eta,
                detach_original=args.detach_original,
                augment=augment,
                seed=seed,
            )
            out[method].append(run.accuracy)
            print(
                f"seed {seed} {method}: test accuracy {run.accuracy:.4f} ({run.seconds:.0f} s)",
                flush=True,
            )
        if args.probe:
            ftr = extract_features(model.encoder, train[0])
            fte = extract_features(model.encoder, test[0])
            acc = float(linear_probe(ftr, train[1], fte, test[1]).accuracy)
            probe.append(acc)
            print(f"seed {seed} frozen linear probe: {acc:.4f}", flush=True)
    diffs = [c - e for c, e in zip(out["core"], out["ce"], strict=True)]
    rows = []
    named = {"Core-tuning": out["core"], "CE fine-tuning": out["ce"]}
    if probe:
        named["frozen linear probe (same labels)"] = probe
    for name, accs in named.items():
        m, sd = _mean_sd(accs)
        rows.append([name, m, sd, ", ".join(f"{a:.4f}" for a in accs)])
    m, sd = _mean_sd(diffs)
    rows.append(["Core - CE (paired)", m, sd, ", ".join(f"{d:+.4f}" for d in diffs)])
    print(
        f"{args.per_class} labels/class, {args.epochs} epochs, bs {args.batch_size}, "
        f"{args.optimizer} lr {args.lr:g} wd {args.weight_decay:g}, augment {args.augment}, "
        f"eta {args.eta:g}, detach_original {args.detach_original}, seeds {seeds}"
    )
    print(_table(["fine-tuning", "mean test acc", "std", "per seed"], rows))
    wins = sum(d > 0 for d in diffs)
    print(f"Core beats CE on {wins} of {len(diffs)} seeds")
    return {
        "accuracies": {"core": out["core"], "ce": out["ce"]},
        "frozen_linear_probe": probe,
        "paired_difference_core_minus_ce": diffs,
        "paired_difference_mean": m,
        "paired_difference_std": sd,
        "seeds": seeds,
        "settings": {
            "run_dir": args.run_dir,
            "per_class": args.per_class,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "augment": args.augment,
            "eta": args.eta,
            "detach_original": args.detach_original,
        },
    }


def bench_continual(args: argparse.Namespace) -> dict[str, Any]:
    from contrastkit.train.strategies import fit_continual_supcon

    cfg = _config(args, loss="supcon", temperature=0.1)
    variants = {
        "no replay": {"buffer_capacity": 0},
        "replay, SupCon on replay anchors (COCONUT)": {"buffer_capacity": args.buffer},
        "replay, SupCon on all anchors": {"buffer_capacity": args.buffer, "anchor_scope": "all"},
    }
    results = {}
    rows = []
    for name, kw in variants.items():
        m = fit_continual_supcon(cfg, epochs_per_task=args.epochs_per_task, **kw).metrics  # type: ignore[arg-type]
        results[name] = m
        rows.append(
            [name, m["final_knn_acc"], m["final_linear_acc"], m["mean_task_acc"], m["forgetting"]]
        )
        print(name, m["accuracy_matrix"], flush=True)
    print(
        _table(
            ["variant", "final kNN (all classes)", "final linear", "mean task kNN", "forgetting"],
            rows,
        )
    )
    return results


def bench_modalities(args: argparse.Namespace) -> dict[str, Any]:
    from contrastkit.train.strategies import fit_modality
    from contrastkit.views import SeriesAugment

    weak = SeriesAugment(permute_p=0.0)
    results = {}
    rows = []
    for name in args.datasets:
        for aug_name, aug in (("strong", None), ("weak", weak)):
            if aug_name == "weak" and name in ("wine", "breast-cancer", "iris", "digits-tabular"):
                continue
            m = fit_modality(
                name, epochs=args.epochs, width=args.width, series_augment=aug, seed=args.seed
            ).metrics
            views = "SCARF" if m["kind"] == "tabular" else f"series ({aug_name})"
            results[f"{name}/{views}"] = m
            rows.append(
                [
                    name,
                    views,
                    m["train_size"],
                    m["linear_acc"],
                    m["raw_linear_acc"],
                    m["random_init_linear_acc"],
                    m["knn_acc"],
                ]
            )
            print(rows[-1], flush=True)
    print(
        _table(
            [
                "data",
                "views",
                "train N",
                "contrastive linear",
                "raw-input linear",
                "random-init linear",
                "kNN",
            ],
            rows,
        )
    )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("gsimclr", "mcl", "continual"):
        s = sub.add_parser(name)
        s.add_argument("--data", default="digits")
        s.add_argument("--epochs", type=int, default=20)
        s.add_argument("--batch-size", type=int, default=64)
        if name == "gsimclr":
            s.add_argument("--dae-epochs", type=int, default=5)
        if name == "mcl":
            s.add_argument("--stages", type=int, default=2)
            s.add_argument("--k", type=int, default=10)
        if name == "continual":
            s.add_argument("--epochs-per-task", type=int, default=4)
            s.add_argument("--buffer", type=int, default=200)
    s = sub.add_parser("coretuning")
    s.add_argument("--run-dir", required=True)
    s.add_argument("--per-class", type=int, default=100)
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--weight-decay", type=float, default=1e-4)
    s.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    s.add_argument("--eta", type=float, default=0.1)
    s.add_argument(
        "--augment",
        choices=FINETUNE_AUGMENTS,
        default="none",
        help="fine-tuning augmentation of both methods (standard: rotate, shift, flip)",
    )
    s.add_argument(
        "--detach-original", action="store_true", help="reference: detach the original rows"
    )
    s.add_argument("--no-probe", dest="probe", action="store_false", help="skip the frozen probe")
    s.add_argument("--seeds", type=int, default=3, help="seeds --seed .. --seed + N - 1")
    s = sub.add_parser("modalities")
    s.add_argument(
        "--datasets",
        nargs="+",
        default=[
            "GunPoint",
            "ArrowHead",
            "ItalyPowerDemand",
            "OSULeaf",
            "BasicMotions",
            "mnist1d",
            "wine",
            "breast-cancer",
            "digits-tabular",
        ],
    )
    s.add_argument("--epochs", type=int, default=40)
    s.add_argument("--width", type=int, default=64)
    for s in sub.choices.values():
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fn = {
        "gsimclr": bench_gsimclr,
        "mcl": bench_mcl,
        "coretuning": bench_coretuning,
        "continual": bench_continual,
        "modalities": bench_modalities,
    }[args.what]
    result = fn(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
