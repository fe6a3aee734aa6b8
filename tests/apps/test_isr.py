"""The positive mining of the isr app: bipartite matching within scenes, with its reliability."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from contrastkit.apps.isr import camera_a, camera_b, mine_pairs


def test_matching_recovers_a_hidden_permutation_within_scenes() -> None:
    gen = torch.Generator().manual_seed(0)
    za = F.normalize(torch.randn(12, 8, generator=gen), dim=1)
    perm = torch.randperm(12, generator=gen)
    zb = F.normalize(za[perm] + 0.05 * torch.randn(12, 8, generator=gen), dim=1)
    scene_a = torch.arange(12) // 4
    scene_b = scene_a[perm]
    pairs = mine_pairs(za, zb, scene_a, scene_b, temperature=0.05)
    assert len(pairs.a) == 12
    assert torch.equal(pairs.a, perm[pairs.b])  # b's row j holds a's item perm[j]
    assert torch.equal(scene_a[pairs.a], scene_b[pairs.b])
    assert bool((pairs.reliability > 0.5).all()) and bool((pairs.reliability <= 1).all())


def test_ambiguous_matches_are_less_reliable() -> None:
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clear = mine_pairs(za, za.clone(), torch.zeros(2), torch.zeros(2), temperature=0.1)
    blurred = F.normalize(torch.tensor([[1.0, 0.8], [0.8, 1.0]]), dim=1)
    vague = mine_pairs(za, blurred, torch.zeros(2), torch.zeros(2), temperature=0.1)
    assert bool((vague.reliability < clear.reliability).all())


def test_matching_is_restricted_to_scenes_and_handles_unequal_sizes() -> None:
    za = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    zb = za[[0, 1, 3]]
    pairs = mine_pairs(za, zb, torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 0, 1]), 0.05)
    assert len(pairs.a) == 3  # min(3, 2) in scene 0 + min(2, 1) in scene 1
    assert sorted(pairs.a.tolist()) == [0, 1, 3]


def test_cameras_keep_shape_and_range_and_differ() -> None:
    x = torch.rand(4, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    a, b = camera_a(x, gen), camera_b(x, gen)
    assert a.shape == b.shape == x.shape
    assert float(a.min()) >= 0 and float(b.max()) <= 1
    assert float((a - b).abs().mean()) > 0.05
