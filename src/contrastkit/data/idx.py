"""Reading and writing the IDX array format (MNIST, Fashion-MNIST, EMNIST, ...).

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the number of
dimensions), then ``DD`` big-endian unsigned 32-bit dimension sizes, then the elements in C order,
each multi-byte element big-endian. Files are often gzipped (``*.gz``).

Both functions work on whole arrays at once (``numpy.frombuffer`` / ``tobytes``), with no Python
loop over the elements, so the 70,000 Fashion-MNIST images load in a fraction of a second.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["IDX_DTYPES", "IdxFormatError", "read_idx", "write_idx"]

#: IDX type code -> numpy dtype (big-endian, as stored on disk).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """A file is not a valid IDX file (bad magic, unknown type code, wrong size, broken gzip)."""


def _type_code(dtype: np.dtype) -> int:
    """Return the IDX type code of ``dtype`` (any byte order)."""
    for code, idx_dtype in IDX_DTYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    supported = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
    raise TypeError(f"IDX files cannot store dtype {dtype}; supported dtypes: {supported}")


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed) content of ``path``; gzip is detected from the content."""
    with path.open("rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxFormatError(
            f"{path}: broken or truncated gzip data ({exc}); delete the file and fetch it again"
        ) from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file into a numpy array.

    Gzip compression is detected from the file content (not only from a ``.gz`` suffix), since some
    tools decompress downloads but keep the name.

    Args:
        path: The file to read, plain or gzipped.

    Returns:
        A writable array in native byte order, with the dtype and shape stored in the file.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        IdxFormatError: (a ``ValueError``) if the magic number, the type code or the file size is
            wrong, or the gzip stream is broken.
    """
    p = Path(path)
    data = _read_bytes(p)
    if len(data) < 4:
        raise IdxFormatError(f"{p}: too short to be an IDX file ({len(data)} bytes, need >= 4)")
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{p}: bad IDX magic number {data[:4].hex()} (an IDX file starts with 00 00 TT DD)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IdxFormatError(f"{p}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise IdxFormatError(f"{p}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{p}: truncated IDX header ({len(data)} bytes, need {header} for {ndim} dimensions)"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing data"
        raise IdxFormatError(
            f"{p}: IDX file {what}: shape {shape} of {dtype.newbyteorder('=')} needs {expected} "
            f"data bytes, found {actual}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    # astype copies once into a writable, native-endian array.
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: npt.ArrayLike) -> Path:
    """Write an array to an IDX file, gzipped when ``path`` ends with ``.gz``.

    The file is written to a temporary name in the same folder and then moved into place, so a
    reader never sees a half-written file.

    Args:
        path: Destination file.
        array: Array of dtype uint8, int8, int16, int32, float32 or float64 with 1 to 255
        dimensions.

    Returns:
        The path written.

    Raises:
        TypeError: If the dtype cannot be stored in IDX.
        ValueError: If the array has no dimensions, too many, or a dimension >= 2**32.
    """
    p = Path(path)
    arr = np.asarray(array)
    code = _type_code(arr.dtype)
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"IDX files hold arrays with 1 to 255 dimensions, got shape {arr.shape}")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"IDX dimension sizes must be < 2**32, got shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw:
            if p.name.endswith(".gz"):
                with gzip.GzipFile(
                    filename=p.name[:-3], mode="wb", fileobj=raw, compresslevel=6, mtime=0
                ) as gz:
                    gz.write(header)
                    gz.write(body)
            else:
                raw.write(header)
                raw.write(body)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a data file should be world-readable
        os.replace(tmp_name, p)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return p
