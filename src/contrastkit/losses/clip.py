"""CLIP's symmetric image-text contrastive loss with a learnable, clamped logit scale."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_chunk_size,
    check_embeddings,
    check_positive,
    check_probability,
    check_reduction,
)
from contrastkit.losses._common import check_rows, nonnegative, reduce_terms, upcast_half
from contrastkit.losses._engine import masked_logsumexp, two_sided_logsumexp

__all__ = ["CLIPLoss", "cross_entropy_terms", "symmetric_cross_entropy_terms"]


def cross_entropy_terms(
    anchors: Tensor, candidates: Tensor, label_smoothing: float, chunk_size: int | None
) -> Tensor:
    """Per-row cross-entropy of ``anchors @ candidates.T`` with the diagonal as target, blockwise.

    With smoothing ``eps`` the target puts ``1 - eps + eps/n`` on the diagonal and ``eps/n`` elsewhere:
    ``ce_i = lse_i - (1 - eps) l_ii - eps * mean_k l_ik``, and ``mean_k l_ik = a_i . mean_k c_k``.
    """
    lse = masked_logsumexp(anchors, candidates, chunk_size=chunk_size)
    return _smoothed_ce(lse, anchors, candidates, label_smoothing)


def symmetric_cross_entropy_terms(
    scaled_a: Tensor, b: Tensor, label_smoothing: float, chunk_size: int | None
) -> tuple[Tensor, Tensor]:
    """Both directions of CLIP's cross-entropy from one logit matrix ``scaled_a @ b.T``.

    Returns the per-pair terms of the rows (``a`` as anchors) and of the columns (``b`` as anchors).
    """
    row_lse, col_lse = two_sided_logsumexp(scaled_a, b, chunk_size=chunk_size)
    row = _smoothed_ce(row_lse, scaled_a, b, label_smoothing)
    col = _smoothed_ce(col_lse, b, scaled_a, label_smoothing)
    return row, col


def _check_init_temperature(value: float, name: str, max_logit_scale: float) -> float:
    """An initial temperature that the logit-scale clamp keeps as given.

    The scale ``1 / T`` is clamped to ``[1, max_logit_scale]`` before every use, so a ``T``
    outside ``[1 / max_logit_scale, 1]`` would never be used: refused rather than silently
    changed (as ``torch.nn`` refuses an argument out of its domain).
    """
    t = check_positive(value, name)
    if t > 1.0 or 1.0 / t > max_logit_scale:
        clamped = min(max(1.0 / t, 1.0), max_logit_scale)
        raise ValueError(
            f"{name} must lie in [1/max_logit_scale, 1] = [{1.0 / max_logit_scale:g}, 1]: the "
            f"logit scale 1/{name} is clamped to [1, max_logit_scale={max_logit_scale:g}] before "
            f"every use, so {value!r} would act as {1.0 / clamped:g}; got {value!r}"
        )
    return t


def _smoothed_ce(
    lse: Tensor, anchors: Tensor, candidates: Tensor, label_smoothing: float
) -> Tensor:
    # A cross-entropy, >= 0 exactly: lse_i >= max_k l_ik >= any convex combination of the l_ik
    # (the smoothed target is one); nonnegative() removes the float rounding below 0.
    diag = (anchors * candidates).sum(dim=1).to(lse.dtype)
    if label_smoothing == 0:
        return nonnegative(lse - diag)
    mean_logit = (anchors @ candidates.mean(dim=0)).to(lse.dtype)
    return nonnegative(lse - (1 - label_smoothing) * diag - label_smoothing * mean_logit)


class CLIPLoss(nn.Module):
    r"""Symmetric InfoNCE between two modalities (CLIP).

    With ``\hat I, \hat T`` the L2-normalised image and text embeddings of N pairs and ``\sigma = e^\theta``:

    .. math::
        L = \tfrac12\Big(\mathrm{CE}(\sigma \hat I \hat T^\top, \mathrm{diag})
            + \mathrm{CE}(\sigma \hat T \hat I^\top, \mathrm{diag})\Big)

    ``\theta`` is learnable (``learnable=True``), initialised to ``log(1 / init_temperature)`` and clamped
    to ``[0, log(max_logit_scale)]`` before every use, which equals the reference's clamp after every
    optimizer step. ``label_smoothing`` is CLIP-rocket's smoothing of the targets.

    Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision" (2021);
    defaults (``init_temperature=0.07``, ``max_logit_scale=100``) from CLIP and facebookresearch/clip-rocket,
    "Improved baselines for vision-language pre-training" (2023).

    Args:
        init_temperature: initial temperature ``1/sigma``, in ``[1 / max_logit_scale, 1]`` (the
            range the clamp keeps; a value outside it is a ``ValueError``, not silently clamped).
        learnable: whether ``theta`` is a trainable parameter.
        max_logit_scale: upper clamp of ``sigma`` (>= 1).
        label_smoothing: in [0, 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)``, the mean of both directions per pair).
        chunk_size: rows per block (None: automatic).

    Shape:
        image ``(N, D)``, text ``(N, D)``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import CLIPLoss
        >>> _ = torch.manual_seed(0)
        >>> image, text = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16)
        >>> loss = CLIPLoss()(image, text)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
        >>> loss.backward()
    """

    def __init__(
        self,
        *,
        init_temperature: float = 0.07,
        learnable: bool = True,
        max_logit_scale: float = 100.0,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(init_temperature, "init_temperature")
        self.max_logit_scale = check_positive(max_logit_scale, "max_logit_scale")
        if self.max_logit_scale < 1:
            raise ValueError(f"max_logit_scale must be >= 1, got {max_logit_scale!r}")
        init_t = _check_init_temperature(init_temperature, "init_temperature", self.max_logit_scale)
        self.label_smoothing = check_probability(label_smoothing, "label_smoothing")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1, got {label_smoothing!r}")
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        theta = torch.tensor(math.log(1.0 / init_t))
        if learnable:
            self.logit_scale = nn.Parameter(theta)
        else:
            self.register_buffer("logit_scale", theta)

    def scale(self) -> Tensor:
        """The clamped multiplicative logit scale ``sigma`` (clamps ``theta`` in place)."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))
        return self.logit_scale.exp()

    def forward(self, image: Tensor, text: Tensor) -> Tensor:
        img = check_embeddings(image, "image")
        check_rows(img, "image", self, what="pair")
        txt = check_embeddings(text, "text", dim=img.shape[1])
        if txt.shape[0] != img.shape[0]:
            raise ValueError(
                f"image and text must hold the same number of pairs; got {img.shape[0]} and {txt.shape[0]}"
            )
        img = upcast_half(img)
        img, txt = F.normalize(img, dim=1), F.normalize(txt.to(img.dtype), dim=1)
        sigma = self.scale().to(img.dtype)
        ce_img, ce_txt = symmetric_cross_entropy_terms(
            sigma * img, txt, self.label_smoothing, self.chunk_size
        )
        return reduce_terms(0.5 * (ce_img + ce_txt), self.reduction)

    def extra_repr(self) -> str:
        return f"max_logit_scale={self.max_logit_scale}, label_smoothing={self.label_smoothing}"


# --------------------------------------------------------------------------------------------------
# CLIP-rocket's augmented-view terms and MIL-NCE
# --------------------------------------------------------------------------------------------------


def _clamped_scale(theta: Tensor, max_logit_scale: float) -> Tensor:
    """``exp(theta)`` after clamping ``theta`` in place to ``[0, log(max_logit_scale)]``."""
    with torch.no_grad():
        theta.clamp_(0.0, math.log(max_logit_scale))
    return theta.exp()


def _check_stack(x: object, name: str, n: int, d: int, inner: str = "A") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[0] != n or x.shape[2] != d:
        raise ValueError(f"{name} must have shape ({n}, {inner}, {d}); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite")
    return x


class CLIPRocketLoss(nn.Module):
    r"""CLIP with CLIP-rocket's augmented ("local") views: global and augmented-view InfoNCE terms.

    With L2-normalised global image and text embeddings ``I, T`` (N pairs), ``A`` augmented image
    views ``I^a`` (embedded by the separate "local" projection) and their texts ``T^a`` (augmented
    captions, or the caption itself):

    .. math::
        L_{img} = \frac{\mathrm{CE}(\sigma I T^\top) + \sum_{a=1}^{A}
                  \mathrm{CE}_{\varepsilon}(\sigma_\ell I^a T^{a\top})}{1 + A},\qquad
        L_{txt} = \frac{\mathrm{CE}(\sigma T I^\top) + \sum_{a}
                  \mathrm{CE}_{\varepsilon}(\sigma_\ell T^a I^{a\top})}{1 + A}

    i.e. ``(L_global + n_aug * L_local) / (1 + n_aug)`` with ``L_local`` the mean over the
    views, and ``L = (L_img + L_txt) / 2`` (``combine="avg"``) or ``L_img + L_txt`` (``"sum"``,
    clip-rocket's ``--loss-avg-or-sum sum``). Targets are the diagonal; ``CE_eps`` smooths them
    with ``local_label_smoothing``. ``sigma = exp(theta)`` and the separate local scale
    ``sigma_l = exp(theta_l)`` are learnable and clamped to ``[1, max_logit_scale]`` like
    :class:`CLIPLoss`. Without ``image_aug`` this is :class:`CLIPLoss`.

    Paper: Fini et al., "Improved baselines for vision-language pre-training" (2023),
    facebookresearch/clip-rocket (``docs/methods.md``, section 2.4): ``local_label_smoothing=0.1``
    on the augmented terms, a separate logit scale for them, both initialised at temperature 0.07
    as CLIP.

    Args:
        init_temperature: initial ``1 / sigma`` of the global terms, in
            ``[1 / max_logit_scale, 1]`` (as :class:`CLIPLoss`).
        local_init_temperature: initial ``1 / sigma_l`` of the augmented terms, in the same
            range.
        learnable: whether both scales are trainable parameters.
        max_logit_scale: upper clamp of both scales (>= 1).
        label_smoothing: smoothing of the global terms, in [0, 1).
        local_label_smoothing: smoothing of the augmented terms, in [0, 1).
        combine: ``"avg"`` | ``"sum"`` of the image and text losses.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)`` per pair).
        chunk_size: rows per block (None: automatic).

    Shape:
        image ``(N, D)``, text ``(N, D)``, image_aug ``(N, A, D)`` (optional), text_aug ``(N, D)``
        (one augmented caption for every view) or ``(N, A, D)`` (optional; default: ``text``).

    Example:
        >>> import torch
        >>> from contrastkit.losses import CLIPRocketLoss
        >>> _ = torch.manual_seed(0)
        >>> image, text = torch.randn(8, 16), torch.randn(8, 16)
        >>> image_aug = torch.randn(8, 2, 16)  # two augmented ("local") views per image
        >>> loss = CLIPRocketLoss()(image, text, image_aug)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    logit_scale: Tensor
    local_logit_scale: Tensor

    def __init__(
        self,
        *,
        init_temperature: float = 0.07,
        local_init_temperature: float = 0.07,
        learnable: bool = True,
        max_logit_scale: float = 100.0,
        label_smoothing: float = 0.0,
        local_label_smoothing: float = 0.1,
        combine: str = "avg",
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(init_temperature, "init_temperature")
        check_positive(local_init_temperature, "local_init_temperature")
        self.max_logit_scale = check_positive(max_logit_scale, "max_logit_scale")
        if self.max_logit_scale < 1:
            raise ValueError(f"max_logit_scale must be >= 1, got {max_logit_scale!r}")
        init_t, local_init_t = (
            _check_init_temperature(value, name, self.max_logit_scale)
            for name, value in (
                ("init_temperature", init_temperature),
                ("local_init_temperature", local_init_temperature),
            )
        )
        smoothing = []
        for name, value in (
            ("label_smoothing", label_smoothing),
            ("local_label_smoothing", local_label_smoothing),
        ):
            smoothing.append(check_probability(value, name))
            if smoothing[-1] >= 1:
                raise ValueError(f"{name} must be < 1, got {value!r}")
        self.label_smoothing, self.local_label_smoothing = smoothing
        if combine not in ("avg", "sum"):
            raise ValueError(f"combine must be one of 'avg', 'sum'; got {combine!r}")
        self.combine = combine
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        thetas = (math.log(1.0 / init_t), math.log(1.0 / local_init_t))
        for name, theta in zip(("logit_scale", "local_logit_scale"), thetas, strict=True):
            if learnable:
                setattr(self, name, nn.Parameter(torch.tensor(theta)))
            else:
                self.register_buffer(name, torch.tensor(theta))

    def scales(self) -> tuple[Tensor, Tensor]:
        """The clamped scales ``(sigma, sigma_l)`` (clamps the parameters in place)."""
        return (
            _clamped_scale(self.logit_scale, self.max_logit_scale),
            _clamped_scale(self.local_logit_scale, self.max_logit_scale),
        )

    def forward(
        self,
        image: Tensor,
        text: Tensor,
        image_aug: Tensor | None = None,
        text_aug: Tensor | None = None,
    ) -> Tensor:
        img = check_embeddings(image, "image")
        check_rows(img, "image", self, what="pair")
        n, d = img.shape
        txt = check_embeddings(text, "text", dim=d)
        if txt.shape[0] != n:
            raise ValueError(
                f"image and text must hold the same number of pairs; got {n} and {txt.shape[0]}"
            )
        img = upcast_half(img)
        work = img.dtype
        img, txt = F.normalize(img, dim=1), F.normalize(txt.to(work), dim=1)
        sigma, sigma_l = (s.to(work) for s in self.scales())
        eps = self.label_smoothing
        img_terms = cross_entropy_terms(sigma * img, txt, eps, self.chunk_size)
        txt_terms = cross_entropy_terms(sigma * txt, img, eps, self.chunk_size)
        n_aug = 0
        if image_aug is not None:
            views = F.normalize(_check_stack(image_aug, "image_aug", n, d).to(work), dim=-1)
            n_aug = views.shape[1]
            if text_aug is None:
                texts = txt.unsqueeze(1).expand(-1, n_aug, -1)
            elif isinstance(text_aug, Tensor) and text_aug.dim() == 2:
                t2 = check_embeddings(text_aug, "text_aug", dim=d)
                if t2.shape[0] != n:
                    raise ValueError(f"text_aug must have shape ({n}, {d}); got {tuple(t2.shape)}")
                texts = F.normalize(t2.to(work), dim=1).unsqueeze(1).expand(-1, n_aug, -1)
            else:
                texts = _check_stack(text_aug, "text_aug", n, d)
                if texts.shape[1] != n_aug:
                    raise ValueError(
                        f"text_aug must hold one caption per augmented view (A = {n_aug}); "
                        f"got shape {tuple(texts.shape)}"
                    )
                texts = F.normalize(texts.to(work), dim=-1)
            eps_l = self.local_label_smoothing
            for a in range(n_aug):
                v, t = views[:, a], texts[:, a]
                img_terms = img_terms + cross_entropy_terms(sigma_l * v, t, eps_l, self.chunk_size)
                txt_terms = txt_terms + cross_entropy_terms(sigma_l * t, v, eps_l, self.chunk_size)
        elif text_aug is not None:
            raise ValueError("text_aug was given without image_aug; pass the augmented image views")
        weight = (1.0 if self.combine == "sum" else 0.5) / (1 + n_aug)
        return reduce_terms(weight * (img_terms + txt_terms), self.reduction)

    def extra_repr(self) -> str:
        return (
            f"max_logit_scale={self.max_logit_scale}, label_smoothing={self.label_smoothing}, "
            f"local_label_smoothing={self.local_label_smoothing}, combine={self.combine!r}"
        )


class MILNCE(nn.Module):
    r"""MIL-NCE: InfoNCE where each video has a bag of candidate positive texts.

    With L2-normalised video ``v_i``, its candidate texts ``P(i) = {t_{i1} .. t_{iP}}`` (e.g. the
    captions of neighbouring clips, ``mask`` marking the valid ones) and ``s(v, t) = v . t``:

    .. math::
        \ell_i = -\log\frac{\sum_{t \in P(i)} e^{s(v_i, t)/\tau}}
            {\sum_{t \in P(i)} e^{s(v_i, t)/\tau} + \sum_{(v', t') \in N(i)} e^{s(v', t')/\tau}}

    The negatives ``N(i)`` are the pairs of ``v_i`` with every text of the other videos and, with
    ``symmetric=True``, the pairs of every other video ``v_j`` with ``v_i``'s candidate texts (the
    two directions of Miech et al.). Each positive appears once in the denominator. Both
    negative sums go through the blockwise engine.

    Paper: Miech et al., "End-to-End Learning of Visual Representations from Uncurated Instructional
    Videos" (2020); used for video-text by VATT (Akbari et al., 2021) with ``tau = 0.07``
    [recall, ``docs/methods.md``, section 2.4]. The symmetric negative set follows Miech et al.
    [recall].

    Args:
        temperature: divides the similarities (> 0).
        symmetric: add the other videos paired with ``v_i``'s texts as negatives.
        normalize: L2-normalise videos and texts (cosine similarity); False uses raw dot products.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B,)``).
        chunk_size: rows per block (None: automatic).

    Shape:
        video ``(B, D)``, text ``(B, P, D)``, mask ``(B, P)`` bool (optional; at least one valid
        candidate per video).

    Example:
        >>> import torch
        >>> from contrastkit.losses import MILNCE
        >>> _ = torch.manual_seed(0)
        >>> video, texts = torch.randn(8, 16), torch.randn(8, 3, 16)  # three candidate texts per video
        >>> loss = MILNCE()(video, texts)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        symmetric: bool = True,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.symmetric = bool(symmetric)
        self.normalize = bool(normalize)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, video: Tensor, text: Tensor, mask: Tensor | None = None) -> Tensor:
        vid = check_embeddings(video, "video")
        check_rows(vid, "video", self, what="video")
        b, d = vid.shape
        txt = _check_stack(text, "text", b, d, inner="P")
        p = txt.shape[1]
        if mask is None:
            valid = torch.ones(b, p, dtype=torch.bool, device=vid.device)
        else:
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                raise TypeError("mask must be a bool tensor (True = valid candidate text)")
            if tuple(mask.shape) != (b, p):
                raise ValueError(f"mask must have shape ({b}, {p}); got {tuple(mask.shape)}")
            valid = mask.to(vid.device)
        if not bool(valid.any(dim=1).all()):
            raise ValueError(
                "every video needs at least one valid candidate text (a row of mask is all False)"
            )
        v = upcast_half(vid)
        work = v.dtype
        t = txt.to(work)
        if self.normalize:
            v, t = F.normalize(v, dim=1), F.normalize(t, dim=-1)
        inv_t = 1.0 / self.temperature
        neg_inf = torch.tensor(float("-inf"), dtype=work, device=v.device)
        own = torch.einsum("bd,bpd->bp", v, t) * inv_t
        numerator = torch.logsumexp(torch.where(valid, own, neg_inf), dim=1)
        flat_valid = valid.reshape(-1)
        texts = t.reshape(b * p, d)[flat_valid]
        denominator = masked_logsumexp(v * inv_t, texts, chunk_size=self.chunk_size)
        if self.symmetric and b > 1:
            owner = torch.arange(b, device=v.device).repeat_interleave(p)[flat_valid]
            per_text = masked_logsumexp(
                texts * inv_t,
                v,
                anchor_groups=owner,
                candidate_groups=torch.arange(b, device=v.device),
                group_mode="exclude",
                chunk_size=self.chunk_size,
            )
            grid = torch.full((b * p,), float("-inf"), dtype=per_text.dtype, device=v.device)
            grid = grid.masked_scatter(flat_valid, per_text)
            denominator = torch.logaddexp(denominator, torch.logsumexp(grid.reshape(b, p), dim=1))
        # >= 0 exactly: the numerator's texts are all in the denominator
        terms = nonnegative(denominator - numerator.to(denominator.dtype))
        return reduce_terms(terms, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, symmetric={self.symmetric}, "
            f"normalize={self.normalize}"
        )


__all__ += ["MILNCE", "CLIPRocketLoss"]
