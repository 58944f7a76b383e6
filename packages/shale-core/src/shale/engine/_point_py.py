"""A point lookup's walk over its sources, pure-Python twin of ``_point_c.pyx`` (the readable
reference; :mod:`shale.engine.point` describes the contract)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from shale.row import MERGE

__all__ = ["point_versions"]


def point_versions(
    memtables: Sequence[Any],
    plan: tuple[Any, Any],
    key: bytes,
    max_seq: int,
    tables: Any,
) -> list[tuple]:  # type: ignore[type-arg]
    """``key``'s versions with ``seq <= max_seq``, newest first, down to the first that is not a
    merge operand: from ``memtables`` (newest first), then the plan's L0 SSTs and sorted runs."""
    out: list[tuple] = []  # type: ignore[type-arg]
    if max_seq < 0:
        return out
    for mt in memtables:
        lst = mt._versions.get(key)  # its row, or its rows (a list that only grows at its end:
        if lst:  # read below the length seen)
            if type(lst) is tuple:
                lst = [lst]
            for i in range(len(lst) - 1, -1, -1):
                r = lst[i]
                if r[1] <= max_seq:
                    out.append(r)
                    if r[2] != MERGE:
                        return out
    l0, runs = plan
    for entry in l0:
        first, last, vrange = entry[0], entry[1], entry[2]
        if (first is not None and key < first) or (last is not None and key > last):
            continue
        if vrange is not None and not vrange.contains(key):
            continue
        if _sst_versions(tables, entry, key, max_seq, out):
            return out
    for firsts, entries in runs:
        # a key's versions may continue over several SSTs of a run: start at the last SST
        # starting below the key
        i = max(0, bisect.bisect_left(firsts, key) - 1)
        n = len(entries)
        while i < n:
            entry = entries[i]
            first, last, vrange = entry[0], entry[1], entry[2]
            if first is not None and key < first:
                break
            if (last is None or key <= last) and (vrange is None or vrange.contains(key)):
                if _sst_versions(tables, entry, key, max_seq, out):
                    return out
            if last is not None and key < last:
                break
            i += 1
    return out


def _sst_versions(tables: Any, entry: tuple, key: bytes, max_seq: int, out: list) -> bool:  # type: ignore[type-arg]
    """Append ``key``'s visible versions in one SST to ``out``; True once a base was found."""
    table = tables.meta_cache.get(entry[3])
    if table is None:
        table = tables.load(entry[4])
    bloom, hash_fn, reader, index_keys, cache, cache_id = table.point_probe()
    if bloom is not None:
        if not bloom.may_contain_hash(hash_fn(key)):
            return False
    elif reader is not None and not reader.may_contain(key):
        return False
    # the last block whose separator is strictly below the key (shale.sst.table's docstring)
    i = max(0, bisect.bisect_left(index_keys, key) - 1)
    n = len(index_keys)
    probe = (key,)
    while i < n:
        rows = None if cache is None else cache.get((cache_id, i))
        if rows is None:
            rows = table._load_block(i)
        m = len(rows)
        j = bisect.bisect_left(rows, probe)
        while j < m:
            r = rows[j]
            if r[0] != key:
                return False  # a larger key: no more versions
            if r[1] <= max_seq:
                out.append(r)
                if r[2] != MERGE:
                    return True
            j += 1
        i += 1  # the key's versions may continue in the next block
    return False
