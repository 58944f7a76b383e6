"""Segments (SlateDB RFC-0024): one LSM tree per key prefix, chosen by a prefix extractor.

A database opened with a *segment extractor* keeps one LSM tree per key prefix in
``Manifest.segments`` (FORMAT.md §6.4). ``Segment.prefix`` owns the key interval
``[prefix, prefix++)``; the top-level ``l0``/``compacted``/``last_compacted_l0_view_id`` fields
form the *root* tree (the empty prefix), which is the only tree of an unsegmented database.
This module holds everything shale needs to know about that layout, so the engine, the
compactor and the garbage collector share one definition:

* the extractor interface (:class:`PrefixExtractor`), the built-in fixed-length extractor
  (:class:`FixedPrefixExtractor`, named ``fixed<N>`` like SlateDB's own test extractors and the
  examples in its docs, so a database written by the official package with an extractor of that
  name opens here with ``prefix_extractor="fixed3"``), and the built-in plugin implementing the
  ``shale_prefix_extractor`` hook;
* routing: :func:`tree_for_key` (point lookups), :func:`trees_for_range` (scans);
* the tree accessors the write path and the compactor use (:func:`tree`, :func:`replace_tree`,
  :func:`add_l0`, :func:`all_views`, :func:`max_l0_ssts`, :func:`max_l0_overlap`);
* the open-time checks (:func:`check_manifest`, :func:`check_writer`).

Invariants and why:

* **Routing is structural.** Reads never call the extractor: a key belongs to the segment whose
  prefix starts it, found by binary search over the sorted prefixes, else to the root tree
  (SlateDB's reader does the same). So any reader, with or without an extractor, reads a
  segmented database correctly. The root tree is always read as well (for keys no segment
  owns); SlateDB never puts data there once an extractor is configured, so it is empty in
  every segmented database the official package writes.
* **Prefixes form an antichain** (no prefix is a proper prefix of another), are non-empty and
  sorted, so at most one segment owns a key. A manifest breaking this is refused with
  :class:`~shale.errors.InvalidError` before anything is read (:func:`check_manifest`);
  a write whose prefix would nest with a known one is refused before it reaches the WAL.
* **The extractor is part of the database.** Its name is recorded in
  ``Manifest.segment_extractor_name`` when the database is created; a writer must open with an
  extractor of that name (and one that still recognises every persisted prefix), or without one
  when none is recorded. A mismatch is an ``InvalidError`` raised before anything is written.
* **Every key of a segmented database has a prefix.** The extractor returning ``None`` or 0 for
  a key is an ``InvalidError`` at write time (SlateDB's ``EmptySegmentPrefix``).
* **Sorted run ids are unique across all trees** (one shared counter, RFC-0024), so a run id
  names one run in the whole manifest.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import shale
from shale.errors import InvalidError
from shale.fbs.manifest import BOUND_INCLUDED as _INCLUDED
from shale.fbs.manifest import Manifest, Segment, SortedRun, SstView
from shale.ids import Ulid
from shale.meta.projection import effective_range
from shale.sst.prefix_bloom import check_extractor

__all__ = [
    "FixedPrefixExtractor",
    "PrefixExtractor",
    "Tree",
    "add_l0",
    "all_views",
    "check_extractor",
    "check_manifest",
    "check_writer",
    "effective_range",
    "initial_manifest",
    "is_segmented",
    "max_l0_overlap",
    "max_l0_ssts",
    "max_overlap",
    "owning_prefix",
    "replace_tree",
    "segment_prefix",
    "shale_prefix_extractor",
    "tree",
    "tree_for_key",
    "trees",
    "trees_for_range",
]

#: Keys longer than this are shortened in error details.
_KEY_DETAIL_LEN = 64


@runtime_checkable
class PrefixExtractor(Protocol):
    """Maps a key to the prefix naming its segment (SlateDB's ``PrefixExtractor``).

    ``name`` identifies the extractor's configuration; it is recorded in the manifest, and a
    writer reopening the database must use an extractor of the same name. Change the name
    whenever the mapping changes.

    ``prefix_len(key)`` returns ``n`` so that ``key[:n]`` is the segment prefix, or ``None``
    when the key has none. It must be deterministic and depend only on the first ``n`` bytes:
    every key sharing ``key[:n]`` must map to ``n`` as well. With ``scan_prefix=True`` the
    argument is a scan prefix rather than a whole key, and the answer must hold for *every*
    extension of it (return ``None`` when it cannot be known): shale calls it that way on each
    persisted segment prefix when a writer opens, to check that the extractor still claims it.
    """

    @property
    def name(self) -> str:
        """The extractor's stable name (recorded in the manifest)."""
        ...

    def prefix_len(self, key: bytes, *, scan_prefix: bool = False) -> int | None:
        """The length of ``key``'s segment prefix, or ``None``."""
        ...


class FixedPrefixExtractor:
    """The first ``length`` bytes of a key are its segment; shorter keys have none.

    Named ``fixed<length>`` (``fixed3``), the name SlateDB's fixed-length test extractors and
    docs use: a database the official package wrote with such an extractor opens here with
    ``prefix_extractor="fixed3"``.

    :raises InvalidError: unless ``length`` is a positive int.
    """

    def __init__(self, length: int) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise InvalidError("a fixed prefix length is a positive int", length=length)
        self.length = length

    @property
    def name(self) -> str:
        return f"fixed{self.length}"

    def prefix_len(self, key: bytes, *, scan_prefix: bool = False) -> int | None:
        return self.length if len(key) >= self.length else None

    def __repr__(self) -> str:
        return f"FixedPrefixExtractor({self.length})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FixedPrefixExtractor):
            return NotImplemented
        return other.length == self.length

    def __hash__(self) -> int:
        return hash(("fixed", self.length))


_FIXED = re.compile(r"fixed([1-9][0-9]{0,5})")


@shale.hookimpl
def shale_prefix_extractor(name: str) -> PrefixExtractor | None:
    """Offer the built-in fixed-length extractors: ``"fixed<N>"`` for N >= 1.

    :param name: the extractor name from the settings or the manifest.
    :return: a :class:`FixedPrefixExtractor`, or ``None`` for any other name.
    """
    m = _FIXED.fullmatch(name)
    return None if m is None else FixedPrefixExtractor(int(m.group(1)))


def _short(key: bytes) -> bytes:
    return key if len(key) <= _KEY_DETAIL_LEN else key[:_KEY_DETAIL_LEN] + b"..."


def segment_prefix(extractor: PrefixExtractor, key: bytes) -> bytes:
    """The segment prefix of ``key`` under ``extractor`` (a write's routing).

    :raises InvalidError: the extractor gives no prefix, an empty one, or a length past the
        key (SlateDB: ``EmptySegmentPrefix``; every key of a segmented database needs one).
    """
    try:
        n = extractor.prefix_len(key)
    except Exception as exc:
        raise InvalidError(
            "the segment extractor failed", extractor=extractor.name, key=_short(key)
        ) from exc
    if n is None or isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InvalidError(
            "the segment extractor gives this key no segment prefix; every key of a segmented "
            "database needs one",
            extractor=extractor.name,
            key=_short(key),
        )
    if n > len(key):
        raise InvalidError(
            "the segment extractor returned a prefix longer than the key",
            extractor=extractor.name,
            key=_short(key),
            prefix_len=n,
        )
    return key[:n]


# -- trees ---------------------------------------------------------------------------------------


class Tree(NamedTuple):
    """One LSM tree of a manifest: the root (``prefix == b""``) or a segment's."""

    prefix: bytes
    l0: list[SstView]
    compacted: list[SortedRun]
    last_compacted_l0_view_id: Ulid | None


def is_segmented(m: Manifest) -> bool:
    """Whether ``m`` records segments or a segment extractor."""
    return bool(m.segments) or m.segment_extractor_name is not None


def _root(m: Manifest) -> Tree:
    return Tree(b"", m.l0, m.compacted, m.last_compacted_l0_view_id)


def _seg_tree(s: Segment) -> Tree:
    return Tree(s.prefix, s.l0, s.compacted, s.last_compacted_l0_view_id)


def trees(m: Manifest) -> list[Tree]:
    """Every tree: the root first, then the segments in prefix order."""
    return [_root(m), *(_seg_tree(s) for s in m.segments)]


def _index(m: Manifest, prefix: bytes) -> int | None:
    segs = m.segments
    i = bisect.bisect_left(segs, prefix, key=lambda s: s.prefix)
    return i if i < len(segs) and segs[i].prefix == prefix else None


def tree(m: Manifest, prefix: bytes) -> Tree | None:
    """The tree of ``prefix`` (``b""``: the root), or ``None`` when no such segment exists."""
    if not prefix:
        return _root(m)
    i = _index(m, prefix)
    return None if i is None else _seg_tree(m.segments[i])


def replace_tree(
    m: Manifest,
    prefix: bytes,
    *,
    l0: list[SstView],
    compacted: list[SortedRun],
    last_compacted_l0_view_id: Ulid | None,
) -> Manifest:
    """``m`` with the tree of ``prefix`` replaced (a segment is inserted in prefix order when
    it does not exist yet). A segment left with no L0 and no run stays listed, as SlateDB keeps
    it."""
    if not prefix:
        return dataclasses.replace(
            m, l0=l0, compacted=compacted, last_compacted_l0_view_id=last_compacted_l0_view_id
        )
    seg = Segment(prefix, last_compacted_l0_view_id, l0, compacted)
    segs = list(m.segments)
    i = _index(m, prefix)
    if i is None:
        bisect.insort(segs, seg, key=lambda s: s.prefix)
    else:
        segs[i] = seg
    return dataclasses.replace(m, segments=segs)


def add_l0(m: Manifest, prefix: bytes, view: SstView) -> Manifest:
    """``m`` with ``view`` published as the newest L0 of the tree of ``prefix`` (creating the
    segment in prefix order if needed).

    :raises InvalidError: ``prefix`` would nest with an existing segment prefix.
    """
    t = tree(m, prefix)
    if t is None:
        _check_joins(m.segments, prefix)
        return replace_tree(m, prefix, l0=[view], compacted=[], last_compacted_l0_view_id=None)
    return replace_tree(
        m,
        prefix,
        l0=[view, *t.l0],
        compacted=t.compacted,
        last_compacted_l0_view_id=t.last_compacted_l0_view_id,
    )


def all_views(m: Manifest) -> Iterator[SstView]:
    """Every SST view of every tree (L0s, then sorted-run members)."""
    for t in trees(m):
        yield from t.l0
        for run in t.compacted:
            yield from run.ssts


def max_l0_ssts(m: Manifest) -> int:
    """The longest L0 of any tree (L0 backpressure applies per tree, as in SlateDB)."""
    return max(len(t.l0) for t in trees(m))


def max_l0_overlap(m: Manifest) -> int:
    """The most L0 SSTs of one tree covering a single key (SlateDB's ``max_l0_overlap``: the
    per-key read amplification that ``l0_max_ssts_per_key`` bounds)."""
    return max(max_overlap(t.l0) for t in trees(m))


def max_overlap(views: Sequence[SstView]) -> int:
    """The most ``views`` whose effective ranges (:func:`~shale.meta.projection.
    effective_range`) hold one key: 1 for disjoint views, ``len(views)`` when one key is in
    all; views that can show no key do not count."""
    events: list[tuple[bytes, int]] = []  # (position, +1 start / -1 end), half-open ranges
    for view in views:
        eff = effective_range(view)
        if eff is None:
            continue
        kind, key = eff.start_bound
        events.append((b"" if key is None else key if kind == _INCLUDED else key + b"\x00", 1))
        kind, key = eff.end_bound
        if key is not None:  # a range without an end never closes
            events.append((key + b"\x00" if kind == _INCLUDED else key, -1))
    events.sort()  # at one position ends (-1) come before starts: [a, b) and [b, c) are apart
    peak = depth = 0
    for _, step in events:
        depth += step
        peak = max(peak, depth)
    return peak


# -- routing -------------------------------------------------------------------------------------


def owning_prefix(prefixes: Sequence[bytes], key: bytes) -> int | None:
    """Index of the prefix in the sorted antichain ``prefixes`` that starts ``key``, or
    ``None``."""
    i = bisect.bisect_right(prefixes, key) - 1
    if i >= 0 and key.startswith(prefixes[i]):
        return i
    return None


def tree_for_key(m: Manifest, key: bytes) -> Tree:
    """The tree a point lookup of ``key`` reads: the owning segment's, else the root."""
    segs = m.segments
    if segs:
        i = bisect.bisect_right(segs, key, key=lambda s: s.prefix) - 1
        if i >= 0 and key.startswith(segs[i].prefix):
            return _seg_tree(segs[i])
    return _root(m)


def trees_for_range(m: Manifest, start: bytes | None, end: bytes | None) -> list[Tree]:
    """The trees a scan of ``start <= key < end`` reads: the root and every segment whose
    interval overlaps the range (SlateDB's ``overlapping_segment_indices``), in prefix order."""
    segs = m.segments
    out = [_root(m)]
    if not segs:
        return out
    if start is None:
        lo = 0
    else:
        after = bisect.bisect_right(segs, start, key=lambda s: s.prefix)
        lo = after - 1 if after > 0 and start.startswith(segs[after - 1].prefix) else after
    hi = len(segs) if end is None else bisect.bisect_left(segs, end, key=lambda s: s.prefix)
    out.extend(_seg_tree(s) for s in segs[lo:hi])
    return out


# -- checks --------------------------------------------------------------------------------------


def _check_joins(segments: Sequence[Segment], prefix: bytes) -> None:
    prefixes = [s.prefix for s in segments]
    i = bisect.bisect_left(prefixes, prefix)
    if i < len(prefixes) and prefixes[i] == prefix:
        return
    for other in (prefixes[i - 1] if i > 0 else None, prefixes[i] if i < len(prefixes) else None):
        if other is not None and (prefix.startswith(other) or other.startswith(prefix)):
            raise InvalidError(
                "segment prefix would nest with an existing segment prefix",
                prefix=prefix,
                conflict=other,
            )


def check_manifest(m: Manifest) -> None:
    """Refuse a manifest whose segments shale cannot read correctly (before any read).

    :raises InvalidError: naming the feature: an empty segment prefix, prefixes out of order
        or repeated, or nested prefixes (not an antichain), a sorted run id used twice.
    """
    prev: bytes | None = None
    for s in m.segments:
        if not s.prefix:
            raise InvalidError("unsupported manifest: a segment with an empty prefix")
        if prev is not None:
            if s.prefix <= prev:
                raise InvalidError(
                    "unsupported manifest: segments out of prefix order or repeated",
                    prefix=s.prefix,
                    previous=prev,
                )
            if s.prefix.startswith(prev):
                raise InvalidError(
                    "unsupported manifest: segment prefixes nest (not an antichain)",
                    prefix=s.prefix,
                    conflict=prev,
                )
        prev = s.prefix
    seen: set[int] = set()
    for t in trees(m):
        for run in t.compacted:
            if run.id in seen:
                raise InvalidError(
                    "unsupported manifest: a sorted run id appears in two trees", run=run.id
                )
            seen.add(run.id)


def check_writer(m: Manifest, extractor: PrefixExtractor | None) -> None:
    """Whether a writer with ``extractor`` may open the database of manifest ``m``
    (SlateDB's ``validate_extractor_configuration``).

    :raises InvalidError: a segmented database opened without an extractor, or with one of
        another name, or one that no longer recognises a persisted prefix; or an extractor
        given for a database created without one.
    """
    persisted = m.segment_extractor_name
    configured = None if extractor is None else extractor.name
    if persisted is None and configured is None:
        if m.segments:
            raise InvalidError(
                "this database has segments but records no segment extractor; "
                "shale cannot write to it",
                segments=len(m.segments),
            )
        return
    if persisted != configured:
        if configured is None:
            raise InvalidError(
                "this database is segmented: open it with prefix_extractor="
                f"{persisted!r} (or settings.prefix_extractor) to write to it",
                persisted=persisted,
            )
        if persisted is None:
            raise InvalidError(
                "this database was created without a segment extractor; one cannot be added later",
                configured=configured,
            )
        raise InvalidError(
            "segment extractor mismatch: the database records another extractor",
            persisted=persisted,
            configured=configured,
        )
    assert extractor is not None
    for s in m.segments:
        try:
            n = extractor.prefix_len(s.prefix, scan_prefix=True)
        except Exception as exc:
            raise InvalidError(
                "the segment extractor failed", extractor=extractor.name, prefix=s.prefix
            ) from exc
        if n != len(s.prefix):
            raise InvalidError(
                "the segment extractor does not recognise a persisted segment prefix",
                extractor=extractor.name,
                prefix=s.prefix,
                prefix_len=n,
            )


def initial_manifest(extractor: PrefixExtractor | None) -> Manifest:
    """The manifest a new database starts with, recording ``extractor``'s name if any."""
    m = Manifest.initial()
    if extractor is None:
        return m
    return dataclasses.replace(m, segment_extractor_name=extractor.name)
