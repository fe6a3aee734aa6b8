"""Tests of contrastkit.eval.clustering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.eval import cluster_metrics, clustering_accuracy, modularity


def _separated(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(25)
    x = torch.eye(8)[labels] * 10 + 0.1 * torch.randn(100, 8, generator=g)
    return x, labels


def test_perfectly_separated_clusters() -> None:
    x, labels = _separated()
    metrics = cluster_metrics(x, labels, n_init=3)
    assert set(metrics) == {"nmi", "ari", "acc"}
    assert metrics["nmi"] == pytest.approx(1.0)
    assert metrics["ari"] == pytest.approx(1.0)
    assert metrics["acc"] == 1.0
    permuted = torch.tensor([2, 0, 3, 1])[labels]
    assert cluster_metrics(x.numpy(), permuted.numpy(), n_init=3) == metrics


def test_normalize_option_changes_geometry() -> None:
    # Two clusters along one ray at radii 1 and 10: separable in Euclidean space, not on the sphere.
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat_interleave(50)
    direction = torch.tensor([1.0, 0.0])
    x = direction * torch.tensor([1.0, 10.0])[labels][:, None]
    x = x + 0.05 * torch.randn(100, 2, generator=g)
    assert cluster_metrics(x, labels, normalize=False, n_init=3)["acc"] == 1.0
    assert cluster_metrics(x, labels, normalize=True, n_init=3)["acc"] < 0.9


def test_clustering_accuracy_hand_cases() -> None:
    # pred 1 -> class 0 (2 hits), pred 0 -> class 1 (2 hits), pred 2 -> class 2 (1 hit): 5 / 6.
    assert clustering_accuracy(np.array([0, 0, 0, 1, 1, 2]), np.array([1, 1, 0, 0, 0, 2])) == (
        pytest.approx(5 / 6)
    )
    # More clusters than classes: the unmatched cluster's samples are errors.
    assert clustering_accuracy(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 2, 2])) == 0.75
    # Any integer values, any permutation.
    assert clustering_accuracy(np.array([5, 5, -1, -1]), np.array([9, 9, 3, 3])) == 1.0


def test_n_clusters_option() -> None:
    x, labels = _separated()
    metrics = cluster_metrics(x, labels, n_clusters=8, n_init=2)
    assert metrics["acc"] < 1.0
    assert 0.0 <= metrics["nmi"] <= 1.0


def test_bad_inputs() -> None:
    x, labels = _separated()
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_metrics(x, labels, n_clusters=101)
    with pytest.raises(ValueError, match="shape"):
        cluster_metrics(x, labels[:50])
    with pytest.raises(ValueError, match="NaN"):
        cluster_metrics(torch.full((4, 2), float("nan")), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="n_init"):
        cluster_metrics(x, labels, n_init=0)
    with pytest.raises(ValueError, match="shape"):
        clustering_accuracy(np.array([0, 1, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="non-empty"):
        clustering_accuracy(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    with pytest.raises(TypeError, match="integers"):
        clustering_accuracy(np.array([0.0, 1.0]), np.array([0, 1]))


def _two_triangles() -> torch.Tensor:
    """Two triangles joined by the edge 2-3, each edge listed once (directed)."""
    a = torch.zeros(6, 6)
    for i, j in ((0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)):
        a[i, j] = 1.0
    return a


def test_modularity_by_hand() -> None:
    a = _two_triangles()
    split = torch.tensor([0, 0, 0, 1, 1, 1])
    # m = 7 edges, 6 inside; each side has degree 7 of 14: Q = 6/7 - 2 (7/14)^2
    assert modularity(a, split) == pytest.approx(6 / 7 - 0.5, abs=1e-12)
    # one cluster: Q = 1 - 1 = 0; a worse cut (2-3 together, triangles split) scores lower
    assert modularity(a, torch.zeros(6, dtype=torch.long)) == pytest.approx(0.0, abs=1e-12)
    assert modularity(a, torch.tensor([0, 0, 1, 1, 2, 2])) < modularity(a, split)


def test_modularity_symmetrises_by_max_drops_self_loops_and_takes_sparse() -> None:
    a = _two_triangles()
    split = np.array([5, 5, 5, 9, 9, 9])  # any integer ids
    expected = modularity(a, split)
    both_ways = torch.maximum(a, a.T) + torch.eye(6)  # each edge twice, plus self loops
    assert modularity(both_ways, split) == pytest.approx(expected, abs=1e-12)
    assert modularity(a.to_sparse(), split) == pytest.approx(expected, abs=1e-12)
    weighted = a.clone()
    weighted[2, 3] = 3.0  # the joining edge weighs three: m = 9, 2m = 18, degrees 9 and 9
    assert modularity(weighted, split) == pytest.approx(6 / 9 - 2 * (9 / 18) ** 2, abs=1e-12)
    assert modularity(torch.zeros(3, 3), np.array([0, 1, 2])) == 0.0


def test_modularity_errors() -> None:
    a = _two_triangles()
    with pytest.raises(ValueError, match="square"):
        modularity(a[:5], np.zeros(6, dtype=np.int64))
    with pytest.raises(ValueError, match="one label per sample"):
        modularity(a, np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        modularity(-a, np.zeros(6, dtype=np.int64))
