"""Feature extraction from a frozen encoder, and the input checks shared by ``contrastkit.eval``.

Every evaluation function accepts torch tensors or numpy arrays. The private helpers here convert
them, check shapes, dtypes and finiteness, and raise a ``ValueError``/``TypeError`` that says what
was expected and what came.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit._validation import check_finite, check_int

__all__ = ["extract_features"]


def _as_tensor(x: object, name: str) -> Tensor:
    """Return ``x`` as a tensor (numpy arrays are converted without copying where possible)."""
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise TypeError(f"{name} must be a numeric array, got a numpy array of dtype object")
        if not x.flags.writeable:
            x = x.copy()
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def _check_int(value: object, name: str, *, minimum: int = 1) -> int:
    """:func:`contrastkit._validation.check_int` with the evaluation default ``minimum=1``."""
    return check_int(value, name, minimum=minimum)


def _as_features(x: object, name: str, *, min_rows: int = 1, keep_float64: bool = False) -> Tensor:
    """Validate a finite ``(N, D)`` feature matrix and return it as a floating-point tensor.

    Integer and boolean inputs are converted to float32; half precision is promoted to float32;
    float64 is kept only with ``keep_float64`` (else converted to float32). The device is kept.
    """
    t = _as_tensor(x, name)
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {t.dtype}")
    if t.dim() != 2:
        raise ValueError(
            f"{name} must have shape (N, D) (samples, feature dim); got shape {tuple(t.shape)}"
        )
    n, d = t.shape
    if n < min_rows or d < 1:
        raise ValueError(
            f"{name} must have at least {min_rows} row(s) and one column; "
            f"got shape {tuple(t.shape)}"
        )
    if not (keep_float64 and t.dtype == torch.float64):
        t = t.to(torch.float32)
    return check_finite(t, name)


def _as_labels(y: object, n: int, name: str) -> Tensor:
    """Validate integer labels of shape ``(n,)`` and return them as an int64 tensor."""
    t = _as_tensor(y, name)
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},), one label per sample; got shape {tuple(t.shape)}"
        )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got dtype {t.dtype}")
    return t.to(torch.int64)


def _check_same_dim(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same feature dim; got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def _first_output(out: object) -> Tensor:
    while isinstance(out, tuple | list):
        if len(out) == 0:
            raise ValueError("the encoder returned an empty tuple/list; expected a feature tensor")
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the encoder must return a tensor (or a tuple of them), got {type(out).__name__}"
        )
    return out


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def extract_features(
    encoder: nn.Module,
    images: Tensor | np.ndarray,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> Tensor:
    """Run a frozen encoder over a data tensor in batches and collect its features.

    The encoder runs in eval mode under ``torch.no_grad()``; afterwards every submodule gets back
    the train/eval flag it had before (also when the encoder raises). If the encoder returns a tuple
    or list (e.g. ``(features, projections)``), its first element is used. Outputs with more than
    two dimensions are flattened to ``(B, -1)``.

    Args:
        encoder: The model mapping a batch ``(B, ...)`` to features ``(B, F)``.
        images: The inputs, shape ``(N, ...)``, a tensor or numpy array; it is sent to ``device``
            one batch at a time (its dtype is kept, so pass what the encoder expects).
        batch_size: Rows per forward pass.
        device: Where to run the encoder's forward passes; ``None`` uses the device of the encoder's
            first parameter (CPU for a parameter-free encoder). The encoder itself is not moved.

    Returns:
        A contiguous float32 CPU tensor of shape ``(N, F)``.

    Raises:
        TypeError: If ``encoder`` is not an ``nn.Module`` or ``images`` is not a tensor/array.
        ValueError: If ``images`` is empty or a scalar, ``batch_size < 1``, or the encoder returns a
            non-finite value or a batch of the wrong length.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    x = _as_tensor(images, "images")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"images must have shape (N, ...) with N >= 1; got shape {tuple(x.shape)}")
    if x.is_floating_point():
        check_finite(x, "images")
    batch_size = _check_int(batch_size, "batch_size")
    dev = torch.device(device) if device is not None else _module_device(encoder)

    modes: Sequence[tuple[nn.Module, bool]] = [(m, m.training) for m in encoder.modules()]
    outputs: list[Tensor] = []
    try:
        encoder.eval()
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                batch = x[start : start + batch_size].to(dev, non_blocking=True)
                out = _first_output(encoder(batch))
                if out.dim() == 0 or out.shape[0] != batch.shape[0]:
                    raise ValueError(
                        f"the encoder returned shape {tuple(out.shape)} for a batch of "
                        f"{batch.shape[0]} inputs; expected ({batch.shape[0]}, F)"
                    )
                out = out.reshape(out.shape[0], -1) if out.dim() != 2 else out
                outputs.append(out.detach().to("cpu", torch.float32))
    finally:
        for module, mode in modes:
            module.training = mode
    features = torch.cat(outputs).contiguous()
    return check_finite(features, "encoder output")
