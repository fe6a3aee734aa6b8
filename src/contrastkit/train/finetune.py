"""Fine-tuning: train the whole encoder with a linear classifier on top, then test it.

The protocol that complements the frozen-feature evaluations (kNN, linear probe): a linear head
``Linear(F, C)`` is put on the encoder's features and both are trained with cross-entropy and AdamW
for a few epochs (cosine learning-rate decay, optional augmentation of each batch), then the test
accuracy is measured in eval mode. By default the encoder is copied first, so the caller's model is
left untouched. The steps run on the training core (:class:`~contrastkit.train.core.TrainingCore`),
so a non-finite loss stops fine-tuning with a
:class:`~contrastkit.train.core.NonFiniteLossError`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_int, check_positive
from contrastkit.eval.features import _first_output, _module_device
from contrastkit.eval.probes import _images_labels
from contrastkit.train.core import StepOutput, TrainingCore

__all__ = ["FinetuneResult", "finetune"]

SCHEDULES = ("cosine", "constant")


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune`.

    Attributes:
        accuracy: Test accuracy after the last epoch.
        train_accuracy: Accuracy on the training batches during the last epoch (train mode,
            augmented when ``augment`` was given).
        epoch_losses: Mean training cross-entropy of each epoch.
        model: ``nn.Sequential(encoder, Flatten, head)``, the fine-tuned network (in eval mode).
    """

    accuracy: float
    train_accuracy: float
    epoch_losses: list[float] = field(default_factory=list)
    model: nn.Module | None = None


@dataclass
class _Settings:
    """The validated arguments of :func:`finetune`."""

    epochs: int
    batch_size: int
    lr: float
    head_lr: float
    weight_decay: float
    schedule: str
    seed: int
    num_classes: int


@dataclass
class _Tally:
    """Correct predictions and samples seen in the current epoch."""

    correct: int = 0
    seen: int = 0


class _Features(nn.Module):
    """The encoder's features as a ``(B, F)`` tensor (first element of a tuple output)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor) -> Tensor:
        out = _first_output(self.encoder(x))
        return out.reshape(out.shape[0], -1)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, dev: torch.device) -> float:
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size].to(dev))
        correct += int((logits.argmax(dim=1).cpu() == y[start : start + batch_size]).sum())
    return correct / x.shape[0]


def _check_settings(
    train: Any,
    y_train: Tensor,
    y_test: Tensor,
    *,
    num_classes: int | None,
    epochs: int,
    batch_size: int,
    lr: float,
    head_lr: float | None,
    weight_decay: float,
    schedule: str,
    augment: Callable[..., Tensor] | None,
    seed: int,
) -> _Settings:
    """Validate :func:`finetune`'s hyper-parameters and labels (ValueError/TypeError on bad ones)."""
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    lr = check_positive(lr, "lr")
    head_lr = lr if head_lr is None else check_positive(head_lr, "head_lr")
    weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
    schedule = check_choice(schedule, "schedule", SCHEDULES)
    seed = check_int(seed, "seed", minimum=0)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable, got {type(augment).__name__}")
    if num_classes is None:
        num_classes = getattr(train, "num_classes", None)
    if num_classes is None:
        num_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    for name, y in (("train", y_train), ("test", y_test)):
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} labels must lie in [0, num_classes) = [0, {num_classes}); got values in "
                f"[{lo}, {hi}]"
            )
    return _Settings(epochs, batch_size, lr, head_lr, weight_decay, schedule, seed, num_classes)


def _build_model(
    body: _Features, x: Tensor, num_classes: int, seed: int, dev: torch.device
) -> nn.Sequential:
    """``body`` followed by a new ``Linear(F, num_classes)`` on ``dev``, initialised from ``seed``.

    The global random generators are left as they were.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        was_training = body.training
        body.eval()
        with torch.no_grad():
            feature_dim = body(x[:1].to(dev)).shape[1]
        body.train(was_training)
        head = nn.Linear(feature_dim, num_classes).to(dev)
    return nn.Sequential(body, head)


def _optimizer_and_schedule(
    model: nn.Sequential, s: _Settings, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the body (``lr``) and the head (``head_lr``), and its per-step LR schedule."""
    body, head = model[0], model[1]
    optimizer = torch.optim.AdamW(
        [
            {"params": list(body.parameters()), "lr": s.lr},
            {"params": list(head.parameters()), "lr": s.head_lr},
        ],
        weight_decay=s.weight_decay,
    )
    total = s.epochs * steps_per_epoch

    def factor(step: int) -> float:
        """The LR multiplier after ``step`` optimizer steps."""
        if s.schedule == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * step / total))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _cross_entropy_step(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    core: TrainingCore,
    augment: Callable[..., Tensor] | None,
    generator: torch.Generator,
    tally: _Tally,
) -> Callable[[Tensor], StepOutput]:
    """The step on a batch of indices: (augment ->) model -> cross-entropy; counts hits in ``tally``."""

    def step(idx: Tensor) -> StepOutput:
        xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, generator=generator)
        xb, yb = core.to_device(xb), yb.to(core.device)
        logits = model(xb)
        tally.correct += int((logits.detach().argmax(dim=1) == yb).sum())
        tally.seen += xb.shape[0]
        return StepOutput(loss=F.cross_entropy(logits, yb), samples=xb.shape[0])

    return step


def finetune(
    encoder: nn.Module,
    train: Any,
    test: Any,
    *,
    num_classes: int | None = None,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    head_lr: float | None = None,
    weight_decay: float = 1e-4,
    schedule: str = "cosine",
    augment: Callable[..., Tensor] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    copy_encoder: bool = True,
) -> FinetuneResult:
    """Fine-tune ``encoder`` with a new linear head on labelled data and report test accuracy.

    The head ``Linear(F, num_classes)`` is initialised (and the batches shuffled) from ``seed``; the
    global random generators are left as they were. Every parameter of the encoder and the head is
    trained with AdamW (``lr`` for the encoder, ``head_lr`` for the head) on the mean cross-entropy,
    the learning rate following a cosine decay to 0 over all steps (or staying constant).

    Args:
        encoder: Maps images ``(B, ...)`` to features ``(B, F)`` (or a tuple whose first element is
            the features).
        train: Labelled training images: an :class:`~contrastkit.data.ArrayDataset` or an
            ``(images, labels)`` pair.
        test: Labelled test images, in the same form.
        num_classes: Number of classes ``C``; ``None`` uses ``num_classes`` of an ``ArrayDataset``,
            else ``max(label) + 1`` over both sets.
        epochs: Passes over the training set.
        batch_size: Images per step (the last, smaller batch of an epoch is kept).
        lr: Learning rate of the encoder's parameters.
        head_lr: Learning rate of the head (``None``: ``lr``).
        weight_decay: AdamW's decoupled weight decay.
        schedule: ``"cosine"`` or ``"constant"``.
        augment: Optional callable ``augment(images, generator=g)`` applied to each training batch
            (e.g. a :class:`~contrastkit.views.ViewAugment`).
        seed: Seed of the head's initialisation, the shuffling and the augmentation.
        device: Where to train; ``None`` uses the encoder's device.
        copy_encoder: Fine-tune a deep copy (the default) instead of ``encoder`` itself.

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        TypeError: If ``encoder`` is not an ``nn.Module`` or the data have the wrong type.
        ValueError: On bad hyper-parameters or labels outside ``[0, num_classes)``.
        NonFiniteLossError: If the loss becomes NaN or infinite (a ``FloatingPointError``; the
            message names the epoch and the step).
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    x_train, y_train = _images_labels(train, "train")
    x_test, y_test = _images_labels(test, "test")
    s = _check_settings(
        train,
        y_train,
        y_test,
        num_classes=num_classes,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        weight_decay=weight_decay,
        schedule=schedule,
        augment=augment,
        seed=seed,
    )

    dev = torch.device(device) if device is not None else _module_device(encoder)
    body = _Features(copy.deepcopy(encoder) if copy_encoder else encoder).to(dev)
    gen = torch.Generator().manual_seed(s.seed)
    model = _build_model(body, x_train, s.num_classes, s.seed, dev)
    n = x_train.shape[0]
    optimizer, scheduler = _optimizer_and_schedule(model, s, math.ceil(n / s.batch_size))
    core = TrainingCore(optimizer, schedule=scheduler, device=dev, name="fine-tuning")
    tally = _Tally()
    step = _cross_entropy_step(model, x_train, y_train, core, augment, gen, tally)
    epoch_losses: list[float] = []
    for epoch in range(s.epochs):
        order = torch.randperm(n, generator=gen)
        tally.correct = tally.seen = 0
        summary = core.run_epoch(epoch, order.split(s.batch_size), step, train=[model])
        epoch_losses.append(summary.loss)
    core.close()
    accuracy = _accuracy(model, x_test, y_test, max(s.batch_size, 256), dev)
    return FinetuneResult(
        accuracy=accuracy,
        train_accuracy=tally.correct / max(tally.seen, 1),
        epoch_losses=epoch_losses,
        model=model,
    )
