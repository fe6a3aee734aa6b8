"""Clustering quality of frozen features: k-means, then NMI, ARI and Hungarian-matched accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.eval.features import _as_features, _as_labels, _as_tensor, _check_int

__all__ = ["cluster_metrics", "clustering_accuracy"]


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
