"""Geometry of a representation: alignment, uniformity, tolerance, spectrum and negative hardness.

References:
    - Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
      Uniformity on the Hypersphere", 2020 (alignment, uniformity).
    - Wang & Liu, "Understanding the Behaviour of Contrastive Loss", 2021 (tolerance, hardness-aware
      relative penalties of the negatives).
    - Roy & Vetterli, "The effective rank: a measure of effective dimensionality", 2007.

All functions run without grad, accept tensors or numpy arrays and return Python floats (or CPU
tensors for spectra). Pairwise quantities are computed in row blocks so that memory grows with
``chunk_size * n``, not ``n * n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_positive
from contrastkit.eval.features import _as_features, _as_labels, _check_int

__all__ = [
    "alignment",
    "effective_rank",
    "hardness_profile",
    "singular_values",
    "tolerance",
    "uniformity",
]


def _pair(
    x: Tensor | np.ndarray, y: Tensor | np.ndarray, name_x: str, name_y: str
) -> tuple[Tensor, Tensor]:
    a = _as_features(x, name_x, keep_float64=True)
    b = _as_features(y, name_y, keep_float64=True)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_x} and {name_y} must have the same shape (row i of one is the positive of "
            f"row i of the other); got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(device=a.device, dtype=dtype)


def _subsample(tensors: Sequence[Tensor], max_samples: int | None, seed: int) -> tuple[Tensor, ...]:
    n = tensors[0].shape[0]
    if max_samples is None or n <= max_samples:
        return tuple(tensors)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[:max_samples].to(tensors[0].device)
    return tuple(t[idx] for t in tensors)


def _check_max_samples(max_samples: int | None) -> int | None:
    return None if max_samples is None else _check_int(max_samples, "max_samples", minimum=2)


@torch.no_grad()
def alignment(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    *,
    alpha: float = 2.0,
    normalize: bool = True,
) -> float:
    """Alignment of positive pairs: ``mean_i ||x_i - y_i||_2^alpha`` (Wang & Isola, 2020).

    Args:
        x: ``(N, D)`` embeddings.
        y: ``(N, D)`` embeddings; row ``i`` is the positive of ``x[i]``.
        alpha: Exponent of the distance (> 0); 2 in the paper.
        normalize: L2-normalise the rows first (the paper's setting).

    Returns:
        The alignment loss (0 for identical pairs; at most ``2^alpha`` with normalisation).
    """
    a, b = _pair(x, y, "x", "y")
    alpha = check_positive(alpha, "alpha")
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


@torch.no_grad()
def uniformity(
    x: Tensor | np.ndarray,
    *,
    t: float = 2.0,
    normalize: bool = True,
    max_samples: int | None = 10_000,
    seed: int = 0,
    chunk_size: int = 1024,
) -> float:
    """Uniformity: ``log mean_{i != j} exp(-t ||x_i - x_j||^2)`` (Wang & Isola, 2020).

    Equals the reference ``torch.pdist(x).pow(2).mul(-t).exp().mean().log()``, computed in row
    blocks in log space (no underflow for large ``t``). For more than ``max_samples`` rows, a seeded
    random subset of ``max_samples`` rows is used (the estimate is unbiased in the pair mean and
    costs ``O(max_samples^2 D)``).

    Args:
        x: ``(N, D)`` embeddings, ``N >= 2``.
        t: Kernel scale (> 0); 2 in the paper. SepCLR's ``exp(-||.||^2 / (2 tau))`` is
            ``t = 1 / (2 tau)``.
        normalize: L2-normalise the rows first.
        max_samples: Largest number of rows used (``None``: all).
        seed: Seed of the row subset.
        chunk_size: Rows per block.

    Returns:
        The uniformity (<= 0; lower is more uniform).
    """
    z = _as_features(x, "x", min_rows=2, keep_float64=True)
    t = check_positive(t, "t")
    max_samples = _check_max_samples(max_samples)
    seed = _check_int(seed, "seed", minimum=0)
    chunk_size = _check_int(chunk_size, "chunk_size")
    (z,) = _subsample([z], max_samples, seed)
    if normalize:
        z = F.normalize(z, dim=1)
    n = z.shape[0]
    sq = z.pow(2).sum(dim=1)
    parts = []
    for start in range(0, n, chunk_size):
        block = z[start : start + chunk_size]
        rows = torch.arange(block.shape[0], device=z.device)
        d2 = (sq[start : start + block.shape[0], None] + sq[None, :]).sub_(block @ z.T, alpha=2.0)
        logits = d2.clamp_min_(0.0).mul_(-t)
        logits[rows, rows + start] = -math.inf
        parts.append(torch.logsumexp(logits, dim=1))
    return float(torch.logsumexp(torch.cat(parts), dim=0)) - math.log(n * (n - 1))


@torch.no_grad()
def tolerance(
    x: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    normalize: bool = True,
) -> float:
    """Tolerance: mean cosine similarity of same-class pairs ``i != j`` (Wang & Liu, 2021).

    Computed in ``O(N D)`` from per-class sums: ``sum_{i != j in c} x_i.x_j = ||sum_i x_i||^2 -
    sum_i ||x_i||^2``. The mean is over all same-class ordered pairs pooled across classes (larger
    classes weigh more); classes with a single sample contribute no pair.

    Args:
        x: ``(N, D)`` embeddings.
        labels: ``(N,)`` integer labels.
        normalize: L2-normalise the rows first (cosine); ``False`` gives the mean inner product.

    Returns:
        The tolerance, in ``[-1, 1]`` with normalisation.

    Raises:
        ValueError: If no class has two samples, or on wrong shapes/NaN.
    """
    z = _as_features(x, "x", keep_float64=True).double()
    y = _as_labels(labels, z.shape[0], "labels").to(z.device)
    if normalize:
        z = F.normalize(z, dim=1)
    _, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.numel(), z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, inverse, z)
    n_pairs = int((counts * (counts - 1)).sum())
    if n_pairs == 0:
        raise ValueError(
            "tolerance needs at least one class with two or more samples; every class has one"
        )
    total = sums.pow(2).sum() - z.pow(2).sum()
    return float(total / n_pairs)


@torch.no_grad()
def singular_values(
    x: Tensor | np.ndarray,
    *,
    center: bool = True,
    normalize: bool = False,
) -> Tensor:
    """Singular values of the (centred) embedding matrix, in descending order.

    Their squares divided by ``N`` are the eigenvalues of the embedding covariance; a fast decay to
    zero signals dimensional collapse.

    Args:
        x: ``(N, D)`` embeddings.
        center: Subtract the column means first.
        normalize: L2-normalise the rows first (before centring).

    Returns:
        A CPU tensor of ``min(N, D)`` singular values (float64 for float64 input, else float32).
    """
    z = _as_features(x, "x", keep_float64=True)
    if normalize:
        z = F.normalize(z, dim=1)
    if center:
        z = z - z.mean(dim=0, keepdim=True)
    return torch.linalg.svdvals(z).cpu()


@torch.no_grad()
def effective_rank(
    x: Tensor | np.ndarray,
    *,
    center: bool = True,
    normalize: bool = False,
) -> float:
    """Effective rank (Roy & Vetterli, 2007): ``exp(H(p))``, ``p_k = s_k / sum_j s_j``.

    Here ``H(p) = -sum_k p_k log p_k`` and ``s`` are the singular values of the (centred) embedding
    matrix (:func:`singular_values`). A matrix of rank ``k`` with ``k`` equal singular values has
    effective rank ``k``; the value lies in ``[1, min(N, D)]`` for a non-zero matrix.

    Args:
        x: ``(N, D)`` embeddings.
        center: Subtract the column means first.
        normalize: L2-normalise the rows first.

    Returns:
        The effective rank; ``0.0`` for an all-zero (fully collapsed) matrix.
    """
    s = singular_values(x, center=center, normalize=normalize).double()
    total = s.sum()
    if float(total) <= 0.0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def hardness_profile(
    anchors: Tensor | np.ndarray,
    positives: Tensor | np.ndarray,
    *,
    temperatures: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0),
    top_k: Sequence[int] = (1, 10),
    normalize: bool = True,
    max_samples: int | None = 10_000,
    seed: int = 0,
    chunk_size: int = 1024,
) -> dict[float, dict[str, float]]:
    """How the temperature spreads the InfoNCE penalty over the negatives (Wang & Liu, 2021).

    With cosine similarities ``s_ij = cos(anchor_i, positive_j)``, the positive of anchor ``i`` is
    ``positives[i]`` and its negatives are the other rows of ``positives``. The relative penalty on
    negative ``j`` is ``r_i(s_ij) = exp(s_ij / t) / sum_{k != i} exp(s_ik / t)``, a distribution
    over the ``n - 1`` negatives. For each temperature ``t`` this returns, averaged over anchors,
    its entropy and the mass of its ``k`` largest weights. As ``t -> 0`` the weight concentrates on
    the hardest negative (top-1 mass -> 1, entropy -> 0); as ``t -> inf`` it becomes uniform
    (entropy -> ``log(n - 1)``).

    The result depends on the number of negatives: with more than ``max_samples`` pairs, a seeded
    random subset of ``max_samples`` pairs is used (the number of negatives used is returned as
    ``"n_negatives"``).

    Args:
        anchors: ``(N, D)`` anchor embeddings.
        positives: ``(N, D)`` embeddings; row ``i`` is the positive of ``anchors[i]``.
        temperatures: Temperatures to evaluate (each > 0).
        top_k: Sizes ``k`` of the top-k mass to report (each ``1 <= k <= n - 1``).
        normalize: L2-normalise the rows (cosine similarity).
        max_samples: Largest number of pairs used (``None``: all).
        seed: Seed of the pair subset.
        chunk_size: Anchors per block.

    Returns:
        ``{t: {"entropy": ..., "top{k}_mass": ... for each k, "n_negatives": n - 1}}`` for each
        ``t``.
    """
    a, b = _pair(anchors, positives, "anchors", "positives")
    if a.shape[0] < 2:
        raise ValueError(f"hardness_profile needs at least 2 pairs (1 negative); got {a.shape[0]}")
    if isinstance(temperatures, str) or not isinstance(temperatures, Sequence) or not temperatures:
        raise ValueError(
            f"temperatures must be a non-empty sequence of numbers; got {temperatures!r}"
        )
    temps = [check_positive(t, "temperatures[i]") for t in temperatures]
    if isinstance(top_k, str) or not isinstance(top_k, Sequence) or not top_k:
        raise ValueError(f"top_k must be a non-empty sequence of ints; got {top_k!r}")
    max_samples = _check_max_samples(max_samples)
    seed = _check_int(seed, "seed", minimum=0)
    chunk_size = _check_int(chunk_size, "chunk_size")
    a, b = _subsample([a, b], max_samples, seed)
    n = a.shape[0]
    ks = [_check_int(k, "top_k[i]") for k in top_k]
    if max(ks) > n - 1:
        raise ValueError(
            f"top_k values must be <= the number of negatives per anchor ({n - 1}); got {max(ks)}"
        )
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)

    k_max = max(ks)
    entropy = torch.zeros(len(temps), dtype=torch.float64)
    mass = torch.zeros(len(temps), len(ks), dtype=torch.float64)
    for start in range(0, n, chunk_size):
        sim = a[start : start + chunk_size] @ b.T
        rows = torch.arange(sim.shape[0], device=sim.device)
        sim[rows, rows + start] = -math.inf  # drop each anchor's own positive
        top = sim.topk(k_max, dim=1).values  # the top-k weights are those of the top-k similarities
        for ti, t in enumerate(temps):
            scaled = sim / t
            log_z = torch.logsumexp(scaled, dim=1, keepdim=True)
            log_p = scaled.sub_(log_z)
            p = log_p.exp()
            log_p[rows, rows + start] = 0.0  # p = 0 there, and 0 * log 0 = 0
            entropy[ti] += (-(p * log_p).sum(dim=1)).double().sum().cpu()
            cum = (top / t - log_z).exp().cumsum(dim=1)
            for ki, k in enumerate(ks):
                mass[ti, ki] += cum[:, k - 1].double().sum().cpu()
    out: dict[float, dict[str, float]] = {}
    for ti, t in enumerate(temps):
        row = {"entropy": float(entropy[ti] / n)}
        for ki, k in enumerate(ks):
            row[f"top{k}_mass"] = float(mass[ti, ki] / n)
        row["n_negatives"] = float(n - 1)
        out[t] = row
    return out
