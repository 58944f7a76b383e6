"""A compaction worker: claims Scheduled jobs from ``.compactions``, runs them, reports them
Compacted (SlateDB's ``CompactionWorker``, RFC-0025 distributed compaction).

A coordinator (a :class:`~shale_compactor.Compactor` whose ``CompactorOptions.worker`` is
``None``) schedules and commits; any number of workers, in any process on any host, execute.
Workers never touch the manifest (they only read it) and never run the scheduler. Their only
write is a new version of the ``.compactions`` file (create-if-absent of the next id; on a
conflict the latest version is re-read and the change re-applied), always keeping the
coordinator's epoch:

- **Poll/claim** (every ``compactions_poll_interval``, jittered uniformly in [0.5, 1.5] x the
  interval so workers do not poll in step): up to ``max_concurrent_compactions`` jobs that are
  Scheduled without a worker become ``Running`` with ``worker = {worker_id, now}``. Two workers
  racing for one job both try to create the same next version; exactly one wins, the other
  re-reads, sees the job taken and claims nothing (or another job).
- **Execute** with :class:`~shale_compactor.executor.CompactionExecutor` against a manifest read
  *after* the claim (sources missing there: the claim is released). A job reclaimed from a dead
  worker resumes after the ``output_ssts`` that worker recorded.
- **Progress and heartbeat**: each new output SST is recorded in the job's ``output_ssts`` with
  a fresh ``last_heartbeat_ms``; every ``heartbeat_interval`` all held jobs get a fresh
  ``last_heartbeat_ms`` too. A write that finds the job no longer ``Running`` under this worker
  (the coordinator reclaimed it after ``worker_heartbeat_timeout``, another worker claimed it)
  aborts the job locally: its outputs are orphans for GC.
- **Finish**: ``Compacted`` with the final ``output_ssts`` (only while this worker still owns
  the job). A job that fails is released to Scheduled for any worker to retry.
- **Stop** (:meth:`CompactionWorker.stop`, SIGINT/SIGTERM in ``shale compactor worker``):
  running jobs are interrupted at the next block and released to Scheduled with the outputs
  recorded so far, so another worker resumes them at once instead of waiting for the heartbeat
  timeout. A SIGKILLed worker releases nothing: its jobs wait for the coordinator's reclaim.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shale.spi import (
    SPEC_DRAIN_SEGMENT,
    STATUS_COMPACTED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    Clock,
    CompactedSst,
    Compaction,
    Compactions,
    CompactionsStore,
    CompactionWorkerOptions,
    CompactorOptions,
    InvalidError,
    ManifestStore,
    ObjectStore,
    Settings,
    ShaleError,
    StoredCompactions,
    SystemClock,
    Ulid,
)
from shale_compactor.state import build_job

__all__ = ["CompactionWorker"]

logger = logging.getLogger(__name__)


class _Held:
    """A job this worker claimed."""

    def __init__(self, compaction: Compaction) -> None:
        self.compaction = compaction
        self.outputs: list[CompactedSst] = list(compaction.output_ssts)
        self.stop = threading.Event()
        self.lost = False


def _replace(c: Compactions, x: Compaction) -> Compactions:
    return dataclasses.replace(
        c, recent_compactions=[x if y.id == x.id else y for y in c.recent_compactions]
    )


def _find(c: Compactions, cid: Ulid) -> Compaction | None:
    return next((x for x in c.recent_compactions if x.id == cid), None)


class CompactionWorker:
    """A worker of the database at ``root`` in ``store`` (RFC-0025).

    :param store: the database's object store.
    :param root: the database's path in the store.
    :param settings: the database's settings (SST format, compression, filter policies, merge
        operator name); the executor must write SSTs the writer's readers understand.
    :param options: default ``settings.compactor_options.worker``, else the defaults.
    :param merge_operator: the writer's merge operator (default: the settings' name, resolved
        through the plugins).
    :param filter_suppliers: compaction filter suppliers (chained before the plugins').
    :param clock: ``now_ms()`` for heartbeats and ids; the system clock.
    :param executor: an object with ``CompactionExecutor.execute``'s signature (tests).
    :param rand: a :class:`random.Random` for the worker id and the poll jitter.
    :param worker_id: default a new ULID string.
    :raises InvalidError: manifest format 1 (its ``.compactions`` version 1 has no worker
        field), or bad settings.
    """

    def __init__(
        self,
        store: ObjectStore,
        root: str = "",
        settings: Settings | None = None,
        *,
        options: CompactionWorkerOptions | None = None,
        merge_operator: Any = None,
        filter_suppliers: Sequence[Any] = (),
        clock: Clock | None = None,
        executor: Any = None,
        rand: random.Random | None = None,
        worker_id: str | None = None,
        filter_policies: Sequence[Any] | None = None,
        transformer: Any = None,
    ) -> None:
        settings = settings if settings is not None else Settings()
        if not isinstance(settings, Settings):
            raise InvalidError("settings must be a shale.Settings", type=type(settings).__name__)
        if settings.manifest_format_version == 1:
            raise InvalidError(
                "distributed compaction needs manifest format 2 (.compactions version 2)"
            )
        compactor = settings.compactor_options or CompactorOptions()
        if options is None:
            options = compactor.worker or CompactionWorkerOptions()
        if not isinstance(options, CompactionWorkerOptions):
            raise InvalidError(
                "options must be a CompactionWorkerOptions", type=type(options).__name__
            )
        self.store = store
        self.root = root.strip("/")
        self.options = options
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._rand = rand if rand is not None else random.Random()
        self.worker_id = worker_id or str(Ulid.new(self.clock.now_ms(), rand))
        # the executor reads max_sst_size / max_fetch_tasks / max_subcompactions from
        # settings.compactor_options
        self.settings = settings.replace(
            compactor_options=compactor.replace(
                max_sst_size=options.max_sst_size,
                max_fetch_tasks=options.max_fetch_tasks,
                max_subcompactions=options.max_subcompactions,
            )
        )
        if executor is None:
            from shale.spi import get_host
            from shale_compactor.compactor import _CombinedSupplier
            from shale_compactor.executor import CompactionExecutor
            from shale_compactor.filters import PluginFilterSupplier
            from shale_compactor.hookspecs import ensure_hookspecs

            host = get_host()
            ensure_hookspecs(host.manager)
            executor = CompactionExecutor(
                store,
                self.root,
                settings=self.settings,
                merge_operator=merge_operator,
                filter_supplier=_CombinedSupplier([*filter_suppliers, PluginFilterSupplier(host)]),
                filter_policies=filter_policies,
                transformer=transformer,
                clock=self.clock,
                rand=rand,
            )
        self.executor = executor
        self.manifest_store = ManifestStore(
            store, self.root, format_version=settings.manifest_format_version
        )
        self.compactions_store = CompactionsStore(store, self.root, format_version=2)
        self._stored: StoredCompactions | None = None
        self._io = threading.Lock()  # one .compactions write at a time
        self._jobs: dict[Ulid, _Held] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=options.max_concurrent_compactions,
            thread_name_prefix="shale-compaction-worker",
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._owned_store = False
        #: ids of the jobs this worker finished (Compacted), for tests and logs.
        self.compacted: list[Ulid] = []

    def __repr__(self) -> str:
        return f"<CompactionWorker {self.worker_id} root={self.root!r} jobs={len(self._jobs)}>"

    @classmethod
    def open(
        cls,
        url: str,
        settings: Settings | None = None,
        *,
        store_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> CompactionWorker:
        """A worker for the database at ``url`` (through the plugins; the database is at the
        store's root). :meth:`close` closes the store."""
        from shale.spi import open_store

        store = open_store(url, **(store_options or {}))
        w = cls(store, "", settings, **kwargs)
        w._owned_store = True
        return w

    # -- state ------------------------------------------------------------------------------

    @property
    def active(self) -> list[Ulid]:
        """The ids of the jobs this worker holds."""
        with self._io:
            return sorted(self._jobs)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _update(self, mutate: Callable[[Compactions], Compactions | None]) -> bool:
        """Apply ``mutate`` to the latest ``.compactions`` as its next version (re-read and
        re-applied on a conflict). False when there is no file yet or nothing to write."""
        with self._io:
            if self._stored is None:
                self._stored = StoredCompactions.try_load(self.compactions_store)
                if self._stored is None:
                    return False
            else:
                self._stored.refresh()
            before = self._stored.id
            self._stored.update(mutate)
            return self._stored.id != before

    # -- one poll ---------------------------------------------------------------------------

    def poll(self) -> list[Ulid]:
        """Claim up to the free capacity of Scheduled jobs and start them.

        :returns: the ids claimed and started.
        """
        if self._stop.is_set():
            return []
        capacity = self.options.max_concurrent_compactions - len(self._jobs)
        if capacity <= 0:
            return []
        chosen: list[Compaction] = []

        def claim(c: Compactions) -> Compactions | None:
            chosen.clear()
            now = self.clock.now_ms()
            for x in c.recent_compactions:
                if len(chosen) >= capacity:
                    break
                if x.status != STATUS_SCHEDULED or x.worker_id or x.id in self._jobs:
                    continue
                if x.spec_type == SPEC_DRAIN_SEGMENT:
                    continue  # coordinator-local (no SST is read or written)
                chosen.append(
                    dataclasses.replace(
                        x, status=STATUS_RUNNING, worker_id=self.worker_id, last_heartbeat_ms=now
                    )
                )
            for x in chosen:
                c = _replace(c, x)
            return c if chosen else None

        if not self._update(claim) or not chosen:
            return []
        # the manifest read after the claim is at least as new as the state the claim landed on
        # (the coordinator writes the manifest before .compactions)
        latest = self.manifest_store.read_latest()
        started: list[Ulid] = []
        for c in chosen:
            logger.info("worker %s claimed compaction %s", self.worker_id, c.id)
            try:
                if latest is None:
                    raise InvalidError("no manifest")
                cjob = build_job(latest[1], c)
            except InvalidError as exc:
                logger.warning(
                    "claimed compaction %s is not runnable (%s); releasing it", c.id, exc
                )
                self._release(c.id, list(c.output_ssts))
                continue
            held = _Held(c)
            with self._io:
                self._jobs[c.id] = held
            self._pool.submit(self._execute, held, cjob)
            started.append(c.id)
        return started

    # -- heartbeats -------------------------------------------------------------------------

    def heartbeat(self) -> list[Ulid]:
        """Refresh ``last_heartbeat_ms`` (and the recorded outputs) of every job held; stop the
        jobs whose claim was lost.

        :returns: the ids of the jobs found lost.
        """
        with self._io:
            held = list(self._jobs.values())
        return self._progress(held)

    def _progress(self, held: list[_Held]) -> list[Ulid]:
        held = [h for h in held if not h.lost]
        if not held:
            return []
        lost: list[_Held] = []

        def beat(c: Compactions) -> Compactions | None:
            lost.clear()
            now = self.clock.now_ms()
            wrote = False
            for h in held:
                x = _find(c, h.compaction.id)
                if x is None or x.status != STATUS_RUNNING or x.worker_id != self.worker_id:
                    lost.append(h)
                    continue
                c = _replace(
                    c, dataclasses.replace(x, last_heartbeat_ms=now, output_ssts=list(h.outputs))
                )
                wrote = True
            return c if wrote else None

        self._update(beat)
        for h in lost:
            logger.warning(
                "worker %s lost compaction %s (reclaimed or claimed elsewhere); aborting it",
                self.worker_id,
                h.compaction.id,
            )
            h.lost = True
            h.stop.set()
        return [h.compaction.id for h in lost]

    # -- a job (pool threads) ---------------------------------------------------------------

    def _execute(self, held: _Held, cjob: Any) -> None:
        cid = held.compaction.id
        try:
            try:
                outputs = self.executor.execute(
                    cjob,
                    on_output=lambda sst: self._on_output(held, sst),
                    stop=held.stop,
                )
            except Exception as exc:
                if held.lost:
                    return
                if self._stop.is_set():
                    logger.info("compaction %s interrupted by stop; releasing it", cid)
                else:
                    logger.error("compaction %s failed on worker %s: %s", cid, self.worker_id, exc)
                self._release(cid, held.outputs)
                return
            if not held.lost:
                self._finish(held, list(outputs))
        except BaseException:
            logger.exception("worker %s could not record compaction %s", self.worker_id, cid)
        finally:
            with self._io:
                self._jobs.pop(cid, None)
            self._wake.set()

    def _on_output(self, held: _Held, sst: CompactedSst) -> None:
        held.outputs.append(sst)
        try:
            self._progress([held])  # the progress write doubles as a heartbeat
        except ShaleError as exc:  # the next heartbeat records it; a crash costs this SST
            logger.warning(
                "could not record output %s of %s yet: %s", sst.id, held.compaction.id, exc
            )

    def _finish(self, held: _Held, outputs: list[CompactedSst]) -> None:
        cid = held.compaction.id
        owned = False

        def compacted(c: Compactions) -> Compactions | None:
            nonlocal owned
            x = _find(c, cid)
            owned = x is not None and x.status == STATUS_RUNNING and x.worker_id == self.worker_id
            if not owned:
                return None
            assert x is not None
            return _replace(
                c,
                dataclasses.replace(
                    x,
                    status=STATUS_COMPACTED,
                    output_ssts=outputs,
                    last_heartbeat_ms=self.clock.now_ms(),
                ),
            )

        self._update(compacted)
        if owned:
            self.compacted.append(cid)
            logger.info(
                "worker %s compacted %s (%d output SSTs)", self.worker_id, cid, len(outputs)
            )
        else:
            logger.warning("worker %s lost compaction %s before finishing it", self.worker_id, cid)

    def _release(self, cid: Ulid, outputs: list[CompactedSst]) -> None:
        """Hand a held job back to Scheduled (worker cleared, outputs so far kept)."""

        def release(c: Compactions) -> Compactions | None:
            x = _find(c, cid)
            if x is None or x.status != STATUS_RUNNING or x.worker_id != self.worker_id:
                return None
            return _replace(
                c,
                dataclasses.replace(
                    x,
                    status=STATUS_SCHEDULED,
                    worker_id=None,
                    last_heartbeat_ms=None,
                    output_ssts=list(outputs),
                ),
            )

        try:
            self._update(release)
        except ShaleError as exc:
            logger.warning("could not release compaction %s (reclaimed on timeout): %s", cid, exc)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Poll, claim, run and heartbeat until :meth:`stop`. Transient errors are logged and
        retried on the next tick."""
        self._done.clear()
        logger.info("compaction worker %s started root=%r", self.worker_id, self.root)
        o = self.options
        now = time.monotonic()
        next_poll, next_beat = now, now + o.heartbeat_interval
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                try:
                    if now >= next_beat:
                        next_beat = now + o.heartbeat_interval
                        self.heartbeat()
                    if now >= next_poll or self._wake.is_set():
                        self._wake.clear()
                        next_poll = now + o.compactions_poll_interval * self._rand.uniform(0.5, 1.5)
                        self.poll()
                except ShaleError as exc:
                    logger.warning("worker %s tick failed; retrying: %s", self.worker_id, exc)
                self._wake.wait(max(0.0, min(next_poll, next_beat) - time.monotonic()))
        finally:
            with self._io:
                held = list(self._jobs.values())
            for h in held:
                h.stop.set()
            self._pool.shutdown(wait=True)
            self._done.set()
            logger.info("compaction worker %s stopped", self.worker_id)

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop polling, interrupt the jobs and release them to Scheduled (their recorded
        outputs kept), then wait for :meth:`run` to end. Any thread; idempotent."""
        self._stop.set()
        with self._io:
            held = list(self._jobs.values())
        for h in held:
            h.stop.set()
        self._wake.set()
        self._done.wait(timeout)
        self._pool.shutdown(wait=True)

    def close(self) -> None:
        """:meth:`stop`, then close the store :meth:`open` opened."""
        self.stop()
        if self._owned_store:
            self._owned_store = False
            self.store.close()

    def __enter__(self) -> CompactionWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
