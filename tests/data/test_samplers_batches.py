"""Invariants of the G-SimCLR, MCL and group-pair batch samplers (docs/methods.md 3.8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from contrastkit.data.samplers import (
    CellBatchSampler,
    ClusterSpreadBatchSampler,
    GroupPairSampler,
    mixed_radix_labels,
)


def _balanced_ids(k: int, per: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.arange(k).repeat(per)[torch.randperm(k * per, generator=g)]


# -- ClusterSpreadBatchSampler -----------------------------------------------------------------


@pytest.mark.parametrize("reshuffle", [True, False])
@pytest.mark.parametrize(("k", "batch"), [(8, 8), (12, 8), (16, 5), (64, 64)])
def test_spread_no_two_of_one_cluster_when_balanced(reshuffle: bool, k: int, batch: int) -> None:
    ids = _balanced_ids(k, per=7)
    sampler = ClusterSpreadBatchSampler(ids, batch, reshuffle=reshuffle, seed=3)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batches) == len(sampler) == ids.numel() // batch
        for b in batches:
            assert b.numel() == batch
            assert torch.unique(ids[b]).numel() == batch, (epoch, ids[b].tolist())


def test_spread_k_equals_batch_gives_one_of_each_cluster() -> None:
    ids = _balanced_ids(10, per=5)
    for b in ClusterSpreadBatchSampler(ids, 10).batches(0):
        assert sorted(ids[b].tolist()) == list(range(10))


def test_spread_epoch_covers_each_sample_once() -> None:
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    sampler = ClusterSpreadBatchSampler(ids, 3, drop_last=False)
    order = sampler.order(0)
    assert sorted(order.tolist()) == list(range(10))
    assert sum(b.numel() for b in sampler.batches(0)) == 10
    assert len(sampler) == 4


def test_spread_reference_order_without_reshuffle() -> None:
    # rank 0 of clusters 0,1,2 (in index order), then rank 1, ...: the reference's fixed order
    ids = torch.tensor([2, 0, 1, 0, 2, 1])
    sampler = ClusterSpreadBatchSampler(ids, 3, reshuffle=False)
    assert sampler.order(0).tolist() == [1, 2, 0, 3, 5, 4]
    assert sampler.order(5).tolist() == [1, 2, 0, 3, 5, 4]


def test_spread_unbalanced_shows_the_documented_limit() -> None:
    # cluster 0 has many members: late ranks hold only cluster 0, so a batch repeats it
    ids = torch.tensor([0] * 10 + [1, 2, 3])
    batches = ClusterSpreadBatchSampler(ids, 4, reshuffle=False).batches(0)
    assert torch.unique(ids[batches[0]]).numel() == 4
    assert any(torch.unique(ids[b]).numel() < b.numel() for b in batches)


def test_spread_determinism_and_reshuffling() -> None:
    ids = _balanced_ids(8, per=6)
    a = ClusterSpreadBatchSampler(ids, 8, seed=1)
    b = ClusterSpreadBatchSampler(ids, 8, seed=1)
    c = ClusterSpreadBatchSampler(ids, 8, seed=2)
    assert torch.equal(a.order(0), b.order(0))
    assert torch.equal(a.order(4), b.order(4))
    assert not torch.equal(a.order(0), a.order(1))
    assert not torch.equal(a.order(0), c.order(0))


def test_spread_set_epoch_drives_iteration_and_dataloader() -> None:
    ids = _balanced_ids(4, per=4)
    sampler = ClusterSpreadBatchSampler(ids, 4, seed=0)
    sampler.set_epoch(2)
    got = list(sampler)
    assert got == [b.tolist() for b in sampler.batches(2)]
    loader = DataLoader(TensorDataset(torch.arange(16), ids), batch_sampler=sampler)
    for idx, cl in loader:
        assert torch.unique(cl).numel() == 4
        assert torch.equal(ids[idx], cl)


def test_spread_accepts_numpy_and_lists() -> None:
    ids = np.array([0, 1, 0, 1])
    assert len(ClusterSpreadBatchSampler(ids, 2)) == 2
    assert len(ClusterSpreadBatchSampler([5, 7, 5, 7], 2)) == 2


def test_spread_errors() -> None:
    with pytest.raises(TypeError, match="integers"):
        ClusterSpreadBatchSampler(torch.rand(4), 2)
    with pytest.raises(ValueError, match="1-D"):
        ClusterSpreadBatchSampler(torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="batch_size"):
        ClusterSpreadBatchSampler([0, 1], 0)
    with pytest.raises(ValueError, match="no batch"):
        ClusterSpreadBatchSampler([0, 1], 3)
    with pytest.raises(TypeError, match="reshuffle"):
        ClusterSpreadBatchSampler([0, 1], 1, reshuffle=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch"):
        ClusterSpreadBatchSampler([0, 1], 1).set_epoch(-1)


# -- mixed_radix_labels ----------------------------------------------------------------------


def test_mixed_radix_formula() -> None:
    c0 = torch.tensor([0, 1, 2, 2, 9])
    c1 = torch.tensor([3, 0, 9, 9, 1])
    c2 = torch.tensor([1, 1, 0, 5, 0])
    assert mixed_radix_labels([c0], 10).tolist() == c0.tolist()
    assert mixed_radix_labels([c0, c1], 10).tolist() == [3, 10, 29, 29, 91]
    y2 = mixed_radix_labels([c0, c1, c2], 10)
    assert y2.tolist() == (c0 * 100 + c1 * 10 + c2).tolist()
    # not the reference loop's bug (current stage repeated): 1*100+1*10+1 = 111 for sample 0
    assert int(y2[0]) == 31


def test_mixed_radix_cells_are_intersections_of_stage_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    stages = [torch.randint(4, (200,), generator=g) for _ in range(3)]
    y = mixed_radix_labels(stages, 4)
    joint = torch.stack(stages, 1)
    for i in range(0, 200, 7):
        same = (y == y[i]).nonzero().flatten()
        assert torch.equal(same, (joint == joint[i]).all(1).nonzero().flatten())
    assert int(y.max()) < 4**3


def test_mixed_radix_errors() -> None:
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        mixed_radix_labels([torch.tensor([0, 3])], 3)
    with pytest.raises(ValueError, match="entries"):
        mixed_radix_labels([torch.tensor([0, 1]), torch.tensor([0])], 3)
    with pytest.raises(TypeError, match="sequence"):
        mixed_radix_labels(torch.tensor([0, 1]), 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int64"):
        mixed_radix_labels([torch.tensor([0])] * 20, 10)
    with pytest.raises(ValueError, match="at least one"):
        mixed_radix_labels([], 3)


# -- CellBatchSampler --------------------------------------------------------------------------


def test_cell_every_batch_inside_one_cell() -> None:
    g = torch.Generator().manual_seed(1)
    cells = mixed_radix_labels([torch.randint(3, (500,), generator=g) for _ in range(2)], 3)
    sampler = CellBatchSampler(cells, 16, seed=4)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batches) == len(sampler)
        seen: set[int] = set()
        for b in batches:
            assert b.numel() == 16
            assert torch.unique(cells[b]).numel() == 1
            assert not seen & set(b.tolist())  # no sample twice in an epoch
            seen |= set(b.tolist())


def test_cell_round_robin_and_leftovers() -> None:
    # cell 5: 7 samples -> 2 batches of 3 (1 left over); cell 9: 4 -> 1; cell 1: 2 -> none
    cells = torch.tensor([5] * 7 + [9] * 4 + [1] * 2)
    sampler = CellBatchSampler(cells, 3, seed=0)
    batches = sampler.batches(0)
    assert [int(cells[b[0]]) for b in batches] == [5, 9, 5]
    assert len(sampler) == 3 and sampler.samples_used == 9
    unshuffled = CellBatchSampler(cells, 3, shuffle=False).batches(0)
    assert [b.tolist() for b in unshuffled] == [[0, 1, 2], [7, 8, 9], [3, 4, 5]]


def test_cell_per_epoch_shuffle_and_determinism() -> None:
    cells = torch.arange(4).repeat_interleave(25)
    a, b = CellBatchSampler(cells, 8, seed=7), CellBatchSampler(cells, 8, seed=7)
    for e in range(3):
        assert all(torch.equal(x, y) for x, y in zip(a.batches(e), b.batches(e), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.batches(0), a.batches(1), strict=True))
    a.set_epoch(1)
    assert list(a) == [x.tolist() for x in b.batches(1)]


def test_cell_errors() -> None:
    with pytest.raises(ValueError, match="no cell holds"):
        CellBatchSampler(torch.arange(10), 2)
    with pytest.raises(ValueError, match="batch_size"):
        CellBatchSampler([0, 0], 0)
    with pytest.raises(TypeError, match="shuffle"):
        CellBatchSampler([0, 0], 1, shuffle="yes")  # type: ignore[arg-type]


# -- GroupPairSampler --------------------------------------------------------------------------


def test_pairs_share_group_and_differ() -> None:
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4])
    sampler = GroupPairSampler(groups, pairs_per_batch=2, seed=0, drop_last=False)
    assert sampler.num_pairs == 1 + 1 + 2 + 1
    for epoch in range(4):
        pairs = sampler.pairs(epoch)
        assert pairs.shape == (5, 2)
        assert bool((pairs[:, 0] != pairs[:, 1]).all())
        assert torch.equal(groups[pairs[:, 0]], groups[pairs[:, 1]])
        assert torch.unique(pairs).numel() == 10  # pairs are disjoint within an epoch
        assert 5 not in pairs.tolist()  # group 2 has one member: never paired


def test_pairs_spread_over_groups_when_balanced() -> None:
    groups = torch.arange(6).repeat(8)
    sampler = GroupPairSampler(groups, pairs_per_batch=6, seed=2)
    for b in sampler.batches(0):
        assert torch.unique(groups[b[:, 0]]).numel() == 6


def test_pairs_iteration_layout_and_determinism() -> None:
    groups = torch.arange(4).repeat(4)
    sampler = GroupPairSampler(groups, pairs_per_batch=4, seed=1)
    flat = next(iter(sampler))
    first = sampler.batches(0)[0]
    assert flat == first[:, 0].tolist() + first[:, 1].tolist()
    assert torch.equal(sampler.pairs(3), GroupPairSampler(groups, 4, seed=1).pairs(3))
    assert not torch.equal(sampler.pairs(0), sampler.pairs(1))


def test_pairs_errors() -> None:
    with pytest.raises(ValueError, match="no group id occurs twice"):
        GroupPairSampler([0, 1, 2])
    with pytest.raises(ValueError, match="no batch"):
        GroupPairSampler([0, 0, 1, 1], pairs_per_batch=3)
