"""Hand-computable cases and structural properties from docs/methods.md (sections 2.1, 2.3(a), 2.4, 2.5),
plus low-precision (bfloat16 / float16) behaviour."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from contrastkit.losses import DCL, DCLW, CLIPLoss, InfoNCE, SupCon


def _load_reference() -> Any:
    name = "contrastkit_tests_losses_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("reference.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ref = _load_reference()

F64 = torch.float64
TEMPS = (0.05, 0.1, 0.5, 1.0)


def views(n: int, v: int, d: int, seed: int = 0, noise: float = 0.6) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    return (centre + noise * torch.randn(n, v, d, generator=g, dtype=F64)).requires_grad_(True)


def close(a: Tensor, b: Tensor, rtol: float = 1e-9, atol: float = 1e-11) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


VIEW_LOSSES = {
    "ntxent": lambda t, r="mean": InfoNCE(temperature=t, reduction=r),
    "supcon_out": lambda t, r="mean": SupCon(temperature=t, base_temperature=0.07, reduction=r),
    "supcon_in": lambda t, r="mean": SupCon(temperature=t, variant="in", reduction=r),
    "dcl": lambda t, r="mean": DCL(temperature=t, reduction=r),
    "dclw": lambda t, r="mean": DCLW(temperature=t, reduction=r),
}


def call(name: str, loss: torch.nn.Module, x: Tensor, labels: Tensor | None = None) -> Tensor:
    if name.startswith("supcon"):
        return loss(x, torch.arange(x.shape[0]) if labels is None else labels)
    return loss(x) if labels is None else loss(x, labels)


# --------------------------------------------------------------------------------------------------
# NT-Xent (2.1)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", TEMPS)
def test_ntxent_two_orthogonal_instances_identical_views(t: float) -> None:
    """N=2, both views identical, instances orthogonal:
    every l_i = -log(e^{1/t} / (e^{1/t} + 2))  (docs/methods.md section 2.1)."""
    e1, e2 = torch.eye(3, dtype=F64)[0], torch.eye(3, dtype=F64)[1]
    x = torch.stack([torch.stack([e1, e1]), torch.stack([3.0 * e2, 3.0 * e2])])  # (2, 2, 3)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    out = InfoNCE(temperature=t, reduction="none")(x)
    assert out.shape == (2, 2)
    close(out, torch.full((2, 2), expected, dtype=F64))
    assert float(InfoNCE(temperature=t)(x)) == pytest.approx(expected, rel=1e-12)
    assert float(ref.ntxent_ref(x, None, t)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n", "v"), [(2, 3), (3, 4), (4, 2)])
def test_ntxent_orthogonal_instances_identical_views_general(n: int, v: int) -> None:
    """Generalisation: V identical views, N orthogonal instances => each anchor has V-1 positives at
    s=1 and (N-1)V negatives at s=0: l = -log(e^{1/t} / ((V-1) e^{1/t} + (N-1) V))."""
    t = 0.2
    x = torch.eye(n, dtype=F64)[:, None, :].repeat(1, v, 1)
    expected = -math.log(math.exp(1 / t) / ((v - 1) * math.exp(1 / t) + (n - 1) * v))
    close(InfoNCE(temperature=t, reduction="none")(x), torch.full((n, v), expected, dtype=F64))


@pytest.mark.parametrize("name", list(VIEW_LOSSES))
@pytest.mark.parametrize("v", [2, 3])
def test_symmetric_under_permuting_views(name: str, v: int) -> None:
    x = views(6, v, 5, seed=v)
    perm = torch.tensor([1, 0] if v == 2 else [2, 0, 1])
    for t in (0.1, 0.5):
        loss = VIEW_LOSSES[name](t, "none")
        a = call(name, loss, x)
        b = call(name, loss, x[:, perm])
        close(b, a[:, perm])
        close(call(name, VIEW_LOSSES[name](t), x[:, perm]), call(name, VIEW_LOSSES[name](t), x))


@pytest.mark.parametrize("name", ["ntxent", "supcon_out", "supcon_in", "dcl"])
def test_equivariant_under_permuting_instances(name: str) -> None:
    """Reordering the batch (and its labels) reorders the per-anchor terms."""
    x = views(7, 2, 4, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 1, 5, 0])
    perm = torch.tensor([3, 6, 0, 2, 5, 1, 4])
    loss = VIEW_LOSSES[name](0.2, "none")
    a = call(name, loss, x, labels)
    b = call(name, loss, x[perm], labels[perm])
    close(b, a[perm])


@pytest.mark.parametrize("name", list(VIEW_LOSSES))
def test_invariant_to_embedding_scale(name: str) -> None:
    """Cosine similarity: rescaling each embedding by any positive factor changes nothing."""
    x = views(5, 3, 8, seed=4)
    g = torch.Generator().manual_seed(9)
    scale = torch.exp(torch.empty(5, 3, 1, dtype=F64).uniform_(-4.0, 4.0, generator=g))
    for t in (0.05, 0.5):
        loss = VIEW_LOSSES[name](t, "none")
        close(call(name, loss, x * scale), call(name, loss, x))


def test_clip_invariant_to_embedding_scale() -> None:
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(6, 5, generator=g, dtype=F64), torch.randn(6, 5, generator=g, dtype=F64)
    s1 = torch.exp(torch.empty(6, 1, dtype=F64).uniform_(-3.0, 3.0, generator=g))
    s2 = torch.exp(torch.empty(6, 1, dtype=F64).uniform_(-3.0, 3.0, generator=g))
    loss = CLIPLoss(reduction="none").double()
    close(loss(img * s1, txt * s2), loss(img, txt))


# --------------------------------------------------------------------------------------------------
# SupCon (2.3(a))
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", [2, 3, 4])
@pytest.mark.parametrize(("t", "base_t"), [(0.1, 0.07), (0.5, 0.1), (0.07, 0.07)])
def test_supcon_with_instance_labels_is_scaled_infonce(v: int, t: float, base_t: float) -> None:
    """labels = instance ids: SupCon L_out = (t / base_t) * InfoNCE, per anchor and in the mean."""
    x = views(6, v, 7, seed=v)
    ids = torch.arange(6)
    for reduction in ("mean", "sum", "none"):
        sup = SupCon(temperature=t, base_temperature=base_t, reduction=reduction)(x, ids)
        nce = InfoNCE(temperature=t, reduction=reduction)(x)
        close(sup, (t / base_t) * nce)
    # with V = 2 there is a single positive, so L_in = L_out as well
    if v == 2:
        sup_in = SupCon(temperature=t, base_temperature=base_t, variant="in")(x, ids)
        close(sup_in, (t / base_t) * InfoNCE(temperature=t)(x))


def test_supcon_with_labels_is_scaled_infonce_with_labels() -> None:
    x = views(8, 2, 5, seed=2)
    labels = torch.tensor([1, 1, 2, 3, 2, 1, 4, 4])
    sup = SupCon(temperature=0.2, base_temperature=0.1, reduction="none")(x, labels)
    close(sup, 2.0 * InfoNCE(temperature=0.2, reduction="none")(x, labels))


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("without", ["zero", "drop"])
def test_supcon_single_view_all_unique_labels_has_no_positives(variant: str, without: str) -> None:
    """One view per instance and every label unique: no anchor has a positive. "zero": every term
    is 0 and the mean is 0; "drop": no anchor is left, the mean is defined as 0 (finite, no NaN),
    and the gradient is 0."""
    x = views(5, 1, 4, seed=1)
    labels = torch.tensor([4, 0, 9, 2, 7])
    kw: dict[str, Any] = {
        "temperature": 0.1,
        "variant": variant,
        "anchors_without_positives": without,
    }
    none = SupCon(reduction="none", **kw)(x, labels)
    assert none.shape == (5, 1)
    close(none, torch.zeros(5, 1, dtype=F64))
    for reduction in ("mean", "sum"):
        out = SupCon(reduction=reduction, **kw)(x, labels)
        assert torch.isfinite(out)
        assert float(out.detach()) == 0.0
        (g,) = torch.autograd.grad(out, x)
        assert torch.isfinite(g).all()
        assert float(g.abs().max()) == 0.0


@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_zero_versus_drop_normalisation(variant: str) -> None:
    """Mixed batch (V=1): "zero" averages over all N anchors, "drop" over those with a positive."""
    x = views(7, 1, 4, seed=5)
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 9])  # rows 3 and 6 have no positive
    kw: dict[str, Any] = {"temperature": 0.2, "variant": variant}
    terms = SupCon(reduction="none", **kw)(x, labels)
    assert float(terms[3, 0].detach()) == 0.0 and float(terms[6, 0].detach()) == 0.0
    zero = SupCon(anchors_without_positives="zero", **kw)(x, labels)
    drop = SupCon(anchors_without_positives="drop", **kw)(x, labels)
    close(zero, terms.sum() / 7)
    close(drop, terms.sum() / 5)
    close(drop * 5, zero * 7)


# --------------------------------------------------------------------------------------------------
# DCL / DCLW (2.5)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize("n", [2, 5, 17])
def test_dcl_vs_ntxent_per_anchor_gap(n: int, t: float) -> None:
    """Per anchor: NT-Xent - DCL = log(1 + e^{s_pos/t} / sum_neg e^{s/t}) > 0 (V = 2)."""
    x = views(n, 2, 6, seed=n)
    nce = InfoNCE(temperature=t, reduction="none")(x)
    dcl = DCL(temperature=t, reduction="none")(x)
    s = ref.similarity(x.detach())
    rows = 2 * n
    partner = (torch.arange(rows) + n) % rows
    s_pos = s[torch.arange(rows), partner]
    neg = torch.ones(rows, rows, dtype=torch.bool)
    neg[torch.arange(rows), torch.arange(rows)] = False
    neg[torch.arange(rows), partner] = False
    sum_neg = torch.where(neg, torch.exp(s / t), torch.zeros_like(s)).sum(dim=1)
    gap = torch.log1p(torch.exp(s_pos / t) / sum_neg)
    gap_grid = torch.stack([gap[:n], gap[n:]], dim=1)
    close((nce - dcl).detach(), gap_grid, rtol=1e-9, atol=1e-10)
    assert bool((nce - dcl > 0).all())


@pytest.mark.parametrize("t", TEMPS)
def test_dcl_decoupling_positive_gradient_is_constant(t: float) -> None:
    """With the symmetric mean, dL/ds(z_i^1, z_i^2) = -1/(N t) exactly, whatever the negatives.

    Parametrisation: instance 0 has z^1 = e_a and z^2 = cos(theta) e_a + sin(theta) e_b; every
    other row lives in the subspace orthogonal to e_a, e_b (random, different per trial). Then the
    loss depends on theta only through s_0 = cos(theta), so dL/ds_0 = (dL/dtheta) / (-sin(theta)).
    NT-Xent, for contrast, gives a gradient that depends on the negatives.
    """
    n, d = 6, 7
    dcl_grads, nce_grads = [], []
    for trial in range(4):
        g = torch.Generator().manual_seed(trial)
        others = torch.randn(n - 1, 2, d - 2, generator=g, dtype=F64) * (1 + trial)
        others = torch.cat([torch.zeros(n - 1, 2, 2, dtype=F64), others], dim=2)
        for theta0 in (0.3, 1.1, 2.0):
            theta = torch.tensor(theta0, dtype=F64, requires_grad=True)
            ea = torch.zeros(d, dtype=F64)
            ea[0] = 1.0
            eb = torch.zeros(d, dtype=F64)
            eb[1] = 1.0
            z0 = torch.stack([ea, torch.cos(theta) * ea + torch.sin(theta) * eb])
            x = torch.cat([z0[None], others], dim=0)
            (dtheta,) = torch.autograd.grad(DCL(temperature=t)(x), theta, retain_graph=True)
            dcl_grads.append(float(dtheta) / -math.sin(theta0))
            (dtheta,) = torch.autograd.grad(InfoNCE(temperature=t)(x), theta)
            nce_grads.append(float(dtheta) / -math.sin(theta0))
    for grad in dcl_grads:
        assert grad == pytest.approx(-1.0 / (n * t), rel=1e-10)
    assert max(nce_grads) - min(nce_grads) > 1e-6  # NT-Xent is coupled to the negatives


@pytest.mark.parametrize("t", (0.1, 0.5))
@pytest.mark.parametrize(("n", "v"), [(5, 2), (9, 2), (4, 3), (6, 4)])
def test_dcl_gradient_decomposes_into_negatives_and_constant_positive_part(
    n: int, v: int, t: float
) -> None:
    """For random views: grad(DCL) = grad(mean_r lse_neg(r)) + grad(c * sum_{pairs} s_pair), with
    the constant c = -1/(N t) for V = 2 (docs/methods.md section 2.5), and -2/(N V (V-1) t) per unordered
    positive pair for V views (each pair appears in two anchors, each averaging V-1 positives over
    V N anchors)."""
    x = views(n, v, 5, seed=n + v)
    (g_lib,) = torch.autograd.grad(DCL(temperature=t)(x), x)
    (g_neg,) = torch.autograd.grad(ref.dcl_negative_lse_ref(x, t).mean(), x)
    s = ref.similarity(x)
    pairs = sum(
        s[a * n + i, b * n + i] for i in range(n) for a in range(v) for b in range(a + 1, v)
    )
    c = -2.0 / (n * v * (v - 1) * t)
    if v == 2:
        assert c == pytest.approx(-1.0 / (n * t))
    (g_pos,) = torch.autograd.grad(c * pairs, x)
    close(g_lib, g_neg + g_pos, rtol=1e-9, atol=1e-12)


def equal_positive_similarity_views(n: int, d: int, cos: float, seed: int) -> Tensor:
    """V=2 views with s(z_i^1, z_i^2) = cos for every i (random directions and norms otherwise)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=F64), dim=1)
    w = torch.randn(n, d, generator=g, dtype=F64)
    w = torch.nn.functional.normalize(w - (w * u).sum(1, keepdim=True) * u, dim=1)
    z2 = cos * u + math.sqrt(1 - cos**2) * w
    norms = torch.exp(torch.randn(n, 2, 1, generator=g, dtype=F64))
    return (torch.stack([u, z2], dim=1) * norms).requires_grad_(True)


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("cos", [-0.3, 0.4, 0.95])
@pytest.mark.parametrize("sigma", [0.2, 0.5, 2.0])
def test_dclw_equal_positive_similarities_equals_dcl(
    detach: bool, cos: float, sigma: float
) -> None:
    """All positive similarities equal => all vMF weights are 1 => DCLW = DCL (values and gradients;
    with non-detached weights the weight gradient sum_i s_i dw_i/ds_j vanishes as well)."""
    x = equal_positive_similarity_views(7, 5, cos, seed=int(10 * cos) + 3)
    s = ref.similarity(x.detach())
    assert torch.allclose(torch.diagonal(s, offset=7), torch.full((7,), cos, dtype=F64))
    for reduction in ("mean", "none"):
        w = DCLW(temperature=0.1, sigma=sigma, detach_weights=detach, reduction=reduction)(x)
        d = DCL(temperature=0.1, reduction=reduction)(x)
        close(w, d)
        (gw,) = torch.autograd.grad(w.sum(), x)
        (gd,) = torch.autograd.grad(d.sum(), x)
        close(gw, gd, rtol=1e-8, atol=1e-10)


def test_dclw_weights_mean_one_and_hard_positives_weigh_more() -> None:
    """w_i = 2 - N softmax(s/sigma)_i: mean 1; a smaller positive similarity gets a larger weight;
    weights can be < 0."""
    from contrastkit.losses.decoupled import von_mises_fisher_weights

    s = torch.tensor([0.9, 0.5, -0.2, 0.99], dtype=F64)
    w = von_mises_fisher_weights(s, 0.5)
    e = torch.exp(s / 0.5)
    close(w, 2 - e / e.mean())
    assert float(w.mean()) == pytest.approx(1.0)
    assert bool((w[torch.argsort(s)].diff() < 0).all())
    w_sharp = von_mises_fisher_weights(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=F64), 0.1)
    assert float(w_sharp[0]) < 0  # very easy positives get negative weight, by design


# --------------------------------------------------------------------------------------------------
# CLIP (2.4)
# --------------------------------------------------------------------------------------------------


def pair(n: int, d: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=g, dtype=F64)
    return img, img + torch.randn(n, d, generator=g, dtype=F64)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_clip_symmetric_in_image_and_text(smoothing: float) -> None:
    img, txt = pair(9, 6, 0)
    for reduction in ("mean", "none"):
        loss = CLIPLoss(label_smoothing=smoothing, reduction=reduction).double()
        close(loss(img, txt), loss(txt, img))


def test_clip_logit_scale_clamped_after_large_update() -> None:
    """An optimizer step that pushes theta to 10 gives the effective scale 100 (theta clamped to
    ln 100), and one that pushes it below 0 gives scale 1."""
    img, txt = pair(6, 4, 1)
    loss = CLIPLoss().double()
    assert float(loss.scale().detach()) == pytest.approx(1 / 0.07, rel=1e-6)
    opt = torch.optim.SGD(loss.parameters(), lr=1.0)
    loss.logit_scale.grad = loss.logit_scale.detach() - 10.0  # step: theta <- theta - grad = 10
    opt.step()
    assert float(loss.logit_scale.detach()) == pytest.approx(10.0)
    out = loss(img, txt)
    assert float(loss.scale().detach()) == pytest.approx(100.0, rel=1e-12)
    assert float(loss.logit_scale.detach()) == pytest.approx(math.log(100.0), rel=1e-12)
    close(out, ref.clip_ref(img, txt, 100.0))
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    close(loss(img, txt), ref.clip_ref(img, txt, 100.0))
    with torch.no_grad():
        loss.logit_scale.fill_(-3.0)
    close(loss(img, txt), ref.clip_ref(img, txt, 1.0))
    assert float(loss.scale().detach()) == pytest.approx(1.0)


def test_clip_custom_max_logit_scale_and_fixed_scale() -> None:
    img, txt = pair(5, 4, 2)
    loss = CLIPLoss(max_logit_scale=30.0).double()
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    close(loss(img, txt), ref.clip_ref(img, txt, 30.0), rtol=1e-9, atol=1e-11)
    fixed = CLIPLoss(init_temperature=0.25, learnable=False).double()
    assert not any(p.requires_grad for p in fixed.parameters())
    sigma = fixed.scale()  # theta = log 4, initialised in float32
    assert float(sigma.detach()) == pytest.approx(4.0, rel=1e-6)
    close(fixed(img, txt), ref.clip_ref(img, txt, sigma), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("t", TEMPS)
def test_clip_equals_cross_view_ntxent_without_same_modality_negatives(t: float) -> None:
    """CLIP = NT-Xent on views (img, txt) (V=2) where each anchor's denominator keeps only the other
    modality's rows (same-modality negatives removed), built from the dense reference pieces."""
    n = 7
    img, txt = pair(n, 5, 3)
    loss = CLIPLoss(init_temperature=t, reduction="none").double()
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1 / t))
    x = torch.stack([img, txt], dim=1)  # (N, 2, D): view 0 = image, view 1 = text
    s = ref.similarity(x)
    modality = torch.arange(2 * n) // n
    keep = modality[:, None] != modality[None, :]  # cross-modality entries only
    logp = ref.masked_log_softmax(s / t, keep)
    partner = (torch.arange(2 * n) + n) % (2 * n)
    terms = -logp[torch.arange(2 * n), partner]
    expected_none = 0.5 * (terms[:n] + terms[n:])
    close(loss(img, txt), expected_none, rtol=1e-9, atol=1e-10)
    loss_mean = CLIPLoss(init_temperature=t).double()
    with torch.no_grad():
        loss_mean.logit_scale.fill_(math.log(1 / t))
    close(loss_mean(img, txt), terms.mean(), rtol=1e-9, atol=1e-10)
    # and it is indeed not full NT-Xent: the same-modality negatives make NT-Xent larger
    assert float(ref.ntxent_ref(x, None, t)) > float(terms.mean())


def test_clip_matches_torch_cross_entropy() -> None:
    img, txt = pair(8, 5, 4)
    for eps in (0.0, 0.1):
        loss = CLIPLoss(init_temperature=0.2, label_smoothing=eps).double()
        with torch.no_grad():
            loss.logit_scale.fill_(math.log(5.0))
        i = torch.nn.functional.normalize(img, dim=1)
        x = torch.nn.functional.normalize(txt, dim=1)
        logits = 5.0 * i @ x.T
        target = torch.arange(8)
        ce = torch.nn.functional.cross_entropy
        expected = 0.5 * (
            ce(logits, target, label_smoothing=eps) + ce(logits.T, target, label_smoothing=eps)
        )
        close(loss(img, txt), expected)


# --------------------------------------------------------------------------------------------------
# Low precision
# --------------------------------------------------------------------------------------------------

LOW = [torch.bfloat16, torch.float16]


def low_precision_views(dtype: torch.dtype) -> Tensor:
    """Realistic embeddings (views close to their instance's centre), rounded to ``dtype``."""
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(17, 1, 16, generator=g)
    return (centre + 0.6 * torch.randn(17, 2, 16, generator=g)).to(dtype)


LOW_LABELS = torch.tensor([i % 5 for i in range(17)])

LOW_LOSSES = {
    "ntxent": (
        lambda t, c: InfoNCE(temperature=t, chunk_size=c),
        lambda x, t: ref.ntxent_ref(x, None, t),
    ),
    "supcon_out": (
        lambda t, c: SupCon(temperature=t, chunk_size=c),
        lambda x, t: ref.supcon_ref(x, LOW_LABELS, t, 0.07, "out"),
    ),
    "supcon_in": (
        lambda t, c: SupCon(temperature=t, variant="in", chunk_size=c),
        lambda x, t: ref.supcon_ref(x, LOW_LABELS, t, 0.07, "in"),
    ),
    "dcl": (lambda t, c: DCL(temperature=t, chunk_size=c), lambda x, t: ref.dcl_ref(x, t)),
    "dclw": (lambda t, c: DCLW(temperature=t, chunk_size=c), lambda x, t: ref.dclw_ref(x, t)),
}


@pytest.mark.parametrize("chunk", [3, None])
@pytest.mark.parametrize("t", [0.01, 0.1])
@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", list(LOW_LOSSES))
def test_low_precision_close_to_float64(
    name: str, dtype: torch.dtype, t: float, chunk: int | None
) -> None:
    """bf16/fp16 inputs: finite value (no overflow at t=0.01: logits up to 100) within rtol 2e-2 of
    the float64 reference evaluated on the same (rounded) inputs; finite gradients."""
    factory, reference = LOW_LOSSES[name]
    x = low_precision_views(dtype).requires_grad_(True)
    loss = factory(t, chunk)
    out = loss(x, LOW_LABELS) if name.startswith("supcon") else loss(x)
    assert torch.isfinite(out)
    expected = reference(x.detach().double(), t)
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=5e-3)
    (g,) = torch.autograd.grad(out, x)
    assert g.dtype == dtype and torch.isfinite(g).all()


@pytest.mark.parametrize("t", [0.01, 0.1])
@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
def test_low_precision_clip_close_to_float64(dtype: torch.dtype, t: float) -> None:
    x = low_precision_views(dtype)
    img, txt = x[:, 0].clone().requires_grad_(True), x[:, 1].clone().requires_grad_(True)
    loss = CLIPLoss(init_temperature=t)
    out = loss(img, txt)
    assert torch.isfinite(out)
    sigma = loss.scale().detach().double()
    expected = ref.clip_ref(img.detach().double(), txt.detach().double(), sigma)
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=5e-3)
    g = torch.autograd.grad(out, (img, txt))
    assert all(torch.isfinite(gi).all() for gi in g)


@pytest.mark.parametrize("t", [0.01, 0.1])
@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ["ntxent", "supcon_out", "clip"])
def test_low_precision_cross_entropy_terms_are_nonnegative(
    name: str, dtype: torch.dtype, t: float
) -> None:
    """NT-Xent / SupCon terms and CLIP's cross-entropies are -log of probabilities: >= 0 in exact
    arithmetic, and a consistent computation (positive logit and log-partition from the same rounded
    logits) keeps them >= 0 up to float32 rounding."""
    x = low_precision_views(dtype)
    if name == "ntxent":
        terms = InfoNCE(temperature=t, reduction="none")(x)
    elif name == "supcon_out":
        terms = SupCon(temperature=t, reduction="none")(x, LOW_LABELS)
    else:
        terms = CLIPLoss(init_temperature=t, reduction="none")(x[:, 0], x[:, 1])
    worst = float(terms.detach().min())
    assert worst >= -1e-4, f"negative {name} term {worst}"
