"""Supervised contrastive loss (SupCon) and the variants the papers need: L_out / L_in, focal
weights (Core-tuning), soft targets (SPACE-2), anchor-restricted (COCONUT) and multi-level group ids
(COMET)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from contrastkit._validation import (
    check_choice,
    check_chunk_size,
    check_finite,
    check_labels,
    check_positive,
    check_reduction,
    check_tensor,
)
from contrastkit.losses._common import (
    ViewBatch,
    group_positive_mean,
    make_view_batch,
    nonnegative,
    reduce_terms,
)
from contrastkit.losses._engine import (
    GroupMode,
    auto_chunk_size,
    checkpointed_row_blocks,
    masked_logsumexp,
    self_logsumexp,
)

__all__ = ["FocalSupCon", "MultiLevelSupCon", "SupCon"]

NORMALIZE_MODES = ("positives", "row_length", "candidates")


def _check_anchor_mask(anchor_mask: object, n: int) -> Tensor:
    t = check_tensor(anchor_mask, "anchor_mask")
    if t.dtype != torch.bool:
        raise TypeError(f"anchor_mask must be a bool tensor, got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(
            f"anchor_mask must have shape ({n},), one flag per instance; got shape {tuple(t.shape)}"
        )
    return t


def _check_target(target: object, n: int, v: int) -> Tensor:
    t = check_tensor(target, "target_matrix")
    if not t.is_floating_point():
        raise TypeError(f"target_matrix must be a floating-point tensor, got dtype {t.dtype}")
    if t.shape not in ((n, n), (v * n, v * n)):
        raise ValueError(
            f"target_matrix must have shape ({n}, {n}) (per instance) or ({v * n}, {v * n}) (per "
            f"view-major row); got shape {tuple(t.shape)}"
        )
    check_finite(t, "target_matrix")
    if bool((t < 0).any()):
        raise ValueError(f"target_matrix must be non-negative; got minimum {float(t.min())}")
    return t


def soft_target_logits(rows: Tensor, target: Tensor, n: int, v: int) -> tuple[Tensor, Tensor]:
    """Target-weighted positive similarity of every view-major row, and its target mass.

    Returns ``(num, mass)`` with ``num_r = sum_{k != r} R_rk s_rk`` and
    ``mass_r = sum_{k != r} R_rk`` over the ``V*N`` rows, where ``R`` is ``target`` itself when it
    is ``(V*N, V*N)``, or the per-instance ``(N, N)`` target expanded to every view pair,
    ``R[(v,i),(w,j)] = r_ij`` (so ``r_ii`` weighs the other views of instance ``i``). Never builds
    ``R`` or an N x N similarity: ``R Z`` is one product with the target, which the caller already
    holds.
    """
    r = target.detach().to(device=rows.device, dtype=rows.dtype)
    if r.shape[0] == n:
        z = rows.reshape(v, n, -1)
        rz = r @ z.sum(dim=0)  # (N, D): sum_j r_ij sum_w z_wj
        diag = torch.diagonal(r)
        num = (z * rz[None]).sum(-1) - diag[None] * (z * z).sum(-1)  # (V, N)
        mass = (v * r.sum(dim=1) - diag).repeat(v)
        return num.reshape(-1), mass
    diag = torch.diagonal(r)
    num = (rows * (r @ rows)).sum(-1) - diag * (rows * rows).sum(-1)
    return num, r.sum(dim=1) - diag


def _focal_block(
    start: int, stop: int, rows: Tensor, groups: Tensor, anchors: Tensor, beta: float
) -> Tensor:
    """``sum_{p in P(i)} (1 - P_ip) log P_ip`` for the anchor rows ``anchors[start:stop]`` against
    every row."""
    idx = anchors[start:stop]
    logits = (rows[idx] @ rows.T) * beta
    cols = torch.arange(rows.shape[0], device=rows.device)
    is_self = cols[None, :] == idx[:, None]
    logp = torch.log_softmax(logits.masked_fill(is_self, float("-inf")), dim=1)
    pos = (groups[idx][:, None] == groups[None, :]) & ~is_self
    # zero outside the positives before anything else, so no -inf (self) enters a product
    safe = torch.where(pos, logp, torch.zeros_like(logp))
    return ((1.0 - safe.exp()) * safe).sum(dim=1)


class SupCon(nn.Module):
    r"""Supervised contrastive loss: positives are all other rows with the same label.

    With the V*N rows L2-normalised, ``P(i)`` the other rows of anchor ``i``'s label, and ``A(i)``
    every row but ``i``, ``P_ik = softmax_{k in A(i)}(s_ik / tau)``:

    .. math::
        L_{out}: \ell_i = -\frac{\tau}{\tau_b} \frac{1}{|P(i)|} \sum_{p \in P(i)} \log P_{ip}

        L_{in}: \ell_i = -\frac{\tau}{\tau_b}
            \log \frac{1}{|P(i)|}\sum_{p \in P(i)} P_{ip}

        \text{focal}: \ell_i = -\frac{\tau}{\tau_b} \frac{1}{R_i} \sum_{p \in P(i)} (1 - P_{ip})
        \log P_{ip}

    Paper: Khosla et al., "Supervised Contrastive Learning" (2020);
    ``temperature = base_temperature = 0.07`` from the reference code (HobbitLong/SupContrast).
    L_out is the default (the paper's better variant).

    Anchors without a positive (possible with one view) contribute 0 and count in the mean
    (``anchors_without_positives="zero"``, SupContrast), or are left out of the mean (``"drop"``,
    Core-tuning's normalisation: sum over anchors / number of anchors with a positive).

    Variants (``docs/methods.md``, section 2.3):

    - ``focal=True`` (b; Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual
      Models via Contrast-Regularized Fine-Tuning", 2021): each positive log-probability is weighted
      by ``1 - P_ip`` (not detached). See :class:`FocalSupCon`, which takes Core-tuning's defaults.
      The weight is not a log-sum-exp, so this path is not expressed over the engine: it is a dense
      computation over row blocks of ``chunk_size`` anchors, each block recomputed in the backward
      pass (activation checkpointing), so memory stays O(chunk_size * V N), not O((V N)^2).
    - ``normalize`` (L_out and focal): the divisor ``R_i`` of the positive sum: ``"positives"``
      ``|P(i)|`` (SupCon), ``"row_length"`` the whole row, ``V N`` (Core-tuning's ``.mean(1)`` over
      a row whose self entry is zero), or ``"candidates"`` ``V N - 1`` (the number of ``k != i``).
    - ``target_matrix=`` (d; SPACE-2, He et al., "SPACE-2: Tree-Structured Semi-Supervised
      Contrastive Pre-training for Task-Oriented Dialog Understanding", 2022): soft relevances
      ``r_ik >= 0`` replace the labels, :math:`\ell_i = -\frac{\tau}{\tau_b}\sum_{j\neq i}
      \frac{r_{ij}}{\sum_{k\neq i} r_{ik}} \log P_{ij}`
      (over the engine: ``lse_i`` minus one product with the target). Accepted as ``(V N, V N)``
      over the view-major rows (row ``v N + i`` is view ``v`` of instance ``i``; diagonal ignored)
      or per instance ``(N, N)``, expanded to every pair of views (``r_ii`` then weighs the other
      views of instance ``i``). The target is detached. Rows with zero target mass have no positive.
      Only with L_out, ``normalize="positives"`` and ``focal=False``.
    - ``anchor_mask=`` (c; COCONUT, rehearsal-buffer anchors): ``(N,)`` bool; only the rows of the
      marked instances are anchors, every row stays a candidate. ``"none"`` gives 0 for the other
      rows; ``"mean"`` averages over the anchors only (0 when there is none).

    Args:
        temperature: divides the similarities (> 0).
        base_temperature: the loss is scaled by ``temperature / base_temperature``.
        variant: ``"out"`` (default) or ``"in"``.
        anchors_without_positives: ``"zero"`` or ``"drop"``.
        focal: weight each positive log-probability by ``1 - P_ip`` (L_out only).
        normalize: ``"positives"`` (default) | ``"row_length"`` | ``"candidates"`` (L_out only).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N, V)`` per-anchor terms).
        chunk_size: anchors per block (None: automatic).

    Shape:
        views ``(N, V, D)`` with V >= 1; labels ``(N,)`` integers (required unless
        ``target_matrix`` is given); target_matrix ``(N, N)`` or ``(V N, V N)``; anchor_mask
            ``(N,)`` bool.

    Example:
        >>> import torch
        >>> from contrastkit.losses import SupCon
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16, requires_grad=True)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = SupCon(temperature=0.1)(views, labels)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
        >>> loss.backward()
        >>> SupCon(reduction="none")(views, labels).shape
        torch.Size([8, 2])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        variant: str = "out",
        anchors_without_positives: str = "zero",
        focal: bool = False,
        normalize: str = "positives",
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.base_temperature = check_positive(base_temperature, "base_temperature")
        self.variant = check_choice(variant, "variant", ("out", "in"))
        self.anchors_without_positives = check_choice(
            anchors_without_positives, "anchors_without_positives", ("zero", "drop")
        )
        if not isinstance(focal, bool):
            raise TypeError(f"focal must be a bool, got {type(focal).__name__}")
        self.focal = focal
        self.normalize = check_choice(normalize, "normalize", NORMALIZE_MODES)
        if variant == "in" and (focal or normalize != "positives"):
            raise ValueError(
                "variant='in' takes the log of the mean positive probability: it has no focal "
                f"weights and no normalize option; got focal={focal}, normalize={normalize!r}"
            )
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(
        self,
        views: Tensor,
        labels: Tensor | None = None,
        *,
        target_matrix: Tensor | None = None,
        anchor_mask: Tensor | None = None,
    ) -> Tensor:
        if labels is None and target_matrix is None:
            raise ValueError(
                f"{type(self).__name__} needs labels of shape (N,) or a target_matrix; got None "
                "(use InfoNCE without labels)"
            )
        if target_matrix is not None:
            if labels is not None:
                raise ValueError("pass either labels or target_matrix, not both")
            if self.variant != "out" or self.focal or self.normalize != "positives":
                raise ValueError(
                    "target_matrix works with variant='out', focal=False, normalize='positives'; "
                    f"got variant={self.variant!r}, focal={self.focal}, "
                    f"normalize={self.normalize!r}"
                )
            batch = make_view_batch(views, None, min_views=1)
            target = _check_target(target_matrix, batch.n, batch.v)
        else:
            batch = make_view_batch(views, labels)
            target = None
        return self._loss(batch, target, anchor_mask)

    # -- internals -----------------------------------------------------------------------------

    def _loss(
        self,
        batch: ViewBatch,
        target: Tensor | None,
        anchor_mask: Tensor | None,
        cache: dict[str, Tensor] | None = None,
    ) -> Tensor:
        is_anchor = None
        sel = None
        if anchor_mask is not None:
            mask = _check_anchor_mask(anchor_mask, batch.n).to(batch.rows.device)
            is_anchor = mask.repeat(batch.v)
            sel = torch.nonzero(is_anchor).flatten()
        terms, has_pos = self._terms(batch, target, sel, cache)
        terms = terms * (self.temperature / self.base_temperature)
        valid = has_pos if self.anchors_without_positives == "drop" else None
        if is_anchor is not None:
            valid = is_anchor if valid is None else valid & is_anchor
        return reduce_terms(
            batch.per_anchor(terms),
            self.reduction,
            valid=None if valid is None else batch.per_anchor(valid),
        )

    def _lse(
        self,
        rows: Tensor,
        beta: float,
        sel: Tensor | None,
        groups: Tensor | None = None,
        only_group: bool = False,
    ) -> Tensor:
        """Masked log-sum-exp of the anchor rows (all rows, or ``sel``) over every other row."""
        mode: GroupMode | None = "only" if only_group else None
        if sel is None:
            return self_logsumexp(
                rows, beta, groups=groups, group_mode=mode, chunk_size=self.chunk_size
            )
        return masked_logsumexp(
            rows[sel] * beta,
            rows,
            self_index=sel,
            anchor_groups=None if groups is None else groups[sel],
            candidate_groups=groups,
            group_mode=mode,
            chunk_size=self.chunk_size,
        )

    def _divisor(self, counts: Tensor, n_rows: int) -> Tensor:
        if self.normalize == "positives":
            return counts.clamp(min=1)
        if self.normalize == "row_length":
            return torch.full_like(counts, n_rows)
        return torch.full_like(counts, max(n_rows - 1, 1))

    def _terms(
        self,
        batch: ViewBatch,
        target: Tensor | None,
        sel: Tensor | None,
        cache: dict[str, Tensor] | None,
    ) -> tuple[Tensor, Tensor]:
        """Unscaled per-row terms ``(V*N,)`` (0 outside the anchors) and the has-positive flags."""
        rows = batch.rows
        n_rows = rows.shape[0]
        beta = 1.0 / self.temperature
        if target is not None:
            num, mass = soft_target_logits(rows, target, batch.n, batch.v)
            has_pos = mass > 0
            pos_term = beta * num / torch.where(has_pos, mass, torch.ones_like(mass))
        else:
            pos_mean, counts = group_positive_mean(rows * beta, rows, batch.groups)
            has_pos = counts > 0

        def pick(x: Tensor) -> Tensor:
            return x if sel is None else x[sel]

        def lse_all() -> Tensor:
            if cache is None:
                return self._lse(rows, beta, sel)
            if "lse_all" not in cache:
                cache["lse_all"] = self._lse(rows, beta, sel)
            return cache["lse_all"]

        if target is not None:
            sub = lse_all() - pick(pos_term)
        elif self.focal:
            sub = self._focal_terms(rows, batch.groups, sel, beta)
            sub = sub / pick(self._divisor(counts, n_rows)).to(sub.dtype)
        elif self.variant == "out":
            sub = lse_all() - pick(pos_mean)
            if self.normalize != "positives":
                c = pick(counts)
                sub = sub * (c.to(sub.dtype) / pick(self._divisor(counts, n_rows)).to(sub.dtype))
        else:
            lse_pos = self._lse(rows, beta, sel, batch.groups, only_group=True)
            log_count = torch.log(pick(counts).clamp(min=1).to(lse_pos.dtype))
            sub = lse_all() - lse_pos + log_count
        hp = pick(has_pos)
        # Every variant is >= 0 exactly: L_out and soft targets are lse_i minus a convex combination
        # of logits it sums over, L_in is -log of a mean of probabilities, focal a sum of
        # -(1 - P) log P; nonnegative() removes the float rounding below 0.
        sub = torch.where(hp, nonnegative(sub), torch.zeros_like(sub))
        if sel is None:
            return sub, has_pos
        full = torch.zeros(n_rows, dtype=sub.dtype, device=sub.device).index_copy(0, sel, sub)
        return full, has_pos

    def _focal_terms(self, rows: Tensor, groups: Tensor, sel: Tensor | None, beta: float) -> Tensor:
        """``-sum_{p} (1 - P_ip) log P_ip`` per anchor, dense over checkpointed row blocks."""
        n_rows = rows.shape[0]
        idx_all = torch.arange(n_rows, device=rows.device) if sel is None else sel
        if n_rows < 2:  # a single row: no candidate, no positive (term 0, kept in the graph)
            return rows[idx_all, 0] * 0.0
        n_anchors = idx_all.shape[0]
        if n_anchors == 0:
            return rows.new_zeros(0)
        chunk = self.chunk_size or auto_chunk_size(n_anchors, n_rows)
        return -checkpointed_row_blocks(_focal_block, n_anchors, chunk, rows, groups, idx_all, beta)

    def extra_repr(self) -> str:
        s = (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"variant={self.variant!r}, reduction={self.reduction!r}"
        )
        if self.focal:
            s += ", focal=True"
        if self.normalize != "positives":
            s += f", normalize={self.normalize!r}"
        return s


class FocalSupCon(SupCon):
    r"""Focal SupCon of Core-tuning: each positive log-probability weighted by ``1 - P_ip``.

    .. math::
        \ell_i = -\frac{\tau}{\tau_b}\frac{1}{R_i}\sum_{p \in P(i)} (1 - P_{ip}) \log P_{ip},
        \qquad P_{ik} = \mathrm{softmax}_{k \neq i}(s_{ik}/\tau)_k,
        \qquad L = \frac{\sum_i \ell_i}{\#\{i : |P(i)| > 0\}}

    The weight ``1 - P_ip`` is not detached (as in the reference). Defaults follow the reference
    code (Vanint/Core-tuning ``focal_SupConLoss``; ``docs/methods.md``, sections 2.3(b) and 3.5
    step 6):
    ``temperature = base_temperature = 0.07``; ``normalize="row_length"``, i.e. ``R_i = V N``, the
    reference's ``.mean(1)`` over the whole row (whose self entry is zero), not ``|P(i)|``; and
    ``anchors_without_positives="drop"``, the sum over anchors divided by the number of anchors with
    at least one positive. ``normalize="candidates"`` divides by ``V N - 1`` instead.

    The focal weight is not a log-sum-exp, so this loss does not run on the engine: it is computed
    densely over checkpointed row blocks of ``chunk_size`` anchors (memory O(chunk_size * V N)).

    Paper: Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual Models via
    Contrast-Regularized Fine-Tuning" (NeurIPS 2021). Accepts ``anchor_mask=`` like :class:`SupCon`.

    Example:
        >>> import torch
        >>> from contrastkit.losses import FocalSupCon
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16)
        >>> loss = FocalSupCon()(views, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        normalize: str = "row_length",
        anchors_without_positives: str = "drop",
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            temperature=temperature,
            base_temperature=base_temperature,
            anchors_without_positives=anchors_without_positives,
            focal=True,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
        )


class MultiLevelSupCon(nn.Module):
    r"""SupCon over several levels of group ids, weighted: :math:`L = \sum_l \lambda_l
    L_{SupCon}(g_l)`.

    ``labels`` is ``(N, L)``: column ``l`` holds each instance's group id at level ``l`` (COMET:
    observation / sample / trial / patient). Each level is a :class:`SupCon` with the same settings,
    reduced on its own (so ``"drop"`` counts each level's anchors), then weighted and summed;
    ``"none"`` sums the weighted ``(N, V)`` grids. For L_out without focal weights the denominators
    do not depend on the labels and are computed once for all levels.

    Paper: Wang et al., "Contrast Everything: A Hierarchical Contrastive Framework for Medical
    Time-Series" (COMET, 2023). The level weights used there are unverified (``docs/methods.md``,
    section 2.3(e)), so
    ``level_weights`` has no default.

    Args:
        level_weights: one non-negative weight per level (at least one > 0); levels weighted 0 are
            skipped.
        temperature, base_temperature, variant, anchors_without_positives, focal, normalize,
        reduction, chunk_size: as :class:`SupCon`.

    Shape:
        views ``(N, V, D)``; labels ``(N, L)`` integers; anchor_mask ``(N,)`` bool (optional).

    Example:
        >>> import torch
        >>> from contrastkit.losses import MultiLevelSupCon
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16)
        >>> levels = torch.tensor([[0, 0], [0, 0], [1, 0], [1, 0], [2, 1], [2, 1], [3, 1], [3, 1]])
        >>> loss = MultiLevelSupCon(level_weights=(1.0, 0.5))(views, levels)  # (N, L) group ids
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        level_weights: Sequence[float],
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        variant: str = "out",
        anchors_without_positives: str = "zero",
        focal: bool = False,
        normalize: str = "positives",
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(level_weights, str) or not isinstance(level_weights, Sequence):
            raise TypeError(
                f"level_weights must be a sequence of numbers, got {type(level_weights).__name__}"
            )
        if len(level_weights) == 0:
            raise ValueError("level_weights must hold at least one weight; got an empty sequence")
        weights = tuple(
            check_positive(w, f"level_weights[{i}]", allow_zero=True)
            for i, w in enumerate(level_weights)
        )
        if not any(w > 0 for w in weights):
            raise ValueError(f"level_weights needs at least one weight > 0; got {weights}")
        self.level_weights = weights
        self.level_loss = SupCon(
            temperature=temperature,
            base_temperature=base_temperature,
            variant=variant,
            anchors_without_positives=anchors_without_positives,
            focal=focal,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
        )

    def forward(
        self, views: Tensor, labels: Tensor, *, anchor_mask: Tensor | None = None
    ) -> Tensor:
        n_levels = len(self.level_weights)
        lab = check_tensor(labels, "labels")
        if lab.dim() != 2 or lab.shape[1] != n_levels:
            raise ValueError(
                f"labels must have shape (N, {n_levels}), one group id per level; got shape "
                f"{tuple(lab.shape)}"
            )
        base = make_view_batch(views, lab[:, 0])
        cache: dict[str, Tensor] = {}
        share = self.level_loss.variant == "out" and not self.level_loss.focal
        total: Tensor | None = None
        for level, weight in enumerate(self.level_weights):
            if weight == 0:
                continue
            col = check_labels(lab[:, level], base.n, f"labels[:, {level}]").to(base.rows.device)
            groups = torch.unique(col, return_inverse=True)[1].repeat(base.v)
            batch = ViewBatch(rows=base.rows, groups=groups, n=base.n, v=base.v)
            out = self.level_loss._loss(batch, None, anchor_mask, cache if share else None)
            total = weight * out if total is None else total + weight * out
        assert total is not None
        return total

    def extra_repr(self) -> str:
        return f"level_weights={self.level_weights}"
