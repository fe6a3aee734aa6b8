"""The distribution: sdist and wheel build and pass ``twine check``; the wheel works on its own.

The slow test is what a user does with a release: build, install the wheel into a fresh virtual
environment, and run ``contrastkit`` from an empty directory, far from the source tree. The fresh
environment gets its dependencies the ordinary way (pip, as configured on the machine); torch is
pinned to the version of the environment running the tests, so pip takes it from the same place the
Makefile's ``pip install torch==...`` did (set ``CONTRASTKIT_TEST_TORCH`` to another requirement,
e.g. ``torch``, to change that). ``make package`` builds ``dist/`` and runs this test on it
(``CONTRASTKIT_DIST=dist``); CI runs ``make package`` after ``make test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _run(cmd: list[str], *, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} failed with exit {done.returncode}:\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}"
    )
    return done


def test_license_file_matches_the_project_metadata() -> None:
    text = PYPROJECT.read_text(encoding="utf-8")
    assert 'license = "MIT"' in text and 'license-files = ["LICENSE"]' in text
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License")
    assert "Copyright (c) 2026 the contrastkit authors" in license_text


def test_citation_names_the_current_version() -> None:
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0"
    assert citation["version"] == metadata.version("contrastkit")
    assert citation["license"] == "MIT"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the sdist and the wheel: ``$CONTRASTKIT_DIST``, or a fresh build."""
    given = os.environ.get("CONTRASTKIT_DIST")
    if given:
        return Path(given).resolve()
    pytest.importorskip("build", reason="`python -m build` needs the dev extra's 'build'")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=ROOT)
    return out


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_source_tree(dist: Path, tmp_path: Path) -> None:
    wheels = sorted(dist.glob("contrastkit-*.whl"))
    sdists = sorted(dist.glob("contrastkit-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    pytest.importorskip("twine", reason="`twine check` needs the dev extra's 'twine'")
    _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheels[0]), str(sdists[0])],
        cwd=ROOT,
    )

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    torch_req = os.environ.get("CONTRASTKIT_TEST_TORCH") or (
        "torch==" + metadata.version("torch").split("+")[0]
    )
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheels[0]), torch_req], cwd=tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    cli = str(env_dir / "bin" / "contrastkit")
    where = _run([str(python), "-c", "import contrastkit; print(contrastkit.__file__)"], cwd=empty)
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout
    version = _run([cli, "--version"], cwd=empty)
    assert version.stdout.strip() == f"contrastkit {metadata.version('contrastkit')}"
    losses = _run([cli, "losses"], cwd=empty)
    assert "ntxent" in losses.stdout and "isogclr_bimodal" in losses.stdout
    recipe = _run([cli, "recipes", "simclr"], cwd=empty)  # package data: the YAML recipes
    assert "loss: ntxent" in recipe.stdout

    fit = _run([cli, "fit", "--data", "digits", "--epochs", "1", "--no-progress"], cwd=empty)
    run_dir = empty / "runs" / "ntxent-digits"
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "metrics.json").is_file()
    assert "linear" in fit.stdout.lower()
