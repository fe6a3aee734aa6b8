"""Tests of the rotation and jigsaw pretext tasks (docs/methods.md 3.9)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from contrastkit.views import (
    JigsawPretext,
    RotationPretext,
    ViewAugment,
    ViewConfig,
)
from contrastkit.views.pretext import (
    PAPER_START_EPOCH,
    PRETEXT_WEIGHT,
    jigsaw_batch,
    jigsaw_permutations,
    random_rotation_batch,
    rotation_batch,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _encoder(channels: int, dim: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, dim, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


# --- rotation -------------------------------------------------------------------------------------


def test_rotation_labels_match_the_rotated_images() -> None:
    x = torch.rand(3, 2, 6, 6, generator=gen(0))
    inputs, labels = rotation_batch(x)
    assert inputs.shape == (12, 2, 6, 6) and labels.tolist() == [0, 1, 2, 3] * 3
    for i in range(12):
        # Undo k clockwise quarter turns with k counter-clockwise ones.
        back = torch.rot90(inputs[i], int(labels[i]), dims=(-2, -1))
        assert torch.equal(back, x[i // 4])
    # Clockwise: after one quarter turn the top-left pixel is at the top-right.
    marker = torch.zeros(1, 1, 4, 4)
    marker[..., 0, 0] = 1.0
    rotated, _ = rotation_batch(marker)
    assert float(rotated[1, 0, 0, 3]) == 1.0
    assert float(rotated[2, 0, 3, 3]) == 1.0 and float(rotated[3, 0, 3, 0]) == 1.0


def test_rotation_batch_augments_each_copy() -> None:
    x = torch.rand(2, 1, 8, 8, generator=gen(0))
    aug = ViewAugment(ViewConfig.identity(noise_p=1.0, noise_std=(0.05, 0.05)))
    inputs, _ = rotation_batch(x, augment=aug, generator=gen(1))
    assert inputs.shape == (8, 1, 8, 8)
    plain, _ = rotation_batch(x)
    assert not torch.equal(inputs, plain)
    again, _ = rotation_batch(x, augment=aug, generator=gen(1))
    assert torch.equal(inputs, again)
    with pytest.raises(ValueError, match="square"):
        rotation_batch(torch.rand(2, 1, 8, 6))


def test_rotation_pretext_loss_schedule_and_gradients() -> None:
    torch.manual_seed(0)
    enc = _encoder(1)
    task = RotationPretext(8, weight=0.5, start_epoch=2)
    assert task.weight_at(0) == 0.0 and task.weight_at(1) == 0.0 and task.weight_at(2) == 0.5
    x = torch.rand(4, 1, 8, 8, generator=gen(0))
    off = task(enc, x, epoch=1)
    assert float(off.loss) == 0.0 and off.weight == 0.0 and not off.loss.requires_grad
    task.eval()
    on = task(enc, x, epoch=2)
    inputs, labels = rotation_batch(x)
    ce = nn.functional.cross_entropy(task.head(enc(inputs)), labels)
    torch.testing.assert_close(on.loss, 0.5 * ce)
    torch.testing.assert_close(on.cross_entropy, ce.detach())
    assert 0.0 <= float(on.accuracy) <= 1.0 and on.weight == 0.5
    on.loss.backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert all(p.grad is not None for p in task.head.parameters())
    default = RotationPretext(2048)
    assert default.weight == PRETEXT_WEIGHT == 0.3 and default.start_epoch == 0
    assert PAPER_START_EPOCH == 40
    with pytest.raises(ValueError, match="start_epoch"):
        RotationPretext(8, start_epoch=-1)
    with pytest.raises(ValueError, match="weight"):
        RotationPretext(8, weight=-0.1)


def test_random_rotation_labels_match_and_cover_all_turns() -> None:
    x = torch.rand(64, 2, 6, 6, generator=gen(0))
    inputs, labels = random_rotation_batch(x, generator=gen(3))
    assert inputs.shape == x.shape and labels.shape == (64,) and labels.dtype == torch.int64
    assert set(labels.tolist()) == {0, 1, 2, 3}
    for i in range(64):
        assert torch.equal(torch.rot90(inputs[i], int(labels[i]), dims=(-2, -1)), x[i])
    again, labels2 = random_rotation_batch(x, generator=gen(3))
    assert torch.equal(again, inputs) and torch.equal(labels, labels2)
    _, other = random_rotation_batch(x, generator=gen(4))
    assert not torch.equal(labels, other)


def test_rotation_pretext_one_turn_per_image() -> None:
    torch.manual_seed(0)
    enc = _encoder(1)
    task = RotationPretext(8, rotations_per_image=1).eval()
    x = torch.rand(5, 1, 8, 8, generator=gen(0))
    out = task(enc, x, epoch=0, generator=gen(7))
    inputs, labels = random_rotation_batch(x, generator=gen(7))
    ce = nn.functional.cross_entropy(task.head(enc(inputs)), labels)
    torch.testing.assert_close(out.cross_entropy, ce.detach())
    for bad in (2, 0, True):
        with pytest.raises(ValueError, match="rotations_per_image"):
            RotationPretext(8, rotations_per_image=bad)


# --- jigsaw ---------------------------------------------------------------------------------------


def test_jigsaw_permutations_are_fixed_distinct_and_spread() -> None:
    p = jigsaw_permutations(35)
    assert p.shape == (35, 9) and p.dtype == torch.long
    assert torch.equal(p.sort(dim=1).values, torch.arange(9).expand(35, 9))
    assert len({tuple(r.tolist()) for r in p}) == 35
    assert torch.equal(p, jigsaw_permutations(35, seed=0))  # deterministic
    assert not torch.equal(p, jigsaw_permutations(35, seed=1))
    d = (p.unsqueeze(0) != p.unsqueeze(1)).sum(-1)
    off_diagonal = d[~torch.eye(35, dtype=torch.bool)]
    assert int(off_diagonal.min()) >= 7  # measured: 7; a random set of 35 goes down to 2-3


def test_jigsaw_permutations_follow_the_greedy_rule() -> None:
    # 2 x 2 grid: check every greedy step against a brute force over all 24 permutations.
    p = jigsaw_permutations(6, grid=2, seed=3)
    every = torch.tensor(list(itertools.permutations(range(4))))
    for step in range(1, 6):
        chosen = p[:step]
        dist = (every.unsqueeze(1) != chosen.unsqueeze(0)).sum(-1)  # (24, step)
        best_min = int(dist.min(1).values.max())
        row = (every == p[step]).all(1).nonzero().item()
        assert int(dist[row].min()) == best_min


def test_jigsaw_labels_match_the_shuffled_tiles() -> None:
    x = torch.rand(4, 2, 13, 12, generator=gen(0))  # 13 rows: one spare row is cut
    perms = jigsaw_permutations(10)
    tiles, labels = jigsaw_batch(x, perms, generator=gen(1))
    assert tiles.shape == (4, 9, 2, 4, 4) and labels.shape == (4,)
    assert bool(((labels >= 0) & (labels < 10)).all())
    body = x[:, :, 0:12, 0:12]
    for b in range(4):
        for t in range(9):
            src = int(perms[labels[b], t])
            i, j = divmod(src, 3)
            assert torch.equal(tiles[b, t], body[b, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4])
    # Undoing the permutation restores the tile order.
    inverse = torch.argsort(perms[labels], dim=1)
    restored = tiles.gather(1, inverse.view(4, 9, 1, 1, 1).expand_as(tiles))
    grid = restored.view(4, 3, 3, 2, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(4, 2, 12, 12)
    assert torch.equal(grid, body)
    again, labels2 = jigsaw_batch(x, perms, generator=gen(1))
    assert torch.equal(again, tiles) and torch.equal(labels2, labels)


def test_jigsaw_batch_resizes_and_augments() -> None:
    x = torch.rand(2, 3, 12, 12, generator=gen(0))
    perms = jigsaw_permutations(5)
    tiles, _ = jigsaw_batch(x, perms, generator=gen(0), tile_size=12)
    assert tiles.shape == (2, 9, 3, 12, 12)
    assert float(tiles.min()) >= 0 and float(tiles.max()) <= 1
    aug = ViewAugment(ViewConfig.identity(noise_p=1.0, noise_std=(0.1, 0.1)))
    noisy, _ = jigsaw_batch(x, perms, generator=gen(0), augment=aug)
    plain, _ = jigsaw_batch(x, perms, generator=gen(0))
    assert noisy.shape == plain.shape and not torch.equal(noisy, plain)
    with pytest.raises(ValueError, match="permutations"):
        jigsaw_batch(x, torch.zeros(3, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="too small"):
        jigsaw_batch(torch.rand(1, 1, 2, 2), perms)


def test_jigsaw_pretext_loss() -> None:
    torch.manual_seed(0)
    enc = _encoder(1, dim=16)
    task = JigsawPretext(16, n_permutations=12, weight=0.3, tile_size=8)
    assert task.permutations.shape == (12, 9)
    x = torch.rand(3, 1, 9, 9, generator=gen(0))
    task.eval()
    out = task(enc, x, epoch=0, generator=gen(5))
    tiles, labels = jigsaw_batch(x, task.permutations, generator=gen(5), tile_size=8)
    h = enc(tiles.flatten(0, 1)).view(3, 9, -1)
    ce = nn.functional.cross_entropy(task.head(h), labels)
    torch.testing.assert_close(out.loss, 0.3 * ce)
    out.loss.backward()
    assert all(p.grad is not None for p in enc.parameters())
    late = JigsawPretext(16, n_permutations=4, start_epoch=PAPER_START_EPOCH)
    assert float(late(enc, x, epoch=39).loss) == 0.0
    assert late(enc, x, epoch=40).weight == 0.3
