"""Small pieces shared by the loss modules: layout of multi-view batches, group sums, reductions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_labels, check_views

__all__ = ["ViewBatch", "group_positive_mean", "make_view_batch", "reduce_terms", "upcast_half"]


@dataclass(frozen=True)
class ViewBatch:
    """A multi-view batch in the view-major layout (``docs/methods.md``, section 0).

    Row ``r = v * N + i`` of ``rows`` is view ``v`` of instance ``i`` (L2-normalised).
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
