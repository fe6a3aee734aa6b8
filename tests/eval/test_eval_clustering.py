"""Tests of contrastkit.eval.clustering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.eval import cluster_metrics, clustering_accuracy


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
