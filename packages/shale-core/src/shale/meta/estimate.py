"""Row-count and size estimates of a key range from SST metadata: :func:`estimate_range`.

Neither official API offers this; SlateDB users ask for it (how big is tenant X? is a range
worth a scan?). The answer reads only the index and stats blocks of the SSTs a manifest lists
(one ranged read of each SST's tail, a second for a stats block outside it), never a data block.

How it counts: an SST's data blocks are cut by the first keys in its index. A block counts when
its key span ``[first_key, next block's first_key)`` (the last block: up to the SST's last key)
meets the range, restricted to the view's visible range. Its rows are its ``BlockStats``
(puts, deletes, merges); its bytes are its stored (compressed) size; its raw bytes are the SST's
raw key and value sizes shared out by row count. So the numbers are exact at block granularity
and over-count by at most one partial block at each end of the range in each SST. They count
*entries*, not live keys: every version of a key in L0 and in each sorted run counts, and
tombstones are counted apart (``deletes``). Rows still only in the WAL or a writer's memory are
not counted (they are in no SST yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shale.fbs.manifest import BOUND_UNBOUNDED, Manifest, SstView
from shale.meta.locator import SstLocator, manifest_views
from shale.objstore.protocol import ObjectStore
from shale.sst.table import SsTable

__all__ = ["RangeEstimate", "estimate_range"]


@dataclass(frozen=True, slots=True)
class RangeEstimate:
    """What :func:`estimate_range` found in the SSTs of one manifest.

    :ivar entries: rows (``puts + deletes + merges``) of the blocks that meet the range.
    :ivar puts: values among them.
    :ivar deletes: tombstones among them.
    :ivar merges: merge operands among them.
    :ivar bytes: stored (compressed) size of those blocks.
    :ivar raw_bytes: their uncompressed key and value bytes (shared out by row count).
    :ivar ssts: SST views with at least one such block.
    :ivar blocks: data blocks counted.
    """

    entries: int = 0
    puts: int = 0
    deletes: int = 0
    merges: int = 0
    bytes: int = 0
    raw_bytes: int = 0
    ssts: int = 0
    blocks: int = 0

    def __add__(self, other: RangeEstimate) -> RangeEstimate:
        return RangeEstimate(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))

    def to_json(self) -> dict[str, int]:
        """The fields as a dict."""
        return dict(zip(self.__slots__, _fields(self), strict=True))


def _fields(e: RangeEstimate) -> tuple[int, ...]:
    return tuple(getattr(e, name) for name in e.__slots__)


def _clip(
    view: SstView, start: bytes | None, end: bytes | None
) -> tuple[bytes | None, bytes | None] | None:
    """``[start, end)`` cut to the view's visible range; ``None`` when nothing is left."""
    vr = view.visible_range
    if vr is not None:
        if vr.start_bound.kind != BOUND_UNBOUNDED and vr.start_bound.key is not None:
            start = vr.start_bound.key if start is None else max(start, vr.start_bound.key)
        if vr.end_bound.kind != BOUND_UNBOUNDED and vr.end_bound.key is not None:
            # an inclusive end still ends before the key's successor: keep it (an estimate)
            vend = vr.end_bound.key + b"\x00"
            end = vend if end is None else min(end, vend)
    if start is not None and end is not None and start >= end:
        return None
    return start, end


def estimate_sst(table: SsTable, start: bytes | None, end: bytes | None) -> RangeEstimate:
    """The estimate of ``[start, end)`` in one open SST."""
    stats = table.stats
    blocks = table.blocks()
    last = table.last_key
    counted = RangeEstimate()
    if stats is None:
        return counted
    total_rows = stats.num_puts + stats.num_deletes + stats.num_merges
    raw_total = stats.raw_key_size + stats.raw_val_size
    for i, (first, size) in enumerate(blocks):
        if end is not None and first >= end:
            break
        if start is not None:
            nxt = blocks[i + 1][0] if i + 1 < len(blocks) else None
            if nxt is not None and nxt <= start:
                continue
            if nxt is None and last is not None and last < start:
                continue
        bs = stats.block_stats[i] if i < len(stats.block_stats) else None
        puts, deletes, merges = (bs.num_puts, bs.num_deletes, bs.num_merges) if bs else (0, 0, 0)
        rows = puts + deletes + merges
        raw = raw_total * rows // total_rows if total_rows else 0
        counted = counted + RangeEstimate(rows, puts, deletes, merges, size, raw, 0, 1)
    if counted.blocks:
        counted = counted + RangeEstimate(ssts=1)
    return counted


def estimate_range(
    store: ObjectStore,
    root: str,
    manifest: Manifest,
    start: bytes | None = None,
    end: bytes | None = None,
    *,
    transformer: Any = None,
    views: Iterable[SstView] | None = None,
) -> RangeEstimate:
    """Estimate the entries and bytes of ``[start, end)`` (``None``: unbounded) in the SSTs of
    ``manifest`` (L0, sorted runs and segments; clone sources' SSTs included).

    :param transformer: the database's block transformer, if any (to read its index and stats).
    :param views: only these views (default: every view of the manifest).
    :raises DataError: an SST's metadata is malformed.
    :raises ObjectNotFound: an SST is missing (for instance removed by GC after the manifest
        was read).
    """
    locator = SstLocator(store, root)
    locator.observe(manifest.external_dbs)
    total = RangeEstimate()
    for view in manifest_views(manifest) if views is None else views:
        info = view.sst.info
        clipped = _clip(view, start, end)
        if clipped is None:
            continue
        lo, hi = clipped
        if hi is not None and info.first_entry is not None and info.first_entry >= hi:
            continue
        if lo is not None and info.last_entry is not None and info.last_entry < lo:
            continue
        sst_store, key = locator.locate(view.sst.id)
        table = SsTable.open(sst_store, key, transformer=transformer)
        total = total + estimate_sst(table, lo, hi)
    return total
