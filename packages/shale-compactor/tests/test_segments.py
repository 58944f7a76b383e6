"""Compaction of segmented databases: per-tree scheduling, validation, commits, drains, GC."""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any

import pytest

from shale import Db, Settings
from shale.errors import InvalidError
from shale.fbs.compactions import (
    SPEC_DRAIN_SEGMENT,
    STATUS_RUNNING,
    Compactions,
    decode_compactions,
    encode_compactions,
)
from shale.fbs.manifest import CompactedSst, Manifest, Segment, SortedRun, SstView
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import Ulid
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions
from shale_compactor import FULL, CompactionSpec, Compactor
from shale_compactor.scheduler import (
    SchedulerOptions,
    generate_full,
    next_run_id,
    parse_spec,
    propose,
    validate,
)
from shale_compactor.state import CompactorStateView, apply_compaction, apply_drain

ROOT = "db"
SEG = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    prefix_extractor="fixed3",
    l0_max_ssts=10_000,
)
OPTS = CompactorOptions(poll_interval=0.05, min_compaction_sources=2, max_sst_size=2048)
_ids = itertools.count(1)


# -- pure scheduling ---------------------------------------------------------------------------


def sst(size: int = 100) -> SstView:
    u = Ulid.from_parts(next(_ids), 0)
    info = SsTableInfo(
        first_entry=b"a", index_offset=size, index_len=0, filter_offset=size, filter_len=0
    )
    return SstView(u, CompactedSst(u, info))


def state(
    root_l0: int = 0,
    root_runs: tuple[int, ...] = (),
    segs: dict[bytes, tuple[int, tuple[int, ...]]] | None = None,
    active: list[CompactionSpec] = (),  # type: ignore[assignment]
) -> CompactorStateView:
    segments = [
        Segment(p, None, [sst() for _ in range(n)], [SortedRun(r, [sst()]) for r in runs])
        for p, (n, runs) in sorted((segs or {}).items())
    ]
    m = dataclasses.replace(
        Manifest.initial(),
        l0=[sst() for _ in range(root_l0)],
        compacted=[SortedRun(r, [sst()]) for r in root_runs],
        segments=segments,
        segment_extractor_name="fixed3" if segments else None,
    )
    comps = [
        s.to_compaction(Ulid.from_parts(10_000 + i, 0), STATUS_RUNNING)
        for i, s in enumerate(active)
    ]
    return CompactorStateView(Compactions(1, comps), m)


def test_proposals_are_per_tree_with_unique_run_ids() -> None:
    v = state(root_l0=4, root_runs=(5,), segs={b"aaa": (6, ()), b"bbb": (4, (9,))})
    specs = propose(v, SchedulerOptions(max_concurrent_compactions=8))
    # the tree with the longest L0 first, then the root (ties keep the root first)
    assert [(s.segment, s.destination) for s in specs] == [(b"aaa", 10), (b"", 11), (b"bbb", 12)]
    for s in specs:
        validate(v, s)
        assert len(s.l0) == 4 or (s.segment == b"aaa" and len(s.l0) == 6)


def test_round_robin_respects_the_concurrency_budget() -> None:
    v = state(segs={b"aaa": (4, ()), b"bbb": (4, ()), b"ccc": (4, ())})
    specs = propose(v, SchedulerOptions(max_concurrent_compactions=2))
    assert [s.segment for s in specs] == [b"aaa", b"bbb"]
    busy = state(
        segs={b"aaa": (4, ()), b"bbb": (4, ())},
        active=[CompactionSpec((), (), 3, b"zzz")],
    )
    assert next_run_id(busy) == 4  # an in-flight destination reserves its id


def test_validate_is_per_tree() -> None:
    v = state(root_runs=(0,), segs={b"aaa": (2, (1,)), b"bbb": (1, ())})
    aaa = v.manifest.segments[0]
    bbb = v.manifest.segments[1]
    ok = CompactionSpec(tuple(x.id for x in aaa.l0), (1,), 1, b"aaa")
    validate(v, ok)
    with pytest.raises(InvalidError, match="consecutive"):
        validate(v, dataclasses.replace(ok, segment=b"bbb"))  # aaa's sources in bbb
    with pytest.raises(InvalidError, match="segment the database does not have"):
        validate(v, dataclasses.replace(ok, segment=b"ccc"))
    with pytest.raises(InvalidError, match="unique across"):
        validate(v, CompactionSpec((bbb.l0[0].id,), (), 0, b"bbb"))  # run 0 is the root's
    validate(v, CompactionSpec((bbb.l0[0].id,), (), 2, b"bbb"))
    assert generate_full(v, b"aaa") == ok
    assert generate_full(v, b"bbb").destination == 2
    with pytest.raises(InvalidError, match="no such segment"):
        generate_full(v, b"zzz")


def test_drain_specs() -> None:
    v = state(segs={b"aaa": (3, (4,))})
    seg = v.manifest.segments[0]
    l0 = tuple(x.id for x in seg.l0)
    drain = CompactionSpec(l0[1:], (4,), segment=b"aaa", drain=True)
    validate(v, drain)
    with pytest.raises(InvalidError, match="older than"):
        validate(v, CompactionSpec(l0[:1], (), segment=b"aaa", drain=True))
    with pytest.raises(InvalidError, match="root tree"):
        CompactionSpec(l0, drain=True)
    c = drain.to_compaction(Ulid.from_parts(99, 0))
    assert c.spec_type == SPEC_DRAIN_SEGMENT
    (c2,) = decode_compactions(encode_compactions(Compactions(1, [c])))[1].recent_compactions
    assert CompactionSpec.from_compaction(c2) == drain
    m = apply_drain(v.manifest, c)
    after = m.segments[0]
    assert [x.id for x in after.l0] == [l0[0]] and after.compacted == []
    assert after.last_compacted_l0_view_id == l0[1]
    assert parse_spec(drain.to_json()) == drain
    assert parse_spec({"DrainSegment": {"segment": [97, 97, 97], "l0": [str(u) for u in l0]}}) == (
        CompactionSpec(l0, (), segment=b"aaa", drain=True)
    )


def test_spec_json_round_trips_segments() -> None:
    spec = CompactionSpec((Ulid.from_parts(1, 2),), (3,), 3, b"aaa")
    assert spec.to_json()["segment"] == "aaa"
    assert parse_spec(spec.to_json()) == spec
    binary = dataclasses.replace(spec, segment=b"\x00\xff")
    assert binary.to_json()["segment_hex"] == "00ff"
    assert parse_spec(binary.to_json()) == binary
    assert CompactionSpec((), (3,), 3).to_json() == {
        "l0": [],
        "sorted_runs": [3],
        "destination": 3,
    }


def test_apply_compaction_touches_only_its_tree() -> None:
    v = state(root_l0=2, segs={b"aaa": (2, ()), b"bbb": (2, ())})
    m = v.manifest
    aaa = m.segments[0]
    c = CompactionSpec(tuple(x.id for x in aaa.l0), (), 0, b"aaa").to_compaction(
        Ulid.from_parts(5, 5)
    )
    out = sst()
    m2 = apply_compaction(m, c, [out.sst])
    assert m2.l0 == m.l0 and m2.segments[1] == m.segments[1]
    assert m2.segments[0].l0 == [] and [r.id for r in m2.segments[0].compacted] == [0]
    assert m2.segments[0].last_compacted_l0_view_id == aaa.l0[0].id


# -- end to end ----------------------------------------------------------------------------------


def _write(db: Db, model: dict[bytes, bytes], rnd: random.Random, rounds: int) -> None:
    for r in range(rounds):
        for p in (b"aaa", b"bbb", b"ccc"):
            for i in range(40):
                k = p + b"%03d" % rnd.randrange(60)
                if rnd.random() < 0.15:
                    db.delete(k, durable=False)
                    model.pop(k, None)
                else:
                    v = b"%d-%d-" % (r, i) + b"x" * rnd.randrange(60)
                    db.put(k, v, durable=False)
                    model[k] = v
        db.flush(memtable=True)


def _check(db: Db, model: dict[bytes, bytes]) -> None:
    assert dict(db.scan()) == model
    assert [k for k, _ in db.scan(reverse=True)] == sorted(model, reverse=True)
    for k in [p + b"%03d" % i for p in (b"aaa", b"bbb", b"ccc") for i in range(60)]:
        assert db.get(k) == model.get(k)
    assert [k for k, _ in db.scan_prefix(b"bbb")] == sorted(k for k in model if k[:3] == b"bbb")


def test_compactor_compacts_each_segment_and_gc_keeps_reads(tmp_path: Any) -> None:
    from shale_gc import GarbageCollector

    store = MemoryStore()
    rnd = random.Random(7)
    model: dict[bytes, bytes] = {}
    db = Db.open(ROOT, SEG, object_store=store)
    try:
        _write(db, model, rnd, 1)
        snap = db.snapshot()  # pins older versions through the flushes and the compaction
        snap_model = dict(model)
        _write(db, model, rnd, 2)
        with Compactor(store, ROOT, SEG, options=OPTS) as c:
            reports = c.run_once(timeout=60)
        assert sorted(r.segment for r in reports) == [b"aaa", b"bbb", b"ccc"]
        assert all(r.status == "completed" for r in reports)
        m = db.refresh_manifest()
        assert not m.l0 and not m.compacted
        ids = sorted(r.id for s in m.segments for r in s.compacted)
        assert len(ids) == 3 and len(set(ids)) == 3  # one run per segment, unique ids
        assert all(len(s.compacted[0].ssts) > 1 for s in m.segments)  # tiny max_sst_size
        _check(db, model)
        assert dict(snap.scan()) == snap_model
        assert [k for k, _ in snap.scan(reverse=True)] == sorted(snap_model, reverse=True)
        for k in [p + b"%03d" % i for p in (b"aaa", b"bbb", b"ccc") for i in range(60)]:
            assert snap.get(k) == snap_model.get(k)
        snap.close()
        # more L0s on top of the runs, then a full compaction of one segment
        _write(db, model, rnd, 2)
        with Compactor(
            store,
            ROOT,
            SEG,
            options=OPTS.replace(min_compaction_sources=99, max_compaction_sources=99),
        ) as c:
            cid = c.submit(FULL, segment=b"bbb")
            (report,) = c.run_once(timeout=60)
        assert report.id == cid and report.segment == b"bbb"
        m = db.refresh_manifest()
        bbb = next(s for s in m.segments if s.prefix == b"bbb")
        assert not bbb.l0 and len(bbb.compacted) == 1
        assert all(s.l0 for s in m.segments if s.prefix != b"bbb")
        _check(db, model)
        for cp in db.list_checkpoints():  # the compactor's safety checkpoints pin the inputs
            db.delete_checkpoint(cp.id)
        d = GcDirectoryOptions(interval=None, min_age=0)
        gc = GarbageCollector(store, ROOT, GarbageCollectorOptions(d, d, d, d))
        report_gc = gc.run_once()
        assert report_gc.ok, report_gc.summary()
        assert report_gc.kinds["compacted"].deleted  # the compacted-away SSTs of every tree
        _check(db, model)
    finally:
        db.close()
    with Db.open(ROOT, SEG, object_store=store) as db2:
        _check(db2, model)


def test_drain_retires_a_segment(tmp_path: Any) -> None:
    store = MemoryStore()
    model: dict[bytes, bytes] = {}
    with Db.open(ROOT, SEG, object_store=store) as db:
        _write(db, model, random.Random(1), 2)
        seg = next(s for s in db.manifest().segments if s.prefix == b"aaa")
        spec = CompactionSpec(tuple(v.id for v in seg.l0), (), segment=b"aaa", drain=True)
        with Compactor(
            store,
            ROOT,
            SEG,
            options=OPTS.replace(min_compaction_sources=99, max_compaction_sources=99),
        ) as c:
            c.submit(spec)
            (report,) = c.run_once(timeout=60)
        assert report.status == "completed" and report.drain
        m = db.refresh_manifest()
        aaa = next(s for s in m.segments if s.prefix == b"aaa")
        assert aaa.l0 == [] and aaa.last_compacted_l0_view_id == seg.l0[0].id
        assert len(m.checkpoints) == 1  # the safety checkpoint pins the drained SSTs
        _check(db, {k: v for k, v in model.items() if k[:3] != b"aaa"})
