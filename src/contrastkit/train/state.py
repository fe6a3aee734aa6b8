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
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from contrastkit.train.checkpoint import (
    CheckpointError,
    flatten_optimizer_state,
    unflatten_optimizer_state,
)

__all__ = ["Progress", "capture_rng", "capture_state", "restore_rng", "restore_state"]


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


def _load_module(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"the checkpoint's {what} does not match this run's: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"the checkpoint's {what} entry {key!r} has shape {tuple(value.shape)}, "
                f"this run's has {tuple(own[key].shape)}"
            )
    module.load_state_dict(dict(state))


def restore_state(
    tensors: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    *,
    model: nn.Module,
    loss: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    modules: Mapping[str, nn.Module] | None = None,
) -> Progress:
    """Load :func:`capture_state`'s output into freshly built objects; returns the progress."""
    try:
        progress = Progress(**meta["progress"])
        _load_module(model, _strip("model", tensors), "model")
        _load_module(loss, _strip("loss", tensors), "loss state")
        for name, module in (modules or {}).items():
            _load_module(module, _strip(f"module.{name}", tensors), f"{name} state")
        optimizer.load_state_dict(
            unflatten_optimizer_state(_strip("optim", tensors), meta["optimizer"])
        )
        scheduler.load_state_dict(
            {**meta["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)}
        )
        restore_rng(_strip("rng", tensors), meta["rng"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint lacks part of the training state ({exc!r})") from exc
    return progress
