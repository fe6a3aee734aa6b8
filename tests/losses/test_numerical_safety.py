"""Numerical safety of the losses (issue 14, items 2 and 6).

- Stateful losses (SogCLR, iSogCLR, their bimodal forms) keep their state finite and exact at
  temperatures down to 0.005, in float32 and bfloat16, on collapsed, random and adversarial batches
  over many steps: checked step by step against the float64 dense references of
  ``test_zoo_global.py`` (which can hold ``e^{200}``).
- Every loss refuses a batch of zero rows with one clear error naming the loss and the argument.
- Terms that are >= 0 in exact arithmetic (InfoNCE / SupCon / CLIP cross-entropies, KL) are >= 0
  in float32 too, with the gradient of the unclamped computation.
- ``CLIPLoss`` / ``CLIPRocketLoss`` refuse an initial temperature that the logit-scale clamp would
  silently change.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from contrastkit.losses import (
    MILNCE,
    AVGInfoNCE,
    BilinearInfoNCE,
    BinaryNCE,
    CLIPLoss,
    CLIPRocketLoss,
    HardInfoNCE,
    InfoNCE,
    ISogCLR,
    ISogCLRBimodal,
    JointEntropy,
    ListwiseKL,
    ListwiseWasserstein1D,
    MoCoLoss,
    MVInfoNCE,
    NeighbourhoodContrast,
    PatchSelectionInfoNCE,
    PWEInfoNCE,
    SogCLR,
    SogCLRBimodal,
    SupCon,
    SupReMix,
)

F64 = torch.float64
BF16 = torch.bfloat16


def _load(module: str, file: str) -> Any:
    if module not in sys.modules:
        spec = importlib.util.spec_from_file_location(module, Path(__file__).with_name(file))
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        spec.loader.exec_module(mod)
    return sys.modules[module]


zoo = _load("contrastkit_tests_losses_zoo_global", "test_zoo_global.py")


# --------------------------------------------------------------------------------------------------
# Batches: collapsed, random and adversarial
# --------------------------------------------------------------------------------------------------


def unimodal_batch(kind: str, n: int, d: int, seed: int) -> Tensor:
    """``(n, 2, d)`` float64 views of one of the hostile kinds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d, generator=g, dtype=F64)
    if kind == "collapsed":  # every row the same point: all similarities 1
        return x.expand(n, 2, d).clone()
    if kind == "random":
        return torch.randn(n, 2, d, generator=g, dtype=F64)
    if kind == "antipodal":  # instances alternate between x and -x: negatives at +1 and -1
        sign = torch.tensor([(-1.0) ** i for i in range(n)], dtype=F64)
        return (sign[:, None, None] * x).expand(n, 2, d).clone()
    if kind == "far":  # n = 2: each anchor's negatives all at -1 (u hits its eps clamp)
        return torch.stack([x, -x]).unsqueeze(1).expand(2, 2, d).clone()
    if kind == "hard":  # views 0 all at x, views 1 orthogonal: negatives closer than positives
        y = torch.randn(d, generator=g, dtype=F64)
        y = y - (y @ x) / (x @ x) * x
        return torch.stack([x.expand(n, d), y.expand(n, d)], dim=1).clone()
    if kind == "converged":  # tight positive pairs, spread instances
        c = torch.randn(n, 1, d, generator=g, dtype=F64)
        return c + 1e-3 * torch.randn(n, 2, d, generator=g, dtype=F64)
    raise AssertionError(kind)


KINDS = ("collapsed", "random", "antipodal", "hard", "converged", "collapsed", "random", "far")


def _schedule(n_data: int, steps: int, seed: int) -> list[tuple[str, Tensor]]:
    """Batches over a small dataset, every sample revisited many times, kinds interleaved."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for step in range(steps):
        kind = KINDS[step % len(KINDS)]
        n = 2 if kind == "far" else 6
        out.append((kind, torch.randperm(n_data, generator=g)[:n]))
    return out


def _close_rel(got: Tensor, want: Tensor, rtol: float, what: str, floor: float = 0.0) -> None:
    """``got`` within ``rtol`` of ``want``, relative to the largest entry of ``want`` (or to
    ``floor``, the float32 rounding level, where every entry of ``want`` is below it)."""
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(
        got.double(),
        want,
        rtol=rtol,
        atol=rtol * max(scale, floor, 1e-12),
        msg=lambda m: f"{what}: {m}",
    )


# Gradients of these surrogates are O(0.1); float32 rounding of logits up to 1/tau = 200 leaves
# noise of a few 1e-9 where the exact gradient is 0 (collapsed and antipodal batches).
GRAD_FLOOR = 1e-3


# --------------------------------------------------------------------------------------------------
# Item 2: stateful losses at small temperatures
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("tau", [0.01, 0.005])
@pytest.mark.parametrize("learn", [False, True], ids=["sogclr", "isogclr"])
def test_unimodal_state_finite_and_exact_at_small_temperature(
    learn: bool, tau: float, dtype: torch.dtype
) -> None:
    """SogCLR / iSogCLR (tau_min = 0.005) over 24 hostile steps: finite values, gradients and
    state, each step equal to the float64 dense reference (u up to e^{200}, so no clamp anywhere but
    the documented eps). With ``log u`` finite and exact, the negatives' weight ``g / u`` is the
    reference's, > 0 (it was 0 for good once u had overflowed to inf)."""
    n_data, steps = 10, 24
    kw: dict[str, Any] = dict(rho=0.3, eta=0.05, beta=0.7, tau_min=0.005, tau_max=0.7, eps=1e-8)
    ref = zoo.DenseUnimodal(n_data, tau, 0.9, learn=learn, **kw)
    loss: SogCLR
    if learn:
        loss = ISogCLR(num_samples=n_data, temperature=tau, gamma=0.9, **kw)
    else:
        loss = SogCLR(num_samples=n_data, temperature=tau, gamma=0.9, eps=1e-8)
        ref.rho = 0.0
    for step, (kind, idx) in enumerate(_schedule(n_data, steps, seed=int(1000 * tau))):
        # Each step from the loss's own state: at tau = 0.005 a float32 rounding of 1e-5 in a
        # logit of 200 compounds over steps through the learned temperatures, so the state is
        # compared one step at a time.
        ref.u = loss.log_u().exp()  # float64 holds e^{200}
        if isinstance(loss, ISogCLR):
            ref.tau, ref.m = loss.tau.double().clone(), loss.tau_momentum.double().clone()
        x = unimodal_batch(kind, len(idx), 8, seed=step).to(dtype).requires_grad_(True)
        value = loss(x, idx)
        (grad,) = torch.autograd.grad(value, x)
        x_ref = x.detach().double().requires_grad_(True)
        value_ref, objective_ref = ref.step(x_ref, idx)
        (grad_ref,) = torch.autograd.grad(value_ref, x_ref)
        where = f"step {step} ({kind})"
        assert torch.isfinite(value) and torch.isfinite(grad).all(), where
        assert torch.isfinite(loss.u).all() and torch.isfinite(loss.u_log_scale).all(), where
        visited = ref.u > 0
        _close_rel(loss.log_u()[visited], torch.log(ref.u[visited]), 1e-4, f"log u, {where}", 1.0)
        assert torch.equal(loss.u == 0, ~visited), where
        _close_rel(grad, grad_ref, 2e-3, f"gradient, {where}", GRAD_FLOOR)
        torch.testing.assert_close(
            loss.objective().double(), objective_ref, rtol=1e-4, atol=1e-4, msg=where
        )
        if isinstance(loss, ISogCLR):
            assert torch.isfinite(loss.tau).all() and torch.isfinite(loss.tau_momentum).all()
            # grad tau = log u + rho - E_p[s] / tau holds two terms of size 1/tau = 200 that
            # cancel: float32 rounding (1e-7 relative in p and s) leaves an error of a few 1e-3
            # in it, so tau is compared to eta * beta * 0.02
            torch.testing.assert_close(
                loss.tau.double(), ref.tau, rtol=0, atol=kw["eta"] * kw["beta"] * 0.02, msg=where
            )


def test_sogclr_collapsed_batch_regression() -> None:
    """The case of the issue: SogCLR(num_samples=8, temperature=0.01) on collapsed embeddings gave
    NaN and u = inf, and every later batch a zero weight for the negatives."""
    loss = SogCLR(num_samples=8, temperature=0.01)
    idx = torch.arange(8)
    value = loss(unimodal_batch("collapsed", 8, 16, seed=0).float(), idx)
    assert torch.isfinite(value)
    assert torch.isfinite(loss.u).all() and (loss.u > 0).all()
    torch.testing.assert_close(loss.log_u(), torch.full((8,), 100.0, dtype=F64), rtol=1e-6, atol=0)
    # the next, spread batch: u_i is e^{100} (it decays with gamma), the weight g/u is tiny but > 0
    x = unimodal_batch("random", 8, 16, seed=1).float().requires_grad_(True)
    value = loss(x, idx)
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_isogclr_low_tau_min_random_batches_stay_finite() -> None:
    """ISogCLR with tau_min = 0.005 on random batches gave NaN within three steps."""
    loss = ISogCLR(num_samples=64, temperature=0.01, tau_min=0.005)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        value = loss(torch.randn(32, 2, 16, generator=g), torch.arange(32))
        assert torch.isfinite(value)
    assert torch.isfinite(loss.u).all() and torch.isfinite(loss.tau).all()
    assert float(loss.tau.min()) == pytest.approx(0.005)  # the bound binds: the case that broke


def pair_batch(kind: str, n: int, d: int, seed: int) -> tuple[Tensor, Tensor]:
    x = unimodal_batch("far" if kind == "far" else kind, n, d, seed)
    return x[:, 0].clone(), x[:, 1].clone()


@pytest.mark.parametrize("dtype", [torch.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("learn", [False, True], ids=["sogclr_bimodal", "isogclr_bimodal"])
def test_bimodal_state_finite_and_exact_at_small_temperature(
    learn: bool, dtype: torch.dtype
) -> None:
    """The bimodal losses (running-max shift) at tau = 0.005 over 24 hostile steps."""
    n_data, steps, tau = 10, 24, 0.005
    kw: dict[str, Any] = dict(rho=6.0, eta=0.01, beta=0.9, tau_min=0.005, tau_max=0.05, eps=1e-20)
    ref = zoo.DenseBimodal(n_data, tau, 0.9, learn=learn, **kw)
    loss: SogCLRBimodal
    if learn:
        loss = ISogCLRBimodal(num_samples=n_data, temperature=tau, gamma=0.9, **kw)
    else:
        loss = SogCLRBimodal(num_samples=n_data, temperature=tau, gamma=0.9, eps=1e-20)
    for step, (kind, idx) in enumerate(_schedule(n_data, steps, seed=5)):
        for side, st in ref.state.items():  # each step from the loss's state (see above)
            for key, buf in (("u", "u_"), ("b", "b_"), ("tau", "tau_"), ("m", "tau_momentum_")):
                if hasattr(loss, buf + side):
                    st[key] = getattr(loss, buf + side).double().clone()
        img, txt = (t.to(dtype).requires_grad_(True) for t in pair_batch(kind, len(idx), 8, step))
        value = loss(img, txt, idx)
        grads = torch.autograd.grad(value, (img, txt))
        img_r, txt_r = (t.detach().double().requires_grad_(True) for t in (img, txt))
        value_ref, _ = ref.step(img_r, txt_r, idx)
        grads_ref = torch.autograd.grad(value_ref, (img_r, txt_r))
        where = f"step {step} ({kind})"
        assert torch.isfinite(value), where
        for gr, gr_ref in zip(grads, grads_ref, strict=True):
            assert torch.isfinite(gr).all(), where
            _close_rel(gr, gr_ref, 2e-3, f"gradient, {where}", GRAD_FLOOR)
        for side in ("image", "text"):
            u, b = getattr(loss, f"u_{side}"), getattr(loss, f"b_{side}")
            assert torch.isfinite(u).all() and torch.isfinite(b).all(), where
            st = ref.state[side]
            seen = st["u"] > 0
            _close_rel(
                torch.log(u.double()[seen]) + b.double()[seen],
                torch.log(st["u"][seen]) + st["b"][seen],
                1e-4,
                f"log u_{side}, {where}",
                1.0,
            )
            if learn:  # as in the unimodal test: the temperature gradient cancels terms of 1/tau
                torch.testing.assert_close(
                    getattr(loss, f"tau_{side}").double(),
                    st["tau"],
                    rtol=0,
                    atol=kw["eta"] * kw["beta"] * 0.02,
                    msg=where,
                )


def test_old_state_dict_without_log_scale_loads() -> None:
    """A SogCLR state dict written before ``u_log_scale`` existed holds the plain average in u."""
    loss = ISogCLR(num_samples=6)
    loss(torch.randn(4, 2, 8), torch.arange(4))
    old = {k: v for k, v in loss.state_dict().items() if k != "u_log_scale"}
    other = ISogCLR(num_samples=6)
    other.load_state_dict(old)
    assert torch.equal(other.u, loss.u) and (other.u_log_scale == 0).all()


def test_corrupt_state_is_refused_clearly() -> None:
    """A state poisoned before this fix (u = inf) is refused, not silently used."""
    loss = SogCLR(num_samples=6)
    loss.u[2] = float("inf")
    with pytest.raises(ValueError, match=r"state u .*invalid"):
        loss(torch.randn(4, 2, 8), torch.arange(4))
    loss(torch.randn(2, 2, 8), torch.tensor([0, 1]))  # other samples still train


# --------------------------------------------------------------------------------------------------
# Item 6: zero rows
# --------------------------------------------------------------------------------------------------


def _zero_row_cases() -> list[Any]:
    e = torch.zeros(0, 4)

    cases: dict[str, tuple[Callable[[], Tensor], str]] = {
        "clip": (lambda: CLIPLoss()(e, e), "image"),
        "cliprocket": (lambda: CLIPRocketLoss()(e, e), "image"),
        "moco": (lambda: MoCoLoss()(e, e, torch.randn(5, 4)), "query"),
        "milnce": (lambda: MILNCE()(e, torch.zeros(0, 2, 4)), "video"),
        "bilinear_nce": (lambda: BilinearInfoNCE(dim=4)(e, e), "pred"),
        "binary_nce": (lambda: BinaryNCE()(torch.zeros(0), torch.zeros(0, 3)), "positive"),
        "listwise_kl": (lambda: ListwiseKL()(torch.zeros(0, 3), torch.zeros(0, 3)), "scores"),
        "listwise_w1": (
            lambda: ListwiseWasserstein1D()(torch.zeros(0, 3), torch.zeros(0, 3)),
            "scores",
        ),
        "patch_nce": (
            lambda: PatchSelectionInfoNCE()(torch.zeros(0, 3, 4), torch.zeros(0, 3, 4)),
            "query",
        ),
        "joint_entropy": (lambda: JointEntropy()(e, torch.zeros(0, 3)), "common"),
        "scgc": (lambda: NeighbourhoodContrast()(e, torch.zeros(0, 0)), "z"),
        "sogclr_bimodal": (lambda: SogCLRBimodal(num_samples=4)(e, e, None), "image"),
        "ntxent": (lambda: InfoNCE()(torch.zeros(0, 2, 4)), "views"),
    }
    return [pytest.param(f, arg, id=name) for name, (f, arg) in cases.items()]


@pytest.mark.parametrize(("call", "argument"), _zero_row_cases())
def test_zero_rows_one_clear_error(call: Callable[[], Tensor], argument: str) -> None:
    """No NaN from a mean over nothing and no error from deep inside: a ValueError that names the
    argument and asks for at least one (or two) rows."""
    with pytest.raises(ValueError, match=r"(needs at least \d \w+ in|must have N >= \d).*") as err:
        call()
    assert argument in str(err.value)
    assert re.search(r"got [A-Z] = 0|got shape \(0,", str(err.value)), str(err.value)


def test_patch_nce_zero_positions_refused() -> None:
    with pytest.raises(ValueError, match=r"PatchSelectionInfoNCE needs at least 1 position"):
        PatchSelectionInfoNCE()(torch.zeros(2, 0, 4), torch.zeros(2, 0, 4))


# --------------------------------------------------------------------------------------------------
# Item 6: non-negative terms stay non-negative
# --------------------------------------------------------------------------------------------------


def _converged(seed: int, n: int = 16, d: int = 32) -> Tensor:
    """float32 views of a converged model: tight positive pairs, spread instances."""
    return unimodal_batch("converged", n, d, seed).float()


NONNEGATIVE: dict[str, Callable[[Tensor], Tensor]] = {
    "ntxent": lambda x: InfoNCE(temperature=0.01, reduction="none")(x),
    "ntxent_chunked": lambda x: InfoNCE(temperature=0.01, reduction="none", chunk_size=3)(x),
    "hard_infonce": lambda x: HardInfoNCE(temperature=0.01, topk_negatives=3, reduction="none")(x),
    "ntxent_queue": lambda x: InfoNCE(temperature=0.01, reduction="none")(
        x, negatives=torch.randn(8, x.shape[2])
    ),
    "supcon": lambda x: SupCon(temperature=0.01, reduction="none")(x, torch.arange(x.shape[0])),
    "supcon_in": lambda x: SupCon(temperature=0.01, variant="in", reduction="none")(
        x, torch.arange(x.shape[0])
    ),
    "mvinfonce": lambda x: MVInfoNCE(temperature=0.01, reduction="none")(x),
    "pwe": lambda x: PWEInfoNCE(temperature=0.01, reduction="none")(x),
    "avg": lambda x: AVGInfoNCE(temperature=0.01, reduction="none")(x),
    "clip": lambda x: CLIPLoss(init_temperature=0.01, reduction="none")(x[:, 0], x[:, 1]),
    "clip_smoothed": lambda x: CLIPLoss(
        init_temperature=0.01, label_smoothing=0.1, reduction="none"
    )(x[:, 0], x[:, 1]),
    "cliprocket": lambda x: CLIPRocketLoss(init_temperature=0.01, reduction="none")(
        x[:, 0], x[:, 1]
    ),
    "moco": lambda x: MoCoLoss(temperature=0.01, reduction="none")(
        x[:, 0], x[:, 1], -x[:, 0] + 0.0
    ),
    "milnce": lambda x: MILNCE(temperature=0.01, reduction="none")(x[:, 0], x[:, 1:]),
    "bilinear_nce": lambda x: BilinearInfoNCE(dim=x.shape[2], reduction="none")(
        100 * x[:, 0], 100 * x[:, 1]
    ),
    "patch_nce": lambda x: PatchSelectionInfoNCE(
        temperature=0.01, normalize=True, cross_image=True, reduction="none"
    )(x[:, :1], x[:, 1:]),
    "supremix": lambda x: SupReMix(temperature=0.01, n_mix_pos=0, reduction="none")(
        x, torch.arange(x.shape[0], dtype=F64)
    ),
    "listwise_kl": lambda x: ListwiseKL(reduction="none")(  # predicted = target: KL 0
        30 * x[:, 0, :8].abs(), 30 * x[:, 0, :8].detach().abs()
    ),
}


@pytest.mark.parametrize("name", list(NONNEGATIVE))
def test_nonnegative_terms_stay_nonnegative_in_float32(name: str) -> None:
    """-log of a probability (or a KL divergence) is >= 0 exactly; at temperature 0.01 near
    convergence, float32 rounding of the log-partition gave terms down to -3.8e-5. Now >= 0,
    and the gradient is the one of the unclamped computation (finite, not zeroed)."""
    torch.manual_seed(0)
    worst = math.inf
    for seed in range(6):
        x = _converged(seed).requires_grad_(True)
        terms = NONNEGATIVE[name](x)
        worst = min(worst, float(terms.detach().min()))
        (grad,) = torch.autograd.grad(terms.sum(), x)
        assert torch.isfinite(grad).all()
    assert worst >= 0.0, f"{name}: term {worst} < 0"


def test_nonnegative_keeps_the_gradient() -> None:
    """The clamp of rounding error is straight through: same gradient as the raw terms."""
    from contrastkit.losses._common import nonnegative

    x = torch.tensor([-1e-6, 0.0, 2.0], requires_grad=True)
    y = nonnegative(3 * x)
    assert y.tolist() == [0.0, 0.0, 6.0]
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.tolist() == [3.0, 3.0, 3.0]


# --------------------------------------------------------------------------------------------------
# Item 6: CLIP's initial temperature outside the clamp
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [CLIPLoss, CLIPRocketLoss])
@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"init_temperature": 2.0}, "init_temperature"),
        ({"init_temperature": 0.001}, "init_temperature"),
        ({"init_temperature": 0.02, "max_logit_scale": 10.0}, "init_temperature"),
        ({"local_init_temperature": 1.5}, "local_init_temperature"),
    ],
)
def test_clip_initial_temperature_outside_the_clamp_is_refused(
    cls: type[nn.Module], kwargs: dict[str, float], arg: str
) -> None:
    """``init_temperature=2.0`` was silently clamped to 1: a value that can never be used is a
    ValueError naming the valid range, ``[1 / max_logit_scale, 1]``."""
    if arg == "local_init_temperature" and cls is CLIPLoss:
        pytest.skip("CLIPLoss has no local scale")
    with pytest.raises(ValueError, match=rf"{arg} must lie in \[.*, 1\]"):
        cls(**kwargs)


@pytest.mark.parametrize("t", [0.01, 0.07, 1.0])
def test_clip_initial_temperature_at_the_bounds_is_used_as_given(t: float) -> None:
    loss = CLIPLoss(init_temperature=t)
    torch.testing.assert_close(float(loss.scale().detach()), 1.0 / t, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------------------
# Found by the fuzz suite: tied hard negatives and chunk_size
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_hard_negatives_tied_copies_same_gradient_for_any_chunk(chunk: int) -> None:
    """Identical views make every negative appear V times: torch.topk picked a different copy of
    a tied negative for a different block shape (same value, gradient on another row). The
    selection is now a stable sort per row: the gradient does not depend on ``chunk_size``."""
    for seed in (25, 30, 31, 90):  # seeds whose top-10 cut a group of tied copies differently
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(7, 1, 5, generator=g, dtype=F64).expand(7, 3, 5).clone()
        grads = []
        for c in (None, chunk):
            xx = x.clone().requires_grad_(True)
            HardInfoNCE(temperature=0.023, topk_negatives=10, chunk_size=c)(xx).backward()
            grads.append(xx.grad)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-11)
