"""Train any model with a custom step on the training core: the loop a user's own system needs.

:func:`train_custom` is what an application with its own step (a video encoder and its clip sampler,
a control agent's transition model, a segmentation network) uses instead of writing an optimizer
loop: it builds the optimizer, runs ``epochs`` epochs of :meth:`TrainingCore.run_epoch` and returns
their summaries. The step says what one batch computes (a :class:`StepOutput`); the core does the
rest (backward, clipping, the optimizer, after-step hooks, the non-finite-loss policy).

>>> import torch
>>> from torch import nn
>>> model = nn.Linear(4, 1)
>>> x, y = torch.randn(64, 4), torch.randn(64, 1)
>>> def step(idx: torch.Tensor) -> StepOutput:
...     return StepOutput(loss=nn.functional.mse_loss(model(x[idx]), y[idx]), samples=len(idx))
>>> history = train_custom(
...     [model], step, lambda epoch: torch.randperm(64).split(16), epochs=3, lr=0.05
... )
>>> [h.steps for h in history]
[4, 4, 4]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from contrastkit.train.core import EpochSummary, StepOutput, TrainingCore

__all__ = ["train_custom"]

Batch = TypeVar("Batch")


def _check_training_settings(epochs: int, lr: float, weight_decay: float) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not (
        isinstance(weight_decay, int | float) and math.isfinite(weight_decay) and weight_decay >= 0
    ):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")


def train_custom(
    modules: Sequence[nn.Module],
    step_fn: Callable[[Batch], StepOutput],
    batches: Callable[[int], Iterable[Batch]],
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    extra_parameters: Sequence[nn.Parameter] = (),
    grad_clip: float | None = None,
    cosine: bool = False,
    after_step: Sequence[Callable[[], None]] = (),
    on_epoch: Callable[[EpochSummary], None] | None = None,
    name: str = "training",
) -> list[EpochSummary]:
    """Train ``modules`` with AdamW on the :class:`TrainingCore`, one custom step per batch.

    Args:
        modules: The trained modules (their parameters that require grad are optimized; each is put
            in training mode at the start of every epoch).
        step_fn: One batch -> :class:`StepOutput` (the loss to minimize and what to log).
        batches: ``epoch -> iterable of batches`` (a fresh shuffle per epoch).
        epochs: Number of epochs (>= 1).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        extra_parameters: Trained parameters outside ``modules`` (a learnable temperature).
        grad_clip: Clip the total gradient norm to this value (None: no clipping).
        cosine: Decay the learning rate to 0 over the run with a cosine schedule (stepped per
            batch; the number of batches is taken from epoch 0's iterable when it has a length).
        after_step: Called after every optimizer step (e.g. a momentum encoder's update).
        on_epoch: Called with each epoch's summary (monitoring between epochs).
        name: What is trained, for error messages.

    Returns:
        One :class:`EpochSummary` per epoch (``.loss`` is the epoch's mean loss).

    Raises:
        ValueError: A setting is out of range, or no module has a trainable parameter.
        NonFiniteLossError: The loss became NaN or infinite.
    """
    _check_training_settings(epochs, lr, weight_decay)
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for p in [q for m in modules for q in m.parameters()] + list(extra_parameters):
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    if not params:
        raise ValueError(f"{name}: the modules have no trainable parameter")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    first: Any = batches(0)
    schedule = None
    if cosine:
        per_epoch = len(first) if hasattr(first, "__len__") else None
        if per_epoch is None:
            raise ValueError(
                "cosine=True needs batches(epoch) with a length (a list or a tensor split)"
            )
        first = list(first)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(per_epoch * epochs, 1)
        )
    core = TrainingCore(
        optimizer, schedule=schedule, grad_clip=grad_clip, after_step=after_step, name=name
    )
    history: list[EpochSummary] = []
    for epoch in range(epochs):
        summary = core.run_epoch(
            epoch, first if epoch == 0 else batches(epoch), step_fn, train=modules
        )
        history.append(summary)
        if on_epoch is not None:
            on_epoch(summary)
    core.close()
    return history
