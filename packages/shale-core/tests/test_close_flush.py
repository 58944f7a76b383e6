"""``close(flush=...)`` (SlateDB's ``CloseOptions.flush_type``): ``"wal"`` (the default) flushes
the WAL buffer, ``"memtable"`` also every memtable to L0 (the next open replays nothing),
``None`` nothing (writes not durable yet are dropped, with a warning). A bad value is refused
before anything stops."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from shale import Admin, ClosedError, Db, InvalidError, UnavailableError
from shale.aio import AsyncDb
from shale.objstore.memory import MemoryStore
from shale.settings import Settings
from shale_faults import FaultRule, FaultyStore

ROOT = "db"
FAST = Settings(
    flush_interval=None,  # only explicit flushes: what close flushes is all that is flushed
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)


def _objects(store: MemoryStore, sub: str) -> list[str]:
    return [m.key for m in store.list(f"{ROOT}/{sub}/")]


def _manifest(store: MemoryStore) -> object:
    """The manifest close() left (read before anything reopens the database)."""
    return Admin(ROOT, object_store=store).read_manifest().manifest


def _write(db: Db) -> None:
    db.put(b"durable", b"1")  # waits for its own WAL flush
    db.put(b"lazy", b"2", durable=False)  # only in the buffer when close() starts


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "no-wal"])
def test_default_and_wal_flush_the_wal_only(wal: bool) -> None:
    for flush in ("wal", "default"):
        store = MemoryStore()
        settings = FAST.replace(wal_enabled=wal)
        db = Db.open(ROOT, settings, object_store=store)
        _write(db)
        if flush == "default":
            db.close()
        else:
            db.close(flush="wal")
        assert db.close_reason == "clean"
        # with the WAL the memtable stays in it: nothing in L0; without, close writes L0
        assert _manifest(store).last_l0_seq == (0 if wal else 2)  # type: ignore[attr-defined]
        with Db.open(ROOT, settings, object_store=store) as again:
            assert again.get(b"durable") == b"1" and again.get(b"lazy") == b"2"


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "no-wal"])
def test_memtable_flushes_everything_to_l0(wal: bool) -> None:
    store = MemoryStore()
    settings = FAST.replace(wal_enabled=wal, l0_max_ssts=1)
    db = Db.open(ROOT, settings, object_store=store)
    db.put(b"first", b"0")
    db.flush(memtable=True)  # L0 is full now (l0_max_ssts=1) and nothing compacts it
    if wal:
        _write(db)
    else:  # a durable write without a WAL would wait for room in L0
        db.put(b"durable", b"1", durable=False)
        db.put(b"lazy", b"2", durable=False)
    db.close(flush="memtable")
    assert db.close_reason == "clean"
    assert len(_objects(store, "compacted")) == 2  # past l0_max_ssts: no writer is left
    m = _manifest(store)
    assert m.last_l0_seq == 3  # type: ignore[attr-defined]
    if wal:  # every WAL is covered by L0: the next open replays nothing
        wal_ids = [int(k.rsplit("/", 1)[1].split(".")[0]) for k in _objects(store, "wal")]
        assert m.replay_after_wal_id == max(wal_ids)  # type: ignore[attr-defined]
    with Db.open(ROOT, settings, object_store=store) as again:
        assert again.get(b"durable") == b"1" and again.get(b"lazy") == b"2"


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "no-wal"])
def test_none_drops_what_is_not_durable(wal: bool, caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    settings = FAST.replace(wal_enabled=wal)
    db = Db.open(ROOT, settings, object_store=store)
    if wal:
        _write(db)
    else:  # without a WAL nothing is durable before an L0 flush
        db.put(b"durable", b"1", durable=False)
        db.flush()
        db.put(b"lazy", b"2", durable=False)
    with caplog.at_level(logging.WARNING, logger="shale"):
        db.close(flush=None)
    assert db.close_reason == "clean"
    assert "1 writes (seq 2..2) that were not durable are dropped" in caplog.text
    with Db.open(ROOT, settings, object_store=store) as again:
        assert again.get(b"durable") == b"1" and again.get(b"lazy") is None
    with pytest.raises(ClosedError):
        db.put(b"x", b"y")


@pytest.mark.parametrize("bad", ["WAL", "mem_table", 1, True, b"wal"], ids=repr)
def test_bad_flush_is_refused_and_the_database_stays_open(bad: object) -> None:
    store = MemoryStore()
    db = Db.open(ROOT, FAST, object_store=store)
    db.put(b"a", b"1", durable=False)
    with pytest.raises(InvalidError, match="flush must be 'wal', 'memtable' or None"):
        db.close(flush=bad)  # type: ignore[arg-type]
    assert db.close_reason is None
    db.put(b"b", b"2")
    db.close()
    with Db.open(ROOT, FAST, object_store=store) as again:
        assert again.get(b"a") == b"1" and again.get(b"b") == b"2"


def test_second_close_is_harmless_whatever_it_asks() -> None:
    store = MemoryStore()
    db = Db.open(ROOT, FAST, object_store=store)
    db.put(b"a", b"1", durable=False)
    db.close(flush="wal")
    db.close(flush="memtable")  # already closed: nothing more happens
    db.close(flush=None)
    assert _objects(store, "compacted") == []
    with Db.open(ROOT, FAST, object_store=store) as again:
        assert again.get(b"a") == b"1"


def test_memtable_flush_failing_at_close_loses_nothing() -> None:
    """L0 writes fail for good: close says so, and every write is still in the WAL."""
    store = MemoryStore()
    # SST names are ULIDs ("01..." for centuries to come); the open's write probe is not one
    sst_puts = FaultRule(ops="put,put_if_absent", prefix=f"{ROOT}/compacted/0")
    faulty = FaultyStore(store, [sst_puts])
    db = Db.open(ROOT, FAST, object_store=faulty)  # type: ignore[arg-type]
    _write(db)
    with pytest.raises(UnavailableError, match="nothing is lost"):
        db.close(flush="memtable")
    assert _objects(store, "compacted") == []
    with Db.open(ROOT, FAST, object_store=store) as again:
        assert again.get(b"durable") == b"1" and again.get(b"lazy") == b"2"


def test_asyncio(tmp_path: Path) -> None:
    async def main() -> None:
        db = await AsyncDb.open(tmp_path / "db", FAST)
        await db.put(b"a", b"1", durable=False)
        with pytest.raises(InvalidError):
            await db.close(flush="bogus")  # type: ignore[arg-type]
        await db.close(flush="memtable")
        again = await AsyncDb.open(tmp_path / "db", FAST)
        try:
            assert await again.get(b"a") == b"1"
            assert again.sync.manifest().last_l0_seq == 1  # flushed by the close
        finally:
            await again.close(flush=None)

    asyncio.run(main())
