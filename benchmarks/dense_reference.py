"""Dense reference losses written the plain way (normalise, full similarity matrix, masks, cross-entropy).

They are the baseline of ``benchmarks/losses.py``: what a user writes in ten lines, and what peers do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _stack(views: Tensor) -> tuple[Tensor, Tensor]:
    n, v, d = views.shape
    z = F.normalize(views.transpose(0, 1).reshape(v * n, d), dim=1)
    return z, torch.arange(n, device=views.device).repeat(v)


def ntxent_dense(views: Tensor, temperature: float) -> Tensor:
    """Multi-positive NT-Xent: mean over anchors and positives of -log softmax_{k != i}."""
    z, inst = _stack(views)
    logits = z @ z.T / temperature
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1)
    pos = (inst[:, None] == inst[None, :]) & ~eye
    return -(log_prob.masked_fill(~pos, 0).sum(1) / pos.sum(1)).mean()


def supcon_dense(views: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """SupCon L_out with temperature == base temperature."""
    z, _ = _stack(views)
    lab = labels.repeat(views.shape[1])
    logits = z @ z.T / temperature
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1)
    pos = (lab[:, None] == lab[None, :]) & ~eye
    return -(log_prob.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp(min=1)).mean()


def dcl_dense(views: Tensor, temperature: float) -> Tensor:
    """DCL: positives removed from the denominator."""
    z, inst = _stack(views)
    logits = z @ z.T / temperature
    same = inst[:, None] == inst[None, :]
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    neg_lse = torch.logsumexp(logits.masked_fill(same, float("-inf")), dim=1)
    pos = same & ~eye
    pos_mean = logits.masked_fill(~pos, 0).sum(1) / pos.sum(1)
    return (neg_lse - pos_mean).mean()


def clip_dense(image: Tensor, text: Tensor, scale: float) -> Tensor:
    """Symmetric CLIP cross-entropy."""
    a, b = F.normalize(image, dim=1), F.normalize(text, dim=1)
    logits = scale * a @ b.T
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
