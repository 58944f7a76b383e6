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
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shale.batch import Ttl, expire_after
from shale.clock import MonotonicClock
from shale.engine import components
from shale.engine.db_state import DbState
from shale.engine.db_status import WAIT_RECHECK_S, DbStatus
from shale.engine.oracle import DbOracle
from shale.engine.transaction_manager import TransactionManager, TxnConflictSet
from shale.engine.wal_buffer import WalBuffer
from shale.errors import InvalidError, UnavailableError
from shale.merge_operators import merge_all, validate_operand
from shale.meta import segments
from shale.row import MERGE, TOMBSTONE, VALUE
from shale.settings import Settings

log = logging.getLogger(__name__)

#: How often a blocked writer re-checks backpressure and logs (SlateDB: 30 s).
BACKPRESSURE_RECHECK_S = 30.0

#: One key's ops in a batch: ``(kind, value, ttl)``.
Items = list[tuple[bytes, list[tuple[int, bytes, Ttl | None]]]]


class WriteHandle:
    """The result of a write: its ``seq``, its ``create_ts``, and a way to wait for durability."""

    __slots__ = ("_wait", "create_ts", "seq")

    def __init__(self, wait: Callable[[int, float | None], None], seq: int, create_ts: int) -> None:
        self._wait = wait
        self.seq = seq
        self.create_ts = create_ts

    def wait_durable(self, timeout: float | None = None) -> None:
        """Block until this write is durable.

        :raises UnavailableError: the object store failed the upload (the write stays queued
            and is retried) or ``timeout`` elapsed; the message names the cause (e.g. L0 full,
            with the WAL off).
        :raises ClosedError: the database closed or was fenced first.
        :raises InvalidError: ``timeout`` is not ``None`` or a finite number ``>= 0``.
        """
        self._wait(self.seq, timeout)

    def __repr__(self) -> str:
        return f"WriteHandle(seq={self.seq}, create_ts={self.create_ts})"


def key_detail(key: bytes) -> bytes:
    """``key`` shortened for an error's detail."""
    return key if len(key) <= 64 else key[:64] + b"..."


def _expire_ts(kind: int, ttl: Ttl | None, now: int, default_ttl: int | None) -> int | None:
    """The ``expire_ts`` of one op written at ``now`` (tombstones carry none)."""
    if kind == TOMBSTONE:
        return None
    if ttl is None:
        return None if default_ttl is None else expire_after(now, default_ttl)
    return ttl.expire_ts(now)


def check_operand(key: bytes, operand: bytes, op: Any) -> None:
    """Reject a merge operand before anything is written (SlateDB writes it and fails later).

    :raises InvalidError: no merge operator is configured, or the operator's optional
        ``validate`` rejects the operand.
    """
    if op is None:
        raise InvalidError(
            "merge operator missing: merge() needs a database opened with a merge operator "
            "(settings.merge_operator, Db.open(merge_operator=...) or --merge-operator)",
            key=key_detail(key),
        )
    validate_operand(op, key, operand)


def _combine(
    key: bytes, ops: list[tuple[int, bytes, int | None]], op: Any
) -> list[tuple[int, bytes, int | None]]:
    """Pre-combine one key's ops in a batch into one row (they share one seq).

    Merges on top of a put become a value; merges on top of a delete a value of their own;
    merges alone one merge operand. The row reads exactly as the ops written one by one only
    when the rows that combine (the put's value and every operand) share one ``expire_ts``,
    so any other batch is rejected, as SlateDB 0.17 does ("only one merge TTL per-key
    allowed in a batch"). A delete carries no TTL and takes no part in the comparison.

    :raises InvalidError: different ``expire_ts`` on one key, or the operator failed.
    """
    if len(ops) == 1:
        return ops
    if op is None:  # unreachable: write() rejects merges without an operator
        raise InvalidError("merge operator missing", key=key_detail(key))
    timed = ops if ops[0][0] != TOMBSTONE else ops[1:]
    expires = {o[2] for o in timed}
    if len(expires) > 1:
        raise InvalidError(
            "the ops of one key in a write batch must share one TTL (they are combined "
            "into one row); write them in separate batches",
            key=key_detail(key),
            expire_ts=sorted(expires, key=lambda e: -1 if e is None else e),
        )
    expire = ops[-1][2]
    if ops[0][0] in (VALUE, TOMBSTONE):
        # merges on top of a put or a delete in the same batch resolve to a plain value
        base: bytes | None = ops[0][1] if ops[0][0] == VALUE else None
        operands = [o[1] for o in ops[1:]]
        kind = VALUE
    else:
        base = None
        operands = [o[1] for o in ops]
        kind = MERGE
    return [(kind, merge_all(op, key, base, operands, error=InvalidError), expire)]


class BatchWriter:
    """Commits write batches."""

    #: ``on_commit(rows)``: told each committed batch's rows, under the write lock, in commit
    #: order (``db.watch``'s hub: it only queues them, never runs user code). ``None`` when
    #: nobody watches: then the commit pays one attribute check.
    on_commit: Callable[[list[tuple]], None] | None = None  # type: ignore[type-arg]

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
        self._oracle = oracle
        self._status = status
        self._wal = wal
        self._stats = stats
        self._clock = clock
        self._op = merge_operator
        self._extractor = prefix_extractor
        self._segments_lock = threading.Lock()
        self._segment_prefixes = segment_prefixes  # sorted prefixes accepted so far
        self._wait_durable = wait_durable
        self._wake_flusher = wake_flusher
        self._blocked_cause = blocked_cause
        self.txns = txns if txns is not None else TransactionManager()

    def write(self, items: Items, durable: bool, txn: TxnConflictSet | None = None) -> WriteHandle:
        """Commit one batch (its items checked by the caller); wait for it if ``durable``.

        :param txn: the batch is that transaction's commit: its conflict check runs first,
            under the write lock, and the transaction ends (committed) with the batch.
        :raises TransactionError: ``txn`` conflicts; nothing is written.
        """
        if type(durable) is not bool:  # hot path: the call only when it is wrong
            components.check_flag("durable", durable)
        status = self._status
        if status.closed:
            status.check_open()
        op = self._op
        for key, ops in items:
            for kind, value, _ttl in ops:
                if kind == MERGE:
                    check_operand(key, value, op)
        if self._extractor is not None:
            self._check_segments(items)
        state = self._state
        wal = self._wal
        settings = self.settings
        if (wal.unflushed_bytes if wal else 0) + state.imm_bytes > settings.max_unflushed_bytes:
            self._backpressure()
        default_ttl = settings.default_ttl
        oracle = self._oracle
        txns = self.txns
        with state.lock:
            status.check_open()
            if txn is not None:
                txns.check(txn)
            seq = oracle.last_seq + 1
            now = self._clock.now_ms()
            if len(items) == 1 and len(items[0][1]) == 1:  # put / delete / merge: one row
                key, ((kind, value, ttl),) = items[0]
                if ttl is None and (default_ttl is None or kind == TOMBSTONE):
                    expire = None
                else:
                    expire = _expire_ts(kind, ttl, now, default_ttl)
                rows = [(key, seq, kind, value, expire, now)]
            else:
                rows = []
                for key, ops in items:
                    timed = [
                        (kind, value, _expire_ts(kind, ttl, now, default_ttl))
                        for kind, value, ttl in ops
                    ]
                    if len(timed) > 1:
                        timed = _combine(key, timed, op)
                    for kind, value, expire in timed:
                        rows.append((key, seq, kind, value, expire, now))
            oracle.last_seq = seq
            mt = state.memtable
            if len(rows) == 1:
                mt.put(rows[0])
            else:
                mt.put_rows(rows)
            oracle.committed_seq = seq
            if txns.has_live:
                if txn is not None:
                    txns.record(txn.write_keys, seq)
                    txns.end(txn.id)
                else:
                    txns.record([it[0] for it in items], seq)
            if wal is not None:
                wal.append(rows, mt)
            elif mt.size >= settings.l0_sst_size_bytes:
                state.freeze(None)
            if self.on_commit is not None:
                self.on_commit(rows)
        stats = self._stats
        stats["write_batch_count"] += 1
        stats["write_ops"] += len(rows)
        handle = WriteHandle(self._wait_durable, seq, now)
        if durable:
            self._wait_durable(seq, None)
        return handle

    def write_one(
        self, key: bytes, kind: int, value: bytes, ttl: Ttl | None, durable: bool
    ) -> WriteHandle:
        """:meth:`write` of one op (``put``, ``delete``, ``merge``; key and value checked by
        the caller): the same steps, without building a batch."""
        if type(durable) is not bool:
            components.check_flag("durable", durable)
        status = self._status
        if status.closed:
            status.check_open()
        if kind == MERGE:
            check_operand(key, value, self._op)
        if self._extractor is not None:
            self._check_segments([(key, [(kind, value, ttl)])])
        state = self._state
        wal = self._wal
        settings = self.settings
        if (wal.unflushed_bytes if wal else 0) + state.imm_bytes > settings.max_unflushed_bytes:
            self._backpressure()
        default_ttl = settings.default_ttl
        oracle = self._oracle
        with state.lock:
            status.check_open()
            seq = oracle.last_seq + 1
            now = self._clock.now_ms()
            if ttl is None and (default_ttl is None or kind == TOMBSTONE):
                expire = None
            else:
                expire = _expire_ts(kind, ttl, now, default_ttl)
            row = (key, seq, kind, value, expire, now)
            oracle.last_seq = seq
            mt = state.memtable
            mt.put(row)
            oracle.committed_seq = seq
            txns = self.txns
            if txns.has_live:
                txns.record([key], seq)
            if wal is not None:
                wal.append_one(row, mt)
            elif mt.size >= settings.l0_sst_size_bytes:
                state.freeze(None)
            if self.on_commit is not None:
                self.on_commit([row])
        stats = self._stats
        stats["write_batch_count"] += 1
        stats["write_ops"] += 1
        handle = WriteHandle(self._wait_durable, seq, now)
        if durable:
            self._wait_durable(seq, None)
        return handle

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
