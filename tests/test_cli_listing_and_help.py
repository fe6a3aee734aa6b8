"""What a user reads first: the listings' columns, the help texts and ``--version``."""

from __future__ import annotations

import argparse
import re
from importlib import metadata

import pytest

from contrastkit.cli import build_parser, main
from contrastkit.data import known_datasets
from contrastkit.losses import loss_info, loss_names


def _column_starts(line: str) -> list[int]:
    """Where each of the first three whitespace-separated fields starts."""
    return [m.start() for m in re.finditer(r"\S+", line)][:3]


def test_losses_columns_line_up_for_the_longest_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(loss_names())
    starts = {tuple(_column_starts(line)) for line in lines}
    assert len(starts) == 1, f"columns start at different places: {sorted(starts)}"
    longest = max(loss_names(), key=len)
    (line,) = [line for line in lines if line.split()[0] == longest]
    assert line.split(maxsplit=2)[1] == loss_info(longest).input_kind


def test_recipes_columns_line_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines
    assert len({tuple(_column_starts(line)) for line in lines}) == 1


def test_top_level_help_is_plain_text() -> None:
    text = build_parser().format_help()
    assert "``" not in text and ":mod:" not in text
    assert "--version" in text


def test_fit_data_help_names_every_dataset_and_the_other_sources() -> None:
    parser = build_parser()
    (fit,) = [
        action.choices["fit"]
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    (data,) = [action for action in fit._actions if "--data" in action.option_strings]
    assert data.help is not None
    for name in known_datasets():
        assert name in data.help
    assert ".npz" in data.help and "folder" in data.help


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"contrastkit {metadata.version('contrastkit')}"


def test_package_version_matches_the_metadata() -> None:
    import contrastkit

    assert contrastkit.__version__ == metadata.version("contrastkit")
