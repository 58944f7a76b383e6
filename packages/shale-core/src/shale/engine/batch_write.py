"""The write path (SlateDB's ``batch_write``): a batch becomes rows with one seq and one
``create_ts``, is committed to the memtable and the WAL buffer, and waits for durability.

Invariants:

- Everything that can refuse a write (a closed database, a merge operand without an operator
  or rejected by it, a key outside every segment, ops of one key with different TTLs) refuses
  it before its seq is assigned: a refused batch leaves no trace and no gap in the seqs.
- The commit holds the write lock (:attr:`DbState.lock`): seq assigned, rows in the memtable,
  seq committed, rows in the WAL buffer -- one batch at a time, in seq order.
- A transaction's conflict check (:meth:`TransactionManager.check`) runs under the write lock
  before its seq is assigned, and every commit's write set is recorded for the live
  transactions before the lock is released: a check and its commit are one step for every
  other writer.
- Backpressure blocks a writer (before the commit) while the WAL buffer (with the WAL SSTs
  not stored yet) plus the frozen memtables exceed ``max_unflushed_bytes``; it waits on
  :attr:`DbState.cond`.

The commit itself is :mod:`shale.engine.commit` (a compiled twin and its pure-Python
reference); this module wires it and owns its slow paths (segments, backpressure).
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shale.batch import Ttl
from shale.clock import MonotonicClock
from shale.engine.batch_rules import check_operand, key_detail
from shale.engine.commit import Committer, WriteHandle
from shale.engine.db_state import DbState
from shale.engine.db_status import WAIT_RECHECK_S, DbStatus
from shale.engine.oracle import DbOracle
from shale.engine.transaction_manager import TransactionManager
from shale.engine.wal_buffer import WalBuffer
from shale.errors import InvalidError, UnavailableError
from shale.meta import segments
from shale.settings import Settings

__all__ = ["BatchWriter", "WriteHandle", "check_operand", "key_detail"]

log = logging.getLogger(__name__)

#: How often a blocked writer re-checks backpressure and logs (SlateDB: 30 s).
BACKPRESSURE_RECHECK_S = 30.0

#: One key's ops in a batch: ``(kind, value, ttl)``.
Items = list[tuple[bytes, list[tuple[int, bytes, Ttl | None]]]]


class BatchWriter:
    """Commits write batches: :attr:`write` and :attr:`write_one` are its :class:`Committer`'s
    (compiled when built), which calls back here for segments and backpressure."""

    def __init__(
        self,
        settings: Settings,
        state: DbState,
        oracle: DbOracle,
        status: DbStatus,
        wal: WalBuffer | None,
        stats: collections.Counter[str],
        *,
        clock: MonotonicClock,
        merge_operator: Any,
        prefix_extractor: segments.PrefixExtractor | None,
        segment_prefixes: list[bytes],
        wait_durable: Callable[[int, float | None], None],
        wake_flusher: Callable[[], None],
        blocked_cause: Callable[[bool | None], str],
        txns: TransactionManager | None = None,
    ) -> None:
        self.settings = settings
        self._state = state
        self._status = status
        self._wal = wal
        self._stats = stats
        self._extractor = prefix_extractor
        self._segments_lock = threading.Lock()
        self._segment_prefixes = segment_prefixes  # sorted prefixes accepted so far
        self._wake_flusher = wake_flusher
        self._blocked_cause = blocked_cause
        self.txns = txns if txns is not None else TransactionManager()
        self.committer = Committer(
            state,
            oracle,
            status,
            wal,
            clock,
            self.txns,
            default_ttl=settings.default_ttl,
            max_unflushed_bytes=settings.max_unflushed_bytes,
            l0_sst_size_bytes=settings.l0_sst_size_bytes,
            merge_operator=merge_operator,
            check_segments=None if prefix_extractor is None else self._check_segments,
            backpressure=self._backpressure,
            wait_durable=wait_durable,
        )
        #: ``write(items, durable, txn=None)``: commit one batch (keys and values checked by
        #: the caller, keys sorted); wait for it if ``durable``. ``txn``: the batch is that
        #: transaction's commit (its conflict check runs first, under the write lock).
        #: :raises TransactionError: ``txn`` conflicts; nothing is written.
        self.write: Callable[..., WriteHandle] = self.committer.write
        #: ``write_batch(batch, durable, seqnum=0)``: :attr:`write` of a :class:`~shale.
        #: WriteBatch` (``batch.items()``; a compiled batch is read without building them).
        self.write_batch: Callable[..., WriteHandle] = self.committer.write_batch
        #: ``write_one(key, kind, value, ttl, durable, seqnum=0)``: :attr:`write` of one op
        #: (``put``, ``delete``, ``merge``), its key, value, ttl and seqnum checked here.
        self.write_one: Callable[..., WriteHandle] = self.committer.write_one

    @property
    def on_commit(self) -> Callable[[list[tuple]], None] | None:  # type: ignore[type-arg]
        """``on_commit(rows)``: told each committed batch's rows, under the write lock, in
        commit order (``db.watch``'s hub: it only queues them, never runs user code). ``None``
        when nobody watches: then the commit pays one attribute check."""
        return self.committer.on_commit

    @on_commit.setter
    def on_commit(self, hook: Callable[[list[tuple]], None] | None) -> None:  # type: ignore[type-arg]
        self.committer.on_commit = hook

    def counters(self) -> dict[str, int]:
        """``write_batch_count`` and ``write_ops`` (counted by the commit, under the lock)."""
        c = self.committer
        return {"write_batch_count": c.batch_count, "write_ops": c.op_count}

    def _check_segments(self, items: Items) -> None:
        """Route every key of a write to its segment before anything is written.

        :raises InvalidError: a key without a segment prefix, or a prefix that would nest with
            one already in use (RFC-0024's route-consistency check).
        """
        ext = self._extractor
        assert ext is not None
        known = self._segment_prefixes
        new = []
        for key, _ops in items:  # every key first: a batch is refused as a whole
            prefix = segments.segment_prefix(ext, key)
            i = segments.owning_prefix(known, key)
            if i is None or known[i] != prefix:
                new.append(prefix)
        for prefix in new:
            with self._segments_lock:
                known = self._segment_prefixes
                i = bisect.bisect_left(known, prefix)
                if i < len(known) and known[i] == prefix:
                    continue
                for other in known[max(0, i - 1) : i + 1]:
                    if prefix.startswith(other) or other.startswith(prefix):
                        raise InvalidError(
                            "segment prefix would nest with a segment prefix in use",
                            prefix=prefix,
                            conflict=other,
                            extractor=ext.name,
                        )
                self._segment_prefixes = [*known[:i], prefix, *known[i:]]

    def _unflushed_bytes(self) -> int:
        wal = self._wal
        return (wal.unflushed_bytes if wal else 0) + self._state.imm_bytes

    def _backpressure(self) -> None:
        limit = self.settings.max_unflushed_bytes
        wal = self._wal
        cond = self._state.cond
        with cond:
            start = warned = 0.0
            while not self._status.closed and self._unflushed_bytes() > limit:
                now = time.monotonic()
                if not start:
                    start = warned = now
                    self._stats["backpressure_count"] += 1
                    if wal is not None:
                        wal.wakeup.set()
                    self._wake_flusher()
                if wal is not None and wal.health.error is not None:
                    raise UnavailableError(
                        "writes are blocked: unflushed data is over "
                        "max_unflushed_bytes and the object store is failing",
                        error=str(wal.health.error),
                    )
                if now - warned >= BACKPRESSURE_RECHECK_S:
                    warned = now
                    log.warning(
                        "writes blocked %.0f s by backpressure (unflushed bytes over %d): %s",
                        now - start,
                        limit,
                        self._blocked_cause(None),
                    )
                cond.wait(WAIT_RECHECK_S)
