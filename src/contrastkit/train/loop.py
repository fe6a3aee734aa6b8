"""``fit``: views -> encoder -> head -> loss on the training core, checkpoints and resume, then
evaluation.

The steps run on :class:`~contrastkit.train.core.TrainingCore`; ``fit`` is four functions a reader
can hold in mind: :func:`_build` (data, model, loss, optimizer), :func:`_open_run_dir` (a fresh run
directory or the newest checkpoint), :func:`_train_epochs` and :func:`_finish` (weights, metrics).
One code path serves a single process and ``torchrun`` (see :mod:`contrastkit.distributed` for the
gradient convention): the model is wrapped in ``DistributedDataParallel`` when there are several
processes, every loss goes through :class:`~contrastkit.distributed.DistributedLoss`, batches come
from :class:`~contrastkit.distributed.ShardedBatchSampler`, and rank 0 alone writes checkpoints,
logs and the final model, then evaluates it while the other ranks wait.

A run directory holds ``config.json``, ``steps.jsonl`` (one JSON line per optimizer step),
``epochs.jsonl`` (one per epoch), ``checkpoints/`` (the training state every ``checkpoint_every``
steps and at every epoch end; see :mod:`contrastkit.train.checkpoint`), ``model.safetensors``
(encoder and head weights) and ``metrics.json``. ``fit(config, resume=True)`` (``contrastkit fit
--resume RUN_DIR``) continues from the newest good checkpoint, and its step losses and final weights
are those of the uninterrupted run (same seed, same device; bitwise on a CPU).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.data import ArrayDataset
from contrastkit.distributed import (
    DistContext,
    DistributedLoss,
    ShardedBatchSampler,
    all_reduce_mean,
    barrier,
    init_distributed,
    view_generator,
)
from contrastkit.eval import epoch_metrics, extract_features, knn_accuracy, linear_probe
from contrastkit.losses import get_loss, loss_info
from contrastkit.models import ContrastiveModel, count_parameters
from contrastkit.runs import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    build_model,
    load_run,
)
from contrastkit.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_write_json,
    save_weights,
)
from contrastkit.train.config import FitConfig, config_from_mapping
from contrastkit.train.core import (
    StepOutput,
    TrainingCore,
    bf16_is_fast,
    progress_bar,
    require_finite,
    resolve_device,
)
from contrastkit.train.logging import EPOCH_LOG, STEP_LOG, RunLogger, truncate_logs
from contrastkit.train.optim import build_optimizer, build_schedule
from contrastkit.train.state import Progress, capture_state, restore_state
from contrastkit.views import JigsawPretext, RotationPretext, ViewAugment, preset_for_dataset

__all__ = [
    "FitResult",
    "build_model",
    "check_out_dir",
    "evaluate_encoder",
    "fit",
    "load_run",
    "resume_run",
    "summary_line",
]


#: The files a run writes at the top of its directory (with ``checkpoints/`` and ``tensorboard/``).
RUN_FILES = (CONFIG_FILE, STEP_LOG, EPOCH_LOG, WEIGHTS_FILE, METRICS_FILE)
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

#: Names under which a loss constructor takes the dataset size (per-sample state).
_DATASET_SIZE_ARGS = ("num_samples", "data_size", "dataset_size", "n_data", "n_samples", "num_data")

#: The linear probe's weight decay when the training set is too small to choose it on a split.
SMALL_DATA_WEIGHT_DECAY = 1e-4

#: Samples of the train and held-out sets handed to the epoch monitor.
MONITOR_SAMPLES = 1000


@dataclass(frozen=True)
class FitResult:
    """What a finished run produced (``metrics`` is empty on ranks other than 0)."""

    run_dir: Path
    metrics: dict[str, Any]
    model: ContrastiveModel


def build_pretext(
    config: FitConfig, in_dim: int, augment: ViewAugment, image_size: int
) -> RotationPretext | JigsawPretext | None:
    """The config's pretext regulariser (None for ``pretext="none"``).

    Rotated copies and jigsaw tiles are augmented with the training views' pipeline, and jigsaw
    tiles are resized to the image size unless ``pretext_kwargs`` sets ``tile_size``, as in
    ScatSimCLR's reference code.
    """
    kwargs: dict[str, Any] = dict(
        weight=config.pretext_weight,
        start_epoch=config.pretext_start_epoch,
        augment=augment,
        **config.pretext_kwargs,
    )
    if config.pretext == "rotation":
        return RotationPretext(in_dim, **kwargs)
    if config.pretext == "jigsaw":
        kwargs.setdefault("tile_size", image_size)
        return JigsawPretext(in_dim, **kwargs)
    return None


def build_loss(config: FitConfig, dataset_size: int) -> nn.Module:
    """The config's loss with ``reduction="none"`` (the trainer averages the per-anchor terms).

    ``temperature`` is passed unless None, to losses that take one (CACR and GroCo have none); a
    loss whose constructor takes the dataset size (per-sample state, e.g. iSogCLR) gets
    ``dataset_size`` unless ``loss_kwargs`` sets it.
    """
    info = loss_info(config.loss)
    kwargs = dict(config.loss_kwargs)
    try:
        params = inspect.signature(info.factory).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if config.temperature is not None and ("temperature" in params or takes_any):
        kwargs.setdefault("temperature", config.temperature)
    for name in _DATASET_SIZE_ARGS:
        if name in params and name not in kwargs:
            kwargs[name] = dataset_size
    return get_loss(config.loss, reduction="none", **kwargs)


def evaluate_encoder(
    encoder: nn.Module,
    train: ArrayDataset,
    test: ArrayDataset,
    *,
    k: int = 20,
    knn_temperature: float = 0.07,
    device: torch.device | None = None,
) -> dict[str, float]:
    """kNN and linear-probe accuracy of frozen ``encoder`` features (fit on train, test on test).

    A training set smaller than ``k`` is voted on by all its samples; ``knn_k`` in the result
    says which ``k`` was used. A training set too small to hold out a validation split for the
    probe's weight decay gets weight decay 1e-4 without the search.
    """
    train_f = extract_features(encoder, train.images, device=device)
    test_f = extract_features(encoder, test.images, device=device)
    k_used = min(k, len(train))
    knn = knn_accuracy(
        train_f, train.labels, test_f, test.labels, k=k_used, temperature=knn_temperature
    )
    probe = linear_probe(
        train_f, train.labels, test_f, test.labels, fallback_weight_decay=SMALL_DATA_WEIGHT_DECAY
    )
    return {
        "knn_acc": float(knn),
        "knn_k": k_used,
        "linear_acc": float(probe.accuracy),
        "feature_dim": train_f.shape[1],
    }


def _fork_rng(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Isolate the global generators (evaluation must not change the training stream)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _subset(data: ArrayDataset, n: int, seed: int) -> ArrayDataset:
    if len(data) <= n:
        return data
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:n].sort().values
    return ArrayDataset(
        images=data.images[idx],
        labels=data.labels[idx],
        name=data.name,
        num_classes=data.num_classes,
    )


def _monitor(t: _Training, config: FitConfig) -> dict[str, float]:
    """kNN and geometry of the encoder on subsets (:func:`contrastkit.eval.epoch_metrics`).

    The global generators are restored afterwards, so monitoring never changes training.
    """
    was_training = t.model.training
    with _fork_rng(t.device):
        result = epoch_metrics(
            t.model.encoder,
            _subset(t.train, MONITOR_SAMPLES, config.seed),
            _subset(t.test, MONITOR_SAMPLES, config.seed),
            augment=t.augment,
            k=config.knn_k,
        )
    t.model.train(was_training)
    return {str(k): float(v) for k, v in result.items()}


def _set_epoch(loss: nn.Module, epoch: int) -> None:
    """Tell an epoch-aware loss (e.g. a schedule inside iSogCLR) which epoch starts (idempotent)."""
    hook = getattr(loss, "set_epoch", None)
    if callable(hook):
        hook(epoch)


def _check_resume_config(saved: Mapping[str, Any] | None, config: FitConfig) -> None:
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


def fit(
    config: FitConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train a model as ``config`` says, evaluate it, and write the run directory ``config.out``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process joins the group (gloo on
    CPU, NCCL on CUDA) and trains its shard; rank 0 writes the files.

    Args:
        config: the run.
        resume: continue the run in ``config.out`` from its newest good checkpoint (the
            configuration must match the checkpoint's except for :data:`RESUME_FREE_KEYS`).
        overwrite: start afresh in a ``config.out`` that already holds files: the files a run
            writes (:data:`RUN_FILES`, checkpoints, TensorBoard events) are replaced, and no other
            file is touched. Without it such a directory is refused (:func:`check_out_dir`).
        on_step: called after every optimizer step (and its checkpoint, if one is due) with the
            step's log record; an exception from it stops the run as a crash would.
        log: called with progress lines and the summary line of strategy runs (G-SimCLR, MCL).

    Returns:
        The run directory, the metrics (rank 0) and the trained model.
    """
    if not resume:
        check_out_dir(Path(config.out), overwrite=overwrite)
    if config.strategy != "standard":
        return _fit_strategy(config, resume=resume, on_step=on_step, log=log)
    device = resolve_device(config.device)
    ctx = init_distributed(use_cuda=device.type == "cuda")
    finished = False
    try:
        result = _fit(config, ctx, resume=resume, on_step=on_step)
        finished = True
        return result
    finally:
        ctx.close(synchronize=finished)


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


def _remove_run_files(run_dir: Path, checkpoints: CheckpointManager) -> None:
    """Delete what an earlier run wrote in ``run_dir`` (and nothing else)."""
    checkpoints.clear()
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for events in (run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"):
        events.unlink()


def _fit_strategy(
    config: FitConfig,
    *,
    resume: bool,
    on_step: Callable[[dict[str, Any]], None] | None,
    log: Callable[[str], None] | None,
) -> FitResult:
    """G-SimCLR / MCL: single-process runs of :mod:`contrastkit.train.strategies.runner`."""
    if resume:
        raise ValueError(
            f"strategy {config.strategy!r} runs are not checkpointed and cannot be resumed; "
            "start the run again"
        )
    if on_step is not None:
        raise ValueError(f"strategy {config.strategy!r} does not call on_step")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            f"strategy {config.strategy!r} runs in one process; run it without torchrun"
        )
    from contrastkit.train.strategies.runner import run_strategy

    result: FitResult = run_strategy(config, log=log)
    return result


def resume_run(run_dir: str | Path, **overrides: Any) -> FitResult:
    """Continue the run in ``run_dir`` (its ``config.json``, ``out`` set to ``run_dir``).

    ``overrides`` may set the keys of :data:`RESUME_FREE_KEYS` (e.g. ``progress=False``).
    """
    path = Path(run_dir)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a contrastkit run directory: {cfg_path} is missing")
    data = json.loads(cfg_path.read_text())
    bad = sorted(set(overrides) - RESUME_FREE_KEYS)
    if bad:
        raise ValueError(
            f"cannot change {bad} when resuming; allowed: {', '.join(sorted(RESUME_FREE_KEYS))}"
        )
    data.update(overrides)
    data["out"] = str(path)
    config = config_from_mapping(data, source=str(cfg_path))
    return fit(config, resume=True)


@dataclass
class _Training:
    """What a standard run trains with, built from its config (see :func:`_build`)."""

    config: FitConfig
    ctx: DistContext
    device: torch.device
    use_bf16: bool
    train: ArrayDataset
    test: ArrayDataset
    augment: ViewAugment
    model: ContrastiveModel
    net: nn.Module
    loss_fn: nn.Module
    criterion: DistributedLoss
    pretext: RotationPretext | JigsawPretext | None
    extra_modules: dict[str, nn.Module]
    sampler: ShardedBatchSampler
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    needs_labels: bool
    needs_index: bool
    momentum: bool

    @property
    def hand_averaged(self) -> list[nn.Parameter]:
        """Parameters outside the DDP-wrapped model (the loss's, the pretext head's)."""
        params = list(self.loss_fn.parameters())
        for module in self.extra_modules.values():
            params.extend(module.parameters())
        return params


def _build(config: FitConfig, ctx: DistContext) -> _Training:
    """Data, model, loss, sampler, optimizer and schedule of a standard run, on its device."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # the same on every rank: random choices inside a loss agree
    device = resolve_device(config.device)
    if device.type == "cuda" and ctx.distributed:
        device = torch.device("cuda", ctx.local_rank)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_is_fast(device))
    split = config.load_data()
    channels, height, _ = split.train.image_shape
    info = loss_info(config.loss)
    augment_name = config.augment or config.data
    augment = ViewAugment(preset_for_dataset(augment_name, channels=channels, image_size=height))
    model = build_model(config, channels, height).to(device)
    pretext = build_pretext(config, int(model.encoder.out_dim), augment, height)  # type: ignore[arg-type]
    extra_modules: dict[str, nn.Module] = {}
    if pretext is not None:
        extra_modules["pretext"] = pretext.to(device)
    if device.type == "cpu" or use_bf16:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    loss_fn = build_loss(config, len(split.train))
    momentum = bool(getattr(info, "momentum_encoder", False))  # MoCo-style: keys from an EMA copy
    if momentum:
        loss_fn.attach(model, config.head_out_dim)  # type: ignore[operator]
    loss_fn = loss_fn.to(device)
    sampler = ShardedBatchSampler(
        len(split.train),
        config.batch_size,
        seed=config.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    extra_params = list(loss_fn.parameters())
    for module in extra_modules.values():
        extra_params.extend(module.parameters())
    optimizer = build_optimizer(config, list(model.parameters()) + extra_params)
    schedule = build_schedule(config, optimizer, len(sampler))
    net: nn.Module = model
    if ctx.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return _Training(
        config=config,
        ctx=ctx,
        device=device,
        use_bf16=use_bf16,
        train=split.train,
        test=split.test,
        augment=augment,
        model=model,
        net=net,
        loss_fn=loss_fn,
        criterion=DistributedLoss(loss_fn),
        pretext=pretext,
        extra_modules=extra_modules,
        sampler=sampler,
        optimizer=optimizer,
        schedule=schedule,
        needs_labels=bool(info.needs_labels),
        needs_index=bool(getattr(info, "needs_index", False)),
        momentum=momentum,
    )


@dataclass
class _Position:
    """Where a run starts: its progress, the last finished epoch's loss, the checkpoint used."""

    progress: Progress
    last_epoch_loss: float = math.nan
    resumed_from: str | None = None


def _open_run_dir(t: _Training, checkpoints: CheckpointManager, *, resume: bool) -> _Position:
    """Restore the newest checkpoint (``resume``) or start the run directory afresh (rank 0)."""
    run_dir = Path(t.config.out)
    if not resume:
        if t.ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            _remove_run_files(run_dir, checkpoints)
            atomic_write_json(run_dir / CONFIG_FILE, t.config.to_dict())
            for log in (STEP_LOG, EPOCH_LOG):
                (run_dir / log).write_bytes(b"")
        return _Position(Progress())
    loaded = checkpoints.load_latest()
    if loaded is None:
        raise CheckpointError(
            f"nothing to resume in {run_dir}: no checkpoint in {checkpoints.directory}"
        )
    tensors, meta, path = loaded
    _check_resume_config(meta.get("config"), t.config)
    progress = restore_state(
        tensors,
        meta,
        model=t.model,
        loss=t.loss_fn,
        optimizer=t.optimizer,
        scheduler=t.schedule,
        modules=t.extra_modules,
    )
    if t.ctx.is_main:
        truncate_logs(run_dir, meta.get("logs", {}))
    return _Position(progress, float(meta.get("last_epoch_loss", math.nan)), str(path))


def _contrastive_step(
    t: _Training, core: TrainingCore, epoch: int
) -> Callable[[tuple[int, Tensor]], StepOutput]:
    """One step of ``epoch``: views -> encoder -> head -> loss on the global batch (+ pretext)."""
    config = t.config

    def encode(batch: Tensor) -> Tensor:
        """The encoder as the step runs it (pretext tasks call it on their inputs)."""
        with core.autocast():
            h = t.model.encoder(batch.contiguous(memory_format=torch.channels_last))
        return h.float()

    def embed(views: Tensor) -> Tensor:
        b, v = views.shape[:2]
        if t.momentum:  # queries from the online model, keys from its momentum copy
            q_img = views[:, 0].contiguous(memory_format=torch.channels_last)
            k_img = views[:, 1].contiguous(memory_format=torch.channels_last)
            with core.autocast():
                _, zq = t.net(q_img)
                zk = t.loss_fn.encode_keys(k_img)  # type: ignore[operator]
            return torch.stack([zq.float(), zk.float()], dim=1)
        flat = views.reshape(b * v, *views.shape[2:]).contiguous(memory_format=torch.channels_last)
        with core.autocast():
            _, z = t.net(flat)
        return z.float().reshape(b, v, -1)

    def step_fn(batch: tuple[int, Tensor]) -> StepOutput:
        step, idx = batch
        x = t.train.images[idx].to(t.device, non_blocking=True)
        gen = view_generator(seed=config.seed, epoch=epoch, step=step, rank=t.ctx.rank)
        z = require_finite(embed(t.augment.views(x, config.views, generator=gen)))  # (b, V, D)
        labels = t.train.labels[idx].to(t.device) if t.needs_labels else None
        index = idx.to(t.device) if t.needs_index else None
        loss = t.criterion(z, labels, index)
        logs: dict[str, Tensor | float] = {}
        objective = getattr(t.loss_fn, "last_objective", None)
        if isinstance(objective, Tensor):  # e.g. iSogCLR: the true objective
            logs["objective"] = objective.detach()
        total = loss
        if t.pretext is not None:
            out = t.pretext(encode, x, epoch=epoch, generator=gen)
            total = loss + out.loss
            if out.weight > 0:
                logs["pretext_loss"] = all_reduce_mean(out.cross_entropy)
                logs["pretext_acc"] = all_reduce_mean(out.accuracy)
        return StepOutput(loss=total, value=loss, logs=logs, samples=t.sampler.global_batch)

    return step_fn


def _train_epochs(
    t: _Training,
    position: _Position,
    checkpoints: CheckpointManager,
    on_step: Callable[[dict[str, Any]], None] | None,
) -> tuple[TrainingCore, float]:
    """Train from ``position`` to ``config.epochs``; checkpoint and log; the last epoch's loss."""
    config, ctx = t.config, t.ctx
    run_dir = Path(config.out)
    steps_per_epoch = len(t.sampler)
    logger = RunLogger(
        run_dir,
        enabled=ctx.is_main,
        tensorboard=config.tensorboard,
        resume_step=position.progress.global_step if position.resumed_from else None,
    )
    last_epoch_loss = position.last_epoch_loss

    def save_checkpoint() -> None:
        if not ctx.is_main:
            return
        tensors, meta = capture_state(
            model=t.model,
            loss=t.loss_fn,
            optimizer=t.optimizer,
            scheduler=t.schedule,
            progress=core.progress,
            modules=t.extra_modules,
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

    after_step: list[Callable[[], None]] = []
    if t.momentum:
        after_step.append(lambda: t.loss_fn.update_key_encoder(t.model))  # type: ignore[operator]
    core = TrainingCore(
        t.optimizer,
        schedule=t.schedule,
        device=t.device,
        bf16=t.use_bf16,
        grad_clip=config.grad_clip,
        hand_averaged=t.hand_averaged,
        after_step=after_step,
        on_step=[checkpoint_mid_epoch] + ([on_step] if on_step is not None else []),
        logger=logger,
        bar=progress_bar(
            config.epochs * steps_per_epoch,
            initial=position.progress.global_step,
            enabled=config.progress and ctx.is_main,
        ),
        progress=position.progress,
    )
    try:
        for epoch in range(position.progress.epoch, config.epochs):
            _set_epoch(t.loss_fn, epoch)
            batches = t.sampler.batches(epoch, start=core.progress.step_in_epoch)
            summary = core.run_epoch(
                epoch,
                batches,
                _contrastive_step(t, core, epoch),
                train=[t.net, *t.extra_modules.values()],
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
            if ctx.is_main and config.monitor_every and (epoch + 1) % config.monitor_every == 0:
                for key, value in _monitor(t, config).items():
                    record[key if key not in record else f"monitor_{key}"] = value
            logger.epoch(record)
            save_checkpoint()
    finally:
        core.close()
        logger.close()
    return core, last_epoch_loss


def _finish(
    t: _Training, position: _Position, core: TrainingCore, last_epoch_loss: float, seconds: float
) -> dict[str, Any]:
    """Write the weights and the metrics (rank 0); evaluate the frozen encoder if asked."""
    config = t.config
    run_dir = Path(config.out)
    channels, height, _ = t.train.image_shape
    save_weights(
        run_dir / WEIGHTS_FILE,
        t.model.state_dict(),
        metadata={
            "format": "contrastkit/1",
            "in_channels": str(channels),
            "image_size": str(height),
        },
    )
    metrics: dict[str, Any] = {}
    if config.evaluate:
        with _fork_rng(t.device):
            metrics = evaluate_encoder(
                t.model.encoder,
                t.train,
                t.test,
                k=config.knn_k,
                knn_temperature=config.knn_temperature,
                device=t.device,
            )
    metrics.update(
        {
            "train_seconds": seconds,
            "epochs": config.epochs,
            "steps": core.progress.global_step,
            "final_loss": last_epoch_loss,
            "encoder_parameters": count_parameters(t.model.encoder),
            "trainable_parameters": count_parameters(t.model)
            + sum(count_parameters(m) for m in t.extra_modules.values()),
            "precision": "bf16" if t.use_bf16 else "fp32",
            "device": str(t.device),
            "world_size": t.ctx.world_size,
            "resumed_from": position.resumed_from,
        }
    )
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    return metrics


def _fit(
    config: FitConfig,
    ctx: DistContext,
    *,
    resume: bool,
    on_step: Callable[[dict[str, Any]], None] | None,
) -> FitResult:
    """Build, open the run directory, train the epochs, finish: a standard run on this rank."""
    t = _build(config, ctx)
    checkpoints = CheckpointManager(Path(config.out) / CHECKPOINT_DIR, keep=config.keep_checkpoints)
    position = _open_run_dir(t, checkpoints, resume=resume)
    barrier()
    start = time.perf_counter()
    core, last_epoch_loss = _train_epochs(t, position, checkpoints, on_step)
    seconds = time.perf_counter() - start
    metrics = _finish(t, position, core, last_epoch_loss, seconds) if ctx.is_main else {}
    barrier()
    return FitResult(run_dir=Path(config.out), metrics=metrics, model=t.model)


def summary_line(metrics: Mapping[str, Any], run_dir: Path) -> str:
    """One line that sums up a finished run (what ``contrastkit fit`` prints)."""
    parts = [
        f"contrastkit fit: done in {metrics['train_seconds']:.1f} s",
        f"{metrics['epochs']} epochs, {metrics['steps']} steps",
        f"{metrics['world_size']} process(es)",
        f"final loss {metrics['final_loss']:.4f}",
    ]
    if "knn_acc" in metrics:
        parts.append(f"kNN {metrics['knn_acc']:.4f}, linear {metrics['linear_acc']:.4f}")
    parts.append(f"run {run_dir}")
    return "; ".join(parts)
