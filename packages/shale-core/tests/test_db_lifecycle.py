"""Lifecycle of a Db: closing honestly, flushing at exit, never spinning, stopping for good.

Regression tests of issue 9, items 7-10: close() with the WAL off and L0 full, an unclosed Db
at interpreter exit, waits that spun at 100 % CPU once L0 was full, and close() during an
object-store outage (the store wrapper proves that nothing touches the store after close).
"""

from __future__ import annotations

import gc
import logging
import pathlib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shale import ClosedError, UnavailableError
from shale.db import Db
from shale.engine import batch_write, memtable_flusher
from shale.engine.memtable import ROW_OVERHEAD
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions, Settings
from shale_faults import FaultRule, FaultyStore

ROOT = "db"
FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
#: L0 holds at most two SSTs and nothing compacts it.
TINY_L0 = FAST.replace(l0_max_ssts=2)
WAL_OFF = TINY_L0.replace(wal_enabled=False)
#: CPU seconds a blocked wait may burn per wall-clock second (all threads of the process).
CPU_BUDGET = 0.15
WAIT_S = 30.0


class Switch:
    """An object store that goes down on demand (through shale_faults' FaultyStore) and counts
    every call, so a test can prove that nothing touches the store after ``close()``."""

    def __init__(self, inner: Any, rules: list[FaultRule] | None = None) -> None:
        self.inner = inner
        self.faulty = FaultyStore(inner, rules or [FaultRule(ops="put,put_if_absent")], seed=1)
        self.down = False
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def __getattr__(self, op: str) -> Callable[..., Any]:
        if op.startswith("_"):
            raise AttributeError(op)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[op] += 1
            target = self.faulty if self.down else self.inner
            return getattr(target, op)(*args, **kwargs)

        return call


def l0_count(db: Db) -> int:
    return db.metrics()["l0_sst_count"]


def fill_l0(db: Db) -> None:
    """Flush memtables until L0 holds ``l0_max_ssts`` SSTs."""
    i = 0
    while l0_count(db) < db.settings.l0_max_ssts:
        db.put(b"fill%d" % i, b"v", durable=False)
        db.flush(memtable=True)
        i += 1


def own_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def cpu_while(fn: Callable[[], None], seconds: float) -> float:
    """CPU seconds the whole process uses per wall second while ``fn`` blocks for ``seconds``
    (``fn`` is left blocked on a daemon thread; it ends when the test closes the database)."""

    def run() -> None:
        try:
            fn()
        except (ClosedError, UnavailableError):
            pass

    t = threading.Thread(target=run, daemon=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    t.start()
    t.join(seconds)
    assert t.is_alive(), "the call was supposed to block"
    return (time.process_time() - cpu0) / (time.monotonic() - wall0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def closing() -> Iterator[list[Db]]:
    dbs: list[Db] = []
    yield dbs
    for db in dbs:
        try:
            db.close()
        except (UnavailableError, ClosedError):
            pass


# -- item 7: WAL off, L0 full, close ------------------------------------------------------------


def test_wal_off_close_with_l0_full_flushes_and_stops(store: MemoryStore) -> None:
    before = set(threading.enumerate())
    db = Db.open(ROOT, WAL_OFF, object_store=store)
    fill_l0(db)
    db.put(b"quick", b"1", durable=False)  # acknowledged; close promises to flush it
    durable: list[object] = []

    def durable_put() -> None:  # blocks: L0 is full and nothing compacts
        try:
            durable.append(db.put(b"slow", b"2"))
        except Exception as exc:
            durable.append(exc)

    writer = threading.Thread(target=durable_put, daemon=True)
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()
    closer = threading.Thread(target=db.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() hangs while L0 is full"
    writer.join(10)
    assert not writer.is_alive()
    assert db.close_reason == "clean"
    assert own_threads(before) == []
    (result,) = durable
    assert not isinstance(result, Exception), result  # close flushed it: acknowledged
    with Db.open(ROOT, WAL_OFF, object_store=store) as again:
        assert again.get(b"quick") == b"1"
        assert again.get(b"slow") == b"2"
        assert l0_count(again) > WAL_OFF.l0_max_ssts  # close went past the limit, on purpose


# -- item 8: an unclosed Db ---------------------------------------------------------------------


CHILD = """
import sys
import shale
settings = shale.Settings(flush_interval=None, wal_enabled={wal})
db = shale.Db.open(sys.argv[1], settings)
db.put(b"k", b"written without close", durable=False)
if {drop}:
    del db  # dropped mid-program: collected, warned about and flushed then
    print("dropped")
"""


@pytest.mark.parametrize(
    "wal,drop", [(True, False), (False, False), (True, True)], ids=["wal", "no-wal", "dropped"]
)
def test_unclosed_db_is_flushed_at_exit(tmp_path: pathlib.Path, wal: bool, drop: bool) -> None:
    path = str(tmp_path / "db")
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "always::ResourceWarning",
            "-c",
            CHILD.format(wal=wal, drop=drop),
            path,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" in proc.stderr and "unclosed" in proc.stderr, proc.stderr
    with Db.open(path, FAST.replace(wal_enabled=wal)) as db:
        assert db.get(b"k") == b"written without close"


FORK_CHILD = """
import os
import sys
import shale
settings = shale.Settings(flush_interval=None, compactor_options=None,
                          garbage_collector_options=None)
db = shale.Db.open(sys.argv[1], settings)
db.put(b"k", b"parent", durable=False)
pid = os.fork()
if pid == 0:
    sys.exit(0)  # the child exits normally: it must not flush (or close) the parent's Db
_, status = os.waitpid(pid, 0)
assert status == 0, status
db.put(b"k2", b"parent", durable=False)
db.close()
print(db.close_reason)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_forked_child_leaves_the_parents_db_alone(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "db")
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_CHILD, path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean", proc.stderr
    with Db.open(path, FAST) as db:
        assert db.get(b"k") == b"parent" and db.get(b"k2") == b"parent"


@pytest.mark.parametrize("compactor", [False, True], ids=["plain", "embedded-compactor"])
def test_dropped_db_warns_and_flushes(store: MemoryStore, compactor: bool) -> None:
    settings = FAST.replace(flush_interval=None)
    if compactor:
        settings = settings.replace(compactor_options=CompactorOptions(poll_interval=0.05))
    before = set(threading.enumerate())
    db = Db.open(ROOT, settings, object_store=store)
    db.put(b"k", b"v", durable=False)
    with pytest.warns(ResourceWarning, match="unclosed"):
        del db
        gc.collect()
    deadline = time.monotonic() + WAIT_S
    while own_threads(before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert own_threads(before) == []
    with Db.open(ROOT, FAST, object_store=store) as again:
        assert again.get(b"k") == b"v"


def test_testing_crash_abandons_without_flushing() -> None:
    from shale.testing import crash

    switch = Switch(MemoryStore())
    settings = FAST.replace(flush_interval=None)
    before = set(threading.enumerate())
    db = Db.open(ROOT, settings, object_store=switch)  # type: ignore[arg-type]
    db.put(b"durable", b"1")
    db.put(b"buffered", b"2", durable=False)
    crash(db)
    assert own_threads(before) == [] and db.close_reason == "failed"
    calls = switch.total()
    del db
    gc.collect()  # no ResourceWarning (filterwarnings=error), no flush
    assert switch.total() == calls
    with Db.open(ROOT, settings, object_store=switch) as again:  # type: ignore[arg-type]
        assert again.get(b"durable") == b"1" and again.get(b"buffered") is None


# -- item 9: no busy waits, timeouts that name the cause ----------------------------------------


def test_flush_memtable_with_l0_full_blocks_without_spinning(
    store: MemoryStore, closing: list[Db]
) -> None:
    db = Db.open(ROOT, TINY_L0, object_store=store)
    closing.append(db)
    fill_l0(db)
    db.put(b"k", b"v", durable=False)
    assert cpu_while(lambda: db.flush(memtable=True), 1.5) < CPU_BUDGET
    t0 = time.monotonic()
    with pytest.raises(UnavailableError, match="L0 is full") as exc:
        db.flush(memtable=True, timeout=0.5)
    assert 0.4 < time.monotonic() - t0 < 5
    assert "compactor" in str(exc.value)


def test_create_checkpoint_with_l0_full_times_out(store: MemoryStore, closing: list[Db]) -> None:
    db = Db.open(ROOT, TINY_L0, object_store=store)
    closing.append(db)
    fill_l0(db)
    db.put(b"k", b"v", durable=False)
    assert cpu_while(db.create_checkpoint, 1.0) < CPU_BUDGET
    with pytest.raises(UnavailableError, match="L0 is full"):
        db.create_checkpoint(timeout=0.5)
    assert db.create_checkpoint(scope="durable").manifest_id > 0


def test_wal_off_durable_put_with_l0_full_blocks_without_spinning(
    store: MemoryStore, closing: list[Db]
) -> None:
    db = Db.open(ROOT, WAL_OFF, object_store=store)
    closing.append(db)
    fill_l0(db)
    assert cpu_while(lambda: db.put(b"a", b"1"), 1.5) < CPU_BUDGET
    handle = db.put(b"b", b"2", durable=False)
    with pytest.raises(UnavailableError, match="L0 is full"):
        handle.wait_durable(timeout=0.5)


def test_l0_full_is_logged(
    store: MemoryStore,
    closing: list[Db],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memtable_flusher, "L0_FULL_WARN_S", 0.2)
    db = Db.open(ROOT, TINY_L0, object_store=store)
    closing.append(db)
    fill_l0(db)
    db.put(b"k", b"v", durable=False)
    with caplog.at_level(logging.WARNING, logger="shale.engine"):
        with pytest.raises(UnavailableError):
            db.flush(memtable=True, timeout=1.0)
    assert any(
        "L0 full (2 SSTs), no compaction progress for" in r.getMessage()
        and "is a compactor running?" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    assert db.metrics()["l0_flush_blocked_ms"] > 0


def test_backpressure_with_l0_full_blocks_without_spinning(
    store: MemoryStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_write, "BACKPRESSURE_RECHECK_S", 0.2)
    settings = WAL_OFF.replace(l0_sst_size_bytes=256, max_unflushed_bytes=1024)
    db = Db.open(ROOT, settings, object_store=store)
    fill_l0(db)
    blocked: list[BaseException] = []

    def write_until_blocked() -> None:
        try:
            for i in range(1000):  # frozen memtables pile up until writers block
                db.put(b"k%04d" % i, b"x" * 64, durable=False)
        except BaseException as exc:
            blocked.append(exc)

    with caplog.at_level(logging.WARNING, logger="shale.engine"):
        assert cpu_while(write_until_blocked, 1.5) < CPU_BUDGET
    assert any(
        "writes blocked" in r.getMessage() and "L0 is full" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    db.close()  # releases the writer, and flushes what it wrote
    deadline = time.monotonic() + WAIT_S
    while not blocked and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(blocked[0], ClosedError)
    assert db.close_reason == "clean"
    with Db.open(ROOT, settings, object_store=store) as again:
        assert again.get(b"k0000") == b"x" * 64


class _SlowWal(MemoryStore):
    """A memory store whose WAL uploads (not the empty fence) hang until :attr:`gate` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def put_if_absent(self, key: str, data: bytes, **kwargs: Any) -> None:
        if "/wal/" in key and data:
            self.waiting.set()
            self.gate.wait(WAIT_S)
        super().put_if_absent(key, data, **kwargs)


def test_backpressure_counts_wal_ssts_not_stored_yet() -> None:
    """A WAL SST taken from the buffer still counts as unflushed until it is stored: with the
    store stuck on one upload, writers stop at ``max_unflushed_bytes`` (SlateDB counts its
    immutable WALs the same way) instead of buffering without bound behind it."""
    store = _SlowWal()
    limit = 20_000
    settings = FAST.replace(
        flush_interval=None, max_unflushed_bytes=limit, l0_sst_size_bytes=1 << 20
    )
    db = Db.open(ROOT, settings, object_store=store)
    value = b"x" * 1000
    for i in range(15):  # buffered, under the limit
        db.put(b"a%04d" % i, value, durable=False)
    # a durable write flushes the buffer: its upload gets stuck
    threading.Thread(target=db.put, args=(b"d", value), daemon=True).start()
    done = threading.Event()

    def writer() -> None:
        for i in range(200):
            db.put(b"k%04d" % i, value, durable=False)
        done.set()

    t = threading.Thread(target=writer, daemon=True)
    try:
        assert store.waiting.wait(WAIT_S)  # an upload is stuck
        t.start()
        deadline = time.monotonic() + WAIT_S
        while not db.metrics().get("backpressure_count") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert db.metrics()["backpressure_count"] >= 1
        assert not done.is_set()
        wal = db._inner.wal
        assert wal is not None
        # a writer is admitted only while the rows not stored (the stuck upload's and the
        # buffer's) are within the limit: at most one row over it
        pending = sum(len(r[0]) + len(r[3]) + ROW_OVERHEAD for r in wal.pending_rows())
        assert pending == wal.unflushed_bytes
        assert pending <= limit + len(value) + 5 + ROW_OVERHEAD
    finally:
        store.gate.set()
    t.join(WAIT_S)
    assert done.is_set()
    db.close()
    with Db.open(ROOT, settings, object_store=store) as again:
        assert again.get(b"k0199") == value


def test_cli_flush_memtable_with_l0_full_times_out(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shale import cli

    path = str(tmp_path / "db")
    with Db.open(path, TINY_L0) as db:
        fill_l0(db)
        db.put(b"k", b"v")
    monkeypatch.setenv("SHALE_L0_MAX_SSTS", "2")
    capsys.readouterr()
    cpu0 = time.process_time()
    code = cli.main(["flush", path, "--memtable", "--timeout", "1"])
    _, err = capsys.readouterr()
    assert code == cli.EXIT_ERROR
    assert err.startswith("error: unavailable:") and "L0 is full" in err, err
    assert time.process_time() - cpu0 < 1.0


# -- item 10: close during an outage -------------------------------------------------------------


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "no-wal"])
def test_close_during_outage_reports_and_stops_touching_the_store(wal: bool) -> None:
    switch = Switch(MemoryStore())
    settings = FAST.replace(flush_interval=None, wal_enabled=wal)
    before = set(threading.enumerate())
    db = Db.open(ROOT, settings, object_store=switch)  # type: ignore[arg-type]
    for i in range(10):
        db.put(b"k%d" % i, b"v", durable=False)
    switch.down = True
    t0 = time.monotonic()
    with pytest.raises(UnavailableError, match="10 writes") as exc:
        db.close()
    assert isinstance(exc.value, OSError)  # an I/O handler written for OSError catches it
    assert time.monotonic() - t0 < 10
    assert "injected fault" in str(exc.value.__cause__)
    assert db.close_reason == "failed"
    assert own_threads(before) == []
    calls = switch.total()
    time.sleep(1.5)  # longer than any retry back-off
    switch.down = False  # the outage ends (or the user freed disk space)
    time.sleep(1.5)
    assert switch.total() == calls, "a thread of the closed Db touched the store"
    with pytest.raises(ClosedError) as closed:
        db.put(b"x", b"y")
    assert closed.value.reason == "failed"
    db.close()  # a second close is harmless
    with Db.open(ROOT, settings, object_store=switch) as again:  # type: ignore[arg-type]
        assert again.get(b"k0") is None  # reported lost, and lost


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "no-wal"])
def test_close_rides_out_a_short_outage(wal: bool) -> None:
    # the first two uploads of close fail, the third succeeds
    switch = Switch(MemoryStore(), [FaultRule(ops="put,put_if_absent", limit=2)])
    settings = FAST.replace(flush_interval=None, wal_enabled=wal)
    db = Db.open(ROOT, settings, object_store=switch)  # type: ignore[arg-type]
    db.put(b"k", b"v", durable=False)
    switch.down = True
    db.close()
    assert db.close_reason == "clean"
    switch.down = False
    with Db.open(ROOT, settings, object_store=switch) as again:  # type: ignore[arg-type]
        assert again.get(b"k") == b"v"


def test_a_clean_close_records_the_wal_tail_in_the_manifest() -> None:
    """The manifest a close leaves names the newest WAL (``wal_id_last_seen``): a clone made
    from it copies the WAL up to that id, so writes only in the WAL must be inside it."""
    from shale import Admin

    store = MemoryStore()
    settings = FAST.replace(flush_interval=None)
    with Db.open(ROOT, settings, object_store=store) as db:
        db.put(b"a", b"1")
        db.flush(memtable=True)
        db.put(b"b", b"2")  # only in the WAL
        db.put(b"c", b"3")
    wal_ids = sorted(int(m.key.rsplit("/", 1)[1].split(".")[0]) for m in store.list(f"{ROOT}/wal/"))
    manifest = Admin(ROOT, object_store=store).read_manifest().manifest
    assert manifest.wal_id_last_seen == wal_ids[-1]
    before = len(list(store.list(f"{ROOT}/manifest/")))
    with Db.open(ROOT, settings, object_store=store):
        pass  # nothing written: the fence WAL only, recorded, and no more manifests than that
    after = Admin(ROOT, object_store=store).read_manifest().manifest
    assert after.wal_id_last_seen >= manifest.wal_id_last_seen
    assert len(list(store.list(f"{ROOT}/manifest/"))) <= before + 2
