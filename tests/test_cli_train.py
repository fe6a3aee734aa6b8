"""The `contrastkit` command: fit end to end, eval reproduces the metrics, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.cli import main

TINY = [
    "--set", "encoder_widths=[16, 16]",
    "--set", "encoder_strides=[1, 2]",
    "--set", "head_hidden_dim=64",
    "--set", "head_out_dim=32",
    "--set", "tensorboard=false",
]  # fmt: skip


def test_fit_then_eval_reproduces_the_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "demo"
    argv = ["fit", "--loss", "ntxent", "--data", "digits", "--epochs", "2", "--out", str(run),
            "--no-progress", "--threads", "1", "--device", "cpu", *TINY]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "contrastkit fit: done" in out and "kNN accuracy (k=20):" in out
    for name in ("config.json", "steps.jsonl", "epochs.jsonl", "model.safetensors", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "latest").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["knn_acc"] > 0.5  # 10 classes: far above chance after 2 epochs
    assert main(["eval", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["knn_acc"] == metrics["knn_acc"]
    assert again["linear_acc"] == metrics["linear_acc"]
    assert again["feature_dim"] == metrics["feature_dim"] == 16


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["fit", "--loss", "nope", "--epochs", "1"], "unknown loss 'nope'; known losses:"),
        (["fit", "--data", "nope", "--epochs", "1"], "unknown dataset 'nope'; known names:"),
        (["fit", "--loss", "clip"], "not image views"),
        (["fit", "--epochs", "0"], "epochs must be a positive integer"),
        (["eval", "/no/such/run"], "is not a contrastkit run directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    argv: list[str], expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, *(["--out", str(tmp_path / "x")] if argv[0] == "fit" else [])]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert (
        len(err) == 1 and expect in err[0] and err[0].startswith(f"contrastkit {argv[0]}: error:")
    )
    assert not (tmp_path / "x").exists()


def test_losses_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["losses"]) == 0
    assert "ntxent" in capsys.readouterr().out
