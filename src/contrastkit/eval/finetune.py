"""Fine-tuning: train the whole encoder with a linear classifier on top, then test it.

The protocol that complements the frozen-feature evaluations (kNN, linear probe): a linear head
``Linear(F, C)`` is put on the encoder's features and both are trained with cross-entropy and AdamW
for a few epochs (cosine learning-rate decay, optional augmentation of each batch), then the test
accuracy is measured in eval mode. By default the encoder is copied first, so the caller's model is
left untouched.
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

from contrastkit._validation import check_choice, check_positive
from contrastkit.eval.features import _check_int, _first_output, _module_device
from contrastkit.eval.probes import _images_labels

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
        ValueError: On bad hyper-parameters, labels outside ``[0, num_classes)``, or a non-finite
            loss.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    x_train, y_train = _images_labels(train, "train")
    x_test, y_test = _images_labels(test, "test")
    epochs = _check_int(epochs, "epochs")
    batch_size = _check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    head_lr = lr if head_lr is None else check_positive(head_lr, "head_lr")
    weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
    schedule = check_choice(schedule, "schedule", SCHEDULES)
    seed = _check_int(seed, "seed", minimum=0)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable, got {type(augment).__name__}")
    if num_classes is None:
        num_classes = getattr(train, "num_classes", None)
    if num_classes is None:
        num_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    num_classes = _check_int(num_classes, "num_classes", minimum=2)
    for name, y in (("train", y_train), ("test", y_test)):
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} labels must lie in [0, num_classes) = [0, {num_classes}); got values in "
                f"[{lo}, {hi}]"
            )

    dev = torch.device(device) if device is not None else _module_device(encoder)
    body = _Features(copy.deepcopy(encoder) if copy_encoder else encoder).to(dev)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        was_training = body.training
        body.eval()
        with torch.no_grad():
            feature_dim = body(x_train[:1].to(dev)).shape[1]
        body.train(was_training)
        head = nn.Linear(feature_dim, num_classes).to(dev)
    model = nn.Sequential(body, head)
    optimizer = torch.optim.AdamW(
        [
            {"params": list(body.parameters()), "lr": lr},
            {"params": list(head.parameters()), "lr": head_lr},
        ],
        weight_decay=weight_decay,
    )
    steps_per_epoch = math.ceil(x_train.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total))
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    epoch_losses: list[float] = []
    correct = seen = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(x_train.shape[0], generator=gen)
        loss_sum = 0.0
        correct = seen = 0
        for start in range(0, x_train.shape[0], batch_size):
            idx = order[start : start + batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if augment is not None:
                xb = augment(xb, generator=gen)
            xb, yb = xb.to(dev), yb.to(dev)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ValueError(f"fine-tuning loss became {value} in epoch {epoch + 1}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += value * xb.shape[0]
            correct += int((logits.detach().argmax(dim=1) == yb).sum())
            seen += xb.shape[0]
        epoch_losses.append(loss_sum / seen)
    accuracy = _accuracy(model, x_test, y_test, max(batch_size, 256), dev)
    return FinetuneResult(
        accuracy=accuracy,
        train_accuracy=correct / max(seen, 1),
        epoch_losses=epoch_losses,
        model=model,
    )
