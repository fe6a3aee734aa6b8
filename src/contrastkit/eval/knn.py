"""k-nearest-neighbour classification of frozen features (cosine similarity, weighted votes).

The weighted vote is the one of InstDisc (Wu et al., "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", 2018), used as the standard kNN monitor of SimCLR-style
training: each of the ``k`` most similar training samples votes for its class with weight
``exp(s / temperature)``, where ``s`` is the cosine similarity; the class with the largest summed
weight wins.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_choice, check_positive
from contrastkit.eval.features import _as_features, _as_labels, _check_int, _check_same_dim

__all__ = ["knn_accuracy", "knn_predict"]

WEIGHTINGS = ("weighted", "majority")


@torch.no_grad()
def knn_predict(
    train_features: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray,
    test_features: Tensor | np.ndarray,
    *,
    k: int = 20,
    temperature: float = 0.07,
    weighting: str = "weighted",
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Predict test labels by a vote of the ``k`` most cosine-similar training features.

    For a test row ``q`` with top-``k`` neighbours ``j`` (similarity ``s_j = cos(q, x_j)``) the
    score of class ``c`` is ``sum_{j: y_j = c} w_j`` with ``w_j = exp(s_j / temperature)``
    ("weighted", InstDisc) or ``w_j = 1`` ("majority"). Ties go to the smallest class index. The
    test rows are processed in chunks of ``chunk_size``, so the peak memory is ``chunk_size *
    N_train`` similarities. The computation runs on the device of ``train_features``.

    Args:
        train_features: ``(N_train, D)`` features of the labelled (memory-bank) set.
        train_labels: ``(N_train,)`` integer labels.
        test_features: ``(N_test, D)`` features to classify.
        k: Number of neighbours, ``1 <= k <= N_train``.
        temperature: Temperature of the weighted vote (> 0); unused for "majority".
        weighting: ``"weighted"`` or ``"majority"``.
        num_classes: If given, labels must lie in ``[0, num_classes)`` and predictions are class
            indices. If ``None``, the classes are the distinct values of ``train_labels`` (any
            integers).
        chunk_size: Test rows per block.

    Returns:
        ``(N_test,)`` int64 CPU tensor of predicted labels (in the label space of ``train_labels``).

    Raises:
        ValueError: On wrong shapes, mismatched lengths or feature dims, NaN/inf, ``k > N_train``,
            labels outside ``[0, num_classes)``, a non-positive temperature or an unknown weighting.
    """
    train = _as_features(train_features, "train_features")
    test = _as_features(test_features, "test_features")
    _check_same_dim(train, test, "train_features", "test_features")
    labels = _as_labels(train_labels, train.shape[0], "train_labels")
    k = _check_int(k, "k")
    if k > train.shape[0]:
        raise ValueError(
            f"k must be <= the number of training samples ({train.shape[0]}); got k = {k}"
        )
    temperature = check_positive(temperature, "temperature")
    weighting = check_choice(weighting, "weighting", WEIGHTINGS)
    chunk_size = _check_int(chunk_size, "chunk_size")

    if num_classes is None:
        classes, targets = torch.unique(labels, return_inverse=True)
        n_classes = int(classes.numel())
    else:
        n_classes = _check_int(num_classes, "num_classes")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"train_labels must lie in [0, num_classes) = [0, {n_classes}); got values in "
                f"[{lo}, {hi}]"
            )
        classes, targets = None, labels

    device = train.device
    bank = F.normalize(train, dim=1)
    targets = targets.to(device)
    preds = torch.empty(test.shape[0], dtype=torch.int64)
    for start in range(0, test.shape[0], chunk_size):
        query = F.normalize(test[start : start + chunk_size].to(device), dim=1)
        sim = query @ bank.T
        top_sim, top_idx = sim.topk(k, dim=1)
        del sim
        if weighting == "weighted":
            # Subtracting the row maximum leaves the argmax unchanged and avoids overflow for tiny
            # t.
            weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)
        else:
            weights = torch.ones_like(top_sim)
        votes = torch.zeros(query.shape[0], n_classes, dtype=weights.dtype, device=device)
        votes.scatter_add_(1, targets[top_idx], weights)
        preds[start : start + query.shape[0]] = votes.argmax(dim=1).cpu()
    if classes is not None:
        preds = classes.cpu()[preds]
    return preds


@torch.no_grad()
def knn_accuracy(
    train_features: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray,
    test_features: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray,
    *,
    k: int = 20,
    temperature: float = 0.07,
    weighting: str = "weighted",
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> float:
    """Accuracy of :func:`knn_predict` on labelled test features.

    Args:
        train_features: ``(N_train, D)`` features of the labelled set.
        train_labels: ``(N_train,)`` integer labels.
        test_features: ``(N_test, D)`` features to classify.
        test_labels: ``(N_test,)`` integer ground-truth labels.
        k: Number of neighbours.
        temperature: Temperature of the weighted vote.
        weighting: ``"weighted"`` or ``"majority"``.
        num_classes: See :func:`knn_predict`.
        chunk_size: Test rows per block.

    Returns:
        The fraction of test rows whose predicted label equals ``test_labels``, in ``[0, 1]``.
    """
    test = _as_features(test_features, "test_features")
    truth = _as_labels(test_labels, test.shape[0], "test_labels")
    preds = knn_predict(
        train_features,
        train_labels,
        test,
        k=k,
        temperature=temperature,
        weighting=weighting,
        num_classes=num_classes,
        chunk_size=chunk_size,
    )
    return float((preds == truth.cpu()).double().mean())
