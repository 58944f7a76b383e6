"""``shale.Admin.run_gc_once`` reaches shale-gc through ``shale_admin_run_gc_once``."""

from __future__ import annotations

import time

import shale
from shale.clock import ManualClock
from shale.objstore.memory import MemoryStore
from shale.settings import GarbageCollectorOptions, GcDirectoryOptions


def test_admin_run_gc_once_collects_with_the_admins_clock_and_options() -> None:
    store = MemoryStore()
    clock = ManualClock(int(time.time() * 1000))  # the store stamps objects with real time
    settings = shale.Settings(compactor_options=None, garbage_collector_options=None)
    with shale.Db.open("db", settings, object_store=store, clock=clock) as db:
        for i in range(3):
            db.put(b"k%d" % i, b"v")
            db.flush(memtable=True)
    admin = shale.Admin("db", object_store=store, clock=clock)
    expiring = admin.create_checkpoint(lifetime=10)
    wal_before = [m.key for m in store.list("db/wal/")]
    clock.advance(3_600_000)
    only_wal = GarbageCollectorOptions(
        manifest=None,
        wal=GcDirectoryOptions(interval=None, min_age=0),
        compacted=None,
        compactions=None,
    )
    report = admin.run_gc_once(only_wal)
    assert list(report.kinds) == ["wal"] and not report.errors
    deleted = {o.key for o in report.deleted}
    assert deleted and deleted <= set(wal_before)
    assert {m.key for m in store.list("db/wal/")} == set(wal_before) - deleted
    # the round removed the expired checkpoint from the manifest first
    assert report.expired_checkpoints == [expiring.id]
    assert admin.list_checkpoints() == []
