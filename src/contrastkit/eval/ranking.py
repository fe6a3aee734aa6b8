"""Ranking quality of embeddings: graded nDCG@k and identity retrieval (CMC rank-k and mAP).

- :func:`ndcg_at_k`: queries rank a gallery by cosine similarity; the gain of a gallery item is
  ``2^r - 1`` for its graded relevance ``r`` to the query (Järvelin & Kekäläinen's DCG with the
  exponential gain), discounted by ``1 / log2(rank + 1)`` and divided by the ideal ordering's DCG.
- :func:`identity_retrieval`: re-identification metrics, as in person re-ID: a query is answered
  by every gallery item with its identity; rank-k (CMC) is the share of queries with a match among
  the k most similar items, mAP the mean over queries of the average precision of the full ranking.

Similarities are cosine (both sides are L2-normalised); queries are processed in row blocks of
``chunk_size``, so peak memory is ``chunk_size * N_gallery`` similarities. Ties in similarity are
broken by gallery order (``torch.sort`` is stable).

>>> import torch
>>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
>>> g = torch.tensor([[1.0, 0.1], [0.1, 1.0], [0.7, 0.7]])
>>> ndcg_at_k(q, g, torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]]), k=2)
1.0
>>> identity_retrieval(q, g, torch.tensor([0, 1]), torch.tensor([1, 0, 0]))["R@1"]
0.0
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_int
from contrastkit.eval.features import _as_features, _as_labels, _check_same_dim

__all__ = ["identity_retrieval", "ndcg_at_k"]


def _check_relevance(relevance: object, nq: int, ng: int) -> Tensor:
    t = torch.as_tensor(relevance)
    if t.dim() != 2 or tuple(t.shape) != (nq, ng):
        raise ValueError(
            f"relevance must have shape ({nq}, {ng}) (queries, gallery); got {tuple(t.shape)}"
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"relevance must hold real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError("relevance must be finite and >= 0")
    return t


@torch.no_grad()
def ndcg_at_k(
    queries: Tensor,
    gallery: Tensor,
    relevance: Tensor,
    *,
    k: int = 10,
    exclude_self: bool = False,
    chunk_size: int = 1024,
) -> float:
    """Mean nDCG@k of cosine rankings with graded relevance (gain ``2^r - 1``).

    Args:
        queries: ``(Nq, D)`` query embeddings.
        gallery: ``(Ng, D)`` gallery embeddings.
        relevance: ``(Nq, Ng)`` graded relevance ``r >= 0`` of every gallery item to every query.
        k: Cut-off (>= 1; a larger k than the gallery ranks the whole gallery).
        exclude_self: The queries are the gallery (``Nq == Ng``): leave item ``i`` out of query
            ``i``'s ranking.
        chunk_size: Query rows per block.

    Returns:
        The mean over queries with at least one relevant item (ideal DCG > 0) of DCG@k / ideal
        DCG@k, in ``[0, 1]``; 0.0 when no query has a relevant item.
    """
    q = F.normalize(_as_features(queries, "queries"), dim=1)
    g = F.normalize(_as_features(gallery, "gallery"), dim=1)
    _check_same_dim(q, g, "queries", "gallery")
    k = check_int(k, "k", minimum=1)
    chunk = check_int(chunk_size, "chunk_size", minimum=1)
    nq, ng = q.shape[0], g.shape[0]
    if exclude_self and nq != ng:
        raise ValueError(f"exclude_self needs as many queries as gallery items; got {nq}, {ng}")
    gains = torch.pow(2.0, _check_relevance(relevance, nq, ng)) - 1.0
    kk = min(k, ng - 1 if exclude_self else ng)
    if kk < 1:
        return 0.0
    discount = 1.0 / torch.log2(torch.arange(2, kk + 2, dtype=torch.float64))
    total, counted = 0.0, 0
    for start in range(0, nq, chunk):
        sims = (q[start : start + chunk] @ g.T).to(torch.float64)
        gain = gains[start : start + chunk].clone()
        if exclude_self:
            rows = torch.arange(sims.shape[0])
            sims[rows, rows + start] = -math.inf
            gain[rows, rows + start] = 0.0
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :kk]
        dcg = (torch.gather(gain, 1, order) * discount).sum(dim=1)
        ideal = (torch.sort(gain, dim=1, descending=True).values[:, :kk] * discount).sum(dim=1)
        has = ideal > 0
        total += float((dcg[has] / ideal[has]).sum())
        counted += int(has.sum())
    return total / counted if counted else 0.0


@torch.no_grad()
def identity_retrieval(
    queries: Tensor,
    gallery: Tensor,
    query_ids: Tensor,
    gallery_ids: Tensor,
    *,
    ranks: tuple[int, ...] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Rank-k (CMC) accuracy and mAP of retrieving each query's identity from a gallery.

    Args:
        queries: ``(Nq, D)`` query embeddings.
        gallery: ``(Ng, D)`` gallery embeddings.
        query_ids: ``(Nq,)`` integer identities of the queries.
        gallery_ids: ``(Ng,)`` integer identities of the gallery items.
        ranks: The k of the reported ``R@k``.
        chunk_size: Query rows per block.

    Returns:
        ``R@k`` for each k and ``mAP``, averaged over the queries whose identity is in the gallery
        (queries without a match are left out, as in re-ID benchmarks), and ``queries``, their
        number.

    Raises:
        ValueError: No query has its identity in the gallery, or shapes disagree.
    """
    q = F.normalize(_as_features(queries, "queries"), dim=1)
    g = F.normalize(_as_features(gallery, "gallery"), dim=1)
    _check_same_dim(q, g, "queries", "gallery")
    qid = _as_labels(query_ids, q.shape[0], "query_ids")
    gid = _as_labels(gallery_ids, g.shape[0], "gallery_ids")
    chunk = check_int(chunk_size, "chunk_size", minimum=1)
    for r in ranks:
        check_int(r, "ranks", minimum=1)
    hits = {r: 0.0 for r in ranks}
    ap_sum, counted = 0.0, 0
    positions = torch.arange(1, g.shape[0] + 1, dtype=torch.float64)
    for start in range(0, q.shape[0], chunk):
        sims = q[start : start + chunk] @ g.T
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices
        match = (gid[order] == qid[start : start + chunk, None]).to(torch.float64)
        n_match = match.sum(dim=1)
        has = n_match > 0
        precision = match.cumsum(dim=1) / positions
        ap = (precision * match).sum(dim=1) / n_match.clamp_min(1)
        ap_sum += float(ap[has].sum())
        counted += int(has.sum())
        for r in ranks:
            hits[r] += float((match[:, :r].sum(dim=1) > 0)[has].sum())
    if counted == 0:
        raise ValueError("no query has its identity in the gallery")
    out = {f"R@{r}": hits[r] / counted for r in ranks}
    out["mAP"] = ap_sum / counted
    out["queries"] = float(counted)
    return out
