"""SCGC: neighbourhood contrast / influence-augmented contrast (IAC) and the DEC clustering head.

Graph clustering without message passing (Kulatilleke et al., "SCGC: Self-Supervised Contrastive
Graph Clustering", 2022): an MLP embeds the nodes, and a contrastive loss pulls each node towards
its (multi-hop) neighbours given by powers of the normalised adjacency matrix; a DEC head (Xie et
al., "Unsupervised Deep Embedding for Clustering Analysis", 2016) turns embeddings into cluster
assignments.

Pieces: :func:`knn_graph` (a kNN graph from features), :func:`normalized_adjacency`
(``D^-1 (A_sym + I)``), :func:`influence_targets` (``Â^r`` or ``sum_{t<=r} Â^t``),
:class:`NeighbourhoodContrast` (the loss; **its temperature multiplies**), :class:`DECHead`.
Sparse inputs are ``torch.sparse_coo_tensor`` (CSR is converted); dense inputs stay dense.
"""

from __future__ import annotations

import itertools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_choice,
    check_chunk_size,
    check_embeddings,
    check_int,
    check_positive,
    check_reduction,
    check_tensor,
)
from contrastkit.losses._common import check_rows, reduce_terms, upcast_half
from contrastkit.losses._engine import auto_chunk_size, checkpointed_row_blocks, self_logsumexp

__all__ = [
    "DECHead",
    "NeighbourhoodContrast",
    "influence_targets",
    "knn_graph",
    "normalized_adjacency",
]


def _check_square(adj: object, name: str, n: int | None = None) -> Tensor:
    t = check_tensor(adj, name)
    if t.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        t = t.to_sparse_coo()
    if t.dim() != 2 or t.shape[0] != t.shape[1] or (n is not None and t.shape[0] != n):
        want = f"({n}, {n})" if n is not None else "(n, n)"
        raise ValueError(f"{name} must be a square matrix of shape {want}; got {tuple(t.shape)}")
    if t.layout not in (torch.strided, torch.sparse_coo):
        raise TypeError(f"{name} must be a dense or sparse COO/CSR tensor, got layout {t.layout}")
    if t.is_sparse:
        t = t.coalesce()
    values = t.values() if t.is_sparse else t
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} must be finite")
    if values.numel() and bool((values < 0).any()):
        raise ValueError(f"{name} must be non-negative (edge weights / target weights)")
    return t


def _float_dtype(t: Tensor) -> torch.dtype:
    dtype = t.dtype
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def normalized_adjacency(adj: Tensor) -> Tensor:
    r"""``Â = D^{-1} (A_sym + I)``: symmetrise, add self loops, **row**-normalise.

    ``A_sym = max(A, A^T)`` element-wise (the symmetrisation of the SDCN/SCGC graph loader: an edge
    in either direction becomes an edge in both, keeping the larger weight); ``I`` adds 1 to every
    diagonal entry; ``D = diag(rowsum(A_sym + I))``. Every row of the result sums to 1.

    Args:
        adj: ``(n, n)`` non-negative adjacency, dense or sparse.

    Returns:
        ``(n, n)`` in the same layout (sparse input gives a coalesced sparse COO tensor).
    """
    a = _check_square(adj, "adj")
    n = a.shape[0]
    dtype = _float_dtype(a)
    if not a.is_sparse:
        a = a.to(dtype)
        sym = torch.maximum(a, a.T) + torch.eye(n, dtype=dtype, device=a.device)
        return sym / sym.sum(dim=1, keepdim=True)
    idx, val = a.indices(), a.values().to(dtype)
    both_idx = torch.cat([idx, idx.flip(0)], dim=1)
    both_val = torch.cat([val, val])
    linear = both_idx[0] * n + both_idx[1]
    uniq, inverse = torch.unique(linear, return_inverse=True)
    sym_val = torch.zeros(uniq.shape[0], dtype=dtype, device=a.device)
    sym_val = sym_val.scatter_reduce(0, inverse, both_val, reduce="amax", include_self=False)
    diag = torch.arange(n, device=a.device)
    rows = torch.cat([uniq // n, diag])
    cols = torch.cat([uniq % n, diag])
    vals = torch.cat([sym_val, torch.ones(n, dtype=dtype, device=a.device)])
    sym = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), vals, (n, n), check_invariants=False
    ).coalesce()
    r = sym.indices()[0]
    degree = torch.zeros(n, dtype=dtype, device=a.device).index_add(0, r, sym.values())
    out = torch.sparse_coo_tensor(
        sym.indices(), sym.values() / degree[r], (n, n), check_invariants=False
    )
    return out.coalesce()


def influence_targets(adj_hat: Tensor, *, order: int, cumulative: bool = False) -> Tensor:
    r"""SCGC's neighbourhood targets ``Â^r`` or SCGC*/IAC's cumulative ``sum_{t=1}^{r} Â^t``.

    Args:
        adj_hat: ``(n, n)`` normalised adjacency from :func:`normalized_adjacency`, dense or sparse.
        order: ``r >= 1`` (``order`` in the reference code; 1 to 4 in the paper's configurations).
        cumulative: the influence-augmented (IAC, ``--influence``) target: the sum of the powers.

    Returns:
        ``(n, n)`` in the layout of ``adj_hat`` (sparse powers fill in: ``r``-hop neighbourhoods).
    """
    a = _check_square(adj_hat, "adj_hat")
    order = check_int(order, "order", minimum=1)
    a = a if a.dtype.is_floating_point else a.to(_float_dtype(a))
    power = a
    total = a
    for _ in range(order - 1):
        if a.is_sparse:
            with warnings.catch_warnings():
                # torch flags its internal sparse CSR product as beta on every call; the COO
                # result is what is used, and the tests compare it with dense powers
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
                power = torch.sparse.mm(power, a).coalesce()
        else:
            power = power @ a
        total = (total + power).coalesce() if a.is_sparse else total + power
    return total if cumulative else power


def knn_graph(
    features: Tensor, k: int, *, metric: str = "cosine", chunk_size: int | None = None
) -> Tensor:
    """A directed kNN graph: ``A_ij = 1`` when ``j`` is among the ``k`` nearest neighbours of ``i``.

    The node itself is never its own neighbour. Rows are processed in blocks (memory
    ``chunk_size * n``); symmetrise with :func:`normalized_adjacency`. SCGC uses ``k = 3`` for its
    non-graph datasets (the SDCN kNN graph files).

    Args:
        features: ``(n, F)`` node features.
        k: neighbours per node, ``1 <= k <= n - 1``.
        metric: ``"cosine"`` (largest cosine similarity) or ``"euclidean"`` (smallest distance).
        chunk_size: rows per block (None: automatic).

    Returns:
        ``(n, n)`` sparse COO float tensor with ``n * k`` ones.
    """
    x = check_embeddings(features, "features")
    n = x.shape[0]
    k = check_int(k, "k", minimum=1, maximum=n - 1)  # the node itself is never a neighbour
    check_choice(metric, "metric", ("cosine", "euclidean"))
    chunk = check_chunk_size(chunk_size) or auto_chunk_size(n, n)
    x = x.detach()
    if metric == "cosine":
        x = F.normalize(x, dim=1)
    sq = (x * x).sum(dim=1)
    neighbours = []
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        if metric == "cosine":
            score = x[s:e] @ x.T
        else:  # negative squared distance: larger is nearer
            score = 2 * (x[s:e] @ x.T) - sq[s:e, None] - sq[None, :]
        idx = torch.arange(e - s, device=x.device)
        score[idx, idx + s] = -math.inf
        neighbours.append(torch.topk(score, k, dim=1).indices)
    cols = torch.cat(neighbours).reshape(-1)
    rows = torch.arange(n, device=x.device).repeat_interleave(k)
    values = torch.ones(n * k, dtype=x.dtype, device=x.device)
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (n, n), check_invariants=False
    ).coalesce()


def _dense_ratio_block(
    start: int, stop: int, z: Tensor, target: Tensor, log_den: Tensor, tau: float
) -> Tensor:
    """``sum_j A_ij exp(tau S_ij - log_den_i)`` for the nodes ``start:stop`` (S_ii set to 0)."""
    sim = z[start:stop] @ z.T
    idx = torch.arange(stop - start, device=z.device)
    sim = sim.index_put((idx, idx + start), torch.zeros((), dtype=sim.dtype, device=z.device))
    return (target[start:stop] * torch.exp(tau * sim - log_den[start:stop, None])).sum(dim=1)


def _sparse_ratio_block(
    start: int,
    stop: int,
    z: Tensor,
    rows: Tensor,
    cols: Tensor,
    vals: Tensor,
    log_den: Tensor,
    tau: float,
) -> Tensor:
    """``A_ij exp(tau S_ij - log_den_i)`` for the stored entries ``start:stop`` of a COO target."""
    r, c = rows[start:stop], cols[start:stop]
    sim = (z[r] * z[c]).sum(dim=1)
    sim = torch.where(r == c, torch.zeros_like(sim), sim)
    return vals[start:stop] * torch.exp(tau * sim - log_den[r])


class NeighbourhoodContrast(nn.Module):
    r"""SCGC's neighbourhood contrastive loss (Ncontrast / IAC), with an inverse temperature.

    .. warning::
        ``inverse_temperature`` **multiplies** the similarities (the Graph-MLP / SCGC convention,
        the reference's ``tau``), unlike every other temperature in contrastkit, which divides.
        ``inverse_temperature=0.25`` is the temperature 4.

    With ``S_ij = cos(z_i, z_j)`` for ``j != i`` and the diagonal **set to 0** (not removed: the
    term ``e^{0} = 1`` stays in the denominator), a target matrix ``A`` (``Â^r`` for SCGC,
    ``sum_{t<=r} Â^t`` for SCGC*/IAC, see :func:`influence_targets`) and ``tau`` the inverse
    temperature:

    .. math::
        L = -\frac{1}{n}\sum_i \log\Big(\frac{\sum_j A_{ij}\, e^{\tau S_{ij}}}
            {\sum_j e^{\tau S_{ij}}} + 10^{-8}\Big)

    The ``+ 1e-8`` inside the log is the reference's (``eps``). The denominator goes through the
    symmetric blockwise engine; the target-weighted numerator runs in row blocks with activation
    checkpointing (a dense target reads ``chunk x n`` entries at a time, a sparse one only its
    non-zeros), so no ``n x n`` similarity matrix is kept.

    Paper: Kulatilleke et al., "SCGC: Self-Supervised Contrastive Graph Clustering" (2022);
    ``inverse_temperature=0.25`` from SCGC*'s configurations for USPS, Reuters, ACM, DBLP and
    Citeseer (HHAR uses 2.25); the loss form from Graph-MLP (Hu et al., 2021) as used by SCGC.

    Args:
        inverse_temperature: ``tau`` (> 0), multiplies the cosine similarities.
        eps: added to the ratio inside the log (>= 0).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(n,)``).
        chunk_size: nodes per block (None: automatic).

    Shape:
        z ``(n, d)``; target ``(n, n)``, non-negative, dense or sparse.

    Example:
        >>> import torch
        >>> from contrastkit.losses import (
        ...     NeighbourhoodContrast, influence_targets, knn_graph, normalized_adjacency)
        >>> _ = torch.manual_seed(0)
        >>> features = torch.randn(12, 5)
        >>> adj_hat = normalized_adjacency(knn_graph(features, 3))
        >>> target = influence_targets(adj_hat, order=2, cumulative=True)  # SCGC*'s IAC target
        >>> z = torch.randn(12, 8, requires_grad=True)
        >>> loss = NeighbourhoodContrast(inverse_temperature=0.25)(z, target)
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        inverse_temperature: float = 0.25,
        eps: float = 1e-8,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.inverse_temperature = check_positive(inverse_temperature, "inverse_temperature")
        self.eps = check_positive(eps, "eps", allow_zero=True)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, z: Tensor, target: Tensor) -> Tensor:
        x = check_embeddings(z, "z")
        n = check_rows(x, "z", self, what="node")
        a = _check_square(target, "target", n)
        zh = F.normalize(upcast_half(x), dim=1)
        tau = self.inverse_temperature
        lse = self_logsumexp(zh, tau, exclude_self=True, chunk_size=self.chunk_size)
        log_den = torch.logaddexp(lse, torch.zeros_like(lse))  # + e^{tau * 0} of the diagonal
        log_den = log_den.to(zh.dtype)
        chunk = self.chunk_size or auto_chunk_size(n, n)
        if a.is_sparse:
            # blocks of the stored entries of `chunk` consecutive rows (the COO indices are sorted)
            rows, cols = a.indices()
            vals = a.values().to(zh.dtype)
            bounds = torch.searchsorted(
                rows, torch.arange(0, n + chunk, chunk, device=rows.device).clamp(max=n)
            ).tolist()
            blocks = [(b0, b1) for b0, b1 in itertools.pairwise(bounds) if b1 > b0]
            ratio = torch.zeros(n, dtype=zh.dtype, device=zh.device)
            if blocks:
                terms = checkpointed_row_blocks(
                    _sparse_ratio_block,
                    rows.shape[0],
                    chunk,
                    zh,
                    rows,
                    cols,
                    vals,
                    log_den,
                    tau,
                    blocks=blocks,
                )
                ratio = ratio.index_add(0, rows[blocks[0][0] : blocks[-1][1]], terms)
        else:
            dense = a.to(zh.dtype)
            ratio = checkpointed_row_blocks(_dense_ratio_block, n, chunk, zh, dense, log_den, tau)
        terms = -torch.log(ratio + self.eps)
        return reduce_terms(terms, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"inverse_temperature={self.inverse_temperature} (multiplies), eps={self.eps}, "
            f"reduction={self.reduction!r}"
        )


class DECHead(nn.Module):
    r"""DEC clustering head: Student-t soft assignments, sharpened targets and ``KL(P || Q)``.

    .. math::
        q_{ij} = \frac{(1 + \|z_i - \mu_j\|^2 / v)^{-(v+1)/2}}
                      {\sum_{j'} (1 + \|z_i - \mu_{j'}\|^2 / v)^{-(v+1)/2}},\qquad
        p_{ij} = \frac{q_{ij}^2 / f_j}{\sum_{j'} q_{ij'}^2 / f_{j'}},\quad f_j = \sum_i q_{ij}

    and the loss is ``KL(P || Q) = sum_ij p_ij log(p_ij / q_ij)``, averaged over nodes
    (``batchmean``, ``reduction="mean"``). In SCGC/SDCN the target ``P`` is recomputed from the
    current model at the start of **every epoch** and held fixed (detached) during it: compute ``p =
    DECHead.target_distribution(head.soft_assign(z))`` then and pass it as ``target``; without
    ``target`` it is recomputed from the current batch. Predict clusters with
    ``soft_assign(z).argmax(1)``.

    Centres are learnable, Xavier-normal initialised (as SDCN); set them from k-means with
    :meth:`init_centers` (SCGC: k-means with ``n_init=20`` on the pretrained embeddings).

    Paper: Xie et al., "Unsupervised Deep Embedding for Clustering Analysis" (2016), ``v = 1``;
    used by SDCN (Bo et al., 2020) and SCGC (Kulatilleke et al., 2022).

    Args:
        n_clusters: number of clusters (>= 1).
        dim: embedding dimension (>= 1).
        v: degrees of freedom of the Student-t kernel (> 0).
        reduction: ``"mean"`` (per-node mean of the KL) | ``"sum"`` | ``"none"`` (``(n,)``).

    Example:
        >>> import torch
        >>> from contrastkit.losses import DECHead
        >>> _ = torch.manual_seed(0)
        >>> head = DECHead(n_clusters=3, dim=8)
        >>> z = torch.randn(12, 8)
        >>> q = head.soft_assign(z)
        >>> q.shape, bool(torch.allclose(q.sum(dim=1), torch.ones(12)))
        (torch.Size([12, 3]), True)
        >>> head(z, DECHead.target_distribution(q)).shape
        torch.Size([])
    """

    def __init__(
        self, *, n_clusters: int, dim: int, v: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.n_clusters = check_int(n_clusters, "n_clusters", minimum=1)
        self.dim = check_int(dim, "dim", minimum=1)
        self.v = check_positive(v, "v")
        self.reduction = check_reduction(reduction)
        self.centers = nn.Parameter(torch.empty(self.n_clusters, self.dim))
        nn.init.xavier_normal_(self.centers)

    @torch.no_grad()
    def init_centers(self, centers: Tensor) -> None:
        """Copy ``(n_clusters, dim)`` centres (e.g. k-means centroids) into the head."""
        c = check_embeddings(centers, "centers", dim=self.dim)
        if c.shape[0] != self.n_clusters:
            raise ValueError(
                f"centers must have shape ({self.n_clusters}, {self.dim}); got {tuple(c.shape)}"
            )
        self.centers.copy_(c)

    def soft_assign(self, z: Tensor) -> Tensor:
        """Student-t soft assignments ``q`` ``(n, n_clusters)``; rows sum to 1."""
        return self._log_assign(z).exp()

    def _log_assign(self, z: Tensor) -> Tensor:
        x = check_embeddings(z, "z", dim=self.dim)
        mu = self.centers.to(x.dtype)
        dist2 = (x * x).sum(1, keepdim=True) - 2 * x @ mu.T + (mu * mu).sum(1)[None, :]
        dist2 = dist2.clamp_min(0)
        logits = -(self.v + 1) / 2 * torch.log1p(dist2 / self.v)
        return torch.log_softmax(logits, dim=1)

    @staticmethod
    def target_distribution(q: Tensor) -> Tensor:
        """Sharpened target ``p_ij ∝ q_ij^2 / f_j``, detached; rows sum to 1."""
        t = check_tensor(q, "q").detach()
        if t.dim() != 2:
            raise ValueError(f"q must have shape (n, n_clusters); got {tuple(t.shape)}")
        weight = t * t / t.sum(dim=0, keepdim=True)
        return weight / weight.sum(dim=1, keepdim=True)

    def forward(self, z: Tensor, target: Tensor | None = None) -> Tensor:
        log_q = self._log_assign(z)
        q = log_q.exp()
        p = self.target_distribution(q) if target is None else check_tensor(target, "target")
        if p.shape != q.shape:
            raise ValueError(
                f"target must have shape {tuple(q.shape)} like the soft assignments; "
                f"got {tuple(p.shape)}"
            )
        p = p.detach().to(q.dtype)
        terms = (torch.xlogy(p, p) - p * log_q).sum(dim=1)
        return reduce_terms(terms, self.reduction)

    def extra_repr(self) -> str:
        return f"n_clusters={self.n_clusters}, dim={self.dim}, v={self.v}"
