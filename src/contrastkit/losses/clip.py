"""CLIP's symmetric image-text contrastive loss with a learnable, clamped logit scale."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_embeddings, check_positive, check_probability, check_reduction
from contrastkit.losses._common import reduce_terms
from contrastkit.losses._engine import masked_logsumexp, two_sided_logsumexp
from contrastkit.losses.infonce import check_chunk_size

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


def _smoothed_ce(lse: Tensor, anchors: Tensor, candidates: Tensor, label_smoothing: float) -> Tensor:
    diag = (anchors * candidates).sum(dim=1).to(lse.dtype)
    if label_smoothing == 0:
        return lse - diag
    mean_logit = (anchors @ candidates.mean(dim=0)).to(lse.dtype)
    return lse - (1 - label_smoothing) * diag - label_smoothing * mean_logit


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
        init_temperature: initial temperature ``1/sigma`` (> 0).
        learnable: whether ``theta`` is a trainable parameter.
        max_logit_scale: upper clamp of ``sigma`` (>= 1).
        label_smoothing: in [0, 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)``, the mean of both directions per pair).
        chunk_size: rows per block (None: automatic).

    Shape:
        image ``(N, D)``, text ``(N, D)``.
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
        self.label_smoothing = check_probability(label_smoothing, "label_smoothing")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1, got {label_smoothing!r}")
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        theta = torch.tensor(math.log(1.0 / init_temperature))
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
        txt = check_embeddings(text, "text", dim=img.shape[1])
        if txt.shape[0] != img.shape[0]:
            raise ValueError(
                f"image and text must hold the same number of pairs; got {img.shape[0]} and {txt.shape[0]}"
            )
        if img.dtype in (torch.float16, torch.bfloat16):
            img, txt = img.float(), txt.float()
        img, txt = F.normalize(img, dim=1), F.normalize(txt.to(img.dtype), dim=1)
        sigma = self.scale().to(img.dtype)
        ce_img, ce_txt = symmetric_cross_entropy_terms(
            sigma * img, txt, self.label_smoothing, self.chunk_size
        )
        return reduce_terms(0.5 * (ce_img + ce_txt), self.reduction)

    def extra_repr(self) -> str:
        return f"max_logit_scale={self.max_logit_scale}, label_smoothing={self.label_smoothing}"
