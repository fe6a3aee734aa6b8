"""The seeded beat simulator and baseline wander of contrastkit.data.biosignals."""

from __future__ import annotations

import pytest
import torch

from contrastkit.data.biosignals import ECG_WAVES, PPG_WAVES, baseline_wander, gaussian_beats


def _peaks(x: torch.Tensor, threshold: float) -> int:
    """Local maxima above ``threshold`` of a 1-D signal."""
    mid = x[1:-1]
    return int(((mid > x[:-2]) & (mid >= x[2:]) & (mid > threshold)).sum())


def test_shape_dtype_and_seeded_reproducibility() -> None:
    hr = torch.tensor([60.0, 90.0, 120.0])
    a = gaussian_beats(
        ECG_WAVES, hr, length=500, fs=100, generator=torch.Generator().manual_seed(3)
    )
    b = gaussian_beats(
        ECG_WAVES, hr, length=500, fs=100, generator=torch.Generator().manual_seed(3)
    )
    assert a.shape == (3, 500) and a.dtype == torch.float32
    assert torch.equal(a, b)


@pytest.mark.parametrize("rate", [48.0, 75.0, 132.0])
def test_one_r_peak_per_beat(rate: float) -> None:
    seconds = 10.0
    x = gaussian_beats(
        ECG_WAVES,
        torch.tensor([rate]),
        length=int(100 * seconds),
        fs=100,
        start_phase=torch.zeros(1),
    )[0]
    expected = rate / 60.0 * seconds
    assert abs(_peaks(x, 0.5) - expected) <= 1


def test_wave_amplitude_centre_and_width_are_respected() -> None:
    # one wave, period 1 s at 60 bpm, sampled at 1 kHz from phase 0: the peak sits at the centre
    waves = torch.tensor([[2.0, 0.4, 0.05]])
    x = gaussian_beats(
        waves, torch.tensor([60.0]), length=1000, fs=1000, start_phase=torch.zeros(1)
    )
    assert x.max().item() == pytest.approx(2.0, abs=1e-3)
    assert int(x[0].argmax()) == 400
    half = x[0] > 2.0 * torch.exp(torch.tensor(-0.5))  # within one width of the centre
    assert int(half.sum()) == pytest.approx(100, abs=2)


def test_batched_waves_differ_per_signal() -> None:
    waves = PPG_WAVES.expand(2, 2, 3).clone()
    waves[1, 1, 0] = 0.0  # no reflected wave in the second signal
    x = gaussian_beats(
        waves, torch.tensor([60.0, 60.0]), length=100, fs=100, start_phase=torch.zeros(2)
    )
    assert x[0, 55].item() > 0.4 and x[1, 55].item() < 0.05


def test_variability_changes_the_beat_times_but_not_their_number() -> None:
    kw = {"length": 3000, "fs": 100, "start_phase": torch.zeros(1), "modulation_hz": 0.2}
    steady = gaussian_beats(ECG_WAVES, torch.tensor([60.0]), **kw)[0]
    varied = gaussian_beats(
        ECG_WAVES,
        torch.tensor([60.0]),
        variability=0.2,
        generator=torch.Generator().manual_seed(0),
        **kw,
    )[0]
    assert not torch.allclose(steady, varied)
    assert abs(_peaks(varied, 0.5) - _peaks(steady, 0.5)) <= 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": 0},
        {"fs": 0.0},
        {"variability": 1.0},
        {"heart_rate": torch.tensor([0.0])},
        {"waves": torch.tensor([[1.0, 0.3, 0.0]])},
        {"waves": torch.ones(2, 4)},
        {"start_phase": torch.zeros(2)},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "waves": ECG_WAVES,
        "heart_rate": torch.tensor([60.0]),
        "length": 10,
        "fs": 100.0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        gaussian_beats(**args)  # type: ignore[arg-type]


def test_baseline_wander_is_slow_bounded_and_seeded() -> None:
    g = torch.Generator().manual_seed(1)
    x = baseline_wander(
        4, length=1000, fs=100, amplitude=0.2, max_hz=0.5, components=3, generator=g
    )
    assert x.shape == (4, 1000)
    assert x.abs().max().item() <= 0.2 * 3 / 3**0.5 + 1e-6
    # below 0.5 Hz at 100 Hz: neighbouring samples differ by at most 2 pi f A / fs per component
    assert (x[:, 1:] - x[:, :-1]).abs().max().item() < 0.02
    y = baseline_wander(
        4, length=1000, fs=100, amplitude=0.2, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(x, y)
    assert baseline_wander(2, length=5, fs=10, amplitude=0.0).abs().max().item() == 0.0
