"""Numbers given as numpy scalars are accepted like Python numbers, by every registered loss.

``InfoNCE(temperature=np.float32(0.1))`` or ``chunk_size=np.int64(256)`` (what a config read with
numpy, or a sweep over ``np.linspace``, hands over) must build the same loss as the Python number,
as lightly and pytorch-metric-learning accept them; the stored settings are plain Python numbers.
Tensors and bools stay rejected (``TypeError``), and the integer rule is one for all: a non-integer
is a ``TypeError``, an integer out of range a ``ValueError`` (``contrastkit._validation.check_int``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from contrastkit._validation import check_chunk_size, check_int, check_positive
from contrastkit.losses import get_loss, loss_info, loss_names

#: arguments without a default that some losses need
REQUIRED = {"num_samples": 8, "dim": 4}
#: arguments whose default is None, set to a number so that their numpy form is exercised too
OPTIONAL = {"chunk_size": 8, "topk_negatives": 3, "grad_tau_clip": 3.0, "target_dim": 4}


def _own_losses() -> list[str]:
    """Registered names whose loss is defined in ``contrastkit.losses`` (not a later layer)."""
    return [
        n for n in loss_names() if loss_info(n).factory.__module__.startswith("contrastkit.losses")
    ]


def _numeric_kwargs(
    factory: Callable[..., nn.Module],
    to_float: Callable[[float], Any],
    to_int: Callable[[int], Any],
) -> dict[str, Any]:
    """Every numeric keyword of ``factory`` (its default, or a value for the None ones), converted."""
    out: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        value = p.default
        if value is inspect.Parameter.empty:
            value = REQUIRED.get(name, inspect.Parameter.empty)
        elif value is None:
            value = OPTIONAL.get(name)
        if isinstance(value, bool) or value is None or value is inspect.Parameter.empty:
            continue
        if isinstance(value, int):
            out[name] = to_int(value)
        elif isinstance(value, float):
            out[name] = to_float(value)
        elif isinstance(value, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            out[name] = tuple(to_int(v) for v in value)
    return out


def _build(name: str, kwargs: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)  # some losses draw parameters or a queue at construction
    return get_loss(name, **kwargs)


def _numpy_values(module: nn.Module) -> list[str]:
    """Attributes (of the module and its submodules) that are still numpy scalars."""
    found = []
    for prefix, sub in module.named_modules():
        for key, value in vars(sub).items():
            values = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, np.generic) for v in values):
                found.append(f"{prefix}.{key}" if prefix else key)
    return found


@pytest.mark.parametrize("name", _own_losses())
def test_numpy_scalars_build_the_same_loss(name: str) -> None:
    """np.float64 / np.int64 versions of every numeric argument give the same module."""
    factory = loss_info(name).factory
    py_kwargs = _numeric_kwargs(factory, float, int)
    np_kwargs = _numeric_kwargs(factory, np.float64, np.int64)
    if not np_kwargs:
        pytest.skip(f"{name} takes no numeric argument")
    py, npy = _build(name, py_kwargs), _build(name, np_kwargs)
    assert repr(npy) == repr(py)
    assert _numpy_values(npy) == []
    py_state, np_state = py.state_dict(), npy.state_dict()
    assert py_state.keys() == np_state.keys()
    for key, value in py_state.items():
        assert np_state[key].dtype == value.dtype and torch.equal(np_state[key], value), key


@pytest.mark.parametrize("name", _own_losses())
def test_float32_and_int32_scalars(name: str) -> None:
    """np.float32 / np.int32 work too; the stored settings become Python numbers."""
    factory = loss_info(name).factory
    npy = _build(name, _numeric_kwargs(factory, np.float32, np.int32))
    assert _numpy_values(npy) == []
    temperature = getattr(npy, "temperature", None)
    if temperature is not None:
        assert type(temperature) is float


def _views_input(name: str) -> tuple[Tensor, ...]:
    info = loss_info(name)
    g = torch.Generator().manual_seed(1)
    views = torch.randn(12, max(info.min_views, 2), 6, generator=g, dtype=torch.float64)
    if info.needs_labels:
        return views, torch.randint(0, 3, (12,), generator=g)
    return (views,)


VIEW_LOSSES = [
    n
    for n in _own_losses()
    if loss_info(n).input_kind == "views"
    and not loss_info(n).needs_index
    and not getattr(loss_info(n), "momentum_encoder", False)
]


@pytest.mark.parametrize("name", VIEW_LOSSES)
def test_numpy_built_views_loss_gives_the_same_value(name: str) -> None:
    factory = loss_info(name).factory
    py = _build(name, _numeric_kwargs(factory, float, int))
    npy = _build(name, _numeric_kwargs(factory, np.float64, np.int64))
    args = _views_input(name)
    torch.testing.assert_close(npy(*args), py(*args), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["sogclr", "isogclr"])
def test_numpy_built_global_loss_gives_the_same_value_and_state(name: str) -> None:
    factory = loss_info(name).factory
    py = _build(name, _numeric_kwargs(factory, float, int))
    npy = _build(name, _numeric_kwargs(factory, np.float64, np.int64))
    views = torch.randn(6, 2, 5, generator=torch.Generator().manual_seed(2))
    index = torch.tensor([0, 3, 5, 7, 1, 2])
    for _ in range(2):  # the second call reads the state the first one wrote
        torch.testing.assert_close(npy(views, index), py(views, index), rtol=0, atol=0)
    for key, value in py.state_dict().items():
        torch.testing.assert_close(npy.state_dict()[key], value, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# tensors and bools stay rejected, for every loss that takes the argument
# --------------------------------------------------------------------------------------------------


def _takes(argument: str) -> list[str]:
    return [
        n for n in _own_losses() if argument in inspect.signature(loss_info(n).factory).parameters
    ]


def _required(name: str) -> dict[str, Any]:
    params = inspect.signature(loss_info(name).factory).parameters
    return {k: v for k, v in REQUIRED.items() if k in params}


@pytest.mark.parametrize("bad", [torch.tensor(0.1), np.bool_(True), True, "0.1", np.array([0.1])])
@pytest.mark.parametrize("name", _takes("temperature"))
def test_temperature_rejects_tensors_and_bools(name: str, bad: object) -> None:
    with pytest.raises(TypeError, match="temperature must be a number"):
        get_loss(name, **_required(name), temperature=bad)


@pytest.mark.parametrize(
    "bad", [torch.tensor(8), np.bool_(True), True, np.float64(8.0), 8.0, "8", np.array([8])]
)
@pytest.mark.parametrize("name", _takes("chunk_size"))
def test_chunk_size_rejects_non_integers(name: str, bad: object) -> None:
    with pytest.raises(TypeError, match="chunk_size must be an int or None"):
        get_loss(name, **_required(name), chunk_size=bad)


@pytest.mark.parametrize("name", _takes("chunk_size"))
def test_chunk_size_out_of_range_is_a_value_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"chunk_size must be an int >= 1 or None, got 0"):
        get_loss(name, **_required(name), chunk_size=np.int64(0))


# --------------------------------------------------------------------------------------------------
# the validators themselves
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, np.int8(3), np.int64(3), np.uint16(3)])
def test_check_int_accepts_python_and_numpy_integers(value: object) -> None:
    out = check_int(value, "n", minimum=1, maximum=5)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "value", [True, np.bool_(False), 3.0, np.float32(3.0), "3", None, torch.tensor(3), [3]]
)
def test_check_int_type_errors(value: object) -> None:
    with pytest.raises(TypeError, match="n must be an int, got"):
        check_int(value, "n", minimum=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"minimum": 4}, r"n must be an int >= 4, got 3"),
        ({"maximum": 2}, r"n must be an int <= 2, got 3"),
        ({"minimum": 0, "maximum": 2}, r"n must be an int in \[0, 2\], got 3"),
    ],
)
def test_check_int_value_errors(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_int(np.int64(3), "n", **kwargs)


def test_check_chunk_size() -> None:
    assert check_chunk_size(None) is None
    assert check_chunk_size(np.int32(7)) == 7


@pytest.mark.parametrize(
    "value", [0.5, np.float16(0.5), np.float32(0.5), np.float64(0.5), 1, np.int64(1)]
)
def test_check_positive_accepts_python_and_numpy_reals(value: object) -> None:
    out = check_positive(value, "t")  # type: ignore[arg-type]
    assert type(out) is float and out == float(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [True, np.bool_(True), torch.tensor(0.5), "0.5", None, np.array(0.5)]
)
def test_check_positive_rejects_non_numbers(value: object) -> None:
    with pytest.raises(TypeError, match="t must be a number"):
        check_positive(value, "t")  # type: ignore[arg-type]
