"""Data files from elsewhere: every way one can be empty, foreign, ambiguous or hostile is a
``ValueError`` naming the file, raised before anything large is allocated or anything runs."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contrastkit.data import load_dataset, load_image_folder
from contrastkit.data.cifar import UnsafePickleError, download_cifar, load_cifar
from contrastkit.data.download import download_fashion_mnist

Image = pytest.importorskip("PIL.Image")


# --------------------------------------------------------------------------------------------------
# .npz files


def _npy_bytes(header: dict[str, Any], payload: bytes) -> bytes:
    text = repr(header).encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"PK\x03\x04 and then nothing", "zip"),
        (b"just text", "zip"),
    ],
)
def test_an_empty_or_foreign_npz_is_refused(content: bytes, words: str, tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=words) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_an_npz_of_python_objects_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([object()] * 4), y=np.arange(4))
    with pytest.raises(ValueError, match=r"objects.npz\[x\]: an array of Python objects"):
        load_dataset(path)


def test_an_npy_header_declaring_more_than_is_stored_is_refused_before_allocating(
    tmp_path: Path,
) -> None:
    """A 40-byte member whose header claims 10**12 float64 values: numpy would allocate 8 TB."""
    path = tmp_path / "huge.npz"
    huge = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", _npy_bytes(huge, b"\0" * 40))
        buf = io.BytesIO()
        np.save(buf, np.arange(10**6) % 2)
        zf.writestr("y.npy", buf.getvalue())
    with pytest.raises(ValueError, match=r"huge.npz\[x\]: its header declares shape"):
        load_dataset(path)


def test_a_single_sample_is_refused_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez(path, x=np.zeros((1, 4, 4), np.uint8), y=np.array([3]))
    with pytest.raises(ValueError, match=r"one.npz: holds 1 sample"):
        load_dataset(path)


# --------------------------------------------------------------------------------------------------
# image folders


def _png(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


@pytest.mark.parametrize("part", ["train", "test", "val"])
def test_only_one_part_of_a_split_layout_is_ambiguous(part: str, tmp_path: Path) -> None:
    """Read as the flat layout, ``DIR/train/<class>/`` would train on one class, 'train'."""
    root = tmp_path / "photos"
    for c in ("cat", "dog"):
        for i in range(3):
            _png(root / part / c / f"{i}.png")
    with pytest.raises(ValueError, match=f"ambiguous layout: {part}/ holds class folders") as info:
        load_image_folder(root)
    message = str(info.value)
    assert "cat, dog" in message and "ROOT/train/<class>/<image>" in message
    assert str(root / part) in message  # what to pass instead
    split = load_image_folder(root / part)  # the suggestion works
    assert split.train.num_classes == 2


@pytest.mark.parametrize(("size", "kind"), [((200, 200), "error"), ((150, 100), "warning")])
def test_a_decompression_bomb_is_one_value_error(
    size: tuple[int, int], kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over twice Pillow's limit is its error, over the limit its warning: both refused."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12_000)
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        for i in range(2):
            _png(root / c / f"{i}.png")
    _png(root / "b" / "big.png", size, mode="1")
    with pytest.raises(ValueError, match=r"big.png: refused as a possible decompression bomb"):
        load_image_folder(root)


# --------------------------------------------------------------------------------------------------
# CIFAR pickles and downloads


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_a_refused_pickle_is_a_value_error_and_runs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "ran"
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_1: refused to load global posix.system"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(UnsafePickleError):  # still an UnpicklingError too
        load_cifar("cifar10", tmp_path)
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)
    assert not marker.exists()


def test_a_download_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for call in (
        lambda root: download_cifar("cifar10", root, url="file:///nowhere.tar.gz"),
        lambda root: download_fashion_mnist(root, base_url="file:///nowhere/"),
    ):
        for root in (afile, afile / "sub"):
            with pytest.raises(ValueError, match=r"afile is a file; expected a folder"):
                call(root)
    assert afile.read_text() == "mine"


def test_a_url_without_a_scheme_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    root = tmp_path / "new"
    with pytest.raises(ValueError, match=r"url 'nowhere' has no scheme"):
        download_cifar("cifar10", root, url="nowhere")
    with pytest.raises(ValueError, match=r"url 'gopher://x/' has the scheme 'gopher'"):
        download_fashion_mnist(root, base_url="gopher://x/")
    assert not root.exists()
