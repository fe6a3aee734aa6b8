r"""Learning by sorting: the GroCo loss and a differentiable odd-even sorting network.

``docs/methods.md``, section 3.3. The sorting network is implemented here (no dependency on the ``diffsort``
package, whose ``odd_even`` network with the Cauchy relaxation it reproduces; the tests compare the
two when ``diffsort`` is installed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_chunk_size,
    check_int,
    check_optional_int,
    check_positive,
    check_reduction,
    check_tensor,
    check_views,
)
from contrastkit.losses._common import reduce_terms, topk_stable, upcast_half
from contrastkit.losses._engine import auto_chunk_size

__all__ = ["GroCo", "odd_even_sort"]


def odd_even_sort(x: Tensor, *, steepness: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Relaxed ascending sort of each row by an odd-even transposition network.

    The network has ``n`` layers; layer ``l`` compares the neighbouring positions ``(j, j + 1)`` for
    ``j = l mod 2, l mod 2 + 2, ...`` (positions left out of a layer pass through). A comparator
    holding ``a`` (lower position) and ``b`` mixes them with the Cauchy relaxation

    .. math::
        \alpha = \frac{1}{\pi}\arctan\big(\text{steepness}\,(b - a)\big) + \frac12, \qquad
        \min \leftarrow \alpha a + (1-\alpha) b, \qquad \max \leftarrow (1-\alpha) a + \alpha b,

    and the same mixing is applied to the columns of the relaxed permutation matrix. With a large
    steepness every comparator becomes a hard compare-and-swap and the result is the exact sort.

    Paper: Petersen et al., "Differentiable Sorting Networks for Scalable Sorting and Ranking
    Supervision" (ICML 2021) / "Monotonic Differentiable Sorting Networks" (ICLR 2022, the Cauchy
    relaxation); same conventions as the PyPI package ``diffsort`` (``DiffSortNet('odd_even', n,
    distribution='cauchy')``).

    Args:
        x: ``(B, n)`` rows to sort.
        steepness: inverse scale of the relaxation (> 0).

    Returns:
        ``(sorted, P)``: ``sorted`` ``(B, n)`` the relaxed ascending values, and ``P``
        ``(B, n, n)`` with ``P[b, e, r]`` the mass of input element ``e`` at ascending rank ``r``;
        rows and columns of ``P`` sum to 1 and ``sorted = x @ P`` (row-wise).
    """
    x = check_tensor(x, "x")
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point (B, n) tensor; got shape {tuple(x.shape)}")
    steep = check_positive(steepness, "steepness")
    b, n = x.shape
    perm = torch.eye(n, dtype=x.dtype, device=x.device).expand(b, n, n)
    values = x
    for layer in range(n):
        lo = torch.arange(layer % 2, n - 1, 2, device=x.device)
        if lo.numel() == 0:
            continue
        hi = lo + 1
        a, c = values[:, lo], values[:, hi]
        alpha = torch.atan(steep * (c - a)) / math.pi + 0.5
        values = values.index_copy(1, lo, alpha * a + (1 - alpha) * c)
        values = values.index_copy(1, hi, (1 - alpha) * a + alpha * c)
        pa, pc = perm[:, :, lo], perm[:, :, hi]
        w = alpha[:, None, :]
        perm = perm.index_copy(2, lo, w * pa + (1 - w) * pc)
        perm = perm.index_copy(2, hi, (1 - w) * pa + w * pc)
    return values, perm


@torch.no_grad()
def _top_negatives(anchors: Tensor, candidates: Tensor, k: int, chunk_size: int | None) -> Tensor:
    """Indices ``(N, k)`` of the ``k`` most similar candidates of each anchor, itself excluded."""
    n = anchors.shape[0]
    chunk = chunk_size or auto_chunk_size(n, candidates.shape[0])
    out = torch.empty(n, k, dtype=torch.long, device=anchors.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = anchors[start:stop] @ candidates.T
        rows = torch.arange(stop - start, device=anchors.device)
        sims[rows, rows + start] = float("-inf")
        # ties (duplicated rows) get the same pick for any chunk_size; the rows are unit vectors
        tol = 4 * anchors.shape[1] * torch.finfo(sims.dtype).eps
        out[start:stop] = topk_stable(sims, k, tol=tol)[1]
    return out


class GroCo(nn.Module):
    r"""GroCo: group ordering constraints by a differentiable sorting network (Shvetsova et al.).

    For every anchor view ``a`` (the loss averages over the ``V`` views as anchors), and every
    instance ``i`` of the batch:

    1. positives: the cosine similarities of ``z_i^a`` to its other views (with ``n_positive_views``
       only views ``0 .. n_positive_views - 1`` serve as positives, the multi-crop setting), sorted
       ascending (``P`` values);
    2. negatives: the ``K = topk_negatives`` largest cosine similarities of ``z_i^a`` to the *other
       instances of the same view* (self excluded), ascending;
    3. with ``stop_grad=True`` the positives and negatives are detached: the gradient flows through
       the anchor only;
    4. ``x = [neg_1 .. neg_K, pos_1 .. pos_P]`` is sorted by the relaxed odd-even network
       (:func:`odd_even_sort`, Cauchy relaxation, ``steepness``), giving ``X`` (``n x n``,
       ``n = K + P``);
    5. group probabilities ``q_e^{neg} = sum_{r<K} X[e, r]``, ``q_e^{pos} = sum_{r>=K} X[e, r]``
       (clipped to [0, 1]) with targets ``1[e < K]`` and ``1[e >= K]``:

    .. math::
        \ell_i^a = \tfrac12\Big(\mathrm{BCE}(q^{pos}, t^{pos}) + \mathrm{BCE}(q^{neg}, t^{neg})\Big)

    with BCE averaged over the ``n`` elements (log clamped at -100 as ``torch.nn.BCELoss``), and
    ``L = mean_{i, a} l_i^a``. The loss is small when every positive similarity exceeds every hard
    negative by a margin that the relaxation resolves, and depends on the similarities only through
    their relaxed ordering.

    Paper: Shvetsova et al., "Learning by Sorting: Self-supervised Learning with Group Ordering
    Constraints" (ICCV 2023). Defaults from the reference code [ninatu/learning_by_sorting
    ``losses/groco.py``]: ``topk_negatives=10``, ``steepness=1``, ``stop_grad=True``, odd-even
    network with Cauchy relaxation.

    Memory: the top-K negatives are found without autograd in row blocks of ``chunk_size``; only
    their ``(N, K)`` similarities are recomputed with gradient, so no ``N x N`` matrix is kept.

    Args:
        topk_negatives: ``K``, hard negatives per anchor (the batch needs ``N >= K + 1``).
        steepness: steepness of the relaxation (> 0).
        stop_grad: detach positives and negatives.
        n_positive_views: number of leading views used as positives (None: all ``V``).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)`` per-instance terms, averaged over
            the anchor views).
        chunk_size: anchors per block of the top-K search (None: automatic).

    Shape:
        views ``(N, V, D)`` with ``V >= 2`` and ``N >= topk_negatives + 1``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import GroCo
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16)  # needs N >= topk_negatives + 1
        >>> loss = GroCo(topk_negatives=4)(views)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        topk_negatives: int = 10,
        steepness: float = 1.0,
        stop_grad: bool = True,
        n_positive_views: int | None = None,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.topk_negatives = check_int(topk_negatives, "topk_negatives", minimum=1)
        self.steepness = check_positive(steepness, "steepness")
        self.stop_grad = bool(stop_grad)
        self.n_positive_views = check_optional_int(n_positive_views, "n_positive_views", minimum=2)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def _anchor_view_terms(self, z: Tensor, anchor: int, positive_views: list[int]) -> Tensor:
        k = self.topk_negatives
        a = z[:, anchor]
        others = [p for p in positive_views if p != anchor]
        pos_rows = torch.stack([z[:, p] for p in others], dim=1)  # (N, P, D)
        if self.stop_grad:
            pos_rows = pos_rows.detach()
        pos = torch.sort((a[:, None, :] * pos_rows).sum(dim=-1), dim=1).values
        candidates = a.detach() if self.stop_grad else a
        idx = _top_negatives(a.detach(), a.detach(), k, self.chunk_size)
        neg = torch.sort((a[:, None, :] * candidates[idx]).sum(dim=-1), dim=1).values
        _, perm = odd_even_sort(torch.cat([neg, pos], dim=1), steepness=self.steepness)
        q_neg = perm[:, :, :k].sum(dim=2).clamp(0.0, 1.0)
        q_pos = perm[:, :, k:].sum(dim=2).clamp(0.0, 1.0)
        n_elems = k + len(others)
        t_pos = (torch.arange(n_elems, device=z.device) >= k).to(q_pos.dtype).expand_as(q_pos)
        bce_pos = F.binary_cross_entropy(q_pos, t_pos, reduction="none").mean(dim=1)
        bce_neg = F.binary_cross_entropy(q_neg, 1.0 - t_pos, reduction="none").mean(dim=1)
        return 0.5 * (bce_pos + bce_neg)

    def forward(self, views: Tensor) -> Tensor:
        z = check_views(views, min_views=2)
        n, v, _ = z.shape
        if n < self.topk_negatives + 1:
            raise ValueError(
                f"GroCo takes the top {self.topk_negatives} negatives from the other instances of "
                f"a view, so it needs N >= {self.topk_negatives + 1} instances; got N = {n} "
                "(lower topk_negatives or enlarge the batch)"
            )
        n_pos = v if self.n_positive_views is None else self.n_positive_views
        if n_pos > v:
            raise ValueError(f"n_positive_views = {n_pos} exceeds the number of views V = {v}")
        z = F.normalize(upcast_half(z), dim=-1)
        positive_views = list(range(n_pos))
        terms = torch.stack(
            [self._anchor_view_terms(z, a, positive_views) for a in range(v)], dim=1
        ).mean(dim=1)
        return reduce_terms(terms, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"topk_negatives={self.topk_negatives}, steepness={self.steepness}, "
            f"stop_grad={self.stop_grad}, n_positive_views={self.n_positive_views}, "
            f"reduction={self.reduction!r}"
        )
