"""What the Fashion-MNIST representation studies (``cmim``, ``space2``, ``sepclr``,
``projection_head``, ``selfie``) share: a seeded class-balanced subset, the small encoder, shuffled
batches, feature extraction and the linear probe.

Not an application (the leading underscore keeps it out of the registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.data import load_dataset
from contrastkit.eval import linear_probe
from contrastkit.models import SmallCNN
from contrastkit.views import ViewAugment, preset

__all__ = [
    "CLASS_NAMES",
    "FashionSubset",
    "embed",
    "encoder",
    "load_subset",
    "probe",
    "shuffled_batches",
    "two_views",
]

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class FashionSubset:
    """A class-balanced random subset of Fashion-MNIST's train and test sets.

    Attributes:
        train_images: ``(N, 1, 28, 28)`` float32 in [0, 1].
        train_labels: ``(N,)`` int64 class indices 0..9.
        test_images: ``(M, 1, 28, 28)``.
        test_labels: ``(M,)``.
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def _balanced(labels: Tensor, n: int, rng: np.random.Generator) -> Tensor:
    """``n`` indices drawn without replacement, as evenly over the classes as ``n`` allows."""
    y = labels.numpy()
    classes = np.unique(y)
    per = [n // len(classes) + (1 if k < n % len(classes) else 0) for k in range(len(classes))]
    picks = [
        rng.choice(np.flatnonzero(y == c), size=m, replace=False)
        for c, m in zip(classes, per, strict=True)
    ]
    idx = np.concatenate(picks)
    rng.shuffle(idx)
    return torch.from_numpy(idx)


def load_subset(seed: int, n_train: int, n_test: int) -> FashionSubset:
    """Draw ``n_train`` training and ``n_test`` test images (class-balanced, seeded)."""
    split = load_dataset("fashion-mnist")
    rng = np.random.default_rng(seed)
    tr = _balanced(split.train.labels, n_train, rng)
    te = _balanced(split.test.labels, n_test, rng)
    return FashionSubset(
        train_images=split.train.images[tr].contiguous(),
        train_labels=split.train.labels[tr].long(),
        test_images=split.test.images[te].contiguous(),
        test_labels=split.test.labels[te].long(),
    )


def encoder(*, pool_size: int = 2) -> SmallCNN:
    """The studies' encoder: three stride-2 conv-BN-ReLU layers (16, 32, 64 channels) on 28x28,
    average-pooled to a ``pool_size`` grid (256 features with the default 2x2)."""
    return SmallCNN(in_channels=1, widths=(16, 32, 64), strides=(2, 2, 2), pool_size=pool_size)


def shuffled_batches(n: int, batch_size: int, seed: int) -> Callable[[int], list[Tensor]]:
    """``epoch -> index batches``: a fresh seeded permutation per epoch, last short batch dropped."""

    def batches(epoch: int) -> list[Tensor]:
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(n, generator=g)
        usable = (n // batch_size) * batch_size
        return list(perm[:usable].split(batch_size))

    return batches


@torch.no_grad()
def embed(fn: Callable[[Tensor], Tensor], modules: list[nn.Module], images: Tensor) -> Tensor:
    """``fn`` over ``images`` in batches of 1000, with ``modules`` in eval mode (restored after)."""
    flags = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        out = torch.cat([fn(chunk) for chunk in images.split(1000)])
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.train(flag)
    return out.float()


def probe(
    train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor, seed: int
) -> float:
    """Linear-probe test accuracy (:func:`contrastkit.eval.linear_probe`, 200 L-BFGS steps)."""
    result = linear_probe(
        train,
        train_labels,
        test,
        test_labels,
        weight_decays=(1e-4, 1e-3, 1e-2),
        seed=seed,
        max_iter=200,
        fallback_weight_decay=1e-3,
    )
    return float(result.accuracy)


_AUGMENT = ViewAugment(preset("fashion-mnist", channels=1, image_size=28))


def two_views(images: Tensor, generator: torch.Generator) -> Tensor:
    """Two augmented views (the library's Fashion-MNIST preset) of each image: ``(B, 2, 1, 28, 28)``."""
    return _AUGMENT.views(images, 2, generator=generator)
