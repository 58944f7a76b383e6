"""Reads (SlateDB's ``reader``): point lookups and the row sources of iterators, over a
:class:`DbView` bounded by a seq.

Invariants: a read fixes its bound (``max_seq``) and its view *before* it looks, and takes no
lock while it reads -- memtables only grow and views are immutable. Newest data wins: the
memtables, then each tree's L0 SSTs newest first, then its sorted runs; the first version that
is not a merge operand ends a point lookup. Clone SSTs are only visible inside their
``visible_range``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from shale.clock import MonotonicClock
from shale.engine import components, point
from shale.engine.db_state import DbState, DbView
from shale.engine.point import Plan
from shale.engine.table_store import TableStore
from shale.fbs.manifest import Manifest, SstView
from shale.merge_operators import Resolved, resolve_versions
from shale.meta import segments
from shale.row import VALUE
from shale.settings import Settings
from shale.sst.prefix_bloom import range_prefix
from shale.sst.table import ScanFetch


class KeyValue(NamedTuple):
    """A key's resolved value and its metadata."""

    key: bytes
    value: bytes
    seq: int
    create_ts: int | None
    expire_ts: int | None


def _newest_first_per_key(rows: Iterator[tuple]) -> Iterator[tuple]:  # type: ignore[type-arg]
    """Re-order each run of equal keys by seq descending (rows otherwise pass through)."""
    held: list[tuple] = []  # type: ignore[type-arg]
    for r in rows:
        if held and r[0] != held[0][0]:
            if len(held) > 1:
                held.sort(key=_neg_seq)
            yield from held
            held = []
        held.append(r)
    if len(held) > 1:
        held.sort(key=_neg_seq)
    yield from held


def _neg_seq(row: tuple) -> int:  # type: ignore[type-arg]
    return -int(row[1])


class Reader:
    """Reads one database's state through its table store."""

    def __init__(
        self,
        state: DbState,
        tables: TableStore,
        settings: Settings,
        stats: collections.Counter[str],
        *,
        clock: MonotonicClock,
        merge_operator: Any,
    ) -> None:
        self.state = state
        self.tables = tables
        self.settings = settings
        self.stats = stats
        self.clock = clock
        self.merge_operator = merge_operator
        #: whether a configured filter policy filters prefixes: scans inside one prefix then
        #: ask each SST's prefix filter before reading it
        self.prefix_filtering = any(
            getattr(p, "prefix_extractor", None) is not None for p in tables.filter_policies
        )
        # the point lookups' plans of one manifest (shale.engine.point): (the manifest, the
        # root's plan or None when it has segments, {tree prefix: plan})
        self._plans: tuple[Manifest | None, Plan | None, dict[bytes, Plan]] = (None, None, {})

    def _plan(self, m: Manifest, key: bytes) -> Plan:
        """The plan of the tree of ``m`` that owns ``key`` (the root's, or a segment's)."""
        cached = self._plans
        if cached[0] is not m:
            root = None if m.segments else point.plan(m.l0, m.compacted)
            cached = self._plans = (m, root, {})
        if cached[1] is not None:
            return cached[1]
        tree = segments.tree_for_key(m, key)
        p = cached[2].get(tree.prefix)  # a tree object is made per call; its prefix is its name
        if p is None:
            p = cached[2][tree.prefix] = point.plan(tree.l0, tree.compacted)
        return p

    def with_state(self, state: DbState) -> Reader:
        """A reader of ``state`` sharing everything else (a read-only snapshot's)."""
        return Reader(
            state,
            self.tables,
            self.settings,
            self.stats,
            clock=self.clock,
            merge_operator=self.merge_operator,
        )

    def hide_expired(self, include_expired: bool | None) -> bool:
        """Whether rows past their TTL are hidden (``include_expired`` checked)."""
        if include_expired is None:
            return self.settings.hide_expired
        if type(include_expired) is not bool:
            components.check_include_expired(include_expired)
        return not include_expired

    # -- point lookups -------------------------------------------------------------------

    def get(self, key: bytes, max_seq: int, include_expired: bool | None) -> KeyValue | None:
        """``key``'s value as of ``max_seq`` (``key`` already checked)."""
        res = self.lookup(key, max_seq, include_expired)
        return None if res is None else KeyValue(key, *res)

    def lookup(self, key: bytes, max_seq: int, include_expired: bool | None) -> Resolved | None:
        """``key``'s ``(value, seq, create_ts, expire_ts)`` as of ``max_seq``, or ``None``
        (``key`` already checked): :meth:`get` without the :class:`KeyValue`."""
        if include_expired is None:
            hide = self.settings.hide_expired
        else:
            hide = self.hide_expired(include_expired)
        memtables, m = self.state.parts  # one published pair: a consistent view
        cached = self._plans
        p = cached[1] if cached[0] is m and cached[1] is not None else self._plan(m, key)
        versions = point.point_versions(memtables, p, key, max_seq, self.tables)
        self.stats["get_count"] += 1
        if not versions:
            return None
        r = versions[0]
        # the common case: the newest visible version is a live plain value
        if r[2] == VALUE and (r[4] is None or not hide or r[4] > self.clock.now_ms()):
            return (r[3], r[1], r[5], r[4])
        return resolve_versions(
            versions, self.merge_operator, now_ms=self.clock.now_ms(), hide_expired=hide
        )

    # -- iterator sources ----------------------------------------------------------------

    def sources(
        self,
        v: DbView,
        start: bytes | None,
        end: bytes | None,
        reverse: bool,
        cache_blocks: bool = True,
        fetch: ScanFetch | None = None,
    ) -> list[Iterator[tuple]]:  # type: ignore[type-arg]
        """One row iterator per memtable, L0 SST and sorted run of ``v`` over
        ``[start, end)``, each in merge order (key, then newest version first).
        ``cache_blocks=False``: SST blocks read are not inserted into the block cache.
        ``fetch``: the scan's read-ahead of SST blocks (``None``: the default).
        When the whole range lies inside one key prefix, an SST whose prefix filter rules that
        prefix out is skipped (counted in ``stats["sst_filter_prefix_negatives"]``)."""
        probe = range_prefix(start, end) if self.prefix_filtering else None
        srcs: list[Iterator[tuple]] = [  # type: ignore[type-arg]
            mt.iter_rows(start, end, max_seq=v.max_seq, reverse=reverse, to_base=True)
            for mt in v.memtables
        ]
        # segments own disjoint key intervals: every tree overlapping the range is one more
        # group of sources for the same merge
        for tree in segments.trees_for_range(v.manifest, start, end):
            for view in tree.l0:
                srcs.append(
                    self._sst_rows(v, [view], start, end, reverse, cache_blocks, fetch, probe)
                )
            for run in tree.compacted:
                srcs.append(
                    self._sst_rows(v, run.ssts, start, end, reverse, cache_blocks, fetch, probe)
                )
        return srcs

    def _sst_rows(
        self,
        v: DbView,
        views: Sequence[SstView],
        start: bytes | None,
        end: bytes | None,
        reverse: bool,
        fill: bool = True,
        fetch: ScanFetch | None = None,
        probe: bytes | None = None,
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        if reverse and len(views) > 1:
            # a key's versions may span adjacent SSTs; reversed SST by SST they would come
            # oldest part first, so put each key's versions back in newest-first order
            return _newest_first_per_key(
                self._views_rows(v, views, start, end, reverse, fill, fetch, probe)
            )
        return self._views_rows(v, views, start, end, reverse, fill, fetch, probe)

    def _views_rows(
        self,
        v: DbView,
        views: Sequence[SstView],
        start: bytes | None,
        end: bytes | None,
        reverse: bool,
        fill: bool = True,
        fetch: ScanFetch | None = None,
        probe: bytes | None = None,
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Rows of ``views`` in ``[start, end)``; ``probe``: the prefix every key of the range
        starts with (:func:`~shale.sst.prefix_bloom.range_prefix`), tested against prefix
        filters."""
        max_seq = v.max_seq
        order = reversed(views) if reverse else views
        for view in order:
            info = view.sst.info
            if end is not None and info.first_entry is not None and info.first_entry >= end:
                continue
            if start is not None and info.last_entry is not None and info.last_entry < start:
                continue
            table = self.tables.open(view)
            if probe is not None and not table.may_contain_prefix(probe):
                self.stats["sst_filter_prefix_negatives"] += 1
                continue
            rows = table.iter_rows(start, end, reverse=reverse, fill=fill, fetch=fetch)
            if view.visible_range is None and max_seq >= v.manifest.last_l0_seq:
                yield from rows  # every SST row is visible: no per-row filter
                continue
            check = view.visible_range is not None
            for r in rows:
                if r[1] <= max_seq and (not check or view.visible_range.contains(r[0])):  # type: ignore[union-attr]
                    yield r
