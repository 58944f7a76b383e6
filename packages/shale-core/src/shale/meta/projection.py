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

**Per-segment callbacks** (SlateDB's ``ProjectionConfig``, ``CloneBuilder::with_segment_filter``
and ``with_segment_projection``), applied by :func:`project_manifest` tree by tree, the
unsegmented root tree taking part as the segment with the empty prefix ``b""``:

* ``segment_filter(prefix) -> bool`` is asked first; ``False`` drops the tree entirely.
* Otherwise the tree's range is ``segment_projection(prefix)`` -- ``(start, end)``, ``None``
  for an open end, which is resolved to the segment's edge ``[prefix, prefix++)``; a bounded
  end outside the segment, or an empty range, is an :class:`~shale.errors.InvalidError`
  naming the prefix (SlateDB's ``InvalidProjection``) -- intersected with the global range.
  Either one absent is no constraint; with neither the tree is kept as it is; an empty
  intersection drops the tree.
* Segments left with no SST are dropped, and so are ``external_dbs`` entries left with no SST
  id. A callback's own exception propagates (with a note naming the prefix).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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
from shale.keys import prefix_end
from shale.meta.locator import manifest_views

__all__ = [
    "SegmentFilter",
    "SegmentProjection",
    "check_segment_callbacks",
    "effective_range",
    "intersect",
    "key_range",
    "project_manifest",
]

#: ``segment_filter``: is the tree of this segment prefix kept?
SegmentFilter = Callable[[bytes], bool]
#: ``segment_projection``: the ``(start, end)`` range kept of this segment prefix's tree.
SegmentProjection = Callable[[bytes], "tuple[bytes | None, bytes | None]"]

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


def check_segment_callbacks(segment_filter: object, segment_projection: object) -> None:
    """:raises InvalidError: a ``segment_filter`` or ``segment_projection`` not callable."""
    for name, fn in (
        ("segment_filter", segment_filter),
        ("segment_projection", segment_projection),
    ):
        if fn is not None and not callable(fn):
            raise InvalidError(f"{name} must be a callable taking a prefix", type=type(fn).__name__)


def _call(fn: Callable[[bytes], object], name: str, prefix: bytes) -> object:
    try:
        return fn(prefix)
    except Exception as e:
        e.add_note(f"raised by the clone's {name} for segment prefix {prefix!r}")
        raise


def _segment_range(prefix: bytes, got: object) -> BytesRange:
    """SlateDB's ``canonicalize_segment_range``: ``segment_projection``'s answer ``got`` with
    open ends resolved to the segment's edges; it must be a non-empty part of the segment."""
    if not isinstance(got, tuple) or len(got) != 2:
        raise InvalidError(
            "segment_projection must return a (start, end) tuple", prefix=prefix, got=got
        )
    start, end = got
    for name, key in (("start", start), ("end", end)):
        if key is not None and not isinstance(key, bytes | bytearray | memoryview):
            raise InvalidError(
                f"segment_projection's {name} must be bytes or None",
                prefix=prefix,
                type=type(key).__name__,
            )
    edge = prefix_end(prefix)
    lo = prefix if start is None else bytes(start)
    hi = edge if end is None else bytes(end)
    if lo < prefix or (edge is not None and (lo >= edge or hi is None or hi > edge)):
        raise InvalidError(
            "segment_projection's range is not contained in the segment",
            prefix=prefix,
            start=lo,
            end=hi,
        )
    if hi is not None and lo >= hi:
        raise InvalidError("segment_projection's range is empty", prefix=prefix, start=lo, end=hi)
    return BytesRange(
        Bound(BOUND_INCLUDED, lo), _UNBOUNDED if hi is None else Bound(BOUND_EXCLUDED, hi)
    )


_DROP = object()


def _tree_range(
    prefix: bytes,
    rng: BytesRange | None,
    segment_filter: SegmentFilter | None,
    segment_projection: SegmentProjection | None,
) -> object:
    """SlateDB's ``resolve_segment_action``: :data:`_DROP`, the tree's range, or ``None``
    (keep the tree as it is)."""
    if segment_filter is not None:
        keep = _call(segment_filter, "segment_filter", prefix)
        if not isinstance(keep, bool):
            raise InvalidError(
                "segment_filter must return a bool", prefix=prefix, type=type(keep).__name__
            )
        if not keep:
            return _DROP
    own = None
    if segment_projection is not None:
        own = _segment_range(prefix, _call(segment_projection, "segment_projection", prefix))
    if own is None or rng is None:
        return own if rng is None else rng
    cut = intersect(own, rng)
    return _DROP if cut is None else cut


def project_manifest(
    m: Manifest,
    rng: BytesRange | None,
    *,
    segment_filter: SegmentFilter | None = None,
    segment_projection: SegmentProjection | None = None,
) -> Manifest:
    """``m`` narrowed to the keys of ``rng`` (``None``: no global range) and by the
    per-segment callbacks (see the module docstring).

    :raises InvalidError: a ``segment_projection`` range outside its segment, or empty, or a
        callback answering something of the wrong type.
    """
    if rng is None and segment_filter is None and segment_projection is None:
        return m
    root = _tree_range(b"", rng, segment_filter, segment_projection)
    if root is _DROP:
        projected = dataclasses.replace(m, last_compacted_l0_view_id=None, l0=[], compacted=[])
    elif root is None:
        projected = m
    else:
        assert isinstance(root, BytesRange)
        projected = dataclasses.replace(
            m, l0=_project_views(m.l0, root), compacted=_project_runs(m.compacted, root)
        )
    segments: list[Segment] = []
    for seg in m.segments:
        seg_rng = _tree_range(seg.prefix, rng, segment_filter, segment_projection)
        if seg_rng is _DROP:
            continue
        if seg_rng is None:
            segments.append(seg)
            continue
        assert isinstance(seg_rng, BytesRange)
        l0 = _project_views(seg.l0, seg_rng)
        runs = _project_runs(seg.compacted, seg_rng)
        if l0 or runs:
            segments.append(dataclasses.replace(seg, l0=l0, compacted=runs))
    projected = dataclasses.replace(projected, segments=segments)
    live = {v.sst.id for v in manifest_views(projected)}
    external = []
    for ext in projected.external_dbs:
        ids = [i for i in ext.sst_ids if i in live]
        if ids:
            external.append(dataclasses.replace(ext, sst_ids=ids))
    return dataclasses.replace(projected, external_dbs=external)
