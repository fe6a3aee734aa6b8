"""The taxonomy page (docs/concepts/nlp-taxonomy.md) places every registered loss: one table row
per loss, so that adding a loss without placing it fails here."""

from __future__ import annotations

import re
from pathlib import Path

from contrastkit.losses import loss_names

PAGE = Path(__file__).resolve().parents[1] / "docs" / "concepts" / "nlp-taxonomy.md"
MKDOCS = Path(__file__).resolve().parents[1] / "mkdocs.yml"


def _rows() -> dict[str, list[str]]:
    """Loss name -> the other cells of its table row."""
    rows: dict[str, list[str]] = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| \[`([a-z0-9_]+)`\]\(\.\./losses/\1\.md\) \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in match.group(2).split("|")]
    return rows


def test_every_registered_loss_has_a_row() -> None:
    missing = sorted(set(loss_names()) - set(_rows()))
    assert not missing, f"losses missing from {PAGE.name}: {missing}"


def test_no_row_names_an_unknown_loss() -> None:
    unknown = sorted(set(_rows()) - set(loss_names()))
    assert not unknown, f"{PAGE.name} has rows for unregistered losses: {unknown}"


def test_every_row_fills_every_column() -> None:
    for name, cells in _rows().items():
        assert len(cells) == 4 and all(cells), (name, cells)


def test_page_is_in_the_nav() -> None:
    assert "concepts/nlp-taxonomy.md" in MKDOCS.read_text(encoding="utf-8")
