"""Pinned sequence numbers (SlateDB's ``snapshot_manager``): what open snapshots still read.

Invariant: while a snapshot is registered, no L0 flush drops a version it can see -- the flush
keeps every version above :meth:`SnapshotManager.min_pinned` and the newest one at or below it.
The lock is a leaf of the lock order.
"""

from __future__ import annotations

import itertools
import threading


class SnapshotManager:
    """The seqs open snapshots are pinned at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pinned: dict[int, int] = {}
        self._ids = itertools.count(1)

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
