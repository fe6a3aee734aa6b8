"""Property tests (hypothesis) over every registered loss, fed as its registry entry says.

Properties (DESIGN.md, "API conventions" and "Errors"):

- chunk-size invariance: a loss that takes ``chunk_size`` gives the same value, gradients and state
  (float64) for every chunk size as for one block holding everything;
- permutation equivariance of instances: permuting the N instances (with their labels, dataset indices,
  graph rows and columns) permutes the ``reduction="none"`` terms and leaves ``"mean"`` unchanged;
- finite values and gradients for valid float32 inputs (random shapes, temperatures, scales), also
  for degenerate batches (identical views, a duplicated instance);
- invalid input fails at the boundary with a ValueError/TypeError naming the argument: a temperature
  <= 0 (or NaN), a NaN/inf in an input tensor, a tensor of the wrong rank, labels/index of the wrong
  length.

Inputs come from the registry's metadata (``loss_info(name).input_kind``, ``needs_labels``,
``needs_index``, ``min_views``); a property is skipped only where it does not apply to a loss by
definition, with the reason in the test id's skip message.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from contrastkit.losses import get_loss, loss_info, loss_names

F64 = torch.float64
NAMES = loss_names()

# One settings object for the file: few, small examples (the whole file runs in seconds on one
# thread), no deadline (first calls pay for lazy initialisation), no example database written into
# the working tree, and no shrinking (the examples are already small; shrinking a failure of a
# 35-loss parametrisation can take minutes).
FAST = settings(
    max_examples=6,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Constructor arguments that act as a temperature (must be > 0).
TEMPERATURE_ARGS = (
    "temperature",
    "init_temperature",
    "local_init_temperature",
    "inverse_temperature",
    "base_temperature",
    "target_temperature",
    "tau",
    "tau_plus",
    "tau_minus",
    "t",
    "steepness",
)

# Losses defined for exactly two views.
EXACT_VIEWS = {"dhel": 2, "moco_v2": 2, "mochi": 2, "sogclr": 2, "isogclr": 2}

# Losses whose reduction="none" terms are not one per instance.
NOT_PER_INSTANCE = {"uniformity"}  # (V,): one value per view

# Losses that draw random numbers inside forward: the same draws are not tied to the same instances
# after a permutation, so equivariance does not apply (their chunk invariance is checked with a
# fixed seed).
RANDOM_INSIDE = {
    "supremix": "draws random mixtures per anchor in batch order",
    "mochi": "draws random hard-negative mixtures per query in batch order",
}


def _signature(name: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(loss_info(name).factory).parameters)


def _is_momentum(name: str) -> bool:
    return bool(getattr(loss_info(name), "momentum_encoder", False))


def _takes_chunk(name: str) -> bool:
    return "chunk_size" in _signature(name)


def _temperature_args(name: str) -> list[str]:
    sig = _signature(name)
    return [k for k in TEMPERATURE_ARGS if k in sig]


# --------------------------------------------------------------------------------------------------
# Building a loss and its inputs from the registry entry
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """A loss module, its positional inputs and how they follow a permutation of the instances."""

    loss: nn.Module
    args: list[Tensor]
    names: list[str]  # forward's parameter name of each positional input
    n: int
    permute: Callable[[list[Tensor], Tensor], list[Tensor]]
    seed: int = 0
    grad_args: list[int] = field(default_factory=list)

    def __call__(self, args: list[Tensor] | None = None) -> Tensor:
        # Losses that draw random numbers inside get the same draws on every call; the global
        # generator is restored afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            out: Tensor = self.loss(*(self.args if args is None else args))
        return out


def _first_dim(args: list[Tensor], perm: Tensor) -> list[Tensor]:
    return [a[perm] for a in args]


def _temperature_kwargs(name: str, t: float | None) -> dict[str, Any]:
    """Valid temperature arguments for ``t`` in (0, 1] (None: the loss's defaults)."""
    if t is None:
        return {}
    sig = _signature(name)
    kw: dict[str, Any] = {}
    if "temperature" in sig:
        kw["temperature"] = t
    if "init_temperature" in sig:
        kw["init_temperature"] = t
    if "local_init_temperature" in sig:
        kw["local_init_temperature"] = t
    if "inverse_temperature" in sig:
        kw["inverse_temperature"] = 1.0 / t
    if "tau" in sig:
        kw["tau"] = t
    if "tau_min" in sig and "tau_max" in sig:  # iSogCLR: the temperature lies within its bounds
        kw["tau_min"] = min(t, sig["tau_min"].default)
        kw["tau_max"] = max(t, sig["tau_max"].default)
    return kw


def build(
    name: str,
    *,
    n: int,
    v: int,
    d: int,
    seed: int,
    dtype: torch.dtype = F64,
    reduction: str = "mean",
    chunk_size: int | None = None,
    temperature: float | None = None,
    scale: float = 1.0,
    degenerate: str = "",
) -> Case:
    """The loss ``name`` and valid inputs of ``n`` instances, as its registry entry says it is fed.

    ``degenerate="views"`` makes every view (or both sides of a pair) of an instance identical;
    ``"instances"`` makes instance 1 a copy of instance 0 in every float input: valid, degenerate
    batches where distances and norms of differences are zero.
    """
    collapse = degenerate == "views"
    info = loss_info(name)
    sig = _signature(name)
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return scale * torch.randn(*shape, generator=g, dtype=dtype)

    kw: dict[str, Any] = {"reduction": reduction, **_temperature_kwargs(name, temperature)}
    if "chunk_size" in sig:
        kw["chunk_size"] = chunk_size
    if info.needs_index:
        kw["num_samples"] = n + 3
    if name == "bilinear_nce":
        kw["dim"] = d
    if name == "groco":
        kw["topk_negatives"] = 1
    if _is_momentum(name):
        kw["queue_size"] = 16
    if name == "mochi":
        kw.update(mix_hard=4, mix_pairs=3, mix_query=2)
    with torch.random.fork_rng(devices=[]):  # random parameters (bilinear critic, key queue)
        torch.manual_seed(seed)
        loss = get_loss(name, **kw)
        if _is_momentum(name):
            loss.attach(nn.Linear(d, d), d)  # type: ignore[operator]
    loss = loss.to(dtype)

    def views() -> Tensor:
        x = randn(n, v, d)
        if collapse:  # every view of an instance identical: a valid, degenerate batch
            x = x[:, :1].expand(n, v, d).clone()
        return x

    kind = info.input_kind
    fwd = [
        p.name
        for p in inspect.signature(loss.forward).parameters.values()
        if p.default is inspect.Parameter.empty
    ]  # the required inputs (regularisers are told apart by them)
    args: list[Tensor]
    permute = _first_dim
    if _is_momentum(name) or kind in ("views", "regression") or fwd == ["views"]:
        args = [views()]
        if info.needs_labels and kind == "regression":
            args.append(torch.rand(n, generator=g, dtype=dtype))
        elif info.needs_labels:
            args.append(torch.randint(0, max(1, n // 2), (n,), generator=g))
        if info.needs_index:
            args.append(torch.randperm(n + 3, generator=g)[:n])
    elif kind == "pair" or (kind == "regularizer" and len(fwd) == 2):  # two (N, D) inputs
        a = randn(n, d)
        b = a.clone() if collapse else randn(n, d)
        args = [a, b]
        if info.needs_index:
            args.append(torch.randperm(n + 3, generator=g)[:n])
    elif kind == "queue":
        q = randn(n, d)
        args = [q, q.clone() if collapse else randn(n, d), randn(n + 2, d)]

        def permute(args: list[Tensor], perm: Tensor) -> list[Tensor]:
            return [args[0][perm], args[1][perm], args[2]]  # the queue is not a batch axis

    elif kind == "graph":
        t = (torch.rand(n, n, generator=g) < 0.4).to(dtype)
        args = [randn(n, d), ((t + t.T) > 0).to(dtype)]

        def permute(args: list[Tensor], perm: Tensor) -> list[Tensor]:
            return [args[0][perm], args[1][perm][:, perm]]

    elif kind == "bag":
        args = [randn(n, d), randn(n, 3, d)]
    elif kind == "patches":
        args = [randn(n, 3, d), randn(n, 3, d)]
    elif kind == "scores":
        args = [randn(n), randn(n, 4)]
    elif kind == "list":
        args = [randn(n, 4), torch.rand(n, 4, generator=g, dtype=dtype)]
    elif fwd == ["embeddings"]:
        args = [randn(n, d)]
    else:  # a new kind of input: teach this test how to feed it
        raise AssertionError(f"no input builder for loss {name!r} (input_kind {kind!r})")
    if degenerate == "instances":
        for a in args:
            if a.is_floating_point() and a.dim() >= 1 and a.shape[0] == n:
                a[1] = a[0]
    names = list(inspect.signature(loss.forward).parameters)[: len(args)]
    targets = {("regression", "labels"), ("list", "relevance")}  # data, not embeddings
    grad_args = []
    for i, a in enumerate(args):
        if a.is_floating_point() and (kind, names[i]) not in targets:
            a.requires_grad_(True)
            grad_args.append(i)
    return Case(loss, args, names, n, permute, seed, grad_args)


def _grads(case: Case, out: Tensor) -> list[Tensor]:
    inputs = [case.args[i] for i in case.grad_args] + [
        p for p in case.loss.parameters() if p.requires_grad
    ]
    grads = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads, strict=True)]


def _close(a: Tensor, b: Tensor, what: str) -> None:
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"{what}: {m}")


def _shape_strategy(name: str) -> st.SearchStrategy[tuple[int, int, int]]:
    info = loss_info(name)
    lo_v = EXACT_VIEWS.get(name, info.min_views)
    hi_v = EXACT_VIEWS.get(name, 3)
    return st.tuples(st.integers(3, 7), st.integers(lo_v, max(lo_v, hi_v)), st.integers(2, 6))


def _param(name: str, skip: str | None) -> Any:
    marks = [pytest.mark.skip(reason=f"{name}: {skip}")] if skip else []
    return pytest.param(name, id=name, marks=marks)


def _chunk_params() -> list[Any]:
    return [
        _param(n, None if _takes_chunk(n) else "takes no chunk_size (no blockwise computation)")
        for n in NAMES
    ]


def _perm_params() -> list[Any]:
    return [_param(n, RANDOM_INSIDE.get(n)) for n in NAMES]


def _temperature_params() -> list[Any]:
    return [
        _param(n, None if _temperature_args(n) else "has no temperature-like argument")
        for n in NAMES
    ]


# --------------------------------------------------------------------------------------------------
# Chunk-size invariance
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _chunk_params())
@FAST
@given(shape=st.data(), seed=st.integers(0, 2**16), t=st.floats(0.05, 1.0))
def test_chunk_size_invariance(name: str, shape: st.DataObject, seed: int, t: float) -> None:
    """Any chunk size gives the value, gradients and state of one block holding every row."""
    n, v, d = shape.draw(_shape_strategy(name))
    rows = n * max(v, 3) + 3
    chunk = shape.draw(st.integers(1, rows), label="chunk_size")
    common: dict[str, Any] = {"n": n, "v": v, "d": d, "seed": seed, "temperature": t}
    ref = build(name, **common, reduction="none", chunk_size=10**6)  # one block: the dense path
    got = build(name, **common, reduction="none", chunk_size=chunk)
    out_ref, out_got = ref(), got()
    _close(out_got, out_ref, f"{name} value with chunk_size={chunk}")
    for gr_got, gr_ref in zip(_grads(got, out_got), _grads(ref, out_ref), strict=True):
        _close(gr_got, gr_ref, f"{name} gradient with chunk_size={chunk}")
    for (key, b_got), (_, b_ref) in zip(
        got.loss.named_buffers(), ref.loss.named_buffers(), strict=True
    ):
        _close(b_got, b_ref, f"{name} state {key} with chunk_size={chunk}")


# --------------------------------------------------------------------------------------------------
# Permutation equivariance of instances
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _perm_params())
@FAST
@given(shape=st.data(), seed=st.integers(0, 2**16), t=st.floats(0.05, 1.0))
def test_permutation_equivariance(name: str, shape: st.DataObject, seed: int, t: float) -> None:
    """Permuting the instances permutes the per-anchor terms; the mean does not change."""
    n, v, d = shape.draw(_shape_strategy(name))
    perm = torch.tensor(shape.draw(st.permutations(range(n)), label="perm"))
    case = build(name, n=n, v=v, d=d, seed=seed, temperature=t, reduction="none")
    fresh = copy.deepcopy(case.loss)  # same parameters and per-sample state for the permuted call
    out = case()
    permuted = Case(fresh, case.permute(case.args, perm), case.names, n, case.permute, seed)
    out_p = permuted()
    if name not in NOT_PER_INSTANCE:
        assert out.shape[0] == n, f"{name}: reduction='none' gave {tuple(out.shape)} for N = {n}"
        _close(out_p, out[perm], f"{name} per-instance terms under a permutation")
    else:  # terms that are not per instance (uniformity: one per view) do not move
        _close(out_p, out, f"{name} terms under a permutation")
    if loss_info(name).needs_index:  # per-sample state is keyed by dataset index, not batch order
        for (key, b), (_, b_p) in zip(
            case.loss.named_buffers(), fresh.named_buffers(), strict=True
        ):
            _close(b_p, b, f"{name} state {key} under a permutation")
    mean = build(name, n=n, v=v, d=d, seed=seed, temperature=t, reduction="mean")
    mean_p = Case(
        copy.deepcopy(mean.loss), mean.permute(mean.args, perm), mean.names, n, mean.permute, seed
    )
    _close(mean_p(), mean(), f"{name} mean under a permutation")


# --------------------------------------------------------------------------------------------------
# Finite values and gradients (float32)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(FAST, max_examples=4)
@given(
    shape=st.data(),
    seed=st.integers(0, 2**16),
    t=st.one_of(st.none(), st.floats(0.05, 1.0)),
    log_scale=st.floats(-1.0, 1.0),
)
def test_finite_values_and_gradients(
    name: str, shape: st.DataObject, seed: int, t: float | None, log_scale: float
) -> None:
    """Valid float32 inputs give finite values and gradients: any scale and temperature, and
    every example also as a degenerate batch (identical views; a duplicated instance)."""
    n, v, d = shape.draw(_shape_strategy(name))
    chunk = shape.draw(st.one_of(st.none(), st.integers(1, n * v)), label="chunk_size")
    for degenerate in ("", "views", "instances"):
        case = build(
            name,
            n=n,
            v=v,
            d=d,
            seed=seed,
            dtype=torch.float32,
            temperature=t,
            chunk_size=chunk,
            scale=10.0**log_scale,
            degenerate=degenerate,
        )
        what = f"{name} ({degenerate or 'random'} batch"
        for reduction in ("none", "mean"):
            case.loss.reduction = reduction  # type: ignore[assignment]
            out = case()
            assert out.dtype == torch.float32, f"{what}) returned {out.dtype} for float32 input"
            assert torch.isfinite(out).all(), f"{what}, {reduction}) is not finite: {out}"
            for gr in _grads(case, out):
                assert torch.isfinite(gr).all(), f"{what}, {reduction}) non-finite gradient"


# --------------------------------------------------------------------------------------------------
# Clear errors for invalid input
# --------------------------------------------------------------------------------------------------


def _names_argument(name: str, kwarg: str) -> str:
    return rf"(^|[^\w]){re.escape(kwarg)}([^\w]|$)"


@pytest.mark.parametrize("name", _temperature_params())
@FAST
@given(
    data=st.data(),
    value=st.one_of(
        st.floats(max_value=0.0, allow_nan=False), st.just(math.nan), st.just(-math.inf)
    ),
)
def test_temperature_must_be_positive(name: str, data: st.DataObject, value: float) -> None:
    """A temperature-like argument <= 0 or NaN is refused when the loss is built, by name."""
    kwarg = data.draw(st.sampled_from(_temperature_args(name)), label="argument")
    kw: dict[str, Any] = {"num_samples": 8} if loss_info(name).needs_index else {}
    if name == "bilinear_nce":
        kw["dim"] = 4
    with pytest.raises((ValueError, TypeError), match=_names_argument(name, kwarg)):
        get_loss(name, **kw, **{kwarg: value})


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(shape=st.data(), seed=st.integers(0, 2**16), bad=st.sampled_from([math.nan, math.inf]))
def test_non_finite_input_is_refused(
    name: str, shape: st.DataObject, seed: int, bad: float
) -> None:
    """A NaN or inf anywhere in a float input raises a ValueError naming that input."""
    n, v, d = shape.draw(_shape_strategy(name))
    case = build(name, n=n, v=v, d=d, seed=seed)
    floats = [i for i, a in enumerate(case.args) if a.is_floating_point()]
    i = shape.draw(st.sampled_from(floats), label="input")
    args = [a.detach().clone() for a in case.args]
    pos = shape.draw(st.integers(0, args[i].numel() - 1), label="position")
    args[i].view(-1)[pos] = bad
    with pytest.raises(ValueError, match=_names_argument(name, case.names[i])):
        case(args)


# Inputs documented to take two ranks: KoLeo's embeddings and uniformity's views are (N, D) or
# (N, V, D).
ACCEPTED_RANKS = {("koleo", "embeddings"): (2, 3), ("uniformity", "views"): (2, 3)}


def _wrong_rank_params() -> list[Any]:
    return [pytest.param(n, id=n) for n in NAMES]


@pytest.mark.parametrize("name", _wrong_rank_params())
@FAST
@given(shape=st.data(), seed=st.integers(0, 2**16), higher=st.booleans())
def test_wrong_rank_is_refused(name: str, shape: st.DataObject, seed: int, higher: bool) -> None:
    """An input with a dimension too many or too few raises an error naming that input."""
    n, v, d = shape.draw(_shape_strategy(name))
    case = build(name, n=n, v=v, d=d, seed=seed)
    i = shape.draw(st.integers(0, len(case.args) - 1), label="input")
    args = [a.detach() for a in case.args]
    ranks = ACCEPTED_RANKS.get((name, case.names[i]), (args[i].dim(),))
    if higher or min(ranks) == 0:
        while args[i].dim() <= max(ranks):
            args[i] = args[i].unsqueeze(-1)
    else:
        while args[i].dim() >= min(ranks):
            args[i] = args[i][0]
    with pytest.raises((ValueError, TypeError), match=_names_argument(name, case.names[i])):
        case(args)


def _label_args(name: str) -> list[str]:
    """forward's per-instance label-like arguments (labels, dataset index)."""
    fwd = inspect.signature(loss_info(name).factory.forward).parameters  # type: ignore[attr-defined]
    return [k for k in ("labels", "index") if k in fwd]


def _label_params() -> list[Any]:
    return [_param(n, None if _label_args(n) else "takes no labels or index") for n in NAMES]


@pytest.mark.parametrize("name", _label_params())
@FAST
@given(shape=st.data(), seed=st.integers(0, 2**16), delta=st.sampled_from([-2, -1, 1, 3]))
def test_labels_of_wrong_length_are_refused(
    name: str, shape: st.DataObject, seed: int, delta: int
) -> None:
    """Labels (or dataset indices) not one per instance raise a ValueError naming them."""
    n, v, d = shape.draw(_shape_strategy(name))
    case = build(name, n=n, v=v, d=d, seed=seed)
    fwd = list(inspect.signature(case.loss.forward).parameters)
    arg = shape.draw(st.sampled_from(_label_args(name)), label="argument")
    info = loss_info(name)
    m = n + delta
    g = torch.Generator().manual_seed(seed)
    if arg == "index":
        bad = torch.randperm(n + 3 + max(delta, 0), generator=g)[:m] % (n + 3)
    elif info.input_kind == "regression":
        bad = torch.rand(m, generator=g, dtype=F64)
    else:
        bad = torch.randint(0, 3, (m,), generator=g)
    args = [a.detach() for a in case.args]
    pos = fwd.index(arg)
    args = [*args[:pos], bad, *args[pos + 1 :]] if pos < len(args) else [*args, bad]
    with pytest.raises(ValueError, match=_names_argument(name, arg)):
        case(args)
