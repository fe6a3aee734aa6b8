"""Checkpoint files: rotation, atomic writes, optimizer and RNG state round trips."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from contrastkit.train import CheckpointError, CheckpointManager, FitConfig
from contrastkit.train.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from contrastkit.train.optim import build_optimizer
from contrastkit.train.state import capture_rng, restore_rng


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 4, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", ["adamw", "sgd", "lars"])
def test_optimizer_state_round_trip_continues_identically(name: str, tmp_path: Path) -> None:
    config = FitConfig(optimizer=name, lr=0.05, weight_decay=0.01)
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    opt_a = build_optimizer(config, a.parameters())
    _steps(a, opt_a, 3, seed=1)
    tensors, meta = flatten_optimizer_state(opt_a.state_dict())
    assert tensors, "the optimizer has tensor state after 3 steps"
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"optimizer": meta})
    loaded, loaded_meta = load_checkpoint(tmp_path / "c.safetensors")
    json.dumps(loaded_meta)  # plain JSON only
    b = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    b.load_state_dict(a.state_dict())
    opt_b = build_optimizer(config, b.parameters())
    opt_b.load_state_dict(unflatten_optimizer_state(loaded, loaded_meta["optimizer"]))
    _steps(a, opt_a, 2, seed=2)
    _steps(b, opt_b, 2, seed=2)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_rng_round_trip() -> None:
    tensors, meta = capture_rng()
    json.dumps(meta)
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(tensors, meta)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_rotation_keeps_the_last_k_and_the_pointer_is_written_last(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path, keep=2)
    assert ckpts.load_latest() is None
    for step in range(1, 5):
        ckpts.save(step, {"w": torch.full((3,), float(step))}, {"step": step})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["latest", "step-00000003.safetensors", "step-00000004.safetensors"]
    entries = ckpts.entries()
    assert [e["step"] for e in entries] == [3, 4] and all(len(e["sha256"]) == 64 for e in entries)
    _, meta, path = ckpts.load_latest()  # type: ignore[misc]
    assert meta == {"step": 4} and path.name == "step-00000004.safetensors"
    one = CheckpointManager(tmp_path / "one", keep=1)
    one.save(1, {"w": torch.zeros(1)}, {})
    one.save(2, {"w": torch.zeros(1)}, {})
    assert [e["step"] for e in one.entries()] == [2]
    one.clear()
    assert one.load_latest() is None
    with pytest.raises(ValueError, match="keep"):
        CheckpointManager(tmp_path, keep=0)


def test_a_crash_while_writing_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpts = CheckpointManager(tmp_path, keep=2)
    ckpts.save(1, {"w": torch.zeros(1000)}, {"step": 1})
    pointer_before = (tmp_path / "latest").read_text()

    def dying_save(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"\0" * 100)  # half-written temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr("contrastkit.runs.weights.save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpts.save(2, {"w": torch.ones(1000)}, {"step": 2})
    assert (tmp_path / "latest").read_text() == pointer_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000001.safetensors"]
    assert ckpts.load_latest()[1] == {"step": 1}  # type: ignore[index]


def test_no_pointer_falls_back_to_the_files_and_foreign_files_are_refused(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path, keep=3)
    ckpts.save(5, {"w": torch.zeros(2)}, {"step": 5})
    ckpts.save(9, {"w": torch.zeros(2)}, {"step": 9})
    (tmp_path / "latest").write_text("{not json")
    assert ckpts.load_latest()[1] == {"step": 9}  # type: ignore[index]
    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(weights))
    with pytest.raises(CheckpointError, match="not a contrastkit training checkpoint"):
        load_checkpoint(weights)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")
    for p in tmp_path.glob("step-*"):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        ckpts.load_latest()
