"""SCGC / SCGC*: graph clustering with an MLP, a neighbourhood contrastive loss and a DEC head.

From node features ``X`` (n x F) and a graph (given, or a kNN graph of the features), an MLP
encoder embeds the nodes; the loss pulls every node towards its multi-hop neighbours
(:class:`~contrastkit.losses.graph.NeighbourhoodContrast` against ``Â^r`` for SCGC or the
influence targets ``sum_{t<=r} Â^t`` for SCGC*) and sharpens soft cluster assignments
(:class:`~contrastkit.losses.graph.DECHead`, target ``P`` recomputed from the current model at the
start of every epoch and held fixed). Training is full-batch: one optimizer step per epoch on the
whole graph (METHODS.md 3.6).

- SCGC*: ``L = beta KL(P||Q) + alpha L_IAC``; encoder only.
- SCGC: ``L = beta KL(P||Q) + alpha L_NC(Â^r) + MSE(x_hat, x)``; encoder + decoder.

Both start from an autoencoder pre-trained on the features (SDCN's recipe; the reference loads
SDCN's pretrained weights) and initialise the cluster centres with k-means (``n_init = 20``) on its
embeddings. The reference reports the **maximum over epochs** of each metric; :func:`scgc_cluster`
reports the last epoch and, separately labelled, the best epoch.

Paper: Kulatilleke et al., "SCGC: Self-Supervised Contrastive Graph Clustering" (2022);
defaults ``alpha=4, beta=0.1, order=4, inverse_temperature=0.25`` are SCGC*'s USPS setting (the
closest of its datasets to digit images), Adam ``lr=1e-3``, kNN graph ``k=3``. The encoder is
smaller than SDCN's ``F-500-500-2000-10`` by default (``(256, 256, 512)`` hidden units) to fit a CPU
budget; pass ``hidden_dims=(500, 500, 2000)`` for the reference size.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_embeddings, check_positive
from contrastkit.eval import clustering_accuracy, modularity
from contrastkit.losses.graph import (
    DECHead,
    NeighbourhoodContrast,
    influence_targets,
    knn_graph,
    normalized_adjacency,
)

__all__ = [
    "ClusterRun",
    "GraphData",
    "add_cluster_arguments",
    "clustering_scores",
    "load_graph_data",
    "run_cluster",
    "scgc_cluster",
]

VARIANTS = ("scgc*", "scgc")
SELECTIONS = ("last", "modularity")

#: Settings of ``contrastkit cluster --preset``. "reference" is SCGC*'s USPS setting (the function's
#: defaults). "tuned" is the Fashion-MNIST pixel setting of BENCHMARKS.md (NMI 0.6205 ± 0.0066 at the
#: last epoch over 3 seeds; 0.8956 on digits), with the label-free max-modularity epoch as output.
CLUSTER_PRESETS: dict[str, dict[str, Any]] = {
    "reference": {
        "k": 3,
        "order": 4,
        "alpha": 4.0,
        "beta": 0.1,
        "tau": 0.25,
        "epochs": 200,
        "pretrain_epochs": 30,
        "lr": 1e-3,
        "normalize_embeddings": False,
        "center_lr": None,
        "center_refresh_every": None,
        "smooth_steps": 0,
        "selection": "last",
    },
    "tuned": {
        "k": 10,
        "order": 2,
        "alpha": 4.0,
        "beta": 0.1,
        "tau": 2.25,
        "epochs": 120,
        "pretrain_epochs": 50,
        "lr": 2e-3,
        "normalize_embeddings": True,
        "center_lr": None,
        "center_refresh_every": 10,
        "smooth_steps": 3,
        "selection": "modularity",
    },
}


@dataclass
class GraphData:
    """Node features, optional labels and optional adjacency of one dataset."""

    features: Tensor
    labels: Tensor | None
    adjacency: Tensor | None
    name: str
    image_shape: tuple[int, int, int] | None = None


@dataclass
class ClusterRun:
    """Outcome of :func:`scgc_cluster`.

    Attributes:
        last: ``acc``, ``nmi``, ``ari`` of the last epoch's predictions (empty without labels).
        best: The maximum of each metric over the epochs — the reference's optimistic report —
            with the epoch of each (``best_acc_epoch``, ...). Empty without labels.
        pretrain: The metrics of k-means on the pretrained embeddings (the starting point).
        final_kmeans: The metrics of k-means (``n_init`` as for the centres) on the final
            embeddings — a different predictor than the DEC head's ``argmax q``, reported apart.
        selected: The epoch whose partition has the highest modularity on the training graph
            (label-free model selection): ``epoch``, ``modularity``, and with labels ``acc``,
            ``nmi``, ``ari`` of that epoch.
        predictions: ``(n,)`` cluster ids (``argmax q``) of the last epoch, or of the selected
            epoch with ``selection="modularity"``.
        embeddings: ``(n, d)`` embeddings of the same epoch as ``predictions``.
        history: One record per epoch (losses, and metrics with labels).
        seconds: Total time (pretraining included).
        settings: The arguments of the run.
    """

    last: dict[str, float]
    best: dict[str, float]
    pretrain: dict[str, float]
    final_kmeans: dict[str, float]
    selected: dict[str, float]
    predictions: Tensor
    embeddings: Tensor
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


def clustering_scores(
    labels: Tensor | np.ndarray, predictions: Tensor | np.ndarray
) -> dict[str, float]:
    """Hungarian-matched accuracy, NMI (arithmetic) and ARI of a clustering."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    y = np.asarray(labels).reshape(-1)
    p = np.asarray(predictions).reshape(-1)
    return {
        "acc": clustering_accuracy(torch.as_tensor(y), torch.as_tensor(p)),
        "nmi": float(normalized_mutual_info_score(y, p)),
        "ari": float(adjusted_rand_score(y, p)),
    }


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _kmeans(z: Tensor, k: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    pred = km.fit_predict(z.double().cpu().numpy())
    return pred, km.cluster_centers_


def scgc_cluster(
    features: Tensor | np.ndarray,
    n_clusters: int,
    *,
    labels: Tensor | np.ndarray | None = None,
    adjacency: Tensor | None = None,
    k: int = 3,
    variant: str = "scgc*",
    order: int = 4,
    alpha: float = 4.0,
    beta: float = 0.1,
    inverse_temperature: float = 0.25,
    epochs: int = 200,
    lr: float = 1e-3,
    hidden_dims: Sequence[int] = (256, 256, 512),
    embed_dim: int = 10,
    pretrain_epochs: int = 30,
    pretrain_batch_size: int = 256,
    kmeans_n_init: int = 20,
    normalize_embeddings: bool = False,
    center_lr: float | None = None,
    center_refresh_every: int | None = None,
    smooth_steps: int = 0,
    selection: str = "last",
    seed: int = 0,
    device: torch.device | str | None = None,
    log: Callable[[str], None] | None = None,
) -> ClusterRun:
    """Cluster the nodes of a graph with SCGC* (default) or SCGC.

    Args:
        features: ``(n, F)`` node features (images are flattened).
        n_clusters: Number of clusters.
        labels: ``(n,)`` true classes, for the metrics only (never used in training).
        adjacency: ``(n, n)`` adjacency (dense or sparse); None builds a cosine kNN graph of the
            features with ``k`` neighbours.
        k: Neighbours of the kNN graph (SCGC: 3).
        variant: ``"scgc*"`` (IAC targets, encoder only) or ``"scgc"`` (``Â^r`` targets, with the
            reconstruction loss).
        order: ``r``, the hops of the targets.
        alpha: Weight of the contrastive loss.
        beta: Weight of the DEC KL loss.
        inverse_temperature: SCGC's ``tau`` — it **multiplies** the cosine similarities.
        epochs: Full-batch training epochs (one step each).
        lr: Adam learning rate (pretraining and training).
        hidden_dims: Hidden widths of the encoder (the decoder mirrors them).
        embed_dim: Embedding size (SDCN: 10).
        pretrain_epochs: Autoencoder pretraining epochs (mini-batch, reconstruction MSE).
        pretrain_batch_size: Pretraining batch size (SDCN: 256).
        kmeans_n_init: k-means restarts for the centre initialisation (SCGC: 20).
        normalize_embeddings: Give the DEC head (and the centre initialisation) L2-normalised
            embeddings. Not in the reference, whose DEC head sees the raw embeddings; the
            contrastive loss only constrains directions, so without this the embeddings' norm can
            drift away from the centres and the soft assignments flatten.
        center_lr: Adam learning rate of the DEC centres (None: ``lr``, as the reference). With a
            strong contrastive term the embeddings move faster than centres stepping at ``lr``
            can follow, and clusters merge; a larger ``center_lr`` lets them track.
        center_refresh_every: Every that many epochs, re-set the DEC centres by k-means on the
            current embeddings (None: never, as the reference, which runs k-means once on the
            pretrained embeddings).
        smooth_steps: ``t``, low-pass filter the features on the graph before the encoder:
            ``X <- Â^t X`` with the same ``Â = D^{-1}(A_sym + I)`` as the targets (0: off, as
            Kulatilleke et al.'s SCGC). Each step averages a node with its neighbours, damping the
            high graph frequencies; "Simple Contrastive Graph Clustering" (Liu et al., 2023)
            smooths with ``(I - L̃)^t`` of the symmetric-normalised Laplacian before its MLPs.
            Uses the graph only, no labels.
        selection: Which epoch's partition to return: ``"last"`` (the reference), or
            ``"modularity"``, the epoch whose ``argmax q`` has the highest Newman modularity on
            the training graph (:func:`~contrastkit.eval.modularity`). Modularity uses no labels,
            so this is model selection a user without labels can do; it guards against the
            partition drifting between k-means refreshes of the centres. Both are always
            computed and reported (``last`` and ``selected``).
        seed: Seed of every random choice.
        device: Where to train (None: CPU).
        log: Called with progress lines.

    Returns:
        A :class:`ClusterRun` (last-epoch and best-epoch metrics kept apart).
    """
    start = time.perf_counter()
    x = torch.as_tensor(np.asarray(features)) if isinstance(features, np.ndarray) else features
    if not isinstance(x, Tensor):
        raise TypeError(f"features must be a tensor or numpy array, got {type(features).__name__}")
    x = check_embeddings(x.reshape(x.shape[0], -1).float(), "features")
    n = x.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or not 2 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be an int in [2, {n}], got {n_clusters!r}")
    y: np.ndarray | None = None
    if labels is not None:
        y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"labels must have shape ({n},), one per node; got {y.shape}")
    variant = check_choice(variant, "variant", VARIANTS)
    selection = check_choice(selection, "selection", SELECTIONS)
    for name, value in (("alpha", alpha), ("beta", beta)):
        check_positive(value, name, allow_zero=True)
    check_positive(lr, "lr")
    for name, value in (("epochs", epochs), ("pretrain_epochs", pretrain_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if isinstance(smooth_steps, bool) or not isinstance(smooth_steps, int) or smooth_steps < 0:
        raise ValueError(f"smooth_steps must be an int >= 0, got {smooth_steps!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    settings = {
        "variant": variant,
        "k": k if adjacency is None else None,
        "order": order,
        "alpha": alpha,
        "beta": beta,
        "inverse_temperature": inverse_temperature,
        "epochs": epochs,
        "lr": lr,
        "hidden_dims": list(hidden_dims),
        "embed_dim": embed_dim,
        "pretrain_epochs": pretrain_epochs,
        "normalize_embeddings": normalize_embeddings,
        "center_lr": center_lr,
        "center_refresh_every": center_refresh_every,
        "smooth_steps": smooth_steps,
        "selection": selection,
        "seed": seed,
        "nodes": n,
    }

    adj = knn_graph(x, k) if adjacency is None else adjacency
    adj_hat = normalized_adjacency(adj)
    if smooth_steps:
        filt = adj_hat.to(x.dtype)
        for _ in range(smooth_steps):
            x = torch.sparse.mm(filt, x) if filt.is_sparse else filt @ x
    target = influence_targets(adj_hat, order=order, cumulative=variant == "scgc*").to(dev)
    settings["target_nonzeros"] = (
        int(target._nnz()) if target.is_sparse else int((target > 0).sum())
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dims = [x.shape[1], *hidden_dims, embed_dim]
        encoder = _mlp(dims).to(dev)
        decoder = _mlp(dims[::-1]).to(dev)
        head = DECHead(n_clusters=n_clusters, dim=embed_dim).to(dev)
        xd = x.to(dev)
        g = torch.Generator().manual_seed(seed)
        if pretrain_epochs:
            opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=lr)
            for ep in range(pretrain_epochs):
                order_idx = torch.randperm(n, generator=g)
                total = 0.0
                for s in range(0, n, pretrain_batch_size):
                    xb = xd[order_idx[s : s + pretrain_batch_size]]
                    loss = F.mse_loss(decoder(encoder(xb)), xb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * xb.shape[0]
                if log is not None and (ep + 1) % 10 == 0:
                    log(f"pretrain epoch {ep + 1}/{pretrain_epochs}: mse {total / n:.5f}")

        def embed(inp: Tensor) -> Tensor:
            out: Tensor = encoder(inp)
            return F.normalize(out, dim=1) if normalize_embeddings else out

        with torch.no_grad():
            z0 = embed(xd)
        pred0, centres = _kmeans(z0, n_clusters, seed, kmeans_n_init)
        head.init_centers(torch.as_tensor(centres, dtype=torch.float32, device=dev))
        pretrain = clustering_scores(y, pred0) if y is not None else {}
        if log is not None and pretrain:
            log(f"k-means on pretrained embeddings: {_fmt(pretrain)}")

        nc = NeighbourhoodContrast(inverse_temperature=inverse_temperature)
        params = list(encoder.parameters())
        if variant == "scgc":
            params += list(decoder.parameters())
        opt = torch.optim.Adam(
            [
                {"params": params, "lr": lr},
                {"params": list(head.parameters()), "lr": lr if center_lr is None else center_lr},
            ]
        )
        history: list[dict[str, Any]] = []
        best: dict[str, float] = {}
        pred = torch.as_tensor(pred0)
        z = z0
        selected: dict[str, float] = {"modularity": -math.inf}
        selected_pred, selected_z = pred, z0
        for ep in range(epochs):
            encoder.train()
            if center_refresh_every and ep > 0 and ep % center_refresh_every == 0:
                with torch.no_grad():
                    _, centres = _kmeans(embed(xd), n_clusters, seed + ep, kmeans_n_init)
                head.init_centers(torch.as_tensor(centres, dtype=torch.float32, device=dev))
            # one full-batch step per epoch: the q of this forward *is* the current model's at
            # the start of the epoch, so the target is that q, sharpened and detached
            z = embed(xd)
            q = head.soft_assign(z)
            kl = head(z, DECHead.target_distribution(q.detach()))
            con = nc(z, target)
            loss = beta * kl + alpha * con
            rec = None
            if variant == "scgc":
                rec = F.mse_loss(decoder(z), xd)
                loss = loss + rec
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            pred = q.detach().argmax(dim=1).cpu()
            record: dict[str, Any] = {
                "epoch": ep + 1,
                "loss": float(loss.detach()),
                "kl": float(kl.detach()),
                "contrast": float(con.detach()),
                "modularity": modularity(adj, pred),
            }
            if rec is not None:
                record["reconstruction"] = float(rec.detach())
            if y is not None:
                scores = clustering_scores(y, pred.numpy())
                record.update(scores)
                for key, value in scores.items():
                    if value > best.get(key, -math.inf):
                        best[key] = value
                        best[f"{key}_epoch"] = ep + 1
            history.append(record)
            if record["modularity"] > selected["modularity"]:
                selected = {k: record[k] for k in ("epoch", "modularity", *_scores_of(record))}
                selected_pred, selected_z = pred, z.detach()
            if log is not None and ((ep + 1) % 10 == 0 or ep + 1 == epochs):
                extra = f"; {_fmt(record)}" if y is not None else ""
                log(f"epoch {ep + 1}/{epochs}: loss {record['loss']:.4f}{extra}")
        with torch.no_grad():
            z = embed(xd)
    last = (
        {key: history[-1][key] for key in ("acc", "nmi", "ari")}
        if y is not None and history
        else {}
    )
    if y is not None and not history:
        last = dict(pretrain)
    if not history:
        selected = {"epoch": 0, "modularity": modularity(adj, pred), **pretrain}
    final_kmeans: dict[str, float] = {}
    if y is not None:
        final_pred, _ = _kmeans(z, n_clusters, seed, kmeans_n_init)
        final_kmeans = clustering_scores(y, final_pred)
    if selection == "modularity":
        pred, z = selected_pred, selected_z
    return ClusterRun(
        last=last,
        best=best,
        pretrain=pretrain,
        final_kmeans=final_kmeans,
        selected=selected,
        predictions=pred,
        embeddings=z.detach().cpu(),
        history=history,
        seconds=time.perf_counter() - start,
        settings=settings,
    )


def _scores_of(record: dict[str, Any]) -> tuple[str, ...]:
    """The clustering metrics present in an epoch record (none without labels)."""
    return tuple(key for key in ("acc", "nmi", "ari") if key in record)


def _fmt(m: dict[str, Any]) -> str:
    return ", ".join(f"{k.upper()} {float(m[k]):.4f}" for k in ("acc", "nmi", "ari") if k in m)


# -- data --------------------------------------------------------------------------------------


def load_graph_data(
    name: str, *, root: str | None = None, image_size: int | None = None
) -> GraphData:
    """Features (and labels, adjacency) for clustering.

    - ``"digits"``: scikit-learn's 1,797 digits, pixels scaled to ``[0, 1]``, 64 features.
    - ``"fashion-mnist-test"``: the 10,000 Fashion-MNIST test images, 784 features in ``[0, 1]``
      (the IDX files, found as by :func:`contrastkit.data.load_dataset`; ``root`` names a folder).
    - ``"<dataset>-test"`` for another name :func:`~contrastkit.data.load_dataset` knows (e.g.
      ``cifar10-test``): that dataset's test images, flattened.
    - a folder of class folders of images: all its images (train and test parts), flattened;
      ``image_size`` resizes them as in training.
    - a path to an ``.npz`` with ``x`` (``(n, F)`` or images), optional ``y`` (labels), and an
      optional graph: ``adj`` (dense ``(n, n)``) or ``edge_index`` (``(2, E)`` integer pairs).
    """
    if image_size is not None and not Path(name).expanduser().is_dir():
        raise ValueError(f"image_size applies to image folders only; {name!r} is not a folder")
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return GraphData(
            features=torch.as_tensor(d.data / 16.0, dtype=torch.float32),
            labels=torch.as_tensor(d.target, dtype=torch.int64),
            adjacency=None,
            name="digits",
            image_shape=(1, 8, 8),
        )
    if name in ("fashion-mnist-test", "fmnist-test", "fashion_mnist_test"):
        from contrastkit.data import load_dataset

        test = load_dataset("fashion-mnist", root=root).test
        return GraphData(
            features=test.images.reshape(len(test), -1),
            labels=test.labels,
            adjacency=None,
            name="fashion-mnist-test",
            image_shape=(1, 28, 28),
        )
    path = Path(name).expanduser()
    if path.is_dir() or _test_split_of(name) is not None:
        return _image_graph_data(name, root, image_size)
    if path.suffix != ".npz":
        raise ValueError(
            f"unknown clustering data {name!r}; use digits, fashion-mnist-test, <dataset>-test for "
            f"a dataset name contrastkit knows, a folder of class folders of images, or a path to "
            "an .npz"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with np.load(path) as arrays:
        if "x" not in arrays:
            raise ValueError(
                f"{path} must hold an array 'x' of node features; it has {list(arrays)}"
            )
        x = np.asarray(arrays["x"], dtype=np.float32)
        n = x.shape[0]
        y = (
            torch.as_tensor(np.asarray(arrays["y"]).reshape(-1).astype(np.int64))
            if "y" in arrays
            else None
        )
        adj: Tensor | None = None
        if "adj" in arrays:
            adj = torch.as_tensor(np.asarray(arrays["adj"], dtype=np.float32))
        elif "edge_index" in arrays:
            ei = torch.as_tensor(np.asarray(arrays["edge_index"]).astype(np.int64))
            if ei.dim() != 2 or ei.shape[0] != 2:
                raise ValueError(
                    f"{path}[edge_index] must have shape (2, E); got {tuple(ei.shape)}"
                )
            if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
                raise ValueError(f"{path}[edge_index] holds node ids outside [0, {n})")
            adj = torch.sparse_coo_tensor(
                ei, torch.ones(ei.shape[1]), (n, n), check_invariants=True
            ).coalesce()
    if y is not None and y.shape[0] != n:
        raise ValueError(f"{path}[y] must hold {n} labels; got {y.shape[0]}")
    return GraphData(
        features=torch.as_tensor(x.reshape(n, -1)), labels=y, adjacency=adj, name=path.stem
    )


def _test_split_of(name: str) -> str | None:
    """``"cifar10"`` for ``"cifar10-test"`` (any name :func:`load_dataset` knows), else None."""
    from contrastkit.data import known_datasets

    base = name.removesuffix("-test")
    if base == name or base.lower() not in known_datasets(include_aliases=True):
        return None
    return base


def _image_graph_data(name: str, root: str | None, image_size: int | None) -> GraphData:
    from contrastkit.data import load_dataset

    base = _test_split_of(name)
    if base is not None and not Path(name).expanduser().is_dir():
        split = load_dataset(base, root=root)
        images, labels, title = split.test.images, split.test.labels, f"{base}-test"
    else:
        split = load_dataset(name, image_size=image_size)
        images = torch.cat([split.train.images, split.test.images])
        labels = torch.cat([split.train.labels, split.test.labels])
        title = split.train.name
    c, h, w = (int(v) for v in images.shape[1:])
    return GraphData(
        features=images.reshape(images.shape[0], -1),
        labels=labels,
        adjacency=None,
        name=title,
        image_shape=(c, h, w),
    )


def _encoder_features(run_dir: str, data: GraphData) -> Tensor:
    from contrastkit.eval import extract_features
    from contrastkit.train.loop import load_run

    if data.image_shape is None:
        raise ValueError(
            "--run-dir needs image data (digits, fashion-mnist-test, <dataset>-test or an image "
            f"folder); {data.name!r} holds feature vectors"
        )
    _, model = load_run(run_dir)
    images = data.features.reshape(-1, *data.image_shape)
    return extract_features(model.encoder, images)


# -- command line ------------------------------------------------------------------------------


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``contrastkit cluster``."""
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
    p.add_argument("--k", type=int, default=None, help=f"kNN graph neighbours ({ref['k']})")
    p.add_argument(
        "--order", type=int, default=None, help=f"hops r of the targets ({ref['order']})"
    )
    p.add_argument("--alpha", type=float, default=None, help=f"contrastive weight ({ref['alpha']})")
    p.add_argument("--beta", type=float, default=None, help=f"KL weight ({ref['beta']})")
    p.add_argument(
        "--tau", type=float, default=None, help=f"inverse temperature, multiplies ({ref['tau']})"
    )
    p.add_argument("--epochs", type=int, default=None, help=f"full-batch epochs ({ref['epochs']})")
    p.add_argument(
        "--pretrain-epochs",
        type=int,
        default=None,
        help=f"autoencoder epochs ({ref['pretrain_epochs']})",
    )
    p.add_argument("--lr", type=float, default=None, help=f"Adam learning rate ({ref['lr']})")
    p.add_argument(
        "--hidden", default="256,256,512", help="encoder hidden widths (default 256,256,512)"
    )
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--run-dir",
        default=None,
        help="cluster the frozen features of this contrastkit run's encoder instead of pixels",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def cluster_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The preset named by ``args.preset``, with every flag given on the command line applied."""
    settings = dict(CLUSTER_PRESETS[args.preset])
    for key in settings:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    return settings


def run_cluster(args: argparse.Namespace) -> int:
    """``contrastkit cluster``: SCGC on a dataset, printing last-epoch and best-epoch metrics."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_graph_data(args.data, root=args.data_root, image_size=args.image_size)
    features = data.features
    if args.run_dir is not None:
        features = _encoder_features(args.run_dir, data)
    clusters = args.clusters
    if clusters is None:
        if data.labels is None:
            raise ValueError("--clusters is required when the data have no labels 'y'")
        clusters = int(torch.unique(data.labels).numel())
    try:
        hidden = tuple(int(h) for h in str(args.hidden).split(",") if h.strip())
    except ValueError as exc:
        raise ValueError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from exc
    log = None if (args.quiet or args.json) else print
    chosen = cluster_settings(args)
    chosen["inverse_temperature"] = chosen.pop("tau")
    if chosen["center_refresh_every"] == 0:
        chosen["center_refresh_every"] = None
    run = scgc_cluster(
        features,
        clusters,
        labels=data.labels,
        adjacency=data.adjacency,
        variant=args.variant,
        hidden_dims=hidden,
        seed=args.seed,
        log=log,
        **chosen,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "data": data.name,
                    "preset": args.preset,
                    "last": run.last,
                    "best_over_epochs": run.best,
                    "modularity_selected": run.selected,
                    "pretrain_kmeans": run.pretrain,
                    "final_kmeans": run.final_kmeans,
                    "seconds": run.seconds,
                    "settings": run.settings,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"data {data.name}: {features.shape[0]} nodes, {clusters} clusters, {args.variant}, "
        f"preset {args.preset}"
    )
    if run.last:
        print(f"k-means, pretrained AE:  {_fmt(run.pretrain)}")
        print(f"last epoch (argmax q):   {_fmt(run.last)}")
        if run.best:
            best = ", ".join(
                f"{k.upper()} {run.best[k]:.4f} (epoch {run.best[k + '_epoch']})"
                for k in ("acc", "nmi", "ari")
            )
            print(f"best over epochs (max):  {best}")
        print(
            f"max-modularity epoch {run.selected['epoch']} (label-free): {_fmt(run.selected)}, "
            f"modularity {run.selected['modularity']:.4f}"
        )
        print(f"k-means, final embedding: {_fmt(run.final_kmeans)}")
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
    return 0
