"""Small pieces shared by the loss modules: layout of multi-view batches, group sums, reductions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_labels, check_views

__all__ = [
    "ViewBatch",
    "check_rows",
    "group_positive_mean",
    "make_view_batch",
    "nonnegative",
    "reduce_terms",
    "topk_stable",
    "upcast_half",
]


@dataclass(frozen=True)
class ViewBatch:
    """A multi-view batch in the view-major layout (``docs/methods.md``, section 0).

    Row ``r = v * N + i`` of ``rows`` is view ``v`` of instance ``i`` (L2-normalised; float32 or
    float64, never half precision: :func:`make_view_batch` casts it, so losses need no cast of their
    own).
    ``groups[r]`` is the positive group of that row: the instance id ``i``, or ``labels[i]`` when labels
    are given. ``self_index[r] = r``.
    """

    rows: Tensor
    groups: Tensor
    n: int
    v: int

    @property
    def self_index(self) -> Tensor:
        return torch.arange(self.rows.shape[0], device=self.rows.device)

    def per_anchor(self, terms: Tensor) -> Tensor:
        """Reshape a view-major ``(V*N,)`` vector of per-anchor terms to ``(N, V)``."""
        return terms.reshape(self.v, self.n).T


def upcast_half(x: Tensor) -> Tensor:
    """``x`` in float32 if it is float16 or bfloat16, else unchanged: the loss boundary's precision.

    Half-precision logits at small temperatures are too coarse (one bfloat16 step is 0.5 at 100),
    so every loss computes in float32 from its inputs on (float64 stays float64); the cast is
    differentiable, so autograd returns the gradient in the input's dtype. Losses fed through
    :func:`make_view_batch` get this once there; the others call it on their raw inputs.
    """
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_rows(
    x: Tensor,
    name: str,
    owner: object,
    *,
    minimum: int = 1,
    what: str = "row",
    dim: int = 0,
    symbol: str = "N",
) -> int:
    """The size ``x.shape[dim]`` (the rows of the input ``name``), if it is at least ``minimum``.

    The one check of an empty (or too small) batch for the losses: without it, a mean over zero
    terms is a silent NaN. ``owner`` is the loss (or its class name), named in the message with
    the argument: ``"CLIPLoss needs at least 1 row in image (N >= 1), got N = 0 (shape (0,
    16))"``.

    Args:
        x: the validated input tensor.
        name: its argument name.
        owner: the loss module, or a name.
        minimum: the least size that the loss is defined for.
        what: what is counted, as the message should read it after the number (``"pair"``,
            ``"pairs"`` for ``minimum=2``).
        dim: the dimension counted.
        symbol: its name in the shape (``N``, ``M``, ...).

    Raises:
        ValueError: fewer than ``minimum``.
    """
    size = int(x.shape[dim]) if x.dim() > dim else 0
    if size < minimum:
        who = owner if isinstance(owner, str) else type(owner).__name__
        raise ValueError(
            f"{who} needs at least {minimum} {what} in {name} ({symbol} >= {minimum}), got "
            f"{symbol} = {size} (shape {tuple(x.shape)})"
        )
    return size


def nonnegative(terms: Tensor) -> Tensor:
    """``terms`` with the float rounding below 0 removed, for terms that are >= 0 exactly.

    Use it only where the math guarantees ``terms >= 0``: a log-sum-exp minus a convex
    combination of the logits it sums over (InfoNCE / SupCon / CLIP cross-entropies, whose
    denominator holds the positives: ``lse_i >= max_k l_ik >= mean_p l_ip``), or a KL
    divergence. The two sides are rounded separately, so a term whose exact value is below the
    rounding error of the logits (a few ``1e-5`` at ``|l| ~ 100``, i.e. temperature 0.01 in
    float32) can come out slightly negative. The *value* is clamped at 0; the *gradient* is that
    of ``terms`` (straight through), which is the accurate gradient of the exact, non-negative
    function there: the clamp removes rounding error, it does not flatten the loss.
    Non-negative entries are returned bit for bit.
    """
    return torch.where(terms < 0, terms - terms.detach(), terms)


def topk_stable(x: Tensor, k: int, *, tol: float = 0.0) -> tuple[Tensor, Tensor]:
    """The ``k`` largest entries of each row of ``x``, with ties broken by the lower column index.

    ``torch.topk`` picks among tied values in an order that depends on the shape of its input, and
    a matrix product rounds the same dot product differently in blocks of different shapes, so a
    blockwise selection of hard negatives could pick another copy of a duplicated candidate for
    another ``chunk_size``: the same value, but the gradient on another row. Here an entry within
    ``tol`` of the ``k``-th largest value of its row counts as tied with it, and the tied entries
    are taken in column order: the choice depends on that row alone, not on rounding below
    ``tol``. Use ``tol`` about the rounding error of the entries (``4 * D * eps`` for the cosine
    similarities of ``D``-dimensional unit vectors). Rows may hold ``-inf`` (masked entries).

    Returns:
        ``(values, index)``, each ``(rows, k)``; the values are not sorted.
    """
    values, index = torch.sort(x, dim=1, descending=True, stable=True)
    if 0 < k < x.shape[1]:
        kth = values[:, k - 1 : k]
        above = x > kth + tol  # surely among the k largest (at most k - 1 entries)
        near = (x >= kth - tol) & ~above  # tied with the k-th: lowest column first
        rank = above.to(torch.int8) * 2 + near.to(torch.int8)
        index = torch.sort(rank, dim=1, descending=True, stable=True).indices
        values = torch.gather(x, 1, index)
    return values[:, :k], index[:, :k]


def make_view_batch(
    views: object, labels: object | None = None, *, min_views: int = 2, normalize: bool = True
) -> ViewBatch:
    """Validate ``views`` (N, V, D) and optional ``labels`` (N,) and build the view-major layout.

    The rows come out in float32 for half-precision input (:func:`upcast_half`) and L2-normalised
    (with ``normalize``).
    """
    min_v = 1 if labels is not None else min_views
    x = check_views(views, min_views=min_v)
    n, v, _ = x.shape
    if labels is not None:
        lab = check_labels(labels, n).to(x.device)
        base = torch.unique(lab, return_inverse=True)[1]
    else:
        base = torch.arange(n, device=x.device)
    rows = upcast_half(x.transpose(0, 1).reshape(v * n, -1))
    if normalize:
        rows = F.normalize(rows, dim=1)
    return ViewBatch(rows=rows, groups=base.repeat(v), n=n, v=v)


def group_positive_mean(
    anchors: Tensor, candidates: Tensor, groups: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean positive logit of each row, where positives are the other rows of the same group.

    With anchors ``a`` and candidates ``c`` indexed by the same rows, the positive logits of row ``i``
    sum to ``a_i . (sum_{g(j) = g(i)} c_j - c_i)``: one group sum per group instead of an N x N mask.

    Returns:
        ``(mean_logit, count)``: the mean over the ``count_i`` positives (0 where there are none) and the
        number of positives of each row.
    """
    n_groups = int(groups.max()) + 1 if groups.numel() else 0
    sums = torch.zeros(
        n_groups, candidates.shape[1], dtype=candidates.dtype, device=candidates.device
    )
    sums = sums.index_add(0, groups, candidates)
    counts = torch.bincount(groups, minlength=n_groups)[groups] - 1
    pos_sum = (anchors * (sums[groups] - candidates)).sum(dim=1)
    mean = pos_sum / counts.clamp(min=1).to(pos_sum.dtype)
    return mean, counts


def reduce_terms(terms: Tensor, reduction: str, *, valid: Tensor | None = None) -> Tensor:
    """Apply a torch.nn-style reduction; ``valid`` restricts the mean to the marked anchors."""
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if valid is not None:
        return terms[valid].sum() / valid.sum().clamp(min=1)
    return terms.mean()
