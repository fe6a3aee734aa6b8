r"""CACR: contrastive attraction and contrastive repulsion (``docs/methods.md``, section 3.1)."""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_chunk_size,
    check_positive,
    check_probability,
    check_reduction,
    check_views,
)
from contrastkit.losses._common import reduce_terms, upcast_half
from contrastkit.losses._engine import auto_chunk_size, checkpointed_row_blocks

__all__ = ["CACR"]


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """``||a_i - b_j||^2`` for all pairs, ``(n_a, n_b)``, without an ``n_a x n_b x D`` tensor."""
    sq = (a * a).sum(dim=1)[:, None] + (b * b).sum(dim=1)[None, :] - 2.0 * (a @ b.T)
    return sq.clamp(min=0.0)


class CACR(nn.Module):
    r"""Contrastive attraction and contrastive repulsion for ``K`` views (Zheng et al.).

    Views ``z^0 ... z^{K-1}`` of ``N`` instances, L2-normalised (``normalize=True``). Both parts are
    expected costs under conditional distributions (softmax weights) over the candidates:

    **Attraction** (query view ``x``; the other ``K-1`` views of the instance are its positives;
    far positives weigh more):

    .. math::
        c_{ik} = \alpha\|z_i^x - z_i^k\|^2, \quad
        \pi_{ik} = \mathrm{softmax}_{k \ne x}\big(\tau^+ \|z_i^x - z_i^k\|^2\big), \quad
        L_{CA} = \frac{1}{K}\sum_x \frac{1}{N}\sum_i \sum_{k \ne x} \pi_{ik} c_{ik}.

    **Repulsion** (every unordered view pair ``x < y``; anchors from view ``x``, negatives the other
    instances ``j != i`` of view ``y``; near negatives weigh more):

    .. math::
        c_{ij} = -\beta\|z_i^x - z_j^y\|^2, \quad
        \pi_{ij} = \mathrm{softmax}_{j \ne i}\big(-\tau^- \|z_i^x - z_j^y\|^2\big), \quad
        L_{CR} = \mathrm{mean}_{x<y} \frac{1}{N}\sum_i \sum_{j \ne i} \pi_{ij} c_{ij}.

    ``L = L_CA + L_CR`` (it is negative in general). With ``debiased=True`` each repulsion term
    becomes ``(-p ||z_i^x - z_i^y||^2 + sum_j pi_ij c_ij) / (1 - p)`` with the class prior
    ``p = positive_prior`` (the reference code calls this prior ``tau_plus``; here ``tau_plus`` is
    the attraction temperature, as in the paper's notation).

    Weights: in the small-scale reference code the softmax weights are **not** detached (gradients
    flow through ``pi``), in the ImageNet/MoCo version they are computed under ``no_grad``;
    ``detach_weights`` chooses (default ``False``, the small-scale behaviour).

    Paper: Zheng et al., "Contrastive Attraction and Contrastive Repulsion for Representation
    Learning" (2021). Defaults from the small-scale CIFAR-10 setting [code: JegZheng/CACR-SSL
    ``small_scale_experiments``]: ``alpha = beta = 1``, ``tau_plus = 1.0``, ``tau_minus = 0.9``
    (2.0 for CIFAR-100 / STL-10), ``positive_prior = 0.1``; the paper trains with ``K = 5`` views.

    Memory: the repulsion of each view pair runs over row blocks of ``chunk_size`` anchors; with
    more than one block and autograd on, each block is recomputed in the backward pass (activation
    checkpointing), so peak memory grows with ``N * chunk_size`` instead of ``N * N``. The softmax
    weights are differentiated through, which the log-sum-exp engine cannot express, hence the
    explicit blocks. The attraction uses ``(N, K, K)`` distances only.

    Args:
        alpha: weight of the attraction cost (> 0).
        beta: weight of the repulsion cost (> 0).
        tau_plus: inverse temperature of the attraction weights (> 0; multiplies the distance).
        tau_minus: inverse temperature of the repulsion weights (> 0).
        detach_weights: compute ``pi`` without gradient.
        debiased: use the debiased repulsion.
        positive_prior: class prior ``p`` in [0, 1) of the debiased repulsion.
        normalize: L2-normalise the embeddings first (the reference encoder ends with an L2Norm).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)`` per-instance terms).
        chunk_size: anchors per repulsion block (None: automatic; one block for small batches).

    Shape:
        views ``(N, K, D)`` with ``N >= 2`` and ``K >= 2``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import CACR
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 3, 16, requires_grad=True)  # K = 3 views
        >>> loss = CACR()(views)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
        >>> loss.backward()
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        tau_plus: float = 1.0,
        tau_minus: float = 0.9,
        detach_weights: bool = False,
        debiased: bool = False,
        positive_prior: float = 0.1,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.alpha = check_positive(alpha, "alpha")
        self.beta = check_positive(beta, "beta")
        self.tau_plus = check_positive(tau_plus, "tau_plus")
        self.tau_minus = check_positive(tau_minus, "tau_minus")
        self.detach_weights = bool(detach_weights)
        self.debiased = bool(debiased)
        self.positive_prior = check_probability(positive_prior, "positive_prior")
        if self.positive_prior >= 1.0:
            raise ValueError(f"positive_prior must lie in [0, 1), got {positive_prior!r}")
        self.normalize = bool(normalize)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def _attraction(self, z: Tensor) -> Tensor:
        """Per instance ``(1/K) sum_x sum_{k != x} pi_ik c_ik``; ``z`` has shape ``(N, K, D)``."""
        k = z.shape[1]
        diff = z[:, :, None, :] - z[:, None, :, :]
        dist = (diff * diff).sum(dim=-1)  # (N, K, K): query view x on dim 1, positive k on dim 2
        self_pair = torch.eye(k, dtype=torch.bool, device=z.device)
        logits = (self.tau_plus * dist).masked_fill(self_pair, float("-inf"))
        pi = torch.softmax(logits.detach() if self.detach_weights else logits, dim=2)
        return (pi * (self.alpha * dist)).sum(dim=2).mean(dim=1)

    def _repulsion_block(self, start: int, stop: int, zx: Tensor, zy: Tensor) -> Tensor:
        """Repulsion terms of anchors ``start:stop`` of view x against view y."""
        zx = zx[start:stop]
        dist = _squared_distances(zx, zy)
        rows = torch.arange(zx.shape[0], device=zx.device)
        own = torch.zeros_like(dist, dtype=torch.bool)
        own[rows, rows + start] = True
        logits = (-self.tau_minus * dist).masked_fill(own, float("-inf"))
        pi = torch.softmax(logits.detach() if self.detach_weights else logits, dim=1)
        cost = -self.beta * dist.masked_fill(own, 0.0)
        terms = (pi * cost).sum(dim=1)
        if self.debiased:
            positive = dist[rows, rows + start]
            terms = (terms - self.positive_prior * positive) / (1.0 - self.positive_prior)
        return terms

    def _repulsion(self, zx: Tensor, zy: Tensor) -> Tensor:
        n = zx.shape[0]
        chunk = self.chunk_size or auto_chunk_size(n, n)
        return checkpointed_row_blocks(self._repulsion_block, n, chunk, zx, zy)

    def forward(self, views: Tensor) -> Tensor:
        z = check_views(views, min_views=2)
        n, k, _ = z.shape
        if n < 2:
            raise ValueError(
                f"CACR needs N >= 2 instances (the repulsion's negatives), got N = {n}"
            )
        z = upcast_half(z)
        if self.normalize:
            z = F.normalize(z, dim=-1)
        attraction = self._attraction(z)
        pairs = list(combinations(range(k), 2))
        repulsion = torch.stack([self._repulsion(z[:, x], z[:, y]) for x, y in pairs]).mean(dim=0)
        return reduce_terms(attraction + repulsion, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, tau_plus={self.tau_plus}, "
            f"tau_minus={self.tau_minus}, detach_weights={self.detach_weights}, "
            f"debiased={self.debiased}, positive_prior={self.positive_prior}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}"
        )
