"""The WAL writer (SlateDB's ``wal_buffer``): the buffer of committed rows, group commit, the
upload of each buffer as ``wal/<id>.sst`` with create-if-absent, and fence detection.

Invariants:

- Rows enter the buffer in seq order under the write lock (:class:`DbState`'s) and leave it
  whole, as the next WAL id, in one step that also freezes the memtable when it is due -- so a
  frozen memtable's ``wal_id`` is the last WAL holding any of its rows.
- WAL SSTs are uploaded one flush at a time (``_flush_mutex``), in id order; one whose upload
  was abandoned (the database is stopping) keeps the later ones back, so ``durable_seq`` never
  passes a row that is not stored.
- A WAL id holding another writer's object means a newer writer fenced this one; after a
  failed attempt the object may be our own upload that landed anyway, and equal bytes prove it.
- Rows that left the buffer are never skipped: an upload that cannot finish for any reason but
  "stopping" fails the database, so no later write is acknowledged on top of a gap.

Writers that ask for durability while an upload runs share the next one (group commit). The
memtable flusher is told through callbacks (``on_uploaded``), never imported.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from shale import ids, tracing
from shale.engine.db_state import DbState
from shale.engine.db_status import DbStatus, UploadHealth, Wait
from shale.engine.memtable import ROW_OVERHEAD, Memtable
from shale.engine.oracle import DbOracle
from shale.engine.table_store import TableStore
from shale.errors import ClosedError, CloseReason, InternalError
from shale.objstore import ObjectAlreadyExists
from shale.objstore.instrumented import streams
from shale.objstore.protocol import TransientStoreError
from shale.objstore.retrying import RetryingStore
from shale.sst import SstBuilder
from shale.telemetry import EngineMetrics

log = logging.getLogger(__name__)

#: a WAL SST of at least this many buffered bytes is streamed into a store that can
#: (:meth:`WalBuffer._stream`); a smaller one is encoded whole and put (its copy is small)
STREAM_MIN_BYTES = 4 * 1024 * 1024
#: rows encoded between two writes of a streamed WAL SST
STREAM_ROWS = 2048
#: ``fdatasync`` a streamed WAL SST every this many bytes (its final fsync stays short)
STREAM_SYNC_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass
class PendingWal:
    """A WAL SST taken from the buffer whose upload has not succeeded yet."""

    wal_id: int
    rows: list[tuple]  # type: ignore[type-arg]
    payload: bytes | None = None
    attempts: int = 0  # upload attempts so far (after the first, the object may be ours)
    nbytes: int = 0  # estimated encoded bytes of its rows (counted in ``unflushed_bytes``)


class WalBuffer:
    """The WAL of a writer: buffer, flush thread step, uploads."""

    def __init__(
        self,
        tables: TableStore,
        state: DbState,
        oracle: DbOracle,
        status: DbStatus,
        stats: collections.Counter[str],
        *,
        next_wal_id: int,
        wake_waiters: Callable[[], None],
    ) -> None:
        self.settings = tables.settings
        self._tables = tables
        self._state = state
        self._oracle = oracle
        self._status = status
        self._stats = stats
        self._wake_waiters = wake_waiters
        #: WAL flush latency (set by ``DbInner``; ``None``: metrics off)
        self.metrics: EngineMetrics | None = None
        #: called after each stored WAL SST (no lock held): wake the memtable flusher
        self.on_uploaded: Callable[[], None] = wake_waiters
        #: ``on_durable(wal_id, rows)``: told each stored WAL SST's rows, in id order, under
        #: the flush mutex only (``db.watch`` / ``db.changes``: it only queues, never blocks)
        self.on_durable: Callable[[int, list[tuple]], None] | None = None  # type: ignore[type-arg]
        self._lock = threading.Lock()  # the fields below; taken inside the write lock
        self._flush_mutex = threading.Lock()  # one flush at a time, first in the lock order
        self.wakeup = threading.Event()
        self.health = UploadHealth()
        self._rows: list[tuple] = []  # type: ignore[type-arg]
        #: estimated encoded bytes in the buffer (backpressure counts them)
        self.buffered_bytes = 0
        #: estimated encoded bytes of the WAL SSTs taken from the buffer but not stored yet
        #: (backpressure counts them with the buffer, as SlateDB counts its immutable WALs).
        #: Changed only under ``_lock`` (the buffer's bytes change under the write lock: the
        #: compiled commit adds to them without ``_lock``), so neither count loses an update.
        self.queued_bytes = 0
        self.next_wal_id = next_wal_id
        self._flushes_since_freeze = 0
        self._queue: collections.deque[PendingWal] = collections.deque()  # in id order
        self._freeze_wanted = 0  # flush(memtable=True) requests, counted
        self.freeze_done = 0  # requests the flusher has frozen the memtable for

    # -- the write path (under the write lock) -------------------------------------------

    def append(self, rows: list[tuple], memtable: Memtable) -> None:  # type: ignore[type-arg]
        """Buffer a committed batch's rows; wake the flusher once the buffer or the memtable
        is large. The caller holds the write lock."""
        nbytes = 0
        for row in rows:
            nbytes += len(row[0]) + len(row[3]) + ROW_OVERHEAD
        with self._lock:
            self._rows.extend(rows)
            self.buffered_bytes += nbytes
            size = self.buffered_bytes
        limit = self.settings.l0_sst_size_bytes
        if size >= limit or memtable.size >= limit:
            self.wakeup.set()

    def append_one(self, row: tuple, memtable: Memtable) -> None:  # type: ignore[type-arg]
        """:meth:`append` of a one-row batch."""
        nbytes = len(row[0]) + len(row[3]) + ROW_OVERHEAD
        with self._lock:
            self._rows.append(row)
            size = self.buffered_bytes = self.buffered_bytes + nbytes
        limit = self.settings.l0_sst_size_bytes
        if size >= limit or memtable.size >= limit:
            self.wakeup.set()

    @property
    def unflushed_bytes(self) -> int:
        """The buffer's estimated bytes plus those of the WAL SSTs not stored yet."""
        return self.buffered_bytes + self.queued_bytes

    def request_freeze(self) -> int:
        """Ask the next flush to freeze the memtable; the ticket :attr:`freeze_done` reaches."""
        with self._lock:
            self._freeze_wanted += 1
            return self._freeze_wanted

    def last_wal_id(self) -> int:
        """The highest WAL id given out so far."""
        return self.next_wal_id - 1

    def pending_rows(self) -> list[tuple]:  # type: ignore[type-arg]
        """Rows not stored yet (queued uploads, then the buffer): what close() reports lost."""
        with self._lock:
            return [r for p in self._queue for r in p.rows] + self._rows

    # -- flushing ------------------------------------------------------------------------

    def step(self) -> Wait | None:
        """One round of the WAL flusher thread."""
        self.wakeup.clear()
        if self._status.stop.is_set():
            return None
        self.flush()
        return self.wakeup, self.settings.flush_interval

    def flush(self) -> bool:
        """Upload the buffer as the next WAL SST, after any earlier upload still queued.

        Runs on the WAL flusher thread, and on the closing thread once that one has stopped.

        :returns: False when an upload was abandoned because the database is stopping; it
            stays queued (close() retries it).
        """
        with self._flush_mutex:
            return self._flush_locked()

    def _should_freeze(self, mt: Memtable) -> bool:
        if mt.is_empty():
            return False
        s = self.settings
        return (
            mt.size >= s.l0_sst_size_bytes
            or self._flushes_since_freeze >= s.max_wal_flushes_before_l0_flush
        )

    def _flush_locked(self) -> bool:
        state = self._state
        with state.lock:
            if self._status.failed():
                return False
            with self._lock:
                rows = self._rows
                if rows:
                    self._rows = []
                    nbytes, self.buffered_bytes = self.buffered_bytes, 0
                    self.queued_bytes += nbytes
                    wal_id = self.next_wal_id
                    self.next_wal_id += 1
                    self._flushes_since_freeze += 1
                    self._queue.append(PendingWal(wal_id, rows, nbytes=nbytes))
                else:
                    wal_id = self.next_wal_id - 1
                requested = self.freeze_done < self._freeze_wanted
                wanted = self._freeze_wanted
                freeze = requested or self._should_freeze(state.memtable)
                queue = list(self._queue)
            if freeze and state.freeze(wal_id):
                self._flushes_since_freeze = 0
            if requested:
                self.freeze_done = wanted
                state.cond.notify_all()
        for pending in queue:
            size = None
            if (
                pending.payload is None
                and pending.attempts == 0
                and pending.nbytes >= STREAM_MIN_BYTES
                and streams(self._tables.wal_store)
            ):
                try:
                    size = self._timed_upload(pending, self._stream)
                except BaseException as exc:
                    self._upload_failed(exc)
            if size is None:
                if pending.payload is None:
                    pending.payload = self._encode(pending)
                try:
                    size = self._timed_upload(pending, self._upload)
                except BaseException as exc:
                    self._upload_failed(exc)
                if size is None:
                    return False
            pending.payload = None  # stored: its copy of the rows is not needed any more
            with self._lock:
                self._queue.popleft()
                self.queued_bytes -= pending.nbytes
            self.health.succeeded()
            self._oracle.advance_durable(pending.rows[-1][1])
            self.on_uploaded()
            if self.on_durable is not None:
                self.on_durable(pending.wal_id, pending.rows)
            self._stats["wal_buffer_flushes"] += 1
            self._stats["wal_bytes"] += size
        return True

    def _upload_failed(self, exc: BaseException) -> NoReturn:
        """An upload raised: fail the database and raise.

        The rows left the buffer: whatever stopped the upload (a fence, a permanent store
        error, an interrupt), the database must not go on acknowledging writes after them.
        """
        reason = exc.reason if isinstance(exc, ClosedError) else CloseReason.FAILED
        self._status.fail(reason, exc)
        if isinstance(exc, ClosedError) or not isinstance(exc, Exception):
            raise exc
        raise self._status.closed_error("database failed") from exc

    def _builder(self) -> SstBuilder:
        tables = self._tables
        return SstBuilder(
            wal=True,
            block_size=self.settings.wal_block_size,
            compression=tables.codec,
            transformer=tables.transformer,
        )

    def _encode(self, pending: PendingWal) -> bytes:
        """The WAL SST bytes of ``pending``; a buffer that cannot be encoded fails the database.

        Never skip a buffer: its rows were acknowledged (and are visible), and a later write
        reported durable on top of the gap would be a lie.
        """
        rows = pending.rows
        try:
            data = self._builder()
            data.add_rows(rows)
            return data.finish()
        except Exception as exc:
            error = InternalError(
                "the WAL buffer cannot be encoded; the database stops so that no later write "
                "is acknowledged on top of the lost rows",
                wal_id=pending.wal_id,
                rows=len(rows),
                first_seq=rows[0][1],
                last_seq=rows[-1][1],
                error=f"{type(exc).__name__}: {exc}",
            )
            error.__cause__ = exc
            log.error("%s", error.message)
            self._status.fail(CloseReason.FAILED, error)
            raise self._status.closed_error("database failed") from error

    def _timed_upload(
        self, pending: PendingWal, upload: Callable[[PendingWal], int | None]
    ) -> int | None:
        """``upload(pending)`` (:meth:`_upload` or :meth:`_stream`) in a ``shale.wal.flush``
        span, its latency recorded when it stored the SST; the bytes stored or ``None``."""
        t0 = time.perf_counter_ns()
        with tracing.span(
            "shale.wal.flush", **{"shale.wal_id": pending.wal_id, "shale.bytes": pending.nbytes}
        ):
            size = upload(pending)
        if size is not None and self.metrics is not None:
            self.metrics.wal_flush.record_ns(time.perf_counter_ns() - t0)
        return size

    def _stream(self, pending: PendingWal) -> int | None:
        """Encode and store ``pending`` in one pass into a store that streams (the local
        store): finished blocks are written (GIL released) while the next rows are encoded,
        so a large WAL SST is never held whole nor joined into one buffer, and is published
        with create-if-absent like :meth:`_upload`'s put. The bytes stored, or ``None`` when
        it could not (nothing published, or -- a failed publish -- perhaps published: then
        ``pending.attempts`` says so, and :meth:`_upload`'s put of the same bytes compares).

        :raises ClosedError: the WAL id holds another writer's object (this writer is fenced).
        """
        key = ids.wal_path(self._tables.root, pending.wal_id)
        try:
            writer = self._tables.wal_store.open_writer(key, sync_every=STREAM_SYNC_BYTES)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("cannot stream WAL SST %s (%s); writing it whole", key, exc)
            return None
        size = 0
        try:
            builder = self._builder()
            rows = iter(pending.rows)
            while builder.add_until(rows, STREAM_ROWS, 1 << 62) == STREAM_ROWS:
                parts = builder.take_parts()
                if parts:
                    writer.write_parts(parts)
                    size += sum(map(len, parts))
            parts = builder.finish_parts()
            writer.write_parts(parts)
            size += sum(map(len, parts))
            del parts
        except Exception as exc:
            writer.abort()  # nothing published: the whole-SST path encodes and puts it
            log.warning("streaming WAL SST %s failed (%s); writing it whole", key, exc)
            return None
        except BaseException:
            writer.abort()
            raise
        pending.attempts += 1
        try:
            writer.commit_if_absent()
        except ObjectAlreadyExists:
            raise ClosedError(
                "a newer writer took the next WAL id: this writer is fenced",
                reason=CloseReason.FENCED,
                wal_id=pending.wal_id,
            ) from None
        except Exception as exc:
            self._upload_retry(0, exc, 0.0)
            log.warning("publishing streamed WAL SST %s failed (%s); putting it whole", key, exc)
            return None
        return size

    def _upload(self, pending: PendingWal) -> int | None:
        """Store one WAL SST with create-if-absent, retrying transient failures.

        The bytes stored; ``None`` only when it gave up because the database is stopping (see
        :meth:`DbStatus.retrying`): the caller must then not count those rows as durable.

        :raises ClosedError: the WAL id holds another writer's object (this writer is fenced).
        """
        store = self._tables.wal_store
        key = ids.wal_path(self._tables.root, pending.wal_id)
        payload = pending.payload
        assert payload is not None
        policy, stop = self._status.retrying()
        # "did my put land?": after any failed attempt (this call's or an earlier one's) an
        # existing object is compared with ours. WAL contents are unique (seqs, timestamps)
        # and a fence object is empty, so equal bytes prove it is ours; different bytes, or a
        # collision on the very first attempt, mean a newer writer took the id.
        wal_store = RetryingStore(store, policy, stop=stop, on_retry=self._upload_retry)
        maybe_landed = pending.attempts > 0
        pending.attempts += 1
        try:
            wal_store.put_if_absent(key, payload, maybe_landed=maybe_landed)
        except ObjectAlreadyExists:
            raise ClosedError(
                "a newer writer took the next WAL id: this writer is fenced",
                reason=CloseReason.FENCED,
                wal_id=pending.wal_id,
            ) from None
        except TransientStoreError as exc:
            self._upload_retry(0, exc, 0.0)
            return None  # stopping (or close()'s attempts are spent): the WAL stays queued
        return len(payload)

    def _upload_retry(self, _retry: int, error: BaseException, _delay: float) -> None:
        """A WAL upload attempt failed: report it to the durability waiters."""
        self.health.failed(error)
        self._wake_waiters()
