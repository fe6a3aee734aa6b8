r"""Core-tuning: contrast-regularised fine-tuning of a contrastively pre-trained encoder.

Per batch of B labelled samples with encoder features ``f`` (docs/methods.md 3.5;
Vanint/Core-tuning ``Core-tuning.py``):

1. **Hard negative mixing**: a random permutation ``pi`` and ``lambda ~ Beta(alpha, alpha)`` per
   sample, raised to at least 0.8: ``f_hn = (1 - lambda) f + lambda f_pi``,
   ``y_hn = (1 - lambda) y + lambda y_pi`` (dominated by the *other* sample).
2. **Hard positive mixing**: with cosine similarities ``s_ij``, the hardest negative
   ``argmax_{y_j != y_i} s_ij`` and the hardest positive ``argmin_{j != i, y_j = y_i} s_ij``;
   ``lambda ~ Beta(alpha, alpha)``; ``f_hp = lambda f_pos + (1 - lambda) f_neg`` and the same for
   the labels.
3. The 3B rows ``[f, f_hn, f_hp]`` with their soft labels feed
   - a bias-free linear classifier with the soft-label cross-entropy
     :math:`L_{CE} = -\frac{1}{3B}\sum_r \sum_c y_{rc} \log \mathrm{softmax}(W f_r)_c`, and
   - a contrastor MLP (``F -> F -> 256``, L2-normalised) with focal SupCon
     (:class:`~contrastkit.losses.FocalSupCon`, ``tau = 0.07``), each distinct soft label a class.
4. :math:`L = L_{CE} + \eta L_{con}`.

Intended behaviour is the default. Two reference-code behaviours are behind flags:

- ``detach_original=True``: the original rows enter as ``features.clone().detach()``, so the
  encoder gets gradient only through the mixed rows.
- ``reference_argmin=True``: the reference's index rules — the hardest negative is the argmax of
  ``s * negative_mask`` and the hardest positive the argmin of ``s * positive_mask`` (masked
  entries count as similarity 0, so they win whenever all true candidates are below / above 0),
  and a positive index of 0 is replaced by the anchor itself (meant as "no positive", but
  sample 0 is a valid index). Intended: argmax/argmin over the true candidates only, falling back
  to the anchor itself when there is none.

Paper: Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual Models via
Contrast-Regularized Fine-Tuning" (NeurIPS 2021). Defaults: ``eta = 0.1`` (README; the script's
argparse default is 10), ``alpha = 1``, contrast dim 256, ``tau = 0.07``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_choice,
    check_embeddings,
    check_int,
    check_labels,
    check_positive,
)
from contrastkit.eval.features import _first_output, _module_device
from contrastkit.losses import FocalSupCon
from contrastkit.train.core import StepOutput, TrainingCore

__all__ = [
    "CoreTuningLoss",
    "CoreTuningOutput",
    "FinetuneRun",
    "MixedPairs",
    "core_tune",
    "hard_pair_mixing",
    "soft_label_ids",
]

METHODS = ("core", "ce")
_MIX_SEED_OFFSET = 0x9E3779B1  # seed offset of the mixing generator in core_tune
OPTIMIZERS = ("adamw", "sgd")


@dataclass
class MixedPairs:
    """The 2B mixed rows of :func:`hard_pair_mixing` and how they were made.

    Attributes:
        features: ``(2B, F)``: ``B`` hard-negative mixtures, then ``B`` hard-positive mixtures.
        targets: ``(2B, C)`` soft labels of the same rows.
        permutation: ``(B,)`` the partner of each hard-negative mixture.
        hard_negative: ``(B,)`` index of each anchor's hardest negative.
        hard_positive: ``(B,)`` index of each anchor's hardest positive.
        lam_negative: ``(B,)`` weights of the partners in the hard-negative mixtures (>= floor).
        lam_positive: ``(B,)`` weights of the hardest positives in the hard-positive mixtures.
    """

    features: Tensor
    targets: Tensor
    permutation: Tensor
    hard_negative: Tensor
    hard_positive: Tensor
    lam_negative: Tensor
    lam_positive: Tensor


def _beta(alpha: float, n: int, generator: torch.Generator | None) -> Tensor:
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n))


def hard_pair_indices(
    features: Tensor, labels: Tensor, *, reference_argmin: bool = False
) -> tuple[Tensor, Tensor]:
    """Hardest negative and hardest positive of every row (see the module docstring)."""
    f = F.normalize(features.detach().float(), dim=1)
    b = f.shape[0]
    sim = f @ f.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=f.device)
    rows = torch.arange(b, device=f.device)
    if reference_argmin:
        neg = (sim * (~same).float()).argmax(dim=1)
        pos = (sim * (same & ~eye).float()).argmin(dim=1)
        pos = torch.where(pos == 0, rows, pos)
        return neg, pos
    neg_mask, pos_mask = ~same, same & ~eye
    neg = sim.masked_fill(~neg_mask, -math.inf).argmax(dim=1)
    pos = sim.masked_fill(~pos_mask, math.inf).argmin(dim=1)
    neg = torch.where(neg_mask.any(dim=1), neg, rows)
    pos = torch.where(pos_mask.any(dim=1), pos, rows)
    return neg, pos


def hard_pair_mixing(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    alpha: float = 1.0,
    min_negative_lambda: float = 0.8,
    reference_argmin: bool = False,
    generator: torch.Generator | None = None,
) -> MixedPairs:
    """Core-tuning's hard-negative and hard-positive feature mixtures (steps 2 and 3).

    Args:
        features: ``(B, F)`` encoder features (gradients flow through the mixtures).
        labels: ``(B,)`` integer classes in ``[0, num_classes)``.
        num_classes: Number of classes C.
        alpha: Beta distribution parameter (reference: 1).
        min_negative_lambda: Floor of the hard-negative weight (reference: 0.8).
        reference_argmin: Use the reference's index rules (see the module docstring).
        generator: Source of the permutation and the weights.
    """
    f = check_embeddings(features, "features")
    b = f.shape[0]
    y = check_labels(labels, b).to(f.device)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    if b and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got [{int(y.min())}, {int(y.max())}]"
        )
    check_positive(alpha, "alpha")
    if not 0.0 <= float(min_negative_lambda) <= 1.0:
        raise ValueError(f"min_negative_lambda must lie in [0, 1], got {min_negative_lambda!r}")
    onehot = F.one_hot(y, num_classes).to(f.dtype)
    perm = torch.randperm(b, generator=generator).to(f.device)
    lam_n = _beta(alpha, b, generator).clamp(min=float(min_negative_lambda)).to(f)[:, None]
    f_hn = (1 - lam_n) * f + lam_n * f[perm]
    y_hn = (1 - lam_n) * onehot + lam_n * onehot[perm]
    neg, pos = hard_pair_indices(f, y, reference_argmin=reference_argmin)
    lam_p = _beta(alpha, b, generator).to(f)[:, None]
    f_hp = lam_p * f[pos] + (1 - lam_p) * f[neg]
    y_hp = lam_p * onehot[pos] + (1 - lam_p) * onehot[neg]
    return MixedPairs(
        features=torch.cat([f_hn, f_hp]),
        targets=torch.cat([y_hn, y_hp]),
        permutation=perm,
        hard_negative=neg,
        hard_positive=pos,
        lam_negative=lam_n.flatten(),
        lam_positive=lam_p.flatten(),
    )


def soft_label_ids(targets: Tensor, *, decimals: int = 6) -> Tensor:
    """One integer id per distinct soft-label row (rounded to ``decimals``): the contrastive classes.

    One-hot rows of one class share an id; every distinct mixture is its own class (the reference
    encodes rows as ``sum_c y_c 10^c`` and label-encodes the result).
    """
    if targets.dim() != 2:
        raise ValueError(f"targets must have shape (N, C); got {tuple(targets.shape)}")
    key = torch.round(targets.detach().double() * 10**decimals)
    return torch.unique(key, dim=0, return_inverse=True)[1]


@dataclass
class CoreTuningOutput:
    """The total loss and its parts."""

    loss: Tensor
    ce: Tensor
    contrastive: Tensor
    mixed: MixedPairs


class CoreTuningLoss(nn.Module):
    r"""Core-tuning's objective with its classifier and contrastor: ``L_CE + eta * L_con``.

    See the module docstring for the formula and the flags. The module owns the bias-free linear
    classifier ``Linear(F, C)`` (use :meth:`predict` at test time) and the contrastor
    ``Linear(F, F) -> ReLU -> Linear(F, contrast_dim)`` followed by L2 normalisation; train their
    parameters together with the encoder's.

    Paper: Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual Models via
    Contrast-Regularized Fine-Tuning" (NeurIPS 2021); defaults from Vanint/Core-tuning.

    Args:
        feature_dim: Encoder feature size F.
        num_classes: Number of classes C.
        contrast_dim: Contrastor output size (256).
        eta: Weight of the contrastive term (README: 0.1).
        alpha: Beta parameter of the mixing weights (1).
        min_negative_lambda: Floor of the hard-negative weight (0.8).
        temperature: Focal SupCon temperature (= base temperature, 0.07).
        detach_original: The reference's detached original rows.
        reference_argmin: The reference's hard-pair index rules.
    """

    def __init__(
        self,
        *,
        feature_dim: int,
        num_classes: int,
        contrast_dim: int = 256,
        eta: float = 0.1,
        alpha: float = 1.0,
        min_negative_lambda: float = 0.8,
        temperature: float = 0.07,
        detach_original: bool = False,
        reference_argmin: bool = False,
    ) -> None:
        super().__init__()
        self.feature_dim = check_int(feature_dim, "feature_dim", minimum=1)
        self.num_classes = check_int(num_classes, "num_classes", minimum=2)
        contrast_dim = check_int(contrast_dim, "contrast_dim", minimum=1)
        self.eta = check_positive(eta, "eta", allow_zero=True)
        self.alpha = check_positive(alpha, "alpha")
        if not 0.0 <= float(min_negative_lambda) <= 1.0:
            raise ValueError(f"min_negative_lambda must lie in [0, 1], got {min_negative_lambda!r}")
        self.min_negative_lambda = float(min_negative_lambda)
        for name, flag in (
            ("detach_original", detach_original),
            ("reference_argmin", reference_argmin),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        self.detach_original = detach_original
        self.reference_argmin = reference_argmin
        self.classifier = nn.Linear(self.feature_dim, self.num_classes, bias=False)
        self.contrastor = nn.Sequential(
            nn.Linear(self.feature_dim, self.feature_dim),
            nn.ReLU(),
            nn.Linear(self.feature_dim, contrast_dim),
        )
        self.focal = FocalSupCon(temperature=temperature, base_temperature=temperature)

    def predict(self, features: Tensor) -> Tensor:
        """Class logits ``(B, C)`` of encoder features."""
        out: Tensor = self.classifier(features)
        return out

    def forward(
        self, features: Tensor, labels: Tensor, *, generator: torch.Generator | None = None
    ) -> CoreTuningOutput:
        f = check_embeddings(features, "features", dim=self.feature_dim)
        y = check_labels(labels, f.shape[0]).to(f.device)
        mixed = hard_pair_mixing(
            f,
            y,
            self.num_classes,
            alpha=self.alpha,
            min_negative_lambda=self.min_negative_lambda,
            reference_argmin=self.reference_argmin,
            generator=generator,
        )
        original = f.detach() if self.detach_original else f
        rows = torch.cat([original, mixed.features])
        targets = torch.cat([F.one_hot(y, self.num_classes).to(f.dtype), mixed.targets])
        ce = -(targets * torch.log_softmax(self.classifier(rows), dim=1)).sum(dim=1).mean()
        z = F.normalize(self.contrastor(rows), dim=1)
        con = self.focal(z[:, None, :], soft_label_ids(targets))
        return CoreTuningOutput(loss=ce + self.eta * con, ce=ce, contrastive=con, mixed=mixed)

    def extra_repr(self) -> str:
        return (
            f"eta={self.eta}, alpha={self.alpha}, detach_original={self.detach_original}, "
            f"reference_argmin={self.reference_argmin}"
        )


@dataclass
class FinetuneRun:
    """Outcome of :func:`core_tune`.

    Attributes:
        method: ``"core"`` or ``"ce"``.
        accuracy: Test accuracy after the last epoch.
        epoch_losses: Mean training loss of every epoch.
        encoder: The fine-tuned encoder (eval mode).
        head: The classifier (``CoreTuningLoss`` for ``"core"``, ``nn.Linear`` for ``"ce"``).
        seconds: Training time.
    """

    method: str
    accuracy: float
    epoch_losses: list[float] = field(default_factory=list)
    encoder: nn.Module | None = None
    head: nn.Module | None = None
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


def _images_labels(data: Any, name: str) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of an ArrayDataset-like object or an ``(images, labels)`` pair."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        x, y = data.images, data.labels
    elif isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(
            f"{name} must be an ArrayDataset or an (images, labels) pair, got {type(data).__name__}"
        )
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"{name} images and labels must be torch.Tensors")
    if x.dim() < 2 or y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(
            f"{name} must hold N >= 2 inputs (N, ...) and N labels; got shapes {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"{name} labels must be integers, got dtype {y.dtype}")
    return x, y.long()


def _features(encoder: nn.Module, x: Tensor) -> Tensor:
    out = _first_output(encoder(x))
    return out.reshape(out.shape[0], -1)


def _initial_head(
    body: nn.Module, probe: Tensor, seed: int, *, method: str, **settings: Any
) -> nn.Module:
    """The head of ``method`` on ``body``'s features, initialised from ``seed`` on ``probe``'s device.

    ``"core"``: a :class:`CoreTuningLoss` built with ``settings``; ``"ce"``: a bias-free
    ``Linear(F, num_classes)``. ``body`` is left in eval mode and the global generators as they
    were.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body.eval()
        with torch.no_grad():
            dim = _features(body, probe).shape[1]
        if method == "core":
            return CoreTuningLoss(feature_dim=dim, **settings).to(probe.device)
        return nn.Linear(dim, settings["num_classes"], bias=False).to(probe.device)


def _optimizer(
    name: str, params: list[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.9 (the reference's)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def _cosine_schedule(
    opt: torch.optim.Optimizer, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step cosine decay of the learning rate to 0 over ``total`` steps (then 0)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
    )


def _fine_tuning_step(
    body: nn.Module,
    head: nn.Module,
    x: Tensor,
    y: Tensor,
    core: TrainingCore,
    augment: Callable[..., Tensor] | None,
    gen: torch.Generator,
    mix_gen: torch.Generator,
) -> Callable[[Tensor], StepOutput]:
    """The step on a batch of indices: (augment with ``gen`` ->) features -> the objective.

    Core-tuning's mixing draws from ``mix_gen``, plain cross-entropy draws nothing. Non-finite
    features make a NaN loss value, so a diverging encoder stops training through the core's
    non-finite-loss policy for both methods (not as the loss's bad-input ``ValueError``).
    """

    def step(idx: Tensor) -> StepOutput:
        xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, generator=gen)
        xb, yb = core.to_device(xb), yb.to(core.device)
        feats = _features(body, xb)
        if not bool(torch.isfinite(feats).all()):
            return StepOutput(loss=feats.sum(), value=math.nan, samples=idx.numel())
        if isinstance(head, CoreTuningLoss):
            loss = head(feats, yb, generator=mix_gen).loss
        else:
            loss = F.cross_entropy(head(feats), yb)
        return StepOutput(loss=loss, samples=idx.numel())

    return step


@torch.no_grad()
def _test_accuracy(
    body: nn.Module, head: nn.Module, x: Tensor, y: Tensor, dev: torch.device
) -> float:
    """Accuracy of ``head`` on ``body``'s features, both in eval mode, in batches of 512."""
    body.eval()
    head.eval()
    correct = 0
    for s in range(0, x.shape[0], 512):
        feats = _features(body, x[s : s + 512].to(dev))
        logits = head.predict(feats) if isinstance(head, CoreTuningLoss) else head(feats)
        correct += int((logits.argmax(1).cpu() == y[s : s + 512]).sum())
    return correct / x.shape[0]


def core_tune(
    encoder: nn.Module,
    train: Any,
    test: Any,
    *,
    method: str = "core",
    num_classes: int | None = None,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adamw",
    eta: float = 0.1,
    alpha: float = 1.0,
    temperature: float = 0.07,
    contrast_dim: int = 256,
    detach_original: bool = False,
    reference_argmin: bool = False,
    augment: Callable[..., Tensor] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> FinetuneRun:
    """Fine-tune a copy of ``encoder`` with Core-tuning (``"core"``) or plain cross-entropy (``"ce"``).

    Both methods share everything but the objective — a bias-free linear classifier on the
    features (the same initial weights at the same seed), the same seeded batches (the last batch
    is dropped if it has fewer than 2 samples), the optimizer (AdamW, or SGD with Nesterov
    momentum 0.9 as the reference), a per-step cosine decay of the learning rate to 0, and the
    optional ``augment(images, generator=g)`` with the same random draws — so their accuracies
    compare at the same budget, pairwise per seed. Core-tuning's mixing draws from a generator of
    its own. Test accuracy is measured in eval mode.

    Args:
        encoder: Maps images to ``(B, F)`` features (copied, not modified).
        train: Labelled images, an :class:`~contrastkit.data.ArrayDataset` or ``(images, labels)``.
        test: The same for testing.
        method: ``"core"`` or ``"ce"``.
        num_classes: Number of classes (None: from ``train`` or the labels).
        epochs, batch_size, lr, weight_decay, optimizer: The shared budget.
        eta, alpha, temperature, contrast_dim, detach_original, reference_argmin: Core-tuning's
            settings (see :class:`CoreTuningLoss`).
        augment: Optional batch augmentation ``augment(images, generator=g) -> images`` applied to
            every training batch (e.g. a :class:`~contrastkit.views.ViewAugment`).
        seed: Seed of the heads, batches and augmentation; the mixing uses ``seed`` plus a fixed
            offset.
        device: Where to train (None: the encoder's device).

    Returns:
        A :class:`FinetuneRun`.

    Raises:
        TypeError: If ``encoder`` is not an ``nn.Module`` or the data have the wrong type.
        ValueError: On bad settings.
        NonFiniteLossError: If the loss becomes NaN or infinite (a ``FloatingPointError``; the
            message names the epoch and the step).
    """
    method = check_choice(method, "method", METHODS)
    optimizer = check_choice(optimizer, "optimizer", OPTIMIZERS)
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    x_train, y_train = _images_labels(train, "train")
    x_test, y_test = _images_labels(test, "test")
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=2)
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", allow_zero=True)
    if num_classes is None:
        num_classes = getattr(train, "num_classes", None)
    if num_classes is None:
        num_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    dev = torch.device(device) if device is not None else _module_device(encoder)
    body = copy.deepcopy(encoder).to(dev)
    # Two streams: ``gen`` orders the batches and drives ``augment`` (identical for both methods),
    # ``mix_gen`` draws Core-tuning's permutations and weights, so the mixing cannot shift the
    # batches or augmentations that CE sees at the same seed.
    gen = torch.Generator().manual_seed(seed)
    mix_gen = torch.Generator().manual_seed(seed + _MIX_SEED_OFFSET)
    head = _initial_head(
        body,
        x_train[:2].to(dev),
        seed,
        method=method,
        num_classes=num_classes,
        contrast_dim=contrast_dim,
        eta=eta,
        alpha=alpha,
        temperature=temperature,
        detach_original=detach_original,
        reference_argmin=reference_argmin,
    )
    n = x_train.shape[0]
    steps_per_epoch = n // batch_size + (1 if n % batch_size >= 2 else 0)
    opt = _optimizer(optimizer, [*body.parameters(), *head.parameters()], lr, weight_decay)
    core = TrainingCore(
        opt,
        schedule=_cosine_schedule(opt, max(epochs * steps_per_epoch, 1)),
        device=dev,
        name=f"{method} fine-tuning",
    )
    step = _fine_tuning_step(body, head, x_train, y_train, core, augment, gen, mix_gen)
    losses: list[float] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        batches = (idx for idx in order.split(batch_size) if idx.numel() >= 2)
        losses.append(core.run_epoch(epoch, batches, step, train=[body, head]).loss)
    core.close()
    seconds = time.perf_counter() - start
    accuracy = _test_accuracy(body, head, x_test, y_test, dev)
    return FinetuneRun(
        method=method,
        accuracy=accuracy,
        epoch_losses=losses,
        encoder=body,
        head=head,
        seconds=seconds,
        settings={
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "optimizer": optimizer,
            "augment": augment is not None,
            "eta": eta,
            "detach_original": detach_original,
            "reference_argmin": reference_argmin,
            "seed": seed,
        },
    )
