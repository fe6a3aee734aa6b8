"""IDX reading and writing: round trips, the on-disk layout and errors for broken files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from contrastkit.data.idx import IdxFormatError, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        (np.uint8, (5, 4, 3)),
        (np.int8, (7,)),
        (np.int16, (3, 2)),
        (np.int32, (2, 3, 4)),
        (np.float32, (4, 4)),
        (np.float64, (2, 1, 2, 3)),
    ],
)
def test_round_trip(tmp_path: Path, suffix: str, dtype: type, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    arr: np.ndarray
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        arr = rng.standard_normal(shape).astype(dtype)
    path = tmp_path / f"a-idx{len(shape)}{suffix}"
    assert write_idx(path, arr) == path
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable
    assert not list(tmp_path.glob(".*.part"))  # the temporary file is gone


def test_on_disk_layout_is_big_endian(tmp_path: Path) -> None:
    arr = np.array([[1, 2, 3], [256, -1, 7]], dtype=np.int32)
    path = write_idx(tmp_path / "x.idx", arr)
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 2])
    assert raw[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert raw[12:16] == (1).to_bytes(4, "big")
    assert raw[24:28] == (256).to_bytes(4, "big")
    assert len(raw) == 12 + 6 * 4


def test_gz_suffix_compresses_and_content_is_sniffed(tmp_path: Path) -> None:
    arr = np.arange(100, dtype=np.uint8).reshape(10, 10)
    gz = write_idx(tmp_path / "x-idx2-ubyte.gz", arr)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    # gzipped content under a plain name (what some browsers leave behind) still reads
    renamed = tmp_path / "x-idx2-ubyte"
    renamed.write_bytes(gz.read_bytes())
    np.testing.assert_array_equal(read_idx(renamed), arr)
    # plain content under a .gz name too
    plain = tmp_path / "y.gz"
    plain.write_bytes(write_idx(tmp_path / "y", arr).read_bytes())
    np.testing.assert_array_equal(read_idx(plain), arr)


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(IdxFormatError, match="bad IDX magic"):
        read_idx(path)
    assert issubclass(IdxFormatError, ValueError)


def test_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(IdxFormatError, match="unknown IDX type code 0x0A"):
        read_idx(path)


def test_truncated_and_trailing(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((4, 5), dtype=np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:-3])
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(path)
    path.write_bytes(raw[:6])
    with pytest.raises(IdxFormatError, match="truncated IDX header"):
        read_idx(path)
    path.write_bytes(raw + b"\x00")
    with pytest.raises(IdxFormatError, match="trailing data"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(IdxFormatError, match="too short"):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", np.arange(4000, dtype=np.int32))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_rejects_unsupported(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x", np.zeros((), dtype=np.uint8))


def test_gzip_output_is_standard(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8)
    path = write_idx(tmp_path / "x.gz", arr)
    with gzip.open(path, "rb") as f:
        content = f.read()
    assert content == bytes([0, 0, 8, 1]) + (12).to_bytes(4, "big") + arr.tobytes()
