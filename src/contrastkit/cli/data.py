"""``contrastkit download``: fetch a dataset's files on a machine with a network."""

from __future__ import annotations

import argparse
import sys

from contrastkit.data import DownloadError, download_cifar, download_fashion_mnist

__all__ = ["DOWNLOADABLE", "add_parser"]

#: Datasets ``contrastkit download`` can fetch.
DOWNLOADABLE = ("fashion-mnist", "cifar10", "cifar100")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``download`` sub-command to ``sub``."""
    p = sub.add_parser(
        "download",
        help="download a dataset's files (needs a network): fashion-mnist, cifar10, cifar100",
    )
    p.add_argument("name", choices=list(DOWNLOADABLE))
    p.add_argument("--root", required=True, help="folder to put the files in")
    p.add_argument(
        "--url",
        default=None,
        help="other source (a mirror folder for fashion-mnist, the archive for CIFAR; file:// "
        "works); checksums are checked for the official source only",
    )
    p.add_argument("--force", action="store_true", help="download again if present")
    p.set_defaults(handler=run_download)


def run_download(args: argparse.Namespace) -> int:
    """Download the files; a failed download is one line and exit code 1."""
    try:
        if args.name == "fashion-mnist":
            kwargs = {"base_url": args.url} if args.url is not None else {}
            folder = download_fashion_mnist(args.root, force=args.force, **kwargs)
        else:
            folder = download_cifar(args.name, args.root, url=args.url, force=args.force)
    except DownloadError as exc:
        print(f"contrastkit download: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: files in {folder}; use --data {args.name} --data-root {args.root}")
    return 0
