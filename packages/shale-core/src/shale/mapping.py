"""A dict-like view of a key range: :class:`ReadOnlyDbMapping` and :class:`DbMapping`.

``db.mapping()`` (and ``namespace.mapping()``, ``reader.mapping()``) gives the
``collections.abc.MutableMapping`` operations that mean the same on an LSM store as on a dict,
and leaves out the ones that would lie (docs/views.md):

* ``m[k]`` raises ``KeyError`` when ``k`` is absent, deleted or expired; ``k in m`` and
  ``m.get(k, default)`` read one key.
* ``m[k] = v`` is **one write per assignment** (durable before it returns unless the view was
  made with ``durable=False``); :meth:`DbMapping.update` writes all its pairs as one atomic
  batch.
* ``del m[k]`` keeps ``dict``'s contract -- ``KeyError`` when absent -- so it reads the key
  before writing the tombstone (a read plus a write). :meth:`DbMapping.discard` is the blind
  delete SlateDB has: one write, no read, no error.
* ``keys()``, ``values()``, ``items()`` and iteration scan in key order (``reverse=True``
  descending), optionally limited by ``prefix=``, ``start=`` and ``end=``. Each call is a new
  scan; the iterator it returns is a consistent view of its range.
* ``len(m)`` raises ``TypeError``: the store keeps no count, and a silent full scan behind
  ``len`` would surprise. :meth:`ReadOnlyDbMapping.count` counts by scanning, on request.
  ``bool(m)`` reads at most one key.
* ``setdefault``, ``pop`` and ``popitem`` are read-modify-writes, so each runs as a
  transaction of the source (``begin()``), re-run after a conflict: atomic against every other
  writer. ``popitem`` removes the **smallest** key (a store has no insertion order).
  ``clear`` is not offered: one atomic transaction over a whole key space would not scale, and
  a clear that was not atomic would surprise; delete a range with a scan and a batch.

The view holds no state besides its source and its durability choice: it is as thread-safe as
the source, and reads see every write the source sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Protocol

from shale.batch import WriteBatch, check_key, check_value
from shale.errors import InvalidError
from shale.keys import check_scan_range, prefix_range
from shale.transaction import ATOMIC_RETRIES, IsolationLevel, TxnLike, transact

__all__ = ["DbMapping", "ReadOnlyDbMapping", "ReadSource", "WriteSource", "key_range"]


class ReadSource(Protocol):
    """What a read-only mapping reads: a ``Db``, ``DbReader``, ``DbSnapshot`` or namespace."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(
        self, start: bytes | None = None, end: bytes | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


class WriteSource(ReadSource, Protocol):
    """What a writable mapping also writes to: a ``Db`` or a namespace of one."""

    def put(self, key: bytes, value: bytes, *, durable: bool = True) -> object: ...

    def delete(self, key: bytes, *, durable: bool = True) -> object: ...

    def write(self, batch: WriteBatch, *, durable: bool = True) -> object: ...

    def begin(self, isolation: IsolationLevel = "snapshot") -> TxnLike: ...


class _Missing:
    pass


_MISSING: Final = _Missing()


def key_range(
    prefix: bytes | None, start: bytes | None, end: bytes | None
) -> tuple[bytes | None, bytes | None]:
    """The ``[start, end)`` range of keys that start with ``prefix`` (``None``: any) and lie in
    ``[start, end)`` (``None`` = unbounded): the intersection, possibly empty (``start >=
    end``, which scans nothing).

    :raises InvalidError: a bound that is not a valid key, ``start > end``, or a ``prefix`` that
        is not bytes.
    """
    start, end = check_scan_range(start, end)
    if prefix is None:
        return start, end
    low, high = prefix_range(prefix)
    if low is not None and (start is None or start < low):
        start = low
    if high is not None and (end is None or end > high):
        end = high
    if start is not None and end is not None and start > end:
        end = start  # disjoint: an empty range
    return start, end


class ReadOnlyDbMapping:
    """A read-only dict-like view (see the module docstring). Make it with ``.mapping()`` on a
    ``Db``, ``DbReader``, snapshot or namespace, or ``ReadOnlyDbMapping(source)``."""

    def __init__(self, source: ReadSource) -> None:
        self._source = source

    def __getitem__(self, key: bytes) -> bytes:
        value = self._source.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self._source.get(check_key(key)) is not None

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """``m[key]``, or ``default`` when ``key`` is absent."""
        value = self._source.get(key)
        return default if value is None else value

    def _scan(
        self, prefix: bytes | None, start: bytes | None, end: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        start, end = key_range(prefix, start, end)
        if start is not None and end is not None and start >= end:
            return iter(())
        return self._source.scan(start, end, reverse=reverse)

    def items(
        self,
        *,
        prefix: bytes | None = None,
        start: bytes | None = None,
        end: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` in key order over the keys starting with ``prefix`` in
        ``[start, end)`` (every bound optional; ``reverse=True``: descending)."""
        return self._scan(prefix, start, end, reverse)

    def keys(
        self,
        *,
        prefix: bytes | None = None,
        start: bytes | None = None,
        end: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[bytes]:
        """The keys, as :meth:`items` orders and limits them."""
        return (k for k, _ in self._scan(prefix, start, end, reverse))

    def values(
        self,
        *,
        prefix: bytes | None = None,
        start: bytes | None = None,
        end: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[bytes]:
        """The values, in the order of their keys (as :meth:`items`)."""
        return (v for _, v in self._scan(prefix, start, end, reverse))

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def count(
        self, *, prefix: bytes | None = None, start: bytes | None = None, end: bytes | None = None
    ) -> int:
        """How many keys :meth:`items` would give, counted by scanning them (reads every
        row of the range)."""
        return sum(1 for _ in self._scan(prefix, start, end, False))

    def __len__(self) -> int:
        raise TypeError(
            "a shale mapping has no len(): the store keeps no count; "
            "count(prefix=...) counts by scanning"
        )

    def __bool__(self) -> bool:
        """Whether the view has any key (reads at most one)."""
        return next(iter(self._source.scan()), None) is not None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._source!r}>"


class DbMapping(ReadOnlyDbMapping):
    """A writable dict-like view (see the module docstring): ``db.mapping(durable=...)``."""

    def __init__(self, source: WriteSource, *, durable: bool = True) -> None:
        super().__init__(source)
        self._writer = source
        if type(durable) is not bool:
            raise InvalidError("durable must be a bool", type=type(durable).__name__)
        self.durable = durable

    def __setitem__(self, key: bytes, value: bytes) -> None:
        """One write (durable before it returns unless ``durable=False``)."""
        self._writer.put(key, value, durable=self.durable)

    def __delitem__(self, key: bytes) -> None:
        """Delete ``key``; ``KeyError`` when it is absent (a read, then a tombstone)."""
        if self._source.get(key) is None:
            raise KeyError(key)
        self._writer.delete(key, durable=self.durable)

    def discard(self, key: bytes) -> None:
        """Delete ``key`` whether or not it exists: one tombstone, no read, no error."""
        self._writer.delete(key, durable=self.durable)

    def update(
        self,
        other: Mapping[bytes, bytes] | ReadOnlyDbMapping | Iterable[tuple[bytes, bytes]] = (),
        /,
    ) -> None:
        """Set every pair of ``other`` (a mapping, another view, or ``(key, value)`` pairs) in
        **one** atomic write batch; nothing is written when it is empty. Keyword arguments are
        not taken: keys are bytes."""
        pairs: Iterable[object]
        if isinstance(other, (Mapping, ReadOnlyDbMapping)):
            pairs = other.items()
        elif isinstance(other, Iterable) and not isinstance(other, (str, bytes, bytearray)):
            pairs = other
        else:
            raise InvalidError(
                "update() takes a mapping or (key, value) pairs", type=type(other).__name__
            )
        batch = WriteBatch()
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InvalidError("update() takes (key, value) pairs", pair=pair)
            batch.put(pair[0], pair[1])
        if not batch.is_empty():
            self._writer.write(batch, durable=self.durable)

    def setdefault(self, key: bytes, default: bytes) -> bytes:
        """``m[key]`` if ``key`` has a value, else set it to ``default`` and return that --
        atomically (a transaction, re-run after a conflict); writes only when absent."""
        key, default = check_key(key), check_value(default)

        def run(txn: TxnLike) -> bytes:
            value = txn.get(key)
            if value is not None:
                return value
            txn.put(key, default)
            return default

        return transact(self._writer.begin, run, retries=ATOMIC_RETRIES, durable=self.durable)

    def pop(self, key: bytes, default: bytes | _Missing | None = _MISSING) -> bytes | None:
        """Delete ``key`` and return its value, atomically; when it is absent return
        ``default``, or raise ``KeyError`` without one (nothing written)."""
        key = check_key(key)

        def run(txn: TxnLike) -> bytes | None:
            value = txn.get(key)
            if value is None:
                if isinstance(default, _Missing):
                    raise KeyError(key)
                return default
            txn.delete(key)
            return value

        return transact(self._writer.begin, run, retries=ATOMIC_RETRIES, durable=self.durable)

    def popitem(self) -> tuple[bytes, bytes]:
        """Delete the smallest key and return ``(key, value)``, atomically.

        :raises KeyError: the view is empty.
        """

        def run(txn: TxnLike) -> tuple[bytes, bytes]:
            first = next(iter(txn.scan()), None)
            if first is None:
                raise KeyError("popitem(): the mapping is empty")
            txn.delete(first[0])
            return first

        return transact(self._writer.begin, run, retries=ATOMIC_RETRIES, durable=self.durable)
