"""Per-instance sample weights for weighted contrastive losses (``docs/methods.md``, section 2.2).

A weighted InfoNCE is ``L = (1/N) sum_i w_i l_i`` with constant (detached) weights ``w_i``. The raw
scores that papers turn into weights come on arbitrary scales; :func:`normalize_weights` brings them
to a mean of one so that the weighted loss stays on the scale of the unweighted one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit._validation import check_choice, check_finite, check_positive, check_tensor

__all__ = ["WEIGHT_MODES", "check_instance_weights", "normalize_weights"]

WEIGHT_MODES = ("mean1", "softmax", "none")


def _check_vector(w: object, name: str) -> Tensor:
    t = check_tensor(w, name)
    if t.dim() != 1 or t.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (N,); got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return check_finite(t, name)


def normalize_weights(w: Tensor, mode: str = "mean1", gamma: float = 1.0) -> Tensor:
    r"""Turn per-instance scores into weights with mean one.

    - ``"mean1"``: :math:`w_i \cdot N / \sum_j w_j` (needs ``w >= 0`` with a positive sum);
    - ``"softmax"``: :math:`N \cdot \mathrm{softmax}_j(\gamma x_j)_i`; with
      ``x_i = s_{fg,i} - s_{bg,i}`` this is GenView's quality weight
      ``N exp(gamma x_i) / sum_j exp(gamma x_j)`` (Li et al., "GenView: Enhancing View Quality with
      Pretrained Generative Model for Self-Supervised Learning", 2024; ``gamma = 1`` from its
      reference code);
    - ``"none"``: ``w`` unchanged.

    The result keeps the autograd history of ``w``; the weighted losses detach it themselves.

    Args:
        w: ``(N,)`` floating-point scores.
        mode: ``"mean1"`` | ``"softmax"`` | ``"none"``.
        gamma: sharpness of ``"softmax"`` (> 0); ignored by the other modes.

    Returns:
        ``(N,)`` weights, same dtype and device as ``w``.
    """
    x = _check_vector(w, "w")
    mode = check_choice(mode, "mode", WEIGHT_MODES)
    g = check_positive(gamma, "gamma")
    n = x.shape[0]
    if mode == "none":
        return x
    if mode == "softmax":
        return n * torch.softmax(g * x, dim=0)
    if bool((x < 0).any()):
        raise ValueError(
            "normalize_weights(mode='mean1') needs non-negative weights; got minimum "
            f"{float(x.min())} (use mode='softmax' for scores of any sign)"
        )
    total = x.sum()
    if float(total) <= 0:
        raise ValueError(
            "normalize_weights(mode='mean1') needs weights with a positive sum; got all zeros"
        )
    return x * (n / total)


def check_instance_weights(weights: object, n: int, *, name: str = "weights") -> Tensor:
    """Validate per-instance loss weights: a finite, non-negative ``(n,)`` float tensor; returns it
    detached."""
    t = check_tensor(weights, name)
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},), one per instance; got shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    check_finite(t, name)
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be non-negative; got minimum {float(t.min())}")
    return t.detach()
