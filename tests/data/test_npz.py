"""Datasets from .npz files: both key layouts, channel layouts, dtypes and label remapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data import DatasetNotFoundError, load_dataset


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    ("shape", "chw"),
    [
        ((12, 6, 5), (1, 6, 5)),
        ((12, 1, 6, 5), (1, 6, 5)),
        ((12, 6, 5, 1), (1, 6, 5)),
        ((12, 3, 6, 5), (3, 6, 5)),
        ((12, 6, 5, 3), (3, 6, 5)),
    ],
)
def test_split_layout_and_channels(
    tmp_path: Path, shape: tuple[int, ...], chw: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, shape, dtype=np.uint8)
    x_test = rng.integers(0, 256, (4, *shape[1:]), dtype=np.uint8)
    path = _save(
        tmp_path / "toy.npz",
        x_train=x_train,
        y_train=np.arange(12) % 3,
        x_test=x_test,
        y_test=np.array([0, 1, 2, 0]),
    )
    split = load_dataset(str(path))
    assert split.train.image_shape == chw
    assert (len(split.train), len(split.test)) == (12, 4)
    assert split.train.name == "toy" and split.train.num_classes == 3
    assert split.train.images.dtype == torch.float32
    # values are the pixels / 255, at the right place after the channel move
    want = x_train.astype(np.float32) / 255
    if len(shape) == 3:
        want = want[:, None]
    elif shape[-1] in (1, 3) and shape[1] not in (1, 3):
        want = want.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(split.train.images.numpy(), want)


def test_labels_are_remapped_consistently(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "a.npz",
        x_train=np.zeros((4, 2, 2), np.uint8),
        y_train=np.array([30, 10, 20, 10], dtype=np.int16),
        x_test=np.zeros((3, 2, 2), np.uint8),
        y_test=np.array([[20], [40], [10]], dtype=np.uint32),  # (N, 1) is flattened
    )
    split = load_dataset(path)
    assert split.train.labels.tolist() == [2, 0, 1, 0]
    assert split.test.labels.tolist() == [1, 3, 0]
    assert split.train.num_classes == split.test.num_classes == 4
    assert split.train.labels.dtype == torch.int64


def test_xy_layout_is_split_by_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((40, 4, 4), dtype=np.float64)  # floats in [0, 1] are used as given
    y = np.repeat(np.array([-1, 5, 7, 9]), 10)
    path = _save(tmp_path / "xy.npz", x=x, y=y)
    a = load_dataset(path, seed=0)
    assert (len(a.train), len(a.test)) == (30, 10)
    assert a.train.num_classes == 4
    # stratified: 10 test samples over 4 classes of 10 -> 2 or 3 of each
    counts = torch.bincount(a.test.labels, minlength=4).tolist()
    assert set(counts) <= {2, 3} and sum(counts) == 10
    assert torch.equal(load_dataset(path, seed=0).test.images, a.test.images)
    assert not torch.equal(load_dataset(path, seed=1).test.images, a.test.images)
    half = load_dataset(path, seed=0, test_fraction=0.5)
    assert torch.bincount(half.test.labels).tolist() == [5, 5, 5, 5]
    # train and test together are the input, each row once
    rows = torch.cat([a.train.images, a.test.images]).flatten(1).double()
    np.testing.assert_allclose(
        np.sort(rows.sum(1).numpy()), np.sort(x.reshape(40, -1).sum(1)), 1e-6
    )


def test_xy_unstratifiable_falls_back(tmp_path: Path) -> None:
    x = np.zeros((6, 3, 3), np.uint8)
    y = np.array([0, 0, 0, 0, 0, 1])  # class 1 has a single member: no stratified split
    split = load_dataset(_save(tmp_path / "s.npz", x=x, y=y), test_fraction=0.5)
    assert (len(split.train), len(split.test)) == (3, 3)
    assert split.train.num_classes == 2


def test_float_out_of_range(tmp_path: Path) -> None:
    path = _save(tmp_path / "f.npz", x=np.full((4, 2, 2), 255.0), y=np.arange(4) % 2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*max 255"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("arrays", "exc", "match"),
    [
        ({"x": np.zeros((4, 2, 2), np.int16), "y": np.arange(4)}, TypeError, "uint8"),
        ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.arange(4.0)}, TypeError, "integer"),
        ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.arange(3)}, ValueError, "expected 4"),
        ({"x": np.zeros((4, 5, 2, 2), np.uint8), "y": np.arange(4)}, ValueError, "channel"),
        ({"x": np.zeros((4, 4), np.uint8), "y": np.arange(4)}, ValueError, "shape"),
        ({"images": np.zeros((4, 2, 2)), "y": np.arange(4)}, ValueError, "found images, y"),
        (
            {
                "x_train": np.zeros((4, 2, 2), np.uint8),
                "y_train": np.arange(4),
                "x_test": np.zeros((2, 3, 2), np.uint8),
                "y_test": np.arange(2),
            },
            ValueError,
            "image shapes differ",
        ),
    ],
)
def test_bad_arrays(tmp_path: Path, arrays: dict[str, np.ndarray], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        load_dataset(_save(tmp_path / "bad.npz", **arrays))


def test_missing_npz(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"no \.npz file at") as info:
        load_dataset(str(tmp_path / "nope.npz"))
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert str(tmp_path / "nope.npz") in str(info.value)


def test_relative_npz_under_root(tmp_path: Path) -> None:
    _save(tmp_path / "r.npz", x=np.zeros((4, 2, 2), np.uint8), y=np.arange(4) % 2)
    split = load_dataset("r.npz", root=tmp_path)
    assert len(split.train) + len(split.test) == 4


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"cannot read it as an \.npz"):
        load_dataset(path)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        load_dataset(single)
