"""``shale gc run URL``: the standalone garbage collector (added through ``shale_cli``).

``shale gc run URL --once`` collects once and prints the report: per directory, what was
deleted, bytes freed, what was kept and why. Without ``--once`` it keeps collecting on each
directory's interval until interrupted (Ctrl-C), printing a report for every round that
deleted something or hit an error. ``--dry-run`` deletes and writes nothing and reports what a
real run would delete. ``--detach release|copy`` also detaches a clone from its sources each
round (``GarbageCollector(detach=...)``, docs/clones.md). Progress of large listings and
deletions goes to stderr.

Options come from ``garbage_collector_options`` of a ``--settings`` file or ``SHALE_*``
variables when they name it, else the defaults (every directory, 60 s interval, 300 s
``min_age``); ``--min-age`` and ``--interval`` then override every directory. Exit status: 0
when the (last) round had no error, 2 on errors (a round error, a collector error, a failed
delete) or when ``URL`` holds no database. The options every command shares (``URL``,
``--settings``, ``--store-option``), the settings layering and the argument types are
:mod:`shale.cli.options`'s, like every ``shale`` command's.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from shale.cli.options import (
    EXIT_ERROR,
    EXIT_OK,
    database_options,
    duration,
    open_store,
    require_database,
    settings_from_args,
)
from shale.spi import GarbageCollectorOptions
from shale_gc.collector import GarbageCollector
from shale_gc.report import GcReport

__all__ = ["add_commands", "gc_options"]


def gc_options(
    base: GarbageCollectorOptions | None,
    *,
    min_age: float | None = None,
    interval: float | None = None,
) -> GarbageCollectorOptions:
    """``base`` (default: ``GarbageCollectorOptions()``) with ``min_age`` and ``interval``
    applied to every collected directory."""
    opts = base if base is not None else GarbageCollectorOptions()
    changes: dict[str, Any] = {}
    for name in ("manifest", "wal", "compacted", "compactions"):
        d = getattr(opts, name)
        if d is None:
            continue
        if min_age is not None:
            d = d.replace(min_age=min_age)
        if interval is not None:
            d = d.replace(interval=interval)
        changes[name] = d
    return opts.replace(**changes)


def _print_report(report: GcReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary(), flush=True)


def _cmd_gc_run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    options = gc_options(
        settings.garbage_collector_options, min_age=args.min_age, interval=args.interval
    )

    def progress(kind: str, phase: str, count: int) -> None:
        if not args.quiet and count:
            print(f"gc {kind}: {phase} {count} object(s)", file=sys.stderr, flush=True)

    store = open_store(args)
    try:
        require_database(store, args.url)
        gc = GarbageCollector(
            store,
            "",
            options,
            dry_run=args.dry_run,
            manifest_format_version=settings.manifest_format_version,
            progress=progress,
            detach=args.detach,
        )
        if args.once:
            report = gc.run_once()
            _print_report(report, args.json)
            return EXIT_OK if report.ok else EXIT_ERROR
        last: list[GcReport] = []

        def on_report(report: GcReport) -> None:
            last[:] = [report]
            detached = report.detach is not None and (
                report.detach.copied or report.detach.detached
            )
            if report.deleted or not report.ok or report.expired_checkpoints or detached:
                _print_report(report, args.json)

        stop = threading.Event()
        try:
            gc.run(stop, on_report=on_report)
        except KeyboardInterrupt:
            stop.set()
            print("stopped", file=sys.stderr)
        return EXIT_OK if not last or last[0].ok else EXIT_ERROR
    finally:
        store.close()


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``gc run`` to the ``shale`` command's sub-parsers."""
    gc = subparsers.add_parser("gc", help="garbage-collect unreachable files of a database")
    gc_sub = gc.add_subparsers(dest="gc_command", metavar="COMMAND", required=True)
    common = database_options(
        settings_help="a shale.json / shale.toml settings file (garbage_collector_options, "
        "manifest_format_version; SHALE_* variables override it)"
    )
    p = gc_sub.add_parser(
        "run",
        parents=[common],
        help="delete WAL SSTs, compacted SSTs, manifests and .compactions files nothing can "
        "reach any more (once, or on an interval until interrupted)",
    )
    p.add_argument("--once", action="store_true", help="collect once, print the report, exit")
    p.add_argument(
        "--dry-run", action="store_true", help="delete nothing; report what would be deleted"
    )
    p.add_argument(
        "--min-age",
        type=duration,
        metavar="SECONDS",
        help="only delete files older than this (seconds or a duration such as 10m; "
        "default 300 s, or the settings file's)",
    )
    p.add_argument(
        "--interval",
        type=duration,
        metavar="SECONDS",
        help="time between rounds without --once (default 60 s, or the settings file's)",
    )
    p.add_argument(
        "--detach",
        choices=("release", "copy"),
        help="a clone: release the sources it no longer reads each round (release), or copy "
        "what it still reads from them first (copy); see docs/clones.md",
    )
    p.add_argument("--json", action="store_true", help="print reports as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_cmd_gc_run)
