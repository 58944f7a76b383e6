"""What the engine reads from (SlateDB's ``db_state``): the active memtable, the frozen
memtables waiting for L0, and the current manifest -- and immutable views of them.

Invariants:

- ``lock`` is *the write lock*: a write's commit (seq, memtable insert, WAL append) holds it, so
  freezing the memtable under it sees whole batches only.
- ``imms`` is oldest first; ``imm_bytes`` is the sum of their sizes. A frozen memtable leaves
  the queue only once its L0 SSTs are in the manifest (the flusher pops it).
- ``memtable``, ``imms``' members and ``manifest`` are replaced, never mutated in a way a
  reader can see, so a :class:`DbView` taken under the lock stays consistent without it.
- ``cond`` (on ``lock``) is notified when the queue shrinks, a freeze request is served, a
  manifest is installed, and on every failure or close: flush and backpressure waits use it.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable

from shale.engine.memtable import Memtable
from shale.fbs.manifest import Manifest


@dataclasses.dataclass
class DbView:
    """What a read sees: memtables newest first, then the manifest's SSTs, up to ``max_seq``."""

    memtables: list[Memtable]
    manifest: Manifest
    max_seq: int


class DbState:
    """Memtables and the manifest of one database (or of one read-only view)."""

    def __init__(self, manifest: Manifest, manifest_id: int) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.memtable = Memtable()
        self.imms: collections.deque[Memtable] = collections.deque()  # oldest first
        self.imm_bytes = 0
        #: how many of the oldest frozen memtables are in L0 already (installed with the
        #: manifest that holds their SST, not popped yet): reads no longer see them
        self._retired = 0
        self.manifest = manifest
        self.manifest_id = manifest_id
        #: called (under ``lock``) after a freeze: wake the memtable flusher
        self.on_freeze: Callable[[], None] = _nothing
        self._publish()

    def _publish(self) -> None:
        """Record the memtables (newest first) and the manifest a read sees now, as one
        immutable pair: every change below calls it under ``lock``, and :meth:`view` reads the
        pair without the lock (one attribute read is atomic)."""
        #: (memtables newest first, manifest): what a read sees now, one immutable pair
        # frozen memtables already in the manifest's L0 are left out: a read must never see a
        # row twice (a merge operand would count twice)
        imms = list(self.imms)[self._retired :] if self._retired else self.imms
        self.parts = ([self.memtable, *reversed(imms)], self.manifest)

    def view(self, max_seq: int) -> DbView:
        memtables, manifest = self.parts
        return DbView(memtables, manifest, max_seq)

    def oldest_imm(self) -> Memtable | None:
        with self.lock:
            return self.imms[0] if self.imms else None

    def push_imm(self, mt: Memtable) -> None:
        """Queue a frozen memtable (replay does, at open)."""
        with self.lock:
            self.imms.append(mt)
            self.imm_bytes += mt.size
            self._publish()

    def freeze(self, wal_id: int | None) -> bool:
        """Freeze the active memtable (if it holds rows) into the queue; True if it did.

        :param wal_id: the last WAL id holding its rows (``None`` with the WAL off).
        """
        with self.lock:
            mt = self.memtable
            if mt.is_empty():
                return False
            self.imms.append(mt.freeze(wal_id))
            self.imm_bytes += mt.size
            self.memtable = Memtable()
            self._publish()
            self.on_freeze()
            return True

    def pop_imm(self, imm: Memtable) -> None:
        """``imm`` is in L0 now: drop it from the queue."""
        with self.lock:
            if self.imms and self.imms[0] is imm:
                self.imms.popleft()
                self.imm_bytes -= imm.size
                self._retired = max(0, self._retired - 1)
                self._publish()
            self.cond.notify_all()

    def install(
        self, manifest: Manifest, manifest_id: int, flushed: Memtable | None = None
    ) -> None:
        """Read from ``manifest`` from now on.

        :param flushed: a frozen memtable whose L0 SST ``manifest`` holds: reads stop seeing it
            in the same step as they start seeing the SST (:meth:`pop_imm` drops it later).
        """
        with self.lock:
            self.manifest = manifest
            self.manifest_id = manifest_id
            if flushed is not None:
                for i, imm in enumerate(self.imms):
                    if imm is flushed:
                        self._retired = max(self._retired, i + 1)
                        break
            self._publish()
            self.cond.notify_all()

    def replace(self, manifest: Manifest, manifest_id: int, memtable: Memtable) -> None:
        """Read ``manifest`` and ``memtable`` only (a read-only view's reload)."""
        with self.lock:
            self.manifest = manifest
            self.manifest_id = manifest_id
            self.memtable = memtable
            self.imms = collections.deque()
            self.imm_bytes = 0
            self._retired = 0
            self._publish()
            self.cond.notify_all()

    def frozen_copy(self) -> DbState:
        """A state with this one's current memtables and manifest that later changes here do
        not touch (a read-only snapshot's)."""
        with self.lock:
            other = DbState(self.manifest, self.manifest_id)
            other.memtable = self.memtable
            other.imms = collections.deque(self.imms)
            other.imm_bytes = self.imm_bytes
            other._retired = self._retired
            other._publish()
            return other

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()


def _nothing() -> None:
    pass
