"""``l0_flush_parallelism`` (SlateDB's parallel L0 flush): up to N frozen memtables are uploaded
at once, and still published in freeze order -- every manifest version names a prefix of the
frozen memtables -- through failing uploads, close() and fencing.

Each write below freezes its own memtable (``l0_sst_size_bytes=1``) holding one key,
``mem-NN``, so an L0 SST's first key tells which memtable it is. The store is gated: the test
decides when an L0 upload may finish or must fail, so nothing depends on timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from shale import Admin, Db, Settings
from shale.engine import db_status
from shale.objstore.memory import MemoryStore
from shale.objstore.protocol import TransientStoreError

WAIT_S = 30.0


def key(i: int) -> bytes:
    return b"mem-%02d" % i


def value(i: int) -> bytes:
    return b"value-%02d" % i


def settings(n: int, wal: bool = False) -> Settings:
    return Settings(
        wal_enabled=wal,
        flush_interval=0.01,
        manifest_poll_interval=0.05,
        compactor_options=None,
        garbage_collector_options=None,
        l0_sst_size_bytes=1,
        l0_flush_parallelism=n,
    )


def wait_for(what: str, done: Callable[[], bool]) -> None:
    until = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.005)


class GatedStore:
    """A memory store whose L0 SST puts (not the open's write probe) are recorded and wait for
    the test: each waits while ``hold`` is clear, and fails (transient) while ``fail(name)``
    says so, ``name`` being the memtable key the SST holds."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.hold = threading.Event()
        self.hold.set()
        self.fail: Callable[[bytes], bool] = lambda _name: False
        self._lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.started: list[bytes] = []
        self.stored: list[bytes] = []
        self.failures: list[bytes] = []

    def __getattr__(self, op: str) -> Any:
        return getattr(self.inner, op)

    def put(self, path: str, data: bytes, **kw: Any) -> None:
        if "/compacted/" not in path or ".shale-write-probe" in path:
            return self.inner.put(path, data, **kw)
        name = next((key(i) for i in range(100) if key(i) in bytes(data)), b"?")
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.started.append(name)
        try:
            assert self.hold.wait(WAIT_S), "the test never released the gate"
            if self.fail(name):
                with self._lock:
                    self.failures.append(name)
                raise TransientStoreError(f"injected failure of {name!r}")
            self.inner.put(path, data, **kw)
            with self._lock:
                self.stored.append(name)
        finally:
            with self._lock:
                self.running -= 1


def l0_names(m: Any) -> list[bytes]:
    """The memtables a manifest's L0 holds, oldest first."""
    return [v.sst.info.first_entry for v in reversed(m.l0)]


def check_prefixes(store: MemoryStore, seqs: list[int]) -> int:
    """Every manifest version names a prefix of the memtables (its L0 oldest first, and
    ``last_l0_seq`` the newest one's); the longest prefix named."""
    admin = Admin("db", object_store=store)
    longest = 0
    for vm in admin.list_manifests():
        m = vm.manifest
        names = l0_names(m)
        assert names == [key(i) for i in range(len(names))], (vm.id, names)
        assert m.last_l0_seq == (seqs[len(names) - 1] if names else 0), (vm.id, names)
        for v in m.l0:  # a published SST exists
            assert store.head(f"db/compacted/{v.sst.id}.sst") is not None
        longest = max(longest, len(names))
    return longest


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_status, "RETRY_MIN_S", 0.001)
    monkeypatch.setattr(db_status, "RETRY_MAX_S", 0.01)


def write(db: Db, n: int, wal: bool = False) -> list[int]:
    """``n`` writes, each frozen into its own memtable (with the WAL on, by its WAL flush,
    which the write waits for); their seqs."""
    return [db.put(key(i), value(i), durable=wal).seq for i in range(n)]


def test_uploads_overlap_and_are_published_in_order() -> None:
    inner = MemoryStore()
    gated = GatedStore(inner)
    gated.hold.clear()
    with Db.open("db", settings(4), object_store=gated) as db:
        seqs = write(db, 7)
        wait_for("4 uploads at once", lambda: gated.running == 4)
        assert db.manifest().l0 == [], "nothing is published while the oldest uploads"
        assert [db.get(key(i)) for i in range(7)] == [value(i) for i in range(7)]
        gated.hold.set()
        db.flush(memtable=True)
        assert l0_names(db.manifest()) == [key(i) for i in range(7)]
        assert [db.get(key(i)) for i in range(7)] == [value(i) for i in range(7)]
    assert gated.max_running == 4, "never more than l0_flush_parallelism at once"
    assert set(gated.started[:4]) == {key(i) for i in range(4)}, "the oldest four first"
    assert check_prefixes(inner, seqs) == 7
    with Db.open("db", settings(4), object_store=inner) as again:
        assert [again.get(key(i)) for i in range(7)] == [value(i) for i in range(7)]


def test_parallelism_1_uploads_one_at_a_time() -> None:
    inner = MemoryStore()
    gated = GatedStore(inner)
    gated.hold.clear()
    with Db.open("db", settings(1), object_store=gated) as db:
        seqs = write(db, 4)
        wait_for("the first upload", lambda: gated.running == 1)
        gated.hold.set()
        db.flush(memtable=True)
    assert gated.max_running == 1
    assert gated.started == [key(i) for i in range(4)]
    assert check_prefixes(inner, seqs) == 4


def test_a_failing_middle_upload_holds_back_the_later_ones() -> None:
    inner = MemoryStore()
    gated = GatedStore(inner)
    healed = threading.Event()
    gated.fail = lambda name: name == key(2) and not healed.is_set()
    with Db.open("db", settings(4), object_store=gated) as db:
        seqs = write(db, 6)
        later = {key(i) for i in (3, 4, 5)}
        wait_for("the later uploads", lambda: later <= set(gated.stored))
        wait_for("retries of the failing one", lambda: gated.failures.count(key(2)) >= 3)
        wait_for("the two before it published", lambda: len(db.manifest().l0) == 2)
        m = db.manifest()
        assert l0_names(m) == [key(0), key(1)] and m.last_l0_seq == seqs[1]
        assert [db.get(key(i)) for i in range(6)] == [value(i) for i in range(6)]
        assert db.metrics()["immutable_memtables"] == 4
        healed.set()
        db.flush(memtable=True)
        assert l0_names(db.manifest()) == [key(i) for i in range(6)]
    assert gated.stored.count(key(3)) == 1, "an upload done early is not redone"
    assert check_prefixes(inner, seqs) == 6
    with Db.open("db", settings(4), object_store=inner) as again:
        assert [again.get(key(i)) for i in range(6)] == [value(i) for i in range(6)]


@pytest.mark.parametrize("wal", [False, True])
def test_close_publishes_finished_uploads_and_flushes_the_rest(wal: bool) -> None:
    inner = MemoryStore()
    gated = GatedStore(inner)
    gated.hold.clear()
    db = Db.open("db", settings(4, wal), object_store=gated)
    seqs = write(db, 7, wal)
    wait_for("4 uploads at once", lambda: gated.running == 4)
    closing = threading.Thread(target=db.close, kwargs={"flush": "memtable"})
    closing.start()
    db._inner.status.stop.wait(WAIT_S)
    gated.hold.set()  # the background uploads finish after the database stopped
    closing.join(WAIT_S)
    assert not closing.is_alive() and db.close_reason == "clean"
    assert check_prefixes(inner, seqs) == 7
    assert sorted(gated.stored) == [key(i) for i in range(7)], "each uploaded once"
    with Db.open("db", settings(4, wal), object_store=inner) as again:
        assert [again.get(key(i)) for i in range(7)] == [value(i) for i in range(7)]


def test_close_redoes_uploads_that_gave_up_when_the_database_stopped() -> None:
    inner = MemoryStore()
    gated = GatedStore(inner)
    db = Db.open("db", settings(4), object_store=gated)
    stop = db._inner.status.stop
    gated.fail = lambda _name: not stop.is_set()  # background uploads fail until close
    seqs = write(db, 6)
    wait_for("failing uploads", lambda: len(set(gated.failures)) == 4)
    db.close()
    assert db.close_reason == "clean"
    assert check_prefixes(inner, seqs) == 6
    with Db.open("db", settings(4), object_store=inner) as again:
        assert [again.get(key(i)) for i in range(6)] == [value(i) for i in range(6)]


def test_a_fenced_writer_publishes_nothing() -> None:
    inner = MemoryStore()
    gated = GatedStore(inner)
    gated.hold.clear()
    db = Db.open("db", settings(4), object_store=gated)
    try:
        write(db, 6)
        wait_for("4 uploads at once", lambda: gated.running == 4)
        newer = Db.open("db", settings(4), object_store=inner)  # fences the first writer
        gated.hold.set()
        wait_for("the fence noticed", lambda: db.close_reason == "fenced")
        manifests = Admin("db", object_store=inner).list_manifests()
        assert max(vm.manifest.writer_epoch for vm in manifests) == 2
        for vm in manifests:  # the fenced writer's uploads finished, and were not published
            assert vm.manifest.l0 == [] and vm.manifest.last_l0_seq == 0, vm.id
        assert newer.get(key(0)) is None  # WAL off: the fenced writer's rows were never durable
        newer.close()
    finally:
        try:
            db.close()
        except Exception:
            pass


@pytest.mark.parametrize("n", [1, 4])
def test_uploads_finishing_as_the_database_stops_are_published(n: int) -> None:
    """close() with the WAL on flushes only the WAL, but an L0 upload in flight when it stops
    the threads completes and is published, whatever the parallelism (as one flush in progress
    always did): the next open does not replay those memtables again."""
    inner = MemoryStore()
    gated = GatedStore(inner)
    gated.hold.clear()
    db = Db.open("db", settings(n, wal=True), object_store=gated)
    seqs = write(db, 3, wal=True)
    wait_for("the uploads", lambda: gated.running == min(n, 3))
    closing = threading.Thread(target=db.close)  # flush="wal"
    closing.start()
    db._inner.status.stop.wait(WAIT_S)
    gated.hold.set()  # they finish after the database stopped
    closing.join(WAIT_S)
    assert not closing.is_alive() and db.close_reason == "clean"
    published = check_prefixes(inner, seqs)
    assert published == min(n, 3), "the uploads in flight were published"
    m = Admin("db", object_store=inner).read_manifest().manifest
    assert m.last_l0_seq == seqs[published - 1]
    with Db.open("db", settings(n, wal=True), object_store=inner) as again:
        assert [again.get(key(i)) for i in range(3)] == [value(i) for i in range(3)]
