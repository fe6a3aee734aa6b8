"""Class-incremental SupCon with a rehearsal buffer (COCONUT's replay term; METHODS.md 2.3c, 3.8).

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
(its exact negative set is [UNVERIFIED] in METHODS.md). Paper: Cappellazzo et al., "Continual
Contrastive Spoken Language Understanding" (2023).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from contrastkit._validation import check_choice, check_positive
from contrastkit.data import ArrayDataset
from contrastkit.data.samplers import REPLAY_MODES, ReplayBuffer, replay_batch
from contrastkit.distributed import view_generator
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import SupCon
from contrastkit.train.config import FitConfig
from contrastkit.train.loop import build_model, resolve_device
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
    """
    anchor_scope = check_choice(anchor_scope, "anchor_scope", ANCHOR_SCOPES)
    check_choice(buffer_mode, "buffer_mode", REPLAY_MODES)
    check_positive(replay_weight, "replay_weight", allow_zero=True)
    if (
        isinstance(buffer_capacity, bool)
        or not isinstance(buffer_capacity, int)
        or buffer_capacity < 0
    ):
        raise ValueError(f"buffer_capacity must be an int >= 0, got {buffer_capacity!r}")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    split = config.load_data()
    train, test = split.train, split.test
    task_list = [list(t) for t in (tasks or default_tasks(train.num_classes))]
    flat = [c for t in task_list for c in t]
    if not task_list or any(not t for t in task_list) or len(set(flat)) != len(flat):
        raise ValueError(f"tasks must be non-empty, disjoint lists of classes; got {task_list}")
    bad = [c for c in flat if not 0 <= c < train.num_classes]
    if bad:
        raise ValueError(f"classes {bad} are not in 0..{train.num_classes - 1}")
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
    optimizer = build_optimizer(config, list(model.parameters()))
    task_data = [_subset(train, t) for t in task_list]
    steps = [len(d) // config.batch_size for d in task_data]
    if min(steps) < 1:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the smallest task "
            f"({min(len(d) for d in task_data)} images)"
        )
    total = per_task * sum(steps)
    warm = min(config.warmup_epochs * steps[0], total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup_steps=warm, total_steps=total)
    )
    buffer = ReplayBuffer(max(buffer_capacity, 1), mode=buffer_mode, seed=config.seed)
    use_replay = buffer_capacity > 0
    replay_gen = torch.Generator().manual_seed(config.seed + 17)
    acc: list[list[float]] = []
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    global_epoch = 0
    for t, data in enumerate(task_data):
        for _ in range(per_task):
            model.train()
            g = torch.Generator().manual_seed(config.seed * 7919 + global_epoch)
            order = torch.randperm(len(data), generator=g)
            loss_sum = 0.0
            for step in range(steps[t]):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                x_new, y_new = data.images[idx], data.labels[idx]
                if use_replay and len(buffer):
                    x_all, y_all, mask = replay_batch(
                        x_new, y_new, buffer, n_replay, generator=replay_gen
                    )
                else:
                    x_all, y_all = x_new, y_new
                    mask = torch.zeros(len(y_new), dtype=torch.bool)
                gen = view_generator(seed=config.seed, epoch=global_epoch, step=step, rank=0)
                views = augment.views(x_all.to(device), config.views, generator=gen)
                b, v = views.shape[:2]
                _, z = model(views.reshape(b * v, *views.shape[2:]))
                z = z.float().reshape(b, v, -1)
                y_all, mask = y_all.to(device), mask.to(device)
                nb = len(y_new)
                loss = supcon(z[:nb], y_all[:nb]).mean()
                if bool(mask.any()) and replay_weight > 0:
                    if anchor_scope == "replay":
                        terms = supcon(z, y_all, anchor_mask=mask)
                        replay_loss = terms[mask].mean()
                    else:
                        replay_loss = supcon(z, y_all).mean()
                    loss = loss + replay_weight * replay_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += float(loss.detach())
                if use_replay:
                    buffer.add(x_new, y_new)
            history.append({"task": t, "epoch": global_epoch + 1, "loss": loss_sum / steps[t]})
            global_epoch += 1
        seen = sorted(c for tt in task_list[: t + 1] for c in tt)
        mem = _subset(train, seen)
        mem_f = extract_features(model.encoder, mem.images)
        row = []
        for j in range(t + 1):
            te = _subset(test, task_list[j])
            row.append(
                _knn(mem_f, mem.labels, extract_features(model.encoder, te.images), te.labels)
            )
        acc.append(row)
        if log is not None:
            log(f"task {t} {task_list[t]}: kNN accuracy per seen task {[round(a, 4) for a in row]}")
    seconds = time.perf_counter() - start
    train_f = extract_features(model.encoder, train.images)
    test_f = extract_features(model.encoder, test.images)
    final_knn = _knn(train_f, train.labels, test_f, test.labels)
    final_linear = float(linear_probe(train_f, train.labels, test_f, test.labels).accuracy)
    last = acc[-1]
    forgetting = [
        max(acc[t][j] for t in range(j, len(acc) - 1)) - last[j] for j in range(len(acc) - 1)
    ]
    metrics: dict[str, Any] = {
        "final_knn_acc": final_knn,
        "final_linear_acc": final_linear,
        "mean_task_acc": sum(last) / len(last),
        "forgetting": sum(forgetting) / len(forgetting) if forgetting else 0.0,
        "accuracy_matrix": acc,
        "tasks": task_list,
        "buffer_capacity": buffer_capacity,
        "buffer_mode": buffer_mode,
        "anchor_scope": anchor_scope,
        "replay_per_batch": n_replay if use_replay else 0,
        "epochs_per_task": per_task,
        "train_seconds": seconds,
        "buffer_class_counts": buffer.class_counts() if use_replay else {},
    }
    return StrategyResult(metrics=metrics, model=model, history=history, extras={"buffer": buffer})
