"""SupCon family extensions (docs/methods.md section 2.3 b-e, 3.5 step 6): focal weights (Core-tuning), soft
targets (SPACE-2), anchor masks (COCONUT), multi-level group ids (COMET).

The references are dense float64 transcriptions of the formulas (full similarity matrix, boolean
masks, log_softmax); one of them follows Core-tuning's published computation step by step.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from contrastkit.losses import FocalSupCon, InfoNCE, MultiLevelSupCon, SupCon, get_loss, loss_info

F64 = torch.float64
RTOL, ATOL = 1e-9, 1e-11
GRTOL, GATOL = 1e-8, 1e-10


def make_views(n: int, v: int, d: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    return (centre + 0.6 * torch.randn(n, v, d, generator=g, dtype=F64)).requires_grad_(True)


def make_labels(n: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(100 + seed)
    lab = torch.randint(0, max(1, n // 3), (n,), generator=g)
    lab[-1] = 50  # a singleton class
    return lab


def make_target(n: int, seed: int = 0) -> Tensor:
    """Graded relevances in [0, 1] with some exact zeros and one all-zero row."""
    g = torch.Generator().manual_seed(200 + seed)
    r = torch.rand(n, n, generator=g, dtype=F64)
    r = torch.where(r < 0.3, torch.zeros_like(r), r)
    r[0] = 0.0
    return r


# --------------------------------------------------------------------------------------------------
# dense reference
# --------------------------------------------------------------------------------------------------


def dense_logp(views: Tensor, t: float) -> tuple[Tensor, Tensor]:
    n, v, _ = views.shape
    z = torch.cat([views[:, k] for k in range(v)], dim=0).to(F64)
    z = z / z.norm(dim=1, keepdim=True)
    eye = torch.eye(v * n, dtype=torch.bool)
    s = (z @ z.T / t).masked_fill(eye, float("-inf"))
    return torch.log_softmax(s, dim=1), eye


def supcon_ext_ref(
    views: Tensor,
    labels: Tensor | None,
    t: float,
    base_t: float = 0.07,
    *,
    variant: str = "out",
    focal: bool = False,
    normalize: str = "positives",
    without: str = "zero",
    target: Tensor | None = None,
    anchor_mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    n, v, _ = views.shape
    m = v * n
    logp, eye = dense_logp(views, t)
    inst = torch.arange(m) % n
    if target is not None:
        big = target if target.shape[0] == m and m != n else target[inst][:, inst]
        big = big.to(F64).masked_fill(eye, 0.0)
        mass = big.sum(dim=1)
        has_pos = mass > 0
        q = big / torch.where(has_pos, mass, torch.ones_like(mass))[:, None]
        safe = torch.where(eye, torch.zeros_like(logp), logp)
        terms = -(q * safe).sum(dim=1)
    else:
        assert labels is not None
        g = labels[inst]
        pos = (g[:, None] == g[None, :]) & ~eye
        count = pos.sum(dim=1)
        has_pos = count > 0
        safe = torch.where(pos, logp, torch.zeros_like(logp))
        if variant == "in":
            masked = torch.where(pos, logp, torch.full_like(logp, float("-inf")))
            masked = torch.where(has_pos[:, None], masked, torch.zeros_like(masked))
            terms = -(torch.logsumexp(masked, dim=1) - torch.log(count.clamp(min=1).to(F64)))
        else:
            val = ((1 - safe.exp()) * safe).sum(dim=1) if focal else safe.sum(dim=1)
            divisor = {
                "positives": count.clamp(min=1).to(F64),
                "row_length": torch.full((m,), float(m), dtype=F64),
                "candidates": torch.full((m,), float(m - 1), dtype=F64),
            }[normalize]
            terms = -val / divisor
    terms = torch.where(has_pos, terms, torch.zeros_like(terms)) * (t / base_t)
    valid = has_pos.clone() if without == "drop" else torch.ones(m, dtype=torch.bool)
    if anchor_mask is not None:
        anchors = anchor_mask[inst]
        valid &= anchors
        terms = torch.where(anchors, terms, torch.zeros_like(terms))
    grid = torch.stack([terms[k * n : (k + 1) * n] for k in range(v)], dim=1)
    vgrid = torch.stack([valid[k * n : (k + 1) * n] for k in range(v)], dim=1)
    if reduction == "none":
        return grid
    if reduction == "sum":
        return grid.sum()
    return grid[vgrid].sum() / max(int(vgrid.sum()), 1)


def core_tuning_focal_ref(features: Tensor, labels: Tensor, t: float = 0.07) -> Tensor:
    """Core-tuning's focal SupCon (docs/methods.md section 3.5 step 6), step by step on one view (B, d):
    logits shifted by the detached row max, the self column masked out of the partition function,
    weight 1 - p not detached, ``mean`` over the whole row of B entries, sum over anchors divided by
    the number of anchors with at least one positive."""
    f = features.to(F64)
    f = f / f.norm(dim=1, keepdim=True)
    b = f.shape[0]
    same = (labels[:, None] == labels[None, :]).to(F64)
    logits = f @ f.T / t
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = 1.0 - torch.eye(b, dtype=F64)
    pos = same * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(dim=1, keepdim=True))
    weight = 1.0 - torch.exp(log_prob)
    per_anchor = -(t / t) * (weight * pos * log_prob).mean(dim=1)
    return per_anchor.sum() / int((pos.sum(dim=1) > 0).sum())


def assert_value_and_grad(out: Tensor, expected: Tensor, x: Tensor) -> None:
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    w = torch.rand(out.shape, generator=torch.Generator().manual_seed(4), dtype=F64) + 0.5
    (g_lib,) = torch.autograd.grad((out * w).sum(), x)
    (g_ref,) = torch.autograd.grad((expected * w).sum(), x)
    assert torch.isfinite(g_lib).all()
    torch.testing.assert_close(g_lib, g_ref, rtol=GRTOL, atol=GATOL)


# --------------------------------------------------------------------------------------------------
# focal SupCon
# --------------------------------------------------------------------------------------------------

FOCAL_CASES = [(6, 1, 0.07), (7, 2, 0.1), (5, 3, 0.5)]


@pytest.mark.parametrize("chunk", [1, 4, None])
@pytest.mark.parametrize("normalize", ["row_length", "candidates", "positives"])
@pytest.mark.parametrize(("n", "v", "t"), FOCAL_CASES)
def test_focal_vs_reference(n: int, v: int, t: float, normalize: str, chunk: int | None) -> None:
    x = make_views(n, v, 4, seed=n + v)
    labels = make_labels(n, seed=n)
    for reduction in ("mean", "none"):
        loss = FocalSupCon(
            temperature=t,
            base_temperature=0.1,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk,
        )
        expected = supcon_ext_ref(
            x, labels, t, 0.1, focal=True, normalize=normalize, without="drop", reduction=reduction
        )
        assert_value_and_grad(loss(x, labels), expected, x)


@pytest.mark.parametrize("without", ["zero", "drop"])
def test_focal_flag_on_supcon_vs_reference(without: str) -> None:
    x = make_views(6, 2, 5, seed=3)
    labels = make_labels(6, seed=3)
    loss = SupCon(temperature=0.2, focal=True, anchors_without_positives=without, reduction="sum")
    expected = supcon_ext_ref(x, labels, 0.2, focal=True, without=without, reduction="sum")
    assert_value_and_grad(loss(x, labels), expected, x)


def test_focal_equals_core_tuning_computation() -> None:
    """One view of B mixed features, as Core-tuning feeds it, with its defaults (t = 0.07)."""
    x = make_views(9, 1, 6, seed=5)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 4])  # 3 and 4 are singletons
    out = FocalSupCon()(x, labels)
    expected = core_tuning_focal_ref(x[:, 0], labels)
    assert_value_and_grad(out, expected, x)


def test_focal_hand_computed() -> None:
    """x0 = x1 = e1 (class 0), x2 = e2 (class 1): P_01 = e^{1/t} / (e^{1/t} + 1) and
    l_0 = -(1/3)(1 - P_01) log P_01; anchor 2 has no positive and is dropped."""
    t = 0.5
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=F64)[:, None, :]
    p = math.exp(1 / t) / (math.exp(1 / t) + 1)
    expected = -(1 / 3) * (1 - p) * math.log(p)
    out = FocalSupCon(temperature=t, base_temperature=t)(x, torch.tensor([0, 0, 1]))
    assert float(out) == pytest.approx(expected, rel=1e-12)
    # two rows of one class: the positive is the only candidate, P = 1, weight 0
    two = FocalSupCon()(x[:2], torch.tensor([3, 3]))
    assert float(two) == 0.0


def test_focal_weight_is_not_detached() -> None:
    """The gradient includes d(1 - P)/dz: it differs from the detached-weight surrogate."""
    x = make_views(6, 2, 3, seed=6)
    labels = make_labels(6, seed=6)
    (g_lib,) = torch.autograd.grad(FocalSupCon(temperature=0.3)(x, labels), x)
    logp, eye = dense_logp(x, 0.3)
    n, v = 6, 2
    g = labels[torch.arange(n * v) % n]
    pos = (g[:, None] == g[None, :]) & ~eye
    safe = torch.where(pos, logp, torch.zeros_like(logp))
    has = pos.sum(1) > 0
    detached = -(((1 - safe.exp()).detach() * safe).sum(1) / (n * v))[has].sum() / int(has.sum())
    (g_det,) = torch.autograd.grad(detached, x)
    assert not torch.allclose(g_lib, g_det, rtol=1e-3, atol=1e-6)


def test_focal_blocks_are_checkpointed() -> None:
    """Backward recomputes the blocks: no (V N)-wide block is kept alive by the graph."""
    x = make_views(12, 2, 4, seed=7)
    labels = make_labels(12)
    saved: list[tuple[int, ...]] = []

    def pack(t: Tensor) -> Tensor:
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        FocalSupCon(chunk_size=4)(x, labels)
    rows = 24
    assert not any(len(s) == 2 and s[1] == rows and s[0] > 1 for s in saved), saved


def test_focal_anchor_mask_vs_reference() -> None:
    x = make_views(7, 2, 4, seed=8)
    labels = make_labels(7, seed=8)
    mask = torch.tensor([True, False, True, True, False, False, True])
    for reduction in ("mean", "none"):
        out = FocalSupCon(reduction=reduction, chunk_size=3)(x, labels, anchor_mask=mask)
        expected = supcon_ext_ref(
            x,
            labels,
            0.07,
            focal=True,
            normalize="row_length",
            without="drop",
            anchor_mask=mask,
            reduction=reduction,
        )
        assert_value_and_grad(out, expected, x)


def test_focal_registry() -> None:
    assert isinstance(get_loss("focal_supcon"), FocalSupCon)
    assert loss_info("focal_supcon").needs_labels
    f = FocalSupCon()
    assert f.focal and f.normalize == "row_length" and f.anchors_without_positives == "drop"
    assert f.temperature == f.base_temperature == 0.07


# --------------------------------------------------------------------------------------------------
# row-length normalisation without focal weights
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["row_length", "candidates"])
def test_out_normalize_vs_reference(normalize: str) -> None:
    x = make_views(6, 2, 4, seed=9)
    labels = make_labels(6, seed=9)
    loss = SupCon(temperature=0.2, normalize=normalize, chunk_size=5)
    expected = supcon_ext_ref(x, labels, 0.2, normalize=normalize)
    assert_value_and_grad(loss(x, labels), expected, x)


# --------------------------------------------------------------------------------------------------
# soft targets (SPACE-2)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [2, None])
@pytest.mark.parametrize("form", ["instance", "rows"])
@pytest.mark.parametrize(("n", "v", "t"), [(5, 1, 0.1), (5, 2, 0.3), (4, 3, 1.0)])
def test_soft_target_vs_reference(n: int, v: int, t: float, form: str, chunk: int | None) -> None:
    x = make_views(n, v, 4, seed=n * v)
    target = make_target(n if form == "instance" else n * v, seed=n)
    for without in ("zero", "drop"):
        for reduction in ("mean", "none"):
            loss = SupCon(
                temperature=t,
                anchors_without_positives=without,
                reduction=reduction,
                chunk_size=chunk,
            )
            expected = supcon_ext_ref(
                x, None, t, target=target, without=without, reduction=reduction
            )
            assert_value_and_grad(loss(x, target_matrix=target), expected, x)


def test_soft_target_from_labels_is_supcon() -> None:
    """r_ij = [y_i = y_j] (per instance) gives SupCon L_out with labels y exactly."""
    x = make_views(7, 2, 4, seed=10)
    labels = make_labels(7, seed=10)
    r = (labels[:, None] == labels[None, :]).to(F64)
    loss = SupCon(temperature=0.2, reduction="none")
    torch.testing.assert_close(loss(x, target_matrix=r), loss(x, labels), rtol=1e-12, atol=1e-12)
    # and the identity target is InfoNCE scaled by t / t_base
    eye = torch.eye(7, dtype=F64)
    torch.testing.assert_close(
        loss(x, target_matrix=eye), InfoNCE(temperature=0.2, reduction="none")(x) * (0.2 / 0.07)
    )


def test_soft_target_row_form_equals_expanded_instance_form() -> None:
    n, v = 4, 3
    x = make_views(n, v, 4, seed=11)
    r = make_target(n, seed=11)
    inst = torch.arange(n * v) % n
    big = r[inst][:, inst]
    loss = SupCon(temperature=0.3, reduction="none")
    torch.testing.assert_close(loss(x, target_matrix=big), loss(x, target_matrix=r))
    # the row form's diagonal is ignored; the instance form's diagonal weighs the other views
    big2 = big.clone()
    big2.fill_diagonal_(9.0)
    torch.testing.assert_close(loss(x, target_matrix=big2), loss(x, target_matrix=r))
    r2 = r.clone()
    r2.fill_diagonal_(9.0)
    assert not torch.allclose(loss(x, target_matrix=r2), loss(x, target_matrix=r))


def test_soft_target_is_detached_and_scale_free() -> None:
    x = make_views(5, 2, 3, seed=12)
    r = make_target(5, seed=12).requires_grad_(True)
    out = SupCon()(x, target_matrix=r)
    g_x, g_r = torch.autograd.grad(out, (x, r), allow_unused=True)
    assert g_r is None and g_x is not None
    torch.testing.assert_close(SupCon()(x, target_matrix=3.0 * r.detach()), out)


def test_soft_target_hand_computed() -> None:
    """Three orthogonal unit rows (V = 1), r_01 = 1, r_02 = 3: P_0k = 1/2 for both candidates, so
    l_0 = -(1/4) log(1/2) - (3/4) log(1/2) = log 2 (times t / t_base = 1)."""
    x = torch.eye(3, dtype=F64)[:, None, :]
    r = torch.tensor([[0.0, 1.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    out = SupCon(temperature=0.5, base_temperature=0.5, reduction="none")(x, target_matrix=r)
    torch.testing.assert_close(out[:, 0], torch.tensor([math.log(2.0), 0.0, 0.0], dtype=F64))


def test_soft_target_anchor_mask_vs_reference() -> None:
    x = make_views(6, 2, 4, seed=13)
    r = make_target(6, seed=13)
    mask = torch.tensor([False, True, True, False, True, True])
    out = SupCon(temperature=0.2, anchors_without_positives="drop")(
        x, target_matrix=r, anchor_mask=mask
    )
    expected = supcon_ext_ref(x, None, 0.2, target=r, without="drop", anchor_mask=mask)
    assert_value_and_grad(out, expected, x)


# --------------------------------------------------------------------------------------------------
# anchor mask (COCONUT)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("without", ["zero", "drop"])
def test_anchor_mask_vs_reference(variant: str, without: str, chunk: int | None) -> None:
    x = make_views(7, 2, 4, seed=14)
    labels = make_labels(7, seed=14)
    mask = torch.tensor([True, False, False, True, True, False, True])
    for reduction in ("mean", "sum", "none"):
        loss = SupCon(
            temperature=0.15,
            variant=variant,
            anchors_without_positives=without,
            reduction=reduction,
            chunk_size=chunk,
        )
        expected = supcon_ext_ref(
            x,
            labels,
            0.15,
            variant=variant,
            without=without,
            anchor_mask=mask,
            reduction=reduction,
        )
        assert_value_and_grad(loss(x, labels, anchor_mask=mask), expected, x)


def test_anchor_mask_keeps_every_candidate() -> None:
    """Anchor rows keep their full-batch terms; the other rows give 0 and are out of the mean."""
    x = make_views(6, 2, 4, seed=15)
    labels = make_labels(6, seed=15)
    mask = torch.tensor([True, True, False, False, True, False])
    loss = SupCon(temperature=0.2, reduction="none")
    full = loss(x, labels)
    part = loss(x, labels, anchor_mask=mask)
    torch.testing.assert_close(part[mask], full[mask])
    assert torch.all(part[~mask] == 0)
    all_true = torch.ones(6, dtype=torch.bool)
    torch.testing.assert_close(SupCon()(x, labels, anchor_mask=all_true), SupCon()(x, labels))
    mean = SupCon(temperature=0.2)(x, labels, anchor_mask=mask)
    torch.testing.assert_close(mean, full[mask].mean())


def test_anchor_mask_without_anchors_is_zero_and_differentiable() -> None:
    x = make_views(4, 2, 3, seed=16)
    out = SupCon()(x, torch.tensor([0, 0, 1, 1]), anchor_mask=torch.zeros(4, dtype=torch.bool))
    out.backward()
    assert float(out.detach()) == 0.0 and x.grad is not None and float(x.grad.abs().sum()) == 0.0


# --------------------------------------------------------------------------------------------------
# multi-level group ids (COMET)
# --------------------------------------------------------------------------------------------------


def make_levels(n: int) -> Tensor:
    """(N, 3) ids: patient > trial > sample, nested."""
    patient = torch.arange(n) // 4
    trial = torch.arange(n) // 2
    sample = torch.arange(n)
    return torch.stack([patient, trial, sample], dim=1)


@pytest.mark.parametrize(
    ("kwargs", "ref_kwargs"),
    [
        ({}, {}),
        ({"variant": "in"}, {"variant": "in"}),
        ({"anchors_without_positives": "drop"}, {"without": "drop"}),
        (
            {"focal": True, "normalize": "row_length", "anchors_without_positives": "drop"},
            {"focal": True, "normalize": "row_length", "without": "drop"},
        ),
    ],
)
def test_multilevel_vs_reference(kwargs: dict[str, object], ref_kwargs: dict[str, object]) -> None:
    n, v = 8, 2
    x = make_views(n, v, 4, seed=17)
    levels = make_levels(n)
    lam = (0.5, 1.0, 0.25)
    for reduction in ("mean", "none"):
        loss = MultiLevelSupCon(
            level_weights=lam,
            temperature=0.2,
            reduction=reduction,
            chunk_size=5,
            **kwargs,  # type: ignore[arg-type]
        )
        expected = torch.stack(
            [
                lam[i] * supcon_ext_ref(x, levels[:, i], 0.2, reduction=reduction, **ref_kwargs)  # type: ignore[arg-type]
                for i in range(3)
            ]
        ).sum(dim=0)
        assert_value_and_grad(loss(x, levels), expected, x)


def test_multilevel_single_level_and_zero_weights() -> None:
    x = make_views(6, 2, 3, seed=18)
    levels = make_levels(6)
    one = MultiLevelSupCon(level_weights=(1.0,), temperature=0.3)
    torch.testing.assert_close(one(x, levels[:, :1]), SupCon(temperature=0.3)(x, levels[:, 0]))
    skip = MultiLevelSupCon(level_weights=(0.0, 2.0, 0.0), temperature=0.3)
    torch.testing.assert_close(skip(x, levels), 2.0 * SupCon(temperature=0.3)(x, levels[:, 1]))
    mask = torch.tensor([True, False, True, True, False, True])
    masked = MultiLevelSupCon(level_weights=(1.0, 1.0, 1.0))(x, levels, anchor_mask=mask)
    expected = sum(SupCon()(x, levels[:, i], anchor_mask=mask) for i in range(3))
    torch.testing.assert_close(masked, expected)


# --------------------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------------------


def test_gradcheck_supcon_extensions() -> None:
    x = make_views(4, 2, 3, seed=19)
    labels = torch.tensor([0, 1, 0, 2])
    mask = torch.tensor([True, False, True, True])
    r = make_target(4, seed=19)
    fns = [
        lambda z: FocalSupCon(temperature=0.3, chunk_size=3)(z, labels),
        lambda z: SupCon(temperature=0.3, focal=True, normalize="positives", chunk_size=3)(
            z, labels, anchor_mask=mask
        ),
        lambda z: SupCon(temperature=0.3, chunk_size=3, reduction="none")(z, target_matrix=r),
        lambda z: SupCon(temperature=0.3, variant="in", chunk_size=3)(z, labels, anchor_mask=mask),
        lambda z: MultiLevelSupCon(level_weights=(0.5, 1.0), temperature=0.3, chunk_size=3)(
            z, torch.stack([labels, torch.arange(4)], dim=1)
        ),
    ]
    for fn in fns:
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_low_precision_focal_and_target() -> None:
    x = make_views(6, 2, 8, seed=20).detach()
    labels = make_labels(6, seed=20)
    out = FocalSupCon(temperature=0.2)(x.bfloat16(), labels)
    ref = supcon_ext_ref(x, labels, 0.2, focal=True, normalize="row_length", without="drop")
    assert out.dtype == torch.float32 and abs(float(out) - float(ref)) < 0.05
    r = make_target(6)
    out = SupCon(temperature=0.2)(x.half(), target_matrix=r)
    ref = supcon_ext_ref(x, None, 0.2, target=r)
    assert out.dtype == torch.float32 and abs(float(out) - float(ref)) < 0.05


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="normalize"):
        SupCon(normalize="length")
    with pytest.raises(ValueError, match="variant='in'"):
        SupCon(variant="in", focal=True)
    with pytest.raises(ValueError, match="variant='in'"):
        SupCon(variant="in", normalize="row_length")
    with pytest.raises(TypeError, match="focal"):
        SupCon(focal=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="normalize"):
        FocalSupCon(normalize="all")
    with pytest.raises(ValueError, match="level_weights"):
        MultiLevelSupCon(level_weights=())
    with pytest.raises(ValueError, match="level_weights"):
        MultiLevelSupCon(level_weights=(0.0, 0.0))
    with pytest.raises(ValueError, match=r"level_weights\[1\]"):
        MultiLevelSupCon(level_weights=(1.0, -1.0))
    with pytest.raises(TypeError, match="level_weights"):
        MultiLevelSupCon(level_weights="1,2")  # type: ignore[arg-type]


def test_forward_errors() -> None:
    x = make_views(4, 2, 3).detach()
    labels = torch.tensor([0, 0, 1, 1])
    r = make_target(4)
    with pytest.raises(ValueError, match="labels of shape"):
        SupCon()(x)
    with pytest.raises(ValueError, match="not both"):
        SupCon()(x, labels, target_matrix=r)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(8, 8\)"):
        SupCon()(x, target_matrix=torch.ones(5, 5, dtype=F64))
    with pytest.raises(ValueError, match="non-negative"):
        SupCon()(x, target_matrix=-r)
    with pytest.raises(TypeError, match="floating"):
        SupCon()(x, target_matrix=torch.ones(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="finite"):
        SupCon()(x, target_matrix=torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match="target_matrix works with"):
        FocalSupCon()(x, target_matrix=r)
    with pytest.raises(ValueError, match="target_matrix works with"):
        SupCon(variant="in")(x, target_matrix=r)
    with pytest.raises(TypeError, match="bool"):
        SupCon()(x, labels, anchor_mask=torch.ones(4))
    with pytest.raises(ValueError, match=r"anchor_mask must have shape \(4,\)"):
        SupCon()(x, labels, anchor_mask=torch.ones(3, dtype=torch.bool))
    ml = MultiLevelSupCon(level_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        ml(x, labels)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        ml(x, torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        ml(x, torch.zeros(4, 2))
