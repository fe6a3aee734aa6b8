"""Multi-view losses (docs/methods.md section 2.6): DHEL, MV-InfoNCE (both denominators), MV-DHEL, PWE and AVG.

The references are the naive forms of the formulas: ``exp`` of dense similarity matrices, sums,
products over views, then ``log`` (the way the reference repository computes), in float64.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from contrastkit.losses import (
    DHEL,
    MVDHEL,
    AVGInfoNCE,
    InfoNCE,
    MVInfoNCE,
    PWEInfoNCE,
    get_loss,
    loss_info,
)

F64 = torch.float64
RTOL, ATOL = 1e-9, 1e-11
GRTOL, GATOL = 1e-8, 1e-10


def make_views(n: int, v: int, d: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    return (centre + 0.6 * torch.randn(n, v, d, generator=g, dtype=F64)).requires_grad_(True)


def unit_views(views: Tensor) -> Tensor:
    """(V, N, D) L2-normalised float64 views."""
    x = views.to(F64).transpose(0, 1)
    return x / x.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------------------------------
# naive references (exp, sums, products, then log)
# --------------------------------------------------------------------------------------------------


def off_diag_sum(e: Tensor) -> Tensor:
    return (e * (1 - torch.eye(e.shape[0], dtype=F64))).sum(dim=1)


def dhel_ref(views: Tensor, t: float) -> Tensor:
    """Per instance: -s_i/t + log sum_{j != i} e(u_i, u_j) + log sum_{j != i} e(v_i, v_j)."""
    u, w = unit_views(views)
    s = (u * w).sum(dim=1)
    return (
        -s / t
        + torch.log(off_diag_sum(torch.exp(u @ u.T / t)))
        + torch.log(off_diag_sum(torch.exp(w @ w.T / t)))
    )


def mvdhel_ref(views: Tensor, t: float, include_self: bool = False) -> Tensor:
    """Per instance: -log( sum_{l<l'} e(U_il, U_il') / prod_l sum_{j(!=i)} e(U_il, U_jl) )."""
    z = unit_views(views)
    v = z.shape[0]
    num = sum(
        torch.exp((z[a] * z[b]).sum(dim=1) / t) for a, b in itertools.combinations(range(v), 2)
    )
    den = torch.ones(z.shape[1], dtype=F64)
    for view in range(v):
        e = torch.exp(z[view] @ z[view].T / t)
        den = den * (e.sum(dim=1) if include_self else off_diag_sum(e))
    assert isinstance(num, Tensor)
    return -torch.log(num / den)


def mvinfonce_ref(views: Tensor, t: float, same_view: bool = True) -> Tensor:
    """Per instance: -log(Num_i / Den_i), Num_i = 2 sum_{l<l'} e(U_il, U_il'),
    Den_i = sum_l sum_{(j,m) != (i,l)} e(U_il, U_jm)   (same_view=True, code)
          = sum_l sum_{m != l} sum_j e(U_il, U_jm)      (same_view=False, README)."""
    z = unit_views(views)
    v, n, _ = z.shape
    num = 2 * sum(
        torch.exp((z[a] * z[b]).sum(dim=1) / t) for a, b in itertools.combinations(range(v), 2)
    )
    den = torch.zeros(n, dtype=F64)
    for lv in range(v):
        for m in range(v):
            e = torch.exp(z[lv] @ z[m].T / t)
            if m == lv:
                if same_view:
                    den = den + off_diag_sum(e)
            else:
                den = den + e.sum(dim=1)
    assert isinstance(num, Tensor)
    return -torch.log(num / den)


def two_view_ntxent_ref(a: Tensor, b: Tensor, t: float) -> Tensor:
    """(2, N) per-anchor NT-Xent on the rows [a; b] as given (dot products, no normalisation)."""
    x = torch.cat([a, b], dim=0)
    n = a.shape[0]
    e = torch.exp(x @ x.T / t)
    den = off_diag_sum(e)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    num = e[torch.arange(2 * n), partner]
    return (-torch.log(num / den)).reshape(2, n)


def pwe_ref(views: Tensor, t: float) -> Tensor:
    z = unit_views(views)
    pairs = list(itertools.combinations(range(z.shape[0]), 2))
    return sum(two_view_ntxent_ref(z[a], z[b], t).mean() for a, b in pairs) / len(pairs)  # type: ignore[return-value]


def avg_ref(views: Tensor, t: float, renormalize: bool = False) -> Tensor:
    z = unit_views(views)
    v = z.shape[0]
    total = torch.zeros((), dtype=F64)
    for k in range(v):
        others = torch.stack([z[m] for m in range(v) if m != k]).mean(dim=0)
        if renormalize:
            others = others / others.norm(dim=1, keepdim=True)
        total = total + two_view_ntxent_ref(z[k], others, t).mean()
    return total / v


def assert_value_and_grad(out: Tensor, expected: Tensor, x: Tensor) -> None:
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    w = torch.rand(out.shape, generator=torch.Generator().manual_seed(5), dtype=F64) + 0.5
    (g_lib,) = torch.autograd.grad((out * w).sum(), x)
    (g_ref,) = torch.autograd.grad((expected * w).sum(), x)
    assert torch.isfinite(g_lib).all()
    torch.testing.assert_close(g_lib, g_ref, rtol=GRTOL, atol=GATOL)


SHAPES = [(2, 2, 3), (5, 3, 4), (7, 4, 6)]
TEMPS = [0.1, 0.5, 1.0]


# --------------------------------------------------------------------------------------------------
# values and gradients against the references
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize(("n", "v", "d"), SHAPES)
def test_mvdhel_vs_reference(n: int, v: int, d: int, t: float) -> None:
    x = make_views(n, v, d, seed=n + v)
    for include_self in (False, True):
        out = MVDHEL(temperature=t, include_self_in_uniformity=include_self, reduction="none")(x)
        assert_value_and_grad(out, mvdhel_ref(x, t, include_self), x)


@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize(("n", "v", "d"), SHAPES)
def test_mvinfonce_vs_reference(n: int, v: int, d: int, t: float) -> None:
    x = make_views(n, v, d, seed=2 * n + v)
    for same_view in (True, False):
        out = MVInfoNCE(temperature=t, same_view_negatives=same_view, reduction="none")(x)
        assert_value_and_grad(out, mvinfonce_ref(x, t, same_view), x)


@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize(("n", "v", "d"), SHAPES)
def test_pwe_and_avg_vs_reference(n: int, v: int, d: int, t: float) -> None:
    x = make_views(n, v, d, seed=3 * n + v)
    assert_value_and_grad(PWEInfoNCE(temperature=t)(x), pwe_ref(x, t), x)
    assert_value_and_grad(AVGInfoNCE(temperature=t)(x), avg_ref(x, t), x)
    assert_value_and_grad(
        AVGInfoNCE(temperature=t, renormalize_mean=True)(x), avg_ref(x, t, renormalize=True), x
    )


@pytest.mark.parametrize("t", TEMPS)
def test_dhel_vs_reference(t: float) -> None:
    x = make_views(6, 2, 5, seed=7)
    assert_value_and_grad(DHEL(temperature=t, reduction="none")(x), dhel_ref(x, t), x)
    assert_value_and_grad(DHEL(temperature=t)(x), dhel_ref(x, t).mean(), x)


@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_and_chunks(reduction: str, chunk: int | None) -> None:
    n, v = 7, 3
    x = make_views(n, v, 4, seed=8)
    t = 0.2
    cases: list[tuple[torch.nn.Module, Tensor, tuple[int, ...]]] = [
        (MVDHEL(temperature=t, reduction=reduction, chunk_size=chunk), mvdhel_ref(x, t), (n,)),
        (
            MVInfoNCE(temperature=t, reduction=reduction, chunk_size=chunk),
            mvinfonce_ref(x, t),
            (n,),
        ),
        (
            MVInfoNCE(
                temperature=t, same_view_negatives=False, reduction=reduction, chunk_size=chunk
            ),
            mvinfonce_ref(x, t, same_view=False),
            (n,),
        ),
    ]
    for loss, per_instance, shape in cases:
        out = loss(x)
        expected = {"none": per_instance, "sum": per_instance.sum(), "mean": per_instance.mean()}[
            reduction
        ]
        assert out.shape == (shape if reduction == "none" else ())
        assert_value_and_grad(out, expected, x)
    # PWE / AVG: "none" is (N, V) whose mean is the loss
    for loss_cls, ref in ((PWEInfoNCE, pwe_ref), (AVGInfoNCE, avg_ref)):
        grid = loss_cls(temperature=t, reduction="none", chunk_size=chunk)(x)
        assert grid.shape == (n, v)
        torch.testing.assert_close(grid.mean(), ref(x, t), rtol=RTOL, atol=ATOL)
        out = loss_cls(temperature=t, reduction=reduction, chunk_size=chunk)(x)
        expected = {"none": grid, "sum": grid.sum(), "mean": grid.mean()}[reduction]
        torch.testing.assert_close(out, expected)


# --------------------------------------------------------------------------------------------------
# docs/methods.md section 2.6 properties
# --------------------------------------------------------------------------------------------------


def test_mvdhel_two_views_equals_dhel() -> None:
    x = make_views(8, 2, 5, seed=9)
    for t in (0.1, 0.5):
        for include_self in (False, True):
            a = MVDHEL(temperature=t, include_self_in_uniformity=include_self, reduction="none")(x)
            b = DHEL(temperature=t, include_self_in_uniformity=include_self, reduction="none")(x)
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        # and the DHEL formula itself: -s_i/t + two log-sums
        torch.testing.assert_close(
            MVDHEL(temperature=t, reduction="none")(x), dhel_ref(x, t), rtol=RTOL, atol=ATOL
        )


@pytest.mark.parametrize("loss_cls", [MVDHEL, MVInfoNCE, PWEInfoNCE, AVGInfoNCE])
def test_invariant_to_permuting_views(loss_cls: type[torch.nn.Module]) -> None:
    x = make_views(6, 4, 5, seed=10)
    loss = loss_cls(temperature=0.3)
    base = loss(x)
    for perm in ([1, 0, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        torch.testing.assert_close(loss(x[:, perm]), base, rtol=1e-12, atol=1e-12)
    if loss_cls is MVInfoNCE:
        readme = MVInfoNCE(temperature=0.3, same_view_negatives=False)
        torch.testing.assert_close(readme(x[:, [2, 0, 3, 1]]), readme(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("v", [2, 3, 5])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_mvdhel_coinciding_views_closed_form(v: int, t: float) -> None:
    """All V views of every instance equal u_i:
    L = -(log C(V,2) + 1/t) + (V/M) sum_i log sum_{j != i} e(u_i, u_j)."""
    m = 6
    g = torch.Generator().manual_seed(11)
    u = torch.randn(m, 4, generator=g, dtype=F64)
    u = u / u.norm(dim=1, keepdim=True)
    x = u[:, None, :].repeat(1, v, 1)
    uniform = torch.log(off_diag_sum(torch.exp(u @ u.T / t))).sum()
    expected = -(math.log(math.comb(v, 2)) + 1 / t) + (v / m) * float(uniform)
    assert float(MVDHEL(temperature=t)(x)) == pytest.approx(expected, rel=1e-12)


def test_log_space_equals_naive_exp_prod_form() -> None:
    """At t = 0.5 the log-space implementation equals the exp / prod form of the reference code."""
    x = make_views(9, 5, 6, seed=12)
    torch.testing.assert_close(
        MVDHEL(temperature=0.5, reduction="none")(x), mvdhel_ref(x, 0.5), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        MVInfoNCE(temperature=0.5, reduction="none")(x),
        mvinfonce_ref(x, 0.5),
        rtol=1e-12,
        atol=1e-12,
    )


def test_small_temperature_many_views_stays_finite() -> None:
    """The naive product of sums overflows float64 (e^{V/t} > 1e308); log space does not."""
    g = torch.Generator().manual_seed(13)
    # every row close to one direction: each per-view sum is about e^{100}, their product e^{800}
    x = torch.ones(6, 8, 4, dtype=F64) + 0.05 * torch.randn(6, 8, 4, generator=g, dtype=F64)
    t = 0.01
    naive = mvdhel_ref(x, t)
    assert not torch.isfinite(naive).all()
    out = MVDHEL(temperature=t, reduction="none")(x.requires_grad_(True))
    assert torch.isfinite(out).all()
    # independent log-space transcription
    z = unit_views(x.detach())
    upper = [(a, b) for a, b in itertools.combinations(range(8), 2)]
    align = torch.logsumexp(torch.stack([(z[a] * z[b]).sum(1) / t for a, b in upper]), dim=0)
    eye = torch.eye(6, dtype=torch.bool)
    unif = sum(
        torch.logsumexp((z[k] @ z[k].T / t).masked_fill(eye, float("-inf")), dim=1)
        for k in range(8)
    )
    torch.testing.assert_close(out.detach(), unif - align, rtol=1e-12, atol=1e-9)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mvinfonce_denominators_differ_by_same_view_terms() -> None:
    """Code minus README denominator = the same-view negatives: check in exp space."""
    x = make_views(5, 3, 4, seed=14)
    t = 0.4
    code = MVInfoNCE(temperature=t, reduction="none")(x)
    readme = MVInfoNCE(temperature=t, same_view_negatives=False, reduction="none")(x)
    z = unit_views(x)
    same = sum(off_diag_sum(torch.exp(z[k] @ z[k].T / t)) for k in range(3))
    # exp(l_code) - exp(l_readme) = (Den_code - Den_readme) / Num = same / Num
    num = 2 * sum(
        torch.exp((z[a] * z[b]).sum(1) / t) for a, b in itertools.combinations(range(3), 2)
    )
    torch.testing.assert_close(torch.exp(code) - torch.exp(readme), same / num)


def test_mvinfonce_single_instance_hand_computed() -> None:
    """One instance, V views all equal: Num = V(V-1) e^{1/t}; the code denominator is the same
    (every other row is a positive), so L = 0; the README one too (no same-view rows)."""
    x = torch.tensor([[[1.0, 0.0]] * 4], dtype=F64)
    assert float(MVInfoNCE(temperature=0.2)(x)) == pytest.approx(0.0, abs=1e-12)
    assert float(MVInfoNCE(temperature=0.2, same_view_negatives=False)(x)) == pytest.approx(
        0.0, abs=1e-12
    )


def test_two_view_baselines_equal_ntxent() -> None:
    """For V = 2, PWE and AVG are SimCLR's NT-Xent."""
    x = make_views(6, 2, 4, seed=15)
    ref = InfoNCE(temperature=0.3)(x)
    torch.testing.assert_close(PWEInfoNCE(temperature=0.3)(x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(AVGInfoNCE(temperature=0.3)(x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        PWEInfoNCE(temperature=0.3, reduction="none")(x),
        InfoNCE(temperature=0.3, reduction="none")(x),
    )


def test_flags_change_the_loss() -> None:
    x = make_views(5, 3, 4, seed=16)
    assert not torch.allclose(MVDHEL()(x), MVDHEL(include_self_in_uniformity=True)(x))
    assert not torch.allclose(MVInfoNCE()(x), MVInfoNCE(same_view_negatives=False)(x))
    assert not torch.allclose(AVGInfoNCE()(x), AVGInfoNCE(renormalize_mean=True)(x))


def test_dhel_alignment_gradient_is_decoupled() -> None:
    """No positive in a denominator: d l_i / d s_i = -1/t, whatever the negatives."""
    x = make_views(5, 2, 4, seed=17).detach()
    z = unit_views(x)
    s = (z[0] * z[1]).sum(1).detach().requires_grad_(True)
    # the DHEL value written as a function of s_i (uniformity terms held fixed)
    out = MVDHEL(temperature=0.25, reduction="none")(x)
    uniform = out + s.detach() / 0.25
    rebuilt = -s / 0.25 + uniform
    (g,) = torch.autograd.grad(rebuilt.sum(), s)
    torch.testing.assert_close(g, torch.full((5,), -4.0, dtype=F64))
    torch.testing.assert_close(rebuilt.detach(), dhel_ref(x, 0.25))


def test_scale_invariant_and_low_precision() -> None:
    x = make_views(6, 3, 8, seed=18).detach()
    for loss in (MVDHEL(), MVInfoNCE(), PWEInfoNCE(), AVGInfoNCE(), DHEL()):
        y = x[:, :2] if isinstance(loss, DHEL) else x
        torch.testing.assert_close(loss(3.0 * y), loss(y))
        low = loss(y.bfloat16().requires_grad_(True))
        assert low.dtype == torch.float32
        assert abs(float(low.detach()) - float(loss(y))) < 0.05


# --------------------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------------------


def test_gradcheck_multiview() -> None:
    x = make_views(4, 3, 3, seed=19)
    x2 = make_views(4, 2, 3, seed=20)
    losses: list[tuple[torch.nn.Module, Tensor]] = [
        (MVDHEL(temperature=0.3, chunk_size=3, reduction="none"), x),
        (MVDHEL(temperature=0.3, include_self_in_uniformity=True), x),
        (MVInfoNCE(temperature=0.3, chunk_size=3, reduction="none"), x),
        (MVInfoNCE(temperature=0.3, same_view_negatives=False, chunk_size=3), x),
        (PWEInfoNCE(temperature=0.3, chunk_size=3, reduction="none"), x),
        (AVGInfoNCE(temperature=0.3, chunk_size=3), x),
        (AVGInfoNCE(temperature=0.3, renormalize_mean=True), x),
        (DHEL(temperature=0.3, chunk_size=3, reduction="none"), x2),
    ]
    for loss, inp in losses:
        assert torch.autograd.gradcheck(loss, (inp,), eps=1e-6, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# registry, trainer interface, errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("dhel", DHEL),
        ("mvinfonce", MVInfoNCE),
        ("mvdhel", MVDHEL),
        ("pwe", PWEInfoNCE),
        ("avg", AVGInfoNCE),
    ],
)
def test_registry_and_trainer_call(name: str, cls: type[torch.nn.Module]) -> None:
    info = loss_info(name)
    assert not info.needs_labels and info.input_kind == "views" and info.min_views == 2
    loss = get_loss(name, temperature=0.2)
    assert isinstance(loss, cls)
    v = 2 if name == "dhel" else 4
    z = torch.randn(8, v, 5, requires_grad=True)
    out = loss(z)  # the trainer calls loss(z) for losses without labels
    out.backward()
    assert out.shape == () and z.grad is not None and torch.isfinite(z.grad).all()


def test_errors() -> None:
    x = make_views(4, 3, 3).detach()
    with pytest.raises(ValueError, match="exactly 2 views"):
        DHEL()(x)
    for loss in (DHEL(), MVDHEL(), MVInfoNCE(), PWEInfoNCE(), AVGInfoNCE()):
        y = x[:, :2]
        with pytest.raises(ValueError, match="takes no labels"):
            loss(y, torch.arange(4))
        with pytest.raises(ValueError, match="at least 2 views"):
            loss(x[:, :1])
        with pytest.raises(ValueError, match=r"\(N, V, D\)"):
            loss(y[0])
        with pytest.raises(ValueError, match="finite"):
            loss(torch.full((3, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="at least 2 instances"):
        MVDHEL()(x[:1])
    with pytest.raises(ValueError, match="at least 2 instances"):
        DHEL()(x[:1, :2])
    assert torch.isfinite(MVDHEL(include_self_in_uniformity=True)(x[:1]))
    assert torch.isfinite(MVInfoNCE()(x[:1]))
    with pytest.raises(ValueError, match="temperature"):
        MVDHEL(temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        MVInfoNCE(reduction="avg")
    with pytest.raises(ValueError, match="chunk_size"):
        PWEInfoNCE(chunk_size=0)
    with pytest.raises(TypeError, match="same_view_negatives"):
        MVInfoNCE(same_view_negatives="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="include_self_in_uniformity"):
        MVDHEL(include_self_in_uniformity=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="renormalize_mean"):
        AVGInfoNCE(renormalize_mean=None)  # type: ignore[arg-type]
