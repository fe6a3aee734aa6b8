"""Graph views: edge dropping, node-feature masking, and kNN edges built from features.

Graphs are given as node features ``x`` of shape ``(N, F)`` and an ``edge_index`` of shape
``(2, E)`` (integer; row 0 the source node, row 1 the target), the layout of PyTorch Geometric,
without depending on it. Randomness comes from ``generator`` (a ``torch.Generator``; ``None``: the
global one), so a seeded generator reproduces a view.

- :func:`drop_edges`: remove each edge with probability ``p`` (GRACE, Zhu et al., "Deep Graph
  Contrastive Representation Learning", 2020, removes edges with probability ``p_r``);
  ``undirected=True`` keeps or drops both directions of an edge together.
- :func:`mask_features`: zero feature columns (GRACE: the same columns for every node) or single
  entries.
- :func:`knn_edges`: an ``edge_index`` from each node to its ``k`` most similar nodes (cosine or
  Euclidean), as SCGC / SDCN build graphs for non-graph data (docs/methods.md, section 3.6: k = 3 on USPS);
  blockwise, so memory grows with ``N * chunk_size``, not ``N^2``. (The same graph as a sparse
  adjacency matrix, for the graph losses, is :func:`contrastkit.losses.graph.knn_graph`.)
- :func:`graph_view`: both perturbations at once, one call per view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_choice, check_probability, check_tensor
from contrastkit.views.image import _rand

__all__ = [
    "FEATURE_MASK_MODES",
    "KNN_METRICS",
    "check_edge_index",
    "drop_edges",
    "graph_view",
    "knn_edges",
    "mask_features",
]

FEATURE_MASK_MODES = ("column", "entry")
KNN_METRICS = ("cosine", "euclidean")


def check_edge_index(edge_index: object, num_nodes: int | None = None) -> Tensor:
    """Validate an integer ``(2, E)`` edge index (node ids in ``[0, num_nodes)`` if given)."""
    e = check_tensor(edge_index, "edge_index")
    if e.dim() != 2 or e.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E); got shape {tuple(e.shape)}")
    if e.is_floating_point() or e.is_complex() or e.dtype == torch.bool:
        raise TypeError(f"edge_index must be an integer tensor; got dtype {e.dtype}")
    if num_nodes is not None and e.numel() > 0 and (int(e.min()) < 0 or int(e.max()) >= num_nodes):
        raise ValueError(
            f"edge_index holds node ids outside [0, {num_nodes}): min {int(e.min())}, "
            f"max {int(e.max())}"
        )
    return e


def _check_features(x: object) -> Tensor:
    t = check_tensor(x, "x")
    if t.dim() != 2:
        raise ValueError(f"x must have shape (N, F) (nodes, features); got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor; got dtype {t.dtype}")
    return t


def drop_edges(
    edge_index: Tensor,
    p: float = 0.2,
    *,
    generator: torch.Generator | None = None,
    undirected: bool = False,
) -> tuple[Tensor, Tensor]:
    """Remove each edge independently with probability ``p``.

    Args:
        edge_index: ``(2, E)`` integer edges.
        p: Drop probability, in [0, 1].
        generator: Source of randomness.
        undirected: Draw one coin per unordered pair ``{i, j}``, so ``i -> j`` and ``j -> i`` are
            kept or dropped together (the graph stays symmetric).

    Returns:
        ``(kept_edge_index, keep)``: the ``(2, E')`` kept edges in their original order and the
        boolean mask ``(E,)`` of kept edges (to filter edge attributes).
    """
    e = check_edge_index(edge_index)
    p = check_probability(p, "p")
    n_edges = e.shape[1]
    if undirected and n_edges > 0:
        lo, hi = torch.minimum(e[0], e[1]), torch.maximum(e[0], e[1])
        key = lo * (int(hi.max()) + 1) + hi
        unique, inverse = torch.unique(key, return_inverse=True)
        keep = (_rand((unique.numel(),), generator, e.device) >= p)[inverse]
    else:
        keep = _rand((n_edges,), generator, e.device) >= p
    return e[:, keep], keep


def mask_features(
    x: Tensor,
    p: float = 0.3,
    *,
    generator: torch.Generator | None = None,
    mode: str = "column",
    value: float = 0.0,
) -> Tensor:
    """Set node features to ``value`` at random.

    Args:
        x: Node features ``(N, F)``.
        p: Masking probability, in [0, 1].
        generator: Source of randomness.
        mode: ``"column"``: each feature dimension is masked with probability ``p`` for every node
            at once (GRACE); ``"entry"``: each node's each feature independently.
        value: Fill value.

    Returns:
        Tensor of the shape, dtype and device of ``x``.
    """
    x = _check_features(x)
    p = check_probability(p, "p")
    check_choice(mode, "mode", FEATURE_MASK_MODES)
    n, f = x.shape
    if mode == "column":
        m = (_rand((f,), generator, x.device) < p).unsqueeze(0)
    else:
        m = _rand((n, f), generator, x.device) < p
    return x.masked_fill(m, value)


def knn_edges(
    x: Tensor, k: int, *, metric: str = "cosine", symmetric: bool = False, chunk_size: int = 1024
) -> Tensor:
    """Edges from each node to its ``k`` nearest neighbours in feature space (no self loops).

    Args:
        x: Node features ``(N, F)``.
        k: Neighbours per node, ``1 <= k < N``.
        metric: ``"cosine"`` (largest cosine similarity) or ``"euclidean"`` (smallest distance).
        symmetric: Also add the reverse of every edge (each undirected edge once per direction,
            duplicates removed, sorted by source then target).
        chunk_size: Rows of the similarity matrix computed at a time (memory ``chunk_size * N``).

    Returns:
        ``(2, N * k)`` int64 edge index (``(2, E)`` with ``E`` between ``N k`` and ``2 N k`` if
        ``symmetric``); row 0 is the node, row 1 its neighbour, neighbours in order of
        similarity. Ties are broken by ``torch.topk``.
    """
    x = _check_features(x)
    check_choice(metric, "metric", KNN_METRICS)
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"k must be an int in [1, N - 1] = [1, {n - 1}]; got {k!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1; got {chunk_size!r}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite")
    z = F.normalize(x, dim=1) if metric == "cosine" else x
    sq = (z * z).sum(1) if metric == "euclidean" else None
    neighbours = []
    for start in range(0, n, chunk_size):
        rows = z[start : start + chunk_size]
        score = rows @ z.T  # (c, N): similarity, or -distance^2 up to a per-row constant
        if sq is not None:
            score = 2.0 * score - sq.unsqueeze(0)
        idx = torch.arange(start, start + rows.shape[0], device=x.device)
        score[torch.arange(rows.shape[0], device=x.device), idx] = -torch.inf  # no self loops
        neighbours.append(torch.topk(score, k, dim=1).indices)
    nbr = torch.cat(neighbours)  # (N, k)
    src = torch.arange(n, device=x.device).repeat_interleave(k)
    edges = torch.stack([src, nbr.reshape(-1)])
    if symmetric:
        both = torch.cat([edges, edges.flip(0)], dim=1)
        key = torch.unique(both[0] * n + both[1])
        edges = torch.stack([key // n, key % n])
    return edges


def graph_view(
    x: Tensor,
    edge_index: Tensor,
    *,
    drop_edge_p: float = 0.2,
    mask_feature_p: float = 0.3,
    generator: torch.Generator | None = None,
    undirected: bool = False,
    mask_mode: str = "column",
) -> tuple[Tensor, Tensor]:
    """One GRACE-style view: masked features and dropped edges.

    Call it once per view with different probabilities (GRACE uses a pair of settings per
    dataset). Returns ``(x_view, edge_index_view)``.
    """
    x = _check_features(x)
    check_edge_index(edge_index, x.shape[0])
    xv = mask_features(x, mask_feature_p, generator=generator, mode=mask_mode)
    ev, _ = drop_edges(edge_index, drop_edge_p, generator=generator, undirected=undirected)
    return xv, ev
