"""The garbage collector racing a live database on a LocalStore.

A collector loops with ``min_age = 0`` and a 5 ms interval over every directory -- as
aggressive as it can be -- while a Db writes a few thousand versioned values, flushes its
memtable to L0, and creates, deletes and lets expire short-lived checkpoints (so the collector
also writes manifest versions, racing the writer's). Reader threads read through the same Db
the whole time. No read may fail or see anything but the latest acknowledged version or a newer
one; afterwards every value survives a reopen (WAL replay over the collected WAL directory) and
a final collection. When ``shale_compactor.Compactor`` exists, the Db also runs its in-process
compactor, so compacted SSTs are retired and collected under the readers' feet.
"""

from __future__ import annotations

import importlib.util
import pathlib
import random
import threading
import time

from shale.db import Db
from shale.objstore.local import LocalStore
from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions, Settings
from shale_gc import GarbageCollector, GcReport

OPS = 3000
KEYS = 300


def _compactor_available() -> bool:
    if importlib.util.find_spec("shale_compactor") is None:
        return False
    import shale_compactor

    return hasattr(shale_compactor, "Compactor")


def _settings() -> Settings:
    compacting = _compactor_available()
    return Settings(
        flush_interval=0.005,
        manifest_poll_interval=0.02,
        compactor_options=(
            # a 1 s safety checkpoint: retired SSTs become garbage while the test runs
            CompactorOptions(
                poll_interval=0.05,
                min_compaction_sources=2,
                max_compaction_sources=4,
                checkpoint_lifetime=1.0,
            )
            if compacting
            else None
        ),
        garbage_collector_options=None,
        block_cache_bytes=0,
        l0_max_ssts=16 if compacting else 1000,
        min_filter_keys=10,
    )


def test_gc_loop_never_breaks_reads_of_a_writing_db(tmp_path: pathlib.Path) -> None:
    store = LocalStore(tmp_path / "store", fsync=False)
    db = Db.open("db", _settings(), object_store=store)
    d = GcDirectoryOptions(interval=0.005, min_age=0)
    gc = GarbageCollector(
        store, "db", GarbageCollectorOptions(manifest=d, wal=d, compacted=d, compactions=d)
    )
    reports: list[GcReport] = []
    stop = threading.Event()
    gc_thread = threading.Thread(target=gc.run, args=(stop,), kwargs={"on_report": reports.append})
    acked: dict[bytes, int] = {}
    acked_lock = threading.Lock()
    failures: list[str] = []
    reads = [0]

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = b"key%04d" % rng.randrange(KEYS)
            with acked_lock:
                floor = acked.get(key)
            try:
                value = db.get(key)
            except Exception as exc:  # any failure, a missing object above all, is the bug
                failures.append(f"get {key!r}: {type(exc).__name__}: {exc}")
                return
            reads[0] += 1
            if floor is None:
                continue
            version = int(value.split(b"=")[1]) if value and value.startswith(key + b"=") else -1
            if version < floor:
                failures.append(f"get {key!r}: {value!r}, acknowledged version {floor}")
                return

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    gc_thread.start()
    for t in readers:
        t.start()
    compacting = _compactor_available()

    permanent = None
    try:
        rng = random.Random(42)
        for i in range(OPS):
            key = b"key%04d" % rng.randrange(KEYS)
            db.put(key, b"%s=%d" % (key, i), durable=False)
            with acked_lock:
                acked[key] = i
            if i % 100 == 99:
                db.flush(memtable=True)
            if i % 300 == 0:  # short-lived checkpoints: the GC removes them once expired
                db.create_checkpoint(lifetime=1, scope="durable" if i % 600 else "all")
            if i == 500:
                permanent = db.create_checkpoint()
            if i == 2000 and permanent is not None:
                db.delete_checkpoint(permanent.id)
            if failures:
                break
        db.flush(memtable=True)
        # keep reading while the checkpoints expire and the GC retires what they pinned
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not failures:
            enough = len(reports) > 10 and _deleted(reports, "wal") > 10
            if enough and (not compacting or _deleted(reports, "compacted") > 0):
                break
            time.sleep(0.05)
        time.sleep(0.1)
    finally:
        stop.set()
        for t in readers:
            t.join(10)
        gc_thread.join(10)
    try:
        _check_loop(db, reports, failures, reads[0], acked, compacting)
    finally:
        db.close()  # never leak the writer into later tests, failed or not
    with Db.open("db", _settings(), object_store=store) as db2:
        for key, version in acked.items():
            assert db2.get(key) == b"%s=%d" % (key, version)
    time.sleep(1.1)  # let the 1 s checkpoints expire
    final = gc.run_once()
    assert final.ok, final.summary()
    with Db.open("db", _settings(), object_store=store) as db3:
        for key, version in acked.items():
            assert db3.get(key) == b"%s=%d" % (key, version)


def _check_loop(
    db: Db,
    reports: list[GcReport],
    failures: list[str],
    reads: int,
    acked: dict[bytes, int],
    compacting: bool,
) -> None:
    assert not failures, failures[:5]
    assert reads > 100
    assert len(reports) > 10 and all(r.ok for r in reports), [
        r.summary() for r in reports if not r.ok
    ][:2]
    counts = {k: _deleted(reports, k) for k in ("manifest", "wal", "compacted", "compactions")}
    assert counts["manifest"] > 0 and counts["wal"] > 10, counts
    if compacting:
        assert counts["compacted"] > 0 and counts["compactions"] > 0, counts
    for key, version in acked.items():
        assert db.get(key) == b"%s=%d" % (key, version)


def _deleted(reports: list[GcReport], kind: str) -> int:
    return sum(len(r.kinds[kind].deleted) for r in list(reports) if kind in r.kinds)
