"""Resume: a killed run continues exactly; damaged or malicious checkpoints are refused."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from contrastkit.cli import main as cli_main
from contrastkit.train import (
    CheckpointError,
    CheckpointManager,
    CheckpointWarning,
    FitConfig,
    fit,
    load_run,
    resume_run,
)
from contrastkit.train.checkpoint import load_checkpoint

TINY: dict[str, Any] = {
    "data": "digits",
    "epochs": 2,
    "batch_size": 128,
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
TINY_CLI = [
    "--set", "encoder_widths=[8, 16]",
    "--set", "encoder_strides=[1, 2]",
    "--set", "head_hidden_dim=32",
    "--set", "head_out_dim=16",
    "--set", "evaluate=false",
    "--set", "tensorboard=false",
    "--set", "checkpoint_every=3",
]  # fmt: skip


class CrashError(Exception):
    pass


def crash_at(step: int) -> Any:
    def hook(record: dict[str, Any]) -> None:
        if record["step"] == step:
            raise CrashError

    return hook


def step_losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "steps.jsonl").read_text().splitlines()]


def epoch_losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "epochs.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    assert step_losses(a) == step_losses(b)
    assert epoch_losses(a) == epoch_losses(b)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run (digits: 1347 training images, 10 steps of 128 per epoch)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    fit(FitConfig(out=str(out), **TINY))
    assert len(step_losses(out)) == 20
    return out


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "contrastkit", "fit", "--loss", "ntxent", "--data", "digits",
           "--epochs", "2", "--batch-size", "128", "--precision", "fp32", "--device", "cpu",
           "--threads", "1", "--no-progress", "--out", str(run), *TINY_CLI]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pointer = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 90
    try:
        while not pointer.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"the run ended or stalled before its first checkpoint:\n{out}")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "model.safetensors").exists(), "the run finished before it was killed"
    entries = CheckpointManager(run / "checkpoints").entries()
    assert entries and entries[-1]["step"] < 20
    assert len(step_losses(run)) >= entries[-1]["step"]

    assert cli_main(["fit", "--resume", str(run), "--no-progress"]) == 0
    assert_same_run(reference, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith(entries[-1]["file"])


def test_crash_mid_epoch_resume_is_exact_and_logs_are_cut_back(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "crash"
    config = FitConfig(out=str(run), **TINY)
    with pytest.raises(CrashError):
        fit(config, on_step=crash_at(8))  # checkpoint at step 6 (epoch 1, batch 6 of 10)
    assert len(step_losses(run)) == 8  # steps 7 and 8 were logged after the checkpoint
    meta = load_checkpoint(run / "checkpoints" / "step-00000006.safetensors")[1]
    assert meta["progress"]["epoch"] == 0 and meta["progress"]["step_in_epoch"] == 6
    result = resume_run(run, progress=False)
    assert result.metrics["resumed_from"].endswith("step-00000006.safetensors")
    assert_same_run(reference, run)


def test_resume_after_epoch_end_and_of_finished_run(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "epoch"
    with pytest.raises(CrashError):
        fit(FitConfig(out=str(run), **{**TINY, "checkpoint_every": 0}), on_step=crash_at(13))
    names = [e["file"] for e in CheckpointManager(run / "checkpoints").entries()]
    assert names == ["step-00000010.safetensors"]  # only the epoch-end checkpoint
    resume_run(run)
    assert_same_run(reference, run)
    resume_run(run)  # nothing left to train: the same weights again
    assert_same_run(reference, run)


def test_truncated_checkpoint_is_detected_and_the_previous_one_is_used(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "trunc"
    with pytest.raises(CrashError):
        fit(FitConfig(out=str(run), **TINY), on_step=crash_at(7))
    ckpts = CheckpointManager(run / "checkpoints")
    assert [e["step"] for e in ckpts.entries()] == [3, 6]
    newest, previous = (
        run / "checkpoints" / "step-00000006.safetensors",
        ckpts.directory / ("step-00000003.safetensors"),
    )
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(newest)
    with pytest.raises(CheckpointError, match="truncated"):
        ckpts.verify(ckpts.entries()[-1])
    assert previous.is_file()
    with pytest.warns(
        CheckpointWarning, match=r"step-00000006.*previous checkpoint.*step-00000003"
    ):
        _, meta, path = ckpts.load_latest()  # type: ignore[misc]
    assert path == previous and meta["progress"]["global_step"] == 3
    with pytest.warns(CheckpointWarning):
        resume_run(run)
    assert_same_run(reference, run)


def test_bit_flip_fails_the_checksum(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path, keep=2)
    ckpts.save(1, {"w": torch.zeros(64)}, {"a": 1})
    ckpts.save(2, {"w": torch.ones(64)}, {"a": 2})
    path = tmp_path / "step-00000002.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data: still a well-formed safetensors file
    path.write_bytes(bytes(data))
    load_checkpoint(path)  # safetensors alone cannot see it
    with pytest.warns(CheckpointWarning, match="SHA-256"):
        tensors, meta, used = ckpts.load_latest()  # type: ignore[misc]
    assert meta == {"a": 1} and used.name == "step-00000001.safetensors"
    assert torch.equal(tensors["w"], torch.zeros(64))


class _Payload:
    """Unpickling this object writes a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_checkpoint_does_not_run_code(writer: str, tmp_path: Path) -> None:
    run = tmp_path / "evil"
    with pytest.raises(CrashError):
        fit(FitConfig(out=str(run), **TINY), on_step=crash_at(4))
    marker = tmp_path / "marker.txt"
    ckpts = CheckpointManager(run / "checkpoints")
    target = ckpts.directory / ckpts.entries()[-1]["file"]
    payload = {"model": _Payload(marker)}
    if writer == "pickle":
        target.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, target)
    # make the pointer agree with the file, so that only the loader stands between it and us
    pointer = ckpts.directory / "latest"
    entries = ckpts.entries()
    entries[-1]["bytes"] = target.stat().st_size
    entries[-1].pop("sha256")
    pointer.write_text(json.dumps({"checkpoints": entries[-1:]}))

    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(target)
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*never unpickles"):
        resume_run(run)
    (run / "model.safetensors").write_bytes(target.read_bytes())
    with pytest.raises(CheckpointError):
        load_run(run)
    assert not marker.exists()
    # the file is live: unpickling it does run the payload (so the test above could fail)
    live = tmp_path / "live.pt"  # torch.load reads a *.safetensors name as safetensors
    live.write_bytes(target.read_bytes())
    if writer == "pickle":
        pickle.loads(live.read_bytes())
    else:
        torch.load(live, weights_only=False)
    assert marker.read_text() == "code ran"


def test_resume_refuses_a_changed_configuration(tmp_path: Path) -> None:
    run = tmp_path / "changed"
    with pytest.raises(CrashError):
        fit(FitConfig(out=str(run), **TINY), on_step=crash_at(4))
    cfg = json.loads((run / "config.json").read_text())
    cfg["lr"] = 0.5
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in lr: 0.002 -> 0.5"):
        resume_run(run)
    with pytest.raises(ValueError, match="cannot change"):
        resume_run(run, epochs=5)


def test_nothing_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="not a contrastkit run directory"):
        resume_run(tmp_path / "missing")
    run = tmp_path / "empty"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(FitConfig(out=str(run), **TINY).to_dict()))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resume_run(run)
    assert cli_main(["fit", "--resume", str(run)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert cli_main(["fit", "simclr", "--resume", str(run)]) == 2
    assert cli_main(["fit", "--resume", str(run), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "cannot take" in err and "epochs" in err
