"""Tests of contrastkit.eval.geometry (docs/methods.md 2.8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import i0

from contrastkit.eval import (
    alignment,
    effective_rank,
    hardness_profile,
    singular_values,
    tolerance,
    uniformity,
)


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- alignment ------------------------------------------------------------------------------------


def test_alignment_of_identical_pairs_is_zero() -> None:
    x = _randn(20, 5)
    assert alignment(x, x.clone()) == pytest.approx(0.0, abs=1e-12)
    # Same directions after normalising.
    assert alignment(x, 3.0 * x) == pytest.approx(0.0, abs=1e-12)


def test_alignment_hand_case() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert alignment(x, y) == pytest.approx(1.0)  # (2 + 0) / 2
    assert alignment(x, y, alpha=1) == pytest.approx(math.sqrt(2) / 2)
    assert alignment(2 * x, y, normalize=False) == pytest.approx((5 + 1) / 2)


# --- uniformity -----------------------------------------------------------------------------------


def test_uniformity_matches_pdist_reference() -> None:
    x = F.normalize(_randn(300, 16), dim=1)
    ref = float(torch.pdist(x).pow(2).mul(-2).exp().mean().log())
    assert uniformity(x, chunk_size=37) == pytest.approx(ref, abs=1e-10)
    ref_t1 = float(torch.pdist(x).pow(2).mul(-1).exp().mean().log())
    assert uniformity(x, t=1.0) == pytest.approx(ref_t1, abs=1e-10)


def test_uniformity_on_the_circle_matches_bessel_formula() -> None:
    # For x, y uniform on S^1: E exp(-t ||x - y||^2) = e^{-2t} I0(2t).
    n, t = 2000, 2.0
    theta = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    circle = torch.stack([theta.cos(), theta.sin()], dim=1)
    expected = -2 * t + math.log(i0(2 * t))
    assert uniformity(circle, t=t, max_samples=None) == pytest.approx(expected, abs=5e-3)


def test_uniformity_large_t_does_not_underflow() -> None:
    x = F.normalize(_randn(50, 3), dim=1)
    assert math.isfinite(uniformity(x, t=1e4))


def test_uniformity_subsample_is_seeded_and_close() -> None:
    x = _randn(3000, 8, dtype=torch.float32)
    full = uniformity(x, max_samples=None)
    sub = uniformity(x, max_samples=1000, seed=1)
    assert sub == uniformity(x, max_samples=1000, seed=1)
    assert sub == pytest.approx(full, abs=0.03)


# --- tolerance ------------------------------------------------------------------------------------


def test_tolerance_hand_case() -> None:
    s = math.sqrt(0.5)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])  # class 1 has no pair
    assert tolerance(x, labels) == pytest.approx((0 + s + s) / 3)
    assert tolerance(2 * x, labels) == pytest.approx((0 + s + s) / 3)
    assert tolerance(2 * x, labels, normalize=False) == pytest.approx(4 * (0 + s + s) / 3)


def test_tolerance_matches_brute_force() -> None:
    x = _randn(60, 7)
    labels = torch.randint(0, 4, (60,), generator=torch.Generator().manual_seed(1))
    z = F.normalize(x, dim=1)
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(60, dtype=torch.bool)
    expected = float((z @ z.T)[same].mean())
    assert tolerance(x.numpy(), labels.numpy()) == pytest.approx(expected, abs=1e-12)


def test_tolerance_needs_a_pair() -> None:
    with pytest.raises(ValueError, match="two or more samples"):
        tolerance(_randn(3, 2), torch.tensor([0, 1, 2]))


# --- spectrum -------------------------------------------------------------------------------------


def _equal_spectrum(n: int, d: int, k: int) -> torch.Tensor:
    """An (n, d) matrix with zero column means, rank k and k equal singular values."""
    u = _randn(n, k, seed=1)
    u = u - u.mean(dim=0)
    q_u, _ = torch.linalg.qr(u)
    q_v, _ = torch.linalg.qr(_randn(d, k, seed=2))
    return 3.0 * q_u @ q_v.T


@pytest.mark.parametrize("k", [1, 3, 7])
def test_effective_rank_of_equal_spectrum_is_k(k: int) -> None:
    assert effective_rank(_equal_spectrum(200, 32, k)) == pytest.approx(k, rel=1e-6)


def test_effective_rank_bounds_and_collapse() -> None:
    x = _randn(100, 10)
    assert 1.0 < effective_rank(x) <= 10.0
    assert effective_rank(torch.ones(5, 4)) == 0.0  # all rows identical: centred matrix is zero
    assert effective_rank(torch.ones(5, 4), center=False) == pytest.approx(1.0)


def test_singular_values_of_centred_matrix() -> None:
    x = _randn(40, 6)
    s = singular_values(x)
    ref = np.linalg.svd((x - x.mean(0)).numpy(), compute_uv=False)
    assert s.shape == (6,)
    assert torch.all(s[:-1] >= s[1:])
    np.testing.assert_allclose(s.numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(
        singular_values(x, center=False).numpy(),
        np.linalg.svd(x.numpy(), compute_uv=False),
        rtol=1e-10,
    )


# --- hardness -------------------------------------------------------------------------------------


def _brute_hardness(a: torch.Tensor, b: torch.Tensor, t: float, k: int) -> tuple[float, float]:
    s = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    n = s.shape[0]
    ents, masses = [], []
    for i in range(n):
        neg = torch.cat([s[i, :i], s[i, i + 1 :]])
        p = torch.softmax(neg / t, dim=0)
        ents.append(float(-(p * p.log()).sum()))
        masses.append(float(p.topk(k).values.sum()))
    return sum(ents) / n, sum(masses) / n


def test_hardness_matches_brute_force() -> None:
    a, b = _randn(30, 5, seed=3), _randn(30, 5, seed=4)
    profile = hardness_profile(a, b, temperatures=(0.2, 0.7), top_k=(1, 4), chunk_size=7)
    assert set(profile) == {0.2, 0.7}
    for t in (0.2, 0.7):
        ent, mass4 = _brute_hardness(a, b, t, 4)
        assert profile[t]["entropy"] == pytest.approx(ent, abs=1e-9)
        assert profile[t]["top4_mass"] == pytest.approx(mass4, abs=1e-9)
        assert profile[t]["top1_mass"] == pytest.approx(_brute_hardness(a, b, t, 1)[1], abs=1e-9)
        assert profile[t]["n_negatives"] == 29


def test_hardness_temperature_limits() -> None:
    a = _randn(64, 16, seed=5, dtype=torch.float32)
    b = a + 0.3 * _randn(64, 16, seed=6, dtype=torch.float32)
    profile = hardness_profile(a, b, temperatures=(1e-4, 0.1, 1e4), top_k=(1, 10))
    cold, warm, hot = profile[1e-4], profile[0.1], profile[1e4]
    assert cold["top1_mass"] == pytest.approx(1.0, abs=1e-3)
    assert cold["entropy"] == pytest.approx(0.0, abs=1e-2)
    assert hot["entropy"] == pytest.approx(math.log(63), abs=1e-3)
    assert hot["top10_mass"] == pytest.approx(10 / 63, abs=1e-3)
    assert cold["entropy"] < warm["entropy"] < hot["entropy"]


def test_hardness_subsample() -> None:
    a, b = _randn(50, 4, seed=1), _randn(50, 4, seed=2)
    profile = hardness_profile(a, b, temperatures=(0.5,), top_k=(1,), max_samples=20)
    assert profile[0.5]["n_negatives"] == 19


# --- bad input ------------------------------------------------------------------------------------


def test_geometry_bad_inputs() -> None:
    x = _randn(10, 4)
    with pytest.raises(ValueError, match="same shape"):
        alignment(x, x[:5])
    with pytest.raises(ValueError, match="alpha"):
        alignment(x, x, alpha=0)
    with pytest.raises(ValueError, match="NaN"):
        alignment(x, x.masked_fill(x > 1, float("nan")))
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(x[:1])
    with pytest.raises(ValueError, match="t must be"):
        uniformity(x, t=-1.0)
    with pytest.raises(ValueError, match="max_samples"):
        uniformity(x, max_samples=1)
    with pytest.raises(ValueError, match="shape"):
        tolerance(x, torch.zeros(9, dtype=torch.int64))
    with pytest.raises(ValueError, match="shape"):
        effective_rank(x[0])
    with pytest.raises(ValueError, match="top_k"):
        hardness_profile(x, x, top_k=(10,))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        hardness_profile(x[:1], x[:1], top_k=(1,))
    with pytest.raises(ValueError, match="temperatures"):
        hardness_profile(x, x, temperatures=(0.1, 0.0), top_k=(1,))
    with pytest.raises(ValueError, match="temperatures"):
        hardness_profile(x, x, temperatures=(), top_k=(1,))
    with pytest.raises(TypeError, match="numpy"):
        uniformity([[0.0, 1.0], [1.0, 0.0]])  # type: ignore[arg-type]
