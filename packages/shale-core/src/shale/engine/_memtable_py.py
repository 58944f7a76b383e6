"""The memtable's insert path and hot loops, pure-Python twin (the reference;
``_memtable_c.pyx`` is the compiled one, whose :class:`MemtableBase` the compiled commit
reaches without attribute lookups). :class:`shale.engine.memtable.Memtable` extends
:class:`MemtableBase` with the reads and the freeze.

``versions`` maps a key to its row (one version) or to a list of its rows, oldest first
(several); ``new`` lists the keys inserted since the sorted key list was last rebuilt. A row is
``(key, seq, kind, value, expire_ts, create_ts)``.
"""

from __future__ import annotations

from shale.row import MERGE

__all__ = [
    "ROW_MEMORY_OVERHEAD",
    "ROW_OVERHEAD",
    "MemtableBase",
    "insert_rows",
    "versions_to_base",
]

#: Bytes charged per row on top of key and value (seq, flags, timestamps, offsets): the
#: encoded size SlateDB estimates, which decides when a memtable is frozen.
ROW_OVERHEAD = 24
#: Python memory per row beyond key and value (tuple, ints, bytes headers, dict and list slots),
#: measured with tracemalloc; used for backpressure on memory.
ROW_MEMORY_OVERHEAD = 260


class MemtableBase:
    """A memtable's rows and counters, and the inserts (see :mod:`shale.engine.memtable`)."""

    def __init__(self) -> None:
        #: key -> its row (one version) or its rows, oldest first (several)
        self._versions: dict[bytes, tuple | list[tuple]] = {}  # type: ignore[type-arg]
        #: keys inserted since the sorted key list was rebuilt
        self._new: list[bytes] = []
        #: estimated encoded size in bytes
        self.size = 0
        #: estimated Python memory in bytes
        self.mem_bytes = 0
        self.num_rows = 0
        self.min_seq: int | None = None
        self.max_seq = 0
        #: the largest create_ts of any row (SlateDB's "last tick" of the table)
        self.last_tick: int | None = None

    def put(self, row: tuple) -> None:  # type: ignore[type-arg]
        """Insert one row. The caller serialises writers and inserts seqs in increasing order."""
        key = row[0]
        entry = self._versions.get(key)
        if entry is None:
            self._versions[key] = row
            self._new.append(key)
        elif isinstance(entry, tuple):
            self._versions[key] = [entry, row]
        else:
            entry.append(row)
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


def insert_rows(
    versions: dict[bytes, tuple | list[tuple]],  # type: ignore[type-arg]
    new: list[bytes],
    rows: list[tuple],  # type: ignore[type-arg]
    max_tick: int | None,
    floor: int | None = None,
) -> tuple[int, int, int | None, int | None, int | None]:
    """Add each row to its key's versions (a new key also to ``new``), in order: a key's first
    row is stored as is, its second turns the entry into a list. With a ``floor``, rows with
    ``seq <= floor`` are skipped (a replay's rows already in L0).

    :returns: ``(rows inserted, their key and value bytes, the largest create_ts (or
        max_tick), the smallest seq, the largest seq)``; both seqs ``None`` when no row was
        inserted.
    """
    get = versions.get
    count = nbytes = 0
    low = high = None
    for row in rows:
        seq = row[1]
        if floor is not None and seq <= floor:
            continue
        key = row[0]
        entry = get(key)
        if entry is None:
            versions[key] = row
            new.append(key)
        elif isinstance(entry, tuple):
            versions[key] = [entry, row]
        else:
            entry.append(row)
        count += 1
        nbytes += len(key) + len(row[3])
        if low is None or seq < low:
            low = seq
        if high is None or seq > high:
            high = seq
        ts = row[5]
        if ts is not None and (max_tick is None or ts > max_tick):
            max_tick = ts
    return count, nbytes, max_tick, low, high


def versions_to_base(lst: list[tuple], max_seq: int) -> list[tuple]:  # type: ignore[type-arg]
    """The rows of ``lst`` (oldest first) with ``seq <= max_seq``, newest first, down to the
    newest one that is not a merge operand. ``lst`` may grow meanwhile (only at its end)."""
    out = []
    for i in range(len(lst) - 1, -1, -1):
        r = lst[i]
        if r[1] <= max_seq:
            out.append(r)
            if r[2] != MERGE:
                break
    return out
