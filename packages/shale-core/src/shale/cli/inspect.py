"""The read-only inspection commands of ``shale``, all through :class:`shale.Admin`:

``info URL``, ``manifest show|list``, ``compactions list|show``, ``seq-to-ts``, ``ts-to-seq`` and
``estimate`` (``slatedb-cli``'s ``read-manifest``, ``list-manifests``, ``read-compactions``,
``list-compactions``, ``read-compaction``, ``seq-to-ts``, ``ts-to-seq``; ``estimate`` is shale's).

Invariant: none of them writes an object, creates a directory or fences anybody; a URL with no
database is ``error: data: no database at URL`` (exit 2), never a new empty database. A lookup
that finds nothing (a manifest or compaction id, a sequence number or time outside the tracker)
exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shale.cli.options import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    count,
    no_database,
    parse_store_options,
    settings_from_args,
)
from shale.cli.output import (
    bytes_format,
    compaction_summary,
    emit,
    emit_line,
    output_options,
    when,
)
from shale.cli.summaries import checkpoint_summary, manifest_brief, manifest_summary
from shale.errors import DataError, InvalidError
from shale.keys import prefix_end

if TYPE_CHECKING:
    from shale.admin import Admin, VersionedCompactions

__all__ = ["add_commands", "open_admin", "parse_key_arg"]

NOT_FOUND_EPILOG = (
    "exit status: 0 found; 1 nothing matched; 2 error (no database at URL, an id that does "
    "not exist, bad usage)"
)


@contextlib.contextmanager
def open_admin(args: argparse.Namespace) -> Iterator[Admin]:
    """An :class:`shale.Admin` for ``args.url`` (``--settings``, ``--store-option``), closed on
    exit."""
    from shale.admin import Admin

    admin = Admin(
        args.url,
        settings=settings_from_args(args),
        store_options=parse_store_options(args.store_option),
    )
    try:
        yield admin
    finally:
        admin.close()


def parse_key_arg(text: str | None, args: argparse.Namespace, what: str) -> bytes | None:
    """A key given on the command line: UTF-8 text, or hex with ``--hex``."""
    if text is None:
        return None
    if getattr(args, "hex", False):
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise InvalidError(f"{what} is not valid hex", value=text) from None
    return text.encode("utf-8", "surrogateescape")


# -- info URL -----------------------------------------------------------------------------------


def database_info(admin: Admin) -> dict[str, Any]:
    """What ``shale info URL`` prints: the latest manifest in brief, the compactor's state,
    the checkpoints and the whole-database estimate."""
    view = admin.read_compactor_state_view()
    m = view.manifest
    est = admin.estimate()
    return {
        "url": admin.url,
        "manifest": manifest_brief(m.id, m.manifest),
        "compactions_id": None if view.compactions is None else view.compactions.id,
        "compactions": 0
        if view.compactions is None
        else len(view.compactions.compactions.recent_compactions),
        "checkpoints": [checkpoint_summary(c) for c in m.manifest.checkpoints],
        "estimate": est.to_json(),
    }


def cmd_info_url(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        info = database_info(admin)
    if args.json:
        emit(info)
        return EXIT_OK
    brief, est = info["manifest"], info["estimate"]
    print(f"database {info['url']}")
    print(
        f"  manifest {brief['id']}: writer_epoch={brief['writer_epoch']} "
        f"compactor_epoch={brief['compactor_epoch']} l0={brief['l0']} "
        f"sorted_runs={brief['sorted_runs']} segments={brief['segments']}"
    )
    print(f"  compactions file: {info['compactions_id'] or '-'} ({info['compactions']} recent)")
    print(f"  checkpoints: {len(info['checkpoints'])}")
    print(
        f"  in SSTs: ~{est['entries']} entries ({est['puts']} puts, {est['deletes']} deletes, "
        f"{est['merges']} merges), {est['bytes']} bytes stored in {est['ssts']} SSTs"
    )
    return EXIT_OK


# -- manifests ---------------------------------------------------------------------------------


def _cmd_manifest_show(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        found = admin.read_manifest(args.id)
        if found is None and admin.read_manifest() is None:
            raise no_database(args.url)
    if found is None:
        raise DataError(f"no manifest {args.id} at {args.url}", manifest_id=args.id)
    summary = manifest_summary(found.id, found.manifest, bytes_format=bytes_format(args))
    if args.json:
        emit_line(summary)
    else:
        emit(summary)
    return EXIT_OK


def _cmd_manifest_list(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        if admin.read_manifest() is None:
            raise no_database(args.url)
        versions = admin.list_manifests(args.start, args.end)
    for v in versions:
        brief = manifest_brief(v.id, v.manifest)
        if args.json:
            emit_line(brief)
        else:
            print(
                f"{brief['id']}  writer_epoch={brief['writer_epoch']}  "
                f"compactor_epoch={brief['compactor_epoch']}  l0={brief['l0']}  "
                f"sorted_runs={brief['sorted_runs']}  checkpoints={brief['checkpoints']}"
            )
    return EXIT_OK


# -- compactions --------------------------------------------------------------------------------


def _compactions_json(v: VersionedCompactions, fmt: str) -> dict[str, Any]:
    return {
        "id": v.id,
        "compactor_epoch": v.compactions.compactor_epoch,
        "compactions": [compaction_summary(c, fmt) for c in v.compactions.recent_compactions],
    }


def _require(admin: Admin, url: str) -> None:
    if admin.read_manifest() is None:
        raise no_database(url)


def _cmd_compactions_list(args: argparse.Namespace) -> int:
    fmt = bytes_format(args)
    with open_admin(args) as admin:
        _require(admin, args.url)
        versions = admin.list_compactions(args.start, args.end)
    for v in versions:
        if args.json:
            emit_line(_compactions_json(v, fmt))
        else:
            states = [compaction_summary(c)["status"] for c in v.compactions.recent_compactions]
            print(
                f"{v.id}  compactor_epoch={v.compactions.compactor_epoch}  "
                f"compactions={len(states)}  {' '.join(states)}".rstrip()
            )
    return EXIT_OK


def _cmd_compactions_show(args: argparse.Namespace) -> int:
    fmt = bytes_format(args)
    with open_admin(args) as admin:
        _require(admin, args.url)
        if args.compaction is not None:
            found = admin.read_compaction(args.compaction, args.id)
            if found is None:
                print(f"not found: compaction {args.compaction}", file=sys.stderr)
                return EXIT_NOT_FOUND
            out: dict[str, Any] = compaction_summary(found, fmt)
        else:
            version = admin.read_compactions(args.id)
            if version is None and args.id is not None:
                raise DataError(f"no .compactions version {args.id} at {args.url}")
            if version is None:
                print("not found: no .compactions file (no compactor has run)", file=sys.stderr)
                return EXIT_NOT_FOUND
            out = _compactions_json(version, fmt)
    if args.json:
        emit_line(out)
    else:
        emit(out)
    return EXIT_OK


# -- sequence numbers and time ------------------------------------------------------------------


def unix_seconds(value: str) -> int:
    """An argument type: Unix seconds, or an ISO-8601 time (UTC unless it says otherwise)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        t = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not Unix seconds nor an ISO-8601 time: {value!r}"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return int(t.timestamp())


def _cmd_seq_to_ts(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        ts = admin.get_timestamp_for_sequence(args.seq, round_up=args.round_up)
    if args.json:
        emit_line({"seq": args.seq, "timestamp": ts, "time": when(ts)})
    elif ts is not None:
        print(f"{ts}\t{when(ts)}")
    return EXIT_OK if ts is not None else EXIT_NOT_FOUND


def _cmd_ts_to_seq(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        seq = admin.get_sequence_for_timestamp(args.timestamp, round_up=args.round_up)
    if args.json:
        emit_line({"timestamp": args.timestamp, "seq": seq})
    elif seq is not None:
        print(seq)
    return EXIT_OK if seq is not None else EXIT_NOT_FOUND


# -- estimate -----------------------------------------------------------------------------------


def _cmd_estimate(args: argparse.Namespace) -> int:
    start = parse_key_arg(args.start, args, "start key")
    end = parse_key_arg(args.end, args, "end key")
    prefix = parse_key_arg(args.prefix, args, "prefix")
    if prefix:
        start = prefix if start is None else max(start, prefix)
        pend = prefix_end(prefix)
        if pend is not None:
            end = pend if end is None else min(end, pend)
    with open_admin(args) as admin:
        est = admin.estimate(start, end, checkpoint=args.checkpoint)
    if args.json:
        emit_line(est.to_json())
    else:
        for name, value in est.to_json().items():
            print(f"{name}\t{value}")
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------------


def _id_range_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--from", dest="start", type=count, metavar="N", help=f"first {what} id")
    p.add_argument("--to", dest="end", type=count, metavar="N", help=f"end {what} id (exclusive)")


def add_manifest_commands(
    man_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """``manifest show|list``."""
    p = man_sub.add_parser(
        "show",
        parents=parents,
        help="print a JSON summary of the latest (or --id) manifest",
        epilog=NOT_FOUND_EPILOG,
    )
    p.add_argument("--id", type=count, metavar="N", help="manifest version to show")
    p.set_defaults(func=_cmd_manifest_show)
    p = man_sub.add_parser(
        "list",
        parents=parents,
        help="one line per manifest version (--from/--to: a half-open id range)",
        epilog=NOT_FOUND_EPILOG,
    )
    _id_range_options(p, "manifest")
    p.set_defaults(func=_cmd_manifest_list)


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], dbo: argparse.ArgumentParser
) -> None:
    """``compactions list|show``, ``seq-to-ts``, ``ts-to-seq`` and ``estimate``; ``dbo`` is the
    database option set with ``--hex`` (``manifest`` is added by :func:`add_manifest_commands`)."""
    out = output_options()
    parents = [dbo, out]

    comp = sub.add_parser("compactions", help="inspect the compactor's .compactions files")
    comp_sub = comp.add_subparsers(dest="compactions_command", metavar="COMMAND", required=True)
    p = comp_sub.add_parser(
        "list",
        parents=parents,
        help="one line per .compactions version (--from/--to: a half-open id range)",
        epilog=NOT_FOUND_EPILOG,
    )
    _id_range_options(p, "compactions")
    p.set_defaults(func=_cmd_compactions_list)
    p = comp_sub.add_parser(
        "show",
        parents=parents,
        help="print the latest (or --id) .compactions file, or one compaction of it",
        epilog=NOT_FOUND_EPILOG,
    )
    p.add_argument("compaction", nargs="?", metavar="ULID", help="only this compaction")
    p.add_argument("--id", type=count, metavar="N", help=".compactions version to read")
    p.set_defaults(func=_cmd_compactions_show)

    p = sub.add_parser(
        "seq-to-ts",
        parents=parents,
        help="the time the sequence tracker records for a sequence number",
        epilog=NOT_FOUND_EPILOG,
    )
    p.add_argument("seq", type=count, metavar="SEQ")
    p.add_argument(
        "--round-up", action="store_true", help="no exact entry: the next higher seq's time"
    )
    p.set_defaults(func=_cmd_seq_to_ts)
    p = sub.add_parser(
        "ts-to-seq",
        parents=parents,
        help="the sequence number the tracker records at a time",
        epilog=NOT_FOUND_EPILOG,
    )
    p.add_argument(
        "timestamp",
        type=unix_seconds,
        metavar="TIME",
        help="Unix seconds or an ISO-8601 time (UTC unless it has an offset)",
    )
    p.add_argument(
        "--round-up", action="store_true", help="no exact entry: the next later time's seq"
    )
    p.set_defaults(func=_cmd_ts_to_seq)

    p = sub.add_parser(
        "estimate",
        parents=parents,
        help="estimate entries and bytes of a key range from SST index and stats blocks",
        description="Reads only SST metadata (no data block). Counts are exact per data "
        "block: a range edge inside a block counts the whole block. Every version of a key "
        "in each SST counts; rows only in the WAL do not.",
    )
    p.add_argument("--start", metavar="K", help="first key (inclusive)")
    p.add_argument("--end", metavar="K", help="end key (exclusive)")
    p.add_argument("--prefix", metavar="P", help="only keys starting with P")
    p.add_argument("--checkpoint", metavar="ID", help="estimate the state this checkpoint pins")
    p.set_defaults(func=_cmd_estimate)
