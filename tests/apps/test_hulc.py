"""The hulc app's generated captions and its retrieval galleries."""

from __future__ import annotations

import numpy as np
import torch

from contrastkit.apps.hulc import ITEM_WORDS, MOTION_WORDS, caption, galleries
from contrastkit.data.video import DIRECTIONS, SpriteVideos


def test_captions_name_the_item_and_its_motion() -> None:
    rng = np.random.default_rng(0)
    for item in range(10):
        for d, direction in enumerate(DIRECTIONS):
            text = caption(item, d, rng)
            assert any(w in text for w in ITEM_WORDS[item])
            assert any(m in text for m in MOTION_WORDS[direction])
            others = [m for k, ms in MOTION_WORDS.items() if k != direction for m in ms]
            assert not any(m in text for m in others)


def test_captions_vary_and_are_seeded() -> None:
    a = [caption(7, 1, np.random.default_rng(3)) for _ in range(3)]
    assert len(set(a)) == 1
    rng = np.random.default_rng(3)
    assert len({caption(7, 1, rng) for _ in range(40)}) > 5


def _videos(classes: list[int], directions: list[int]) -> SpriteVideos:
    n = len(classes)
    return SpriteVideos(
        videos=torch.zeros(n, 2, 1, 4, 4),
        classes=torch.tensor(classes),
        directions=torch.tensor(directions),
        speeds=torch.ones(n, dtype=torch.long),
        positions=torch.zeros(n, 2, 2, dtype=torch.long),
        has_distractor=torch.zeros(n, dtype=torch.bool),
    )


def test_each_gallery_holds_one_video_per_class_and_direction() -> None:
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 10, 400).tolist()
    directions = rng.integers(0, 4, 400).tolist()
    v = _videos(classes, directions)
    picks = galleries(v, 6, seed=2)
    assert len(picks) == 6
    for pick in picks:
        keys = (v.classes[pick] * 4 + v.directions[pick]).tolist()
        assert len(keys) == len(set(keys)) == len(set(zip(classes, directions, strict=True)))
    assert not all(torch.equal(picks[0], p) for p in picks[1:])  # galleries differ
