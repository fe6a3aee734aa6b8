"""Fault and fuzz suite of every registered loss (issue 14: "nothing lost, nothing silent").

Each loss is fed as its registry entry says (``loss_info(name)``) with hostile but *valid* input,
and with *invalid* input:

- valid: every float dtype (float64, float32, bfloat16 and float16, which the losses compute in
  float32), temperatures down to 0.005, scales from 1e-2 to 1e2, and degenerate geometry
  (collapsed batches, identical views, antipodal instances, duplicated instances, converged
  pairs): finite values and gradients, the output dtype of the computation, non-negative terms
  where the loss is a cross-entropy or a divergence, and finite state over several steps for
  the stateful losses;
- invalid: a NaN or inf in any input, an input of the wrong rank, an empty batch, a temperature
  <= 0 (or NaN, inf), labels or dataset indices of the wrong length: a ``ValueError`` or
  ``TypeError`` that names the argument;
- chunk-size invariance: any ``chunk_size`` gives the value, gradients and state of one block
  (float64, temperatures down to 0.005).

Every property runs twice: with a small example budget in the default run (``FAST``), and with a
large one under the ``fuzz`` marker (``pytest -m fuzz``, deselected by default). Each example is
counted by loss family and outcome (``hypothesis.event``, shown by
``--hypothesis-show-statistics``; with ``CONTRASTKIT_FUZZ_TALLY=path`` the totals are also written
there as JSON): ``valid`` (finite and correct), ``clear error`` (an invalid input refused as
specified), ``crash`` (any other exception) and ``silent wrong`` (a non-finite or wrong value, or
an invalid input accepted). A crash or a silent wrong result fails the test.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from contrastkit.losses import get_loss, loss_info, loss_names

F64 = torch.float64
NAMES = loss_names()
DTYPES = {
    "float64": F64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.half,
}

_COMMON = dict(
    deadline=None,
    database=None,
    # shrinking a failure of a 35-loss parametrisation can take minutes; the inputs are small
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The default run: a few examples per loss and property (the file in about 20 s on one thread).
FAST = settings(max_examples=3, **_COMMON)  # type: ignore[arg-type]
# `pytest -m fuzz`: about 26,000 examples in all (about 4 minutes on one thread).
FUZZ = settings(max_examples=120, **_COMMON)  # type: ignore[arg-type]

# Losses whose terms are >= 0 in exact arithmetic (cross-entropies with the positive in the
# denominator, divergences, softplus / BCE sums, norms): they must be >= 0 in floating point too.
NONNEGATIVE = {
    "alignment",
    "avg",
    "bilinear_nce",
    "binary_nce",
    "clip",
    "cliprocket",
    "focal_supcon",
    "groco",
    "hard_infonce",
    "listwise_kl",
    "listwise_w1",
    "milnce",
    "mochi",
    "moco",
    "moco_v2",
    "mvinfonce",
    "ntxent",
    "patch_nce",
    "pwe",
    "supcon",
    "supremix",
}

# Exactly two views.
EXACT_VIEWS = {"dhel": 2, "moco_v2": 2, "mochi": 2, "sogclr": 2, "isogclr": 2}

#: (loss, argument) pairs whose wrong-rank message is not checked here (none left).
KNOWN_UNCLEAR_RANK: set[tuple[str, str]] = set()

GEOMETRIES = ("random", "collapsed", "views", "antipodal", "duplicates", "converged")

_TALLY: Counter[str] = Counter()


def family(name: str) -> str:
    """The loss family: the module that defines the loss (infonce, supcon, global_, ...)."""
    return str(loss_info(name).factory.__module__).rsplit(".", 1)[-1]


def _count(name: str, outcome: str) -> None:
    key = f"{family(name)}: {outcome}"
    event(key)
    _TALLY[key] += 1


@pytest.fixture(scope="module", autouse=True)
def _write_tally() -> Iterator[None]:
    yield
    path = os.environ.get("CONTRASTKIT_FUZZ_TALLY")
    if path and _TALLY:
        old: dict[str, int] = {}
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
        total = Counter(old) + _TALLY
        with open(path, "w") as f:
            json.dump(dict(sorted(total.items())), f, indent=1)


# --------------------------------------------------------------------------------------------------
# Building a loss and valid inputs from the registry entry
# --------------------------------------------------------------------------------------------------


def _signature(name: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(loss_info(name).factory).parameters)


def temperature_kwargs(name: str, t: float) -> dict[str, Any]:
    """Constructor arguments that set every temperature-like knob of ``name`` to ``t`` in
    (0, 1] (or its inverse, for the arguments that multiply)."""
    sig = _signature(name)
    kw: dict[str, Any] = {}
    for arg in ("temperature", "init_temperature", "local_init_temperature", "tau"):
        if arg in sig:
            kw[arg] = t
    if "init_temperature" in sig:  # the logit-scale clamp must admit 1 / t
        kw["max_logit_scale"] = max(100.0, 1.0 / t)
    if "base_temperature" in sig:
        kw["base_temperature"] = t
    if "tau_plus" in sig:  # CACR's attraction and repulsion temperatures
        kw["tau_plus"] = kw["tau_minus"] = t
    if "inverse_temperature" in sig:  # SCGC multiplies
        kw["inverse_temperature"] = 1.0 / t
    if name in ("uniformity", "align_uniform"):  # the Gaussian potential's t multiplies
        kw["t"] = 1.0 / t
    if "steepness" in sig:  # GroCo's sorting relaxation
        kw["steepness"] = 1.0 / t
    if "tau_min" in sig:  # iSogCLR: the initial temperature within its bounds
        kw["tau_min"] = min(t, sig["tau_min"].default)
        kw["tau_max"] = max(t, sig["tau_max"].default)
    return kw


# Arguments refused when <= 0 (each is a temperature, or a scale that acts as one).
TEMPERATURE_ARGS = (
    "temperature",
    "init_temperature",
    "local_init_temperature",
    "base_temperature",
    "inverse_temperature",
    "target_temperature",
    "tau",
    "tau_plus",
    "tau_minus",
    "t",
    "steepness",
)


def temperature_args(name: str) -> list[str]:
    sig = _signature(name)
    return [a for a in TEMPERATURE_ARGS if a in sig]


@dataclass
class Case:
    """A loss, its positional inputs (and their forward names) and which of them take gradients."""

    name: str
    loss: nn.Module
    args: list[Tensor]
    names: list[str]
    n: int
    grad_args: list[int] = field(default_factory=list)
    seed: int = 0

    def __call__(self, args: list[Tensor] | None = None) -> Tensor:
        torch.manual_seed(self.seed)  # the losses that draw inside (SupReMix, MoCHi): same draws
        out: Tensor = self.loss(*(self.args if args is None else args))
        return out


def _embed(g: torch.Generator, shape: tuple[int, ...], geometry: str, scale: float) -> Tensor:
    """float64 embeddings ``(N, ..., D)`` of the given geometry (all valid input)."""
    n, d = shape[0], shape[-1]
    x = torch.randn(*shape, generator=g, dtype=F64)
    point = torch.randn(d, generator=g, dtype=F64)
    if geometry == "collapsed":  # every row the same point
        x = point.expand(*shape).clone()
    elif geometry == "views" and len(shape) == 3:  # the views of an instance identical
        x = x[:, :1].expand(*shape).clone()
    elif geometry == "antipodal":  # instances alternate between +point and -point
        sign = torch.tensor([(-1.0) ** i for i in range(n)], dtype=F64)
        x = (sign.reshape(n, *([1] * (len(shape) - 1))) * point).expand(*shape).clone()
    elif geometry == "duplicates" and n > 1:  # instance 1 is a copy of instance 0
        x[1] = x[0]
    elif geometry == "converged" and len(shape) == 3:  # tight positive pairs, spread instances
        x = x[:, :1] + 1e-3 * torch.randn(*shape, generator=g, dtype=F64)
    return scale * x


def build(
    name: str,
    *,
    n: int,
    v: int,
    d: int,
    seed: int,
    dtype: torch.dtype = F64,
    temperature: float | None = None,
    chunk_size: int | None = None,
    reduction: str = "mean",
    geometry: str = "random",
    scale: float = 1.0,
) -> Case:
    """The loss ``name`` and valid inputs of ``n`` instances as its registry entry says.

    Half-precision inputs go to a float32 module (the losses compute in float32); float64 inputs
    to a float64 module. Targets (labels, relevance, graphs) stay in float64 / integers.
    """
    info = loss_info(name)
    sig = _signature(name)
    g = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {"reduction": reduction}
    if temperature is not None:
        kw.update(temperature_kwargs(name, temperature))
    if "chunk_size" in sig:
        kw["chunk_size"] = chunk_size
    if info.needs_index:
        kw["num_samples"] = n + 3
    if name == "bilinear_nce":
        kw["dim"] = d
    if name == "groco":
        kw["topk_negatives"] = 1
    if info.momentum_encoder:
        kw["queue_size"] = 16
    if name == "mochi":
        kw.update(mix_hard=4, mix_pairs=3, mix_query=2)
    torch.manual_seed(seed)  # random parameters (bilinear critic, queue)
    loss = get_loss(name, **kw)
    if info.momentum_encoder:
        loss.attach(nn.Linear(d, d), d)  # type: ignore[operator]
    module_dtype = F64 if dtype == F64 else torch.float32
    loss = loss.to(module_dtype)

    def emb(*shape: int) -> Tensor:
        return _embed(g, shape, geometry, scale).to(dtype)

    kind = info.input_kind
    args: list[Tensor]
    if (
        info.momentum_encoder
        or kind in ("views", "regression")
        or name in ("alignment", "uniformity")
    ):
        args = [emb(n, v, d)]
        if kind == "regression":
            args.append(torch.rand(n, generator=g, dtype=F64))
        elif info.needs_labels:
            args.append(torch.arange(n) % max(2, n // 2))
        if info.needs_index:
            args.append(torch.randperm(n + 3, generator=g)[:n])
    elif kind == "pair" or name == "joint_entropy":
        args = [emb(n, d), emb(n, d) if name != "joint_entropy" else emb(n, d + 1)]
        if info.needs_index:
            args.append(torch.randperm(n + 3, generator=g)[:n])
    elif kind == "queue":
        args = [emb(n, d), emb(n, d), emb(n + 2, d)]
    elif kind == "graph":
        t = (torch.rand(n, n, generator=g) < 0.4).to(module_dtype)
        args = [emb(n, d), ((t + t.T) > 0).to(module_dtype)]
    elif kind == "bag":
        args = [emb(n, d), emb(n, 3, d)]
    elif kind == "patches":
        args = [emb(n, 3, d), emb(n, 3, d)]
    elif kind == "scores":
        args = [emb(n, 1)[:, 0], emb(n, 4)]
    elif kind == "list":
        args = [emb(n, 4), torch.rand(n, 4, generator=g, dtype=module_dtype)]
    elif name == "koleo":
        args = [emb(n, d)]
    else:  # a new kind of input: teach this suite how to feed it
        raise AssertionError(f"no input builder for loss {name!r} (input_kind {kind!r})")
    names = list(inspect.signature(loss.forward).parameters)[: len(args)]
    data = {("regression", "labels"), ("list", "relevance"), ("graph", "target")}
    grad_args = []
    for i, a in enumerate(args):
        if a.is_floating_point() and (kind, names[i]) not in data:
            a.requires_grad_(True)
            grad_args.append(i)
    return Case(name, loss, args, names, n, grad_args, seed)


def _grads(case: Case, out: Tensor) -> list[Tensor]:
    inputs = [case.args[i] for i in case.grad_args] + [
        p for p in case.loss.parameters() if p.requires_grad
    ]
    grads = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads, strict=True)]


def _shapes(name: str) -> st.SearchStrategy[tuple[int, int, int]]:
    info = loss_info(name)
    lo = EXACT_VIEWS.get(name, info.min_views)
    hi = EXACT_VIEWS.get(name, 3)
    return st.tuples(st.integers(2, 7), st.integers(lo, max(lo, hi)), st.integers(2, 6))


def _names_argument(arg: str) -> str:
    return rf"(^|[^\w]){re.escape(arg)}([^\w]|$)"


def _expect_clear_error(name: str, call: Callable[[], object], arg: str, what: str) -> None:
    """``call()`` raises a ValueError/TypeError naming ``arg``; count the outcome."""
    try:
        call()
    except (ValueError, TypeError) as err:
        if not re.search(_names_argument(arg), str(err)):
            _count(name, "crash")
            raise AssertionError(f"{name}: {what}: the error does not name {arg!r}: {err}") from err
        _count(name, "clear error")
        return
    except Exception:
        _count(name, "crash")
        raise
    _count(name, "silent wrong")
    raise AssertionError(f"{name}: {what} was accepted")


def _params(skip: Callable[[str], str | None], marks: tuple[Any, ...] = ()) -> list[Any]:
    out = []
    for name in NAMES:
        reason = skip(name)
        m = [*marks, *([pytest.mark.skip(reason=f"{name}: {reason}")] if reason else [])]
        out.append(pytest.param(name, id=name, marks=m))
    return out


def _twice(
    body: Callable[..., None], skip: Callable[[str], str | None], **strategies: Any
) -> tuple[Any, Any]:
    """The property ``body`` as two tests: the small default budget and the ``fuzz`` budget."""
    fast = pytest.mark.parametrize("name", _params(skip))(FAST(given(**strategies)(body)))
    fuzz = pytest.mark.parametrize("name", _params(skip, (pytest.mark.fuzz,)))(
        FUZZ(given(**strategies)(body))
    )
    return fast, fuzz


def _always(name: str) -> None:
    return None


# --------------------------------------------------------------------------------------------------
# Valid input: finite values, gradients and state, in every dtype and down to temperature 0.005
# --------------------------------------------------------------------------------------------------


def _valid(
    name: str,
    data: st.DataObject,
    dtype: str,
    log_t: float,
    geometry: str,
    log_scale: float,
    seed: int,
) -> None:
    n, v, d = data.draw(_shapes(name), label="shape")
    chunk = data.draw(st.one_of(st.none(), st.integers(1, n * v + 2)), label="chunk_size")
    t = 10.0**log_t
    case = build(
        name,
        n=n,
        v=v,
        d=d,
        seed=seed,
        dtype=DTYPES[dtype],
        temperature=t,
        chunk_size=chunk,
        reduction="none",
        geometry=geometry,
        scale=10.0**log_scale,
    )
    want = F64 if dtype == "float64" else torch.float32
    steps = 3 if loss_info(name).needs_index else 1
    try:
        for step in range(steps):
            out = case()
            grads = _grads(case, out)
            problem = None
            if out.dtype != want:
                problem = f"returned {out.dtype} for {dtype} input (computes in {want})"
            elif not bool(torch.isfinite(out).all()):
                problem = f"non-finite value {out.detach()}"
            elif not all(bool(torch.isfinite(gr).all()) for gr in grads):
                problem = "non-finite gradient"
            elif name in NONNEGATIVE and bool((out.detach() < 0).any()):
                problem = f"negative term {float(out.detach().min())} (>= 0 exactly)"
            else:
                bad = [k for k, b in case.loss.named_buffers() if not bool(torch.isfinite(b).all())]
                problem = f"non-finite state {bad}" if bad else None
            if problem is not None:
                _count(name, "silent wrong")
                raise AssertionError(
                    f"{name} ({dtype}, t={t:.4g}, {geometry}, step {step}): {problem}"
                )
    except AssertionError:
        raise
    except Exception:
        _count(name, "crash")
        raise
    _count(name, "valid")


_VALID_STRATEGIES = dict(
    data=st.data(),
    dtype=st.sampled_from(list(DTYPES)),
    log_t=st.floats(math.log10(0.005), 0.0),
    geometry=st.sampled_from(GEOMETRIES),
    log_scale=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**16),
)
test_valid_inputs_finite, test_valid_inputs_finite_fuzz = _twice(
    _valid, _always, **_VALID_STRATEGIES
)


# --------------------------------------------------------------------------------------------------
# Chunk-size invariance (float64, down to temperature 0.005)
# --------------------------------------------------------------------------------------------------


def _chunk(name: str, data: st.DataObject, log_t: float, geometry: str, seed: int) -> None:
    n, v, d = data.draw(_shapes(name), label="shape")
    chunk = data.draw(st.integers(1, n * max(v, 3) + 3), label="chunk_size")
    common: dict[str, Any] = dict(
        n=n, v=v, d=d, seed=seed, temperature=10.0**log_t, reduction="none", geometry=geometry
    )
    try:
        ref = build(name, **common, chunk_size=10**6)
        got = build(name, **common, chunk_size=chunk)
        out_ref, out_got = ref(), got()
        pairs = [("value", out_got, out_ref)]
        pairs += [
            ("gradient", a, b)
            for a, b in zip(_grads(got, out_got), _grads(ref, out_ref), strict=True)
        ]
        pairs += [
            (f"state {k}", a, b)
            for (k, a), (_, b) in zip(
                got.loss.named_buffers(), ref.loss.named_buffers(), strict=True
            )
        ]
    except Exception:
        _count(name, "crash")
        raise
    for what, a, b in pairs:
        if not torch.allclose(a, b, rtol=1e-9, atol=1e-11):
            _count(name, "silent wrong")
            raise AssertionError(
                f"{name}: {what} with chunk_size={chunk} differs from one block by "
                f"{float((a - b).abs().max())}"
            )
    _count(name, "valid")


test_chunk_size_invariance, test_chunk_size_invariance_fuzz = _twice(
    _chunk,
    lambda n: None if "chunk_size" in _signature(n) else "takes no chunk_size",
    data=st.data(),
    log_t=st.floats(math.log10(0.005), 0.0),
    geometry=st.sampled_from(GEOMETRIES),
    seed=st.integers(0, 2**16),
)


# --------------------------------------------------------------------------------------------------
# Invalid input: one clear error naming the argument
# --------------------------------------------------------------------------------------------------


def _non_finite(name: str, data: st.DataObject, bad: float, dtype: str, seed: int) -> None:
    n, v, d = data.draw(_shapes(name), label="shape")
    case = build(name, n=n, v=v, d=d, seed=seed, dtype=DTYPES[dtype])
    floats = [i for i, a in enumerate(case.args) if a.is_floating_point()]
    i = data.draw(st.sampled_from(floats), label="input")
    args = [a.detach().clone() for a in case.args]
    pos = data.draw(st.integers(0, args[i].numel() - 1), label="position")
    args[i].view(-1)[pos] = bad
    _expect_clear_error(name, lambda: case(args), case.names[i], f"{bad} in {case.names[i]}")


test_non_finite_input_refused, test_non_finite_input_refused_fuzz = _twice(
    _non_finite,
    _always,
    data=st.data(),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    dtype=st.sampled_from(list(DTYPES)),
    seed=st.integers(0, 2**16),
)

# Inputs documented to take two ranks.
ACCEPTED_RANKS = {("koleo", "embeddings"): (2, 3), ("uniformity", "views"): (2, 3)}


def _wrong_rank(name: str, data: st.DataObject, higher: bool, seed: int) -> None:
    n, v, d = data.draw(_shapes(name), label="shape")
    case = build(name, n=n, v=v, d=d, seed=seed)
    choices = [i for i in range(len(case.args)) if (name, case.names[i]) not in KNOWN_UNCLEAR_RANK]
    i = data.draw(st.sampled_from(choices), label="input")
    args = [a.detach() for a in case.args]
    ranks = ACCEPTED_RANKS.get((name, case.names[i]), (args[i].dim(),))
    if higher or min(ranks) == 1:
        while args[i].dim() <= max(ranks):
            args[i] = args[i].unsqueeze(-1)
    else:
        while args[i].dim() >= min(ranks):
            args[i] = args[i][0]
    what = f"{case.names[i]} of rank {args[i].dim()}"
    _expect_clear_error(name, lambda: case(args), case.names[i], what)


test_wrong_rank_refused, test_wrong_rank_refused_fuzz = _twice(
    _wrong_rank,
    lambda n: "its only input has the known unclear message" if n == "uniformity" else None,
    data=st.data(),
    higher=st.booleans(),
    seed=st.integers(0, 2**16),
)


def _empty(name: str, data: st.DataObject, dtype: str, seed: int) -> None:
    """Every per-instance input with zero rows (a queue keeps its rows)."""
    _, v, d = data.draw(_shapes(name), label="shape")
    case = build(name, n=2, v=v, d=d, seed=seed, dtype=DTYPES[dtype])
    kind = loss_info(name).input_kind
    args = []
    for a, arg in zip(case.args, case.names, strict=True):
        if kind == "queue" and arg == "negatives":
            args.append(a.detach())
        elif kind == "graph" and arg == "target":
            args.append(a.detach()[:0, :0])
        else:
            args.append(a.detach()[:0])
    first = case.names[0]
    _expect_clear_error(name, lambda: case(args), first, "an empty batch")


test_empty_batch_refused, test_empty_batch_refused_fuzz = _twice(
    _empty, _always, data=st.data(), dtype=st.sampled_from(list(DTYPES)), seed=st.integers(0, 99)
)


def _bad_temperature(name: str, data: st.DataObject, value: float) -> None:
    arg = data.draw(st.sampled_from(temperature_args(name)), label="argument")
    kw: dict[str, Any] = {"num_samples": 8} if loss_info(name).needs_index else {}
    if name == "bilinear_nce":
        kw["dim"] = 4
    _expect_clear_error(name, lambda: get_loss(name, **kw, **{arg: value}), arg, f"{arg}={value}")


test_bad_temperature_refused, test_bad_temperature_refused_fuzz = _twice(
    _bad_temperature,
    lambda n: None if temperature_args(n) else "has no temperature-like argument",
    data=st.data(),
    value=st.one_of(
        st.floats(max_value=0.0, allow_nan=False),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    ),
)


def _label_args(name: str) -> list[str]:
    fwd = inspect.signature(loss_info(name).factory.forward).parameters  # type: ignore[attr-defined]
    return [k for k in ("labels", "index") if k in fwd]


def _wrong_length(name: str, data: st.DataObject, delta: int, seed: int) -> None:
    n, v, d = data.draw(_shapes(name), label="shape")
    case = build(name, n=n, v=v, d=d, seed=seed)
    arg = data.draw(st.sampled_from(_label_args(name)), label="argument")
    m = n + delta
    g = torch.Generator().manual_seed(seed)
    if arg == "index":
        bad = torch.randperm(n + 3 + max(delta, 0), generator=g)[:m] % (n + 3)
    elif loss_info(name).input_kind == "regression":
        bad = torch.rand(m, generator=g, dtype=F64)
    else:
        bad = torch.randint(0, 3, (m,), generator=g)
    fwd = list(inspect.signature(case.loss.forward).parameters)
    pos = fwd.index(arg)
    args = [a.detach() for a in case.args]
    args = [*args[:pos], bad, *args[pos + 1 :]] if pos < len(args) else [*args, bad]
    _expect_clear_error(name, lambda: case(args), arg, f"{arg} of length {m} for N = {n}")


test_labels_of_wrong_length_refused, test_labels_of_wrong_length_refused_fuzz = _twice(
    _wrong_length,
    lambda n: None if _label_args(n) else "takes no labels or index",
    data=st.data(),
    delta=st.sampled_from([-2, -1, 1, 3]),
    seed=st.integers(0, 2**16),
)
