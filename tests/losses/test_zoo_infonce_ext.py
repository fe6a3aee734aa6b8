"""InfoNCE extensions (docs/methods.md sections 2.1, 2.2, 2.8): per-instance weights, queue negatives,
top-K hard negatives, and ``normalize_weights``.

The references below are dense float64 transcriptions of the formulas: full similarity matrices,
boolean masks, explicit sorting for the top-K; nothing blockwise, no group sums.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from contrastkit.losses import HardInfoNCE, InfoNCE, get_loss, loss_info, normalize_weights

F64 = torch.float64
RTOL, ATOL = 1e-9, 1e-11
GRTOL, GATOL = 1e-8, 1e-10


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


def make_views(n: int, v: int, d: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    return (centre + 0.6 * torch.randn(n, v, d, generator=g, dtype=F64)).requires_grad_(True)


def make_queue(k: int, d: int, seed: int = 0, grad: bool = False) -> Tensor:
    g = torch.Generator().manual_seed(500 + seed)
    return (2.0 * torch.randn(k, d, generator=g, dtype=F64)).requires_grad_(grad)


def make_weights(n: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(900 + seed)
    return torch.rand(n, generator=g, dtype=F64) * 2.0


def make_labels(n: int) -> Tensor:
    lab = torch.arange(n) % max(1, n // 2)
    lab[-1] = 77  # a singleton: no positive when V = 1
    return lab


# --------------------------------------------------------------------------------------------------
# dense references
# --------------------------------------------------------------------------------------------------


def dense_rows(views: Tensor) -> Tensor:
    """View-major ``(V*N, D)`` L2-normalised rows."""
    z = torch.cat([views[:, k] for k in range(views.shape[1])], dim=0).to(F64)
    return z / z.norm(dim=1, keepdim=True)


def row_groups(n: int, v: int, labels: Tensor | None) -> Tensor:
    inst = torch.arange(v * n) % n
    return inst if labels is None else labels[inst]


def infonce_ext_ref(
    views: Tensor,
    labels: Tensor | None,
    t: float,
    *,
    weights: Tensor | None = None,
    queue: Tensor | None = None,
    topk: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Dense per-anchor InfoNCE; denominator over every k != r (+ queue), or over the positives plus
    the K most similar negatives (batch rows of another group, and queue rows); times w_i."""
    n, v, _ = views.shape
    z = dense_rows(views)
    m = z.shape[0]
    groups = row_groups(n, v, labels)
    if queue is not None:
        qn = queue.to(F64) / queue.to(F64).norm(dim=1, keepdim=True)
        cands = torch.cat([z, qn], dim=0)
        cand_groups = torch.cat([groups, torch.full((qn.shape[0],), -12345)])
    else:
        cands, cand_groups = z, groups
    s = z @ cands.T / t  # (m, m + K)
    terms = []
    for r in range(m):
        cols = torch.arange(cands.shape[0])
        is_self = cols == r
        pos = (cand_groups == groups[r]) & ~is_self
        neg = cand_groups != groups[r]
        if int(pos.sum()) == 0:
            terms.append(s[r, 0] * 0.0)
            continue
        if topk is None:
            keep = ~is_self
        else:
            neg_idx = cols[neg]
            order = torch.argsort(s[r, neg_idx].detach(), descending=True)
            chosen = neg_idx[order[:topk]]
            keep = pos.clone()
            keep[chosen] = True
        log_den = torch.logsumexp(s[r][keep], dim=0)
        terms.append(-(s[r][pos] - log_den).mean())
    t_all = torch.stack(terms)
    grid = torch.stack([t_all[k * n : (k + 1) * n] for k in range(v)], dim=1)
    if weights is not None:
        grid = grid * weights.detach()[:, None]
    if reduction == "none":
        return grid
    return grid.sum() if reduction == "sum" else grid.mean()


def assert_value_and_grad(out: Tensor, expected: Tensor, inputs: tuple[Tensor, ...]) -> None:
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    w = torch.rand(out.shape, generator=torch.Generator().manual_seed(3), dtype=F64) + 0.5
    g_lib = torch.autograd.grad((out * w).sum(), inputs)
    g_ref = torch.autograd.grad((expected * w).sum(), inputs)
    for a, b in zip(g_lib, g_ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=GRTOL, atol=GATOL)


# --------------------------------------------------------------------------------------------------
# weights (docs/methods.md section 2.2)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("n", "v", "t", "labelled"), [(5, 2, 0.1, False), (6, 3, 0.5, True)])
def test_weighted_vs_reference(n: int, v: int, t: float, labelled: bool, reduction: str) -> None:
    x = make_views(n, v, 4, seed=n + v)
    labels = make_labels(n) if labelled else None
    w = make_weights(n, seed=n)
    out = InfoNCE(temperature=t, reduction=reduction, chunk_size=3)(x, labels, weights=w)
    expected = infonce_ext_ref(x, labels, t, weights=w, reduction=reduction)
    assert_value_and_grad(out, expected, (x,))


def test_weighted_mean_is_mean_of_w_times_l() -> None:
    """docs/methods.md section 2.2: L = (1/N) sum_i w_i l_i, per view, from the unweighted per-anchor terms."""
    x = make_views(6, 2, 5, seed=1)
    w = make_weights(6)
    plain = InfoNCE(temperature=0.2, reduction="none")(x)
    weighted = InfoNCE(temperature=0.2)(x, weights=w)
    torch.testing.assert_close(weighted, (w[:, None] * plain).mean(), rtol=RTOL, atol=ATOL)


def test_uniform_weights_equal_unweighted() -> None:
    x = make_views(7, 3, 4, seed=2)
    loss = InfoNCE(temperature=0.3)
    plain = loss(x)
    torch.testing.assert_close(loss(x, weights=torch.ones(7, dtype=F64)), plain)
    # any constant score normalised to mean one gives the same loss
    w = normalize_weights(torch.full((7,), 3.7, dtype=F64), mode="mean1")
    torch.testing.assert_close(loss(x, weights=w), plain, rtol=1e-12, atol=0)
    w = normalize_weights(torch.full((7,), -0.4, dtype=F64), mode="softmax", gamma=2.0)
    torch.testing.assert_close(loss(x, weights=w), plain, rtol=1e-12, atol=0)
    # raw constant weights scale the loss
    torch.testing.assert_close(loss(x, weights=torch.full((7,), 2.5, dtype=F64)), 2.5 * plain)


def test_weights_are_not_differentiated() -> None:
    x = make_views(5, 2, 4, seed=3)
    w = make_weights(5).requires_grad_(True)
    out = InfoNCE(temperature=0.2)(x, weights=w)
    g_x, g_w = torch.autograd.grad(out, (x, w), allow_unused=True)
    assert g_w is None
    # the gradient w.r.t. the embeddings is that of the loss with the weights as constants
    expected = infonce_ext_ref(x, None, 0.2, weights=w.detach())
    (g_ref,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(g_x, g_ref, rtol=GRTOL, atol=GATOL)


def test_zero_weight_removes_instance_from_gradient() -> None:
    """A zero weight zeroes that instance's own terms (its rows still act as negatives)."""
    x = make_views(4, 2, 3, seed=4)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=F64)
    out = InfoNCE(temperature=0.5, reduction="none")(x, weights=w)
    assert torch.all(out[1] == 0)
    assert torch.all(out[[0, 2, 3]] > 0)


# --------------------------------------------------------------------------------------------------
# normalize_weights
# --------------------------------------------------------------------------------------------------


def test_normalize_weights_modes() -> None:
    x = torch.tensor([0.5, 1.0, 2.5, 0.0], dtype=F64)
    torch.testing.assert_close(normalize_weights(x, "mean1"), x * 4 / 4.0)
    torch.testing.assert_close(normalize_weights(x, mode="none"), x)
    scores = torch.tensor([0.2, -0.3, 0.9], dtype=F64)
    e = torch.exp(1.5 * scores)
    torch.testing.assert_close(
        normalize_weights(scores, mode="softmax", gamma=1.5), 3 * e / e.sum(), rtol=1e-12, atol=0
    )
    # GenView: w_i = N score_i / sum_j score_j with score = exp(gamma (s_fg - s_bg))
    s_fg = torch.tensor([0.9, 0.4, 0.7, 0.1], dtype=F64)
    s_bg = torch.tensor([0.1, 0.5, 0.3, 0.2], dtype=F64)
    score = torch.exp(s_fg - s_bg)
    genview = 4 * score / score.sum()
    torch.testing.assert_close(normalize_weights(s_fg - s_bg, "softmax"), genview)
    torch.testing.assert_close(normalize_weights(score, "mean1"), genview)
    assert float(normalize_weights(scores, "softmax").mean()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("w", "kwargs", "exc", "match"),
    [
        (torch.tensor([1.0, -0.5]), {}, ValueError, "non-negative"),
        (torch.zeros(3), {}, ValueError, "positive sum"),
        (torch.ones(2, 2), {}, ValueError, "1-D"),
        (torch.ones(0), {}, ValueError, "1-D"),
        (torch.tensor([1, 2]), {}, TypeError, "floating"),
        (torch.tensor([1.0, float("nan")]), {}, ValueError, "finite"),
        ([1.0, 2.0], {}, TypeError, "torch.Tensor"),
        (torch.ones(3), {"mode": "max"}, ValueError, "mode"),
        (torch.ones(3), {"mode": "softmax", "gamma": 0.0}, ValueError, "gamma"),
    ],
)
def test_normalize_weights_errors(
    w: object, kwargs: dict[str, object], exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        normalize_weights(w, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# queue negatives
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 4, None])
@pytest.mark.parametrize(
    ("n", "v", "k", "t", "labelled"), [(5, 2, 7, 0.1, False), (4, 3, 3, 0.5, True)]
)
def test_queue_negatives_vs_reference(
    n: int, v: int, k: int, t: float, labelled: bool, chunk: int | None
) -> None:
    x = make_views(n, v, 6, seed=k)
    q = make_queue(k, 6, seed=n, grad=True)
    labels = make_labels(n) if labelled else None
    out = InfoNCE(temperature=t, reduction="none", chunk_size=chunk)(x, labels, negatives=q)
    expected = infonce_ext_ref(x, labels, t, queue=q, reduction="none")
    assert_value_and_grad(out, expected, (x, q))


def test_queue_gradient_only_when_required() -> None:
    x = make_views(4, 2, 3, seed=5)
    q = make_queue(5, 3)
    out = InfoNCE(temperature=0.2)(x, negatives=q)
    out.backward()
    assert q.grad is None and x.grad is not None
    q2 = make_queue(5, 3, grad=True)
    InfoNCE(temperature=0.2)(x, negatives=q2).backward()
    assert q2.grad is not None and float(q2.grad.abs().sum()) > 0


def test_queue_adds_to_denominator_and_is_scale_invariant() -> None:
    x = make_views(5, 2, 4, seed=6)
    q = make_queue(6, 4)
    loss = InfoNCE(temperature=0.2, reduction="none")
    plain, with_q = loss(x), loss(x, negatives=q)
    assert torch.all(with_q > plain)  # more terms in every denominator
    torch.testing.assert_close(loss(x, negatives=7.0 * q), with_q)  # normalised inside
    # an empty queue changes nothing
    torch.testing.assert_close(loss(x, negatives=q[:0]), plain)


def test_queue_dtype_follows_views() -> None:
    x = make_views(4, 2, 3, seed=7).detach().float()
    q = make_queue(5, 3)  # float64
    out = InfoNCE()(x, negatives=q)
    assert out.dtype == torch.float32
    ref = infonce_ext_ref(x.double(), None, 0.5, queue=q)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# top-K hard negatives (docs/methods.md section 2.8)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize(
    ("n", "v", "k", "t", "labelled"),
    [(6, 2, 1, 0.1, False), (6, 2, 3, 0.5, False), (5, 3, 4, 0.2, False), (8, 2, 2, 0.3, True)],
)
def test_topk_vs_reference(
    n: int, v: int, k: int, t: float, labelled: bool, chunk: int | None
) -> None:
    x = make_views(n, v, 5, seed=10 * n + k)
    labels = make_labels(n) if labelled else None
    out = InfoNCE(temperature=t, topk_negatives=k, reduction="none", chunk_size=chunk)(x, labels)
    expected = infonce_ext_ref(x, labels, t, topk=k, reduction="none")
    assert_value_and_grad(out, expected, (x,))


def test_topk_with_queue_and_weights_vs_reference() -> None:
    x = make_views(5, 2, 4, seed=11)
    q = make_queue(6, 4, seed=2, grad=True)
    w = make_weights(5, seed=3)
    for reduction in ("mean", "none"):
        loss = InfoNCE(temperature=0.2, topk_negatives=3, reduction=reduction, chunk_size=2)
        out = loss(x, weights=w, negatives=q)
        expected = infonce_ext_ref(x, None, 0.2, weights=w, queue=q, topk=3, reduction=reduction)
        assert_value_and_grad(out, expected, (x, q))


def test_topk_at_least_all_negatives_is_plain_infonce() -> None:
    x = make_views(5, 3, 4, seed=12)
    for k in (12, 13, 1000):  # 3 * (5 - 1) = 12 negatives per anchor
        torch.testing.assert_close(
            InfoNCE(temperature=0.3, topk_negatives=k)(x), InfoNCE(temperature=0.3)(x)
        )
    assert not torch.allclose(
        InfoNCE(temperature=0.3, topk_negatives=11)(x), InfoNCE(temperature=0.3)(x)
    )


def test_topk_hand_computed_orthogonal_instances() -> None:
    """N orthogonal instances, both views identical: every negative has s = 0, so the top-K
    denominator is e^{1/t} + K; the plain one is e^{1/t} + 2(N - 1)."""
    n, t = 4, 0.25
    x = torch.eye(n, dtype=F64)[:, None, :].repeat(1, 2, 1)
    for k in (1, 3, 6):
        out = InfoNCE(temperature=t, topk_negatives=k, reduction="none")(x)
        expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + k))
        torch.testing.assert_close(out, torch.full((n, 2), expected, dtype=F64))


def test_topk_keeps_the_hardest_negative() -> None:
    """Wang & Liu: K = 1 keeps only the most similar negative of each anchor (2-D hand case)."""
    t = 0.5
    ang = torch.tensor([0.0, 0.3, 2.0], dtype=F64)  # instance 1 is close to instance 0
    pts = torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    x = torch.stack([pts, pts], dim=1)  # identical views
    out = InfoNCE(temperature=t, topk_negatives=1, reduction="none")(x)
    s01 = math.cos(0.3)
    expected0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(s01 / t)))
    torch.testing.assert_close(out[0], torch.full((2,), expected0, dtype=F64))
    s21 = math.cos(1.7)  # instance 2's nearest negative is instance 1
    expected2 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(s21 / t)))
    torch.testing.assert_close(out[2], torch.full((2,), expected2, dtype=F64))


def test_topk_multi_positive_rows_keep_all_positives() -> None:
    """Labels: each positive its own term; all positives in the denominator plus K negatives."""
    x = make_views(6, 1, 4, seed=13)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    out = InfoNCE(temperature=0.4, topk_negatives=1, reduction="none")(x, labels)
    expected = infonce_ext_ref(x, labels, 0.4, topk=1, reduction="none")
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    assert out[5, 0] == 0  # singleton: no positive


def test_topk_selection_is_blockwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The no-grad selection never multiplies more than chunk_size anchor rows at once."""
    from contrastkit.losses import infonce

    x = make_views(6, 2, 4, seed=14)
    seen: list[int] = []
    real_topk = infonce.topk_stable

    def spy(block: Tensor, k: int, **kwargs: float) -> tuple[Tensor, Tensor]:
        seen.append(block.shape[0])
        return real_topk(block, k, **kwargs)

    monkeypatch.setattr(infonce, "topk_stable", spy)
    InfoNCE(temperature=0.3, topk_negatives=2, chunk_size=5)(x)
    assert seen == [5, 5, 2]


def test_topk_gradcheck() -> None:
    x = make_views(4, 2, 3, seed=15)
    q = make_queue(3, 3, seed=1, grad=True)
    w = make_weights(4)
    for reduction in ("mean", "none"):
        loss = InfoNCE(temperature=0.3, topk_negatives=2, reduction=reduction, chunk_size=3)
        assert torch.autograd.gradcheck(
            lambda a, b: loss(a, weights=w, negatives=b),  # noqa: B023
            (x, q),
            eps=1e-6,
            atol=1e-6,
            rtol=1e-5,
        )
        plain = InfoNCE(temperature=0.3, reduction=reduction, chunk_size=3)
        assert torch.autograd.gradcheck(
            lambda a, b: plain(a, weights=w, negatives=b),  # noqa: B023
            (x, q),
            eps=1e-6,
            atol=1e-6,
            rtol=1e-5,
        )


def test_topk_low_precision_and_tiny_batches() -> None:
    x = make_views(6, 2, 8, seed=16).detach()
    out = InfoNCE(temperature=0.1, topk_negatives=3)(x.bfloat16().requires_grad_(True))
    ref = infonce_ext_ref(x, None, 0.1, topk=3)
    assert out.dtype == torch.float32
    assert abs(float(out.detach()) - float(ref.detach())) < 0.1
    # a single instance with labels: no positive, no negative -> 0 with a finite gradient
    one = make_views(1, 1, 3, seed=17)
    val = InfoNCE(topk_negatives=2)(one, torch.tensor([0]))
    val.backward()
    assert one.grad is not None
    assert float(val.detach()) == 0 and torch.isfinite(one.grad).all()
    # one instance, two views: the positive is the whole denominator
    two = make_views(1, 2, 3, seed=18)
    assert float(InfoNCE(topk_negatives=2)(two).detach()) == pytest.approx(0.0, abs=1e-12)


def test_hard_infonce_class_and_registry() -> None:
    x = make_views(14, 2, 4, seed=19)
    hard = HardInfoNCE(temperature=0.2)
    assert hard.topk_negatives == 10
    torch.testing.assert_close(hard(x), InfoNCE(temperature=0.2, topk_negatives=10)(x))
    built = get_loss("hard_infonce", topk_negatives=3)
    assert isinstance(built, HardInfoNCE) and built.topk_negatives == 3
    assert not loss_info("hard_infonce").needs_labels
    assert "topk_negatives=3" in repr(built)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "exc"),
    # a non-integer is a TypeError, an integer out of range a ValueError (one rule, check_int)
    [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError), ("3", TypeError)],
)
def test_bad_topk(k: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="topk_negatives must be an int"):
        InfoNCE(topk_negatives=k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topk_negatives"):
        HardInfoNCE(topk_negatives=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("w", "exc", "match"),
    [
        (torch.ones(4), ValueError, r"shape \(5,\)"),
        (torch.ones(5, 1), ValueError, r"shape \(5,\)"),
        (torch.ones(5, dtype=torch.int64), TypeError, "floating"),
        (torch.tensor([1.0, 1.0, -0.1, 1.0, 1.0]), ValueError, "non-negative"),
        (torch.tensor([1.0, 1.0, float("inf"), 1.0, 1.0]), ValueError, "finite"),
        ([1.0] * 5, TypeError, "torch.Tensor"),
    ],
)
def test_bad_weights(w: object, exc: type[Exception], match: str) -> None:
    x = make_views(5, 2, 3).detach()
    with pytest.raises(exc, match=match):
        InfoNCE()(x, weights=w)


@pytest.mark.parametrize(
    ("q", "exc", "match"),
    [
        (torch.randn(4, 2), ValueError, "embedding dim 3"),
        (torch.randn(4), ValueError, r"shape \(N, D\)"),
        (torch.ones(4, 3, dtype=torch.int64), TypeError, "floating"),
        (torch.full((2, 3), float("nan")), ValueError, "finite"),
    ],
)
def test_bad_negatives(q: object, exc: type[Exception], match: str) -> None:
    x = make_views(5, 2, 3).detach()
    with pytest.raises(exc, match=match):
        InfoNCE()(x, negatives=q)
    with pytest.raises(exc, match=match):
        InfoNCE(topk_negatives=2)(x, negatives=q)
