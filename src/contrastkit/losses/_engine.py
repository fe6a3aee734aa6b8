"""The one place where similarities become per-anchor log-sum-exp terms.

Every loss of the InfoNCE family needs, for each anchor ``a_i``, a masked log-partition

    lse_i = log sum_{k in K(i)} exp(a_i . c_k)

over a set of candidates ``c_k`` (the anchors already carry the inverse temperature, so the temperature is
applied on the (N x D) side, never on an N x N matrix). ``K(i)`` is every candidate except the anchor's own
row (``self_index``) and, optionally, except (``group_mode="exclude"``) or only (``group_mode="only"``) the
candidates whose group id equals the anchor's (an instance id or a class label).

The computation runs over row blocks of ``chunk_size`` anchors: each block's similarities are computed,
masked by index arithmetic, reduced with a log-sum-exp in float32, and dropped. A custom autograd function
recomputes the blocks in the backward pass instead of storing them, so peak memory grows with
``chunk_size * n_candidates`` and not with ``n_anchors * n_candidates``, while values and gradients equal the
dense computation up to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from contrastkit._validation import check_chunk_size

__all__ = [
    "GroupMode",
    "auto_chunk_size",
    "auto_square_chunk",
    "checkpointed_row_blocks",
    "masked_logsumexp",
    "masked_softmax_stats",
    "row_blocks",
    "self_logsumexp",
    "two_sided_logsumexp",
]

GroupMode = Literal["exclude", "only"]

# Target number of similarity entries per block: about 16 MiB of float32, large enough for efficient
# matrix products, small enough to keep a block and its temporaries in the last-level cache of a CPU.
_TARGET_BLOCK_ELEMENTS = 1 << 22
_MIN_CHUNK = 32


# On a GPU, larger blocks amortise kernel launches; 64M float32 entries are 256 MiB.
_TARGET_BLOCK_ELEMENTS_CUDA = 1 << 26


def auto_chunk_size(n_anchors: int, n_candidates: int, device: torch.device | None = None) -> int:
    """Pick a row-block size so that one block holds about 4M similarity entries (64M on CUDA)."""
    target = (
        _TARGET_BLOCK_ELEMENTS_CUDA
        if device is not None and device.type == "cuda"
        else _TARGET_BLOCK_ELEMENTS
    )
    rows = max(_MIN_CHUNK, target // max(n_candidates, 1))
    return int(min(rows, max(n_anchors, 1)))


@dataclass(frozen=True)
class _Mask:
    """Which candidates each anchor may see; all tensors live on the anchors' device."""

    self_index: Tensor | None
    anchor_groups: Tensor | None
    candidate_groups: Tensor | None
    group_mode: GroupMode | None

    def block_logits(self, anchors: Tensor, candidates: Tensor, start: int, stop: int) -> Tensor:
        """Masked float32 logits of anchors ``start:stop`` against every candidate."""
        logits = anchors[start:stop] @ candidates.T
        if logits.dtype != torch.float32 and logits.dtype != torch.float64:
            logits = logits.float()
        if self.self_index is not None:
            idx = self.self_index[start:stop]
            rows = torch.arange(stop - start, device=logits.device)
            has_self = idx >= 0
            logits[rows[has_self], idx[has_self]] = float("-inf")
        if self.group_mode is not None:
            assert self.anchor_groups is not None and self.candidate_groups is not None
            same = self.anchor_groups[start:stop, None] == self.candidate_groups[None, :]
            if self.group_mode == "exclude":
                logits.masked_fill_(same, float("-inf"))
            else:
                logits.masked_fill_(~same, float("-inf"))
        return logits


class _BlockwiseLogSumExp(torch.autograd.Function):
    """lse_i = log sum_k exp(a_i . c_k) over the unmasked candidates, computed in row blocks."""

    @staticmethod
    def forward(
        ctx: Any, anchors: Tensor, candidates: Tensor, mask: _Mask, chunk_size: int
    ) -> Tensor:
        n = anchors.shape[0]
        acc_dtype = torch.float64 if anchors.dtype == torch.float64 else torch.float32
        lse = torch.empty(n, dtype=acc_dtype, device=anchors.device)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            lse[start:stop] = torch.logsumexp(
                mask.block_logits(anchors, candidates, start, stop), dim=1
            )
        ctx.save_for_backward(anchors, candidates, lse)
        ctx.mask = mask
        ctx.chunk_size = chunk_size
        return lse

    @staticmethod
    def backward(ctx: Any, grad_lse: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        anchors, candidates, lse = ctx.saved_tensors
        mask: _Mask = ctx.mask
        chunk_size: int = ctx.chunk_size
        need_a, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dtype = anchors.dtype
        # Rows whose candidate set is empty have lse = -inf and contribute nothing.
        finite = torch.isfinite(lse)
        lse_safe = torch.where(finite, lse, torch.zeros_like(lse))
        grad = torch.where(finite, grad_lse.to(lse.dtype), torch.zeros_like(lse))
        grad_a = torch.empty_like(anchors) if need_a else None
        grad_c = (
            torch.zeros(candidates.shape, dtype=lse.dtype, device=candidates.device)
            if need_c
            else None
        )
        n = anchors.shape[0]
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            g = grad[start:stop, None]
            # softmax weights p_ik = exp(logit_ik - lse_i), scaled by the incoming gradient
            probs = mask.block_logits(anchors, candidates, start, stop)
            probs.sub_(lse_safe[start:stop, None]).exp_().mul_(g)
            probs_c = probs.to(dtype)
            if grad_a is not None:
                grad_a[start:stop] = probs_c @ candidates
            if grad_c is not None:
                grad_c += (probs_c.T @ anchors[start:stop]).to(grad_c.dtype)
        return (
            grad_a,
            grad_c.to(candidates.dtype) if grad_c is not None else None,
            None,
            None,
        )


def masked_logsumexp(
    anchors: Tensor,
    candidates: Tensor,
    *,
    self_index: Tensor | None = None,
    anchor_groups: Tensor | None = None,
    candidate_groups: Tensor | None = None,
    group_mode: GroupMode | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Per-anchor masked log-sum-exp of ``anchors @ candidates.T``, blockwise and exact.

    Args:
        anchors: ``(n_a, D)`` anchor rows, already scaled by the inverse temperature.
        candidates: ``(n_c, D)`` candidate rows, same dtype and device.
        self_index: ``(n_a,)`` column of each anchor's own row among the candidates (excluded), or -1.
        anchor_groups: ``(n_a,)`` integer group id per anchor (instance id or label).
        candidate_groups: ``(n_c,)`` integer group id per candidate.
        group_mode: ``"exclude"`` drops candidates of the anchor's group, ``"only"`` keeps only those.
        chunk_size: anchors per block; ``None`` picks one from the problem size.

    Returns:
        ``(n_a,)`` float32 (float64 for float64 input) log-sum-exp values; ``-inf`` where no candidate
        is left.
    """
    if anchors.dim() != 2 or candidates.dim() != 2 or anchors.shape[1] != candidates.shape[1]:
        raise ValueError(
            "anchors and candidates must be (n_a, D) and (n_c, D) with the same D; got "
            f"{tuple(anchors.shape)} and {tuple(candidates.shape)}"
        )
    if anchors.dtype != candidates.dtype:
        raise TypeError(
            f"anchors and candidates differ in dtype: {anchors.dtype} vs {candidates.dtype}"
        )
    if group_mode is not None and (anchor_groups is None or candidate_groups is None):
        raise ValueError(f"group_mode={group_mode!r} needs both anchor_groups and candidate_groups")
    chunk = check_chunk_size(chunk_size) or auto_chunk_size(
        anchors.shape[0], candidates.shape[0], anchors.device
    )
    mask = _Mask(self_index, anchor_groups, candidate_groups, group_mode)
    out: Tensor = _BlockwiseLogSumExp.apply(anchors, candidates, mask, chunk)
    return out


@torch.no_grad()
def masked_softmax_stats(
    anchors: Tensor,
    candidates: Tensor,
    inv_temperature: Tensor,
    lse: Tensor,
    *,
    self_index: Tensor | None = None,
    anchor_groups: Tensor | None = None,
    candidate_groups: Tensor | None = None,
    group_mode: GroupMode | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Softmax-weighted mean similarity and largest similarity of each anchor, blockwise, no autograd.

    With the logits ``l_ik = beta_i s_ik`` of :func:`masked_logsumexp` (``anchors`` already scaled by
    ``beta_i = inv_temperature[i]``, the same masking arguments) and their log-partition ``lse``, the
    softmax weights are ``p_ik = exp(l_ik - lse_i)``; this returns ``sum_k p_ik s_ik`` and
    ``max_k s_ik`` over the unmasked candidates (``s_ik = l_ik / beta_i``). Peak memory is one
    ``chunk x n_candidates`` block (SogCLR / iSogCLR need these for their surrogate and temperature
    update).

    Returns:
        ``(mean (n_a,), max (n_a,))`` in the dtype of ``lse``.
    """
    n = anchors.shape[0]
    chunk = check_chunk_size(chunk_size) or auto_chunk_size(n, candidates.shape[0])
    mask = _Mask(self_index, anchor_groups, candidate_groups, group_mode)
    mean = torch.empty(n, dtype=lse.dtype, device=anchors.device)
    top = torch.empty(n, dtype=lse.dtype, device=anchors.device)
    for start, stop in row_blocks(n, chunk):
        logits = mask.block_logits(anchors, candidates, start, stop).to(lse.dtype)
        keep = torch.isfinite(logits)
        sims = torch.where(
            keep, logits / inv_temperature[start:stop, None], torch.zeros_like(logits)
        )
        probs = torch.exp(logits - lse[start:stop, None])
        mean[start:stop] = (probs * sims).sum(dim=1)
        top[start:stop] = torch.where(keep, sims, torch.full_like(sims, float("-inf"))).amax(dim=1)
    return mean, top


def row_blocks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: consecutive blocks of ``chunk_size`` rows covering ``range(n)``."""
    return [(i0, min(i0 + chunk_size, n)) for i0 in range(0, n, chunk_size)]


def checkpointed_row_blocks(
    block: Callable[..., Tensor],
    n: int,
    chunk_size: int,
    *args: Any,
    blocks: Sequence[tuple[int, int]] | None = None,
) -> Tensor:
    """``torch.cat([block(start, stop, *args) for (start, stop) in row_blocks(n, chunk_size)])``.

    For the blockwise computations that are not a log-sum-exp (focal SupCon, CACR's repulsion,
    SupReMix's weighted denominators, SCGC's target-weighted numerators): ``block`` computes the
    results of rows ``start:stop`` (typically from a ``chunk x n`` similarity block). When there is
    more than one block, autograd is recording and a tensor in ``args`` requires grad, each block runs
    under activation checkpointing (``torch.utils.checkpoint``, non-reentrant): its intermediates are
    dropped after the forward pass and recomputed in the backward pass, so peak memory grows with one
    block, not with all of them. Otherwise the blocks run plainly (one block is at most the
    ``chunk x n`` that the bound allows). Values and gradients are the same either way.

    Args:
        block: ``block(start, stop, *args) -> Tensor`` of leading size ``stop - start``; pass the
            tensors it reads through ``args``.
        n: number of rows.
        chunk_size: rows per block (>= 1).
        blocks: explicit ``(start, stop)`` ranges instead of ``row_blocks(n, chunk_size)`` (e.g. the
            stored entries of a sparse matrix, cut at row boundaries).

    Returns:
        The block results concatenated along dim 0 (an empty list of blocks, ``n = 0``, is an error
        of the caller).
    """
    if blocks is None:
        blocks = row_blocks(n, chunk_size)
    recompute = (
        len(blocks) > 1
        and torch.is_grad_enabled()
        and any(isinstance(a, Tensor) and a.requires_grad for a in args)
    )
    parts = []
    for start, stop in blocks:
        if recompute:
            out = checkpoint(block, start, stop, *args, use_reentrant=False)
            assert isinstance(out, Tensor)
        else:
            out = block(start, stop, *args)
        parts.append(out)
    return torch.cat(parts)


# --------------------------------------------------------------------------------------------------
# Symmetric case: the candidates are the anchors themselves.
#
# Losses such as NT-Xent, SupCon and DCL compare every row of Z with every other row. The cosine matrix
# S = Z Z^T is symmetric, so each off-diagonal block S_IJ serves the anchors of block I (as rows) and of
# block J (as columns): the forward pass computes half of the matrix products, and the backward pass
# computes, per block pair, the recomputed block and two products with M = Q_IJ + Q_JI^T, since the
# gradient of sum_i g_i lse_i with respect to Z is (Q + Q^T) Z for Q_ik = g_i beta_i p_ik.
# --------------------------------------------------------------------------------------------------

_TARGET_SQUARE_BLOCK = 1 << 20
_TARGET_SQUARE_BLOCK_CUDA = 1 << 26


def auto_square_chunk(n: int, device: torch.device | None = None) -> int:
    """Rows per block of the symmetric engine: about 1M entries per block (64M on CUDA)."""
    target = (
        _TARGET_SQUARE_BLOCK_CUDA
        if device is not None and device.type == "cuda"
        else _TARGET_SQUARE_BLOCK
    )
    side = int(target**0.5)
    return int(min(max(side, _MIN_CHUNK), max(n, 1)))


@dataclass(frozen=True)
class _SymmetricMask:
    exclude_self: bool
    groups: Tensor | None
    group_mode: GroupMode | None

    def apply(self, block: Tensor, i0: int, i1: int, j0: int, j1: int, fill: float) -> None:
        """Write ``fill`` into the excluded entries of block (rows i0:i1, columns j0:j1) in place."""
        if self.exclude_self and i0 == j0:
            block.fill_diagonal_(fill)
        if self.group_mode is not None:
            assert self.groups is not None
            same = self.groups[i0:i1, None] == self.groups[None, j0:j1]
            block.masked_fill_(same if self.group_mode == "exclude" else ~same, fill)


def _block_pairs(n: int, chunk: int) -> list[tuple[int, int, int, int]]:
    starts = list(range(0, n, chunk))
    return [
        (i0, min(i0 + chunk, n), j0, min(j0 + chunk, n))
        for bi, i0 in enumerate(starts)
        for j0 in starts[bi:]
    ]


def _online_update(max_: Tensor, acc: Tensor, logits: Tensor, dim: int) -> None:
    """Fold a block of logits into running (max, sum of exp) accumulators along ``dim``, in place."""
    block_max = logits.amax(dim=dim)
    new_max = torch.maximum(max_, block_max)
    safe = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
    shifted = logits.sub_(safe.unsqueeze(dim)).exp_()
    acc.mul_(torch.exp(max_ - safe)).add_(shifted.sum(dim=dim))
    max_.copy_(new_max)


def _scaled_logits(block: Tensor, beta: Tensor, dim: int) -> Tensor:
    """``beta_i * s_ik`` with ``beta`` along rows (dim=1 reductions) or columns (dim=0)."""
    return block * (beta[:, None] if dim == 1 else beta[None, :])


class _SymmetricLogSumExp(torch.autograd.Function):
    """lse_i = log sum_{k in K(i)} exp(beta_i z_i . z_k) over the rows of one matrix Z."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, beta: Tensor, mask: _SymmetricMask, chunk: int) -> Tensor:
        n = rows.shape[0]
        acc_dtype = torch.float64 if rows.dtype == torch.float64 else torch.float32
        max_ = torch.full((n,), float("-inf"), dtype=acc_dtype, device=rows.device)
        acc = torch.zeros(n, dtype=acc_dtype, device=rows.device)
        beta = beta.to(acc_dtype)
        for i0, i1, j0, j1 in _block_pairs(n, chunk):
            block = (rows[i0:i1] @ rows[j0:j1].T).to(acc_dtype)
            row_side = _scaled_logits(block, beta[i0:i1], 1)
            mask.apply(row_side, i0, i1, j0, j1, float("-inf"))
            _online_update(max_[i0:i1], acc[i0:i1], row_side, 1)
            if i0 != j0:
                col_side = _scaled_logits(block, beta[j0:j1], 0)
                mask.apply(col_side, i0, i1, j0, j1, float("-inf"))
                _online_update(max_[j0:j1], acc[j0:j1], col_side, 0)
        lse = max_ + torch.log(acc)
        ctx.save_for_backward(rows, beta, lse)
        ctx.mask = mask
        ctx.chunk = chunk
        return lse

    @staticmethod
    def backward(ctx: Any, grad_lse: Tensor) -> tuple[Tensor, None, None, None]:
        rows, beta, lse = ctx.saved_tensors
        mask: _SymmetricMask = ctx.mask
        finite = torch.isfinite(lse)
        lse_safe = torch.where(finite, lse, torch.zeros_like(lse))
        weight = torch.where(finite, grad_lse.to(lse.dtype) * beta, torch.zeros_like(lse))
        grad = torch.zeros(rows.shape, dtype=lse.dtype, device=rows.device)
        dtype = rows.dtype
        for i0, i1, j0, j1 in _block_pairs(rows.shape[0], ctx.chunk):
            block = (rows[i0:i1] @ rows[j0:j1].T).to(lse.dtype)
            q = _scaled_logits(block, beta[i0:i1], 1).sub_(lse_safe[i0:i1, None]).exp_()
            q.mul_(weight[i0:i1, None])
            if i0 == j0:
                mask.apply(q, i0, i1, j0, j1, 0.0)
                m = q + q.T
            else:
                q_t = _scaled_logits(block, beta[j0:j1], 0).sub_(lse_safe[None, j0:j1]).exp_()
                m = q.add_(q_t.mul_(weight[None, j0:j1]))
                mask.apply(m, i0, i1, j0, j1, 0.0)
            m_c = m.to(dtype)
            grad[i0:i1] += (m_c @ rows[j0:j1]).to(grad.dtype)
            if i0 != j0:
                grad[j0:j1] += (m_c.T @ rows[i0:i1]).to(grad.dtype)
        return grad.to(dtype), None, None, None


def self_logsumexp(
    rows: Tensor,
    inv_temperature: float | Tensor,
    *,
    exclude_self: bool = True,
    groups: Tensor | None = None,
    group_mode: GroupMode | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """``lse_i = log sum_{k in K(i)} exp(beta_i z_i . z_k)`` over the rows of one matrix, exact.

    The symmetric counterpart of :func:`masked_logsumexp` for losses whose candidates are the anchors
    themselves (NT-Xent, SupCon, DCL): half the matrix products in the forward pass, and peak memory
    that grows with ``chunk_size ** 2``, independent of the number of rows.

    Args:
        rows: ``(n, D)`` rows ``z`` (usually L2-normalised).
        inv_temperature: ``beta``: a float, or an ``(n,)`` tensor of per-anchor inverse temperatures
            (treated as a constant: no gradient flows to it).
        exclude_self: leave ``k = i`` out.
        groups: ``(n,)`` integer group ids, used with ``group_mode`` (``"exclude"`` or ``"only"``).
        chunk_size: rows per block (None: automatic).

    Returns:
        ``(n,)`` float32 (float64 for float64 input) values; ``-inf`` where no candidate is left.
    """
    if rows.dim() != 2:
        raise ValueError(f"rows must be (n, D); got shape {tuple(rows.shape)}")
    if group_mode is not None and groups is None:
        raise ValueError(f"group_mode={group_mode!r} needs groups")
    n = rows.shape[0]
    acc_dtype = torch.float64 if rows.dtype == torch.float64 else torch.float32
    if isinstance(inv_temperature, Tensor):
        if inv_temperature.requires_grad:
            raise ValueError(
                "inv_temperature must not require grad (per-anchor temperatures are constants)"
            )
        beta = inv_temperature.to(device=rows.device, dtype=acc_dtype).expand(n).contiguous()
    else:
        beta = torch.full((n,), float(inv_temperature), dtype=acc_dtype, device=rows.device)
    chunk = check_chunk_size(chunk_size) or auto_square_chunk(n, rows.device)
    mask = _SymmetricMask(exclude_self, groups if group_mode is not None else None, group_mode)
    out: Tensor = _SymmetricLogSumExp.apply(rows, beta, mask, chunk)
    return out


# --------------------------------------------------------------------------------------------------
# Two-sided case: one logit matrix L = A B^T read along rows (anchors of A) and columns (anchors of B),
# as in CLIP's two cross-entropies. One product per block in the forward pass; in the backward pass the
# recomputed block gives M = g_row * P_row + g_col * P_col and the two products M B and M^T A.
# --------------------------------------------------------------------------------------------------


class _TwoSidedLogSumExp(torch.autograd.Function):
    """Row and column log-sum-exp of ``A @ B.T``, computed in row blocks of A."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
        acc_dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
        row_lse = torch.empty(a.shape[0], dtype=acc_dtype, device=a.device)
        col_max = torch.full((b.shape[0],), float("-inf"), dtype=acc_dtype, device=a.device)
        col_acc = torch.zeros(b.shape[0], dtype=acc_dtype, device=a.device)
        for i0, i1 in row_blocks(a.shape[0], chunk):
            block = (a[i0:i1] @ b.T).to(acc_dtype)
            row_lse[i0:i1] = torch.logsumexp(block, dim=1)
            _online_update(col_max, col_acc, block, 0)
        col_lse = col_max + torch.log(col_acc)
        ctx.save_for_backward(a, b, row_lse, col_lse)
        ctx.chunk = chunk
        return row_lse, col_lse

    @staticmethod
    def backward(
        ctx: Any, grad_row: Tensor | None, grad_col: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, None]:
        a, b, row_lse, col_lse = ctx.saved_tensors
        acc_dtype = row_lse.dtype
        g_row = torch.zeros_like(row_lse) if grad_row is None else grad_row.to(acc_dtype)
        g_col = torch.zeros_like(col_lse) if grad_col is None else grad_col.to(acc_dtype)
        grad_a = torch.empty(a.shape, dtype=acc_dtype, device=a.device)
        grad_b = torch.zeros(b.shape, dtype=acc_dtype, device=b.device)
        for i0, i1 in row_blocks(a.shape[0], ctx.chunk):
            block = (a[i0:i1] @ b.T).to(acc_dtype)
            m = (block - row_lse[i0:i1, None]).exp_().mul_(g_row[i0:i1, None])
            m.add_(block.sub_(col_lse[None, :]).exp_().mul_(g_col[None, :]))
            m_c = m.to(a.dtype)
            grad_a[i0:i1] = (m_c @ b).to(acc_dtype)
            grad_b += (m_c.T @ a[i0:i1]).to(acc_dtype)
        return grad_a.to(a.dtype), grad_b.to(b.dtype), None


def two_sided_logsumexp(
    a: Tensor, b: Tensor, *, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Row and column log-sum-exp of ``a @ b.T`` without the full matrix (CLIP's two directions).

    Args:
        a: ``(n_a, D)`` rows (carrying any logit scale).
        b: ``(n_b, D)`` rows.
        chunk_size: rows of ``a`` per block (None: automatic).

    Returns:
        ``(row_lse (n_a,), col_lse (n_b,))`` in float32 (float64 for float64 input).
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must be (n_a, D) and (n_b, D) with the same D; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    chunk = check_chunk_size(chunk_size) or auto_chunk_size(a.shape[0], b.shape[0], a.device)
    row, col = _TwoSidedLogSumExp.apply(a, b.to(a.dtype), chunk)
    return row, col
