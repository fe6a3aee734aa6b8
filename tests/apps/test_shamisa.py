"""SHAMISA app: graded distortions and the soft relation targets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")

from contrastkit.apps.shamisa import DISTORTIONS, distort, relation_targets


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_distortion_grows_with_level(kind: str) -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((28, 28), dtype=np.float32)
    image[6:22, 8:20] = 0.8
    image[10:14, :] = 0.3
    np.testing.assert_array_equal(distort(image, kind, 0, rng), image)
    errors = [
        np.mean([np.abs(distort(image, kind, lv, rng) - image).mean() for _ in range(4)])
        for lv in range(5)
    ]
    assert errors[0] == 0 and all(a < b for a, b in itertools.pairwise(errors))


def test_relation_targets() -> None:
    types = torch.tensor([0, 0, 0, 1, 1])
    levels = torch.tensor([0, 1, 4, 1, 0])
    r = relation_targets(types, levels, other_type=0.3)
    torch.testing.assert_close(r, r.T)
    assert torch.allclose(r.diagonal(), torch.ones(5))
    assert r[1, 3] == pytest.approx(0.3)  # other type, same level
    assert r[0, 3] == pytest.approx(float(np.exp(-0.5)))  # pristine relates to every type
    assert r[1, 2] < r[0, 1]  # larger level gap, weaker relation
    assert r[0, 4] == pytest.approx(1.0)  # two pristine images
