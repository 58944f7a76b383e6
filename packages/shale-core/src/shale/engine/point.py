"""Point lookups' walk over the sources of a read (SlateDB's ``get`` path below the reader).

:func:`point_versions` collects one key's versions a read resolves, newest first, down to the
first that is not a merge operand: the memtables (newest first), then the L0 SSTs (newest
first), then the sorted runs (by binary search on their SSTs' first keys). In each SST it probes
the bloom filter, searches the block index, takes the block from the block cache (or loads it:
read, CRC-checked, decoded, cached) and searches the block. Resolution (tombstones, TTL, merge
operands) is the reader's (:func:`shale.merge_operators.resolve_versions`).

The compiled twin (``_point_c``) does all of it in one call; ``_point_py`` is the readable
reference; this facade picks one and builds the per-tree :func:`plan` both walk.

Invariants: the caller fixes ``max_seq`` and the sources (one :class:`~shale.fbs.manifest.Manifest`,
the memtables of one published state) before the call, so a read never mixes states, and the
first base version ends the walk, so no older source can hide a newer one. A clone SST is only
consulted inside its ``visible_range``. The SSTs come from the table store's metadata cache
(``tables.meta_cache.get(sst_id)``, else ``tables.load(view)``), so its byte bound and its LRU
order hold; blocks come through the block cache, so its stats count every probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shale import _accel
from shale.fbs.manifest import SortedRun, SstView

__all__ = ["IMPLEMENTATION", "Plan", "plan", "point_versions"]

#: The twin in use: ``shale.engine._point_c`` or ``shale.engine._point_py``.
IMPLEMENTATION = _accel.load("point")

if TYPE_CHECKING:
    from shale.engine._point_py import point_versions
else:
    point_versions = IMPLEMENTATION.point_versions

#: One SST as the walk sees it: ``(first_key, last_key, visible_range, sst_id, view)``.
Entry = tuple[bytes | None, bytes | None, object, object, SstView]
#: One tree (the root or a segment): its L0 SSTs newest first, and per sorted run the first
#: keys of its SSTs (``b""`` when unknown) with their entries.
Plan = tuple[tuple[Entry, ...], tuple[tuple[list[bytes], list[Entry]], ...]]


def _entry(view: SstView) -> Entry:
    info = view.sst.info
    return (info.first_entry, info.last_entry, view.visible_range, view.sst.id.value, view)


def plan(l0: Sequence[SstView], compacted: Sequence[SortedRun]) -> Plan:
    """The walk's view of one tree's SSTs (built once per manifest and tree by the reader)."""
    return (
        tuple(_entry(v) for v in l0),
        tuple(
            ([v.sst.info.first_entry or b"" for v in run.ssts], [_entry(v) for v in run.ssts])
            for run in compacted
        ),
    )
