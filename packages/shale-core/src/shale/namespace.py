"""A prefix-scoped view of a database: :class:`Namespace`, :class:`ReadOnlyNamespace`.

``db.namespace(b"users/")`` reads and writes the keys that start with ``b"users/"`` as if the
prefix were not there: keys go in and come out **without** it. The rules (docs/views.md):

* **The namespace is ``(prefix, prefix_end)``**: every key that starts with the prefix, except
  the prefix itself (a key inside a namespace is non-empty, like every shale key). A scan is
  clamped to that range in both directions and with ``seek``, so it never returns a key of
  another namespace, also for neighbours such as ``b"a"`` and ``b"a\\xff"`` or a prefix
  ending in ``0xff``.
* **Writes are the root's writes**: ``put``/``delete``/``merge`` write one prefixed key; a
  :class:`~shale.WriteBatch` written through the namespace is copied with every key prefixed
  and applied as **one** batch (atomic, one seq).
* **Nesting concatenates**: ``db.namespace(b"a/").namespace(b"b/")`` is ``db.namespace(b"a/b/")``.
* **Read-only namespaces** work on a ``DbReader``, a ``DbSnapshot``
  (``ReadOnlyNamespace(snapshot, prefix)``) and as :meth:`ReadOnlyNamespace.snapshot` of a
  namespace, which pins the root's state and must be closed like any snapshot.
* **Options pass through**: ``durability=``, ``dirty=``, ``include_expired=``, ``ttl=`` and
  ``durable=`` mean what they mean on the root.

* **Transactions stay inside too**: ``ns.begin()`` is a transaction of the root
  (:class:`NamespaceTransaction`) whose reads, writes, ``mark_read``/``unmark_write`` keys and
  scanned ranges (its serializable conflict ranges) are prefixed and clamped the same way;
  ``ns.transact``, ``put_if_absent``, ``compare_and_set`` and ``update`` are the root's,
  scoped to the namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shale import transaction as atomic
from shale.batch import PendingWriteBatch, Ttl, WriteBatch, check_key
from shale.engine.db_snapshot import DbSnapshot
from shale.engine.reader import KeyValue
from shale.errors import InvalidError
from shale.keys import (
    KeysValues,
    check_inclusive,
    check_scan_range,
    prefix_end,
    prefix_range,
    scan_bounds,
)
from shale.mapping import DbMapping, ReadOnlyDbMapping
from shale.row import MAX_KEY_LEN, MERGE, TOMBSTONE, VALUE
from shale.transaction import IsolationLevel, Transaction, check_isolation, transact

if TYPE_CHECKING:
    from shale.db import Db, WriteHandle
    from shale.reader import DbReader

__all__ = [
    "Namespace",
    "NamespaceIterator",
    "NamespaceSnapshot",
    "NamespaceTransaction",
    "ReadOnlyNamespace",
    "check_prefix",
]


_T = TypeVar("_T")


def check_prefix(prefix: object) -> bytes:
    """``prefix`` as ``bytes``.

    :raises InvalidError: not bytes, empty, or so long that no key would fit after it.
    """
    if isinstance(prefix, (bytearray, memoryview)):
        prefix = bytes(prefix)
    if not isinstance(prefix, bytes):
        raise InvalidError("a namespace prefix must be bytes", type=type(prefix).__name__)
    if not prefix:
        raise InvalidError("a namespace prefix must not be empty")
    if len(prefix) >= MAX_KEY_LEN:
        raise InvalidError("a namespace prefix leaves no room for a key", length=len(prefix))
    return prefix


class _Seekable(Protocol):
    def __next__(self) -> tuple[bytes, bytes]: ...

    def seek(self, key: bytes) -> None: ...


class NamespaceIterator(KeysValues):
    """A scan of a namespace: ``(key, value)`` with the prefix cut off, and :meth:`seek`."""

    def __init__(self, inner: _Seekable, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix
        self._cut = len(prefix)

    def __iter__(self) -> NamespaceIterator:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        key, value = next(self._inner)
        return key[self._cut :], value

    def seek(self, key: bytes) -> None:
        """Continue from the first key ``>= key`` (``<= key`` in reverse), ``key`` given
        without the prefix.

        :raises InvalidError: ``key`` is outside the scan range or not past the last key
            returned.
        """
        self._inner.seek(self._prefix + check_key(key))


class ReadOnlyNamespace:
    """The keys under one prefix of a ``Db``, ``DbReader`` or ``DbSnapshot``, read without the
    prefix (see the module docstring)."""

    def __init__(self, source: Db | DbReader | DbSnapshot, prefix: bytes) -> None:
        self._source = source
        self._prefix = check_prefix(prefix)
        self._low = self._prefix + b"\x00"  # the namespace's smallest key
        self._high = prefix_end(self._prefix)  # above its largest (None: the keyspace's end)

    @property
    def prefix(self) -> bytes:
        """The whole prefix (of every enclosing namespace too) this view adds to keys."""
        return self._prefix

    def _key(self, key: bytes) -> bytes:
        return self._prefix + check_key(key)

    def _range(
        self,
        start: bytes | None,
        end: bytes | None,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
    ) -> tuple[bytes, bytes | None]:
        """A range given without the prefix as the root's half-open range, inside the
        namespace. An exclusive start or inclusive end applies to the prefixed key (exact, as
        :func:`shale.keys.scan_bounds`); an unbounded end stays the namespace's."""
        check_inclusive(start_inclusive, end_inclusive)
        start, end = check_scan_range(start, end)
        low = self._low if start is None else self._prefix + start
        high = self._high if end is None else self._prefix + end
        if (start is not None and not start_inclusive) or (end is not None and end_inclusive):
            bounded_low, high = scan_bounds(
                low, high, start is None or start_inclusive, end is not None and end_inclusive
            )
            low = bounded_low if bounded_low is not None else low
        return low, high

    def get(self, key: bytes, **options: Any) -> bytes | None:
        """The value of ``key`` (without the prefix), or ``None``; options as the root's."""
        value: bytes | None = self._source.get(self._key(key), **options)
        return value

    def get_key_value(self, key: bytes, **options: Any) -> KeyValue | None:
        """``key``'s value with its seq and timestamps (``kv.key`` without the prefix)."""
        kv: KeyValue | None = self._source.get_key_value(self._key(key), **options)
        return None if kv is None else kv._replace(key=kv.key[len(self._prefix) :])

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        **options: Any,
    ) -> NamespaceIterator:
        """``(key, value)`` over ``start <= key < end`` inside the namespace (bounds and keys
        without the prefix; ``None`` = the namespace's end), with ``seek``;
        ``start_inclusive``/``end_inclusive`` as for :meth:`shale.Db.scan`.

        :raises InvalidError: ``start > end``, or a bound that is not a key.
        """
        low, high = self._range(start, end, start_inclusive, end_inclusive)
        inner = self._source.scan(low, high, reverse=reverse, **options)
        return NamespaceIterator(inner, self._prefix)

    def scan_prefix(self, prefix: bytes, **options: Any) -> NamespaceIterator:
        """Every key of the namespace that starts with ``prefix`` (all of them for ``b""``)."""
        return self.scan(*prefix_range(prefix), **options)

    def namespace(self, prefix: bytes) -> ReadOnlyNamespace:
        """The namespace ``prefix`` inside this one (the prefixes concatenate)."""
        return ReadOnlyNamespace(self._source, self._prefix + check_prefix(prefix))

    def mapping(self) -> ReadOnlyDbMapping:
        """A read-only dict-like view of the namespace (:mod:`shale.mapping`)."""
        return ReadOnlyDbMapping(self)

    def snapshot(self) -> NamespaceSnapshot:
        """The namespace of a new snapshot of the root (close it, or use ``with``).

        :raises InvalidError: this namespace reads a snapshot already.
        """
        source = self._source
        if isinstance(source, DbSnapshot):
            raise InvalidError("this namespace reads a snapshot already: it does not move")
        return NamespaceSnapshot(source.snapshot(), self._prefix)

    def __repr__(self) -> str:
        return f"<shale {type(self).__name__} {self._prefix!r} of {self._source!r}>"


class NamespaceSnapshot(ReadOnlyNamespace):
    """A namespace of a snapshot it owns: :meth:`close` (or ``with``) releases the snapshot."""

    def __init__(self, snapshot: DbSnapshot, prefix: bytes) -> None:
        super().__init__(snapshot, prefix)
        self._snapshot = snapshot

    @property
    def seq(self) -> int:
        """The seq the snapshot reads at."""
        return self._snapshot.seq

    def close(self) -> None:
        """Release the snapshot."""
        self._snapshot.close()

    def __enter__(self) -> NamespaceSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Namespace(ReadOnlyNamespace):
    """The keys under one prefix of a :class:`~shale.Db`, read and written without the prefix
    (see the module docstring)."""

    def __init__(self, db: Db, prefix: bytes) -> None:
        super().__init__(db, prefix)
        self._db = db

    def put(
        self,
        key: bytes,
        value: bytes,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
        seqnum: int = 0,
    ) -> WriteHandle:
        """Set ``key`` (without the prefix) to ``value``; as :meth:`shale.Db.put`."""
        return self._db.put(self._key(key), value, ttl=ttl, durable=durable, seqnum=seqnum)

    def delete(self, key: bytes, *, durable: bool = True, seqnum: int = 0) -> WriteHandle:
        """Delete ``key`` (a tombstone; no read); as :meth:`shale.Db.delete`."""
        return self._db.delete(self._key(key), durable=durable, seqnum=seqnum)

    def merge(
        self,
        key: bytes,
        operand: bytes,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
        seqnum: int = 0,
    ) -> WriteHandle:
        """Add a merge operand for ``key``; as :meth:`shale.Db.merge`."""
        return self._db.merge(self._key(key), operand, ttl=ttl, durable=durable, seqnum=seqnum)

    def write(self, batch: WriteBatch, *, durable: bool = True, seqnum: int = 0) -> WriteHandle:
        """Apply ``batch`` (keys without the prefix) atomically: a copy with every key prefixed
        is written as one batch, one seq.

        :raises InvalidError: not a ``WriteBatch``, an empty one, or a key too long once
            prefixed (before anything is written).
        """
        if not isinstance(batch, WriteBatch):
            raise InvalidError("write() takes a shale.WriteBatch", type=type(batch).__name__)
        prefixed = WriteBatch()
        for key, ops in batch.items():
            full = self._prefix + key
            for kind, value, ttl in ops:  # replaying the ops rebuilds the same list per key
                if kind == VALUE:
                    prefixed.put(full, value, ttl=ttl)
                elif kind == TOMBSTONE:
                    prefixed.delete(full)
                elif kind == MERGE:
                    prefixed.merge(full, value, ttl=ttl)
                else:
                    raise InvalidError("unknown operation in a write batch", kind=kind)
        return self._db.write(prefixed, durable=durable, seqnum=seqnum)

    def write_batch(self, *, durable: bool = True) -> PendingWriteBatch:
        """A batch (keys without the prefix) written atomically when its ``with`` block ends
        normally; as :meth:`shale.Db.write_batch`."""
        return PendingWriteBatch(lambda batch, d: self.write(batch, durable=d), durable)

    def namespace(self, prefix: bytes) -> Namespace:
        """The namespace ``prefix`` inside this one (the prefixes concatenate)."""
        return Namespace(self._db, self._prefix + check_prefix(prefix))

    def mapping(self, *, durable: bool = True) -> DbMapping:
        """A dict-like view of the namespace; ``durable`` as :meth:`shale.Db.mapping`."""
        return DbMapping(self, durable=durable)

    # -- transactions (docs/transactions.md) --------------------------------------------------

    def begin(self, isolation: IsolationLevel = "snapshot") -> NamespaceTransaction:
        """A transaction of the root whose keys and ranges stay inside this namespace (keys
        without the prefix); as :meth:`shale.Db.begin`."""
        return NamespaceTransaction(self._db.begin(isolation), self)

    def transact(
        self,
        fn: Callable[[NamespaceTransaction], _T],
        *,
        retries: int = 10,
        isolation: IsolationLevel = "snapshot",
        durable: bool = True,
    ) -> _T:
        """Run ``fn(txn)`` in a namespace transaction and commit, re-running it after a
        conflict; as :meth:`shale.Db.transact`."""
        check_isolation(isolation)
        return transact(lambda: self.begin(isolation), fn, retries=retries, durable=durable)

    def put_if_absent(
        self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None, durable: bool = True
    ) -> bool:
        """As :meth:`shale.Db.put_if_absent`, ``key`` without the prefix."""
        return atomic.put_if_absent(self.begin, key, value, ttl=ttl, durable=durable)

    def compare_and_set(
        self,
        key: bytes,
        expected: bytes | None,
        new: bytes | None,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
    ) -> bool:
        """As :meth:`shale.Db.compare_and_set`, ``key`` without the prefix."""
        return atomic.compare_and_set(self.begin, key, expected, new, ttl=ttl, durable=durable)

    def update(
        self,
        key: bytes,
        fn: Callable[[bytes | None], bytes | None],
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
    ) -> bytes | None:
        """As :meth:`shale.Db.update`, ``key`` without the prefix."""
        return atomic.update(self.begin, key, fn, ttl=ttl, durable=durable)


class NamespaceTransaction:
    """A :class:`~shale.Transaction` seen through a namespace: keys in and out without the
    prefix, scans (and so serializable conflict ranges) clamped to the namespace. Make it with
    :meth:`Namespace.begin`; a context manager like the transaction."""

    def __init__(self, txn: Transaction, namespace: ReadOnlyNamespace) -> None:
        self._txn = txn
        self._ns = namespace
        self._prefix = namespace.prefix

    @property
    def transaction(self) -> Transaction:
        """The root transaction underneath (keys with the prefix)."""
        return self._txn

    @property
    def id(self) -> str:
        """The transaction's id."""
        return self._txn.id

    @property
    def isolation(self) -> IsolationLevel:
        """``"snapshot"`` or ``"serializable"``."""
        return self._txn.isolation

    @property
    def seqnum(self) -> int:
        """The seq the transaction's snapshot reads at."""
        return self._txn.seqnum

    @property
    def finished(self) -> bool:
        """Whether it committed, failed to commit or rolled back."""
        return self._txn.finished

    def get(self, key: bytes, **options: Any) -> bytes | None:
        """``key``'s value (``key`` without the prefix) as the transaction sees it."""
        return self._txn.get(self._ns._key(key), **options)

    def get_key_value(self, key: bytes, **options: Any) -> KeyValue | None:
        """``key``'s value with its seq and timestamps (``kv.key`` without the prefix)."""
        kv = self._txn.get_key_value(self._ns._key(key), **options)
        return None if kv is None else kv._replace(key=kv.key[len(self._prefix) :])

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        **options: Any,
    ) -> NamespaceIterator:
        """The transaction's view of ``start <= key < end`` inside the namespace (bounds and
        keys without the prefix; ``start_inclusive``/``end_inclusive`` as for
        :meth:`shale.Db.scan`); under ``"serializable"`` that clamped range counts as read."""
        low, high = self._ns._range(start, end, start_inclusive, end_inclusive)
        inner = self._txn.scan(low, high, reverse=reverse, **options)
        return NamespaceIterator(inner, self._prefix)

    def scan_prefix(self, prefix: bytes, **options: Any) -> NamespaceIterator:
        """Every key of the namespace that starts with ``prefix``, as :meth:`scan`."""
        return self.scan(*prefix_range(prefix), **options)

    def mark_read(self, keys: Iterable[bytes]) -> None:
        """As :meth:`shale.Transaction.mark_read`, keys without the prefix."""
        self._txn.mark_read([self._ns._key(k) for k in keys])

    def unmark_write(self, keys: Iterable[bytes]) -> None:
        """As :meth:`shale.Transaction.unmark_write`, keys without the prefix."""
        self._txn.unmark_write([self._ns._key(k) for k in keys])

    def put(self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None) -> None:
        """Set ``key`` (without the prefix) at commit."""
        self._txn.put(self._ns._key(key), value, ttl=ttl)

    def delete(self, key: bytes) -> None:
        """Delete ``key`` (without the prefix) at commit."""
        self._txn.delete(self._ns._key(key))

    def merge(self, key: bytes, operand: bytes, *, ttl: int | Ttl | None = None) -> None:
        """Add a merge operand for ``key`` (without the prefix) at commit."""
        self._txn.merge(self._ns._key(key), operand, ttl=ttl)

    def commit(self, *, durable: bool = True, seqnum: int = 0) -> WriteHandle | None:
        """As :meth:`shale.Transaction.commit`."""
        return self._txn.commit(durable=durable, seqnum=seqnum)

    def rollback(self) -> None:
        """As :meth:`shale.Transaction.rollback`."""
        self._txn.rollback()

    def __enter__(self) -> NamespaceTransaction:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._txn.__exit__(exc_type, *exc)

    def __repr__(self) -> str:
        return f"<shale NamespaceTransaction {self._prefix!r} of {self._txn!r}>"
