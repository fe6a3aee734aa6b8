r"""Seeded synthetic biosignals: quasi-periodic beats built from Gaussian waves, and baseline wander.

A heartbeat signal is modelled, as in McSharry et al., "A dynamical model for generating synthetic
electrocardiogram signals" (IEEE TBME, 2003), as a sum of Gaussian waves placed at fixed *phases* of
the cardiac cycle, so the waves stretch and shrink with the beat period. For wave ``k`` with
amplitude ``a_k``, phase centre ``c_k`` and phase width ``w_k`` (fractions of one beat), and the beat
phase ``phi(t)`` (the running integral of the instantaneous heart rate, in beats):

.. math::
    x(t) = \sum_k a_k \exp\Big(-\frac{d(\phi(t) - c_k)^2}{2 w_k^2}\Big),
    \qquad d(u) = u - \mathrm{round}(u) \in [-\tfrac12, \tfrac12)

The instantaneous rate is ``hr (1 + v sin(2 pi f_r t + theta))``: a slow sinusoidal modulation of
relative depth ``v`` (respiratory sinus arrhythmia) at ``f_r`` Hz with a random phase ``theta``.

- :func:`gaussian_beats`: a batch of such signals, one set of waves and one heart rate per signal.
- :data:`ECG_WAVES`: P, Q, R, S, T waves of a textbook ECG lead II beat (amplitudes in mV-like units).
- :data:`PPG_WAVES`: the systolic peak and the reflected (diastolic) wave of a fingertip / wrist
  photoplethysmogram pulse; a stiffer artery brings the reflected wave earlier and makes it larger.
- :func:`baseline_wander`: a smooth random baseline (a sum of slow sinusoids), the drift of a real
  recording.

These are simulators of *plausible shapes*, not physiological models: the applications that use them
(COMET's patient hierarchy, the wearable foundation model's participant traits) say so.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit._validation import check_int, check_positive, check_tensor

__all__ = ["ECG_WAVES", "PPG_WAVES", "baseline_wander", "gaussian_beats"]

#: ``(K, 3)`` rows ``(amplitude, phase centre, phase width)`` of the P, Q, R, S, T waves of one ECG
#: beat, the R peak at phase 0.3 (after McSharry et al., 2003, with widths as fractions of a beat).
ECG_WAVES = torch.tensor(
    [
        [0.15, 0.12, 0.030],  # P
        [-0.12, 0.27, 0.010],  # Q
        [1.00, 0.30, 0.012],  # R
        [-0.20, 0.33, 0.010],  # S
        [0.30, 0.60, 0.050],  # T
    ]
)

#: ``(K, 3)`` rows ``(amplitude, phase centre, phase width)`` of one PPG pulse: the systolic peak and
#: the reflected (diastolic) wave.
PPG_WAVES = torch.tensor(
    [
        [1.00, 0.25, 0.070],  # systolic peak
        [0.45, 0.55, 0.090],  # reflected / diastolic wave
    ]
)


def _check_batch(x: object, name: str, shape: tuple[int, ...]) -> Tensor:
    t = check_tensor(x, name)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    return t


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator)


def gaussian_beats(
    waves: Tensor,
    heart_rate: Tensor,
    *,
    length: int,
    fs: float,
    start_phase: Tensor | None = None,
    variability: float = 0.0,
    modulation_hz: float = 0.25,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A batch of quasi-periodic beat signals, each a sum of Gaussian waves at fixed beat phases.

    Args:
        waves: ``(B, K, 3)`` (or ``(K, 3)``, shared by every signal) rows ``(amplitude, phase
            centre, phase width)``; centres and widths are fractions of one beat, widths > 0.
        heart_rate: ``(B,)`` mean rates in beats per minute (> 0).
        length: Samples per signal (>= 1).
        fs: Sampling rate in Hz (> 0).
        start_phase: ``(B,)`` beat phase at the first sample (None: uniform random in [0, 1)).
        variability: Relative depth ``v`` of the sinusoidal rate modulation, in [0, 1).
        modulation_hz: Frequency ``f_r`` of the rate modulation in Hz (> 0).
        generator: Source of the random start phases and modulation phases.

    Returns:
        float32 ``(B, length)``.

    Raises:
        ValueError: A shape or a setting is out of range.
    """
    length = check_int(length, "length", minimum=1)
    fs = check_positive(fs, "fs")
    modulation_hz = check_positive(modulation_hz, "modulation_hz")
    if not (isinstance(variability, int | float) and 0.0 <= variability < 1.0):
        raise ValueError(f"variability must be a number in [0, 1); got {variability!r}")
    hr = check_tensor(heart_rate, "heart_rate")
    if hr.dim() != 1 or hr.shape[0] < 1:
        raise ValueError(f"heart_rate must have shape (B,) with B >= 1; got {tuple(hr.shape)}")
    b = hr.shape[0]
    hr = _check_batch(hr, "heart_rate", (b,)).float()
    if bool((hr <= 0).any()):
        raise ValueError("heart_rate must be > 0 beats per minute")
    w = check_tensor(waves, "waves")
    if w.dim() == 2:
        w = w.unsqueeze(0).expand(b, *w.shape)
    if w.dim() != 3 or w.shape[0] != b or w.shape[2] != 3 or w.shape[1] < 1:
        raise ValueError(f"waves must have shape (K, 3) or ({b}, K, 3); got {tuple(waves.shape)}")
    w = _check_batch(w, "waves", tuple(w.shape)).float()
    if bool((w[..., 2] <= 0).any()):
        raise ValueError("wave widths (waves[..., 2]) must be > 0")
    if start_phase is None:
        phase0 = _uniform((b,), generator)
    else:
        phase0 = _check_batch(start_phase, "start_phase", (b,)).float()
    t = torch.arange(length, dtype=torch.float32) / fs  # (T,)
    theta = 2 * math.pi * _uniform((b,), generator)
    omega = 2 * math.pi * modulation_hz
    # phi(t) = phi0 + hr/60 * (t + v/omega * (cos(theta) - cos(omega t + theta))): the exact
    # integral of hr/60 * (1 + v sin(omega t + theta)).
    wobble = (torch.cos(theta)[:, None] - torch.cos(omega * t[None] + theta[:, None])) / omega
    phase = phase0[:, None] + (hr[:, None] / 60.0) * (t[None] + variability * wobble)  # (B, T)
    d = phase[:, None, :] - w[:, :, 1:2]  # (B, K, T)
    d = d - torch.round(d)
    bumps = w[:, :, 0:1] * torch.exp(-0.5 * (d / w[:, :, 2:3]) ** 2)
    return bumps.sum(dim=1)


def baseline_wander(
    batch: int,
    *,
    length: int,
    fs: float,
    amplitude: float = 0.1,
    max_hz: float = 0.5,
    components: int = 3,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Smooth random baselines: sums of ``components`` sinusoids below ``max_hz``.

    Each component has a uniform random frequency in ``(0, max_hz]``, phase, and amplitude in
    ``[0, amplitude]``; the sum is divided by ``sqrt(components)`` so its size does not grow with
    the number of components.

    Args:
        batch: Number of signals ``B`` (>= 1).
        length: Samples per signal (>= 1).
        fs: Sampling rate in Hz (> 0).
        amplitude: Largest amplitude of a component (>= 0).
        max_hz: Highest frequency in Hz (> 0).
        components: Sinusoids per signal (>= 1).
        generator: Source of randomness.

    Returns:
        float32 ``(B, length)``.
    """
    batch = check_int(batch, "batch", minimum=1)
    length = check_int(length, "length", minimum=1)
    components = check_int(components, "components", minimum=1)
    fs = check_positive(fs, "fs")
    max_hz = check_positive(max_hz, "max_hz")
    amplitude = check_positive(amplitude, "amplitude", allow_zero=True)
    t = torch.arange(length, dtype=torch.float32) / fs
    freq = max_hz * (1.0 - _uniform((batch, components, 1), generator))  # (0, max_hz]
    phase = 2 * math.pi * _uniform((batch, components, 1), generator)
    amp = amplitude * _uniform((batch, components, 1), generator)
    waves = amp * torch.sin(2 * math.pi * freq * t[None, None] + phase)
    return waves.sum(dim=1) / math.sqrt(components)
