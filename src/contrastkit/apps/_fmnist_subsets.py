"""Seeded class-balanced Fashion-MNIST subsets, with generated captions, for ``genview``, ``gopro``
and ``vtp``.

The full forms take their subsets from the official split (:func:`contrastkit.data.load_dataset`;
the captioned apps from :func:`contrastkit.data.load_caption_dataset`, whose captions are generated
from each image's class and measured attributes). Reading the 60,000 training images costs several
seconds, so the smoke forms read only the 10,000-image test file and cut their (disjoint) train and
test parts from it; their captions come from the same generator
(:func:`contrastkit.data.captions.make_captions`, tertiles of the part's own attributes).

Not an application (the leading underscore keeps it out of the registry).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.data import find_fashion_mnist, load_caption_dataset, load_dataset
from contrastkit.data.arrays import uint8_images
from contrastkit.data.captions import (
    attribute_thresholds,
    caption_vocabulary,
    make_captions,
    measure_attributes,
)
from contrastkit.data.idx import read_idx

__all__ = ["CAPTIONS", "FashionSubset", "balanced_subset", "load_subset"]

#: The caption set of the two-tower apps.
CAPTIONS = "fashion-mnist-captions"


@dataclass(frozen=True)
class FashionSubset:
    """A class-balanced subset of Fashion-MNIST, with captions of the training images.

    Attributes:
        train_images: ``(N, 1, 28, 28)`` float32 in ``[0, 1]``.
        train_labels: ``(N,)`` int64.
        train_captions: ``N`` generated captions.
        test_images: ``(M, 1, 28, 28)``.
        test_labels: ``(M,)``.
        class_names: The zero-shot class names.
        templates: The zero-shot templates (no caption uses them).
    """

    train_images: Tensor
    train_labels: Tensor
    train_captions: list[str]
    test_images: Tensor
    test_labels: Tensor
    class_names: tuple[str, ...]
    templates: tuple[str, ...]


def balanced_subset(labels: Tensor, per_class: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of ``per_class`` random samples of every class (fewer if a class is short)."""
    parts = []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        parts.append(idx[torch.randperm(idx.numel(), generator=generator)[:per_class]])
    return torch.sort(torch.cat(parts)).values


@functools.lru_cache(maxsize=1)
def _test_file() -> tuple[Tensor, Tensor]:
    files = find_fashion_mnist()
    x = uint8_images(read_idx(files["test_images"])[:, None])
    y = torch.from_numpy(read_idx(files["test_labels"]).astype("int64"))
    return x, y


@functools.lru_cache(maxsize=1)
def _images() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    data = load_dataset("fashion-mnist")
    return data.train.images, data.train.labels, data.test.images, data.test.labels


@functools.lru_cache(maxsize=1)
def _captioned(seed: int) -> tuple[Tensor, Tensor, list[str], Tensor, Tensor]:
    split = load_caption_dataset(CAPTIONS, seed=seed)
    assert isinstance(split.train.a, Tensor) and isinstance(split.test.a, Tensor)
    assert isinstance(split.train.b, list)
    assert split.train.labels is not None and split.test.labels is not None
    return split.train.a, split.train.labels, split.train.b, split.test.a, split.test.labels


def _quick(seed: int, per_class_train: int, per_class_test: int, captions: bool) -> FashionSubset:
    x, y = _test_file()
    gen = torch.Generator().manual_seed(seed)
    both = balanced_subset(y, per_class_train + per_class_test, gen)
    both = both[torch.randperm(both.numel(), generator=gen)]
    labels = y[both]
    is_train = torch.zeros_like(labels, dtype=torch.bool)
    for c in torch.unique(labels):
        is_train[torch.nonzero(labels == c).flatten()[:per_class_train]] = True
    tr, te = torch.sort(both[is_train]).values, torch.sort(both[~is_train]).values
    vocab = caption_vocabulary(CAPTIONS)
    texts: list[str] = []
    if captions:
        attrs = measure_attributes(x[tr])
        texts = make_captions(y[tr], attrs, attribute_thresholds(attrs), vocab, seed=seed)
    return FashionSubset(
        x[tr], y[tr], texts, x[te], y[te], vocab.class_names, vocab.zero_shot_templates
    )


def load_subset(
    seed: int,
    *,
    per_class_train: int,
    per_class_test: int,
    quick: bool,
    captions: bool = True,
) -> FashionSubset:
    """A seeded class-balanced subset (the smoke form's from the test file only; see the module).

    Args:
        seed: Seeds the subset and the captions.
        per_class_train: Training images per class.
        per_class_test: Test images per class.
        quick: The smoke form (reads the 10,000 test images only).
        captions: Generate captions of the training images (otherwise ``train_captions`` is
            empty in the full form too).
    """
    if quick:
        return _quick(seed, per_class_train, per_class_test, captions)
    vocab = caption_vocabulary(CAPTIONS)
    texts: list[str] = []
    if captions:
        x_tr, y_tr, caps, x_te, y_te = _captioned(seed)
    else:
        x_tr, y_tr, x_te, y_te = _images()
    gen = torch.Generator().manual_seed(seed)
    tr = balanced_subset(y_tr, per_class_train, gen)
    te = balanced_subset(y_te, per_class_test, gen)
    if captions:
        texts = [caps[int(i)] for i in tr]
    return FashionSubset(
        x_tr[tr], y_tr[tr], texts, x_te[te], y_te[te], vocab.class_names, vocab.zero_shot_templates
    )
