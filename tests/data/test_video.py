"""contrastkit.data.video: moving-sprite videos and CVRL's temporal-interval clip sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.data import moving_sprites, sample_clip_pairs
from contrastkit.data.video import (
    DIRECTIONS,
    consistent_clip_augment,
    gather_clips,
    interval_probabilities,
    sample_clip_starts,
)


def _sprites(m: int = 6, side: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(m, 1, side, side, generator=g) * 0.8 + 0.2, torch.arange(m) % 3


def test_videos_shape_range_and_labels() -> None:
    sprites, labels = _sprites()
    v = moving_sprites(sprites, labels, num_videos=20, frames=6, size=16, seed=1)
    assert v.videos.shape == (20, 6, 1, 16, 16) and v.videos.dtype == torch.float32
    assert float(v.videos.min()) >= 0 and float(v.videos.max()) <= 1
    assert len(v) == 20 and set(v.classes.tolist()) <= {0, 1, 2}
    assert set(v.directions.tolist()) <= set(range(len(DIRECTIONS)))


def test_main_item_moves_by_its_direction_and_speed() -> None:
    sprites, labels = _sprites()
    v = moving_sprites(sprites, labels, num_videos=30, frames=5, size=16, seed=2)
    step = (v.positions[:, 1:] - v.positions[:, :-1]) % 16
    expected = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}
    for n in range(30):
        dy, dx = expected[int(v.directions[n])]
        s = int(v.speeds[n])
        assert (step[n] == torch.tensor([dy * s % 16, dx * s % 16])).all()


def test_main_item_is_drawn_where_it_is() -> None:
    sprites, labels = _sprites()
    v = moving_sprites(
        sprites, labels, num_videos=8, frames=4, size=16, distractor_prob=0.0, seed=3
    )
    for n in range(8):
        for t in range(4):
            y, x = v.positions[n, t].tolist()
            frame = v.videos[n, t, 0].roll((-y, -x), dims=(0, 1))
            assert float(frame[:5, :5].sum()) > 0
            assert float(frame[5:, :].sum()) == 0 and float(frame[:, 5:].sum()) == 0


def test_distractor_appears_only_when_drawn_and_is_dimmer() -> None:
    sprites, labels = _sprites()
    v = moving_sprites(
        sprites, labels, num_videos=40, frames=3, size=16, distractor_prob=0.5, seed=4
    )
    assert 0 < int(v.has_distractor.sum()) < 40
    mass = v.videos.sum(dim=(1, 2, 3, 4))
    assert float(mass[v.has_distractor].mean()) > float(mass[~v.has_distractor].mean())


def test_videos_are_seeded() -> None:
    sprites, labels = _sprites()
    a = moving_sprites(sprites, labels, num_videos=5, frames=4, size=12, seed=7)
    b = moving_sprites(sprites, labels, num_videos=5, frames=4, size=12, seed=7)
    c = moving_sprites(sprites, labels, num_videos=5, frames=4, size=12, seed=8)
    assert torch.equal(a.videos, b.videos) and not torch.equal(a.videos, c.videos)


def test_bad_sprites_are_refused() -> None:
    with pytest.raises(ValueError, match="fit"):
        moving_sprites(torch.rand(2, 1, 20, 20), torch.arange(2), num_videos=1, size=16)
    with pytest.raises(ValueError, match="labels"):
        moving_sprites(torch.rand(2, 1, 4, 4), torch.arange(3), num_videos=1, size=16)


def test_interval_distribution_is_linear_and_decreasing() -> None:
    p = interval_probabilities(16, 8, power=1.0)
    assert p.shape == (9,) and float(p.sum()) == pytest.approx(1.0)
    assert bool((p[1:] < p[:-1]).all())
    m = 9
    expected = torch.tensor([m - t for t in range(m)], dtype=torch.float64)
    assert torch.allclose(p, expected / expected.sum())
    flatter = interval_probabilities(16, 8, power=4.0)
    assert float(flatter[0]) < float(p[0])  # higher powers move towards uniform


def test_sampled_intervals_follow_the_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = sample_clip_starts(40_000, 16, 8, generator=g)
    gap = (a - b).abs()
    freq = torch.bincount(gap, minlength=9).double() / gap.numel()
    assert torch.allclose(freq, interval_probabilities(16, 8), atol=0.01)
    assert bool((a >= 0).all() and (b >= 0).all() and (a <= 8).all() and (b <= 8).all())
    moved = gap > 0
    assert 0.45 < float((a[moved] > b[moved]).double().mean()) < 0.55  # the order is shuffled


def test_same_and_uniform_intervals() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = sample_clip_starts(500, 10, 4, generator=g, interval="same")
    assert torch.equal(a, b)
    a, b = sample_clip_starts(20_000, 10, 4, generator=g, interval="uniform")
    freq = torch.bincount((a - b).abs(), minlength=7).double() / 20_000
    assert torch.allclose(freq, torch.full((7,), 1 / 7, dtype=torch.float64), atol=0.015)


def test_clip_pairs_are_the_frames_at_their_starts_and_seeded() -> None:
    videos = torch.arange(3 * 10, dtype=torch.float32).view(3, 10, 1, 1, 1).expand(3, 10, 1, 2, 2)
    a1, b1, gap1 = sample_clip_pairs(videos, 4, generator=torch.Generator().manual_seed(5))
    a2, b2, gap2 = sample_clip_pairs(videos, 4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and torch.equal(gap1, gap2)
    frames_a = a1[:, :, 0, 0, 0]
    assert bool((frames_a[:, 1:] - frames_a[:, :-1] == 1).all())  # consecutive frames
    assert torch.equal((a1[:, 0, 0, 0, 0] - b1[:, 0, 0, 0, 0]).abs().long(), gap1)


def test_gather_clips_checks_its_starts() -> None:
    videos = torch.zeros(2, 6, 1, 3, 3)
    with pytest.raises(ValueError, match="starts"):
        gather_clips(videos, torch.tensor([0, 3]), 4)


def test_augmentation_is_the_same_for_every_frame_of_a_clip() -> None:
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(4, 1, 1, 12, 12, generator=g)
    clips = frame.expand(4, 5, 1, 12, 12).contiguous()
    out = consistent_clip_augment(clips, generator=g, noise=0.0)
    assert out.shape == clips.shape
    assert torch.allclose(out, out[:, :1].expand_as(out))  # one transform per clip
    assert not torch.allclose(out[0, 0], out[1, 0])  # different clips, different transforms


def test_augmentation_keeps_the_motion() -> None:
    sprites, labels = _sprites()
    v = moving_sprites(sprites, labels, num_videos=4, frames=4, size=16, distractor_prob=0, seed=9)
    g = torch.Generator().manual_seed(3)
    out = consistent_clip_augment(v.videos, generator=g, contrast=0.0, brightness=0.0, noise=0.0)
    for n in range(4):
        # a pure translation: every frame is the original frame rolled by the same offset
        shifts = []
        for t in range(4):
            found = [
                (dy, dx)
                for dy in range(16)
                for dx in range(16)
                if torch.equal(v.videos[n, t, 0].roll((dy, dx), dims=(0, 1)), out[n, t, 0])
            ]
            shifts.append(set(found))
        assert set.intersection(*shifts)
    assert np.isfinite(out.numpy()).all()
