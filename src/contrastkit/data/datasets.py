"""The loaders behind :func:`load_dataset`, and the dispatch from a name or path to one of them.

Every loader returns a :class:`DataSplit` of two :class:`ArrayDataset` s: float32 images
``(N, C, H, W)`` in ``[0, 1]`` and int64 labels ``0..K-1``. The sources:

- ``"digits"``: scikit-learn's bundled ``load_digits`` (1,797 8x8 images), always available; a
  stratified train/test split fixed by ``seed``.
- ``"fashion-mnist"`` (aliases ``"fashion_mnist"``, ``"fmnist"``): the official 60,000/10,000 split
  from the standard IDX files, found in ``root``, in ``$CONTRASTKIT_DATA_DIR`` or where Debian's
  package ``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist``).
- ``"cifar10"`` / ``"cifar100"``: the python-version batches (:mod:`.cifar`);
- a path to an ``.npz`` file with arrays ``x_train, y_train, x_test, y_test`` or ``x, y``;
- a folder of class folders of images (:mod:`.image_folder`).
"""

from __future__ import annotations

import difflib
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.arrays import (
    DATA_DIR_ENV,
    ArrayDataset,
    DatasetNotFoundError,
    DataSplit,
    check_seed,
    check_test_fraction,
    split_indices,
    uint8_images,
)
from contrastkit.data.cifar import load_cifar
from contrastkit.data.idx import read_idx
from contrastkit.data.image_folder import load_image_folder

__all__ = ["SYSTEM_FASHION_MNIST_DIRS", "find_fashion_mnist", "known_datasets", "load_dataset"]

#: System folders searched last for Fashion-MNIST; Debian's ``dataset-fashion-mnist`` installs the
#: four gzipped IDX files directly in the first one.
SYSTEM_FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

# Layouts seen in the wild, relative to a searched folder: the files directly in it (Debian, a
# manual download), a dataset-named subfolder, torchvision's ``FashionMNIST/raw`` and the upstream
# git repo's ``data/fashion``.
_FMNIST_SUBDIRS: tuple[str, ...] = (
    ".",
    "fashion-mnist",
    "fashion_mnist",
    "FashionMNIST/raw",
    "data/fashion",
)

# Role -> accepted base names (each also as ``.gz``); the dotted variant is how some MNIST mirrors
# name them.
_FMNIST_FILES: dict[str, tuple[str, ...]] = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

_ALIASES: dict[str, str] = {
    "digits": "digits",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
}

_NPZ_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_XY_KEYS = ("x", "y")


def known_datasets(*, include_aliases: bool = False) -> list[str]:
    """Return the dataset names :func:`load_dataset` accepts (besides paths to ``.npz`` files).

    Args:
        include_aliases: Also list alternative spellings such as ``"fmnist"``.

    Returns:
        Sorted names.
    """
    names = _ALIASES.keys() if include_aliases else set(_ALIASES.values())
    return sorted(names)


# --------------------------------------------------------------------------------------------------
# digits


def _load_digits(*, seed: int, test_fraction: float) -> DataSplit:
    """scikit-learn's 8x8 digits, values 0..16 scaled to [0, 1], split stratified by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32).reshape(-1, 1, 8, 8) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = split_indices(labels, test_fraction=test_fraction, seed=seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    ti, si = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return DataSplit(
        train=ArrayDataset(x[ti], y[ti], "digits", 10),
        test=ArrayDataset(x[si], y[si], "digits", 10),
    )


# --------------------------------------------------------------------------------------------------
# Fashion-MNIST


def _fashion_mnist_candidates(root: str | os.PathLike[str] | None) -> list[Path]:
    """Folders to search in order: ``root`` alone if given, else the env var's, the system's."""
    if root is not None:
        bases = [Path(root).expanduser()]
    else:
        bases = []
        env = os.environ.get(DATA_DIR_ENV, "").strip()
        if env:
            bases.append(Path(env).expanduser())
        bases.extend(SYSTEM_FASHION_MNIST_DIRS)
    folders: list[Path] = []
    for base in bases:
        for sub in _FMNIST_SUBDIRS:
            folder = base if sub == "." else base / sub
            if folder not in folders:
                folders.append(folder)
    return folders


def _find_in_folder(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Return the Fashion-MNIST files found in ``folder`` (role -> path) and the roles missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, names in _FMNIST_FILES.items():
        for name in names:
            # The plain file first: it reads faster than the gzipped one.
            hit = next((folder / n for n in (name, name + ".gz") if (folder / n).is_file()), None)
            if hit is not None:
                found[role] = hit
                break
        else:
            missing.append(names[0])
    return found, missing


def find_fashion_mnist(root: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Locate the four Fashion-MNIST IDX files.

    The search: ``root`` if given (and only there), else ``$CONTRASTKIT_DATA_DIR`` if set, then
    :data:`SYSTEM_FASHION_MNIST_DIRS`. In each of these, the folder itself and the subfolders
    ``fashion-mnist``, ``fashion_mnist``, ``FashionMNIST/raw`` and ``data/fashion`` are tried; the
    first folder holding all four files (each plain or ``.gz``) wins.

    Args:
        root: Folder given by the user (``root=`` / ``--data-root``).

    Returns:
        Paths keyed ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.

    Raises:
        DatasetNotFoundError: If no folder holds all four files; the message lists every folder
            looked in and how to get the files.
    """
    folders = _fashion_mnist_candidates(root)
    report: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            report.append(f"  {folder}  (no such folder)")
            continue
        found, missing = _find_in_folder(folder)
        if not missing:
            return found
        status = "no IDX files" if not found else "missing " + ", ".join(missing)
        report.append(f"  {folder}  ({status})")
    wanted = ", ".join(names[0] for names in _FMNIST_FILES.values())
    where = "the folder given as root" if root is not None else f"${DATA_DIR_ENV} or system folders"
    message = (
        f"Fashion-MNIST IDX files not found in {where}. Looked for {wanted} (each plain or .gz) "
        "in:\n" + "\n".join(report) + "\n"
        "To get them, do one of:\n"
        "  - Debian/Ubuntu: apt-get install dataset-fashion-mnist "
        "(puts them in /usr/share/datasets/fashion-mnist);\n"
        "  - copy the four files into a folder DIR and pass --data-root DIR (CLI) or root=DIR "
        f"(Python), or set {DATA_DIR_ENV}=DIR;\n"
        "  - with a network: contrastkit.data.download_fashion_mnist(DIR), then use DIR as above."
    )
    raise DatasetNotFoundError(message, searched=folders)


def _load_fashion_mnist(root: str | os.PathLike[str] | None) -> DataSplit:
    """The official 60,000/10,000 Fashion-MNIST split from the IDX files."""
    files = find_fashion_mnist(root)
    parts: list[ArrayDataset] = []
    for split in ("train", "test"):
        img_path, lab_path = files[f"{split}_images"], files[f"{split}_labels"]
        x = read_idx(img_path)
        y = read_idx(lab_path)
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(
                f"{img_path}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}"
            )
        if y.ndim != 1 or y.dtype.kind not in "iu" or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{lab_path}: expected {x.shape[0]} integer labels (one per image in "
                f"{img_path.name}), got {y.dtype} {y.shape}"
            )
        labels = torch.from_numpy(y.astype(np.int64))
        parts.append(ArrayDataset(uint8_images(x[:, None]), labels, "fashion-mnist", 10))
    return DataSplit(train=parts[0], test=parts[1])


# --------------------------------------------------------------------------------------------------
# .npz arrays


def _npz_images(x: np.ndarray, where: str) -> Tensor:
    """Convert an image array to float32 ``(N, C, H, W)`` in ``[0, 1]``."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] in (1, 3):
            pass
        elif x.shape[3] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        else:
            raise ValueError(
                f"{where}: cannot tell the channel axis of shape {x.shape}; expected (N, H, W), "
                "(N, C, H, W) or (N, H, W, C) with C = 1 or 3"
            )
    else:
        raise ValueError(
            f"{where}: images must have shape (N, H, W), (N, C, H, W) or (N, H, W, C); "
            f"got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        return uint8_images(x)
    if x.dtype.kind != "f":
        raise TypeError(
            f"{where}: images must be uint8 (0..255) or floating point in [0, 1]; "
            f"got dtype {x.dtype}"
        )
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if t.numel() > 0:
        lo, hi = torch.aminmax(t)
        if not (bool(lo >= 0) and bool(hi <= 1)):
            raise ValueError(
                f"{where}: floating-point images must lie in [0, 1]; got min {float(lo)}, "
                f"max {float(hi)} (scale them, or store uint8 pixels 0..255)"
            )
    return t


def _npz_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """Validate integer labels ``(n,)`` (``(n, 1)`` is flattened)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "iu":
        raise TypeError(f"{where}: labels must be an integer array, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{where}: expected {n} labels (shape ({n},)), got shape {y.shape}")
    return y


def _resolve_npz(path: Path, root: str | os.PathLike[str] | None) -> Path:
    """Find the .npz file, relative paths also under ``root``."""
    tried = [path]
    if root is not None and not path.is_absolute():
        tried.insert(0, Path(root).expanduser() / path)
    for p in tried:
        if p.is_file():
            return p
    raise DatasetNotFoundError(
        "no .npz file at " + " or ".join(str(p) for p in tried), searched=tried
    )


#: Errors reading a damaged member of a zip archive can raise.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


def _check_npz_file(path: Path) -> None:
    """Refuse a file that is empty or not a zip archive, saying what it is instead."""
    if path.stat().st_size == 0:
        raise ValueError(
            f"{path}: cannot read it as an .npz file: the file is empty (0 bytes); expected a "
            "zip archive of named arrays (numpy.savez)"
        )
    if not zipfile.is_zipfile(path):
        with path.open("rb") as fh:
            head = fh.read(8)
        if head.startswith(b"\x93NUMPY"):
            raise ValueError(
                f"{path}: holds a single array (.npy), expected an .npz archive of named arrays"
            )
        raise ValueError(
            f"{path}: cannot read it as an .npz file: not a zip archive of .npy arrays (as "
            f"numpy.savez writes); it starts with the bytes {head!r}"
        )


def _check_npz_member(archive: zipfile.ZipFile, key: str, path: Path) -> None:
    """Check one member's .npy header against its stored size before numpy allocates it.

    An .npy header states the array's dtype and shape; numpy allocates that much before reading.
    A header that declares more bytes than the member stores (or an object array, which only
    pickle can read) is refused here.
    """
    where = f"{path}[{key}]"
    try:
        info = archive.getinfo(f"{key}.npy")
        with archive.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except _ZIP_ERRORS as exc:
        raise ValueError(f"{where}: not a readable .npy array ({exc})") from exc
    if dtype.hasobject:
        raise ValueError(
            f"{where}: an array of Python objects ({dtype}), which only pickle can read; "
            "contrastkit reads numeric arrays only (store images as uint8 or float, labels as int)"
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size:
        raise ValueError(
            f"{where}: its header declares shape {shape} of {dtype} ({declared} bytes) but the "
            f"archive stores {info.file_size} bytes; the file is damaged"
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays x_train, y_train, x_test, y_test (or x, y) of an .npz file, checked first."""
    _check_npz_file(path)
    try:
        with zipfile.ZipFile(path) as zf:
            keys = {n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")}
            if set(_NPZ_SPLIT_KEYS) <= keys:
                wanted: tuple[str, ...] = _NPZ_SPLIT_KEYS
            elif set(_NPZ_XY_KEYS) <= keys:
                wanted = _NPZ_XY_KEYS
            else:
                raise ValueError(
                    f"{path}: expected arrays {', '.join(_NPZ_SPLIT_KEYS)} or "
                    f"{', '.join(_NPZ_XY_KEYS)}; found {', '.join(sorted(keys)) or 'none'}"
                )
            for key in wanted:
                _check_npz_member(zf, key, path)
        with np.load(path, allow_pickle=False) as archive:
            arrays: dict[str, np.ndarray] = {}
            for key in wanted:
                try:
                    arrays[key] = archive[key]
                except _ZIP_ERRORS as exc:
                    raise ValueError(f"{path}[{key}]: cannot read the array ({exc})") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ValueError(f"{path}: cannot read it as an .npz file ({exc})") from exc
    return arrays


def _load_npz(path: Path, *, seed: int, test_fraction: float) -> DataSplit:
    """Images and labels from an .npz file, pre-split or split here by ``seed``."""
    arrays = _read_npz(path)
    name = path.stem
    if "x" in arrays:
        images = _npz_images(arrays["x"], f"{path}[x]")
        y = _npz_labels(arrays["y"], images.shape[0], f"{path}[y]")
        if len(y) < 2:
            raise ValueError(
                f"{path}: holds {len(y)} sample{'' if len(y) == 1 else 's'}; it is split into a "
                "training and a test part here, which needs at least 2 (training needs at "
                "least 2 training samples)"
            )
        classes, y_all = np.unique(y, return_inverse=True)
        train_idx, test_idx = split_indices(y_all, test_fraction=test_fraction, seed=seed)
        y_t = torch.from_numpy(y_all.astype(np.int64))
        ti, si = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
        k = len(classes)
        return DataSplit(
            train=ArrayDataset(images[ti], y_t[ti], name, k),
            test=ArrayDataset(images[si], y_t[si], name, k),
        )
    img_tr = _npz_images(arrays["x_train"], f"{path}[x_train]")
    img_te = _npz_images(arrays["x_test"], f"{path}[x_test]")
    y_tr = _npz_labels(arrays["y_train"], img_tr.shape[0], f"{path}[y_train]")
    y_te = _npz_labels(arrays["y_test"], img_te.shape[0], f"{path}[y_test]")
    if img_tr.shape[1:] != img_te.shape[1:]:
        raise ValueError(
            f"{path}: x_train and x_test image shapes differ: (C, H, W) = "
            f"{tuple(img_tr.shape[1:])} vs {tuple(img_te.shape[1:])}"
        )
    # One mapping for both parts, so a label means the same class in train and test.
    classes, inverse = np.unique(np.concatenate([y_tr, y_te]), return_inverse=True)
    inverse = inverse.astype(np.int64)
    k = len(classes)
    return DataSplit(
        train=ArrayDataset(img_tr, torch.from_numpy(inverse[: len(y_tr)]), name, k),
        test=ArrayDataset(img_te, torch.from_numpy(inverse[len(y_tr) :]), name, k),
    )


# --------------------------------------------------------------------------------------------------
# entry point


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    image_size: int | None = None,
) -> DataSplit:
    """Load a dataset by name, from an ``.npz`` file or from a folder of images, as a train/test split.

    Args:
        name_or_path: ``"digits"``, ``"fashion-mnist"`` (or ``"fashion_mnist"``, ``"fmnist"``),
            ``"cifar10"`` / ``"cifar100"`` (the python-version batches, read without executing
            pickled code: :func:`~contrastkit.data.cifar.load_cifar`), the path to an ``.npz``
            file holding ``x_train, y_train, x_test, y_test`` (used as given) or ``x, y`` (split
            here), or a folder of class folders of images
            (:func:`~contrastkit.data.image_folder.load_image_folder`). ``.npz`` images may be
            ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3, uint8 (scaled by
            1/255) or float in ``[0, 1]``; labels any integers (mapped to ``0..K-1``, the same way
            in train and test).
        root: Folder holding the data files. For Fashion-MNIST it is the only place searched;
            without it, ``$CONTRASTKIT_DATA_DIR`` (or its ``fashion-mnist`` subfolder) and then
            ``/usr/share/datasets/fashion-mnist`` are. A relative ``.npz`` path is looked up under
            it first. For CIFAR the folder holding (or containing) ``cifar-10-batches-py`` /
            ``cifar-100-python``, else ``$CONTRASTKIT_DATA_DIR``. Ignored by ``"digits"``.
        seed: Seed of the train/test split where one is made (digits, ``x, y`` arrays); an int in
            ``[0, 2**32)``. The same seed always gives the same split.
        test_fraction: Share of the samples put in the test set where a split is made, in
            ``(0, 1)``; the split is stratified by label whenever every class can appear on both
            sides.
        image_size: For an image folder: resize every image to this square size (shorter side,
            then centre crop); None requires one size. Other data take no resizing here.

    Returns:
        The train and test :class:`ArrayDataset` s.

    Raises:
        ValueError: For an unknown name (the message lists the known ones), bad ``test_fraction`` or
            ``seed``, or malformed arrays.
        TypeError: For arguments or arrays of the wrong type.
        DatasetNotFoundError: (a ``FileNotFoundError`` and a ``ValueError``) if the files are
            missing; the message says where it looked and how to get them.
    """
    seed = check_seed(seed)
    test_fraction = check_test_fraction(test_fraction)
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(f"name_or_path must be a str or a path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if not isinstance(text, str):
        raise TypeError(f"name_or_path must be a text path, got {text!r}")
    key = text.strip().lower()
    canonical = _ALIASES.get(key)
    if image_size is not None and not Path(text).expanduser().is_dir():
        raise ValueError(
            f"image_size applies to image folders only; {text!r} is not a folder (got "
            f"image_size={image_size!r})"
        )
    if canonical == "digits":
        return _load_digits(seed=seed, test_fraction=test_fraction)
    if canonical == "fashion-mnist":
        return _load_fashion_mnist(root)
    if canonical in ("cifar10", "cifar100"):
        return load_cifar(canonical, root)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_image_folder(
            path, image_size=image_size, seed=seed, test_fraction=test_fraction
        )
    if path.suffix.lower() == ".npz" or path.is_file():
        return _load_npz(_resolve_npz(path, root), seed=seed, test_fraction=test_fraction)
    close = difflib.get_close_matches(key, list(_ALIASES), n=1)
    hint = f" Did you mean {_ALIASES[close[0]]!r}?" if close else ""
    raise ValueError(
        f"unknown dataset {text!r}; known names: {', '.join(known_datasets())} "
        f"(aliases: {', '.join(a for a in _ALIASES if a not in _ALIASES.values())}), "
        "or give the path to an .npz file with arrays x_train, y_train, x_test, y_test or x, y, "
        "or to a folder of class folders of images." + hint
    )
