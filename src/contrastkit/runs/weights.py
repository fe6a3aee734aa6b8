"""Safetensors files, written atomically and read without pickle.

Every file contrastkit writes into a run directory goes through a temporary file and a rename, so a
run killed at any moment leaves either the old file or the new one, never half of one. Weights are
safetensors (a flat dict of tensors plus string metadata in the header); nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_weights",
    "save_weights",
    "weights_metadata",
]


class CheckpointError(ValueError):
    """A checkpoint or weights file is missing, truncated or does not match the model."""


def _atomic_replace(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    _atomic_replace(Path(path), write)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_weights(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save a flat dict of tensors as safetensors, atomically (temporary file + rename).

    Args:
        path: The file to write.
        tensors: Name -> tensor (moved to the CPU and made contiguous).
        metadata: String metadata for the file's header (e.g. :func:`weights_header`).
    """
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        save_file(flat, tmp, metadata=dict(metadata or {}))

    _atomic_replace(Path(path), write)


def load_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load safetensors weights; a missing or damaged file raises :class:`CheckpointError`."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {p} is damaged, truncated or not a safetensors file ({exc}); "
            "contrastkit only reads safetensors and never unpickles a checkpoint"
        ) from exc


def weights_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata in a safetensors file's header (empty if it has none)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}")
    try:
        with safe_open(str(p), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{p} is damaged or not a safetensors file ({exc})") from exc
