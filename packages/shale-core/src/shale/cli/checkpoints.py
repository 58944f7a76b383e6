"""``shale checkpoint create|list|refresh|delete``, through :class:`shale.Admin`.

``create`` (without ``--flush``), ``refresh`` and ``delete`` each write one manifest version and
fence nobody (SlateDB's admin does the same); ``create --source ID`` pins the version an existing
checkpoint pins. ``create --flush`` opens the database as its writer instead (fencing any other)
so that what is in the WAL and memtable is in the checkpoint. ``list`` only reads.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable

from shale.cli.inspect import open_admin
from shale.cli.options import EXIT_OK, positive_duration
from shale.cli.output import emit, emit_line, output_options
from shale.cli.summaries import checkpoint_summary

__all__ = ["add_commands"]


def _lifetime(args: argparse.Namespace) -> float | None:
    from shale.settings import parse_duration

    return None if args.lifetime is None else parse_duration(args.lifetime)


def _checkpoint_id(text: str) -> uuid.UUID:
    from shale.errors import InvalidError

    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidError("not a checkpoint id (UUID)", id=text) from None


def _cmd_create(args: argparse.Namespace) -> int:
    lifetime = _lifetime(args)
    if args.flush:
        if args.source is not None:
            from shale.errors import InvalidError

            raise InvalidError("--flush and --source exclude each other")
        with args.open_writer(args) as db:
            info = db.create_checkpoint(lifetime=lifetime, name=args.name, timeout=args.timeout)
    else:
        with open_admin(args) as admin:
            source = None if args.source is None else _checkpoint_id(args.source)
            info = admin.create_checkpoint(lifetime=lifetime, name=args.name, source=source)
    if args.json:
        emit_line({"id": str(info.id), "manifest_id": info.manifest_id})
    else:
        print(f"{info.id} manifest={info.manifest_id}")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        cps = admin.list_checkpoints(args.name)
    if args.json:
        emit([checkpoint_summary(c) for c in cps])
        return EXIT_OK
    for c in cps:
        s = checkpoint_summary(c)
        print(
            f"{s['id']}  manifest={s['manifest_id']}  created={s['create_time']}  "
            f"expires={s['expire_time'] or 'never'}  name={s['name'] or '-'}"
        )
    return EXIT_OK


def _cmd_refresh(args: argparse.Namespace) -> int:
    cid = _checkpoint_id(args.id)
    with open_admin(args) as admin:
        admin.refresh_checkpoint(cid, lifetime=_lifetime(args))
        (cp,) = [c for c in admin.list_checkpoints() if c.id == cid]
    if args.json:
        emit_line(checkpoint_summary(cp))
    else:
        print(f"refreshed {cp.id} expires={checkpoint_summary(cp)['expire_time'] or 'never'}")
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        cid = _checkpoint_id(args.id)
        admin.delete_checkpoint(cid)
    print(f"deleted {cid}")
    return EXIT_OK


def _lifetime_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--lifetime",
        metavar="SECONDS",
        help=f"expire after this long: seconds or a duration such as 1h (default: {default})",
    )


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    dbo: argparse.ArgumentParser,
    *,
    open_writer: Callable[[argparse.Namespace], object],
    flush_timeout: float,
) -> None:
    """Add ``checkpoint create|list|refresh|delete``; ``open_writer(args)`` opens the database
    as its writer (a context manager), for ``create --flush``."""
    out = output_options()
    cp = sub.add_parser("checkpoint", help="create, list, refresh and delete checkpoints")
    cp_sub = cp.add_subparsers(dest="checkpoint_command", metavar="COMMAND", required=True)
    p = cp_sub.add_parser(
        "create", parents=[dbo, out], help="pin the current manifest so GC keeps its files"
    )
    p.add_argument("--name", metavar="N", help="a name for the checkpoint")
    _lifetime_option(p, "never")
    p.add_argument(
        "--source",
        metavar="ID",
        help="pin the manifest version this existing checkpoint pins (SlateDB's source)",
    )
    p.add_argument(
        "--flush",
        action="store_true",
        help="open the database as the writer (fencing any other) and flush the WAL "
        "and memtable into the checkpoint first",
    )
    p.add_argument(
        "--timeout",
        type=positive_duration,
        default=flush_timeout,
        metavar="SECONDS",
        help=f"with --flush: give up after this long (default {flush_timeout:.0f})",
    )
    p.set_defaults(func=_cmd_create, open_writer=open_writer)
    p = cp_sub.add_parser("list", parents=[dbo, out], help="list the checkpoints (read-only)")
    p.add_argument("--name", metavar="N", help="only checkpoints with this name")
    p.set_defaults(func=_cmd_list)
    p = cp_sub.add_parser(
        "refresh", parents=[dbo, out], help="set a checkpoint's expiry to now + --lifetime"
    )
    p.add_argument("id", metavar="ID", help="the checkpoint's UUID")
    _lifetime_option(p, "never expires")
    p.set_defaults(func=_cmd_refresh)
    p = cp_sub.add_parser("delete", parents=[dbo], help="delete a checkpoint")
    p.add_argument("id", metavar="ID", help="the checkpoint's UUID")
    p.set_defaults(func=_cmd_delete)
