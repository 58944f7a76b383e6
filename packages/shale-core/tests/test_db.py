"""The database engine: writes, reads, flushes, recovery, fencing, snapshots, checkpoints."""

from __future__ import annotations

import pathlib
import threading

import pytest

import shale
from shale import ClosedError, DataError, InvalidError
from shale.batch import Ttl, WriteBatch
from shale.clock import ManualClock
from shale.db import Db
from shale.objstore.memory import MemoryStore
from shale.settings import Settings

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)


def open_db(path: str | pathlib.Path, settings: Settings = FAST, **kw: object) -> Db:
    return Db.open(str(path), settings, **kw)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    d = open_db(tmp_path / "db")
    yield d
    d.close()


def test_put_get_delete(db: Db) -> None:
    h = db.put(b"k1", b"v1")
    assert h.seq >= 1 and h.create_ts > 0
    assert db.get(b"k1") == b"v1"
    db.put(b"k1", b"v2")
    assert db.get(b"k1") == b"v2"
    db.delete(b"k1")
    assert db.get(b"k1") is None
    assert db.get(b"missing") is None
    kv = db.get_key_value(b"k1")
    assert kv is None


def test_batch_rules(db: Db) -> None:
    b = WriteBatch().put(b"a", b"1").delete(b"a").put(b"b", b"2").put(b"b", b"3")
    h = db.write(b)
    assert db.get(b"a") is None and db.get(b"b") == b"3"
    assert db.get_key_value(b"b").seq == h.seq  # type: ignore[union-attr]
    with pytest.raises(InvalidError):
        db.write(WriteBatch())


@pytest.mark.parametrize("bad", [b"", "str", 5, None, b"x" * 65536])
def test_bad_keys(db: Db, bad: object) -> None:
    with pytest.raises(InvalidError):
        db.put(bad, b"v")  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        db.get(bad)  # type: ignore[arg-type]


def test_bad_values_and_ttl(db: Db) -> None:
    with pytest.raises(InvalidError):
        db.put(b"k", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        db.put(b"k", b"v", ttl=-5)
    assert db.get(b"k") is None  # nothing was written


def test_scan_ranges_reverse_seek_prefix(db: Db) -> None:
    for i in range(50):
        db.put(b"k%03d" % i, b"v%d" % i, durable=False)
    db.delete(b"k010", durable=False)
    keys = [k for k, _ in db.scan()]
    assert keys == [b"k%03d" % i for i in range(50) if i != 10]
    assert [k for k, _ in db.scan(b"k005", b"k012")] == [
        b"k005",
        b"k006",
        b"k007",
        b"k008",
        b"k009",
        b"k011",
    ]
    assert [k for k, _ in db.scan(b"k005", b"k009", reverse=True)] == [
        b"k008",
        b"k007",
        b"k006",
        b"k005",
    ]
    it = db.scan()
    assert next(it)[0] == b"k000"
    it.seek(b"k040")
    assert next(it)[0] == b"k040"
    with pytest.raises(InvalidError):
        it.seek(b"k001")
    assert [k for k, _ in db.scan_prefix(b"k04")] == [b"k%03d" % i for i in range(40, 50)]
    with pytest.raises(InvalidError):
        db.scan(b"z", b"a")


def test_reads_across_memtable_l0_and_reopen(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    with open_db(path) as db:
        for i in range(300):
            db.put(b"key%04d" % i, b"first%d" % i, durable=False)
        db.flush(memtable=True)
        assert db.metrics()["l0_sst_count"] == 1
        for i in range(0, 300, 2):
            db.put(b"key%04d" % i, b"second%d" % i, durable=False)
        for i in range(0, 300, 3):
            db.delete(b"key%04d" % i, durable=False)
        db.flush(memtable=True)
        db.put(b"key9999", b"wal-only")
        expect = {k: v for k, v in db.scan()}
    with open_db(path) as db:
        assert {k: v for k, v in db.scan()} == expect
        assert db.get(b"key9999") == b"wal-only"
        assert db.get(b"key0003") is None
        assert db.get(b"key0004") == b"second4"
        assert db.get(b"key0005") == b"first5"
        rev = [k for k, _ in db.scan(reverse=True)]
        assert rev == sorted(expect, reverse=True)


def test_wal_replay_after_unclean_stop(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    db = open_db(path)
    for i in range(100):
        db.put(b"k%d" % i, b"v%d" % i)  # durable
    # simulate a crash: stop background threads without the closing flush
    db._inner.status.fail("failed", None)
    with open_db(path) as db2:
        assert all(db2.get(b"k%d" % i) == b"v%d" % i for i in range(100))
        assert db2.metrics()["wal_replayed_rows"] >= 100


def test_fencing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    a = open_db(path)
    a.put(b"a", b"1")
    b = open_db(path)
    assert b.get(b"a") == b"1"
    with pytest.raises(ClosedError) as err:
        for _ in range(50):  # the next WAL or manifest write notices the fence
            a.put(b"a", b"stale")
    assert err.value.reason == "fenced"
    with pytest.raises(ClosedError) as err2:
        a.get(b"a")
    assert err2.value.reason == "fenced"
    b.put(b"b", b"2")
    b.close()
    a.close()
    with open_db(path) as c:
        assert c.get(b"a") == b"1" and c.get(b"b") == b"2"


def test_merge_operator(tmp_path: pathlib.Path) -> None:
    s = Settings(
        flush_interval=0.01,
        compactor_options=None,
        garbage_collector_options=None,
        merge_operator="concat",
    )
    with open_db(tmp_path / "db", s) as db:
        db.merge(b"m", b"a")
        db.merge(b"m", b"b")
        assert db.get(b"m") == b"ab"
        db.flush(memtable=True)
        db.merge(b"m", b"c")
        assert db.get(b"m") == b"abc"
        db.put(b"m", b"X")
        db.merge(b"m", b"y")
        assert db.get(b"m") == b"Xy"
        assert dict(db.scan()) == {b"m": b"Xy"}
        db.write(WriteBatch().put(b"n", b"1").merge(b"n", b"2").merge(b"n", b"3"))
        assert db.get(b"n") == b"123"


def test_merge_without_operator_is_invalid(tmp_path: pathlib.Path) -> None:
    with open_db(tmp_path / "db") as db:
        with pytest.raises(InvalidError):
            db.merge(b"m", b"a")  # rejected when written (SlateDB: on every later read)
    with open_db(tmp_path / "db", FAST.replace(merge_operator="concat")) as db:
        db.merge(b"m", b"a")
    with open_db(tmp_path / "db") as db, pytest.raises(InvalidError):
        db.get(b"m")  # operands stored by a database opened with an operator


def test_ttl_hidden_by_default_and_included_on_request(tmp_path: pathlib.Path) -> None:
    clock = ManualClock(1_000_000)
    with open_db(tmp_path / "db", clock=clock) as db:
        db.put(b"t", b"v", ttl=1000)
        db.put(b"forever", b"v", ttl=Ttl.no_expiry())
        assert db.get(b"t") == b"v"
        clock.advance(1000)
        assert db.get(b"t") is None
        assert db.get(b"t", include_expired=True) == b"v"
        kv = db.get_key_value(b"t", include_expired=True)
        assert kv is not None and kv.expire_ts == 1_001_000
        assert [k for k, _ in db.scan()] == [b"forever"]
        db.put(b"tick", b"x")  # a flush judges expiry by the memtable's last write time
        db.flush(memtable=True)  # ...and turns the expired value into a tombstone
        assert db.get(b"t", include_expired=True) is None


def test_durability_remote_and_handles(db: Db) -> None:
    h = db.put(b"k", b"v", durable=False)
    h.wait_durable(timeout=10)
    assert db.get(b"k", durability="remote") == b"v"
    with pytest.raises(InvalidError):
        db.get(b"k", durability="disk")


def test_snapshot_isolation(db: Db) -> None:
    db.put(b"k", b"old")
    with db.snapshot() as snap:
        db.put(b"k", b"new")
        db.put(b"other", b"x")
        assert snap.get(b"k") == b"old"
        assert snap.get(b"other") is None
        db.flush(memtable=True)
        assert snap.get(b"k") == b"old"  # the flush kept the version the snapshot needs
        assert dict(snap.scan()) == {b"k": b"old"}
    assert db.get(b"k") == b"new"


def test_checkpoints(db: Db) -> None:
    db.put(b"k", b"v")
    cp = db.create_checkpoint(name="nightly", lifetime=3600)
    assert cp.manifest_id >= 1
    cps = db.list_checkpoints()
    assert [c.id for c in cps] == [cp.id]
    assert db.list_checkpoints(name="nightly")[0].name == "nightly"
    db.refresh_checkpoint(cp.id, lifetime=None)
    assert db.list_checkpoints()[0].expire_time_s is None
    db.delete_checkpoint(cp.id)
    assert db.list_checkpoints() == []


def test_use_after_close(tmp_path: pathlib.Path) -> None:
    db = open_db(tmp_path / "db")
    db.put(b"k", b"v")
    db.close()
    db.close()  # harmless
    with pytest.raises(ClosedError) as err:
        db.get(b"k")
    assert err.value.reason == "clean"
    with pytest.raises(ClosedError):
        db.put(b"k", b"v")


def test_wal_disabled(tmp_path: pathlib.Path) -> None:
    s = Settings(
        wal_enabled=False,
        manifest_poll_interval=0.05,
        compactor_options=None,
        garbage_collector_options=None,
    )
    with open_db(tmp_path / "db", s) as db:
        db.put(b"k", b"v")  # durable = flushed to L0
        assert db.metrics()["l0_sst_count"] >= 1
    with open_db(tmp_path / "db", s) as db:
        assert db.get(b"k") == b"v"


def test_memory_url_and_explicit_store() -> None:
    store = MemoryStore()
    with Db.open("dbs/one", FAST, object_store=store) as db:
        db.put(b"k", b"v")
    assert any(m.key.startswith("dbs/one/manifest/") for m in store.list("dbs/"))
    with Db.open("dbs/one", FAST, object_store=store) as db:
        assert db.get(b"k") == b"v"


def test_concurrent_durable_writers_share_uploads(db: Db) -> None:
    def work(t: int) -> None:
        for i in range(20):
            db.put(b"t%d-%d" % (t, i), b"v")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = db.metrics()
    assert m["write_batch_count"] == 320
    assert m["wal_buffer_flushes"] < 320  # group commit
    assert sum(1 for _ in db.scan()) == 320


def test_corrupt_sst_is_a_data_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    with open_db(path) as db:
        for i in range(10):
            db.put(b"k%d" % i, b"v" * 100, durable=False)
        db.flush(memtable=True)
    sst = next((path / "compacted").glob("*.sst"))
    data = bytearray(sst.read_bytes())
    data[5] ^= 0xFF
    sst.write_bytes(bytes(data))
    with open_db(path) as db:
        with pytest.raises(DataError):
            db.get(b"k1")


def test_settings_type_checked(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidError):
        Db.open(str(tmp_path), {"flush_interval": 1})  # type: ignore[arg-type]


def test_public_names() -> None:
    for name in ("Db", "WriteBatch", "Settings", "Ttl", "KeyValue"):
        assert hasattr(shale, name)


def test_open_sst_metadata_is_byte_bounded(tmp_path: pathlib.Path) -> None:
    s = Settings(
        flush_interval=0.01,
        compactor_options=None,
        garbage_collector_options=None,
        meta_cache_bytes=1,
    )  # too small to keep any table open: reopened on demand
    with open_db(tmp_path / "db", s) as db:
        for r in range(3):
            for i in range(50):
                db.put(b"k%03d" % i, b"v%d" % r, durable=False)
            db.flush(memtable=True)
        for _ in range(2):
            assert db.get(b"k007") == b"v2"
            assert dict(db.scan())[b"k049"] == b"v2"
        m = db.metrics()
        assert m["meta_cache_bytes"] == 0 and m["meta_cache_misses"] >= 2
    with open_db(tmp_path / "db") as db:  # default budget: tables stay open
        db.get(b"k001")
        db.get(b"k002")
        m = db.metrics()
        assert m["meta_cache_hits"] >= 1 and m["meta_cache_bytes"] > 0


def test_keys_only_and_values_only_scans(tmp_path: pathlib.Path) -> None:
    import asyncio

    from shale.aio import AsyncDb

    with Db.open(str(tmp_path / "kv"), FAST) as db:
        for k in (b"a", b"b", b"c"):
            db.put(k, k.upper())
        assert list(db.scan().keys_only()) == [b"a", b"b", b"c"]
        assert dict(db.scan()) == {b"a": b"A", b"b": b"B", b"c": b"C"}  # still pairs
        assert list(db.scan(reverse=True).values_only()) == [b"C", b"B", b"A"]
        it = db.scan()
        it.seek(b"b")
        assert list(it.keys_only()) == [b"b", b"c"]
        with db.snapshot() as snap:
            assert list(snap.scan_prefix(b"b").values_only()) == [b"B"]
        with db.begin() as txn:
            txn.put(b"d", b"D")
            assert list(txn.scan().keys_only()) == [b"a", b"b", b"c", b"d"]
        assert list(db.namespace(b"c").scan().keys_only()) == []
        db.flush()

    async def main() -> None:
        async with AsyncDb.open(str(tmp_path / "kv"), FAST) as adb:
            assert [k async for k in adb.scan().keys_only()] == [b"a", b"b", b"c", b"d"]
            assert [v async for v in adb.scan(b"b").values_only()] == [b"B", b"C", b"D"]

    asyncio.run(main())


def test_write_batch_as_a_context_manager(tmp_path: pathlib.Path) -> None:
    with Db.open(str(tmp_path / "wb"), FAST) as db:
        with db.write_batch() as wb:
            wb.put(b"a", b"1").put(b"b", b"2")
            assert db.get(b"a") is None  # nothing written before the block ends
        assert wb.handle is not None and db.get(b"a") == b"1"
        assert db.get_key_value(b"a").seq == db.get_key_value(b"b").seq == wb.handle.seq
        with pytest.raises(RuntimeError), db.write_batch() as wb2:
            wb2.put(b"c", b"3")
            raise RuntimeError("abandon")
        assert db.get(b"c") is None and wb2.handle is None  # a raising block writes nothing
        with db.write_batch(durable=False) as empty:
            pass
        assert empty.handle is None  # an empty batch writes nothing (no error)
        with pytest.raises(InvalidError):
            with empty:
                pass  # a batch is written once
        with pytest.raises(InvalidError):
            db.write_batch(durable="yes")  # type: ignore[arg-type]
        users = db.namespace(b"u/")
        with users.write_batch() as nb:
            nb.put(b"x", b"1")
        assert db.get(b"u/x") == b"1"
