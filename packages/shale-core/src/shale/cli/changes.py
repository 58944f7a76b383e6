"""``shale changes URL``: print a database's committed changes as JSON Lines.

One line per change, in seq order::

    {"seq":7,"kind":"value","key":"k","value":"v","create_ts":1700000000000,"expire_ts":null,"wal_id":3}

``kind`` is ``value`` (a put), ``tombstone`` (a delete, ``value`` null) or ``merge`` (an operand,
not applied). Keys and values are printed as ``--bytes`` says (``escaped``, ``base64``, ``hex``).
``--since SEQ`` prints the changes after SEQ (exclusive: the last seq you processed);
``--follow`` keeps waiting for new ones (stop with Ctrl-C or ``--stop-at``). With
``--consumer NAME`` the cursor is stored in the database (``shale-consumers/NAME.json``) after
each batch of printed lines is flushed to stdout -- at-least-once: a killed command prints
again, when restarted, at most the batch it had not committed -- and the WAL it still needs is
kept by shale-gc. Reads only the WAL (and, to check for a gap, the latest manifest); fences
nobody. Exit 2 with ``error: data: ...`` (naming ``resume_seq``) when the changes after the
cursor were garbage-collected.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shale.cli.options import count, database_options, parse_store_options, positive_duration
from shale.cli.output import bytes_format, emit_line, output_options, show_bytes
from shale.wal_reader import Change

__all__ = ["add_parser", "change_record"]

#: Lines printed (and, with a consumer, committed) per batch.
BATCH_ROWS = 1000


def change_record(ch: Change, fmt: str) -> dict[str, Any]:
    """One change as a JSON-safe record (keys and values in ``fmt``)."""
    return {
        "seq": ch.seq,
        "kind": ch.kind,
        "key": show_bytes(ch.key, fmt),
        "value": show_bytes(ch.value, fmt),
        "create_ts": ch.create_ts,
        "expire_ts": ch.expire_ts,
        "wal_id": ch.wal_id,
    }


def _cmd_changes(args: argparse.Namespace) -> int:
    from shale.change_stream import changes

    fmt = bytes_format(args)
    with changes(
        args.url,
        args.since,
        follow=args.follow,
        poll_interval=args.poll_interval,
        stop_at_seq=args.stop_at,
        consumer=args.consumer,
        store_options=parse_store_options(args.store_option),
    ) as stream:
        while not stream.done:
            batch = stream.read_batch(timeout=args.poll_interval, max_rows=BATCH_ROWS)
            for ch in batch:
                emit_line(change_record(ch, fmt))
            if batch:
                sys.stdout.flush()
                if args.consumer is not None:
                    stream.commit()
    return 0


def add_parser(sub: Any) -> None:
    """Add ``changes`` to the ``shale`` subparsers ``sub``."""
    p = sub.add_parser(
        "changes",
        parents=[database_options(), output_options()],
        help="print committed changes (from the WAL) as JSON Lines; --follow tails them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--since", type=count, metavar="SEQ", help="only changes with seq > SEQ")
    p.add_argument("--follow", "-f", action="store_true", help="keep waiting for new changes")
    p.add_argument("--stop-at", type=count, metavar="SEQ", help="end after the changes of SEQ")
    p.add_argument("--consumer", metavar="NAME", help="resume from and commit NAME's cursor")
    p.add_argument(
        "--poll-interval",
        type=positive_duration,
        default=1.0,
        metavar="SECONDS",
        help="with --follow: how often to look for new WAL files (default 1)",
    )
    p.set_defaults(func=_cmd_changes)
