"""Pseudo-labels by clustering: k-means (G-SimCLR) and MCL's stage clustering.

The denoising autoencoder whose codes G-SimCLR clusters is trained in the train layer
(``tests/train/test_autoencoder.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.data.pseudo_labels import as_float_samples, kmeans_labels, stage_clusters
from contrastkit.eval import clustering_accuracy


def _blobs(n_per: int, k: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 4
    y = torch.arange(k).repeat_interleave(n_per)
    return centres[y] + torch.randn(k * n_per, dim, generator=g), y


def test_kmeans_labels_and_errors() -> None:
    x, y = _blobs(20, 3, 5)
    labels, centres = kmeans_labels(x, 3, seed=0)
    assert centres.shape == (3, 5) and clustering_accuracy(y, labels) == 1.0
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_labels(x, 61)
    with pytest.raises(TypeError, match="floating"):
        kmeans_labels(torch.ones(4, 2, dtype=torch.long), 2)


def test_stage_clusters_use_directions_only() -> None:
    # two directions, wildly different norms: normalised clustering follows the direction
    g = torch.Generator().manual_seed(0)
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.arange(2).repeat(50)
    scale = torch.rand(100, 1, generator=g) * 100 + 0.1
    x = d[y] * scale + 0.01 * torch.randn(100, 2, generator=g)
    c = stage_clusters(x, 2, seed=0)
    assert c.dtype == torch.int64 and clustering_accuracy(y, c) == 1.0
    assert torch.equal(c, stage_clusters(x, 2, seed=0))
    with pytest.raises(ValueError, match="k must be"):
        stage_clusters(x, 101)
    with pytest.raises(ValueError, match="finite"):
        stage_clusters(torch.full((4, 2), float("nan")), 2)


def test_as_float_samples() -> None:
    x = as_float_samples(np.ones((3, 2), dtype=np.float32), "x")
    assert isinstance(x, torch.Tensor) and x.shape == (3, 2)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor or numpy array, got list"):
        as_float_samples([[1.0]], "x")
    with pytest.raises(ValueError, match="at least 2 dims"):
        as_float_samples(torch.ones(3), "x")
    with pytest.raises(TypeError, match="n_clusters must be an int, got float"):
        kmeans_labels(x, 2.0)  # type: ignore[arg-type]
