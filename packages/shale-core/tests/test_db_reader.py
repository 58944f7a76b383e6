"""shale.DbReader: its modes, options, poller, managed checkpoint, and surviving GC.

Every test runs a real writer (``shale.Db``) and real readers on one store; compaction and GC
are the real ``shale-compactor`` and ``shale-gc`` (the dev environment installs them).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import shale
from shale import DataError, Db, DbReader, InvalidError, ReaderOptions, Settings
from shale.clock import ManualClock
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions

ROOT = "db"
SETTINGS = Settings(
    flush_interval=None,
    compactor_options=None,
    garbage_collector_options=None,
    l0_max_ssts=1000,
)
FAST = ReaderOptions(manifest_poll_interval=0.05, checkpoint_lifetime=1.0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def _writer(store: MemoryStore) -> Db:
    return Db.open(ROOT, SETTINGS, object_store=store)


def _checkpoints(store: MemoryStore) -> list[uuid.UUID]:
    with DbReader.open(ROOT, SETTINGS, object_store=store, mode="follow_latest") as r:
        r.refresh()
        return [c.id for c in r.manifest().checkpoints]


def _wait(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- options and arguments --------------------------------------------------------------------


def test_reader_options_defaults_and_validation() -> None:
    o = ReaderOptions()
    assert (o.manifest_poll_interval, o.checkpoint_lifetime) == (10.0, 600.0)
    assert (o.max_memtable_bytes, o.skip_wal_replay) == (64 * 1024 * 1024, False)
    with pytest.raises(InvalidError, match=">= 1s"):
        ReaderOptions(manifest_poll_interval=0.1, checkpoint_lifetime=0.5)
    with pytest.raises(InvalidError, match="2 x manifest_poll_interval"):
        ReaderOptions(manifest_poll_interval=10, checkpoint_lifetime=15)
    with pytest.raises(InvalidError, match="max_memtable_bytes"):
        ReaderOptions(max_memtable_bytes=0)
    assert ReaderOptions().to_dict()["manifest_poll_interval"] == "10s"


def test_open_arguments(store: MemoryStore) -> None:
    with _writer(store) as db:
        db.put(b"a", b"1")
        cp = db.create_checkpoint()
        for kw in (
            {"mode": "checkpoint"},
            {"mode": "follow_latest", "checkpoint": cp.id},
            {"mode": "latest"},
            {"options": {"skip_wal_replay": True}},
        ):
            with pytest.raises(InvalidError):
                DbReader.open(ROOT, SETTINGS, object_store=store, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no database"):
        DbReader.open("nothing", SETTINGS, object_store=store)


# -- modes ------------------------------------------------------------------------------------


def test_managed_checkpoint_is_created_moved_and_deleted(store: MemoryStore) -> None:
    db = _writer(store)
    db.put(b"a", b"1")
    r = DbReader.open(ROOT, SETTINGS, object_store=store)  # the default mode
    assert r.mode == "managed_checkpoint"
    cp = r.checkpoint
    assert cp is not None and cp.expire_time_s is not None
    assert cp.expire_time_s - cp.create_time_s == 600
    assert [c.id for c in db.refresh_manifest().checkpoints] == [cp.id]
    assert r.manifest_id == cp.manifest_id
    assert r.get(b"a") == b"1"  # from the WAL
    db.put(b"b", b"2")
    r.refresh()  # tails the WAL: the checkpoint stays
    assert r.get(b"b") == b"2" and r.checkpoint is not None and r.checkpoint.id == cp.id
    db.flush(memtable=True)  # L0 changed: the checkpoint moves to the latest manifest
    db.put(b"c", b"3")
    r.refresh()
    moved = r.checkpoint
    assert moved is not None and moved.id != cp.id and moved.manifest_id > cp.manifest_id
    assert [c.id for c in db.refresh_manifest().checkpoints] == [moved.id]
    assert list(r.scan()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    assert r.metrics()["reader_checkpoints_created"] == 2
    r.close()
    assert db.refresh_manifest().checkpoints == []  # deleted on close
    db.put(b"d", b"4")  # the writer was never fenced
    db.close()
    assert db.close_reason == "clean"


def test_managed_checkpoint_is_refreshed_by_the_poller(store: MemoryStore) -> None:
    with _writer(store) as db:
        db.put(b"a", b"1")
        with DbReader.open(ROOT, SETTINGS, object_store=store, options=FAST) as r:
            first = r.checkpoint
            assert first is not None and first.expire_time_s is not None

            def extended() -> bool:
                stored = {c.id: c for c in db.refresh_manifest().checkpoints}[first.id]
                assert stored.expire_time_s is not None and first.expire_time_s is not None
                return stored.expire_time_s > first.expire_time_s

            _wait(extended, timeout=10)  # the poller extended the lease (second resolution)
            now = r.checkpoint
            assert now is not None and now.id == first.id
            assert r.metrics()["reader_checkpoint_refreshes"] >= 1
            db.put(b"b", b"2")
            _wait(lambda: r.get(b"b") == b"2")  # and the poller tails the WAL
        assert db.refresh_manifest().checkpoints == []


def test_managed_checkpoint_removed_by_someone_else_is_recreated(store: MemoryStore) -> None:
    clock = ManualClock(1_700_000_000_000)
    with _writer(store) as db:
        db.put(b"a", b"1")
        opts = ReaderOptions(checkpoint_lifetime=60)
        with DbReader.open(ROOT, SETTINGS, object_store=store, options=opts, clock=clock) as r:
            old = r.checkpoint
            assert old is not None
            db.refresh_manifest()
            db.delete_checkpoint(old.id)  # as GC does once it expired
            clock.advance(31_000)  # past half-life
            r.refresh()
            new = r.checkpoint
            assert new is not None and new.id != old.id
            assert [c.id for c in db.refresh_manifest().checkpoints] == [new.id]
            assert r.get(b"a") == b"1"


def test_checkpoint_mode_is_frozen_and_has_no_poller(store: MemoryStore) -> None:
    with _writer(store) as db:
        db.put(b"a", b"1")
        cp = db.create_checkpoint()
        db.put(b"a", b"2")
        before = {t.name for t in threading.enumerate()}
        with DbReader.open(ROOT, SETTINGS, object_store=store, checkpoint=cp.id, options=FAST) as r:
            assert r.mode == "checkpoint"
            assert "shale-reader-poll" not in {t.name for t in threading.enumerate()} - before
            time.sleep(0.2)
            r.refresh()
            assert r.get(b"a") == b"1" and r.metrics()["reader_polls"] == 0
        assert [c.id for c in db.refresh_manifest().checkpoints] == [cp.id]  # not ours to drop


def test_follow_latest_poller_follows_the_writer_and_writes_nothing(store: MemoryStore) -> None:
    with _writer(store) as db:
        db.put(b"a", b"1")
        db.flush(memtable=True)
        snapshot = {o.key: store.get(o.key) for o in store.list("")}
        seen: list[int] = []
        with DbReader.open(
            ROOT, SETTINGS, object_store=store, mode="follow_latest", options=FAST
        ) as r:
            assert r.checkpoint is None
            assert {o.key: store.get(o.key) for o in store.list("")} == snapshot  # read-only
            for i in range(30):
                db.put(b"k%02d" % i, b"v%d" % i)
                if i % 10 == 9:
                    db.flush(memtable=True)
                seen.append(r.metrics()["last_seq"])
            _wait(lambda: r.get(b"k29") == b"v29")
            assert seen == sorted(seen)  # never back in time
            assert len(list(r.scan_prefix(b"k"))) == 30
            assert r.metrics()["reader_polls"] > 0


def test_replayed_tables_are_cut_and_dropped_once_l0_holds_them(store: MemoryStore) -> None:
    with _writer(store) as db:
        db.put(b"first", b"x")
        opts = ReaderOptions(max_memtable_bytes=1024)
        with DbReader.open(
            ROOT, SETTINGS, object_store=store, mode="follow_latest", options=opts
        ) as r:
            for i in range(40):
                db.put(b"k%02d" % i, b"v" * 100)  # one WAL SST per durable put
            r.refresh()
            m = r.metrics()
            assert m["reader_replayed_tables"] >= 3  # cut at ~1 KiB
            assert m["reader_replayed_bytes"] > 1024
            assert r.get(b"k39") == b"v" * 100
            db.flush(memtable=True)
            r.refresh()
            m = r.metrics()
            assert m["reader_replayed_tables"] == 0 and m["reader_replayed_bytes"] == 0
            assert r.get(b"k39") == b"v" * 100 and r.get(b"first") == b"x"


def test_merge_operands_across_the_l0_boundary_are_read_once(store: MemoryStore) -> None:
    settings = SETTINGS.replace(merge_operator="concat")
    with Db.open(ROOT, settings, object_store=store) as db:
        db.merge(b"log", b"a;")
        with DbReader.open(ROOT, settings, object_store=store, mode="follow_latest") as r:
            db.merge(b"log", b"b;")
            r.refresh()
            assert r.get(b"log") == b"a;b;"
            db.flush(memtable=True)  # L0 now holds a; and b;
            db.merge(b"log", b"c;")
            r.refresh()
            assert r.get(b"log") == b"a;b;c;"


class _LateWal:
    """A store whose listing and reads do not show one WAL SST yet (an upload in flight)."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.hidden: str | None = None

    def list(self, prefix: str = "") -> object:
        return [o for o in self.inner.list(prefix) if o.key != self.hidden]

    def get(self, key: str) -> bytes:
        if key == self.hidden:
            from shale.objstore import ObjectNotFound

            raise ObjectNotFound("not yet", key=key)
        return self.inner.get(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_the_wal_tail_waits_for_a_wal_listed_after_a_later_one(store: MemoryStore) -> None:
    late = _LateWal(store)
    with _writer(store) as db:
        db.put(b"a", b"1")
        with DbReader.open(
            ROOT,
            SETTINGS,
            object_store=late,
            mode="follow_latest",  # type: ignore[arg-type]
        ) as r:
            first = r.metrics()["reader_last_wal_id"]
            db.put(b"b", b"2")
            db.put(b"c", b"3")
            late.hidden = f"{ROOT}/wal/{first + 1:020d}.sst"
            assert late.hidden in {o.key for o in store.list(ROOT + "/wal/")}
            r.refresh()  # WAL first+2 is there, first+1 is not: wait for it
            assert r.get(b"c") is None and r.get(b"b") is None
            assert r.metrics()["reader_last_wal_id"] == first
            late.hidden = None
            r.refresh()
            assert r.get(b"b") == b"2" and r.get(b"c") == b"3"


# -- surviving the writer's compaction and GC -------------------------------------------------


def _compact_and_gc(store: MemoryStore, db: Db, reader: DbReader) -> None:
    """Compact every L0 SST into a sorted run, drop every checkpoint but the reader's (the
    compactor's safety checkpoint too), and collect everything unreferenced at once."""
    compactor = pytest.importorskip("shale_compactor")
    gc = pytest.importorskip("shale_gc")
    c = compactor.Compactor(store, ROOT, SETTINGS, options=CompactorOptions(poll_interval=0.05))
    c.submit(compactor.FULL)
    c.run_once()
    c.stop()
    db.put(b"zz", b"later")
    db.flush(memtable=True)  # (GC keeps SSTs as new as the newest L0 or last compacted one)
    keep = reader.checkpoint.id if reader.checkpoint is not None else None
    for cp in db.refresh_manifest().checkpoints:
        if cp.id != keep:
            db.delete_checkpoint(cp.id)
    now = GcDirectoryOptions(interval=None, min_age=0)
    opts = GarbageCollectorOptions(manifest=now, wal=now, compacted=now, compactions=now)
    gc.GarbageCollector(store, ROOT, opts).run_once()


@pytest.mark.parametrize("mode", ["follow_latest", "managed_checkpoint"])
def test_reader_survives_compaction_and_gc(store: MemoryStore, mode: str) -> None:
    settings = SETTINGS.replace(block_cache_bytes=0)
    with Db.open(ROOT, settings, object_store=store) as db:
        for i in range(50):
            db.put(b"k%02d" % i, b"v%d" % i)
        db.flush(memtable=True)
        with DbReader.open(ROOT, settings, object_store=store, mode=mode) as r:  # type: ignore[arg-type]
            old_l0 = {v.id for v in r.manifest().l0}
            assert old_l0
            _compact_and_gc(store, db, r)
            # the reader has not polled: its manifest names L0 SSTs
            assert r.get(b"k07") == b"v7"
            want = [(b"k%02d" % i, b"v%d" % i) for i in range(40, 50)]
            assert list(r.scan(b"k40", b"k99")) == want
            assert len(list(r.scan_prefix(b"k", reverse=True))) == 50
            retries = r.metrics()["reader_read_retries"]
            if mode == "follow_latest":
                assert retries >= 1  # GC deleted them; the reader retried on a fresh manifest
            else:
                assert retries == 0  # its checkpoint kept them
                r.refresh()
                assert r.manifest().compacted and not old_l0 & {v.id for v in r.manifest().l0}
                _compact_and_gc(store, db, r)  # now the old L0 SSTs may go
                assert r.get(b"k49") == b"v49" and r.get(b"zz") == b"later"


# -- asyncio ----------------------------------------------------------------------------------


def test_async_reader(store: MemoryStore) -> None:
    import asyncio

    from shale.aio import AsyncDbReader

    with _writer(store) as db:
        for i in range(5):
            db.put(b"k%d" % i, b"v%d" % i)

        async def main() -> None:
            async with await AsyncDbReader.open(
                ROOT, SETTINGS, object_store=store, mode="follow_latest"
            ) as r:
                assert await r.get(b"k1") == b"v1"
                kv = await r.get_key_value(b"k2")
                assert kv is not None and kv.value == b"v2"
                assert await r.scan(reverse=True).to_list(2) == [(b"k4", b"v4"), (b"k3", b"v3")]
                assert len(await r.scan_prefix(b"k").to_list()) == 5
                db.put(b"k9", b"v9")
                await r.refresh()
                assert await r.snapshot().get(b"k9") == b"v9"
                assert r.metrics()["reader_polls"] == 1
            assert r.close_reason == "clean"

        asyncio.run(main())
    assert shale.DbReader is DbReader


def test_managed_reader_keeps_an_old_checkpoint_while_a_snapshot_reads_it(
    store: MemoryStore,
) -> None:
    compactor = pytest.importorskip("shale_compactor")
    gc = pytest.importorskip("shale_gc")
    settings = SETTINGS.replace(block_cache_bytes=0)  # every read goes to the store
    with Db.open(ROOT, settings, object_store=store) as db:
        for i in range(50):
            db.put(b"k%02d" % i, b"v%d" % i)
        db.flush(memtable=True)
        r = DbReader.open(ROOT, settings, object_store=store)  # managed
        first = r.checkpoint
        assert first is not None
        snap = r.snapshot()
        c = compactor.Compactor(store, ROOT, SETTINGS, options=CompactorOptions(poll_interval=0.05))
        c.submit(compactor.FULL)
        c.run_once()
        c.stop()
        db.put(b"zz", b"later")
        db.flush(memtable=True)
        r.refresh()  # the tree changed: the reader moves, but the snapshot still reads `first`
        moved = r.checkpoint
        assert moved is not None and moved.id != first.id
        ours = {first.id, moved.id}
        assert ours <= {cp.id for cp in db.refresh_manifest().checkpoints}
        for cp in db.refresh_manifest().checkpoints:  # only the reader's checkpoints protect
            if cp.id not in ours:
                db.delete_checkpoint(cp.id)
        now = GcDirectoryOptions(interval=None, min_age=0)
        opts = GarbageCollectorOptions(manifest=now, wal=now, compacted=now, compactions=now)
        gc.GarbageCollector(store, ROOT, opts).run_once()
        # the snapshot's L0 SSTs were pinned by the retired checkpoint: nothing is missing
        assert len(list(snap.scan())) == 50 and snap.get(b"k07") == b"v7"
        assert snap.get(b"zz") is None
        snap.close()
        r.refresh()  # no snapshot needs `first` any more: it is removed
        assert {cp.id for cp in db.refresh_manifest().checkpoints} == {moved.id}
        assert r.metrics()["reader_checkpoints_released"] == 1
        assert r.get(b"zz") == b"later" and r.get(b"k07") == b"v7"
        r.close()
        assert db.refresh_manifest().checkpoints == []
