"""Fashion-MNIST from IDX files: tiny folders written by the tests, never the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import contrastkit.data.datasets as datasets_module
from contrastkit.data import (
    DATA_DIR_ENV,
    DatasetNotFoundError,
    find_fashion_mnist,
    load_dataset,
)
from contrastkit.data.idx import write_idx

N_TRAIN, N_TEST = 20, 10


def write_tiny_fashion_mnist(
    folder: Path, *, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write 20 train / 10 test random 28x28 images in the official file names."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.permutation(10).astype(np.uint8),
    }
    arrays["train-images-idx3-ubyte"][0] = 255  # make sure 1.0 occurs
    arrays["train-images-idx3-ubyte"][1] = 0
    for name, arr in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), arr)
    return arrays


@pytest.fixture(autouse=True)
def _no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the real Debian files (if installed) and the user's env var out of every test."""
    monkeypatch.setattr(
        datasets_module, "SYSTEM_FASHION_MNIST_DIRS", (tmp_path / "system-fashion-mnist",)
    )
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


def _check(split: object, arrays: dict[str, np.ndarray]) -> None:
    from contrastkit.data import DataSplit

    assert isinstance(split, DataSplit)
    tr, te = split.train, split.test
    assert len(tr) == N_TRAIN and len(te) == N_TEST
    assert tr.image_shape == (1, 28, 28)
    assert tr.images.dtype == torch.float32 and tr.labels.dtype == torch.int64
    assert tr.name == "fashion-mnist" and tr.num_classes == 10
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).float()[:, None] / 255
    assert torch.allclose(tr.images, expected)
    assert float(tr.images.max()) == 1.0 and float(tr.images.min()) == 0.0
    assert torch.equal(te.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_root(tmp_path: Path, gz: bool) -> None:
    arrays = write_tiny_fashion_mnist(tmp_path / "fm", gz=gz)
    for name in ("fashion-mnist", "fashion_mnist", "fmnist", "Fashion-MNIST"):
        _check(load_dataset(name, root=tmp_path / "fm"), arrays)
    # seed and test_fraction do not change the official split
    _check(load_dataset("fmnist", root=str(tmp_path / "fm"), seed=3, test_fraction=0.5), arrays)


def test_root_subfolder_layouts(tmp_path: Path) -> None:
    arrays = write_tiny_fashion_mnist(tmp_path / "data" / "FashionMNIST" / "raw", gz=False)
    _check(load_dataset("fashion-mnist", root=tmp_path / "data"), arrays)
    arrays = write_tiny_fashion_mnist(tmp_path / "d2" / "fashion-mnist", seed=1)
    _check(load_dataset("fashion-mnist", root=tmp_path / "d2"), arrays)


def test_plain_file_preferred_and_mixed(tmp_path: Path) -> None:
    arrays = write_tiny_fashion_mnist(tmp_path, gz=True)
    plain = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(N_TEST, dtype=np.uint8))
    files = find_fashion_mnist(tmp_path)
    assert files["test_labels"] == plain
    assert files["train_images"].name == "train-images-idx3-ubyte.gz"
    split = load_dataset("fashion-mnist", root=tmp_path)
    assert int(split.test.labels.abs().sum()) == 0
    assert torch.equal(
        split.train.labels, torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long()
    )


@pytest.mark.parametrize("sub", ["fashion-mnist", "."])
def test_load_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sub: str) -> None:
    arrays = write_tiny_fashion_mnist(tmp_path / "env" / sub)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    _check(load_dataset("fashion-mnist"), arrays)


def test_system_dir_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_tiny_fashion_mnist(tmp_path / "system-fashion-mnist")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty-env"))
    _check(load_dataset("fashion-mnist"), arrays)


def test_root_is_searched_alone(tmp_path: Path) -> None:
    write_tiny_fashion_mnist(tmp_path / "system-fashion-mnist")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=tmp_path / "elsewhere")
    assert "system-fashion-mnist" not in str(info.value)


def test_missing_files_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "my-data"
    env.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(env))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist")
    err = info.value
    assert isinstance(err, FileNotFoundError)
    assert isinstance(err, OSError)
    assert isinstance(err, ValueError)
    msg = str(err)
    assert str(env) in msg
    assert str(env / "fashion-mnist") in msg
    assert str(tmp_path / "system-fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "--data-root" in msg and "root=" in msg
    assert "download_fashion_mnist" in msg
    assert env in err.searched and tmp_path / "system-fashion-mnist" in err.searched


def test_partial_folder_names_missing_files(tmp_path: Path) -> None:
    write_tiny_fashion_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing t10k-images-idx3-ubyte"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_mismatched_files_are_reported(tmp_path: Path) -> None:
    write_tiny_fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(N_TEST + 1, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 10 integer labels"):
        load_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.slow
def test_real_files_if_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path("/usr/share/datasets/fashion-mnist")
    if not (real / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    monkeypatch.setattr(datasets_module, "SYSTEM_FASHION_MNIST_DIRS", (real,))
    split = load_dataset("fashion-mnist")
    assert (len(split.train), len(split.test)) == (60000, 10000)
    assert split.train.image_shape == (1, 28, 28)
    assert torch.equal(torch.bincount(split.test.labels), torch.full((10,), 1000))
