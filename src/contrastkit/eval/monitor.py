"""Monitoring during training: a few cheap representation numbers on a held-out subset.

The trainer calls :func:`epoch_metrics` every ``monitor_every`` epochs (``FitConfig.monitor_every``)
with subsets of the training and test sets (see :func:`subset`), and writes the returned numbers
into that epoch's line of ``epochs.jsonl``; ``contrastkit report`` plots them over the epochs.

The numbers (docs/methods.md 2.8):

- ``knn_acc``: cosine kNN accuracy (InstDisc weighted votes, temperature 0.07) of the held-out
  features against the training-subset features;
- ``alignment`` (only with ``augment``): Wang & Isola's alignment ``mean ||f(x1) - f(x2)||^2`` of
  two augmented views of each held-out image, features L2-normalised;
- ``uniformity``: Wang & Isola's ``log mean exp(-2 ||f(x) - f(y)||^2)`` of the normalised held-out
  features;
- ``effective_rank``: Roy & Vetterli's effective rank of the centred held-out features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from contrastkit.data import ArrayDataset
from contrastkit.eval.features import _check_int, extract_features
from contrastkit.eval.geometry import alignment, effective_rank, uniformity
from contrastkit.eval.knn import knn_accuracy

__all__ = ["MONITOR_KNN_TEMPERATURE", "epoch_metrics", "subset"]

#: Temperature of the kNN vote (InstDisc's 0.07, the trainer's default ``knn_temperature``).
MONITOR_KNN_TEMPERATURE = 0.07

#: Seed of the generator that draws the two views for the alignment (fixed, so that the numbers of
#: successive epochs differ only through the encoder).
VIEW_SEED = 0

Augment = Callable[..., Tensor]


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


@torch.no_grad()
def epoch_metrics(
    encoder: nn.Module,
    train_subset: ArrayDataset,
    heldout: ArrayDataset,
    *,
    augment: Augment | None = None,
    k: int = 20,
) -> dict[str, float]:
    """kNN accuracy and geometry of the encoder's features on a held-out subset.

    The encoder runs in eval mode without grad on its own device, and gets its train/eval flags
    back afterwards (:func:`~contrastkit.eval.extract_features`). The global random generators are
    not used: the views for the alignment come from a private generator with a fixed seed.

    Args:
        encoder: Maps images ``(B, C, H, W)`` to features ``(B, F)`` (or a tuple whose first element
            is the features).
        train_subset: Labelled images that form the kNN memory bank (a subset of the training set,
            see :func:`subset`).
        heldout: Labelled held-out images (e.g. a subset of the test set).
        augment: A :class:`~contrastkit.views.ViewAugment` (its ``views(x, 2, generator=g)`` is
            used) or a callable ``augment(images, generator=g)``; ``None`` skips the alignment.
        k: Number of neighbours of the kNN vote; capped at ``len(train_subset)``.

    Returns:
        ``{"knn_acc", "uniformity", "effective_rank"}`` and, with ``augment``, ``"alignment"``;
        Python floats (``"uniformity"`` is left out for a held-out set of one image).

    Raises:
        TypeError: If the encoder or a dataset has the wrong type.
        ValueError: On an empty dataset, ``k < 1``, or non-finite encoder output.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
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
    if augment is not None:
        v1, v2 = _two_views(augment, test.images, VIEW_SEED)
        out["alignment"] = alignment(extract_features(encoder, v1), extract_features(encoder, v2))
    if len(test) >= 2:  # a pair is needed; the key is left out otherwise (no NaN in the logs)
        out["uniformity"] = uniformity(test_f)
    out["effective_rank"] = effective_rank(test_f)
    return out
