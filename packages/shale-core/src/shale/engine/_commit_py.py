"""The commit of a write, pure-Python twin (the reference; ``_commit_c.pyx`` is the compiled
one, same API and results). :mod:`shale.engine.commit` is the facade; :mod:`shale.engine.
batch_write` builds the :class:`Committer` and owns the slow paths it calls back (segments,
backpressure).

One call does what a write does, in this order (see :mod:`shale.engine.batch_write`):

1. checks that refuse a write before its seq is assigned: key and value (one op), ``durable``,
   a closed database, merge operands, segments; then backpressure (outside the write lock);
2. under the write lock: a transaction's conflict check, the seq (``last_seq + 1``), the clock,
   the rows (``expire_ts``, one key's ops combined) -- anything refused here leaves no trace,
   as a caller's ``seqnum`` not above ``last_seq`` --
   then ``last_seq``, the memtable insert, ``committed_seq``, the write set of the live
   transactions, the WAL buffer (or, with the WAL off, a freeze once the memtable is full), the
   ``on_commit`` hook and the counters;
3. a :class:`WriteHandle`, after waiting for durability if ``durable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shale.batch import Ttl, check_key, check_value, to_ttl
from shale.engine import components
from shale.engine.batch_rules import check_operand, check_seqnum, combine, expire_ts, user_seq
from shale.row import MAX_KEY_LEN, MAX_VALUE_LEN, MERGE, TOMBSTONE

__all__ = ["Committer", "WriteHandle"]

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


class Committer:
    """Commits writes into one database's memtable and WAL buffer (see the module docstring).

    :param check_segments: ``check_segments(items)`` routes a write's keys to segments
        (``None``: no segments).
    :param backpressure: blocks while unflushed bytes exceed ``max_unflushed_bytes``.
    :param wait_durable: ``wait_durable(seq, timeout)``, also the handles' wait.
    """

    def __init__(
        self,
        state: Any,
        oracle: Any,
        status: Any,
        wal: Any,
        clock: Any,
        txns: Any,
        *,
        default_ttl: int | None,
        max_unflushed_bytes: int,
        l0_sst_size_bytes: int,
        merge_operator: Any,
        check_segments: Callable[[Items], None] | None,
        backpressure: Callable[[], None],
        wait_durable: Callable[[int, float | None], None],
    ) -> None:
        self.state = state
        self.oracle = oracle
        self.status = status
        self.wal = wal
        self.clock = clock
        self.txns = txns
        self.default_ttl = default_ttl
        self.max_unflushed_bytes = max_unflushed_bytes
        self.l0_sst_size_bytes = l0_sst_size_bytes
        self.merge_operator = merge_operator
        self.check_segments = check_segments
        self.backpressure = backpressure
        self.wait_durable = wait_durable
        #: ``on_commit(rows)``, under the write lock, in commit order (``None``: nobody)
        self.on_commit: Callable[[list[tuple]], None] | None = None  # type: ignore[type-arg]
        #: batches and rows committed (counted under the write lock)
        self.batch_count = 0
        self.op_count = 0

    def _unflushed(self) -> int:
        wal = self.wal
        n: int = (
            0 if wal is None else wal.buffered_bytes + wal.queued_bytes
        ) + self.state.imm_bytes
        return n

    def write_one(
        self, key: Any, kind: int, value: Any, ttl: Any, durable: Any, seqnum: Any = 0
    ) -> WriteHandle:
        """Commit one op (``put``, ``delete``, ``merge``): key, value and ``ttl`` (an int of
        milliseconds, a :class:`~shale.Ttl` or ``None``) are checked here. ``seqnum``: the
        write's seq, chosen by the caller (``0``: the next one)."""
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_LEN:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_LEN:
            value = check_value(value)
        if ttl is not None:
            ttl = to_ttl(ttl)
        if type(durable) is not bool:
            components.check_flag("durable", durable)
        if type(seqnum) is not int or seqnum:
            seqnum = check_seqnum(seqnum)
        status = self.status
        if status.closed:
            status.check_open()
        if kind == MERGE:
            check_operand(key, value, self.merge_operator)
        if self.check_segments is not None:
            self.check_segments([(key, [(kind, value, ttl)])])
        if self._unflushed() > self.max_unflushed_bytes:
            self.backpressure()
        state = self.state
        oracle = self.oracle
        default_ttl = self.default_ttl
        with state.lock:
            status.check_open()
            seq = user_seq(seqnum, oracle.last_seq) if seqnum else oracle.last_seq + 1
            now = self.clock.now_ms()
            if ttl is None and (default_ttl is None or kind == TOMBSTONE):
                expire = None
            else:
                expire = expire_ts(kind, ttl, now, default_ttl)
            row = (key, seq, kind, value, expire, now)
            oracle.last_seq = seq
            mt = state.memtable
            mt.put(row)
            oracle.committed_seq = seq
            if self.txns.has_live:
                self.txns.record([key], seq)
            self._buffer([row], mt)
            if self.on_commit is not None:
                self.on_commit([row])
            self.batch_count += 1
            self.op_count += 1
        if durable:
            self.wait_durable(seq, None)
        return WriteHandle(self.wait_durable, seq, now)

    def write_batch(self, batch: Any, durable: Any, seqnum: Any = 0) -> WriteHandle:
        """Commit a :class:`~shale.WriteBatch`: :meth:`write` of its ``items()`` (the compiled
        twin reads a compiled batch's ops as it holds them)."""
        return self.write(batch.items(), durable, None, seqnum)

    def write(self, items: Items, durable: Any, txn: Any = None, seqnum: Any = 0) -> WriteHandle:
        """Commit one batch (its keys and values checked by the caller, keys sorted).

        :param txn: the batch is that transaction's commit: its conflict check runs first,
            under the write lock, and the transaction ends (committed) with the batch.
        :param seqnum: the batch's seq, chosen by the caller (``0``: the next one); it must be
            above every seq so far (checked before ``txn``'s conflicts, as SlateDB).
        :raises TransactionError: ``txn`` conflicts; nothing is written.
        :raises InvalidError: ``seqnum`` is not above the last seq; nothing is written.
        """
        if type(durable) is not bool:
            components.check_flag("durable", durable)
        if type(seqnum) is not int or seqnum:
            seqnum = check_seqnum(seqnum)
        status = self.status
        if status.closed:
            status.check_open()
        op = self.merge_operator
        for key, ops in items:
            for kind, value, _ttl in ops:
                if kind == MERGE:
                    check_operand(key, value, op)
        if self.check_segments is not None:
            self.check_segments(items)
        if self._unflushed() > self.max_unflushed_bytes:
            self.backpressure()
        state = self.state
        oracle = self.oracle
        txns = self.txns
        default_ttl = self.default_ttl
        with state.lock:
            status.check_open()
            seq = user_seq(seqnum, oracle.last_seq) if seqnum else oracle.last_seq + 1
            if txn is not None:
                txns.check(txn)
            now = self.clock.now_ms()
            rows = []
            for key, ops in items:
                timed = [
                    (kind, value, expire_ts(kind, ttl, now, default_ttl))
                    for kind, value, ttl in ops
                ]
                if len(timed) > 1:
                    timed = combine(key, timed, op)
                for kind, value, expire in timed:
                    rows.append((key, seq, kind, value, expire, now))
            oracle.last_seq = seq
            mt = state.memtable
            mt.put_rows(rows)
            oracle.committed_seq = seq
            if txns.has_live:
                if txn is not None:
                    txns.record(txn.write_keys, seq)
                    txns.end(txn.id)
                else:
                    txns.record([it[0] for it in items], seq)
            self._buffer(rows, mt)
            if self.on_commit is not None:
                self.on_commit(rows)
            self.batch_count += 1
            self.op_count += len(rows)
        if durable:
            self.wait_durable(seq, None)
        return WriteHandle(self.wait_durable, seq, now)

    def _buffer(self, rows: list[tuple], mt: Any) -> None:  # type: ignore[type-arg]
        """Rows into the WAL buffer; with the WAL off, freeze a full memtable."""
        wal = self.wal
        if wal is not None:
            wal.append(rows, mt)
        elif mt.size >= self.l0_sst_size_bytes:
            self.state.freeze(None)
