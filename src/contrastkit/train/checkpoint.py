"""Checkpoints: safetensors weights plus JSON metadata, written atomically, loaded without pickle."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = ["CheckpointError", "atomic_write_bytes", "atomic_write_json", "load_weights", "save_weights"]


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or does not match the model."""


def _atomic_replace(path: Path, write: Any) -> None:
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
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Save a flat dict of tensors as safetensors, atomically (temporary file + rename)."""
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
        raise CheckpointError(f"checkpoint {p} is damaged or truncated ({exc})") from exc


def state_dict_to_cpu(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """Keep the tensor entries of a module state dict (all entries of nn.Module.state_dict)."""
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
