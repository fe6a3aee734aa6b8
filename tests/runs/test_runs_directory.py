"""A run directory read back without the training code: config, weights header, model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from contrastkit.runs import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    FitConfig,
    build_model,
    load_run,
    save_weights,
    weights_header,
    weights_metadata,
)

TINY = {
    "encoder_widths": (4, 4),
    "encoder_strides": (1, 2),
    "head_hidden_dim": 8,
    "head_out_dim": 4,
}


def write_run(run: Path, header: dict[str, str]) -> torch.nn.Module:
    config = FitConfig(out=str(run), **TINY)
    torch.manual_seed(0)
    model = build_model(config, in_channels=1, image_size=8)
    run.mkdir(parents=True)
    (run / CONFIG_FILE).write_text(json.dumps(config.to_dict()))
    save_weights(run / WEIGHTS_FILE, model.state_dict(), metadata=header)
    return model


def test_load_run_rebuilds_the_trained_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    model = write_run(run, weights_header(in_channels=1, image_size=8))
    config, loaded = load_run(run)
    assert config.encoder_widths == (4, 4) and config.temperature is None
    x = torch.rand(3, 1, 8, 8)
    model.eval()
    loaded.eval()
    assert torch.equal(model(x)[1], loaded(x)[1])
    assert weights_metadata(run / WEIGHTS_FILE) == {
        "format": "contrastkit/1",
        "in_channels": "1",
        "image_size": "8",
    }


def test_runs_without_an_input_shape_in_the_header_read_smallcnn(tmp_path: Path) -> None:
    run = tmp_path / "old"
    write_run(run, {"format": "contrastkit/1"})
    _, model = load_run(run)
    assert model.encoder(torch.rand(2, 1, 8, 8)).shape == (2, 4)


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a contrastkit run directory"):
        load_run(tmp_path)


def test_damaged_weights_are_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, weights_header(in_channels=1, image_size=8))
    (run / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_run(run)
