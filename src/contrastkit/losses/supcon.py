"""Supervised contrastive loss (SupCon), L_out and L_in."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_positive, check_reduction
from contrastkit.losses._common import make_view_batch, reduce_terms
from contrastkit.losses._engine import self_logsumexp
from contrastkit.losses.infonce import check_chunk_size, out_terms

__all__ = ["SupCon"]


class SupCon(nn.Module):
    r"""Supervised contrastive loss: positives are all other rows with the same label.

    With the V*N rows L2-normalised, ``P(i)`` the other rows of anchor ``i``'s label, and
    ``A(i)`` every row but ``i``:

    .. math::
        L_{out}: \ell_i = -\frac{\tau}{\tau_b} \frac{1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{e^{s_{ip}/\tau}}{\sum_{k \in A(i)} e^{s_{ik}/\tau}}

        L_{in}: \ell_i = -\frac{\tau}{\tau_b}
            \log \frac{\frac{1}{|P(i)|}\sum_{p \in P(i)} e^{s_{ip}/\tau}}{\sum_{k \in A(i)} e^{s_{ik}/\tau}}

    Paper: Khosla et al., "Supervised Contrastive Learning" (2020); ``temperature = base_temperature = 0.07``
    from the reference code (HobbitLong/SupContrast). L_out is the default (the paper's better variant).

    Anchors without a positive (possible with one view) contribute 0 and count in the mean
    (``anchors_without_positives="zero"``, SupContrast), or are left out of the mean
    (``"drop"``, Core-tuning's normalisation).

    Args:
        temperature: divides the similarities (> 0).
        base_temperature: the loss is scaled by ``temperature / base_temperature``.
        variant: ``"out"`` (default) or ``"in"``.
        anchors_without_positives: ``"zero"`` or ``"drop"``.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N, V)`` per-anchor terms).
        chunk_size: anchors per block (None: automatic).

    Shape:
        views ``(N, V, D)`` with V >= 1; labels ``(N,)`` integers (required).
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        variant: str = "out",
        anchors_without_positives: str = "zero",
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
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, views: Tensor, labels: Tensor) -> Tensor:
        if labels is None:
            raise ValueError("SupCon needs labels of shape (N,); got None (use InfoNCE without labels)")
        batch = make_view_batch(views, labels)
        if self.variant == "out":
            terms, counts = out_terms(batch, self.temperature, self.chunk_size)
        else:
            beta = 1.0 / self.temperature
            lse_all = self_logsumexp(batch.rows, beta, chunk_size=self.chunk_size)
            lse_pos = self_logsumexp(
                batch.rows, beta, groups=batch.groups, group_mode="only", chunk_size=self.chunk_size
            )
            counts = torch.bincount(batch.groups)[batch.groups] - 1
            log_count = torch.log(counts.clamp(min=1).to(lse_all.dtype))
            terms = torch.where(
                counts > 0, lse_all - lse_pos + log_count, torch.zeros_like(lse_all)
            )
        terms = terms * (self.temperature / self.base_temperature)
        valid = None
        if self.anchors_without_positives == "drop":
            valid = batch.per_anchor(counts > 0)
        return reduce_terms(batch.per_anchor(terms), self.reduction, valid=valid)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"variant={self.variant!r}, reduction={self.reduction!r}"
        )


