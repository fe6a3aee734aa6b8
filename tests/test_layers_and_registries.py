"""Registries fill where their entries are defined: a fresh interpreter needs no other layer.

(The import layers themselves are checked by `lint-imports`, which `make test` and `make lint` run.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ONLY_LOWER_LAYERS = "assert 'contrastkit.train' not in sys.modules, sorted(sys.modules)"

CASES = {
    "losses": """
        from contrastkit.losses import get_loss, loss_info
        get_loss('mochi'); get_loss('moco_v2')
        assert loss_info('mochi').momentum_encoder and loss_info('moco_v2').momentum_encoder
    """,
    "encoders": """
        from contrastkit.models import build_encoder, encoder_names
        assert encoder_names() == ['resnet18', 'resnet34', 'scatnet', 'smallcnn'], encoder_names()
        build_encoder('resnet18', in_channels=3)
    """,
    "configs": """
        from contrastkit.runs import FitConfig
        FitConfig(loss='mochi'); FitConfig(loss='moco_v2', encoder='resnet18')
    """,
}


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_registry_works_without_importing_training(name: str) -> None:
    done = run_fresh("import sys\n" + textwrap.dedent(CASES[name]) + ONLY_LOWER_LAYERS)
    assert done.returncode == 0, done.stderr


def test_every_recipe_loads_in_a_fresh_interpreter() -> None:
    done = run_fresh(
        """
        from contrastkit.train.recipes import recipe_config, recipe_names
        names = recipe_names()
        assert {'moco', 'mochi', 'simclr'} <= set(names), names
        for name in names:
            recipe_config(name)
        """
    )
    assert done.returncode == 0, done.stderr


def test_sources_cite_only_files_inside_the_repository() -> None:
    """No line of src/ points at a file outside the repository; cited docs/ files exist."""
    import re

    root = Path(__file__).resolve().parents[1]
    outside = re.compile(r"METHODS\.md|PEERS\.md|seed-papers|\.\./shared|shared/reference")
    cited = re.compile(r"docs/([\w./-]+\.md)")
    bad, missing = [], set()
    for path in sorted((root / "src").rglob("*")):
        if path.suffix not in {".py", ".yaml", ".md"}:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if outside.search(line):
                bad.append(f"{path.relative_to(root)}:{lineno}: {line.strip()}")
            missing |= {m for m in cited.findall(line) if not (root / "docs" / m).is_file()}
    assert bad == [] and missing == set(), (bad, missing)
