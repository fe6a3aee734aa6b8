"""Checked before the first step: what the whole run needs (data size, classes for the probes) and
every configuration value that used to be accepted and then fail late or silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contrastkit._validation import check_device
from contrastkit.cli import main
from contrastkit.data import ArrayDataset
from contrastkit.train import FitConfig, evaluate_encoder, fit
from contrastkit.train.loop import evaluation_problem
from contrastkit.train.recipes import load_recipe, load_yaml, parse_overrides
from contrastkit.train.strategies.graph_clustering import ScgcConfig
from contrastkit.views.pipeline import augment_names, check_augment

Image = pytest.importorskip("PIL.Image")

TINY: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 4,
    "encoder_widths": (8, 16),
    "encoder_strides": (1, 2),
    "head_hidden_dim": 16,
    "head_out_dim": 8,
    "threads": 1,
    "progress": False,
    "tensorboard": False,
    "precision": "fp32",
    "device": "cpu",
}


def _one_class_folder(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / "cat" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    return root


# --------------------------------------------------------------------------------------------------
# evaluation that cannot run: the run finishes, says why, and keeps its files


def test_a_one_class_folder_trains_and_says_why_it_was_not_evaluated(tmp_path: Path) -> None:
    data = _one_class_folder(tmp_path / "cats")
    out = tmp_path / "run"
    lines: list[str] = []
    result = fit(FitConfig(data=str(data), out=str(out), **TINY), log=lines.append)
    assert "knn_acc" not in result.metrics and "linear_acc" not in result.metrics
    reason = result.metrics["evaluation_skipped"]
    assert "1 class" in reason and "at least 2" in reason
    assert any("evaluation will be skipped" in line for line in lines)  # said before training
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["evaluation_skipped"] == reason and saved["steps"] == 2
    assert (out / "model.safetensors").is_file()


def test_the_command_line_prints_why_the_evaluation_was_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _one_class_folder(tmp_path / "cats")
    argv = ["fit", "--data", str(data), "--out", str(tmp_path / "run"), "--batch-size", "4",
            "--epochs", "1", "--threads", "1", "--no-progress", "--device", "cpu",
            "--set", "encoder_widths=[8]", "--set", "encoder_strides=[1]",
            "--set", "tensorboard=false"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "evaluation skipped:" in captured.out and "1 class" in captured.out
    assert captured.err.count("\n") <= 1  # nothing but (at most) a progress line


def test_evaluating_a_one_class_split_is_a_clear_error() -> None:
    one = ArrayDataset(torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long), "cats", 1)
    assert "1 class" in str(evaluation_problem(one, one))
    with pytest.raises(ValueError, match=r"cannot evaluate the encoder.*1 class"):
        evaluate_encoder(torch.nn.Flatten(), one, one)
    two = ArrayDataset(torch.rand(6, 1, 8, 8), torch.arange(6) % 2, "pets", 2)
    empty = ArrayDataset(torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), "pets", 2)
    assert evaluation_problem(two, two) is None
    assert "empty" in str(evaluation_problem(two, empty))


# --------------------------------------------------------------------------------------------------
# data too small to train: refused before anything is written


@pytest.mark.parametrize(("n", "word"), [(1, "1 sample"), (2, "1 training sample")])
def test_too_few_samples_are_refused_before_training(n: int, word: str, tmp_path: Path) -> None:
    path = tmp_path / "tiny.npz"
    np.savez(path, x=np.zeros((n, 8, 8), np.float32), y=np.arange(n))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=word):
        fit(FitConfig(data=str(path), out=str(out), **TINY))
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# values accepted before and failing late or silently


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64, 2**70])
def test_a_seed_out_of_range_is_refused_with_the_range(seed: int) -> None:
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        FitConfig(seed=seed)
    assert FitConfig(seed=2**32 - 1).seed == 2**32 - 1


@pytest.mark.parametrize("threads", [0, -3])
def test_a_thread_count_below_one_is_refused(threads: int) -> None:
    with pytest.raises(ValueError, match=f"threads must be a positive integer.*got {threads}"):
        FitConfig(threads=threads)


def test_an_unknown_augment_preset_is_refused_with_the_list() -> None:
    with pytest.raises(ValueError, match=r"unknown view preset 'nonsense'.*digits.*cifar10"):
        FitConfig(augment="nonsense")
    for name in ("cifar", "Fashion_MNIST", "cifar10", "MNIST", "svhn", "simclr"):
        assert check_augment(name) == name
        FitConfig(augment=name)
    assert {"digits", "fashion-mnist", "simclr", "cifar"} <= set(augment_names())
    with pytest.raises(TypeError, match="augment"):
        check_augment(3)


def test_a_zero_width_hidden_layer_or_a_huge_seed_is_refused_by_scgc() -> None:
    with pytest.raises(ValueError, match=r"hidden_dims\[1\] must be an int >= 1, got 0"):
        ScgcConfig(hidden_dims=(16, 0))
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        ScgcConfig(seed=2**70)


def test_a_recipe_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("loss: ntxent\nepochs: 1\nloss_kwargs:\n  temperature: 0.2\nepochs: 3\n")
    with pytest.raises(
        ValueError, match=r"mine.yaml: duplicate key 'epochs' \(line 2 and line 5\)"
    ):
        load_recipe(str(recipe))
    nested = tmp_path / "nested.yaml"
    nested.write_text("loss: ntxent\nloss_kwargs:\n  temperature: 0.2\n  temperature: 0.5\n")
    with pytest.raises(ValueError, match="duplicate key 'temperature'"):
        load_recipe(str(nested))
    with pytest.raises(ValueError, match=r"--set loss_kwargs: duplicate key 'a'"):
        parse_overrides(["loss_kwargs={a: 1, a: 2}"])
    # merge keys may still be overridden, as YAML allows
    assert load_yaml("b: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 5\n", "s")["d"] == {"x": 5, "y": 2}


def test_deeply_nested_yaml_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="src: YAML nested too deeply"):
        load_yaml("[" * 1200 + "]" * 1200, "src")


@pytest.mark.parametrize("device", ["tpu", "nope:0", "cuda:99", 3.5])
def test_an_unknown_device_is_a_value_error(device: object) -> None:
    if device == "cuda:99" and torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(ValueError, match="device"):
        check_device(device)
    assert check_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("strategy", ["gsimclr", "mcl"])
def test_strategy_runs_refuse_one_class_data_before_training(tmp_path: Path, strategy: str) -> None:
    """A strategy run is judged by its probes: one-class data is refused before any step."""
    data = tmp_path / "one_class.npz"
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8)).astype(np.float32)
    np.savez(data, x_train=x[:30], y_train=np.zeros(30, np.int64), x_test=x[30:],
             y_test=np.zeros(10, np.int64))  # fmt: skip
    out = tmp_path / "run"
    config = FitConfig(data=str(data), strategy=strategy, epochs=1, out=str(out), threads=1)
    with pytest.raises(ValueError, match=r"judged by the kNN and linear probes.*1 class"):
        fit(config)
    assert not out.exists()
