"""Input checks shared by every public entry point.

Each check raises a ``ValueError`` (or ``TypeError``) that says what was expected and what came, so that bad
input fails at the boundary rather than deep inside torch.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_choice",
    "check_chunk_size",
    "check_device",
    "check_embeddings",
    "check_finite",
    "check_int",
    "check_keyword_arguments",
    "check_labels",
    "check_optional_int",
    "check_positive",
    "check_probability",
    "check_reduction",
    "check_tensor",
    "check_views",
    "keyword_parameters",
]

REDUCTIONS = ("mean", "sum", "none")


def check_tensor(x: object, name: str) -> Tensor:
    """Return ``x`` if it is a tensor, else raise a ``TypeError`` naming ``name``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise a ``ValueError`` if ``x`` holds NaN or inf (checked without a host sync for small inputs)."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(
            f"{name} must be finite, but it holds {n_nan} NaN and {n_inf} inf value(s) "
            f"(shape {tuple(x.shape)})"
        )
    return x


def _is_bool(value: object) -> bool:
    return isinstance(value, bool | np.bool_)


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as a Python ``int`` if it is an integer in ``[minimum, maximum]``.

    One rule for every integer argument of the package, as scikit-learn's ``check_scalar``: a value
    that is not an integer (``bool``, ``float``, ``str``, a tensor, ...) raises a ``TypeError``; an
    integer out of range raises a ``ValueError``. Integer scalars of numpy (``np.int64(8)``) are
    accepted like Python ints. Either bound may be ``None`` (unbounded).
    """
    return _check_int(value, name, minimum, maximum, "")


def check_optional_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """:func:`check_int` that also accepts ``None`` (returned as is), e.g. for "automatic"."""
    if value is None:
        return None
    return _check_int(value, name, minimum, maximum, " or None")


def _check_int(
    value: object, name: str, minimum: int | None, maximum: int | None, alternative: str
) -> int:
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{alternative}, got {type(value).__name__}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if maximum is None:
            bound = f" >= {minimum}"
        elif minimum is None:
            bound = f" <= {maximum}"
        else:
            bound = f" in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int{bound}{alternative}, got {v!r}")
    return v


def check_chunk_size(chunk_size: object) -> int | None:
    """Validate a ``chunk_size`` argument (rows per block): an int >= 1, or None for automatic."""
    return check_optional_int(chunk_size, "chunk_size", minimum=1)


def check_device(device: object, name: str = "device") -> torch.device:
    """Return ``device`` as a :class:`torch.device` that exists on this machine.

    Accepts what :class:`torch.device` accepts (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a
    device) for the CPU, an available CUDA GPU or Apple's MPS; anything else is a ``ValueError``
    instead of a ``RuntimeError`` from deep inside torch.
    """
    try:
        dev = torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{name} must name a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} {device!r}: CUDA is not available on this machine; use 'cpu'")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{name} {device!r}: this machine has {count} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name} {device!r}: MPS is not available on this machine; use 'cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"{name} must be 'cpu', 'cuda[:N]' or 'mps', got {device!r}")
    return dev


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a Python float if it is a finite number > 0 (or >= 0 with ``allow_zero``).

    Python and numpy real scalars (``np.float32(0.1)``, ``np.int64(2)``) are numbers; ``bool``,
    strings and tensors are not (``TypeError``).
    """
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = v >= 0 if allow_zero else v > 0
    if not math.isfinite(v) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_probability(value: float, name: str) -> float:
    """Return ``value`` if it lies in [0, 1]."""
    v = check_positive(value, name, allow_zero=True)
    if v > 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return v


def check_choice(value: str, name: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    allowed = tuple(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_reduction(reduction: str) -> str:
    """Validate a torch.nn-style ``reduction`` argument."""
    return check_choice(reduction, "reduction", REDUCTIONS)


def check_views(views: object, *, min_views: int = 2, name: str = "views") -> Tensor:
    """Validate multi-view embeddings of shape ``(N, V, D)`` with ``V >= min_views``."""
    t = check_tensor(views, name)
    if t.dim() != 3:
        raise ValueError(
            f"{name} must have shape (N, V, D) (instances, views, embedding dim); "
            f"got a tensor of rank {t.dim()} with shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    n, v, d = t.shape
    if n < 1 or d < 1:
        raise ValueError(f"{name} must have N >= 1 and D >= 1, got shape {tuple(t.shape)}")
    if v < min_views:
        raise ValueError(
            f"{name} must hold at least {min_views} views per instance (shape (N, V, D) with "
            f"V >= {min_views}); got V = {v}. With a single view, pass labels to define positives."
        )
    return check_finite(t, name)


def check_embeddings(x: object, name: str, *, dim: int | None = None) -> Tensor:
    """Validate a finite floating-point ``(N, D)`` matrix, optionally of embedding size ``dim``."""
    t = check_tensor(x, name)
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D); got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name} must have embedding dim {dim}; got shape {tuple(t.shape)}")
    return check_finite(t, name)


def check_labels(labels: object, n: int, name: str = "labels") -> Tensor:
    """Validate integer ``labels`` of shape ``(n,)``."""
    t = check_tensor(labels, name)
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},), one per instance; got shape {tuple(t.shape)}"
        )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {t.dtype}")
    return t


_KEYWORD_KINDS = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def keyword_parameters(factory: Callable[..., Any]) -> list[str] | None:
    """Names ``factory`` accepts as keywords, or None when it takes ``**kwargs`` (or has no
    inspectable signature) and so accepts any."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [name for name, p in params.items() if p.kind in _KEYWORD_KINDS]


def check_keyword_arguments(
    kwargs: object,
    factory: Callable[..., Any],
    *,
    key: str,
    owner: str,
    exclude: Iterable[str] = (),
    note: str = "",
) -> None:
    """Check that the mapping ``kwargs`` (config key ``key``) holds keyword arguments of ``factory``.

    Names in ``exclude`` are set elsewhere and are not allowed. The error names the unknown
    keys, ``owner`` (e.g. ``"loss 'ntxent'"``) and the allowed keys, followed by ``note``.
    """
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{key} must be a mapping, got {type(kwargs).__name__}")
    names = keyword_parameters(factory)
    if names is None:
        return
    allowed = sorted(set(names) - set(exclude))
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {key} key(s) {unknown} for {owner}; allowed: "
            f"{', '.join(allowed) or '(none)'}{note}"
        )
