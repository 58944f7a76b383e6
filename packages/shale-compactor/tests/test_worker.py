"""Distributed compaction (RFC-0025): a coordinator (``CompactorOptions.worker = None``) and
:class:`~shale_compactor.CompactionWorker` s on one database, in one process.

Claims, heartbeats, reclaims and commits are driven step by step (``poll``, ``heartbeat``,
``run_once``); the coordinator's clock is manual so a heartbeat times out when the test says so.
Executors are the real one, optionally behind a gate that holds a job mid-way (after its first
output) until the test lets it go or the worker stops it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shale import Db, Settings
from shale.clock import ManualClock
from shale.fbs.compactions import (
    STATUS_COMPACTED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    STATUS_SUBMITTED,
    Compaction,
    Compactions,
)
from shale.ids import Ulid
from shale.meta.compactions_store import CompactionsStore, StoredCompactions
from shale.objstore.memory import MemoryStore
from shale.settings import CompactionWorkerOptions, CompactorOptions
from shale_compactor import CompactionExecutor, CompactionStopped, CompactionWorker, Compactor
from shale_compactor.state import merge_worker_compactions, read_view, reclaim_stale_workers

ROOT = "db"
FAST = Settings(flush_interval=0.01, compactor_options=None, garbage_collector_options=None)
COORD = CompactorOptions(poll_interval=0.05, worker=None, worker_heartbeat_timeout=10.0)
WOPTS = CompactionWorkerOptions(
    max_concurrent_compactions=1,
    compactions_poll_interval=0.05,
    heartbeat_interval=0.05,
    max_sst_size=4096,
)
WAIT_S = 30.0


def wait_until(pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        tick.wait(0.01)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def expected(store: MemoryStore) -> dict[bytes, bytes]:
    """Four L0 SSTs of overlapping keys: a due size-tiered compaction."""
    out: dict[bytes, bytes] = {}
    with Db.open(ROOT, FAST, object_store=store) as db:
        for r in range(4):
            for i in range(400):
                k, v = b"key%05d" % i, b"r%d-%d-" % (r, i) + b"x" * 40
                db.put(k, v)
                out[k] = v
            db.flush(memtable=True)
    return out


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time_ns() // 1_000_000)


@pytest.fixture
def coordinator(store: MemoryStore, clock: ManualClock) -> Iterator[Compactor]:
    c = Compactor(store, ROOT, FAST, options=COORD, clock=clock)
    yield c
    c.stop()


def compactions(store: MemoryStore) -> list[Compaction]:
    c = read_view(store, ROOT).compactions
    assert c is not None
    return c.recent_compactions


def only(store: MemoryStore) -> Compaction:
    (c,) = [x for x in compactions(store) if x.status != STATUS_COMPLETED]
    return c


def contents(store: MemoryStore) -> dict[bytes, bytes]:
    with Db.open(ROOT, FAST, object_store=store) as db:
        return {k: v for k, v in db.scan()}


class GatedExecutor:
    """The real executor; after the first output of a job it waits until ``release`` is set
    (or the job is stopped, then it stops like the executor does)."""

    def __init__(self, store: MemoryStore) -> None:
        settings = FAST.replace(compactor_options=CompactorOptions(max_sst_size=4096))
        self.inner = CompactionExecutor(store, ROOT, settings=settings)
        self.release = threading.Event()
        self.held = threading.Event()

    def execute(self, job: Any, *, on_output: Any, stop: Any, **kw: Any) -> Any:
        def gated(sst: Any) -> None:
            on_output(sst)
            self.held.set()
            while not self.release.is_set():
                if stop.wait(0.01):
                    raise CompactionStopped("stopped at the gate")

        return self.inner.execute(job, on_output=gated, stop=stop, **kw)


def worker(store: MemoryStore, executor: Any = None, wid: str | None = None) -> CompactionWorker:
    return CompactionWorker(store, ROOT, FAST, options=WOPTS, executor=executor, worker_id=wid)


# -- pure transitions -----------------------------------------------------------------------------


def _c(status: int, worker_id: str | None = None, hb: int | None = None, n: int = 1) -> Compaction:
    return Compaction(
        id=Ulid.new(1000 + n), status=status, worker_id=worker_id, last_heartbeat_ms=hb
    )


def test_coordinator_adopts_only_worker_transitions() -> None:
    sched = _c(STATUS_SCHEDULED)
    running = dataclasses.replace(sched, status=STATUS_RUNNING, worker_id="w1", last_heartbeat_ms=5)
    compacted = dataclasses.replace(running, status=STATUS_COMPACTED)
    completed = dataclasses.replace(running, status=STATUS_COMPLETED)

    def merged(local: Compaction, remote: Compaction) -> Compaction:
        out = merge_worker_compactions(Compactions(3, [local]), Compactions(3, [remote]))
        (x,) = out.recent_compactions
        return x

    assert merged(sched, running) == running  # a claim
    assert merged(running, sched) == sched  # a release
    beat = dataclasses.replace(running, last_heartbeat_ms=9)
    assert merged(running, beat) == beat  # a heartbeat
    assert merged(running, compacted) == compacted
    assert merged(completed, compacted) == completed  # the coordinator committed it already
    assert merged(compacted, running) == compacted  # no step back
    # unknown remote jobs: Submitted (someone submitted it) yes, Running (not scheduled here) no
    sub = _c(STATUS_SUBMITTED, n=2)
    out = merge_worker_compactions(Compactions(3, []), Compactions(3, [sub, running]))
    assert out.recent_compactions == [sub]


def test_reclaim_only_stale_heartbeats() -> None:
    fresh = _c(STATUS_RUNNING, "w1", hb=9_000, n=1)
    stale = _c(STATUS_RUNNING, "w2", hb=1_000, n=2)
    orphan = _c(STATUS_RUNNING, None, None, n=3)
    new, reclaimed = reclaim_stale_workers(Compactions(1, [fresh, stale, orphan]), 10_000, 5_000)
    assert [x.id for x in reclaimed] == [stale.id, orphan.id]
    assert [x.status for x in new.recent_compactions] == [
        STATUS_RUNNING,
        STATUS_SCHEDULED,
        STATUS_SCHEDULED,
    ]
    assert new.recent_compactions[1].worker_id is None


# -- coordinator + workers ------------------------------------------------------------------------


def test_worker_runs_a_scheduled_job_and_the_coordinator_commits_it(
    store: MemoryStore, expected: dict[bytes, bytes], coordinator: Compactor
) -> None:
    coordinator.run_once()
    job = only(store)
    assert job.status == STATUS_SCHEDULED and job.worker_id is None
    w = worker(store)
    assert w.poll() == [job.id]
    running = only(store)  # (the small job may be done already)
    assert running.status in (STATUS_RUNNING, STATUS_COMPACTED)
    assert running.worker_id == w.worker_id and running.last_heartbeat_ms is not None
    wait_until(lambda: only(store).status == STATUS_COMPACTED)
    assert only(store).output_ssts
    w.stop()
    reports = coordinator.run_once()
    assert [(r.id, r.status) for r in reports] == [(job.id, "completed")]
    done = next(x for x in compactions(store) if x.id == job.id)
    assert done.status == STATUS_COMPLETED
    m = read_view(store, ROOT).manifest
    assert not m.l0 and [s.sst.id for s in m.compacted[0].ssts] == [s.id for s in done.output_ssts]
    assert contents(store) == expected


class InterleavingStore(MemoryStore):
    """A memory store that runs ``before`` once, just before the first conditional write of a
    ``.compactions`` version from the thread named ``thread``: a deterministic lost race."""

    def __init__(self) -> None:
        super().__init__()
        self.before: Callable[[], None] | None = None
        self.thread = ""

    def put_if_absent(self, key: str, data: bytes) -> None:
        hook = self.before
        if hook and key.endswith(".compactions") and threading.current_thread().name == self.thread:
            self.before = None
            hook()
        super().put_if_absent(key, data)


def test_two_workers_racing_for_one_job_exactly_one_wins(clock: ManualClock) -> None:
    store = InterleavingStore()
    with Db.open(ROOT, FAST, object_store=store) as db:
        for r in range(4):
            db.put(b"k%d" % r, b"v")
            db.flush(memtable=True)
    coordinator = Compactor(store, ROOT, FAST, options=COORD, clock=clock)
    try:
        coordinator.run_once()
        job = only(store)
        w1, w2 = worker(store, wid="w1"), worker(store, wid="w2")
        won: dict[str, list[Ulid]] = {}
        # w2 reads the Scheduled job, then w1 claims it before w2's write lands
        store.before = lambda: won.__setitem__("w1", w1.poll())
        store.thread = "racer"
        t = threading.Thread(target=lambda: won.__setitem__("w2", w2.poll()), name="racer")
        t.start()
        t.join(WAIT_S)
        assert won == {"w1": [job.id], "w2": []}
        assert only(store).worker_id == "w1" or only(store).status == STATUS_COMPACTED
        assert w2.active == []
        wait_until(lambda: only(store).status == STATUS_COMPACTED)
        assert only(store).worker_id == "w1"
        w1.stop()
        w2.stop()
    finally:
        coordinator.stop()


def test_stale_worker_is_reclaimed_aborts_and_another_resumes_its_job(
    store: MemoryStore, expected: dict[bytes, bytes], coordinator: Compactor, clock: ManualClock
) -> None:
    coordinator.run_once()
    gate = GatedExecutor(store)
    a, b = worker(store, gate, "worker-a"), worker(store, wid="worker-b")
    (cid,) = a.poll()
    assert gate.held.wait(WAIT_S)  # a is mid-job: one output written and recorded
    recorded = only(store).output_ssts
    assert len(recorded) == 1 and only(store).worker_id == "worker-a"

    # a's heartbeat is fresh: nothing to reclaim
    coordinator.run_once()
    assert only(store).status == STATUS_RUNNING

    clock.advance(round(COORD.worker_heartbeat_timeout * 1000) + 60_000)  # a went silent
    coordinator.run_once()
    job = only(store)
    assert (job.status, job.worker_id) == (STATUS_SCHEDULED, None)
    assert job.output_ssts == recorded  # progress kept for the next worker

    assert a.heartbeat() == [cid]  # a learns it lost the job and stops it
    wait_until(lambda: a.active == [])
    assert only(store).status == STATUS_SCHEDULED  # a released nothing: not its job any more

    assert b.poll() == [cid]
    wait_until(lambda: only(store).status == STATUS_COMPACTED)
    final = only(store)
    assert final.worker_id == "worker-b"
    assert final.output_ssts[0] == recorded[0]  # resumed after a's output
    assert coordinator.run_once()[0].status == "completed"
    assert contents(store) == expected
    a.stop()
    b.stop()


def test_graceful_stop_releases_the_job_to_scheduled(
    store: MemoryStore, expected: dict[bytes, bytes], coordinator: Compactor
) -> None:
    coordinator.run_once()
    gate = GatedExecutor(store)
    a = worker(store, gate)
    t = threading.Thread(target=a.run)
    t.start()
    assert gate.held.wait(WAIT_S)
    a.stop()
    t.join(WAIT_S)
    job = only(store)
    assert (job.status, job.worker_id, len(job.output_ssts)) == (STATUS_SCHEDULED, None, 1)
    # the next worker takes it at once (no heartbeat timeout) and finishes it
    b = worker(store)
    assert b.poll() == [job.id]
    wait_until(lambda: only(store).status == STATUS_COMPACTED)
    b.stop()
    coordinator.run_once()
    assert contents(store) == expected


def test_coordinator_restart_leaves_running_jobs_to_their_worker(
    store: MemoryStore, expected: dict[bytes, bytes], coordinator: Compactor, clock: ManualClock
) -> None:
    coordinator.run_once()
    gate = GatedExecutor(store)
    a = worker(store, gate, "worker-a")
    a.poll()
    assert gate.held.wait(WAIT_S)
    coordinator.stop()
    again = Compactor(store, ROOT, FAST, options=COORD, clock=clock)
    try:
        again.run_once()
        assert (only(store).status, only(store).worker_id) == (STATUS_RUNNING, "worker-a")
        gate.release.set()
        wait_until(lambda: only(store).status == STATUS_COMPACTED)
        assert again.run_once()[0].status == "completed"
    finally:
        again.stop()
        a.stop()
    assert contents(store) == expected


def test_compacted_job_whose_sources_left_the_manifest_fails(
    store: MemoryStore, expected: dict[bytes, bytes], coordinator: Compactor
) -> None:
    coordinator.run_once()
    w = worker(store)
    w.poll()
    wait_until(lambda: only(store).status == STATUS_COMPACTED)
    w.stop()
    reported = only(store)
    coordinator.run_once()
    assert [x.status for x in compactions(store) if x.id == reported.id] == [STATUS_COMPLETED]
    # a report of the same sources with other outputs (a zombie's) arrives: its sources have
    # left the manifest, so it fails instead of being committed twice
    now = time.time_ns() // 1_000_000
    stale = dataclasses.replace(
        reported,
        id=Ulid.new(now),
        output_ssts=[dataclasses.replace(reported.output_ssts[0], id=Ulid.new(now))],
    )
    stored = StoredCompactions.load(CompactionsStore(store, ROOT))
    stored.update(
        lambda c: dataclasses.replace(c, recent_compactions=[*c.recent_compactions, stale])
    )
    reports = coordinator.run_once()
    assert [(r.id, r.status) for r in reports] == [(stale.id, "failed")]
    assert [x.status for x in compactions(store) if x.id == stale.id] == [STATUS_FAILED]
    assert contents(store) == expected


def test_coordinator_embedded_in_the_writer_with_a_worker_thread(store: MemoryStore) -> None:
    """SlateDB's "coordinator in the writer, remote workers": ``Db`` settings with
    ``compactor_options.worker = None``; the L0 flush wakes the coordinator, a worker (a thread
    here) runs the job, the coordinator commits it."""
    settings = FAST.replace(compactor_options=COORD.replace(commit_compacted_interval=0.05))
    w = worker(store)
    t = threading.Thread(target=w.run)
    with Db.open(ROOT, settings, object_store=store) as db:
        t.start()
        try:
            for r in range(4):
                db.put(b"key", b"value %d" % r)
                db.flush(memtable=True)
            wait_until(lambda: not db.refresh_manifest().l0)
            assert w.compacted and db.get(b"key") == b"value 3"
        finally:
            w.stop()
            t.join(WAIT_S)
    done = [x for x in compactions(store) if x.id == w.compacted[0]]
    assert [x.status for x in done] == [STATUS_COMPLETED]
