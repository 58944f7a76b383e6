"""``shale.WalReader``: list and read a database's WAL SSTs, raw (SlateDB's ``WalReader``).

The building block of change data capture (:mod:`shale.change_stream` is the tailing stream on top).
Every durable write is in exactly one WAL SST, ``wal/<id>.sst``, ids consecutive from 1; within a
file rows are in commit (seq) order and the rows of one write batch share one seq. Zero-length
files are fences a new writer leaves (FORMAT.md 10.3): they list like any file and have no rows.

Invariants and why:

* **Raw rows.** Merge operands are *not* applied, tombstones and expiry times are as written: a
  change consumer sees what was written, not what a read would return.
* **Reads only.** Nothing is written, nobody is fenced; works with read-only credentials next to
  a running writer. Only uploaded (durable) WALs exist to be read.
* **A file may vanish.** The garbage collector deletes WALs the writer no longer needs; a file
  listed but deleted before it is read raises :class:`~shale.errors.DataError` (its
  ``__cause__`` is the store's ``ObjectNotFound``), as SlateDB's ``Data`` error with a NotFound
  source. :func:`shale.changes` pins what a named consumer still needs (docs/changes.md).
* **The tail is probed, not listed.** :meth:`WalReader.last_wal_file_id` finds the last file
  after an id with HEAD requests (SlateDB's exponential probe, then a binary search), relying
  on ids being consecutive above it; :meth:`WalReader.iterator` reads files from an id on,
  fetched ahead within the reader's ``max_buffered_bytes`` (:mod:`shale.wal_iterator`).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from shale import ids
from shale.engine.components import check_wal_store_arg
from shale.errors import DataError, InvalidError
from shale.meta.manifest_store import ManifestStore
from shale.objstore.protocol import ObjectNotFound
from shale.plugins import get_host
from shale.row import KIND_NAMES
from shale.sst import SsTable
from shale.wal_iterator import WalIterator, truncated

if TYPE_CHECKING:
    from shale.objstore.protocol import ObjectStore

__all__ = ["Change", "WalFile", "WalFileMetadata", "WalReader"]

#: SlateDB 0.17's ``SlateDbWalReaderOptions`` defaults.
DEFAULT_MAX_BUFFERED_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_FETCH_TASKS = 128
DEFAULT_READ_AHEAD_BYTES = 4 * 1024 * 1024
#: Seconds a live :meth:`WalReader.iterator` waits between looks for a file not yet written
#: (SlateDB's fixed poll interval).
DEFAULT_POLL_INTERVAL_S = 1.0
#: :meth:`WalReader.last_wal_file_id` gives up beyond ``2**48`` ids ahead (as SlateDB).
_MAX_PROBE_EXP = 48


class Change(NamedTuple):
    """One row of a WAL SST: one committed change to one key (SlateDB's ``RowEntry``).

    :ivar seq: the write's sequence number (all rows of one batch share it).
    :ivar kind: ``"value"`` (a put), ``"tombstone"`` (a delete) or ``"merge"`` (an operand,
        not applied).
    :ivar key: the key.
    :ivar value: the value or merge operand; ``None`` for a tombstone.
    :ivar create_ts: when the write was made (the writer's clock, Unix ms), or ``None``.
    :ivar expire_ts: when it expires (Unix ms), or ``None``.
    :ivar wal_id: the WAL SST it was read from (``None``: delivered by a non-durable
        ``db.watch`` before its WAL was uploaded).
    """

    seq: int
    kind: str
    key: bytes
    value: bytes | None
    create_ts: int | None
    expire_ts: int | None
    wal_id: int | None


class WalFileMetadata(NamedTuple):
    """A WAL SST object's metadata (SlateDB's ``metadata()``): ``size`` in bytes,
    ``last_modified`` in Unix seconds, ``location`` its key in the store."""

    id: int
    size: int
    last_modified: float
    location: str


def _check_id(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ids.U64_MAX:
        raise InvalidError(f"{name} must be a WAL id (an int >= 0)", value=value)
    return value


def _check_count(name: str, value: object, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise InvalidError(f"{name} must be an int in 1..{hi}", **{name: value})
    return value


def rows_to_changes(wal_id: int | None, rows: list[Any]) -> list[Change]:
    """Row tuples of WAL SST ``wal_id`` as :class:`Change` records, in file (seq) order."""
    return [
        Change(
            r[1],
            KIND_NAMES[r[2]],
            r[0],
            None if KIND_NAMES[r[2]] == "tombstone" else r[3],
            r[5],
            r[4],
            wal_id,
        )
        for r in rows
    ]


class WalFile:
    """One WAL SST, by id. Made by :meth:`WalReader.get` / :meth:`WalReader.list`; it does not
    check that the file exists until it is read."""

    def __init__(self, reader: WalReader, wal_id: int) -> None:
        self._reader = reader
        self.id = wal_id

    def __repr__(self) -> str:
        return f"<shale.WalFile {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WalFile) and other.id == self.id and other._reader is self._reader

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def location(self) -> str:
        """The file's key in the store."""
        return ids.wal_path(self._reader.root, self.id)

    def metadata(self) -> WalFileMetadata:
        """Size, last-modified time and location.

        :raises DataError: the file does not exist (never written, or deleted by GC).
        """
        try:
            meta = self._reader.store.head(self.location)
        except ObjectNotFound as exc:
            raise DataError("WAL file not found", wal_id=self.id) from exc
        return WalFileMetadata(self.id, meta.size, meta.last_modified, self.location)

    def rows(self) -> list[Change]:
        """Every row of the file in seq order (empty for a fence object).

        :raises DataError: the file does not exist (deleted by GC since it was listed), or is
            corrupt.
        """
        try:
            data = self._reader.store.get(self.location)
        except ObjectNotFound as exc:
            raise DataError("WAL file not found (deleted since listed?)", wal_id=self.id) from exc
        if not data:
            return []
        return rows_to_changes(self.id, SsTable.from_bytes(data).rows())

    def iterator(self) -> Any:
        """An iterator over :meth:`rows` (SlateDB's ``WalFileIterator``); reads the file now."""
        return iter(self.rows())

    def next_id(self) -> int:
        """The id of the WAL file after this one."""
        return self.id + 1

    def next_file(self) -> WalFile:
        """The WAL file after this one (which may not exist yet)."""
        return WalFile(self._reader, self.id + 1)


class WalReader:
    """Read the WAL SSTs of the database at ``url`` (or at path ``url`` in ``object_store``).

    :param url: where the database is; with ``object_store``, its path inside that store.
    :param object_store: read through this store (the caller keeps owning it); pass the WAL
        store of a database that keeps its WAL in a separate store.
    :param store_options: options for the store plugin that opens ``url``.
    :param wal_store: the database's separate WAL store (a URL, a directory or a store object
        the caller keeps owning; SlateDB's ``with_wal_object_store``): WAL files are read from
        it, at ``url``'s path. The reader does not follow the manifest's
        ``wal_object_store_uri``: pass the WAL store.
    :param wal_store_options: options of the store plugin that opens a ``wal_store`` URL.
    :param max_buffered_bytes: :meth:`iterator`: stored bytes of WAL files read ahead and not
        yet returned, at most (a larger file is still read, alone); SlateDB's default 128 MiB.
    :param max_fetch_tasks: :meth:`iterator`: WAL files read at once, one thread each
        (started on demand); default 128.
    :param read_ahead_bytes: :meth:`iterator`: one ranged read of a WAL file's data fetches the
        fewest whole blocks making at least this many bytes (or the rest of the file);
        default 4 MiB.

    Thread-safe; opening reads nothing. The manifest (read by :meth:`last_wal_file_id` and a
    live :meth:`iterator`) is read from ``url``'s store, opened when first needed.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        object_store: ObjectStore | None = None,
        store_options: dict[str, Any] | None = None,
        wal_store: str | os.PathLike[str] | ObjectStore | None = None,
        wal_store_options: dict[str, Any] | None = None,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        max_fetch_tasks: int = DEFAULT_MAX_FETCH_TASKS,
        read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES,
    ) -> None:
        url = ids.location(url, "url", allow_empty=object_store is not None)
        if store_options is not None and not isinstance(store_options, dict):
            raise InvalidError("store_options must be a dict", type=type(store_options).__name__)
        wal_url, wal_options = check_wal_store_arg(wal_store, wal_store_options)
        self.max_buffered_bytes = _check_count(
            "max_buffered_bytes", max_buffered_bytes, ids.U64_MAX
        )
        self.max_fetch_tasks = _check_count("max_fetch_tasks", max_fetch_tasks, 2**32 - 1)
        self.read_ahead_bytes = _check_count("read_ahead_bytes", read_ahead_bytes, ids.U64_MAX)
        self.url = url
        self._store_options = store_options or {}
        self._iterators: weakref.WeakSet[WalIterator] = weakref.WeakSet()
        self._lock = threading.Lock()  # the two above and the manifest store below
        #: where the manifest is: ``object_store``, else opened from ``url`` when needed
        self._db_store: ObjectStore | None = object_store
        self._owns_db_store = False
        self._owns_store = object_store is None
        self.store: ObjectStore
        if wal_store is not None:
            # only the WAL is read: the WAL store stands in for the database's store
            self._owns_store = wal_url is not None
            if wal_url is not None:
                self.store = get_host().open_object_store(wal_url, wal_options)
            else:
                self.store = cast("ObjectStore", wal_store)
            self.root = "" if object_store is None else url.strip("/")
        elif object_store is None:
            self.store = self._db_store = get_host().open_object_store(url, store_options or {})
            self.root = ""
        else:
            self.store = object_store
            self.root = url.strip("/")

    def __repr__(self) -> str:
        return f"<shale.WalReader {self.url!r}>"

    def close(self) -> None:
        """Close this reader's iterators (their fetch threads stop) and the stores it opened
        (not one passed in). Idempotent."""
        with self._lock:
            iterators = list(self._iterators)
        for it in iterators:
            it.close()
        if self._owns_store:
            self._owns_store = False
            self.store.close()
        if self._owns_db_store and self._db_store is not None:
            self._owns_db_store = False
            self._db_store.close()

    def manifest_location(self) -> tuple[ObjectStore, str]:
        """The store and path of the database's manifest (``url``'s store, opened now if the
        reader was given only a WAL store)."""
        with self._lock:
            if self._db_store is None:
                self._db_store = get_host().open_object_store(self.url, self._store_options)
                self._owns_db_store = True
            return self._db_store, self.root

    def _forget(self, it: WalIterator) -> None:
        with self._lock:
            self._iterators.discard(it)

    def __enter__(self) -> WalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_metadata(
        self, start_id: int | None = None, end_id: int | None = None
    ) -> list[WalFileMetadata]:
        """The metadata of every WAL file with ``start_id <= id < end_id`` (``None``:
        unbounded), in id order -- one LIST, no reads."""
        lo = _check_id("start_id", start_id, optional=True)
        hi = _check_id("end_id", end_id, optional=True)
        prefix = ids.dir_path(self.root, "wal")
        out = []
        for meta in self.store.list(prefix):
            name = meta.key[len(prefix) :]
            n = ids.parse_numbered(name, ".sst")
            if n is None or name != ids.format_id(n) + ".sst":
                continue  # not a WAL SST (a staging file, a stray object)
            if (lo is None or n >= lo) and (hi is None or n < hi):
                out.append(WalFileMetadata(n, meta.size, meta.last_modified, meta.key))
        out.sort()
        return out

    def list(self, start_id: int | None = None, end_id: int | None = None) -> list[WalFile]:
        """Every WAL file with ``start_id <= id < end_id`` (``None``: unbounded), in id order,
        fence objects included."""
        return [WalFile(self, m.id) for m in self.list_metadata(start_id, end_id)]

    def get(self, wal_id: int) -> WalFile:
        """The WAL file ``wal_id``, without checking that it exists."""
        checked = _check_id("wal_id", wal_id)
        assert checked is not None
        return WalFile(self, checked)

    def _exists(self, wal_id: int) -> bool:
        try:
            self.store.head(ids.wal_path(self.root, wal_id))
        except ObjectNotFound:
            return False
        return True

    def last_wal_file_id(self, replay_after_wal_id: int) -> int:
        """The id of the last WAL file after ``replay_after_wal_id`` -- a snapshot of the
        tail -- or ``replay_after_wal_id`` itself when file ``replay_after_wal_id + 1`` does not
        exist (SlateDB's ``last_wal_file_id``). Fences are files: they count.

        Probes with HEAD requests at ``replay_after_wal_id + 1, + 2, + 4, ...`` up to the first
        missing one, then binary-searches between (ids are consecutive above a live cursor).
        A consumer that processed every file up to ``n`` calls ``last_wal_file_id(n)`` and
        reads ``iterator(n + 1, end_wal_file_id=tail + 1)``.

        :raises DataError: the answer is below the manifest's ``replay_after_wal_id``: the
            files after ``replay_after_wal_id`` were garbage-collected (SlateDB's
            ``WalTruncated``); there is no database (no manifest).
        """
        after = _check_id("replay_after_wal_id", replay_after_wal_id)
        assert after is not None
        lo: int | None = None  # the highest offset found
        exp = 0
        while True:
            if exp >= _MAX_PROBE_EXP:
                raise DataError("WAL ids run on too far to probe", replay_after_wal_id=after)
            offset = 1 << exp
            if after + offset > ids.U64_MAX or not self._exists(after + offset):
                hi = offset
                break
            lo, exp = offset, exp + 1
        last = after
        if lo is not None:
            left, right = lo + 1, hi
            while left < right:
                mid = left + (right - left) // 2
                if self._exists(after + mid):
                    left = mid + 1
                else:
                    right = mid
            last = after + left - 1
        found = ManifestStore(*self.manifest_location()).read_latest()
        if found is None:
            raise DataError(f"no database at {self.url!r} (no manifest found)")
        if last < found[1].replay_after_wal_id:
            raise truncated(last)
        return last

    def iterator(
        self,
        start_wal_file_id: int,
        *,
        end_wal_file_id: int | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    ) -> WalIterator:
        """The rows of WAL files ``start_wal_file_id``, ``+ 1``, ... one file per
        :class:`~shale.wal_iterator.WalRows` batch, fetched ahead in the background within
        ``max_buffered_bytes`` (SlateDB's ``iterator``; :mod:`shale.wal_iterator`).

        :param end_wal_file_id: stop before this id (exclusive); a file missing before it
            raises ``DataError``. ``None``: live, as SlateDB's: at the tail the iterator waits
            for the writer's next file (looking again every ``poll_interval`` seconds).
        :raises InvalidError: a bad argument (nothing is read before the first ``next``).
        :raises DataError: (from ``next``) a file was garbage-collected, also while being
            read (``__cause__`` is the store's ``ObjectNotFound``), or is corrupt.
        """
        start = _check_id("start_wal_file_id", start_wal_file_id)
        end = _check_id("end_wal_file_id", end_wal_file_id, optional=True)
        assert start is not None
        if end is not None and end < start:
            raise InvalidError("end_wal_file_id must be >= start_wal_file_id", end=end)
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or not 0 < poll_interval < float("inf")
        ):
            raise InvalidError("poll_interval must be a number of seconds > 0", value=poll_interval)
        it = WalIterator(self, start, end, float(poll_interval), rows_to_changes)
        with self._lock:
            self._iterators.add(it)
        return it
