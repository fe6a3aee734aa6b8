"""Queue-based InfoNCE (MoCo) and hard negative mixing (MoCHi).

- :class:`MoCoLoss` (alias :data:`QueueInfoNCE`): InfoNCE of a query against its key and a shared
  bank of negatives (a :class:`~contrastkit.models.momentum.KeyQueue`), optionally with extra,
  per-query negatives and optionally decoupled (DCL-style: no positive in the denominator).
- :class:`HardNegativeMixer`: MoCHi's synthetic hard negatives, fed to :class:`MoCoLoss` as
  ``extra_negatives_per_query``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_chunk_size,
    check_embeddings,
    check_int,
    check_positive,
    check_reduction,
    check_tensor,
)
from contrastkit.losses._common import check_rows, nonnegative, reduce_terms, upcast_half
from contrastkit.losses._engine import masked_logsumexp

__all__ = ["HardNegativeMixer", "MixedNegatives", "MoCoLoss", "QueueInfoNCE"]


@dataclass(frozen=True)
class MixedNegatives:
    """What :meth:`HardNegativeMixer.sample` drew, for inspection and tests.

    Attributes:
        points: ``(B, s + s', D)`` synthetic negatives (L2-normalised, detached): the ``s`` mixtures
            of two hard negatives first, then the ``s'`` mixtures with the query.
        hard_index: ``(B, N)`` queue indices of each query's ``N`` hardest negatives (most similar
            first).
        index_a, index_b: ``(B, s)`` queue indices mixed into the first ``s`` points.
        alpha: ``(B, s)`` weights ``alpha ~ U(0, 1)`` of ``index_a`` (``1 - alpha`` of ``index_b``).
        index_c: ``(B, s')`` queue indices mixed with the query.
        beta: ``(B, s')`` query weights ``beta ~ U(0, beta_max)``.
    """

    points: Tensor
    hard_index: Tensor
    index_a: Tensor
    index_b: Tensor
    alpha: Tensor
    index_c: Tensor
    beta: Tensor


class HardNegativeMixer(nn.Module):
    r"""MoCHi: synthetic hard negatives mixed from each query's hardest queue negatives.

    For each L2-normalised query ``q`` and the normalised negatives ``n_1 .. n_K``:

    1. the ``N = n_hard`` negatives with the largest ``q . n_j`` form ``Q_N``;
    2. ``s = n_mix`` points ``h = normalize(alpha n_a + (1 - alpha) n_b)`` with ``n_a, n_b`` drawn
       uniformly (independently, with replacement) from ``Q_N`` and ``alpha ~ U(0, 1)``;
    3. ``s' = n_mix_query`` points ``h' = normalize(beta q + (1 - beta) n_c)`` with ``n_c`` uniform
       in ``Q_N`` and ``beta ~ U(0, beta_max)``.

    The points are **detached** (the query inside ``h'`` too) and per query; append them to that
    query's logits only (``MoCoLoss(..., extra_negatives_per_query=points)``) and never enqueue
    them.

    Paper: Kalantidis et al., "Hard Negative Mixing for Contrastive Learning" (NeurIPS 2020),
    notation MoCHi(N, s, s'); ``beta_max = 0.5`` from the paper (the query's share stays below one
    half). The paper's configurations include (1024, 1024, 128), (512, 1024, 512), (256, 512, 0) for
    MoCo-v2 on ImageNet. The warm-up before mixing starts is **[UNVERIFIED]** (``docs/methods.md``,
    section 3.2) and
    left to the caller: call the mixer only from the step you choose.

    Args:
        n_hard: ``N``, hardest negatives per query (>= 1; capped at the number of negatives).
        n_mix: ``s``, mixtures of two hard negatives (>= 0).
        n_mix_query: ``s'``, mixtures of the query with a hard negative (>= 0).
        beta_max: upper bound of ``beta``, in (0, 1).
        chunk_size: queries per block when ranking the negatives (memory ``chunk * K``; None: all).

    Shape:
        query ``(B, D)``, negatives ``(K, D)`` -> ``(B, s + s', D)``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import HardNegativeMixer, MoCoLoss
        >>> _ = torch.manual_seed(0)
        >>> query, key, queue = torch.randn(8, 16), torch.randn(8, 16), torch.randn(32, 16)
        >>> points = HardNegativeMixer(n_hard=4, n_mix=3, n_mix_query=2)(query, queue)
        >>> points.shape  # (B, s + s', D), detached
        torch.Size([8, 5, 16])
        >>> MoCoLoss()(query, key, queue, extra_negatives_per_query=points).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        n_hard: int,
        n_mix: int,
        n_mix_query: int,
        beta_max: float = 0.5,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.n_hard = check_int(n_hard, "n_hard", minimum=1)
        self.n_mix = check_int(n_mix, "n_mix", minimum=0)
        self.n_mix_query = check_int(n_mix_query, "n_mix_query", minimum=0)
        self.beta_max = check_positive(beta_max, "beta_max")
        if self.beta_max >= 1:
            raise ValueError(f"beta_max must lie in (0, 1), got {beta_max!r}")
        self.chunk_size = check_chunk_size(chunk_size)

    def _hardest(self, q: Tensor, n: Tensor, k: int) -> Tensor:
        chunk = self.chunk_size or q.shape[0]
        parts = [
            torch.topk(q[s : s + chunk] @ n.T, k, dim=1).indices
            for s in range(0, q.shape[0], chunk)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, k, dtype=torch.long, device=q.device)

    @torch.no_grad()
    def sample(
        self, query: Tensor, negatives: Tensor, generator: torch.Generator | None = None
    ) -> MixedNegatives:
        """Draw the synthetic negatives and return them with the indices and weights used."""
        q = check_embeddings(query, "query")
        neg = check_embeddings(negatives, "negatives", dim=q.shape[1])
        if neg.shape[0] < 1:
            raise ValueError("negatives must hold at least one row to mix from; got 0")
        q = F.normalize(upcast_half(q.detach()), dim=1)
        neg = F.normalize(neg.detach().to(q.dtype), dim=1)
        b, dev = q.shape[0], q.device
        k = min(self.n_hard, neg.shape[0])
        hard = self._hardest(q, neg, k)

        def draw(count: int) -> Tensor:
            u = torch.randint(0, k, (b, count), generator=generator, device=dev)
            return torch.gather(hard, 1, u)

        ia, ib = draw(self.n_mix), draw(self.n_mix)
        alpha = torch.rand(b, self.n_mix, generator=generator, device=dev, dtype=q.dtype)
        ic = draw(self.n_mix_query)
        beta = self.beta_max * torch.rand(
            b, self.n_mix_query, generator=generator, device=dev, dtype=q.dtype
        )
        a = alpha.unsqueeze(-1)
        mixed = a * neg[ia] + (1 - a) * neg[ib]
        bq = beta.unsqueeze(-1)
        with_query = bq * q.unsqueeze(1) + (1 - bq) * neg[ic]
        points = F.normalize(torch.cat([mixed, with_query], dim=1), dim=-1)
        return MixedNegatives(points, hard, ia, ib, alpha, ic, beta)

    def forward(
        self, query: Tensor, negatives: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """``(B, s + s', D)`` synthetic negatives, normalised and detached."""
        return self.sample(query, negatives, generator).points

    def extra_repr(self) -> str:
        return (
            f"n_hard={self.n_hard}, n_mix={self.n_mix}, n_mix_query={self.n_mix_query}, "
            f"beta_max={self.beta_max}"
        )


class MoCoLoss(nn.Module):
    r"""InfoNCE against a queue of negatives (MoCo), with optional per-query extra negatives.

    With L2-normalised query ``q_i``, key ``k_i``, shared negatives ``n_j`` (the queue) and optional
    per-query negatives ``e_{i,m}`` (e.g. MoCHi's synthetic points):

    .. math::
        \ell_i = -\frac{q_i\cdot k_i}{\tau} + \log\Big(e^{q_i\cdot k_i/\tau}
            + \sum_j e^{q_i\cdot n_j/\tau} + \sum_m e^{q_i\cdot e_{i,m}/\tau}\Big)

    which is the cross-entropy of the logits ``[q.k, q.n_1 .. q.n_K, q.e_1 .. q.e_M] / tau`` with
    the key as target. ``decoupled=True`` removes ``e^{q.k/tau}`` from the denominator (DCL's
    decoupling, Yeh et al., 2021). The shared part goes through the blockwise engine
    (:func:`~contrastkit.losses._engine.masked_logsumexp`, memory ``chunk_size * K``); the per-query
    part is a ``(B, M)`` log-sum-exp, and the two are combined with ``logaddexp``.

    Gradients flow to whatever requires them; in MoCo the key comes from a momentum encoder under
    ``torch.no_grad()`` and the negatives from a :class:`~contrastkit.models.momentum.KeyQueue`, so
    only the query receives gradients.

    Paper: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning" (2020);
    ``temperature=0.2`` from MoCo v2 (Chen et al., "Improved Baselines with Momentum Contrastive
    Learning", 2020), also the setting of MoCHi.

    Args:
        temperature: divides the cosine similarities (> 0).
        decoupled: leave the positive out of the denominator.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B,)``).
        chunk_size: queries per block of the engine (None: automatic).

    Shape:
        query ``(B, D)``, key ``(B, D)``, negatives ``(K, D)``, extra_negatives_per_query
        ``(B, M, D)`` (optional).

    Example:
        >>> import torch
        >>> from contrastkit.losses import MoCoLoss
        >>> _ = torch.manual_seed(0)
        >>> query = torch.randn(8, 16, requires_grad=True)
        >>> key, queue = torch.randn(8, 16), torch.randn(64, 16)  # momentum keys, (K, D) negatives
        >>> loss = MoCoLoss(temperature=0.2)(query, key, queue)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
        >>> loss.backward()
    """

    def __init__(
        self,
        *,
        temperature: float = 0.2,
        decoupled: bool = False,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.decoupled = bool(decoupled)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        negatives: Tensor,
        extra_negatives_per_query: Tensor | None = None,
    ) -> Tensor:
        q = check_embeddings(query, "query")
        check_rows(q, "query", self, what="query")
        b, d = q.shape
        k = check_embeddings(key, "key", dim=d)
        if k.shape[0] != b:
            raise ValueError(f"key must have shape ({b}, {d}) like query; got {tuple(k.shape)}")
        neg = check_embeddings(negatives, "negatives", dim=d)
        if neg.shape[0] < 1:
            raise ValueError("negatives must hold at least one row (the queue is empty)")
        q = F.normalize(upcast_half(q), dim=1)
        k = F.normalize(k.to(q.dtype), dim=1)
        neg = F.normalize(neg.to(q.dtype), dim=1)
        inv_t = 1.0 / self.temperature
        pos = (q * k).sum(dim=1) * inv_t
        lse = masked_logsumexp(q * inv_t, neg, chunk_size=self.chunk_size)
        if extra_negatives_per_query is not None:
            extra = check_tensor(extra_negatives_per_query, "extra_negatives_per_query")
            if extra.dim() != 3 or extra.shape[0] != b or extra.shape[2] != d:
                raise ValueError(
                    f"extra_negatives_per_query must have shape ({b}, M, {d}); "
                    f"got {tuple(extra.shape)}"
                )
            if not extra.is_floating_point():
                raise TypeError(
                    f"extra_negatives_per_query must be floating point, got {extra.dtype}"
                )
            if not bool(torch.isfinite(extra).all()):
                raise ValueError("extra_negatives_per_query must be finite")
            if extra.shape[1] > 0:
                e = F.normalize(extra.to(q.dtype), dim=-1)
                extra_logits = torch.einsum("bd,bmd->bm", q, e) * inv_t
                lse = torch.logaddexp(lse, torch.logsumexp(extra_logits, dim=1))
        if self.decoupled:  # no positive in the denominator: the term may be < 0
            return reduce_terms(lse - pos, self.reduction)
        # >= 0 exactly: the positive is in the denominator
        return reduce_terms(nonnegative(torch.logaddexp(lse, pos) - pos), self.reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, decoupled={self.decoupled}, "
            f"reduction={self.reduction!r}"
        )


QueueInfoNCE = MoCoLoss
