"""Pinned sequence numbers (SlateDB's ``snapshot_manager``): what open snapshots still read.

Invariant: while a snapshot is registered, no L0 flush drops a version it can see -- the flush
keeps every version above its boundary (:meth:`SnapshotManager.advance_floor`) and the newest
one at or below it, and records the boundary in the manifest for the compactor.

The *floor* (time travel, :mod:`shale.meta.history`) is the highest boundary any flush has
used; it only rises. A snapshot at a past seq is pinned only if that seq is not below the floor
(:meth:`SnapshotManager.pin_at`), checked and pinned under the same lock a flush takes to
advance the floor, so no flush can choose a boundary above a seq being pinned.
The lock is a leaf of the lock order.
"""

from __future__ import annotations

import itertools
import threading

from shale.errors import InvalidError


class SnapshotManager:
    """The seqs open snapshots are pinned at."""

    def __init__(self, floor: int = 0) -> None:
        """``floor``: the boundary recorded in the manifest (``recent_snapshot_min_seq``)."""
        self._lock = threading.Lock()
        self._pinned: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._floor = floor

    @property
    def floor(self) -> int:
        """The oldest seq a new snapshot may be pinned at."""
        with self._lock:
            return self._floor

    def pin_at(self, seq: int) -> int:
        """Register a snapshot at a past ``seq``; its id.

        :raises InvalidError: ``seq`` is below the floor (older versions may be gone).
        """
        with self._lock:
            if seq < self._floor:
                raise InvalidError(
                    "snapshot point is older than the retained history",
                    seq=seq,
                    oldest_seq=self._floor,
                )
            sid = next(self._ids)
            self._pinned[sid] = seq
            return sid

    def advance_floor(self, candidate: int) -> int:
        """The boundary of a flush that would keep history down to ``candidate``: never below
        the floor so far (what was dropped stays dropped), never above an open snapshot's seq.
        It becomes the new floor."""
        with self._lock:
            pinned = min(self._pinned.values(), default=candidate)
            boundary = min(pinned, max(self._floor, candidate))
            self._floor = max(self._floor, boundary)
            return boundary

    def pin(self, seq: int) -> int:
        """Register a snapshot at ``seq``; its id (for :meth:`release`)."""
        with self._lock:
            sid = next(self._ids)
            self._pinned[sid] = seq
            return sid

    def release(self, sid: int) -> None:
        """The snapshot ``sid`` closed (releasing twice is harmless)."""
        with self._lock:
            self._pinned.pop(sid, None)

    def min_pinned(self, default: int) -> int:
        """The lowest pinned seq, or ``default`` when no snapshot is open."""
        with self._lock:
            return min(self._pinned.values(), default=default)
