"""Recipes: every shipped recipe loads and trains; bad recipes and overrides are clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from contrastkit.cli import main as cli_main
from contrastkit.losses import loss_info, loss_names
from contrastkit.train import FitConfig, fit, load_recipe, recipe_config, recipe_names
from contrastkit.train.config import config_keys
from contrastkit.train.recipes import apply_overrides, parse_overrides, recipe_text

#: methods of docs/methods.md that apply to images -> the loss their recipe must use, once registered
EXPECTED = {
    "simclr": "ntxent",
    "supcon": "supcon",
    "dcl": "dcl",
    "dclw": "dclw",
    "mvinfonce": "mvinfonce",
    "mvdhel": "mvdhel",
    "isogclr": "isogclr",
    "cacr": "cacr",
    "groco": "groco",
    "moco": "moco_v2",
    "mochi": "mochi",
}

TINY = {
    "epochs": 1,
    "batch_size": 64,
    "encoder_widths": [8],
    "encoder_strides": [2],
    "head_hidden_dim": 16,
    "head_out_dim": 8,
    "evaluate": False,
    "tensorboard": False,
    "threads": 1,
    "progress": False,
    "device": "cpu",
    "precision": "fp32",
}


def test_a_recipe_for_every_registered_image_method() -> None:
    names = recipe_names()
    for recipe, loss in EXPECTED.items():
        if loss in loss_names():
            assert recipe in names, f"loss {loss!r} is registered but recipe {recipe!r} is missing"
    assert {"simclr", "supcon", "dcl", "dclw"} <= set(names)


@pytest.mark.parametrize("name", recipe_names())
def test_shipped_recipe_is_valid_documented_and_trains(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = load_recipe(name)
    assert recipe.description
    text = recipe_text(name)
    assert "Source defaults" in text and "Paper:" in text
    config = recipe.config()
    if config.two_tower:  # image-text recipes train in tests/train/test_two_tower.py
        return
    info = loss_info(config.loss)
    assert info.input_kind == "views"
    if config.strategy != "standard":  # G-SimCLR / MCL: the strategy runner, with its baseline
        _check_strategy_run(name, tmp_path / name, capsys)
        return
    # one short epoch through the real loop
    run = tmp_path / name
    result = fit(recipe.config({**TINY, "out": str(run)}))
    for file in ("config.json", "steps.jsonl", "epochs.jsonl", "metrics.json", "model.safetensors"):
        assert (run / file).is_file(), file
    saved = json.loads((run / "config.json").read_text())
    assert (saved["loss"], saved["epochs"]) == (config.loss, 1)
    assert saved["loss_kwargs"] == config.loss_kwargs  # the recipe's loss arguments, as trained
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1]
    assert result.metrics["steps"] == epochs[-1]["step"] == steps[-1]["step"] >= 5
    assert result.metrics["final_loss"] == pytest.approx(epochs[-1]["loss"])
    assert all(math.isfinite(s["loss"]) for s in steps)
    assert json.loads((run / "metrics.json").read_text())["steps"] == result.metrics["steps"]
    first_step = steps[0]
    assert ("objective" in first_step) == (config.loss == "isogclr")  # iSogCLR's true objective
    assert ("pretext_loss" in first_step) == (config.pretext != "none")  # ScatSimCLR's rotation


#: the strategies' quick settings, and the stage names each writes to epochs.jsonl
STRATEGY_QUICK = {"gsimclr": {"dae_epochs": 1}, "mcl": {"stages": 2}}
STRATEGY_STAGES = {"gsimclr": ["gsimclr"], "mcl": ["stage0", "stage1"]}
TIMING = ("seconds", "samples_per_s")


def _strategy_fit(name: str, out: Path, *, baseline: bool = True, **values: Any) -> Any:
    recipe = load_recipe(name)
    kwargs = {**recipe.config().strategy_kwargs, **STRATEGY_QUICK[name], "baseline": baseline}
    config = {**TINY, "epochs": 2, "evaluate": True, "strategy_kwargs": kwargs, **values}
    return fit(recipe.config({**config, "out": str(out)}))


def _check_strategy_run(name: str, run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A strategy run (G-SimCLR / MCL) writes a complete run directory, reports itself and its
    SimCLR baseline well above chance, and ``contrastkit eval`` reproduces the saved model's
    numbers."""
    result = _strategy_fit(name, run)
    m = result.metrics
    for file in ("config.json", "epochs.jsonl", "metrics.json", "model.safetensors"):
        assert (run / file).is_file(), file
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert json.loads((run / "config.json").read_text())["strategy"] == name
    assert m["strategy"] == name and m["epochs"] == 2
    # the method's own numbers are its representation's; the baseline's are there too
    assert (m["knn_acc"], m["linear_acc"]) == (m[f"{name}_knn_acc"], m[f"{name}_linear_acc"])
    for key in ("knn_acc", "linear_acc", "simclr_knn_acc", "simclr_linear_acc"):
        assert 0.3 < m[key] <= 1.0, (key, m[key])  # 10 digit classes: chance is 0.1
    # one record per epoch and stage: the method's stages share the budget, SimCLR gets all of it
    history = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    stages = [r["stage"] for r in history]
    assert stages.count("simclr") == 2
    method = [s for s in stages if s != "simclr"]
    assert sorted(set(method)) == STRATEGY_STAGES[name]
    assert len(method) == 2  # G-SimCLR: 2 epochs; MCL: 2 stages of 1 epoch
    assert all(math.isfinite(r["loss"]) and r["steps"] >= 1 for r in history)
    # the saved model is the method's (MCL: its last stage; the reported features concatenate
    # every stage's)
    capsys.readouterr()
    assert cli_main(["eval", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    own = "mcl_last_" if name == "mcl" else f"{name}_"
    assert (again["knn_acc"], again["linear_acc"]) == (m[own + "knn_acc"], m[own + "linear_acc"])
    if name == "mcl":
        assert m["feature_dim"] == 2 * m["mcl_last_feature_dim"] == 2 * again["feature_dim"]


@pytest.mark.parametrize("name", sorted(STRATEGY_QUICK))
def test_strategy_run_is_reproducible_from_its_seed(name: str, tmp_path: Path) -> None:
    """The same seed gives the same numbers and losses; another seed other losses."""
    quick = {"baseline": False, "evaluate": False}
    runs = {key: tmp_path / key for key in ("a", "b", "c")}
    a = _strategy_fit(name, runs["a"], seed=3, **quick)
    b = _strategy_fit(name, runs["b"], seed=3, **quick)
    _strategy_fit(name, runs["c"], seed=4, **quick)

    def numbers(result: Any) -> dict[str, Any]:
        return {k: v for k, v in result.metrics.items() if not k.endswith(TIMING)}

    def losses(run: Path) -> list[float]:
        lines = (run / "epochs.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    assert numbers(a) == numbers(b)
    assert losses(runs["a"]) == losses(runs["b"]) and len(losses(runs["a"])) == 2
    assert losses(runs["c"]) != losses(runs["a"])


def test_overrides_and_loss_kwargs_merge() -> None:
    config = recipe_config(
        "dclw", parse_overrides(["lr=1e-3", "loss_kwargs.sigma=0.25", "views=3"])
    )
    assert config.lr == 1e-3 and config.views == 3
    assert config.loss_kwargs == {"sigma": 0.25, "detach_weights": True}
    assert parse_overrides(["data_root="]) == {"data_root": None}
    assert parse_overrides(["encoder_widths=[4, 8]"]) == {"encoder_widths": [4, 8]}
    # a whole mapping replaces the recipe's; KEY.NAME merges into it
    assert recipe_config("dclw", parse_overrides(["loss_kwargs={}"])).loss_kwargs == {}
    scat = recipe_config("scatsimclr", parse_overrides(["encoder_kwargs.L=4"]))
    assert scat.encoder_kwargs["L"] == 4 and scat.encoder_kwargs["J"] == 1
    plain = recipe_config("scatsimclr", parse_overrides(["encoder=smallcnn", "encoder_kwargs={}"]))
    assert plain.encoder == "smallcnn" and plain.encoder_kwargs == {}
    with pytest.raises(ValueError, match="only loss_kwargs, encoder_kwargs"):
        parse_overrides(["lr.x=1"])


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("loss: ntxent\nlearning_rate: 0.1\n", r"unknown key 'learning_rate'; allowed keys: .*lr"),
        ("loss: ntxent\nepochs: ten\n", r"key 'epochs' must be int, got 'ten'"),
        ("loss: ntxent\nlr: [1, 2]\n", r"key 'lr' must be float"),
        ("loss: ntxent\nencoder_widths: 8\n", r"key 'encoder_widths' must be a list of int"),
        ("loss: ntxent\nprogress: maybe\n", r"key 'progress' must be bool"),
        ("loss: nope\n", r"unknown loss 'nope'; known losses: .*ntxent"),
        (
            "loss: ntxent\nloss_kwargs: {sigmaa: 1}\n",
            r"unknown loss_kwargs key\(s\) \['sigmaa'\].*allowed",
        ),
        ("loss: ntxent\nloss_kwargs: {reduction: sum}\n", r"may not set \['reduction'\]"),
        ("- loss\n- ntxent\n", r"must be a mapping"),
        ("loss: [unclosed\n", r"not valid YAML"),
        ("description: 3\n", r"'description' must be a str"),
        ("lr: -1.0\n", r"lr must be a finite number > 0"),
    ],
)
def test_bad_recipe_file_names_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        load_recipe(write(tmp_path, text))


def test_bad_recipe_name_and_bad_set(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown recipe 'simclrr'; known recipes: .*simclr.*Did you mean 'simclr'",
    ):
        load_recipe("simclrr")
    with pytest.raises(ValueError, match="does not exist"):
        load_recipe("no/such/recipe.yaml")
    with pytest.raises(
        ValueError, match=r"unknown key 'lrr'; allowed keys: " + ", ".join(config_keys())
    ):
        apply_overrides({}, parse_overrides(["lrr=0.1"]))
    with pytest.raises(ValueError, match="expects key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ValueError, match=r"key 'batch_size' must be int, got 'big'"):
        recipe_config("simclr", parse_overrides(["batch_size=big"]))
    for argv, expect in [
        (["fit", "simclrr"], "known recipes: "),
        (["fit", "simclr", "--set", "lrr=1"], "allowed keys: "),
        (["fit", "simclr", "--set", "temperature=hot"], "key 'temperature' must be float or null"),
        (["recipes", "nope"], "known recipes: "),
    ]:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expect in err, err


def test_cli_lists_and_prints_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["recipes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == recipe_names()
    assert cli_main(["recipes", "simclr"]) == 0
    assert "Source defaults" in capsys.readouterr().out


def test_precedence_defaults_recipe_flags_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[FitConfig] = []

    class StopError(Exception):
        pass

    def fake_fit(config: FitConfig, **kwargs: object) -> None:
        seen.append(config)
        raise StopError

    monkeypatch.setattr("contrastkit.cli.fit.fit", fake_fit)
    with pytest.raises(StopError):
        cli_main(["fit", "dcl", "--lr", "0.01", "--set", "lr=0.02", "--epochs", "3"])
    config = seen[-1]
    assert (config.loss, config.temperature, config.lr, config.epochs) == ("dcl", 0.1, 0.02, 3)
    assert config.out == "runs/dcl-digits" and config.batch_size == 256
    with pytest.raises(StopError):
        cli_main(
            ["fit", "--loss", "ntxent", "--data", "digits", "--epochs", "15", "--out", "runs/demo"]
        )
    config = seen[-1]
    assert (config.loss, config.epochs, config.out) == ("ntxent", 15, "runs/demo")
    assert config.temperature == FitConfig().temperature  # flags alone keep the defaults
