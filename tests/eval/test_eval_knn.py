"""Tests of contrastkit.eval.knn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.eval import knn_accuracy, knn_predict


def _blobs(n_per: int, n_classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(dim)[:n_classes] * 10
    labels = torch.arange(n_classes).repeat_interleave(n_per)
    return centers[labels] + torch.randn(len(labels), dim, generator=g), labels


@pytest.mark.parametrize("weighting", ["weighted", "majority"])
def test_separable_data_is_classified_perfectly(weighting: str) -> None:
    x_tr, y_tr = _blobs(30, 4, 8, seed=0)
    x_te, y_te = _blobs(10, 4, 8, seed=1)
    acc = knn_accuracy(x_tr, y_tr, x_te, y_te, k=5, weighting=weighting, chunk_size=7)
    assert acc == 1.0


def test_weighted_and_majority_differ_on_constructed_case() -> None:
    # Query at angle 0. One class-0 neighbour at 8 degrees (cos 0.99), two class-1 neighbours at
    # +-60 degrees (cos 0.5). Majority of 3: class 1. Weighted (t = 0.07):
    # e^{0.99/t} >> 2 e^{0.5/t}, so class 0.
    angles = torch.tensor([8.0, 60.0, -60.0, 180.0]) * math.pi / 180
    train = torch.stack([angles.cos(), angles.sin()], dim=1)
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_predict(train, labels, query, k=3, weighting="majority").item() == 1
    assert knn_predict(train, labels, query, k=3, weighting="weighted").item() == 0
    # With a large temperature the weights are nearly equal and the vote becomes the majority.
    assert knn_predict(train, labels, query, k=3, temperature=100.0).item() == 1


def test_matches_brute_force_votes() -> None:
    g = torch.Generator().manual_seed(3)
    train = torch.randn(50, 6, generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)
    test = torch.randn(13, 6, generator=g)
    k, t = 7, 0.2
    sim = torch.nn.functional.normalize(test, dim=1) @ torch.nn.functional.normalize(train, dim=1).T
    vals, idx = sim.topk(k, dim=1)
    votes = torch.zeros(13, 4).scatter_add_(1, labels[idx], torch.exp(vals / t))
    expected = votes.argmax(dim=1)
    pred = knn_predict(train, labels, test, k=k, temperature=t, chunk_size=4)
    assert torch.equal(pred, expected)
    pred6 = knn_predict(train, labels, test, k=k, temperature=t, num_classes=6)
    assert torch.equal(pred6, expected)


def test_arbitrary_label_values_and_numpy_input() -> None:
    x_tr, y_tr = _blobs(10, 3, 5, seed=0)
    x_te, y_te = _blobs(4, 3, 5, seed=1)
    mapping = np.array([-7, 3, 100])
    pred = knn_predict(x_tr.numpy(), mapping[y_tr.numpy()], x_te.numpy(), k=3)
    assert pred.dtype == torch.int64
    assert np.array_equal(pred.numpy(), mapping[y_te.numpy()])


def test_tiny_temperature_does_not_overflow() -> None:
    x_tr, y_tr = _blobs(10, 3, 5, seed=0)
    x_te, y_te = _blobs(4, 3, 5, seed=1)
    assert knn_accuracy(x_tr, y_tr, x_te, y_te, k=5, temperature=1e-4) == 1.0


def test_k_equal_to_n_train_is_allowed() -> None:
    x_tr, y_tr = _blobs(3, 2, 4, seed=0)
    assert knn_predict(x_tr, y_tr, x_tr, k=6).shape == (6,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 11}, "k must be <="),
        ({"k": 0}, "k must be"),
        ({"k": 3, "temperature": 0.0}, "temperature"),
        ({"k": 3, "weighting": "soft"}, "weighting"),
        ({"k": 3, "num_classes": 2}, r"\[0, num_classes\)"),
        ({"k": 3, "chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    x = torch.randn(10, 4)
    y = torch.arange(10) % 3
    with pytest.raises(ValueError, match=match):
        knn_predict(x, y, x, **kwargs)  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    x = torch.randn(10, 4)
    y = torch.arange(10) % 3
    with pytest.raises(ValueError, match="same feature dim"):
        knn_predict(x, y, torch.randn(3, 5))
    with pytest.raises(ValueError, match="shape"):
        knn_predict(x, y[:9], x)
    with pytest.raises(ValueError, match="shape"):
        knn_predict(x[0], y, x)
    with pytest.raises(ValueError, match="NaN"):
        knn_predict(x, y, torch.full((2, 4), float("nan")))
    with pytest.raises(TypeError, match="integers"):
        knn_predict(x, y.float(), x)
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy(x, y, x, y[:4])
