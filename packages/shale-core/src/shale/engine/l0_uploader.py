"""The parallel L0 upload stage (SlateDB's ``memtable_flusher/uploader``): with
``l0_flush_parallelism`` N > 1, up to N frozen memtables are built and uploaded as L0 SSTs at
once, each on a daemon thread of its own; the memtable flusher publishes them in freeze order.

Invariants:

- The jobs are a prefix of the frozen-memtable queue, oldest first: the flusher dispatches the
  queued memtables in order and only ever takes the oldest job, once it is done, to publish it.
  So the manifest always names a prefix of the frozen memtables.
- A job's SST ids are minted from a timestamp and a random generator fixed at dispatch
  (:class:`UploadJob.new_id`), so a later memtable's SSTs are never older than an earlier
  one's: the GC keeps every compacted SST at least as new as the newest published L0 (an
  upload in flight).
- Every job not yet published holds an L0 slot (:attr:`Uploader.reserved`): flushing several
  memtables at once never takes L0 past ``l0_max_ssts`` / ``l0_max_ssts_per_key``.
- A job that failed or gave up is dropped with every later one before its memtable is
  dispatched again (their uploads are orphans the GC removes): a re-upload mints newer ids.
- A job leaves the queue once its SSTs are published; one whose publication failed stays, done,
  and is published by the next try (close()'s).
- Only one thread at a time calls in here (the flusher's, then close()'s once it stopped); the
  workers only fill in their own job and wake the flusher.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from shale.engine.memtable import Memtable
from shale.fbs.manifest import SstView
from shale.ids import Ulid
from shale.objstore.retrying import RetryPolicy

#: The L0 SSTs of one flushed memtable, ``(tree prefix, view)``.
Views = list[tuple[bytes, SstView]]


@dataclasses.dataclass(eq=False)
class UploadJob:
    """One frozen memtable to build and upload as L0 SSTs (one per tree its rows touch)."""

    imm: Memtable
    #: the snapshot floor of the flush (:meth:`SnapshotManager.advance_floor`, at dispatch)
    boundary: int
    #: mints the id of each of its SSTs
    new_id: Callable[[], Ulid]
    #: the retry policy of its puts, and the event that ends their waits
    policy: RetryPolicy
    stop: threading.Event | None
    #: ``time.perf_counter_ns()`` at dispatch (the flush latency runs from here)
    started_ns: int
    #: set by :meth:`Uploader.abandon` to end the retries of a job whose ``stop`` is its own
    abort: threading.Event | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    #: its SSTs once uploaded; ``None`` when it gave up (the database stopping)
    views: Views | None = None
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.done.is_set() and (self.error is not None or self.views is None)


class Uploader:
    """Runs :class:`UploadJob` s, at most ``parallelism`` at a time, and keeps them in order."""

    def __init__(
        self,
        parallelism: int,
        upload: Callable[[UploadJob], Views | None],
        wake: Callable[[], None],
    ) -> None:
        self.parallelism = parallelism
        self._upload = upload
        self._wake = wake
        self._jobs: list[UploadJob] = []  # oldest memtable first

    @property
    def reserved(self) -> int:
        """The jobs not published yet: each holds an L0 slot."""
        return len(self._jobs)

    def running(self) -> int:
        return sum(1 for j in self._jobs if not j.done.is_set())

    def job(self, imm: Memtable) -> UploadJob | None:
        for j in self._jobs:
            if j.imm is imm:
                return j
        return None

    def submit(self, job: UploadJob) -> None:
        self._jobs.append(job)
        threading.Thread(target=self._run, args=(job,), name="shale-l0-upload", daemon=True).start()

    def _run(self, job: UploadJob) -> None:
        try:
            job.views = self._upload(job)
        except BaseException as exc:  # raised where the flusher takes the job
            job.error = exc
        finally:
            job.done.set()
            self._wake()

    def result(self, imm: Memtable) -> Views | None:
        """The SSTs of the oldest job, which is ``imm``'s and done (it stays queued until
        :meth:`published`). ``None``: it gave up. Re-raises what its upload raised. A job that
        failed is dropped with every later one."""
        job = self._jobs[0]
        assert job.imm is imm and job.done.is_set()
        if job.failed:
            self.abandon()
            if job.error is not None:
                raise job.error
        return job.views

    def published(self, imm: Memtable) -> None:
        """The oldest job's SSTs are in the manifest: it leaves the queue."""
        assert self._jobs[0].imm is imm
        del self._jobs[0]

    def drop_failed(self) -> None:
        """Drop the first job that failed or gave up, and every later one."""
        for i, j in enumerate(self._jobs):
            if j.failed:
                self._drop(i)
                return

    def abandon(self) -> None:
        """Drop every job (end their retries, wait for their threads)."""
        self._drop(0)

    def _drop(self, start: int) -> None:
        dropped = self._jobs[start:]
        del self._jobs[start:]
        for j in dropped:
            if j.abort is not None:
                j.abort.set()
        for j in dropped:
            j.done.wait()

    def drain(self) -> None:
        """Wait for every running job (the database is stopping: their retries end)."""
        for j in list(self._jobs):
            j.done.wait()
