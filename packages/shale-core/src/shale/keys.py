"""Key ranges: the one implementation of a prefix's end and of scan-range checks.

The database, its snapshots, the asyncio facade, the segment code and the ``shale`` command all
turn a prefix into a ``[start, end)`` range and check user-given bounds; they call these so the
rules (an empty prefix is the whole keyspace, an all-``0xff`` prefix has no end, an inverted
range is refused, an empty one is not) live in one place.
"""

from __future__ import annotations

from collections.abc import Iterator

from shale.batch import check_key
from shale.errors import InvalidError

__all__ = ["KeysValues", "check_scan_range", "prefix_end", "prefix_range"]


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (``prefix++``; ``None``: no
    such key, e.g. for ``b""`` or all-``0xff`` prefixes)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


def prefix_range(prefix: object) -> tuple[bytes | None, bytes | None]:
    """The ``(start, end)`` scan bounds of every key starting with ``prefix`` (``None`` =
    unbounded; ``b""`` is the whole keyspace).

    :raises InvalidError: ``prefix`` is not ``bytes``.
    """
    if not isinstance(prefix, (bytes, bytearray)):
        raise InvalidError("prefix must be bytes", type=type(prefix).__name__)
    prefix = bytes(prefix)
    return prefix or None, prefix_end(prefix)


def check_scan_range(start: bytes | None, end: bytes | None) -> tuple[bytes | None, bytes | None]:
    """``start`` and ``end`` checked as keys (``None`` = unbounded); ``start == end`` is an
    empty range, not an error.

    :raises InvalidError: a bound that is not a valid key, or ``start > end``.
    """
    if start is not None:
        start = check_key(start)
    if end is not None:
        end = check_key(end)
    if start is not None and end is not None and start > end:
        raise InvalidError("scan range is inverted", start=start, end=end)
    return start, end


class KeysValues:
    """Keys-only and values-only views of a ``(key, value)`` scan iterator: every scan of shale
    (``Db``, ``DbReader``, snapshots, transactions, namespaces) has them, e.g.
    ``for k in db.scan(b"a", b"b").keys_only()``. Each draws from the same iterator (after a
    ``seek`` too). Not named ``keys``/``values``: ``dict(db.scan())`` must keep building a dict
    from the pairs (``dict()`` treats anything with a ``keys()`` method as a mapping)."""

    def __next__(self) -> tuple[bytes, bytes]:
        raise NotImplementedError  # pragma: no cover -- the concrete iterators define it

    def keys_only(self) -> Iterator[bytes]:
        """The keys of the remaining rows."""
        while True:
            try:
                key, _value = next(self)
            except StopIteration:
                return
            yield key

    def values_only(self) -> Iterator[bytes]:
        """The values of the remaining rows, in key order."""
        while True:
            try:
                _key, value = next(self)
            except StopIteration:
                return
            yield value
