"""The writer's engine (SlateDB's ``DbInner``): the components of one open database, wired
together, and what spans several of them -- waiting for durability, flush, close, metrics.

Wiring (see the package docstring for the lock order): the WAL writer and the memtable
flusher talk both ways through callbacks set here (``wal.on_uploaded`` wakes the flusher,
``flusher.wake_wal`` / ``flusher.last_wal_id`` reach the WAL), the manifest poller wakes the
flusher through ``keeper.on_polled``, a freeze through ``state.on_freeze``, and a failure or
close wakes everything through ``status.wakers``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Any

from shale.cache import BlockCache
from shale.clock import MonotonicClock
from shale.engine import components
from shale.engine.batch_write import BatchWriter
from shale.engine.components import CloseFlush
from shale.engine.db_state import DbState
from shale.engine.db_status import CLOSE_JOIN_TIMEOUT_S, DbStatus, deadline
from shale.engine.manifest_keeper import ManifestKeeper
from shale.engine.memtable_flusher import MemtableFlusher, l0_full
from shale.engine.oracle import DbOracle
from shale.engine.reader import Reader
from shale.engine.snapshot_manager import SnapshotManager
from shale.engine.table_store import TableStore
from shale.engine.wal_buffer import WalBuffer
from shale.errors import (
    ClosedError,
    CloseReason,
    DataError,
    InternalError,
    InvalidError,
    ShaleError,
    UnavailableError,
)
from shale.fbs.manifest import Manifest
from shale.meta import segments
from shale.objstore.cached import CachedObjectStore
from shale.settings import Settings
from shale.telemetry import EngineMetrics

log = logging.getLogger(__name__)


def metrics(
    stats: collections.Counter[str],
    state: DbState,
    oracle: DbOracle,
    tables: TableStore,
    *,
    wal_buffer_bytes: int = 0,
    l0_full_since: float | None = None,
    counters: dict[str, int] | None = None,
) -> dict[str, int]:
    """Counters (names close to SlateDB's) and gauges of an engine, as a plain dict.

    :param counters: more counters (the commit's), added to ``stats`` when not zero.
    """
    out = dict(stats)
    for name, n in (counters or {}).items():
        if n:
            out[name] = out.get(name, 0) + n
    with state.lock:
        out["last_seq"] = oracle.committed_seq
        out["durable_seq"] = oracle.durable_seq
        out["immutable_memtables"] = len(state.imms)
        out["memtable_bytes"] = state.memtable.size
        out["wal_buffer_estimated_bytes"] = wal_buffer_bytes
        m = state.manifest
        trees = segments.trees(m)
        out["l0_sst_count"] = sum(len(t.l0) for t in trees)
        out["sorted_run_count"] = sum(len(t.compacted) for t in trees)
        out["segment_count"] = len(m.segments)
        out["manifest_id"] = state.manifest_id
    out["l0_flush_blocked_ms"] = (
        0 if l0_full_since is None else int((time.monotonic() - l0_full_since) * 1000)
    )
    cache = tables.block_cache.stats()
    out["cache_hits"] = cache.get("hits", 0)
    out["cache_misses"] = cache.get("misses", 0)
    meta = tables.meta_cache_stats()
    out["meta_cache_hits"] = meta.get("hits", 0)
    out["meta_cache_misses"] = meta.get("misses", 0)
    out["meta_cache_bytes"] = meta.get("size_bytes", 0)
    out["meta_cache_entries"] = meta.get("entries", 0)
    out["meta_cache_evictions"] = meta.get("evictions", 0)
    out["cache_bytes"] = cache.get("size_bytes", 0)
    out["cache_entries"] = cache.get("entries", 0)
    out["cache_evictions"] = cache.get("evictions", 0)
    if isinstance(tables.store, CachedObjectStore):  # the object-store disk cache
        out.update(tables.store.cache_metrics())
    return out


class DbInner:
    """The components of one open writer."""

    def __init__(
        self,
        *,
        url: str,
        settings: Settings,
        clock: MonotonicClock,
        tables: TableStore,
        state: DbState,
        oracle: DbOracle,
        status: DbStatus,
        keeper: ManifestKeeper,
        stats: collections.Counter[str],
        merge_operator: Any,
        prefix_extractor: segments.PrefixExtractor | None,
        next_wal_id: int,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.url = url
        #: request and flush latencies (``None``: metrics off)
        self.engine_metrics = metrics
        self.settings = settings
        self.clock = clock
        self.tables = tables
        self.state = state
        self.oracle = oracle
        self.status = status
        self.keeper = keeper
        self.stats = stats
        self.merge_operator = merge_operator
        self.prefix_extractor = prefix_extractor
        self.snapshots = SnapshotManager(state.manifest.recent_snapshot_min_seq)
        self.wal: WalBuffer | None = None
        if settings.wal_enabled:
            self.wal = WalBuffer(
                tables,
                state,
                oracle,
                status,
                stats,
                next_wal_id=next_wal_id,
                wake_waiters=self.wake_waiters,
            )
        self.flusher = MemtableFlusher(
            tables,
            state,
            oracle,
            self.snapshots,
            keeper,
            status,
            stats,
            clock=clock,
            prefix_extractor=prefix_extractor,
            wake_waiters=self.wake_waiters,
        )
        flusher = self.flusher
        flusher.metrics = metrics
        if self.wal is not None:
            self.wal.metrics = metrics
            flusher.last_wal_id = self.wal.last_wal_id
            flusher.wake_wal = self.wal.wakeup.set
            self.wal.on_uploaded = self._wal_uploaded
        else:
            last_seen = next_wal_id - 1
            flusher.last_wal_id = lambda: last_seen
        state.on_freeze = flusher.wake
        keeper.on_polled = self._work_waiting
        status.wakers = [oracle.notify, state.notify, flusher.wake]
        if self.wal is not None:
            status.wakers.append(self.wal.wakeup.set)
        self.writer = BatchWriter(
            settings,
            state,
            oracle,
            status,
            self.wal,
            stats,
            clock=clock,
            merge_operator=merge_operator,
            prefix_extractor=prefix_extractor,
            segment_prefixes=[seg.prefix for seg in state.manifest.segments],
            wait_durable=self.wait_durable,
            wake_flusher=flusher.wake,
            blocked_cause=self.blocked_cause,
        )
        self.reader = Reader(
            state, tables, settings, stats, clock=clock, merge_operator=merge_operator
        )

    @property
    def block_cache(self) -> BlockCache:
        return self.tables.block_cache

    def start(self) -> None:
        """Start the background threads: WAL flusher, L0 flusher, manifest poller."""
        s = self.settings
        status = self.status
        if self.wal is not None:
            status.spawn("shale-wal-flusher", self.wal.step, (self.wal.wakeup, s.flush_interval))
        status.spawn("shale-l0-flusher", self.flusher.step, (self.flusher.wakeup, 0.0))
        status.spawn(
            "shale-manifest-poller",
            self.keeper.poll_step,
            (status.stop, s.manifest_poll_interval),
        )

    # -- callbacks -----------------------------------------------------------------------

    def begin_transaction(self, txn_id: str) -> int:
        """Register transaction ``txn_id``; the seq its snapshot reads at.

        Under the write lock (then the transaction manager's leaf lock): every commit above
        the returned seq is recorded for it (see :mod:`shale.engine.transaction_manager`).
        """
        self.status.check_open()
        with self.state.lock:
            seq = self.oracle.committed_seq
            self.writer.txns.begin(txn_id, seq)
        return seq

    def wake_waiters(self) -> None:
        """Wake every waiter (durability, flush, backpressure): something they wait on moved."""
        self.oracle.notify()
        self.state.notify()

    def _wal_uploaded(self) -> None:
        self.state.notify()
        self._work_waiting()

    def _work_waiting(self) -> None:
        if self.state.imms:
            self.flusher.wake()

    def blocked_cause(self, wal: bool | None = None) -> str:
        """Why flushes are not making progress, for error messages and warnings: of WAL
        uploads (``wal=True``), of L0 flushes (``False``), or of either (``None``).

        Reads without locks (it runs while waiters hold theirs)."""
        state = self.state
        full = l0_full(state.manifest, self.settings) if wal is not True and state.imms else None
        if full is not None:
            since = self.flusher.l0_full_since
            waited = 0.0 if since is None else time.monotonic() - since
            return (
                f"L0 is full ({full[0]}, {full[1]}) and no "
                f"compaction has made room for {waited:.0f} s, so frozen memtables cannot be "
                "flushed -- is a compactor running?"
            )
        wal_error = self.wal.health.error if self.wal is not None else None
        if wal is not False and wal_error is not None:
            return f"the object store is failing WAL uploads: {wal_error}"
        l0_error = self.flusher.health.error
        if wal is not True and l0_error is not None:
            return f"the object store is failing L0 uploads: {l0_error}"
        return "the background flush has not finished yet"

    # -- durability and flush ------------------------------------------------------------

    def wait_durable(self, seq: int, timeout: float | None) -> None:
        """Block until ``seq`` is durable (see :meth:`WriteHandle.wait_durable`)."""
        until = deadline(timeout)
        wal = self.wal
        if wal is not None:
            wal.wakeup.set()
        else:
            # durable means "in L0": freeze now (concurrent writers share the flush), unlike
            # SlateDB 0.12.1, where such a write waits for some other flush (its issue #928)
            state = self.state
            with state.lock:
                mt = state.memtable
                if mt.min_seq is not None and mt.min_seq <= seq:
                    state.freeze(None)
            self.flusher.wake()
        oracle = self.oracle
        self.status.wait(
            oracle.cond,
            lambda: oracle.durable_seq >= seq,
            until,
            "the write was durable",
            health=wal.health if wal is not None else self.flusher.health,
            kind="WAL" if wal is not None else "L0",
            cause=lambda: self.blocked_cause(wal is not None),
            seq=seq,
        )

    def flush(self, memtable: bool, timeout: float | None) -> None:
        """Make every write so far durable (see :meth:`shale.Db.flush`)."""
        components.check_flag("memtable", memtable)
        self.status.check_open()
        until = deadline(timeout)
        wal = self.wal
        state = self.state
        oracle = self.oracle
        ticket = 0
        with state.lock:
            target = oracle.committed_seq
            if wal is None:
                state.freeze(None)
            elif memtable:
                ticket = wal.request_freeze()
        if wal is not None:
            wal.wakeup.set()
            self.status.wait(
                state.cond,
                lambda: (
                    oracle.durable_seq >= target and (not memtable or wal.freeze_done >= ticket)
                ),
                until,
                "the WAL was flushed",
                health=wal.health,
                kind="WAL",
                cause=lambda: self.blocked_cause(True),
            )
        if memtable or wal is None:
            self.flusher.wake()

            def flushed() -> bool:
                imms = state.imms
                return not imms or imms[0].min_seq is None or imms[0].min_seq > target

            self.status.wait(
                state.cond,
                flushed,
                until,
                "the memtable was flushed to L0",
                health=self.flusher.health,
                kind="L0",
                cause=lambda: self.blocked_cause(False),
            )
        self.stats["flushes"] += 1

    # -- closing -------------------------------------------------------------------------

    def close(self, flush: CloseFlush = "wal") -> None:
        """Stop the background threads, flush what is left (``flush``: ``"wal"``,
        ``"memtable"`` or ``None``), report what could not be (see :meth:`shale.Db.close`)."""
        flush = components.check_close_flush(flush)
        status = self.status
        again, failed_before = status.begin_close()
        if again:
            if threading.current_thread() not in status.threads:
                status.close_done.wait()
            return
        error: ShaleError | None = None
        try:
            stuck = status.join_threads()
            if stuck:
                error = UnavailableError(
                    "close: background threads are stuck in an object-store call; nothing "
                    "more was flushed",
                    threads=stuck,
                    timeout=CLOSE_JOIN_TIMEOUT_S,
                )
            elif not failed_before and flush is not None:
                error = self._flush_on_close(flush == "memtable")
            elif not failed_before:
                self._drop_on_close()
        finally:
            status.finish_close(error)
            log.info(
                "closed shale database url=%s reason=%s metrics=%s",
                self.url,
                status.reason,
                self.metrics(),
            )
        if error is not None:
            raise error
        if failed_before and status.reason == CloseReason.FAILED:
            raise status.closed_error("database failed; writes not yet durable may be lost")

    def crash(self) -> None:
        """Stop the way a killed process would: nothing more is flushed or written, the
        background threads are joined, and ``close_reason`` is ``"failed"``."""
        self.status.fail(CloseReason.FAILED, InternalError("simulated crash"))
        self.status.join_threads()

    def _record_wal_tail(self, last_wal_id: int) -> None:
        """Record the newest WAL id in the manifest's ``wal_id_last_seen`` at close, so the
        manifest a clean close leaves names its WAL tail: a clone made from it (either
        package's copies the WAL up to that id) and every other reader of the manifest see the
        writes that live only in the WAL. One manifest write, only when the tail grew."""
        if last_wal_id <= self.state.manifest.wal_id_last_seen:
            return

        def mutate(m: Manifest, _next_id: int) -> Manifest | None:
            if m.wal_id_last_seen >= last_wal_id:
                return None
            return dataclasses.replace(m, wal_id_last_seen=last_wal_id)

        try:
            self.keeper.update(mutate)
        except ClosedError:
            raise
        except ShaleError as exc:  # the writes are durable in the WAL: only the hint is lost
            log.warning("could not record the WAL tail in the manifest at close: %s", exc)

    def _unflushed_rows(self) -> list[tuple]:  # type: ignore[type-arg]
        """The rows not durable yet: the WAL's pending rows, or with the WAL off every
        memtable's."""
        if self.wal is not None:
            return self.wal.pending_rows()
        with self.state.lock:
            mts = [*self.state.imms, self.state.memtable]
        return [r for mt in mts for r in mt.iter_rows()]

    def _drop_on_close(self) -> None:
        """``close(flush=None)``: nothing is flushed; say what is dropped."""
        rows = self._unflushed_rows()
        if rows:
            seqs = {r[1] for r in rows}
            log.warning(
                "close(flush=None): %d writes (seq %d..%d) that were not durable are dropped",
                len(seqs),
                min(seqs),
                max(seqs),
            )

    def _flush_on_close(self, memtable: bool) -> ShaleError | None:
        """close()'s flush, on the closing thread once the background threads have stopped:
        the WAL, then (``memtable``, or with the WAL off) every memtable to L0.

        Returns the error close() raises when writes are left unflushed (or, with
        ``memtable``, not flushed to L0), else ``None``.
        """
        status = self.status
        state = self.state
        wal = self.wal
        cause: BaseException | None = None
        status.final_flusher = threading.current_thread()
        try:
            if wal is not None:
                if memtable:
                    wal.request_freeze()  # the WAL flush freezes it, naming its last WAL id
                wal.flush()
                if wal.health.error is None:
                    self._record_wal_tail(wal.last_wal_id())
            else:
                state.freeze(None)
            if wal is None or (memtable and wal.health.error is None):
                while True:
                    imm = state.oldest_imm()
                    if imm is None or not self.flusher.flush_imm(imm):
                        break
        except ClosedError as exc:  # fenced while flushing
            status.fail(exc.reason, exc)
            cause = exc
        except ShaleError as exc:  # e.g. a permanent store error
            cause = exc
        finally:
            status.final_flusher = None
        rows = self._unflushed_rows()
        if cause is None:
            cause = (wal.health if wal is not None else self.flusher.health).error
        if not rows and wal is not None and memtable and state.oldest_imm() is not None:
            return self._memtable_not_flushed(cause or self.flusher.health.error)
        if not rows:
            return None
        seqs = {r[1] for r in rows}
        detail = {"writes": len(seqs), "first_seq": min(seqs), "last_seq": max(seqs)}
        what = (
            f"{len(seqs)} writes (seq {min(seqs)}..{max(seqs)}) were not flushed to the "
            f"{'WAL' if wal is not None else 'L0'} and are lost"
        )
        error: ShaleError
        if isinstance(cause, ClosedError):
            error = ClosedError(
                f"fenced by a newer writer while closing: {what}", reason=cause.reason, **detail
            )
        else:
            # the public kind of the cause: unavailable for a store outage or a full disk
            kind: type[ShaleError] = UnavailableError
            if cause is not None and not isinstance(cause, UnavailableError):
                kinds = (DataError, InvalidError, InternalError, ShaleError)
                kind = next((k for k in kinds if isinstance(cause, k)), UnavailableError)
            error = kind(f"close could not flush: {what}", error=str(cause), **detail)
        error.__cause__ = cause
        log.error("%s", error)
        return error

    def _memtable_not_flushed(self, cause: BaseException | None) -> ShaleError:
        """close(flush="memtable") could not write L0: nothing is lost (the WAL holds it)."""
        what = (
            "every write is durable in the WAL (nothing is lost) and is replayed by the next open"
        )
        error: ShaleError
        if isinstance(cause, ClosedError):
            error = ClosedError(
                f"fenced by a newer writer while flushing the memtable at close; {what}",
                reason=cause.reason,
            )
        else:
            error = UnavailableError(
                f"close could not flush the memtable to L0; {what}", error=str(cause)
            )
        error.__cause__ = cause
        log.error("%s", error)
        return error

    def metrics(self) -> dict[str, int]:
        return metrics(
            self.stats,
            self.state,
            self.oracle,
            self.tables,
            wal_buffer_bytes=self.wal.buffered_bytes if self.wal is not None else 0,
            l0_full_since=self.flusher.l0_full_since,
            counters=self.writer.counters(),
        )
