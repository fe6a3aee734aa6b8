"""Checkpoints: safetensors tensors plus JSON metadata, written atomically, loaded without pickle.

A training checkpoint is one safetensors file: every tensor of the training state (model, optimizer
moments, loss buffers, RNG states) plus, in the safetensors header, one JSON document with
everything else (epoch and step, optimizer hyper-parameters, scheduler position, Python RNG state,
log offsets). Nothing is ever unpickled: a file that is not valid safetensors (a truncated file, a
pickle) is refused with a :class:`CheckpointError`.

:class:`CheckpointManager` keeps the last ``keep`` checkpoints of a run in ``checkpoints/``: each is
written to a temporary file and renamed into place, then the pointer file ``checkpoints/latest``
(JSON: the kept files, newest last, with their size and SHA-256) is replaced, also atomically, and
only then are older files removed. A run killed at any moment leaves a pointer that names complete
files; a file damaged later on disk fails its checksum and the previous one is used. A pointer that
is itself damaged (not JSON, wrong types, nesting, huge numbers, a name outside the folder) is
reported with a :class:`CheckpointWarning` and the ``step-*.safetensors`` files are tried instead,
newest first. A write that fails part-way (a full disk) raises
:class:`~contrastkit.runs.weights.WriteError`, an ``OSError``, and leaves the previous checkpoint
and the pointer as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from contrastkit.runs.weights import (
    CheckpointError,
    WriteError,
    atomic_write_bytes,
    atomic_write_json,
    load_weights,
    parse_json,
    save_weights,
    weights_metadata,
)

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWarning",
    "WriteError",
    "atomic_write_bytes",
    "atomic_write_json",
    "flatten_optimizer_state",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
    "unflatten_optimizer_state",
    "weights_metadata",
]

CHECKPOINT_FORMAT = "contrastkit-train/1"
_META_KEY = "contrastkit"
#: A pointer file larger than this is damaged (it names a few files).
_MAX_POINTER_BYTES = 1 << 16
#: The largest step number, file size and entry count a pointer may give.
_MAX_STEP = 10**12
_MAX_BYTES = 1 << 50
_MAX_ENTRIES = 1000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: ``validate(tensors, meta)`` raises ``CheckpointError`` (or ``ValueError``) for a checkpoint
#: whose content cannot be resumed from; it is then skipped like a damaged file.
CheckpointValidator = Callable[[Mapping[str, Tensor], Mapping[str, Any]], None]


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of the previous one."""


def state_dict_to_cpu(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """Keep the tensor entries of a module state dict (all entries of nn.Module.state_dict)."""
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


# --------------------------------------------------------------------------------------------------
# training checkpoints: tensors + JSON metadata in one safetensors file


def save_checkpoint(
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` to one safetensors file, atomically."""
    text = json.dumps(meta, sort_keys=True, allow_nan=True)
    save_weights(path, tensors, metadata={_META_KEY: text, "format": CHECKPOINT_FORMAT})


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a training checkpoint written by :func:`save_checkpoint`: ``(tensors, meta)``.

    Only safetensors parsing and ``json.loads`` run on the file's bytes. A missing, truncated or
    foreign file (e.g. a pickle) raises :class:`CheckpointError`.
    """
    p = Path(path)
    tensors = load_weights(p)
    try:
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:  # pragma: no cover - read above
        raise CheckpointError(f"checkpoint {p} is damaged ({exc})") from exc
    if header.get("format") != CHECKPOINT_FORMAT or _META_KEY not in header:
        raise CheckpointError(
            f"{p} is a safetensors file but not a contrastkit training checkpoint "
            f"(format {header.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    try:
        meta = parse_json(header[_META_KEY], f"checkpoint {p}: metadata")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"checkpoint {p} has metadata of type {type(meta).__name__}, not a dict"
        )
    return tensors, meta


def flatten_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``"<param id>.<name>"``) and JSON metadata."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    groups = [dict(g) for g in state["param_groups"]]
    for g in groups:
        for key, value in list(g.items()):
            if isinstance(value, tuple):
                g[key] = list(value)
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(
    tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """Rebuild an ``optimizer.state_dict()`` from :func:`flatten_optimizer_state`'s output."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, _, name = key.partition(".")
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = [dict(g) for g in meta["param_groups"]]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_STEP_FILE = re.compile(r"^step-(\d+)\.safetensors$")


def _step_of(path: Path) -> int:
    match = _STEP_FILE.match(path.name)
    return int(match.group(1)) if match else -1


def _is_count(value: object, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def _pointer_entry_problem(entry: object) -> str | None:
    """Why a pointer entry cannot be trusted, or None."""
    if not isinstance(entry, dict):
        return f"an entry is a {type(entry).__name__}, not a mapping"
    name = entry.get("file")
    if not isinstance(name, str) or not _STEP_FILE.match(name):
        return (
            f"entry file {str(name)[:80]!r} is not a step-NNNNNNNN.safetensors name in the folder"
        )
    if "step" in entry and not (_is_count(entry["step"], _MAX_STEP)):
        return f"entry step {str(entry['step'])[:40]} is not a step number"
    if "step" in entry and entry["step"] != _step_of(Path(name)):
        return f"entry step {entry['step']} does not match its file {name}"
    if "bytes" in entry and not _is_count(entry["bytes"], _MAX_BYTES):
        return f"entry size {str(entry['bytes'])[:40]} is not a byte count"
    sha = entry.get("sha256")
    if "sha256" in entry and not (isinstance(sha, str) and _SHA256.match(sha)):
        return f"entry sha256 {str(sha)[:80]!r} is not a hex SHA-256"
    return None


class CheckpointManager:
    """The rotating training checkpoints of one run directory (``<run>/checkpoints``).

    Args:
        directory: the checkpoint folder.
        keep: how many checkpoints to keep (>= 1; 2 keeps the previous good one).
    """

    POINTER = "latest"

    def __init__(self, directory: str | os.PathLike[str], *, keep: int = 2) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive integer, got {keep!r}")
        self.directory = Path(directory)
        self.keep = keep

    @staticmethod
    def file_name(step: int) -> str:
        return f"step-{step:08d}.safetensors"

    def entries(self) -> list[dict[str, Any]]:
        """The checkpoints the pointer names, oldest first (``[]`` if there is no valid pointer)."""
        return self._read_pointer()[0]

    def _read_pointer(self) -> tuple[list[dict[str, Any]], str | None]:
        """``(entries, None)`` for a valid pointer; ``([], why)`` for a damaged or missing one.

        Every entry must name a ``step-NNNNNNNN.safetensors`` file of this folder (no path), with
        a matching step, a byte count and a hex SHA-256 where given: a pointer is trusted only
        as a whole.
        """
        pointer = self.directory / self.POINTER
        if not pointer.is_file():
            return [], None
        try:
            if pointer.stat().st_size > _MAX_POINTER_BYTES:
                return [], f"it is larger than {_MAX_POINTER_BYTES} bytes"
            data = parse_json(pointer.read_bytes(), str(pointer))
        except (OSError, ValueError) as exc:
            return [], str(exc).removeprefix(f"{pointer}: ").removesuffix("; the file is damaged")
        entries = data.get("checkpoints") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not 0 < len(entries) <= _MAX_ENTRIES:
            return [], "it does not hold a list of checkpoints"
        for entry in entries:
            problem = _pointer_entry_problem(entry)
            if problem is not None:
                return [], problem
        return entries, None

    def _on_disk(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _STEP_FILE.match(p.name)]
        return sorted(found, key=_step_of)

    def save(self, step: int, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> Path:
        """Write the checkpoint of ``step``, then the pointer, then drop the ones beyond keep.

        Raises:
            WriteError: The checkpoint or the pointer could not be written (e.g. the disk is
                full); what was there before is unchanged and the new file is removed, and the
                message says which checkpoint a resumed run will start from.
        """
        name = self.file_name(step)
        path = self.directory / name
        previous = self.entries()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, tensors, meta)
            entry = {
                "file": name,
                "step": int(step),
                "bytes": path.stat().st_size,
                "sha256": _sha256(path),
            }
            kept = [
                e for e in previous if e["file"] != name and (self.directory / e["file"]).is_file()
            ]
            kept = [*kept[-(self.keep - 1) :], entry] if self.keep > 1 else [entry]
            atomic_write_json(
                self.directory / self.POINTER, {"format": CHECKPOINT_FORMAT, "checkpoints": kept}
            )
        except OSError as exc:
            if not any(e["file"] == name for e in previous):
                path.unlink(missing_ok=True)  # not named by the pointer: free its space
            raise self._write_error(path, exc, previous) from exc
        names = {e["file"] for e in kept}
        for p in self._on_disk():
            if p.name not in names:
                p.unlink(missing_ok=True)
        for p in self.directory.glob(".step-*.tmp"):
            p.unlink(missing_ok=True)
        return path

    def _write_error(self, path: Path, exc: OSError, previous: list[dict[str, Any]]) -> WriteError:
        cause = exc.__cause__ if isinstance(exc, WriteError) else exc
        reason = (cause.strerror if isinstance(cause, OSError) else None) or str(cause)
        if previous:
            kept = (
                f"the previous checkpoint {self.directory / previous[-1]['file']} is intact; "
                f"free space and continue with `contrastkit fit --resume {self.directory.parent}`"
            )
        else:
            kept = "the run has no earlier checkpoint"
        return WriteError(exc.errno, f"cannot write checkpoint {path}: {reason}; {kept}")

    def clear(self) -> None:
        """Remove every checkpoint and the pointer (a fresh run in an old directory)."""
        (self.directory / self.POINTER).unlink(missing_ok=True)
        for p in self._on_disk():
            p.unlink(missing_ok=True)

    def verify(self, entry: Mapping[str, Any]) -> Path:
        """Check that a pointer entry's file exists with the recorded size and SHA-256."""
        path = self.directory / str(entry["file"])
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} is missing")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise CheckpointError(
                f"checkpoint {path} is truncated or damaged: {size} bytes on disk, "
                f"{entry['bytes']} written"
            )
        if "sha256" in entry and _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {path} is damaged: its SHA-256 does not match")
        return path

    def load_latest(
        self, validate: CheckpointValidator | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Any], Path] | None:
        """Load the newest good checkpoint; ``None`` if the run has none.

        A damaged newest checkpoint is reported with a :class:`CheckpointWarning` naming it and the
        reason, and the previous one is used. Without a pointer, or with a damaged one (also
        reported with a warning), the ``step-*.safetensors`` files found are tried newest first.
        If every checkpoint is damaged a :class:`CheckpointError` lists them.

        Args:
            validate: Called with each checkpoint's tensors and metadata before it is returned; a
                ``CheckpointError`` or ``ValueError`` from it marks the checkpoint as damaged
                (e.g. :func:`contrastkit.train.state.check_state`).
        """
        entries, pointer_problem = self._read_pointer()
        candidates: list[tuple[Path, Mapping[str, Any] | None]]
        problems: list[str] = []
        if entries:
            candidates = [(self.directory / e["file"], e) for e in reversed(entries)]
        else:
            candidates = [(p, None) for p in reversed(self._on_disk())]
            if pointer_problem is not None:  # said once: with the checkpoint used, or the error
                found = ", ".join(p.name for p, _ in candidates) or "none"
                problems.append(
                    f"{self.directory / self.POINTER} is damaged ({pointer_problem}); the step "
                    f"files found instead: {found}"
                )
        if not candidates:
            if problems:
                raise CheckpointError(f"no usable checkpoint in {self.directory}: {problems[0]}")
            return None
        for path, entry in candidates:
            try:
                if entry is not None:
                    self.verify(entry)
                tensors, meta = load_checkpoint(path)
                if validate is not None:
                    validate(tensors, meta)
            except (CheckpointError, ValueError) as exc:
                text = str(exc)
                problems.append(text if str(path) in text else f"{path}: {text}")
                continue
            if problems:
                warnings.warn(
                    "; ".join(problems)
                    + f" -- resuming from the {'previous ' if entries else ''}checkpoint {path}",
                    CheckpointWarning,
                    stacklevel=2,
                )
            return tensors, meta, path
        raise CheckpointError(
            "no usable checkpoint in " + str(self.directory) + ": " + "; ".join(problems)
        )
