"""The Compactor: scheduling, execution, commit, resume after a crash, fencing, the plugin.

Databases live in in-memory stores; waits use conditions with timeouts (compaction reports
come through the ``shale_compaction_finished`` hook), never bare sleeps.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import shale
from shale import Db, Settings
from shale.batch import WriteBatch
from shale.errors import ClosedError, InvalidError
from shale.fbs.compactions import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
)
from shale.fbs.manifest import CompactedSst
from shale.ids import compacted_path
from shale.meta.compactions_store import CompactionsStore
from shale.objstore import TransientStoreError
from shale.objstore.memory import MemoryStore
from shale.plugins import get_host
from shale.settings import CompactorOptions
from shale.sst import SsTable
from shale_compactor import (
    FULL,
    CompactionSpec,
    CompactionStopped,
    Compactor,
    read_status,
    submit_compaction,
)
from shale_compactor.filters import DROP, KEEP
from shale_compactor.plugin import embedded_compactor
from shale_compactor.state import CompactorStateWriter, read_view

ROOT = "db"
FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
OPTS = CompactorOptions(poll_interval=0.05)
WAIT_S = 30.0


def fill(
    db: Db,
    rounds: int = 4,
    keys: int = 300,
    flush: bool = True,
    expected: dict[bytes, bytes] | None = None,
) -> dict[bytes, bytes]:
    """``rounds`` batches over the same keys (overwrites, some deletes), one L0 each; updates
    and returns the ``expected`` model."""
    expected = {} if expected is None else expected
    for r in range(rounds):
        batch = WriteBatch()
        for i in range(keys):
            k = b"key%05d" % i
            if (i + r) % 7 == 0:
                batch.delete(k)
                expected.pop(k, None)
            else:
                v = b"r%d-%d-" % (r, i) + b"x" * (i % 50)
                batch.put(k, v)
                expected[k] = v
        db.write(batch)
        if flush:
            db.flush(memtable=True)
    return expected


def wait_until(pred: Any, timeout: float = WAIT_S) -> None:
    """Re-check ``pred`` every 10 ms until true; fail after ``timeout`` seconds."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        tick.wait(0.01)


def contents(db: Db) -> dict[bytes, bytes]:
    return dict(db.scan())


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def db(store: MemoryStore) -> Iterator[Db]:
    d = Db.open(ROOT, FAST, object_store=store)
    yield d
    d.close()


def copy_store(src: MemoryStore) -> MemoryStore:
    dst = MemoryStore()
    for meta in src.list(""):
        dst.put(meta.key, src.get(meta.key))
    return dst


def run_rows(store: MemoryStore, ssts: list[CompactedSst]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for s in ssts:
        rows.extend(tuple(r) for r in SsTable.open(store, compacted_path(ROOT, s.id)).iter_rows())
    return rows


class Reports:
    """A plugin collecting ``shale_compaction_finished`` reports."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.reports: list[Any] = []

    @shale.hookimpl
    def shale_compaction_finished(self, report: Any) -> None:
        with self.cond:
            self.reports.append(report)
            self.cond.notify_all()

    def wait(self, pred: Any, timeout: float = WAIT_S) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.reports), timeout), self.reports


@pytest.fixture
def reports() -> Iterator[Reports]:
    r = Reports()
    host = get_host()
    host.register(r, name="test-reports")
    yield r
    host.unregister(name="test-reports")


# -- run_once -----------------------------------------------------------------------------------


def test_run_once_compacts_l0s_into_a_sorted_run(
    store: MemoryStore, db: Db, reports: Reports
) -> None:
    expected = fill(db)
    assert len(db.manifest().l0) == 4
    c = Compactor(store, ROOT, FAST, options=OPTS)
    (report,) = c.run_once()
    c.stop()
    assert report.status == "completed" and report.destination == 0
    assert len(report.l0_view_ids) == 4 and report.bytes_out > 0
    assert reports.reports == [report]
    m = db.refresh_manifest()
    assert m.l0 == [] and [r.id for r in m.compacted] == [0]
    assert m.last_compacted_l0_view_id == report.l0_view_ids[0]
    assert len(m.checkpoints) == 1 and m.checkpoints[0].expire_time_s is not None
    assert contents(db) == expected
    # the compactions file keeps the finished job (the last finished one)
    cview = read_view(store, ROOT)
    assert [x.status for x in cview.recent_compactions()] == [STATUS_COMPLETED]
    assert cview.compactions is not None
    assert cview.compactions.compactor_epoch == cview.manifest.compactor_epoch
    db.close()
    with Db.open(ROOT, FAST, object_store=store) as again:
        assert contents(again) == expected


def test_run_once_with_nothing_to_do(store: MemoryStore, db: Db) -> None:
    fill(db, rounds=2)
    c = Compactor(store, ROOT, FAST, options=OPTS)
    assert c.run_once() == []
    assert c.status() == [] and c.epoch == 1
    c.stop()
    with pytest.raises(ClosedError):
        c.run_once()


def test_writer_keeps_flushing_while_compacting(store: MemoryStore, db: Db) -> None:
    expected = fill(db)
    c = Compactor(store, ROOT, FAST, options=OPTS)
    inner = c.executor

    class FlushMeanwhile:
        def execute(self, job: Any, **kw: Any) -> Any:
            # newer L0s reach the manifest while the job runs: the commit must keep them
            fill(db, rounds=2, keys=50, expected=expected)
            return inner.execute(job, **kw)

    c.executor = FlushMeanwhile()
    (report,) = c.run_once()
    c.stop()
    assert len(report.l0_view_ids) == 4
    m = db.refresh_manifest()
    assert len(m.l0) == 2 and [r.id for r in m.compacted] == [0]
    assert contents(db) == expected


def test_sorted_runs_are_merged_size_tiered(store: MemoryStore, db: Db) -> None:
    opts = dataclasses.replace(OPTS, min_compaction_sources=2, max_compaction_sources=2)
    c = Compactor(store, ROOT, FAST, options=opts)
    expected: dict[bytes, bytes] = {}
    for _ in range(2):
        fill(db, rounds=2, expected=expected)
        assert [r.status for r in c.run_once()] == ["completed"]
    assert [r.id for r in db.refresh_manifest().compacted] == [1, 0]
    (report,) = c.run_once()  # two similar runs -> merged into the lower id
    c.stop()
    assert report.sorted_runs == (1, 0) and report.destination == 0
    assert [r.id for r in db.refresh_manifest().compacted] == [0]
    assert contents(db) == expected


# -- submissions --------------------------------------------------------------------------------


def test_submit_full_and_specs(store: MemoryStore, db: Db) -> None:
    expected = fill(db, rounds=2)  # below min_compaction_sources: nothing is proposed
    c = Compactor(store, ROOT, FAST, options=OPTS)
    cid = c.submit(FULL)
    (report,) = c.run_once()
    assert report.id == cid and report.status == "completed"
    fill(db, rounds=1, expected=expected)
    m = db.refresh_manifest()
    with pytest.raises(InvalidError):  # destination must be the lowest run among sources
        c.submit(CompactionSpec((m.l0[0].id,), (0,), 1))
    with pytest.raises(InvalidError):
        c.submit("everything")
    cid = c.submit(CompactionSpec((m.l0[0].id,), (0,), 0))
    (report,) = c.run_once()
    c.stop()
    assert report.id == cid
    assert contents(db) == expected


def test_standalone_submit_is_picked_up(store: MemoryStore, db: Db) -> None:
    expected = fill(db, rounds=2)
    c = Compactor(store, ROOT, FAST, options=OPTS)
    c.start()
    before = read_view(store, ROOT)
    cid = submit_compaction(store, ROOT, FULL)
    after = read_view(store, ROOT)
    # submitting fences nobody
    assert after.compactions is not None and before.compactions is not None
    assert after.compactions.compactor_epoch == before.compactions.compactor_epoch
    assert after.manifest_id == before.manifest_id
    _, jobs = read_status(store, ROOT)
    assert [(j.id, j.status) for j in jobs] == [(cid, "submitted")]
    (report,) = c.run_once()
    c.stop()
    assert report.id == cid
    _, jobs = read_status(store, ROOT)
    assert [(j.status, j.percentage) for j in jobs] == [("completed", 100.0)]
    assert contents(db) == expected
    with pytest.raises(InvalidError):
        submit_compaction(store, ROOT, CompactionSpec((), (7,), 7))


def test_submission_without_compactions_file_creates_it(store: MemoryStore, db: Db) -> None:
    fill(db, rounds=1)
    cid = submit_compaction(store, ROOT, FULL)
    assert read_view(store, ROOT).get(cid) is not None
    c = Compactor(store, ROOT, FAST, options=OPTS)
    (report,) = c.run_once()
    c.stop()
    assert report.id == cid and report.status == "completed"


def test_stale_submission_fails(store: MemoryStore, db: Db, reports: Reports) -> None:
    fill(db, rounds=4)
    cid = submit_compaction(store, ROOT, FULL)
    fill(db, rounds=1)  # a newer L0: the full spec is still valid (the oldest L0s, consecutive)
    c = Compactor(store, ROOT, FAST, options=OPTS)
    done = c.run_once()
    assert [r.id for r in done] == [cid]
    stale = submit_compaction(store, ROOT, CompactionSpec((), (0,), 0))
    # someone else's compaction removes run 0 before ours starts: simulate by a full compaction
    writer = CompactorStateWriter.open(c.manifest_store, CompactionsStore(store, ROOT))
    writer.write_manifest_safely(
        lambda m, _n: dataclasses.replace(m, compacted=[dataclasses.replace(m.compacted[0], id=5)]),
        checkpoint_lifetime=None,
    )
    c2 = Compactor(store, ROOT, FAST, options=OPTS)
    (failed,) = c2.run_once()
    c2.stop()
    assert failed.id == stale and failed.status == "failed" and "not" in (failed.error or "")
    assert read_view(store, ROOT).get(stale).status == STATUS_FAILED  # type: ignore[union-attr]


# -- resume, crash recovery ---------------------------------------------------------------------


class StopAfterOutputs:
    """Wraps the real executor; sets the compactor's stop event after ``n`` outputs (a crash:
    the job is left Running in the ``.compactions`` file with those outputs recorded)."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner, self.n, self.seen = inner, n, 0

    def execute(
        self,
        job: Any,
        *,
        on_output: Any,
        on_progress: Any = None,
        stop: threading.Event | None = None,
    ) -> list[CompactedSst]:
        assert stop is not None

        def out(sst: CompactedSst) -> None:
            on_output(sst)
            self.seen += 1
            if self.seen >= self.n:
                stop.set()  # the process dies here: nothing after this output is recorded
                raise CompactionStopped("simulated crash")

        outputs: list[CompactedSst] = self.inner.execute(
            job, on_output=out, on_progress=on_progress, stop=stop
        )
        return outputs


def test_interrupted_compaction_resumes_where_it_stopped(store: MemoryStore, db: Db) -> None:
    expected = fill(db, rounds=4, keys=2000)
    small = dataclasses.replace(OPTS, max_sst_size=8192)
    twin = copy_store(store)  # the same database, compacted without interruption below

    first = Compactor(store, ROOT, FAST, options=small)
    first.executor = StopAfterOutputs(first.executor, 2)
    assert first.run_once() == []
    assert first.stopped
    (job,) = read_view(store, ROOT).active_compactions()
    assert job.status == STATUS_RUNNING and len(job.output_ssts) == 2
    recorded = list(job.output_ssts)

    second = Compactor(store, ROOT, FAST, options=small)
    (report,) = second.run_once()
    second.stop()
    assert report.id == job.id and report.status == "completed"
    assert list(report.output_ssts[: len(recorded)]) == recorded
    assert len(report.output_ssts) > len(recorded)
    assert contents(db) == expected

    clean = Compactor(twin, ROOT, FAST, options=small)
    (uninterrupted,) = clean.run_once()
    clean.stop()
    resumed_rows = run_rows(store, list(report.output_ssts))
    assert resumed_rows == run_rows(twin, list(uninterrupted.output_ssts))


class Crash(BaseException):
    """Simulates the process dying at a chosen point."""


def test_commit_that_reached_the_manifest_is_completed_on_restart(
    store: MemoryStore, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = fill(db)
    c = Compactor(store, ROOT, FAST, options=OPTS)
    c.start()
    original = CompactorStateWriter.write_compactions_safely
    calls = {"n": 0}

    def crash_after_manifest(self: CompactorStateWriter) -> Any:
        if self.state.manifest.compacted and calls["n"] == 0:
            calls["n"] += 1
            raise Crash()
        return original(self)

    monkeypatch.setattr(CompactorStateWriter, "write_compactions_safely", crash_after_manifest)
    with pytest.raises(Crash):
        c.run_once()
    monkeypatch.undo()
    c._stop.set()  # the crashed process is gone
    (job,) = read_view(store, ROOT).active_compactions()
    assert job.status == STATUS_RUNNING
    m_before = db.refresh_manifest()
    assert m_before.l0 == [] and [r.id for r in m_before.compacted] == [0]

    again = Compactor(store, ROOT, FAST, options=OPTS)
    (report,) = again.run_once()
    again.stop()
    assert report.id == job.id and report.status == "completed"
    m = db.refresh_manifest()
    assert m.compacted == m_before.compacted  # not redone
    assert read_view(store, ROOT).get(job.id).status == STATUS_COMPLETED  # type: ignore[union-attr]
    assert contents(db) == expected


def test_run_once_sees_the_outcome_of_a_job_that_finished_before_it_looked(
    store: MemoryStore, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job can finish (and leave the running set) between the tick that started it and
    run_once's wait: its outcome, a crash included, must still reach run_once's caller."""
    fill(db)
    c = Compactor(store, ROOT, FAST, options=OPTS)
    original_tick = Compactor._tick

    def tick_then_let_jobs_finish(self: Compactor, *a: Any, **kw: Any) -> Any:
        started = original_tick(self, *a, **kw)
        wait_until(lambda: not self._jobs)  # the job ran to its end before run_once looks
        return started

    original = CompactorStateWriter.write_compactions_safely

    def crash_after_manifest(self: CompactorStateWriter) -> Any:
        if self.state.manifest.compacted:
            raise Crash()
        return original(self)

    monkeypatch.setattr(Compactor, "_tick", tick_then_let_jobs_finish)
    monkeypatch.setattr(CompactorStateWriter, "write_compactions_safely", crash_after_manifest)
    with pytest.raises(Crash):
        c.run_once()
    monkeypatch.undo()
    c._stop.set()


class FlakyStore(MemoryStore):
    """Fails the next ``n`` creates under ``part/`` with a transient error once armed."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, int] = {}

    def put_if_absent(self, key: str, data: bytes) -> None:
        for part, n in self.fail.items():
            if f"/{part}/" in key and n > 0:
                self.fail[part] = n - 1
                raise TransientStoreError("injected", key=key)
        super().put_if_absent(key, data)


def test_transient_store_errors_are_retried(reports: Reports) -> None:
    store = FlakyStore()
    with Db.open(ROOT, FAST, object_store=store) as db:
        expected = fill(db)
        c = Compactor(store, ROOT, FAST, options=OPTS)
        c.start()
        inner = c.executor

        class ArmWhileRunning:
            def execute(self, job: Any, **kw: Any) -> Any:
                store.fail["compactions"] = 2  # the output record and the first commit write
                return inner.execute(job, **kw)

        c.executor = ArmWhileRunning()
        (report,) = c.run_once()
        c.stop()
        assert report.status == "completed"
        done = read_view(store, ROOT).get(report.id)
        assert done is not None and done.status == STATUS_COMPLETED
        db.refresh_manifest()
        assert contents(db) == expected


def test_failed_tick_starts_its_jobs_again() -> None:
    store = FlakyStore()
    with Db.open(ROOT, FAST, object_store=store) as db:
        expected = fill(db)
        c = Compactor(store, ROOT, FAST, options=OPTS)
        c.start()
        store.fail["compactions"] = 1  # persisting the Running status fails
        with pytest.raises(TransientStoreError):
            c.run_once()
        assert c.status() == []
        (report,) = c.run_once()
        c.stop()
        assert report.status == "completed"
        db.refresh_manifest()
        assert contents(db) == expected


# -- stand-in executors (status, failures) ----------------------------------------------------


class Gate:
    """A stand-in executor that reports progress, then waits until released."""

    def __init__(self, fail: bool = False) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def execute(
        self,
        job: Any,
        *,
        on_output: Any,
        on_progress: Any = None,
        stop: threading.Event | None = None,
    ) -> list[CompactedSst]:
        on_progress(1000)
        self.started.set()
        assert self.release.wait(WAIT_S)
        if self.fail:
            raise RuntimeError("disk on fire")
        return [*job.resume_outputs, job.l0[0].sst]  # reuse an input as the "output"


def test_status_shows_running_jobs(store: MemoryStore, db: Db) -> None:
    fill(db)
    gate = Gate()
    c = Compactor(store, ROOT, FAST, options=OPTS, executor=gate)
    t = threading.Thread(target=c.run_once)
    t.start()
    try:
        assert gate.started.wait(WAIT_S)
        (s,) = c.status()
        assert s.status == "running" and s.l0 == 4 and s.bytes_processed == 1000
        assert 0 < s.percentage < 100 and s.total_bytes > 1000
        _, jobs = read_status(store, ROOT)
        assert [j.status for j in jobs] == ["running"]
    finally:
        gate.release.set()
        t.join(WAIT_S)
    c.stop()
    assert c.status() == []


def test_failed_job_is_recorded_and_reported(store: MemoryStore, db: Db, reports: Reports) -> None:
    expected = fill(db)
    gate = Gate(fail=True)
    gate.release.set()
    c = Compactor(store, ROOT, FAST, options=OPTS, executor=gate)
    (report,) = c.run_once()
    c.stop()
    assert report.status == "failed" and "disk on fire" in (report.error or "")
    assert reports.reports == [report]
    assert read_view(store, ROOT).get(report.id).status == STATUS_FAILED  # type: ignore[union-attr]
    assert len(db.refresh_manifest().l0) == 4
    assert contents(db) == expected


# -- fencing ------------------------------------------------------------------------------------


def test_second_compactor_fences_the_first(store: MemoryStore, db: Db) -> None:
    fill(db)
    first = Compactor(store, ROOT, FAST, options=OPTS)
    first.start()
    second = Compactor(store, ROOT, FAST, options=OPTS)
    second.start()
    assert second.epoch == first.epoch + 1  # type: ignore[operator]
    snapshot = {m.key: m.etag for m in store.list("")}
    with pytest.raises(ClosedError) as exc:
        first.run_once()
    assert exc.value.reason == "fenced" and first.fenced
    assert {m.key: m.etag for m in store.list("")} == snapshot  # the fenced one wrote nothing
    (report,) = second.run_once()
    second.stop()
    assert report.status == "completed"
    with pytest.raises(ClosedError):
        first.submit(FULL)


def test_running_loop_stops_when_fenced(store: MemoryStore, db: Db) -> None:
    first = Compactor(store, ROOT, FAST, options=OPTS)
    t = threading.Thread(target=first.run)
    t.start()
    try:
        # wait until the first has fenced in, then fence it out
        wait_until(lambda: first.epoch is not None)
        second = Compactor(store, ROOT, FAST, options=OPTS)
        second.start()
        t.join(WAIT_S)
        assert not t.is_alive() and first.fenced
        second.stop()
    finally:
        first.stop()
        t.join(WAIT_S)


def test_job_fenced_mid_flight_does_not_commit(store: MemoryStore, db: Db) -> None:
    fill(db)
    gate = Gate()
    first = Compactor(store, ROOT, FAST, options=OPTS, executor=gate)

    def run_fenced() -> None:
        with pytest.raises(ClosedError):
            first.run_once()

    t = threading.Thread(target=run_fenced)
    t.start()
    assert gate.started.wait(WAIT_S)
    second = Compactor(store, ROOT, FAST, options=OPTS)
    second.start()
    snapshot = {m.key: m.etag for m in store.list("")}
    gate.release.set()
    t.join(WAIT_S)
    assert first.fenced
    assert {m.key: m.etag for m in store.list("")} == snapshot
    # the newer compactor resumes the job the fenced one had started
    (report,) = second.run_once()
    second.stop()
    assert report.status == "completed"


# -- filters and hooks --------------------------------------------------------------------------


class DropPrefix:
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.contexts: list[Any] = []

    def create_compaction_filter(self, context: Any) -> Any:
        self.contexts.append(context)
        prefix = self.prefix

        class F:
            def filter(self, entry: Any) -> Any:
                return DROP if entry[0].startswith(prefix) else KEEP

            def on_compaction_end(self) -> None:
                pass

        return F()


def test_filter_suppliers_and_filter_hook(store: MemoryStore, db: Db) -> None:
    expected = fill(db)

    class HookFilters:
        @shale.hookimpl
        def shale_compaction_filter(self, context: Any) -> Any:
            return DropPrefix(b"key0001").create_compaction_filter(context)

    supplier = DropPrefix(b"key0000")
    host = get_host()
    host.register(HookFilters(), name="test-filters")
    try:
        c = Compactor(store, ROOT, FAST, options=OPTS, filter_suppliers=[supplier])
        (report,) = c.run_once()
        c.stop()
    finally:
        host.unregister(name="test-filters")
    assert report.status == "completed"
    (ctx,) = supplier.contexts
    assert ctx.destination == 0 and ctx.is_dest_last_run
    want = {k: v for k, v in expected.items() if not k.startswith((b"key0000", b"key0001"))}
    db.refresh_manifest()
    assert contents(db) == want


def test_scheduler_hook(store: MemoryStore, db: Db) -> None:
    fill(db, rounds=2)

    class EagerScheduler:
        def propose(self, view: Any) -> list[CompactionSpec]:
            if len(view.manifest.l0) < 2 or view.active_compactions():
                return []
            return [CompactionSpec(tuple(v.id for v in view.manifest.l0), (), 0)]

        def validate(self, view: Any, spec: CompactionSpec) -> None:
            pass

    class Plugin:
        @shale.hookimpl
        def shale_compaction_scheduler(self, options: Any) -> Any:
            return EagerScheduler()

    host = get_host()
    host.register(Plugin(), name="test-scheduler")
    try:
        c = Compactor(store, ROOT, FAST, options=OPTS)
    finally:
        host.unregister(name="test-scheduler")
    assert isinstance(c.scheduler, EagerScheduler)
    (report,) = c.run_once()
    c.stop()
    assert report.status == "completed" and len(report.l0_view_ids) == 2


# -- the embedded compactor (plugin) ------------------------------------------------------------


def test_embedded_compactor_end_to_end(store: MemoryStore, reports: Reports) -> None:
    settings = FAST.replace(
        compactor_options=CompactorOptions(poll_interval=0.05),
        l0_sst_size_bytes=4096,
    )
    with Db.open(ROOT, settings, object_store=store) as db:
        compactor = embedded_compactor(db)
        assert compactor is not None
        expected = fill(db, rounds=5)
        reports.wait(lambda rs: any(r.status == "completed" for r in rs))

        # the database sees the sorted run once it polls the manifest
        def compacted() -> bool:
            m = db.refresh_manifest()
            return bool(m.compacted) and len(m.l0) < 4

        wait_until(compacted)
        assert all(r.status == "completed" for r in reports.reports)
        assert contents(db) == expected
        fill(db, rounds=1, keys=20, expected=expected)
        assert contents(db) == expected
    assert embedded_compactor(db) is None and compactor.stopped
    with Db.open(ROOT, FAST, object_store=store) as again:
        assert contents(again) == expected


def test_embedded_compactor_is_woken_by_l0_flushes(store: MemoryStore, reports: Reports) -> None:
    """Event-driven scheduling (issue 14): the writer's L0 flushes wake the embedded compactor
    (``shale_l0_flushed``), so with a poll interval of an hour the compaction that the fourth L0
    makes due still runs (the wait below would otherwise time out)."""
    settings = FAST.replace(compactor_options=CompactorOptions(poll_interval=3600.0))
    with Db.open(ROOT, settings, object_store=store) as db:
        compactor = embedded_compactor(db)
        assert compactor is not None
        expected = fill(db, rounds=3)  # not due yet (min_compaction_sources = 4)

        def sees_three_l0() -> bool:
            try:
                return len(compactor.view().manifest.l0) == 3
            except ClosedError:  # not started yet
                return False

        wait_until(sees_three_l0)  # a tick ran after the third flush; the next is an hour away
        fill(db, rounds=1, expected=expected)  # due now: only the flush's wake-up can start it
        reports.wait(lambda rs: any(r.status == "completed" for r in rs))
        wait_until(lambda: bool(db.refresh_manifest().compacted))
        assert contents(db) == expected


def test_standalone_compactor_wake_runs_a_tick(store: MemoryStore, db: Db) -> None:
    """``Compactor.wake`` runs the next tick at once (a standalone compactor polls otherwise)."""
    expected = fill(db, rounds=4)
    c = Compactor(store, ROOT, FAST, options=CompactorOptions(poll_interval=3600.0))
    thread = threading.Thread(target=c.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(db.refresh_manifest().compacted))
        fill(db, rounds=4, expected=expected)
        c.wake()
        wait_until(lambda: not db.refresh_manifest().l0)
    finally:
        c.stop()
        thread.join(WAIT_S)
    assert contents(db) == expected


def test_no_embedded_compactor_without_options(db: Db) -> None:
    assert embedded_compactor(db) is None


def test_open_by_url() -> None:
    from shale.objstore.memory import forget_named

    url = "memory://compactor-open-test"
    try:
        with Db.open(url, FAST) as db:
            expected = fill(db)
        with Compactor.open(url, FAST, options=OPTS) as c:
            (report,) = c.run_once()
        assert report.status == "completed"
        with Db.open(url, FAST) as db:
            assert contents(db) == expected
            assert not db.manifest().l0
    finally:
        forget_named()


def test_hookspecs_are_declared_once_even_without_the_plugin() -> None:
    import pluggy

    from shale.plugins import PluginHost
    from shale_compactor.hookspecs import ensure_hookspecs

    class Early:
        @shale.hookimpl
        def shale_compaction_scheduler(self, options: Any) -> Any:
            return "mine"

    host = PluginHost(autoload=False)  # the compactor plugin is not loaded
    host.register(Early(), name="early")  # implemented before the spec exists
    assert not host.manager.hook.shale_compaction_scheduler.has_spec()
    ensure_hookspecs(host.manager)
    ensure_hookspecs(host.manager)
    assert host.manager.hook.shale_compaction_scheduler(options=None) == "mine"  # firstresult
    assert isinstance(host.manager, pluggy.PluginManager)


def test_poisoned_key_does_not_stop_compaction_of_other_keys(store: MemoryStore) -> None:
    """Operands another tool stored that this compactor's operator cannot merge (issue 9 item
    12): the compaction completes, other keys are merged, reads of that key alone fail."""
    from shale.errors import DataError
    from shale.merge_operators import CounterMergeOperator

    enc = CounterMergeOperator.encode
    with Db.open(ROOT, FAST.replace(merge_operator="concat"), object_store=store) as db:
        for r in range(4):
            db.merge(b"bad", b"not-a-counter")
            db.merge(b"good", enc(r + 1))
            db.put(b"plain%d" % r, b"v")
            db.flush(memtable=True)
    counter = FAST.replace(merge_operator="counter")
    c = Compactor(store, ROOT, counter, options=OPTS)
    (report,) = c.run_once()
    c.stop()
    assert report.status == "completed"
    with Db.open(ROOT, counter, object_store=store) as db:
        m = db.manifest()
        assert m.l0 == [] and len(m.compacted) == 1
        assert CounterMergeOperator.decode(db.get(b"good") or b"") == 10
        assert db.get(b"plain3") == b"v"
        with pytest.raises(DataError, match="merge operator failed"):
            db.get(b"bad")


def test_permanent_store_error_stops_the_compactor_loop() -> None:
    """Access denied is not retried every poll forever (issue 9 item 14): run() stops."""
    from shale.objstore import PermanentStoreError

    class DenyUploads(MemoryStore):
        denied = 0

        def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
            if "/compacted/" in key and deny.is_set():
                DenyUploads.denied += 1
                raise PermanentStoreError("access denied", key=key)
            super().put(key, data, durable=durable)

    deny = threading.Event()
    store = DenyUploads()
    with Db.open(ROOT, FAST, object_store=store) as db:
        fill(db)
    deny.set()
    c = Compactor(store, ROOT, FAST, options=OPTS)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            c.run()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(WAIT_S)
    stopped = not t.is_alive()
    if not stopped:
        c.stop()
        t.join(WAIT_S)
    assert stopped, "the compactor kept retrying a permanent error"
    assert len(errors) == 1 and isinstance(errors[0], PermanentStoreError)
    assert DenyUploads.denied == 1


def test_bad_arguments_are_invalid_errors(store: MemoryStore, db: Db) -> None:
    """Only shale's error kinds cross the API (issue 9 item 14)."""
    with pytest.raises(InvalidError):
        Compactor(store, 5, FAST)  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        read_status(store, 5)  # type: ignore[arg-type]
    c = Compactor(store, ROOT, FAST, options=OPTS)
    for bad in ("x", math.nan, -1.0, True):
        with pytest.raises(InvalidError):
            c.run_once(timeout=bad)  # type: ignore[arg-type]
    c.stop()


def test_run_once_timeout_is_unavailable(store: MemoryStore, db: Db) -> None:
    from shale.errors import UnavailableError

    fill(db)
    release = threading.Event()

    c = Compactor(store, ROOT, FAST, options=OPTS)
    real = c.executor.execute

    def slow_execute(*args: Any, **kw: Any) -> Any:
        release.wait(WAIT_S)
        return real(*args, **kw)

    c.executor.execute = slow_execute  # type: ignore[method-assign]
    try:
        with pytest.raises(UnavailableError, match="did not finish"):
            c.run_once(timeout=0.05)
    finally:
        release.set()
        c.stop()
