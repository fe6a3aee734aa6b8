"""SCGC pieces (docs/methods.md section 3.6): normalised adjacency, influence targets, neighbourhood contrast /
IAC loss, DEC head, kNN graph."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from contrastkit.losses.graph import (
    DECHead,
    NeighbourhoodContrast,
    influence_targets,
    knn_graph,
    normalized_adjacency,
)

F64 = torch.float64


def ncontrast_ref(z: Tensor, target: Tensor, tau: float, eps: float = 1e-8) -> Tensor:
    """Dense float64 docs/methods.md section 3.6: S = cos with diagonal set to 0, tau multiplies,
    l_i = -log(sum_j A_ij e^{tau S_ij} / sum_j e^{tau S_ij} + eps)."""
    zh = z.to(F64) / z.to(F64).norm(dim=1, keepdim=True)
    s = (zh @ zh.T) * (1 - torch.eye(z.shape[0], dtype=F64))
    e = torch.exp(tau * s)
    a = target.to_dense().to(F64) if target.is_sparse else target.to(F64)
    return -torch.log((a * e).sum(1) / e.sum(1) + eps)


def _random_graph(n: int, k: int = 2, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return knn_graph(torch.randn(n, 5, generator=g), k)


def _z(n: int, d: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64, requires_grad=True)


# --------------------------------------------------------------------------------------------------
# adjacency and targets
# --------------------------------------------------------------------------------------------------


def test_normalized_adjacency_hand_example() -> None:
    a = torch.tensor([[0.0, 1, 0], [0, 0, 1], [0, 0, 0]])
    expected = torch.tensor([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
    torch.testing.assert_close(normalized_adjacency(a), expected)
    sparse = normalized_adjacency(a.to_sparse())
    assert sparse.is_sparse
    torch.testing.assert_close(sparse.to_dense(), expected)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_normalized_adjacency_weighted_max_symmetrisation() -> None:
    a = torch.tensor([[0.0, 2.0], [3.0, 0.0]], dtype=F64)
    expected = torch.tensor([[1.0, 3.0], [3.0, 1.0]], dtype=F64) / 4
    torch.testing.assert_close(normalized_adjacency(a), expected)
    torch.testing.assert_close(normalized_adjacency(a.to_sparse()).to_dense(), expected)
    # existing self loops get + 1; integer input becomes float; CSR input is accepted
    b = torch.tensor([[1, 0], [1, 0]])
    torch.testing.assert_close(
        normalized_adjacency(b), torch.tensor([[2 / 3, 1 / 3], [1 / 2, 1 / 2]])
    )
    torch.testing.assert_close(
        normalized_adjacency(b.to_sparse_csr()).to_dense(), normalized_adjacency(b)
    )


def test_normalized_adjacency_sparse_equals_dense_and_rows_sum_to_one() -> None:
    a = _random_graph(20, k=3)
    dense = normalized_adjacency(a.to_dense())
    sparse = normalized_adjacency(a)
    torch.testing.assert_close(sparse.to_dense(), dense)
    torch.testing.assert_close(dense.sum(1), torch.ones(20))
    assert torch.equal(dense > 0, (dense > 0).T)  # symmetric support


@pytest.mark.parametrize("order", [1, 2, 3])
def test_influence_targets_powers_and_cumulative(order: int) -> None:
    a_hat = normalized_adjacency(_random_graph(12, seed=1).to_dense().to(F64))
    powers = [torch.linalg.matrix_power(a_hat, t) for t in range(1, order + 1)]
    torch.testing.assert_close(influence_targets(a_hat, order=order), powers[-1])
    torch.testing.assert_close(
        influence_targets(a_hat, order=order, cumulative=True), sum(powers[1:], powers[0])
    )
    sp = normalized_adjacency(_random_graph(12, seed=1).to(F64))
    for cumulative in (False, True):
        out = influence_targets(sp, order=order, cumulative=cumulative)
        assert out.is_sparse
        torch.testing.assert_close(
            out.to_dense(), influence_targets(a_hat, order=order, cumulative=cumulative)
        )


def test_iac_with_r1_equals_scgc_r1() -> None:
    a_hat = normalized_adjacency(_random_graph(10, seed=2))
    scgc = influence_targets(a_hat, order=1)
    iac = influence_targets(a_hat, order=1, cumulative=True)
    torch.testing.assert_close(iac.to_dense(), scgc.to_dense())
    z = _z(10, 4)
    loss = NeighbourhoodContrast(inverse_temperature=0.25)
    torch.testing.assert_close(loss(z, iac), loss(z, scgc))
    # and for r = 2 they differ (the cumulative target adds the 1-hop term)
    r2 = influence_targets(a_hat, order=2)
    r2c = influence_targets(a_hat, order=2, cumulative=True)
    assert not torch.allclose(loss(z, r2), loss(z, r2c))


# --------------------------------------------------------------------------------------------------
# NeighbourhoodContrast
# --------------------------------------------------------------------------------------------------

CASES = [
    (n, d, tau, sparse, chunk)
    for n in (1, 2, 7, 20)
    for d in (3,)
    for tau in (0.25, 2.25, 10.0)
    for sparse in (False, True)
    for chunk in (None, 3)
]


@pytest.mark.parametrize(("n", "d", "tau", "sparse", "chunk"), CASES)
def test_value_and_grad_vs_reference(
    n: int, d: int, tau: float, sparse: bool, chunk: int | None
) -> None:
    z = _z(n, d, seed=n)
    if n > 2:
        target = influence_targets(
            normalized_adjacency(_random_graph(n, seed=n).to(F64)), order=2, cumulative=True
        )
    else:
        target = torch.eye(n, dtype=F64).to_sparse()
    if not sparse:
        target = target.to_dense()
    loss = NeighbourhoodContrast(inverse_temperature=tau, reduction="none", chunk_size=chunk)
    out = loss(z, target)
    ref = ncontrast_ref(z, target, tau)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-11)
    w = torch.linspace(0.5, 1.5, n, dtype=F64)
    (g_out,) = torch.autograd.grad((out * w).sum(), z)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), z)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("tau", [0.25, 1.0, 4.0])
def test_identity_target_reduces_to_methods_formula(tau: float) -> None:
    """A = I: l_i = -log(e^{tau * 0} / sum_j e^{tau S_ij} + 1e-8), diagonal S_ii = 0 included."""
    z = _z(6, 4, seed=3).detach()
    zh = F.normalize(z, dim=1)
    out = NeighbourhoodContrast(inverse_temperature=tau, reduction="none")(z, torch.eye(6))
    for i in range(6):
        den = 1.0 + sum(math.exp(tau * float(zh[i] @ zh[j])) for j in range(6) if j != i)
        assert out[i].item() == pytest.approx(-math.log(1.0 / den + 1e-8), rel=1e-10)


def test_inverse_temperature_multiplies() -> None:
    z = _z(5, 3, seed=4).detach()
    target = torch.eye(5, dtype=F64)
    four = NeighbourhoodContrast(inverse_temperature=4.0, reduction="none")(z, target)
    torch.testing.assert_close(four, ncontrast_ref(z, target, 4.0))
    assert not torch.allclose(four, ncontrast_ref(z, target, 0.25))


def test_diagonal_set_to_zero_not_removed() -> None:
    # one node: the only term is the diagonal e^0 = 1, so the ratio is 1 and the loss ~ 0
    z = torch.randn(1, 3, dtype=F64)
    out = NeighbourhoodContrast(eps=0.0)(z, torch.ones(1, 1, dtype=F64))
    assert out.item() == pytest.approx(0.0, abs=1e-15)
    # two identical nodes, target on the other node: ratio = e^tau / (1 + e^tau), not 1
    z2 = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=F64)
    tau = 0.5
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    out2 = NeighbourhoodContrast(inverse_temperature=tau, eps=0.0)(z2, target)
    expected = -math.log(math.exp(tau) / (1 + math.exp(tau)))
    assert out2.item() == pytest.approx(expected, rel=1e-12)


def test_eps_inside_the_log() -> None:
    z = _z(4, 3, seed=5).detach()
    zero_target = torch.zeros(4, 4, dtype=F64)
    out = NeighbourhoodContrast(reduction="none")(z, zero_target)
    torch.testing.assert_close(out, torch.full((4,), -math.log(1e-8), dtype=F64))
    custom = NeighbourhoodContrast(eps=1e-3, reduction="none")(z, zero_target)
    torch.testing.assert_close(custom, torch.full((4,), -math.log(1e-3), dtype=F64))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions(reduction: str) -> None:
    z = _z(8, 3, seed=6)
    target = normalized_adjacency(_random_graph(8, seed=6).to(F64))
    ref = ncontrast_ref(z, target, 0.25)
    expected = ref.mean() if reduction == "mean" else ref.sum()
    out = NeighbourhoodContrast(reduction=reduction)(z, target)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("sparse", [False, True])
def test_gradcheck(sparse: bool) -> None:
    z = _z(5, 3, seed=7)
    target = influence_targets(normalized_adjacency(_random_graph(5, seed=7).to(F64)), order=2)
    if not sparse:
        target = target.to_dense()
    loss = NeighbourhoodContrast(inverse_temperature=2.0, chunk_size=2)
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (z,))


def test_float32_close_to_reference() -> None:
    z = _z(30, 8, seed=8)
    target = normalized_adjacency(_random_graph(30, seed=8))
    out = NeighbourhoodContrast(inverse_temperature=2.25, reduction="none")(
        z.detach().float(), target
    )
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ncontrast_ref(z, target, 2.25), rtol=1e-5, atol=1e-5)


class _Shapes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, Tensor) and t.layout == torch.strided:
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_sparse_target_never_builds_an_n_by_n_matrix() -> None:
    n, d, chunk = 40, 4, 5
    z = torch.randn(n, d, requires_grad=True)
    target = normalized_adjacency(_random_graph(n, seed=9))
    loss = NeighbourhoodContrast(chunk_size=chunk)
    with _Shapes() as rec:
        loss(z, target).backward()
    assert rec.max_numel < n * n // 4, rec.max_numel
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_neighbourhood_contrast_errors() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="inverse_temperature"):
        NeighbourhoodContrast(inverse_temperature=0.0)
    with pytest.raises(ValueError, match="eps"):
        NeighbourhoodContrast(eps=-1.0)
    with pytest.raises(ValueError, match=r"square matrix of shape \(4, 4\)"):
        NeighbourhoodContrast()(z, torch.eye(3))
    with pytest.raises(ValueError, match="non-negative"):
        NeighbourhoodContrast()(z, -torch.eye(4))
    with pytest.raises(ValueError, match="finite"):
        NeighbourhoodContrast()(z, torch.eye(4) * float("nan"))
    with pytest.raises(TypeError, match="real numbers"):
        NeighbourhoodContrast()(z, torch.eye(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        NeighbourhoodContrast()(z[0], torch.eye(4))
    with pytest.raises(ValueError, match="order must be an int >= 1"):
        influence_targets(torch.eye(3), order=0)
    with pytest.raises(ValueError, match="square"):
        normalized_adjacency(torch.ones(2, 3))


# --------------------------------------------------------------------------------------------------
# DEC head
# --------------------------------------------------------------------------------------------------


def _head(k: int = 3, d: int = 2, v: float = 1.0) -> DECHead:
    head = DECHead(n_clusters=k, dim=d, v=v).double()
    head.init_centers(torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=F64)[:k, :d])
    return head


@pytest.mark.parametrize("v", [1.0, 2.5])
def test_soft_assign_formula(v: float) -> None:
    head = _head(v=v)
    z = torch.tensor([[0.5, 0.0], [3.0, 1.0], [1.0, 3.0], [2.0, 2.0]], dtype=F64)
    q = head.soft_assign(z)
    dist2 = ((z[:, None, :] - head.centers[None]) ** 2).sum(-1)
    kernel = (1 + dist2 / v) ** (-(v + 1) / 2)
    torch.testing.assert_close(q, kernel / kernel.sum(1, keepdim=True))
    torch.testing.assert_close(q.sum(1), torch.ones(4, dtype=F64))


def test_target_distribution_rows_sum_to_one_and_sharpen() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(50, 4, generator=g, dtype=F64), dim=1)
    p = DECHead.target_distribution(q)
    torch.testing.assert_close(p.sum(1), torch.ones(50, dtype=F64))
    f = q.sum(0)
    expected = (q**2 / f) / (q**2 / f).sum(1, keepdim=True)
    torch.testing.assert_close(p, expected)

    def entropy(x: Tensor) -> Tensor:
        return -(x * x.log()).sum(1)

    assert entropy(p).mean() < entropy(q).mean()
    # with balanced clusters (equal f_j), p = q^2 / sum q^2: every row sharpens, argmax kept
    qb = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.6, 0.3], [0.3, 0.1, 0.6]], dtype=F64)
    pb = DECHead.target_distribution(qb)
    assert torch.all(entropy(pb) < entropy(qb))
    assert torch.all(pb.max(1).values > qb.max(1).values)
    assert torch.equal(pb.argmax(1), qb.argmax(1))


def test_target_is_detached() -> None:
    q = torch.softmax(torch.randn(5, 3, dtype=F64), 1).requires_grad_(True)
    assert not DECHead.target_distribution(q).requires_grad


def test_kl_loss_matches_batchmean_kl_and_trains_centres() -> None:
    head = _head()
    z = torch.tensor(
        [[0.5, 0.0], [3.0, 1.0], [1.0, 3.0], [2.0, 2.0]], dtype=F64, requires_grad=True
    )
    q = head.soft_assign(z)
    p = DECHead.target_distribution(q)
    expected = (p * (p.log() - q.log())).sum() / 4
    out = head(z)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, F.kl_div(q.log(), p, reduction="batchmean"))
    out.backward()
    assert z.grad is not None and head.centers.grad is not None
    assert head.centers.grad.abs().sum() > 0
    # a fixed epoch target gives the same value as recomputing from the same q
    torch.testing.assert_close(head(z.detach(), target=p), out.detach())
    per_node = DECHead(n_clusters=3, dim=2, reduction="none").double()
    per_node.init_centers(head.centers.detach())
    torch.testing.assert_close(per_node(z.detach()).sum() / 4, out.detach())


def test_dec_gradcheck() -> None:
    head = _head()
    z = torch.randn(5, 2, dtype=F64, requires_grad=True)
    p = DECHead.target_distribution(head.soft_assign(z))
    assert torch.autograd.gradcheck(lambda x: head(x, target=p), (z,))


def test_dec_errors() -> None:
    with pytest.raises(ValueError, match="n_clusters"):
        DECHead(n_clusters=0, dim=2)
    with pytest.raises(ValueError, match="v must be"):
        DECHead(n_clusters=2, dim=2, v=0.0)
    head = DECHead(n_clusters=2, dim=3)
    with pytest.raises(ValueError, match="embedding dim 3"):
        head.soft_assign(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"centers must have shape \(2, 3\)"):
        head.init_centers(torch.randn(3, 3))
    with pytest.raises(ValueError, match="target must have shape"):
        head(torch.randn(4, 3), target=torch.rand(4, 3))


# --------------------------------------------------------------------------------------------------
# kNN graph
# --------------------------------------------------------------------------------------------------


def test_knn_graph_euclidean_on_a_line() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0], [15.0]])
    a = knn_graph(x, 1, metric="euclidean").to_dense()
    expected = torch.zeros(5, 5)
    for i, j in [(0, 1), (1, 0), (2, 1), (3, 2), (4, 3)]:
        expected[i, j] = 1
    assert torch.equal(a, expected)
    a2 = knn_graph(x, 2, metric="euclidean").to_dense()
    assert a2.sum().item() == 10 and a2.diagonal().sum().item() == 0
    assert a2[2, 1] == 1 and a2[2, 0] == 1  # |3 - 1| = 2 and |3 - 0| = 3 beat |3 - 7| = 4


def test_knn_graph_cosine_ignores_scale() -> None:
    angles = torch.tensor([0.0, 0.1, 1.5, 1.6, 3.0])
    x = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor(
        [[1.0], [9.0], [2.0], [0.5], [3.0]]
    )
    a = knn_graph(x, 1).to_dense()
    assert a[0, 1] == 1 and a[1, 0] == 1 and a[2, 3] == 1 and a[3, 2] == 1 and a[4, 3] == 1
    # euclidean on the same points picks by distance instead (differs for the scaled node 1)
    assert not torch.equal(knn_graph(x, 1, metric="euclidean").to_dense(), a)


def test_knn_graph_chunked_equals_unchunked_and_errors() -> None:
    x = torch.randn(23, 4, generator=torch.Generator().manual_seed(3))
    full = knn_graph(x, 3)
    assert torch.equal(knn_graph(x, 3, chunk_size=4).to_dense(), full.to_dense())
    assert full.is_sparse and full._nnz() == 69
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 22\], got 23"):
        knn_graph(x, 23)
    with pytest.raises(ValueError, match="k must"):
        knn_graph(x, 0)
    with pytest.raises(ValueError, match="metric must be one of"):
        knn_graph(x, 2, metric="manhattan")


def test_sparse_powers_raise_no_beta_warning() -> None:
    import warnings

    a = normalized_adjacency(
        knn_graph(torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), 3)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Sparse CSR tensor support is in beta" would raise
        sparse = influence_targets(a, order=3, cumulative=True)
    dense = influence_targets(a.to_dense(), order=3, cumulative=True)
    assert torch.allclose(sparse.to_dense(), dense, atol=1e-6)
