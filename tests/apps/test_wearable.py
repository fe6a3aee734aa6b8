"""Wearable app: the participant simulator's traits shape the pulse."""

from __future__ import annotations

import torch

from contrastkit.apps.wearable import _morphology, simulate_participants


def test_layout_traits_and_seeding() -> None:
    a = simulate_participants(10, 3, torch.Generator().manual_seed(0))
    b = simulate_participants(10, 3, torch.Generator().manual_seed(0))
    assert a.x.shape == (30, 1, 256) and a.x.dtype == torch.float32
    assert torch.equal(a.x, b.x)
    assert a.participant.tolist() == [i for i in range(10) for _ in range(3)]
    age, hr = a.traits[:, 0], a.traits[:, 1]
    assert bool(((age >= 20) & (age <= 80)).all()) and bool(((hr >= 45) & (hr <= 100)).all())


def test_age_brings_the_reflected_wave_earlier_and_larger() -> None:
    g = torch.Generator().manual_seed(0)
    waves = _morphology(torch.tensor([20.0] * 200 + [80.0] * 200), g)
    young, old = waves[:200, 1].mean(0), waves[200:, 1].mean(0)
    assert old[1] < young[1] - 0.1  # earlier phase
    assert old[0] > young[0] + 0.3  # larger amplitude
