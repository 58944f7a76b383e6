"""The manifest of a clone of several sources: SlateDB's ``Manifest::cloned_from_union``.

Merging shards back together (rescaling) makes one database whose manifest references the SSTs
of every source, each pinned at its own checkpoint and maybe projected on a key range first
(:mod:`shale.meta.projection`). :func:`cloned_from_union` combines the pinned manifests as
SlateDB does:

* **Key ranges must not overlap.** A source's range is the smallest one covering the effective
  ranges of all its SST views (its SSTs' ``[first_entry, last_entry]`` cut by visible ranges);
  sources are ordered by it, and two adjacent ones sharing a key are refused
  (:class:`~shale.errors.InvalidError`, SlateDB's ``InvalidUnion``): the merged trees could not
  say which source owns the key. A source holding no SST contributes nothing (not even an
  ``external_dbs`` entry, as SlateDB).
* **Unsegmented sources** (no extractor recorded): their L0 lists and sorted runs are
  concatenated, in key order, into the root tree. A source carrying segments is refused.
* **Segmented sources** must all record the same ``segment_extractor_name``; segment prefixes
  must form an antichain; each prefix's trees from every source are concatenated (in key order)
  into one segment, after checking the sources are disjoint *within* that segment. Root trees
  are dropped, as SlateDB does (an extractor leaves them empty).
* **Sorted run ids** are renumbered across all trees: the first run walked gets the highest id,
  so each tree's ``compacted`` stays in descending id order and ids stay unique.
* **Everything else starts fresh:** epochs 0, no checkpoints, no WAL (``replay_after_wal_id``
  and ``wal_id_last_seen`` 0: a union never copies WAL files, which is why a source whose WAL
  holds rows is refused before), ``last_l0_seq`` the largest of the sources', no clock tick,
  an empty sequence tracker, no compaction watermark.
* **external_dbs:** per source (in key order) its own inherited entries, re-pinned through
  their final checkpoints, then one entry for the SSTs it owns; entries naming the same path and
  the same SST ids collapse into one (a rescale that reunites clones of one ancestor pins it
  once), keeping a checkpoint id a caller named, else the smallest. Each entry gets a fresh
  ``final_checkpoint_id``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from shale.errors import InvalidError
from shale.fbs.manifest import (
    BOUND_INCLUDED,
    Bound,
    BytesRange,
    ExternalDb,
    Manifest,
    Segment,
    SortedRun,
    SstView,
)
from shale.ids import Ulid
from shale.meta.locator import manifest_views
from shale.meta.projection import effective_range, intersect

__all__ = ["UnionSource", "cloned_from_union", "union_range"]

logger = logging.getLogger(__name__)


class UnionSource(NamedTuple):
    """One source of a union: its store path, the checkpoint it is pinned at, and the manifest
    that checkpoint pins (already projected when a projection was asked for)."""

    path: str
    checkpoint_id: uuid.UUID
    manifest: Manifest


def union_range(views: Iterable[SstView]) -> BytesRange | None:
    """The smallest range covering every view's effective range (``None``: no view)."""
    lo: Bound | None = None
    hi: Bound | None = None
    for view in views:
        eff = effective_range(view)
        if eff is None:
            continue
        s, e = eff.start_bound, eff.end_bound
        if lo is None or (lo.key is not None and (s.key is None or _start_key(s) < _start_key(lo))):
            lo = s
        if hi is None or (hi.key is not None and (e.key is None or _end_key(e) > _end_key(hi))):
            hi = e
    if lo is None or hi is None:
        return None
    return BytesRange(lo, hi)


def _start_key(b: Bound) -> tuple[int, bytes, int]:
    """Sort key of a start bound: unbounded first, then by key, included before excluded."""
    if b.key is None:
        return (0, b"", 0)
    return (1, b.key, 0 if b.kind == BOUND_INCLUDED else 1)


def _end_key(b: Bound) -> tuple[int, bytes, int]:
    """Sort key of a bounded end bound: by key, excluded before included."""
    assert b.key is not None
    return (0, b.key, 1 if b.kind == BOUND_INCLUDED else 0)


def _ensure_disjoint(prefix: bytes | None, ranges: list[tuple[str, BytesRange]]) -> None:
    """``ranges`` sorted by start: refuse two adjacent ones sharing a key."""
    for (pa, a), (pb, b) in itertools.pairwise(ranges):
        if intersect(a, b) is not None:
            scope = "" if prefix is None else f" in segment {prefix!r}"
            raise InvalidError(
                f"clone sources have overlapping key ranges{scope}: a union needs disjoint "
                "sources (project them apart)",
                sources=[pa, pb],
            )


def _consistent_extractor(sources: Sequence[UnionSource]) -> str | None:
    names = {s.manifest.segment_extractor_name for s in sources}
    if len(names) > 1:
        raise InvalidError(
            "clone sources disagree on the segment extractor",
            extractors={s.path: s.manifest.segment_extractor_name for s in sources},
        )
    return next(iter(names), None)


def _unsegmented(ordered: list[UnionSource]) -> tuple[list[SstView], list[SortedRun]]:
    stray = {s.path: [seg.prefix for seg in s.manifest.segments] for s in ordered}
    stray = {p: v for p, v in stray.items() if v}
    if stray:
        raise InvalidError("a clone source has segments but no extractor is recorded", **stray)
    l0: list[SstView] = []
    runs: list[SortedRun] = []
    for s in ordered:
        l0.extend(s.manifest.l0)
        runs.extend(s.manifest.compacted)
    return l0, runs


def _segmented(ordered: list[UnionSource]) -> list[Segment]:
    prefixes = sorted({seg.prefix for s in ordered for seg in s.manifest.segments})
    for a, b in itertools.pairwise(prefixes):
        if b.startswith(a):
            raise InvalidError("segment prefixes of the sources are not an antichain", a=a, b=b)
    members: dict[bytes, list[tuple[str, BytesRange, Segment]]] = {}
    for s in ordered:
        for seg in s.manifest.segments:
            rng = union_range([*seg.l0, *(v for run in seg.compacted for v in run.ssts)])
            if rng is not None:
                members.setdefault(seg.prefix, []).append((s.path, rng, seg))
    out = []
    for prefix in sorted(members):
        group = sorted(members[prefix], key=lambda m: _start_key(m[1].start_bound))
        _ensure_disjoint(prefix, [(p, r) for p, r, _ in group])
        out.append(
            Segment(
                prefix=prefix,
                l0=[v for _, _, seg in group for v in seg.l0],
                compacted=[run for _, _, seg in group for run in seg.compacted],
            )
        )
    return out


def _renumber(
    runs: list[SortedRun], segments: list[Segment]
) -> tuple[list[SortedRun], list[Segment]]:
    count = len(runs) + sum(len(seg.compacted) for seg in segments)
    ids = iter(range(count - 1, -1, -1))
    new_runs = [dataclasses.replace(r, id=next(ids)) for r in runs]
    new_segs = [
        dataclasses.replace(
            seg, compacted=[dataclasses.replace(r, id=next(ids)) for r in seg.compacted]
        )
        for seg in segments
    ]
    return new_runs, new_segs


def _owned_sst_ids(m: Manifest) -> list[Ulid]:
    external = {i for ext in m.external_dbs for i in ext.sst_ids}
    seen: dict[Ulid, None] = {}
    for view in manifest_views(m):
        if view.sst.id not in external:
            seen.setdefault(view.sst.id)
    return list(seen)


def _external_dbs(ordered: list[UnionSource]) -> list[ExternalDb]:
    named = {s.path: s.checkpoint_id for s in ordered}
    merged: dict[tuple[str, tuple[Ulid, ...]], uuid.UUID] = {}

    def add(path: str, sst_ids: Iterable[Ulid], cp: uuid.UUID) -> None:
        key = (path, tuple(sorted(set(sst_ids))))
        have = merged.get(key)
        user = named.get(path)
        if have is None or (user is not None and user == cp):
            merged[key] = cp
        elif user is None or user != have:
            merged[key] = min(have, cp)

    for s in ordered:
        for ext in s.manifest.external_dbs:
            add(ext.path, ext.sst_ids, ext.final_checkpoint_id or ext.source_checkpoint_id)
        owned = _owned_sst_ids(s.manifest)
        if owned:
            add(s.path, owned, s.checkpoint_id)
    return [
        ExternalDb(path, cp, uuid.uuid4(), list(sst_ids))
        for (path, sst_ids), cp in sorted(merged.items(), key=lambda kv: kv[0])
    ]


def cloned_from_union(sources: Sequence[UnionSource]) -> Manifest:
    """The first (uninitialized) manifest of a clone of ``sources``; see the module docstring.

    :raises InvalidError: overlapping sources, extractors that differ, nested segment prefixes,
        or segments without an extractor.
    """
    ranged: list[tuple[UnionSource, BytesRange]] = []
    for s in sources:
        rng = union_range(manifest_views(s.manifest))
        if rng is None:
            logger.warning("union clone source holds no SST path=%s", s.path)
        else:
            ranged.append((s, rng))
    ranged.sort(key=lambda sr: _start_key(sr[1].start_bound))
    ordered = [s for s, _ in ranged]
    extractor = _consistent_extractor(sources)
    l0: list[SstView] = []
    runs: list[SortedRun] = []
    segments: list[Segment] = []
    if extractor is None:
        _ensure_disjoint(None, [(s.path, r) for s, r in ranged])
        l0, runs = _unsegmented(ordered)
    else:
        segments = _segmented(ordered)
    runs, segments = _renumber(runs, segments)
    return dataclasses.replace(
        Manifest.initial(),
        initialized=False,
        l0=l0,
        compacted=runs,
        segments=segments,
        segment_extractor_name=extractor,
        last_l0_seq=max((s.manifest.last_l0_seq for s in sources), default=0),
        external_dbs=_external_dbs(ordered),
    )
