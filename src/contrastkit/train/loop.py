"""The training loop: views -> encoder -> head -> loss, checkpoints and resume, then evaluation.

One loop serves a single process and ``torchrun`` (see :mod:`contrastkit.distributed` for the
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
import importlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from contrastkit.data import ArrayDataset
from contrastkit.distributed import (
    DistContext,
    DistributedLoss,
    ShardedBatchSampler,
    all_reduce_mean,
    average_gradients,
    barrier,
    init_distributed,
    view_generator,
)
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import get_loss, loss_info
from contrastkit.models import ContrastiveModel, MLPHead, build_encoder, count_parameters
from contrastkit.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_write_json,
    load_weights,
    save_weights,
    weights_metadata,
)
from contrastkit.train.config import FitConfig, config_from_mapping
from contrastkit.train.logging import EPOCH_LOG, STEP_LOG, RunLogger, truncate_logs
from contrastkit.train.optim import build_optimizer, build_schedule
from contrastkit.train.state import Progress, capture_state, restore_state
from contrastkit.views import JigsawPretext, RotationPretext, ViewAugment, preset_for_dataset

__all__ = ["FitResult", "build_model", "evaluate_encoder", "fit", "load_run", "resume_run"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"

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


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available; use 'cpu' or 'auto'"
        )
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is expected to speed up convolutions on ``device``."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def build_model(
    config: FitConfig, in_channels: int, image_size: int | None = None
) -> ContrastiveModel:
    """The encoder and projection head a config describes.

    ``image_size`` (the side of the square training images) is needed by encoders with a fixed
    input shape (``scatnet``).
    """
    kwargs = dict(config.encoder_kwargs)
    if config.encoder == "smallcnn":
        kwargs.update(
            widths=config.encoder_widths,
            strides=config.encoder_strides,
            pool_size=config.encoder_pool,
        )
    encoder = build_encoder(
        config.encoder, in_channels=in_channels, image_size=image_size, **kwargs
    )
    out_dim = int(encoder.out_dim)  # type: ignore[arg-type]
    head = MLPHead(out_dim, hidden_dim=config.head_hidden_dim, out_dim=config.head_out_dim)
    return ContrastiveModel(encoder, head)


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


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _fork_rng(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Isolate the global generators (evaluation must not change the training stream)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


_MONITOR: ModuleType | bool | None = False  # False: not looked up yet


def _monitor_module() -> ModuleType | None:
    """``contrastkit.eval.monitor`` if it is installed, else None (looked up once)."""
    global _MONITOR
    if _MONITOR is False:
        try:
            _MONITOR = importlib.import_module("contrastkit.eval.monitor")
        except ModuleNotFoundError as exc:
            if exc.name not in ("contrastkit.eval.monitor", "contrastkit.eval"):
                raise
            _MONITOR = None
    return _MONITOR if isinstance(_MONITOR, ModuleType) else None


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


def _monitor(
    model: ContrastiveModel,
    train: ArrayDataset,
    test: ArrayDataset,
    config: FitConfig,
    augment: ViewAugment,
    device: torch.device,
) -> dict[str, float]:
    """Call ``contrastkit.eval.monitor.epoch_metrics(encoder, train_subset, heldout_subset)``.

    ``augment`` (the training views, for the alignment) and ``k`` are passed too when the function
    takes them. The global generators are restored afterwards, so monitoring never changes training.
    """
    module = _monitor_module()
    if module is None:
        return {}
    metrics_fn = module.epoch_metrics
    try:
        params = inspect.signature(metrics_fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}  # type: ignore[assignment]
    extra: dict[str, Any] = {}
    if "augment" in params:
        extra["augment"] = augment
    if "k" in params:
        extra["k"] = config.knn_k
    was_training = model.training
    with _fork_rng(device):
        result = metrics_fn(
            model.encoder,
            _subset(train, MONITOR_SAMPLES, config.seed),
            _subset(test, MONITOR_SAMPLES, config.seed),
            **extra,
        )
    model.train(was_training)
    return {str(k): float(v) for k, v in dict(result).items()}


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
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train a model as ``config`` says, evaluate it, and write the run directory ``config.out``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process joins the group (gloo on
    CPU, NCCL on CUDA) and trains its shard; rank 0 writes the files.

    Args:
        config: the run.
        resume: continue the run in ``config.out`` from its newest good checkpoint (the
            configuration must match the checkpoint's except for :data:`RESUME_FREE_KEYS`).
        on_step: called after every optimizer step (and its checkpoint, if one is due) with the
            step's log record; an exception from it stops the run as a crash would.

    Returns:
        The run directory, the metrics (rank 0) and the trained model.
    """
    if config.strategy != "standard":
        return _fit_strategy(config, resume=resume, on_step=on_step)
    device = resolve_device(config.device)
    ctx = init_distributed(use_cuda=device.type == "cuda")
    finished = False
    try:
        result = _fit(config, ctx, resume=resume, on_step=on_step)
        finished = True
        return result
    finally:
        ctx.close(synchronize=finished)


def _fit_strategy(
    config: FitConfig, *, resume: bool, on_step: Callable[[dict[str, Any]], None] | None
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

    result: FitResult = run_strategy(config)
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


def _fit(
    config: FitConfig,
    ctx: DistContext,
    *,
    resume: bool,
    on_step: Callable[[dict[str, Any]], None] | None,
) -> FitResult:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # the same on every rank: random choices inside a loss agree
    device = resolve_device(config.device)
    if device.type == "cuda" and ctx.distributed:
        device = torch.device("cuda", ctx.local_rank)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_is_fast(device))
    split = config.load_data()
    train, test = split.train, split.test
    channels, height, _ = train.image_shape
    info = loss_info(config.loss)
    needs_index = bool(getattr(info, "needs_index", False))
    momentum = bool(getattr(info, "momentum_encoder", False))  # MoCo-style: keys from an EMA copy
    augment_name = config.augment or config.data
    augment = ViewAugment(preset_for_dataset(augment_name, channels=channels, image_size=height))
    model = build_model(config, channels, height).to(device)
    encoder_dim = int(model.encoder.out_dim)  # type: ignore[arg-type]
    pretext = build_pretext(config, encoder_dim, augment, height)
    extra_modules: dict[str, nn.Module] = {}
    if pretext is not None:
        extra_modules["pretext"] = pretext.to(device)
    if device.type == "cpu" or use_bf16:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    loss_fn = build_loss(config, len(train))
    if momentum:
        loss_fn.attach(model, config.head_out_dim)  # type: ignore[operator]
    loss_fn = loss_fn.to(device)
    criterion = DistributedLoss(loss_fn)
    sampler = ShardedBatchSampler(
        len(train), config.batch_size, seed=config.seed, rank=ctx.rank, world_size=ctx.world_size
    )
    steps_per_epoch = len(sampler)
    # Parameters outside the DDP-wrapped model: their gradients are averaged by hand.
    loss_params = list(loss_fn.parameters())
    for module in extra_modules.values():
        loss_params.extend(module.parameters())
    optimizer = build_optimizer(config, list(model.parameters()) + loss_params)
    schedule = build_schedule(config, optimizer, steps_per_epoch)
    net: nn.Module = model
    if ctx.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    run_dir = Path(config.out)
    checkpoints = CheckpointManager(run_dir / CHECKPOINT_DIR, keep=config.keep_checkpoints)
    progress = Progress()
    last_epoch_loss = math.nan
    resumed_from: str | None = None
    if resume:
        loaded = checkpoints.load_latest()
        if loaded is None:
            raise CheckpointError(
                f"nothing to resume in {run_dir}: no checkpoint in {checkpoints.directory}"
            )
        tensors, meta, path = loaded
        _check_resume_config(meta.get("config"), config)
        progress = restore_state(
            tensors,
            meta,
            model=model,
            loss=loss_fn,
            optimizer=optimizer,
            scheduler=schedule,
            modules=extra_modules,
        )
        last_epoch_loss = float(meta.get("last_epoch_loss", math.nan))
        resumed_from = str(path)
        if ctx.is_main:
            truncate_logs(run_dir, meta.get("logs", {}))
    elif ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.clear()
        for stale in (WEIGHTS_FILE, METRICS_FILE):
            (run_dir / stale).unlink(missing_ok=True)
        atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
        for log in (STEP_LOG, EPOCH_LOG):
            (run_dir / log).write_bytes(b"")
    barrier()
    logger = RunLogger(
        run_dir,
        enabled=ctx.is_main,
        tensorboard=config.tensorboard,
        resume_step=progress.global_step if resume else None,
    )

    def save_checkpoint() -> None:
        if not ctx.is_main:
            return
        tensors, meta = capture_state(
            model=model,
            loss=loss_fn,
            optimizer=optimizer,
            scheduler=schedule,
            progress=progress,
            modules=extra_modules,
            extra={
                "config": config.to_dict(),
                "logs": logger.offsets(),
                "world_size": ctx.world_size,
                "last_epoch_loss": last_epoch_loss,
            },
        )
        checkpoints.save(progress.global_step, tensors, meta)

    def encode(batch: torch.Tensor) -> torch.Tensor:
        """The encoder as the training step runs it (pretext tasks call it on their inputs)."""
        with _autocast(device, use_bf16):
            h = model.encoder(batch.contiguous(memory_format=torch.channels_last))
        return h.float()

    images, labels = train.images, train.labels
    all_params = [p for group in optimizer.param_groups for p in group["params"]]
    bar = _progress(config, steps_per_epoch, initial=progress.global_step, enabled=ctx.is_main)
    start_time = time.perf_counter()
    try:
        for epoch in range(progress.epoch, config.epochs):
            net.train()
            for module in extra_modules.values():
                module.train()
            _set_epoch(loss_fn, epoch)
            epoch_start = time.perf_counter()
            first_step = progress.step_in_epoch
            for step, idx in sampler.batches(epoch, start=progress.step_in_epoch):
                x = images[idx].to(device, non_blocking=True)
                gen = view_generator(seed=config.seed, epoch=epoch, step=step, rank=ctx.rank)
                views = augment.views(x, config.views, generator=gen)  # (b, V, C, H, W)
                b, v = views.shape[:2]
                if momentum:  # queries from the online model, keys from its momentum copy
                    q_img = views[:, 0].contiguous(memory_format=torch.channels_last)
                    k_img = views[:, 1].contiguous(memory_format=torch.channels_last)
                    with _autocast(device, use_bf16):
                        _, zq = net(q_img)
                        zk = loss_fn.encode_keys(k_img)  # type: ignore[operator]
                    z = torch.stack([zq.float(), zk.float()], dim=1)
                else:
                    flat = views.reshape(b * v, *views.shape[2:]).contiguous(
                        memory_format=torch.channels_last
                    )
                    with _autocast(device, use_bf16):
                        _, z = net(flat)
                    z = z.float().reshape(b, v, -1)
                batch_labels = labels[idx].to(device) if info.needs_labels else None
                batch_index = idx.to(device) if needs_index else None
                loss = criterion(z, batch_labels, batch_index)
                total = loss
                pretext_out = None
                if pretext is not None:
                    pretext_out = pretext(encode, x, epoch=epoch, generator=gen)
                    total = loss + pretext_out.loss
                global_loss = float(all_reduce_mean(loss))
                if not math.isfinite(global_loss):
                    raise FloatingPointError(
                        f"loss became {global_loss} at epoch {epoch + 1}, step {step + 1}; lower "
                        "the learning rate, raise the temperature or set grad_clip"
                    )
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                average_gradients(loss_params)
                record: dict[str, Any] = {
                    "step": progress.global_step + 1,
                    "epoch": epoch + 1,
                    "loss": global_loss,
                    "lr": float(optimizer.param_groups[0]["lr"]),
                }
                objective = getattr(loss_fn, "last_objective", None)
                if isinstance(objective, torch.Tensor):  # e.g. iSogCLR: the true objective
                    record["objective"] = float(objective)
                if pretext_out is not None and pretext_out.weight > 0:
                    record["pretext_loss"] = float(all_reduce_mean(pretext_out.cross_entropy))
                    record["pretext_acc"] = float(all_reduce_mean(pretext_out.accuracy))
                if config.grad_clip is not None:
                    norm = torch.nn.utils.clip_grad_norm_(all_params, config.grad_clip)
                    record["grad_norm"] = float(norm)
                optimizer.step()
                schedule.step()
                if momentum:
                    loss_fn.update_key_encoder(model)  # type: ignore[operator]
                progress.global_step += 1
                progress.step_in_epoch = step + 1
                progress.loss_sum += global_loss * sampler.global_batch
                progress.samples += sampler.global_batch
                logger.step(record)
                bar.update(1)
                seen = (step + 1 - first_step) * sampler.global_batch
                rate = seen / max(time.perf_counter() - epoch_start, 1e-9)
                bar.set_postfix(
                    epoch=epoch + 1,
                    loss=f"{progress.loss_sum / progress.samples:.4f}",
                    samples_s=f"{rate:.0f}",
                )
                end_of_epoch = progress.step_in_epoch == steps_per_epoch
                if (
                    config.checkpoint_every
                    and progress.global_step % config.checkpoint_every == 0
                    and not end_of_epoch
                ):
                    save_checkpoint()
                if on_step is not None:
                    on_step(record)
            epoch_time = time.perf_counter() - epoch_start
            last_epoch_loss = progress.loss_sum / max(progress.samples, 1)
            epoch_record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": progress.global_step,
                "loss": last_epoch_loss,
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": epoch_time,
                "samples_per_s": progress.samples / max(epoch_time, 1e-9),
            }
            if ctx.is_main and config.monitor_every and (epoch + 1) % config.monitor_every == 0:
                for key, value in _monitor(model, train, test, config, augment, device).items():
                    epoch_record[key if key not in epoch_record else f"monitor_{key}"] = value
            logger.epoch(epoch_record)
            progress = Progress(epoch=epoch + 1, global_step=progress.global_step)
            save_checkpoint()
    finally:
        bar.close()
        logger.close()
    train_seconds = time.perf_counter() - start_time

    metrics: dict[str, Any] = {}
    if ctx.is_main:
        save_weights(
            run_dir / WEIGHTS_FILE,
            model.state_dict(),
            metadata={
                "format": "contrastkit/1",
                "in_channels": str(channels),
                "image_size": str(height),
            },
        )
        if config.evaluate:
            with _fork_rng(device):
                metrics = evaluate_encoder(
                    model.encoder,
                    train,
                    test,
                    k=config.knn_k,
                    knn_temperature=config.knn_temperature,
                    device=device,
                )
        metrics.update(
            {
                "train_seconds": train_seconds,
                "epochs": config.epochs,
                "steps": progress.global_step,
                "final_loss": last_epoch_loss,
                "encoder_parameters": count_parameters(model.encoder),
                "trainable_parameters": count_parameters(model)
                + sum(count_parameters(m) for m in extra_modules.values()),
                "precision": "bf16" if use_bf16 else "fp32",
                "device": str(device),
                "world_size": ctx.world_size,
                "resumed_from": resumed_from,
            }
        )
        atomic_write_json(run_dir / METRICS_FILE, metrics)
        print(_summary_line(metrics, run_dir), flush=True)
    barrier()
    return FitResult(run_dir=run_dir, metrics=metrics, model=model)


def _summary_line(metrics: Mapping[str, Any], run_dir: Path) -> str:
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


class _NullProgress:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(config: FitConfig, steps_per_epoch: int, *, initial: int, enabled: bool) -> Any:
    if not (config.progress and enabled):
        return _NullProgress()
    from tqdm.auto import tqdm

    return tqdm(
        total=config.epochs * steps_per_epoch,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5,
    )


def load_run(run_dir: str | Path) -> tuple[FitConfig, ContrastiveModel]:
    """Rebuild a run's configuration and model from its directory (no pickled code is executed)."""
    path = Path(run_dir)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a contrastkit run directory: {cfg_path} is missing")
    config = config_from_mapping(json.loads(cfg_path.read_text()), source=str(cfg_path))
    weights = load_weights(path / WEIGHTS_FILE)
    header = weights_metadata(path / WEIGHTS_FILE)
    if "in_channels" in header:
        in_channels = int(header["in_channels"])
        image_size = int(header["image_size"]) if "image_size" in header else None
    else:  # runs saved before the header held the input shape: SmallCNN only
        first_conv = weights.get("encoder.features.0.0.weight")
        if first_conv is None:
            raise ValueError(
                f"{path / WEIGHTS_FILE} has no input shape in its header and does not hold a "
                "contrastkit SmallCNN encoder"
            )
        in_channels, image_size = int(first_conv.shape[1]), None
    model = build_model(config, in_channels, image_size)
    model.load_state_dict(weights)
    return config, model
