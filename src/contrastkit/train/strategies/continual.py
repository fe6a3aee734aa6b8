"""Class-incremental SupCon with a rehearsal buffer (COCONUT's replay term; docs/methods.md 2.3c, 3.8).

The classes arrive in tasks (default: pairs of classes in order). While training task ``t`` the
encoder sees only task ``t``'s images; a :class:`~contrastkit.data.samplers.ReplayBuffer`
(class-balanced reservoir by default) keeps a few images of everything seen. Each step's loss is

.. math::
    L = L_{SupCon}(\\text{new rows}) + w\\, L_{SupCon}(\\text{new} \\cup \\text{replay rows};
        \\text{anchors} = \\text{replay rows})

— the second term is COCONUT's SupCon "applied only to the rehearsal samples": its anchors are
the buffer's samples, every row of the batch is a candidate (``anchor_mask=``, see
:func:`~contrastkit.data.samplers.replay_batch`). ``anchor_scope="all"`` makes every row an anchor
(plain experience replay with SupCon); ``buffer_capacity=0`` trains without replay.

COCONUT's audio-text term on the new data and its teacher-student variants are not reproduced
(its exact negative set is [UNVERIFIED] in docs/methods.md). Paper: Cappellazzo et al., "Continual
Contrastive Spoken Language Understanding" (2023).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_int, check_positive
from contrastkit.data import ArrayDataset
from contrastkit.data.samplers import REPLAY_MODES, ReplayBuffer, replay_batch
from contrastkit.distributed import view_generator
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import SupCon
from contrastkit.models import ContrastiveModel
from contrastkit.train.config import FitConfig
from contrastkit.train.core import StepOutput, TrainingCore, require_finite, resolve_device
from contrastkit.train.loop import build_model
from contrastkit.train.optim import build_optimizer, warmup_cosine
from contrastkit.train.strategies._common import StrategyResult
from contrastkit.views import ViewAugment, preset_for_dataset

__all__ = ["default_tasks", "fit_continual_supcon"]

ANCHOR_SCOPES = ("replay", "all")


def default_tasks(num_classes: int, classes_per_task: int = 2) -> list[list[int]]:
    """Classes ``0..K-1`` in order, ``classes_per_task`` per task."""
    return [
        list(range(s, min(s + classes_per_task, num_classes)))
        for s in range(0, num_classes, classes_per_task)
    ]


def _subset(data: ArrayDataset, classes: Sequence[int]) -> ArrayDataset:
    mask = torch.isin(data.labels, torch.tensor(list(classes)))
    return ArrayDataset(
        images=data.images[mask],
        labels=data.labels[mask],
        name=data.name,
        num_classes=data.num_classes,
    )


def _knn(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor) -> float:
    if test_y.numel() == 0:
        return float("nan")
    return float(knn_accuracy(train_f, train_y, test_f, test_y, k=20, temperature=0.07))


def fit_continual_supcon(
    config: FitConfig,
    *,
    tasks: Sequence[Sequence[int]] | None = None,
    epochs_per_task: int | None = None,
    buffer_capacity: int = 200,
    buffer_mode: str = "balanced",
    replay_per_batch: int | None = None,
    replay_weight: float = 1.0,
    anchor_scope: str = "replay",
    log: Callable[[str], None] | None = None,
) -> StrategyResult:
    """Train SupCon class-incrementally with replay and measure accuracy and forgetting.

    After every task, a kNN classifier (k = 20, memory = training images of all classes seen so
    far) is evaluated on the test images of every task seen so far: ``acc[t][j]``. The result's
    metrics hold the final kNN accuracy over all seen classes (``final_knn_acc``), a linear probe
    on all classes at the end (``final_linear_acc``), the mean final per-task accuracy and the
    average forgetting ``mean_j (max_{t<T} acc[t][j] - acc[T][j])`` over the earlier tasks.
    The steps run on :class:`~contrastkit.train.core.TrainingCore` (fp32).

    Args:
        config: Data, epochs (used as ``epochs_per_task`` when that is None), batch size, views,
            temperature (SupCon's; None keeps 0.07), optimizer, seed, device.
        tasks: Classes of each task (None: pairs of classes in order).
        epochs_per_task: Epochs on each task.
        buffer_capacity: Rehearsal buffer size (0: no replay).
        buffer_mode: ``"balanced"`` or ``"reservoir"``.
        replay_per_batch: Buffer samples added to each batch (None: ``batch_size // 2``).
        replay_weight: ``w`` of the replay term.
        anchor_scope: ``"replay"`` (COCONUT: only buffer rows are anchors) or ``"all"``.
        log: Called with progress lines.

    Raises:
        ValueError: Bad tasks, buffer settings, or a batch larger than the smallest task.
        TypeError: ``buffer_capacity`` is not an int.
        NonFiniteLossError: A step's loss is NaN or infinite.
    """
    anchor_scope = check_choice(anchor_scope, "anchor_scope", ANCHOR_SCOPES)
    check_choice(buffer_mode, "buffer_mode", REPLAY_MODES)
    check_positive(replay_weight, "replay_weight", allow_zero=True)
    buffer_capacity = check_int(buffer_capacity, "buffer_capacity", minimum=0)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    split = config.load_data()
    train, test = split.train, split.test
    task_list = _check_tasks(tasks, train.num_classes)
    per_task = config.epochs if epochs_per_task is None else epochs_per_task
    n_replay = config.batch_size // 2 if replay_per_batch is None else replay_per_batch
    channels, height, _ = train.image_shape
    augment = ViewAugment(
        preset_for_dataset(config.augment or config.data, channels=channels, image_size=height)
    )
    torch.manual_seed(config.seed)
    model = build_model(config, channels).to(device)
    temperature = 0.07 if config.temperature is None else config.temperature
    supcon = SupCon(temperature=temperature, base_temperature=temperature, reduction="none")
    task_data = [_subset(train, t) for t in task_list]
    core = _core(model, config, task_data, per_task, device)
    buffer = ReplayBuffer(max(buffer_capacity, 1), mode=buffer_mode, seed=config.seed)
    step = _ReplayStep(
        model=model,
        supcon=supcon,
        augment=augment,
        config=config,
        device=device,
        buffer=buffer if buffer_capacity > 0 else None,
        n_replay=n_replay,
        replay_weight=replay_weight,
        anchor_scope=anchor_scope,
        replay_gen=torch.Generator().manual_seed(config.seed + 17),
    )
    acc: list[list[float]] = []
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    for t, data in enumerate(task_data):
        for _ in range(per_task):
            epoch = core.progress.epoch
            summary = core.run_epoch(
                epoch, _epoch_batches(data, config, epoch), step.for_epoch(epoch), train=[model]
            )
            history.append({"task": t, "epoch": epoch + 1, "loss": summary.loss})
        acc.append(_seen_task_accuracy(model, train, test, task_list[: t + 1]))
        if log is not None:
            row = [round(a, 4) for a in acc[-1]]
            log(f"task {t} {task_list[t]}: kNN accuracy per seen task {row}")
    seconds = time.perf_counter() - start
    metrics = _final_metrics(model, train, test, acc)
    use_replay = step.buffer is not None
    metrics.update(
        {
            "tasks": task_list,
            "buffer_capacity": buffer_capacity,
            "buffer_mode": buffer_mode,
            "anchor_scope": anchor_scope,
            "replay_per_batch": n_replay if use_replay else 0,
            "epochs_per_task": per_task,
            "train_seconds": seconds,
            "buffer_class_counts": buffer.class_counts() if use_replay else {},
        }
    )
    return StrategyResult(metrics=metrics, model=model, history=history, extras={"buffer": buffer})


def _check_tasks(tasks: Sequence[Sequence[int]] | None, num_classes: int) -> list[list[int]]:
    """``tasks`` as lists (None: :func:`default_tasks`): non-empty, disjoint, known classes."""
    task_list = [list(t) for t in (tasks or default_tasks(num_classes))]
    flat = [c for t in task_list for c in t]
    if not task_list or any(not t for t in task_list) or len(set(flat)) != len(flat):
        raise ValueError(f"tasks must be non-empty, disjoint lists of classes; got {task_list}")
    bad = [c for c in flat if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"classes {bad} are not in 0..{num_classes - 1}")
    return task_list


def _core(
    model: nn.Module,
    config: FitConfig,
    task_data: Sequence[ArrayDataset],
    per_task: int,
    device: torch.device,
) -> TrainingCore:
    """The config's optimizer with one warm-up + cosine schedule over every task's steps."""
    steps = [len(d) // config.batch_size for d in task_data]
    if min(steps) < 1:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the smallest task "
            f"({min(len(d) for d in task_data)} images)"
        )
    optimizer = build_optimizer(config, list(model.parameters()))
    total = per_task * sum(steps)
    warm = min(config.warmup_epochs * steps[0], total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup_steps=warm, total_steps=total)
    )
    return TrainingCore(optimizer, schedule=schedule, device=device, name="continual SupCon")


def _epoch_batches(
    data: ArrayDataset, config: FitConfig, epoch: int
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """``(step, images, labels)`` of the full batches of a seeded permutation of ``data``."""
    g = torch.Generator().manual_seed(config.seed * 7919 + epoch)
    order = torch.randperm(len(data), generator=g)
    b = config.batch_size
    for step in range(len(data) // b):
        idx = order[step * b : (step + 1) * b]
        yield step, data.images[idx], data.labels[idx]


@dataclass
class _ReplayStep:
    """One step: new rows (+ replayed rows) -> views -> model -> SupCon (+ replay term).

    ``buffer`` is None without replay; the step's new rows are offered to the buffer once its
    loss is computed (nothing reads the buffer before the next step).
    """

    model: ContrastiveModel
    supcon: SupCon
    augment: ViewAugment
    config: FitConfig
    device: torch.device
    buffer: ReplayBuffer | None
    n_replay: int
    replay_weight: float
    anchor_scope: str
    replay_gen: torch.Generator

    def for_epoch(self, epoch: int) -> Callable[[tuple[int, Tensor, Tensor]], StepOutput]:
        """The step function of (global) ``epoch`` over ``(step, images, labels)`` batches."""

        def step_fn(batch: tuple[int, Tensor, Tensor]) -> StepOutput:
            step, x_new, y_new = batch
            x_all, y_all, mask = self._with_replay(x_new, y_new)
            gen = view_generator(seed=self.config.seed, epoch=epoch, step=step, rank=0)
            views = self.augment.views(x_all.to(self.device), self.config.views, generator=gen)
            b, v = views.shape[:2]
            _, z = self.model(views.reshape(b * v, *views.shape[2:]))
            z = require_finite(z.float().reshape(b, v, -1))
            loss = self._loss(z, y_all.to(self.device), mask.to(self.device), len(y_new))
            if self.buffer is not None:
                self.buffer.add(x_new, y_new)
            return StepOutput(loss=loss)

        return step_fn

    def _with_replay(self, x_new: Tensor, y_new: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.buffer is not None and len(self.buffer):
            return replay_batch(x_new, y_new, self.buffer, self.n_replay, generator=self.replay_gen)
        return x_new, y_new, torch.zeros(len(y_new), dtype=torch.bool)

    def _loss(self, z: Tensor, y_all: Tensor, mask: Tensor, nb: int) -> Tensor:
        loss = self.supcon(z[:nb], y_all[:nb]).mean()
        if bool(mask.any()) and self.replay_weight > 0:
            if self.anchor_scope == "replay":
                replay_loss = self.supcon(z, y_all, anchor_mask=mask)[mask].mean()
            else:
                replay_loss = self.supcon(z, y_all).mean()
            loss = loss + self.replay_weight * replay_loss
        return loss


def _seen_task_accuracy(
    model: ContrastiveModel,
    train: ArrayDataset,
    test: ArrayDataset,
    seen_tasks: Sequence[Sequence[int]],
) -> list[float]:
    """kNN accuracy on each seen task's test images (memory: all seen classes' training images)."""
    mem = _subset(train, sorted(c for task in seen_tasks for c in task))
    mem_f = extract_features(model.encoder, mem.images)
    row = []
    for classes in seen_tasks:
        te = _subset(test, classes)
        row.append(_knn(mem_f, mem.labels, extract_features(model.encoder, te.images), te.labels))
    return row


def _final_metrics(
    model: ContrastiveModel, train: ArrayDataset, test: ArrayDataset, acc: list[list[float]]
) -> dict[str, Any]:
    """Final kNN and linear accuracy over all classes, mean task accuracy and forgetting."""
    train_f = extract_features(model.encoder, train.images)
    test_f = extract_features(model.encoder, test.images)
    last = acc[-1]
    forgetting = [
        max(acc[t][j] for t in range(j, len(acc) - 1)) - last[j] for j in range(len(acc) - 1)
    ]
    return {
        "final_knn_acc": _knn(train_f, train.labels, test_f, test.labels),
        "final_linear_acc": float(
            linear_probe(train_f, train.labels, test_f, test.labels).accuracy
        ),
        "mean_task_acc": sum(last) / len(last),
        "forgetting": sum(forgetting) / len(forgetting) if forgetting else 0.0,
        "accuracy_matrix": acc,
    }
