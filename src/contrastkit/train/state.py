"""The full state of a training run, to and from (tensors, JSON metadata) for a checkpoint.

What a checkpoint holds, so that a resumed run continues exactly as the uninterrupted one:

- ``model.*``: the encoder and head state dict (parameters and batch-norm buffers);
- ``loss.*``: the loss module's state dict (per-sample state such as iSogCLR's, key queues);
- ``optim.*`` + ``meta["optimizer"]``: the optimizer state, moments as tensors, the rest as JSON;
- ``meta["scheduler"]``: the LR scheduler's position (plain numbers);
- ``meta["progress"]``: epoch, batches done in that epoch, global step, the running epoch loss sums.
  The batch order is a pure function of ``(seed, epoch)`` and the views of a step a pure function of
  ``(seed, epoch, step, rank)`` (:mod:`contrastkit.distributed`), so this position is all the
  sampler needs;
- ``rng.*`` + ``meta["rng"]``: the global torch CPU generator, the CUDA generators (when CUDA is in
  use), and numpy's and Python's global generators.

A checkpoint file may be damaged or crafted, so nothing in it is trusted: :func:`check_state`
checks every plain value (types, ranges, finite numbers, list lengths) and the sizes of the RNG
tensors before anything is restored, and :func:`restore_state` checks every tensor's shape against
the model, loss and optimizer it goes into before loading it. Both raise
:class:`~contrastkit.train.checkpoint.CheckpointError` naming the entry at fault.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from contrastkit.runs.weights import check_state_shapes
from contrastkit.train.checkpoint import (
    CheckpointError,
    flatten_optimizer_state,
    unflatten_optimizer_state,
)

__all__ = [
    "Progress",
    "capture_rng",
    "capture_state",
    "check_state",
    "restore_rng",
    "restore_state",
]

#: Bounds of the counters a checkpoint may hold (steps, samples, epochs, log offsets).
_MAX_COUNT = 2**53
#: Python's Mersenne Twister state: 624 words and the position.
_MT_WORDS = 624


@dataclass
class Progress:
    """Where a run stands: ``step_in_epoch`` batches of epoch ``epoch`` (0-based) are done.

    ``loss_sum`` and ``samples`` accumulate ``loss * global batch`` and the global batch over the
    steps of the current epoch, so the epoch's mean loss comes out the same after a resume.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    samples: int = 0


def capture_rng() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The global random generators: torch CPU (and CUDA if initialised), numpy, Python."""
    tensors: dict[str, Tensor] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {
        "numpy": {
            "kind": kind,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    return tensors, meta


def restore_rng(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Set the global generators from :func:`capture_rng`'s output."""
    torch.set_rng_state(tensors["torch"].to(torch.uint8))
    cuda = sorted((int(k.split(".")[1]), v) for k, v in tensors.items() if k.startswith("cuda."))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([v.to(torch.uint8) for _, v in cuda])
    if "numpy" in tensors and "numpy" in meta:
        m = meta["numpy"]
        keys = tensors["numpy"].numpy().astype(np.uint32)
        np.random.set_state((m["kind"], keys, m["pos"], m["has_gauss"], m["cached"]))
    if "python" in meta:
        p = meta["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# --------------------------------------------------------------------------------------------------
# checking a checkpoint before anything is restored


def _is_int(value: object, lo: int = 0, hi: int = _MAX_COUNT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _is_number(value: object) -> bool:
    """A finite float, or an int within ``±2**53`` (no bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) <= _MAX_COUNT if isinstance(value, int) else math.isfinite(value)


def _mapping(meta: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = meta.get(key)
    if not isinstance(value, Mapping):
        raise CheckpointError(f"'{key}' must be a mapping, got {type(value).__name__}")
    return value


def _check_progress(meta: Mapping[str, Any], epochs: int | None, steps: int | None) -> None:
    progress = _mapping(meta, "progress")
    names = {f.name for f in fields(Progress)}
    if set(progress) != names:
        raise CheckpointError(
            f"'progress' must hold exactly {sorted(names)}, got {sorted(map(str, progress))}"
        )
    last_epoch = _MAX_COUNT if epochs is None else epochs
    if not _is_int(progress["epoch"], 0, last_epoch):
        raise CheckpointError(
            f"progress epoch must be an integer in [0, {last_epoch}], got "
            f"{str(progress['epoch'])[:40]}"
        )
    last_step = _MAX_COUNT if steps is None else steps
    if not _is_int(progress["step_in_epoch"], 0, last_step):
        raise CheckpointError(
            f"progress step_in_epoch must be an integer in [0, {last_step}] (steps per epoch), "
            f"got {str(progress['step_in_epoch'])[:40]}"
        )
    for name in ("global_step", "samples"):
        if not _is_int(progress[name]):
            raise CheckpointError(
                f"progress {name} must be an integer in [0, 2**53], got {str(progress[name])[:40]}"
            )
    if not _is_number(progress["loss_sum"]):
        raise CheckpointError(
            f"progress loss_sum must be a finite number, got {str(progress['loss_sum'])[:40]}"
        )


def _check_numbers(values: Mapping[str, Any], where: str) -> None:
    """Numbers (and lists of numbers) must be finite; ``params`` distinct parameter ids."""
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, bool) or item is None or isinstance(item, str):
                continue
            if isinstance(item, int) and abs(item) <= _MAX_COUNT:
                continue
            if isinstance(item, float) and math.isfinite(item):
                continue
            raise CheckpointError(f"{where} entry {key!r} must hold finite numbers, got {item!r}")


def _check_optimizer(meta: Mapping[str, Any]) -> None:
    optimizer = _mapping(meta, "optimizer")
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise CheckpointError("optimizer 'param_groups' must be a list of mappings")
    ids: list[object] = []
    for i, group in enumerate(groups):
        params = group.get("params")
        if not isinstance(params, list) or not all(_is_int(p, 0, 2**31) for p in params):
            raise CheckpointError(f"optimizer param group {i}: 'params' must be a list of ids")
        ids.extend(params)
        _check_numbers({k: v for k, v in group.items() if k != "params"}, f"optimizer group {i}")
    if len(set(ids)) != len(ids):
        raise CheckpointError("optimizer param groups list a parameter id twice")
    scalars = optimizer.get("scalars", {})
    if not isinstance(scalars, Mapping) or not all(
        isinstance(v, Mapping) and str(k).isdigit() and int(k) in ids for k, v in scalars.items()
    ):
        raise CheckpointError("optimizer 'scalars' must map parameter ids to mappings")
    for pid, entry in scalars.items():
        _check_numbers(entry, f"optimizer state of parameter {pid}")


def _check_scheduler(meta: Mapping[str, Any]) -> None:
    scheduler = _mapping(meta, "scheduler")
    for key in ("last_epoch", "_step_count"):
        if key in scheduler and not _is_int(scheduler[key], -1):
            raise CheckpointError(
                f"scheduler {key} must be an integer in [-1, 2**53], got {str(scheduler[key])[:40]}"
            )
    for key in ("base_lrs", "_last_lr"):
        if key in scheduler and not isinstance(scheduler[key], list):
            raise CheckpointError(f"scheduler {key} must be a list of numbers")
    _check_numbers(scheduler, "scheduler")


def _check_rng(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    expected = torch.get_rng_state()
    got = tensors.get("rng.torch")
    if got is None or got.dtype != torch.uint8 or tuple(got.shape) != tuple(expected.shape):
        what = "missing" if got is None else f"{got.dtype} of shape {tuple(got.shape)}"
        raise CheckpointError(
            f"rng.torch must be uint8 of shape {tuple(expected.shape)} (torch's CPU generator), "
            f"got {what}"
        )
    rng = _mapping(meta, "rng")
    numpy_keys = tensors.get("rng.numpy")
    if numpy_keys is not None or "numpy" in rng:
        if (
            numpy_keys is None
            or tuple(numpy_keys.shape) != (_MT_WORDS,)
            or numpy_keys.is_floating_point()
        ):
            raise CheckpointError(
                f"rng.numpy must hold the {_MT_WORDS} words of numpy's generator, got "
                f"{'none' if numpy_keys is None else tuple(numpy_keys.shape)}"
            )
        if int(numpy_keys.min()) < 0 or int(numpy_keys.max()) >= 2**32:
            raise CheckpointError("rng.numpy words must lie in [0, 2**32)")
        state = _mapping(rng, "numpy")
        if (
            state.get("kind") != "MT19937"
            or not _is_int(state.get("pos"), 0, _MT_WORDS)
            or state.get("has_gauss") not in (0, 1)
            or not _is_number(state.get("cached"))
        ):
            raise CheckpointError(
                "rng numpy state must be kind 'MT19937', pos in [0, 624], has_gauss 0 or 1 and a "
                f"finite cached value; got {dict(state)!r:.200}"
            )
    if "python" in rng:
        state = _mapping(rng, "python")
        words = state.get("state")
        if (
            state.get("version") != 3
            or not isinstance(words, list)
            or len(words) != _MT_WORDS + 1
            or not all(_is_int(w, 0, 2**32 - 1) for w in words[:-1])
            or not _is_int(words[-1], 0, _MT_WORDS)
            or not (state.get("gauss") is None or _is_number(state.get("gauss")))
        ):
            size = len(words) if isinstance(words, list) else type(words).__name__
            raise CheckpointError(
                f"rng python state must be version 3 with {_MT_WORDS + 1} words, got {size}"
            )


def _check_extras(meta: Mapping[str, Any]) -> None:
    """What the trainer adds: its config, world size, last epoch's loss and log offsets."""
    if "config" in meta and not isinstance(meta["config"], Mapping):
        raise CheckpointError(f"'config' must be a mapping, got {type(meta['config']).__name__}")
    if "world_size" in meta and not _is_int(meta["world_size"], 1, 2**20):
        raise CheckpointError(
            f"world_size must be a positive integer, got {str(meta['world_size'])[:40]}"
        )
    loss = meta.get("last_epoch_loss", math.nan)
    if isinstance(loss, bool) or not isinstance(loss, int | float) or abs(loss) > 1e300:
        raise CheckpointError(f"last_epoch_loss must be a number or NaN, got {str(loss)[:40]}")
    logs = meta.get("logs", {})
    if not isinstance(logs, Mapping):
        raise CheckpointError(
            f"'logs' must map log files to byte offsets, got {type(logs).__name__}"
        )
    for name, offset in logs.items():
        if not _is_int(offset):
            raise CheckpointError(
                f"log offset of {name} must be a byte count in [0, 2**53], got {str(offset)[:40]}"
            )


def check_state(
    tensors: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> None:
    """Check a training checkpoint's plain values and RNG tensors before anything is restored.

    Every number read from the metadata is bounded (an epoch within the run's ``epochs``, a step
    within ``steps_per_epoch``, counters and log offsets in ``[0, 2**53]``, finite learning rates
    and losses) and every list has the length its generator needs, so that no value from a damaged
    or crafted file reaches an allocation, a log truncation or a generator unchecked.

    Args:
        tensors: The checkpoint's tensors.
        meta: Its metadata (:func:`capture_state`'s layout).
        epochs: The run's number of epochs (None: not bounded by it).
        steps_per_epoch: Optimizer steps per epoch (None: not bounded by it).

    Raises:
        CheckpointError: The first value that is missing, of the wrong type or out of range.
    """
    try:
        _check_progress(meta, epochs, steps_per_epoch)
        _check_optimizer(meta)
        _check_scheduler(meta)
        _check_rng(tensors, meta)
        _check_extras(meta)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"the training state is incomplete or malformed ({exc!r})") from exc


def _check_optimizer_tensors(
    optimizer: Optimizer, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> None:
    """Every moment tensor must have the shape of the parameter it belongs to."""
    groups: Sequence[Mapping[str, Any]] = meta["param_groups"]
    own = optimizer.param_groups
    if len(groups) != len(own) or any(
        len(g["params"]) != len(o["params"]) for g, o in zip(groups, own, strict=True)
    ):
        raise CheckpointError(
            f"the checkpoint's optimizer has {[len(g['params']) for g in groups]} parameters per "
            f"group, this run's has {[len(o['params']) for o in own]}"
        )
    params = {
        int(pid): p
        for g, o in zip(groups, own, strict=True)
        for pid, p in zip(g["params"], o["params"], strict=True)
    }
    for key, value in tensors.items():
        pid = key.partition(".")[0]
        if not pid.isdigit() or int(pid) not in params:
            raise CheckpointError(f"optimizer state entry {key!r} names no parameter of this run")
        shape = tuple(params[int(pid)].shape)
        if value.dim() > 0 and tuple(value.shape) != shape:
            raise CheckpointError(
                f"optimizer state entry {key!r} has shape {tuple(value.shape)}, its parameter "
                f"has shape {shape}"
            )


def _prefixed(prefix: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def _strip(prefix: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    head = prefix + "."
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}


def capture_state(
    *,
    model: nn.Module,
    loss: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    progress: Progress,
    extra: Mapping[str, Any] | None = None,
    modules: Mapping[str, nn.Module] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Everything needed to continue the run, as ``(tensors, JSON-ready metadata)``.

    ``modules`` are further trained modules (e.g. a pretext head), saved under their names.
    """
    tensors: dict[str, Tensor] = {}
    tensors.update(_prefixed("model", model.state_dict()))
    tensors.update(_prefixed("loss", loss.state_dict()))
    for name, module in (modules or {}).items():
        tensors.update(_prefixed(f"module.{name}", module.state_dict()))
    optim_tensors, optim_meta = flatten_optimizer_state(optimizer.state_dict())
    tensors.update(_prefixed("optim", optim_tensors))
    rng_tensors, rng_meta = capture_rng()
    tensors.update(_prefixed("rng", rng_tensors))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta: dict[str, Any] = {
        "progress": asdict(progress),
        "optimizer": optim_meta,
        "scheduler": sched,
        "rng": rng_meta,
    }
    meta.update(extra or {})
    return tensors, meta


def _module_states(
    tensors: Mapping[str, Tensor],
    model: nn.Module,
    loss: nn.Module,
    modules: Mapping[str, nn.Module] | None,
) -> list[tuple[nn.Module, dict[str, Tensor], str]]:
    """``(module, its entries, what)`` for every module, each entry's shape checked."""
    parts = [
        (model, _strip("model", tensors), "model"),
        (loss, _strip("loss", tensors), "loss state"),
    ]
    for name, module in (modules or {}).items():
        parts.append((module, _strip(f"module.{name}", tensors), f"{name} state"))
    for module, state, what in parts:
        check_state_shapes(module.state_dict(), state, what=f"the checkpoint's {what} entries")
    return parts


def restore_state(
    tensors: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    *,
    model: nn.Module,
    loss: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    modules: Mapping[str, nn.Module] | None = None,
    source: object = None,
) -> Progress:
    """Load :func:`capture_state`'s output into freshly built objects; returns the progress.

    Every tensor's shape is checked against the object it goes into before it is loaded (model,
    loss state, further modules, optimizer moments), so a checkpoint that does not match the run
    is refused before it changes anything; :func:`check_state` should have checked the plain
    values first.

    Args:
        tensors: The checkpoint's tensors.
        meta: Its metadata.
        model: The run's model.
        loss: The run's loss module.
        optimizer: The run's optimizer.
        scheduler: The run's learning-rate schedule.
        modules: Further trained modules, by the names :func:`capture_state` saved them under.
        source: The checkpoint file, named in error messages.

    Raises:
        CheckpointError: A part of the state is missing or does not match the run (it names
            ``source`` and the entry).
    """
    prefix = f"{source}: " if source is not None else ""
    try:
        progress = Progress(**meta["progress"])
        parts = _module_states(tensors, model, loss, modules)
        optim_tensors = _strip("optim", tensors)
        _check_optimizer_tensors(optimizer, optim_tensors, meta["optimizer"])
        for module, state, _ in parts:  # every shape is checked: now load
            module.load_state_dict(state)
        optimizer.load_state_dict(unflatten_optimizer_state(optim_tensors, meta["optimizer"]))
        scheduler.load_state_dict(
            {**meta["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)}
        )
        restore_rng(_strip("rng", tensors), meta["rng"])
    except CheckpointError as exc:
        raise CheckpointError(f"{prefix}{exc}") from exc
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, RuntimeError) as exc:
        raise CheckpointError(
            f"{prefix}the checkpoint lacks part of the training state or does not match this "
            f"run ({exc!r:.300})"
        ) from exc
    return progress
