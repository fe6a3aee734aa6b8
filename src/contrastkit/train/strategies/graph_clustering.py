"""SCGC / SCGC*: graph clustering with an MLP, a neighbourhood contrastive loss and a DEC head.

From node features ``X`` (n x F) and a graph (given, or a kNN graph of the features), an MLP
encoder embeds the nodes; the loss pulls every node towards its multi-hop neighbours
(:class:`~contrastkit.losses.graph.NeighbourhoodContrast` against ``Â^r`` for SCGC or the
influence targets ``sum_{t<=r} Â^t`` for SCGC*) and sharpens soft cluster assignments
(:class:`~contrastkit.losses.graph.DECHead`, target ``P`` recomputed from the current model at the
start of every epoch and held fixed). Training is full-batch: one optimizer step per epoch on the
whole graph, run by the :class:`~contrastkit.train.core.TrainingCore`.

- SCGC*: ``L = beta KL(P||Q) + alpha L_IAC``; encoder only.
- SCGC: ``L = beta KL(P||Q) + alpha L_NC(Â^r) + MSE(x_hat, x)``; encoder + decoder.

Both start from an autoencoder pre-trained on the features (SDCN's recipe; the reference loads
SDCN's pretrained weights) and initialise the cluster centres with k-means (``n_init = 20``) on its
embeddings. The reference reports the **maximum over epochs** of each metric; :func:`scgc_cluster`
reports the last epoch and, separately labelled, the best epoch.

A run's settings are one :class:`ScgcConfig`; :data:`CLUSTER_PRESETS` names two of them. The
``contrastkit cluster`` command (:mod:`contrastkit.cli.cluster`) parses its flags into one and
prints the :class:`ClusterRun`.

Paper: Kulatilleke et al., "SCGC: Self-Supervised Contrastive Graph Clustering" (2022);
defaults ``alpha=4, beta=0.1, order=4, inverse_temperature=0.25`` are SCGC*'s USPS setting (the
closest of its datasets to digit images), Adam ``lr=1e-3``, kNN graph ``k=3``. The encoder is
smaller than SDCN's ``F-500-500-2000-10`` by default (``(256, 256, 512)`` hidden units) to fit a CPU
budget; pass ``hidden_dims=(500, 500, 2000)`` for the reference size.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> y = torch.arange(3).repeat_interleave(20)
>>> x = torch.eye(3, 6)[y] * 4 + 0.3 * torch.randn(60, 6, generator=g)
>>> config = ScgcConfig(epochs=3, hidden_dims=(16,), embed_dim=4, pretrain_epochs=2)
>>> run = scgc_cluster(x, 3, config, labels=y)
>>> len(run.history), run.predictions.shape
(3, torch.Size([60]))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_choice,
    check_embeddings,
    check_int,
    check_optional_int,
    check_positive,
)
from contrastkit.eval import clustering_accuracy, modularity
from contrastkit.losses.graph import (
    DECHead,
    NeighbourhoodContrast,
    influence_targets,
    knn_graph,
    normalized_adjacency,
)
from contrastkit.train.core import StepOutput, TrainingCore

__all__ = [
    "CLUSTER_PRESETS",
    "ClusterRun",
    "GraphData",
    "ScgcConfig",
    "clustering_scores",
    "format_scores",
    "load_graph_data",
    "scgc_cluster",
]

VARIANTS = ("scgc*", "scgc")
SELECTIONS = ("last", "modularity")
SCORES = ("acc", "nmi", "ari")

Log = Callable[[str], None] | None


# -- the settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScgcConfig:
    """The settings of one :func:`scgc_cluster` run, checked when made.

    The defaults are the ``"reference"`` preset (:data:`CLUSTER_PRESETS`): SCGC*'s USPS setting.

    Attributes:
        variant: ``"scgc*"`` (IAC targets, encoder only) or ``"scgc"`` (``Â^r`` targets, with the
            reconstruction loss).
        k: Neighbours of the kNN graph built when no adjacency is given (SCGC: 3).
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

    Raises:
        TypeError: A setting has the wrong type (e.g. ``epochs=1.5``).
        ValueError: A setting is out of range or not one of its choices.
    """

    variant: str = "scgc*"
    k: int = 3
    order: int = 4
    alpha: float = 4.0
    beta: float = 0.1
    inverse_temperature: float = 0.25
    epochs: int = 200
    lr: float = 1e-3
    hidden_dims: tuple[int, ...] = (256, 256, 512)
    embed_dim: int = 10
    pretrain_epochs: int = 30
    pretrain_batch_size: int = 256
    kmeans_n_init: int = 20
    normalize_embeddings: bool = False
    center_lr: float | None = None
    center_refresh_every: int | None = None
    smooth_steps: int = 0
    selection: str = "last"
    seed: int = 0
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        check_choice(self.variant, "variant", VARIANTS)
        check_choice(self.selection, "selection", SELECTIONS)
        for name in ("k", "order", "embed_dim", "pretrain_batch_size", "kmeans_n_init"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("epochs", "pretrain_epochs", "smooth_steps", "seed"):
            check_int(getattr(self, name), name, minimum=0)
        if self.seed >= 2**32:
            raise ValueError(
                "seed must be an integer in [0, 2**32) (it seeds torch and k-means), got "
                f"{self.seed}"
            )
        check_optional_int(self.center_refresh_every, "center_refresh_every", minimum=1)
        for name in ("alpha", "beta"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_positive(self.inverse_temperature, "inverse_temperature")
        check_positive(self.lr, "lr")
        if self.center_lr is not None:
            check_positive(self.center_lr, "center_lr")
        if not isinstance(self.normalize_embeddings, bool):
            raise TypeError(
                "normalize_embeddings must be a bool, got "
                f"{type(self.normalize_embeddings).__name__}"
            )
        object.__setattr__(self, "hidden_dims", _checked_widths(self.hidden_dims))
        _checked_device(self.device)

    @property
    def torch_device(self) -> torch.device:
        """``device`` as a :class:`torch.device` (None: the CPU)."""
        return _checked_device(self.device)

    def settings(self, *, nodes: int, graph_given: bool) -> dict[str, Any]:
        """The run's settings as :attr:`ClusterRun.settings` reports them (``k`` None when a
        graph was given)."""
        return {
            "variant": self.variant,
            "k": None if graph_given else self.k,
            "order": self.order,
            "alpha": self.alpha,
            "beta": self.beta,
            "inverse_temperature": self.inverse_temperature,
            "epochs": self.epochs,
            "lr": self.lr,
            "hidden_dims": list(self.hidden_dims),
            "embed_dim": self.embed_dim,
            "pretrain_epochs": self.pretrain_epochs,
            "normalize_embeddings": self.normalize_embeddings,
            "center_lr": self.center_lr,
            "center_refresh_every": self.center_refresh_every,
            "smooth_steps": self.smooth_steps,
            "selection": self.selection,
            "seed": self.seed,
            "nodes": nodes,
        }


def _checked_widths(widths: object) -> tuple[int, ...]:
    if isinstance(widths, str | bytes) or not isinstance(widths, Sequence):
        raise TypeError(f"hidden_dims must be a sequence of ints, got {type(widths).__name__}")
    return tuple(check_int(w, f"hidden_dims[{i}]", minimum=1) for i, w in enumerate(widths))


def _checked_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must name a torch device (e.g. 'cpu'), got {device!r}") from exc


#: Named settings of ``contrastkit cluster --preset``. "reference" is SCGC*'s USPS setting (the
#: defaults of :class:`ScgcConfig`). "tuned" is the Fashion-MNIST pixel setting of BENCHMARKS.md
#: (NMI 0.6205 ± 0.0066 at the last epoch over 3 seeds; 0.8956 on digits), with the label-free
#: max-modularity epoch as output.
CLUSTER_PRESETS: Mapping[str, ScgcConfig] = MappingProxyType(
    {
        "reference": ScgcConfig(),
        "tuned": ScgcConfig(
            k=10,
            order=2,
            inverse_temperature=2.25,
            epochs=120,
            pretrain_epochs=50,
            lr=2e-3,
            normalize_embeddings=True,
            center_refresh_every=10,
            smooth_steps=3,
            selection="modularity",
        ),
    }
)


# -- the result --------------------------------------------------------------------------------


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
        settings: The settings of the run (:meth:`ScgcConfig.settings`, and the non-zeros of the
            targets).
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


def format_scores(scores: Mapping[str, Any]) -> str:
    """``"ACC 0.9000, NMI 0.8000, ARI 0.7000"`` for the metrics present in ``scores``."""
    return ", ".join(f"{k.upper()} {float(scores[k]):.4f}" for k in SCORES if k in scores)


# -- the run -----------------------------------------------------------------------------------


def scgc_cluster(
    features: Tensor | np.ndarray,
    n_clusters: int,
    config: ScgcConfig | None = None,
    *,
    labels: Tensor | np.ndarray | None = None,
    adjacency: Tensor | None = None,
    log: Log = None,
) -> ClusterRun:
    """Cluster the nodes of a graph with SCGC* (default) or SCGC.

    Pretrain the autoencoder, set the DEC centres by k-means on its embeddings, then train
    ``config.epochs`` full-batch epochs; every epoch's partition is scored (modularity, and the
    metrics with labels).

    Args:
        features: ``(n, F)`` node features (images are flattened).
        n_clusters: Number of clusters, in ``[2, n]``.
        config: The settings (None: ``ScgcConfig()``, the reference preset).
        labels: ``(n,)`` true classes, for the metrics only (never used in training).
        adjacency: ``(n, n)`` adjacency (dense or sparse); None builds a cosine kNN graph of the
            features with ``config.k`` neighbours.
        log: Called with progress lines (every 10th epoch and the last).

    Returns:
        A :class:`ClusterRun` (last-epoch and best-epoch metrics kept apart).

    Raises:
        TypeError, ValueError: Bad input (features not finite, labels of the wrong length, ...).
        NonFiniteLossError: Training diverged (lower ``lr``).
    """
    start = time.perf_counter()
    config = ScgcConfig() if config is None else config
    if not isinstance(config, ScgcConfig):
        raise TypeError(f"config must be a ScgcConfig, got {type(config).__name__}")
    x, y = _checked_inputs(features, n_clusters, labels)
    graph = _Graph.build(x, adjacency, config)
    settings = config.settings(nodes=x.shape[0], graph_given=adjacency is not None)
    settings["target_nonzeros"] = graph.target_nonzeros
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        nets = _Networks.build(x.shape[1], n_clusters, config)
        p = _Problem(graph.features.to(config.torch_device), graph, n_clusters, y, config, log)
        _pretrain(nets, p, torch.Generator().manual_seed(config.seed))
        trace = _init_centres(nets, p)
        _train(nets, p, trace)
        with torch.no_grad():
            final_z = nets.embed(p.x)
    return _result(trace, final_z, p, settings, start)


def _checked_inputs(
    features: object, n_clusters: object, labels: object
) -> tuple[Tensor, np.ndarray | None]:
    """``(n, F)`` float features and the labels as a numpy array (None without labels)."""
    x = torch.as_tensor(np.asarray(features)) if isinstance(features, np.ndarray) else features
    if not isinstance(x, Tensor):
        raise TypeError(f"features must be a tensor or numpy array, got {type(features).__name__}")
    x = check_embeddings(x.reshape(x.shape[0], -1).float(), "features")
    n = x.shape[0]
    check_int(n_clusters, "n_clusters", minimum=2, maximum=n)
    if labels is None:
        return x, None
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), one per node; got {y.shape}")
    return x, y


@dataclass
class _Graph:
    """The training graph: its adjacency, the (smoothed) features and the contrastive targets."""

    adjacency: Tensor
    features: Tensor
    target: Tensor

    @classmethod
    def build(cls, x: Tensor, adjacency: Tensor | None, config: ScgcConfig) -> _Graph:
        adj = knn_graph(x, config.k) if adjacency is None else adjacency
        adj_hat = normalized_adjacency(adj)
        features = _smooth(x, adj_hat, config.smooth_steps)
        cumulative = config.variant == "scgc*"
        target = influence_targets(adj_hat, order=config.order, cumulative=cumulative)
        return cls(adj, features, target.to(config.torch_device))

    @property
    def target_nonzeros(self) -> int:
        t = self.target
        return int(t._nnz()) if t.is_sparse else int((t > 0).sum())


def _smooth(x: Tensor, adj_hat: Tensor, steps: int) -> Tensor:
    """``Â^steps x``: each step averages a node's features with its neighbours'."""
    filt = adj_hat.to(x.dtype)
    for _ in range(steps):
        x = torch.sparse.mm(filt, x) if filt.is_sparse else filt @ x
    return x


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class _Networks:
    """The MLP encoder, its mirror decoder and the DEC head."""

    encoder: nn.Sequential
    decoder: nn.Sequential
    head: DECHead
    normalize: bool

    @classmethod
    def build(cls, in_dim: int, n_clusters: int, config: ScgcConfig) -> _Networks:
        dev = config.torch_device
        dims = [in_dim, *config.hidden_dims, config.embed_dim]
        encoder = _mlp(dims).to(dev)
        decoder = _mlp(dims[::-1]).to(dev)
        head = DECHead(n_clusters=n_clusters, dim=config.embed_dim).to(dev)
        return cls(encoder, decoder, head, config.normalize_embeddings)

    def embed(self, x: Tensor) -> Tensor:
        """The embeddings the DEC head sees (L2-normalised with ``normalize_embeddings``)."""
        out: Tensor = self.encoder(x)
        return F.normalize(out, dim=1) if self.normalize else out


@dataclass
class _Problem:
    """What a run works on: the (smoothed) features on the device, the graph, the labels (None
    without), the settings and where progress lines go."""

    x: Tensor
    graph: _Graph
    n_clusters: int
    labels: np.ndarray | None
    config: ScgcConfig
    log: Log


def _pretrain(nets: _Networks, p: _Problem, generator: torch.Generator) -> None:
    """Train encoder + decoder to reconstruct the features: shuffled mini-batches, MSE, Adam."""
    x, config, log = p.x, p.config, p.log
    if not config.pretrain_epochs:
        return
    params = list(nets.encoder.parameters()) + list(nets.decoder.parameters())
    core = TrainingCore(
        torch.optim.Adam(params, lr=config.lr),
        device=x.device,
        name="SCGC autoencoder pretraining",
    )

    def step(idx: Tensor) -> StepOutput:
        xb = x[idx]
        loss = F.mse_loss(nets.decoder(nets.encoder(xb)), xb)
        return StepOutput(loss=loss, samples=xb.shape[0])

    for ep in range(config.pretrain_epochs):
        batches = torch.randperm(x.shape[0], generator=generator).split(config.pretrain_batch_size)
        summary = core.run_epoch(ep, batches, step, train=[nets.encoder, nets.decoder])
        if log is not None and (ep + 1) % 10 == 0:
            log(f"pretrain epoch {ep + 1}/{config.pretrain_epochs}: mse {summary.loss:.5f}")


def _kmeans(z: Tensor, k: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    pred = km.fit_predict(z.double().cpu().numpy())
    return pred, km.cluster_centers_


def _set_centres(nets: _Networks, z: Tensor, n_clusters: int, seed: int, n_init: int) -> Tensor:
    """Put the DEC centres on k-means centres of ``z``; return the k-means partition."""
    pred, centres = _kmeans(z, n_clusters, seed, n_init)
    nets.head.init_centers(torch.as_tensor(centres, dtype=torch.float32, device=z.device))
    return torch.as_tensor(pred)


def _init_centres(nets: _Networks, p: _Problem) -> _Trace:
    """Centres from k-means on the pretrained embeddings; the trace starts at its partition."""
    with torch.no_grad():
        z = nets.embed(p.x)
    pred = _set_centres(nets, z, p.n_clusters, p.config.seed, p.config.kmeans_n_init)
    scores = clustering_scores(p.labels, pred.numpy()) if p.labels is not None else {}
    if p.log is not None and scores:
        p.log(f"k-means on pretrained embeddings: {format_scores(scores)}")
    return _Trace(pretrain=scores, pred=pred, selected_pred=pred, selected_z=z)


@dataclass
class _Trace:
    """Where the run started (k-means on the pretrained embeddings) and what the epochs produced:
    their records, the best scores and the max-modularity epoch."""

    pretrain: dict[str, float]
    pred: Tensor
    selected_pred: Tensor
    selected_z: Tensor
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    selected: dict[str, float] = field(default_factory=lambda: {"modularity": -math.inf})

    def add(self, record: dict[str, Any], pred: Tensor, z: Tensor) -> None:
        """Keep one epoch's record and partition ``pred`` (of the embeddings ``z``)."""
        epoch = record["epoch"]
        for key in SCORES:
            if key in record and record[key] > self.best.get(key, -math.inf):
                self.best[key] = record[key]
                self.best[f"{key}_epoch"] = epoch
        self.history.append(record)
        self.pred = pred
        if record["modularity"] > self.selected["modularity"]:
            keys = ("epoch", "modularity", *(k for k in SCORES if k in record))
            self.selected = {k: record[k] for k in keys}
            self.selected_pred, self.selected_z = pred, z


@dataclass
class _Forward:
    """One clustering epoch's forward pass: the loss, its terms, the embeddings and ``q``."""

    loss: Tensor
    kl: Tensor
    contrast: Tensor
    reconstruction: Tensor | None
    z: Tensor
    q: Tensor


class _ClusteringStep:
    """The full-batch step of a clustering epoch; keeps its forward pass for the epoch record."""

    def __init__(self, nets: _Networks, x: Tensor, target: Tensor, config: ScgcConfig) -> None:
        self.nets, self.x, self.target, self.config = nets, x, target, config
        self.contrast = NeighbourhoodContrast(inverse_temperature=config.inverse_temperature)
        self.forward: _Forward | None = None

    def __call__(self, _: object) -> StepOutput:
        nets, x, c = self.nets, self.x, self.config
        z = nets.embed(x)
        if not bool(torch.isfinite(z).all()):
            # the parameters diverged and the losses refuse non-finite input: hand the core a
            # non-finite loss, so that its policy stops the run as a training failure
            return StepOutput(loss=z.sum())
        # the q of this forward *is* the current model's at the start of the epoch, so the
        # target is that q, sharpened and detached
        q = nets.head.soft_assign(z)
        kl = nets.head(z, DECHead.target_distribution(q.detach()))
        con = self.contrast(z, self.target)
        loss = c.beta * kl + c.alpha * con
        rec = None
        if c.variant == "scgc":
            rec = F.mse_loss(nets.decoder(z), x)
            loss = loss + rec
        self.forward = _Forward(loss, kl, con, rec, z, q)
        return StepOutput(loss=loss)


def _clustering_optimizer(nets: _Networks, config: ScgcConfig) -> torch.optim.Adam:
    """Adam over the encoder (and with SCGC the decoder) and, at ``center_lr``, the centres."""
    params = list(nets.encoder.parameters())
    if config.variant == "scgc":
        params += list(nets.decoder.parameters())
    center_lr = config.lr if config.center_lr is None else config.center_lr
    return torch.optim.Adam(
        [
            {"params": params, "lr": config.lr},
            {"params": list(nets.head.parameters()), "lr": center_lr},
        ]
    )


def _train(nets: _Networks, p: _Problem, trace: _Trace) -> None:
    """The clustering epochs: one full-batch step each, every partition scored into ``trace``."""
    config = p.config
    core = TrainingCore(
        _clustering_optimizer(nets, config), device=p.x.device, name="SCGC clustering"
    )
    step = _ClusteringStep(nets, p.x, p.graph.target, config)
    every = config.center_refresh_every
    for ep in range(config.epochs):
        if every and ep > 0 and ep % every == 0:
            with torch.no_grad():
                z = nets.embed(p.x)
            _set_centres(nets, z, p.n_clusters, config.seed + ep, config.kmeans_n_init)
        core.run_epoch(ep, [ep], step, train=[nets.encoder])
        assert step.forward is not None
        pred = step.forward.q.detach().argmax(dim=1).cpu()
        record = _epoch_record(ep, step.forward, pred, p.graph.adjacency, p.labels)
        trace.add(record, pred, step.forward.z.detach())
        if p.log is not None and ((ep + 1) % 10 == 0 or ep + 1 == config.epochs):
            extra = f"; {format_scores(record)}" if p.labels is not None else ""
            p.log(f"epoch {ep + 1}/{config.epochs}: loss {record['loss']:.4f}{extra}")


def _epoch_record(
    ep: int, f: _Forward, pred: Tensor, adjacency: Tensor, y: np.ndarray | None
) -> dict[str, Any]:
    """The epoch's losses, the modularity of its partition and, with labels, its scores."""
    record: dict[str, Any] = {
        "epoch": ep + 1,
        "loss": float(f.loss.detach()),
        "kl": float(f.kl.detach()),
        "contrast": float(f.contrast.detach()),
        "modularity": modularity(adjacency, pred),
    }
    if f.reconstruction is not None:
        record["reconstruction"] = float(f.reconstruction.detach())
    if y is not None:
        record.update(clustering_scores(y, pred.numpy()))
    return record


def _result(
    trace: _Trace, final_z: Tensor, p: _Problem, settings: dict[str, Any], start: float
) -> ClusterRun:
    """The :class:`ClusterRun`: last and best epochs, the selected one, final k-means (the time
    counted from ``start``)."""
    history, y, config = trace.history, p.labels, p.config
    last: dict[str, float] = {}
    if y is not None:
        last = {key: history[-1][key] for key in SCORES} if history else dict(trace.pretrain)
    selected = trace.selected
    if not history:
        selected = {
            "epoch": 0,
            "modularity": modularity(p.graph.adjacency, trace.pred),
            **trace.pretrain,
        }
    final_kmeans: dict[str, float] = {}
    if y is not None:
        final_pred, _ = _kmeans(final_z, p.n_clusters, config.seed, config.kmeans_n_init)
        final_kmeans = clustering_scores(y, final_pred)
    pred, z = trace.pred, final_z
    if config.selection == "modularity":
        pred, z = trace.selected_pred, trace.selected_z
    return ClusterRun(
        last=last,
        best=trace.best,
        pretrain=trace.pretrain,
        final_kmeans=final_kmeans,
        selected=selected,
        predictions=pred,
        embeddings=z.detach().cpu(),
        history=history,
        seconds=time.perf_counter() - start,
        settings=settings,
    )


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

    Raises:
        ValueError: An unknown name, ``image_size`` for something other than a folder, or an
            ``.npz`` without ``x`` or with a bad graph.
        FileNotFoundError: The ``.npz`` does not exist.
    """
    if image_size is not None and not Path(name).expanduser().is_dir():
        raise ValueError(f"image_size applies to image folders only; {name!r} is not a folder")
    if name == "digits":
        return _digits()
    if name in ("fashion-mnist-test", "fmnist-test", "fashion_mnist_test"):
        return _fashion_mnist_test(root)
    path = Path(name).expanduser()
    if path.is_dir() or _test_split_of(name) is not None:
        return _image_graph_data(name, root, image_size)
    if path.suffix != ".npz":
        raise ValueError(
            f"unknown clustering data {name!r}; use digits, fashion-mnist-test, <dataset>-test for "
            f"a dataset name contrastkit knows, a folder of class folders of images, or a path to "
            "an .npz"
        )
    return _npz_graph_data(path)


def _digits() -> GraphData:
    from sklearn.datasets import load_digits

    d = load_digits()
    return GraphData(
        features=torch.as_tensor(d.data / 16.0, dtype=torch.float32),
        labels=torch.as_tensor(d.target, dtype=torch.int64),
        adjacency=None,
        name="digits",
        image_shape=(1, 8, 8),
    )


def _fashion_mnist_test(root: str | None) -> GraphData:
    from contrastkit.data import load_dataset

    test = load_dataset("fashion-mnist", root=root).test
    return GraphData(
        features=test.images.reshape(len(test), -1),
        labels=test.labels,
        adjacency=None,
        name="fashion-mnist-test",
        image_shape=(1, 28, 28),
    )


def _npz_graph_data(path: Path) -> GraphData:
    """Features ``x``, labels ``y`` and a graph ``adj`` or ``edge_index`` from an ``.npz``."""
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
            adj = _edge_adjacency(np.asarray(arrays["edge_index"]), n, path)
    if y is not None and y.shape[0] != n:
        raise ValueError(f"{path}[y] must hold {n} labels; got {y.shape[0]}")
    return GraphData(
        features=torch.as_tensor(x.reshape(n, -1)), labels=y, adjacency=adj, name=path.stem
    )


def _edge_adjacency(edge_index: np.ndarray, n: int, path: Path) -> Tensor:
    """The sparse ``(n, n)`` adjacency of ``(2, E)`` node pairs (checked)."""
    ei = torch.as_tensor(edge_index.astype(np.int64))
    if ei.dim() != 2 or ei.shape[0] != 2:
        raise ValueError(f"{path}[edge_index] must have shape (2, E); got {tuple(ei.shape)}")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise ValueError(f"{path}[edge_index] holds node ids outside [0, {n})")
    return torch.sparse_coo_tensor(
        ei, torch.ones(ei.shape[1]), (n, n), check_invariants=True
    ).coalesce()


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
