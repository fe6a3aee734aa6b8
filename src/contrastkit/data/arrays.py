"""In-memory image datasets, what every loader returns, and the checks and splits loaders share.

:class:`ArrayDataset` holds float32 images ``(N, C, H, W)`` in ``[0, 1]`` and int64 labels
``0..K-1``; :class:`DataSplit` pairs a train and a test set. The loaders (:mod:`.datasets`,
:mod:`.cifar`, :mod:`.image_folder`) build them from files and use the helpers here to check their
arguments and to make seeded, stratified train/test splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATA_DIR_ENV",
    "ArrayDataset",
    "DataSplit",
    "DatasetNotFoundError",
    "check_seed",
    "check_test_fraction",
    "split_indices",
    "uint8_images",
]

#: Environment variable naming a data folder (Fashion-MNIST in it or in its ``fashion-mnist``
#: subfolder).
DATA_DIR_ENV = "CONTRASTKIT_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """The files of a dataset are not where they were looked for.

    It is both a :class:`FileNotFoundError` (an ``OSError``) and a ``ValueError``, so callers can
    catch it either as a missing file or as bad input.

    Attributes:
        searched: The paths that were looked at, in order.
    """

    def __init__(self, message: str, *, searched: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.searched: tuple[Path, ...] = tuple(searched)


@dataclass(frozen=True, eq=False, repr=False)
class ArrayDataset:
    """An in-memory labelled image dataset.

    Compared by identity (tensors have no single truth value, so field-wise ``==`` is not defined).
    Indexing gives ``(image, label)`` pairs, so it works as a map-style ``torch.utils.data``
    dataset.

    Attributes:
        images: float32 tensor ``(N, C, H, W)`` with values in ``[0, 1]``.
        labels: int64 tensor ``(N,)`` with values in ``0..num_classes-1``.
        name: Name of the dataset (e.g. ``"digits"``).
        num_classes: Number of classes K (at least the largest label + 1).
    """

    images: Tensor
    labels: Tensor
    name: str
    num_classes: int

    def __post_init__(self) -> None:
        """Check types, shapes, dtypes and value ranges.

        Raises:
            TypeError: If a field has the wrong type or dtype.
            ValueError: If shapes disagree or values are out of range.
        """
        x, y = self.images, self.labels
        if not isinstance(x, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
        if not isinstance(y, Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(y).__name__}")
        if x.dtype != torch.float32:
            raise TypeError(f"images must have dtype torch.float32, got {x.dtype}")
        if y.dtype != torch.int64:
            raise TypeError(f"labels must have dtype torch.int64, got {y.dtype}")
        if x.dim() != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got shape {tuple(x.shape)}")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"labels must have shape ({x.shape[0]},), one per image; got shape {tuple(y.shape)}"
            )
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {k!r}")
        if x.numel() > 0:
            lo, hi = torch.aminmax(x)
            # NaN fails both comparisons, so it is caught here too.
            if not (bool(lo >= 0) and bool(hi <= 1)):
                raise ValueError(
                    f"images must hold values in [0, 1]; got min {float(lo)}, max {float(hi)} "
                    "(divide uint8 pixels by 255)"
                )
        if y.numel() > 0:
            ymin, ymax = torch.aminmax(y)
            if int(ymin) < 0 or int(ymax) >= k:
                raise ValueError(
                    f"labels must lie in 0..{k - 1} (num_classes={k}); "
                    f"got min {int(ymin)}, max {int(ymax)}"
                )

    def __len__(self) -> int:
        """Return the number of images N."""
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Return ``(image (C, H, W), label ())`` at ``index``."""
        return self.images[index], self.labels[index]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape ``(C, H, W)`` of one image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    def __repr__(self) -> str:
        """Summarise the dataset without printing the tensors."""
        return (
            f"ArrayDataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})"
        )


@dataclass(frozen=True, eq=False)
class DataSplit:
    """A train and a test set of the same dataset (same image shape and number of classes).

    Attributes:
        train: The training set.
        test: The held-out test set.
    """

    train: ArrayDataset
    test: ArrayDataset

    def __post_init__(self) -> None:
        """Check that both parts are :class:`ArrayDataset` s with matching image shape and classes.

        Raises:
            TypeError: If a part is not an :class:`ArrayDataset`.
            ValueError: If image shapes or numbers of classes differ.
        """
        for part in ("train", "test"):
            value = getattr(self, part)
            if not isinstance(value, ArrayDataset):
                raise TypeError(f"{part} must be an ArrayDataset, got {type(value).__name__}")
        if self.train.image_shape != self.test.image_shape:
            raise ValueError(
                f"train and test image shapes differ: {self.train.image_shape} vs "
                f"{self.test.image_shape}"
            )
        if self.train.num_classes != self.test.num_classes:
            raise ValueError(
                f"train and test num_classes differ: {self.train.num_classes} vs "
                f"{self.test.num_classes}"
            )


def check_seed(seed: object) -> int:
    """Return ``seed`` as an int in ``[0, 2**32)``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    s = int(seed)
    if not 0 <= s < 2**32:
        raise ValueError(f"seed must lie in [0, 2**32), got {s}")
    return s


def check_test_fraction(test_fraction: object) -> float:
    """Return ``test_fraction`` as a float strictly between 0 and 1."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float | np.floating):
        raise TypeError(f"test_fraction must be a number, got {type(test_fraction).__name__}")
    f = float(test_fraction)
    if not (math.isfinite(f) and 0 < f < 1):
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    return f


def split_indices(
    labels: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into sorted train and test indices, stratified when possible.

    Stratification (the class proportions kept in both parts) needs every class to have at least two
    members and both parts to have room for one member of each class; otherwise a plain random split
    is made. The split depends only on ``labels``, ``test_fraction`` and ``seed``.
    """
    from sklearn.model_selection import train_test_split

    n = len(labels)
    n_test = math.ceil(test_fraction * n)  # the rounding train_test_split uses
    n_train = n - n_test
    if n_train < 1 or n_test < 1:
        raise ValueError(
            f"cannot split {n} samples with test_fraction={test_fraction}: "
            f"it leaves {n_train} train and {n_test} test samples"
        )
    _, counts = np.unique(labels, return_counts=True)
    k = len(counts)
    stratify = labels if counts.min() >= 2 and n_test >= k and n_train >= k else None
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=n_test, random_state=seed, stratify=stratify
    )
    return np.sort(train_idx), np.sort(test_idx)


def uint8_images(x: np.ndarray) -> Tensor:
    """Convert uint8 ``(N, C, H, W)`` pixels to float32 in ``[0, 1]`` (vectorised, one pass)."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)
