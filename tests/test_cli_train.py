"""The `contrastkit` command: fit end to end, eval reproduces the metrics, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import contrastkit
from contrastkit.cli import main
from contrastkit.losses import loss_info, loss_names
from contrastkit.train import load_recipe

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
    config = json.loads((run / "config.json").read_text())  # the flags, as trained
    assert (config["loss"], config["data"], config["epochs"]) == ("ntxent", "digits", 2)
    assert config["encoder_widths"] == [16, 16] and config["head_out_dim"] == 32
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    steps = [json.loads(line)["step"] for line in (run / "steps.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == epochs[-1]["step"]
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
        (["fit", "--temperature", "-1"], "temperature must be a finite number > 0"),
        (["fit", "--batch-size", "0"], "batch_size must be a positive integer"),
        (["fit", "--views", "1"], "needs views >= 2, got 1"),
        (["fit", "--loss", "supremix"], "not image views"),
        (["fit", "nosuchrecipe"], "unknown recipe 'nosuchrecipe'; known recipes: cacr"),
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


def test_losses_lists_every_registered_loss_with_how_it_is_fed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One line per registered loss, sorted: its name, its input kind, its summary."""
    assert main(["losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == loss_names()
    for line in lines:
        name, kind, summary = line.split(maxsplit=2)
        info = loss_info(name)
        assert (kind, summary) == (info.input_kind, info.summary), line


def test_recipes_lists_every_yaml_recipe_with_its_loss(capsys: pytest.CaptureFixture[str]) -> None:
    """Every YAML file shipped in contrastkit/recipes is listed, with the loss it trains."""
    shipped = sorted(p.stem for p in (Path(contrastkit.__file__).parent / "recipes").glob("*.yaml"))
    assert len(shipped) >= 10
    assert main(["recipes"]) == 0
    rows = [line.split(maxsplit=2) for line in capsys.readouterr().out.splitlines()]
    assert [row[0] for row in rows] == shipped
    for name, loss, description in rows:
        recipe = load_recipe(name)
        assert (loss, description) == (recipe.config().loss, recipe.description)
        assert loss in loss_names()
    assert main(["recipes", "dcl"]) == 0
    text = capsys.readouterr().out
    assert text == (Path(contrastkit.__file__).parent / "recipes" / "dcl.yaml").read_text()
