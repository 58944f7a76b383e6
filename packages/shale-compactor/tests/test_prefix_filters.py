"""Prefix bloom filters (``"_bf:p=<extractor>"``) in compaction outputs and sorted-run scans.

* Every output SST carries each configured filter, byte for byte what the policy builds from the
  output's rows; a prefix bloom cannot be built from the kernel's whole-key hashes, so its jobs
  take the row pipeline (and ``"_bf"`` alone still takes the kernel).
* A scan inside a prefix that no SST of a sorted run holds reads none of its blocks.
* The property: with a prefix bloom configured, ``get``/``scan``/``scan_prefix`` answer exactly
  what they answer without one, over a memtable, L0 SSTs and a sorted run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import Db, Settings
from shale.fbs.manifest import SstView
from shale.ids import compacted_path
from shale.meta.segments import FixedPrefixExtractor
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions
from shale.sst import SsTable
from shale.sst.filters import BloomFilterPolicy, decode_composite
from shale_compactor import FULL, Compactor, subcompactions

ROOT = "db"
OPTS = CompactorOptions(poll_interval=0.05, max_sst_size=4096)


def _settings(*names: str) -> Settings:
    return Settings(
        filter_policies=names,
        min_filter_keys=1,
        flush_interval=0.01,
        manifest_poll_interval=0.05,
        compactor_options=None,
        garbage_collector_options=None,
    )


def _compact(store: MemoryStore, s: Settings, db: Db) -> Compactor:
    c = Compactor(store, ROOT, s, options=OPTS)
    c.submit(FULL)
    (report,) = c.run_once()
    c.stop()
    assert report.status == "completed"
    db.refresh_manifest()
    return c


def _run_views(db: Db) -> Iterator[SstView]:
    for run in db.manifest().compacted:
        yield from run.ssts


def _stored_filters(store: MemoryStore, view: SstView) -> tuple[SsTable, dict[str, bytes]]:
    t = SsTable.open(store, compacted_path(ROOT, view.sst.id))
    raw = t._chunk(t.info.filter_offset, t.info.filter_len, "filter")
    return t, dict(decode_composite(raw))


def _fill(db: Db, rounds: int = 4) -> None:
    for r in range(rounds):
        for i in range(120):
            db.put(b"aaaa%04d" % i, b"a%d-%d" % (r, i) + b"x" * 20)
            db.put(b"cccc%04d" % i, b"c%d-%d" % (r, i) + b"x" * 20)
            if (i + r) % 5 == 0:
                db.delete(b"aaaa%04d" % i)
        db.put(b"zz", b"no prefix")  # shorter than the extractor's prefix
        db.flush(memtable=True)


@pytest.mark.parametrize(
    "names", [("_bf:p=fixed4",), ("_bf:p=fixed4:wh=0", "_bf"), ("_bf", "_bf:p=fixed3")]
)
def test_outputs_carry_the_configured_prefix_filters(names: tuple[str, ...]) -> None:
    store = MemoryStore()
    s = _settings(*names)
    with Db.open(ROOT, s, object_store=store) as db:
        _fill(db)
        c = _compact(store, s, db)
        assert not subcompactions.kernel_applies(c.executor, [])  # the row pipeline wrote them
        policies = c.executor.filter_policies
        assert [p.name for p in policies] == list(names)
        views = list(_run_views(db))
        assert len(views) > 1 and db.manifest().l0 == []
        for view in views:
            table, stored = _stored_filters(store, view)
            keys = [r[0] for r in table.iter_rows()]
            assert list(stored) == list(names)
            for p in policies:
                assert stored[p.name] == p.build(keys), p.name


def test_the_whole_key_bloom_alone_keeps_the_kernel() -> None:
    store = MemoryStore()
    s = _settings("_bf")
    with Db.open(ROOT, s, object_store=store) as db:
        _fill(db, rounds=2)
        c = _compact(store, s, db)
        assert subcompactions.kernel_applies(c.executor, [])
        (policy,) = c.executor.filter_policies
        for view in _run_views(db):
            table, stored = _stored_filters(store, view)
            assert stored == {"_bf": policy.build([r[0] for r in table.iter_rows()])}


def test_scans_skip_sorted_run_ssts() -> None:
    store = MemoryStore()
    s = _settings("_bf:p=fixed4")
    rows = {b"k%03d-%03d" % (p, j): b"v" * 30 for p in range(0, 100, 2) for j in range(10)}
    with Db.open(ROOT, s, object_store=store) as db:
        for k, v in rows.items():
            db.put(k, v)
        db.flush(memtable=True)
        _compact(store, s, db)
    with Db.open(ROOT, s, object_store=store) as db:
        (run,) = db.manifest().compacted
        assert len(run.ssts) > 3
        m0 = db.metrics()
        for p in range(0, 100, 2):  # present prefixes: read as always
            assert list(db.scan_prefix(b"k%03d" % p)) == [
                (k, v) for k, v in sorted(rows.items()) if k.startswith(b"k%03d" % p)
            ]
        m1 = db.metrics()
        assert m1["cache_hits"] + m1["cache_misses"] > m0["cache_hits"] + m0["cache_misses"]
        for p in range(1, 100, 2):  # absent prefixes, inside the SSTs' key ranges
            assert list(db.scan_prefix(b"k%03d" % p)) == []
            assert list(db.scan(b"k%03d-a" % p, b"k%03d-z" % p, reverse=True)) == []
        m2 = db.metrics()
        negatives = m2["sst_filter_prefix_negatives"] - m1.get("sst_filter_prefix_negatives", 0)
        lookups = m2["cache_hits"] + m2["cache_misses"] - m1["cache_hits"] - m1["cache_misses"]
        # 100 scans, nearly each inside one SST's key range: that SST is ruled out without a
        # block read, but for the rare false positive of a 10-bit filter (deterministic here)
        assert negatives >= 90 and lookups < 10


# -- the property ----------------------------------------------------------------------------

_KEY = st.builds(
    lambda p, s: p + s,
    st.sampled_from([b"", b"a", b"ab", b"abc", b"abd", b"b\xff", b"b\xff\xff"]),
    st.binary(max_size=2),
)
_OP = st.tuples(st.sampled_from(["put", "delete", "flush", "compact"]), _KEY, st.binary(max_size=4))
_PREFIXES = [b"", b"a", b"ab", b"abc", b"abcd", b"abd", b"abe", b"b", b"b\xff", b"b\xff\xff", b"c"]


def _apply(db: Db, store: MemoryStore, s: Settings, ops: list[tuple[str, bytes, bytes]]) -> None:
    for op, key, value in ops:
        if op == "put" and key:
            db.put(key, value)
        elif op == "delete" and key:
            db.delete(key)
        elif op == "flush":
            db.flush(memtable=True)
        elif op == "compact" and db.manifest().l0:
            _compact(store, s, db)


def _answers(db: Db, keys: set[bytes], ranges: list[tuple[bytes, bytes]]) -> list[Any]:
    out: list[Any] = [{k: db.get(k) for k in sorted(keys)}]
    out += [list(db.scan_prefix(p)) for p in _PREFIXES]
    out += [list(db.scan_prefix(p, reverse=True)) for p in _PREFIXES]
    for a, b in ranges:
        lo, hi = min(a, b), max(a, b)
        out.append(list(db.scan(lo, hi)))
        out.append(list(db.scan(lo, hi, end_inclusive=True, reverse=True)))
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=st.lists(_OP, max_size=60),
    ranges=st.lists(st.tuples(_KEY, _KEY), max_size=6),
    names=st.sampled_from(
        [("_bf:p=fixed3",), ("_bf:p=fixed2:wh=0",), ("_bf:p=fixed3:wh=0", "_bf:p=fixed1")]
    ),
)
def test_prefix_filters_never_change_answers(
    ops: list[tuple[str, bytes, bytes]],
    ranges: list[tuple[bytes, bytes]],
    names: tuple[str, ...],
) -> None:
    ops = [*ops, ("flush", b"", b""), ("compact", b"", b""), *ops[: len(ops) // 3]]
    ops += [("put", b"abc\x00", b"memtable"), ("flush", b"", b""), ("put", b"abd", b"m2")]
    answers = []
    for s in (_settings("_bf"), _settings(*names)):
        store = MemoryStore()
        with Db.open(ROOT, s, object_store=store) as db:
            _apply(db, store, s, ops)
            keys = {k for _op, k, _v in ops if k} | {b"abz", b"zzz", b"a"}
            answers.append(_answers(db, keys, [r for r in ranges if r[0] and r[1]]))
    assert answers[0] == answers[1]


def test_fixed_extractor_names_match_the_policy() -> None:
    assert BloomFilterPolicy(10, prefix_extractor=FixedPrefixExtractor(3)).name == "_bf:p=fixed3"
