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
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from shale import ids
from shale.engine.components import check_wal_store_arg
from shale.errors import DataError, InvalidError
from shale.objstore.protocol import ObjectNotFound
from shale.plugins import get_host
from shale.row import KIND_NAMES
from shale.sst import SsTable

if TYPE_CHECKING:
    from shale.objstore.protocol import ObjectStore

__all__ = ["Change", "WalFile", "WalFileMetadata", "WalReader"]


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
        it, at ``url``'s path. The reader does not read the manifest, so it cannot follow
        ``wal_object_store_uri``: pass the WAL store.
    :param wal_store_options: options of the store plugin that opens a ``wal_store`` URL.

    Thread-safe; opening reads nothing.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        object_store: ObjectStore | None = None,
        store_options: dict[str, Any] | None = None,
        wal_store: str | os.PathLike[str] | ObjectStore | None = None,
        wal_store_options: dict[str, Any] | None = None,
    ) -> None:
        url = ids.location(url, "url", allow_empty=object_store is not None)
        if store_options is not None and not isinstance(store_options, dict):
            raise InvalidError("store_options must be a dict", type=type(store_options).__name__)
        wal_url, wal_options = check_wal_store_arg(wal_store, wal_store_options)
        self.url = url
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
            self.store = get_host().open_object_store(url, store_options or {})
            self.root = ""
        else:
            self.store = object_store
            self.root = url.strip("/")

    def __repr__(self) -> str:
        return f"<shale.WalReader {self.url!r}>"

    def close(self) -> None:
        """Close the store this reader opened (not one passed in). Idempotent."""
        if self._owns_store:
            self._owns_store = False
            self.store.close()

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
