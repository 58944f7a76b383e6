"""A compaction that fails every time is retried with back-off, not at once (issue 9, item 11).

Before the fix the scheduler re-proposed the failed compaction on the very next tick: about 700
failures a second, each writing new ``.compactions`` versions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import shale
from shale import Db, Settings
from shale.batch import WriteBatch
from shale.objstore.memory import MemoryStore
from shale.plugins import get_host
from shale.settings import CompactorOptions
from shale_compactor import FULL, Compactor
from shale_compactor.plugin import embedded_compactor

ROOT = "db"
FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
POLL = 0.05
OPTS = CompactorOptions(poll_interval=POLL)
WINDOW_S = 2.0


class Exploding:
    """A compaction filter supplier that fails every job, deterministically."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def create_compaction_filter(self, context: Any) -> Any:
        with self._lock:
            self.calls += 1
        raise RuntimeError("filter exploded")


def fill(db: Db, rounds: int = 4) -> None:
    for r in range(rounds):
        batch = WriteBatch()
        for i in range(50):
            batch.put(b"key%03d" % i, b"r%d" % r)
        db.write(batch)
        db.flush(memtable=True)


def compactions_objects(store: MemoryStore) -> int:
    return sum(1 for _ in store.list(f"{ROOT}/compactions/"))


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def db(store: MemoryStore) -> Iterator[Db]:
    d = Db.open(ROOT, FAST, object_store=store)
    yield d
    d.close()


def test_failing_compaction_backs_off(store: MemoryStore, db: Db) -> None:
    fill(db)
    supplier = Exploding()
    c = Compactor(store, ROOT, FAST, options=OPTS, filter_suppliers=[supplier])
    t = threading.Thread(target=c.run, daemon=True)
    objects_before = compactions_objects(store)
    t.start()
    try:
        time.sleep(WINDOW_S)
        # back-off POLL, 2*POLL, 4*POLL, ...: about log2(WINDOW_S / POLL) failures
        assert 1 <= supplier.calls <= 8, supplier.calls
        assert compactions_objects(store) - objects_before <= 3 * 8
        health = c.health()
        assert health.consecutive_failures == supplier.calls
        assert health.failures == supplier.calls
        assert health.last_error is not None and "filter exploded" in health.last_error
        assert health.retry_in_s is not None and health.retry_in_s > 0
        # the writer keeps working
        db.put(b"after", b"ok")
        db.flush(memtable=True, timeout=10)
        assert db.get(b"after") == b"ok"
    finally:
        c.stop()
        t.join(30)
    assert not t.is_alive()


def test_success_resets_the_back_off(store: MemoryStore, db: Db) -> None:
    fill(db)
    supplier = Exploding()
    c = Compactor(store, ROOT, FAST, options=OPTS, filter_suppliers=[supplier])
    (report,) = c.run_once()
    assert report.status == "failed"
    assert c.health().consecutive_failures == 1
    c.stop()
    good = Compactor(store, ROOT, FAST, options=OPTS)
    (report,) = good.run_once()
    good.stop()
    assert report.status == "completed"
    health = good.health()
    assert health.consecutive_failures == 0 and health.retry_in_s is None


def test_embedded_compactor_failing_backs_off(store: MemoryStore) -> None:
    settings = FAST.replace(compactor_options=OPTS)
    supplier = Exploding()

    class Plugin:
        @shale.hookimpl
        def shale_compaction_filter(self, context: Any) -> Any:
            return supplier.create_compaction_filter(context)

    host = get_host()
    host.register(Plugin(), name="test-exploding-filter")
    try:
        with Db.open(ROOT, settings, object_store=store) as db:
            fill(db)
            time.sleep(WINDOW_S)
            assert 1 <= supplier.calls <= 8, supplier.calls
            compactor = embedded_compactor(db)
            assert compactor is not None and compactor.health().consecutive_failures >= 1
            db.put(b"after", b"ok")
    finally:
        host.unregister(name="test-exploding-filter")


# -- a commit whose manifest write fails (found by tests/sim) -----------------------------------


class CommitFault(MemoryStore):
    """A memory store whose first write of a manifest holding a sorted run (the compactor's
    commit) fails transiently: before it lands, or after it landed (a lost reply)."""

    def __init__(self, *, after: bool) -> None:
        super().__init__()
        self.after = after
        self.fired = 0

    def put_if_absent(self, key: str, data: bytes, **kw: Any) -> Any:
        from shale.fbs.manifest import decode_manifest
        from shale.objstore.protocol import TransientStoreError

        if self.fired == 0 and key.startswith(f"{ROOT}/manifest/") and data:
            if decode_manifest(data)[1].compacted:
                self.fired += 1
                if not self.after:
                    raise TransientStoreError("injected: commit write failed", key=key)
                super().put_if_absent(key, data, **kw)
                raise TransientStoreError("injected: commit reply lost", key=key)
        return super().put_if_absent(key, data, **kw)


@pytest.mark.parametrize("after", [False, True], ids=["failed", "lost-reply"])
def test_commit_retried_after_a_failed_manifest_write_reaches_the_manifest(after: bool) -> None:
    store = CommitFault(after=after)
    with Db.open(ROOT, FAST, object_store=store) as db:
        fill(db)
        expected = dict(db.scan())
        c = Compactor(store, ROOT, FAST, options=OPTS)
        try:
            (report,) = c.run_once()
            assert store.fired == 1
            assert report.status == "completed"
            m = db.refresh_manifest()
            # before the fix the retry skipped the manifest: "completed", but nothing committed
            assert m.l0 == [] and [r.id for r in m.compacted] == [report.destination]
            assert {v.sst.id for v in m.compacted[0].ssts} == {s.id for s in report.output_ssts}
            assert [j.status for j in c.status()] in ([], ["completed"])
            # the compactor is not wedged: the next compaction commits too
            fill(db, rounds=2)
            c.submit(FULL)
            (again,) = c.run_once()
            assert again.status == "completed" and db.refresh_manifest().l0 == []
            expected.update(dict(db.scan()))
        finally:
            c.stop()
        assert dict(db.scan()) == expected
    with Db.open(ROOT, FAST, object_store=store) as reopened:
        assert dict(reopened.scan()) == expected
