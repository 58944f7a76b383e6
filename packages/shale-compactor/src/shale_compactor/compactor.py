"""The compactor: schedules compactions, runs them on a thread pool, commits their results.

A :class:`Compactor` owns one database's compactor role. Lifecycle and invariants:

- **Fencing first.** :meth:`Compactor.start` (called by :meth:`run`, :meth:`run_once` and
  :meth:`submit`) bumps ``compactor_epoch`` in the manifest and claims it in the
  ``.compactions`` file (:class:`~shale_compactor.state.CompactorStateWriter`). A second
  compactor of the same database fences this one: its next write raises
  ``ClosedError(reason="fenced")``, it writes nothing more, stops its jobs and :meth:`run`
  returns.
- **One tick** (every ``poll_interval`` seconds, or sooner when a job finishes, a spec is
  submitted or :meth:`Compactor.wake` is called -- the embedded compactor is woken by each L0
  flush of its writer, so it does not wait for the poll; a standalone one polls): refresh
  compactions then manifest; add the scheduler's proposals as Submitted; start Submitted
  compactions (oldest first) while fewer than ``max_concurrent_compactions`` run here -- a
  spec that no longer validates is marked Failed, one that conflicts with a running
  compaction waits; persist the Running statuses *before* any job writes an output, so the
  compaction's ULID (the GC low-watermark) protects its outputs.
- **Execution** happens on a thread pool (``max_concurrent_compactions`` threads) through
  :class:`~shale_compactor.executor.CompactionExecutor`. Each output SST is recorded in the
  ``.compactions`` file as it appears (status Running), so a crash loses at most the SST being
  built: on restart Running compactions return to Submitted and resume after the last
  recorded output (``CompactionJob.resume_outputs``).
- **Commit** (seed 000's write order): a checkpoint living ``checkpoint_lifetime`` seconds is
  added first, pinning the manifest version that still lists the inputs; then the manifest
  gets the new sorted run at the destination replacing its sources, loses the compacted L0
  views and records ``last_compacted_l0_view_id`` (expired checkpoints are dropped in the same
  update); then the ``.compactions`` file marks the job Completed and keeps only active jobs
  plus the last finished one. A job whose commit reached the manifest but not the
  ``.compactions`` file is recognised on restart (its outputs form the destination run and its
  sources are gone) and marked Completed without redoing it.
- **Failures back off.** A compaction that fails is marked Failed; the scheduler would propose
  the same one again at once, so after ``n`` failures in a row :meth:`run` adds no proposals for
  ``poll_interval * 2**(n-1)`` seconds (at most :data:`FAILURE_BACKOFF_MAX_S`). Submitted
  compactions still start. :meth:`health` reports the failures; a completed compaction resets
  the back-off. The writer is never affected (L0 just fills up).
- **Threads.** State I/O is serialised by one lock; job execution runs outside it. The
  executor's merging is GIL-bound Python/Cython, so more threads mostly overlap object-store
  latency rather than CPU.

**Coordinator mode** (``CompactorOptions.worker = None``, RFC-0025): the compactor executes
nothing. Each tick it also validates Submitted compactions and marks them **Scheduled** for
remote :class:`~shale_compactor.worker.CompactionWorker` s to claim (Running, with a worker
and heartbeat), hands Running jobs whose heartbeat is older than ``worker_heartbeat_timeout``
back to Scheduled (keeping their recorded outputs), and commits the jobs workers report
**Compacted**: manifest first (as above), then Completed -- or Failed when their sources have
left the manifest. Between two scheduling ticks (``poll_interval``) it looks for Compacted jobs
every ``commit_compacted_interval``. On restart it leaves workers' jobs alone (see
:mod:`shale_compactor.state`). With a worker configured (the default) jobs run in-process as
described above and never become Scheduled.

The standalone helpers :func:`submit_compaction` and :func:`read_status` never fence: they are
what ``shale compactor submit`` / ``status`` use against a database whose compactor runs
elsewhere.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import random
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shale.spi import (
    SPEC_DRAIN_SEGMENT,
    STATUS_COMPACTED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    STATUS_SUBMITTED,
    Clock,
    ClosedError,
    CloseReason,
    CompactedSst,
    Compaction,
    Compactions,
    CompactionsStore,
    CompactorMetrics,
    CompactorOptions,
    InvalidError,
    Manifest,
    ManifestStore,
    ObjectStore,
    PermanentStoreError,
    RetryPolicy,
    Settings,
    ShaleError,
    StoredCompactions,
    SystemClock,
    TransientStoreError,
    Ulid,
    UnavailableError,
    check_timeout,
    get_logger,
    prune_external_ssts,
    registry_for,
    remove_expired_checkpoints,
    segments,
    trace_span,
)
from shale_compactor.hooks import CompactorHooks
from shale_compactor.scheduler import (
    FULL,
    CompactionSpec,
    SizeTieredScheduler,
    check_conflicts,
    generate_full,
    spec_size,
)
from shale_compactor.state import (
    STATUS_NAMES,
    CompactorStateView,
    CompactorStateWriter,
    apply_compaction,
    apply_drain,
    apply_trivial_move,
    build_job,
    is_active,
    read_view,
    reclaim_stale_workers,
    resolve_sources,
    trivial_move_output,
)

__all__ = [
    "CompactionReport",
    "Compactor",
    "CompactorHealth",
    "JobStatus",
    "read_status",
    "submit_compaction",
]

logger = get_logger(__name__)

#: Seconds between two progress log lines (SlateDB: 10 s).
PROGRESS_LOG_INTERVAL_S = 10.0
#: Longest pause of new proposals after compactions failed in a row (seconds).
FAILURE_BACKOFF_MAX_S = 300.0

#: Retries of a commit step when ``object_store_max_retries`` is unset (about 2 s in all).
COMMIT_RETRIES = 5


@dataclass(frozen=True)
class CompactionReport:
    """What ``shale_compaction_finished`` observers and :meth:`Compactor.run_once` get.

    :ivar status: ``"completed"`` or ``"failed"``.
    :ivar bytes_in: estimated source bytes; ``bytes_out``: bytes of the output SSTs (their
        ``index_offset + index_len``).
    :ivar error: the failure (``"kind: message"``), or ``None``.
    :ivar segment: the tree compacted (a segment prefix; ``b""`` the root tree).
    :ivar drain: a drain (sources removed, nothing written).
    """

    id: Ulid
    status: str
    l0_view_ids: tuple[Ulid, ...]
    sorted_runs: tuple[int, ...]
    destination: int
    output_ssts: tuple[CompactedSst, ...]
    bytes_in: int
    bytes_out: int
    duration_s: float
    error: str | None = None
    segment: bytes = b""
    drain: bool = False


@dataclass(frozen=True)
class JobStatus:
    """Progress of one compaction (:meth:`Compactor.status`, :func:`read_status`).

    ``bytes_processed`` is the source bytes read so far (live, in-process), or an estimate from
    the recorded outputs (:func:`read_status`, another process); ``total_bytes`` the estimated
    source size.
    """

    id: Ulid
    status: str
    l0: int
    sorted_runs: tuple[int, ...]
    destination: int
    outputs: int
    bytes_processed: int
    total_bytes: int
    elapsed_s: float | None = None
    segment: bytes = b""

    @property
    def percentage(self) -> float:
        """Progress in percent (0-100; 100 when there is nothing to read)."""
        if self.total_bytes <= 0:
            return 100.0
        return min(100.0, 100.0 * self.bytes_processed / self.total_bytes)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "status": self.status,
            "l0": self.l0,
            "sorted_runs": list(self.sorted_runs),
            "destination": self.destination,
            "outputs": self.outputs,
            "bytes_processed": self.bytes_processed,
            "total_bytes": self.total_bytes,
            "percentage": round(self.percentage, 1),
            "elapsed_s": None if self.elapsed_s is None else round(self.elapsed_s, 3),
            **({"segment_hex": self.segment.hex()} if self.segment else {}),
        }


@dataclass(frozen=True)
class CompactorHealth:
    """Failures of this compactor's jobs (:meth:`Compactor.health`).

    :ivar failures: compactions that failed since it was created.
    :ivar consecutive_failures: failures since the last completed compaction.
    :ivar last_error: the last failure (``"kind: message"``), or ``None``.
    :ivar last_failed_id: the id of the last failed compaction, or ``None``.
    :ivar retry_in_s: seconds until :meth:`Compactor.run` proposes compactions again, or
        ``None`` when it is not backing off.
    """

    failures: int
    consecutive_failures: int
    last_error: str | None
    last_failed_id: Ulid | None
    retry_in_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_failed_id": None if self.last_failed_id is None else str(self.last_failed_id),
            "retry_in_s": None if self.retry_in_s is None else round(self.retry_in_s, 3),
        }


def _output_bytes(outputs: Iterable[CompactedSst]) -> int:
    return sum(int(s.info.index_offset + s.info.index_len) for s in outputs)


def _is_fenced(exc: BaseException) -> bool:
    return isinstance(exc, ClosedError) and exc.reason == CloseReason.FENCED


class _Job:
    """A compaction running in this process."""

    def __init__(self, compaction: Compaction, total_bytes: int) -> None:
        self.compaction = compaction
        self.total_bytes = total_bytes
        self.bytes_processed = 0
        self.outputs = len(compaction.output_ssts)
        self.started = time.monotonic()
        self.future: Future[CompactionReport | None] | None = None


class _CombinedSupplier:
    """Chains the filters of several suppliers (user suppliers first, then plugins')."""

    def __init__(self, suppliers: Sequence[Any]) -> None:
        self.suppliers = list(suppliers)

    def create_compaction_filter(self, context: Any) -> list[Any]:
        from shale_compactor.filters import create_filters

        out: list[Any] = []
        for s in self.suppliers:
            out.extend(create_filters(s, context))
        return out


def _commit_landed(m: Manifest, c: Compaction, outputs: Sequence[CompactedSst]) -> bool:
    """Whether ``m`` already holds compaction ``c`` committed with ``outputs``: none of its
    sources is left in its tree and (with outputs) its destination run holds them."""
    tree = segments.tree(m, c.segment)
    if tree is None:
        return False
    if {v.id for v in tree.l0} & set(c.l0_view_ids):
        return False
    runs = {r.id: r for r in tree.compacted}
    if not outputs:
        return not (set(runs) & set(c.sorted_runs)) and bool(c.l0_view_ids or c.sorted_runs)
    if set(runs) & (set(c.sorted_runs) - {c.destination}):
        return False
    dest = runs.get(c.destination)
    return dest is not None and {s.id for s in outputs} <= {v.sst.id for v in dest.ssts}


class Compactor:
    """The compactor of the database at ``root`` in ``store``.

    :param store: the object store holding the database (its manifest must exist).
    :param root: the database's path inside the store (``""`` for a database at the root).
    :param settings: the database's :class:`shale.settings.Settings` (SST format, compression,
        filter policies, merge operator name); default ``Settings()``.
    :param merge_operator: the merge operator object; default: ``settings.merge_operator``
        resolved through the plugins. It must be the writer's.
    :param filter_suppliers: compaction filter suppliers, chained before the filters of the
        ``shale_compaction_filter`` hook.
    :param clock: ``now_ms()`` for compaction ULIDs and checkpoint times; the system clock.
    :param options: :class:`shale.settings.CompactorOptions`; default
        ``settings.compactor_options`` or the defaults.
    :param scheduler: an object with ``propose(view)``/``validate(view, spec)``; default the
        ``shale_compaction_scheduler`` hook's, else :class:`SizeTieredScheduler`.
    :param filter_policies: filter policies for new SSTs (default: the settings', resolved
        through the plugins); must match what readers understand.
    :param transformer: the block transformer (must be the writer's); default the plugins'.
    :param executor: an object with the
        :meth:`~shale_compactor.executor.CompactionExecutor.execute` signature (tests inject
        one); default a :class:`~shale_compactor.executor.CompactionExecutor`.
    :param rand: a :class:`random.Random` for ids; ``None`` uses OS randomness.
    :raises InvalidError: bad settings (e.g. an unknown merge operator name).
    """

    def __init__(
        self,
        store: ObjectStore,
        root: str = "",
        settings: Settings | None = None,
        *,
        merge_operator: Any = None,
        filter_suppliers: Sequence[Any] = (),
        clock: Clock | None = None,
        options: CompactorOptions | None = None,
        scheduler: Any = None,
        filter_policies: Sequence[Any] | None = None,
        transformer: Any = None,
        executor: Any = None,
        rand: random.Random | None = None,
    ) -> None:
        settings = settings if settings is not None else Settings()
        if not isinstance(settings, Settings):
            raise InvalidError("settings must be a shale.Settings", type=type(settings).__name__)
        if options is None:
            options = settings.compactor_options or CompactorOptions()
        if not isinstance(options, CompactorOptions):
            raise InvalidError("options must be a CompactorOptions", type=type(options).__name__)
        if not isinstance(root, str):
            raise InvalidError("root must be a str", type=type(root).__name__)
        self.store = store
        self.root = root.strip("/")
        self.options = options
        #: finished compactions, bytes and durations (the registry of the handle that opened
        #: ``store``, else the process-wide one; docs/metrics.md)
        self.metrics = CompactorMetrics(registry_for(store))
        #: RFC-0025 coordinator: no embedded worker, remote workers run the jobs.
        self.distributed = options.worker is None
        if self.distributed and settings.manifest_format_version == 1:
            raise InvalidError(
                "a coordinator without a worker needs manifest format 2 (.compactions version 2)"
            )
        # the executor reads max_sst_size / max_fetch_tasks from settings.compactor_options
        self.settings = settings.replace(compactor_options=options)
        #: How a commit is retried when the object store fails transiently (the whole step:
        #: it resumes where it failed). ``settings.object_store_max_retries`` is its budget;
        #: unset, a commit gives up after COMMIT_RETRIES so the job fails and the compactor's
        #: back-off and :meth:`health` report the outage instead of one job retrying forever.
        budget = self.settings.object_store_max_retries
        self.retry = RetryPolicy(
            max_retries=COMMIT_RETRIES if budget is None else budget, max_delay=2.0
        )
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._rand = rand
        self._host = self._plugin_host()
        self._hooks = CompactorHooks(self._host.manager)
        self.scheduler = scheduler if scheduler is not None else self._default_scheduler()
        if executor is None:
            from shale_compactor.executor import CompactionExecutor
            from shale_compactor.filters import PluginFilterSupplier

            supplier = _CombinedSupplier([*filter_suppliers, PluginFilterSupplier(self._host)])
            executor = CompactionExecutor(
                store,
                self.root,
                settings=self.settings,
                merge_operator=merge_operator,
                filter_supplier=supplier,
                filter_policies=filter_policies,
                transformer=transformer,
                clock=self.clock,
                rand=rand,
            )
        self.executor = executor
        fmt = 1 if settings.manifest_format_version == 1 else 2
        self.manifest_store = ManifestStore(
            store, self.root, format_version=settings.manifest_format_version
        )
        self.compactions_store = CompactionsStore(store, self.root, format_version=fmt)

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._loop_thread: threading.Thread | None = None
        self._writer: CompactorStateWriter | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: dict[Ulid, _Job] = {}
        self._reports: list[CompactionReport] = []
        self._collecting = 0  # run_once calls in progress (reports are kept only for them)
        #: futures of the jobs started while a run_once collects: it waits for each, also one
        #: that finished (and left ``_jobs``) before run_once looked, so no outcome is lost
        self._started: list[Future[CompactionReport | None]] = []
        self._fenced = False
        self._permanent_error: PermanentStoreError | None = None  # stops run() (see there)
        self._owned_store = False
        self._last_progress_log = time.monotonic()
        self._failures = 0
        self._consecutive_failures = 0
        self._last_error: str | None = None
        self._last_failed_id: Ulid | None = None
        self._backoff_until: float | None = None  # monotonic; no proposals before it

    def __repr__(self) -> str:
        epoch = None if self._writer is None else self._writer.epoch
        return f"<Compactor root={self.root!r} epoch={epoch} running={len(self._jobs)}>"

    @classmethod
    def open(
        cls,
        url: str,
        settings: Settings | None = None,
        *,
        merge_operator: Any = None,
        store_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Compactor:
        """A compactor for the database at ``url`` (a directory, ``file://``, ``memory://name``
        or any URL a plugin owns; the database is at the store's root, as with
        :meth:`shale.Db.open`). :meth:`close` closes the store it opened."""
        from shale.spi import open_store

        store = open_store(url, **(store_options or {}))
        c = cls(store, "", settings, merge_operator=merge_operator, **kwargs)
        c._owned_store = True
        return c

    # -- plugin hooks -------------------------------------------------------------------------

    @staticmethod
    def _plugin_host() -> Any:
        from shale.spi import get_host
        from shale_compactor.hookspecs import ensure_hookspecs

        host = get_host()
        # when shale_compactor's plugin is blocked or autoload is off, declare our hooks anyway
        ensure_hookspecs(host.manager)
        return host

    def _default_scheduler(self) -> Any:
        found = self._hooks.compaction_scheduler(self.options)
        return found if found is not None else SizeTieredScheduler(self.options)

    def _notify_finished(self, report: CompactionReport) -> None:
        self.metrics.finished(report.status, report.duration_s, report.bytes_in, report.bytes_out)
        self._hooks.compaction_finished(report)

    # -- properties ---------------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        """The compactor epoch claimed by :meth:`start`, or ``None`` before."""
        return None if self._writer is None else self._writer.epoch

    @property
    def fenced(self) -> bool:
        """Whether a newer compactor fenced this one."""
        return self._fenced

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called (or the compactor was fenced)."""
        return self._stop.is_set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Fence older compactors and load state (idempotent; called by run/run_once/submit).

        :raises ClosedError: ``reason="fenced"`` (a newer compactor exists) or the compactor
            was stopped.
        :raises DataError: the database has no manifest.
        """
        with self._lock:
            self._check_usable()
            if self._writer is not None:
                return
            try:
                self._writer = CompactorStateWriter.open(
                    self.manifest_store,
                    self.compactions_store,
                    timeout=self.options.manifest_update_timeout,
                    wall_clock=self.clock,
                    rand=self._rand,
                    distributed=self.distributed,
                )
            except ClosedError as exc:
                if _is_fenced(exc):
                    self._on_fenced()
                raise
            self._pool = ThreadPoolExecutor(
                max_workers=self.options.max_concurrent_compactions,
                thread_name_prefix="shale-compaction",
            )
            logger.info(
                "compactor started root=%r epoch=%d manifest=%d",
                self.root,
                self._writer.epoch,
                self._writer.state.manifest_id,
            )

    def _check_usable(self) -> None:
        if self._fenced:
            raise ClosedError("compactor fenced by a newer compactor", reason=CloseReason.FENCED)
        if self._stop.is_set():
            raise ClosedError("compactor stopped", reason=CloseReason.CLEAN)

    def _on_fenced(self) -> None:
        if not self._fenced:
            logger.warning("compactor fenced by a newer compactor; stopping root=%r", self.root)
        self._fenced = True
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Compact until :meth:`stop` is called or a newer compactor fences this one.

        Transient errors of the object store are logged and retried on the next poll.

        :raises DataError: the database has no manifest.
        :raises PermanentStoreError: the object store refuses for good (access denied, missing
            bucket): polling again would only repeat it, so the loop stops.
        """
        self._loop_done.clear()
        self._loop_thread = threading.current_thread()
        try:
            try:
                self.start()
            except ClosedError:
                return
            full, last_full = True, time.monotonic()
            while not self._stop.is_set():
                try:
                    if full:
                        last_full = time.monotonic()
                    self._tick(backoff=True, full=full)
                except ClosedError:
                    if self._fenced:
                        break
                    if self._stop.is_set():
                        break
                    raise
                except PermanentStoreError as exc:
                    logger.error("compactor stopped: the object store refuses permanently: %s", exc)
                    raise
                except ShaleError as exc:
                    logger.warning("compactor poll failed; retrying: %s", exc)
                self._log_progress()
                wait = self.options.poll_interval
                if self.distributed:  # commit Compacted jobs between two scheduling ticks
                    wait = min(
                        self.options.commit_compacted_interval,
                        max(0.0, last_full + wait - time.monotonic()),
                    )
                woke = self._wake.wait(wait)
                self._wake.clear()
                full = woke or time.monotonic() >= last_full + self.options.poll_interval
            if self._permanent_error is not None:
                logger.error(
                    "compactor stopped: the object store refuses permanently: %s",
                    self._permanent_error,
                )
                raise self._permanent_error
        finally:
            self._shutdown_pool()
            self._loop_done.set()
            logger.info("compactor stopped root=%r fenced=%s", self.root, self._fenced)

    def run_once(self, timeout: float | None = None) -> list[CompactionReport]:
        """One tick, then wait for every compaction running here to finish.

        :param timeout: seconds to wait for the jobs (``None``: no limit).
        :returns: the reports of the compactions that finished meanwhile (completed or failed).
        :raises ClosedError: ``reason="fenced"``: a newer compactor fenced this one.
        :raises UnavailableError: the jobs did not finish in ``timeout`` (they go on running).
        :raises InvalidError: ``timeout`` is not ``None`` or a finite number ``>= 0``.
        """
        timeout = check_timeout(timeout)
        self.start()
        with self._lock:
            self._reports = []
            self._collecting += 1
        try:
            self._tick()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                with self._lock:
                    futures = [j.future for j in self._jobs.values() if j.future is not None]
                    futures += [f for f in self._started if f not in futures]
                    self._started = []
                if not futures:
                    break
                for f in futures:
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        f.result(timeout=remaining)
                    except concurrent.futures.TimeoutError:
                        raise UnavailableError(
                            "compactions did not finish in time", timeout=timeout
                        ) from None
        finally:
            with self._lock:
                self._collecting -= 1
                if not self._collecting:
                    self._started = []
                reports, self._reports = self._reports, []
        if self._fenced:
            raise ClosedError("compactor fenced by a newer compactor", reason=CloseReason.FENCED)
        return reports

    def wake(self) -> None:
        """Run the next tick of :meth:`run` now instead of at the end of ``poll_interval``.

        The embedded compactor is woken this way by the writer's L0 flushes (the
        ``shale_l0_flushed`` hook), so a compaction is scheduled as soon as it is due; a
        standalone compactor has no such signal and polls. Any thread; cheap; a no-op when the
        loop is not running.
        """
        self._wake.set()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop scheduling, interrupt running jobs (they resume on the next start) and wait
        for the loop and the job threads to end. Safe to call more than once, from any thread.
        """
        self._stop.set()
        self._wake.set()
        current = threading.current_thread()
        if self._loop_thread is not None and self._loop_thread is not current:
            self._loop_done.wait(timeout)
        if self._loop_thread is None or self._loop_done.is_set():
            pool_thread = current.name.startswith("shale-compaction")
            if not pool_thread:
                self._shutdown_pool()

    def close(self) -> None:
        """:meth:`stop`, then close the object store if :meth:`open` opened it."""
        self.stop()
        if self._owned_store:
            self._owned_store = False
            self.store.close()

    def __enter__(self) -> Compactor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shutdown_pool(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- submitting ---------------------------------------------------------------------------

    def submit(self, spec: CompactionSpec | str, *, segment: bytes = b"") -> Ulid:
        """Submit a compaction (a :class:`CompactionSpec`, or :data:`FULL`); it starts on the
        next tick when its sources are free.

        :param segment: the tree a :data:`FULL` compaction compacts (a segment prefix;
            ``b""``, the default, is the root tree). A spec names its own segment.
        :returns: the compaction's id.
        :raises InvalidError: the spec does not validate against the current manifest.
        :raises ClosedError: the compactor is stopped or fenced.
        """
        self.start()
        with self._lock:
            writer = self._require_writer()
            try:
                writer.refresh()
                view = writer.state.view()
                spec = self._resolve(view, spec, segment)
                self.scheduler.validate(view, spec)
                cid = self._new_id()
                writer.state.add(spec.to_compaction(cid))
                writer.write_compactions_safely()
            except ClosedError as exc:
                if _is_fenced(exc):
                    self._on_fenced()
                raise
        logger.info("compaction submitted id=%s spec=%s", cid, spec.to_json())
        self._wake.set()
        return cid

    def _resolve(
        self, view: CompactorStateView, spec: CompactionSpec | str, segment: bytes = b""
    ) -> CompactionSpec:
        if isinstance(spec, str):
            if spec.lower() != FULL:
                raise InvalidError('a compaction spec is a CompactionSpec or "full"', spec=spec)
            gen = getattr(self.scheduler, "generate_full", None)
            if not callable(gen):
                return generate_full(view, segment)
            # a custom scheduler's generate_full may predate segments: pass one only if named
            full: CompactionSpec = gen(view, segment) if segment else gen(view)
            return full
        if not isinstance(spec, CompactionSpec):
            raise InvalidError(
                'a compaction spec is a CompactionSpec or "full"', type=type(spec).__name__
            )
        return spec

    def _new_id(self) -> Ulid:
        return Ulid.new(self.clock.now_ms(), self._rand)

    def _require_writer(self, *, finishing: bool = False) -> CompactorStateWriter:
        """The state writer; raises once stopped, except that work already done may still be
        recorded while stopping (``finishing``): only fencing forbids that."""
        if finishing:
            if self._fenced:
                self._check_usable()
        else:
            self._check_usable()
        if self._writer is None:
            raise ClosedError("compactor not started", reason=CloseReason.CLEAN)
        return self._writer

    # -- status -------------------------------------------------------------------------------

    def status(self) -> list[JobStatus]:
        """The compactions running in this process, with live progress."""
        now = time.monotonic()
        with self._lock:
            return [
                JobStatus(
                    id=j.compaction.id,
                    status="running",
                    l0=len(j.compaction.l0_view_ids),
                    sorted_runs=tuple(j.compaction.sorted_runs),
                    destination=j.compaction.destination,
                    outputs=j.outputs,
                    bytes_processed=j.bytes_processed,
                    total_bytes=j.total_bytes,
                    elapsed_s=now - j.started,
                    segment=j.compaction.segment,
                )
                for j in self._jobs.values()
            ]

    def health(self) -> CompactorHealth:
        """Failures of this compactor's compactions and the current back-off."""
        with self._lock:
            until = self._backoff_until
            retry = None if until is None else max(0.0, until - time.monotonic())
            return CompactorHealth(
                failures=self._failures,
                consecutive_failures=self._consecutive_failures,
                last_error=self._last_error,
                last_failed_id=self._last_failed_id,
                retry_in_s=retry,
            )

    def view(self) -> CompactorStateView:
        """The compactor's current view of the state (after :meth:`start`)."""
        with self._lock:
            return self._require_writer().state.view()

    def _log_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress_log < PROGRESS_LOG_INTERVAL_S:
            return
        self._last_progress_log = now
        for s in self.status():
            rate = s.bytes_processed / max(s.elapsed_s or 0.0, 1e-9) / 1e6
            logger.info(
                "compaction progress id=%s dest=%d %.1f%% (%d/%d bytes, %.1f MB/s)",
                s.id,
                s.destination,
                s.percentage,
                s.bytes_processed,
                s.total_bytes,
                rate,
            )

    # -- the tick -----------------------------------------------------------------------------

    def _tick(self, backoff: bool = False, full: bool = True) -> list[Ulid]:
        """Refresh, add proposals (unless ``backoff`` and failures say to wait), start what
        can start (a coordinator: commit, reclaim, schedule; ``full=False``: only commit and
        reclaim). Returns the ids started here."""
        started: list[tuple[_Job, Any]] = []
        finished: list[CompactionReport] = []
        with self._lock:
            writer = self._require_writer()
            try:
                writer.refresh()
                until = self._backoff_until
                if not full or (backoff and until is not None and time.monotonic() < until):
                    dirty = False  # compactions failed in a row: no new proposals yet
                else:
                    dirty = self._add_proposals(writer)
                if self.distributed:
                    dirty |= self._coordinate(writer, finished, schedule=full)
                else:
                    dirty |= self._start_submitted(writer, started, finished)
                if dirty:
                    writer.write_compactions_safely()
            except BaseException as exc:
                if _is_fenced(exc):
                    self._on_fenced()
                # not persisted as Running: start them again on the next tick
                for job, _ in started:
                    self._jobs.pop(job.compaction.id, None)
                    if writer.state.get(job.compaction.id) is not None:
                        writer.state.set_status(job.compaction.id, STATUS_SUBMITTED)
                raise
            pool = self._pool
            if pool is None:  # stopped meanwhile
                for job, _ in started:
                    self._jobs.pop(job.compaction.id, None)
                return []
            for job, cjob in started:
                job.future = pool.submit(self._execute, job, cjob)
                if self._collecting:
                    self._started.append(job.future)
            if self._collecting:
                self._reports.extend(finished)
        for report in finished:
            self._notify_finished(report)
        return [job.compaction.id for job, _ in started]

    def _add_proposals(self, writer: CompactorStateWriter) -> bool:
        view = writer.state.view()
        try:
            proposals = self.scheduler.propose(view)
        except Exception:
            logger.exception("compaction scheduler failed to propose; skipping this poll")
            return False
        added = False
        for spec in proposals:
            try:
                self.scheduler.validate(view, spec)
            except InvalidError as exc:
                logger.error("scheduler proposed an invalid compaction %s: %s", spec, exc)
                continue
            c = spec.to_compaction(self._new_id())
            writer.state.add(c)
            view = writer.state.view()
            logger.info(
                "compaction scheduled id=%s segment=%r l0=%d runs=%s dest=%d",
                c.id,
                c.segment,
                len(c.l0_view_ids),
                c.sorted_runs,
                c.destination,
            )
            added = True
        return added

    def _start_submitted(
        self,
        writer: CompactorStateWriter,
        started: list[tuple[_Job, Any]],
        finished: list[CompactionReport],
    ) -> bool:
        state = writer.state
        dirty = False
        running = {c.id for c in state.active() if c.status == STATUS_RUNNING}
        for c in state.active():
            if c.status not in (STATUS_SUBMITTED, STATUS_COMPACTED) or c.id in self._jobs:
                continue
            if len(self._jobs) >= self.options.max_concurrent_compactions:
                break
            m = state.view().manifest
            spec = self._vet(writer, c, finished)
            if spec is None:
                dirty = True
                continue
            # wait while a running compaction uses a source or the destination
            busy = CompactorStateView(
                Compactions(0, [x for x in state.active() if x.id in running]), m
            )
            if not check_conflicts(busy, spec, ignore=c.id):
                logger.debug("compaction %s waits for a conflicting one", c.id)
                continue
            if c.status == STATUS_SUBMITTED and self._trivial_move(writer, c, finished):
                dirty = True
                continue
            c = state.set_status(c.id, STATUS_RUNNING)
            running.add(c.id)
            job = _Job(c, spec_size(m, c))
            self._jobs[c.id] = job
            started.append((job, self._make_job(m, c)))
            dirty = True
        return dirty

    def _vet(
        self, writer: CompactorStateWriter, c: Compaction, finished: list[CompactionReport]
    ) -> CompactionSpec | None:
        """A submitted job's spec, checked against the current manifest, when it is still to
        run; ``None`` when it was settled here instead (its manifest commit had landed before
        a restart: Completed; no longer valid: Failed; a drain: done) -- the state changed."""
        state = writer.state
        view = state.view()
        m = view.manifest
        if self._already_committed(m, c):
            logger.info("compaction %s was committed before a restart; completing it", c.id)
            state.finish(c.id, STATUS_COMPLETED)
            finished.append(self._report(c, "completed", m, list(c.output_ssts), 0.0))
            return None
        try:
            spec = CompactionSpec.from_compaction(c)
            self.scheduler.validate(view, spec)
            resolve_sources(m, c)
        except InvalidError as exc:
            logger.warning("compaction %s is no longer valid; failing it: %s", c.id, exc)
            state.finish(c.id, STATUS_FAILED, [])
            finished.append(self._report(c, "failed", m, [], 0.0, error=str(exc)))
            return None
        if spec.drain:
            finished.append(self._drain(writer, c))
            return None
        return spec

    # -- coordinator (RFC-0025) -------------------------------------------------------------

    def _coordinate(
        self, writer: CompactorStateWriter, finished: list[CompactionReport], schedule: bool
    ) -> bool:
        """Commit Compacted jobs, reclaim stale Running ones, schedule Submitted ones."""
        dirty = self._commit_compacted(writer, finished)
        state = writer.state
        timeout_ms = round(self.options.worker_heartbeat_timeout * 1000)
        new, reclaimed = reclaim_stale_workers(state.compactions, self.clock.now_ms(), timeout_ms)
        for c in reclaimed:
            logger.warning(
                "reclaiming compaction %s from worker %s (last heartbeat %s ms ago); %d outputs "
                "kept",
                c.id,
                c.worker_id,
                None if c.last_heartbeat_ms is None else self.clock.now_ms() - c.last_heartbeat_ms,
                len(c.output_ssts),
            )
        if reclaimed:
            state.set_compactions(state.compactions_id, new)
            dirty = True
        if schedule:
            dirty |= self._schedule_submitted(writer, finished)
        return dirty

    def _schedule_submitted(
        self, writer: CompactorStateWriter, finished: list[CompactionReport]
    ) -> bool:
        state = writer.state
        dirty = False
        busy_statuses = (STATUS_SCHEDULED, STATUS_RUNNING, STATUS_COMPACTED)
        for c in state.with_status(STATUS_SUBMITTED):
            busy = [x for x in state.active() if x.status in busy_statuses]
            if len(busy) >= self.options.max_concurrent_compactions:
                break
            m = state.view().manifest
            spec = self._vet(writer, c, finished)  # a drain is coordinator-local: done here
            if spec is None:
                dirty = True
                continue
            if not check_conflicts(CompactorStateView(Compactions(0, busy), m), spec, ignore=c.id):
                logger.debug("compaction %s waits for a conflicting one", c.id)
                continue
            if self._trivial_move(writer, c, finished):  # coordinator-local, as in SlateDB
                dirty = True
                continue
            state.set_status(c.id, STATUS_SCHEDULED)
            logger.info("compaction %s scheduled for a worker", c.id)
            dirty = True
        return dirty

    def _commit_compacted(
        self, writer: CompactorStateWriter, finished: list[CompactionReport]
    ) -> bool:
        """Commit each job a worker reported Compacted: manifest first, then Completed (or
        Failed when its sources are no longer in the manifest), one job at a time."""
        dirty = False
        for c in writer.state.with_status(STATUS_COMPACTED):
            outputs = list(c.output_ssts)
            m = writer.state.manifest
            if self._already_committed(m, c):
                # our manifest commit landed but the .compactions write did not (a restart)
                logger.info("compaction %s was committed before a restart; completing it", c.id)
                writer.state.finish(c.id, STATUS_COMPLETED, outputs)
                finished.append(self._report(c, "completed", m, outputs, 0.0))
                writer.write_compactions_safely()
                dirty = False
                continue
            try:
                resolve_sources(m, c)
            except InvalidError as exc:
                logger.warning("compacted job %s no longer applies; failing it: %s", c.id, exc)
                writer.state.finish(c.id, STATUS_FAILED, [])
                finished.append(self._report(c, "failed", m, [], 0.0, error=str(exc)))
                dirty = True
                continue
            try:
                report = self._commit(_Job(c, spec_size(m, c)), outputs, 0.0, collect=False)
            except InvalidError as exc:  # the manifest refuses it: it can never commit
                logger.error("compacted job %s cannot be committed; failing it: %s", c.id, exc)
                writer.state.finish(c.id, STATUS_FAILED, [])
                finished.append(self._report(c, "failed", m, [], 0.0, error=str(exc)))
                dirty = True
                continue
            finished.append(report)
            dirty = False  # _commit wrote the compactions file
        return dirty

    def _drain(self, writer: CompactorStateWriter, c: Compaction) -> CompactionReport:
        """Commit a drain: no SST is read or written, the manifest loses its sources (after
        the safety checkpoint that keeps them readable for in-flight readers)."""
        started = time.monotonic()
        before = writer.state.manifest
        now_s = self.clock.now_ms() // 1000
        writer.write_manifest_safely(
            lambda m, _n: apply_drain(remove_expired_checkpoints(m, now_s), c),
            checkpoint_lifetime=self.options.checkpoint_lifetime,
        )
        writer.state.finish(c.id, STATUS_COMPLETED, [])
        logger.info(
            "drain completed id=%s segment=%r l0=%d runs=%s",
            c.id,
            c.segment,
            len(c.l0_view_ids),
            c.sorted_runs,
        )
        return self._report(c, "completed", before, [], time.monotonic() - started)

    def _trivial_move(
        self, writer: CompactorStateWriter, c: Compaction, finished: list[CompactionReport]
    ) -> bool:
        """Commit ``c`` as a trivial move when ``enable_trivial_move`` is on and its sources'
        key ranges do not overlap: the manifest gets the destination run made of the source
        SSTs as they are (nothing read or written), then ``c`` is Completed. ``False``: ``c``
        must be executed."""
        if not self.options.enable_trivial_move:
            return False
        started = time.monotonic()
        before = writer.state.manifest
        run = trivial_move_output(before, c)
        if run is None:
            return False
        now_s = self.clock.now_ms() // 1000
        moved = [v.sst for v in run.ssts]

        def mutate(m: Manifest, _next_id: int) -> Manifest:
            # re-derived on the manifest being updated (the writer may have added L0s); the
            # sources are this compactor's to change, so they still do not overlap
            current = trivial_move_output(m, c) or run
            return apply_trivial_move(remove_expired_checkpoints(m, now_s), c, current)

        # nothing leaves the manifest's SSTs: no safety checkpoint needed
        writer.write_manifest_safely(mutate, checkpoint_lifetime=None)
        writer.state.finish(c.id, STATUS_COMPLETED, moved)
        logger.info(
            "trivial move completed id=%s segment=%r dest=%d ssts=%d",
            c.id,
            c.segment,
            c.destination,
            len(moved),
        )
        finished.append(self._report(c, "completed", before, moved, time.monotonic() - started))
        return True

    @staticmethod
    def _already_committed(m: Manifest, c: Compaction) -> bool:
        tree = segments.tree(m, c.segment)
        if tree is None:
            return False
        l0_left = {v.id for v in tree.l0} & set(c.l0_view_ids)
        if c.spec_type == SPEC_DRAIN_SEGMENT:
            runs_left = {r.id for r in tree.compacted} & set(c.sorted_runs)
            return bool(c.l0_view_ids or c.sorted_runs) and not l0_left and not runs_left
        dest = next((r for r in tree.compacted if r.id == c.destination), None)
        if dest is None:
            return False
        if not c.output_ssts:
            # a trivial move keeps the source L0 views, ids and all, in the destination run
            if not c.l0_view_ids or not set(c.l0_view_ids) <= {v.id for v in dest.ssts}:
                return False
        elif not {s.id for s in c.output_ssts} <= {v.sst.id for v in dest.ssts}:
            return False
        runs_left = {r.id for r in tree.compacted} & (set(c.sorted_runs) - {c.destination})
        return not l0_left and not runs_left

    def _make_job(self, m: Manifest, c: Compaction) -> Any:
        return build_job(m, c)

    # -- running a job (pool threads) ---------------------------------------------------------

    def _execute(self, job: _Job, cjob: Any) -> CompactionReport | None:
        c = job.compaction
        with trace_span(
            "shale.compaction",
            **{"shale.compaction_id": str(c.id), "shale.destination": c.destination},
        ):
            return self._execute_job(job, cjob)

    def _execute_job(self, job: _Job, cjob: Any) -> CompactionReport | None:
        started = time.monotonic()
        try:
            outputs = self.executor.execute(
                cjob,
                on_output=lambda sst: self._on_output(job, sst),
                on_progress=lambda n: self._on_progress(job, n),
                stop=self._stop,
            )
        except BaseException as exc:
            return self._job_failed(job, exc, started)
        try:
            report = self._commit(job, list(outputs), time.monotonic() - started)
        except BaseException as exc:
            return self._job_failed(job, exc, started, committing=True)
        self._notify_finished(report)
        self._wake.set()
        return report

    def _on_output(self, job: _Job, sst: CompactedSst) -> None:
        with self._lock:
            writer = self._require_writer(finishing=True)
            writer.state.record_output(job.compaction.id, sst)
            job.outputs += 1
            try:
                writer.write_compactions_safely()
            except ClosedError as exc:
                if _is_fenced(exc):
                    self._on_fenced()
                raise
            except TransientStoreError as exc:
                # the output stays in the in-memory state and is persisted with the next write;
                # a crash before that only costs redoing this SST
                logger.warning(
                    "could not record output %s of compaction %s yet: %s",
                    sst.id,
                    job.compaction.id,
                    exc,
                )
            logger.debug("compaction %s recorded output %s", job.compaction.id, sst.id)

    def _on_progress(self, job: _Job, processed: int) -> None:
        job.bytes_processed = int(processed)

    def _commit(
        self, job: _Job, outputs: list[CompactedSst], duration: float, *, collect: bool = True
    ) -> CompactionReport:
        c = job.compaction
        now_s = self.clock.now_ms() // 1000

        def mutate(m: Manifest, _next_id: int) -> Manifest | None:
            if _commit_landed(m, c, outputs):
                return None  # a write whose reply was lost did land: nothing to do
            m = apply_compaction(remove_expired_checkpoints(m, now_s), c, outputs)
            return prune_external_ssts(m)  # as SlateDB: a clone forgets sources it compacted away

        before: Manifest | None = None
        manifest_done = finished = False

        def attempt() -> CompactionReport:
            nonlocal before, manifest_done, finished
            with self._lock:
                writer = self._require_writer(finishing=True)
                if before is None:
                    before = writer.state.manifest
                if not manifest_done:
                    # manifest first (with its safety checkpoint), then compactions; a retry
                    # after a failed manifest write writes it again (``mutate`` sees whether
                    # the failed attempt landed after all)
                    writer.write_manifest_safely(
                        mutate, checkpoint_lifetime=self.options.checkpoint_lifetime
                    )
                    manifest_done = True
                if not finished:
                    writer.state.finish(c.id, STATUS_COMPLETED, outputs)
                    finished = True
                writer.write_compactions_safely()
                self._jobs.pop(c.id, None)
                self._consecutive_failures = 0
                self._backoff_until = None
                report = self._report(c, "completed", before, outputs, duration)
                if self._collecting and collect:
                    self._reports.append(report)
                return report

        report = self.retry.call(attempt, what=f"commit of compaction {c.id}", stop=self._stop)
        logger.info(
            "compaction completed id=%s segment=%r dest=%d outputs=%d bytes_in=%d bytes_out=%d "
            "in %.2fs",
            c.id,
            c.segment,
            c.destination,
            len(outputs),
            report.bytes_in,
            report.bytes_out,
            duration,
        )
        return report

    def _job_failed(
        self, job: _Job, exc: BaseException, started: float, committing: bool = False
    ) -> CompactionReport | None:
        c = job.compaction
        if _is_fenced(exc) or self._fenced:
            with self._lock:
                self._jobs.pop(c.id, None)
                self._on_fenced()
            return None
        if self._stop.is_set():
            # interrupted: leave it Running in the file; the next start resumes it
            with self._lock:
                self._jobs.pop(c.id, None)
            logger.info("compaction %s interrupted by stop; it resumes on the next start", c.id)
            return None
        if not isinstance(exc, Exception):
            with self._lock:
                self._jobs.pop(c.id, None)
            raise exc
        if isinstance(exc, PermanentStoreError) and self._permanent_error is None:
            self._permanent_error = exc  # the next job would be refused the same way: stop
            self._stop.set()
            self._wake.set()
        error = (
            f"{exc.kind}: {exc.message}"
            if isinstance(exc, ShaleError)
            else f"{type(exc).__name__}: {exc}"
        )
        report: CompactionReport | None = None
        with self._lock:
            self._failures += 1
            self._consecutive_failures += 1
            self._last_error = error
            self._last_failed_id = c.id
            delay = min(
                self.options.poll_interval * 2 ** min(self._consecutive_failures - 1, 30),
                FAILURE_BACKOFF_MAX_S,
            )
            self._backoff_until = time.monotonic() + delay
            logger.error(
                "compaction %s failed%s (%d in a row; no new compactions for %.1f s): %s",
                c.id,
                " while committing" if committing else "",
                self._consecutive_failures,
                delay,
                exc,
                exc_info=exc,
            )
            self._jobs.pop(c.id, None)
            writer = self._writer
            if writer is not None and not self._fenced:
                try:
                    current = writer.state.get(c.id)
                    if current is not None and is_active(current):
                        writer.state.finish(c.id, STATUS_FAILED)
                        writer.write_compactions_safely()
                except ClosedError as exc2:
                    if _is_fenced(exc2):
                        self._on_fenced()
                    return None
                except ShaleError as exc2:
                    logger.warning("could not record the failure of compaction %s: %s", c.id, exc2)
            m = writer.state.manifest if writer is not None else None
            report = self._report(c, "failed", m, [], time.monotonic() - started, error=error)
            if self._collecting:
                self._reports.append(report)
        self._notify_finished(report)
        self._wake.set()
        return report

    @staticmethod
    def _report(
        c: Compaction,
        status: str,
        m: Manifest | None,
        outputs: list[CompactedSst],
        duration: float,
        error: str | None = None,
    ) -> CompactionReport:
        return CompactionReport(
            id=c.id,
            status=status,
            l0_view_ids=tuple(c.l0_view_ids),
            sorted_runs=tuple(c.sorted_runs),
            destination=c.destination,
            output_ssts=tuple(outputs),
            bytes_in=0 if m is None else spec_size(m, c),
            bytes_out=_output_bytes(outputs),
            duration_s=duration,
            error=error,
            segment=c.segment,
            drain=c.spec_type == SPEC_DRAIN_SEGMENT,
        )


# -- standalone helpers (never fence) ------------------------------------------------------------


def submit_compaction(
    store: ObjectStore,
    root: str = "",
    spec: CompactionSpec | str = FULL,
    *,
    segment: bytes = b"",
    scheduler: Any = None,
    clock: Clock | None = None,
    rand: random.Random | None = None,
    format_version: int = 2,
) -> Ulid:
    """Submit a compaction to the database's ``.compactions`` file without fencing the
    running compactor (``shale compactor submit``); it picks the spec up on its next poll.

    The spec (or :data:`FULL` of the tree ``segment``, resolved against the latest manifest)
    is validated first. A
    missing ``.compactions`` file is created (epoch 0); concurrent writers are merged through
    the create-if-absent update loop.

    :returns: the new compaction's id.
    :raises InvalidError: the spec does not validate.
    :raises DataError: there is no database (no manifest).
    """
    scheduler = scheduler if scheduler is not None else SizeTieredScheduler()
    view = read_view(store, root)
    if isinstance(spec, str):
        if spec.lower() != FULL:
            raise InvalidError('a compaction spec is a CompactionSpec or "full"', spec=spec)
        spec = generate_full(view, segment)
    scheduler.validate(view, spec)
    clock = clock if clock is not None else SystemClock()
    cid = Ulid.new(clock.now_ms(), rand)
    compaction = spec.to_compaction(cid)
    cs = CompactionsStore(store, root, format_version=format_version)
    stored = StoredCompactions.create_or_load(cs)

    def add(c: Compactions) -> Compactions:
        return dataclasses.replace(
            c, recent_compactions=sorted([*c.recent_compactions, compaction], key=lambda x: x.id)
        )

    stored.update(add)
    logger.info("compaction submitted id=%s spec=%s", cid, spec.to_json())
    return cid


def read_status(store: ObjectStore, root: str = "") -> tuple[CompactorStateView, list[JobStatus]]:
    """The state view and every compaction in the ``.compactions`` file with estimated
    progress (output bytes / source bytes, capped below 100 % until Completed): what
    ``shale compactor status`` prints for a compactor running in another process.
    """
    view = read_view(store, root)
    m = view.manifest
    out = []
    for c in view.recent_compactions():
        total = spec_size(m, c)
        done = _output_bytes(c.output_ssts)
        if c.status == STATUS_COMPLETED:
            done = total
        elif total:
            done = min(done, int(total * 0.99))
        out.append(
            JobStatus(
                id=c.id,
                status=STATUS_NAMES.get(c.status, str(c.status)),
                l0=len(c.l0_view_ids),
                sorted_runs=tuple(c.sorted_runs),
                destination=c.destination,
                outputs=len(c.output_ssts),
                bytes_processed=done,
                total_bytes=total,
                elapsed_s=None,
                segment=c.segment,
            )
        )
    return view, out
