"""CACR (docs/methods.md section 3.1): dense float64 reference, gradcheck, hand cases, flags and errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from contrastkit.losses.cacr import CACR

F64 = torch.float64


def views_(n: int, k: int, d: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    return (centre + 0.8 * torch.randn(n, k, d, generator=g, dtype=F64)).requires_grad_(True)


def cacr_ref(
    views: Tensor,
    alpha: float = 1.0,
    beta: float = 1.0,
    tau_plus: float = 1.0,
    tau_minus: float = 0.9,
    detach: bool = False,
    debiased: bool = False,
    prior: float = 0.1,
) -> Tensor:
    """docs/methods.md section 3.1 literally: per query view / per view pair, loops over anchors, dense."""
    z = [views[:, v] / views[:, v].norm(dim=1, keepdim=True) for v in range(views.shape[1])]
    k, n = len(z), views.shape[0]
    attraction = torch.zeros(n, dtype=F64)
    for x in range(k):
        others = [v for v in range(k) if v != x]
        dist = torch.stack([((z[x] - z[v]) ** 2).sum(1) for v in others], dim=1)  # (N, K-1)
        w = torch.softmax(tau_plus * dist, dim=1)
        w = w.detach() if detach else w
        attraction = attraction + (w * alpha * dist).sum(1) / k
    reps = []
    for x in range(k):
        for y in range(x + 1, k):
            per_anchor = []
            for i in range(n):
                negs = [j for j in range(n) if j != i]
                dist = ((z[x][i][None, :] - z[y][negs]) ** 2).sum(1)
                w = torch.softmax(-tau_minus * dist, dim=0)
                w = w.detach() if detach else w
                term = (w * (-beta * dist)).sum()
                if debiased:
                    pos = ((z[x][i] - z[y][i]) ** 2).sum()
                    term = (-prior * pos + term) / (1 - prior)
                per_anchor.append(term)
            reps.append(torch.stack(per_anchor))
    return attraction + torch.stack(reps).mean(0)


SHAPES = [(2, 2, 3), (5, 2, 4), (6, 3, 5), (7, 5, 8)]
PARAMS = [
    dict(alpha=1.0, beta=1.0, tau_plus=1.0, tau_minus=0.9),
    dict(alpha=0.5, beta=2.0, tau_plus=3.0, tau_minus=2.0),
    dict(alpha=2.0, beta=0.7, tau_plus=0.2, tau_minus=5.0),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("detach", [False, True])
def test_matches_dense_reference(
    shape: tuple[int, int, int], params: dict[str, float], detach: bool
) -> None:
    x = views_(*shape, seed=sum(shape))
    loss = CACR(**params, detach_weights=detach, reduction="none")  # type: ignore[arg-type]
    terms = loss(x)
    ref = cacr_ref(x, **params, detach=detach)  # type: ignore[arg-type]
    torch.testing.assert_close(terms, ref, rtol=1e-10, atol=1e-12)
    g = torch.autograd.grad(terms.sum(), x)[0]
    g_ref = torch.autograd.grad(ref.sum(), x)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("debiased", [False, True])
def test_debiased_variant_matches_reference(debiased: bool) -> None:
    x = views_(6, 3, 4, seed=7)
    value = CACR(debiased=debiased, positive_prior=0.2)(x)
    ref = cacr_ref(x, debiased=debiased, prior=0.2).mean()
    torch.testing.assert_close(value, ref, rtol=1e-10, atol=1e-12)
    g, g_ref = (torch.autograd.grad(v, x)[0] for v in (value, ref))
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)
    if debiased:
        assert not torch.allclose(value, CACR()(x))


def test_gradcheck() -> None:
    # detach_weights=True is excluded on purpose: its gradient is not the derivative of the value
    # (the dense reference test checks it against the formula with detached weights)
    x = views_(3, 3, 3, seed=1)
    assert torch.autograd.gradcheck(lambda v: CACR(tau_minus=2.0)(v), (x,))
    assert torch.autograd.gradcheck(lambda v: CACR(debiased=True)(v), (x,))
    assert torch.autograd.gradcheck(lambda v: CACR(chunk_size=2, normalize=False)(v), (x,))


def test_detach_flag_changes_gradient_not_value() -> None:
    x = views_(6, 4, 5, seed=3)
    live, frozen = CACR(detach_weights=False), CACR(detach_weights=True)
    v_live, v_frozen = live(x), frozen(x)
    torch.testing.assert_close(v_live, v_frozen, rtol=1e-12, atol=1e-14)
    g_live = torch.autograd.grad(v_live, x)[0]
    g_frozen = torch.autograd.grad(v_frozen, x)[0]
    assert (g_live - g_frozen).abs().max() > 1e-3


def test_chunked_equals_unchunked_with_checkpointing() -> None:
    x = views_(11, 3, 6, seed=4)
    out = []
    for chunk in (None, 4, 1):
        xx = x.detach().clone().requires_grad_(True)
        value = CACR(chunk_size=chunk)(xx)
        value.backward()
        out.append((value.detach(), xx.grad))
    for value, grad in out[1:]:
        torch.testing.assert_close(value, out[0][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, out[0][1], rtol=1e-10, atol=1e-12)


def test_hand_cases() -> None:
    # K = 2: one positive, weight 1; each query view sees the same cost -> attraction = alpha d^2
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]], dtype=F64)
    loss = CACR(alpha=0.5, beta=1.0, reduction="none")
    # attraction: 0.5 * ||e1 - e2||^2 = 1 ; repulsion: one negative (weight 1), anchor view 0 of
    # instance 0 is e1, negative view 1 of instance 1 is -e2: -||e1 + e2||^2 = -2
    torch.testing.assert_close(loss(z), torch.tensor([1.0 - 2.0, 1.0 - 2.0], dtype=F64))
    # identical views: attraction vanishes, the loss is the pure repulsion
    same = torch.randn(4, 1, 3, dtype=F64).repeat(1, 3, 1)
    attraction = CACR()._attraction(torch.nn.functional.normalize(same, dim=-1))
    assert attraction.abs().max() < 1e-12
    # far positives weigh more: with tau_plus > 0 the attraction exceeds the uniform average
    x = views_(5, 4, 3, seed=9).detach()
    unit = x / x.norm(dim=-1, keepdim=True)
    sharp = CACR(tau_plus=5.0)._attraction(unit)
    flat = CACR(tau_plus=1e-9)._attraction(unit)
    assert (sharp >= flat - 1e-12).all() and (sharp > flat + 1e-3).any()


def test_reductions_and_low_precision() -> None:
    x = views_(5, 3, 4, seed=2)
    terms = CACR(reduction="none")(x)
    assert terms.shape == (5,)
    torch.testing.assert_close(CACR()(x), terms.mean())
    torch.testing.assert_close(CACR(reduction="sum")(x), terms.sum())
    half = CACR()(x.detach().to(torch.bfloat16))
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_errors() -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        CACR()(torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="at least 2 views"):
        CACR()(torch.randn(4, 1, 4))
    with pytest.raises(ValueError, match=r"\(N, V, D\)"):
        CACR()(torch.randn(4, 4))
    with pytest.raises(ValueError, match="finite"):
        CACR()(torch.full((3, 2, 4), float("inf")))
    with pytest.raises(ValueError, match="tau_minus"):
        CACR(tau_minus=0.0)
    with pytest.raises(ValueError, match="positive_prior"):
        CACR(positive_prior=1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        CACR(chunk_size=0)
    with pytest.raises(ValueError, match="reduction"):
        CACR(reduction="batchmean")
    with pytest.raises(TypeError):
        CACR(1.0)  # type: ignore[misc]
