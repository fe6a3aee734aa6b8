"""Time-series and tabular datasets that ship with a package, and user arrays.

- UCR/UEA series (:func:`load_ucr`): the ``.ts`` files inside the **sktime** wheel (GunPoint,
  ArrowHead, ItalyPowerDemand, OSULeaf, BasicMotions, ... under ``sktime/datasets/data``), read
  with contrastkit's own ``.ts`` parser — sktime only has to be installed (``pip install sktime``),
  it is never imported. Any folder of ``NAME/NAME_TRAIN.ts`` + ``NAME_TEST.ts`` works via ``root``.
- MNIST-1D (:func:`load_mnist1d`): generated offline by the **mnist1d** package's procedural
  generator (``mnist1d.data.make_dataset``; ``pip install mnist1d``).
- Tabular (:func:`load_tabular`): scikit-learn's bundled wine, breast cancer, iris and digits (as
  64-feature rows), split and standardised with the training statistics.
- Arrays (:func:`series_from_arrays`, or an ``.npz`` path in :func:`load_series_dataset`).

Every loader returns a :class:`SeriesSplit` of float32 inputs — series ``(N, C, T)`` or rows
``(N, F)`` — and int64 labels ``0..K-1``. Optional packages are imported lazily and their absence
raises an ``ImportError`` that names the package to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SKTIME_SERIES",
    "TABULAR_SETS",
    "SeriesSplit",
    "load_mnist1d",
    "load_series_dataset",
    "load_tabular",
    "load_ucr",
    "read_ts",
    "series_from_arrays",
]

#: UCR/UEA sets inside the sktime wheel (checked in sktime 1.2.0).
SKTIME_SERIES = ("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "OSULeaf")
#: scikit-learn's bundled tabular sets.
TABULAR_SETS = ("wine", "breast-cancer", "iris", "digits-tabular")


@dataclass(frozen=True, eq=False)
class SeriesSplit:
    """Train and test arrays of one dataset.

    Attributes:
        x_train: float32 ``(N, C, T)`` series or ``(N, F)`` rows.
        y_train: int64 ``(N,)`` labels in ``0..num_classes-1``.
        x_test: Same layout as ``x_train``.
        y_test: int64 labels.
        name: Dataset name.
        num_classes: K.
        classes: The original class names, in label order.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    name: str
    num_classes: int
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, Tensor) or x.dtype != torch.float32 or x.dim() not in (2, 3):
                raise TypeError(f"x_{part} must be a float32 tensor (N, F) or (N, C, T)")
            if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise TypeError(f"y_{part} must be an int64 tensor of shape ({x.shape[0]},)")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"y_{part} must lie in 0..{self.num_classes - 1}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"x_{part} must be finite")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train and test shapes differ: {tuple(self.x_train.shape[1:])} vs "
                f"{tuple(self.x_test.shape[1:])}"
            )

    @property
    def kind(self) -> str:
        """``"series"`` for ``(N, C, T)`` inputs, ``"tabular"`` for ``(N, F)``."""
        return "series" if self.x_train.dim() == 3 else "tabular"

    def __repr__(self) -> str:
        return (
            f"SeriesSplit(name={self.name!r}, kind={self.kind}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, num_classes={self.num_classes})"
        )


def _encode_labels(
    train: list[str], test: list[str], order: list[str] | None = None
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    classes = list(order) if order else sorted(set(train) | set(test))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted((set(train) | set(test)) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the declared classes {classes}")
    return (
        torch.tensor([index[c] for c in train], dtype=torch.int64),
        torch.tensor([index[c] for c in test], dtype=torch.int64),
        tuple(classes),
    )


def read_ts(path: str | os.PathLike[str]) -> tuple[Tensor, list[str], list[str]]:
    """Read an equal-length ``.ts`` file (sktime / UEA text format).

    Header lines start with ``@`` (``@classLabel true A B ...`` declares the classes); each data
    line holds the dimensions separated by ``:`` — comma-separated values each — and the class
    label last. Missing values (``?`` or ``NaN``) are filled by linear interpolation along time
    (ends: the nearest value; an all-missing series becomes 0).

    Returns:
        ``(x (N, C, T) float32, labels as strings, declared classes (may be empty))``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist")
    declared: list[str] = []
    rows: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    for lineno, raw in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@classlabel"):
                parts = line.split()
                if len(parts) >= 2 and parts[1].lower() == "true":
                    declared = parts[2:]
            elif low.startswith("@data"):
                in_data = True
            continue
        fields = line.split(":")
        if len(fields) < 2:
            raise ValueError(f"{p}:{lineno}: expected 'values:...:label', got {line[:60]!r}")
        dims = []
        for f in fields[:-1]:
            vals = [v.strip() for v in f.split(",")]
            dims.append([float("nan") if v in ("?", "NaN", "nan") else float(v) for v in vals])
        rows.append(dims)
        labels.append(fields[-1].strip())
    if not rows:
        raise ValueError(f"{p}: no data lines after @data")
    shapes = {(len(r), len(r[0])) for r in rows} | {(len(r), len(d)) for r in rows for d in r}
    if len(shapes) != 1:
        raise ValueError(f"{p}: series of unequal length or dimension are not supported: {shapes}")
    x = np.asarray(rows, dtype=np.float64)
    if np.isnan(x).any():
        t = np.arange(x.shape[2])
        for i, c in zip(*np.nonzero(np.isnan(x).any(axis=2)), strict=True):
            v = x[i, c]
            ok = ~np.isnan(v)
            x[i, c] = np.interp(t, t[ok], v[ok]) if ok.any() else 0.0
    return torch.from_numpy(x.astype(np.float32)), labels, declared


def _sktime_data_dir() -> Path:
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the UCR series ship inside the sktime wheel: install it with `pip install sktime` "
            "(or pass root= a folder holding NAME/NAME_TRAIN.ts and NAME_TEST.ts)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def load_ucr(name: str, *, root: str | os.PathLike[str] | None = None) -> SeriesSplit:
    """A UCR/UEA dataset from its ``NAME_TRAIN.ts`` / ``NAME_TEST.ts`` (official split).

    Args:
        name: e.g. ``"GunPoint"``, ``"ArrowHead"``, ``"ItalyPowerDemand"``, ``"OSULeaf"``,
            ``"BasicMotions"`` (multivariate, 6 channels).
        root: Folder with ``NAME/NAME_TRAIN.ts`` (or the files directly); None: sktime's data.
    """
    base = Path(root) if root is not None else _sktime_data_dir()
    folder = base / name if (base / name).is_dir() else base
    train_path, test_path = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    if not train_path.is_file() or not test_path.is_file():
        known = sorted(d.name for d in base.iterdir() if d.is_dir()) if base.is_dir() else []
        raise FileNotFoundError(
            f"no {name}_TRAIN.ts / {name}_TEST.ts under {folder}; available: {', '.join(known)}"
        )
    x_tr, l_tr, declared = read_ts(train_path)
    x_te, l_te, _ = read_ts(test_path)
    y_tr, y_te, classes = _encode_labels(l_tr, l_te, declared or None)
    return SeriesSplit(x_tr, y_tr, x_te, y_te, name, len(classes), classes)


def load_mnist1d(
    *, num_samples: int = 5000, seed: int = 42, train_split: float = 0.8
) -> SeriesSplit:
    """MNIST-1D from the ``mnist1d`` package's procedural generator (offline; no download).

    ``make_dataset`` seeds NumPy's and Python's global generators; their states are restored
    afterwards. Defaults are the package's (5,000 series of length 40, 80 % train, seed 42).

    Raises:
        ImportError: If ``mnist1d`` is not installed (``pip install mnist1d``).
    """
    try:
        data_mod = importlib.import_module("mnist1d.data")
    except ImportError as exc:
        raise ImportError("MNIST-1D needs the mnist1d package: `pip install mnist1d`") from exc
    args = data_mod.get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    args.train_split = float(train_split)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = data_mod.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x_tr = torch.as_tensor(np.asarray(d["x"], dtype=np.float32))[:, None, :]
    x_te = torch.as_tensor(np.asarray(d["x_test"], dtype=np.float32))[:, None, :]
    y_tr = torch.as_tensor(np.asarray(d["y"]).astype(np.int64))
    y_te = torch.as_tensor(np.asarray(d["y_test"]).astype(np.int64))
    return SeriesSplit(x_tr, y_tr, x_te, y_te, "mnist1d", 10, tuple(str(i) for i in range(10)))


def _stratified(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        k = max(1, round(test_fraction * idx.size))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_tabular(name: str, *, seed: int = 0, test_fraction: float = 0.25) -> SeriesSplit:
    """A scikit-learn bundled table, stratified split by ``seed``, standardised with train stats.

    Args:
        name: ``"wine"`` (178 x 13, 3 classes), ``"breast-cancer"`` (569 x 30, 2), ``"iris"``
            (150 x 4, 3) or ``"digits-tabular"`` (1,797 x 64, 10).
    """
    from sklearn import datasets

    loaders = {
        "wine": datasets.load_wine,
        "breast-cancer": datasets.load_breast_cancer,
        "iris": datasets.load_iris,
        "digits-tabular": datasets.load_digits,
    }
    key = name.replace("_", "-").lower()
    if key not in loaders:
        raise ValueError(f"unknown tabular set {name!r}; known: {', '.join(TABULAR_SETS)}")
    d = loaders[key]()
    x, y = np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.int64)
    tr, te = _stratified(y, test_fraction, seed)
    mean, std = x[tr].mean(0), x[tr].std(0)
    std[std == 0] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    classes = tuple(str(c) for c in getattr(d, "target_names", range(int(y.max()) + 1)))
    return SeriesSplit(
        torch.from_numpy(xs[tr]),
        torch.from_numpy(y[tr]),
        torch.from_numpy(xs[te]),
        torch.from_numpy(y[te]),
        key,
        int(y.max()) + 1,
        classes,
    )


def series_from_arrays(
    x_train: np.ndarray | Tensor,
    y_train: np.ndarray | Tensor,
    x_test: np.ndarray | Tensor,
    y_test: np.ndarray | Tensor,
    *,
    name: str = "arrays",
    kind: str = "auto",
) -> SeriesSplit:
    """A :class:`SeriesSplit` from user arrays.

    ``(N, T)`` inputs are series with one channel when ``kind="series"`` and rows when
    ``kind="tabular"``; ``"auto"`` treats 2-D input as tabular and 3-D as series. Labels of any
    integer or string values are mapped to ``0..K-1`` in sorted order.
    """
    xs = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (x_train, x_test)]
    if kind not in ("auto", "series", "tabular"):
        raise ValueError(f"kind must be 'auto', 'series' or 'tabular'; got {kind!r}")
    for i, x in enumerate(xs):
        if x.dim() == 2 and kind == "series":
            xs[i] = x[:, None, :]
        elif x.dim() not in (2, 3) or (x.dim() == 3 and kind == "tabular"):
            raise ValueError(f"inputs must be (N, F), (N, T) or (N, C, T); got {tuple(x.shape)}")
    ys = [np.asarray(y).reshape(-1) for y in (y_train, y_test)]
    for x, y in zip(xs, ys, strict=True):
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    y_tr, y_te, classes = _encode_labels([str(v) for v in ys[0]], [str(v) for v in ys[1]])
    if all(np.issubdtype(y.dtype, np.integer) for y in ys):
        values = sorted({int(v) for y in ys for v in y})
        index = {v: i for i, v in enumerate(values)}
        y_tr = torch.tensor([index[int(v)] for v in ys[0]], dtype=torch.int64)
        y_te = torch.tensor([index[int(v)] for v in ys[1]], dtype=torch.int64)
        classes = tuple(str(v) for v in values)
    return SeriesSplit(xs[0], y_tr, xs[1], y_te, name, len(classes), classes)


def load_series_dataset(
    name: str, *, root: str | os.PathLike[str] | None = None, seed: int = 0
) -> SeriesSplit:
    """Load by name: a UCR set (``"GunPoint"`` or ``"ucr:NAME"``), ``"mnist1d"``, a tabular set
    (:data:`TABULAR_SETS`) or an ``.npz`` path with ``x_train, y_train, x_test, y_test``."""
    if name.endswith(".npz"):
        with np.load(name) as a:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in a]
            if missing:
                raise ValueError(f"{name} lacks arrays {missing}")
            return series_from_arrays(
                a["x_train"], a["y_train"], a["x_test"], a["y_test"], name=Path(name).stem
            )
    if name.lower() == "mnist1d":
        return load_mnist1d(seed=42 if seed == 0 else seed)
    if name.replace("_", "-").lower() in TABULAR_SETS:
        return load_tabular(name, seed=seed)
    return load_ucr(name.removeprefix("ucr:"), root=root)
