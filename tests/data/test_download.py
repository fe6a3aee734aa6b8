"""download_fashion_mnist against a file:// mirror of small gzipped IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data import DownloadError, download_fashion_mnist, load_dataset
from contrastkit.data.download import FASHION_MNIST_FILES
from contrastkit.data.idx import read_idx, write_idx


def _mirror(folder: Path, n_train: int = 12, n_test: int = 6) -> Path:
    rng = np.random.default_rng(0)
    write_idx(
        folder / "train-images-idx3-ubyte.gz",
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
    )
    write_idx(folder / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(
        folder / "t10k-images-idx3-ubyte.gz",
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
    )
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))
    return folder


def test_download_from_file_url(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path / "mirror")
    dest = tmp_path / "dl" / "fm"
    out = download_fashion_mnist(dest, base_url=mirror.as_uri())  # no trailing slash
    assert out == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(FASHION_MNIST_FILES)
    for name in FASHION_MNIST_FILES:
        assert (dest / name).read_bytes() == (mirror / name).read_bytes()
    split = load_dataset("fashion-mnist", root=dest)
    assert (len(split.train), len(split.test)) == (12, 6)
    want = torch.from_numpy(read_idx(mirror / "t10k-images-idx3-ubyte.gz")).float() / 255
    assert torch.allclose(split.test.images[:, 0], want)


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path / "mirror")
    dest = download_fashion_mnist(tmp_path / "dl", base_url=mirror.as_uri() + "/")
    _mirror(mirror, n_train=14)  # the mirror changes
    download_fashion_mnist(dest, base_url=mirror.as_uri())
    assert read_idx(dest / "train-labels-idx1-ubyte.gz").shape == (12,)
    download_fashion_mnist(dest, base_url=mirror.as_uri(), force=True)
    assert read_idx(dest / "train-labels-idx1-ubyte.gz").shape == (14,)


def test_missing_remote_file(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path / "mirror")
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match=r"could not download .*t10k-labels") as info:
        download_fashion_mnist(dest, base_url=mirror.as_uri())
    assert isinstance(info.value, OSError)
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    # what was fetched stays; no temporary file is left behind
    assert not (dest / "t10k-labels-idx1-ubyte.gz").exists()
    assert (dest / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"<html>not found</html>", "valid IDX"),
        (None, "shape"),
    ],
)
def test_bad_remote_file_is_rejected(tmp_path: Path, content: bytes | None, match: str) -> None:
    mirror = _mirror(tmp_path / "mirror")
    target = mirror / "train-images-idx3-ubyte.gz"
    if content is None:
        write_idx(target, np.zeros((3, 5, 5), dtype=np.uint8))  # valid IDX, wrong image size
    else:
        target.write_bytes(content)
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match=match):
        download_fashion_mnist(dest, base_url=mirror.as_uri())
    assert list(dest.iterdir()) == []


def test_bad_timeout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        download_fashion_mnist(tmp_path, base_url=tmp_path.as_uri(), timeout=0)


def test_cli_download_fashion_mnist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit.cli import main
    from contrastkit.data import load_dataset

    mirror = _mirror(tmp_path / "mirror")
    dest = tmp_path / "dl"
    args = ["download", "fashion-mnist", "--root", str(dest), "--url", mirror.as_uri()]
    assert main(args) == 0
    assert "--data fashion-mnist --data-root" in capsys.readouterr().out
    split = load_dataset("fashion-mnist", root=dest)
    assert (len(split.train), len(split.test)) == (12, 6)
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    assert main([*args, "--force"]) == 1
    assert "could not download" in capsys.readouterr().err
