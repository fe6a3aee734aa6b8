"""The engine's three entry points against dense float64 log-sum-exps (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses._engine import (
    auto_chunk_size,
    auto_square_chunk,
    masked_logsumexp,
    self_logsumexp,
    two_sided_logsumexp,
)


def _rows(n: int, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def _dense_mask(
    n: int, groups: torch.Tensor | None, mode: str | None, exclude_self: bool
) -> torch.Tensor:
    mask = torch.eye(n, dtype=torch.bool) if exclude_self else torch.zeros(n, n, dtype=torch.bool)
    if mode is not None:
        assert groups is not None
        same = groups[:, None] == groups[None, :]
        mask |= same if mode == "exclude" else ~same
    return mask


@pytest.mark.parametrize("n", [1, 2, 7, 33])
@pytest.mark.parametrize("chunk", [1, 3, 8, None])
@pytest.mark.parametrize("mode", [None, "exclude", "only"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_self_logsumexp_matches_dense(
    n: int, chunk: int | None, mode: str | None, exclude_self: bool
) -> None:
    z = _rows(n).requires_grad_()
    groups = torch.arange(n) % 3
    beta = torch.linspace(0.5, 4.0, n, dtype=torch.float64)
    out = self_logsumexp(
        z,
        beta,
        exclude_self=exclude_self,
        groups=groups,
        group_mode=mode,
        chunk_size=chunk,  # type: ignore[arg-type]
    )
    mask = _dense_mask(n, groups, mode, exclude_self)
    ref = ((z @ z.T) * beta[:, None]).masked_fill(mask, float("-inf")).logsumexp(1)
    assert torch.equal(torch.isinf(out), torch.isinf(ref))
    finite = torch.isfinite(ref)
    torch.testing.assert_close(out[finite], ref[finite])
    if finite.any():
        w = torch.randn(n, dtype=torch.float64)
        g1 = torch.autograd.grad((out[finite] * w[finite]).sum(), z)[0]
        g2 = torch.autograd.grad((ref[finite] * w[finite]).sum(), z)[0]
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize(("na", "nc"), [(1, 4), (5, 9), (17, 3)])
@pytest.mark.parametrize("chunk", [1, 4, None])
def test_masked_logsumexp_matches_dense(na: int, nc: int, chunk: int | None) -> None:
    a = (_rows(na, seed=1) * 3).requires_grad_()
    c = _rows(nc, seed=2).requires_grad_()
    self_index = torch.randint(-1, nc, (na,), generator=torch.Generator().manual_seed(3))
    ga, gc = torch.arange(na) % 2, torch.arange(nc) % 2
    out = masked_logsumexp(
        a,
        c,
        self_index=self_index,
        anchor_groups=ga,
        candidate_groups=gc,
        group_mode="only",
        chunk_size=chunk,
    )
    logits = a @ c.T
    mask = ga[:, None] != gc[None, :]
    rows = torch.arange(na)
    keep = self_index >= 0
    mask[rows[keep], self_index[keep]] = True
    ref = logits.masked_fill(mask, float("-inf")).logsumexp(1)
    finite = torch.isfinite(ref)
    torch.testing.assert_close(out[finite], ref[finite])
    assert torch.equal(torch.isinf(out), torch.isinf(ref))
    g1 = torch.autograd.grad(out[finite].sum(), (a, c))
    g2 = torch.autograd.grad(ref[finite].sum(), (a, c))
    for x, y in zip(g1, g2, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize(("na", "nb"), [(1, 1), (6, 6), (11, 4)])
@pytest.mark.parametrize("chunk", [1, 5, None])
def test_two_sided_logsumexp_matches_dense(na: int, nb: int, chunk: int | None) -> None:
    a = (_rows(na, seed=4) * 5).requires_grad_()
    b = _rows(nb, seed=5).requires_grad_()
    row, col = two_sided_logsumexp(a, b, chunk_size=chunk)
    logits = a @ b.T
    torch.testing.assert_close(row, logits.logsumexp(1))
    torch.testing.assert_close(col, logits.logsumexp(0))
    wr, wc = torch.randn(na, dtype=torch.float64), torch.randn(nb, dtype=torch.float64)
    g1 = torch.autograd.grad((row * wr).sum() + (col * wc).sum(), (a, b))
    g2 = torch.autograd.grad(
        (logits.logsumexp(1) * wr).sum() + (logits.logsumexp(0) * wc).sum(), (a, b)
    )
    for x, y in zip(g1, g2, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_small_temperature_stays_finite(dtype: torch.dtype) -> None:
    z = _rows(64, d=16).to(dtype).requires_grad_()
    out = self_logsumexp(z, 100.0, chunk_size=16)  # temperature 0.01
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    ref = ((z.double() @ z.double().T) * 100).fill_diagonal_(float("-inf")).logsumexp(1)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=0.5)
    (grad,) = torch.autograd.grad(out.sum(), z)
    assert grad.dtype == dtype and torch.isfinite(grad.float()).all()


def test_gradcheck_self_and_two_sided() -> None:
    z = _rows(6, d=3).requires_grad_()
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(
        lambda x: self_logsumexp(x, 2.0, groups=groups, group_mode="exclude", chunk_size=4), (z,)
    )
    b = _rows(4, d=3, seed=9).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: two_sided_logsumexp(x, y, chunk_size=4), (z, b))


def test_chunk_sizes_are_bounded() -> None:
    assert auto_chunk_size(10, 5) == 10
    assert 32 <= auto_chunk_size(100_000, 100_000) <= 100_000
    assert auto_square_chunk(10) == 10
    assert auto_square_chunk(10**6) == 1024


def test_bad_arguments() -> None:
    z = _rows(4)
    with pytest.raises(ValueError, match="chunk_size"):
        self_logsumexp(z, 1.0, chunk_size=0)
    with pytest.raises(ValueError, match="needs groups"):
        self_logsumexp(z, 1.0, group_mode="only")
    with pytest.raises(ValueError, match="same D"):
        masked_logsumexp(z, _rows(3, d=4))
    with pytest.raises(ValueError, match="must not require grad"):
        self_logsumexp(z, torch.ones(4, dtype=torch.float64, requires_grad=True))
