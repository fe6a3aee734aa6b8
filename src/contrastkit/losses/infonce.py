"""InfoNCE / NT-Xent (SimCLR) for any number of views: multi-positive labels, per-instance weights,
extra queue negatives and the top-K hard-negative variant."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_chunk_size,
    check_embeddings,
    check_optional_int,
    check_positive,
    check_reduction,
)
from contrastkit.losses._common import (
    ViewBatch,
    group_positive_mean,
    make_view_batch,
    nonnegative,
    reduce_terms,
    topk_stable,
)
from contrastkit.losses._engine import auto_chunk_size, masked_logsumexp, self_logsumexp
from contrastkit.losses.weights import check_instance_weights

__all__ = [
    "HardInfoNCE",
    "InfoNCE",
    "check_negatives",
    "logaddexp_safe",
    "out_terms",
    "topk_negative_logsumexp",
]


def logaddexp_safe(a: Tensor, b: Tensor) -> Tensor:
    """``log(e^a + e^b)`` that stays ``-inf`` (with zero gradient, not NaN) where both are
    ``-inf``."""
    both = torch.isneginf(a) & torch.isneginf(b)
    zero = torch.zeros_like(a)
    out = torch.logaddexp(torch.where(both, zero, a), torch.where(both, zero, b))
    return torch.where(both, torch.full_like(out, float("-inf")), out)


def check_negatives(negatives: object, batch: ViewBatch) -> Tensor:
    """Validate extra negatives ``(K, D)`` and return them L2-normalised in the batch's
    dtype/device.

    The cast and the normalisation are differentiable: gradient reaches ``negatives`` when (and only
    when) they require grad.
    """
    d = batch.rows.shape[1]
    neg = check_embeddings(negatives, "negatives", dim=d)
    neg = neg.to(device=batch.rows.device, dtype=batch.rows.dtype)
    return F.normalize(neg, dim=1)


def out_terms(
    batch: ViewBatch, temperature: float, chunk_size: int | None
) -> tuple[Tensor, Tensor]:
    """Per-row L_out terms ``lse_i - mean_{p in P(i)} s_ip / tau`` and positive counts.

    The denominator runs over every row but the anchor itself (positives included).
    """
    rows = batch.rows
    lse = self_logsumexp(rows, 1.0 / temperature, chunk_size=chunk_size)
    pos_mean, counts = group_positive_mean(rows / temperature, rows, batch.groups)
    # >= 0 exactly (lse_i >= max_k l_ik >= mean_p l_ip: the positives are among the candidates);
    # nonnegative() removes the float rounding below 0 (-3e-5 at temperature 0.01)
    terms = torch.where(counts > 0, nonnegative(lse - pos_mean), torch.zeros_like(lse))
    return terms, counts


def topk_negative_logsumexp(
    anchors: Tensor,
    candidates: Tensor,
    anchor_groups: Tensor,
    candidate_groups: Tensor,
    k: int,
    inv_temperature: float,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """``log sum_{k in TopK_i} exp(s_ik / tau)`` over each anchor's K most similar negatives.

    The negatives of anchor ``i`` are the candidates whose group differs from ``anchor_groups[i]``
    (a candidate group of -1 never matches: queue entries). The K indices are chosen under
    ``no_grad`` from row blocks of ``chunk_size`` anchors (never the whole similarity matrix at
    once); the chosen logits are then recomputed with autograd from the gathered ``(n, K, D)``
    candidate rows. The selection is piecewise constant in the embeddings, so the gradient is exact
    (away from ties). Similarities within the rounding error of the K-th largest (``4 D eps``, for
    unit rows) count as tied with it and are taken in candidate order, so duplicated candidates
    get the same pick, and the same gradient, for any ``chunk_size``. Anchors with fewer than K
    negatives use all of theirs; ``-inf`` where there is none.
    """
    n, n_c = anchors.shape[0], candidates.shape[0]
    kk = min(k, n_c)
    if n == 0 or kk == 0:
        return torch.full((n,), float("-inf"), dtype=anchors.dtype, device=anchors.device)
    chunk = chunk_size if chunk_size is not None else auto_chunk_size(n, n_c)
    idx = torch.empty(n, kk, dtype=torch.long, device=anchors.device)
    valid = torch.empty(n, kk, dtype=torch.bool, device=anchors.device)
    # the rounding error of a cosine similarity of D-dimensional rows (anchors are unit rows)
    tol = 4 * anchors.shape[1] * torch.finfo(anchors.dtype).eps
    with torch.no_grad():
        a_det, c_det = anchors.detach(), candidates.detach()
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = a_det[start:stop] @ c_det.T
            same = anchor_groups[start:stop, None] == candidate_groups[None, :]
            block.masked_fill_(same, float("-inf"))
            # ties (duplicated candidates) get the same pick for any chunk_size
            vals, ind = topk_stable(block, kk, tol=tol)
            idx[start:stop] = ind
            valid[start:stop] = torch.isfinite(vals)
    chosen = candidates[idx]  # (n, K, D), differentiable in both anchors and candidates
    logits = torch.einsum("nd,nkd->nk", anchors * inv_temperature, chosen)
    has_any = valid.any(dim=1)
    # rows without any negative: a finite dummy row (its result is replaced by -inf below), so that
    # the logsumexp backward never sees an all -inf row
    logits = logits.masked_fill(~valid, float("-inf")).masked_fill(~has_any[:, None], 0.0)
    lse = torch.logsumexp(logits, dim=1)
    return torch.where(has_any, lse, torch.full_like(lse, float("-inf")))


class InfoNCE(nn.Module):
    r"""InfoNCE / NT-Xent over V >= 2 views, each positive its own term (SimCLR's loss when V = 2).

    With the V*N rows ``z_r`` L2-normalised, ``s_rk = z_r . z_k`` and positives ``P(r)`` (the other
    views of the same instance, or every other row with the same label when ``labels`` are given):

    .. math::
        \ell_r = -\frac{1}{|P(r)|} \sum_{p \in P(r)}
            \log \frac{\exp(s_{rp}/\tau)}{\sum_{k \neq r} \exp(s_{rk}/\tau)}

    The positive stays in the denominator (DCL removes it). The loss is the mean of ``ell_r`` over
    all anchors (``docs/methods.md``, section 2.1), which for V > 2 equals the multi-view NT-Xent of
    Koromilas et
    al. Anchors without a positive (a singleton label) contribute 0 and count in the mean.

    Extensions, all combinable:

    - ``weights`` (N,) per instance (``docs/methods.md``, section 2.2; GenView / ISR): each anchor's
      term is
      multiplied by the weight of its instance, ``w_i * l_r``; the weights are detached (never
      differentiated). ``"mean"`` is :math:`\frac{1}{VN}\sum_r w_{i(r)} \ell_r`
      (:math:`\frac1N \sum_i w_i \ell_i` per view), so uniform weights of 1 give the unweighted
      loss; see :func:`contrastkit.losses.weights.normalize_weights` for mean-one weights.
    - ``negatives`` (K, D): extra candidates (a queue, MoCo-style), L2-normalised here, added to
      every anchor's denominator:
      ``lse_r = logaddexp(lse_batch_r, log sum_k exp(z_r . q_k / tau))``. Gradient reaches them only
      if they require grad.
    - ``topk_negatives = K`` (hard contrastive loss of Wang & Liu, "Understanding the Behaviour of
      Contrastive Loss", 2021): the denominator keeps the positives and only the K most similar
      negatives (in-batch and queue) of each anchor,

      .. math:: \ell_r = -\frac{1}{|P(r)|}\sum_{p \in P(r)} \log
            \frac{e^{s_{rp}/\tau}}{\sum_{q \in P(r)} e^{s_{rq}/\tau} + \sum_{k \in TopK_r}
            e^{s_{rk}/\tau}}

      which for one positive is
      :math:`-\log\frac{e^{s_{ii}/\tau}}{e^{s_{ii}/\tau} + \sum_{k\in TopK_i} e^{s_{ik}/\tau}}`. The
      indices are chosen blockwise without gradient, and the selected logits are recomputed with
      autograd from an ``(V*N, K, D)`` gather (memory grows with ``N * K * D``; no N x N matrix).
      With K at least the number of negatives this is the plain loss. The paper's K is not known
      here (``docs/methods.md``, section 2.8): there is no default.

    Paper: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
    (2020); default ``temperature=0.5`` from ScatSimCLR's CIFAR/STL configuration (2021).

    Args:
        temperature: divides the cosine similarities; must be > 0.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``"none"`` returns ``(N, V)``, one
        (weighted) term per anchor).
        chunk_size: anchors per block of the exact blockwise computation (None: automatic).
        topk_negatives: keep only each anchor's K hardest negatives in the denominator (None: all).

    Shape:
        views ``(N, V, D)``; labels ``(N,)`` integers (optional, then V >= 1); weights ``(N,)``;
        negatives ``(K, D)``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import InfoNCE
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16, requires_grad=True)  # (N, V, D)
        >>> loss = InfoNCE(temperature=0.1)(views)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
        >>> loss.backward()
        >>> InfoNCE(reduction="none")(views, labels=torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])).shape
        torch.Size([8, 2])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        reduction: str = "mean",
        chunk_size: int | None = None,
        topk_negatives: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        self.topk_negatives = check_optional_int(topk_negatives, "topk_negatives", minimum=1)

    def forward(
        self,
        views: Tensor,
        labels: Tensor | None = None,
        *,
        weights: Tensor | None = None,
        negatives: Tensor | None = None,
    ) -> Tensor:
        batch = make_view_batch(views, labels)
        w = None if weights is None else check_instance_weights(weights, batch.n)
        queue = None if negatives is None else check_negatives(negatives, batch)
        if self.topk_negatives is None and queue is None:
            terms, _ = out_terms(batch, self.temperature, self.chunk_size)
        else:
            terms = self._extended_terms(batch, queue)
        grid = batch.per_anchor(terms)
        if w is not None:
            grid = grid * w.to(device=grid.device, dtype=grid.dtype)[:, None]
        return reduce_terms(grid, self.reduction)

    def _extended_terms(self, batch: ViewBatch, queue: Tensor | None) -> Tensor:
        """Per-row terms with queue negatives and/or a top-K denominator."""
        beta = 1.0 / self.temperature
        rows = batch.rows
        if self.topk_negatives is None:
            assert queue is not None
            lse = logaddexp_safe(
                self_logsumexp(rows, beta, chunk_size=self.chunk_size),
                masked_logsumexp(rows * beta, queue, chunk_size=self.chunk_size),
            )
        else:
            lse_pos = self_logsumexp(
                rows, beta, groups=batch.groups, group_mode="only", chunk_size=self.chunk_size
            )
            if queue is None:
                cands, cand_groups = rows, batch.groups
            else:
                cands = torch.cat([rows, queue], dim=0)
                queue_groups = torch.full(
                    (queue.shape[0],), -1, dtype=batch.groups.dtype, device=batch.groups.device
                )
                cand_groups = torch.cat([batch.groups, queue_groups])
            lse_neg = topk_negative_logsumexp(
                rows,
                cands,
                batch.groups,
                cand_groups,
                self.topk_negatives,
                beta,
                chunk_size=self.chunk_size,
            )
            lse = logaddexp_safe(lse_pos, lse_neg.to(lse_pos.dtype))
        pos_mean, counts = group_positive_mean(rows * beta, rows, batch.groups)
        # >= 0 exactly: the positives are in the denominator (see out_terms)
        return torch.where(counts > 0, nonnegative(lse - pos_mean), torch.zeros_like(lse))

    def extra_repr(self) -> str:
        s = f"temperature={self.temperature}, reduction={self.reduction!r}"
        if self.topk_negatives is not None:
            s += f", topk_negatives={self.topk_negatives}"
        return s


class HardInfoNCE(InfoNCE):
    r"""InfoNCE whose denominator keeps the positives and each anchor's K hardest negatives.

    The hard contrastive loss of Wang & Liu, "Understanding the Behaviour of Contrastive Loss"
    (2021): :class:`InfoNCE` with ``topk_negatives=K`` (see there for the formula). The paper's K is
    unverified (``docs/methods.md``, section 2.8); the default ``topk_negatives=10`` is the K that
    GroCo (Shvetsova et al., "Learning by Sorting: Self-supervised Learning with Group Ordering
    Constraints", 2023) uses. ``temperature=0.5`` as :class:`InfoNCE`.

    Example:
        >>> import torch
        >>> from contrastkit.losses import HardInfoNCE
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(16, 2, 8)
        >>> loss = HardInfoNCE(topk_negatives=4)(views)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        topk_negatives: int = 10,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        if topk_negatives is None:
            raise ValueError("HardInfoNCE needs topk_negatives >= 1; use InfoNCE for all negatives")
        super().__init__(
            temperature=temperature,
            reduction=reduction,
            chunk_size=chunk_size,
            topk_negatives=topk_negatives,
        )
