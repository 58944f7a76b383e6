"""L0 flushes stream their SST into a store that can (the local store) and put it whole into
any other; both give the same readable SSTs, and a wrapper that only forwards attributes (a
fault injector) keeps the put path, so its faults still apply."""

from __future__ import annotations

import pathlib

from shale.db import Db
from shale.metrics import MetricsRegistry
from shale.objstore.instrumented import InstrumentedStore, streams
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.settings import Settings
from shale_faults import FaultyStore

SETTINGS = Settings(compactor_options=None, garbage_collector_options=None, min_filter_keys=10)


def test_which_stores_stream(tmp_path: pathlib.Path) -> None:
    local = LocalStore(tmp_path)
    assert streams(local)
    assert streams(InstrumentedStore(local, MetricsRegistry()))
    assert not streams(MemoryStore())
    assert not streams(InstrumentedStore(MemoryStore(), MetricsRegistry()))
    assert not streams(FaultyStore(local, [], seed=1))
    assert not streams(InstrumentedStore(FaultyStore(local, [], seed=1), MetricsRegistry()))


def test_streamed_l0_equals_put_l0(tmp_path: pathlib.Path) -> None:
    rows = {b"k%05d" % i: b"v%d" % i * (i % 50) for i in range(5000)}
    stores = {"local": LocalStore(tmp_path / "local"), "memory": MemoryStore()}
    ssts = {}
    for name, store in stores.items():
        with Db.open("db", SETTINGS, object_store=store) as db:
            for k, v in rows.items():
                db.put(k, v, durable=False)
            db.delete(b"k00007")
            db.flush(memtable=True)
            assert db.metrics()["l0_sst_count"] == 1
        with Db.open("db", SETTINGS, object_store=store) as db:
            assert db.metrics().get("wal_replayed_rows", 0) == 0  # all of it is in L0
            assert db.get(b"k00007") is None
            assert dict(db.scan()) == {k: v for k, v in rows.items() if k != b"k00007"}
        (sst,) = [m.key for m in store.list("db/compacted/")]
        ssts[name] = store.get(sst)
    assert len(ssts["local"]) == len(ssts["memory"])
