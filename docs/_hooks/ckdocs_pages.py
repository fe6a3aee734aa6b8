"""The pages of the site that are written from the code at build time.

Each ``*_pages`` function returns ``{path inside docs/: Markdown}``:

- :func:`loss_pages`: the loss catalogue, one page per name in ``contrastkit.losses``'s registry,
  from the registry entry, the class's signature and its docstring;
- :func:`cli_pages`: the command-line reference, from ``contrastkit.cli.build_parser()``;
- :func:`recipe_pages`: the recipe reference, from the YAML files in ``contrastkit/recipes``;
- :func:`api_pages`: one mkdocstrings page per public sub-package of ``contrastkit``;
- :func:`benchmark_pages`: BENCHMARKS.md from the repository root.

Nothing here is a copy of the code's text kept by hand: a new loss, recipe, sub-command, flag or
module shows up at the next build. The functions are tolerant of docstrings they do not expect (a
missing section is left out), so a change elsewhere never breaks the build.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckdocs_rst import rst_to_markdown

__all__ = [
    "LOSS_GROUPS",
    "api_nav",
    "api_pages",
    "benchmark_pages",
    "clear_caches",
    "cli_pages",
    "loss_nav",
    "loss_pages",
    "public_modules",
    "recipe_pages",
]

ROOT = Path(__file__).resolve().parents[2]

#: Loss-catalogue groups: title and the input kinds they hold (other kinds go to the last group).
LOSS_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Objectives on views", ("views",)),
    ("Two modalities", ("pair",)),
    ("Regularisers", ("regularizer",)),
    ("Other inputs", ()),
)

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Shape|Shapes|Example|Examples|Returns|Raises|Note|Notes|"
    r"Warning|Warnings|Attributes|References|See Also):\s*$"
)


# --------------------------------------------------------------------------------------------------
# small helpers


def _cell(text: str) -> str:
    """One Markdown table cell: a single line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _plain(text: str) -> str:
    """Plain text (help strings, YAML comments) safe in Markdown: no '<' read as a tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _split_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """``(description, {section title: dedented body})`` of a Google-style docstring."""
    description: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] = description
    for line in doc.split("\n"):
        match = _SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
            continue
        current.append(line)
    bodies = {
        title: inspect.cleandoc("\n".join(lines)).strip() for title, lines in sections.items()
    }
    return "\n".join(description).strip(), bodies


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def _args_section(body: str, names: Iterable[str]) -> dict[str, str]:
    """``{parameter: description}`` from an Args section; lines of other text continue an entry."""
    known = set(names)
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in body.split("\n"):
        match = re.match(r"^\s*\*{0,2}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if match and match.group(1) in known:
            current = out.setdefault(match.group(1), [])
            current.append(match.group(2))
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(part for part in parts if part) for name, parts in out.items()}


def _slug(text: str) -> str:
    from markdown.extensions.toc import slugify

    out: str = slugify(text, "-")
    return out


# --------------------------------------------------------------------------------------------------
# docs/methods.md: where each loss is specified


def _methods_sections(methods: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``({section number: anchor}, {loss name: first section number})`` from docs/methods.md."""
    anchors: dict[str, str] = {}
    by_loss: dict[str, str] = {}
    if not methods.is_file():
        return anchors, by_loss
    for line in methods.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{2,4}\s+((\d+(?:\.\d+)*)\.?\s.*)$", line)
        if heading:
            anchors.setdefault(heading.group(2), _slug(heading.group(1).strip()))
            continue
        row = re.match(r"^\|\s*`(\w+)`[^|]*\|[^|]*\|[^|]*\|\s*([\d.]+)", line)
        if row:
            by_loss.setdefault(row.group(1), row.group(2).rstrip("."))
    return anchors, by_loss


_METHODS_REF = re.compile(
    r"`{0,2}(?:docs/)?methods\.md`{0,2},?\s+(?:sections?\s+)?(\d+(?:\.\d+)?)", re.IGNORECASE
)


def _link_methods(text: str, anchors: dict[str, str], href: str) -> str:
    """``docs/methods.md``, section 2.1 -> a link to that section of the methods page."""

    def one(match: re.Match[str]) -> str:
        number = match.group(1)
        anchor = anchors.get(number) or anchors.get(number.split(".")[0])
        return f"[methods, section {number}]({href}#{anchor})" if anchor else match.group(0)

    return _METHODS_REF.sub(one, text)


# --------------------------------------------------------------------------------------------------
# the loss catalogue


@dataclass
class _Loss:
    name: str
    info: Any
    aliases: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    trains_with_fit: bool = False
    two_tower: bool = False


def _kind_calls(loss_info_doc: str) -> dict[str, str]:
    """``{input kind: call form}`` as LossInfo's docstring states them."""
    flat = " ".join(loss_info_doc.split())
    return dict(re.findall(r'``"(\w+)"``\s*\(``([^`]+)``', flat))


def _trains_with_fit(name: str, min_views: int) -> bool:
    from contrastkit.runs import config_from_mapping

    try:
        config_from_mapping({"loss": name, "views": max(2, min_views)})
    except (TypeError, ValueError):
        return False
    return True


def _recipes_by_loss() -> dict[str, list[str]]:
    from contrastkit.losses import loss_info
    from contrastkit.train.recipes import recipe_names

    out: dict[str, list[str]] = {}
    for recipe in recipe_names():
        try:
            loss = _recipe(recipe)[0].values.get("loss")
            if loss is not None:
                out.setdefault(loss_info(str(loss)).name, []).append(recipe)
        except (TypeError, ValueError):
            continue
    return out


def clear_caches() -> None:
    """Forget what one build read (``mkdocs serve`` rebuilds in the same process)."""
    _recipe.cache_clear()
    _collect_losses.cache_clear()


@functools.cache
def _recipe(name: str) -> tuple[Any, str]:
    """A shipped recipe, loaded and validated once per build, and its YAML text."""
    from contrastkit.train.recipes import load_recipe, recipe_text

    return load_recipe(name), recipe_text(name)


@functools.cache
def _collect_losses() -> list[_Loss]:
    from contrastkit.losses import loss_info, loss_names, registry

    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(getattr(registry, "_ALIASES", {}).items()):
        aliases.setdefault(target, []).append(alias)
    recipes = _recipes_by_loss()
    # the losses `fit` trains as two towers on paired data (none if the name is not there)
    run_config = importlib.import_module("contrastkit.runs.config")
    two_tower = set(getattr(run_config, "TWO_TOWER_LOSSES", ()))
    out = []
    for name in loss_names():
        info = loss_info(name)
        out.append(
            _Loss(
                name=name,
                info=info,
                aliases=aliases.get(name, []),
                recipes=recipes.get(name, []),
                trains_with_fit=_trains_with_fit(name, info.min_views),
                two_tower=name in two_tower,
            )
        )
    return out


def _group_of(kind: str) -> str:
    for title, kinds in LOSS_GROUPS:
        if kind in kinds:
            return title
    return LOSS_GROUPS[-1][0]


def _class_path(factory: Callable[..., Any]) -> tuple[str, bool]:
    """Public path of a loss factory, and whether ``contrastkit.losses`` exports it."""
    import contrastkit.losses as losses

    name = getattr(factory, "__name__", repr(factory))
    exported = name in getattr(losses, "__all__", []) and getattr(losses, name, None) is factory
    if exported:
        return f"contrastkit.losses.{name}", True
    return f"{getattr(factory, '__module__', 'contrastkit.losses')}.{name}", False


def _defaults_table(factory: Callable[..., Any], args_doc: dict[str, str]) -> list[str]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name == "self":
            continue
        default = "required" if param.default is param.empty else f"`{param.default!r}`"
        meaning = rst_to_markdown(args_doc.get(param.name, ""))
        rows.append(f"| `{param.name}` | {_cell(default)} | {_cell(meaning)} |")
    return rows if len(rows) > 2 else []


def _loss_page(
    loss: _Loss, calls: dict[str, str], anchors: dict[str, str], section: str | None, methods: str
) -> str:
    info = loss.info
    factory = info.factory
    doc = inspect.getdoc(factory) or ""
    description, sections = _split_docstring(doc)
    paper = [p for p in _paragraphs(description) if re.match(r"^\s*Papers?:", p)]
    body = [p for p in _paragraphs(description) if p not in paper]
    path, exported = _class_path(factory)
    try:
        names = list(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        names = []
    args_doc = _args_section(sections.get("Args", sections.get("Arguments", "")), names)

    def link(text: str) -> str:
        return _link_methods(rst_to_markdown(text), anchors, methods)

    title = getattr(factory, "__name__", loss.name)
    lines = [f"# `{loss.name}`: {title}", "", f"{info.summary[:1].upper()}{info.summary[1:]}.", ""]
    api = f" ([API](../api/losses.md#{path}))" if exported else ""
    call = calls.get(info.input_kind)
    kind = f"`{info.input_kind}`" + (f": `{call}`" if call else "")
    facts = [
        ("Class", f"`{path}`{api}"),
        ("Build it", f'`get_loss("{loss.name}", ...)`'),
        ("Aliases", ", ".join(f"`{a}`" for a in loss.aliases) or "none"),
        ("Input", kind),
        ("Labels", "required" if info.needs_labels else "optional or not used"),
    ]
    if info.input_kind == "views":
        facts.append(("Views", f"V >= {info.min_views}"))
    if info.needs_index:
        facts.append(
            ("Dataset index", "passed as the last argument; built with `num_samples` (state)")
        )
    if info.momentum_encoder:
        facts.append(("Momentum encoder", "owned by the loss; the trainer attaches the model"))
    recipes = ", ".join(f"[`{r}`](../reference/recipes.md#{_slug(r)})" for r in loss.recipes)
    if loss.trains_with_fit:
        fit = f"`contrastkit fit --loss {loss.name}`"
    elif loss.two_tower:
        fit = f"two towers on paired data: `contrastkit fit --loss {loss.name} --pairs FILE`"
    else:
        fit = "in your own loop (`contrastkit fit` does not train this kind of input)"
    facts.append(("Train it", fit + (f"; recipes {recipes}" if recipes else "")))
    if section is not None:
        anchor = anchors.get(section)
        target = f"{methods}#{anchor}" if anchor else methods
        facts.append(("Specification", f"[methods, section {section}]({target})"))
    lines += ["| property | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in facts] + [""]

    if body:
        lines += ["## Definition", "", link("\n\n".join(body)), ""]
    defaults = _defaults_table(factory, args_doc)
    if defaults:
        lines += ["## Arguments and defaults", "", *defaults, ""]
    shape = sections.get("Shape") or sections.get("Shapes")
    if shape:
        lines += ["## Input shapes", "", link(shape), ""]
    lines += ["## Paper", ""]
    if paper:
        text = re.sub(r"^\s*Papers?:\s*", "", "\n\n".join(paper))
        lines += [link(text), ""]
    else:
        lines += ["The class docstring names no paper; see the definition above.", ""]
    example = sections.get("Example") or sections.get("Examples")
    if example:
        lines += ["## Example", "", "```pycon", example, "```", ""]
    for extra in ("Note", "Notes", "Warning", "Warnings"):
        if extra in sections:
            lines += [f"## {extra}", "", link(sections[extra]), ""]
    return "\n".join(lines)


def loss_pages() -> dict[str, str]:
    """``losses/index.md`` and ``losses/<name>.md`` for every registered loss."""
    from contrastkit.losses import LossInfo

    anchors, by_loss = _methods_sections(ROOT / "docs" / "methods.md")
    calls = _kind_calls(inspect.getdoc(LossInfo) or "")
    losses = _collect_losses()
    pages = {
        f"losses/{loss.name}.md": _loss_page(
            loss, calls, anchors, by_loss.get(loss.name), "../methods.md"
        )
        for loss in losses
    }

    index = [
        "# Loss catalogue",
        "",
        f"All {len(losses)} losses of the registry (`contrastkit.losses.loss_names()`, also printed by "
        "`contrastkit losses`). Each page is written from the registry entry, the class signature "
        "and the class docstring when the site is built, so it always matches the installed code. "
        'Build any of them with `get_loss(name, **kwargs)`; "input" says how `forward` is called.',
        "",
    ]
    for title, _ in LOSS_GROUPS:
        members = [loss for loss in losses if _group_of(loss.info.input_kind) == title]
        if not members:
            continue
        index += [f"## {title}", "", "| loss | class | input | what it is |", "|---|---|---|---|"]
        for loss in members:
            names = f"[`{loss.name}`]({loss.name}.md)"
            if loss.aliases:
                names += " (" + ", ".join(f"`{a}`" for a in loss.aliases) + ")"
            cls = getattr(loss.info.factory, "__name__", "")
            index.append(
                f"| {names} | `{cls}` | `{loss.info.input_kind}` | {_cell(loss.info.summary)} |"
            )
        index.append("")
    index += [
        "The formulas, the defaults' sources and the reference-code notes behind every entry are "
        "in [Methods](../methods.md).",
        "",
    ]
    pages["losses/index.md"] = "\n".join(index)
    return pages


def loss_nav() -> list[Any]:
    """Navigation entries of the catalogue: the index, then one section per group."""
    nav: list[Any] = ["losses/index.md"]
    losses = _collect_losses()
    for title, _ in LOSS_GROUPS:
        members = [
            {loss.name: f"losses/{loss.name}.md"}
            for loss in losses
            if _group_of(loss.info.input_kind) == title
        ]
        if members:
            nav.append({title: members})
    return nav


# --------------------------------------------------------------------------------------------------
# the command line


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    cls = parser.formatter_class
    return cls(prog=parser.prog, width=80)  # type: ignore[call-arg]


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = _formatter(parser)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    try:
        return _formatter(parser)._expand_help(action)
    except (KeyError, TypeError, ValueError):
        return action.help


def _argument_name(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            return names
        metavar = action.metavar or action.dest.upper()
        return f"{names} {metavar if isinstance(metavar, str) else ' '.join(metavar)}"
    return str(action.metavar or action.dest)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _arguments_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | meaning |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        meaning = _expanded_help(parser, action)
        if action.choices is not None:
            meaning += (
                (" " if meaning else "")
                + "One of "
                + ", ".join(f"`{c}`" for c in action.choices)
                + "."
            )
        if action.required and action.option_strings:
            meaning += " Required."
        rows.append(f"| `{_cell(_argument_name(action))}` | {_cell(_plain(meaning))} |")
    return rows if len(rows) > 2 else []


def _command_section(
    prefix: str, parser: argparse.ArgumentParser, help_text: str, level: int
) -> list[str]:
    lines = [f"{'#' * level} `{prefix}`", ""]
    if help_text:
        lines += [_plain(f"{help_text[:1].upper()}{help_text[1:]}."), ""]
    lines += ["```text", _usage(parser), "```", ""]
    if parser.description:
        lines += [_plain(parser.description), ""]
    lines += [*_arguments_table(parser), ""]
    for name, sub_help, sub in _subcommands(parser):
        lines += _command_section(f"{prefix} {name}", sub, sub_help, min(level + 1, 4))
    return lines


def cli_pages() -> dict[str, str]:
    """``reference/cli.md``: every sub-command's usage and arguments, from the parser."""
    from contrastkit.cli import build_parser

    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "The `contrastkit` command (also `python -m contrastkit`, which is what `torchrun` starts). "
        "This page is generated from the argument parser, so it lists exactly what "
        "`contrastkit SUBCOMMAND --help` prints. Exit codes: 0 on success, 1 when training "
        "diverged, 2 for bad input (one line on stderr).",
        "",
        "```text",
        _usage(parser),
        "```",
        "",
        "| sub-command | what it does |",
        "|---|---|",
    ]
    commands = _subcommands(parser)
    lines += [
        f"| [`{name}`](#{_slug('contrastkit ' + name)}) | {_cell(_plain(h))} |"
        for name, h, _ in commands
    ]
    lines.append("")
    table = _arguments_table(parser)
    if table:
        lines += ["Options of `contrastkit` itself:", "", *table, ""]
    for name, help_text, sub in commands:
        lines += _command_section(f"contrastkit {name}", sub, help_text, 2)
    return {"reference/cli.md": "\n".join(lines)}


# --------------------------------------------------------------------------------------------------
# recipes


def _comment_header(text: str) -> list[str]:
    """The comment lines at the top of a YAML file, '#' removed (blank for '#' alone)."""
    out = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        out.append(line[1:][1:] if line.startswith("# ") else line[1:])
    return out


def _comments_markdown(lines: list[str]) -> str:
    """Comment paragraphs as prose; commands (and their ``\\`` continuations) as code."""
    blocks: list[str] = []
    prose: list[str] = []
    code: list[str] = []

    def flush() -> None:
        if prose:
            blocks.append(" ".join(s.strip() for s in prose))
            prose.clear()
        if code:
            blocks.append("```bash\n" + "\n".join(code) + "\n```")
            code.clear()

    for line in [*lines, ""]:
        stripped = line.strip()
        is_command = stripped.startswith(("contrastkit ", "python ", "torchrun ", ".venv/"))
        stripped = stripped if is_command else _plain(stripped)
        if not stripped:
            flush()
        elif is_command or (code and code[-1].endswith("\\")):
            if prose:
                blocks.append(" ".join(s.strip() for s in prose))
                prose.clear()
            code.append(stripped)
        else:
            if code:
                flush()
            prose.append(stripped)
    return "\n\n".join(blocks)


def _yaml_value(value: Any) -> str:
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def recipe_pages() -> dict[str, str]:
    """``reference/recipes.md``: each shipped recipe's comments and values, from its YAML file."""
    from contrastkit.train.recipes import recipe_names

    anchors, _ = _methods_sections(ROOT / "docs" / "methods.md")
    lines = [
        "# Recipes",
        "",
        "The recipes shipped in `contrastkit/recipes/` (`contrastkit recipes` lists them, "
        "`contrastkit recipes NAME` prints one). `contrastkit fit NAME` trains one; `--set key=value` "
        "changes a key, `--set loss_kwargs.NAME=value` one argument of a mapping. Each section "
        "below is generated from the YAML file: its comments (the method's source defaults and how "
        "the recipe adapts them) and its values. See [Recipes](../concepts/recipes.md) for how "
        "recipes, flags and defaults combine.",
        "",
        "| recipe | loss | what it is |",
        "|---|---|---|",
    ]
    sections: list[str] = []
    for name in recipe_names():
        try:
            recipe, text = _recipe(name)
        except (TypeError, ValueError) as exc:  # a broken recipe is shown, not hidden
            sections += [f"## {name}", "", f"This recipe does not load: {exc}", ""]
            continue
        loss = str(recipe.values.get("loss", ""))
        loss_link = f"[`{loss}`](../losses/{loss}.md)" if loss else ""
        try:
            from contrastkit.losses import loss_info

            loss_link = f"[`{loss}`](../losses/{loss_info(loss).name}.md)" if loss else ""
        except ValueError:
            pass
        lines.append(f"| [`{name}`](#{_slug(name)}) | {loss_link} | {_cell(recipe.description)} |")
        sections += [f"## {name}", ""]
        if recipe.description:
            sections += [f"*{recipe.description}*", ""]
        comments = _link_methods(
            _comments_markdown(_comment_header(text)), anchors, "../methods.md"
        )
        if comments:
            sections += [comments, ""]
        sections += [
            "| key | value |",
            "|---|---|",
            *(f"| `{k}` | `{_cell(_yaml_value(v))}` |" for k, v in recipe.values.items()),
            "",
            f'??? example "`{name}.yaml`"',
            "",
            "    ```yaml",
            *("    " + line if line else "" for line in text.rstrip("\n").split("\n")),
            "    ```",
            "",
        ]
    return {"reference/recipes.md": "\n".join([*lines, "", *sections])}


# --------------------------------------------------------------------------------------------------
# API reference


def public_modules() -> list[str]:
    """The sub-packages and modules of ``contrastkit`` a user imports (not ``cli``, not private)."""
    import contrastkit

    names = [
        info.name
        for info in pkgutil.iter_modules(contrastkit.__path__)
        if not info.name.startswith("_") and info.name not in {"cli"}
    ]
    return sorted(names)


def _module_docstring(module: str) -> str:
    """A module's docstring read from its source, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return ""
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return (ast.get_docstring(tree) or "").strip()


def api_pages() -> dict[str, str]:
    """``api/index.md`` and ``api/<module>.md`` (a mkdocstrings directive each)."""
    pages: dict[str, str] = {}
    rows = ["| module | what it holds |", "|---|---|"]
    for name in public_modules():
        summary = _module_docstring(f"contrastkit.{name}").split("\n\n")[0]
        rows.append(f"| [`contrastkit.{name}`]({name}.md) | {_cell(rst_to_markdown(summary))} |")
        pages[f"api/{name}.md"] = f"# contrastkit.{name}\n\n::: contrastkit.{name}\n"
    pages["api/index.md"] = "\n".join(
        [
            "# API reference",
            "",
            "The public modules, rendered from their docstrings and signatures "
            "(Google-style docstrings, read by mkdocstrings). Each page shows what the module "
            "exports in `__all__`; the layers they form are described in "
            "[Layers](../concepts/layers.md).",
            "",
            *rows,
            "",
        ]
    )
    return pages


def api_nav() -> list[Any]:
    """Navigation entries of the API reference."""
    return ["api/index.md", *(f"api/{name}.md" for name in public_modules())]


# --------------------------------------------------------------------------------------------------
# benchmarks


def benchmark_pages() -> dict[str, str]:
    """``benchmarks.md``: BENCHMARKS.md, with links into the repository shown as paths."""
    source = ROOT / "BENCHMARKS.md"
    text = source.read_text(encoding="utf-8") if source.is_file() else "# Benchmarks\n"
    text = re.sub(
        r"\[([^\]]+)\]\((?!https?:|mailto:|#)([^)]+)\)",
        lambda m: f"{m.group(1)} (`{m.group(2)}`)",
        text,
    )
    return {"benchmarks.md": text}
