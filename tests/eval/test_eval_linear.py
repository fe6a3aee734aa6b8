"""Tests of contrastkit.eval.linear.linear_probe."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from contrastkit.eval import ProbeResult, linear_probe


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_tr, x_te, y_tr, y_te


@pytest.fixture(scope="module")
def digits_probe(digits: tuple[np.ndarray, ...]) -> ProbeResult:
    x_tr, x_te, y_tr, y_te = digits
    return linear_probe(x_tr, y_tr, x_te, y_te)


def test_digits_accuracy_matches_sklearn(
    digits: tuple[np.ndarray, ...], digits_probe: ProbeResult
) -> None:
    x_tr, x_te, y_tr, y_te = digits
    scaler = StandardScaler().fit(x_tr)
    ref = LogisticRegression(max_iter=5000).fit(scaler.transform(x_tr), y_tr)
    ref_acc = ref.score(scaler.transform(x_te), y_te)
    assert digits_probe.accuracy >= 0.95
    assert abs(digits_probe.accuracy - ref_acc) <= 0.02
    assert digits_probe.weight_decay in (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
    assert [w for w, _ in digits_probe.val_accuracies] == [0.0, 1e-5, 1e-4, 1e-3, 1e-2]
    best_val = max(a for _, a in digits_probe.val_accuracies)
    assert digits_probe.val_accuracy == best_val
    assert digits_probe.train_accuracy >= digits_probe.accuracy - 0.05


@pytest.mark.parametrize("weight_decay", [1e-3, 1e-2])
def test_fixed_weight_decay_matches_sklearn_objective(
    digits: tuple[np.ndarray, ...], weight_decay: float
) -> None:
    # lambda/2 ||W||^2 + mean CE  <=>  sklearn C = 1 / (lambda * n).
    x_tr, x_te, y_tr, y_te = digits
    result = linear_probe(x_tr, y_tr, x_te, y_te, weight_decays=(weight_decay,))
    scaler = StandardScaler().fit(x_tr)
    ref = LogisticRegression(C=1.0 / (weight_decay * len(y_tr)), max_iter=5000, tol=1e-8)
    ref.fit(scaler.transform(x_tr), y_tr)
    assert result.weight_decay == weight_decay
    assert abs(result.accuracy - ref.score(scaler.transform(x_te), y_te)) <= 0.01
    assert abs(result.train_accuracy - ref.score(scaler.transform(x_tr), y_tr)) <= 0.01


def test_result_is_frozen(digits_probe: ProbeResult) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        digits_probe.accuracy = 1.0  # type: ignore[misc]


def test_seeded_and_label_values_free() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 10, generator=g) * 3
    y = torch.arange(3).repeat(40)
    x = centers[y] + torch.randn(120, 10, generator=g)
    labels = torch.tensor([-5, 2, 40])[y]
    a = linear_probe(x[:90], labels[:90], x[90:], labels[90:], weight_decays=(1e-3, 1e-2))
    b = linear_probe(x[:90], labels[:90], x[90:], labels[90:], weight_decays=(1e-3, 1e-2))
    assert a == b
    assert a.accuracy == 1.0


def test_constant_and_tiny_scale_features() -> None:
    # Tiny-scale informative features are standardised; a constant column (whose float std is pure
    # rounding error) is left at zero instead of being amplified to unit scale.
    g = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat(50)
    x = (torch.randn(100, 4, generator=g) + 3.0 * y[:, None]) * 1e-6
    x = torch.cat([x, torch.full((100, 1), 0.1)], dim=1)
    result = linear_probe(x[:80], y[:80], x[80:], y[80:], weight_decays=(1e-3,))
    assert result.accuracy == 1.0


def test_unseen_test_class_counts_as_error() -> None:
    x = torch.cat([torch.zeros(20, 2), torch.ones(20, 2) * 5]) + torch.randn(40, 2) * 0.1
    y = torch.arange(2).repeat_interleave(20)
    x_te = x[:4]
    y_te = torch.tensor([0, 0, 7, 7])
    result = linear_probe(x, y, x_te, y_te, weight_decays=(1e-2,))
    assert result.accuracy == 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight_decays": ()}, "at least one"),
        ({"weight_decays": (-1.0,)}, "weight_decays"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.01}, "no validation sample"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    x = torch.randn(20, 3)
    y = torch.arange(20) % 2
    with pytest.raises(ValueError, match=match):
        linear_probe(x, y, x, y, **kwargs)  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    x = torch.randn(20, 3)
    y = torch.arange(20) % 2
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(x, torch.zeros(20, dtype=torch.int64), x, y)
    with pytest.raises(ValueError, match="same feature dim"):
        linear_probe(x, y, torch.randn(5, 4), y[:5])
    with pytest.raises(ValueError, match="test_labels"):
        linear_probe(x, y, x, y[:5])
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(x.masked_fill(x > 1, float("nan")), y, x, y)
    with pytest.raises(TypeError, match="weight_decays"):
        linear_probe(x, y, x, y, weight_decays=1e-3)  # type: ignore[arg-type]


def test_fallback_weight_decay_when_no_validation_split_fits() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat_interleave(3)  # three per class: round(0.1 * 3) = 0 held out
    x = torch.randn(6, 4, generator=g) + 3.0 * y[:, None]
    with pytest.raises(ValueError, match="no validation sample"):
        linear_probe(x, y, x, y)
    result = linear_probe(x, y, x, y, fallback_weight_decay=1e-3)
    assert result.weight_decay == 1e-3 and np.isnan(result.val_accuracy)
    assert result.val_accuracies == () and result.accuracy == result.train_accuracy == 1.0
    big = torch.randn(60, 4, generator=g)
    labels = torch.arange(60) % 2
    searched = linear_probe(big, labels, big, labels, fallback_weight_decay=1e-3)
    assert searched.val_accuracies  # enough data: the search runs, the fallback is unused
    with pytest.raises(ValueError, match="fallback_weight_decay"):
        linear_probe(x, y, x, y, fallback_weight_decay=-1.0)
