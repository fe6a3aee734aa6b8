"""Tests of the graph views (contrastkit.views.graph)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from contrastkit.views import drop_edges, graph_view, knn_edges, mask_features


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def edges() -> Tensor:
    # A ring of 50 nodes, both directions.
    src = torch.arange(50)
    dst = (src + 1) % 50
    return torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)


def test_drop_edges(edges: Tensor) -> None:
    kept, keep = drop_edges(edges, 0.3, generator=gen(0))
    assert keep.shape == (100,) and keep.dtype == torch.bool
    assert torch.equal(kept, edges[:, keep]) and kept.dtype == edges.dtype
    assert 50 < kept.shape[1] < 90
    assert torch.equal(drop_edges(edges, 0.3, generator=gen(0))[0], kept)
    assert not torch.equal(drop_edges(edges, 0.3, generator=gen(1))[1], keep)
    assert drop_edges(edges, 0.0, generator=gen(0))[0].shape[1] == 100
    assert drop_edges(edges, 1.0, generator=gen(0))[0].shape[1] == 0
    und, _ = drop_edges(edges, 0.5, generator=gen(0), undirected=True)
    pairs = {(int(a), int(b)) for a, b in und.T}
    assert all((b, a) in pairs for a, b in pairs) and len(pairs) % 2 == 0
    empty, mask = drop_edges(torch.zeros(2, 0, dtype=torch.long), 0.5, undirected=True)
    assert empty.shape == (2, 0) and mask.shape == (0,)


def test_mask_features() -> None:
    x = torch.ones(40, 30)
    col = mask_features(x, 0.4, generator=gen(0))
    zero_cols = (col == 0).all(dim=0)
    assert bool(((col == 0) == zero_cols.unsqueeze(0)).all())  # same columns for every node
    assert 0 < int(zero_cols.sum()) < 30
    ent = mask_features(x, 0.4, generator=gen(0), mode="entry", value=-1.0)
    assert 0.3 < float((ent == -1).float().mean()) < 0.5
    assert len({tuple(r.tolist()) for r in ent}) > 1  # differs across nodes
    assert torch.equal(ent, mask_features(x, 0.4, generator=gen(0), mode="entry", value=-1.0))
    assert mask_features(x.double(), 0.4, generator=gen(0)).dtype == torch.float64


def test_knn_edges_matches_a_dense_reference() -> None:
    x = torch.randn(37, 5, generator=gen(0), dtype=torch.float64)
    for metric in ("cosine", "euclidean"):
        e = knn_edges(x, 4, metric=metric, chunk_size=8)
        assert e.shape == (2, 37 * 4) and e.dtype == torch.long
        assert bool((e[0] != e[1]).all())
        if metric == "cosine":
            xn = x / x.norm(dim=1, keepdim=True)
            score = xn @ xn.T
        else:
            score = -torch.cdist(x, x)
        score.fill_diagonal_(-torch.inf)
        ref = score.topk(4, dim=1).indices
        assert torch.equal(e[1].view(37, 4), ref)
        assert torch.equal(e[0], torch.arange(37).repeat_interleave(4))
    assert torch.equal(knn_edges(x, 4, chunk_size=5), knn_edges(x, 4, chunk_size=1000))


def test_knn_edges_symmetric_and_clusters() -> None:
    # Two well-separated clusters: no edge crosses.
    a = torch.randn(10, 3, generator=gen(1)) * 0.1 + 5
    b = torch.randn(10, 3, generator=gen(2)) * 0.1 - 5
    e = knn_edges(torch.cat([a, b]), 3, metric="euclidean", symmetric=True)
    assert bool(((e[0] < 10) == (e[1] < 10)).all())
    pairs = {(int(i), int(j)) for i, j in e.T}
    assert all((j, i) in pairs for i, j in pairs)
    assert len(pairs) == e.shape[1] and 60 <= e.shape[1] <= 120  # between N k and 2 N k


def test_graph_view_and_validation(edges: Tensor) -> None:
    x = torch.rand(50, 8)
    xv, ev = graph_view(x, edges, drop_edge_p=0.3, mask_feature_p=0.3, generator=gen(0))
    assert xv.shape == x.shape and ev.shape[0] == 2 and ev.shape[1] < edges.shape[1]
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        graph_view(torch.rand(10, 8), edges)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        drop_edges(edges.T)
    with pytest.raises(TypeError, match="integer"):
        drop_edges(edges.float())
    with pytest.raises(ValueError, match=r"k must be an int in \[1, N - 1\]"):
        knn_edges(x, 50)
    with pytest.raises(ValueError, match="metric"):
        knn_edges(x, 3, metric="manhattan")
    with pytest.raises(ValueError, match="mode"):
        mask_features(x, 0.2, mode="row")
