"""``shale clone``, ``shale detach`` and ``shale delete-db``, through :class:`shale.Admin`.

* ``shale clone TARGET --source URL [--checkpoint ID] [--start K] [--end K] [--hex]`` makes a
  clone of the database at ``URL`` (``Admin.clone``); rerun after a crash, it finishes it.
  ``TARGET`` and ``URL`` must lie in one store (one bucket or file system). ``--source`` given
  several times makes a clone of their union (``Admin.clone(target, sources=...)``): ``--start``
  and ``--end`` then narrow every source, ``--checkpoint`` is refused (per-source checkpoints
  and projections: use the Python API).
* ``shale detach URL [--no-copy]``: copy the source SSTs the clone still reads into its own
  path and release the sources (``Admin.detach``); pending sources are printed.
* ``shale delete-db URL --yes [--force] [--idle SECONDS]`` deletes every object of the
  database (``Admin.delete_db``); without ``--yes`` nothing happens.
"""

from __future__ import annotations

import argparse

from shale.cli.inspect import open_admin, parse_key_arg
from shale.cli.options import EXIT_OK, duration, parse_store_options, settings_from_args
from shale.cli.output import emit_line, output_options

__all__ = ["add_commands"]


def _cmd_clone(args: argparse.Namespace) -> int:
    from shale.admin import Admin
    from shale.errors import InvalidError

    start = parse_key_arg(args.start, args, "--start")
    end = parse_key_arg(args.end, args, "--end")
    projection = None if start is None and end is None else (start, end)
    if not args.source:
        raise InvalidError("--source URL is required: the database to clone")
    admin = Admin(
        args.source[0],
        settings=settings_from_args(args),
        store_options=parse_store_options(args.store_option),
    )
    if len(args.source) > 1:
        if args.checkpoint is not None:
            raise InvalidError("--checkpoint names one source's checkpoint: give one --source")
        with admin:
            u = admin.clone(args.target, sources=args.source, projection=projection)
        if args.json:
            emit_line(
                {
                    "path": u.path,
                    "sources": u.sources,
                    "source_checkpoint_ids": {
                        p: str(c) for p, c in u.source_checkpoint_ids.items()
                    },
                    "final_checkpoint_ids": {p: str(c) for p, c in u.final_checkpoint_ids.items()},
                    "manifest_id": u.manifest_id,
                    "created": u.created,
                }
            )
        else:
            verb = "cloned the union of" if u.created else "already a clone of"
            print(f"{args.target}: {verb} {', '.join(args.source)}")
        return EXIT_OK
    with admin:
        r = admin.clone(args.target, checkpoint=args.checkpoint, projection=projection)
    if args.json:
        emit_line(
            {
                "path": r.path,
                "source": r.source,
                "source_checkpoint_id": str(r.source_checkpoint_id),
                "final_checkpoint_id": str(r.final_checkpoint_id),
                "manifest_id": r.manifest_id,
                "created": r.created,
            }
        )
    else:
        verb = "cloned" if r.created else "already a clone of"
        print(f"{args.target}: {verb} {args.source[0]} (final checkpoint {r.final_checkpoint_id})")
    return EXIT_OK


def _cmd_detach(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        r = admin.detach(copy=not args.no_copy)
    if args.json:
        emit_line(r._asdict())
    else:
        print(
            f"copied {len(r.copied)} SST(s); detached from {', '.join(r.detached) or 'nothing'};"
            f" pending {', '.join(r.pending) or 'nothing'}"
        )
    return EXIT_OK


def _cmd_delete_db(args: argparse.Namespace) -> int:
    from shale.errors import InvalidError

    if not args.yes:
        raise InvalidError("delete-db deletes the whole database: pass --yes")
    with open_admin(args) as admin:
        deleted = admin.delete_db(confirm=True, force=args.force, idle=args.idle)
    if args.json:
        emit_line({"deleted": deleted})
    else:
        print(f"deleted {len(deleted)} object(s)")
    return EXIT_OK


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], dbo: argparse.ArgumentParser
) -> None:
    """Add ``clone``, ``detach`` and ``delete-db``; ``dbo`` is the shared database options
    parser (``URL``, ``--settings``, ``--store-option``)."""
    from shale.cli.options import database_options
    from shale.meta.delete import DEFAULT_IDLE_S

    out = output_options()
    p = sub.add_parser(
        "clone",
        parents=[database_options(url=False), out],
        help="make a clone of a database: its SSTs referenced, not copied",
    )
    p.add_argument("target", metavar="TARGET", help="where the clone goes (same store)")
    p.add_argument(
        "--source",
        metavar="URL",
        action="append",
        help="the database to clone (required); repeat it to clone the union of several",
    )
    p.add_argument("--checkpoint", metavar="ID", help="clone what this checkpoint pins")
    p.add_argument("--start", metavar="K", help="project on keys >= K")
    p.add_argument("--end", metavar="K", help="project on keys < K")
    p.add_argument("--hex", action="store_true", help="--start and --end are hex")
    p.set_defaults(func=_cmd_clone)
    p = sub.add_parser("detach", parents=[dbo, out], help="make a clone independent of its sources")
    p.add_argument(
        "--no-copy", action="store_true", help="copy nothing; release unread sources only"
    )
    p.set_defaults(func=_cmd_detach)
    p = sub.add_parser("delete-db", parents=[dbo, out], help="delete every object of a database")
    p.add_argument("--yes", action="store_true", help="really delete (required)")
    p.add_argument("--force", action="store_true", help="even if live or pinned by checkpoints")
    p.add_argument(
        "--idle",
        type=duration,
        default=DEFAULT_IDLE_S,
        metavar="SECONDS",
        help=f"no writes for this long means no live writer (default {DEFAULT_IDLE_S:.0f})",
    )
    p.set_defaults(func=_cmd_delete_db)
