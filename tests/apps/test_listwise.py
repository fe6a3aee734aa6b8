"""The graded relevance of the listwise app (the Fashion-MNIST clothing tree)."""

from __future__ import annotations

import torch

from contrastkit.apps.listwise import BRANCH, graded_relevance

T_SHIRT, TROUSER, PULLOVER, DRESS, COAT, SANDAL, SHIRT, SNEAKER, BAG, BOOT = range(10)


def test_relevance_levels_follow_the_tree() -> None:
    q = torch.tensor([T_SHIRT, SNEAKER, BAG])
    d = torch.tensor([T_SHIRT, COAT, SHIRT, TROUSER, DRESS, SANDAL, BOOT, SNEAKER, BAG])
    rel = graded_relevance(q, d)
    assert rel[0].tolist() == [2, 1, 1, 0, 0, 0, 0, 0, 0]
    assert rel[1].tolist() == [0, 0, 0, 0, 0, 1, 1, 2, 0]
    assert rel[2].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 2]


def test_every_class_has_a_branch_and_relevance_is_symmetric() -> None:
    assert BRANCH.shape == (10,) and set(BRANCH.tolist()) == {0, 1, 2, 3, 4}
    y = torch.arange(10)
    rel = graded_relevance(y, y)
    assert torch.equal(rel, rel.T) and torch.equal(rel.diagonal(), torch.full((10,), 2.0))
