"""Safetensors and JSON files, written atomically and read without pickle or trust.

Every file contrastkit writes into a run directory goes through a temporary file and a rename, so a
run killed at any moment leaves either the old file or the new one, never half of one; a write
that fails (a full disk) removes its temporary file and raises :class:`WriteError`, leaving the
old file as it was. Weights are safetensors (a flat dict of tensors plus string metadata in the
header); nothing is ever unpickled. JSON read back from a run directory (:func:`read_json`) may
be damaged or hostile: every way it can fail to parse (bad syntax, nesting deeper than the parser
follows, numbers beyond Python's digit limit, bytes that are not UTF-8) is one ``ValueError`` that
names the file.
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
    "WriteError",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_state_shapes",
    "load_weights",
    "parse_json",
    "read_json",
    "save_weights",
    "weights_metadata",
]


class CheckpointError(ValueError):
    """A checkpoint or weights file is missing, truncated or does not match the model."""


class WriteError(OSError):
    """A file could not be written (e.g. the disk is full); the previous file is unchanged.

    An ``OSError``: the environment failed, not the input (``contrastkit`` exits with code 1).
    """


def _atomic_replace(path: Path, write: Callable[[str], None]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            state = "is unchanged" if path.exists() else "was not created"
            raise WriteError(
                exc.errno, f"cannot write {path}: {exc.strerror or exc}; the file {state}"
            ) from exc
        raise


def parse_json(text: str | bytes, source: str) -> Any:
    """Parse JSON read from ``source`` (a file name, for the message); any failure is one error.

    Args:
        text: The document.
        source: Where it comes from, e.g. the file's path.

    Returns:
        The parsed value.

    Raises:
        ValueError: The text is not JSON, is nested deeper than the parser follows, holds an
            integer beyond Python's digit limit, or is not UTF-8; the message names ``source``.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(
            f"{source}: JSON nested too deeply to read (a run file holds a few levels); "
            "the file is damaged"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc}); the file is damaged") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # digit limit, bad bytes
        raise ValueError(f"{source}: cannot read it as JSON ({exc}); the file is damaged") from exc


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read and parse a JSON file of a run directory (:func:`parse_json`; errors name ``path``).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file cannot be read as JSON.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{p}: cannot read it ({exc.strerror or exc})") from exc
    return parse_json(data, str(p))


def check_state_shapes(
    expected: Mapping[str, Tensor], stored: Mapping[str, Tensor], *, what: str
) -> None:
    """Check that ``stored`` has exactly the keys of ``expected``, each with the same shape.

    Run before a state dict is loaded (``expected`` may live on the ``meta`` device), so that a
    file that does not match its model is refused with the entries at fault instead of failing
    inside ``load_state_dict``.

    Args:
        expected: The model's own state dict.
        stored: The tensors read from a file.
        what: What ``stored`` is, for the message (e.g. "the weights in run/model.safetensors").

    Raises:
        CheckpointError: Missing or unexpected keys, or an entry of another shape.
    """
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{what} do not match the model: {len(missing)} entries missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}"
        )
    for key, value in stored.items():
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want:
            raise CheckpointError(
                f"{what} do not match the model: entry {key!r} has shape {tuple(value.shape)}, "
                f"the model's has {want}"
            )


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
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p} is damaged or not a safetensors file ({exc})") from exc
