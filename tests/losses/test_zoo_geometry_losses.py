"""Alignment, uniformity, AlignUniform, KoLeo and SepCLR's JEM (docs/methods.md sections 2.8, 3.10): dense
float64 references (pdist / cdist, as the reference codes write them), gradcheck, hand cases,
flags and errors."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.losses.geometry import (
    Alignment,
    AlignUniform,
    JointEntropy,
    KoLeo,
    Uniformity,
    log_mean_gaussian_kernel,
)

F64 = torch.float64


def rand(*shape: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).requires_grad_(True)


def align_ref(views: Tensor, alpha: float, normalize: bool = True) -> Tensor:
    z = F.normalize(views, dim=-1) if normalize else views
    pairs = [
        (z[:, a] - z[:, b]).norm(p=2, dim=1).pow(alpha)
        for a, b in combinations(range(z.shape[1]), 2)
    ]
    return torch.stack(pairs, 1).mean(1).mean()


def uniform_ref(views: Tensor, t: float, normalize: bool = True) -> Tensor:
    z = F.normalize(views, dim=-1) if normalize else views
    per_view = [
        torch.pdist(z[:, v], p=2).pow(2).mul(-t).exp().mean().log() for v in range(z.shape[1])
    ]
    return torch.stack(per_view).mean()


def koleo_ref(x: Tensor, eps: float, normalize: bool = True) -> Tensor:
    z = F.normalize(x, dim=-1) if normalize else x
    dist = torch.cdist(z, z) + torch.diag(torch.full((z.shape[0],), float("inf"), dtype=z.dtype))
    return -torch.log(dist.min(dim=1).values + eps).mean()


def jem_ref(c: Tensor, s: Tensor, tau: float) -> Tensor:
    ks = torch.cdist(s, s, p=2.0).pow(2).mul(-1 / (2 * tau)).exp()
    kc = torch.cdist(c, c, p=2.0).pow(2).mul(-1 / (2 * tau)).exp()
    return (ks * kc).mean(-1).log().mean()


def assert_value_and_grad(value: Tensor, ref: Tensor, inputs: tuple[Tensor, ...]) -> None:
    torch.testing.assert_close(value, ref, rtol=1e-9, atol=1e-11)
    g = torch.autograd.grad(value, inputs)
    g_ref = torch.autograd.grad(ref, inputs)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("n", "v", "d"), [(3, 2, 4), (9, 2, 8), (6, 4, 3)])
@pytest.mark.parametrize("alpha", [2.0, 1.0, 3.0])
@pytest.mark.parametrize("normalize", [True, False])
def test_alignment_reference(n: int, v: int, d: int, alpha: float, normalize: bool) -> None:
    x = rand(n, v, d, seed=n + v)
    assert_value_and_grad(
        Alignment(alpha=alpha, normalize=normalize)(x), align_ref(x, alpha, normalize), (x,)
    )


@pytest.mark.parametrize(("n", "v", "d"), [(2, 1, 3), (9, 2, 8), (6, 4, 3), (40, 2, 5)])
@pytest.mark.parametrize("t", [2.0, 1.0, 0.3])
@pytest.mark.parametrize("normalize", [True, False])
def test_uniformity_reference(n: int, v: int, d: int, t: float, normalize: bool) -> None:
    x = rand(n, v, d, seed=n * v)
    for chunk in (None, 7):
        loss = Uniformity(t=t, normalize=normalize, chunk_size=chunk)
        assert_value_and_grad(loss(x), uniform_ref(x, t, normalize), (x,))
    # (N, D) input is one view
    y = rand(n, d, seed=1)
    torch.testing.assert_close(
        Uniformity(t=t)(y), uniform_ref(y[:, None], t), rtol=1e-9, atol=1e-11
    )


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0])
def test_align_uniform_reference(weight: float) -> None:
    x = rand(10, 3, 6, seed=4)
    ref = align_ref(x, 2.0) + weight * uniform_ref(x, 2.0)
    assert_value_and_grad(AlignUniform(uniformity_weight=weight)(x), ref, (x,))
    terms = AlignUniform(uniformity_weight=weight, reduction="none")(x)
    assert terms.shape == (10,)
    torch.testing.assert_close(terms.mean(), ref)
    torch.testing.assert_close(
        AlignUniform(uniformity_weight=weight, reduction="sum")(x), terms.sum()
    )


@pytest.mark.parametrize(("n", "d"), [(2, 3), (7, 4), (50, 6)])
@pytest.mark.parametrize("normalize", [True, False])
def test_koleo_reference(n: int, d: int, normalize: bool) -> None:
    x = rand(n, d, seed=n)
    for chunk in (None, 3):
        loss = KoLeo(normalize=normalize, chunk_size=chunk)
        assert_value_and_grad(loss(x), koleo_ref(x, 1e-8, normalize), (x,))
    views = rand(n, 3, d, seed=n + 1)
    ref = torch.stack([koleo_ref(views[:, v], 1e-8) for v in range(3)]).mean()
    assert_value_and_grad(KoLeo()(views), ref, (views,))
    assert KoLeo(reduction="none")(views).shape == (n, 3)


@pytest.mark.parametrize(("n", "dc", "ds"), [(1, 2, 3), (6, 4, 2), (33, 5, 7)])
@pytest.mark.parametrize("tau", [0.5, 0.1, 2.0])
def test_joint_entropy_reference(n: int, dc: int, ds: int, tau: float) -> None:
    c = rand(n, dc, seed=n)
    s = rand(n, ds, seed=n + 100)
    for chunk in (None, 4):
        c_unit = F.normalize(c, dim=1)  # as SepCLR's common head
        value = JointEntropy(tau=tau, chunk_size=chunk)(c_unit, s)
        assert_value_and_grad(value, jem_ref(F.normalize(c, dim=1), s, tau), (c, s))


def test_joint_entropy_without_self() -> None:
    c, s = rand(5, 3, seed=1), rand(5, 2, seed=2)
    ks = torch.cdist(s, s).pow(2).mul(-1.0).exp()
    kc = torch.cdist(c, c).pow(2).mul(-1.0).exp()
    off = ~torch.eye(5, dtype=torch.bool)
    ref = ((ks * kc * off).sum(-1) / 4).log().mean()
    assert_value_and_grad(JointEntropy(include_self=False)(c, s), ref, (c, s))
    assert not torch.allclose(JointEntropy()(c, s), ref)


def test_gradcheck_all() -> None:
    x = rand(4, 2, 3, seed=5)
    assert torch.autograd.gradcheck(lambda t: Alignment(alpha=1.5)(t), (x,))
    assert torch.autograd.gradcheck(lambda t: Uniformity(t=1.0)(t), (x,))
    assert torch.autograd.gradcheck(lambda t: Uniformity(normalize=False, chunk_size=2)(t), (x,))
    assert torch.autograd.gradcheck(lambda t: AlignUniform()(t), (x,))
    assert torch.autograd.gradcheck(lambda t: KoLeo()(t), (x,))
    c, s = rand(4, 3, seed=6), rand(4, 2, seed=7)
    assert torch.autograd.gradcheck(lambda a, b: JointEntropy(chunk_size=3)(a, b), (c, s))


def test_hand_cases() -> None:
    # two antipodal points: one pair at squared distance 4 -> uniformity = -4 t
    pts = torch.tensor([[[1.0, 0.0]], [[-1.0, 0.0]]], dtype=F64)
    assert float(Uniformity(t=2.0)(pts)) == pytest.approx(-8.0)
    # identical views align perfectly
    same = torch.randn(5, 1, 4, dtype=F64).repeat(1, 3, 1)
    assert float(Alignment()(same)) == pytest.approx(0.0, abs=1e-12)
    # four points on the unit circle at 90 degrees: nearest distance sqrt(2)
    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=F64)
    assert float(KoLeo(eps=0.0 + 1e-300)(square)) == pytest.approx(-0.5 * math.log(2.0))
    # all samples equal in both spaces: every kernel is 1 -> JEM = 0
    assert float(JointEntropy()(torch.ones(4, 3), torch.ones(4, 2))) == pytest.approx(0.0, abs=1e-6)
    # uniformity is minimised by spreading: the square beats a clustered set
    cluster = square * torch.tensor([1.0, 0.05], dtype=F64) + torch.tensor([3.0, 0.0], dtype=F64)
    assert Uniformity()(square[:, None]) < Uniformity()(cluster[:, None])


def test_koleo_duplicates_stay_finite() -> None:
    x = torch.randn(6, 4, dtype=F64)
    x[3] = x[1]
    x.requires_grad_(True)
    value = KoLeo()(x)
    assert torch.isfinite(value)
    (g,) = torch.autograd.grad(value, x)
    assert torch.isfinite(g).all()
    assert float(value.detach()) > 2.0  # the duplicate pair contributes -log(1e-8) / n each


def test_log_mean_gaussian_kernel_matches_dense() -> None:
    w = rand(9, 5, seed=3)
    dense = torch.cdist(w, w).pow(2).mul(-0.7).exp()
    torch.testing.assert_close(
        log_mean_gaussian_kernel(w, 0.7), dense.mean(1).log(), rtol=1e-10, atol=1e-12
    )
    off = ~torch.eye(9, dtype=torch.bool)
    torch.testing.assert_close(
        log_mean_gaussian_kernel(w, 0.7, include_self=False, chunk_size=2),
        ((dense * off).sum(1) / 8).log(),
        rtol=1e-10,
        atol=1e-12,
    )


def test_reductions_and_low_precision() -> None:
    x = rand(6, 3, 4, seed=8)
    per_view = Uniformity(reduction="none")(x)
    assert per_view.shape == (3,)
    torch.testing.assert_close(Uniformity()(x), per_view.mean())
    torch.testing.assert_close(Uniformity(reduction="sum")(x), per_view.sum())
    terms = Alignment(reduction="none")(x)
    assert terms.shape == (6,)
    torch.testing.assert_close(Alignment(reduction="sum")(x), terms.sum())
    assert KoLeo(reduction="none")(x[:, 0]).shape == (6,)
    for loss in (Alignment(), Uniformity(), AlignUniform(), KoLeo()):
        out = loss(x.detach().to(torch.bfloat16))
        assert out.dtype == torch.float32 and torch.isfinite(out)


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 views"):
        Alignment()(torch.randn(4, 1, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        Uniformity()(torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        KoLeo()(torch.randn(1, 3))
    with pytest.raises(ValueError, match="same samples"):
        JointEntropy()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        JointEntropy(include_self=False)(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="finite"):
        KoLeo()(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        JointEntropy()(torch.randn(4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="alpha"):
        Alignment(alpha=0.0)
    with pytest.raises(ValueError, match="t must"):
        Uniformity(t=-1.0)
    with pytest.raises(ValueError, match="uniformity_weight"):
        AlignUniform(uniformity_weight=-0.1)
    with pytest.raises(ValueError, match="tau"):
        JointEntropy(tau=0.0)
    with pytest.raises(ValueError, match="eps"):
        KoLeo(eps=0.0)
    with pytest.raises(TypeError, match="Tensor"):
        KoLeo()([[1.0, 2.0]])  # type: ignore[arg-type]
