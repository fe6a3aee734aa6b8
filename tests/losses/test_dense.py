"""region_pool, sample_pixels and RelationGraphLoss (contrastkit.losses.dense)."""

from __future__ import annotations

import pytest
import torch

from contrastkit.losses import RelationGraphLoss, region_pool, sample_pixels


def test_region_pool_is_the_mean_of_each_region() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(50, 4, generator=g)
    ids = torch.randint(0, 7, (50,), generator=g)
    pooled, present = region_pool(feats, ids, num_regions=9)
    assert pooled.shape == (9, 4)
    for r in range(9):
        members = feats[ids == r]
        assert bool(present[r]) == (len(members) > 0)
        expected = members.mean(0) if len(members) else torch.zeros(4)
        torch.testing.assert_close(pooled[r], expected)


def test_region_pool_weighs_regions_not_members_and_is_differentiable() -> None:
    feats = torch.tensor([[1.0], [1.0], [1.0], [5.0]], requires_grad=True)
    pooled, _ = region_pool(feats, torch.tensor([0, 0, 0, 1]))
    torch.testing.assert_close(pooled.detach(), torch.tensor([[1.0], [5.0]]))
    pooled.sum().backward()
    assert feats.grad is not None
    torch.testing.assert_close(feats.grad.flatten(), torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0]))


@pytest.mark.parametrize(
    ("ids", "error"),
    [
        (torch.tensor([0.0, 1.0]), ValueError),
        (torch.tensor([0, 5]), ValueError),
        ([0, 1], TypeError),
    ],
)
def test_region_pool_rejects_bad_ids(ids: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        region_pool(torch.zeros(2, 3), ids, num_regions=3)  # type: ignore[arg-type]


def test_sample_pixels_draws_per_class_within_the_mask() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.zeros(3, 10, 12, dtype=torch.long)
    labels[0, 2, :5] = 1  # image 0 has 5 foreground pixels
    labels[1, :, 3] = 1  # image 1 has 10
    index, label = sample_pixels(labels, 8, generator=g)
    assert torch.equal(labels[index[:, 0], index[:, 1], index[:, 2]], label)
    counts = {
        (int(i), int(c)): int(((index[:, 0] == i) & (label == c)).sum())
        for i in range(3)
        for c in range(2)
    }
    assert counts == {(0, 0): 8, (0, 1): 5, (1, 0): 8, (1, 1): 8, (2, 0): 8, (2, 1): 0}
    assert len({tuple(r) for r in index.tolist()}) == len(index)  # without replacement
    assert torch.all(index[1:, 0] >= index[:-1, 0])  # image by image


def test_sample_pixels_is_uniform_over_a_class() -> None:
    g = torch.Generator().manual_seed(2)
    labels = torch.zeros(400, 2, 2, dtype=torch.long)
    labels[:, 0, :] = 1
    index, label = sample_pixels(labels, 1, generator=g)
    fg = index[label == 1]
    share = (fg[:, 2] == 0).float().mean().item()
    assert 0.4 < share < 0.6


def test_relation_graph_loss_is_zero_when_the_graph_matches() -> None:
    z = torch.eye(4)
    z = torch.cat([z, z[:1]])  # row 4 equals row 0
    target = (z @ z.T).clamp(max=1)
    assert float(RelationGraphLoss()(z, target)) == pytest.approx(0.0, abs=1e-7)
    wrong = torch.zeros(5, 5)
    assert float(RelationGraphLoss()(z, wrong)) == pytest.approx(2 / 20)


def test_relation_graph_loss_training_pulls_related_pairs_together() -> None:
    torch.manual_seed(0)
    z = torch.randn(8, 6)
    group = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    target = (group[:, None] == group[None, :]).float()
    loss_fn = RelationGraphLoss()
    first = float(loss_fn(z, target))
    for _ in range(200):  # plain gradient descent on the embeddings
        z.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(z, target), z)
        z = (z - 0.5 * grad).detach()
    assert float(loss_fn(z, target)) < 0.1 * first


def test_relation_graph_loss_validates() -> None:
    with pytest.raises(ValueError):
        RelationGraphLoss()(torch.randn(4, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        RelationGraphLoss()(torch.randn(4, 3), torch.full((4, 4), 2.0))
    assert RelationGraphLoss(reduction="none")(torch.randn(4, 3), torch.zeros(4, 4)).shape == (4, 4)
