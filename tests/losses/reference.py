"""Plain, dense float64 reference implementations of the losses, written from docs/methods.md only.

Every function here follows the formulas of ``docs/methods.md`` in this repository (sections 0, 2.1,
2.3(a), 2.4, 2.5) literally: normalise, build the full similarity matrix, build 0/1 masks, take
``log_softmax``. Nothing is blockwise, nothing uses group sums: these are the slow,
obviously-correct versions that the library's losses are tested against.

Layout (docs/methods.md section 0): ``views`` is ``(N, V, D)``; the stacked matrix ``Z`` is view-major,
row ``r = v * N + i`` is view ``v`` of instance ``i``. Per-anchor results are returned as ``(N, V)``
(the library's ``reduction="none"`` shape), the reduced loss as a 0-d tensor.

All inputs are cast to float64; gradients flow back to the (float64) input tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "clip_ref",
    "dcl_negative_lse_ref",
    "dcl_ref",
    "dclw_ref",
    "ntxent_ref",
    "positive_mask",
    "reduce_ref",
    "similarity",
    "stack_views",
    "supcon_ref",
]


# --------------------------------------------------------------------------------------------------
# Dense building blocks
# --------------------------------------------------------------------------------------------------


def stack_views(views: Tensor) -> Tensor:
    """``(N, V, D)`` -> view-major ``(V*N, D)``: row ``v*N + i`` is view ``v`` of instance ``i``."""
    v = views.shape[1]
    rows = [views[:, k, :] for k in range(v)]
    return torch.cat(rows, dim=0).to(torch.float64)


def similarity(views: Tensor) -> Tensor:
    """Full ``(V*N, V*N)`` cosine-similarity matrix ``s_rk = ẑ_r . ẑ_k`` in float64."""
    z = stack_views(views)
    z = z / z.norm(dim=1, keepdim=True)
    return z @ z.T


def row_groups(n: int, v: int, labels: Tensor | None) -> Tensor:
    """Group id of each of the ``V*N`` rows: the instance id ``r mod N``, or ``labels[r mod N]``."""
    instance = torch.arange(v * n) % n
    if labels is None:
        return instance
    return labels.to(torch.int64)[instance]


def positive_mask(n: int, v: int, labels: Tensor | None = None) -> Tensor:
    """``P[r, k]`` = True when row ``k != r`` is a positive of anchor ``r`` (same instance or
    label)."""
    g = row_groups(n, v, labels)
    same = g[:, None] == g[None, :]
    return same & ~torch.eye(v * n, dtype=torch.bool)


def not_self_mask(n: int, v: int) -> Tensor:
    """``K[r, k]`` = True for every ``k != r`` (the denominator of NT-Xent / SupCon)."""
    return ~torch.eye(v * n, dtype=torch.bool)


def masked_log_softmax(logits: Tensor, keep: Tensor) -> Tensor:
    """Row-wise ``log_softmax`` over the entries marked in ``keep`` (the others set to ``-inf``)."""
    return torch.log_softmax(logits.masked_fill(~keep, float("-inf")), dim=1)


def to_anchor_grid(terms: Tensor, n: int, v: int) -> Tensor:
    """View-major ``(V*N,)`` per-row terms -> ``(N, V)`` (entry ``[i, k]`` is view ``k`` of
    instance ``i``)."""
    out = torch.stack([terms[k * n : (k + 1) * n] for k in range(v)], dim=1)
    return out


def reduce_ref(terms: Tensor, reduction: str, valid: Tensor | None = None) -> Tensor:
    """``"none"`` -> ``terms``; ``"sum"`` -> sum; ``"mean"`` -> mean over all (or only ``valid``)
    entries.

    With ``valid`` and no valid entry the mean is defined as 0 (nothing to average; no NaN in
    training).
    """
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        if valid is None:
            return terms.mean()
        count = int(valid.sum())
        if count == 0:
            return terms.sum() * 0.0
        return terms[valid].sum() / count
    raise ValueError(f"unknown reduction {reduction!r}")


# --------------------------------------------------------------------------------------------------
# NT-Xent / InfoNCE (docs/methods.md section 2.1)
# --------------------------------------------------------------------------------------------------


def ntxent_terms_ref(views: Tensor, labels: Tensor | None, t: float) -> tuple[Tensor, Tensor]:
    """Per-row NT-Xent terms ``-(1/|P(r)|) sum_{p in P(r)} log softmax_{k != r}(s_rk / t)[p]``
    (V*N,).

    Returns ``(terms, n_positives)``; rows without positives get the term 0.
    """
    n, v, _ = views.shape
    s = similarity(views)
    logp = masked_log_softmax(s / t, not_self_mask(n, v))
    pos = positive_mask(n, v, labels)
    count = pos.sum(dim=1)
    # sum over the positives only (where() keeps the -inf self entry out of the sum and out of
    # the gradient)
    pos_logp = torch.where(pos, logp, torch.zeros_like(logp)).sum(dim=1)
    terms = torch.where(count > 0, -pos_logp / count.clamp(min=1), torch.zeros_like(pos_logp))
    return terms, count


def ntxent_ref(
    views: Tensor, labels: Tensor | None = None, t: float = 0.5, reduction: str = "mean"
) -> Tensor:
    """NT-Xent / multi-positive InfoNCE (docs/methods.md section 2.1): mean over all V*N anchors of
    ``-(1/|P(r)|) sum_p log( exp(s_rp/t) / sum_{k != r} exp(s_rk/t) )``.

    For V = 2 and no labels this is SimCLR's ``(1/2N) sum_i l_i``; for V > 2 it is
    ``-(1/(V N (V-1))) sum_i sum_{p in P(i)} log softmax(...)[p]`` (MV-CL NTXent(mv=True)).
    """
    n, v, _ = views.shape
    terms, _ = ntxent_terms_ref(views, labels, t)
    return reduce_ref(to_anchor_grid(terms, n, v), reduction)


# --------------------------------------------------------------------------------------------------
# SupCon L_out / L_in (docs/methods.md section 2.3(a))
# --------------------------------------------------------------------------------------------------


def supcon_ref(
    views: Tensor,
    labels: Tensor,
    t: float = 0.07,
    base_t: float = 0.07,
    variant: str = "out",
    anchors_without_positives: str = "zero",
    reduction: str = "mean",
) -> Tensor:
    """SupCon (docs/methods.md section 2.3(a)).

    L_out: ``l_i = -(t/b) (1/|P(i)|) sum_{p in P(i)} log(e^{s_ip/t} / sum_{k != i} e^{s_ik/t})``,
    L_in:  ``l_i = -(t/b) log((1/|P(i)|) sum_{p in P(i)} e^{s_ip/t} / sum_{k != i} e^{s_ik/t})``,
    with ``b = base_t``. Anchors with ``|P(i)| = 0``: ``"zero"`` -> term 0, counted in the mean
    (SupContrast's clamp of |P| to 1); ``"drop"`` -> term 0, left out of the mean (Core-tuning).
    """
    n, v, _ = views.shape
    s = similarity(views)
    logp = masked_log_softmax(s / t, not_self_mask(n, v))
    pos = positive_mask(n, v, labels)
    count = pos.sum(dim=1)
    has_pos = count > 0
    if variant == "out":
        inner = torch.where(pos, logp, torch.zeros_like(logp)).sum(dim=1) / count.clamp(min=1)
    elif variant == "in":
        # log of the mean positive probability: logsumexp over positives of logp, minus log |P|
        masked = torch.where(pos, logp, torch.full_like(logp, float("-inf")))
        # rows without positives: any finite row (their term is replaced by 0 below), so that the
        # backward of logsumexp sees no all -inf row (which would give NaN * 0 gradients)
        masked = torch.where(has_pos[:, None], masked, torch.zeros_like(masked))
        lse = torch.logsumexp(masked, dim=1)
        inner = torch.where(has_pos, lse, torch.zeros_like(lse)) - torch.log(
            count.clamp(min=1).to(torch.float64)
        )
    else:
        raise ValueError(variant)
    terms = torch.where(has_pos, -(t / base_t) * inner, torch.zeros_like(inner))
    grid = to_anchor_grid(terms, n, v)
    valid = to_anchor_grid(has_pos, n, v) if anchors_without_positives == "drop" else None
    return reduce_ref(grid, reduction, valid)


# --------------------------------------------------------------------------------------------------
# DCL / DCLW (docs/methods.md section 2.5)
# --------------------------------------------------------------------------------------------------


def dcl_negative_lse_ref(views: Tensor, t: float, labels: Tensor | None = None) -> Tensor:
    """Per-row ``log sum_{k in N(r)} exp(s_rk / t)`` over the negatives (rows outside the anchor's
    instance / label group; self and positives excluded), as a view-major ``(V*N,)`` vector."""
    n, v, _ = views.shape
    s = similarity(views)
    g = row_groups(n, v, labels)
    neg = g[:, None] != g[None, :]
    return torch.logsumexp((s / t).masked_fill(~neg, float("-inf")), dim=1)


def dcl_ref(
    views: Tensor, t: float = 0.1, labels: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """DCL (docs/methods.md section 2.5):
    ``l_i^(1) = -s(z_i^1, z_i^2)/t + log sum_{l in {1,2}} sum_{j != i} exp(s(z_i^1, z_j^l)/t)``,
    ``L = (mean_i l^(1) + mean_i l^(2)) / 2``.

    Generalised the natural way for V > 2 / labels: the positive term is the mean of ``s_rp / t``
    over the positives ``P(r)`` (other views / same label) and the denominator runs over the
    negatives only. The loss is the mean over all V*N anchors (= the symmetric mean for V = 2).
    """
    n, v, _ = views.shape
    s = similarity(views)
    pos = positive_mask(n, v, labels)
    count = pos.sum(dim=1)
    pos_mean = torch.where(pos, s / t, torch.zeros_like(s)).sum(dim=1) / count.clamp(min=1)
    lse_neg = dcl_negative_lse_ref(views, t, labels)
    terms = torch.where(count > 0, lse_neg - pos_mean, torch.zeros_like(lse_neg))
    return reduce_ref(to_anchor_grid(terms, n, v), reduction)


def dclw_ref(
    views: Tensor,
    t: float = 0.1,
    sigma: float = 0.5,
    detach_weights: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """DCLW (docs/methods.md section 2.5): DCL with the positive term multiplied by
    ``w_i = 2 - exp(s_i/sigma) / mean_j exp(s_j/sigma)``, ``s_i = s(z_i^1, z_i^2)``.

    For V > 2 every ordered view pair ``(a, b)`` gets its weights over the batch from
    ``s_i^{ab} = s(z_i^a, z_i^b)``, and the positive term of anchor ``(i, a)`` is the mean over
    ``b != a`` of ``w_i^{ab} s_i^{ab} / t``.
    """
    n, v, _ = views.shape
    s = similarity(views)
    lse_neg = dcl_negative_lse_ref(views, t)
    pos_terms = torch.zeros(v * n, dtype=torch.float64)
    for a in range(v):
        acc = torch.zeros(n, dtype=torch.float64)
        for b in range(v):
            if a == b:
                continue
            s_ab = torch.stack([s[a * n + i, b * n + i] for i in range(n)])
            e = torch.exp(s_ab / sigma)
            w = 2.0 - e / e.mean()
            if detach_weights:
                w = w.detach()
            acc = acc + w * s_ab / t
        pos_terms = pos_terms + F.pad(acc / (v - 1), (a * n, (v - 1 - a) * n))
    terms = lse_neg - pos_terms
    return reduce_ref(to_anchor_grid(terms, n, v), reduction)


# --------------------------------------------------------------------------------------------------
# CLIP (docs/methods.md section 2.4)
# --------------------------------------------------------------------------------------------------


def smoothed_ce(logits: Tensor, eps: float) -> Tensor:
    """Per-row cross-entropy with the diagonal as target, smoothed like
    ``torch.nn.CrossEntropyLoss``: target ``q = (1 - eps) onehot + eps / n``;
    ``ce_i = -sum_k q_ik log_softmax(logits)_ik``."""
    n = logits.shape[0]
    eye = torch.eye(n, dtype=torch.float64)
    q = torch.full((n, n), eps / n, dtype=torch.float64) + (1.0 - eps) * eye
    return -(q * torch.log_softmax(logits, dim=1)).sum(dim=1)


def clip_ref(
    img: Tensor,
    txt: Tensor,
    logit_scale: float | Tensor = 1.0 / 0.07,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """CLIP (docs/methods.md section 2.4): ``L = (CE(sigma I T^T, diag) + CE(sigma T I^T, diag)) / 2`` with I, T
    L2-normalised.

    ``logit_scale`` here is the *multiplicative* scale ``sigma = exp(theta)`` (already
    exponentiated and clamped), a float or a 0-d float64 tensor (for gradients w.r.t. it).
    ``"none"`` gives ``(N,)``: the mean of the two directions per pair.
    """
    i = img.to(torch.float64)
    x = txt.to(torch.float64)
    i = i / i.norm(dim=1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True)
    sigma = logit_scale.to(torch.float64) if isinstance(logit_scale, Tensor) else float(logit_scale)
    logits = sigma * (i @ x.T)
    terms = 0.5 * (smoothed_ce(logits, label_smoothing) + smoothed_ce(logits.T, label_smoothing))
    return reduce_ref(terms, reduction)
