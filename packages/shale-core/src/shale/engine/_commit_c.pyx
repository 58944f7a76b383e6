# cython: language_level=3
"""The commit of a write, compiled twin of ``_commit_py.py`` (same API, same results).

One C call does what the pure twin does in several Python frames. The memtable is inserted into
through the C methods of the compiled ``MemtableBase`` (``_memtable_c.pxd``); the WAL buffer's
fields are read and written as attributes, the steps of :meth:`WalBuffer.append` inlined (keep
them in step; the twin test compares memtables and buffers). The WAL buffer's own lock is not
taken: its ``_rows`` and ``buffered_bytes`` change only under the write lock, which the commit
holds (the WAL flush swaps the buffer under it too); readers of the two fields take no lock.
"""

from cpython.list cimport PyList_Append

from shale._batch_c cimport WriteBatch as CWriteBatch
from shale.engine._memtable_c cimport MemtableBase

from time import time_ns

from shale.batch import check_key, check_value, to_ttl
from shale.clock import MonotonicClock, SystemClock
from shale.engine import components
from shale.engine.batch_rules import check_operand, check_seqnum, combine, expire_ts, user_seq
from shale.engine._memtable_py import ROW_OVERHEAD
from shale.row import MAX_KEY_LEN, MAX_VALUE_LEN, VALUE

__all__ = ["Committer", "WriteHandle"]

cdef enum:
    MERGE = 2
    TOMBSTONE = 1

cdef object _VALUE = VALUE
cdef Py_ssize_t _ROW_OVERHEAD = ROW_OVERHEAD
cdef Py_ssize_t _MAX_KEY_LEN = MAX_KEY_LEN
cdef object _MAX_VALUE_LEN = MAX_VALUE_LEN


cdef class WriteHandle:
    """The result of a write: its ``seq``, its ``create_ts``, and a way to wait for durability."""

    cdef object _wait
    cdef readonly object seq
    cdef readonly object create_ts

    def __init__(self, wait, seq, create_ts):
        self._wait = wait
        self.seq = seq
        self.create_ts = create_ts

    def wait_durable(self, timeout=None):
        """Block until this write is durable.

        :raises UnavailableError: the object store failed the upload (the write stays queued
            and is retried) or ``timeout`` elapsed; the message names the cause (e.g. L0 full,
            with the WAL off).
        :raises ClosedError: the database closed or was fenced first.
        :raises InvalidError: ``timeout`` is not ``None`` or a finite number ``>= 0``.
        """
        self._wait(self.seq, timeout)

    def __repr__(self):
        return f"WriteHandle(seq={self.seq}, create_ts={self.create_ts})"


cdef inline WriteHandle _handle(object wait, object seq, object now):
    cdef WriteHandle h = WriteHandle.__new__(WriteHandle)
    h._wait = wait
    h.seq = seq
    h.create_ts = now
    return h


cdef class Committer:
    """Commits writes into one database's memtable and WAL buffer (see ``_commit_py``)."""

    cdef readonly object state, oracle, status, wal, clock, txns
    cdef readonly object default_ttl, max_unflushed_bytes, l0_sst_size_bytes, merge_operator
    cdef readonly object check_segments, backpressure, wait_durable
    cdef public object on_commit
    cdef public Py_ssize_t batch_count, op_count
    cdef object _acquire, _release, _now, _live
    cdef bint _system
    cdef object _clock_acquire, _clock_release

    def __init__(self, state, oracle, status, wal, clock, txns, *, default_ttl,
                 max_unflushed_bytes, l0_sst_size_bytes, merge_operator, check_segments,
                 backpressure, wait_durable):
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
        self.on_commit = None
        self.batch_count = 0
        self.op_count = 0
        self._acquire = state.lock.acquire  # the write lock is never replaced
        self._release = state.lock.release
        self._now = clock.now_ms
        # MonotonicClock.now_ms's fast path for the wall clock, inlined in _now_ms
        self._system = type(clock) is MonotonicClock and type(clock.inner) is SystemClock
        if self._system:
            self._clock_acquire = clock._lock.acquire
            self._clock_release = clock._lock.release
        # TransactionManager.has_live, inlined: its dict of live transactions (never replaced)
        self._live = txns._live

    cdef object _now_ms(self):
        """``clock.now_ms()``; the wall clock's reading is held monotonic here, under the
        clock's lock, as :meth:`MonotonicClock.now_ms` does."""
        if not self._system:
            return self._now()
        cdef object now = time_ns() // 1_000_000
        cdef bint ahead
        clock = self.clock
        self._clock_acquire()
        ahead = now >= clock._last
        if ahead:
            clock._last = now
        self._clock_release()
        return now if ahead else clock._checked(now)

    cdef inline int _admit(self) except -1:
        """Backpressure, outside the write lock."""
        wal = self.wal
        if (0 if wal is None else wal.buffered_bytes + wal.queued_bytes) + self.state.imm_bytes \
                > self.max_unflushed_bytes:
            self.backpressure()
        return 0

    cdef int _buffer(self, list rows, Py_ssize_t nbytes, MemtableBase mt) except -1:
        """:meth:`WalBuffer.append` (``nbytes``: the rows' key and value bytes); with the WAL
        off, freeze a full memtable."""
        wal = self.wal
        limit = self.l0_sst_size_bytes
        if wal is None:
            if mt.size >= limit:
                self.state.freeze(None)
            return 0
        wal._rows.extend(rows)
        size = wal.buffered_bytes + (nbytes + len(rows) * _ROW_OVERHEAD)
        wal.buffered_bytes = size
        if size >= limit or mt.size >= limit:
            wal.wakeup.set()
        return 0

    cdef int _buffer_one(self, tuple row, Py_ssize_t nbytes, MemtableBase mt) except -1:
        """:meth:`_buffer` of one row."""
        wal = self.wal
        limit = self.l0_sst_size_bytes
        if wal is None:
            if mt.size >= limit:
                self.state.freeze(None)
            return 0
        PyList_Append(wal._rows, row)
        size = wal.buffered_bytes + (nbytes + _ROW_OVERHEAD)
        wal.buffered_bytes = size
        if size >= limit or mt.size >= limit:
            wal.wakeup.set()
        return 0

    def write_one(self, key, kind, value, ttl, durable, seqnum=0):
        """Commit one op (``put``, ``delete``, ``merge``): key, value and ``ttl`` (an int of
        milliseconds, a :class:`~shale.Ttl` or ``None``) are checked here. ``seqnum``: the
        write's seq, chosen by the caller (``0``: the next one)."""
        if type(key) is not bytes or not 0 < len(<bytes>key) <= _MAX_KEY_LEN:
            key = check_key(key)
        if type(value) is not bytes or len(<bytes>value) > _MAX_VALUE_LEN:
            value = check_value(value)
        if ttl is not None:
            ttl = to_ttl(ttl)
        if durable is not True and durable is not False:
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
        self._admit()
        cdef tuple row
        cdef Py_ssize_t nbytes
        cdef MemtableBase mt
        state = self.state
        oracle = self.oracle
        default_ttl = self.default_ttl
        self._acquire()
        try:
            if status.closed:
                status.check_open()
            seq = user_seq(seqnum, oracle.last_seq) if seqnum else oracle.last_seq + 1
            now = self._now_ms()
            if ttl is None and (default_ttl is None or kind == TOMBSTONE):
                expire = None
            else:
                expire = expire_ts(kind, ttl, now, default_ttl)
            row = (key, seq, kind, value, expire, now)
            oracle.last_seq = seq
            mt = <MemtableBase?>state.memtable
            nbytes = mt.add(row)
            oracle.committed_seq = seq
            if self._live:
                self.txns.record([key], seq)
            self._buffer_one(row, nbytes, mt)
            if self.on_commit is not None:
                self.on_commit([row])
            self.batch_count += 1
            self.op_count += 1
        finally:
            self._release()
        if durable is True:
            self.wait_durable(seq, None)
        return _handle(self.wait_durable, seq, now)

    def write_batch(self, batch, durable, seqnum=0):
        """Commit a :class:`~shale.WriteBatch`: :meth:`write` of its ``items()``; a compiled
        batch is read as it holds its ops (``_batch_c.pxd``), no items built."""
        if not isinstance(batch, CWriteBatch) or self.check_segments is not None:
            return self.write(batch.items(), durable, None, seqnum)
        keys, held = (<CWriteBatch>batch).columns()
        return self._commit(keys, held, (<CWriteBatch>batch)._merges != 0, durable, None, None,
                            seqnum)

    def write(self, list items, durable, txn=None, seqnum=0):
        """Commit one batch (its keys and values checked by the caller, keys sorted).

        :param txn: the batch is that transaction's commit: its conflict check runs first,
            under the write lock, and the transaction ends (committed) with the batch.
        :param seqnum: the batch's seq, chosen by the caller (``0``: the next one).
        :raises TransactionError: ``txn`` conflicts; nothing is written.
        :raises InvalidError: ``seqnum`` is not above the last seq; nothing is written.
        """
        cdef tuple it
        cdef list keys = [it[0] for it in items]
        cdef list held = [it[1] for it in items]
        return self._commit(keys, held, True, durable, txn, items, seqnum)

    cdef object _commit(self, list keys, list held, bint merges, durable, txn, list items,
                        seqnum):
        """:meth:`write` of the keys (sorted) and, in the same order, their ops: a list of
        ``(kind, value, ttl)``, one such tuple, or a value alone (a put without a TTL).
        ``merges``: some ops may be merges (their operands are checked); ``items``: the
        batch's items, for the segment check."""
        if durable is not True and durable is not False:
            components.check_flag("durable", durable)
        if type(seqnum) is not int or seqnum:
            seqnum = check_seqnum(seqnum)
        status = self.status
        if status.closed:
            status.check_open()
        op = self.merge_operator
        cdef Py_ssize_t i, n = len(keys)
        cdef tuple o
        cdef list timed
        if merges:
            for i in range(n):
                h = held[i]
                if type(h) is list:
                    for o in <list>h:
                        if o[0] == MERGE:
                            check_operand(keys[i], o[1], op)
        if self.check_segments is not None:
            self.check_segments(items)
        self._admit()
        cdef list rows = []
        cdef Py_ssize_t nbytes = 0
        cdef MemtableBase mt
        cdef bint timed_value = False
        state = self.state
        oracle = self.oracle
        txns = self.txns
        default_ttl = self.default_ttl
        value_expire = None
        self._acquire()
        try:
            if status.closed:
                status.check_open()
            seq = user_seq(seqnum, oracle.last_seq) if seqnum else oracle.last_seq + 1
            if txn is not None:
                txns.check(txn)
            now = self._now_ms()
            for i in range(n):
                key = keys[i]
                h = held[i]
                if type(h) is bytes:  # a put without a TTL: its expire_ts is the batch's
                    if not timed_value:
                        if default_ttl is not None:
                            value_expire = expire_ts(_VALUE, None, now, default_ttl)
                        timed_value = True
                    PyList_Append(rows, (key, seq, _VALUE, h, value_expire, now))
                    continue
                if type(h) is tuple:
                    o = <tuple>h
                elif len(<list>h) == 1:
                    o = (<list>h)[0]
                else:
                    timed = [(o[0], o[1], expire_ts(o[0], o[2], now, default_ttl))
                             for o in <list>h]
                    for o in combine(key, timed, op):
                        PyList_Append(rows, (key, seq, o[0], o[1], o[2], now))
                    continue
                kind = o[0]
                ttl = o[2]
                if ttl is None and (default_ttl is None or kind == TOMBSTONE):
                    expire = None
                else:
                    expire = expire_ts(kind, ttl, now, default_ttl)
                PyList_Append(rows, (key, seq, kind, o[1], expire, now))
            oracle.last_seq = seq
            mt = <MemtableBase?>state.memtable
            nbytes = mt.add_rows(rows)
            oracle.committed_seq = seq
            if self._live:
                if txn is not None:
                    txns.record(txn.write_keys, seq)
                    txns.end(txn.id)
                else:
                    txns.record(keys, seq)
            self._buffer(rows, nbytes, mt)
            if self.on_commit is not None:
                self.on_commit(rows)
            self.batch_count += 1
            self.op_count += len(rows)
        finally:
            self._release()
        if durable is True:
            self.wait_durable(seq, None)
        return _handle(self.wait_durable, seq, now)
