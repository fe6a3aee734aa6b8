"""``contrastkit`` command line: a thin layer over the library.

Each sub-command group is one module that adds its parser and handler (``set_defaults(handler=...)``):
:mod:`.fit` (``fit``), :mod:`.runs` (``eval``, ``report``, ``embed``), :mod:`.catalog` (``losses``,
``recipes``), :mod:`.arrays` (``fit-arrays``), :mod:`.cluster` (``cluster``) and :mod:`.data`
(``download``). Handlers parse, call the library and print;
:func:`main` turns bad input into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from contrastkit.cli import arrays, catalog, cluster, data, fit, runs

__all__ = ["build_parser", "main"]


def _add_strategy_parsers(sub: argparse._SubParsersAction) -> None:
    cluster.add_parser(sub)
    arrays.add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``contrastkit`` command."""
    parser = argparse.ArgumentParser(
        prog="contrastkit",
        description="``contrastkit`` command line: a thin layer over the library.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fit.add_parser(sub)
    runs.add_parsers(sub)
    catalog.add_parsers(sub)
    _add_strategy_parsers(sub)
    data.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``contrastkit`` command.

    Args:
        argv: The arguments (None: ``sys.argv[1:]``).

    Returns:
        The process exit code: 0 on success, 1 when training diverged, 2 for bad input (one line
        on stderr, no traceback).
    """
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except FloatingPointError as exc:  # a diverged run is a training failure, not bad input
        print(f"contrastkit {args.command}: training failed: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"contrastkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code
