"""The docstrings' reST bits as Markdown the site can render, formulas as MathML.

contrastkit's docstrings are Google style with a few reST constructs: ``.. math::`` blocks,
``:math:`...``` roles, cross-reference roles (``:class:`FitConfig```) and, in a module or two,
underlined section titles. :func:`rst_to_markdown` turns these into Markdown. A formula becomes a
placeholder word (its LaTeX hex-encoded) that Markdown leaves alone; :func:`expand_math` swaps the
placeholders in the rendered HTML for MathML (made by latex2mathml at build time, so the pages need
no JavaScript and no network to show formulas). Both the generated pages and the API reference
(through :class:`RstDocstrings`, a griffe extension) go through here, so formulas look the same in
both.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

__all__ = [
    "RstDocstrings",
    "expand_math",
    "latex_to_mathml",
    "math_fences",
    "math_placeholder",
    "rst_to_markdown",
]

_MATH_TOKEN = re.compile(r"CKMATH([DI])([0-9a-f]+)Z")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const|ref|term):`([^`]+)`")
_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_MATH_FENCE = re.compile(r"^```math[ \t]*\n(.*?)\n```[ \t]*$", re.M | re.S)
_UNDERLINE = re.compile(r"^(?P<title>\S[^\n]*)\n(?P<rule>[-=~^]{3,})$", re.M)


def math_placeholder(tex: str, *, display: bool) -> str:
    """A word standing for the formula ``tex`` until :func:`expand_math` replaces it."""
    return f"CKMATH{'D' if display else 'I'}{tex.encode('utf-8').hex()}Z"


def math_fences(markdown: str) -> str:
    """```` ```math ```` fenced blocks of a hand-written page as display-formula placeholders."""
    return _MATH_FENCE.sub(
        lambda m: math_placeholder(" ".join(m.group(1).split()), display=True), markdown
    )


def latex_to_mathml(tex: str, *, display: bool) -> str:
    """MathML for ``tex``, or the LaTeX as code when latex2mathml cannot read it."""
    from latex2mathml.converter import convert

    try:
        out: str = convert(tex, display="block" if display else "inline")
    except Exception:  # an unsupported command must not break the site: show the source
        code = f"<code>{html.escape(tex)}</code>"
        return f'<div class="ck-math-source">{code}</div>' if display else code
    return out


def expand_math(page_html: str) -> str:
    """Replace the formula placeholders of :func:`rst_to_markdown` in rendered HTML by MathML."""

    def one(match: re.Match[str]) -> str:
        tex = bytes.fromhex(match.group(2)).decode("utf-8")
        display = match.group(1) == "D"
        mathml = latex_to_mathml(tex, display=display)
        return f'<span class="ck-math-block">{mathml}</span>' if display else mathml

    return _MATH_TOKEN.sub(one, page_html)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _math_blocks(text: str) -> str:
    """``.. math::`` directives (content on the same line and/or indented below) to placeholders."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped.startswith(".. math::"):
            out.append(line)
            i += 1
            continue
        ind = _indent(line)
        body = [stripped[len(".. math::") :].strip()]
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > ind):
            body.append(lines[i].strip())
            i += 1
        while out and not out[-1].strip():
            out.pop()
        tex = " ".join(part for part in body if part)
        out.extend(["", " " * ind + math_placeholder(tex, display=True), ""])
    return "\n".join(out)


def _role(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    if "<" in target and target.endswith(">"):  # :ref:`text <target>`
        target = target.split("<", 1)[0].strip()
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target.lstrip('.')}`"


def rst_to_markdown(text: str) -> str:
    """Markdown for a docstring that uses the reST constructs named in the module docstring."""
    text = _math_blocks(text)
    text = _INLINE_MATH.sub(lambda m: math_placeholder(m.group(1), display=False), text)
    text = _ROLE.sub(_role, text)
    text = _UNDERLINE.sub(lambda m: f"**{m.group('title').strip()}**", text)
    return text.replace("``\\ ", "``")


class RstDocstrings(griffe.Extension):
    """Griffe extension: every docstring of the loaded package through :func:`rst_to_markdown`."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of ``pkg`` and everything defined in it."""
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rst_to_markdown(obj.docstring.value)
            stack.extend(
                member
                for member in obj.members.values()
                if not member.is_alias and isinstance(member, griffe.Object)
            )
