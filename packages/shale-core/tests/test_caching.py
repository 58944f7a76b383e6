"""Cache controls of a database: scan(cache_blocks=False), warm_sst / evict_cached_sst,
cache_stats, and the object-store disk cache wired through Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shale import Db, DbReader, InvalidError, Settings
from shale.meta import segments
from shale.objstore.cached import CachedObjectStore
from shale.objstore.memory import MemoryStore

N = 3000


def _settings(**kw: Any) -> Settings:
    return Settings(
        compactor_options=None,
        garbage_collector_options=None,
        flush_interval=None,
        block_cache_bytes=8 << 20,
        **kw,
    )


def _fill(db: Db, n: int = N) -> None:
    for i in range(n):
        db.put(b"k%06d" % i, b"v%06d" % i * 8, durable=False)
        if i % 1000 == 999:  # several SSTs whatever the flusher's timing (a fast fill may
            db.flush(memtable=True)  # otherwise freeze the whole memtable once)
    db.flush(memtable=True)


def _flushed_db(store: MemoryStore, **kw: Any) -> Db:
    db = Db.open("db", _settings(l0_sst_size_bytes=16 * 1024, **kw), object_store=store)
    _fill(db)
    db.close()
    return Db.open("db", _settings(**kw), object_store=store)


def _sst_ids(db: Db) -> list[str]:
    return [str(v.sst.id) for v in segments.all_views(db._inner.state.manifest)]


@pytest.fixture
def db() -> Any:
    d = _flushed_db(MemoryStore())
    assert len(_sst_ids(d)) >= 2, "the test needs SSTs"
    yield d
    d.close()


def test_scan_without_cache_blocks_leaves_the_cache_unchanged(db: Db) -> None:
    expected = list(db.scan())  # fills the cache with every block
    db.block_cache.clear()
    db.get(b"k000010")  # one cached block
    keys = db.block_cache.keys()
    inserts = db.block_cache.stats()["inserts"]
    assert list(db.scan(cache_blocks=False)) == expected
    assert list(db.scan(b"k000500", b"k002000", reverse=True, cache_blocks=False)) == [
        kv for kv in reversed(expected) if b"k000500" <= kv[0] < b"k002000"
    ]
    assert db.block_cache.keys() == keys
    assert db.block_cache.stats()["inserts"] == inserts
    list(db.scan())  # the default still caches
    assert len(db.block_cache.keys()) > len(keys)
    with pytest.raises(InvalidError):
        db.scan(cache_blocks="no")  # type: ignore[arg-type]


def test_reader_scan_without_cache_blocks(db: Db) -> None:
    reader = DbReader.open("db", settings=_settings(), object_store=db.store)
    try:
        expected = list(db.scan())
        assert list(reader.scan(cache_blocks=False)) == expected
        assert reader.cache_stats()["data"]["entries"] == 0
        assert list(reader.scan()) == expected
        assert reader.cache_stats()["data"]["entries"] > 0
    finally:
        reader.close()


def _blocks_of(db: Db, sst: str) -> list[Any]:
    view = next(v for v in segments.all_views(db._inner.state.manifest) if str(v.sst.id) == sst)
    _store, key = db._inner.tables.ssts.locate(view.sst.id)
    return [k for k in db.block_cache.keys() if k[0] == key]  # type: ignore[index]


def test_warm_and_evict_one_sst(db: Db) -> None:
    first, second = _sst_ids(db)[:2]
    db.warm_sst(first, ["index"])
    assert _blocks_of(db, first) == []
    assert db.cache_stats()["metadata"]["entries"] == 1
    db.warm_sst(first)  # everything
    table = db._inner.tables.open(
        next(v for v in segments.all_views(db._inner.state.manifest) if str(v.sst.id) == first)
    )
    assert len(_blocks_of(db, first)) == table.block_count
    assert _blocks_of(db, second) == []
    db.warm_sst(second, [("data", table.last_key, None)])  # a range: only some blocks
    assert 0 < len(_blocks_of(db, second))
    db.evict_cached_sst(first)
    assert _blocks_of(db, first) == []
    assert _blocks_of(db, second)
    assert db.cache_stats()["metadata"]["entries"] == 1  # the second SST's metadata stays
    db.warm_sst("01ARZ3NDEKTSV4RRFFQ69G5FAV")  # not in the manifest: a no-op
    db.evict_cached_sst("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    with pytest.raises(InvalidError):
        db.warm_sst(first, ["everything"])
    with pytest.raises(InvalidError):
        db.warm_sst("not-a-ulid")


def test_cache_stats_hit_rates(db: Db) -> None:
    db.block_cache.clear()
    stats = db.cache_stats()
    assert set(stats) == {"data", "metadata"}
    db.get(b"k000001")
    db.get(b"k000001")
    data = db.cache_stats()["data"]
    assert data["hits"] >= 1 and 0.0 < data["hit_rate"] < 1.0
    assert data["size_bytes"] > 0 and data["capacity_bytes"] == 8 << 20
    m = db.metrics()
    assert m["cache_bytes"] == data["size_bytes"] and m["cache_entries"] == data["entries"]


# -- the disk cache, through Settings ---------------------------------------------------------


def _disk(folder: Path, **kw: Any) -> dict[str, Any]:
    kw.setdefault("root_folder", str(folder))
    kw.setdefault("part_size_bytes", 4096)
    kw.setdefault("scan_interval", None)
    return kw


def test_bad_cache_settings_fail_before_anything_opens(tmp_path: Path) -> None:
    for bad in (
        {"part_size_bytes": 1000},
        {"preload_disk_cache_on_startup": "everything"},
        {"max_cache_size_bytes": -1},
        {"root_folder": ""},
    ):
        with pytest.raises(InvalidError):
            Settings.from_dict({"object_store_cache_options": _disk(tmp_path / "c", **bad)})
    assert not (tmp_path / "c").exists()


def test_disk_cache_serves_a_reopened_database(tmp_path: Path) -> None:
    store = MemoryStore()
    opts = _disk(tmp_path / "c")
    settings = Settings.from_dict({"object_store_cache_options": opts}, _settings())
    with Db.open("db", settings.replace(l0_sst_size_bytes=16 * 1024), object_store=store) as db:
        assert isinstance(db.store, CachedObjectStore)
        _fill(db)
    with DbReader.open("db", settings=settings, object_store=store) as reader:
        expected = list(reader.scan())
        cold = reader.metrics()
    assert len(expected) == N
    assert cold["disk_cache_part_misses"] > 0
    with DbReader.open("db", settings=settings, object_store=store) as reader:
        assert list(reader.scan()) == expected
        warm = reader.metrics()
        assert reader.cache_stats()["disk"]["disk_cache_part_hits"] > 0
    assert warm["disk_cache_part_misses"] == 0 and warm["disk_cache_inner_gets"] == 0


@pytest.mark.parametrize("level", ["L0Sst", "AllSst"])
def test_preload_on_open(tmp_path: Path, level: str) -> None:
    store = MemoryStore()
    base = _settings(l0_sst_size_bytes=16 * 1024)
    with Db.open("db", base, object_store=store) as db:
        _fill(db)
    opts = _disk(tmp_path / "c", preload_disk_cache_on_startup=level)
    settings = Settings.from_dict({"object_store_cache_options": opts}, _settings())
    with DbReader.open("db", settings=settings, object_store=store) as reader:
        loaded = reader.metrics()
        n_l0 = loaded["l0_sst_count"]
        assert n_l0 >= 2
        assert loaded["disk_cache_bytes"] > 0
        list(reader.scan())
        assert reader.metrics()["disk_cache_inner_gets"] == loaded["disk_cache_inner_gets"]


def test_cache_on_flush_caches_the_writers_l0(tmp_path: Path) -> None:
    store = MemoryStore()
    opts = _disk(tmp_path / "c", cache_on_flush=True)
    settings = Settings.from_dict(
        {"object_store_cache_options": opts}, _settings(l0_sst_size_bytes=16 * 1024)
    )
    with Db.open("db", settings, object_store=store) as db:
        _fill(db)
        m = db.metrics()
        assert m["disk_cache_puts_cached"] == m["l0_sst_count"] > 0
        list(db.scan())
        assert db.metrics()["disk_cache_inner_gets"] == 0


def test_admin_applies_the_cache_options(tmp_path: Path) -> None:
    from shale import Admin

    store = MemoryStore()
    with Db.open("db", _settings(), object_store=store) as db:
        db.put(b"k", b"v")
    on = Settings.from_dict({"object_store_cache_options": _disk(tmp_path / "c")})
    assert isinstance(Admin("db", settings=on, object_store=store).store, CachedObjectStore)
    plain = Admin("db", settings=_settings(), object_store=store).store
    assert not isinstance(plain, CachedObjectStore)  # only instrumented (docs/metrics.md)
    assert Admin("db", settings=_settings(), object_store=store, metrics=False).store is store


def test_cache_controls_on_the_asyncio_facade(db: Db) -> None:
    import asyncio

    from shale.aio import AsyncDb, AsyncDbReader

    store = db.store
    db.close()

    async def main() -> None:
        async with AsyncDb.open("db", _settings(), object_store=store) as adb:
            sync = adb.sync
            expected = [kv async for kv in adb.scan()]
            sync.block_cache.clear()
            assert [kv async for kv in adb.scan(cache_blocks=False)] == expected
            assert sync.block_cache.keys() == []  # nothing inserted
            first = _sst_ids(sync)[0]
            await adb.warm_sst(first)
            assert _blocks_of(sync, first)
            adb.evict_cached_sst(first)
            assert _blocks_of(sync, first) == []
            assert set(adb.cache_stats()) >= {"data", "metadata"}
        async with AsyncDbReader.open("db", _settings(), object_store=store) as reader:
            assert [kv async for kv in reader.scan(cache_blocks=False)] == expected
            assert reader.cache_stats()["data"]["entries"] == 0
            await reader.warm_sst(first, ["index"])
            reader.evict_cached_sst(first)

    asyncio.run(main())
