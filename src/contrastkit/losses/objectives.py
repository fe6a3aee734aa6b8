"""Smaller reusable objectives: patch selection (Selfie/CPC), bilinear InfoNCE (TACO), binary NCE
(Contrastive-UCB) and list-wise soft-target losses (KL, 1-D Wasserstein)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_choice,
    check_chunk_size,
    check_embeddings,
    check_finite,
    check_int,
    check_positive,
    check_reduction,
    check_tensor,
)
from contrastkit.losses._common import check_rows, nonnegative, reduce_terms, upcast_half
from contrastkit.losses._engine import masked_logsumexp

__all__ = [
    "BilinearInfoNCE",
    "BinaryNCE",
    "ListwiseKL",
    "ListwiseWasserstein1D",
    "PatchSelectionInfoNCE",
]


def _float_tensor(x: object, name: str, dim: int) -> Tensor:
    t = check_tensor(x, name)
    if t.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions; got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    check_finite(t, name)
    return upcast_half(t)


def _bool_mask(mask: object, name: str, shape: tuple[int, ...]) -> Tensor:
    m = check_tensor(mask, name)
    if m.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got dtype {m.dtype}")
    if tuple(m.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(m.shape)}")
    return m


# --------------------------------------------------------------------------------------------------
# Selfie / CPC patch selection
# --------------------------------------------------------------------------------------------------


class PatchSelectionInfoNCE(nn.Module):
    r"""Selfie's patch-selection loss: pick the right patch for each masked position.

    For image ``b`` and masked position ``m``, the query ``v_{bm}`` must select its own patch
    ``h_{bm}`` among the candidate patches of the **same image** (the other masked patches are the
    distractors):

    .. math::
        \ell_{bm} = -\log\frac{\exp(v_{bm}\cdot h_{bm}/\tau)}
                              {\sum_{p \in M_b} \exp(v_{bm}\cdot h_{bp}/\tau)}

    averaged over images and positions. ``candidate_mask`` ``(B, M)`` marks the valid positions
    (padding when images have different numbers of masked patches): a masked-out position is neither
    a distractor nor an anchor. ``cross_image=True`` is the CPC form: the candidates of every image
    are distractors. The denominators go through the blockwise engine (group-restricted for Selfie).

    Paper: Trinh et al., "Selfie: Self-supervised Pretraining for Image Embedding" (2019); no
    temperature and raw dot products in the original [recall; ``docs/methods.md``, section 3.7], hence
    ``temperature=None`` (``tau = 1``) and ``normalize=False``. CPC: van den Oord et al.,
    "Representation Learning with Contrastive Predictive Coding" (2018).

    Args:
        temperature: divides the logits; None for none (``tau = 1``).
        normalize: L2-normalise queries and candidates (cosine logits) first.
        cross_image: candidates from all images (CPC) instead of the same image (Selfie).
        reduction: ``"mean"`` (over valid positions) | ``"sum"`` | ``"none"`` (``(B, M)``, 0 at
            masked-out positions).
        chunk_size: anchors per block (None: automatic).

    Shape:
        query ``(B, M, d)``, candidates ``(B, M, d)``, candidate_mask ``(B, M)`` bool (optional).

    Example:
        >>> import torch
        >>> from contrastkit.losses import PatchSelectionInfoNCE
        >>> _ = torch.manual_seed(0)
        >>> query, patches = torch.randn(2, 5, 8), torch.randn(2, 5, 8)  # (B, M, d)
        >>> PatchSelectionInfoNCE(reduction="none")(query, patches).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        *,
        temperature: float | None = None,
        normalize: bool = False,
        cross_image: bool = False,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = (
            None if temperature is None else check_positive(temperature, "temperature")
        )
        self.normalize = bool(normalize)
        self.cross_image = bool(cross_image)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(
        self, query: Tensor, candidates: Tensor, candidate_mask: Tensor | None = None
    ) -> Tensor:
        q = _float_tensor(query, "query", 3)
        check_rows(q, "query", self, what="image", symbol="B")
        check_rows(q, "query", self, what="position", dim=1, symbol="M")
        c = _float_tensor(candidates, "candidates", 3)
        if c.shape != q.shape:
            raise ValueError(
                f"candidates must have the shape of query {tuple(q.shape)} (one patch per "
                f"position); got {tuple(c.shape)}"
            )
        b, m, d = q.shape
        c = c.to(q.dtype)
        valid = (
            torch.ones(b, m, dtype=torch.bool, device=q.device)
            if candidate_mask is None
            else _bool_mask(candidate_mask, "candidate_mask", (b, m)).to(q.device)
        )
        if self.normalize:
            q, c = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
        inv_t = 1.0 if self.temperature is None else 1.0 / self.temperature
        qf, cf = q.reshape(b * m, d) * inv_t, c.reshape(b * m, d)
        images = torch.arange(b, device=q.device).repeat_interleave(m)
        keep = valid.reshape(-1)
        pos = (qf * cf).sum(dim=1)
        if self.cross_image:
            lse = masked_logsumexp(qf[keep], cf[keep], chunk_size=self.chunk_size)
        else:
            lse = masked_logsumexp(
                qf[keep],
                cf[keep],
                anchor_groups=images[keep],
                candidate_groups=images[keep],
                group_mode="only",
                chunk_size=self.chunk_size,
            )
        terms = torch.zeros(b * m, dtype=lse.dtype, device=q.device)
        # >= 0 exactly: each position's own patch is among its candidates
        terms = terms.masked_scatter(keep, nonnegative(lse - pos[keep].to(lse.dtype)))
        return reduce_terms(terms.reshape(b, m), self.reduction, valid=valid)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, normalize={self.normalize}, "
            f"cross_image={self.cross_image}"
        )


# --------------------------------------------------------------------------------------------------
# TACO / CURL bilinear InfoNCE
# --------------------------------------------------------------------------------------------------


class BilinearInfoNCE(nn.Module):
    r"""InfoNCE with a learned bilinear critic (TACO, CURL): logits ``pred W target^T``.

    .. math::
        \ell_i = -\log\frac{\exp(\hat y_i^\top W y_i)}{\sum_j \exp(\hat y_i^\top W y_j)}

    over the batch (diagonal targets). No temperature and no normalisation: the embeddings are the
    raw outputs of TACO's ``Linear -> LayerNorm -> Tanh`` projection. The reference subtracts each
    row's maximum logit before the cross-entropy; that shift leaves the value and the gradient
    unchanged, and the engine's log-sum-exp is already stable, so it is implicit here.

    Paper: Zheng et al., "TACO: Temporal Latent Action-Driven Contrastive Loss for Visual
    Reinforcement Learning" (2023); ``W`` initialised ``U(0, 1)`` as in its code
    (FrankZheng2022/TACO); the same form as CURL (Laskin et al., 2020).

    Args:
        dim: dimension of ``pred``.
        target_dim: dimension of ``target`` (None: ``dim``).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B,)``).
        chunk_size: anchors per block (None: automatic).

    Shape:
        pred ``(B, dim)``, target ``(B, target_dim)``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import BilinearInfoNCE
        >>> _ = torch.manual_seed(0)
        >>> loss_fn = BilinearInfoNCE(dim=8, target_dim=6)
        >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 6))
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        dim: int,
        target_dim: int | None = None,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        self.target_dim = (
            self.dim if target_dim is None else check_int(target_dim, "target_dim", minimum=1)
        )
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        self.W = nn.Parameter(torch.rand(self.dim, self.target_dim))

    def logits(self, pred: Tensor, target: Tensor) -> Tensor:
        """Dense ``(B, B)`` logits ``pred W target^T`` (to inspect; the loss never builds them)."""
        return (pred @ self.W.to(pred.dtype)) @ target.T

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        p = check_embeddings(pred, "pred", dim=self.dim)
        check_rows(p, "pred", self, what="pair")
        t = check_embeddings(target, "target", dim=self.target_dim)
        if t.shape[0] != p.shape[0]:
            raise ValueError(
                "pred and target must hold the same number of rows; "
                f"got {p.shape[0]} and {t.shape[0]}"
            )
        p = upcast_half(p)
        a = p @ self.W.to(p.dtype)
        t = t.to(a.dtype)
        lse = masked_logsumexp(a, t, chunk_size=self.chunk_size)
        pos = (a * t).sum(dim=1).to(lse.dtype)
        # >= 0 exactly: the positive target is among the candidates
        return reduce_terms(nonnegative(lse - pos), self.reduction)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, target_dim={self.target_dim}"


# --------------------------------------------------------------------------------------------------
# Binary NCE (density-ratio logistic loss)
# --------------------------------------------------------------------------------------------------


class BinaryNCE(nn.Module):
    r"""Binary noise-contrastive (density-ratio) logistic loss on critic scores.

    .. math::
        \ell_i = -\log\sigma\big(f(x_i, y_i^+)\big) - \sum_k \log\big(1 - \sigma(f(x_i,
               y_{ik}^-))\big) = \mathrm{softplus}(-f^+_i) + \sum_k \mathrm{softplus}(f^-_{ik})

    (the softplus form is exact and stable for large scores). ``f`` is any critic, e.g.
    ``phi(s, a)^T psi(s')`` for transitions; at the optimum ``f`` estimates the log density ratio
    of the positive to the negative distribution. ``negative_reduction="mean"`` averages the
    negative terms instead of summing them.

    Paper: the generic part of Contrastive UCB (Qiu et al., "Contrastive UCB: Provably Efficient
    Contrastive Self-Supervised Learning in Online Reinforcement Learning", 2022), whose exact loss
    is [UNVERIFIED] (``docs/methods.md``, section 4); binary NCE after Gutmann and Hyvärinen (2010).
    The sum over negatives is this library's reading of it.

    Args:
        negative_reduction: ``"sum"`` | ``"mean"`` over each row's negatives.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B,)``).

    Shape:
        positive ``(B,)`` scores, negatives ``(B, K)`` scores, negative_mask ``(B, K)`` bool
        (optional, True = use).

    Example:
        >>> import torch
        >>> from contrastkit.losses import BinaryNCE
        >>> positive = torch.tensor([2.0, 3.0])  # critic scores f(x, y+)
        >>> negatives = torch.tensor([[-1.0, -2.0], [0.0, -3.0]])  # f(x, y-), (B, K)
        >>> round(float(BinaryNCE()(positive, negatives)), 4)
        0.6787
    """

    def __init__(self, *, negative_reduction: str = "sum", reduction: str = "mean") -> None:
        super().__init__()
        self.negative_reduction = check_choice(
            negative_reduction, "negative_reduction", ("sum", "mean")
        )
        self.reduction = check_reduction(reduction)

    def forward(
        self, positive: Tensor, negatives: Tensor, negative_mask: Tensor | None = None
    ) -> Tensor:
        pos = _float_tensor(positive, "positive", 1)
        check_rows(pos, "positive", self, what="positive", symbol="B")
        neg = _float_tensor(negatives, "negatives", 2)
        if neg.shape[0] != pos.shape[0]:
            raise ValueError(
                f"negatives must have shape ({pos.shape[0]}, K), one row per positive; "
                f"got {tuple(neg.shape)}"
            )
        neg = neg.to(pos.dtype)
        neg_terms = F.softplus(neg)
        if negative_mask is not None:
            mask = _bool_mask(negative_mask, "negative_mask", tuple(neg.shape)).to(neg.device)
            neg_terms = neg_terms * mask
            count = mask.sum(dim=1).clamp(min=1).to(pos.dtype)
        else:
            count = torch.full_like(pos, float(max(neg.shape[1], 1)))
        neg_sum = neg_terms.sum(dim=1)
        if self.negative_reduction == "mean":
            neg_sum = neg_sum / count
        return reduce_terms(F.softplus(-pos) + neg_sum, self.reduction)

    def extra_repr(self) -> str:
        return f"negative_reduction={self.negative_reduction!r}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------------------------------
# List-wise soft-target losses
# --------------------------------------------------------------------------------------------------

TARGETS = ("softmax", "linear", "exp2")


class _Listwise(nn.Module):
    def __init__(
        self,
        *,
        temperature: float = 1.0,
        target: str = "softmax",
        target_temperature: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.target = check_choice(target, "target", TARGETS)
        self.target_temperature = check_positive(target_temperature, "target_temperature")
        self.reduction = check_reduction(reduction)

    def _inputs(
        self, scores: Tensor, relevance: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        s = _float_tensor(scores, "scores", 2)
        check_rows(s, "scores", self, what="list", symbol="B")
        rel = check_tensor(relevance, "relevance")
        if tuple(rel.shape) != tuple(s.shape):
            raise ValueError(
                f"relevance must have the shape of scores {tuple(s.shape)}; got {tuple(rel.shape)}"
            )
        if rel.dtype == torch.bool or rel.is_complex():
            raise TypeError(f"relevance must hold real graded levels, got dtype {rel.dtype}")
        rel = check_finite(rel.to(s.dtype), "relevance")
        if bool((rel < 0).any()):
            raise ValueError("relevance levels must be >= 0")
        valid = (
            torch.ones_like(s, dtype=torch.bool)
            if mask is None
            else _bool_mask(mask, "mask", tuple(s.shape)).to(s.device)
        )
        if not bool(valid.any(dim=1).all()):
            raise ValueError(
                "every list needs at least one valid document (mask all False in a row)"
            )
        return s, rel, valid

    def distributions(
        self, scores: Tensor, relevance: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(target p, log predicted q)``, each ``(B, L)``; masked entries have ``p = 0``,
        ``log q = -inf``."""
        s, rel, valid = self._inputs(scores, relevance, mask)
        neg_inf = torch.tensor(float("-inf"), dtype=s.dtype, device=s.device)
        log_q = torch.log_softmax(torch.where(valid, s / self.temperature, neg_inf), dim=1)
        if self.target == "softmax":
            p = torch.softmax(torch.where(valid, rel / self.target_temperature, neg_inf), dim=1)
        else:
            gain = rel if self.target == "linear" else torch.exp2(rel) - 1
            gain = torch.where(valid, gain, torch.zeros_like(gain))
            total = gain.sum(dim=1, keepdim=True)
            if not bool((total > 0).all()):
                raise ValueError(
                    f"target={self.target!r} needs at least one document with relevance > 0 in "
                    "every list; use target='softmax' for lists without relevant documents"
                )
            p = gain / total
        return p, log_q


class ListwiseKL(_Listwise):
    r"""List-wise soft-target loss: ``KL(p || softmax(scores / t))`` over each list of documents.

    .. math::
        \ell_b = \sum_{l} p_{bl}\,\big(\log p_{bl} - \log q_{bl}\big),\qquad
        q_b = \mathrm{softmax}(s_b / t)

    with the target ``p`` built from graded relevance levels ``r``: ``"softmax"`` (ListNet's top-one
    probabilities, ``softmax(r / target_temperature)``), ``"linear"`` (``r / sum r``) or ``"exp2"``
    (``(2^r - 1) / sum``, the DCG gain). ``mask`` ``(B, L)`` leaves padding documents out.

    Paper: the list-wise alternative to InfoNCE of "Beyond Contrastive Learning: Synthetic Data
    Enables List-wise Training with Multiple Levels of Relevance" (2025) (``docs/methods.md``,
    section 3.10), whose exact target normalisation is [UNVERIFIED]: the default
    ``target="softmax"`` and ``temperature=1`` follow ListNet (Cao et al., "Learning to Rank: From
    Pairwise Approach to Listwise Approach", 2007).

    Args:
        temperature: divides the scores (> 0).
        target: ``"softmax"`` | ``"linear"`` | ``"exp2"``.
        target_temperature: divides the relevance levels for ``target="softmax"`` (> 0).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B,)``).

    Shape:
        scores ``(B, L)``, relevance ``(B, L)`` (>= 0), mask ``(B, L)`` bool (optional).

    Example:
        >>> import torch
        >>> from contrastkit.losses import ListwiseKL
        >>> scores = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
        >>> relevance = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])  # graded levels
        >>> loss = ListwiseKL()(scores, relevance)
        >>> loss.shape, bool(loss >= 0)
        (torch.Size([]), True)
    """

    def forward(self, scores: Tensor, relevance: Tensor, mask: Tensor | None = None) -> Tensor:
        p, log_q = self.distributions(scores, relevance, mask)
        safe_log_q = torch.where(p > 0, log_q, torch.zeros_like(log_q))
        terms = (torch.xlogy(p, p) - p * safe_log_q).sum(dim=1)
        return reduce_terms(nonnegative(terms), self.reduction)  # a KL divergence: >= 0 exactly


class ListwiseWasserstein1D(_Listwise):
    r"""1-D Wasserstein distance between the target and predicted list distributions.

    Documents are sorted by relevance (most relevant first; a stable sort, so equal levels keep
    their input order; masked documents go last) and placed at positions ``0, 1, 2, ...``; with unit
    ground distance between neighbouring positions, the distance is the L1 distance between the
    CDFs:

    .. math::
        W_1(p, q) = \sum_{k=1}^{L-1}\Big|\sum_{l \le k} p_{(l)} - \sum_{l \le k} q_{(l)}\Big|

    so moving predicted mass from a relevant document to a much less relevant one costs more than
    swapping two neighbours (unlike KL). ``p`` and ``q`` are built as in :class:`ListwiseKL`. The
    ordering of tied relevance levels changes the value; break ties in the input order you want.

    Paper: "Beyond Contrastive Learning: Synthetic Data Enables List-wise Training with Multiple
    Levels of Relevance" (2025) (``docs/methods.md``, section 3.10); its exact cost and target are
    [UNVERIFIED]; this is the CDF form proposed there.

    Args:
        temperature: divides the scores (> 0).
        target: ``"softmax"`` | ``"linear"`` | ``"exp2"``.
        target_temperature: divides the relevance levels for ``target="softmax"`` (> 0).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B,)``).

    Shape:
        scores ``(B, L)``, relevance ``(B, L)`` (>= 0), mask ``(B, L)`` bool (optional).

    Example:
        >>> import torch
        >>> from contrastkit.losses import ListwiseWasserstein1D
        >>> relevance = torch.tensor([[2.0, 1.0, 0.0]])
        >>> scores = relevance  # softmax(scores) equals the softmax target: distance 0
        >>> ListwiseWasserstein1D()(scores, relevance).item() < 1e-6
        True
        >>> ListwiseWasserstein1D()(scores.flip(1), relevance).item() > 0.5  # reversed order
        True
    """

    def forward(self, scores: Tensor, relevance: Tensor, mask: Tensor | None = None) -> Tensor:
        p, log_q = self.distributions(scores, relevance, mask)
        _, rel, valid = self._inputs(scores, relevance, mask)
        key = torch.where(valid, rel, torch.full_like(rel, float("-inf")))
        order = torch.sort(key, dim=1, descending=True, stable=True).indices
        p_sorted = torch.gather(p, 1, order)
        q_sorted = torch.gather(log_q.exp(), 1, order)
        cdf_gap = torch.cumsum(p_sorted - q_sorted, dim=1)[:, :-1]
        return reduce_terms(cdf_gap.abs().sum(dim=1), self.reduction)
