"""A snapshot (SlateDB's ``db_snapshot``): reads pinned at one seq, registered with the
:class:`SnapshotManager` so no flush drops a version it can see, until it is closed.

:meth:`DbSnapshot.at_point` also opens one at a past seq or time (time travel,
``docs/time-travel.md``), refused below the retained floor (:mod:`shale.meta.history`).
"""

from __future__ import annotations

import datetime
from typing import Any

from shale.batch import check_key
from shale.engine.db_iter import DbIterator
from shale.engine.db_status import DbStatus
from shale.engine.reader import KeyValue, Reader
from shale.engine.snapshot_manager import SnapshotManager
from shale.errors import InvalidError
from shale.fbs.manifest import Manifest
from shale.keys import prefix_range, scan_bounds
from shale.meta.history import seq_at_time
from shale.meta.seq_tracker import SequenceTracker


class DbSnapshot:
    """A read-only view pinned at one seq; close it (or use ``with``) to release it."""

    def __init__(
        self,
        reader: Reader,
        snapshots: SnapshotManager,
        status: DbStatus,
        seq: int,
        *,
        past: bool = False,
    ) -> None:
        """``past``: ``seq`` may be older than the current seq, so it is checked against the
        retained floor (:meth:`SnapshotManager.pin_at`)."""
        self._reader = reader
        self._snapshots = snapshots
        self._status = status
        self.seq = seq
        self._sid = snapshots.pin_at(seq) if past else snapshots.pin(seq)

    @classmethod
    def at_point(
        cls,
        reader: Reader,
        snapshots: SnapshotManager,
        status: DbStatus,
        current_seq: int,
        *,
        at_seq: int | None,
        at_time: datetime.datetime | None,
        now_ms: int,
        manifest: Manifest,
    ) -> DbSnapshot:
        """A snapshot at ``current_seq``, or at the past ``at_seq`` / ``at_time`` (at most one).

        ``at_time`` (timezone-aware) becomes the newest seq the manifest's sequence tracker
        records at or before it (:func:`shale.meta.history.seq_at_time`).

        :raises InvalidError: both given; ``at_seq`` not an int; a naive ``at_time``; a point
            in the future (after ``current_seq`` or the clock's now); a point older than the
            retained history (below the manifest's ``recent_snapshot_min_seq`` or the writer's
            floor, or before the tracker's first record).
        """
        if at_seq is None and at_time is None:
            return cls(reader, snapshots, status, current_seq)
        if at_seq is not None and at_time is not None:
            raise InvalidError("give at_seq or at_time, not both")
        if at_time is not None:
            if not isinstance(at_time, datetime.datetime):
                raise InvalidError("at_time must be a datetime", value=at_time)
            if at_time.tzinfo is None or at_time.utcoffset() is None:
                raise InvalidError("at_time must be timezone-aware", value=at_time)
            at_ms = (at_time - _EPOCH) // datetime.timedelta(milliseconds=1)
            if at_ms > now_ms:
                raise InvalidError("at_time is in the future", at_ms=at_ms, now_ms=now_ms)
            found = seq_at_time(SequenceTracker.decode(manifest.sequence_tracker), at_ms)
            if found is None:
                raise InvalidError(
                    "at_time is older than the retained history (the sequence tracker records "
                    "nothing that old)",
                    at_ms=at_ms,
                )
            at_seq = min(found, current_seq)
        if isinstance(at_seq, bool) or not isinstance(at_seq, int) or at_seq < 0:
            raise InvalidError("at_seq must be an int >= 0", value=at_seq)
        if at_seq > current_seq:
            raise InvalidError("at_seq is in the future", seq=at_seq, current_seq=current_seq)
        if at_seq < manifest.recent_snapshot_min_seq:
            raise InvalidError(
                "snapshot point is older than the retained history",
                seq=at_seq,
                oldest_seq=manifest.recent_snapshot_min_seq,
            )
        return cls(reader, snapshots, status, at_seq, past=True)

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
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        include_expired: bool | None = None,
        cache_blocks: bool = True,
        read_ahead_bytes: int | None = None,
        max_fetch_tasks: int | None = None,
    ) -> DbIterator:
        """``(key, value)`` over ``start <= key < end`` as of the snapshot; the options mean
        what they mean for :meth:`shale.Db.scan`."""
        self._status.check_open()
        if not start_inclusive or end_inclusive:
            start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        return DbIterator(
            self._reader,
            start,
            end,
            reverse,
            self.seq,
            include_expired,
            cache_blocks,
            read_ahead_bytes,
            max_fetch_tasks,
        )

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


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
