"""Series and tabular loaders: the .ts parser, sktime's UCR files, MNIST-1D, sklearn tables."""

from __future__ import annotations

import importlib
import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data import series as series_mod
from contrastkit.data.series import (
    SeriesSplit,
    load_mnist1d,
    load_series_dataset,
    load_tabular,
    load_ucr,
    read_ts,
    series_from_arrays,
)

TS = """# comment
@problemName Toy
@timeStamps false
@univariate false
@classLabel true up down
@data
1,2,3,4:0,0,0,0:up
4,?,2,1:1,1,1,1:down
?,?,?,?:5,6,7,8:up
"""


def _write_ucr(folder: Path, name: str = "Toy") -> Path:
    d = folder / name
    d.mkdir(parents=True)
    (d / f"{name}_TRAIN.ts").write_text(TS)
    (d / f"{name}_TEST.ts").write_text(TS.replace("1,2,3,4", "2,2,2,2"))
    return folder


def test_read_ts_multivariate_missing_and_declared_classes(tmp_path: Path) -> None:
    p = tmp_path / "a.ts"
    p.write_text(TS)
    x, labels, declared = read_ts(p)
    assert x.shape == (3, 2, 4) and x.dtype == torch.float32
    assert labels == ["up", "down", "up"] and declared == ["up", "down"]
    assert x[1, 0].tolist() == [4.0, 3.0, 2.0, 1.0]  # '?' interpolated
    assert x[2, 0].tolist() == [0.0] * 4  # all missing -> 0
    p.write_text("@data\n1,2:a\n1,2,3:b\n")
    with pytest.raises(ValueError, match="unequal"):
        read_ts(p)
    p.write_text("@data\n")
    with pytest.raises(ValueError, match="no data"):
        read_ts(p)


def test_load_ucr_from_a_folder(tmp_path: Path) -> None:
    split = load_ucr("Toy", root=_write_ucr(tmp_path))
    assert split.kind == "series" and split.num_classes == 2
    assert split.classes == ("up", "down") and split.y_train.tolist() == [0, 1, 0]
    with pytest.raises(FileNotFoundError, match="Toy"):
        load_ucr("Nope", root=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("sktime") is None, reason="sktime not installed")
def test_gunpoint_from_the_sktime_wheel() -> None:
    split = load_ucr("GunPoint")
    assert split.x_train.shape == (50, 1, 150) and split.x_test.shape == (150, 1, 150)
    assert split.num_classes == 2
    assert load_series_dataset("ucr:ItalyPowerDemand").x_train.shape == (67, 1, 24)


def test_missing_sktime_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(series_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install sktime"):
        load_ucr("GunPoint")


def test_missing_mnist1d_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *a: object) -> object:
        if name.startswith("mnist1d"):
            raise ImportError("no mnist1d")
        return real(name, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(series_mod.importlib, "import_module", fake)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        load_mnist1d()


@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="mnist1d not installed")
def test_mnist1d_generator_keeps_global_state() -> None:
    np.random.seed(123)
    random.seed(5)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    split = load_mnist1d(num_samples=200, seed=1)
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py
    assert split.x_train.shape == (160, 1, 40) and split.x_test.shape == (40, 1, 40)
    again = load_mnist1d(num_samples=200, seed=1)
    assert torch.equal(split.x_train, again.x_train)


def test_tabular_sets_are_standardised_and_stratified() -> None:
    wine = load_tabular("wine", seed=0)
    assert wine.kind == "tabular" and wine.x_train.shape[1] == 13 and wine.num_classes == 3
    assert torch.allclose(wine.x_train.mean(0), torch.zeros(13), atol=1e-5)
    assert sorted(torch.unique(wine.y_test).tolist()) == [0, 1, 2]
    other = load_tabular("wine", seed=1)
    assert not torch.equal(wine.x_test, other.x_test)
    assert load_series_dataset("breast_cancer").num_classes == 2
    with pytest.raises(ValueError, match="unknown tabular"):
        load_tabular("titanic")


def test_arrays_and_npz(tmp_path: Path) -> None:
    s = series_from_arrays(
        np.zeros((4, 10)),
        np.array(["b", "a", "b", "a"]),
        np.ones((2, 10)),
        np.array(["a", "b"]),
        kind="series",
    )
    assert s.x_train.shape == (4, 1, 10) and s.y_train.tolist() == [1, 0, 1, 0]
    t = series_from_arrays(np.zeros((3, 5)), [7, 9, 7], np.zeros((1, 5)), [9])
    assert t.kind == "tabular" and t.y_train.tolist() == [0, 1, 0] and t.classes == ("7", "9")
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((3, 2, 6)),
        y_train=[0, 1, 0],
        x_test=np.zeros((1, 2, 6)),
        y_test=[1],
    )
    assert load_series_dataset(str(tmp_path / "d.npz")).x_train.shape == (3, 2, 6)
    with pytest.raises(ValueError, match="labels"):
        series_from_arrays(np.zeros((3, 5)), [0, 1], np.zeros((1, 5)), [0])
    with pytest.raises(TypeError, match="int64"):
        SeriesSplit(
            torch.zeros(2, 3),
            torch.zeros(2),
            torch.zeros(1, 3),
            torch.zeros(1, dtype=torch.long),
            "x",
            1,
        )
