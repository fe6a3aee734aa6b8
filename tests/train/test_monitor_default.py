"""Monitoring on by default: the size rule, identical training, geometry of both spaces in metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file

from contrastkit.runs import config_from_mapping
from contrastkit.train import FitConfig, fit

TINY: dict[str, Any] = {
    "data": "digits",
    "epochs": 2,
    "batch_size": 256,
    "encoder_widths": (8,),
    "encoder_strides": (2,),
    "head_hidden_dim": 16,
    "head_out_dim": 8,
    "threads": 1,
    "progress": False,
    "evaluate": False,
    "tensorboard": False,
    "device": "cpu",
    "precision": "fp32",
}
GEOMETRY = [
    f"{n}_{s}" for n in ("alignment", "uniformity", "tolerance", "effective_rank") for s in "hz"
]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_default_monitors_digits_every_epoch_without_changing_training(tmp_path: Path) -> None:
    assert FitConfig().monitor_every is None
    on = fit(FitConfig(out=str(tmp_path / "on"), **{**TINY, "evaluate": True}))
    fit(FitConfig(out=str(tmp_path / "off"), monitor_every=0, **TINY))
    epochs = _lines(tmp_path / "on" / "epochs.jsonl")
    assert len(epochs) == 2
    for record in epochs:  # 1,347 training images: every epoch, both spaces
        assert 0.0 <= record["knn_acc"] <= 1.0
        assert set(GEOMETRY) <= set(record)
    assert "knn_acc" not in _lines(tmp_path / "off" / "epochs.jsonl")[0]
    # The same training: step losses and final weights bit for bit.
    drop = ("seconds", "samples_per_s")
    assert [
        {k: v for k, v in r.items() if k not in drop}
        for r in _lines(tmp_path / "on" / "steps.jsonl")
    ] == [
        {k: v for k, v in r.items() if k not in drop}
        for r in _lines(tmp_path / "off" / "steps.jsonl")
    ]
    a = load_file(tmp_path / "on" / "model.safetensors")
    b = load_file(tmp_path / "off" / "model.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    # metrics.json: the final geometry of the whole test set in both spaces, labelled.
    metrics = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert set(GEOMETRY) <= set(metrics) and set(GEOMETRY) <= set(on.metrics)
    assert 0.0 <= metrics["alignment_z"] <= 4.0 and metrics["uniformity_z"] <= 0.0
    assert -1.0 <= metrics["tolerance_z"] <= 1.0 and -1.0 <= metrics["tolerance_h"] <= 1.0
    assert "alignment" not in metrics  # no unlabelled space


def test_small_training_sets_are_monitored_more_sparsely(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "small.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (250, 8, 8), dtype=np.uint8),
        y_train=np.arange(250) % 5,
        x_test=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
        y_test=np.arange(40) % 5,
    )
    fit(FitConfig(out=str(tmp_path / "run"), **{**TINY, "data": str(path), "epochs": 5}))
    epochs = _lines(tmp_path / "run" / "epochs.jsonl")
    # ceil(1000 / 250) = every 4 epochs: epoch 4 only
    assert ["knn_acc" in r for r in epochs] == [False, False, False, True, False]


def test_monitor_every_validation() -> None:
    assert FitConfig(monitor_every=3).monitor_every == 3
    assert config_from_mapping({"monitor_every": None}).monitor_every is None
    for bad in (-1, 1.5, "2"):
        with pytest.raises((ValueError, TypeError), match="monitor_every"):
            config_from_mapping({"monitor_every": bad})
    # two-tower runs are not monitored; the default leaves them alone
    assert FitConfig(loss="clip", data="digits-captions").monitor_every is None
    with pytest.raises(ValueError, match="monitor_every is for image runs"):
        FitConfig(loss="clip", data="digits-captions", monitor_every=1)
