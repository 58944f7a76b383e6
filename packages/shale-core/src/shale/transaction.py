"""Transactions: :class:`Transaction` (SlateDB's ``DbTransaction``) and the retry loop
:func:`transact`.

A transaction reads a snapshot taken when it began (the committed seq, :attr:`Transaction.seqnum`)
merged with its own writes, buffers its writes in a :class:`~shale.WriteBatch`, and commits them
as one batch -- one seq, atomic, durable like :meth:`shale.Db.write`. At commit the engine's
conflict tracker (:mod:`shale.engine.transaction_manager`), under the write lock, refuses it
with :class:`~shale.TransactionError` when a commit it did not see conflicts with it:

- ``isolation="snapshot"``: another commit wrote a key this transaction writes;
- ``isolation="serializable"``: that, or another commit wrote a key this transaction read
  (:meth:`~Transaction.get`, :meth:`~Transaction.mark_read`) or a key inside a range it scanned
  (phantoms).

Plain writes (``Db.put`` ...) count as commits. A transaction that wrote nothing never aborts.
A transaction is meant for one thread at a time.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, get_args

from shale.batch import Ttl, WriteBatch, check_key, check_value
from shale.engine.batch_rules import check_operand, check_seqnum
from shale.engine.commit import WriteHandle
from shale.engine.db_iter import DbIterator
from shale.engine.db_snapshot import DbSnapshot
from shale.engine.reader import KeyValue
from shale.engine.transaction_manager import KeyRange, TxnConflictSet
from shale.errors import InvalidError, TransactionError
from shale.keys import KeysValues, prefix_range, scan_bounds
from shale.merge_operators import merge_all
from shale.row import TOMBSTONE, VALUE

if TYPE_CHECKING:
    from shale.engine.db_inner import DbInner

__all__ = [
    "IsolationLevel",
    "Transaction",
    "TransactionIterator",
    "TxnLike",
    "backoff_delay",
    "check_retries",
    "compare_and_set",
    "put_if_absent",
    "transact",
    "update",
]

#: The isolation levels: SlateDB's ``SnapshotIsolation`` and ``SerializableSnapshotIsolation``.
IsolationLevel = Literal["snapshot", "serializable"]
_LEVELS: Final = get_args(IsolationLevel)

_T = TypeVar("_T")
_Txn = TypeVar("_Txn", bound="TxnLike")


class TxnLike(Protocol):
    """What :func:`transact` and the atomic conveniences need of a transaction: a
    :class:`Transaction`, or a namespace's (:class:`shale.namespace.NamespaceTransaction`)."""

    @property
    def finished(self) -> bool: ...

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(
        self, start: bytes | None = None, end: bytes | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...

    def commit(self, *, durable: bool = True, seqnum: int = 0) -> WriteHandle | None: ...

    def rollback(self) -> None: ...


#: :func:`transact`'s back-off: the first delay (seconds), doubled per attempt up to the cap.
BACKOFF_BASE_S = 0.001
BACKOFF_MAX_S = 0.1

Ops = list[tuple[int, bytes, Ttl | None]]


def _const(value: bytes | None) -> Callable[[], bytes | None]:
    return lambda: value


def check_isolation(isolation: object) -> str:
    """``isolation`` checked.

    :raises InvalidError: not ``"snapshot"`` or ``"serializable"``.
    """
    if isolation not in _LEVELS:
        raise InvalidError("isolation must be 'snapshot' or 'serializable'", isolation=isolation)
    return str(isolation)


class Transaction:
    """A transaction; make it with :meth:`shale.Db.begin`.

    As a context manager it commits when the block ends normally and rolls back when it raises.
    """

    def __init__(self, inner: DbInner, isolation: IsolationLevel = "snapshot") -> None:
        self.isolation: IsolationLevel = check_isolation(isolation)  # type: ignore[assignment]
        self._inner = inner
        #: the transaction's id (a UUID string, as SlateDB's)
        self.id = str(uuid.uuid4())
        seq = inner.begin_transaction(self.id)
        self._snapshot = DbSnapshot(inner.reader, inner.snapshots, inner.status, seq)
        self._batch = WriteBatch()
        self._write_keys: set[bytes] = set()
        self._read_keys: set[bytes] = set()
        self._read_ranges: list[KeyRange] = []
        self._done = False

    @property
    def seqnum(self) -> int:
        """The seq this transaction's snapshot reads at."""
        return self._snapshot.seq

    @property
    def finished(self) -> bool:
        """Whether it committed, failed to commit or rolled back."""
        return self._done

    def _check_live(self) -> None:
        if self._done:
            raise InvalidError("the transaction is finished (committed or rolled back)", id=self.id)

    # -- reads ------------------------------------------------------------------------------

    def _own(self, key: bytes, ops: Ops, base: Callable[[], bytes | None]) -> bytes | None:
        """``key``'s value with this transaction's ``ops`` applied over ``base()``."""
        first = ops[0][0]
        if first == VALUE:
            value: bytes | None = ops[0][1]
            operands = [o[1] for o in ops[1:]]
        elif first == TOMBSTONE:
            value = None
            operands = [o[1] for o in ops[1:]]
        else:
            value = base()
            operands = [o[1] for o in ops]
        if operands:
            value = merge_all(self._inner.merge_operator, key, value, operands, error=InvalidError)
        return value

    def get_key_value(self, key: bytes, *, include_expired: bool | None = None) -> KeyValue | None:
        """``key`` as this transaction sees it. A value it wrote itself has ``seq`` =
        :attr:`seqnum` and no timestamps (it has none until the commit)."""
        self._check_live()
        key = check_key(key)
        if self.isolation == "serializable":
            self._read_keys.add(key)
        ops = self._batch.ops(key)
        if ops is None:
            return self._snapshot.get_key_value(key, include_expired=include_expired)
        value = self._own(
            key, ops, lambda: self._snapshot.get(key, include_expired=include_expired)
        )
        return None if value is None else KeyValue(key, value, self.seqnum, None, None)

    def get(self, key: bytes, *, include_expired: bool | None = None) -> bytes | None:
        """``key``'s value as this transaction sees it, or ``None``."""
        kv = self.get_key_value(key, include_expired=include_expired)
        return None if kv is None else kv.value

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        include_expired: bool | None = None,
        cache_blocks: bool = True,
        read_ahead_bytes: int | None = None,
        max_fetch_tasks: int | None = None,
    ) -> TransactionIterator:
        """``(key, value)`` over ``start <= key < end``: the snapshot merged with this
        transaction's writes (as they are now). Under ``"serializable"`` the whole range counts
        as read: a later commit writing any key inside it conflicts. ``start_inclusive``,
        ``end_inclusive``, ``cache_blocks``, ``read_ahead_bytes`` and ``max_fetch_tasks`` as for
        :meth:`shale.Db.scan`."""
        self._check_live()
        start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        if self.isolation == "serializable":
            self._read_ranges.append((start, end))
        snap = self._snapshot.scan(
            start,
            end,
            reverse=reverse,
            include_expired=include_expired,
            cache_blocks=cache_blocks,
            read_ahead_bytes=read_ahead_bytes,
            max_fetch_tasks=max_fetch_tasks,
        )
        own = [
            (k, list(ops))
            for k, ops in self._batch.items()
            if (start is None or k >= start) and (end is None or k < end)
        ]
        if reverse:
            own.reverse()
        return TransactionIterator(self, snap, own, (start, end), reverse)

    def scan_prefix(self, prefix: bytes, **options: Any) -> TransactionIterator:
        """Every key that starts with ``prefix``, as :meth:`scan`."""
        return self.scan(*prefix_range(prefix), **options)

    def mark_read(self, keys: Iterable[bytes]) -> None:
        """Count ``keys`` as read (under ``"serializable"``: a later commit writing one of them
        conflicts), without reading them."""
        self._check_live()
        checked = [check_key(k) for k in keys]
        if self.isolation == "serializable":
            self._read_keys.update(checked)

    def unmark_write(self, keys: Iterable[bytes]) -> None:
        """Leave ``keys`` out of write-write conflict checks (they are still written, and a
        later write of a key in this transaction marks it again)."""
        self._check_live()
        for k in keys:
            self._write_keys.discard(check_key(k))

    # -- writes -----------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None) -> None:
        """Set ``key`` to ``value`` at commit (``ttl`` as for :meth:`shale.Db.put`)."""
        self._check_live()
        self._batch.put(key, value, ttl=ttl)
        self._write_keys.add(check_key(key))

    def delete(self, key: bytes) -> None:
        """Delete ``key`` at commit."""
        self._check_live()
        self._batch.delete(key)
        self._write_keys.add(check_key(key))

    def merge(self, key: bytes, operand: bytes, *, ttl: int | Ttl | None = None) -> None:
        """Add a merge operand for ``key`` at commit.

        :raises InvalidError: no merge operator, or the operator rejects the operand.
        """
        self._check_live()
        key = check_key(key)
        check_operand(key, check_value(operand), self._inner.merge_operator)
        self._batch.merge(key, operand, ttl=ttl)
        self._write_keys.add(key)

    # -- end --------------------------------------------------------------------------------

    def commit(self, *, durable: bool = True, seqnum: int = 0) -> WriteHandle | None:
        """Commit the writes as one batch; ``None`` when there were none (a transaction that
        wrote nothing never conflicts). Returns once durable unless ``durable=False``.

        :param seqnum: the batch's seq, chosen by the caller (as for :meth:`shale.Db.put`;
            SlateDB's ``commit_with_options``).
        :raises TransactionError: a conflicting commit happened since :attr:`seqnum`; nothing
            of this transaction is written. Retry the whole transaction (:func:`transact`).
        :raises InvalidError: the transaction is already finished; ``seqnum`` is not an int
            in ``[0, 2**63 - 1]`` (the transaction stays open) or not greater than the last
            seq (it ends, nothing written).
        """
        self._check_live()
        seqnum = check_seqnum(seqnum)
        self._done = True
        try:
            if self._batch.is_empty():
                return None
            txn = TxnConflictSet(
                self.id,
                self.seqnum,
                self.isolation == "serializable",
                frozenset(self._write_keys),
                frozenset(self._read_keys),
                list(self._read_ranges),
            )
            return self._inner.writer.write(self._batch.items(), durable, txn, seqnum)
        finally:
            self._release()

    def rollback(self) -> None:
        """Drop the writes and end the transaction (harmless when already finished)."""
        self._done = True
        self._release()

    def _release(self) -> None:
        self._inner.writer.txns.end(self.id)
        self._snapshot.close()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.rollback()
        elif not self._done:
            self.commit()

    def __del__(self) -> None:
        try:
            if not self._done:
                self.rollback()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "finished" if self._done else "live"
        return f"<shale.Transaction {self.id} {self.isolation} seq={self.seqnum} {state}>"


class TransactionIterator(KeysValues):
    """The iterator of :meth:`Transaction.scan`: snapshot rows merged with the transaction's
    own writes (which win)."""

    def __init__(
        self,
        txn: Transaction,
        snap: DbIterator,
        own: list[tuple[bytes, Ops]],
        key_range: KeyRange,
        reverse: bool,
    ) -> None:
        self._txn = txn
        self._snap = snap
        self._own = own
        self._reverse = reverse
        self._gen = self._merged()
        self._range = key_range
        self._last: bytes | None = None
        self._seek_to: bytes | None = None

    def _merged(self) -> Iterator[tuple[bytes, bytes]]:
        own = self._own
        i = 0
        rev = self._reverse
        for key, value in self._snap:
            while i < len(own) and (own[i][0] > key if rev else own[i][0] < key):
                hit = self._txn._own(own[i][0], own[i][1], _const(None))
                if hit is not None:
                    yield own[i][0], hit
                i += 1
            if i < len(own) and own[i][0] == key:
                hit = self._txn._own(key, own[i][1], _const(value))
                i += 1
                if hit is not None:
                    yield key, hit
            else:
                yield key, value
        for k, ops in own[i:]:
            hit = self._txn._own(k, ops, _const(None))
            if hit is not None:
                yield k, hit

    def __iter__(self) -> TransactionIterator:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        while True:
            key, value = next(self._gen)
            target = self._seek_to
            if target is not None:
                if key < target if not self._reverse else key > target:
                    continue
                self._seek_to = None
            self._last = key
            return key, value

    def seek(self, key: bytes) -> None:
        """Continue from the first key ``>= key`` (``<= key`` in reverse).

        :raises InvalidError: ``key`` is outside the scan range, or not past the last key
            returned.
        """
        key = check_key(key)
        start, end = self._range
        if (start is not None and key < start) or (end is not None and key >= end):
            raise InvalidError("seek key outside the scan range", key=key)
        if self._last is not None and (
            key <= self._last if not self._reverse else key >= self._last
        ):
            raise InvalidError("seek key must be past the last key returned", key=key)
        self._seek_to = key


def check_retries(retries: object) -> int:
    """``retries`` checked.

    :raises InvalidError: not an int ``>= 0``.
    """
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InvalidError("retries must be an int >= 0", retries=retries)
    return retries


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before re-running after the ``attempt``-th conflict (0-based):
    exponential back-off capped at :data:`BACKOFF_MAX_S`, with full jitter (so conflicting
    retriers spread out)."""
    cap = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** min(attempt, 30)))
    return random.uniform(0, cap)


def transact(
    begin: Callable[[], _Txn],
    fn: Callable[[_Txn], _T],
    *,
    retries: int = 10,
    durable: bool = True,
) -> _T:
    """Run ``fn(txn)`` in a transaction from ``begin()`` and commit; on a
    :class:`TransactionError` run it again in a new one, up to ``retries`` more times, after
    an exponential back-off with full jitter. Any other exception rolls back and propagates.

    :returns: what the successful ``fn`` returned.
    :raises TransactionError: the last conflict, when every attempt conflicted.
    :raises InvalidError: ``retries`` is not an int ``>= 0``.
    """
    check_retries(retries)
    attempt = 0
    while True:
        txn = begin()
        try:
            result = fn(txn)
            if not txn.finished:
                txn.commit(durable=durable)
            return result
        except TransactionError:
            txn.rollback()
            if attempt >= retries:
                raise
        except BaseException:
            txn.rollback()
            raise
        time.sleep(backoff_delay(attempt))
        attempt += 1


# -- the atomic conveniences (Db.put_if_absent ..., the same on a Namespace) -----------------

#: How often the atomic conveniences re-run after a conflict.
ATOMIC_RETRIES = 100


def put_if_absent(
    begin: Callable[[], TxnLike],
    key: bytes,
    value: bytes,
    *,
    ttl: int | Ttl | None = None,
    durable: bool = True,
) -> bool:
    """Set ``key`` to ``value`` in a transaction from ``begin()`` only if it has no value;
    whether it did (re-run after a conflict)."""
    key, value = check_key(key), check_value(value)

    def run(txn: TxnLike) -> bool:
        if txn.get(key) is not None:
            return False
        txn.put(key, value, ttl=ttl)
        return True

    return transact(begin, run, retries=ATOMIC_RETRIES, durable=durable)


def compare_and_set(
    begin: Callable[[], TxnLike],
    key: bytes,
    expected: bytes | None,
    new: bytes | None,
    *,
    ttl: int | Ttl | None = None,
    durable: bool = True,
) -> bool:
    """Set ``key`` to ``new`` (delete it for ``None``) only if its value is ``expected``
    (``None``: absent); whether it did."""
    key = check_key(key)
    expected = None if expected is None else check_value(expected)
    new = None if new is None else check_value(new)

    def run(txn: TxnLike) -> bool:
        if txn.get(key) != expected:
            return False
        _set(txn, key, new, ttl)
        return True

    return transact(begin, run, retries=ATOMIC_RETRIES, durable=durable)


def update(
    begin: Callable[[], TxnLike],
    key: bytes,
    fn: Callable[[bytes | None], bytes | None],
    *,
    ttl: int | Ttl | None = None,
    durable: bool = True,
) -> bytes | None:
    """Set ``key`` to ``fn(current value or None)`` (``None`` deletes it); ``fn`` may run more
    than once. Returns the value written."""
    key = check_key(key)
    if not callable(fn):
        raise InvalidError("update() takes a callable", type=type(fn).__name__)

    def run(txn: TxnLike) -> bytes | None:
        new = fn(txn.get(key))
        if new is not None:
            new = check_value(new)
        _set(txn, key, new, ttl)
        return new

    return transact(begin, run, retries=ATOMIC_RETRIES, durable=durable)


def _set(txn: TxnLike, key: bytes, value: bytes | None, ttl: int | Ttl | None) -> None:
    if value is None:
        txn.delete(key)
    else:
        txn.put(key, value, ttl=ttl)
