"""InfoNCE / NT-Xent (SimCLR) for any number of views, with multi-positive labels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._validation import check_positive, check_reduction
from contrastkit.losses._common import ViewBatch, group_positive_mean, make_view_batch, reduce_terms
from contrastkit.losses._engine import self_logsumexp

__all__ = ["InfoNCE", "check_chunk_size", "out_terms"]


def check_chunk_size(chunk_size: int | None) -> int | None:
    """Validate a ``chunk_size`` argument (a positive int, or None for automatic)."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return chunk_size


def _float(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def out_terms(batch: ViewBatch, temperature: float, chunk_size: int | None) -> tuple[Tensor, Tensor]:
    """Per-row L_out terms ``lse_i - mean_{p in P(i)} s_ip / tau`` and positive counts.

    The denominator runs over every row but the anchor itself (positives included).
    """
    lse = self_logsumexp(batch.rows, 1.0 / temperature, chunk_size=chunk_size)
    rows = _float(batch.rows)
    pos_mean, counts = group_positive_mean(rows / temperature, rows, batch.groups)
    terms = torch.where(counts > 0, lse - pos_mean, torch.zeros_like(lse))
    return terms, counts


class InfoNCE(nn.Module):
    r"""InfoNCE / NT-Xent over V >= 2 views, each positive its own term (SimCLR's loss when V = 2).

    With the V*N rows ``z_r`` L2-normalised, ``s_rk = z_r . z_k`` and positives ``P(r)`` (the other views of
    the same instance, or every other row with the same label when ``labels`` are given):

    .. math::
        \ell_r = -\frac{1}{|P(r)|} \sum_{p \in P(r)}
            \log \frac{\exp(s_{rp}/\tau)}{\sum_{k \neq r} \exp(s_{rk}/\tau)}

    The positive stays in the denominator (DCL removes it). The loss is the mean of ``ell_r`` over all
    anchors (METHODS.md 2.1), which for V > 2 equals the multi-view NT-Xent of Pakoromilas et al.

    Paper: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations" (2020);
    default ``temperature=0.5`` from ScatSimCLR's CIFAR/STL configuration (2021).

    Args:
        temperature: divides the cosine similarities; must be > 0.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``"none"`` returns ``(N, V)``, one term per anchor).
        chunk_size: anchors per block of the exact blockwise computation (None: automatic).

    Shape:
        views ``(N, V, D)``; labels ``(N,)`` integers (optional, then V >= 1).
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
        batch = make_view_batch(views, labels)
        terms, _ = out_terms(batch, self.temperature, self.chunk_size)
        return reduce_terms(batch.per_anchor(terms), self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
