"""Values and gradients of every loss against the dense float64 references of ``reference.py``.

The references are written from docs/methods.md only (normalise, full similarity matrix, masks,
log_softmax); the library computes blockwise with group sums. Both run in float64, so they must
agree to rounding.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
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
RTOL, ATOL = 1e-9, 1e-11

SHAPES = [(n, v, d) for n in (1, 2, 5, 17) for v in (2, 3, 4) for d in (3, 16)]
TEMPS = (0.05, 0.1, 0.5, 1.0)
LABEL_KINDS = ("none", "classes")


def make_views(n: int, v: int, d: int, seed: int = 0, dtype: torch.dtype = F64) -> Tensor:
    """Views with structure: each instance a random centre, its views the centre plus noise."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    x = centre + 0.6 * torch.randn(n, v, d, generator=g, dtype=F64)
    return x.to(dtype).requires_grad_(True)


def make_labels(n: int, seed: int = 0) -> Tensor:
    """Integer labels with repeated classes, at least one singleton class and non-contiguous ids."""
    if n == 1:
        return torch.tensor([7])
    g = torch.Generator().manual_seed(1000 + seed)
    lab = torch.randint(0, max(1, n // 3), (n,), generator=g)
    lab[-1] = 1000  # a singleton class with a large, non-contiguous id
    if n >= 4:
        lab[0] = -3  # another singleton, negative id (any integer is a valid label)
    return lab


def nondividing_chunk(rows: int) -> int:
    """Smallest chunk size >= 2 that does not divide ``rows`` (rows >= 3), else rows + 1."""
    for c in range(2, rows):
        if rows % c:
            return c
    return rows + 1


# --------------------------------------------------------------------------------------------------
# Loss table: how to build the library loss and its reference
# --------------------------------------------------------------------------------------------------

# name -> (factory(t, reduction, chunk), reference(views, labels, t, reduction), accepts labels,
#          needs labels, min N)
LossSpec = tuple[
    Callable[[float, str, int | None], torch.nn.Module],
    Callable[[Tensor, Tensor | None, float, str], Tensor],
    bool,
    bool,
    int,
]

BASE_T = 0.07

LOSSES: dict[str, LossSpec] = {
    "ntxent": (
        lambda t, r, c: InfoNCE(temperature=t, reduction=r, chunk_size=c),
        lambda x, lab, t, r: ref.ntxent_ref(x, lab, t, reduction=r),
        True,
        False,
        1,
    ),
    "supcon_out": (
        lambda t, r, c: SupCon(temperature=t, base_temperature=BASE_T, reduction=r, chunk_size=c),
        lambda x, lab, t, r: ref.supcon_ref(x, lab, t, BASE_T, "out", "zero", reduction=r),
        True,
        True,
        1,
    ),
    "supcon_in": (
        lambda t, r, c: SupCon(
            temperature=t, base_temperature=BASE_T, variant="in", reduction=r, chunk_size=c
        ),
        lambda x, lab, t, r: ref.supcon_ref(x, lab, t, BASE_T, "in", "zero", reduction=r),
        True,
        True,
        1,
    ),
    "dcl": (
        lambda t, r, c: DCL(temperature=t, reduction=r, chunk_size=c),
        lambda x, lab, t, r: ref.dcl_ref(x, t, lab, reduction=r),
        True,
        False,
        2,
    ),
    "dclw": (
        lambda t, r, c: DCLW(temperature=t, sigma=0.5, reduction=r, chunk_size=c),
        lambda x, lab, t, r: ref.dclw_ref(x, t, 0.5, True, reduction=r),
        False,
        False,
        2,
    ),
    "dclw_nodetach": (
        lambda t, r, c: DCLW(
            temperature=t, sigma=0.5, detach_weights=False, reduction=r, chunk_size=c
        ),
        lambda x, lab, t, r: ref.dclw_ref(x, t, 0.5, False, reduction=r),
        False,
        False,
        2,
    ),
}


def labels_for(name: str, kind: str, n: int) -> Tensor | None:
    _, _, accepts, needs, _ = LOSSES[name]
    if kind == "classes":
        if not accepts:
            pytest.skip(f"{name} takes no labels")
        return make_labels(n)
    if needs:
        return torch.arange(n)  # instance ids: the unsupervised structure
    return None


def check_against_reference(
    name: str,
    x: Tensor,
    labels: Tensor | None,
    t: float,
    reduction: str,
    chunk: int | None,
    seed: int = 0,
) -> None:
    factory, reference, _, _, _ = LOSSES[name]
    loss = factory(t, reduction, chunk)
    out = loss(x, labels) if labels is not None else loss(x)
    expected = reference(x, labels, t, reduction)
    n, v, _ = x.shape
    if reduction == "none":
        assert out.shape == (n, v)
    else:
        assert out.shape == ()
    assert out.dtype == F64
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    # gradients: contract the output with fixed random weights so every output entry is checked
    w = torch.rand(out.shape, generator=torch.Generator().manual_seed(seed + 7), dtype=F64) + 0.5
    (g_lib,) = torch.autograd.grad((out * w).sum(), x)
    (g_ref,) = torch.autograd.grad((expected * w).sum(), x)
    assert torch.isfinite(g_lib).all()
    torch.testing.assert_close(g_lib, g_ref, rtol=1e-8, atol=1e-10)


def _cases(shapes: list[tuple[int, int, int]], temps: tuple[float, ...]) -> list[Any]:
    """Valid (name, n, v, d, t, label_kind) combinations: DCL-type losses need N >= 2 (a negative
    for every anchor), DCLW takes no labels."""
    out = []
    for name, (_, _, accepts, _, min_n) in LOSSES.items():
        for n, v, d in shapes:
            for t in temps:
                for kind in LABEL_KINDS:
                    if n < min_n or (kind == "classes" and not accepts):
                        continue
                    out.append(
                        pytest.param(name, n, v, d, t, kind, id=f"{name}-{n}x{v}x{d}-t{t}-{kind}")
                    )
    return out


# every shape at the default-like temperature, every temperature on a few shapes
VALUE_CASES = _cases(SHAPES, (0.1,)) + _cases([(2, 2, 3), (5, 3, 16), (17, 4, 3)], (0.05, 0.5, 1.0))


@pytest.mark.parametrize(("name", "n", "v", "d", "t", "label_kind"), VALUE_CASES)
def test_value_and_grad_vs_reference(
    name: str, n: int, v: int, d: int, t: float, label_kind: str
) -> None:
    labels = labels_for(name, label_kind, n)
    x = make_views(n, v, d, seed=n * 100 + v * 10 + d)
    check_against_reference(name, x, labels, t, "mean", None)


CHUNK_CASES = [
    pytest.param(name, n, v, d, kind, id=f"{name}-{n}x{v}x{d}-{kind}")
    for name, n, v, d, _, kind in (
        c.values for c in _cases([(5, 2, 16), (4, 3, 3), (1, 3, 3)], (0.1,))
    )
]


@pytest.mark.parametrize("chunk", ["1", "3", "nondiv", "None", "huge"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "n", "v", "d", "label_kind"), CHUNK_CASES)
def test_reductions_and_chunks_vs_reference(
    name: str, n: int, v: int, d: int, label_kind: str, reduction: str, chunk: str
) -> None:
    labels = labels_for(name, label_kind, n)
    rows = v * n
    chunk_size = {"1": 1, "3": 3, "nondiv": nondividing_chunk(rows), "None": None, "huge": 10_000}[
        chunk
    ]
    x = make_views(n, v, d, seed=3 * n + v + d)
    check_against_reference(name, x, labels, 0.1, reduction, chunk_size, seed=n)


def test_large_batch_chunked_vs_reference() -> None:
    """Several blocks of a chunk that does not divide V*N, labels with singleton classes."""
    x = make_views(17, 3, 16, seed=99)
    labels = make_labels(17)
    for name in ("ntxent", "supcon_in", "dcl"):
        check_against_reference(name, x, labels, 0.05, "none", 7)
    check_against_reference("dclw_nodetach", x, None, 0.05, "none", 7)


@pytest.mark.parametrize("chunk", [1, 2, 3, None])
@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("without", ["zero", "drop"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_supcon_single_view_vs_reference(
    variant: str, without: str, reduction: str, chunk: int | None
) -> None:
    """V = 1 with labels: some anchors have positives, singleton classes have none."""
    x = make_views(7, 1, 5, seed=11)
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 9])  # classes 2 and 9 are singletons
    t = 0.2
    loss = SupCon(
        temperature=t,
        base_temperature=0.1,
        variant=variant,
        anchors_without_positives=without,
        reduction=reduction,
        chunk_size=chunk,
    )
    out = loss(x, labels)
    expected = ref.supcon_ref(x, labels, t, 0.1, variant, without, reduction=reduction)
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    w = torch.rand(out.shape, generator=torch.Generator().manual_seed(5), dtype=F64) + 0.5
    (g_lib,) = torch.autograd.grad((out * w).sum(), x)
    (g_ref,) = torch.autograd.grad((expected * w).sum(), x)
    torch.testing.assert_close(g_lib, g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["ntxent", "dcl"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_single_view_with_labels_vs_reference(name: str, reduction: str) -> None:
    """InfoNCE and DCL accept V = 1 when labels define the positives."""
    x = make_views(6, 1, 4, seed=12)
    labels = torch.tensor([3, 3, 5, 5, 5, 8])  # 8 is a singleton: no positive, term 0
    check_against_reference(name, x, labels, 0.3, reduction, 2)


# --------------------------------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------------------------------


def make_pair(n: int, d: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=g, dtype=F64)
    txt = img + 0.8 * torch.randn(n, d, generator=g, dtype=F64)
    return img.requires_grad_(True), txt.requires_grad_(True)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize("d", [3, 16])
@pytest.mark.parametrize("n", [1, 2, 5, 17])
def test_clip_value_and_grad_vs_reference(n: int, d: int, t: float, smoothing: float) -> None:
    img, txt = make_pair(n, d, seed=n + d)
    loss = CLIPLoss(init_temperature=t, label_smoothing=smoothing).double()
    out = loss(img, txt)
    # theta is initialised as log(1/t) (in the module's default dtype, float32, then cast): the
    # effective scale is 1/t to float32 precision; the reference uses the exact scale the module
    # holds.
    sigma = loss.logit_scale.detach().exp().clone().requires_grad_(True)
    assert float(sigma.detach()) == pytest.approx(1.0 / t, rel=1e-6)
    expected = ref.clip_ref(img, txt, sigma, smoothing)
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    g_lib = torch.autograd.grad(out, (img, txt, loss.logit_scale))
    g_ref = torch.autograd.grad(expected, (img, txt, sigma))
    torch.testing.assert_close(g_lib[0], g_ref[0], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(g_lib[1], g_ref[1], rtol=1e-8, atol=1e-10)
    # d/dtheta = d/dsigma * sigma   (sigma = exp(theta))
    torch.testing.assert_close(g_lib[2], g_ref[2] * sigma.detach(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 3, 4, None, 10_000])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("n", [5, 17])
def test_clip_reductions_and_chunks_vs_reference(n: int, reduction: str, chunk: int | None) -> None:
    img, txt = make_pair(n, 16, seed=n)
    loss = CLIPLoss(
        init_temperature=0.1, label_smoothing=0.1, reduction=reduction, chunk_size=chunk
    )
    out = loss(img, txt)
    sigma = loss.scale().detach().double()  # float32 module: sigma = exp(theta) rounded to float32
    expected = ref.clip_ref(img, txt, sigma, 0.1, reduction=reduction)
    assert out.shape == ((n,) if reduction == "none" else ())
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    w = torch.rand(out.shape, generator=torch.Generator().manual_seed(3), dtype=F64) + 0.5
    g_lib = torch.autograd.grad((out * w).sum(), (img, txt))
    g_ref = torch.autograd.grad((expected * w).sum(), (img, txt))
    for a, b in zip(g_lib, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------------------------------
# gradcheck: finite differences against the library's own (custom) backward
# --------------------------------------------------------------------------------------------------

GRADCHECK_CASES = [
    ("ntxent", None),
    ("ntxent", "classes"),
    ("supcon_out", "classes"),
    ("supcon_in", "classes"),
    ("dcl", None),
    ("dcl", "classes"),
    # DCLW with detached weights is not the derivative of its own value (by design), so only the
    # non-detached variant can be checked by finite differences.
    ("dclw_nodetach", None),
]


@pytest.mark.parametrize("v", [2, 3])
@pytest.mark.parametrize(("name", "label_kind"), GRADCHECK_CASES)
def test_gradcheck(name: str, label_kind: str | None, v: int) -> None:
    n, d = 4, 3
    x = make_views(n, v, d, seed=21 + v)
    labels = torch.tensor([0, 1, 0, 2]) if label_kind == "classes" else None
    if labels is None and LOSSES[name][3]:
        labels = torch.arange(n)
    for reduction in ("mean", "none"):
        loss = LOSSES[name][0](0.3, reduction, 3)
        fn = (lambda z: loss(z, labels)) if labels is not None else (lambda z: loss(z))  # noqa: B023
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_clip() -> None:
    img, txt = make_pair(4, 3, seed=4)
    for reduction in ("mean", "none"):
        loss = CLIPLoss(
            init_temperature=0.3, label_smoothing=0.1, reduction=reduction, chunk_size=3
        )
        loss = loss.double()
        assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (img, txt), eps=1e-6, atol=1e-6)  # noqa: B023

    # and w.r.t. theta (the learnable log-scale), by central differences inside the clamp range
    loss = CLIPLoss(init_temperature=0.3, chunk_size=2).double()
    theta0, h = 1.5, 1e-6
    values = []
    for theta in (theta0 + h, theta0 - h):
        with torch.no_grad():
            loss.logit_scale.fill_(theta)
        values.append(float(loss(img.detach(), txt.detach()).detach()))
    with torch.no_grad():
        loss.logit_scale.fill_(theta0)
    (g,) = torch.autograd.grad(loss(img.detach(), txt.detach()), loss.logit_scale)
    assert float(g) == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6, abs=1e-8)
