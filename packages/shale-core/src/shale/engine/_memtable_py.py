"""The memtable's hot loops, pure-Python twin (the reference; ``_memtable_c.pyx`` is the
compiled one). :mod:`shale.engine.memtable` owns the state and calls these.

``versions`` maps a key to its rows, oldest first; ``new`` lists the keys inserted since the
sorted key list was last rebuilt. A row is ``(key, seq, kind, value, expire_ts, create_ts)``.
"""

from __future__ import annotations

from shale.row import MERGE

__all__ = ["insert_rows", "versions_to_base"]


def insert_rows(
    versions: dict[bytes, list[tuple]],  # type: ignore[type-arg]
    new: list[bytes],
    rows: list[tuple],  # type: ignore[type-arg]
    max_tick: int | None,
    floor: int | None = None,
) -> tuple[int, int, int | None, int | None, int | None]:
    """Append each row to its key's versions (a new key also to ``new``), in order; with a
    ``floor``, rows with ``seq <= floor`` are skipped (a replay's rows already in L0).

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
        lst = get(key)
        if lst is None:
            versions[key] = [row]
            new.append(key)
        else:
            lst.append(row)
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
