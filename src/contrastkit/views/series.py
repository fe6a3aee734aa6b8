"""Batched, per-sample random augmentations of time series ``(B, C, T)``, in plain torch.

Every op takes a floating-point batch ``x`` of shape ``(B, C, T)`` (B series, C channels or
variables, T time steps) and returns a tensor of the same dtype and device; only :func:`crop` may
change the length (to ``size``). Each sample gets its own random parameters, drawn from
``generator`` (a ``torch.Generator``; ``None`` uses torch's global generator), so a seeded
generator reproduces the result. Values are not bounded (no clamping). Half-precision input is
computed in float32 and cast back.

The ops and their sources (defaults follow them where given; [recall] marks values taken from
memory of the paper, not re-checked):

- :func:`jitter`: additive Gaussian noise; :func:`scaling`: one random factor per sample and
  channel; :func:`time_warp`: smooth random change of speed (Um et al., "Data Augmentation of
  Wearable Sensor Data for Parkinson's Disease Monitoring using Convolutional Neural Networks",
  2017: sigma 0.05 jitter, 0.1 scaling, 0.2 warping with 4 knots [recall]);
- :func:`permute_segments`: cut into random segments and shuffle them (Um et al., 2017; TS-TCC,
  Eldele et al., "Time-Series Representation Learning via Temporal and Contextual Contrasting",
  2021, strong view: up to 5 segments [recall]);
- :func:`crop`: random window resampled to a fixed length; :func:`mask`: zero random time steps or
  one random span (TS2Vec, Yue et al., 2022, masks time steps [recall]).

:class:`SeriesAugment` composes them, each applied to a sample with its own probability, and makes
``(B, V, C, T)`` views in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_int, check_probability, check_tensor
from contrastkit.views.image import _coin, _rand, _randn_like, _range

__all__ = [
    "MASK_MODES",
    "SeriesAugment",
    "check_series",
    "crop",
    "jitter",
    "mask",
    "permute_segments",
    "resample",
    "scaling",
    "time_warp",
]

_HALF = (torch.float16, torch.bfloat16)
MASK_MODES = ("point", "span")


def check_series(x: object, name: str = "x") -> Tensor:
    """Validate a floating-point batch of series of shape ``(B, C, T)``.

    Raises:
        TypeError: If ``x`` is not a floating-point tensor.
        ValueError: If it is not of rank 3 or has an empty dimension.
    """
    t = check_tensor(x, name)
    if t.dim() != 3:
        raise ValueError(
            f"{name} must have shape (B, C, T) (batch, channels, time steps); got a tensor of "
            f"rank {t.dim()} with shape {tuple(t.shape)}"
            + (" (add a channel dim with x.unsqueeze(1))" if t.dim() == 2 else "")
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {t.dtype}")
    if min(t.shape) < 1:
        raise ValueError(f"{name} must not have an empty dimension; got shape {tuple(t.shape)}")
    return t


def _work(x: Tensor) -> Tensor:
    return x.float() if x.dtype in _HALF else x


def _check_sigma(sigma: object, name: str) -> float:
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, int | float)
        or not (math.isfinite(sigma) and sigma >= 0)
    ):
        raise ValueError(f"{name} must be a finite number >= 0; got {sigma!r}")
    return float(sigma)


def _select(sel: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """``y`` for the selected samples (``sel`` of shape (B,)), ``x`` for the others."""
    return torch.where(sel.view(-1, 1, 1), y, x)


# --------------------------------------------------------------------------------------------------
# the ops


def jitter(
    x: Tensor, generator: torch.Generator | None = None, *, sigma: float = 0.05, p: float = 1.0
) -> Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` to each selected sample.

    Args:
        x: Batch ``(B, C, T)``.
        generator: Source of randomness.
        sigma: Noise standard deviation (Um et al., 2017: 0.05 [recall]).
        p: Probability of jittering each sample.

    Returns:
        Tensor of the shape, dtype and device of ``x``.
    """
    check_series(x)
    sigma = _check_sigma(sigma, "sigma")
    p = check_probability(p, "p")
    w = _work(x)
    noise = _randn_like(w, generator)
    sel = _coin(x.shape[0], p, generator, x.device).to(w.dtype).view(-1, 1, 1)
    return torch.addcmul(w, noise, sel * sigma).to(x.dtype)


def scaling(
    x: Tensor, generator: torch.Generator | None = None, *, sigma: float = 0.1, p: float = 1.0
) -> Tensor:
    """Multiply each channel of each selected sample by its own factor drawn from N(1, sigma^2).

    Args:
        x: Batch ``(B, C, T)``.
        generator: Source of randomness.
        sigma: Standard deviation of the factor (Um et al., 2017: 0.1 [recall]).
        p: Probability of scaling each sample.

    Returns:
        Tensor of the shape, dtype and device of ``x``.
    """
    check_series(x)
    sigma = _check_sigma(sigma, "sigma")
    p = check_probability(p, "p")
    w = _work(x)
    b, c, _ = w.shape
    factor = 1.0 + sigma * _randn_like(w.new_empty((b, c, 1)), generator)
    sel = _coin(b, p, generator, x.device).view(-1, 1, 1)
    factor = torch.where(sel, factor, torch.ones_like(factor))
    return (w * factor).to(x.dtype)


def resample(x: Tensor, positions: Tensor) -> Tensor:
    """Read each series at fractional time positions, with linear interpolation.

    Args:
        x: Batch ``(B, C, T)``.
        positions: ``(B, T_out)`` positions in ``[0, T - 1]`` (clamped), one row per sample and
            shared by its channels.

    Returns:
        Tensor ``(B, C, T_out)``: ``x[b, c, floor(t)] * (1 - frac) + x[b, c, floor(t) + 1] * frac``.
    """
    b, c, t = x.shape
    pos = positions.to(device=x.device, dtype=x.dtype).clamp(0, t - 1)
    lo = pos.floor().long().clamp(max=t - 1)
    hi = (lo + 1).clamp(max=t - 1)
    frac = (pos - lo.to(x.dtype)).unsqueeze(1)
    n = pos.shape[1]
    a = x.gather(2, lo.unsqueeze(1).expand(b, c, n))
    z = x.gather(2, hi.unsqueeze(1).expand(b, c, n))
    return torch.lerp(a, z, frac)


def time_warp(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    sigma: float = 0.2,
    knots: int = 4,
    p: float = 1.0,
) -> Tensor:
    """Smoothly speed up and slow down each selected series, keeping its start and end.

    A speed curve is drawn per sample: ``knots + 2`` values from N(1, sigma^2) (clamped to >= 0.1)
    at evenly spaced times, linearly interpolated to ``T`` steps. Its cumulative sum, rescaled to
    run from 0 to ``T - 1``, gives the warped time at which each output step reads the input
    (linear interpolation, :func:`resample`). Um et al. (2017) interpolate the knots with a cubic
    spline; the piecewise-linear speed here gives a piecewise-quadratic time map.

    Args:
        x: Batch ``(B, C, T)``.
        generator: Source of randomness.
        sigma: Standard deviation of the speed at the knots (Um et al., 2017: 0.2 [recall]).
        knots: Number of inner knots (>= 1; Um et al.: 4 [recall]).
        p: Probability of warping each sample.

    Returns:
        Tensor of the shape, dtype and device of ``x``.
    """
    check_series(x)
    sigma = _check_sigma(sigma, "sigma")
    knots = check_int(knots, "knots", minimum=1)
    p = check_probability(p, "p")
    w = _work(x)
    b, _, t = w.shape
    if t == 1:
        return x.clone()
    speed_knots = 1.0 + sigma * _randn_like(w.new_empty((b, 1, knots + 2)), generator)
    speed = F.interpolate(speed_knots.clamp_min(0.1), size=t, mode="linear", align_corners=True)
    warped = torch.cumsum(speed.squeeze(1), dim=1)
    warped = warped - warped[:, :1]
    warped = warped / warped[:, -1:].clamp_min(torch.finfo(w.dtype).tiny) * (t - 1)
    sel = _coin(b, p, generator, x.device)
    return _select(sel, resample(w, warped), w).to(x.dtype)


def permute_segments(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    max_segments: int = 5,
    min_segments: int = 2,
    p: float = 1.0,
) -> Tensor:
    """Cut each selected series into random segments and put them back in a random order.

    Per sample, the number of segments is uniform in ``[min_segments, max_segments]`` (capped at
    ``T``), the cut points are distinct and uniform over the ``T - 1`` gaps, and the segments are
    shuffled by a uniformly random permutation (which may be the identity, with probability
    ``1 / n!``). All samples are processed at once: time steps are sorted by the random rank of
    their segment, then by time.

    Args:
        x: Batch ``(B, C, T)``.
        generator: Source of randomness.
        max_segments: Largest number of segments (TS-TCC: 5 [recall]).
        min_segments: Smallest number of segments (>= 1).
        p: Probability of permuting each sample.

    Returns:
        Tensor of the shape, dtype and device of ``x``; each output row is a permutation of the
        time steps of the input row.
    """
    check_series(x)
    min_segments = check_int(min_segments, "min_segments", minimum=1)
    max_segments = check_int(max_segments, "max_segments", minimum=min_segments)
    p = check_probability(p, "p")
    b, c, t = x.shape
    dev = x.device
    if t == 1:
        return x.clone()
    hi = min(max_segments, t)
    lo = min(min_segments, hi)
    n_seg = lo + (_rand((b,), generator, dev) * (hi - lo + 1)).long().clamp(max=hi - lo)
    # Cut points: the (n_seg - 1) gaps with the smallest random keys.
    gap_rank = torch.argsort(torch.argsort(_rand((b, t - 1), generator, dev), dim=1), dim=1)
    cut = gap_rank < (n_seg - 1).unsqueeze(1)  # (b, t - 1): a cut after step i
    seg_id = torch.cat(
        [torch.zeros(b, 1, dtype=torch.long, device=dev), torch.cumsum(cut.long(), dim=1)], dim=1
    )  # (b, t)
    seg_rank = torch.argsort(torch.argsort(_rand((b, hi), generator, dev), dim=1), dim=1)
    # Only ranks among the sample's own segments matter; unused segment ids never occur.
    key = seg_rank.gather(1, seg_id) * t + torch.arange(t, device=dev)
    order = torch.argsort(key, dim=1)
    sel = _coin(b, p, generator, dev)
    order = torch.where(sel.unsqueeze(1), order, torch.arange(t, device=dev).expand(b, t))
    return x.gather(2, order.unsqueeze(1).expand(b, c, t))


def crop(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    scale: Sequence[float] = (0.5, 1.0),
    size: int | None = None,
) -> Tensor:
    """Cut a random window of each series and resample it to ``size`` steps.

    The window length is ``scale`` times ``T`` (a fraction drawn uniformly from ``scale``, at least
    one step), its start uniform over the positions that keep it inside the series; it is read at
    ``size`` evenly spaced positions from its first to its last step with linear interpolation.
    A window of exactly ``size`` steps (``scale = (size / T, size / T)``) is therefore copied
    without interpolation: a plain random crop.

    Args:
        x: Batch ``(B, C, T)``.
        generator: Source of randomness.
        scale: Range of the window length as a fraction of ``T``, within (0, 1].
        size: Output length (default ``T``).

    Returns:
        Tensor ``(B, C, size)`` of the dtype and device of ``x``.
    """
    check_series(x)
    lo, hi = _range(scale, "scale", low=0.0, high=1.0, strict_low=True)
    b, _, t = x.shape
    size = t if size is None else check_int(size, "size", minimum=1)
    w = _work(x)
    u = _rand((b, 2), generator, x.device)
    length = torch.round((lo + (hi - lo) * u[:, 0]) * t).clamp(1, t)  # steps in the window
    start = torch.floor(u[:, 1] * (t - length + 1)).clamp(max=t - length)
    steps = torch.arange(size, device=x.device, dtype=torch.float32)
    stride = (length - 1) / max(size - 1, 1)
    pos = start.unsqueeze(1) + steps.unsqueeze(0) * stride.unsqueeze(1)
    return resample(w, pos).to(x.dtype)


def mask(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    ratio: float = 0.15,
    mode: str = "point",
    value: float = 0.0,
    p: float = 1.0,
) -> Tensor:
    """Set random time steps (all channels) of each selected sample to ``value``.

    ``mode="point"``: each time step is masked independently with probability ``ratio``.
    ``mode="span"``: one contiguous span of ``round(ratio * T)`` steps (at least one) at a uniform
    position.

    Args:
        x: Batch ``(B, C, T)``.
        generator: Source of randomness.
        ratio: Fraction of the time steps to mask, in [0, 1].
        mode: ``"point"`` or ``"span"``.
        value: Fill value.
        p: Probability of masking each sample.

    Returns:
        Tensor of the shape, dtype and device of ``x``.
    """
    check_series(x)
    ratio = check_probability(ratio, "ratio")
    check_choice(mode, "mode", MASK_MODES)
    p = check_probability(p, "p")
    if not math.isfinite(float(value)):
        raise ValueError(f"value must be finite; got {value!r}")
    b, _, t = x.shape
    dev = x.device
    if mode == "point":
        m = _rand((b, t), generator, dev) < ratio
    else:
        span = max(1, round(ratio * t)) if ratio > 0 else 0
        start = torch.floor(_rand((b,), generator, dev) * (t - span + 1)).long().unsqueeze(1)
        steps = torch.arange(t, device=dev).unsqueeze(0)
        m = (steps >= start) & (steps < start + span)
    m = m & _coin(b, p, generator, dev).unsqueeze(1)
    return x.masked_fill(m.unsqueeze(1), value)


# --------------------------------------------------------------------------------------------------
# composition


class SeriesAugment(nn.Module):
    """Composed time-series views, batched, each op applied per sample with its own probability.

    Order: permutation of segments, time warp, crop (resampled to the input length), scaling,
    jitter, masking. A probability of 0 disables an op. The defaults are TS-TCC's "strong"
    augmentation (permutation of up to 5 segments, then jitter) plus scaling; TS-TCC's "weak"
    view is scaling + jitter (``permute_p=0``).

    Example:
        >>> aug = SeriesAugment(warp_p=0.5)
        >>> aug.views(torch.randn(8, 3, 100), 2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 2, 3, 100])

    Args:
        permute_p: Probability of :func:`permute_segments`.
        max_segments: Largest number of segments.
        warp_p: Probability of :func:`time_warp`.
        warp_sigma: Speed standard deviation of the warp.
        warp_knots: Inner knots of the warp.
        crop_p: Probability of :func:`crop` (resampled to the input length).
        crop_scale: Window length range of the crop.
        scaling_p: Probability of :func:`scaling`.
        scaling_sigma: Standard deviation of the scaling factor.
        jitter_p: Probability of :func:`jitter`.
        jitter_sigma: Noise standard deviation.
        mask_p: Probability of :func:`mask`.
        mask_ratio: Fraction of masked time steps.
        mask_mode: ``"point"`` or ``"span"``.
    """

    def __init__(
        self,
        *,
        permute_p: float = 0.5,
        max_segments: int = 5,
        warp_p: float = 0.0,
        warp_sigma: float = 0.2,
        warp_knots: int = 4,
        crop_p: float = 0.0,
        crop_scale: Sequence[float] = (0.5, 1.0),
        scaling_p: float = 1.0,
        scaling_sigma: float = 0.1,
        jitter_p: float = 1.0,
        jitter_sigma: float = 0.05,
        mask_p: float = 0.0,
        mask_ratio: float = 0.15,
        mask_mode: str = "point",
    ) -> None:
        super().__init__()
        for name, v in (
            ("permute_p", permute_p),
            ("warp_p", warp_p),
            ("crop_p", crop_p),
            ("scaling_p", scaling_p),
            ("jitter_p", jitter_p),
            ("mask_p", mask_p),
            ("mask_ratio", mask_ratio),
        ):
            check_probability(v, name)
        check_int(max_segments, "max_segments", minimum=1)
        check_int(warp_knots, "warp_knots", minimum=1)
        for name, v in (
            ("warp_sigma", warp_sigma),
            ("scaling_sigma", scaling_sigma),
            ("jitter_sigma", jitter_sigma),
        ):
            _check_sigma(v, name)
        self.crop_scale = _range(crop_scale, "crop_scale", low=0.0, high=1.0, strict_low=True)
        check_choice(mask_mode, "mask_mode", MASK_MODES)
        self.permute_p, self.max_segments = float(permute_p), max_segments
        self.warp_p, self.warp_sigma, self.warp_knots = float(warp_p), float(warp_sigma), warp_knots
        self.crop_p = float(crop_p)
        self.scaling_p, self.scaling_sigma = float(scaling_p), float(scaling_sigma)
        self.jitter_p, self.jitter_sigma = float(jitter_p), float(jitter_sigma)
        self.mask_p, self.mask_ratio, self.mask_mode = float(mask_p), float(mask_ratio), mask_mode

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One augmented view of each series ``(B, C, T)``; same shape, dtype and device."""
        check_series(x)
        g = generator
        y = _work(x)
        if self.permute_p > 0:
            y = permute_segments(
                y,
                g,
                max_segments=self.max_segments,
                min_segments=min(2, self.max_segments),
                p=self.permute_p,
            )
        if self.warp_p > 0:
            y = time_warp(y, g, sigma=self.warp_sigma, knots=self.warp_knots, p=self.warp_p)
        if self.crop_p > 0:
            sel = _coin(y.shape[0], self.crop_p, g, y.device)
            y = _select(sel, crop(y, g, scale=self.crop_scale), y)
        if self.scaling_p > 0:
            y = scaling(y, g, sigma=self.scaling_sigma, p=self.scaling_p)
        if self.jitter_p > 0:
            y = jitter(y, g, sigma=self.jitter_sigma, p=self.jitter_p)
        if self.mask_p > 0:
            y = mask(y, g, ratio=self.mask_ratio, mode=self.mask_mode, p=self.mask_p)
        return y.to(x.dtype)

    def views(self, x: Tensor, n_views: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n_views`` independently augmented views of each series: ``(B, V, C, T)``."""
        check_series(x)
        check_int(n_views, "n_views", minimum=1)
        b, c, t = x.shape
        rep = x.unsqueeze(1).expand(b, n_views, c, t).reshape(b * n_views, c, t)
        return self.forward(rep, generator).view(b, n_views, c, t)
