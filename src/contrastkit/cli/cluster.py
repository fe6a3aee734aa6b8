"""``contrastkit cluster``: SCGC / SCGC* graph clustering of a dataset; prints the metrics.

The flags start from a preset (:data:`~contrastkit.train.strategies.graph_clustering.CLUSTER_PRESETS`)
and each flag given overrides its preset value; the result is one
:class:`~contrastkit.train.strategies.graph_clustering.ScgcConfig` for
:func:`~contrastkit.train.strategies.graph_clustering.scgc_cluster`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import torch
from torch import Tensor

from contrastkit._validation import check_int
from contrastkit.train.strategies.graph_clustering import (
    CLUSTER_PRESETS,
    SELECTIONS,
    VARIANTS,
    ClusterRun,
    GraphData,
    ScgcConfig,
    format_scores,
    load_graph_data,
    scgc_cluster,
)

__all__ = ["add_parser", "cluster_config", "run_cluster"]

#: Flags that override a preset's value, as ``(flag destination, ScgcConfig field)``.
PRESET_FLAGS = (
    ("k", "k"),
    ("order", "order"),
    ("alpha", "alpha"),
    ("beta", "beta"),
    ("tau", "inverse_temperature"),
    ("epochs", "epochs"),
    ("pretrain_epochs", "pretrain_epochs"),
    ("lr", "lr"),
    ("normalize_embeddings", "normalize_embeddings"),
    ("center_lr", "center_lr"),
    ("center_refresh_every", "center_refresh_every"),
    ("smooth_steps", "smooth_steps"),
    ("selection", "selection"),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``cluster`` sub-command to ``sub``."""
    p = sub.add_parser("cluster", help="graph clustering (SCGC/SCGC*): ACC, NMI, ARI")
    _add_data_arguments(p)
    _add_setting_arguments(p)
    _add_departure_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--run-dir",
        default=None,
        help="cluster the frozen features of this contrastkit run's encoder instead of pixels",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run_cluster)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="digits",
        help="digits, fashion-mnist-test, <dataset>-test (e.g. cifar10-test), a folder of class "
        "folders of images, or a .npz with x, optional y and adj/edge_index",
    )
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize the images of an image folder to this square size",
    )
    p.add_argument("--clusters", type=int, default=None, help="default: number of label values")


def _add_setting_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="scgc*", choices=list(VARIANTS))
    p.add_argument(
        "--preset",
        default="reference",
        choices=list(CLUSTER_PRESETS),
        help="starting settings: 'reference' (SCGC*'s USPS setting, default) or 'tuned' (the "
        "setting that meets the benchmark targets on digits and Fashion-MNIST, BENCHMARKS.md); "
        "each flag below overrides its preset value",
    )
    ref = CLUSTER_PRESETS["reference"]
    p.add_argument("--k", type=int, default=None, help=f"kNN graph neighbours ({ref.k})")
    p.add_argument("--order", type=int, default=None, help=f"hops r of the targets ({ref.order})")
    p.add_argument("--alpha", type=float, default=None, help=f"contrastive weight ({ref.alpha})")
    p.add_argument("--beta", type=float, default=None, help=f"KL weight ({ref.beta})")
    p.add_argument(
        "--tau",
        type=float,
        default=None,
        help=f"inverse temperature, multiplies ({ref.inverse_temperature})",
    )
    p.add_argument("--epochs", type=int, default=None, help=f"full-batch epochs ({ref.epochs})")
    p.add_argument(
        "--pretrain-epochs",
        type=int,
        default=None,
        help=f"autoencoder epochs ({ref.pretrain_epochs})",
    )
    p.add_argument("--lr", type=float, default=None, help=f"Adam learning rate ({ref.lr})")
    p.add_argument(
        "--hidden", default="256,256,512", help="encoder hidden widths (default 256,256,512)"
    )


def _add_departure_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the departures from the reference (the "tuned" preset turns them on)."""
    p.add_argument(
        "--normalize-embeddings",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="DEC head on L2-normalised embeddings (not in the reference; tuned: on)",
    )
    p.add_argument(
        "--center-lr",
        type=float,
        default=None,
        help="learning rate of the DEC centres (default: --lr)",
    )
    p.add_argument(
        "--center-refresh-every",
        type=int,
        default=None,
        help="re-set the DEC centres by k-means every N epochs, 0: never (reference: never; "
        "tuned: 10)",
    )
    p.add_argument(
        "--smooth-steps",
        type=int,
        default=None,
        help="low-pass filter the features t times on the graph, X <- Â^t X (reference: 0, off; "
        "tuned: 3)",
    )
    p.add_argument(
        "--selection",
        default=None,
        choices=list(SELECTIONS),
        help="partition to output: the last epoch's (reference), or the epoch of highest "
        "modularity on the graph (label-free; tuned)",
    )


def cluster_config(args: argparse.Namespace) -> ScgcConfig:
    """The preset named by ``args.preset`` with every flag given on the command line applied.

    ``--center-refresh-every 0`` means never (None).

    Raises:
        ValueError: ``--hidden`` is not comma-separated integers, or a setting is out of range.
    """
    changes: dict[str, Any] = {}
    for flag, name in PRESET_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            changes[name] = value
    if changes.get("center_refresh_every") == 0:
        changes["center_refresh_every"] = None
    try:
        hidden = tuple(int(h) for h in str(args.hidden).split(",") if h.strip())
    except ValueError as exc:
        raise ValueError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from exc
    changes.update(variant=args.variant, hidden_dims=hidden, seed=args.seed)
    return dataclasses.replace(CLUSTER_PRESETS[args.preset], **changes)


def run_cluster(args: argparse.Namespace) -> int:
    """``contrastkit cluster``: SCGC on a dataset, printing last-epoch and best-epoch metrics."""
    config = cluster_config(args)  # every setting is checked before the data are read
    if args.threads is not None:
        torch.set_num_threads(check_int(args.threads, "--threads", minimum=1))
    data = load_graph_data(args.data, root=args.data_root, image_size=args.image_size)
    features = data.features
    if args.run_dir is not None:
        features = _encoder_features(args.run_dir, data)
    clusters = args.clusters
    if clusters is None:
        if data.labels is None:
            raise ValueError("--clusters is required when the data have no labels 'y'")
        clusters = int(torch.unique(data.labels).numel())
    run = scgc_cluster(
        features,
        clusters,
        config,
        labels=data.labels,
        adjacency=data.adjacency,
        log=None if (args.quiet or args.json) else print,
    )
    if args.json:
        _print_json(run, data, args.preset)
    else:
        print(
            f"data {data.name}: {features.shape[0]} nodes, {clusters} clusters, {args.variant}, "
            f"preset {args.preset}"
        )
        _print_summary(run, clusters)
    return 0


def _encoder_features(run_dir: str, data: GraphData) -> Tensor:
    """The frozen features of a run's encoder on the data's images."""
    from contrastkit.eval import extract_features
    from contrastkit.runs import load_run

    if data.image_shape is None:
        raise ValueError(
            "--run-dir needs image data (digits, fashion-mnist-test, <dataset>-test or an image "
            f"folder); {data.name!r} holds feature vectors"
        )
    _, model = load_run(run_dir)
    images = data.features.reshape(-1, *data.image_shape)
    return extract_features(model.encoder, images)


def _print_json(run: ClusterRun, data: GraphData, preset: str) -> None:
    result = {
        "data": data.name,
        "preset": preset,
        "last": run.last,
        "best_over_epochs": run.best,
        "modularity_selected": run.selected,
        "pretrain_kmeans": run.pretrain,
        "final_kmeans": run.final_kmeans,
        "seconds": run.seconds,
        "settings": run.settings,
    }
    print(json.dumps(result, indent=2))


def _print_summary(run: ClusterRun, clusters: int) -> None:
    """The metrics with labels; cluster sizes and modularity without."""
    if run.last:
        print(f"k-means, pretrained AE:  {format_scores(run.pretrain)}")
        print(f"last epoch (argmax q):   {format_scores(run.last)}")
        if run.best:
            best = ", ".join(
                f"{k.upper()} {run.best[k]:.4f} (epoch {run.best[k + '_epoch']})"
                for k in ("acc", "nmi", "ari")
            )
            print(f"best over epochs (max):  {best}")
        print(
            f"max-modularity epoch {run.selected['epoch']} (label-free): "
            f"{format_scores(run.selected)}, modularity {run.selected['modularity']:.4f}"
        )
        print(f"k-means, final embedding: {format_scores(run.final_kmeans)}")
    else:
        sizes = torch.bincount(run.predictions, minlength=clusters).tolist()
        print(f"cluster sizes: {sizes}")
        print(
            f"modularity on the graph: last epoch {run.history[-1]['modularity']:.4f}, "
            f"max {run.selected['modularity']:.4f} (epoch {run.selected['epoch']})"
            if run.history
            else f"modularity on the graph: {run.selected['modularity']:.4f}"
        )
    print(f"time {run.seconds:.1f} s")
