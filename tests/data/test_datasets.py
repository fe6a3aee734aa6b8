"""ArrayDataset / DataSplit validation, the bundled digits and load_dataset's argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.data import ArrayDataset, DataSplit, known_datasets, load_dataset


def _ds(n: int = 4, k: int = 3, **kw: object) -> ArrayDataset:
    fields: dict[str, object] = {
        "images": torch.rand(n, 1, 5, 6),
        "labels": torch.arange(n) % k,
        "name": "toy",
        "num_classes": k,
    }
    fields.update(kw)
    return ArrayDataset(**fields)  # type: ignore[arg-type]


def test_array_dataset_basics() -> None:
    ds = _ds(6, 3)
    assert len(ds) == 6
    assert ds.image_shape == (1, 5, 6)
    img, lab = ds[2]
    assert img.shape == (1, 5, 6)
    assert int(lab) == 2
    assert "n=6" in repr(ds)
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"images": np.zeros((4, 1, 5, 6))}, TypeError, "torch.Tensor"),
        ({"images": torch.rand(4, 1, 5, 6, dtype=torch.float64)}, TypeError, "float32"),
        ({"images": torch.rand(4, 5, 6)}, ValueError, r"\(N, C, H, W\)"),
        ({"images": torch.rand(4, 1, 5, 6) * 2}, ValueError, r"\[0, 1\]"),
        ({"images": torch.full((4, 1, 5, 6), float("nan"))}, ValueError, r"\[0, 1\]"),
        ({"labels": torch.zeros(3, dtype=torch.int64)}, ValueError, "one per image"),
        ({"labels": torch.zeros(4, dtype=torch.int32)}, TypeError, "int64"),
        ({"labels": torch.tensor([0, 1, 2, 3])}, ValueError, "0..2"),
        ({"labels": torch.tensor([0, -1, 2, 1])}, ValueError, "0..2"),
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"name": ""}, TypeError, "name"),
    ],
)
def test_array_dataset_validation(kw: dict[str, object], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        _ds(**kw)  # type: ignore[arg-type]


def test_empty_dataset_is_allowed() -> None:
    ds = _ds(0, 2)
    assert len(ds) == 0


def test_data_split_validation() -> None:
    DataSplit(train=_ds(), test=_ds(2))
    with pytest.raises(ValueError, match="image shapes differ"):
        DataSplit(train=_ds(), test=_ds(images=torch.rand(4, 1, 5, 5)))
    with pytest.raises(ValueError, match="num_classes differ"):
        DataSplit(train=_ds(), test=_ds(k=4))
    with pytest.raises(TypeError, match="ArrayDataset"):
        DataSplit(train=_ds(), test="x")  # type: ignore[arg-type]


def test_known_datasets() -> None:
    assert known_datasets() == ["cifar10", "cifar100", "digits", "fashion-mnist"]
    assert {"fmnist", "fashion_mnist"} <= set(known_datasets(include_aliases=True))


def test_digits() -> None:
    split = load_dataset("digits")
    tr, te = split.train, split.test
    assert len(tr) + len(te) == 1797
    assert len(te) == 450  # ceil(0.25 * 1797)
    for ds in (tr, te):
        assert ds.images.dtype == torch.float32
        assert ds.labels.dtype == torch.int64
        assert ds.image_shape == (1, 8, 8)
        assert ds.num_classes == 10
        assert ds.name == "digits"
        assert float(ds.images.min()) == 0.0
        assert float(ds.images.max()) == 1.0
    # stratified: each class's share is (almost) the same in both parts
    p_tr = torch.bincount(tr.labels, minlength=10).double() / len(tr)
    p_te = torch.bincount(te.labels, minlength=10).double() / len(te)
    assert float((p_tr - p_te).abs().max()) < 0.01

    again = load_dataset("Digits", seed=0)
    assert torch.equal(again.train.images, tr.images)
    assert torch.equal(again.test.labels, te.labels)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(other.test.images, te.images)

    small = load_dataset("digits", test_fraction=0.1, seed=3)
    assert len(small.test) == 180
    assert torch.bincount(small.test.labels, minlength=10).min() >= 17


def test_digits_matches_sklearn() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16).flatten(1)
    split = load_dataset("digits", seed=5)
    got = torch.cat([split.train.images, split.test.images]).flatten(1)
    labels = torch.cat([split.train.labels, split.test.labels])
    # the two parts together are exactly the 1,797 digits (compared as sorted random projections)
    w = torch.randn(64, generator=torch.Generator().manual_seed(0)).double()
    assert torch.allclose((x.double() @ w).sort().values, (got.double() @ w).sort().values)
    assert torch.equal(labels.sort().values, torch.from_numpy(bunch.target).long().sort().values)


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar-11'") as info:
        load_dataset("cifar-11")
    msg = str(info.value)
    assert "digits" in msg
    assert "fashion-mnist" in msg
    assert ".npz" in msg
    with pytest.raises(ValueError, match="Did you mean 'fashion-mnist'"):
        load_dataset("fashion-mnst")


@pytest.mark.parametrize(
    ("kw", "exc"),
    [
        ({"test_fraction": 0.0}, ValueError),
        ({"test_fraction": 1.0}, ValueError),
        ({"test_fraction": float("nan")}, ValueError),
        ({"test_fraction": "0.2"}, TypeError),
        ({"seed": 1.5}, TypeError),
        ({"seed": True}, TypeError),
        ({"seed": -1}, ValueError),
    ],
)
def test_argument_validation(kw: dict[str, object], exc: type) -> None:
    with pytest.raises(exc):
        load_dataset("digits", **kw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        load_dataset(3)  # type: ignore[arg-type]
