"""A user's files are never lost: a second run refuses a non-empty --out unless told to overwrite."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from contrastkit.cli import main
from contrastkit.train import FitConfig, fit

TINY = {
    "data": "digits",
    "epochs": 1,
    "batch_size": 256,
    "threads": 1,
    "progress": False,
    "evaluate": False,
    "tensorboard": False,
    "device": "cpu",
    "precision": "fp32",
}


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_finished_run_is_not_destroyed_by_a_second_command(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(FitConfig(out=str(out), **TINY))
    before = snapshot(out)
    assert "model.safetensors" in before and "metrics.json" in before
    with pytest.raises(ValueError, match="already holds a contrastkit run") as info:
        fit(FitConfig(out=str(out), **{**TINY, "seed": 1}))
    assert "--resume" in str(info.value) and "--overwrite" in str(info.value)
    assert snapshot(out) == before


def test_overwrite_replaces_only_what_a_run_writes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(FitConfig(out=str(out), **TINY))
    (out / "notes.txt").write_text("my notes")
    (out / "checkpoints" / "keep.txt").write_text("mine")
    (out / "report").mkdir()
    (out / "report" / "old.png").write_bytes(b"png")
    old_weights = (out / "model.safetensors").read_bytes()
    fit(FitConfig(out=str(out), **{**TINY, "seed": 3}), overwrite=True)
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "checkpoints" / "keep.txt").read_text() == "mine"
    assert (out / "report" / "old.png").read_bytes() == b"png"
    assert (out / "model.safetensors").read_bytes() != old_weights  # a new run was written
    assert '"seed": 3' in (out / "config.json").read_text()


def test_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"jpg")
    with pytest.raises(ValueError, match="already holds files"):
        fit(FitConfig(out=str(tmp_path), **TINY))
    assert [p.name for p in tmp_path.iterdir()] == ["photo.jpg"]


def test_an_empty_folder_is_used_and_a_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    fit(FitConfig(out=str(empty), **TINY))
    assert (empty / "model.safetensors").is_file()
    target = tmp_path / "file"
    target.write_text("data")
    with pytest.raises(ValueError, match="is a file"):
        fit(FitConfig(out=str(target), **TINY), overwrite=True)
    assert target.read_text() == "data"


def test_cli_refuses_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["fit", "--data", "digits", "--epochs", "1", "--out", str(out), "--threads", "1"]
    argv += ["--no-progress", "--precision", "fp32"]
    assert main(argv) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0]
    assert snapshot(out) == before
    assert main([*argv, "--overwrite"]) == 0
    assert main(["fit", "--resume", str(out), "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
