r"""Geometric objectives: alignment, uniformity, KoLeo and SepCLR's kernel joint-entropy term.

``docs/methods.md``, sections 2.8 (alignment, uniformity) and 3.10 (KoLeo, SepCLR). These are the
*loss*
versions (differentiable, torch modules); the analysis metrics of the evaluation package report the
same quantities as floats.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_chunk_size,
    check_embeddings,
    check_positive,
    check_reduction,
    check_tensor,
    check_views,
)
from contrastkit.losses._common import check_rows, reduce_terms, upcast_half
from contrastkit.losses._engine import auto_chunk_size, masked_logsumexp, self_logsumexp

__all__ = [
    "AlignUniform",
    "Alignment",
    "JointEntropy",
    "KoLeo",
    "Uniformity",
    "log_mean_gaussian_kernel",
]


def log_mean_gaussian_kernel(
    w: Tensor, scale: float, *, include_self: bool = True, chunk_size: int | None = None
) -> Tensor:
    r"""``log (1/m) sum_j exp(-scale ||w_i - w_j||^2)`` for every row ``i``, through the engine.

    ``m`` is ``n`` (``include_self``) or ``n - 1``. The squared distance is expanded as
    ``|w_i|^2 + |w_j|^2 - 2 w_i . w_j``; the candidate term ``-scale |w_j|^2`` rides in one extra
    column (anchors ``[2 scale w_i, 1]``, candidates ``[w_j, -scale |w_j|^2]``), so the blockwise
    log-sum-exp engine computes it exactly without an ``n x n`` matrix, for raw (unnormalised) rows.
    """
    n = w.shape[0]
    sq = (w * w).sum(dim=1)
    ones = torch.ones(n, 1, dtype=w.dtype, device=w.device)
    anchors = torch.cat([2.0 * scale * w, ones], dim=1)
    candidates = torch.cat([w, -scale * sq[:, None]], dim=1)
    self_index = None if include_self else torch.arange(n, device=w.device)
    lse = masked_logsumexp(anchors, candidates, self_index=self_index, chunk_size=chunk_size)
    m = n if include_self else n - 1
    return lse - scale * sq.to(lse.dtype) - math.log(m)


def _pair_alignment(z: Tensor, alpha: float) -> Tensor:
    """Per instance, the mean over view pairs ``v < w`` of ``||z_v - z_w||^alpha`` (z: N, V, D)."""
    terms = []
    for a, b in combinations(range(z.shape[1]), 2):
        diff = z[:, a] - z[:, b]
        sq = (diff * diff).sum(dim=1)
        terms.append(sq if alpha == 2.0 else diff.norm(dim=1).pow(alpha))
    return torch.stack(terms, dim=1).mean(dim=1)


def _view_uniformity(z: Tensor, t: float, normalized: bool, chunk_size: int | None) -> Tensor:
    """``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` of one view ``z`` (N, D), N >= 2."""
    n = z.shape[0]
    if normalized:  # ||z_i - z_j||^2 = 2 - 2 z_i . z_j: the symmetric engine
        lse = self_logsumexp(z, 2.0 * t, chunk_size=chunk_size) - 2.0 * t
    else:
        lse = log_mean_gaussian_kernel(z, t, include_self=False, chunk_size=chunk_size)
        lse = lse + math.log(n - 1)
    return torch.logsumexp(lse, dim=0) - math.log(n * (n - 1))


class Alignment(nn.Module):
    r"""Alignment loss of Wang & Isola: expected distance between positive embeddings.

    .. math::
        L_{align} = \mathbb{E}_{(x, y) \sim pos} \|f(x) - f(y)\|_2^{\alpha}

    over all view pairs ``v < w`` of each instance (mean), then over instances. With ``normalize``
    the embeddings are L2-normalised first (the hypersphere setting of the paper).

    Paper: Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere" (ICML 2020); ``alpha=2`` is the paper's default. SepCLR's
    alignment ``||x - y||^2 / (2 tau)`` with ``tau = 0.5`` is the same quantity.

    Args:
        alpha: exponent (> 0).
        normalize: L2-normalise the embeddings.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)`` per-instance terms).

    Shape:
        views ``(N, V, D)`` with ``V >= 2``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import Alignment
        >>> _ = torch.manual_seed(0)
        >>> views = torch.randn(8, 2, 16)
        >>> Alignment()(views).shape
        torch.Size([])
        >>> float(Alignment()(views[:, :1].repeat(1, 2, 1)))  # identical views are aligned
        0.0
    """

    def __init__(
        self, *, alpha: float = 2.0, normalize: bool = True, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.alpha = check_positive(alpha, "alpha")
        self.normalize = bool(normalize)
        self.reduction = check_reduction(reduction)

    def forward(self, views: Tensor) -> Tensor:
        z = upcast_half(check_views(views, min_views=2))
        if self.normalize:
            z = F.normalize(z, dim=-1)
        return reduce_terms(_pair_alignment(z, self.alpha), self.reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, normalize={self.normalize}, reduction={self.reduction!r}"


class Uniformity(nn.Module):
    r"""Uniformity loss of Wang & Isola: log of the mean Gaussian potential between embeddings.

    .. math::
        L_{uniform} = \log \mathbb{E}_{x \ne y} e^{-t \|f(x) - f(y)\|_2^2}

    computed within each view (over the ``N`` instances, pairs ``i != j``) and averaged over views,
    as in the paper's two-view loss ``(uniform(x) + uniform(y)) / 2``. A log-sum-exp over all pairs:
    it runs through the blockwise engine, with no ``N x N`` matrix.

    Paper: Wang & Isola (ICML 2020); ``t=2`` is the paper's default. SepCLR's uniformity with the
    kernel ``exp(-||.||^2 / (2 tau))``, ``tau = 0.5``, is ``t = 1``.

    Args:
        t: kernel scale (> 0).
        normalize: L2-normalise the embeddings (False: raw vectors, exact distances).
        reduction: ``"mean"`` (over views) | ``"sum"`` (over views) | ``"none"`` (``(V,)``, one
            value per view: uniformity does not split into per-instance terms).
        chunk_size: rows per block of the engine (None: automatic).

    Shape:
        views ``(N, V, D)`` (any ``V >= 1``) or embeddings ``(N, D)``; ``N >= 2``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import Uniformity
        >>> _ = torch.manual_seed(0)
        >>> loss = Uniformity(t=2.0)(torch.randn(8, 2, 16))
        >>> loss.shape, bool(loss < 0)  # log of a mean of exp(-t d^2) <= 1
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        t: float = 2.0,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.t = check_positive(t, "t")
        self.normalize = bool(normalize)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def per_view(self, views: Tensor) -> Tensor:
        """The ``(V,)`` uniformity of each view."""
        x = check_tensor(views, "views")
        if x.dim() not in (2, 3):
            raise ValueError(
                f"views must have shape (N, V, D) or embeddings (N, D); got shape {tuple(x.shape)}"
            )
        z = upcast_half(
            check_views(x, min_views=1) if x.dim() == 3 else check_embeddings(x, "views")[:, None]
        )
        if z.shape[0] < 2:
            raise ValueError(f"uniformity needs N >= 2 embeddings per view, got N = {z.shape[0]}")
        if self.normalize:
            z = F.normalize(z, dim=-1)
        return torch.stack(
            [
                _view_uniformity(z[:, v], self.t, self.normalize, self.chunk_size)
                for v in range(z.shape[1])
            ]
        )

    def forward(self, views: Tensor) -> Tensor:
        return reduce_terms(self.per_view(views), self.reduction)

    def extra_repr(self) -> str:
        return f"t={self.t}, normalize={self.normalize}, reduction={self.reduction!r}"


class AlignUniform(nn.Module):
    r"""Alignment plus weighted uniformity (Wang & Isola), a complete multi-view loss.

    .. math::
        L = L_{align}^{(\alpha)} + \lambda\, L_{uniform}^{(t)}

    with :class:`Alignment` over all view pairs and :class:`Uniformity` averaged over the views.

    Paper: Wang & Isola (ICML 2020): ``alpha=2``, ``t=2``, ``uniformity_weight`` ``lambda = 1``
    (the equal weighting of their reference loss; the paper also sweeps other weights).

    Args:
        alpha: alignment exponent (> 0).
        t: uniformity kernel scale (> 0).
        uniformity_weight: ``lambda`` (>= 0).
        normalize: L2-normalise the embeddings.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``: the ``(N,)`` terms are the per-instance
            alignment plus ``lambda`` times the (batch-level) uniformity, so that their mean is the
            loss.
        chunk_size: rows per block of the uniformity's engine (None: automatic).

    Shape:
        views ``(N, V, D)`` with ``V >= 2`` and ``N >= 2``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import AlignUniform
        >>> _ = torch.manual_seed(0)
        >>> loss = AlignUniform(uniformity_weight=1.0)(torch.randn(8, 2, 16))
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        t: float = 2.0,
        uniformity_weight: float = 1.0,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.alignment = Alignment(alpha=alpha, normalize=normalize, reduction="none")
        self.uniformity = Uniformity(t=t, normalize=normalize, chunk_size=chunk_size)
        self.uniformity_weight = check_positive(
            uniformity_weight, "uniformity_weight", allow_zero=True
        )
        self.reduction = check_reduction(reduction)

    def forward(self, views: Tensor) -> Tensor:
        align = self.alignment(views)
        terms = align + self.uniformity_weight * self.uniformity(views)
        return reduce_terms(terms, self.reduction)

    def extra_repr(self) -> str:
        return f"uniformity_weight={self.uniformity_weight}, reduction={self.reduction!r}"


@torch.no_grad()
def _nearest_neighbour(z: Tensor, chunk_size: int | None) -> Tensor:
    """Index of the nearest other row (Euclidean) of every row of ``z``, found block by block."""
    n = z.shape[0]
    chunk = chunk_size or auto_chunk_size(n, n)
    sq = (z * z).sum(dim=1)
    out = torch.empty(n, dtype=torch.long, device=z.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        dist = sq[start:stop, None] + sq[None, :] - 2.0 * (z[start:stop] @ z.T)
        rows = torch.arange(stop - start, device=z.device)
        dist[rows, rows + start] = float("inf")
        out[start:stop] = dist.argmin(dim=1)
    return out


class KoLeo(nn.Module):
    r"""KoLeo regulariser: the Kozachenko-Leonenko entropy estimator, spreading the embeddings.

    .. math::
        L_{KoLeo} = -\frac{1}{n}\sum_i
            \log\big(\min_{j \ne i}\|\hat z_i - \hat z_j\|_2 + \epsilon\big)

    The nearest neighbour of each row is searched without autograd in row blocks (peak memory
    ``chunk x n``); the distance to it is then recomputed with gradient (to both rows). With views
    ``(N, V, D)`` the estimator is applied within each view (neighbours from the same view).

    Paper: Sablayrolles et al., "Spreading vectors for similarity search" (ICLR 2019); used as a
    regulariser next to InfoNCE in the wearable-biosignal foundation models (``docs/methods.md``,
    section 3.10; weight unverified). ``eps = 1e-8`` keeps duplicates finite (the value DINOv2's
    KoLeo loss uses).

    Args:
        eps: added to the distance inside the log (> 0).
        normalize: L2-normalise the embeddings (the ``hat z`` of the formula).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)``, or ``(N, V)`` for views).
        chunk_size: rows per block of the neighbour search (None: automatic).

    Shape:
        embeddings ``(N, D)`` or views ``(N, V, D)``; ``N >= 2``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import KoLeo
        >>> _ = torch.manual_seed(0)
        >>> KoLeo()(torch.randn(8, 16)).shape, KoLeo(reduction="none")(torch.randn(8, 2, 16)).shape
        (torch.Size([]), torch.Size([8, 2]))
    """

    def __init__(
        self,
        *,
        eps: float = 1e-8,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.eps = check_positive(eps, "eps")
        self.normalize = bool(normalize)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def _terms(self, z: Tensor) -> Tensor:
        nn_index = _nearest_neighbour(z.detach(), self.chunk_size)
        dist = (z - z[nn_index]).norm(dim=1)
        return -torch.log(dist + self.eps)

    def forward(self, embeddings: Tensor) -> Tensor:
        x = check_tensor(embeddings, "embeddings")
        is_views = x.dim() == 3
        z = upcast_half(
            check_views(x, min_views=1) if is_views else check_embeddings(x, "embeddings")[:, None]
        )
        if z.shape[0] < 2:
            raise ValueError(
                f"KoLeo needs N >= 2 embeddings (a nearest neighbour), got {z.shape[0]}"
            )
        if self.normalize:
            z = F.normalize(z, dim=-1)
        terms = torch.stack([self._terms(z[:, v]) for v in range(z.shape[1])], dim=1)
        return reduce_terms(terms if is_views else terms[:, 0], self.reduction)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, normalize={self.normalize}, reduction={self.reduction!r}"


class JointEntropy(nn.Module):
    r"""SepCLR's kernel joint-entropy term (JEM) between common and salient embeddings.

    .. math::
        JEM(c, s) = \frac{1}{n}\sum_i \log \frac{1}{n}\sum_j K_s(i,j)\, K_c(i,j), \qquad
        K(i, j) = \exp\Big(-\frac{\|x_i - x_j\|^2}{2\tau}\Big)

    (``j = i`` included, as in the reference code). It is minus a kernel estimate of the joint
    entropy of ``(c, s)``; minimising it (weight ``lambda`` in SepCLR) spreads the joint
    distribution, which with the marginal uniformity terms minimises the mutual information between
    the common and the salient space. Since ``K_s K_c`` is the Gaussian kernel of the concatenation
    ``[c, s]``, it is a log-sum-exp computed by the blockwise engine, with no ``n x n`` matrix.

    The inputs are used as given: SepCLR L2-normalises the common head ``c`` and leaves the salient
    head ``s`` raw.

    Paper: Louiset et al., "Separating common from salient patterns with Contrastive Representation
    Learning" (ICLR 2024) [code: neurospin-projects/2024_rlouiset_sep_clr ``losses.py``]:
    ``tau = 0.5``.

    Args:
        tau: kernel bandwidth ``tau`` (> 0).
        include_self: include ``j = i`` in the inner mean (the reference does).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(n,)`` per-sample log-densities).
        chunk_size: rows per block of the engine (None: automatic).

    Shape:
        common ``(n, D_c)``, salient ``(n, D_s)``; ``n >= 1`` (``>= 2`` without self).

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from contrastkit.losses import JointEntropy
        >>> _ = torch.manual_seed(0)
        >>> common, salient = F.normalize(torch.randn(8, 4), dim=1), torch.randn(8, 3)
        >>> loss = JointEntropy(tau=0.5)(common, salient)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        tau: float = 0.5,
        include_self: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.tau = check_positive(tau, "tau")
        self.include_self = bool(include_self)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, common: Tensor, salient: Tensor) -> Tensor:
        c = upcast_half(check_embeddings(common, "common"))
        if self.include_self:
            check_rows(c, "common", self, what="sample")
        else:
            check_rows(c, "common", self, minimum=2, what="samples (include_self=False)")
        s = upcast_half(check_embeddings(salient, "salient"))
        if c.shape[0] != s.shape[0]:
            raise ValueError(
                f"common and salient must hold the same samples; got {c.shape[0]} and {s.shape[0]}"
            )
        if c.dtype != s.dtype:
            raise TypeError(f"common and salient differ in dtype: {c.dtype} vs {s.dtype}")
        w = torch.cat([c, s], dim=1)
        terms = log_mean_gaussian_kernel(
            w, 1.0 / (2.0 * self.tau), include_self=self.include_self, chunk_size=self.chunk_size
        )
        return reduce_terms(terms, self.reduction)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, include_self={self.include_self}, reduction={self.reduction!r}"
