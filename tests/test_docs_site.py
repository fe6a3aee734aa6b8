"""The documentation site: ``mkdocs build --strict`` succeeds and the pages render in a browser.

The build runs once per module into a temporary folder. The generated pages are checked against
the code they come from (every registered loss, sub-command and recipe has its page or section).
The browser check opens the home page and a loss page in Debian's headless ``chromium`` (``apt-get
install -y chromium``, as CI does when it can), reads the rendered DOM and takes a screenshot that
must not be blank; it is skipped, saying so, when ``/usr/bin/chromium`` is absent. The tests are
marked slow (the build alone takes 15-30 s here); ``make docs-test`` runs them, and CI runs that.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip(
    "mkdocstrings", reason="the docs extra is not installed: pip install -e '.[docs]'"
)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LOSS_PAGE = "ntxent"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-5000:]}"
    return out


def test_every_generated_page_is_built_and_indexed(site: Path) -> None:
    from contrastkit.cli import build_parser
    from contrastkit.losses import loss_names
    from contrastkit.train.recipes import recipe_names

    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    locations = {doc["location"].split("#")[0] for doc in index["docs"]}
    for page in ("index.html", "getting-started.html", "methods.html", "benchmarks.html"):
        assert page in locations
    for name in loss_names():
        assert (site / "losses" / f"{name}.html").is_file(), name
        assert f"losses/{name}.html" in locations, name

    cli = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for command in commands.choices:
        assert f"contrastkit {command}" in cli, command
    recipes = (site / "reference" / "recipes.html").read_text(encoding="utf-8")
    for name in recipe_names():
        assert f'id="{name}"' in recipes, name

    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert "CKMATH" not in text, f"an unconverted formula in {html.relative_to(site)}"
    assert "<math" in (site / "losses" / f"{LOSS_PAGE}.html").read_text(encoding="utf-8")
    assert "<math" in (site / "api" / "losses.html").read_text(encoding="utf-8")


def test_links_between_pages_reach_their_anchors(site: Path) -> None:
    """Every in-site link with an anchor (methods sections, recipes, benchmarks) hits an id."""
    ids: dict[Path, set[str]] = {}
    broken = []
    for page in sorted(site.rglob("*.html")):
        for target, anchor in re.findall(
            r'href="([^"#:]*\.html)?#([^"]+)"', page.read_text("utf-8")
        ):
            path = (page.parent / target).resolve() if target else page.resolve()
            if path not in ids:
                text = path.read_text("utf-8") if path.is_file() else ""
                ids[path] = set(re.findall(r'id="([^"]+)"', text))
            if anchor not in ids[path]:
                broken.append(f"{page.relative_to(site)} -> {target}#{anchor}")
    assert not broken, broken[:20]


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *extra,
        url,
    ]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="headless Chromium check needs Debian's chromium package (/usr/bin/chromium); "
    "install it with `apt-get install -y chromium`",
)
@pytest.mark.parametrize(
    ("page", "title"), [("index.html", "contrastkit"), (f"losses/{LOSS_PAGE}.html", LOSS_PAGE)]
)
def test_page_renders_in_headless_chromium(
    site: Path, tmp_path: Path, page: str, title: str
) -> None:
    from PIL import Image

    url = (site / page).as_uri()
    dom = _chromium(url, tmp_path / "profile-dom", "--dump-dom").stdout
    assert re.search(rf"<h1[^>]*>.*?{re.escape(title)}.*?</h1>", dom, re.S), dom[:2000]
    assert "md-sidebar" in dom and 'data-md-component="search"' in dom  # navigation, search box
    assert "data-js-focus-visible" in dom  # the theme's script ran (it sets this attribute)

    shot = tmp_path / "page.png"
    done = _chromium(
        url, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,900"
    )
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        gray = image.convert("L")
        histogram = gray.histogram()
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    dark = sum(histogram[:128])  # text, code and the header bar
    assert dark > 0.01 * sum(histogram) and colours > 50, "the screenshot is blank"
