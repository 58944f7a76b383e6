"""The pluggy plugin of shale_demo (entry point ``shale_demo`` in the ``shale`` group).

``shale_cli`` adds ``shale demo`` (see :func:`shale_demo.demo.run_demo`).
"""

from __future__ import annotations

import argparse

import shale

__all__ = ["shale_cli"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from shale_demo.demo import run_demo

    return run_demo(args.dir, keys=args.keys, keep=args.keep)


@shale.hookimpl
def shale_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``shale demo``."""
    # imported here: shale.cli loads every command, and every shale process loads this plugin
    from shale.cli.options import count

    p = subparsers.add_parser(
        "demo", help="walk through writes, reads, scans, flushes and recovery"
    )
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="an empty or new directory for the database (default: a temp directory, "
        "removed at the end unless --keep)",
    )
    p.add_argument(
        "--keys",
        type=count,
        default=3000,
        metavar="N",
        help="how many keys to write (default 3000)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    p.set_defaults(func=_cmd_demo)
