"""Pseudo-labels by clustering, for batch construction: k-means and MCL's stage clusters.

- G-SimCLR (:mod:`contrastkit.train.autoencoder`): k-means (:func:`kmeans_labels`,
  ``K = batch size``) on a denoising autoencoder's pooled latent codes; the clusters feed
  :class:`~contrastkit.data.samplers.ClusterSpreadBatchSampler`. Training the autoencoder is
  training, so it lives in the train layer; this module only clusters.
- MCL (:mod:`contrastkit.train.strategies.mcl`): at each stage the current model's features are
  L2-normalised and clustered with MiniBatchKMeans (``K = 10``, ``max_iter = 100``,
  ``tol = 1e-5``); :func:`stage_clusters` does this and
  :func:`~contrastkit.data.samplers.mixed_radix_labels` combines the stages.

Everything is seeded.

>>> import torch
>>> x = torch.cat([torch.zeros(5, 2), torch.ones(5, 2)]) + 0.01 * torch.rand(10, 2)
>>> labels, centres = kmeans_labels(x, 2)
>>> sorted(torch.bincount(labels).tolist()), tuple(centres.shape)
([5, 5], (2, 2))
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_finite, check_int, check_positive

__all__ = ["as_float_samples", "kmeans_labels", "stage_clusters"]


def as_float_samples(x: object, name: str, *, min_dim: int = 2) -> Tensor:
    """``x`` (a tensor or numpy array) as a detached floating-point tensor of samples.

    Args:
        x: ``(N, ...)`` samples, ``N >= 1``.
        name: The argument's name, for error messages.
        min_dim: The fewest dimensions ``x`` may have.

    Raises:
        TypeError: ``x`` is not a tensor or array, or not floating point.
        ValueError: ``x`` has too few dimensions, no sample, or a NaN or inf.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.dim() < min_dim or x.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (N, ...) with at least {min_dim} dims and N >= 1; got "
            f"{tuple(x.shape)}"
        )
    return check_finite(x.detach(), name)


def _matrix(features: object) -> Tensor:
    x = as_float_samples(features, "features")
    if x.dim() != 2:
        raise ValueError(f"features must have shape (N, D); got {tuple(x.shape)}")
    return x


def kmeans_labels(
    features: Tensor | np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    n_init: int = 3,
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """k-means (scikit-learn, k-means++) cluster ids and centres of ``features`` ``(N, D)``.

    Args:
        features: ``(N, D)`` floating-point features.
        n_clusters: Clusters, in ``[1, N]``.
        seed: k-means' random state.
        n_init: k-means restarts.
        normalize: L2-normalise the rows first.

    Returns:
        ``(labels (N,) int64, centres (n_clusters, D) float32)``.
    """
    from sklearn.cluster import KMeans

    x = _matrix(features)
    k = check_int(n_clusters, "n_clusters", minimum=1)
    if k > x.shape[0]:
        raise ValueError(f"n_clusters must be <= the number of samples {x.shape[0]}; got {k}")
    if normalize:
        x = F.normalize(x, dim=1)
    km = KMeans(n_clusters=k, n_init=check_int(n_init, "n_init", minimum=1), random_state=seed)
    labels = km.fit_predict(x.double().cpu().numpy())
    return (
        torch.from_numpy(labels.astype(np.int64)),
        torch.from_numpy(km.cluster_centers_.astype(np.float32)),
    )


def stage_clusters(
    features: Tensor | np.ndarray,
    k: int = 10,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> Tensor:
    """MCL's clustering of one stage: MiniBatchKMeans on the L2-normalised features.

    Defaults from MajorDavidZhang/MCL ``cluster.py``: ``K = 10``, ``max_iter = 100``,
    ``tol = 1e-5``, and a k-means batch of 1,000,000 — larger than our datasets, so
    ``batch_size=None`` uses all ``N`` samples per k-means step.

    Args:
        features: ``(N, D)`` floating-point features.
        k: Clusters, in ``[1, N]``.
        seed: k-means' random state.
        batch_size: Samples per k-means step (None: all).
        max_iter: k-means iterations.
        tol: k-means' tolerance.

    Returns:
        ``(N,)`` int64 cluster ids in ``[0, k)``.
    """
    from sklearn.cluster import MiniBatchKMeans

    x = _matrix(features)
    k = check_int(k, "k", minimum=1)
    if k > x.shape[0]:
        raise ValueError(f"k must be <= the number of samples {x.shape[0]}; got {k}")
    bs = x.shape[0] if batch_size is None else check_int(batch_size, "batch_size", minimum=1)
    km = MiniBatchKMeans(
        n_clusters=k,
        batch_size=bs,
        max_iter=check_int(max_iter, "max_iter", minimum=1),
        tol=check_positive(tol, "tol", allow_zero=True),
        random_state=check_int(seed, "seed", minimum=0),
        n_init=3,
    )
    xn = F.normalize(x.float(), dim=1).cpu().numpy()
    return torch.from_numpy(km.fit_predict(xn).astype(np.int64))
