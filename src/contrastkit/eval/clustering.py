"""Clustering quality of frozen features: k-means, then NMI, ARI and Hungarian-matched accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.eval.features import _as_features, _as_labels, _as_tensor, _check_int

__all__ = ["cluster_metrics", "clustering_accuracy", "modularity"]


def _as_label_array(y: object, name: str, n: int | None = None) -> np.ndarray:
    t = _as_tensor(y, name)
    if t.dim() != 1 or t.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D label vector; got shape {tuple(t.shape)}")
    if n is not None and t.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},), one label per sample; got shape {tuple(t.shape)}"
        )
    return _as_labels(t, t.shape[0], name).cpu().numpy()


def clustering_accuracy(y_true: Tensor | np.ndarray, y_pred: Tensor | np.ndarray) -> float:
    """Accuracy of a clustering under the best one-to-one matching of clusters to classes.

    The matching maximises the number of agreeing samples (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment`` on the contingency table). The numbers of clusters and
    classes may differ; the samples of unmatched clusters count as errors.

    Args:
        y_true: ``(N,)`` integer class labels (any integer values).
        y_pred: ``(N,)`` integer cluster assignments (any integer values).

    Returns:
        The matched accuracy in ``[0, 1]``.

    Raises:
        ValueError: If the inputs are not 1-D, empty, or of different lengths.
        TypeError: If they are not integer tensors/arrays.
    """
    from scipy.optimize import linear_sum_assignment

    truth = _as_label_array(y_true, "y_true")
    pred = _as_label_array(y_pred, "y_pred", n=truth.shape[0])
    _, t_idx = np.unique(truth, return_inverse=True)
    _, p_idx = np.unique(pred, return_inverse=True)
    table = np.zeros((p_idx.max() + 1, t_idx.max() + 1), dtype=np.int64)
    np.add.at(table, (p_idx, t_idx), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum()) / truth.shape[0]


@torch.no_grad()
def cluster_metrics(
    features: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_clusters: int | None = None,
    seed: int = 0,
    n_init: int = 10,
    normalize: bool = True,
) -> dict[str, float]:
    """Cluster features with k-means and compare the clusters with the labels.

    Uses ``sklearn.cluster.KMeans`` (k-means++ initialisation, Lloyd iterations, best of ``n_init``
    runs), by default on L2-normalised features (spherical geometry, as in cosine-similarity
    training).

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` integer ground-truth labels.
        n_clusters: Number of clusters; ``None`` uses the number of distinct labels.
        seed: Random state of k-means.
        n_init: Number of k-means restarts.
        normalize: L2-normalise the rows before clustering.

    Returns:
        ``{"nmi": ..., "ari": ..., "acc": ...}``: normalised mutual information (arithmetic mean
        normalisation), adjusted Rand index and Hungarian-matched accuracy
        (:func:`clustering_accuracy`).

    Raises:
        ValueError: On wrong shapes or lengths, NaN/inf, or ``n_clusters`` larger than the number of
            samples.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _as_features(features, "features")
    y = _as_labels(labels, x.shape[0], "labels").cpu().numpy()
    if n_clusters is None:
        n_clusters = int(np.unique(y).size)
    n_clusters = _check_int(n_clusters, "n_clusters")
    if n_clusters > x.shape[0]:
        raise ValueError(
            f"n_clusters must be <= the number of samples ({x.shape[0]}); got {n_clusters}"
        )
    seed = _check_int(seed, "seed", minimum=0)
    n_init = _check_int(n_init, "n_init")
    if normalize:
        x = F.normalize(x, dim=1)
    data = x.cpu().numpy()
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    pred = kmeans.fit_predict(data)
    return {
        "nmi": float(normalized_mutual_info_score(y, pred)),
        "ari": float(adjusted_rand_score(y, pred)),
        "acc": clustering_accuracy(y, pred),
    }


def _undirected_edges(adjacency: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows, columns and weights of ``max(A, A^T)`` without self loops, both directions listed."""
    a = adjacency.detach().cpu()
    a = (a if a.is_sparse else a.to_sparse()).coalesce()
    rows, cols = a.indices()
    w = a.values().to(torch.float64)
    keep = rows != cols
    rows, cols, w = rows[keep], cols[keep], w[keep]
    n = a.shape[0]
    # an edge listed in both directions keeps its larger weight instead of the sum of the two
    key, inverse = torch.unique(torch.cat([rows * n + cols, cols * n + rows]), return_inverse=True)
    weight = torch.zeros(key.numel(), dtype=torch.float64).scatter_reduce(
        0, inverse, torch.cat([w, w]), reduce="amax", include_self=False
    )
    return key // n, key % n, weight


def modularity(adjacency: Tensor, predictions: Tensor | np.ndarray) -> float:
    r"""Newman's modularity of a partition of an undirected, weighted graph.

    .. math::
        Q = \sum_c \left[\frac{w_c}{2m} - \left(\frac{d_c}{2m}\right)^2\right]

    with ``w_c`` the summed weights of the edges inside cluster ``c`` (each counted from both
    ends), ``d_c`` the summed weighted degrees of its nodes and ``2m`` the total degree (Newman &
    Girvan, "Finding and evaluating community structure in networks", Phys. Rev. E 69, 2004). The
    graph is ``max(A, A^T)`` of the given adjacency with self loops dropped, so a directed kNN graph
    becomes its symmetrised union. Uses no labels: a higher ``Q`` means fewer edges cut than
    chance, which makes it a label-free score to compare partitions of one graph.

    Args:
        adjacency: ``(n, n)`` non-negative adjacency, dense or sparse.
        predictions: ``(n,)`` integer cluster ids.

    Returns:
        ``Q`` in ``[-1/2, 1)``; 0 for a graph without edges.

    Raises:
        ValueError: If the adjacency is not square, has negative weights, or the predictions do
            not have one id per node.
    """
    if not isinstance(adjacency, Tensor) or adjacency.dim() != 2:
        raise ValueError(
            "adjacency must be a square (n, n) tensor; got "
            + (
                f"shape {tuple(adjacency.shape)}"
                if isinstance(adjacency, Tensor)
                else type(adjacency).__name__
            )
        )
    n = adjacency.shape[0]
    if adjacency.shape[1] != n:
        raise ValueError(f"adjacency must be square (n, n); got shape {tuple(adjacency.shape)}")
    pred = torch.as_tensor(_as_label_array(predictions, "predictions", n=n)).long()
    rows, cols, w = _undirected_edges(adjacency)
    if w.numel() and float(w.min()) < 0:
        raise ValueError("adjacency must have non-negative weights")
    two_m = float(w.sum())
    if two_m == 0.0:
        return 0.0
    _, pred = torch.unique(pred, return_inverse=True)
    n_clusters = int(pred.max()) + 1
    same = pred[rows] == pred[cols]
    inside = torch.zeros(n_clusters, dtype=torch.float64).index_add(0, pred[rows][same], w[same])
    degree = torch.zeros(n, dtype=torch.float64).index_add(0, rows, w)
    d_c = torch.zeros(n_clusters, dtype=torch.float64).index_add(0, pred, degree)
    return float((inside / two_m - (d_c / two_m) ** 2).sum())
