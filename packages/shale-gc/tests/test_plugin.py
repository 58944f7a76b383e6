"""Tests for shale_gc.plugin: hook specs, and the in-process GC thread a Db starts and stops."""

from __future__ import annotations

import threading
import time
from typing import Any

from shale.db import Db
from shale.ids import wal_path
from shale.objstore.memory import MemoryStore
from shale.plugins import get_host
from shale.settings import GarbageCollectorOptions, GcDirectoryOptions, Settings
from shale_gc.plugin import attached_gc

FAST = dict(flush_interval=0.01, manifest_poll_interval=0.05, compactor_options=None)


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_hookspecs_are_registered() -> None:
    hook = get_host().manager.hook
    assert hook.shale_gc_filter.spec is not None
    assert hook.shale_gc_finished.spec is not None
    assert "shale_gc" in get_host().plugin_names()


def test_db_runs_and_stops_an_in_process_gc() -> None:
    store = MemoryStore()
    d = GcDirectoryOptions(interval=0.02, min_age=0)
    opts = GarbageCollectorOptions(manifest=d, wal=d, compacted=d, compactions=d)
    db = Db.open("db", Settings(**FAST, garbage_collector_options=opts), object_store=store)
    try:
        gc = attached_gc(db)
        assert gc is not None and gc.root == "db" and gc.clock is db.clock
        for round_ in range(3):
            for i in range(20):
                db.put(b"k%d-%d" % (round_, i), b"v")
            db.flush(memtable=True)
        replay_after = db.manifest().replay_after_wal_id
        wait_for(
            lambda: all(not list(store.list(wal_path("db", i))) for i in range(1, replay_after))
        )
        wait_for(lambda: len(list(store.list("db/manifest/"))) == 1)
        for round_ in range(3):
            for i in range(20):
                assert db.get(b"k%d-%d" % (round_, i)) == b"v"
    finally:
        db.close()
    assert attached_gc(db) is None
    assert not [t for t in threading.enumerate() if t.name == "shale-gc" and t.is_alive()]
    with Db.open("db", Settings(**FAST, garbage_collector_options=None), object_store=store) as db2:
        assert db2.get(b"k2-19") == b"v"


def test_no_gc_when_disabled() -> None:
    empty = GarbageCollectorOptions(manifest=None, wal=None, compacted=None, compactions=None)
    for opts in (None, empty):
        with Db.open(
            "db", Settings(**FAST, garbage_collector_options=opts), object_store=MemoryStore()
        ) as db:
            assert attached_gc(db) is None


def test_default_settings_start_a_gc_that_waits_one_interval() -> None:
    store = MemoryStore()
    with Db.open("db", Settings(**FAST), object_store=store) as db:
        gc = attached_gc(db)
        assert gc is not None
        assert gc.options == GarbageCollectorOptions()
        time.sleep(0.1)
        assert gc.rounds == 0  # the first round comes after the 60 s interval
