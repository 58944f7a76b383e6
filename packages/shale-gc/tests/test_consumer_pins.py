"""WAL GC and change-stream consumers: a live consumer cursor pins the WAL it has not read, so
every acknowledged write reaches the consumer exactly once across GC; a stale pin (past its
lifetime) pins nothing, and the consumer then gets ChangesGoneError naming the resume seq."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shale
from shale.errors import ChangesGoneError
from shale.fbs.manifest import Manifest
from shale.meta.consumers import ConsumerCursor, read_cursor, write_cursor
from shale.objstore.memory import MemoryStore
from shale.settings import GarbageCollectorOptions, GcDirectoryOptions
from shale_gc import GarbageCollector, GcObject
from shale_gc.rules import KEEP_CONSUMER, KEEP_TOO_YOUNG, GcStateView, select_wal

ROOT = "db"
WAL_ONLY = GarbageCollectorOptions(
    manifest=None,
    wal=GcDirectoryOptions(interval=None, min_age=0),
    compacted=None,
    compactions=None,
)


def _gc(store: MemoryStore) -> Any:
    return GarbageCollector(store, ROOT, WAL_ONLY).run_once()


def _wal_ids(store: MemoryStore) -> list[int]:
    return [f.id for f in shale.WalReader(ROOT, object_store=store).list()]


def _write(db: shale.Db, n: int, tag: bytes, acked: list[int]) -> None:
    for i in range(n):
        acked.append(db.put(b"%s%d" % (tag, i), b"v").seq)


def test_a_pinned_consumer_loses_nothing_across_gc() -> None:
    store = MemoryStore()
    acked: list[int] = []
    got: list[int] = []
    with shale.Db.open(ROOT, object_store=store) as db:
        _write(db, 6, b"a", acked)
        with shale.changes(ROOT, object_store=store, follow=False, consumer="idx") as s:
            got += [next(s).seq for _ in range(2)]
            s.commit()
        pin = read_cursor(store, ROOT, "idx")
        assert pin is not None
        _write(db, 4, b"b", acked)
        db.flush(memtable=True)  # replay_after_wal_id moves past every WAL so far
        report = _gc(store)
        assert report.kinds["wal"].deleted  # GC ran and deleted what nobody needs ...
        assert min(_wal_ids(store)) == pin.wal_id  # ... but not from the pin on
        reasons = {o.id: why for o, why in report.kinds["wal"].kept}
        assert reasons[pin.wal_id] == KEEP_CONSUMER
        _write(db, 3, b"c", acked)
    with shale.changes(ROOT, object_store=store, follow=False, consumer="idx") as s:
        got += [c.seq for c in s]
        s.commit()
    assert got == acked  # each acknowledged write once, in order
    # without a pin, a stream that needs the collected WAL is told where it can resume
    with pytest.raises(ChangesGoneError) as info:
        list(shale.changes(ROOT, 0, object_store=store, follow=False))
    assert info.value.resume_seq == min(c.seq for f in _files(store) for c in f.rows()) - 1


def _files(store: MemoryStore) -> list[shale.WalFile]:
    return shale.WalReader(ROOT, object_store=store).list()


def test_the_pin_moves_with_commits_and_gc_follows() -> None:
    store = MemoryStore()
    acked: list[int] = []
    with shale.Db.open(ROOT, object_store=store) as db:
        _write(db, 5, b"a", acked)
        s = shale.changes(ROOT, object_store=store, follow=False, consumer="idx")
        list(s)
        s.commit()
        _write(db, 2, b"b", acked)
        db.flush(memtable=True)
        _gc(store)
        pin = read_cursor(store, ROOT, "idx")
        assert pin is not None and min(_wal_ids(store)) == pin.wal_id
        assert pin.wal_id > 2
        s.close()


def test_a_stale_pin_pins_nothing_and_the_consumer_is_told() -> None:
    store = MemoryStore()
    acked: list[int] = []
    with shale.Db.open(ROOT, object_store=store) as db:
        _write(db, 3, b"a", acked)
        with shale.changes(ROOT, object_store=store, follow=False, consumer="old") as s:
            next(s)
            s.commit()
        cur = read_cursor(store, ROOT, "old")
        assert cur is not None
        stale = ConsumerCursor(cur.name, cur.seq, cur.wal_id, cur.updated_ms - 10_000, 5.0)
        write_cursor(store, ROOT, stale)
        _write(db, 3, b"b", acked)
        db.flush(memtable=True)
        _gc(store)
        assert min(_wal_ids(store)) > cur.wal_id
    with pytest.raises(ChangesGoneError) as info:
        list(shale.changes(ROOT, object_store=store, follow=False, consumer="old"))
    assert info.value.since_seq == acked[0]
    assert info.value.resume_seq > acked[0]


def test_a_malformed_cursor_keeps_every_wal() -> None:
    store = MemoryStore()
    with shale.Db.open(ROOT, object_store=store) as db:
        _write(db, 3, b"a", [])
        db.flush(memtable=True)
        store.put(f"{ROOT}/shale-consumers/bad.json", b"{not json")
        before = _wal_ids(store)
        report = _gc(store)
        assert report.kinds["wal"].error and "consumer cursor" in report.kinds["wal"].error
        assert _wal_ids(store) == before


def _obj(i: int) -> GcObject:
    return GcObject("wal", f"db/wal/{i:020d}.sst", i, 10, 0.0)


def test_rule_keeps_from_the_lowest_live_pin() -> None:
    m = dataclasses.replace(Manifest.initial(), replay_after_wal_id=10)
    now_s = 1000.0
    live = ConsumerCursor("a", 5, 6, int(now_s * 1000) - 1000, 60.0)
    later = ConsumerCursor("b", 9, 8, int(now_s * 1000), 60.0)
    stale = ConsumerCursor("c", 1, 2, int(now_s * 1000) - 120_000, 60.0)
    view = GcStateView(manifest_id=1, manifest=m, consumers=(live, later, stale))
    sel = select_wal([_obj(i) for i in range(1, 12)], view, now_s=now_s, min_age_s=0)
    assert [o.id for o in sel.delete] == [1, 2, 3, 4, 5]
    reasons = {o.id: why for o, why in sel.keep}
    assert reasons[6] == reasons[9] == KEEP_CONSUMER
    sel = select_wal([_obj(3)], view, now_s=now_s, min_age_s=10_000)
    assert sel.keep[0][1] == KEEP_TOO_YOUNG


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 4)),
        st.tuples(st.just("read"), st.integers(1, 6)),
        st.tuples(st.just("commit"), st.just(0)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("gc"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
        st.tuples(st.just("crash_consumer"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps)
def test_a_pinned_consumer_agrees_with_a_model_under_gc(steps: list[tuple[str, int]]) -> None:
    """Writes, L0 flushes, real WAL GC rounds, writer restarts and consumer crashes (losing
    what it read but had not committed) in any order: the consumer's committed output is every
    acknowledged seq once, in order."""
    store = MemoryStore()
    acked: list[int] = []
    done: list[int] = []  # processed and committed
    pending: list[int] = []  # processed, not committed yet
    db = shale.Db.open(ROOT, object_store=store)

    def consumer() -> shale.ChangeStream:
        return shale.changes(ROOT, object_store=store, follow=False, consumer="m")

    s = consumer()
    try:
        for op, n in steps:
            if op == "write":
                _write(db, n, b"w%d-" % len(acked), acked)
            elif op == "read":
                pending += [c.seq for c in s.read_batch(0, max_rows=n)]
            elif op == "commit" and pending:
                s.commit(pending[-1])
                done += pending
                pending = []
            elif op == "flush":
                db.flush(memtable=True)
            elif op == "gc":
                _gc(store)
            elif op == "restart":
                db.close()
                db = shale.Db.open(ROOT, object_store=store)
            else:  # the consumer crashes: what it had not committed is processed again
                s.close()
                pending = []
                s = consumer()
        db.flush(memtable=True)
        _gc(store)
        s.close()
        s = consumer()
        pending += [c.seq for c in s]
        done += pending
    finally:
        s.close()
        db.close()
    assert done == acked
