r"""Multi-view contrastive losses (``docs/methods.md``, section 2.6): DHEL, MV-InfoNCE, MV-DHEL and
the PWE / AVG baselines.

Paper: Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning" (2025);
reference code pakoromilas/Multi-View-CL ``models/losses.py``. Notation: instances ``i, j`` of a
batch of ``N``, views ``l, m`` of ``V``, ``U_il`` the L2-normalised embedding,
``e(a, b) = exp(a . b / tau)``.

Everything is computed in log space: the per-view uniformity terms and the denominators are masked
log-sum-exps from the engine (:func:`~contrastkit.losses._engine.self_logsumexp`, blockwise, with
``chunk_size``), the alignment terms log-sum-exps over an instance's ``V x V`` view pairs. The
reference multiplies sums of ``exp`` (``torch.prod``), which overflows for small ``tau`` and many
views; the values agree wherever that form is finite.

All take ``forward(views (N, V, D), labels=None)`` (no labels: the positives are an instance's
views) and ``temperature=0.5``, the CIFAR-10 configuration of the reference repository.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_chunk_size, check_positive, check_reduction
from contrastkit.losses._common import ViewBatch, make_view_batch, nonnegative, reduce_terms
from contrastkit.losses._engine import self_logsumexp

__all__ = ["DHEL", "MVDHEL", "AVGInfoNCE", "MVInfoNCE", "PWEInfoNCE"]


class _MultiViewLoss(nn.Module):
    """Shared constructor, input checks and helpers."""

    exact_views: int | None = None
    min_instances: int = 1

    def __init__(
        self, *, temperature: float = 0.5, reduction: str = "mean", chunk_size: int | None = None
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def _batch(self, views: Tensor, labels: Tensor | None) -> ViewBatch:
        name = type(self).__name__
        if labels is not None:
            raise ValueError(
                f"{name} takes no labels: the positives are the views of each instance; got labels "
                "(use SupCon or InfoNCE with labels for supervised positives)"
            )
        batch = make_view_batch(views, None, min_views=2)
        if self.exact_views is not None and batch.v != self.exact_views:
            raise ValueError(
                f"{name} needs exactly {self.exact_views} views (views of shape (N, "
                f"{self.exact_views}, D)); got V = {batch.v} (use MVDHEL for any V)"
            )
        if batch.n < self.min_instances:
            raise ValueError(
                f"{name} needs at least {self.min_instances} instances (its uniformity term sums "
                f"over the other instances of the batch); got N = {batch.n}"
            )
        return batch

    def _views(self, batch: ViewBatch) -> Tensor:
        """``(V, N, D)`` view blocks of the view-major rows."""
        return batch.rows.reshape(batch.v, batch.n, -1)

    def _pair_logits(self, z: Tensor) -> Tensor:
        """``(N, V, V)`` logits ``U_il . U_im / tau`` of each instance's view pairs."""
        return torch.einsum("lnd,mnd->nlm", z, z) / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


def _masked_pair_lse(pair_logits: Tensor, keep: Tensor) -> Tensor:
    """``log sum`` over the view pairs marked in ``keep`` (V, V) of each instance's pair logits."""
    masked = pair_logits.masked_fill(~keep, float("-inf"))
    return torch.logsumexp(masked.flatten(1), dim=1)


class MVDHEL(_MultiViewLoss):
    r"""MV-DHEL: decoupled alignment and per-view uniformity for any number of views.

    .. math::
        \ell_i = -\log \sum_{l < l'} e(U_{il}, U_{il'})
                 + \sum_{l} \log \sum_{j \neq i} e(U_{il}, U_{jl}),
        \qquad L = \frac{1}{N}\sum_i \ell_i

    One term per instance. The numerator runs over unordered view pairs (the paper's ordered pairs
    add the constant ``log 2``); no positive enters a denominator, so the alignment gradient does
    not depend on the uniformity terms. Each uniformity term is a log-sum-exp over the rows of one
    view (``O(V N^2)`` work in all).

    ``include_self_in_uniformity=False`` leaves ``j = i`` out as the reference code does (class
    ``MVDHEL``); ``True`` sums over all ``j`` as the README writes (adds ``e^{1/tau}`` inside each
    log, which changes the gradient).

    Paper: Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning" (2025);
    ``temperature=0.5`` from the reference CIFAR-10 configuration.

    Args:
        temperature: divides the similarities (> 0).
        include_self_in_uniformity: keep ``j = i`` in each view's uniformity sum.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)``, one term per instance).
        chunk_size: rows per block of the engine (None: automatic).

    Shape:
        views ``(N, V, D)`` with V >= 2 and N >= 2 (N >= 1 with ``include_self_in_uniformity``).

    Example:
        >>> import torch
        >>> from contrastkit.losses import MVDHEL
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 4, 16)  # four views per instance
        >>> MVDHEL()(views).shape, MVDHEL(reduction="none")(views).shape
        (torch.Size([]), torch.Size([8]))
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        include_self_in_uniformity: bool = False,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction, chunk_size=chunk_size)
        if not isinstance(include_self_in_uniformity, bool):
            raise TypeError(
                "include_self_in_uniformity must be a bool, got "
                f"{type(include_self_in_uniformity).__name__}"
            )
        self.include_self_in_uniformity = include_self_in_uniformity
        self.min_instances = 1 if include_self_in_uniformity else 2

    def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
        batch = self._batch(views, labels)
        z = self._views(batch)
        beta = 1.0 / self.temperature
        uniformity = torch.stack(
            [
                self_logsumexp(
                    z[view],
                    beta,
                    exclude_self=not self.include_self_in_uniformity,
                    chunk_size=self.chunk_size,
                )
                for view in range(batch.v)
            ]
        ).sum(dim=0)
        upper = torch.ones(batch.v, batch.v, dtype=torch.bool, device=z.device).triu(1)
        alignment = _masked_pair_lse(self._pair_logits(z), upper)
        return reduce_terms(uniformity - alignment.to(uniformity.dtype), self.reduction)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, include_self_in_uniformity={self.include_self_in_uniformity}"
        )


class DHEL(MVDHEL):
    r"""DHEL: the two-view decoupled hyperspherical energy loss.

    .. math::
        \ell_i = -\frac{s_i}{\tau} + \log \sum_{j \neq i} e(u_i, u_j)
                 + \log \sum_{j \neq i} e(v_i, v_j), \qquad s_i = u_i \cdot v_i

    with ``u``, ``v`` the two views; ``L = mean_i l_i`` (reference class ``NTXentHPS``). This is
    :class:`MVDHEL` for ``V = 2``.

    Paper: Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning" (2025);
    ``temperature=0.5`` from the reference CIFAR-10 configuration.

    Shape:
        views ``(N, 2, D)``, N >= 2; ``"none"`` gives ``(N,)``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import DHEL
        >>> _ = torch.manual_seed(0)
        >>> loss = DHEL()(torch.randn(8, 2, 16))
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    exact_views = 2


class MVInfoNCE(_MultiViewLoss):
    r"""MV-InfoNCE: one InfoNCE term per instance over all of its views.

    .. math::
        \ell_i = -\log \frac{\sum_{l \neq l'} e(U_{il}, U_{il'})}{\mathrm{Den}_i},
        \qquad L = \frac{1}{N}\sum_i \ell_i

    The numerator sums the ordered view pairs of instance ``i`` (``2 sum_{l<l'}``). With
    ``same_view_negatives=True`` (default: the reference code, class ``MVINFONCE``)
    :math:`\mathrm{Den}_i = \sum_l \sum_{(j,m) \neq (i,l)} e(U_{il}, U_{jm})`, every other row of
    the stacked batch (positives, cross-view and same-view negatives); with ``False`` (the README /
    paper formula) :math:`\mathrm{Den}_i = \sum_l \sum_{m \neq l} \sum_j e(U_{il}, U_{jm})`,
    cross-view pairs only (positives included, same-view rows excluded). ``log Den_i`` is a
    log-sum-exp over the views of the engine's per-row terms.

    Paper: Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning" (2025);
    ``temperature=0.5`` from the reference CIFAR-10 configuration.

    Args:
        temperature: divides the similarities (> 0).
        same_view_negatives: include the same-view rows in the denominator (reference code).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)``, one term per instance).
        chunk_size: rows per block of the engine (None: automatic).

    Shape:
        views ``(N, V, D)`` with V >= 2.

    Example:
        >>> import torch
        >>> from contrastkit.losses import MVInfoNCE
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 3, 16)
        >>> MVInfoNCE()(views).shape, MVInfoNCE(reduction="none")(views).shape
        (torch.Size([]), torch.Size([8]))
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        same_view_negatives: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction, chunk_size=chunk_size)
        if not isinstance(same_view_negatives, bool):
            raise TypeError(
                f"same_view_negatives must be a bool, got {type(same_view_negatives).__name__}"
            )
        self.same_view_negatives = same_view_negatives

    def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
        batch = self._batch(views, labels)
        beta = 1.0 / self.temperature
        if self.same_view_negatives:
            lse = self_logsumexp(batch.rows, beta, chunk_size=self.chunk_size)
        else:
            view_ids = torch.arange(batch.v, device=batch.rows.device).repeat_interleave(batch.n)
            lse = self_logsumexp(
                batch.rows, beta, groups=view_ids, group_mode="exclude", chunk_size=self.chunk_size
            )
        log_den = torch.logsumexp(lse.reshape(batch.v, batch.n), dim=0)
        z = self._views(batch)
        off_diag = ~torch.eye(batch.v, dtype=torch.bool, device=z.device)
        log_num = _masked_pair_lse(self._pair_logits(z), off_diag)
        # >= 0 exactly: every pair of the numerator is also in Den_i (both forms)
        return reduce_terms(nonnegative(log_den - log_num.to(log_den.dtype)), self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, same_view_negatives={self.same_view_negatives}"


def _two_view_ntxent(a: Tensor, b: Tensor, beta: float, chunk_size: int | None) -> Tensor:
    """Per-anchor two-view NT-Xent over the rows ``[a; b]`` (2N, D): ``(2, N)`` terms.

    ``l = log sum_{k != r} exp(beta x_r . x_k) - beta a_i . b_i`` for ``r`` = row ``i`` of ``a`` or
    of ``b``; rows are used as given (no normalisation here).
    """
    n = a.shape[0]
    lse = self_logsumexp(torch.cat([a, b], dim=0), beta, chunk_size=chunk_size)
    pos = beta * (a * b).sum(dim=-1)
    # >= 0 exactly: the positive is among the candidates of lse
    return nonnegative(lse.reshape(2, n) - pos.to(lse.dtype)[None])


class PWEInfoNCE(_MultiViewLoss):
    r"""PWE baseline: the two-view NT-Xent averaged over all ``C(V, 2)`` pairs of views.

    .. math::
        L = \binom{V}{2}^{-1} \sum_{a < b} \frac{1}{2N} \sum_i \left(\ell^{ab}_{a,i} +
        \ell^{ab}_{b,i}\right),
        \quad \ell^{ab}_{a,i} = -\log \frac{e(U_{ia}, U_{ib})}{\sum_{x \in [U_a; U_b],\, x \neq
        U_{ia}}
        e(U_{ia}, x)}

    i.e. SimCLR's loss on the ``2N`` rows of views ``a`` and ``b`` only (reference:
    ``NTXent(pwe=True)``). ``"none"`` gives ``(N, V)``: entry ``(i, v)`` is the mean over ``b != v``
    of ``l^{vb}_{v,i}``, whose mean is ``L``. For ``V = 2`` this is
    :class:`~contrastkit.losses.InfoNCE`.

    Paper: Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning" (2025);
    ``temperature=0.5`` from the reference CIFAR-10 configuration.

    Shape:
        views ``(N, V, D)`` with V >= 2.

    Example:
        >>> import torch
        >>> from contrastkit.losses import PWEInfoNCE
        >>> _ = torch.manual_seed(0)
        >>> PWEInfoNCE(reduction="none")(torch.randn(8, 3, 16)).shape
        torch.Size([8, 3])
    """

    def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
        batch = self._batch(views, labels)
        z = self._views(batch)
        beta = 1.0 / self.temperature
        per_view: list[list[Tensor]] = [[] for _ in range(batch.v)]
        for a, b in itertools.combinations(range(batch.v), 2):
            terms = _two_view_ntxent(z[a], z[b], beta, self.chunk_size)
            per_view[a].append(terms[0])
            per_view[b].append(terms[1])
        grid = torch.stack([torch.stack(t).mean(dim=0) for t in per_view], dim=1)
        return reduce_terms(grid, self.reduction)


class AVGInfoNCE(_MultiViewLoss):
    r"""AVG baseline: each view against the mean of the other views, two-view NT-Xent, averaged.

    For view ``v`` let :math:`\bar U^{(v)}_i = \frac{1}{V-1}\sum_{m \neq v} U_{im}` be the
    arithmetic mean of the other (L2-normalised) views of instance ``i``, *not* re-normalised, as in
    the reference (``NTXent(average=True)`` averages the normalised, ``1/sqrt(tau)``-scaled rows and
    takes plain dot products). With the ``2N`` rows :math:`X^{(v)} = [U_{\cdot v}; \bar U^{(v)}]`:

    .. math::
        L = \frac{1}{V}\sum_v \frac{1}{2N}\sum_{r=1}^{2N}
            -\log \frac{\exp(x_r \cdot x_{p(r)}/\tau)}{\sum_{k \neq r}\exp(x_r \cdot x_k/\tau)}

    where ``p(r)`` pairs ``U_iv`` with ``\bar U^{(v)}_i``. ``renormalize_mean=True`` L2-normalises
    :math:`\bar U^{(v)}` first (cosine geometry; not the reference). ``"none"`` gives ``(N, V)``:
    entry ``(i, v)`` is the mean of the two anchors' terms of instance ``i`` in problem ``v``, whose
    mean is ``L``. For ``V = 2`` this is :class:`~contrastkit.losses.InfoNCE`.

    Paper: Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning" (2025);
    ``temperature=0.5`` from the reference CIFAR-10 configuration.

    Shape:
        views ``(N, V, D)`` with V >= 2.

    Example:
        >>> import torch
        >>> from contrastkit.losses import AVGInfoNCE
        >>> _ = torch.manual_seed(0)
        >>> loss = AVGInfoNCE()(torch.randn(8, 3, 16))
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        renormalize_mean: bool = False,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction, chunk_size=chunk_size)
        if not isinstance(renormalize_mean, bool):
            raise TypeError(
                f"renormalize_mean must be a bool, got {type(renormalize_mean).__name__}"
            )
        self.renormalize_mean = renormalize_mean

    def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
        batch = self._batch(views, labels)
        z = self._views(batch)
        beta = 1.0 / self.temperature
        total = z.sum(dim=0)
        cols = []
        for v in range(batch.v):
            mean_rest = (total - z[v]) / (batch.v - 1)
            if self.renormalize_mean:
                mean_rest = F.normalize(mean_rest, dim=-1)
            terms = _two_view_ntxent(z[v], mean_rest, beta, self.chunk_size)
            cols.append(terms.mean(dim=0))
        return reduce_terms(torch.stack(cols, dim=1), self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, renormalize_mean={self.renormalize_mean}"
