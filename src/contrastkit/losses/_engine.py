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

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["GroupMode", "auto_chunk_size", "masked_logsumexp"]

GroupMode = Literal["exclude", "only"]

# Target number of similarity entries per block: about 16 MiB of float32, large enough for efficient
# matrix products, small enough to keep a block and its temporaries in the last-level cache of a CPU.
_TARGET_BLOCK_ELEMENTS = 1 << 22
_MIN_CHUNK = 32


def auto_chunk_size(n_anchors: int, n_candidates: int) -> int:
    """Pick a row-block size so that one block holds about 4M similarity entries."""
    rows = max(_MIN_CHUNK, _TARGET_BLOCK_ELEMENTS // max(n_candidates, 1))
    return int(min(rows, max(n_anchors, 1)))


@dataclass(frozen=True)
class _Mask:
    """Which candidates each anchor may see; all tensors live on the anchors' device."""

    self_index: Tensor | None
    anchor_groups: Tensor | None
    candidate_groups: Tensor | None
    group_mode: GroupMode | None

    def block_logits(
        self, anchors: Tensor, candidates: Tensor, start: int, stop: int
    ) -> Tensor:
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
    def forward(  # type: ignore[override]
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
    def backward(ctx: Any, grad_lse: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
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
        grad_c = torch.zeros(candidates.shape, dtype=lse.dtype, device=candidates.device) if need_c else None
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
        raise TypeError(f"anchors and candidates differ in dtype: {anchors.dtype} vs {candidates.dtype}")
    if group_mode is not None and (anchor_groups is None or candidate_groups is None):
        raise ValueError(f"group_mode={group_mode!r} needs both anchor_groups and candidate_groups")
    if chunk_size is None:
        chunk_size = auto_chunk_size(anchors.shape[0], candidates.shape[0])
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    mask = _Mask(self_index, anchor_groups, candidate_groups, group_mode)
    out: Tensor = _BlockwiseLogSumExp.apply(anchors, candidates, mask, int(chunk_size))
    return out
