"""Paired data for two-tower training: two modalities of the same events (image-caption, sensor-sensor).

:class:`PairedDataset` holds ``N`` pairs ``(a_i, b_i)``; each side is either a float tensor with
the samples along dim 0 (images ``(N, C, H, W)``, series ``(N, C, L)``, vectors ``(N, D)``) or a
list of ``N`` strings (captions). Labels are optional (they are used only to evaluate).
:class:`PairedSplit` pairs a train and a test set and, for generated caption sets, the class names and
the prompt templates kept out of training for zero-shot evaluation.

Readers of pairs from files:

- :func:`load_pairs_csv`: open_clip's CSV/TSV convention, an image-path column and a caption column
  (paths relative to the file), images decoded by the image-folder code (Pillow); a bad row is a
  one-line ``ValueError`` that names the file, its line number and what is wrong.
- :func:`load_pairs_npz`: any two modalities of the same events as arrays ``a_train, b_train[,
  y_train], a_test, b_test[, y_test]`` (images, series, vectors, or strings for texts).
- :func:`load_pairs`: either of them, by the file's suffix.

:func:`modality_kind` says what a side holds (``"image"``, ``"series"``, ``"vector"``, ``"text"``),
which is how a two-tower model chooses its towers.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.arrays import (
    DatasetNotFoundError,
    check_seed,
    check_test_fraction,
    split_indices,
    uint8_images,
)

__all__ = [
    "MODALITY_KINDS",
    "Modality",
    "PairedDataset",
    "PairedSplit",
    "load_pairs",
    "load_pairs_csv",
    "load_pairs_npz",
    "modality_kind",
]

#: One side of a pair: a tensor with the samples along dim 0, or one string per sample.
Modality = Tensor | list[str]


def _length(side: Modality, name: str) -> int:
    if isinstance(side, Tensor):
        if side.dim() < 2:
            raise ValueError(
                f"{name} must hold the samples along dim 0 with at least one feature dim, got "
                f"shape {tuple(side.shape)}"
            )
        if not side.is_floating_point():
            raise TypeError(f"{name} must be a float tensor, got dtype {side.dtype}")
        if not bool(torch.isfinite(side).all()):
            raise ValueError(f"{name} must be finite, but it holds NaN or inf values")
        return int(side.shape[0])
    if isinstance(side, list) and all(isinstance(s, str) for s in side):
        empty = [i for i, s in enumerate(side) if not s.strip()]
        if empty:
            raise ValueError(
                f"{name} holds {len(empty)} empty text(s), first at index {empty[0]}; every pair "
                "needs a non-empty text"
            )
        return len(side)
    raise TypeError(f"{name} must be a float tensor or a list of str, got {type(side).__name__}")


@dataclass(frozen=True, eq=False, repr=False)
class PairedDataset:
    """``N`` pairs ``(a[i], b[i])`` of two modalities, with optional labels.

    Attributes:
        a: The first modality (e.g. images), a tensor or ``N`` strings.
        b: The second modality (e.g. captions), a tensor or ``N`` strings.
        labels: int64 tensor ``(N,)`` or None (used only to evaluate: linear probe, zero-shot).
        name: Name of the dataset.
        more_b: Further captions of each item, when ``b`` is text: ``P - 1`` lists of ``N``
            strings, so that item ``i`` has the bag ``b[i], more_b[0][i], ...`` of ``P``
            candidate positives (MIL-NCE); empty for one caption per item.
    """

    a: Modality
    b: Modality
    labels: Tensor | None = None
    name: str = "pairs"
    more_b: tuple[list[str], ...] = ()

    @property
    def bag_size(self) -> int:
        """Candidate captions per item: ``1 + len(more_b)``."""
        return 1 + len(self.more_b)

    def b_bags(self) -> list[list[str]]:
        """The ``P`` caption lists of the bags (``b`` first), each of ``N`` strings.

        Raises:
            ValueError: ``b`` is not text.
        """
        if not isinstance(self.b, list):
            raise ValueError("caption bags need text as b, got a tensor")
        return [self.b, *self.more_b]

    def __post_init__(self) -> None:
        n_a, n_b = _length(self.a, "a"), _length(self.b, "b")
        if n_a != n_b:
            raise ValueError(f"a and b must hold the same number of samples, got {n_a} and {n_b}")
        if n_a < 1:
            raise ValueError("a paired dataset needs at least one pair, got 0")
        if self.more_b and not isinstance(self.b, list):
            raise ValueError("more_b (further captions per item) needs text as b, got a tensor")
        for j, extra in enumerate(self.more_b):
            if not isinstance(extra, list) or len(extra) != n_a:
                raise ValueError(
                    f"more_b[{j}] must be a list of {n_a} captions (one per item), got "
                    f"{len(extra) if isinstance(extra, list) else type(extra).__name__}"
                )
        y = self.labels
        bad_labels = y is not None and (
            not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (n_a,)
        )
        if bad_labels:
            raise ValueError(
                f"labels must be an int64 tensor of shape ({n_a},), got "
                f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}"
            )

    def __len__(self) -> int:
        return len(self.a) if isinstance(self.a, list) else int(self.a.shape[0])


@dataclass(frozen=True, eq=False, repr=False)
class PairedSplit:
    """A train and a test :class:`PairedDataset`, with what zero-shot evaluation needs.

    Attributes:
        train: Training pairs.
        test: Held-out pairs (retrieval, zero-shot, probes).
        class_names: One name per label (for zero-shot), or empty.
        zero_shot_templates: Prompt templates with ``{}`` for the class name, kept out of training
            (empty when the data has none).
    """

    train: PairedDataset
    test: PairedDataset
    class_names: Sequence[str] = field(default_factory=tuple)
    zero_shot_templates: Sequence[str] = field(default_factory=tuple)


#: What one side of a pair can hold, as :func:`modality_kind` names it.
MODALITY_KINDS = ("image", "series", "vector", "text")


def modality_kind(side: Modality) -> str:
    """What ``side`` holds: ``"text"`` (a list of str), ``"image"`` (``(N, C, H, W)``),
    ``"series"`` (``(N, C, L)``) or ``"vector"`` (``(N, D)``).

    Example:
        >>> modality_kind(torch.rand(4, 1, 8, 8)), modality_kind(["a cat", "a dog"])
        ('image', 'text')
    """
    if isinstance(side, list):
        return "text"
    if isinstance(side, Tensor) and side.dim() in (2, 3, 4):
        return {2: "vector", 3: "series", 4: "image"}[side.dim()]
    shape = tuple(side.shape) if isinstance(side, Tensor) else type(side).__name__
    raise ValueError(
        f"a side of a pair must be a list of str or a tensor of shape (N, D), (N, C, L) or "
        f"(N, C, H, W); got {shape}"
    )


# --------------------------------------------------------------------------------------------------
# CSV / TSV files of image paths and captions (open_clip's convention)


def _check_key(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")
    return value


def _default_separator(path: Path) -> str:
    return "," if path.suffix.lower() == ".csv" else "\t"


def _bad_rows_error(path: Path, bad: list[tuple[int, str]]) -> ValueError:
    line, what = bad[0]
    more = ""
    if len(bad) > 1:
        lines = ", ".join(str(n) for n, _ in bad[:10]) + (", ..." if len(bad) > 10 else "")
        more = f" ({len(bad)} bad rows in all, at lines {lines})"
    return ValueError(f"{path} line {line}: {what}{more}")


def _read_rows(
    path: Path, *, img_key: str, caption_key: str, label_key: str | None, separator: str
) -> tuple[list[int], list[Path], list[str], list[str]]:
    """``(line numbers, image paths, captions, label strings)`` of every row; bad rows refused."""
    base = path.parent
    lines: list[int] = []
    files: list[Path] = []
    captions: list[str] = []
    labels: list[str] = []
    bad: list[tuple[int, str]] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetNotFoundError(f"cannot open {path} ({exc})", searched=[path]) from exc
    with handle:
        try:
            reader = csv.DictReader(handle, delimiter=separator)
            header = list(reader.fieldnames or [])
            wanted = {"csv_img_key": img_key, "csv_caption_key": caption_key}
            if label_key is not None:
                wanted["csv_label_key"] = label_key
            for what, key in wanted.items():
                if key not in header:
                    raise ValueError(
                        f"{path} line 1: no column {key!r} ({what}); the header has "
                        f"{header} with separator {separator!r} (csv_separator)"
                    )
            for row in reader:
                line = reader.line_num
                values = {k: row.get(k) for k in wanted.values()}
                missing = [k for k, v in values.items() if v is None]
                if missing:
                    bad.append((line, f"missing value in column(s) {missing} (a short row)"))
                    continue
                image, caption = str(values[img_key]).strip(), str(values[caption_key])
                if not image:
                    bad.append((line, f"empty image path in column {img_key!r}"))
                    continue
                if not caption.strip():
                    bad.append((line, f"empty caption in column {caption_key!r}"))
                    continue
                file = Path(image).expanduser()
                file = file if file.is_absolute() else base / file
                if not file.is_file():
                    bad.append((line, f"image {image!r} not found (looked at {file})"))
                    continue
                if label_key is not None:
                    label = str(values[label_key]).strip()
                    if not label:
                        bad.append((line, f"empty label in column {label_key!r}"))
                        continue
                    labels.append(label)
                lines.append(line)
                files.append(file)
                captions.append(caption.strip())
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read it as a CSV/TSV file ({exc})") from exc
    if bad:
        raise _bad_rows_error(path, bad)
    return lines, files, captions, labels


def _decode_images(
    path: Path, lines: list[int], files: list[Path], image_size: int | None
) -> Tensor:
    """The images of ``files`` as float32 ``(N, C, H, W)``; a bad image names its CSV line."""
    from contrastkit.data.image_folder import _check_image_size, _open, _read_images

    size = _check_image_size(image_size)
    where = {str(f): n for n, f in zip(lines, files, strict=True)}
    for line, file in zip(lines, files, strict=True):
        try:
            with _open(file):
                pass
        except ValueError as exc:
            raise ValueError(f"{path} line {line}: {exc}") from exc
    try:
        return uint8_images(_read_images(files, size))
    except ValueError as exc:
        message = str(exc)
        named = [(message.rfind(f), n) for f, n in where.items() if f in message]
        line_of = max(named)[1] if named else None  # the image named last is the offending one
        if line_of is not None:
            raise ValueError(f"{path} line {line_of}: {message}") from exc
        raise ValueError(f"{path}: {message}") from exc


def load_pairs_csv(
    path: str | os.PathLike[str],
    *,
    img_key: str = "filepath",
    caption_key: str = "title",
    separator: str | None = None,
    label_key: str | None = None,
    image_size: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> PairedSplit:
    """Image-caption pairs from a CSV/TSV file (open_clip's ``--csv-img-key`` convention).

    One row per pair: a column of image paths (relative paths are read from the CSV file's folder)
    and a column of captions; the first line is the header. The images are decoded by the
    image-folder code (Pillow, the ``images`` extra): all grayscale gives one channel, otherwise
    RGB; different sizes need ``image_size`` (shorter side, then centre crop). The pairs are split
    into train and test by ``seed`` (stratified by the labels when ``label_key`` names a column).

    Args:
        path: The ``.csv`` / ``.tsv`` file.
        img_key: Column of the image paths (open_clip's default ``"filepath"``).
        caption_key: Column of the captions (open_clip's default ``"title"``).
        separator: Field separator; None: ``","`` for a ``.csv`` file, else a tab (open_clip's
            default).
        label_key: Optional column of class names (used only to evaluate: probes, zero-shot).
        image_size: Resize every image to ``image_size x image_size`` (None: one size required).
        seed: Seed of the train/test split.
        test_fraction: Share of the pairs held out, in (0, 1).

    Returns:
        A :class:`PairedSplit` of images ``(N, C, H, W)`` in [0, 1] (``a``) and captions (``b``);
        ``class_names`` are the sorted labels when ``label_key`` is given.

    Raises:
        ValueError: One line naming the file and the line number: a missing column, a short row,
            an empty caption or image path, a missing or unreadable image (with the count and
            the lines of every bad row), or images of different sizes without ``image_size``.
        DatasetNotFoundError: The file does not exist.
        ImportError: Pillow is missing (it names the extra).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> folder = Path(tempfile.mkdtemp())
        >>> for i in range(4):
        ...     Image.new("L", (8, 8), 60 * i).save(folder / f"{i}.png")
        >>> rows = [f"{i}.png\\ta shade of grey number {i}" for i in range(4)]
        >>> _ = (folder / "pairs.tsv").write_text("filepath\\ttitle\\n" + "\\n".join(rows))
        >>> split = load_pairs_csv(folder / "pairs.tsv", test_fraction=0.25)
        >>> split.train.a.shape, len(split.test.b)
        (torch.Size([3, 1, 8, 8]), 1)
    """
    file = Path(path).expanduser()
    img_key = _check_key(img_key, "img_key")
    caption_key = _check_key(caption_key, "caption_key")
    if label_key is not None:
        label_key = _check_key(label_key, "label_key")
    sep = _default_separator(file) if separator is None else separator
    if not isinstance(sep, str) or len(sep) != 1:
        raise ValueError(f"separator must be one character (e.g. ',' or '\\t'), got {sep!r}")
    seed = check_seed(seed)
    test_fraction = check_test_fraction(test_fraction)
    if not file.is_file():
        raise DatasetNotFoundError(f"no CSV/TSV file of pairs at {file}", searched=[file])
    lines, files, captions, label_names = _read_rows(
        file, img_key=img_key, caption_key=caption_key, label_key=label_key, separator=sep
    )
    if len(files) < 2:
        raise ValueError(f"{file} holds {len(files)} pair(s); a train/test split needs two")
    images = _decode_images(file, lines, files, image_size)
    classes = sorted(set(label_names))
    index = {c: i for i, c in enumerate(classes)}
    y_np = np.array([index[c] for c in label_names], dtype=np.int64)
    tr, te = split_indices(
        y_np if label_key is not None else np.zeros(len(files), dtype=np.int64),
        test_fraction=test_fraction,
        seed=seed,
    )
    y = torch.from_numpy(y_np) if label_key is not None else None
    name = file.stem

    def part(idx: np.ndarray) -> PairedDataset:
        ids = torch.from_numpy(idx)
        return PairedDataset(
            images[ids], [captions[i] for i in idx], None if y is None else y[ids], name
        )

    return PairedSplit(train=part(tr), test=part(te), class_names=tuple(classes))


# --------------------------------------------------------------------------------------------------
# .npz files of two arrays per split

_NPZ_PAIR_KEYS = ("a_train", "b_train", "a_test", "b_test")


def _npz_side(x: np.ndarray, where: str) -> Modality:
    """One side of the pairs from an array: strings, images, series or vectors."""
    if x.dtype.kind in "US":
        if x.ndim != 1:
            raise ValueError(f"{where}: texts must be a 1-D array of strings, got shape {x.shape}")
        texts = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in x.tolist()]
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ValueError(
                f"{where}: {len(empty)} empty text(s), first at row {empty[0]}; every pair needs "
                "a non-empty text"
            )
        return texts
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{where}: expected numbers or strings, got dtype {x.dtype}")
    if x.ndim == 4:
        from contrastkit.data.datasets import _npz_images

        return _npz_images(x, where)
    if x.ndim not in (1, 2, 3):
        raise ValueError(
            f"{where}: expected texts (N,), vectors (N, D), series (N, C, L) or images "
            f"(N, C, H, W); got shape {x.shape}"
        )
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: holds NaN or infinite values")
    return t[:, None] if t.dim() == 1 else t


def _npz_pair_labels(y: np.ndarray, n: int, where: str) -> Tensor:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "iu":
        raise TypeError(f"{where}: labels must be an integer array, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(
            f"{where}: has {y.shape[0] if y.ndim else 0} labels but the pairs number {n}; "
            f"expected shape ({n},)"
        )
    if n and int(y.min()) < 0:
        raise ValueError(f"{where}: labels must be >= 0, got {int(y.min())}")
    return torch.from_numpy(y.astype(np.int64))


def _npz_strings(archive: object, key: str, where: str) -> tuple[str, ...]:
    files = getattr(archive, "files", ())
    if key not in files:
        return ()
    x = archive[key]  # type: ignore[index]
    if x.dtype.kind not in "US" or x.ndim != 1:
        raise ValueError(
            f"{where}[{key}]: expected a 1-D array of strings, got {x.dtype} {x.shape}"
        )
    return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in x.tolist())


def load_pairs_npz(path: str | os.PathLike[str]) -> PairedSplit:
    """Pairs of any two modalities from an ``.npz`` file of arrays.

    Keys: ``a_train, b_train, a_test, b_test`` (required), ``y_train, y_test`` (optional int labels,
    used only to evaluate), ``class_names`` and ``zero_shot_templates`` (optional 1-D string
    arrays). Each side is, by its shape: texts (a 1-D string array), vectors ``(N, D)`` (a 1-D
    number array is ``(N, 1)``), series ``(N, C, L)`` or images ``(N, C, H, W)`` / ``(N, H, W,
    C)`` (uint8 0..255 or floats in [0, 1]). Row ``i`` of ``a_*`` and of ``b_*`` are two views of
    the same event (e.g. two sensors, or an image and its caption). The file is read without
    pickle (string arrays must be numpy unicode or bytes arrays, not objects).

    Args:
        path: The ``.npz`` file.

    Returns:
        The :class:`PairedSplit`, named after the file.

    Raises:
        ValueError: A missing key (the message lists the keys found), sides or labels of
            different lengths, shapes that differ between train and test, or bad values.
        DatasetNotFoundError: The file does not exist.

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "sensors.npz"
        >>> np.savez(file, a_train=np.ones((6, 3)), b_train=np.zeros((6, 2, 10)),
        ...          a_test=np.ones((2, 3)), b_test=np.zeros((2, 2, 10)))
        >>> split = load_pairs_npz(file)
        >>> modality_kind(split.train.a), modality_kind(split.train.b), len(split.test)
        ('vector', 'series', 2)
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetNotFoundError(f"no .npz file of pairs at {file}", searched=[file])
    try:
        loaded = np.load(file, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{file}: cannot read it as an .npz file ({exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{file}: holds a single array, expected an .npz archive of named arrays")
    with loaded as archive:
        missing = [k for k in _NPZ_PAIR_KEYS if k not in archive.files]
        if missing:
            raise ValueError(
                f"{file}: missing array(s) {missing}; a file of pairs holds a_train, b_train, "
                f"a_test, b_test (and optionally y_train, y_test); found {sorted(archive.files)}"
            )
        try:
            raw = {k: archive[k] for k in (*_NPZ_PAIR_KEYS, "y_train", "y_test") if k in archive}
        except ValueError as exc:  # object arrays need pickle, which is refused
            raise ValueError(f"{file}: cannot read an array without pickle ({exc})") from exc
        class_names = _npz_strings(archive, "class_names", str(file))
        templates = _npz_strings(archive, "zero_shot_templates", str(file))
    name = file.stem
    parts: dict[str, PairedDataset] = {}
    for split in ("train", "test"):
        a_raw, b_raw = raw[f"a_{split}"], raw[f"b_{split}"]
        n_a = a_raw.shape[0] if a_raw.ndim else 0
        n_b = b_raw.shape[0] if b_raw.ndim else 0
        if n_a != n_b:
            raise ValueError(
                f"{file}: a_{split} has {n_a} rows but b_{split} has {n_b}; row i of both "
                "must describe the same event, so they need the same number of rows"
            )
        a = _npz_side(a_raw, f"{file}[a_{split}]")
        b = _npz_side(b_raw, f"{file}[b_{split}]")
        key = f"y_{split}"
        y = _npz_pair_labels(raw[key], n_a, f"{file}[{key}]") if key in raw else None
        parts[split] = PairedDataset(a, b, y, name)
    for side in ("a", "b"):
        tr, te = getattr(parts["train"], side), getattr(parts["test"], side)
        if modality_kind(tr) != modality_kind(te) or (
            isinstance(tr, Tensor) and isinstance(te, Tensor) and tr.shape[1:] != te.shape[1:]
        ):
            shape_tr = tuple(tr.shape[1:]) if isinstance(tr, Tensor) else "texts"
            shape_te = tuple(te.shape[1:]) if isinstance(te, Tensor) else "texts"
            raise ValueError(
                f"{file}: {side}_train and {side}_test hold different things per row: "
                f"{shape_tr} vs {shape_te}"
            )
    return PairedSplit(parts["train"], parts["test"], class_names, templates)


def load_pairs(
    path: str | os.PathLike[str],
    *,
    img_key: str = "filepath",
    caption_key: str = "title",
    separator: str | None = None,
    label_key: str | None = None,
    image_size: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> PairedSplit:
    """Pairs from a file: :func:`load_pairs_npz` for ``.npz``, else :func:`load_pairs_csv`.

    The keyword arguments are those of :func:`load_pairs_csv` (an ``.npz`` file is pre-split and
    ignores them).
    """
    file = Path(path).expanduser()
    if file.suffix.lower() == ".npz":
        return load_pairs_npz(file)
    return load_pairs_csv(
        file,
        img_key=img_key,
        caption_key=caption_key,
        separator=separator,
        label_key=label_key,
        image_size=image_size,
        seed=seed,
        test_fraction=test_fraction,
    )
