"""The L0 flusher (SlateDB's ``memtable_flusher``): frozen memtables become L0 SSTs, published
in the manifest.

Invariants:

- Frozen memtables are published oldest first, each only once its rows are durable in the WAL
  (with the WAL on). One flush writes one SST per tree its rows touch and publishes them all in
  one manifest update that also advances ``replay_after_wal_id`` past the WALs it covers, so
  those are never replayed again. So every manifest names a prefix of the frozen memtables
  (``last_l0_seq``, L0 newest first, ``replay_after_wal_id``), never a newer one without an
  older one.
- With ``l0_flush_parallelism`` N > 1 (SlateDB's parallel flush), up to N queued memtables are
  built and uploaded at once on upload threads (:mod:`shale.engine.l0_uploader`), then
  published one by one in freeze order; with N = 1 the flusher's thread does both, one memtable
  at a time. Each flush not yet published holds an L0 slot: a flush starts only while L0 has
  room (``l0_max_ssts`` per tree, ``l0_max_ssts_per_key``) for it and every other in flight;
  close() ignores the limits. An SST uploaded but never published (a crash, a fence, a flush
  that gave up) is an orphan the GC removes.
- Versions no snapshot can see and ``history_retention`` does not keep are dropped
  (:meth:`SnapshotManager.advance_floor`, recorded as ``recent_snapshot_min_seq`` for the
  compactor); expired values become tombstones and expired merge operands are dropped, judged
  by the table's last tick.
- An unsegmented flush into a store that streams (the local store) writes its SST while
  encoding it (:meth:`MemtableFlusher._stream_l0`): the SST is never held whole in memory.
- It waits on its own event (woken by a freeze, a stored WAL, a manifest poll, a finished
  upload), never polls. Once the database stops it waits for its uploads to end (their retries
  stop with it); close() then publishes, on its own thread, the uploads that finished and
  flushes the rest (:meth:`MemtableFlusher.flush_imm`).

It knows the WAL only through callbacks (``last_wal_id``, ``wake_wal``): the WAL writer calls
back into it the same way, so neither imports the other.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator

from shale import ids, tracing
from shale.clock import MonotonicClock
from shale.engine.db_state import DbState
from shale.engine.db_status import DbStatus, UploadHealth, Wait
from shale.engine.l0_uploader import Uploader, UploadJob, Views
from shale.engine.manifest_keeper import ManifestKeeper
from shale.engine.memtable import Memtable
from shale.engine.oracle import DbOracle
from shale.engine.snapshot_manager import SnapshotManager
from shale.engine.table_store import TableStore
from shale.errors import InvalidError, UnavailableError
from shale.fbs.manifest import CompactedSst, Manifest, SstView
from shale.meta import segments
from shale.meta.history import history_floor
from shale.meta.seq_tracker import SequenceTracker
from shale.objstore.cached import upload_kind
from shale.objstore.instrumented import streams
from shale.objstore.protocol import TransientStoreError
from shale.objstore.retrying import RetryingStore, RetryPolicy
from shale.row import MERGE, TOMBSTONE, VALUE
from shale.settings import Settings
from shale.sst import SstBuilder
from shale.telemetry import EngineMetrics

log = logging.getLogger(__name__)

#: Rows encoded into a streamed L0 SST between two writes of its finished blocks.
STREAM_ROWS = 2048
#: A streamed L0 SST is ``fdatasync``'d each time this many more bytes were written, so the
#: disk is paid as the flush goes and the final fsync is short.
STREAM_SYNC_BYTES = 16 * 1024 * 1024
#: Seconds L0 may stay full (with frozen memtables waiting) before a warning, then between them.
L0_FULL_WARN_S = 30.0


def l0_full(m: Manifest, settings: Settings, reserved: int = 0) -> tuple[str, str] | None:
    """Why an L0 flush must wait -- ``(what L0 holds, the limit it reached)``, e.g. ``("8
    SSTs", "l0_max_ssts=8")`` -- or ``None`` when it may go ahead: a tree's L0 holds
    ``l0_max_ssts`` SSTs, or ``l0_max_ssts_per_key`` of them cover one key, counting
    ``reserved`` more (flushes uploading, not published yet) in every tree and on every key."""
    l0 = segments.max_l0_ssts(m) + reserved
    if l0 >= settings.l0_max_ssts:
        return f"{l0} SSTs", f"l0_max_ssts={settings.l0_max_ssts}"
    per_key = settings.l0_max_ssts_per_key
    if per_key is not None and l0 >= per_key:  # the overlap is at most the count
        overlap = segments.max_l0_overlap(m) + reserved
        if overlap >= per_key:
            return f"{overlap} SSTs on one key", f"l0_max_ssts_per_key={per_key}"
    return None


class MemtableFlusher:
    """Writes frozen memtables to L0 on its own thread (and on close()'s)."""

    def __init__(
        self,
        tables: TableStore,
        state: DbState,
        oracle: DbOracle,
        snapshots: SnapshotManager,
        keeper: ManifestKeeper,
        status: DbStatus,
        stats: collections.Counter[str],
        *,
        clock: MonotonicClock,
        prefix_extractor: segments.PrefixExtractor | None,
        wake_waiters: Callable[[], None],
    ) -> None:
        self.settings = tables.settings
        self._tables = tables
        self._state = state
        self._oracle = oracle
        self._snapshots = snapshots
        self._keeper = keeper
        self._status = status
        self._stats = stats
        #: L0 flush latency (set by ``DbInner``; ``None``: metrics off)
        self.metrics: EngineMetrics | None = None
        self._clock = clock
        self._extractor = prefix_extractor
        self._wake_waiters = wake_waiters
        self._rand = random.Random(self.settings.seed)
        #: the highest WAL id given out (the WAL writer's; with the WAL off, fixed at open)
        self.last_wal_id: Callable[[], int] = lambda: 0
        #: ask the WAL writer to flush (``None``: the WAL is off)
        self.wake_wal: Callable[[], None] | None = None
        #: called with the manifest written by each L0 flush, no lock held (the ``Db`` tells the
        #: plugins' ``shale_l0_flushed``, which wakes an in-process compactor)
        self.on_l0_flushed: Callable[[Manifest], None] | None = None
        self.wakeup = threading.Event()
        self.health = UploadHealth()
        #: monotonic time L0 became full with work waiting (``None``: it is not)
        self.l0_full_since: float | None = None
        self._l0_warned_at = 0.0
        self._bytes_lock = threading.Lock()  # l0_flush_bytes, counted by the upload threads
        n = self.settings.l0_flush_parallelism
        #: the parallel upload stage (``None``: ``l0_flush_parallelism`` is 1)
        self._uploader = Uploader(n, self._upload_job, self.wake) if n > 1 else None

    def wake(self) -> None:
        self.wakeup.set()

    def step(self) -> Wait | None:
        """One round of the flusher thread: flush the oldest frozen memtable to L0 if it may
        be, else wait to be woken (by a freeze, a durable WAL, or the manifest poller seeing
        L0 change) -- never poll."""
        self.wakeup.clear()
        up = self._uploader
        if self._status.stop.is_set():
            if up is not None:
                up.drain()  # their retries end now
                self._publish_finished(up)
            return None  # close() flushes what is left (with the WAL on, it is in the WAL)
        poll = self.settings.manifest_poll_interval
        state = self._state
        with state.lock:
            imm = state.imms[0] if state.imms else None
            manifest = state.manifest
        if imm is None:
            self.l0_full_since = None
            return self.wakeup, poll
        if up is not None:
            wait = self._step_parallel(up, imm, manifest)
            if wait is None:
                up.drain()
            return wait
        if self.wake_wal is not None and self._oracle.durable_seq < imm.max_seq:
            # its WAL is not stored yet; the WAL flusher wakes us once it is
            self.wake_wal()
            return self.wakeup, poll
        full = l0_full(manifest, self.settings)
        if full is not None:
            self._note_l0_full(full[0])
            return self.wakeup, poll
        self.l0_full_since = None
        if not self.flush_imm(imm):
            return None  # stopping
        return self.wakeup, 0.0

    def _step_parallel(self, up: Uploader, imm: Memtable, manifest: Manifest) -> Wait | None:
        """:meth:`step` with ``l0_flush_parallelism`` > 1: publish the oldest frozen memtable
        once its upload is done (with the WAL on, once its rows are durable too), else start
        uploading the next ones while fewer than N uploads run and L0 has room for every flush
        not published yet; an upload finishing wakes the flusher."""
        poll = self.settings.manifest_poll_interval
        wake_wal = self.wake_wal
        durable = wake_wal is None or self._oracle.durable_seq >= imm.max_seq
        if wake_wal is not None and not durable:
            wake_wal()  # its WAL is not stored yet; the WAL flusher wakes us once it is
        job = up.job(imm)
        if job is not None and job.done.is_set() and durable:
            if not self._publish_job(up, job):
                return None  # stopping
            return self.wakeup, 0.0
        if job is None:  # no upload in flight: the jobs are a prefix of the queue
            full = l0_full(manifest, self.settings)
            if full is not None:
                self._note_l0_full(full[0])
                return self.wakeup, poll
        self.l0_full_since = None
        self._dispatch(up, limit=True)
        return self.wakeup, poll

    def _publish_finished(self, up: Uploader) -> None:
        """As the database stops: publish, oldest first, the uploads that finished and whose
        rows are durable -- what one flush in progress does with ``l0_flush_parallelism`` 1
        (it completes), so stopping never throws away finished L0 SSTs; the first one that
        cannot be published (failed, unfinished, not durable, or the publish gave up) ends it,
        and close() takes over from there."""
        while True:
            with self._state.lock:
                imm = self._state.imms[0] if self._state.imms else None
            job = None if imm is None else up.job(imm)
            if imm is None or job is None or not job.done.is_set() or job.failed:
                return
            if self.wake_wal is not None and self._oracle.durable_seq < imm.max_seq:
                return
            if not self._publish_job(up, job):  # raises as a publish in step() would
                return

    def _dispatch(self, up: Uploader, *, limit: bool) -> None:
        """Start uploading the oldest frozen memtables not uploading yet, in order, while
        fewer than ``l0_flush_parallelism`` uploads run and (``limit``) L0 has room for one
        more besides the flushes not published yet. The snapshot floor and the SST ids'
        timestamp of each are fixed here, in freeze order."""
        policy, stop = self._status.retrying()
        with self._state.lock:
            imms = list(self._state.imms)
            manifest = self._state.manifest
        for imm in imms:
            if up.running() >= up.parallelism:
                return
            if up.job(imm) is not None:
                continue
            if limit and l0_full(manifest, self.settings, up.reserved) is not None:
                return
            abort = threading.Event() if stop is None else None  # close()'s: ended on failure
            rand = random.Random(self._rand.getrandbits(64))
            new_id = functools.partial(ids.Ulid.new, self._clock.now_ms(), rand)
            boundary = self._snapshots.advance_floor(self._keep_from(imm))
            started = time.perf_counter_ns()
            up.submit(UploadJob(imm, boundary, new_id, policy, stop or abort, started, abort))

    def _upload_job(self, job: UploadJob) -> Views | None:
        """An upload thread's work: build and upload ``job``'s SSTs."""
        return self._upload(job.imm, job.boundary, job.new_id, job.policy, job.stop)

    def _publish_job(self, up: Uploader, job: UploadJob) -> bool:
        """Publish the oldest job's SSTs (:meth:`_publish`); False when it gave up (stopping).
        Re-raises what its upload raised."""
        views = up.result(job.imm)
        if views is None:
            return False
        with tracing.span("shale.l0.flush", **{"shale.max_seq": job.imm.max_seq}):
            done = self._publish(job.imm, job.boundary, views)
        if done:
            up.published(job.imm)
            if self.metrics is not None:
                self.metrics.l0_flush.record_ns(time.perf_counter_ns() - job.started_ns)
        return done

    def _note_l0_full(self, why: str) -> None:
        """L0 is full and frozen memtables wait: count it, and warn now and then."""
        self._stats["l0_backpressure_waits"] += 1
        now = time.monotonic()
        if self.l0_full_since is None:
            self.l0_full_since = self._l0_warned_at = now
            return
        if now - self._l0_warned_at >= L0_FULL_WARN_S:
            self._l0_warned_at = now
            with self._state.lock:
                imms, imm_bytes = len(self._state.imms), self._state.imm_bytes
            log.warning(
                "L0 full (%s), no compaction progress for %.0f s -- is a compactor "
                "running? %d frozen memtables (%d bytes) wait to be flushed; writers block at "
                "max_unflushed_bytes",
                why,
                now - self.l0_full_since,
                imms,
                imm_bytes,
            )

    # -- the SSTs of one flush -----------------------------------------------------------

    @staticmethod
    def _l0_rows(imm: Memtable, boundary: int) -> Iterator[tuple]:  # type: ignore[type-arg]
        """The rows an L0 SST keeps: retention, expiry and tombstone rules of a flush."""
        tick = imm.last_tick
        prev_key = None
        below_done = False
        for row in imm.iter_rows():
            key, seq, kind, _value, expire, create = row
            if key != prev_key:
                prev_key = key
                below_done = False
            elif below_done:
                continue
            if expire is not None and tick is not None and expire <= tick:
                if kind == MERGE:
                    continue  # an expired operand is dropped
                if kind == VALUE:
                    row = (key, seq, TOMBSTONE, b"", None, create)
                    kind = TOMBSTONE
            if seq <= boundary and kind != MERGE:
                below_done = True  # older versions are hidden from every reader
            yield row

    def _l0_builders(self, imm: Memtable, boundary: int) -> list[tuple[bytes, SstBuilder]]:
        """The L0 SSTs of one flush: one per tree its rows touch, ``(prefix, builder)``.

        A row goes to the segment that owns its key in the manifest, else to its extractor's
        prefix, else (an unsegmented database) to the root tree ``b""``.
        """
        rows = self._l0_rows(imm, boundary)
        m = self._state.manifest
        if self._extractor is None and not m.segments:
            builder = self._tables.table_builder()
            builder.add_rows(rows)
            return [(b"", builder)]
        persisted = [seg.prefix for seg in m.segments]
        out: dict[bytes, SstBuilder] = {}
        for prefix, group in itertools.groupby(
            rows, key=lambda r: self._flush_prefix(persisted, r[0])
        ):
            if prefix not in out:
                out[prefix] = self._tables.table_builder()
            out[prefix].add_rows(group)
        return sorted(out.items())

    def _flush_prefix(self, persisted: list[bytes], key: bytes) -> bytes:
        i = segments.owning_prefix(persisted, key)
        if i is not None:
            return persisted[i]
        ext = self._extractor
        if ext is None:
            return b""
        try:
            return segments.segment_prefix(ext, key)
        except InvalidError:
            # only a row replayed from a WAL written under another extractor gets here
            log.warning("key %r has no segment prefix; flushing it to the root tree", key[:64])
            return b""

    def _keep_from(self, imm: Memtable) -> int:
        """The oldest seq this flush would keep readable before open snapshots are counted:
        ``imm.max_seq`` (only the newest versions), or lower under ``history_retention``."""
        floor = history_floor(
            self.settings.history_retention,
            newest_seq=imm.max_seq,
            tracker=SequenceTracker.decode(self._state.manifest.sequence_tracker),
            now_ms=self._clock.now_ms(),
        )
        return imm.max_seq if floor is None else min(floor, imm.max_seq)

    # -- flushing ------------------------------------------------------------------------

    def flush_imm(self, imm: Memtable) -> bool:
        """Flush ``imm``, the oldest frozen memtable, to L0 on this thread (close() does, once
        the background threads stopped); False when it gave up (``imm`` stays queued).

        One at a time: :meth:`_flush_imm` in a ``shale.l0.flush`` span, its latency recorded
        when it published the SSTs. With ``l0_flush_parallelism`` N > 1, the next N - 1
        queued memtables start uploading too (the next call finds theirs done), and uploads
        the background threads finished are published rather than redone.
        """
        up = self._uploader
        if up is not None:
            return self._flush_queued(up, imm)
        t0 = time.perf_counter_ns()
        with tracing.span("shale.l0.flush", **{"shale.max_seq": imm.max_seq}):
            done = self._flush_imm(imm)
        if done and self.metrics is not None:
            self.metrics.l0_flush.record_ns(time.perf_counter_ns() - t0)
        return done

    def _flush_queued(self, up: Uploader, imm: Memtable) -> bool:
        """:meth:`flush_imm` with ``l0_flush_parallelism`` > 1 (L0's limits do not apply)."""
        up.drop_failed()  # e.g. the background uploads that gave up as the database stopped
        self._dispatch(up, limit=False)
        job = up.job(imm)
        assert job is not None, "flush_imm flushes the oldest frozen memtable"
        try:
            job.done.wait()
            if self._publish_job(up, job):
                return True
        except BaseException:
            up.abandon()
            raise
        up.abandon()  # end the uploads still running: nothing more is flushed
        return False

    def _flush_imm(self, imm: Memtable) -> bool:
        """Write ``imm`` as L0 SSTs (one per tree it touches) and publish them in one manifest
        update; False when it gave up because the database is stopping (``imm`` stays queued)."""
        boundary = self._snapshots.advance_floor(self._keep_from(imm))
        policy, stop = self._status.retrying()
        views = self._upload(imm, boundary, self._new_sst_id, policy, stop)
        if views is None:
            return False
        return self._publish(imm, boundary, views)

    def _new_sst_id(self) -> ids.Ulid:
        return ids.Ulid.new(self._clock.now_ms(), self._rand)

    def _count_bytes(self, n: int) -> None:
        with self._bytes_lock:
            self._stats["l0_flush_bytes"] += n

    def _upload(
        self,
        imm: Memtable,
        boundary: int,
        new_id: Callable[[], ids.Ulid],
        policy: RetryPolicy,
        stop: threading.Event | None,
    ) -> Views | None:
        """Build and upload ``imm``'s L0 SSTs (one per tree it touches); ``None`` when an
        upload gave up (``stop`` set, or ``policy``'s retries spent)."""
        streamed = self._stream_l0(imm, boundary, new_id)
        views: Views = [] if streamed is None else streamed
        for prefix, builder in self._l0_builders(imm, boundary) if streamed is None else ():
            if not len(builder):
                continue
            sst_id = new_id()
            data = builder.finish()
            key = ids.compacted_path(self._tables.root, sst_id)
            if not self._put_with_retry(key, data, policy, stop):
                return None
            views.append((prefix, SstView(sst_id, CompactedSst(sst_id, builder.info, 2), None)))
            self._count_bytes(len(data))
        return views

    def _publish(self, imm: Memtable, boundary: int, views: Views) -> bool:
        """Publish ``imm``'s uploaded L0 SSTs in one manifest update and retire ``imm``; False
        when it gave up because the database is stopping (``imm`` stays queued)."""

        def mutate(m: Manifest, next_id: int) -> Manifest | None:
            if imm.max_seq and m.last_l0_seq >= imm.max_seq:
                return None  # already published (a retry after a lost reply)
            tracker = SequenceTracker.decode(m.sequence_tracker)
            if imm.last_tick is not None:
                tracker.insert(imm.max_seq, imm.last_tick // 1000)
            for prefix, view in views:  # one manifest update publishes every tree's L0
                m = segments.add_l0(m, prefix, view)
            return dataclasses.replace(
                m,
                replay_after_wal_id=max(m.replay_after_wal_id, imm.wal_id or 0),
                wal_id_last_seen=max(m.wal_id_last_seen, self.last_wal_id()),
                last_l0_seq=max(m.last_l0_seq, imm.max_seq),
                last_l0_clock_tick=max(m.last_l0_clock_tick, imm.last_tick or m.last_l0_clock_tick),
                recent_snapshot_min_seq=boundary,
                sequence_tracker=tracker.encode(),
            )

        policy, stop = self._status.retrying()
        try:
            # mutate is idempotent, so a retry after a lost reply cannot apply it twice
            written = policy.call(
                lambda: self._keeper.update(mutate, flushed=imm),
                what="manifest update for an L0 flush",
                stop=stop,
                on_retry=self._upload_retry,
                retry_on=(TransientStoreError, UnavailableError),
            )
        except (TransientStoreError, UnavailableError) as exc:
            self._failed(exc)
            return False  # imm stays queued (its rows in the WAL, if any)
        self.health.succeeded()
        if self.wake_wal is None:  # with the WAL off, durable means "in L0"
            self._oracle.advance_durable(imm.max_seq)
        if views and self.on_l0_flushed is not None:
            self.on_l0_flushed(written)  # before pop_imm: flush() returns after the observers
        self._state.pop_imm(imm)
        self._wake_waiters()
        self._stats["immutable_memtable_flushes"] += 1
        return True

    def _stream_l0(
        self, imm: Memtable, boundary: int, new_id: Callable[[], ids.Ulid]
    ) -> Views | None:
        """The L0 SST of an unsegmented flush, streamed into a store that can (the local store):
        finished data blocks are written (GIL released) while the next rows are encoded, so the
        SST is never held whole nor joined into one buffer. ``None`` when the store cannot
        stream, the database is segmented, or a write failed (the caller then builds the SST
        again and puts it, with retries); ``[]`` when no row is left to flush.
        """
        tables = self._tables
        store = tables.store
        if self._extractor is not None or self._state.manifest.segments or not streams(store):
            return None
        sst_id = new_id()
        key = ids.compacted_path(tables.root, sst_id)
        try:
            writer = store.open_writer(key, sync_every=STREAM_SYNC_BYTES)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("cannot stream L0 SST %s (%s); writing it whole", key, exc)
            return None
        builder = tables.table_builder()
        rows = self._l0_rows(imm, boundary)
        size = 0
        try:
            while builder.add_until(rows, STREAM_ROWS, 1 << 62) == STREAM_ROWS:
                parts = builder.take_parts()
                if parts:
                    writer.write_parts(parts)
                    size += sum(map(len, parts))
            if not len(builder):
                writer.abort()
                return []
            parts = builder.finish_parts()
            writer.write_parts(parts)
            size += sum(map(len, parts))
            del parts
            writer.commit()
        except Exception as exc:
            writer.abort()
            log.warning("streaming L0 SST %s failed (%s); writing it whole", key, exc)
            return None
        except BaseException:
            writer.abort()
            raise
        self._count_bytes(size)
        return [(b"", SstView(sst_id, CompactedSst(sst_id, builder.info, 2), None))]

    def _failed(self, exc: BaseException) -> None:
        self.health.failed(exc)
        self._wake_waiters()

    def _upload_retry(self, _retry: int, error: BaseException, _delay: float) -> None:
        self._failed(error)

    def _put_with_retry(
        self, key: str, data: bytes, policy: RetryPolicy, stop: threading.Event | None
    ) -> bool:
        """``store.put`` retried on transient errors under ``policy``; False when it gave up."""
        store = RetryingStore(self._tables.store, policy, stop=stop, on_retry=self._upload_retry)
        try:
            with upload_kind("flush"):  # for the disk cache's cache_on_flush
                store.put(key, data)  # a plain put: a retry rewrites the same bytes
        except TransientStoreError as exc:
            self._failed(exc)
            return False
        return True
