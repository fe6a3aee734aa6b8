"""A run that writes a run directory: the part every such run shares, on the training core.

Image runs (:mod:`contrastkit.train.loop`) and two-tower runs (:mod:`contrastkit.train.two_tower`)
differ in how they are built, in what one step computes and in what they evaluate at the end. All
the rest is here, written once: the run directory (:func:`check_out_dir`, a fresh start or the
newest good checkpoint), the epochs on a :class:`~contrastkit.train.core.TrainingCore` with step
and epoch logs, mid-epoch and end-of-epoch checkpoints, and the order of the whole
(:func:`execute`). A kind of run is a :class:`RunParts` subclass: its fields are what it trains,
its methods what differs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contrastkit.distributed import DistContext, ShardedBatchSampler, barrier
from contrastkit.runs import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, TOKENIZER_FILE, WEIGHTS_FILE
from contrastkit.train.checkpoint import CheckpointError, CheckpointManager, atomic_write_json
from contrastkit.train.config import FitConfig
from contrastkit.train.core import (
    StepOutput,
    TrainingCore,
    bf16_is_fast,
    progress_bar,
    resolve_device,
)
from contrastkit.train.logging import EPOCH_LOG, STEP_LOG, RunLogger, truncate_logs
from contrastkit.train.optim import build_optimizer, build_schedule
from contrastkit.train.state import Progress, capture_state, check_state, restore_state

__all__ = [
    "RESUME_FREE_KEYS",
    "RUN_FILES",
    "FitResult",
    "Position",
    "RunParts",
    "check_out_dir",
    "check_resume_config",
    "execute",
    "fork_rng",
    "optimize",
    "run_device",
]

#: The files a run writes at the top of its directory (with ``checkpoints/`` and ``tensorboard/``).
RUN_FILES = (CONFIG_FILE, STEP_LOG, EPOCH_LOG, WEIGHTS_FILE, METRICS_FILE, TOKENIZER_FILE)
TENSORBOARD_DIR = "tensorboard"

#: Config keys that may differ between a run and its resumption (they do not change the training).
RESUME_FREE_KEYS = frozenset(
    {
        "out",
        "progress",
        "threads",
        "device",
        "data_root",
        "tensorboard",
        "evaluate",
        "monitor_every",
        "knn_k",
        "knn_temperature",
        "checkpoint_every",
        "keep_checkpoints",
    }
)


@dataclass(frozen=True)
class FitResult:
    """What a finished run produced (``metrics`` is empty on ranks other than 0)."""

    run_dir: Path
    metrics: dict[str, Any]
    model: nn.Module


@dataclass
class Position:
    """Where a run starts: its progress, the last finished epoch's loss, the checkpoint used."""

    progress: Progress
    last_epoch_loss: float = math.nan
    resumed_from: str | None = None


StepFn = Callable[[Any], StepOutput]


@dataclass(kw_only=True)
class RunParts(ABC):
    """What a run trains with; subclasses say what their steps compute and what they evaluate.

    Attributes:
        config: The run's configuration.
        ctx: The process group (one process: rank 0 of 1).
        device: Where the model trains.
        use_bf16: Whether steps run under bf16 autocast.
        model: What is saved (checkpoints ``model.*``, ``model.safetensors``).
        net: ``model`` or its DDP wrapper (what steps call).
        loss_fn: The loss module (its state is checkpointed as ``loss.*``).
        sampler: The batch order of every epoch.
        optimizer: The optimizer of every trained parameter.
        schedule: The learning-rate schedule.
        extra_modules: Further trained modules outside DDP (checkpointed by name).
        name: What is trained, for error messages.
    """

    config: FitConfig
    ctx: DistContext
    device: torch.device
    use_bf16: bool
    model: nn.Module
    net: nn.Module
    loss_fn: nn.Module
    sampler: ShardedBatchSampler
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)
    name: str = "training"

    @abstractmethod
    def step_for_epoch(self, core: TrainingCore, epoch: int) -> StepFn:
        """The step function of ``epoch`` over the sampler's ``(step, indices)`` batches."""

    @abstractmethod
    def finish(self) -> dict[str, Any]:
        """Save the weights and return the evaluation metrics (rank 0, after the last epoch)."""

    @property
    def hand_averaged(self) -> list[nn.Parameter]:
        """Parameters outside the DDP-wrapped model (the loss's, the extra modules')."""
        params = list(self.loss_fn.parameters())
        for module in self.extra_modules.values():
            params.extend(module.parameters())
        return params

    def after_step_hooks(self) -> list[Callable[[], None]]:
        """Called after every optimizer step (e.g. a momentum encoder's update)."""
        return []

    def train_modules(self) -> list[nn.Module]:
        """The modules put in training mode at the start of every epoch."""
        return [self.net, *self.extra_modules.values()]

    def epoch_metrics(self, epoch: int) -> Mapping[str, float]:
        """Extra values for the epoch's log record (rank 0; e.g. monitoring)."""
        return {}

    def write_fresh_files(self, run_dir: Path) -> None:  # noqa: B027  (optional hook)
        """Files a fresh run writes next to ``config.json`` (rank 0; e.g. a tokenizer)."""


def run_device(config: FitConfig, ctx: DistContext) -> tuple[torch.device, bool]:
    """Set the threads and the seed; the device of this rank and whether bf16 is used."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # the same on every rank: random choices inside a loss agree
    device = resolve_device(config.device)
    if device.type == "cuda" and ctx.distributed:
        device = torch.device("cuda", ctx.local_rank)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_is_fast(device))
    return device, use_bf16


def optimize(
    config: FitConfig,
    ctx: DistContext,
    model: nn.Module,
    extra_params: list[nn.Parameter],
    n_train: int,
) -> tuple[
    ShardedBatchSampler, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, nn.Module
]:
    """The sampler, optimizer, schedule and (under torchrun) DDP wrapper of a run's ``model``.

    ``extra_params`` (a loss's, extra modules') are optimized after the model's and stay outside
    DDP (:attr:`RunParts.hand_averaged`).
    """
    sampler = ShardedBatchSampler(
        n_train, config.batch_size, seed=config.seed, rank=ctx.rank, world_size=ctx.world_size
    )
    optimizer = build_optimizer(config, list(model.parameters()) + extra_params)
    schedule = build_schedule(config, optimizer, len(sampler))
    net: nn.Module = model
    if ctx.distributed:
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return sampler, optimizer, schedule, net


def fork_rng(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Isolate the global generators (evaluation must not change the training stream)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def check_out_dir(path: Path, *, overwrite: bool) -> None:
    """Refuse to start a run in ``path`` when it already holds files, unless ``overwrite``.

    Raises:
        ValueError: ``path`` is a file, or a non-empty directory and ``overwrite`` is False.
    """
    if path.exists() and not path.is_dir():
        raise ValueError(f"the run directory {path} is a file; choose another out (--out)")
    if overwrite or not path.is_dir() or not any(path.iterdir()):
        return
    what = "a contrastkit run" if (path / CONFIG_FILE).is_file() else "files"
    raise ValueError(
        f"{path} already holds {what}; continue it with `contrastkit fit --resume {path}`, choose "
        "another --out, or pass --overwrite to replace the files a run writes (no other file "
        "is touched)"
    )


def check_resume_config(saved: Mapping[str, Any] | None, config: FitConfig) -> None:
    """Refuse to resume with a configuration that trains differently from the checkpoint's."""
    if not saved:
        return
    now = config.to_dict()
    differ = sorted(
        k for k in set(saved) | set(now) if k not in RESUME_FREE_KEYS and saved.get(k) != now.get(k)
    )
    if differ:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
        raise ValueError(
            f"cannot resume: the configuration differs from the checkpoint's in {detail}; only "
            f"{', '.join(sorted(RESUME_FREE_KEYS))} may change"
        )


def _remove_run_files(run_dir: Path, checkpoints: CheckpointManager) -> None:
    """Delete what an earlier run wrote in ``run_dir`` (and nothing else)."""
    checkpoints.clear()
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for events in (run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"):
        events.unlink()


def _set_epoch(loss: nn.Module, epoch: int) -> None:
    """Tell an epoch-aware loss (e.g. a schedule inside iSogCLR) which epoch starts (idempotent)."""
    hook = getattr(loss, "set_epoch", None)
    if callable(hook):
        hook(epoch)


def open_run_dir(parts: RunParts, checkpoints: CheckpointManager, *, resume: bool) -> Position:
    """Restore the newest good checkpoint (``resume``) or start the run directory afresh."""
    config = parts.config
    run_dir = Path(config.out)
    if not resume:
        if parts.ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            _remove_run_files(run_dir, checkpoints)
            atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
            for log in (STEP_LOG, EPOCH_LOG):
                (run_dir / log).write_bytes(b"")
            parts.write_fresh_files(run_dir)
        return Position(Progress())
    loaded = checkpoints.load_latest(
        validate=functools.partial(
            check_state, epochs=config.epochs, steps_per_epoch=len(parts.sampler)
        )
    )
    if loaded is None:
        raise CheckpointError(
            f"nothing to resume in {run_dir}: no checkpoint in {checkpoints.directory}"
        )
    tensors, meta, path = loaded
    check_resume_config(meta.get("config"), config)
    progress = restore_state(
        tensors,
        meta,
        model=parts.model,
        loss=parts.loss_fn,
        optimizer=parts.optimizer,
        scheduler=parts.schedule,
        modules=parts.extra_modules,
        source=path,
    )
    if parts.ctx.is_main:
        truncate_logs(run_dir, meta.get("logs", {}))
    return Position(progress, float(meta.get("last_epoch_loss", math.nan)), str(path))


def train_epochs(
    parts: RunParts,
    position: Position,
    checkpoints: CheckpointManager,
    on_step: Callable[[dict[str, Any]], None] | None,
) -> tuple[TrainingCore, float]:
    """Train from ``position`` to ``config.epochs``; checkpoint and log; the last epoch's loss."""
    config, ctx = parts.config, parts.ctx
    steps_per_epoch = len(parts.sampler)
    logger = RunLogger(
        Path(config.out),
        enabled=ctx.is_main,
        tensorboard=config.tensorboard,
        resume_step=position.progress.global_step if position.resumed_from else None,
    )
    last_epoch_loss = position.last_epoch_loss

    def save_checkpoint() -> None:
        if not ctx.is_main:
            return
        tensors, meta = capture_state(
            model=parts.model,
            loss=parts.loss_fn,
            optimizer=parts.optimizer,
            scheduler=parts.schedule,
            progress=core.progress,
            modules=parts.extra_modules,
            extra={
                "config": config.to_dict(),
                "logs": logger.offsets(),
                "world_size": ctx.world_size,
                "last_epoch_loss": last_epoch_loss,
            },
        )
        checkpoints.save(core.progress.global_step, tensors, meta)

    def checkpoint_mid_epoch(record: dict[str, Any]) -> None:
        every = config.checkpoint_every
        end_of_epoch = core.progress.step_in_epoch == steps_per_epoch
        if every and core.progress.global_step % every == 0 and not end_of_epoch:
            save_checkpoint()

    core = TrainingCore(
        parts.optimizer,
        schedule=parts.schedule,
        device=parts.device,
        bf16=parts.use_bf16,
        grad_clip=config.grad_clip,
        hand_averaged=parts.hand_averaged,
        after_step=parts.after_step_hooks(),
        on_step=[checkpoint_mid_epoch] + ([on_step] if on_step is not None else []),
        logger=logger,
        bar=progress_bar(
            config.epochs * steps_per_epoch,
            initial=position.progress.global_step,
            enabled=config.progress and ctx.is_main,
        ),
        progress=position.progress,
        name=parts.name,
    )
    try:
        for epoch in range(position.progress.epoch, config.epochs):
            _set_epoch(parts.loss_fn, epoch)
            batches: Iterable[Any] = parts.sampler.batches(epoch, start=core.progress.step_in_epoch)
            summary = core.run_epoch(
                epoch, batches, parts.step_for_epoch(core, epoch), train=parts.train_modules()
            )
            last_epoch_loss = summary.loss
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": core.progress.global_step,
                "loss": summary.loss,
                "lr": core.lr,
                "seconds": summary.seconds,
                "samples_per_s": summary.samples_per_s,
            }
            if ctx.is_main:
                for key, value in parts.epoch_metrics(epoch).items():
                    record[key if key not in record else f"monitor_{key}"] = value
            logger.epoch(record)
            save_checkpoint()
    finally:
        core.close()
        logger.close()
    return core, last_epoch_loss


def execute(
    parts: RunParts, *, resume: bool, on_step: Callable[[dict[str, Any]], None] | None
) -> FitResult:
    """Open the run directory, train the epochs, finish: the whole of a built run on this rank."""
    config = parts.config
    checkpoints = CheckpointManager(Path(config.out) / CHECKPOINT_DIR, keep=config.keep_checkpoints)
    position = open_run_dir(parts, checkpoints, resume=resume)
    barrier()
    start = time.perf_counter()
    core, last_epoch_loss = train_epochs(parts, position, checkpoints, on_step)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {}
    if parts.ctx.is_main:
        metrics = parts.finish()
        metrics.update(
            {
                "train_seconds": seconds,
                "epochs": config.epochs,
                "steps": core.progress.global_step,
                "final_loss": last_epoch_loss,
                "precision": "bf16" if parts.use_bf16 else "fp32",
                "device": str(parts.device),
                "world_size": parts.ctx.world_size,
                "resumed_from": position.resumed_from,
            }
        )
        atomic_write_json(Path(config.out) / METRICS_FILE, metrics)
    barrier()
    return FitResult(run_dir=Path(config.out), metrics=metrics, model=parts.model)
