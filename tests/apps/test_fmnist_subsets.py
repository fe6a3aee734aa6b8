"""The Fashion-MNIST subsets of the genview / gopro / vtp apps: balanced, disjoint, captions that
name the image's class, the same subset for the same seed."""

from __future__ import annotations

import pytest
import torch

from contrastkit.apps._fmnist_subsets import CAPTIONS, balanced_subset, load_subset
from contrastkit.data import find_fashion_mnist
from contrastkit.data.arrays import DatasetNotFoundError
from contrastkit.data.captions import caption_vocabulary


def test_balanced_subset_takes_the_same_number_of_each_class() -> None:
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    idx = balanced_subset(labels, 4, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[idx]).tolist() == [4, 3, 4]  # class 1 has only 3
    assert torch.equal(idx, torch.sort(idx).values) and idx.unique().numel() == idx.numel()


def _need_fashion_mnist() -> None:
    try:
        find_fashion_mnist()
    except (DatasetNotFoundError, FileNotFoundError):
        pytest.skip("Fashion-MNIST is not installed")


def test_quick_subset_is_balanced_disjoint_and_captioned() -> None:
    _need_fashion_mnist()
    data = load_subset(0, per_class_train=20, per_class_test=10, quick=True)
    assert torch.bincount(data.train_labels).tolist() == [20] * 10
    assert torch.bincount(data.test_labels).tolist() == [10] * 10
    # disjoint: no test image equals a training image
    flat_tr, flat_te = data.train_images.flatten(1), data.test_images.flatten(1)
    assert not bool((torch.cdist(flat_te, flat_tr).min(dim=1).values == 0).any())
    vocab = caption_vocabulary(CAPTIONS)
    assert len(data.train_captions) == 200
    for caption, label in zip(data.train_captions, data.train_labels.tolist(), strict=True):
        assert any(name in caption for name in vocab.train_synonyms[label]), (caption, label)
    assert data.templates == vocab.zero_shot_templates
    again = load_subset(0, per_class_train=20, per_class_test=10, quick=True)
    assert again.train_captions == data.train_captions
    assert torch.equal(again.test_images, data.test_images)
