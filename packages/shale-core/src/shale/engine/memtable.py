"""The memtable: recent writes, sorted by key, every version kept.

Writers insert under the database's write lock; readers never take it. That works because the
structures only grow, and a reader fixes its visibility bound (a seq) *before* it looks:

- ``_versions`` maps each key to its rows, oldest first (``list.append`` is atomic under the
  GIL); a reader copies the list and keeps rows with ``seq <= max_seq``.
- ``_sorted`` is an immutable sorted list of keys, replaced (never mutated) when it is rebuilt;
  ``_new`` holds keys inserted since, unsorted. A range read sorts only the keys of ``_new``
  and merges them with a slice of ``_sorted``; ``_new`` is folded into ``_sorted`` once it is
  large, so each key is sorted O(1) times amortised.

A key written with a seq at or below a reader's bound was inserted before that bound was
committed, hence before the reader snapshotted ``_new``: a reader sees every row it should.

A memtable is *frozen* (made immutable) when it reaches ``l0_sst_size_bytes`` or after many WAL
flushes; frozen memtables wait in the database's queue until their L0 SST is in the manifest.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

from shale import _accel
from shale.row import MERGE

#: The twin of the hot loops in use: ``shale.engine._memtable_c`` or ``_memtable_py``.
IMPLEMENTATION: ModuleType = _accel.load("memtable")
if TYPE_CHECKING:
    from shale.engine._memtable_py import insert_rows, versions_to_base
else:
    insert_rows = IMPLEMENTATION.insert_rows
    versions_to_base = IMPLEMENTATION.versions_to_base

#: Bytes charged per row on top of key and value (seq, flags, timestamps, offsets): the
#: encoded size SlateDB estimates, which decides when a memtable is frozen.
ROW_OVERHEAD = 24
#: Python memory per row beyond key and value (tuple, ints, bytes headers, dict and list slots),
#: measured with tracemalloc; used for backpressure on memory.
ROW_MEMORY_OVERHEAD = 260


class Memtable:
    """A sorted multi-version table of row tuples (see :mod:`shale.row`)."""

    def __init__(self) -> None:
        self._versions: dict[bytes, list[tuple]] = {}  # type: ignore[type-arg]
        self._sorted: list[bytes] = []
        self._new: list[bytes] = []
        self._recent: list[bytes] = []  # sorted copy of _new[:len(_recent)]
        self._klock = threading.Lock()
        #: estimated encoded size in bytes
        self.size = 0
        #: estimated Python memory in bytes
        self.mem_bytes = 0
        self.num_rows = 0
        self.min_seq: int | None = None
        self.max_seq = 0
        #: the largest create_ts of any row (SlateDB's "last tick" of the table)
        self.last_tick: int | None = None
        #: set when frozen: the highest WAL id holding any of its rows (None with the WAL off)
        self.wal_id: int | None = None
        self.frozen = False

    def __len__(self) -> int:
        return self.num_rows

    def is_empty(self) -> bool:
        return self.num_rows == 0

    def put(self, row: tuple) -> None:  # type: ignore[type-arg]
        """Insert one row. The caller serialises writers and inserts seqs in increasing order."""
        key = row[0]
        lst = self._versions.get(key)
        if lst is None:
            self._versions[key] = [row]
            self._new.append(key)
        else:
            lst.append(row)
        nbytes = len(key) + len(row[3])
        self.size += nbytes + ROW_OVERHEAD
        self.mem_bytes += nbytes + ROW_MEMORY_OVERHEAD
        self.num_rows += 1
        seq = row[1]
        if self.min_seq is None:
            self.min_seq = seq
        if seq > self.max_seq:
            self.max_seq = seq
        ts = row[5]
        if ts is not None and (self.last_tick is None or ts > self.last_tick):
            self.last_tick = ts

    def put_rows(self, rows: list[tuple], floor: int | None = None) -> int:  # type: ignore[type-arg]
        """Insert ``rows`` in order (any seq order: a WAL SST's rows come by key): :meth:`put`
        for many rows, the sizes and bounds updated once; with a ``floor``, rows with
        ``seq <= floor`` are skipped. Returns the number inserted."""
        if not rows:
            return 0
        n, nbytes, self.last_tick, low, high = insert_rows(
            self._versions, self._new, rows, self.last_tick, floor
        )
        if not n:
            return 0
        assert low is not None and high is not None
        self.size += nbytes + n * ROW_OVERHEAD
        self.mem_bytes += nbytes + n * ROW_MEMORY_OVERHEAD
        self.num_rows += n
        if self.min_seq is None or low < self.min_seq:
            self.min_seq = low
        if high > self.max_seq:
            self.max_seq = high
        return n

    def get(self, key: bytes, max_seq: int) -> list[tuple]:  # type: ignore[type-arg]
        """The versions of ``key`` with ``seq <= max_seq`` a read resolves, newest first: down
        to the newest value or tombstone (merge operands above it included)."""
        lst = self._versions.get(key)
        if not lst:
            return []
        return versions_to_base(lst, max_seq)

    def _keys_snapshot(self) -> tuple[list[bytes], list[bytes]]:
        """(sorted keys, sorted recent keys), both immutable from the caller's point of view.

        The sorted form of ``_new`` is cached with the count it covers, so a read sorts only the
        keys inserted since the last read and merges them in (Timsort merges two runs in linear
        time). Once the recent keys are many, they are folded into ``_sorted``.
        """
        with self._klock:
            n = len(self._new)
            if n > 4096 and n * 8 > len(self._sorted):
                merged = self._sorted + self._new[:n]
                merged.sort()
                self._sorted = merged
                del self._new[:n]
                self._recent = []
                return merged, []
            recent = self._recent
            if len(recent) < n:
                extra = self._new[len(recent) : n]
                extra.sort()
                recent = recent + extra
                recent.sort()  # two sorted runs: a linear merge
                self._recent = recent
            return self._sorted, recent

    def sorted_keys(self) -> list[bytes]:
        """Every key, sorted (a fresh list)."""
        base, recent = self._keys_snapshot()
        return list(heapq.merge(base, recent)) if recent else list(base)

    def iter_rows(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        max_seq: int | None = None,
        reverse: bool = False,
        to_base: bool = False,
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Rows with ``start <= key < end`` and ``seq <= max_seq``, in merge order.

        Ascending: key ascending, newest version first. ``reverse``: key descending, newest
        version first. ``to_base``: per key, only the versions a read resolves -- down to the
        newest value or tombstone, merge operands above it included -- so a read does not step
        over every older version of a hot key (a flush needs them all: the default).
        """
        limit = self.max_seq if max_seq is None else max_seq
        base, recent = self._keys_snapshot()
        parts = []
        for keys in (base, recent):
            lo = 0 if start is None else bisect.bisect_left(keys, start)
            hi = len(keys) if end is None else bisect.bisect_left(keys, end)
            if lo < hi:
                parts.append(keys[lo:hi])
        if not parts:
            return
        if reverse:
            for p in parts:
                p.reverse()
            keys_iter = heapq.merge(*parts, reverse=True) if len(parts) > 1 else parts[0]
        else:
            keys_iter = heapq.merge(*parts) if len(parts) > 1 else parts[0]
        versions = self._versions
        if to_base:
            for key in keys_iter:
                lst = versions[key]  # no copy: it only grows at its end, read below len()
                for i in range(len(lst) - 1, -1, -1):
                    r = lst[i]
                    if r[1] <= limit:
                        yield r
                        if r[2] != MERGE:
                            break
            return
        for key in keys_iter:
            lst = versions[key][:]
            for i in range(len(lst) - 1, -1, -1):
                r = lst[i]
                if r[1] <= limit:
                    yield r

    def freeze(self, wal_id: int | None) -> Memtable:
        """Mark immutable, remembering the last WAL id that holds its rows; returns self."""
        self.frozen = True
        self.wal_id = wal_id
        with self._klock:
            if self._new:
                merged = self._sorted + self._new
                merged.sort()
                self._sorted = merged
                self._new = []
                self._recent = []
        return self
