"""Graded nDCG@k and identity retrieval (contrastkit.eval.ranking) against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.eval.ranking import identity_retrieval, ndcg_at_k


def _ndcg_reference(q: torch.Tensor, g: torch.Tensor, rel: torch.Tensor, k: int) -> float:
    sims = F.normalize(q, dim=1) @ F.normalize(g, dim=1).T
    scores = []
    for i in range(q.shape[0]):
        order = sorted(range(g.shape[0]), key=lambda j: (-float(sims[i, j]), j))[:k]
        dcg = sum((2 ** float(rel[i, j]) - 1) / math.log2(r + 2) for r, j in enumerate(order))
        ideal_gains = sorted((2 ** float(x) - 1 for x in rel[i]), reverse=True)[:k]
        ideal = sum(gain / math.log2(r + 2) for r, gain in enumerate(ideal_gains))
        if ideal > 0:
            scores.append(dcg / ideal)
    return sum(scores) / len(scores)


def test_ndcg_matches_brute_force_and_chunking() -> None:
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(13, 5, generator=gen), torch.randn(40, 5, generator=gen)
    rel = torch.randint(0, 3, (13, 40), generator=gen).float()
    expected = _ndcg_reference(q, g, rel, 10)
    assert ndcg_at_k(q, g, rel, k=10) == pytest.approx(expected, abs=1e-9)
    assert ndcg_at_k(q, g, rel, k=10, chunk_size=4) == pytest.approx(expected, abs=1e-9)


def test_ndcg_is_one_for_the_ideal_ranking_and_lower_when_reversed() -> None:
    g = torch.eye(6)
    q = torch.linspace(6, 1, 6)[None, :]  # similarity falls with the index
    rel = torch.tensor([[2.0, 2.0, 1.0, 1.0, 0.0, 0.0]])
    assert ndcg_at_k(q, g, rel, k=4) == pytest.approx(1.0)
    assert ndcg_at_k(q, g, rel.flip(1), k=4) < 0.3


def test_ndcg_exclude_self_ignores_the_query_itself() -> None:
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    rel = torch.tensor([[5.0, 0.0, 1.0], [0.0, 5.0, 1.0], [1.0, 1.0, 5.0]])
    # without the self-match the only relevant item of query 0 is item 2, ranked last
    assert ndcg_at_k(x, x, rel, k=1, exclude_self=True) < ndcg_at_k(x, x, rel, k=1)
    with pytest.raises(ValueError, match="exclude_self"):
        ndcg_at_k(x[:2], x, rel[:2], exclude_self=True)


def test_ndcg_rejects_bad_relevance() -> None:
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="shape"):
        ndcg_at_k(x, x, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=">= 0"):
        ndcg_at_k(x, x, -torch.ones(3, 3))


def test_identity_retrieval_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(1)
    q, g = torch.randn(20, 6, generator=gen), torch.randn(30, 6, generator=gen)
    qid, gid = torch.randint(0, 8, (20,), generator=gen), torch.randint(0, 8, (30,), generator=gen)
    sims = F.normalize(q, dim=1) @ F.normalize(g, dim=1).T
    aps, r1 = [], []
    for i in range(20):
        order = torch.sort(sims[i], descending=True, stable=True).indices
        match = (gid[order] == qid[i]).tolist()
        if not any(match):
            continue
        hits, precisions = 0, []
        for pos, m in enumerate(match, start=1):
            if m:
                hits += 1
                precisions.append(hits / pos)
        aps.append(sum(precisions) / len(precisions))
        r1.append(float(match[0]))
    out = identity_retrieval(q, g, qid, gid, chunk_size=7)
    assert out["mAP"] == pytest.approx(sum(aps) / len(aps))
    assert out["R@1"] == pytest.approx(sum(r1) / len(r1))
    assert out["queries"] == len(aps)
    assert out["R@1"] <= out["R@5"] <= out["R@10"]


def test_identity_retrieval_perfect_and_no_match() -> None:
    x = torch.eye(4)
    out = identity_retrieval(x, x, torch.arange(4), torch.arange(4))
    assert out["R@1"] == 1.0 and out["mAP"] == 1.0
    with pytest.raises(ValueError, match="no query"):
        identity_retrieval(x, x, torch.arange(4), torch.arange(4) + 10)
