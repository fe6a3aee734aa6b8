"""Damaged run directories and checkpoints: a bad pointer falls back to the step files, a bad
checkpoint to the previous one, and nothing read from a file is trusted before it is checked."""

from __future__ import annotations

import errno
import json
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import contrastkit.train.checkpoint as checkpoint_module
from contrastkit.runs import WriteError, load_run, read_json
from contrastkit.train import (
    CheckpointError,
    CheckpointManager,
    CheckpointWarning,
    FitConfig,
    fit,
    resume_run,
)
from contrastkit.train.checkpoint import load_checkpoint, save_checkpoint
from contrastkit.train.state import Progress, capture_state, check_state, restore_state

TINY: dict[str, Any] = {
    "data": "digits",
    "epochs": 2,
    "batch_size": 256,
    "encoder_widths": (8, 16),
    "encoder_strides": (1, 2),
    "head_hidden_dim": 32,
    "head_out_dim": 16,
    "threads": 1,
    "progress": False,
    "evaluate": False,
    "tensorboard": False,
    "checkpoint_every": 3,
    "precision": "fp32",
    "device": "cpu",
}


class CrashError(Exception):
    pass


def crash_at(step: int) -> Callable[[dict[str, Any]], None]:
    def hook(record: dict[str, Any]) -> None:
        if record["step"] == step:
            raise CrashError

    return hook


# --------------------------------------------------------------------------------------------------
# the pointer file


def _valid_sha(ckpts: CheckpointManager) -> str:
    return str(ckpts.entries()[-1]["sha256"])


POINTERS: dict[str, Callable[[CheckpointManager], str]] = {
    "not json": lambda c: "garbage{",
    "a list": lambda c: "[1, 2]",
    "no entries": lambda c: '{"checkpoints": []}',
    "file not a string": lambda c: '{"checkpoints": [{"file": 5}]}',
    "nested too deep": lambda c: "[" * 100_000 + "]" * 100_000,
    "huge byte count": lambda c: (
        '{"checkpoints": [{"file": "step-00000009.safetensors", "bytes": 1e400}]}'
    ),
    "huge step": lambda c: (
        '{"checkpoints": [{"file": "step-00000009.safetensors", "step": 1' + "0" * 5000 + "}]}"
    ),
    "step disagrees with the file": lambda c: (
        '{"checkpoints": [{"file": "step-00000009.safetensors", "step": 5}]}'
    ),
    "bad checksum text": lambda c: (
        '{"checkpoints": [{"file": "step-00000009.safetensors", "sha256": [1]}]}'
    ),
    "outside the folder": lambda c: '{"checkpoints": [{"file": "../config.json", "bytes": 1}]}',
    "absolute path": lambda c: '{"checkpoints": [{"file": "/etc/passwd"}]}',
    "a bigger file": lambda c: (
        json.dumps(
            {"checkpoints": [{"file": "step-00000009.safetensors", "sha256": _valid_sha(c)}]}
        )
        + " " * 100_000
    ),
    "binary": lambda c: "\udcff\x00\x01",
}


@pytest.mark.parametrize("damage", list(POINTERS))
def test_a_damaged_pointer_falls_back_to_the_step_files(damage: str, tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path / "checkpoints", keep=3)
    ckpts.save(5, {"w": torch.zeros(2)}, {"step": 5})
    ckpts.save(9, {"w": torch.ones(2)}, {"step": 9})
    (tmp_path / "config.json").write_text("{}")
    text = POINTERS[damage](ckpts)
    (ckpts.directory / "latest").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert ckpts.entries() == []
    with pytest.warns(CheckpointWarning, match="latest is damaged"):
        loaded = ckpts.load_latest()
    assert loaded is not None
    tensors, meta, path = loaded
    assert path.name == "step-00000009.safetensors" and meta == {"step": 9}
    assert torch.equal(tensors["w"], torch.ones(2))


def test_a_damaged_pointer_without_usable_step_files_is_one_error(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path, keep=2)
    (tmp_path / "latest").write_text("[" * 100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said in the error, not in a warning before it
        with pytest.raises(CheckpointError, match=r"latest is damaged.*found instead: none"):
            ckpts.load_latest()
        ckpts.save(4, {"w": torch.zeros(2)}, {"step": 4})
        (tmp_path / "latest").write_text("{")
        (tmp_path / "step-00000004.safetensors").write_bytes(b"garbage")
        with pytest.raises(CheckpointError, match=r"latest is damaged.*step-00000004"):
            ckpts.load_latest()


def test_a_pointer_to_a_missing_file_uses_the_kept_previous_one(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path, keep=2)
    ckpts.save(5, {"w": torch.zeros(2)}, {"step": 5})
    ckpts.save(9, {"w": torch.ones(2)}, {"step": 9})
    (tmp_path / "step-00000009.safetensors").unlink()
    with pytest.warns(CheckpointWarning, match="is missing"):
        _, meta, _ = ckpts.load_latest()  # type: ignore[misc]
    assert meta == {"step": 5}


# --------------------------------------------------------------------------------------------------
# checkpoint files


@pytest.mark.parametrize("keep", [0, 8, 100, 1000, -100])
def test_a_truncated_checkpoint_is_refused_with_its_name(keep: int, tmp_path: Path) -> None:
    path = tmp_path / "step-00000001.safetensors"
    save_checkpoint(path, {"w": torch.zeros(256)}, {"step": 1})
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "header",
    [
        (2**62).to_bytes(8, "little") + b"{}",  # a header length beyond the file
        (30).to_bytes(8, "little") + b'{"w": {"dtype": "F32", "shape": [100000, 100000], '
        b'"data_offsets": [0, 4]}}' + b"\0" * 4,  # a shape beyond the bytes stored
        (12).to_bytes(8, "little") + b"[" * 12,  # not a JSON object
    ],
    ids=["header-length", "tensor-shape", "header-json"],
)
def test_sizes_in_a_safetensors_header_are_checked_against_the_file(
    header: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "step-00000001.safetensors"
    path.write_bytes(header)
    with pytest.raises(CheckpointError, match=path.name):
        load_checkpoint(path)


def test_nested_or_oversized_checkpoint_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    from safetensors.torch import save_file

    for text, why in [("[" * 50_000 + "]" * 50_000, "nested"), ("1" * 5000, "JSON")]:
        save_file(
            {"w": torch.zeros(1)},
            str(path),
            metadata={"format": "contrastkit-train/1", "contrastkit": text},
        )
        with pytest.raises(CheckpointError, match=why):
            load_checkpoint(path)


def test_read_json_names_the_file_for_every_way_json_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    for content in [b"{oops", b"[" * 100_000, b'{"a": 1' + b"0" * 5000 + b"}", b"\xff\xfe\x00"]:
        path.write_bytes(content)
        with pytest.raises(ValueError, match=r"config\.json"):
            read_json(path)


# --------------------------------------------------------------------------------------------------
# the training state's metadata


def _state() -> tuple[dict[str, torch.Tensor], dict[str, Any], nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    tensors, meta = capture_state(
        model=model,
        loss=nn.Identity(),
        optimizer=optimizer,
        scheduler=scheduler,
        progress=Progress(epoch=1, step_in_epoch=2, global_step=7, loss_sum=3.5, samples=64),
        extra={"logs": {"steps.jsonl": 10}, "world_size": 1, "last_epoch_loss": float("nan")},
    )
    return tensors, meta, model, optimizer


BAD_META: dict[str, tuple[Callable[[dict[str, torch.Tensor], dict[str, Any]], None], str]] = {
    "progress missing": (lambda t, m: m.pop("progress"), "progress"),
    "progress extra key": (lambda t, m: m["progress"].update(x=1), "progress"),
    "epoch negative": (lambda t, m: m["progress"].update(epoch=-1), "epoch"),
    "epoch beyond the run": (lambda t, m: m["progress"].update(epoch=6), "epoch"),
    "epoch a float": (lambda t, m: m["progress"].update(epoch=1.5), "epoch"),
    "step beyond the epoch": (lambda t, m: m["progress"].update(step_in_epoch=11), "step_in_epoch"),
    "global step huge": (lambda t, m: m["progress"].update(global_step=10**30), "global_step"),
    "loss sum infinite": (lambda t, m: m["progress"].update(loss_sum=float("inf")), "loss_sum"),
    "samples a string": (lambda t, m: m["progress"].update(samples="64"), "samples"),
    "lr NaN": (lambda t, m: m["optimizer"]["param_groups"][0].update(lr=float("nan")), "lr"),
    "params not ids": (lambda t, m: m["optimizer"]["param_groups"][0].update(params="x"), "params"),
    "params repeated": (
        lambda t, m: m["optimizer"]["param_groups"][0].update(params=[0, 0]),
        "twice",
    ),
    "groups not a list": (lambda t, m: m["optimizer"].update(param_groups={}), "param_groups"),
    "scalars bad": (lambda t, m: m["optimizer"].update(scalars=[1]), "scalars"),
    "scheduler epoch a string": (lambda t, m: m["scheduler"].update(last_epoch="x"), "last_epoch"),
    "scheduler lr infinite": (
        lambda t, m: m["scheduler"].update(base_lrs=[float("inf")]),
        "base_lrs",
    ),
    "torch rng short": (lambda t, m: t.update({"rng.torch": torch.zeros(3, dtype=torch.uint8)}), "rng.torch"),
    "torch rng float": (lambda t, m: t.update({"rng.torch": torch.zeros(5056)}), "rng.torch"),
    "numpy rng short": (lambda t, m: t.update({"rng.numpy": torch.zeros(3, dtype=torch.int64)}), "rng.numpy"),
    "numpy rng words negative": (
        lambda t, m: t.update({"rng.numpy": torch.full((624,), -1, dtype=torch.int64)}),
        "rng.numpy",
    ),
    "numpy position huge": (lambda t, m: m["rng"]["numpy"].update(pos=10**20), "numpy"),
    "numpy kind": (lambda t, m: m["rng"]["numpy"].update(kind="PCG64"), "numpy"),
    "python state short": (lambda t, m: m["rng"]["python"].update(state=[1, 2, 3]), "python"),
    "python state words huge": (
        lambda t, m: m["rng"]["python"].update(state=[2**40] * 624 + [0]),
        "python",
    ),
    "log offset negative": (lambda t, m: m["logs"].update({"steps.jsonl": -5}), "steps.jsonl"),
    "log offset huge": (lambda t, m: m["logs"].update({"steps.jsonl": 10**30}), "steps.jsonl"),
    "world size zero": (lambda t, m: m.update(world_size=0), "world_size"),
    "last loss a list": (lambda t, m: m.update(last_epoch_loss=[1]), "last_epoch_loss"),
    "config a list": (lambda t, m: m.update(config=[1]), "config"),
}  # fmt: skip


def test_a_captured_state_passes_its_checks() -> None:
    tensors, meta, _, _ = _state()
    meta = json.loads(json.dumps(meta))  # as read back from a file
    check_state(tensors, meta, epochs=5, steps_per_epoch=10)


@pytest.mark.parametrize("bad", list(BAD_META))
def test_out_of_range_metadata_is_refused_before_anything_is_restored(bad: str) -> None:
    tensors, meta, _, _ = _state()
    meta = json.loads(json.dumps(meta))
    edit, word = BAD_META[bad]
    edit(tensors, meta)
    with pytest.raises(CheckpointError, match=word):
        check_state(tensors, meta, epochs=5, steps_per_epoch=10)


def test_restore_checks_the_optimizer_moments_against_the_parameters() -> None:
    tensors, meta, _, _ = _state()
    tensors["optim.0.exp_avg"] = torch.zeros(7)
    fresh = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    with pytest.raises(
        CheckpointError, match=r"ckpt.safetensors: optimizer state entry '0.exp_avg'"
    ):
        restore_state(
            tensors,
            meta,
            model=fresh,
            loss=nn.Identity(),
            optimizer=optimizer,
            scheduler=scheduler,
            source="ckpt.safetensors",
        )
    assert not optimizer.state  # nothing was loaded
    assert torch.equal(torch.get_rng_state(), state[2])


# --------------------------------------------------------------------------------------------------
# a whole run


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run killed at step 7: checkpoints at steps 5 (epoch end) and 6 (mid-epoch)."""
    run = tmp_path_factory.mktemp("crashed") / "run"
    with pytest.raises(CrashError):
        fit(FitConfig(out=str(run), **{**TINY, "checkpoint_every": 6}), on_step=crash_at(7))
    names = [e["file"] for e in CheckpointManager(run / "checkpoints").entries()]
    assert names == ["step-00000005.safetensors", "step-00000006.safetensors"]
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def test_a_newest_checkpoint_with_bad_metadata_resumes_from_the_previous(
    crashed_run: Path, tmp_path: Path
) -> None:
    run = _copy(crashed_run, tmp_path)
    newest = run / "checkpoints" / "step-00000006.safetensors"
    tensors, meta = load_checkpoint(newest)
    meta["progress"]["epoch"] = 10**30  # the run has 2 epochs
    save_checkpoint(newest, tensors, meta)
    entries = CheckpointManager(run / "checkpoints").entries()
    entries[-1]["bytes"] = newest.stat().st_size  # a pointer that agrees: only the content is bad
    entries[-1].pop("sha256")
    (run / "checkpoints" / "latest").write_text(json.dumps({"checkpoints": entries}))
    with pytest.warns(CheckpointWarning, match=r"step-00000006.safetensors.*progress epoch"):
        result = resume_run(run)
    assert result.metrics["resumed_from"].endswith("step-00000005.safetensors")
    assert len((run / "steps.jsonl").read_text().splitlines()) == 10


def test_a_damaged_pointer_still_resumes_the_run(crashed_run: Path, tmp_path: Path) -> None:
    run = _copy(crashed_run, tmp_path)
    (run / "checkpoints" / "latest").write_text("[" * 100_000)
    with pytest.warns(CheckpointWarning, match="latest is damaged"):
        result = resume_run(run)
    assert result.metrics["resumed_from"].endswith("step-00000006.safetensors")


def test_a_run_whose_config_does_not_match_its_weights_is_refused_before_allocating(
    crashed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _copy(crashed_run, tmp_path)
    (run / "model.safetensors").write_bytes(
        (run / "checkpoints" / "step-00000005.safetensors").read_bytes()
    )
    from safetensors.torch import load_file, save_file

    weights = {
        k[len("model.") :]: v
        for k, v in load_file(str(run / "model.safetensors")).items()
        if k.startswith("model.")
    }
    save_file(
        weights,
        str(run / "model.safetensors"),
        metadata={"format": "contrastkit/1", "in_channels": "1", "image_size": "8"},
    )
    assert load_run(run)[1] is not None
    config = json.loads((run / "config.json").read_text())
    config["encoder_widths"] = [2**20, 2**20]  # 2**40 weights per layer if it were built
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model.safetensors.*config.json.*do not match"):
        load_run(run)


# --------------------------------------------------------------------------------------------------
# a full disk


def test_a_full_disk_while_writing_the_pointer_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpts = CheckpointManager(tmp_path / "checkpoints", keep=2)
    ckpts.save(3, {"w": torch.zeros(8)}, {"step": 3})
    pointer = (ckpts.directory / "latest").read_text()

    def full(path: object, obj: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "atomic_write_json", full)
    with pytest.raises(
        WriteError, match=r"step-00000005.safetensors: No space left.*step-00000003"
    ):
        ckpts.save(5, {"w": torch.ones(8)}, {"step": 5})
    assert (ckpts.directory / "latest").read_text() == pointer
    assert sorted(p.name for p in ckpts.directory.iterdir()) == [
        "latest",
        "step-00000003.safetensors",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ckpts.load_latest()[1] == {"step": 3}  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "match"),
    [("3,99999999,2", "out of range"), ("1,2,3,4,5", "out of range"), ("x", "bad shape"),
     ("0,8", "out of range")],
)  # fmt: skip
def test_two_tower_header_shapes_are_bounded(text: str, match: str) -> None:
    from contrastkit.runs.directory import _parse_shape

    with pytest.raises(ValueError, match=match):
        _parse_shape(text, "model.safetensors")
    assert _parse_shape("1,28,28", "w") == (1, 28, 28) and _parse_shape("", "w") == ()
