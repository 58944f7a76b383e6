"""The ``shale`` command. Plugins add subcommands through the ``shale_cli`` hook.

Subcommands: ``info [URL]``, ``put``, ``get``, ``delete``, ``merge``, ``scan``, ``flush``,
``manifest show|list``, ``compactions list|show``, ``checkpoint create|list|refresh|delete``,
``seq-to-ts``, ``ts-to-seq`` and ``estimate`` (see ``docs/cli.md``). The options, argument
types, settings layering and logging every command shares, plugins' included, are in
:mod:`shale.cli.options`; output forms (``--json``, ``--bytes``) in :mod:`shale.cli.output`; the
Admin-backed commands in :mod:`shale.cli.inspect` and :mod:`shale.cli.checkpoints`.

Invariants and why:

* **Errors are one line.** A :class:`~shale.errors.ShaleError` from any command (plugins'
  included) prints ``error: <kind>: <message>`` on stderr and exits with 2; argparse usage errors
  also exit with 2. ``get`` of an absent key (and a lookup that finds nothing) exits with 1.
  A traceback means a bug.
* **The CLI never starts background compaction or GC on its own.** Databases are opened with
  ``compactor_options`` and ``garbage_collector_options`` set to ``None`` unless a settings file
  (``--settings``) or a ``SHALE_*`` variable names them. Layers: those CLI defaults, then the
  file, then the environment (:meth:`Settings.from_env`), then ``--merge-operator`` and
  ``--prefix-extractor``.
* **Read-only commands write nothing.** ``get`` and ``scan`` open the database read-only
  (:class:`shale.DbReader` following the latest manifest, or a checkpoint's with
  ``--checkpoint``, plus the WAL after it replayed in memory); ``info URL``, ``manifest``,
  ``compactions``, ``checkpoint list``, ``seq-to-ts``, ``ts-to-seq`` and ``estimate`` read
  through :class:`shale.Admin`. None of them writes an object, bumps an epoch, fences a
  running writer or creates a directory, so they work with read-only permissions.
* **Only ``put``, ``delete`` and ``merge`` create a database.** Every other command fails with
  ``error: data: no database at URL (no manifest found)`` when there is none.
* **Write commands open the database as the writer** (``put``, ``delete``, ``merge``,
  ``flush``, ``checkpoint create --flush``), which fences any other writer of the same database
  (SlateDB's rule: at most one writer). ``checkpoint create`` (without ``--flush``),
  ``checkpoint refresh`` and ``checkpoint delete`` add manifest versions through
  :class:`shale.Admin`, like SlateDB's admin CLI, and fence nobody.
* **Script-friendly.** Every read command takes ``--json`` (one document; JSON Lines -- one
  object per line -- for scans and lists) and ``--bytes escaped|base64|hex`` for keys and values
  in the output. ``-v`` is accepted before or after the subcommand.
* **Keys and values are UTF-8 text by default** (arguments undecodable in the locale round-trip
  through ``surrogateescape``); ``--hex`` takes and prints hex. Printed text shows bytes that are
  not UTF-8 as ``\\xNN``: use ``--hex`` when the exact bytes matter.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from shale import __version__, _accel
from shale.cli import changes, checkpoints, clones, inspect
from shale.cli import dump as dump_cli
from shale.cli.options import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    SETTINGS_HELP,
    STORE_OPTION_HELP,
    cli_settings,
    count,
    database_options,
    no_database,
    open_store,
    parse_store_options,
    positive_duration,
    require_database,
    settings_from_args,
    verbose_logging,
    verbosity_options,
)
from shale.cli.output import bytes_format, emit_line, output_options, show_bytes
from shale.cli.summaries import manifest_summary
from shale.errors import DataError, InvalidError, ShaleError
from shale.keys import prefix_end
from shale.keys import scan_bounds as key_bounds
from shale.plugins import get_host

if TYPE_CHECKING:
    from shale.db import Db
    from shale.reader import DbReader

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "build_parser",
    "cli_settings",
    "main",
    "manifest_summary",
    "parse_store_options",
    "scan_bounds",
]

log = logging.getLogger(__name__)

#: The exit codes, as ``--help`` prints them.
EXIT_CODES = (
    "exit status:\n"
    f"  {EXIT_OK}    success\n"
    f"  {EXIT_NOT_FOUND}    not found: get of an absent key, a lookup that matched nothing\n"
    f"  {EXIT_ERROR}    error: bad usage, no database at URL, storage or data errors\n"
    "       (one line on stderr: 'error: KIND: MESSAGE')\n"
    "  130  interrupted"
)

#: Default ``--timeout`` of commands that flush memtables to L0 (``flush --memtable``,
#: ``checkpoint create --flush``): L0 may be full with no compactor running.
FLUSH_TIMEOUT_S = 60.0


# -- info ---------------------------------------------------------------------------------------


def _cmd_info(args: argparse.Namespace) -> int:
    if args.url is not None:
        return inspect.cmd_info_url(args)
    host = get_host()
    print(f"shale {__version__}")
    print("accelerators:")
    for name in _accel.ACCELERATED:
        try:
            compiled = _accel.is_compiled(name)
            state = "compiled (Cython)" if compiled else "pure Python"
        except ImportError as exc:  # module not importable at all
            state = f"missing ({exc})"
        print(f"  {name:<10} {state}")
    print("plugins:")
    for name in host.plugin_names():
        print(f"  {name}")
    for name, why in host.failed.items():
        print(f"  {name} (failed to load: {why})")
    return EXIT_OK


# -- shared helpers -----------------------------------------------------------------------------


def _to_bytes(text: str, args: argparse.Namespace, what: str) -> bytes:
    """A command-line key or value as bytes: UTF-8 text, or hex with ``--hex``."""
    if args.hex:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise InvalidError(f"{what} is not valid hex", value=text) from None
    return text.encode("utf-8", "surrogateescape")


def _no_database(args: argparse.Namespace) -> DataError:
    return no_database(args.url)


def _require_db(args: argparse.Namespace) -> None:
    """Raise DataError when ``args.url`` holds no database (commands that must not create it)."""
    store = open_store(args)
    try:
        require_database(store, args.url)
    finally:
        store.close()


@contextlib.contextmanager
def _open_reader(args: argparse.Namespace) -> Iterator[DbReader]:
    """Open ``args.url`` read-only (``--checkpoint`` if given); it writes nothing."""
    from shale.reader import DbReader

    reader = DbReader.open(
        args.url,
        settings_from_args(args),
        checkpoint=args.checkpoint,
        mode=None if args.checkpoint else "follow_latest",
        store_options=parse_store_options(args.store_option),
    )
    try:
        with _merge_hint(reader.merge_operator is None):
            yield reader
    finally:
        reader.close()


@contextlib.contextmanager
def _merge_hint(no_operator: bool) -> Iterator[None]:
    """Add how to pass a merge operator to a read that found operands and had none."""
    try:
        yield
    except InvalidError as exc:
        if no_operator and exc.message.startswith("merge operator missing"):
            raise InvalidError(
                f"{exc.message}: the database holds merge operands; pass --merge-operator NAME "
                "(e.g. concat, counter), or set merge_operator in --settings or "
                "SHALE_MERGE_OPERATOR"
            ) from exc
        raise


def _open_writer(args: argparse.Namespace) -> contextlib.AbstractContextManager[Db]:
    """Open an existing database as its writer (``checkpoint create --flush``)."""
    return _open_db(args, create=False)


@contextlib.contextmanager
def _open_db(args: argparse.Namespace, *, create: bool) -> Iterator[Db]:
    """Open ``args.url`` as the writer (creating it only when ``create``), close on exit."""
    from shale.db import Db

    settings = settings_from_args(args)
    if not create:
        _require_db(args)
    db = Db.open(args.url, settings, store_options=parse_store_options(args.store_option))
    try:
        yield db
    finally:
        db.close()


def _ttl(value: str) -> int:
    try:
        ms = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of milliseconds: {value!r}") from None
    if ms <= 0:
        raise argparse.ArgumentTypeError("the TTL must be > 0 milliseconds")
    return ms


# -- key-value commands -------------------------------------------------------------------------


def _cmd_put(args: argparse.Namespace) -> int:
    key = _to_bytes(args.key, args, "key")
    value = _to_bytes(args.value, args, "value")
    with _open_db(args, create=True) as db:
        handle = db.put(key, value, ttl=args.ttl)
    print(f"seq={handle.seq}")
    return EXIT_OK


def _cmd_merge(args: argparse.Namespace) -> int:
    key = _to_bytes(args.key, args, "key")
    operand = _to_bytes(args.operand, args, "operand")
    with _open_db(args, create=True) as db:
        if db.merge_operator is None:
            raise InvalidError(
                "no merge operator: pass --merge-operator NAME or set "
                "merge_operator in the settings"
            )
        handle = db.merge(key, operand, ttl=args.ttl)
    print(f"seq={handle.seq}")
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    key = _to_bytes(args.key, args, "key")
    with _open_db(args, create=True) as db:
        handle = db.delete(key)
    print(f"seq={handle.seq}")
    return EXIT_OK


def _cmd_get(args: argparse.Namespace) -> int:
    key = _to_bytes(args.key, args, "key")
    with _open_reader(args) as db:
        value = db.get(key, durability=args.durability, include_expired=args.include_expired)
    fmt = bytes_format(args)
    if value is None:
        print(f"not found: {args.key}", file=sys.stderr)
        if args.json:
            emit_line({"key": show_bytes(key, fmt), "value": None})
        return EXIT_NOT_FOUND
    if args.json:
        emit_line({"key": show_bytes(key, fmt), "value": show_bytes(value, fmt)})
    else:
        print(show_bytes(value, fmt))
    return EXIT_OK


def scan_bounds(
    start: bytes | None, end: bytes | None, prefix: bytes | None
) -> tuple[bytes | None, bytes | None] | None:
    """The ``[start, end)`` range of a scan restricted to ``prefix``; ``None`` when empty."""
    if prefix:
        pend = prefix_end(prefix)
        start = prefix if start is None else max(start, prefix)
        if pend is not None:
            end = pend if end is None else min(end, pend)
    if start is not None and end is not None and start >= end:
        return None
    return start, end


def _cmd_scan(args: argparse.Namespace) -> int:
    start = None if args.start is None else _to_bytes(args.start, args, "start key")
    end = None if args.end is None else _to_bytes(args.end, args, "end key")
    prefix = None if args.prefix is None else _to_bytes(args.prefix, args, "prefix")
    start, end = key_bounds(start, end, not args.start_exclusive, args.end_inclusive)
    bounds = scan_bounds(start, end, prefix)
    with _open_reader(args) as db:
        if bounds is None:
            return EXIT_OK
        it = db.scan(
            bounds[0],
            bounds[1],
            reverse=args.reverse,
            durability=args.durability,
            include_expired=args.include_expired,
        )
        fmt = bytes_format(args)
        for n, (key, value) in enumerate(it):
            if args.limit is not None and n >= args.limit:
                break
            if args.json:
                record = {"key": show_bytes(key, fmt)}
                if not args.keys_only:
                    record["value"] = show_bytes(value, fmt)
                emit_line(record)
            elif args.keys_only:
                print(show_bytes(key, fmt))
            else:
                print(f"{show_bytes(key, fmt)}\t{show_bytes(value, fmt)}")
    return EXIT_OK


def _cmd_flush(args: argparse.Namespace) -> int:
    with _open_db(args, create=False) as db:
        db.flush(memtable=args.memtable, timeout=args.timeout)
        m = db.metrics()
    what = "WAL and memtable (now in L0)" if args.memtable else "WAL"
    print(
        f"flushed {what}: durable_seq={m['durable_seq']} manifest={m['manifest_id']} "
        f"l0_ssts={m['l0_sst_count']} sorted_runs={m['sorted_run_count']}"
    )
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------------


def _db_options() -> argparse.ArgumentParser:
    """Options of core's commands that take a database URL: the shared set, and ``--hex``."""
    p = database_options()
    g = p.add_argument_group("key options")
    g.add_argument(
        "--hex",
        action="store_true",
        help="keys and values are given and printed as hex, not UTF-8 text",
    )
    return p


def _read_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("read options")
    g.add_argument(
        "--durability",
        choices=("memory", "remote"),
        default="memory",
        help="'remote' sees only writes that are durable (default: memory)",
    )
    g.add_argument(
        "--include-expired",
        action="store_true",
        default=None,
        help="also return rows past their TTL",
    )
    g.add_argument(
        "--merge-operator",
        metavar="NAME",
        help="merge operator for keys with merge operands (e.g. concat, counter)",
    )
    g.add_argument(
        "--checkpoint",
        metavar="ID",
        help="read the state this checkpoint pins (its UUID, from 'shale checkpoint list') "
        "instead of the latest",
    )
    g.add_argument(
        "--prefix-extractor",
        metavar="NAME",
        help="segment extractor of a segmented database (e.g. fixed3; see docs/segments.md)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``shale`` argument parser, with every plugin's subcommands added."""
    parser = argparse.ArgumentParser(
        prog="shale",
        description="Read, write and inspect shale databases. Plugins add "
        "more subcommands; 'shale COMMAND --help' describes each.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shale {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log progress of shale and its plugins to stderr (-vv for debug)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    dbo, rdo, out = _db_options(), _read_options(), output_options()
    info = sub.add_parser(
        "info",
        parents=[verbosity_options(), out],
        help="show which accelerators are compiled and which plugins load; with URL, "
        "a summary of that database (read-only)",
        epilog=EXIT_CODES,
    )
    info.add_argument("url", nargs="?", metavar="URL", help="a database to summarize")
    info.add_argument("--settings", metavar="FILE", help="with URL: " + SETTINGS_HELP)
    info.add_argument(
        "--store-option",
        action="append",
        metavar="NAME=VALUE",
        help="with URL: " + STORE_OPTION_HELP,
    )
    info.set_defaults(func=_cmd_info)

    p = sub.add_parser("put", parents=[dbo], help="set a key (durable when the command returns)")
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p.add_argument("--ttl", type=_ttl, metavar="MS", help="expire after MS milliseconds")
    p.set_defaults(func=_cmd_put)

    read_only = (
        "Opens the database read-only: writes nothing and fences no running writer. Sees "
        "every write that is durable (in L0, the sorted runs or the WAL)."
    )
    p = sub.add_parser(
        "get",
        parents=[dbo, rdo, out],
        help="print a key's value (exit 1 if absent); read-only, fences nobody",
        description=read_only,
        epilog=EXIT_CODES,
    )
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=_cmd_get)

    p = sub.add_parser("delete", parents=[dbo], help="delete a key")
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=_cmd_delete)

    p = sub.add_parser("merge", parents=[dbo], help="add a merge operand to a key")
    p.add_argument("key", metavar="KEY")
    p.add_argument("operand", metavar="OPERAND")
    p.add_argument("--ttl", type=_ttl, metavar="MS", help="expire after MS milliseconds")
    p.add_argument("--merge-operator", metavar="NAME", help="e.g. concat or counter")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser(
        "scan",
        parents=[dbo, rdo, out],
        help="print KEY<TAB>VALUE lines (--json: JSON Lines) of a key range; read-only, "
        "fences nobody",
        description=read_only,
        epilog=EXIT_CODES,
    )
    p.add_argument("--start", metavar="K", help="first key (inclusive)")
    p.add_argument("--end", metavar="K", help="end key (exclusive)")
    p.add_argument(
        "--start-exclusive", action="store_true", help="leave the --start key itself out"
    )
    p.add_argument("--end-inclusive", action="store_true", help="include the --end key itself")
    p.add_argument("--prefix", metavar="P", help="only keys starting with P")
    p.add_argument("--reverse", action="store_true", help="keys descending")
    p.add_argument("--limit", type=count, metavar="N", help="print at most N rows")
    p.add_argument("--keys-only", action="store_true", help="print keys only")
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser(
        "flush",
        parents=[dbo],
        help="upload the WAL (and the memtable to L0); opens as the writer",
        description="Opens the database as its writer, which fences any other running "
        "writer of it, and replays its WAL. Without --memtable there is little to do (what "
        "the WAL holds is durable already); with it, the WAL's rows become L0 SSTs.",
    )
    p.add_argument(
        "--memtable",
        action="store_true",
        help="also flush every memtable to an L0 SST in the manifest",
    )
    p.add_argument(
        "--timeout",
        type=positive_duration,
        default=FLUSH_TIMEOUT_S,
        metavar="SECONDS",
        help="give up after this long, e.g. while L0 is full and no compactor runs "
        f"(seconds or a duration such as 2m; default {FLUSH_TIMEOUT_S:.0f})",
    )
    p.set_defaults(func=_cmd_flush)

    man = sub.add_parser("manifest", help="inspect manifests (read-only)")
    man_sub = man.add_subparsers(dest="manifest_command", metavar="COMMAND", required=True)
    inspect.add_manifest_commands(man_sub, [dbo, out])
    inspect.add_commands(sub, dbo)
    checkpoints.add_commands(sub, dbo, open_writer=_open_writer, flush_timeout=FLUSH_TIMEOUT_S)
    clones.add_commands(sub, dbo)

    dump_cli.add_parsers(sub)  # dump, load
    changes.add_parser(sub)
    try:
        get_host().add_cli(sub)
    except Exception as exc:  # a broken plugin must not take the whole command down
        log.warning("a plugin failed to add its subcommands: %s", exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shale`` command; return its exit code (0 ok, 1 not found, 2 error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        with verbose_logging(args.verbose + getattr(args, "verbose_after", 0)):
            result: int = func(args)
    except ShaleError as exc:
        print(f"error: {exc.kind}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `shale scan ... | head`: the reader left; not an error
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
