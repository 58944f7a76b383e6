"""``shale dump`` and ``shale load``: logical backup and restore through the dump format
(:mod:`shale.cli.dumpfile`, ``docs/backup.md``).

* :func:`dump_db` writes every live key of a read view in ascending order, with its resolved
  value (merge operands folded) and its ``expire_ts``. ``shale dump`` reads through
  :func:`open_source`, the read-only open: it writes nothing to the source bucket and fences no
  writer, and the view is fixed at the open, so a dump is a consistent point-in-time copy.
* :func:`load_db` writes a dump into a database in :class:`~shale.WriteBatch` es, each durable
  before the next is made. A row keeps its absolute expiry (``Ttl.at``); a row without one is
  written with ``Ttl.no_expiry()`` (the target's ``default_ttl`` does not apply); a row already
  expired is skipped unless ``keep_expired``.

The resume rule (``--resume``) and why it holds: a load writes the dump's rows in ascending
key order in batches, each durable before the next starts, into a target that held no key in
the dump's range (a plain load refuses otherwise, unless forced). So after an interruption the
target's keys in that range are exactly the dump's rows up to some key ``M`` (the last key of
the last durable batch), less rows whose TTL has run out since. ``M`` is the largest key the
target holds in the range; resume checks the target against the dump up to ``M`` -- every
target key is a dump key with the dump's value, every dump key up to ``M`` is there unless it
has expired -- and then loads the rows after ``M``. Anything else means the target is not a
partial load of this dump: resume refuses, or with ``force`` rewrites the rows that differ or
are missing and leaves keys the dump does not have.

Bad input stops the load at the bad line: the batch being built is dropped, so what is in the
target is the batches that were durable before it (:class:`LoadError` says how far that is).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, TYPE_CHECKING, Any

from shale.batch import Ttl, WriteBatch
from shale.cli.dumpfile import (
    DumpFormatError,
    DumpReader,
    DumpWriter,
    Header,
    Row,
    encode_bytes,
)
from shale.cli.options import (
    EXIT_OK,
    database_options,
    open_store,
    parse_store_options,
    require_database,
    settings_from_args,
)
from shale.errors import DataError, InvalidError

if TYPE_CHECKING:
    from shale.db import Db
    from shale.reader import DbReader
    from shale.settings import Settings

__all__ = [
    "EXIT_BAD_DUMP",
    "LoadError",
    "LoadStats",
    "Progress",
    "add_parsers",
    "dump_db",
    "load_db",
    "open_source",
]

#: Exit code of ``shale load`` when the dump is bad (truncated, bad JSON, wrong version, ...).
EXIT_BAD_DUMP = 3

DEFAULT_BATCH_ROWS = 1000
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024


def open_source(
    url: str,
    settings: Settings,
    *,
    checkpoint: str | None = None,
    store_options: dict[str, Any] | None = None,
) -> DbReader:
    """Open ``url`` for a dump: read-only, writes nothing, fences nobody.

    A :class:`~shale.DbReader` on the given checkpoint, else following the latest manifest
    (not a managed checkpoint: that would write one). The dump reads one snapshot of it.
    """
    from shale.reader import DbReader

    return DbReader.open(
        url,
        settings,
        checkpoint=checkpoint,
        mode=None if checkpoint else "follow_latest",
        store_options=store_options,
    )


# -- progress ------------------------------------------------------------------------------------


class Progress:
    """A one-line progress display (rows, MiB, rows/s, percent of ``total`` bytes) redrawn on
    ``stream`` at most every ``interval`` seconds; silent unless ``stream`` is a terminal."""

    def __init__(
        self,
        stream: IO[str],
        *,
        total: int | None = None,
        enabled: bool | None = None,
        interval: float = 0.2,
    ) -> None:
        self._stream = stream
        self._total = total
        self._on = stream.isatty() if enabled is None else enabled
        self._interval = interval
        self._t0 = self._last = time.monotonic()
        self._drawn = False

    def update(self, rows: int, nbytes: int, *, final: bool = False) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if not final and now - self._last < self._interval:
            return
        self._last = now
        rate = rows / max(now - self._t0, 1e-9)
        pct = f"  {100 * nbytes / self._total:5.1f}%" if self._total else ""
        line = f"\r{rows:>12,} rows  {nbytes / 2**20:9.1f} MiB  {rate:>10,.0f} rows/s{pct}"
        self._stream.write(line + ("\n" if final else ""))
        self._stream.flush()
        self._drawn = not final

    def close(self) -> None:
        """End the line if one is drawn (after an error, say)."""
        if self._on and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


# -- dump ----------------------------------------------------------------------------------------


def dump_db(
    reader: Any,
    out: IO[bytes],
    *,
    source: str,
    start: bytes | None = None,
    end: bytes | None = None,
    encoding: str = "base64",
    last_seq: int | None = None,
    checkpoint: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Write every live key of ``reader`` in ``[start, end)`` to ``out`` as a dump; return the
    row count. ``reader`` has ``scan`` and ``get_key_value`` over one fixed view (a read-only
    open or a snapshot): the scan finds the keys, ``get_key_value`` gives each its
    ``expire_ts`` in the same view (a key that expired in between is left out)."""
    header = Header(
        source,
        encoding,
        created_ms=int(time.time() * 1000),
        last_seq=last_seq,
        checkpoint=checkpoint,
        start=start,
        end=end,
    )
    w = DumpWriter(out, header)
    for key, _value in reader.scan(start, end):
        kv = reader.get_key_value(key)
        if kv is None:  # its TTL ran out between the scan and the lookup
            continue
        w.row(key, kv.value, kv.expire_ts)
        if progress is not None:
            progress.update(w.rows, w.bytes)
    w.finish()
    if progress is not None:
        progress.update(w.rows, w.bytes, final=True)
    return w.rows


# -- load ----------------------------------------------------------------------------------------


@dataclass
class LoadStats:
    """What a load did. ``written``: rows put; ``skipped_expired``: rows past their TTL;
    ``skipped_resume``: rows a resume found in the target already; ``repaired``: rows a forced
    resume rewrote; ``unexplained``: target keys in range the dump does not have;
    ``last_durable_key``: the last key of the last durable batch (``None``: none yet)."""

    rows: int = 0
    written: int = 0
    batches: int = 0
    skipped_expired: int = 0
    skipped_resume: int = 0
    repaired: int = 0
    unexplained: int = 0
    last_durable_key: bytes | None = None

    def to_json(self, encoding: str = "escaped") -> dict[str, Any]:
        """A JSON-safe dict; ``last_durable_key`` in ``encoding`` (the dump's)."""
        out = asdict(self)
        k = self.last_durable_key
        out["last_durable_key"] = None if k is None else encode_bytes(k, encoding)
        return out


class LoadError(DataError):
    """A load stopped at a bad dump line; ``stats`` says what is durable in the target."""

    def __init__(self, cause: DumpFormatError, stats: LoadStats) -> None:
        key = stats.last_durable_key
        where = (
            "nothing was written"
            if key is None
            else f"{stats.written} rows are durable, up to key "
            f"{key.decode('utf-8', 'backslashreplace')!r}; fix the input and rerun with --resume"
        )
        super().__init__(f"{cause.message} ({where})")
        self.line = cause.line
        self.stats = stats


class _Batcher:
    def __init__(self, db: Db, stats: LoadStats, max_rows: int, max_bytes: int) -> None:
        self._db, self._stats = db, stats
        self._max_rows, self._max_bytes = max_rows, max_bytes
        self._batch = WriteBatch()
        self._rows = 0
        self._bytes = 0
        self._last: bytes | None = None

    def add(self, row: Row) -> None:
        ttl = Ttl.no_expiry() if row.expire_ts is None else Ttl.at(row.expire_ts)
        self._batch.put(row.key, row.value, ttl=ttl)
        self._rows += 1
        self._bytes += len(row.key) + len(row.value)
        self._last = row.key
        if self._rows >= self._max_rows or self._bytes >= self._max_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        self._db.write(self._batch)  # durable: returns once its WAL SST is stored
        self._stats.written += self._rows
        self._stats.batches += 1
        self._stats.last_durable_key = self._last
        self._batch, self._rows, self._bytes = WriteBatch(), 0, 0


def load_db(
    db: Db,
    dump: DumpReader,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    resume: bool = False,
    force: bool = False,
    keep_expired: bool = False,
    progress: Progress | None = None,
) -> LoadStats:
    """Write the rows of ``dump`` into ``db`` (see the module docstring for the rules).

    :raises LoadError: a bad dump line; the batch in progress was not written.
    :raises DataError: the target already holds keys in the dump's range (a load without
        ``resume``), or does not match the dump up to its largest key (``resume``); ``force``
        loads anyway.
    """
    if batch_rows < 1 or batch_bytes < 1:
        raise InvalidError("batch sizes must be >= 1", rows=batch_rows, bytes=batch_bytes)
    h = dump.header
    stats = LoadStats()
    out = _Batcher(db, stats, batch_rows, batch_bytes)
    last_in_target = next(iter(db.scan(h.start, h.end, reverse=True)), (None, None))[0]
    if last_in_target is not None and not resume and not force:
        raise DataError(
            "the target already holds keys in the dump's range: pass --resume to continue an "
            "interrupted load of this dump, or --force to load into it anyway",
            first_key=next(iter(db.scan(h.start, h.end)))[0],
        )
    rows: Iterator[Row] = iter(dump)
    try:
        if resume and last_in_target is not None:
            rows = _check_resume(db, dump, rows, last_in_target, stats, out, force)
        for row in rows:
            stats.rows += 1
            if not keep_expired and row.expire_ts is not None and row.expire_ts <= _now_ms():
                stats.skipped_expired += 1
            else:
                out.add(row)
            if progress is not None:
                progress.update(stats.rows, dump.offset)
        out.flush()
        if progress is not None:
            progress.update(stats.rows, dump.offset, final=True)
    except DumpFormatError as exc:
        raise LoadError(exc, stats) from None
    finally:
        if progress is not None:
            progress.close()  # ends a line an error interrupted
    return stats


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_resume(
    db: Db,
    dump: DumpReader,
    rows: Iterator[Row],
    last: bytes,
    stats: LoadStats,
    out: _Batcher,
    force: bool,
) -> Iterator[Row]:
    """Walk the dump and the target together up to ``last`` (the target's largest key in the
    range); return the dump's remaining rows. Differences raise unless ``force``, which
    rewrites the differing and missing rows."""
    now = _now_ms()
    target = iter(db.scan(dump.header.start, last + b"\x00"))
    have = next(target, None)
    missing = different = 0
    first_bad: bytes | None = None
    pending: Row | None = None
    for row in rows:
        if row.key > last:
            pending = row
            break
        stats.rows += 1
        while have is not None and have[0] < row.key:
            stats.unexplained += 1
            first_bad = first_bad or have[0]
            have = next(target, None)
        if have is not None and have[0] == row.key:
            state = "same" if have[1] == row.value else "different"
            have = next(target, None)
        elif row.expire_ts is not None and row.expire_ts <= now:
            state = "expired"
        else:
            state = "missing"
        if state == "same":
            stats.skipped_resume += 1
            continue
        if state == "expired":
            stats.skipped_expired += 1
            continue
        if state == "missing":
            missing += 1
        else:
            different += 1
        first_bad = first_bad or row.key
        if force:
            out.add(row)
            stats.repaired += 1
    while have is not None:
        stats.unexplained += 1
        first_bad = first_bad or have[0]
        have = next(target, None)
    if (stats.unexplained or missing or different) and not force:
        raise DataError(
            "--resume: the target does not match the dump up to its largest key, so it is not "
            "an interrupted load of this dump (--force rewrites the rows that differ and keeps "
            "the others)",
            unexplained_keys=stats.unexplained,
            missing_or_different=missing + different,
            first_key=first_bad,
        )

    def rest() -> Iterator[Row]:
        if pending is not None:
            yield pending
        yield from rows

    return rest()


# -- the commands --------------------------------------------------------------------------------

_EXIT_CODES = (
    "exit codes: 0 done; 2 error (no database, a refused target, a store failure, bad "
    f"options); {EXIT_BAD_DUMP} bad dump input (the message names the line); 130 interrupted"
)


def _key_arg(text: str | None, args: argparse.Namespace, what: str) -> bytes | None:
    if text is None:
        return None
    if args.hex:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise InvalidError(f"{what} is not valid hex", value=text) from None
    return text.encode("utf-8", "surrogateescape")


def _cmd_dump(args: argparse.Namespace) -> int:
    from shale.cli import scan_bounds
    from shale.keys import check_scan_range

    start = _key_arg(args.start, args, "start key")
    end = _key_arg(args.end, args, "end key")
    prefix = _key_arg(args.prefix, args, "prefix")
    start, end = check_scan_range(start, end)
    bounds = scan_bounds(start, end, prefix) or (start, start)  # empty range: a header only
    reader = open_source(
        args.url,
        settings_from_args(args),
        checkpoint=args.checkpoint,
        store_options=parse_store_options(args.store_option),
    )
    with contextlib.ExitStack() as stack:
        stack.callback(reader.close)
        if args.output is None:
            out: IO[bytes] = sys.stdout.buffer
        else:
            out = stack.enter_context(open(args.output, "wb"))
        quiet = args.no_progress or (args.output is None and sys.stdout.isatty())
        progress = Progress(sys.stderr, enabled=False if quiet else None)
        view = stack.enter_context(reader.snapshot())  # one point in time, across polls
        n = dump_db(
            view,
            out,
            source=args.url,
            start=bounds[0],
            end=bounds[1],
            encoding="escaped" if args.escape else "base64",
            last_seq=view.seq,
            checkpoint=None if reader.checkpoint is None else str(reader.checkpoint.id),
            progress=progress,
        )
    if args.output is not None:
        print(json.dumps({"rows": n, "output": args.output}))
    return EXIT_OK


def _cmd_load(args: argparse.Namespace) -> int:
    from shale.db import Db

    with contextlib.ExitStack() as stack:
        if args.input is None:
            if sys.stdin.isatty():
                raise InvalidError("no input: pass --input FILE or redirect a dump to stdin")
            src: IO[bytes] = sys.stdin.buffer
        else:
            src = stack.enter_context(open(args.input, "rb"))
        try:
            dump = DumpReader(src)  # a bad header fails before the target is opened
        except DumpFormatError as exc:
            print(f"error: data: {exc.message} (nothing was written)", file=sys.stderr)
            return EXIT_BAD_DUMP
        if args.resume:  # resuming needs the database the first run created
            store = open_store(args)
            try:
                require_database(store, args.url)
            finally:
                store.close()
        db = Db.open(
            args.url, settings_from_args(args), store_options=parse_store_options(args.store_option)
        )
        stack.callback(db.close)
        total = _size(src)
        progress = Progress(sys.stderr, total=total, enabled=False if args.no_progress else None)
        try:
            stats = load_db(
                db,
                dump,
                batch_rows=args.batch_rows,
                batch_bytes=args.batch_bytes,
                resume=args.resume,
                force=args.force,
                keep_expired=args.keep_expired,
                progress=progress,
            )
        except LoadError as exc:
            print(f"error: data: {exc.message}", file=sys.stderr)
            return EXIT_BAD_DUMP
    print(json.dumps(stats.to_json(dump.header.encoding)))
    return EXIT_OK


def _size(src: IO[bytes]) -> int | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        st = os.fstat(src.fileno())
        if stat.S_ISREG(st.st_mode):
            return st.st_size
    return None


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def add_parsers(sub: Any) -> None:
    """Add ``dump`` and ``load`` to the ``shale`` subparsers ``sub``."""
    common = database_options()
    g = common.add_argument_group("dump options")
    g.add_argument("--merge-operator", metavar="NAME", help="merge operator (e.g. concat)")
    g.add_argument(
        "--prefix-extractor", metavar="NAME", help="segment extractor of a segmented database"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress line on a terminal")

    p = sub.add_parser(
        "dump",
        parents=[common],
        help="write every live key as JSON Lines (a logical backup); read-only, fences nobody",
        description="Writes a shale dump (docs/backup.md): a header line, one line per live "
        "key in key order with its value (merge operands folded) and expire_ts, and an end "
        "line. Opens the database read-only: writes nothing to its bucket and fences no "
        "writer; the dump is the state as of the open.",
        epilog=_EXIT_CODES,
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    p.add_argument("--start", metavar="K", help="first key (inclusive)")
    p.add_argument("--end", metavar="K", help="end key (exclusive)")
    p.add_argument("--prefix", metavar="P", help="only keys starting with P")
    p.add_argument("--hex", action="store_true", help="--start/--end/--prefix are hex")
    p.add_argument(
        "--escape",
        action="store_true",
        help="keys and values as escaped text (UTF-8, other bytes \\xNN) instead of base64",
    )
    p.add_argument("--checkpoint", metavar="ID", help="dump the state this checkpoint pins")
    p.set_defaults(func=_cmd_dump)

    p = sub.add_parser(
        "load",
        parents=[common],
        help="write a dump into a database (creating it); opens as the writer",
        description="Reads a shale dump and writes its rows in write batches, each durable "
        "before the next; rows keep their expiry, rows already expired are skipped. Refuses "
        "a target that already holds keys in the dump's range unless --resume or --force. "
        "Prints a JSON summary line. Opens the target as its writer (fencing any other).",
        epilog=_EXIT_CODES,
    )
    p.add_argument("--input", "-i", metavar="FILE", help="read here (default: stdin)")
    p.add_argument(
        "--batch-rows",
        type=_positive,
        default=DEFAULT_BATCH_ROWS,
        metavar="N",
        help=f"rows per durable batch (default {DEFAULT_BATCH_ROWS})",
    )
    p.add_argument(
        "--batch-bytes",
        type=_positive,
        default=DEFAULT_BATCH_BYTES,
        metavar="B",
        help=f"key+value bytes per durable batch (default {DEFAULT_BATCH_BYTES})",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted load of this dump: check the target up to its largest "
        "key in the dump's range, then load the rows after it",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="load although the target holds keys the dump does not explain",
    )
    p.add_argument(
        "--keep-expired", action="store_true", help="also write rows whose expire_ts has passed"
    )
    p.set_defaults(func=_cmd_load)
