"""Monitoring during training, and the representation geometry of a run in both of its spaces.

The trainer calls :func:`epoch_metrics` every ``monitor_every`` epochs (``FitConfig.monitor_every``;
by default :func:`auto_monitor_every` of the training-set size) with subsets of the training and
test sets (see :func:`subset`), and writes the returned numbers into that epoch's line of
``epochs.jsonl``; ``contrastkit report`` and ``contrastkit compare`` plot them over the epochs. At
the end of a run, :func:`geometry_metrics` gives the same geometry on the whole test set for
``metrics.json`` and the report.

The numbers (docs/methods.md 2.8), each in two spaces, named with a suffix:

- ``_h``: the encoder features ``h`` (what the kNN and linear probes and downstream users see);
- ``_z``: the head output ``z`` (what the contrastive loss acts on; Wang & Isola's and Wang & Liu's
  quantities are defined there), L2-normalised as the loss normalises it.

- ``knn_acc``: cosine kNN accuracy of ``h`` (InstDisc weighted votes, temperature 0.07) of the
  held-out features against the training-subset features;
- ``alignment_h``/``_z`` (only with ``augment``): Wang & Isola's alignment ``mean ||f(x1) -
  f(x2)||^2`` of two augmented views of each held-out image, features L2-normalised;
- ``uniformity_h``/``_z``: Wang & Isola's ``log mean exp(-2 ||f(x) - f(y)||^2)`` of the normalised
  held-out features;
- ``tolerance_h``/``_z``: Wang & Liu's tolerance, the mean cosine of same-class held-out pairs;
- ``effective_rank_h``/``_z``: Roy & Vetterli's effective rank of the centred held-out features.

Runs written before both spaces were measured hold ``alignment``, ``uniformity``, ``tolerance``
and ``effective_rank``, all of ``h``: :data:`LEGACY_KEYS` maps them, and :func:`read_metric`
reads either.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.data import ArrayDataset
from contrastkit.eval.features import _check_int, extract_features
from contrastkit.eval.geometry import alignment, effective_rank, tolerance, uniformity
from contrastkit.eval.knn import knn_accuracy

__all__ = [
    "EVERY_EPOCH_SAMPLES",
    "GEOMETRY_KEYS",
    "LEGACY_KEYS",
    "MONITOR_HELDOUT_SAMPLES",
    "MONITOR_KNN_TEMPERATURE",
    "MONITOR_TRAIN_SAMPLES",
    "auto_monitor_every",
    "epoch_metrics",
    "geometry_metrics",
    "monitor_sizes",
    "read_metric",
    "subset",
]

#: Temperature of the kNN vote (InstDisc's 0.07, the trainer's default ``knn_temperature``).
MONITOR_KNN_TEMPERATURE = 0.07

#: Seed of the generator that draws the two views for the alignment (fixed, so that the numbers of
#: successive epochs differ only through the encoder).
VIEW_SEED = 0

#: Training images in the monitor's kNN memory bank (at least :data:`BANK_PER_CLASS` per class),
#: and held-out images it measures (at least :data:`HELDOUT_PER_CLASS` per class). On a dataset of
#: at most 12 classes a call forwards at most ``256 + 3 * 128 = 640`` images without gradient (the
#: bank, the held-out images and two views of them), whatever the size of the dataset.
MONITOR_TRAIN_SAMPLES = 256
MONITOR_HELDOUT_SAMPLES = 128
BANK_PER_CLASS = 20
HELDOUT_PER_CLASS = 4

#: Training-set size from which the default monitor runs every epoch (:func:`auto_monitor_every`).
EVERY_EPOCH_SAMPLES = 1000

#: The quantities measured in both spaces (keys ``<name>_h`` and ``<name>_z``).
GEOMETRY_KEYS = ("alignment", "uniformity", "tolerance", "effective_rank")

#: Keys of runs written before both spaces were measured (all of ``h``) -> their current names.
LEGACY_KEYS = {name: f"{name}_h" for name in GEOMETRY_KEYS}

Augment = Callable[..., Tensor]


def auto_monitor_every(n_train: int) -> int:
    """The default monitoring interval (``FitConfig.monitor_every=None``) of a training set.

    Every epoch when the training set holds at least :data:`EVERY_EPOCH_SAMPLES` (1,000) samples,
    else every ``ceil(1000 / n_train)`` epochs (every 2 epochs at 500 samples, every 10 at 100).

    Why: a monitor call costs a bounded number of forward passes without gradient (the subsets of
    :func:`monitor_sizes`: 640 images for up to 12 classes), while an epoch trains ``views x
    n_train`` images with gradient; its share of the training time therefore falls as the training
    set grows. Measured on the 2-core CPU with the demo (digits, 1,347 training images, 15 epochs,
    bf16, one thread): about 0.05 s per call against 0.7 s per epoch, a few per cent of the
    command's time (docs/guides/reports.md, "Monitoring during training"). Below 1,000 samples the
    subsets are most of the small splits, so monitoring every epoch would cost a constant and
    larger share; spacing the calls keeps it near that of the demo.

    Args:
        n_train: Number of training samples (>= 1).

    Returns:
        The interval in epochs (>= 1).

    Example:
        >>> auto_monitor_every(60000), auto_monitor_every(1347), auto_monitor_every(500)
        (1, 1, 2)
    """
    n_train = _check_int(n_train, "n_train")
    return max(1, math.ceil(EVERY_EPOCH_SAMPLES / n_train))


def monitor_sizes(num_classes: int) -> tuple[int, int]:
    """How many training and held-out images the trainer's monitor uses for ``num_classes``.

    Args:
        num_classes: Number of classes of the dataset (>= 1).

    Returns:
        ``(bank, heldout)``: ``max(256, 20 * num_classes)`` and ``max(128, 4 * num_classes)``
        (subsets of smaller splits are the whole split).

    Example:
        >>> monitor_sizes(10), monitor_sizes(100)
        ((256, 128), (2000, 400))
    """
    num_classes = _check_int(num_classes, "num_classes")
    return (
        max(MONITOR_TRAIN_SAMPLES, BANK_PER_CLASS * num_classes),
        max(MONITOR_HELDOUT_SAMPLES, HELDOUT_PER_CLASS * num_classes),
    )


def read_metric(record: Mapping[str, Any], key: str) -> float | None:
    """The finite number under ``key`` in a log record or metrics mapping, or None.

    A key of both spaces ending in ``_h`` also reads its legacy name (``"alignment_h"`` reads
    ``"alignment"`` of older runs).

    Args:
        record: One line of ``epochs.jsonl`` or a ``metrics.json`` mapping.
        key: The metric's name.

    Returns:
        The value as a float, or None when it is absent, not a number, or not finite.
    """
    names = [key] + [old for old, new in LEGACY_KEYS.items() if new == key]
    for name in names:
        value = record.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _check_dataset(value: object, name: str) -> ArrayDataset:
    if not isinstance(value, ArrayDataset):
        raise TypeError(
            f"{name} must be a contrastkit.data.ArrayDataset, got {type(value).__name__}"
        )
    if len(value) < 1:
        raise ValueError(f"{name} must hold at least one image; got an empty dataset")
    return value


def subset(dataset: ArrayDataset, n: int, seed: int = 0) -> ArrayDataset:
    """A seeded random subset of ``n`` images (in their original order), or the whole dataset.

    Args:
        dataset: The dataset to draw from.
        n: Number of images to keep (>= 1); a dataset of at most ``n`` images is returned as is.
        seed: Seed of the draw (>= 0); the same seed gives the same subset.

    Returns:
        An :class:`~contrastkit.data.ArrayDataset` with the same name and number of classes.

    Raises:
        TypeError: If ``dataset`` is not an ``ArrayDataset`` or ``n``/``seed`` are not ints.
        ValueError: If ``n < 1`` or ``seed < 0``.
    """
    data = _check_dataset(dataset, "dataset")
    n = _check_int(n, "n")
    seed = _check_int(seed, "seed", minimum=0)
    if len(data) <= n:
        return data
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=gen)[:n].sort().values
    return ArrayDataset(
        images=data.images[idx],
        labels=data.labels[idx],
        name=data.name,
        num_classes=data.num_classes,
    )


def _two_views(augment: object, images: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """Two augmented views of ``images`` drawn from a private seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    views_fn = getattr(augment, "views", None)
    if callable(views_fn):  # a ViewAugment: (B, 2, C, H, W)
        both = views_fn(images, 2, generator=gen)
        return both[:, 0].contiguous(), both[:, 1].contiguous()
    if callable(augment):
        return augment(images, generator=gen), augment(images, generator=gen)
    raise TypeError(
        "augment must be a contrastkit.views.ViewAugment or a callable "
        f"augment(images, generator=...) -> images; got {type(augment).__name__}"
    )


def _check_modules(encoder: object, head: object) -> None:
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    if head is not None and not isinstance(head, nn.Module):
        raise TypeError(
            f"head must be a torch.nn.Module (the projection head) or None, got "
            f"{type(head).__name__}"
        )


def _geometry(
    out: dict[str, float],
    space: str,
    feats: Tensor,
    labels: Tensor,
    views: tuple[Tensor, Tensor] | None,
    seed: int,
) -> None:
    """Alignment, uniformity, tolerance and effective rank of one space, keys ``<name>_<space>``."""
    if views is not None:
        out[f"alignment_{space}"] = alignment(*views)
    if feats.shape[0] >= 2:  # a pair is needed; the key is left out otherwise (no NaN in the logs)
        out[f"uniformity_{space}"] = uniformity(feats, seed=seed)
    with contextlib.suppress(ValueError):  # no class with two samples: no same-class pair
        out[f"tolerance_{space}"] = tolerance(feats, labels)
    out[f"effective_rank_{space}"] = effective_rank(feats)


def _both_spaces(
    encoder: nn.Module,
    head: nn.Module | None,
    images: Tensor,
    labels: Tensor,
    augment: object | None,
    *,
    view_seed: int,
    seed: int,
    device: torch.device | str | None,
    h: Tensor | None = None,
) -> dict[str, float]:
    """The geometry of ``images`` in ``h`` and, with ``head``, in ``z`` (see the module doc)."""
    if h is None:
        h = extract_features(encoder, images, device=device)
    views_h: tuple[Tensor, Tensor] | None = None
    if augment is not None:
        v1, v2 = _two_views(augment, images, view_seed)
        views_h = (
            extract_features(encoder, v1, device=device),
            extract_features(encoder, v2, device=device),
        )
    out: dict[str, float] = {}
    _geometry(out, "h", h, labels, views_h, seed)
    if head is not None:
        z = extract_features(head, h, device=device)
        views_z = None
        if views_h is not None:
            views_z = (
                extract_features(head, views_h[0], device=device),
                extract_features(head, views_h[1], device=device),
            )
        _geometry(out, "z", z, labels, views_z, seed)
    return out


@torch.no_grad()
def epoch_metrics(
    encoder: nn.Module,
    train_subset: ArrayDataset,
    heldout: ArrayDataset,
    *,
    augment: Augment | None = None,
    k: int = 20,
    head: nn.Module | None = None,
) -> dict[str, float]:
    """kNN accuracy and the geometry of both spaces on a held-out subset (one monitor call).

    The encoder (and head) run in eval mode without grad on their own device, and get their
    train/eval flags back afterwards (:func:`~contrastkit.eval.extract_features`); under an
    enclosing ``torch.autocast`` they run in its precision. The global random generators are not
    used: the views for the alignment come from a private generator with a fixed seed.

    Args:
        encoder: Maps images ``(B, C, H, W)`` to features ``h`` ``(B, F)`` (or a tuple whose first
            element is the features).
        train_subset: Labelled images that form the kNN memory bank (a subset of the training set,
            see :func:`subset`).
        heldout: Labelled held-out images (e.g. a subset of the test set).
        augment: A :class:`~contrastkit.views.ViewAugment` (its ``views(x, 2, generator=g)`` is
            used) or a callable ``augment(images, generator=g)``; ``None`` skips the alignment.
        k: Number of neighbours of the kNN vote; capped at ``len(train_subset)``.
        head: The projection head mapping ``h`` to ``z``; ``None`` measures ``h`` only.

    Returns:
        ``knn_acc`` and, for each space (``h``; ``z`` with ``head``), ``effective_rank_<s>``,
        ``uniformity_<s>`` (held-out sets of two or more images), ``tolerance_<s>`` (a class with
        two held-out images) and ``alignment_<s>`` (with ``augment``); Python floats.

    Raises:
        TypeError: If the encoder, head or a dataset has the wrong type.
        ValueError: On an empty dataset, ``k < 1``, or non-finite encoder output.
    """
    _check_modules(encoder, head)
    train = _check_dataset(train_subset, "train_subset")
    test = _check_dataset(heldout, "heldout")
    k = min(_check_int(k, "k"), len(train))

    train_f = extract_features(encoder, train.images)
    test_f = extract_features(encoder, test.images)
    out: dict[str, float] = {
        "knn_acc": knn_accuracy(
            train_f, train.labels, test_f, test.labels, k=k, temperature=MONITOR_KNN_TEMPERATURE
        ),
    }
    out.update(
        _both_spaces(
            encoder,
            head,
            test.images,
            test.labels,
            augment,
            view_seed=VIEW_SEED,
            seed=0,
            device=None,
            h=test_f,
        )
    )
    return out


@torch.no_grad()
def geometry_metrics(
    encoder: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    head: nn.Module | None = None,
    augment: Augment | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Alignment, uniformity, tolerance and effective rank of a dataset in ``h`` and ``z``.

    What ``fit`` writes into ``metrics.json`` (on the test set, ``seed=0``) and the report shows;
    the report of a run with ``seed=0`` gives the same numbers on the same device.

    Args:
        encoder: Maps images to features ``h``.
        images: ``(N, C, H, W)`` images.
        labels: ``(N,)`` integer labels (for the tolerance).
        head: The projection head mapping ``h`` to ``z``; ``None`` measures ``h`` only.
        augment: The views' augmentation for the alignment (``None``: no alignment).
        seed: Seed of the two views (drawn from generator seed ``seed``) and of the uniformity's
            row subset above 10,000 rows (>= 0).
        device: Where to run the networks (``None``: the device of their parameters).

    Returns:
        ``{<name>_h, <name>_z}`` for the names of :data:`GEOMETRY_KEYS` (keys that cannot be
        computed, e.g. a tolerance without two samples of a class, are left out).

    Raises:
        TypeError: If the encoder or head is not a module, or ``images``/``labels`` are not tensors.
        ValueError: If ``images`` and ``labels`` differ in length, or on empty input.
    """
    _check_modules(encoder, head)
    seed = _check_int(seed, "seed", minimum=0)
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(
            f"images and labels must be torch tensors, got {type(images).__name__} and "
            f"{type(labels).__name__}"
        )
    if images.dim() < 2 or images.shape[0] < 1 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"images must be (N, ...) with N >= 1 and labels (N,); got shapes "
            f"{tuple(images.shape)} and {tuple(labels.shape)}"
        )
    return _both_spaces(
        encoder, head, images, labels, augment, view_seed=VIEW_SEED + seed, seed=seed, device=device
    )
