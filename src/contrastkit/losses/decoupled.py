"""Decoupled contrastive learning: DCL and DCLW."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._validation import check_chunk_size, check_positive, check_reduction
from contrastkit.losses._common import group_positive_mean, make_view_batch, reduce_terms
from contrastkit.losses._engine import self_logsumexp

__all__ = ["DCL", "DCLW", "von_mises_fisher_weights"]


def von_mises_fisher_weights(pos_sim: Tensor, sigma: float) -> Tensor:
    """DCLW's positive weights ``w_i = 2 - N softmax_j(s_j / sigma)_i`` over the last dimension."""
    n = pos_sim.shape[-1]
    return 2.0 - n * torch.softmax(pos_sim / sigma, dim=-1)


class DCL(nn.Module):
    r"""Decoupled contrastive loss: InfoNCE with the positives removed from the denominator.

    For anchor row ``i`` with positives ``P(i)`` (the other views of its instance, or same-label rows when
    ``labels`` are given) and negatives ``N(i)`` (every row outside its group):

    .. math::
        \ell_i = -\frac{1}{|P(i)|}\sum_{p \in P(i)} \frac{s_{ip}}{\tau}
                 + \log \sum_{k \in N(i)} e^{s_{ik}/\tau}

    The mean over all anchors is the symmetric loss of the paper (2N - 2 negatives for V = 2). Because no
    positive sits in the denominator, the gradient of the mean loss with respect to each positive
    similarity is ``-1/(N tau)`` for V = 2 (``-2/(N V (V-1) tau)`` per view pair in general), whatever the
    negatives (the decoupling property).

    Paper: Yeh et al., "Decoupled Contrastive Learning" (2021/ECCV 2022); ``temperature=0.1`` as in lightly's
    and raminnakhli's implementations.

    Args:
        temperature: divides the similarities (> 0).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N, V)`` per-anchor terms).
        chunk_size: anchors per block (None: automatic).

    Shape:
        views ``(N, V, D)`` with V >= 2 (V >= 1 with labels); labels ``(N,)`` optional.

    Example:
        >>> import torch
        >>> from contrastkit.losses import DCL
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16, requires_grad=True)
        >>> loss = DCL(temperature=0.1)(views)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
        >>> loss.backward()
    """

    def __init__(
        self, *, temperature: float = 0.1, reduction: str = "mean", chunk_size: int | None = None
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def _negative_lse(self, rows: Tensor, groups: Tensor) -> Tensor:
        if groups.numel() and bool((groups == groups[0]).all()):
            raise ValueError(
                f"{type(self).__name__} needs at least one negative per anchor, but every row of this "
                "batch is a positive of every other (one instance, or a single label); "
                "use at least 2 instances / 2 distinct labels"
            )
        return self_logsumexp(
            rows,
            1.0 / self.temperature,
            groups=groups,
            group_mode="exclude",
            chunk_size=self.chunk_size,
        )

    def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
        batch = make_view_batch(views, labels)
        rows = batch.rows
        lse_neg = self._negative_lse(rows, batch.groups)
        pos_mean, counts = group_positive_mean(rows / self.temperature, rows, batch.groups)
        terms = torch.where(counts > 0, lse_neg - pos_mean, torch.zeros_like(lse_neg))
        return reduce_terms(batch.per_anchor(terms), self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


class DCLW(DCL):
    r"""DCL with von Mises-Fisher weighted positives.

    The positive term of the pair ``(i, v, v')`` is multiplied by

    .. math:: w_i = 2 - \frac{\exp(s_i/\sigma)}{\frac{1}{N}\sum_j \exp(s_j/\sigma)},
              \quad s_i = s(z_i^{v}, z_i^{v'})

    so that hard positives (low similarity) weigh more. For V > 2 each ordered view pair gets its own
    weights over the batch. The weights are detached by default, as in lightly's implementation
    (``detach_weights=False`` lets gradients flow through them, as in raminnakhli's).

    Paper: Yeh et al., "Decoupled Contrastive Learning" (2021); ``sigma=0.5``, ``temperature=0.1``.

    Shape:
        views ``(N, V, D)`` with V >= 2; positives are views of the same instance (no labels).

    Example:
        >>> import torch
        >>> from contrastkit.losses import DCLW
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16)
        >>> loss = DCLW(temperature=0.1, sigma=0.5)(views)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        sigma: float = 0.5,
        detach_weights: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction, chunk_size=chunk_size)
        self.sigma = check_positive(sigma, "sigma")
        self.detach_weights = bool(detach_weights)

    def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is not None:
            raise ValueError(
                "DCLW weights the positive pairs of an instance's views; it takes no labels "
                "(use DCL with labels for supervised positives)"
            )
        batch = make_view_batch(views)
        lse_neg = self._negative_lse(batch.rows, batch.groups)
        z = batch.rows.reshape(batch.v, batch.n, -1)
        pos = torch.einsum("vnd,wnd->vwn", z, z)  # (V, V, N) positive similarities
        w = von_mises_fisher_weights(pos.detach() if self.detach_weights else pos, self.sigma)
        off_diag = ~torch.eye(batch.v, dtype=torch.bool, device=z.device)
        weighted = (w * pos / self.temperature)[off_diag].reshape(batch.v, batch.v - 1, batch.n)
        pos_mean = weighted.mean(dim=1).reshape(-1)  # view-major (V*N,)
        terms = lse_neg - pos_mean
        return reduce_terms(batch.per_anchor(terms), self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma}, detach_weights={self.detach_weights}"
