"""The memtable: recent writes, sorted by key, every version kept.

Writers insert under the database's write lock; readers never take it. That works because the
structures only grow, and a reader fixes its visibility bound (a seq) *before* it looks:

- ``_versions`` maps each key to its row while it has one version (the row tuple itself: no
  list, so the common write allocates no container the garbage collector keeps scanning), then
  to a list of its rows, oldest first, which replaces the tuple when the second version comes
  (``list.append`` and a dict store are atomic under the GIL); a reader takes the tuple or a
  copy of the list and keeps rows with ``seq <= max_seq``.
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
from shale.engine._memtable_py import ROW_MEMORY_OVERHEAD, ROW_OVERHEAD
from shale.row import MERGE

#: The twin of the insert path and hot loops in use: ``shale.engine._memtable_c`` or
#: ``_memtable_py``.
IMPLEMENTATION: ModuleType = _accel.load("memtable")
if TYPE_CHECKING:
    from shale.engine._memtable_py import MemtableBase, versions_to_base
else:
    MemtableBase = IMPLEMENTATION.MemtableBase
    versions_to_base = IMPLEMENTATION.versions_to_base

__all__ = ["ROW_MEMORY_OVERHEAD", "ROW_OVERHEAD", "Memtable"]


class Memtable(MemtableBase):
    """A sorted multi-version table of row tuples (see :mod:`shale.row`).

    The rows and counters (``size``, ``mem_bytes``, ``num_rows``, ``min_seq``, ``max_seq``,
    ``last_tick``) and the inserts (:meth:`put`, :meth:`put_rows`) are :class:`MemtableBase`'s.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sorted: list[bytes] = []
        self._recent: list[bytes] = []  # sorted copy of _new[:len(_recent)]
        self._klock = threading.Lock()
        #: set when frozen: the highest WAL id holding any of its rows (None with the WAL off)
        self.wal_id: int | None = None
        self.frozen = False

    def __len__(self) -> int:
        return self.num_rows

    def is_empty(self) -> bool:
        return self.num_rows == 0

    def get(self, key: bytes, max_seq: int) -> list[tuple]:  # type: ignore[type-arg]
        """The versions of ``key`` with ``seq <= max_seq`` a read resolves, newest first: down
        to the newest value or tombstone (merge operands above it included)."""
        entry = self._versions.get(key)
        if entry is None:
            return []
        if isinstance(entry, tuple):
            return [entry] if entry[1] <= max_seq else []
        return versions_to_base(entry, max_seq)

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
                if type(lst) is tuple:
                    if lst[1] <= limit:
                        yield lst
                    continue
                for i in range(len(lst) - 1, -1, -1):
                    r = lst[i]
                    if r[1] <= limit:
                        yield r
                        if r[2] != MERGE:
                            break
            return
        for key in keys_iter:
            lst = versions[key]
            if type(lst) is tuple:
                if lst[1] <= limit:
                    yield lst
                continue
            lst = lst[:]
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
