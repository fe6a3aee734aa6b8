"""GroCo and the odd-even sorting network (docs/methods.md section 3.3): dense references, ordering properties,
hard-sort limit, comparison with the ``diffsort`` package when installed, flags and errors."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.losses.sorting import GroCo, odd_even_sort

F64 = torch.float64
HAS_DIFFSORT = importlib.util.find_spec("diffsort") is not None


def sort_ref(x: Tensor, steepness: float) -> tuple[Tensor, Tensor]:
    """The odd-even network of docs/methods.md section 3.3 step 5, one comparator at a time, per row."""
    rows_sorted, rows_perm = [], []
    n = x.shape[1]
    for row in x:
        vals = list(row)
        cols = [torch.eye(n, dtype=x.dtype)[:, r] for r in range(n)]  # column r of P
        for layer in range(n):
            for j in range(layer % 2, n - 1, 2):
                a, b = vals[j], vals[j + 1]
                alpha = torch.atan(steepness * (b - a)) / math.pi + 0.5
                vals[j], vals[j + 1] = alpha * a + (1 - alpha) * b, (1 - alpha) * a + alpha * b
                ca, cb = cols[j], cols[j + 1]
                cols[j], cols[j + 1] = alpha * ca + (1 - alpha) * cb, (1 - alpha) * ca + alpha * cb
        rows_sorted.append(torch.stack(vals))
        rows_perm.append(torch.stack(cols, dim=1))
    return torch.stack(rows_sorted), torch.stack(rows_perm)


def groco_ref(
    views: Tensor, k: int, steepness: float, stop_grad: bool, n_pos: int | None = None
) -> Tensor:
    """docs/methods.md section 3.3 literally: dense similarities, -inf self mask, topk, flip, sort, BCE."""
    n, v, _ = views.shape
    z = F.normalize(views.to(F64), dim=-1)
    n_pos = v if n_pos is None else n_pos
    total = torch.zeros((), dtype=F64)
    for a in range(v):
        anchor = z[:, a]
        pos = torch.stack(
            [
                (anchor * (z[:, p].detach() if stop_grad else z[:, p])).sum(1)
                for p in range(n_pos)
                if p != a
            ],
            dim=1,
        )
        pos = torch.sort(pos, dim=1).values
        negatives = anchor.detach() if stop_grad else anchor
        sims = (anchor @ negatives.T).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
        neg = torch.flip(torch.topk(sims, k, dim=1).values, dims=[1])
        x = torch.cat([neg, pos], dim=1)
        _, perm = sort_ref(x, steepness)
        m = x.shape[1]
        target = torch.eye(m, dtype=F64).expand(n, m, m)  # identity permutation: all neg first
        pred_neg = perm[:, :, :k].sum(2).clamp(0, 1)
        pred_pos = perm[:, :, k:].sum(2).clamp(0, 1)
        tgt_neg, tgt_pos = target[:, :, :k].sum(2), target[:, :, k:].sum(2)
        bce = torch.nn.BCELoss()
        total = total + 0.5 * (bce(pred_pos, tgt_pos) + bce(pred_neg, tgt_neg))
    return total / v


def views_(n: int, v: int, d: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    return (centre + 0.5 * torch.randn(n, v, d, generator=g, dtype=F64)).requires_grad_(True)


# --------------------------------------------------------------------------------------------------
# Sorting network
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 8, 11])
@pytest.mark.parametrize("steepness", [0.5, 1.0, 10.0])
def test_odd_even_sort_matches_reference(n: int, steepness: float) -> None:
    x = torch.randn(3, n, dtype=F64, generator=torch.Generator().manual_seed(n)).requires_grad_(
        True
    )
    values, perm = odd_even_sort(x, steepness=steepness)
    values_ref, perm_ref = sort_ref(x, steepness)
    torch.testing.assert_close(values, values_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(perm, perm_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(values, (x[:, None, :] @ perm)[:, 0], rtol=1e-12, atol=1e-14)
    # doubly stochastic
    torch.testing.assert_close(perm.sum(1), torch.ones(3, n, dtype=F64))
    torch.testing.assert_close(perm.sum(2), torch.ones(3, n, dtype=F64))
    if n == 1:
        return  # no comparator: P is the constant identity
    w = torch.randn(3, n, n, dtype=F64)
    g = torch.autograd.grad((perm * w).sum(), x)[0]
    g_ref = torch.autograd.grad((perm_ref * w).sum(), x)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_odd_even_sort_hard_limit_is_exact_permutation() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (2, 7, 12):
        x = torch.randn(20, n, dtype=F64, generator=g)
        values, perm = odd_even_sort(x, steepness=1e12)
        order = torch.argsort(x, dim=1)
        hard = F.one_hot(order, n).transpose(1, 2).to(F64)  # hard[b, e, r] = 1 if e has rank r
        torch.testing.assert_close(perm, hard, rtol=0, atol=1e-6)
        torch.testing.assert_close(values, torch.sort(x, dim=1).values, rtol=0, atol=1e-6)


def test_odd_even_sort_gradcheck() -> None:
    x = torch.randn(2, 5, dtype=F64, generator=torch.Generator().manual_seed(3)).requires_grad_(
        True
    )
    assert torch.autograd.gradcheck(lambda t: odd_even_sort(t, steepness=2.0)[1], (x,))


@pytest.mark.skipif(not HAS_DIFFSORT, reason="the optional package diffsort is not installed")
@pytest.mark.parametrize("n", [2, 3, 10, 11, 12])
@pytest.mark.parametrize("steepness", [1.0, 7.0])
def test_odd_even_sort_matches_diffsort(n: int, steepness: float) -> None:
    import diffsort

    net = diffsort.DiffSortNet("odd_even", n, steepness=steepness, distribution="cauchy")
    x = torch.randn(16, n, generator=torch.Generator().manual_seed(n))
    values_ds, perm_ds = net(x)
    values, perm = odd_even_sort(x, steepness=steepness)
    torch.testing.assert_close(values, values_ds, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(perm, perm_ds, rtol=1e-5, atol=1e-6)


def test_odd_even_sort_errors() -> None:
    with pytest.raises(ValueError, match=r"\(B, n\)"):
        odd_even_sort(torch.randn(4))
    with pytest.raises(ValueError, match="steepness"):
        odd_even_sort(torch.randn(2, 3), steepness=0.0)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        odd_even_sort([[1.0, 2.0]])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# GroCo
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "k", "steepness"),
    [((4, 2, 5), 3, 1.0), ((12, 2, 8), 10, 1.0), ((7, 3, 6), 4, 5.0), ((6, 4, 4), 2, 0.5)],
)
@pytest.mark.parametrize("stop_grad", [True, False])
def test_groco_matches_dense_reference(
    shape: tuple[int, int, int], k: int, steepness: float, stop_grad: bool
) -> None:
    x = views_(*shape, seed=sum(shape) + k)
    value = GroCo(topk_negatives=k, steepness=steepness, stop_grad=stop_grad)(x)
    ref = groco_ref(x, k, steepness, stop_grad)
    torch.testing.assert_close(value, ref, rtol=1e-10, atol=1e-12)
    g, g_ref = (torch.autograd.grad(t, x)[0] for t in (value, ref))
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)


def test_groco_multicrop_positive_views_and_chunking() -> None:
    x = views_(8, 4, 6, seed=5)
    for chunk in (None, 3):
        value = GroCo(topk_negatives=5, n_positive_views=2, chunk_size=chunk)(x)
        torch.testing.assert_close(
            value, groco_ref(x, 5, 1.0, True, n_pos=2), rtol=1e-10, atol=1e-12
        )
    assert not torch.allclose(
        GroCo(topk_negatives=5, n_positive_views=2)(x), GroCo(topk_negatives=5)(x)
    )


def test_groco_gradcheck() -> None:
    x = views_(4, 2, 3, seed=2)
    # stop_grad=True is excluded: its gradient deliberately skips the detached positives/negatives
    assert torch.autograd.gradcheck(lambda t: GroCo(topk_negatives=2, stop_grad=False)(t), (x,))


def _separated_views(n: int, d: int, swap: int | None = None) -> Tensor:
    """Instances on orthogonal axes, views nearly equal: positives ~1, negatives ~0."""
    base = torch.eye(n, d, dtype=F64)
    x = torch.stack([base, base + 0.05 * torch.randn(n, d, dtype=F64)], dim=1)
    if swap is not None:
        x[swap, 1] = -base[swap]  # the positive of instance `swap` falls below every negative
    return x


def test_groco_ordering_properties() -> None:
    torch.manual_seed(0)
    good = _separated_views(12, 16)
    bad = good.clone()
    bad[3, 1] = -bad[3, 0]
    loss = GroCo(topk_negatives=10, reduction="none")
    # steepness 1 is a soft relaxation (alpha <= 0.85 for similarities in [-1, 1]): the effect of
    # one misplaced positive is moderate but clear, and local to the instance and its own view
    assert loss(bad)[3] > loss(good)[3] + 0.03
    assert (loss(bad) - loss(good)).abs().sum() < 2 * (loss(bad)[3] - loss(good)[3])
    # with a steep relaxation the well-ordered batch has almost zero loss, the swapped one does not
    steep = GroCo(topk_negatives=10, steepness=100.0)
    assert steep(good) < 0.02
    assert steep(bad) > steep(good) + 0.05
    # only the ordering matters: a monotone change of the positive margin keeps a steep loss ~0
    assert GroCo(topk_negatives=10, steepness=1e4)(good) < 1e-3


def test_groco_stop_grad_flag() -> None:
    x = views_(12, 2, 6, seed=1)
    a = GroCo(stop_grad=True)(x)
    b = GroCo(stop_grad=False)(x)
    torch.testing.assert_close(a, b)  # same value
    ga = torch.autograd.grad(a, x)[0]
    gb = torch.autograd.grad(b, x)[0]
    assert (ga - gb).abs().max() > 1e-6


def test_groco_reductions_and_low_precision() -> None:
    x = views_(12, 3, 5, seed=3)
    terms = GroCo(reduction="none")(x)
    assert terms.shape == (12,)
    torch.testing.assert_close(GroCo()(x), terms.mean())
    torch.testing.assert_close(GroCo(reduction="sum")(x), terms.sum())
    half = GroCo()(x.detach().to(torch.bfloat16))
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_groco_errors() -> None:
    with pytest.raises(ValueError, match="N >= 11"):
        GroCo()(torch.randn(10, 2, 4))
    with pytest.raises(ValueError, match="at least 2 views"):
        GroCo(topk_negatives=2)(torch.randn(5, 1, 4))
    with pytest.raises(ValueError, match="exceeds the number of views"):
        GroCo(topk_negatives=2, n_positive_views=3)(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="topk_negatives"):
        GroCo(topk_negatives=0)
    with pytest.raises(TypeError, match="topk_negatives"):
        GroCo(topk_negatives=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_positive_views"):
        GroCo(n_positive_views=1)
    with pytest.raises(ValueError, match="steepness"):
        GroCo(steepness=-1.0)
    with pytest.raises(ValueError, match="finite"):
        GroCo(topk_negatives=2)(torch.full((5, 2, 4), float("nan")))
