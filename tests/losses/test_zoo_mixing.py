"""MoCoLoss / QueueInfoNCE and HardNegativeMixer (MoCHi), docs/methods.md section 3.2."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from contrastkit.losses.mixing import HardNegativeMixer, MoCoLoss, QueueInfoNCE

F64 = torch.float64


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def moco_ref(
    q: Tensor,
    k: Tensor,
    neg: Tensor,
    extra: Tensor | None,
    tau: float,
    decoupled: bool = False,
) -> Tensor:
    """Dense float64 reference: CE of [q.k, q.n_j, q.e_im] / tau with the key as target (per query).

    ``decoupled``: the positive column is dropped from the denominator.
    """
    q, k, neg = _unit(q.to(F64)), _unit(k.to(F64)), _unit(neg.to(F64))
    cols = [(q * k).sum(1, keepdim=True), q @ neg.T]
    if extra is not None:
        e = _unit(extra.to(F64))
        cols.append((q[:, None, :] * e).sum(-1))
    logits = torch.cat(cols, dim=1) / tau
    denom = logits[:, 1:] if decoupled else logits
    return torch.logsumexp(denom, dim=1) - logits[:, 0]


def _inputs(b: int, k: int, d: int, m: int, seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, d), (b, d), (k, d), (b, m, d)]
    return [torch.randn(*s, generator=g, dtype=F64, requires_grad=True) for s in shapes]


CASES = [
    (b, k, d, m, t, dec)
    for (b, k, d, m) in [(1, 1, 3, 0), (3, 7, 4, 2), (8, 33, 16, 5)]
    for t in (0.07, 0.2, 1.0)
    for dec in (False, True)
]


@pytest.mark.parametrize(("b", "k", "d", "m", "tau", "decoupled"), CASES)
def test_value_and_grad_vs_reference(
    b: int, k: int, d: int, m: int, tau: float, decoupled: bool
) -> None:
    q, key, neg, extra = _inputs(b, k, d, m)
    ex = extra if m > 0 else None
    loss = MoCoLoss(temperature=tau, decoupled=decoupled, reduction="none", chunk_size=2)
    out = loss(q, key, neg, ex)
    ref = moco_ref(q, key, neg, ex, tau, decoupled)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-11)
    w = torch.linspace(0.5, 1.5, b, dtype=F64)
    inputs = [q, key, neg] + ([extra] if ex is not None else [])
    g_out = torch.autograd.grad((out * w).sum(), inputs)
    g_ref = torch.autograd.grad((ref * w).sum(), inputs)
    for a, r in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("chunk", [None, 1, 3, 100])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_and_chunks(chunk: int | None, reduction: str) -> None:
    q, key, neg, extra = _inputs(5, 9, 4, 3, seed=1)
    ref = moco_ref(q, key, neg, extra, 0.2)
    expected = {"mean": ref.mean(), "sum": ref.sum(), "none": ref}[reduction]
    out = MoCoLoss(reduction=reduction, chunk_size=chunk)(q, key, neg, extra)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-11)


def test_float32_close_to_reference() -> None:
    q, key, neg, extra = _inputs(6, 40, 8, 4, seed=2)
    args = [x.detach().float() for x in (q, key, neg, extra)]
    out = MoCoLoss(reduction="none")(*args)
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out.double(), moco_ref(q, key, neg, extra, 0.2), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("decoupled", [False, True])
def test_gradcheck(decoupled: bool) -> None:
    q, key, neg, extra = _inputs(2, 3, 3, 2, seed=3)
    loss = MoCoLoss(temperature=0.5, decoupled=decoupled, chunk_size=1)
    assert torch.autograd.gradcheck(lambda a, b, c, e: loss(a, b, c, e), (q, key, neg, extra))


@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_hand_computable_orthogonal_case(tau: float) -> None:
    """q = k, every negative orthogonal: l = -log(e^{1/t} / (e^{1/t} + K)); DCL: -1/t + log K."""
    q = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    neg = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, -3.0, 0.0]], dtype=F64)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 3))
    assert MoCoLoss(temperature=tau)(q, q * 5, neg).item() == pytest.approx(expected, rel=1e-12)
    dcl = MoCoLoss(temperature=tau, decoupled=True)(q, q, neg).item()
    assert dcl == pytest.approx(-1 / tau + math.log(3), rel=1e-12)


def test_decoupled_positive_enters_only_linearly() -> None:
    """decoupled: changing only the key moves the loss by exactly -delta(q.k)/tau (the decoupling);
    with the positive in the denominator it does not."""
    tau = 0.3
    q, k1, neg, _ = (x.detach() for x in _inputs(4, 6, 5, 0, seed=4))
    k2 = torch.randn(4, 5, dtype=F64)
    dq = (_unit(q) * (_unit(k1) - _unit(k2))).sum(1)
    dcl = MoCoLoss(temperature=tau, decoupled=True, reduction="none")
    torch.testing.assert_close(dcl(q, k1, neg) - dcl(q, k2, neg), -dq / tau)
    moco = MoCoLoss(temperature=tau, reduction="none")
    assert not torch.allclose(moco(q, k1, neg) - moco(q, k2, neg), -dq / tau)


def test_no_negatives_beyond_extra_is_an_error_but_empty_extra_is_fine() -> None:
    q, key, neg, _ = _inputs(3, 4, 5, 0)
    base = MoCoLoss()(q, key, neg)
    torch.testing.assert_close(MoCoLoss()(q, key, neg, torch.zeros(3, 0, 5, dtype=F64)), base)
    with pytest.raises(ValueError, match="at least one row"):
        MoCoLoss()(q, key, neg[:0])


def test_alias() -> None:
    assert QueueInfoNCE is MoCoLoss


def test_errors() -> None:
    q, key, neg, extra = (x.detach() for x in _inputs(3, 4, 5, 2))
    with pytest.raises(ValueError, match="temperature"):
        MoCoLoss(temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        MoCoLoss(reduction="avg")
    with pytest.raises(ValueError, match="chunk_size"):
        MoCoLoss(chunk_size=0)
    with pytest.raises(TypeError):
        MoCoLoss(0.1)  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"key must have shape \(3, 5\)"):
        MoCoLoss()(q, key[:2], neg)
    with pytest.raises(ValueError, match="embedding dim 5"):
        MoCoLoss()(q, key, neg[:, :3])
    with pytest.raises(ValueError, match=r"\(3, M, 5\)"):
        MoCoLoss()(q, key, neg, extra[:2])
    with pytest.raises(ValueError, match="finite"):
        MoCoLoss()(q, key * float("nan"), neg)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        MoCoLoss()(q, key, neg.tolist())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# HardNegativeMixer
# --------------------------------------------------------------------------------------------------


def _queue(b: int = 4, k: int = 30, d: int = 6, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=F64), torch.randn(k, d, generator=g, dtype=F64)


def test_hardest_negatives_chosen() -> None:
    q, neg = _queue()
    mixer = HardNegativeMixer(n_hard=5, n_mix=40, n_mix_query=40)
    out = mixer.sample(q, neg, torch.Generator().manual_seed(1))
    sims = _unit(q) @ _unit(neg).T
    expected = torch.argsort(sims, dim=1, descending=True)[:, :5]
    assert torch.equal(out.hard_index, expected)
    for i in range(q.shape[0]):
        allowed = set(expected[i].tolist())
        used = out.index_a[i].tolist() + out.index_b[i].tolist() + out.index_c[i].tolist()
        assert set(used) <= allowed
    # with 40 draws from 5 candidates, every hard negative shows up (fails if draws were not uniform
    # over the hard set, e.g. always the hardest)
    assert all(len(set(out.index_a[i].tolist())) == 5 for i in range(q.shape[0]))


def test_points_are_the_normalised_mixtures() -> None:
    q, neg = _queue()
    out = HardNegativeMixer(n_hard=4, n_mix=3, n_mix_query=2).sample(
        q, neg, torch.Generator().manual_seed(2)
    )
    qn, nn_ = _unit(q), _unit(neg)
    a = out.alpha.unsqueeze(-1)
    h = _unit(a * nn_[out.index_a] + (1 - a) * nn_[out.index_b])
    bq = out.beta.unsqueeze(-1)
    h2 = _unit(bq * qn[:, None] + (1 - bq) * nn_[out.index_c])
    assert out.points.shape == (4, 5, 6)
    torch.testing.assert_close(out.points, torch.cat([h, h2], dim=1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.points.norm(dim=-1), torch.ones(4, 5, dtype=F64))


def test_mixing_coefficients_in_range() -> None:
    q, neg = _queue(b=16)
    out = HardNegativeMixer(n_hard=8, n_mix=64, n_mix_query=64, beta_max=0.3).sample(
        q, neg, torch.Generator().manual_seed(3)
    )
    assert out.alpha.min() >= 0 and out.alpha.max() < 1
    assert out.beta.min() >= 0 and out.beta.max() < 0.3
    # the range is used, not collapsed to a point
    assert out.alpha.max() > 0.9 and out.alpha.min() < 0.1
    assert out.beta.max() > 0.25


def test_synthetic_points_detached() -> None:
    q, neg = _queue()
    q.requires_grad_(True)
    neg.requires_grad_(True)
    pts = HardNegativeMixer(n_hard=4, n_mix=3, n_mix_query=3)(q, neg)
    assert not pts.requires_grad and pts.grad_fn is None
    # used in MoCoLoss, no gradient flows into the query through the synthetic points
    key = torch.randn(4, 6, dtype=F64)
    loss = MoCoLoss(reduction="sum")
    g_with = torch.autograd.grad(loss(q, key, neg, pts), q)[0]
    g_ref = torch.autograd.grad(moco_ref(q, key, neg, pts.detach(), 0.2).sum(), q)[0]
    torch.testing.assert_close(g_with, g_ref)


def test_query_mixtures_are_harder_than_negatives() -> None:
    """h' contains the query, so q.h' exceeds q.n_c for beta > 0 (that is what makes them hard)."""
    q, neg = _queue(b=8)
    out = HardNegativeMixer(n_hard=5, n_mix=0, n_mix_query=10).sample(
        q, neg, torch.Generator().manual_seed(4)
    )
    qn, nn_ = _unit(q), _unit(neg)
    sim_h = (qn[:, None] * out.points).sum(-1)
    sim_c = (qn[:, None] * nn_[out.index_c]).sum(-1)
    assert torch.all(sim_h >= sim_c - 1e-12)


def test_generator_determinism_and_chunking() -> None:
    q, neg = _queue(b=9)
    m1 = HardNegativeMixer(n_hard=6, n_mix=4, n_mix_query=2)
    m2 = HardNegativeMixer(n_hard=6, n_mix=4, n_mix_query=2, chunk_size=2)
    a = m1(q, neg, torch.Generator().manual_seed(5))
    b = m2(q, neg, torch.Generator().manual_seed(5))
    c = m1(q, neg, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_n_hard_capped_and_zero_counts() -> None:
    q, neg = _queue(k=3)
    out = HardNegativeMixer(n_hard=100, n_mix=2, n_mix_query=0).sample(q, neg)
    assert out.hard_index.shape == (4, 3)
    assert out.points.shape == (4, 2, 6)
    none = HardNegativeMixer(n_hard=2, n_mix=0, n_mix_query=0)(q, neg)
    assert none.shape == (4, 0, 6)


def test_mochi_composes_with_moco_and_dcl() -> None:
    """MoCoLoss with MoCHi points equals the dense loss with those logits appended per query."""
    q, key, neg, _ = _inputs(5, 12, 6, 0, seed=7)
    pts = HardNegativeMixer(n_hard=4, n_mix=3, n_mix_query=2)(
        q, neg, torch.Generator().manual_seed(8)
    )
    for dec in (False, True):
        out = MoCoLoss(decoupled=dec, reduction="none")(q, key, neg, pts)
        torch.testing.assert_close(out, moco_ref(q, key, neg, pts, 0.2, dec), rtol=1e-9, atol=1e-11)
        # extra hard negatives raise the loss of every query
        assert torch.all(out > MoCoLoss(decoupled=dec, reduction="none")(q, key, neg))


def test_mixer_errors() -> None:
    q, neg = _queue()
    with pytest.raises(ValueError, match="n_hard must be an int >= 1"):
        HardNegativeMixer(n_hard=0, n_mix=1, n_mix_query=1)
    with pytest.raises(ValueError, match="n_mix must be an int >= 0"):
        HardNegativeMixer(n_hard=1, n_mix=-1, n_mix_query=1)
    # a non-integer is a TypeError, an integer out of range a ValueError (one rule, check_int)
    with pytest.raises(TypeError, match="n_mix_query must be an int, got float"):
        HardNegativeMixer(n_hard=1, n_mix=1, n_mix_query=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"beta_max must lie in \(0, 1\)"):
        HardNegativeMixer(n_hard=1, n_mix=1, n_mix_query=1, beta_max=1.0)
    with pytest.raises(ValueError, match="beta_max"):
        HardNegativeMixer(n_hard=1, n_mix=1, n_mix_query=1, beta_max=0.0)
    mixer = HardNegativeMixer(n_hard=2, n_mix=1, n_mix_query=1)
    with pytest.raises(ValueError, match="at least one row"):
        mixer(q, neg[:0])
    with pytest.raises(ValueError, match="embedding dim 6"):
        mixer(q, neg[:, :2])
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        mixer(q[0], neg)
