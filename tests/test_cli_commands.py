"""The `contrastkit` command: every sub-command is wired, `fit` builds the config as documented."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import contrastkit.cli.fit as cli_fit
from contrastkit.cli import build_parser, main
from contrastkit.runs import FitConfig
from contrastkit.train import FitResult

COMMANDS = [
    "fit",
    "eval",
    "report",
    "embed",
    "losses",
    "recipes",
    "cluster",
    "fit-arrays",
    "download",
    "zeroshot",
    "compare",
    "apps",
]


def test_every_sub_command_has_a_handler() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)  # type: ignore[arg-type]
    for name, parser in sub.choices.items():  # type: ignore[union-attr]
        verbs = [a for a in parser._actions if a.dest == "verb"]
        if verbs:  # a group of sub-commands (`apps list|show|run`): each verb has the handler
            for verb, verb_parser in verbs[0].choices.items():  # type: ignore[union-attr]
                assert callable(verb_parser.get_default("handler")), f"{name} {verb}"
        else:
            assert callable(parser.get_default("handler")), name


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[FitConfig]:
    configs: list[FitConfig] = []

    def fake_fit(config: FitConfig, **kwargs: Any) -> FitResult:
        configs.append(config)
        return FitResult(run_dir=config.out, metrics={}, model=None)  # type: ignore[arg-type]

    monkeypatch.setattr(cli_fit, "fit", fake_fit)
    return configs


@pytest.mark.parametrize(
    ("argv", "out", "temperature"),
    [
        (["--loss", "dcl"], "runs/dcl-digits", None),
        (["--temperature", "0.2"], "runs/ntxent-digits", 0.2),
        (["simclr", "--data", "fashion-mnist"], "runs/simclr-fashion-mnist", 0.5),
        (["--out", "elsewhere", "--set", "temperature=0.3"], "elsewhere", 0.3),
    ],
)
def test_fit_config_from_the_command_line(
    captured: list[FitConfig], argv: list[str], out: str, temperature: float | None
) -> None:
    assert main(["fit", *argv]) == 0
    (config,) = captured
    assert (config.out, config.temperature) == (out, temperature)


def test_python_dash_m_runs_the_command_line() -> None:
    for module in ("contrastkit", "contrastkit.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, "losses"], capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr
        assert "mochi" in done.stdout and "moco_v2" in done.stdout
