"""MkDocs hooks (``hooks:`` in mkdocs.yml): the generated pages, their navigation, the formulas.

- ``on_config``: the navigation entries ``losses/index.md`` and ``api/index.md`` of mkdocs.yml
  become sections holding every generated loss page and API page;
- ``on_files``: the pages of :mod:`ckdocs_pages` (loss catalogue, CLI and recipe references, API
  reference, benchmarks) are added as generated files; none exists on disk;
- ``on_page_markdown``: ```` ```math ```` blocks (LaTeX) of the hand-written pages become formula
  placeholders;
- ``on_page_content``: formula placeholders become MathML (:func:`ckdocs_rst.expand_math`), before
  the search plugin indexes the page.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ckdocs_pages
from ckdocs_rst import expand_math, math_fences

_SECTIONS = {"losses/index.md": ckdocs_pages.loss_nav, "api/index.md": ckdocs_pages.api_nav}


def _expand(entry: Any) -> Any:
    """A nav entry with the generated sections filled in."""
    if isinstance(entry, list):
        return [_expand(item) for item in entry]
    if isinstance(entry, dict):
        out = {}
        for title, value in entry.items():
            if isinstance(value, str) and value in _SECTIONS:
                out[title] = _SECTIONS[value]()
            else:
                out[title] = _expand(value)
        return out
    return entry


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Fill the generated sections into the navigation."""
    ckdocs_pages.clear_caches()
    if config.nav is not None:
        config.nav = _expand(config.nav)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the pages written from the code."""
    pages: dict[str, str] = {}
    for build in (
        ckdocs_pages.loss_pages,
        ckdocs_pages.cli_pages,
        ckdocs_pages.recipe_pages,
        ckdocs_pages.api_pages,
        ckdocs_pages.benchmark_pages,
    ):
        pages.update(build())
    for path, content in sorted(pages.items()):
        if files.get_file_from_path(path) is not None:
            raise PluginError(f"docs/{path} is generated at build time; remove the file on disk")
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Formulas written as ```` ```math ```` blocks (LaTeX) in the hand-written pages."""
    return math_fences(markdown)


@event_priority(100)
def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """MathML in place of the formula placeholders."""
    return expand_math(html)
