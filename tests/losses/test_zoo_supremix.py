"""SupReMix (docs/methods.md section 3.4): sampling, detached mixtures, float64 reference, memory bound."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from contrastkit.losses import SupCon
from contrastkit.losses.supremix import (
    SupReMix,
    SupReMixSample,
    sample_beta_integer,
    weighted_self_logsumexp,
)

F64 = torch.float64


def supremix_ref(
    views: Tensor,
    labels: Tensor,
    sample: SupReMixSample,
    tau: float,
    magnify: str,
    reduction: str = "mean",
    detach: bool = True,
) -> Tensor:
    """Dense float64 reference from docs/methods.md section 3.4 and the documented assembly, one anchor at
    a time: positives = equal-label rows + mix-pos; candidates = all other rows + all mixtures; each
    candidate's exp weighted by d(y_i, y_c) + 1; mixtures built from detached features."""
    n, v, _ = views.shape
    z = torch.cat([views[:, k] for k in range(v)]).to(F64)
    z = z / z.norm(dim=1, keepdim=True)
    zd = z.detach() if detach else z  # detach=False only to show that the tests can tell
    y = labels.to(F64).repeat(v)
    r = z.shape[0]

    def dist(a: Tensor, b: Tensor) -> Tensor:
        if magnify == "l1":
            return (a - b).abs()
        if magnify == "l2":
            return (a - b) ** 2
        return torch.zeros_like(a - b)

    def unit(x: Tensor) -> Tensor:
        return x / x.norm()

    terms, valid = [], []
    for i in range(r):
        cand_s, cand_w, pos_s = [], [], []
        for k in range(r):
            if k == i:
                continue
            s = z[i] @ z[k] / tau
            cand_s.append(s)
            cand_w.append(dist(y[i], y[k]) + 1)
            if y[k] == y[i]:
                pos_s.append(s)
        if bool(sample.neg_valid[i]):
            for m in range(sample.neg_index.shape[1]):
                k, lam = int(sample.neg_index[i, m]), sample.neg_lambda[i, m]
                mix = unit(lam * zd[i] + (1 - lam) * zd[k])
                cand_s.append(z[i] @ mix / tau)
                cand_w.append(dist(y[i], lam * y[i] + (1 - lam) * y[k]) + 1)
        if bool(sample.pos_valid[i]):
            for m in range(sample.pos_lower.shape[1]):
                j, k = int(sample.pos_lower[i, m]), int(sample.pos_upper[i, m])
                lam = sample.pos_lambda[i, m]
                s = z[i] @ unit(lam * zd[j] + (1 - lam) * zd[k]) / tau
                cand_s.append(s)
                cand_w.append(torch.tensor(1.0, dtype=F64))
                pos_s.append(s)
        if not pos_s:
            terms.append(torch.zeros((), dtype=F64))
            valid.append(False)
            continue
        log_den = torch.log((torch.stack(cand_w) * torch.exp(torch.stack(cand_s))).sum())
        terms.append(-(torch.stack(pos_s) - log_den).mean())
        valid.append(True)
    t = torch.stack(terms).reshape(v, n).T
    ok = torch.tensor(valid).reshape(v, n).T
    if reduction == "none":
        return t
    if reduction == "sum":
        return t.sum()
    return t[ok].sum() / ok.sum().clamp(min=1)


def _batch(n: int, v: int, d: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    views = torch.randn(n, v, d, generator=g, dtype=F64, requires_grad=True)
    labels = torch.randint(0, max(2, n // 2), (n,), generator=g).to(F64) * 0.5
    return views, labels


def _run(loss: SupReMix, views: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, SupReMixSample]:
    sample = loss.sample(views, labels, torch.Generator().manual_seed(seed))
    out = loss(views, labels, torch.Generator().manual_seed(seed))
    return out, sample


CASES: list[tuple[Any, ...]] = [
    # n, v, d, tau, magnify, n_neg, n_pos, max_dist
    (5, 2, 3, 0.1, "l1", 3, 2, None),
    (6, 2, 4, 0.5, "l2", 2, 3, 1.0),
    (7, 1, 4, 0.07, "l1", 4, 4, None),
    (4, 3, 3, 1.0, "none", 2, 2, 0.75),
    (6, 2, 5, 0.2, "l1", 0, 0, None),
    (6, 2, 5, 0.2, "l1", 0, 3, None),
    (6, 2, 5, 0.2, "l2", 3, 0, None),
]


@pytest.mark.parametrize(("n", "v", "d", "tau", "magnify", "n_neg", "n_pos", "max_dist"), CASES)
def test_value_and_grad_vs_float64_reference(
    n: int,
    v: int,
    d: int,
    tau: float,
    magnify: str,
    n_neg: int,
    n_pos: int,
    max_dist: float | None,
) -> None:
    views, labels = _batch(n, v, d, seed=n + v)
    loss = SupReMix(
        temperature=tau,
        n_mix_neg=n_neg,
        n_mix_pos=n_pos,
        magnify=magnify,
        max_positive_distance=max_dist,
        reduction="none",
        chunk_size=3,
    )
    out, sample = _run(loss, views, labels, seed=11)
    ref = supremix_ref(views, labels, sample, tau, magnify, "none")
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-11)
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=F64).reshape(out.shape)
    (g_out,) = torch.autograd.grad((out * w).sum(), views)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), views)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk", [None, 1, 4])
def test_reductions_and_chunks(reduction: str, chunk: int | None) -> None:
    views, labels = _batch(6, 2, 4, seed=3)
    loss = SupReMix(n_mix_neg=2, n_mix_pos=2, reduction=reduction, chunk_size=chunk)
    out, sample = _run(loss, views, labels, seed=5)
    torch.testing.assert_close(
        out, supremix_ref(views, labels, sample, 0.07, "l1", reduction), rtol=1e-9, atol=1e-11
    )


@pytest.mark.parametrize("magnify", ["l1", "l2", "none"])
def test_gradcheck_without_mixtures(magnify: str) -> None:
    """gradcheck perturbs the input, which moves the (detached) mixtures, so the numerical Jacobian
    only matches without mixtures; the mixture terms are checked against the reference above."""
    views, labels = _batch(4, 2, 3, seed=4)
    loss = SupReMix(temperature=0.5, n_mix_neg=0, n_mix_pos=0, magnify=magnify, chunk_size=3)
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (views,))


def test_gradcheck_weighted_self_logsumexp() -> None:
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(5, 3, generator=g, dtype=F64, requires_grad=True)
    y = torch.randn(5, generator=g, dtype=F64)
    assert torch.autograd.gradcheck(lambda z: weighted_self_logsumexp(z, y, 2.0, "l1", 2), (rows,))
    dense = (rows @ rows.T) * 2.0 + torch.log1p((y[:, None] - y[None, :]).abs())
    dense = dense.masked_fill(torch.eye(5, dtype=torch.bool), float("-inf"))
    torch.testing.assert_close(
        weighted_self_logsumexp(rows, y, 2.0, "l1", 2), torch.logsumexp(dense, dim=1)
    )


def test_hand_computable_distance_magnifying() -> None:
    """Two instances, labels 0 and 1, both views equal, instances orthogonal, no mixing:
    l = -log(e^{1/t} / (e^{1/t} + 2 * (|0 - 1| + 1)))  (each negative weighted by 2)."""
    tau = 0.5
    views = torch.tensor([[[1.0, 0.0]] * 2, [[0.0, 3.0]] * 2], dtype=F64)
    labels = torch.tensor([0.0, 1.0], dtype=F64)
    loss = SupReMix(temperature=tau, n_mix_neg=0, n_mix_pos=0)
    e = math.exp(1 / tau)
    assert loss(views, labels).item() == pytest.approx(-math.log(e / (e + 4)), rel=1e-12)
    plain = SupReMix(temperature=tau, n_mix_neg=0, n_mix_pos=0, magnify="none")
    assert plain(views, labels).item() == pytest.approx(-math.log(e / (e + 2)), rel=1e-12)
    l2 = SupReMix(temperature=tau, n_mix_neg=0, n_mix_pos=0, magnify="l2")
    labels3 = torch.tensor([0.0, 3.0], dtype=F64)
    # l2 weight: (0 - 3)^2 + 1 = 10
    assert l2(views, labels3).item() == pytest.approx(-math.log(e / (e + 20)), rel=1e-12)


def test_without_mixing_or_magnifying_equals_supcon() -> None:
    views, labels = _batch(8, 2, 5, seed=6)
    ours = SupReMix(temperature=0.2, n_mix_neg=0, n_mix_pos=0, magnify="none")(views, labels)
    supcon = SupCon(temperature=0.2, base_temperature=0.2)(views, (labels * 2).long())
    torch.testing.assert_close(ours, supcon, rtol=1e-9, atol=1e-11)


def test_mix_pos_labels_equal_anchor_and_partners_bracket_it() -> None:
    g = torch.Generator().manual_seed(0)
    views = torch.randn(20, 2, 4, generator=g, dtype=F64)
    labels = torch.rand(20, generator=g, dtype=F64) * 10
    loss = SupReMix(n_mix_pos=16, max_positive_distance=3.0)
    s = loss.sample(views, labels, g)
    y = labels.repeat(2)
    assert bool(s.pos_valid.any()) and not bool(s.pos_valid.all())
    yv = y[s.pos_valid]
    torch.testing.assert_close(s.pos_labels[s.pos_valid], yv[:, None].expand(-1, 16))
    lo, hi = y[s.pos_lower][s.pos_valid], y[s.pos_upper][s.pos_valid]
    assert torch.all(lo < yv[:, None]) and torch.all(hi > yv[:, None])
    assert torch.all(yv[:, None] - lo < 3.0) and torch.all(hi - yv[:, None] < 3.0)
    lam = s.pos_lambda[s.pos_valid]
    assert torch.all((lam > 0) & (lam < 1))
    # an anchor is invalid exactly when it has no partner on one side within the distance
    for i in range(y.shape[0]):
        below = ((y < y[i]) & (y[i] - y < 3.0)).any()
        above = ((y > y[i]) & (y - y[i] < 3.0)).any()
        assert bool(s.pos_valid[i]) == bool(below and above)


def test_mix_neg_partners_have_other_labels_and_cover_them() -> None:
    views = torch.randn(6, 2, 3, dtype=F64)
    labels = torch.tensor([1.0, 1.0, 2.0, 2.0, 2.0, 7.0], dtype=F64)
    s = SupReMix(n_mix_neg=200).sample(views, labels, torch.Generator().manual_seed(1))
    y = labels.repeat(2)
    assert torch.all(y[s.neg_index] != y[:, None])
    for i in range(12):
        others = set(torch.nonzero(y != y[i]).flatten().tolist())
        assert set(s.neg_index[i].tolist()) == others  # uniform draws reach every negative
    expected = s.neg_lambda * y[:, None] + (1 - s.neg_lambda) * y[s.neg_index]
    torch.testing.assert_close(s.neg_labels, expected)


def test_single_label_batch_has_no_mixtures() -> None:
    views = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    labels = torch.full((4,), 2.5, dtype=F64)
    loss = SupReMix(n_mix_neg=3, n_mix_pos=3)
    s = loss.sample(views, labels)
    assert not bool(s.neg_valid.any()) and not bool(s.pos_valid.any())
    out = loss(views, labels)
    assert torch.isfinite(out)
    out.backward()


@pytest.mark.parametrize(("a", "b"), [(2, 8), (8, 2), (5, 5)])
def test_beta_sampler_moments(a: int, b: int) -> None:
    x = sample_beta_integer(a, b, (20000,), generator=torch.Generator().manual_seed(a * 10 + b))
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    assert torch.all((x > 0) & (x < 1))
    assert abs(x.mean().item() - mean) < 0.005
    assert abs(x.var().item() - var) < 0.1 * var


def test_mix_neg_lambda_follows_the_chosen_beta() -> None:
    views = torch.randn(10, 2, 3, dtype=F64)
    labels = torch.arange(10, dtype=F64)
    for beta, mean in (((2, 8), 0.2), ((8, 2), 0.8)):
        s = SupReMix(n_mix_neg=500, mix_neg_beta=beta).sample(
            views, labels, torch.Generator().manual_seed(2)
        )
        assert abs(s.neg_lambda.mean().item() - mean) < 0.01


def test_mixtures_detached_and_normalised() -> None:
    views, labels = _batch(6, 2, 4, seed=7)
    loss = SupReMix(n_mix_neg=3, n_mix_pos=3)
    rows = torch.cat([views[:, 0], views[:, 1]])
    rows = rows / rows.norm(dim=1, keepdim=True)
    s = loss.sample(views, labels, torch.Generator().manual_seed(0))
    mix_neg, mix_pos = loss.build_mixtures(rows, s)
    assert rows.requires_grad
    assert not mix_neg.requires_grad and not mix_pos.requires_grad
    torch.testing.assert_close(mix_neg.norm(dim=-1), torch.ones(12, 3, dtype=F64))
    valid = s.pos_valid
    torch.testing.assert_close(
        mix_pos[valid].norm(dim=-1), torch.ones(int(valid.sum()), 3, dtype=F64)
    )


def test_mixtures_detached_changes_the_gradient() -> None:
    """The reference with mixtures NOT detached has a different gradient (same value), so the
    reference test above would catch a loss that let gradients through the mixtures."""
    views, labels = _batch(6, 2, 4, seed=8)
    loss = SupReMix(n_mix_neg=3, n_mix_pos=3)
    out, s = _run(loss, views, labels, seed=3)
    (g_out,) = torch.autograd.grad(out, views)
    attached = supremix_ref(views, labels, s, 0.07, "l1", detach=False)
    torch.testing.assert_close(out, attached, rtol=1e-9, atol=1e-11)
    (g_att,) = torch.autograd.grad(attached, views)
    assert not torch.allclose(g_out, g_att, rtol=1e-4, atol=1e-6)


def test_generator_determinism() -> None:
    views, labels = _batch(8, 2, 4, seed=9)
    loss = SupReMix(n_mix_neg=4, n_mix_pos=4)
    a = loss(views, labels, torch.Generator().manual_seed(1))
    b = loss(views, labels, torch.Generator().manual_seed(1))
    c = loss(views, labels, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


class _MaxNumel(TorchDispatchMode):
    """Records the largest tensor any aten op produces and every 2-D shape."""

    def __init__(self) -> None:
        super().__init__()
        self.max_numel = 0
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, Tensor):
                self.max_numel = max(self.max_numel, t.numel())
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("magnify", ["l1", "none"])
def test_memory_bounded_by_rows_times_samples_times_dim(magnify: str) -> None:
    """No tensor produced in forward or backward exceeds R x n_samples x D (R = V*N rows); in
    particular no R x R x D (or B x B x B x D) tensor and, with chunking, no full R x R matrix."""
    n, v, d, n_samples, chunk = 16, 2, 8, 4, 4
    r = n * v
    g = torch.Generator().manual_seed(0)
    views = torch.randn(n, v, d, generator=g, requires_grad=True)
    labels = torch.randint(0, 6, (n,), generator=g).float()
    loss = SupReMix(n_mix_neg=n_samples, n_mix_pos=n_samples, magnify=magnify, chunk_size=chunk)
    with _MaxNumel() as rec:
        out = loss(views, labels, torch.Generator().manual_seed(0))
        out.backward()
    # the Beta(2, 8) draws take a + b = 10 uniforms per mixture: R x n x max(D, a + b)
    bound = r * n_samples * max(d, 10)
    assert r * r * d > bound  # the bound rules out the dense mixtures
    assert rec.max_numel <= bound, rec.max_numel
    assert (r, r) not in rec.shapes
    assert views.grad is not None and torch.isfinite(views.grad).all()


def test_errors() -> None:
    views, labels = _batch(4, 2, 3)
    with pytest.raises(ValueError, match="temperature"):
        SupReMix(temperature=-1.0)
    with pytest.raises(ValueError, match="n_mix_neg must be an int >= 0"):
        SupReMix(n_mix_neg=-1)
    # a non-integer is a TypeError, an integer out of range a ValueError (one rule, check_int)
    with pytest.raises(TypeError, match="n_mix_pos must be an int"):
        SupReMix(n_mix_pos=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mix_neg_beta\[0\] must be an int"):
        SupReMix(mix_neg_beta=(2.5, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mix_neg_beta must be a pair of positive integers"):
        SupReMix(mix_neg_beta=(2, 8, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mix_neg_beta\[0\] must be an int >= 1"):
        SupReMix(mix_neg_beta=(0, 8))
    with pytest.raises(ValueError, match="max_positive_distance"):
        SupReMix(max_positive_distance=0.0)
    with pytest.raises(ValueError, match="magnify must be one of"):
        SupReMix(magnify="l3")
    with pytest.raises(ValueError, match="reduction"):
        SupReMix(reduction="avg")
    loss = SupReMix()
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        loss(views, labels[:3])
    with pytest.raises(TypeError, match="real numbers"):
        loss(views, labels > 0)
    with pytest.raises(ValueError, match="labels must be finite"):
        loss(views, labels * float("nan"))
    with pytest.raises(ValueError, match=r"\(N, V, D\)"):
        loss(views[:, 0], labels)
    with pytest.raises(ValueError, match="finite"):
        loss(views.detach() * float("inf"), labels)
