"""Time travel (issue 12): ``snapshot(at_seq=...)`` / ``snapshot(at_time=...)`` on ``Db`` and
``DbReader`` under ``Settings.history_retention``.

A model records the database's state after every seq; snapshots at many past seqs and times must
equal it, across L0 flushes, a compaction, a reopen and a ``DbReader``. Points older than the
retained floor (or in the future) raise ``InvalidError``; versions below the floor really are
dropped (at most the newest one at or below it stays per key); without the setting old versions
are dropped as before.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterable

import pytest

from shale import Db, DbReader, Settings
from shale.clock import ManualClock
from shale.errors import InvalidError
from shale.ids import compacted_path
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions, HistoryRetention
from shale.sst import SsTable
from shale_compactor import FULL, Compactor

ROOT = "db"
T0_MS = 1_700_000_000_000
KEYS = [b"k%02d" % i for i in range(12)]


def _settings(retention: HistoryRetention | None) -> Settings:
    return Settings(
        flush_interval=0.01,
        manifest_poll_interval=0.05,
        compactor_options=None,
        garbage_collector_options=None,
        l0_max_ssts=64,
        history_retention=retention,
    )


def _at(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


class Model:
    """The state after every seq: ``states[s]`` (``states[0]`` is the empty database)."""

    def __init__(self) -> None:
        self.states: list[dict[bytes, bytes]] = [{}]

    @property
    def seq(self) -> int:
        return len(self.states) - 1

    def write(self, db: Db, rng: random.Random, n: int) -> None:
        for _ in range(n):
            key = rng.choice(KEYS)
            state = dict(self.states[-1])
            if rng.random() < 0.2:
                handle = db.delete(key)
                state.pop(key, None)
            else:
                value = b"v%d" % rng.randrange(10**6)
                handle = db.put(key, value)
                state[key] = value
            assert handle.seq == len(self.states)
            self.states.append(state)


def _read(snapshot: object) -> dict[bytes, bytes]:
    scanned = {kv[0]: kv[1] for kv in snapshot.scan()}  # type: ignore[attr-defined]
    assert list(snapshot.scan(reverse=True)) == sorted(  # type: ignore[attr-defined]
        scanned.items(), reverse=True
    )
    for key in KEYS:
        assert snapshot.get(key) == scanned.get(key)  # type: ignore[attr-defined]
    return scanned


def _check_seqs(db: Db | DbReader, model: Model, seqs: Iterable[int]) -> None:
    for s in seqs:
        with db.snapshot(at_seq=s) as snap:
            assert snap.seq == s
            assert _read(snap) == model.states[s], f"at_seq={s}"


def _compact(store: MemoryStore, settings: Settings) -> None:
    c = Compactor(store, ROOT, settings, options=CompactorOptions(poll_interval=0.05))
    try:
        c.submit(FULL)
        (report,) = c.run_once()
    finally:
        c.stop()
    assert report.status == "completed"


def _sst_rows(store: MemoryStore, db: Db) -> list[tuple]:  # type: ignore[type-arg]
    m = db.refresh_manifest()
    views = list(m.l0) + [v for run in m.compacted for v in run.ssts]
    return [
        tuple(r) for v in views for r in SsTable.open(store, compacted_path(ROOT, v.sst.id)).rows()
    ]


def _assert_dropped_below(rows: list[tuple], floor: int) -> None:  # type: ignore[type-arg]
    """Per key and SST set: at most one version at or below ``floor`` (the boundary)."""
    below: dict[bytes, set[int]] = {}
    for key, seq, *_ in rows:
        if seq <= floor:
            below.setdefault(key, set()).add(seq)
    assert all(len(seqs) <= 1 for seqs in below.values()), below


def test_at_seq_follows_the_model_across_flushes_compaction_reopen_and_reader() -> None:
    retention = HistoryRetention(seqs=60)
    settings = _settings(retention)
    store = MemoryStore()
    rng = random.Random(12)
    model = Model()
    db = Db.open(ROOT, settings, object_store=store)
    for round_ in range(10):
        model.write(db, rng, 25)
        db.flush(memtable=True)
        if round_ == 5:
            _compact(store, settings)
        floor = db.manifest().recent_snapshot_min_seq
        # the count window: the newest flushed seq minus 60 (never lowered)
        assert floor == max(0, model.seq - 60)
        _check_seqs(db, model, rng.sample(range(floor, model.seq + 1), 12))
        if floor:
            with pytest.raises(InvalidError, match="older than the retained history"):
                db.snapshot(at_seq=floor - 1)
    _compact(store, settings)
    floor = db.refresh_manifest().recent_snapshot_min_seq
    assert floor == model.seq - 60 == 190
    _assert_dropped_below(_sst_rows(store, db), floor)
    model.write(db, rng, 10)  # a memtable tail, never flushed
    _check_seqs(db, model, range(floor, model.seq + 1))
    with pytest.raises(InvalidError, match="older"):
        db.snapshot(at_seq=0)
    with pytest.raises(InvalidError, match="future"):
        db.snapshot(at_seq=model.seq + 1)
    db.close()

    # the floor lives in the manifest: a reopened writer and a DbReader keep it
    db = Db.open(ROOT, settings, object_store=store)
    try:
        db.flush(memtable=True)  # the replayed tail goes to L0: the window moves to its end
        floor = db.manifest().recent_snapshot_min_seq
        assert floor == model.seq - 60 == 200
        _check_seqs(db, model, range(floor, model.seq + 1, 3))
        with pytest.raises(InvalidError, match="older"):
            db.snapshot(at_seq=floor - 1)
    finally:
        db.close()
    reader = DbReader.open(ROOT, settings, object_store=store)
    try:
        floor = reader.manifest().recent_snapshot_min_seq
        _check_seqs(reader, model, range(floor, model.seq + 1, 3))
        with pytest.raises(InvalidError, match="older"):
            reader.snapshot(at_seq=floor - 1)
        with pytest.raises(InvalidError, match="future"):
            reader.snapshot(at_seq=model.seq + 1)
    finally:
        reader.close()


def test_at_time_follows_the_model_and_the_time_window() -> None:
    retention = HistoryRetention(duration=30.0)
    settings = _settings(retention)
    store = MemoryStore()
    clock = ManualClock(T0_MS)
    rng = random.Random(7)
    model = Model()
    ends: list[int] = []  # the seq after each epoch
    db = Db.open(ROOT, settings, object_store=store, clock=clock)
    try:
        for epoch in range(10):
            clock.set(T0_MS + epoch * 10_000)
            model.write(db, rng, 15)
            ends.append(model.seq)
            db.flush(memtable=True)
            if epoch == 7:
                _compact(store, settings)
        clock.set(T0_MS + 95_000)
        _compact(store, settings)
        m = db.refresh_manifest()
        # the last flush (at T0+90 s) kept 30 s: the tracker's newest pair whose second ended by
        # T0+60 s is epoch 5's (epoch 6 wrote during second T0+60 s)
        assert m.recent_snapshot_min_seq == ends[5]
        _assert_dropped_below(_sst_rows(store, db), ends[5])
        for epoch in range(6, 10):
            start = T0_MS + epoch * 10_000
            with db.snapshot(at_time=_at(start + 5_000)) as snap:  # after the epoch's writes
                assert snap.seq == ends[epoch]
                assert _read(snap) == model.states[ends[epoch]]
            with db.snapshot(at_time=_at(start - 1)) as snap:  # just before them
                assert snap.seq == ends[epoch - 1]
                assert _read(snap) == model.states[ends[epoch - 1]]
        for epoch in range(5):
            with pytest.raises(InvalidError, match="older than the retained history"):
                db.snapshot(at_time=_at(T0_MS + epoch * 10_000 + 5_000))
        with pytest.raises(InvalidError, match="records nothing that old"):
            db.snapshot(at_time=_at(T0_MS - 1))
        with pytest.raises(InvalidError, match="future"):
            db.snapshot(at_time=_at(T0_MS + 95_001))
        with pytest.raises(InvalidError, match="timezone-aware"):
            db.snapshot(at_time=datetime.datetime(2023, 11, 14, 22, 14))
    finally:
        db.close()
    reader = DbReader.open(ROOT, settings, object_store=store, clock=clock)
    try:
        with reader.snapshot(at_time=_at(T0_MS + 65_000)) as snap:
            assert _read(snap) == model.states[ends[6]]
        with pytest.raises(InvalidError, match="older"):
            reader.snapshot(at_time=_at(T0_MS + 5_000))
    finally:
        reader.close()


def test_an_open_past_snapshot_holds_the_floor() -> None:
    settings = _settings(HistoryRetention(seqs=5))
    store = MemoryStore()
    rng = random.Random(3)
    model = Model()
    db = Db.open(ROOT, settings, object_store=store)
    try:
        model.write(db, rng, 40)
        db.flush(memtable=True)
        floor = db.manifest().recent_snapshot_min_seq
        assert floor == 35
        snap = db.snapshot(at_seq=floor)
        model.write(db, rng, 60)
        db.flush(memtable=True)
        # the window moved on, the open snapshot did not: the recorded floor stays at its seq
        assert db.manifest().recent_snapshot_min_seq == floor
        _compact(store, settings)
        assert _read(snap) == model.states[floor]
        snap.close()
        model.write(db, rng, 5)
        db.flush(memtable=True)
        assert db.manifest().recent_snapshot_min_seq == model.seq - 5
        with pytest.raises(InvalidError, match="older"):
            db.snapshot(at_seq=floor)
    finally:
        db.close()


def test_without_retention_old_versions_are_dropped_as_before() -> None:
    settings = _settings(None)
    store = MemoryStore()
    rng = random.Random(5)
    model = Model()
    db = Db.open(ROOT, settings, object_store=store)
    try:
        model.write(db, rng, 100)
        db.flush(memtable=True)
        model.write(db, rng, 100)
        db.flush(memtable=True)
        _compact(store, settings)
        m = db.refresh_manifest()
        assert m.recent_snapshot_min_seq == model.seq == 200
        rows = _sst_rows(store, db)
        assert len(rows) == len({r[0] for r in rows})  # one version per key
        with pytest.raises(InvalidError, match="older"):
            db.snapshot(at_seq=199)
        # what is still in the memtable can be read at any of its seqs
        model.write(db, rng, 20)
        _check_seqs(db, model, range(200, model.seq + 1))
    finally:
        db.close()


def test_bad_points() -> None:
    db = Db.open(ROOT, _settings(HistoryRetention(seqs=10)), object_store=MemoryStore())
    try:
        db.put(b"a", b"1")
        with pytest.raises(InvalidError, match="not both"):
            db.snapshot(at_seq=1, at_time=_at(T0_MS))
        for bad in (-1, True, 1.0, "1"):
            with pytest.raises(InvalidError, match="at_seq must be"):
                db.snapshot(at_seq=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidError, match="must be a datetime"):
            db.snapshot(at_time=T0_MS)  # type: ignore[arg-type]
        with db.snapshot(at_seq=0) as snap:
            assert snap.get(b"a") is None
        with db.snapshot() as snap:
            assert snap.get(b"a") == b"1"
    finally:
        db.close()


def test_history_retention_settings() -> None:
    s = Settings.from_dict({"history_retention": {"duration": "1h", "seqs": 1000}})
    assert s.history_retention == HistoryRetention(duration=3600.0, seqs=1000)
    assert Settings.from_dict(s.to_dict()) == s
    assert Settings().history_retention is None
    with pytest.raises(InvalidError, match=r"history_retention\.seqs"):
        Settings.from_dict({"history_retention": {"seqs": -1}})
    with pytest.raises(InvalidError, match="duration"):
        HistoryRetention(duration=-1.0)


def test_async_snapshot_at_seq() -> None:
    import asyncio

    from shale.aio import AsyncDb

    async def main() -> None:
        settings = _settings(HistoryRetention(seqs=10))
        async with await AsyncDb.open(ROOT, settings, object_store=MemoryStore()) as db:
            first = await db.put(b"a", b"1")
            await db.put(b"a", b"2")
            await db.flush(memtable=True)
            async with db.snapshot(at_seq=first.seq) as snap:
                assert await snap.get(b"a") == b"1"
            with pytest.raises(InvalidError, match="future"):
                db.snapshot(at_seq=first.seq + 5)

    asyncio.run(main())


def test_history_floor_and_time_rounding() -> None:
    from shale.meta.history import history_floor, seq_at_time
    from shale.meta.seq_tracker import SequenceTracker

    tracker = SequenceTracker([10, 20, 30], [100, 110, 120])
    # a pair qualifies once its whole second has ended
    assert seq_at_time(tracker, 110_998) == 10
    assert seq_at_time(tracker, 110_999) == 20
    assert seq_at_time(tracker, 100_998) is None
    now = 130_000
    assert history_floor(None, newest_seq=40, tracker=tracker, now_ms=now) is None
    assert history_floor(HistoryRetention(), newest_seq=40, tracker=tracker, now_ms=now) is None
    assert (
        history_floor(HistoryRetention(seqs=15), newest_seq=40, tracker=tracker, now_ms=now) == 25
    )
    assert history_floor(HistoryRetention(seqs=99), newest_seq=40, tracker=tracker, now_ms=now) == 0
    by_time = HistoryRetention(duration=19.0)  # now - 19 s = 111 s: pair (20, 110) ended by then
    assert history_floor(by_time, newest_seq=40, tracker=tracker, now_ms=now) == 20
    assert (
        history_floor(HistoryRetention(duration=60.0), newest_seq=40, tracker=tracker, now_ms=now)
        == 0
    )
    both = HistoryRetention(duration=19.0, seqs=5)  # either window keeps: the lower floor
    assert history_floor(both, newest_seq=40, tracker=tracker, now_ms=now) == 20
