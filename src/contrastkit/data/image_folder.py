"""Labelled images from a folder tree: one subfolder per class, optionally pre-split.

Two layouts are read (class names are the subfolder names, sorted, mapped to ``0..K-1``)::

    ROOT/<class>/<image>                   split here, stratified by ``seed``
    ROOT/train/<class>/<image>             used as given; the test part may be called
    ROOT/test/<class>/<image>              ``test``, ``val`` or ``validation``

A folder that holds ``train/`` (or only a test part) with class folders inside, but not both
parts, is ambiguous (is ``train`` a class?) and refused with what was found and what is expected.

Images are decoded with Pillow (the ``images`` extra) into one in-memory float32 array, so this
suits the small and medium sets contrastkit trains on a CPU, not ImageNet. An image larger than
Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million pixels) is
refused before its pixels are decoded. If every image is
grayscale the data have one channel, otherwise three (RGB; alpha is dropped); 16-bit grayscale is
rescaled to 8 bits. All images must have one size unless ``image_size`` is given: then each is
resized so that its shorter side is ``image_size`` and centre-cropped to a square.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastkit.data.arrays import (
    ArrayDataset,
    DatasetNotFoundError,
    DataSplit,
    check_seed,
    check_test_fraction,
    split_indices,
    uint8_images,
)

__all__ = ["IMAGE_SUFFIXES", "find_image_folder_splits", "load_image_folder"]

#: File suffixes read as images (case ignored); other files are skipped.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

_TEST_NAMES = ("test", "val", "validation")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "reading an image folder needs Pillow: pip install 'contrastkit[images]' "
            "(or pip install pillow)"
        ) from exc
    return Image


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image paths}`` for the class subfolders of ``folder``."""
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[sub.name] = sorted(
            f
            for f in sub.rglob("*")
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        )
    return classes


def _check_unambiguous(folder: Path) -> None:
    """Refuse ``train/`` (or ``test/``) with class folders inside when the other part is missing.

    Read as the flat layout, such a folder would train on one class named "train".
    """
    for name in ("train", *_TEST_NAMES):
        part = folder / name
        if not part.is_dir():
            continue
        inner = sorted(p.name for p in part.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not inner:
            continue
        shown = ", ".join(inner[:5]) + (", ..." if len(inner) > 5 else "")
        missing = "test/ (or val/, validation/) folder" if name == "train" else "train/ folder"
        raise ValueError(
            f"{folder}: ambiguous layout: {name}/ holds class folders ({shown}) but there is no "
            f"{missing}; expected ROOT/<class>/<image> (split here by the seed) or "
            "ROOT/train/<class>/<image> + ROOT/test/<class>/<image>. Add the missing part, or "
            f"give {part} as the data to split it here"
        )


def find_image_folder_splits(root: str | os.PathLike[str]) -> dict[str, dict[str, list[Path]]]:
    """The image files under ``root``, by split and class.

    Args:
        root: The folder (see the module docstring for the two layouts).

    Returns:
        ``{"all": {class: files}}`` for a folder of class folders, or ``{"train": ..., "test":
        ...}`` when ``root`` holds a ``train`` folder and a ``test`` / ``val`` / ``validation`` one.

    Raises:
        DatasetNotFoundError: If ``root`` is not a folder, or holds no class folder with images.
        ValueError: If a class folder holds no image, the test part has classes the train part
            lacks, or only one of ``train/`` and ``test/`` is there with class folders inside.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder} is not a folder of images", searched=[folder])
    test_dir = next((folder / n for n in _TEST_NAMES if (folder / n).is_dir()), None)
    if (folder / "train").is_dir() and test_dir is not None:
        parts = {"train": _class_files(folder / "train"), "test": _class_files(test_dir)}
        extra = sorted(set(parts["test"]) - set(parts["train"]))
        if extra:
            raise ValueError(
                f"{test_dir} has classes that {folder / 'train'} lacks: {extra}; both parts must "
                "use the same class folders"
            )
    else:
        _check_unambiguous(folder)
        parts = {"all": _class_files(folder)}
    for part, classes in parts.items():
        where = folder if part == "all" else (folder / "train" if part == "train" else test_dir)
        if not classes:
            raise DatasetNotFoundError(
                f"{where} holds no class folders; expected ROOT/<class>/<image> or "
                "ROOT/train/<class>/<image> + ROOT/test/<class>/<image> "
                f"(image suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})",
                searched=[Path(str(where))],
            )
        empty = [name for name, files in classes.items() if not files]
        if empty and part != "test":
            raise ValueError(
                f"class folders without images under {where}: {empty} "
                f"(image suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
    return parts


def _check_image_size(image_size: object) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    return image_size


def _resize_square(img: Any, size: int) -> Any:
    """Resize so the shorter side is ``size`` (antialiased), then centre-crop ``size x size``."""
    image = _pil()
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _open(path: Path) -> Any:
    """Open ``path`` (header only); a decompression bomb, warning or error, is refused."""
    image = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image.DecompressionBombWarning)
            return image.open(path)
    except (image.DecompressionBombError, image.DecompressionBombWarning) as exc:
        raise ValueError(
            f"{path}: refused as a possible decompression bomb: {exc} (the limit is "
            "PIL.Image.MAX_IMAGE_PIXELS; resize the image, or raise the limit if you trust it)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read it as an image ({exc})") from exc


def _to_mode(raw: Any, mode: str, path: Path) -> Any:
    """``raw`` as an 8-bit ``"L"`` or ``"RGB"`` image.

    16-bit grayscale is rescaled (``v * 255 / 65535``, rounded): Pillow's own conversion would
    clip every value above 255 to white.
    """
    if raw.mode.startswith("I;16"):
        wide = np.asarray(raw, dtype=np.uint16).astype(np.uint32)
        img = _pil().fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), mode="L")
        return img.convert(mode) if mode != "L" else img
    if raw.mode in ("I", "F"):
        raise ValueError(
            f"{path}: 32-bit {'integer' if raw.mode == 'I' else 'float'} images have no fixed "
            "range to scale to 8 bits; convert them to 8- or 16-bit images first"
        )
    return raw.convert(mode)


def _read_images(files: Sequence[Path], image_size: int | None) -> np.ndarray:
    """Decode ``files`` into one uint8 array ``(N, C, H, W)``."""
    modes = []
    for path in files:  # headers only: opening does not decode the pixels
        with _open(path) as img:
            modes.append(img.mode)
    mode = "L" if all(m in _GRAY_MODES for m in modes) else "RGB"
    arrays = []
    first_size: tuple[int, int] | None = None
    for path in files:
        with _open(path) as raw:
            try:
                img = _to_mode(raw, mode, path)
            except (OSError, SyntaxError) as exc:
                raise ValueError(f"{path}: cannot decode the image ({exc})") from exc
        if image_size is not None:
            img = _resize_square(img, image_size)
        elif first_size is None:
            first_size = img.size
        elif img.size != first_size:
            raise ValueError(
                f"images differ in size: {files[0]} is {first_size[0]}x{first_size[1]}, {path} is "
                f"{img.size[0]}x{img.size[1]} (width x height); pass image_size=S to resize every "
                "image (shorter side S, centre crop), e.g. --set data_image_size=32"
            )
        a = np.asarray(img, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(arrays)


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> DataSplit:
    """Load a folder of class folders of images as a train/test split.

    Args:
        root: The folder (layouts in the module docstring).
        image_size: Resize every image to ``image_size x image_size`` (shorter side, then centre
            crop); None requires all images to have one size.
        seed: Seed of the stratified split when the folder is not pre-split.
        test_fraction: Share of the images put in the test set when the split is made here.

    Returns:
        A :class:`DataSplit`; its datasets are named after the folder.

    Raises:
        DatasetNotFoundError: If ``root`` is not a folder of class folders.
        ValueError: For unreadable images, images of different sizes without ``image_size``, a
            class folder without images, or test classes missing from train.
        ImportError: If Pillow is not installed (it names the extra to install).
    """
    size = _check_image_size(image_size)
    seed = check_seed(seed)
    test_fraction = check_test_fraction(test_fraction)
    parts = find_image_folder_splits(root)
    name = Path(root).expanduser().resolve().name or "images"
    class_names = sorted(parts["train"] if "train" in parts else parts["all"])
    index = {c: i for i, c in enumerate(class_names)}
    k = len(class_names)

    def flat(classes: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
        files = [f for c in class_names for f in classes.get(c, [])]
        labels = np.array([index[c] for c in class_names for _ in classes.get(c, [])])
        return files, labels

    if "all" in parts:
        files, labels = flat(parts["all"])
        if len(files) < 2:
            raise ValueError(f"{root} holds {len(files)} image(s); a train/test split needs two")
        tr, te = split_indices(labels, test_fraction=test_fraction, seed=seed)
        # decode once, so both parts share one size check and one colour mode
        images = uint8_images(_read_images(files, size))
        y = torch.from_numpy(labels.astype(np.int64))
        return DataSplit(
            train=ArrayDataset(images[tr], y[tr], name, k),
            test=ArrayDataset(images[te], y[te], name, k),
        )
    train_files, train_labels = flat(parts["train"])
    test_files, test_labels = flat(parts["test"])
    if not test_files:
        raise ValueError(f"the test part of {root} holds no images")
    images = uint8_images(_read_images(train_files + test_files, size))
    y = torch.from_numpy(np.concatenate([train_labels, test_labels]).astype(np.int64))
    n = len(train_files)
    return DataSplit(
        train=ArrayDataset(images[:n], y[:n], name, k),
        test=ArrayDataset(images[n:], y[n:], name, k),
    )
