"""Download the Fashion-MNIST IDX files, for users with a network.

On machines without a network, install Debian's package instead (``apt-get install
dataset-fashion-mnist``, files under ``/usr/share/datasets/fashion-mnist``) or copy the four files
into a folder and pass it as ``root=`` / ``--data-root``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from contrastkit.data.idx import IdxFormatError, read_idx

__all__ = [
    "DEFAULT_URL",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MD5",
    "DownloadError",
    "check_url",
    "download_fashion_mnist",
    "prepare_root",
]

#: URL schemes the downloads open (urllib's).
URL_SCHEMES = ("http", "https", "ftp", "file")

#: Zalando Research's official server for Fashion-MNIST.
DEFAULT_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: The four files of the official split, in the order train images, train labels, test images, test
#: labels.
FASHION_MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: MD5 of the gzipped files on :data:`DEFAULT_URL` (from the Fashion-MNIST README). Mirrors that
#: recompress the files (Debian's package does) have other checksums, so they are only checked for
#: downloads from :data:`DEFAULT_URL`.
FASHION_MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

_CHUNK = 1 << 20

_FASHION_MNIST_HINT = (
    "Without a network, install Debian's package (apt-get install dataset-fashion-mnist) or copy "
    "the IDX files into a folder and pass it as root= / --data-root DIR."
)


class DownloadError(OSError):
    """A file could not be fetched, or what came is not the expected file."""


def check_url(url: str) -> str:
    """Check that ``url`` has a scheme the downloads can open; return it.

    Raises:
        ValueError: No scheme, or one urllib does not open (the message lists those it does).
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise ValueError(
            f"url {url!r} has {'no scheme' if not scheme else f'the scheme {scheme!r}'}; "
            f"expected {', '.join(s + '://' for s in URL_SCHEMES)} (file:// for a local copy)"
        )
    return url


def prepare_root(root: str | os.PathLike[str]) -> Path:
    """The download folder ``root``, created if missing; a file in its place is refused.

    Raises:
        ValueError: ``root`` or one of its parents is a file.
        DownloadError: The folder cannot be created (permissions, a full disk).
    """
    folder = Path(root).expanduser()
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"download root {folder}: {path} is a file; expected a folder to put the files "
                "in (it is created if missing)"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the download root {folder}: {exc}") from exc
    return folder


def _md5(path: Path) -> str:
    """Return the hex MD5 digest of the file at ``path``."""
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, name: str, url: str) -> None:
    """Check that the downloaded ``path`` is the IDX file ``name`` claims to be."""
    try:
        arr = read_idx(path)
    except IdxFormatError as exc:
        raise DownloadError(f"{url} did not give a valid IDX file: {exc}") from exc
    want_ndim = 3 if "images" in name else 1
    if (
        arr.dtype.name != "uint8"
        or arr.ndim != want_ndim
        or (want_ndim == 3 and arr.shape[1:] != (28, 28))
    ):
        want = "(N, 28, 28) uint8" if want_ndim == 3 else "(N,) uint8"
        raise DownloadError(
            f"{url} gave an IDX array of shape {arr.shape} and dtype {arr.dtype}; expected {want}"
        )


@contextlib.contextmanager
def _downloaded(
    url: str, dest: Path, *, timeout: float, md5: str | None, hint: str = _FASHION_MNIST_HINT
) -> Iterator[Path]:
    """Stream ``url`` to a temporary file next to ``dest``, check its MD5 and yield its path.

    The temporary file lies in ``dest.parent`` (so it can be renamed to ``dest`` atomically) and is
    removed on leaving the block unless the caller has moved it away.

    Args:
        url: What to download; any scheme urllib opens, ``file://`` included.
        dest: The file the download is meant for; only its folder and name are used.
        timeout: Socket timeout in seconds.
        md5: Expected hex MD5 digest, or None to skip the check.
        hint: Sentence appended to the error when the download fails, saying how to get the data
            without a network.

    Yields:
        The path of the complete, checked temporary file.

    Raises:
        DownloadError: If ``url`` cannot be fetched or its MD5 differs from ``md5``.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out, _CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"could not download {url}: {exc}. {hint}") from exc
        if md5 is not None and (got := _md5(tmp)) != md5:
            raise DownloadError(f"{url}: MD5 checksum mismatch (expected {md5}, got {got})")
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(
    url: str,
    dest: Path,
    *,
    timeout: float,
    md5: str | None,
    verify: Callable[[Path, str, str], None] = _verify,
    hint: str = _FASHION_MNIST_HINT,
) -> None:
    """Download ``url`` to ``dest`` through a temporary file in the same folder, then verify it.

    ``verify(tmp_path, dest.name, url)`` checks the content and raises :class:`DownloadError` if it
    is wrong; only a file that passes is moved to ``dest``.
    """
    with _downloaded(url, dest, timeout=timeout, md5=md5, hint=hint) as tmp:
        verify(tmp, dest.name, url)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a data file should be world-readable
        os.replace(tmp, dest)


def download_fashion_mnist(
    root: str | os.PathLike[str],
    *,
    base_url: str = DEFAULT_URL,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download the four Fashion-MNIST IDX files (gzipped) into ``root``.

    Each file is streamed to a temporary file in ``root``, checked (its MD5 when it comes from
    :data:`DEFAULT_URL`, and always its IDX header, dtype, shape and size) and only then moved to
    its final name, so an interrupted download never leaves a broken file behind. Afterwards
    ``load_dataset("fashion-mnist", root=root)`` finds the files.

    Args:
        root: Folder to write the files into (created if needed).
        base_url: Folder URL holding the four ``*.gz`` files; any scheme urllib opens works,
            including ``file://`` for a local mirror.
        force: Download again even if a file already exists.
        timeout: Socket timeout in seconds for each request.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: A ``timeout`` that is not positive, a ``base_url`` without a scheme urllib
            opens, or a ``root`` that is a file.
        DownloadError: (an ``OSError``) if a file cannot be fetched or is not a valid Fashion-MNIST
            IDX file.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    check_url(base_url)
    folder = prepare_root(root)
    base = base_url if base_url.endswith("/") else base_url + "/"
    check_md5 = base_url.rstrip("/") == DEFAULT_URL.rstrip("/")
    for name in FASHION_MNIST_FILES:
        dest = folder / name
        if dest.exists() and not force:
            continue
        md5 = FASHION_MNIST_MD5[name] if check_md5 else None
        _fetch(base + name, dest, timeout=timeout, md5=md5)
    return folder
