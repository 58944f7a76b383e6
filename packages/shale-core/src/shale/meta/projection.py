"""Projecting a manifest on a key range ``[start, end)``: what a projected clone reads.

SlateDB (``Manifest::projected``, the ``projection_range`` of a ``CloneSourceSpec``) narrows
every tree of a manifest to a key range without rewriting an SST: each SST *view* gets a
``visible_range`` (FORMAT.md 6.3, both manifest versions can record one), views left with no
key in the range are dropped, sorted runs left empty are dropped, segments left empty are
dropped, and each clone source's ``sst_ids`` shrinks to the ids still referenced (sources left
with none are dropped).

One deliberate difference: SlateDB widens a sorted-run view's range up to the *next* view's
first key before intersecting. shale intersects the view's own effective range (its SST's
``[first_entry, last_entry]`` cut by any existing visible range) with the projection: within
the range, every view then shows exactly the rows it showed before, including a boundary key
whose versions two adjacent views of a run share. A view the projection does not cut is kept
as it was (no ``visible_range`` added). Reads of the projected manifest equal reads of the
source restricted to ``[start, end)``.
"""

from __future__ import annotations

import dataclasses

from shale.errors import InvalidError
from shale.fbs.manifest import (
    BOUND_EXCLUDED,
    BOUND_INCLUDED,
    BOUND_UNBOUNDED,
    Bound,
    BytesRange,
    Manifest,
    Segment,
    SortedRun,
    SstView,
)
from shale.meta.locator import manifest_views

__all__ = ["effective_range", "intersect", "key_range", "project_manifest"]

_UNBOUNDED = Bound(BOUND_UNBOUNDED, None)


def key_range(start: bytes | None, end: bytes | None) -> BytesRange:
    """``[start, end)`` as a :class:`BytesRange` (``None``: unbounded on that side).

    :raises InvalidError: a bound that is not bytes, or ``start >= end``.
    """
    for name, key in (("start", start), ("end", end)):
        if key is not None and not isinstance(key, bytes | bytearray | memoryview):
            raise InvalidError(f"projection {name} must be bytes or None", type=type(key).__name__)
    lo = None if start is None else bytes(start)
    hi = None if end is None else bytes(end)
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidError("projection range is empty: start must be < end", start=lo, end=hi)
    return BytesRange(
        _UNBOUNDED if lo is None else Bound(BOUND_INCLUDED, lo),
        _UNBOUNDED if hi is None else Bound(BOUND_EXCLUDED, hi),
    )


def _later_start(a: Bound, b: Bound) -> Bound:
    if a.key is None:
        return b
    if b.key is None or a.key > b.key:
        return a
    if b.key > a.key:
        return b
    return a if a.kind == BOUND_EXCLUDED else b


def _earlier_end(a: Bound, b: Bound) -> Bound:
    if a.key is None:
        return b
    if b.key is None or a.key < b.key:
        return a
    if b.key < a.key:
        return b
    return a if a.kind == BOUND_EXCLUDED else b


def intersect(a: BytesRange, b: BytesRange) -> BytesRange | None:
    """The keys in both ``a`` and ``b``; ``None`` when there are none."""
    lo = _later_start(a.start_bound, b.start_bound)
    hi = _earlier_end(a.end_bound, b.end_bound)
    if lo.key is not None and hi.key is not None:
        if lo.key > hi.key:
            return None
        if lo.key == hi.key and not (lo.kind == BOUND_INCLUDED and hi.kind == BOUND_INCLUDED):
            return None
    return BytesRange(lo, hi)


def effective_range(view: SstView) -> BytesRange | None:
    """The keys ``view`` can show: its SST's ``[first_entry, last_entry]`` cut by its visible
    range (``None``: nothing). An SST without a recorded last entry is unbounded above."""
    info = view.sst.info
    physical = BytesRange(
        _UNBOUNDED if info.first_entry is None else Bound(BOUND_INCLUDED, info.first_entry),
        _UNBOUNDED if info.last_entry is None else Bound(BOUND_INCLUDED, info.last_entry),
    )
    if view.visible_range is None:
        return physical
    return intersect(physical, view.visible_range)


def _project_views(views: list[SstView], rng: BytesRange) -> list[SstView]:
    out = []
    for view in views:
        eff = effective_range(view)
        if eff is None:
            continue
        cut = intersect(eff, rng)
        if cut is None:
            continue
        out.append(view if cut == eff else dataclasses.replace(view, visible_range=cut))
    return out


def _project_runs(runs: list[SortedRun], rng: BytesRange) -> list[SortedRun]:
    out = []
    for run in runs:
        views = _project_views(run.ssts, rng)
        if views:
            out.append(dataclasses.replace(run, ssts=views))
    return out


def project_manifest(m: Manifest, rng: BytesRange) -> Manifest:
    """``m`` narrowed to the keys of ``rng`` (see the module docstring)."""
    segments: list[Segment] = []
    for seg in m.segments:
        l0 = _project_views(seg.l0, rng)
        runs = _project_runs(seg.compacted, rng)
        if l0 or runs:
            segments.append(dataclasses.replace(seg, l0=l0, compacted=runs))
    projected = dataclasses.replace(
        m,
        l0=_project_views(m.l0, rng),
        compacted=_project_runs(m.compacted, rng),
        segments=segments,
    )
    live = {v.sst.id for v in manifest_views(projected)}
    external = []
    for ext in projected.external_dbs:
        ids = [i for i in ext.sst_ids if i in live]
        if ids:
            external.append(dataclasses.replace(ext, sst_ids=ids))
    return dataclasses.replace(projected, external_dbs=external)
