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

import inspect
import os
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
    all_reduce_mean,
    init_distributed,
    view_generator,
)
from contrastkit.eval import epoch_metrics, extract_features, knn_accuracy, linear_probe
from contrastkit.eval.monitor import auto_monitor_every, geometry_metrics, monitor_sizes
from contrastkit.losses import get_loss, loss_info
from contrastkit.models import ContrastiveModel, count_parameters
from contrastkit.runs import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    build_model,
    load_run,
    read_json,
)
from contrastkit.train.checkpoint import (
    save_weights,
)
from contrastkit.train.config import FitConfig, config_from_mapping
from contrastkit.train.core import (
    StepOutput,
    TrainingCore,
    require_finite,
    resolve_device,
)
from contrastkit.train.run import (
    RESUME_FREE_KEYS,
    FitResult,
    RunParts,
    check_out_dir,
    execute,
    fork_rng,
    optimize,
    run_device,
)
from contrastkit.views import JigsawPretext, RotationPretext, ViewAugment, preset_for_dataset

__all__ = [
    "FitResult",
    "build_model",
    "check_out_dir",
    "evaluate_encoder",
    "evaluation_problem",
    "fit",
    "load_run",
    "resume_run",
    "summary_line",
]


#: Names under which a loss constructor takes the dataset size (per-sample state).
_DATASET_SIZE_ARGS = ("num_samples", "data_size", "dataset_size", "n_data", "n_samples", "num_data")

#: The linear probe's weight decay when the training set is too small to choose it on a split.
SMALL_DATA_WEIGHT_DECAY = 1e-4


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

    Raises:
        ValueError: The split cannot be evaluated (:func:`evaluation_problem` says why).
    """
    problem = evaluation_problem(train, test)
    if problem is not None:
        raise ValueError(f"cannot evaluate the encoder: {problem}")
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


def evaluation_problem(train: ArrayDataset, test: ArrayDataset) -> str | None:
    """Why the kNN and linear probes cannot run on ``train`` / ``test``, or None if they can.

    The probes are classifiers of the labels: they need at least two training samples of at
    least two classes, and a test sample to score.

    Example:
        >>> import torch
        >>> one = ArrayDataset(torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long), "x", 1)
        >>> evaluation_problem(one, one)
        "the training split of 'x' holds 1 class; the kNN and linear probes need at least 2"
    """
    classes = int(torch.unique(train.labels).numel())
    if classes < 2:
        return (
            f"the training split of {train.name!r} holds {classes} class; the kNN and linear "
            "probes need at least 2"
        )
    if len(test) == 0:
        return f"the test split of {test.name!r} is empty; the probes have nothing to score"
    return None


def check_data_fits(config: FitConfig, n_train: int, world_size: int = 1) -> None:
    """Refuse, before the first step, data too small to train on with ``config``.

    A step contrasts ``min(batch_size, n_train)`` samples (rounded down to a multiple of the
    processes); fewer than 2 leave nothing to contrast, and the run would train on empty batches.

    Raises:
        ValueError: Fewer than 2 samples per step; the message names the data and the numbers.
    """
    per_step = (min(config.batch_size, n_train) // world_size) * world_size
    if per_step < 2:
        raise ValueError(
            f"data {config.data!r}: the training split holds {n_train} training sample(s), so a "
            f"step would contrast {per_step} (batch_size={config.batch_size}, {world_size} "
            "process(es)); contrastive training needs at least 2 per step: use more data"
        )


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
    """kNN and geometry of ``h`` and ``z`` on subsets (:func:`contrastkit.eval.epoch_metrics`).

    The networks run in the run's precision (bf16 autocast when it trains in bf16) and the global
    generators are restored afterwards, so monitoring never changes training.
    """
    was_training = t.model.training
    autocast = torch.autocast(device_type=t.device.type, dtype=torch.bfloat16, enabled=t.use_bf16)
    bank, heldout = monitor_sizes(max(1, int(t.train.num_classes)))
    with fork_rng(t.device), autocast:
        result = epoch_metrics(
            t.model.encoder,
            _subset(t.train, bank, config.seed),
            _subset(t.test, heldout, config.seed),
            augment=t.augment,
            k=config.knn_k,
            head=t.model.head,
        )
    t.model.train(was_training)
    return {str(k): float(v) for k, v in result.items()}


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
            writes (:data:`~contrastkit.train.run.RUN_FILES`, checkpoints, TensorBoard events)
            are replaced, and no other file is touched. Without it such a directory is refused
            (:func:`~contrastkit.train.run.check_out_dir`).
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
        if config.two_tower:  # paired data and a bimodal loss: contrastkit.train.two_tower
            from contrastkit.train.two_tower import fit_two_tower

            result = fit_two_tower(config, ctx, resume=resume, on_step=on_step)
        else:
            result = _fit(config, ctx, resume=resume, on_step=on_step, log=log)
        finished = True
        return result
    finally:
        ctx.close(synchronize=finished)


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
    data = read_json(cfg_path)
    if not isinstance(data, dict):
        raise ValueError(
            f"{cfg_path}: expected a mapping of config keys, got {type(data).__name__}"
        )
    bad = sorted(set(overrides) - RESUME_FREE_KEYS)
    if bad:
        raise ValueError(
            f"cannot change {bad} when resuming; allowed: {', '.join(sorted(RESUME_FREE_KEYS))}"
        )
    data.update(overrides)
    data["out"] = str(path)
    config = config_from_mapping(data, source=str(cfg_path))
    return fit(config, resume=True)


@dataclass(kw_only=True)
class _Training(RunParts):
    """What an image run trains with, built from its config (see :func:`_build`)."""

    train: ArrayDataset
    test: ArrayDataset
    augment: ViewAugment
    model: ContrastiveModel
    criterion: DistributedLoss
    pretext: RotationPretext | JigsawPretext | None
    needs_labels: bool
    needs_index: bool
    momentum: bool
    evaluation_skipped: str | None = None

    def step_for_epoch(self, core: TrainingCore, epoch: int) -> Callable[[Any], StepOutput]:
        return _contrastive_step(self, core, epoch)

    def after_step_hooks(self) -> list[Callable[[], None]]:
        if not self.momentum:
            return []
        return [lambda: self.loss_fn.update_key_encoder(self.model)]  # type: ignore[operator]

    @property
    def monitor_every(self) -> int:
        """The monitoring interval: ``config.monitor_every``, or by default the size rule."""
        every = self.config.monitor_every
        return auto_monitor_every(len(self.train)) if every is None else every

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        every = self.monitor_every
        return _monitor(self, self.config) if every and (epoch + 1) % every == 0 else {}

    def finish(self) -> dict[str, Any]:
        return _finish(self)


def _build(config: FitConfig, ctx: DistContext) -> _Training:
    """Data, model, loss, sampler, optimizer and schedule of an image run, on its device."""
    device, use_bf16 = run_device(config, ctx)
    split = config.load_data()
    check_data_fits(config, len(split.train), ctx.world_size)  # before anything is trained
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
    extra_params = list(loss_fn.parameters())
    for module in extra_modules.values():
        extra_params.extend(module.parameters())
    sampler, optimizer, schedule, net = optimize(config, ctx, model, extra_params, len(split.train))
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
        evaluation_skipped=evaluation_problem(split.train, split.test) if config.evaluate else None,
    )


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


def _finish(t: _Training) -> dict[str, Any]:
    """Write the weights; evaluate the frozen encoder if asked (and possible)."""
    channels, height, _ = t.train.image_shape
    save_weights(
        Path(t.config.out) / WEIGHTS_FILE,
        t.model.state_dict(),
        metadata={
            "format": "contrastkit/1",
            "in_channels": str(channels),
            "image_size": str(height),
        },
    )
    metrics: dict[str, Any] = {}
    if t.evaluation_skipped is not None:  # decided before training; the run itself is kept
        metrics["evaluation_skipped"] = t.evaluation_skipped
    elif t.config.evaluate:
        with fork_rng(t.device):
            metrics = evaluate_encoder(
                t.model.encoder,
                t.train,
                t.test,
                k=t.config.knn_k,
                knn_temperature=t.config.knn_temperature,
                device=t.device,
            )
            # Geometry in both spaces (h: encoder features, z: the head output the loss acts on).
            metrics.update(
                geometry_metrics(
                    t.model.encoder,
                    t.test.images,
                    t.test.labels,
                    head=t.model.head,
                    augment=t.augment,
                    device=t.device,
                )
            )
    metrics["encoder_parameters"] = count_parameters(t.model.encoder)
    metrics["trainable_parameters"] = count_parameters(t.model) + sum(
        count_parameters(m) for m in t.extra_modules.values()
    )
    return metrics


def _fit(
    config: FitConfig,
    ctx: DistContext,
    *,
    resume: bool,
    on_step: Callable[[dict[str, Any]], None] | None,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Build an image run, then run it (:func:`contrastkit.train.run.execute`) on this rank."""
    t = _build(config, ctx)
    if t.evaluation_skipped is not None and log is not None and ctx.is_main:
        log(f"contrastkit fit: the evaluation will be skipped: {t.evaluation_skipped}")
    return execute(t, resume=resume, on_step=on_step)


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
