"""CIFAR-10 and CIFAR-100 from their "python version" archives (pickled batches).

The archives ``cifar-10-python.tar.gz`` and ``cifar-100-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html extract to a folder of pickled dicts (written by Python
2): ``data`` is a ``(n, 3072)`` uint8 array whose rows are the R, G and B planes of a 32x32 image,
each row-major; ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100) is a list of n class numbers.

Pickles can run arbitrary code when loaded, so the batches are read with
:class:`CifarUnpickler`, which rebuilds numpy arrays and plain Python containers and refuses every
other global. :func:`download_cifar` fetches and extracts an archive for users with a network;
:func:`find_cifar` and :func:`load_cifar` read the extracted folder.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

import numpy as np
import torch

from contrastkit.data.arrays import DATA_DIR_ENV, ArrayDataset, DatasetNotFoundError, DataSplit
from contrastkit.data.download import DownloadError, _downloaded, check_url, prepare_root

__all__ = [
    "CIFAR_BASE_URL",
    "CIFAR_SPECS",
    "CifarFormatError",
    "CifarSpec",
    "CifarUnpickler",
    "UnsafePickleError",
    "download_cifar",
    "find_cifar",
    "load_cifar",
    "safe_pickle_load",
]

#: Alex Krizhevsky's page at the University of Toronto, where both archives are published.
CIFAR_BASE_URL = "https://www.cs.toronto.edu/~kriz/"

_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR dataset comes from and how its extracted files are laid out.

    Attributes:
        name: Canonical name, ``"cifar10"`` or ``"cifar100"`` (also the datasets' ``name``).
        title: Human-readable name for messages.
        archive: File name of the official archive.
        url: Official download URL of the archive.
        md5: MD5 of the official archive (only checked for downloads from ``url``).
        folder: The single top-level folder the archive extracts to.
        train_files: Batch files of the training set, in order.
        test_files: Batch files of the test set, in order.
        label_key: Dict key of the labels in each batch.
        num_classes: Number of classes of ``label_key``.
    """

    name: str
    title: str
    archive: str
    url: str
    md5: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        """All batch files, train then test."""
        return self.train_files + self.test_files


# MD5 sums: the CIFAR-10 one is in the "Version / Size / md5sum" table of
# https://www.cs.toronto.edu/~kriz/cifar.html (checked in a stored copy of that page); the CIFAR-100
# one is from the same table, checked here against torchvision's CIFAR100.tgz_md5 and other public
# loaders that verify the official archive (the stored page copy cut off before that table).
#: The two datasets by canonical name.
CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10",
        title="CIFAR-10",
        archive="cifar-10-python.tar.gz",
        url=CIFAR_BASE_URL + "cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key=b"labels",
        num_classes=10,
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        title="CIFAR-100",
        archive="cifar-100-python.tar.gz",
        url=CIFAR_BASE_URL + "cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key=b"fine_labels",
        num_classes=100,
    ),
}


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global (a function or class) outside the allowed few.

    Also a ``ValueError``: a refused file is bad input (``contrastkit`` exits with code 2).
    """


class CifarFormatError(ValueError):
    """A CIFAR batch file cannot be decoded, or does not hold what a batch holds."""


def _spec(name: object) -> CifarSpec:
    """Return the spec of ``name`` (``"cifar10"``, ``"CIFAR-100"``, ``"cifar_10"``, ...)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str ('cifar10' or 'cifar100'), got {type(name).__name__}")
    key = name.strip().lower().replace("-", "").replace("_", "")
    spec = CIFAR_SPECS.get(key)
    if spec is None:
        raise ValueError(f"unknown CIFAR dataset {name!r}; expected 'cifar10' or 'cifar100'")
    return spec


# --------------------------------------------------------------------------------------------------
# restricted unpickling


def _latin1_encode(text: object, encoding: object = "utf-8", errors: object = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``, limited to how Python 3 pickles ``bytes`` in protocol 2.

    Protocol 2 has no bytes opcode, so Python 3 writes ``b"..."`` as
    ``_codecs.encode("...", "latin1")``; nothing else is accepted.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError(
            "refused _codecs.encode call: only _codecs.encode(str, 'latin1'), the way Python 3 "
            f"pickles bytes, is allowed; got encoding {encoding!r} for a {type(text).__name__}"
        )
    return text.encode("latin-1")


# numpy's array-rebuilding function, taken from how numpy itself pickles an array: it lives in
# numpy.core.multiarray (numpy 1) or numpy._core.multiarray (numpy 2), and touching numpy.core under
# numpy 2 emits a DeprecationWarning. Both spellings map to it, so pickles from either work.
_reduced: Any = np.empty(0, dtype=np.uint8).__reduce__()
_RECONSTRUCT: Callable[..., Any] = _reduced[0]

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers, and nothing else.

    Only the globals numpy arrays are pickled with are resolved (``_reconstruct`` from
    ``numpy.core.multiarray`` or ``numpy._core.multiarray``, ``numpy.ndarray``, ``numpy.dtype``),
    plus a latin-1-only ``_codecs.encode`` that Python 3 uses for ``bytes`` in protocol 2. Any other
    global raises :class:`UnsafePickleError` before anything is called, so loading never runs code
    from the file. Dicts, lists, tuples, strings, bytes and numbers need no globals.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global, or raise :class:`UnsafePickleError` naming the refused one."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: a CIFAR batch holds only numpy arrays "
                f"and plain Python values (allowed globals: {allowed})"
            ) from None


def safe_pickle_load(file: IO[bytes]) -> Any:
    """Unpickle ``file`` with :class:`CifarUnpickler`, Python 2 strings as ``bytes``.

    Args:
        file: A binary file object positioned at the start of a pickle.

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: (a ``pickle.UnpicklingError``) if the pickle references a global other
            than the allowed numpy ones; nothing from the file has been called then.
    """
    return CifarUnpickler(file, encoding="bytes").load()


# Errors a damaged pickle can raise while being decoded (besides pickle.UnpicklingError).
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    struct.error,
    OverflowError,
)


def _read_pickle(path: Path) -> Any:
    """Unpickle the file at ``path`` safely; errors name the file."""
    try:
        with path.open("rb") as f:
            return safe_pickle_load(f)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise CifarFormatError(
            f"{path}: cannot decode it as a CIFAR batch pickle ({type(exc).__name__}: {exc})"
        ) from exc


# --------------------------------------------------------------------------------------------------
# reading batches


def _entry(batch: dict[Any, Any], key: bytes, path: Path) -> Any:
    """Return ``batch[key]``, also accepting the ``str`` key a Python 3 pickle would have."""
    for k in (key, key.decode("ascii")):
        if k in batch:
            return batch[k]
    found = ", ".join(sorted(repr(k) for k in batch)) or "none"
    raise CifarFormatError(f"{path}: no {key.decode()!r} entry in the batch; found keys {found}")


def _check_batch(batch: object, path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """Validate a loaded batch; return its ``(n, 3072)`` uint8 pixels and int64 labels."""
    if not isinstance(batch, dict):
        raise CifarFormatError(
            f"{path}: expected a pickled dict with 'data' and {spec.label_key.decode()!r}, "
            f"got {type(batch).__name__}"
        )
    data = _entry(batch, b"data", path)
    if not isinstance(data, np.ndarray):
        raise CifarFormatError(f"{path}: 'data' must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise CifarFormatError(
            f"{path}: 'data' must be uint8 of shape (n, {_PIXELS}) (3 x 32 x 32 pixels per row), "
            f"got {data.dtype} of shape {data.shape}"
        )
    n = data.shape[0]
    key = spec.label_key.decode()
    raw = _entry(batch, spec.label_key, path)
    if not isinstance(raw, list | tuple | np.ndarray):
        raise CifarFormatError(f"{path}: {key!r} must be a list of ints, got {type(raw).__name__}")
    try:
        labels = np.asarray(raw) if len(raw) else np.zeros(0, dtype=np.int64)
    except ValueError as exc:
        raise CifarFormatError(f"{path}: {key!r} is not a flat list of ints ({exc})") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise CifarFormatError(
            f"{path}: {key!r} must be a flat list of ints, got dtype {labels.dtype} of shape "
            f"{labels.shape}"
        )
    if labels.shape[0] != n:
        raise CifarFormatError(
            f"{path}: {key!r} has {labels.shape[0]} entries but 'data' has {n} images"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= spec.num_classes):
        raise CifarFormatError(
            f"{path}: {key!r} must lie in 0..{spec.num_classes - 1} ({spec.title}), got min "
            f"{int(labels.min())}, max {int(labels.max())}"
        )
    return data, labels.astype(np.int64)


def _read_batch(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one batch file."""
    return _check_batch(_read_pickle(path), path, spec)


def _load_part(folder: Path, files: tuple[str, ...], spec: CifarSpec) -> ArrayDataset:
    """Concatenate the batches ``files`` of ``folder`` into one :class:`ArrayDataset`."""
    batches = [_read_batch(folder / f, spec) for f in files]
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    # Each row is the R, G, B planes in turn, each 32 rows of 32 pixels: (n, c, y, x) directly.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32)).to(torch.float32).div_(255.0)
    return ArrayDataset(images, torch.from_numpy(labels), spec.name, spec.num_classes)


# --------------------------------------------------------------------------------------------------
# finding the files


def _candidates(spec: CifarSpec, root: str | os.PathLike[str] | None) -> list[Path]:
    """Folders to search in order: under ``root`` if given, else under ``$CONTRASTKIT_DATA_DIR``."""
    if root is not None:
        bases = [Path(root).expanduser()]
    else:
        env = os.environ.get(DATA_DIR_ENV, "").strip()
        bases = [Path(env).expanduser()] if env else []
    # The archive's own folder first: it is where download_cifar puts (and force-replaces) files.
    subs = (spec.folder, ".", spec.name, f"{spec.name}/{spec.folder}")
    return [base if sub == "." else base / sub for base in bases for sub in subs]


def _folder_status(folder: Path, spec: CifarSpec) -> str | None:
    """None if ``folder`` holds every batch file, else what is wrong there."""
    if not folder.is_dir():
        return "no such folder"
    missing = [f for f in spec.files if not (folder / f).is_file()]
    if not missing:
        return None
    status = (
        "no batch files" if len(missing) == len(spec.files) else "missing " + ", ".join(missing)
    )
    if (folder / spec.archive).is_file():
        status += f"; {spec.archive} is here but not extracted"
    return status


def find_cifar(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Locate the folder holding the extracted CIFAR batch files.

    The search: with ``root``, only under it; otherwise under ``$CONTRASTKIT_DATA_DIR`` if set. In
    that base folder the archive's folder (``cifar-10-batches-py`` / ``cifar-100-python``, where
    :func:`download_cifar` extracts to), the folder itself, a dataset-named subfolder (``cifar10``
    / ``cifar100``) and the archive's folder inside that are tried in this order; the first holding
    every batch file wins.

    Args:
        name: ``"cifar10"`` or ``"cifar100"`` (case, ``-`` and ``_`` are ignored).
        root: Folder given by the user (``root=`` / ``--data-root``).

    Returns:
        The folder holding the batch files (``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
        for CIFAR-10, ``train`` and ``test`` for CIFAR-100).

    Raises:
        TypeError: If ``name`` is not a str.
        ValueError: If ``name`` is not a CIFAR dataset.
        DatasetNotFoundError: If no folder holds all batch files; the message lists every folder
            looked in, what was missing there, and how to get the files.
    """
    spec = _spec(name)
    folders = _candidates(spec, root)
    report: list[str] = []
    for folder in folders:
        status = _folder_status(folder, spec)
        if status is None:
            return folder
        report.append(f"  {folder}  ({status})")
    if root is not None:
        where = "the folder given as root"
    elif folders:
        where = f"${DATA_DIR_ENV}"
    else:
        where = "any folder"
        report.append(f"  (nowhere: no root was given and ${DATA_DIR_ENV} is not set)")
    message = (
        f"{spec.title} batch files not found in {where}. Looked for {', '.join(spec.files)} in:\n"
        + "\n".join(report)
        + "\nTo get them, do one of:\n"
        f"  - with a network: contrastkit.data.cifar.download_cifar({spec.name!r}, DIR) downloads "
        f"{spec.url} and extracts it to DIR/{spec.folder};\n"
        f"  - without: copy {spec.archive} to this machine and extract it into DIR (tar -xzf "
        f"{spec.archive} -C DIR, or, checked and safely, download_cifar({spec.name!r}, DIR, "
        f"url='file:///path/to/{spec.archive}'));\n"
        f"then pass root=DIR (Python) or --data-root DIR (CLI), or set {DATA_DIR_ENV}=DIR."
    )
    raise DatasetNotFoundError(message, searched=folders)


def load_cifar(name: str, root: str | os.PathLike[str] | None = None) -> DataSplit:
    """Load the official CIFAR-10 or CIFAR-100 train/test split from the extracted batches.

    Args:
        name: ``"cifar10"`` or ``"cifar100"`` (case, ``-`` and ``_`` are ignored).
        root: Folder holding the batches, searched as :func:`find_cifar` describes; None searches
            ``$CONTRASTKIT_DATA_DIR``.

    Returns:
        Train and test :class:`ArrayDataset` s named ``"cifar10"`` / ``"cifar100"``: float32 images
        ``(N, 3, 32, 32)`` (channels R, G, B) in ``[0, 1]`` and int64 labels, 10 classes or the
        100 fine classes of CIFAR-100 (50,000 / 10,000 images for the real files).

    Raises:
        DatasetNotFoundError: If the batch files are not found (see :func:`find_cifar`).
        UnsafePickleError: (a ``pickle.UnpicklingError``) if a batch file references a global
            beyond the numpy ones arrays need; nothing from it is run.
        CifarFormatError: (a ``ValueError``) if a batch file cannot be decoded or holds the wrong
            keys, dtype, shape or label values; the message names the file.
    """
    spec = _spec(name)
    folder = find_cifar(spec.name, root)
    return DataSplit(
        train=_load_part(folder, spec.train_files, spec),
        test=_load_part(folder, spec.test_files, spec),
    )


# --------------------------------------------------------------------------------------------------
# downloading and extracting


def _member_problem(member: tarfile.TarInfo, top: str) -> str | None:
    """Why ``member`` must not be extracted, or None if it is a plain file or folder under ``top``."""
    name = member.name
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.drive or windows.root:
        return f"{name!r} is an absolute path"
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts or ".." in windows.parts:
        return f"{name!r} contains '..'"
    if not parts or parts[0] != top:
        return f"{name!r} lies outside the folder {top}/"
    if member.issym() or member.islnk():
        return f"{name!r} is a link (to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return f"{name!r} is not a regular file or folder"
    return None


def _check_members(members: list[tarfile.TarInfo], spec: CifarSpec, url: str) -> None:
    """Refuse the archive unless every member is safe and every batch file is in it."""
    problems = [p for m in members if (p := _member_problem(m, spec.folder)) is not None]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise DownloadError(f"{url}: refusing to extract the archive: {shown}")
    regular = {
        "/".join(p for p in PurePosixPath(m.name).parts if p != ".") for m in members if m.isfile()
    }
    missing = [f for f in spec.files if f"{spec.folder}/{f}" not in regular]
    if missing:
        raise DownloadError(
            f"{url}: not the {spec.title} python archive: {spec.folder}/ lacks {', '.join(missing)}"
        )


def _move_into_place(new: Path, final: Path) -> None:
    """Rename the folder ``new`` to ``final``, replacing what is there only once ``new`` is in."""
    if not (final.exists() or final.is_symlink()):
        os.replace(new, final)
        return
    trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
    try:
        os.replace(final, trash / final.name)
        try:
            os.replace(new, final)
        except BaseException:
            os.replace(trash / final.name, final)
            raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _extract(archive: Path, staging: Path, spec: CifarSpec, url: str) -> None:
    """Check every member of the gzipped tar ``archive``, then extract it into ``staging``."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            _check_members(members, spec, url)
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: a second line of defence
                tar.extractall(staging, members=members, filter="data")
            else:  # pragma: no cover - older 3.11 patch releases; the checks above suffice
                tar.extractall(staging, members=members)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DownloadError(f"{url} did not give a valid gzipped tar archive: {exc}") from exc


def _install(archive: Path, folder: Path, spec: CifarSpec, url: str) -> Path:
    """Extract ``archive`` into a staging folder in ``folder``, check it, rename it into place."""
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{spec.folder}.", suffix=".part"))
    try:
        _extract(archive, staging, spec, url)
        extracted = staging / spec.folder
        for f in spec.files:
            try:
                _read_batch(extracted / f, spec)
            except (CifarFormatError, UnsafePickleError) as exc:
                raise DownloadError(f"{url}: {exc}") from exc
        final = folder / spec.folder
        _move_into_place(extracted, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def download_cifar(
    name: str,
    root: str | os.PathLike[str],
    *,
    url: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download the CIFAR-10 or CIFAR-100 python archive and extract it into ``root``.

    The archive is streamed to a temporary file in ``root`` and its MD5 checked when it comes from
    the official URL. Every member must be a plain file or folder under the archive's top folder
    (absolute paths, ``..``, links and devices are refused, and tarfile's ``"data"`` filter is
    applied as well); the batches are extracted into a temporary folder, read back with the safe
    unpickler and checked, and only then renamed to ``root/cifar-10-batches-py`` (or
    ``root/cifar-100-python``), so an interrupted run leaves neither a half-extracted folder nor
    the archive behind. Afterwards ``load_cifar(name, root=root)`` finds the files.

    Args:
        name: ``"cifar10"`` or ``"cifar100"`` (case, ``-`` and ``_`` are ignored).
        root: Folder to extract into (created if needed).
        url: Where to get the archive instead of the official URL, e.g. a mirror or a local copy as
            ``file:///path/to/cifar-10-python.tar.gz``; its MD5 is not checked (mirrors may
            recompress), only its layout and contents.
        force: Download and replace the files even if :func:`find_cifar` finds them under ``root``.
        timeout: Socket timeout in seconds for the request.

    Returns:
        The folder holding the batch files: the existing one when nothing was downloaded, else
        ``root/<archive folder>``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For an unknown ``name``, a ``timeout`` that is not positive, a ``url``
            without a scheme urllib opens, or a ``root`` that is a file.
        DownloadError: (an ``OSError``) if the archive cannot be fetched, fails the MD5 check, is
            not a gzipped tar, has unsafe or missing members, or holds invalid batches.
    """
    spec = _spec(name)
    if url is not None and not isinstance(url, str):
        raise TypeError(f"url must be a str or None, got {type(url).__name__}")
    if not isinstance(force, bool):
        raise TypeError(f"force must be a bool, got {type(force).__name__}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if url is not None:
        check_url(url)
    folder = prepare_root(root)
    if not force:
        try:
            return find_cifar(spec.name, folder)
        except DatasetNotFoundError:
            pass
    source = spec.url if url is None else url
    md5 = spec.md5 if source == spec.url else None
    hint = (
        f"Without a network, copy {spec.archive} to this machine and run "
        f"download_cifar({spec.name!r}, DIR, url='file:///path/to/{spec.archive}'), or extract it "
        "into DIR yourself; then pass root=DIR / --data-root DIR."
    )
    with _downloaded(source, folder / spec.archive, timeout=timeout, md5=md5, hint=hint) as tmp:
        return _install(tmp, folder, spec, source)
