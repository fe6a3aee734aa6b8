"""``contrastkit`` command line: a thin layer over the library.

Each sub-command group is one module that adds its parser and handler (``set_defaults(handler=...)``):
:mod:`.fit` (``fit``), :mod:`.runs` (``eval``, ``report``, ``embed``, ``compare``),
:mod:`.zeroshot` (``zeroshot``), :mod:`.catalog` (``losses``, ``recipes``), :mod:`.arrays`
(``fit-arrays``), :mod:`.cluster` (``cluster``), :mod:`.data` (``download``) and :mod:`.apps`
(``apps``: the seed papers' applications). Handlers parse,
call the library and print; :func:`main` turns every failure a user can cause into one line on
stderr (no traceback) and an exit code:

- 2, bad input: an unknown name, a value out of range, a damaged or foreign file (the library
  raises ``ValueError``, ``TypeError`` or ``FileNotFoundError``, naming the flag or file), the
  command line itself (argparse's errors are one line too), and a missing optional extra (an
  ``ImportError`` naming what to install);
- 1, the run failed: training diverged (a non-finite loss), or the environment failed, e.g. a
  checkpoint could not be written because the disk is full (an ``OSError``). Nothing a run
  wrote before is lost then: ``--resume`` continues from the last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from contrastkit.cli import apps, arrays, catalog, cluster, data, fit, runs, zeroshot

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is left to ``--help``)."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` on one line and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(message: object) -> str:
    """``message`` with its lines joined, so that an error is always one line."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _version() -> str:
    """The installed distribution's version (its metadata), else the package's own."""
    try:
        return metadata.version("contrastkit")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from contrastkit import __version__

        return __version__


def _add_strategy_parsers(sub: argparse._SubParsersAction) -> None:
    cluster.add_parser(sub)
    arrays.add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``contrastkit`` command."""
    parser = _Parser(
        prog="contrastkit",
        description="contrastkit: contrastive representation learning from the command line. "
        "Each sub-command has its own --help.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fit.add_parser(sub)
    runs.add_parsers(sub)
    zeroshot.add_parser(sub)
    catalog.add_parsers(sub)
    _add_strategy_parsers(sub)
    data.add_parser(sub)
    apps.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``contrastkit`` command.

    Args:
        argv: The arguments (None: ``sys.argv[1:]``).

    Returns:
        The process exit code: 0 on success, 1 when training diverged or the environment failed
        (e.g. a full disk), 2 for bad input; each failure is one line on stderr, no traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except FloatingPointError as exc:  # a diverged run is a training failure, not bad input
        print(f"contrastkit {args.command}: training failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:  # ImportError: an extra
        print(f"contrastkit {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not the input: a full disk, a lost permission
        print(f"contrastkit {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return code
