"""A snapshot (SlateDB's ``db_snapshot``): reads pinned at one seq, registered with the
:class:`SnapshotManager` so no flush drops a version it can see, until it is closed."""

from __future__ import annotations

from typing import Any

from shale.batch import check_key
from shale.engine.db_iter import DbIterator
from shale.engine.db_status import DbStatus
from shale.engine.reader import KeyValue, Reader
from shale.engine.snapshot_manager import SnapshotManager
from shale.keys import prefix_range


class DbSnapshot:
    """A read-only view pinned at one seq; close it (or use ``with``) to release it."""

    def __init__(
        self, reader: Reader, snapshots: SnapshotManager, status: DbStatus, seq: int
    ) -> None:
        self._reader = reader
        self._snapshots = snapshots
        self._status = status
        self.seq = seq
        self._sid = snapshots.pin(seq)

    def get(self, key: bytes, *, include_expired: bool | None = None) -> bytes | None:
        kv = self.get_key_value(key, include_expired=include_expired)
        return None if kv is None else kv.value

    def get_key_value(self, key: bytes, *, include_expired: bool | None = None) -> KeyValue | None:
        self._status.check_open()
        return self._reader.get(check_key(key), self.seq, include_expired)

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        include_expired: bool | None = None,
    ) -> DbIterator:
        self._status.check_open()
        return DbIterator(self._reader, start, end, reverse, self.seq, include_expired)

    def scan_prefix(self, prefix: bytes, **options: Any) -> DbIterator:
        return self.scan(*prefix_range(prefix), **options)

    def close(self) -> None:
        self._snapshots.release(self._sid)

    def __enter__(self) -> DbSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
