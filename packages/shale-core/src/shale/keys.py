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
from shale.row import MAX_KEY_LEN

__all__ = [
    "KeysValues",
    "check_inclusive",
    "check_scan_range",
    "key_after",
    "prefix_end",
    "prefix_range",
    "scan_bounds",
]


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


def key_after(key: bytes) -> bytes | None:
    """The smallest valid key above ``key`` (``key + b"\\x00"``; for a key of the maximum
    length, which no longer key can extend, ``prefix_end(key)``); ``None``: no key is above."""
    if len(key) < MAX_KEY_LEN:
        return key + b"\x00"
    return prefix_end(key)


def check_inclusive(start_inclusive: object, end_inclusive: object) -> None:
    """:raises InvalidError: ``start_inclusive`` or ``end_inclusive`` is not a ``bool``."""
    if type(start_inclusive) is not bool or type(end_inclusive) is not bool:
        raise InvalidError(
            "start_inclusive and end_inclusive must be bools",
            start_inclusive=type(start_inclusive).__name__,
            end_inclusive=type(end_inclusive).__name__,
        )


def scan_bounds(
    start: bytes | None,
    end: bytes | None,
    start_inclusive: bool = True,
    end_inclusive: bool = False,
) -> tuple[bytes | None, bytes | None]:
    """A range whose ends may each be inclusive or exclusive (SlateDB's ``KeyRange``) as the
    half-open ``[start, end)`` every scan takes, checked as :func:`check_scan_range` checks.

    Exact, not approximate: under byte order the smallest key above ``k`` is ``k + b"\\x00"``,
    so ``key > k`` is ``key >= k + b"\\x00"`` and ``key <= k`` is ``key < k + b"\\x00"``
    (:func:`key_after`). A range that holds no key (``(b, b)`` with an exclusive end, ``b``
    exclusive at both ends) comes back empty (``start == end``), as ``scan(b, b)`` always has;
    the official package raises for those instead. ``None`` stays unbounded whatever its flag.

    :raises InvalidError: a bound that is not a valid key, ``start > end``, or a flag that is
        not a ``bool``.
    """
    check_inclusive(start_inclusive, end_inclusive)
    start, end = check_scan_range(start, end)
    if start is not None and not start_inclusive:
        after = key_after(start)
        if after is None:  # nothing is above the largest key there is
            return start, start
        start = after
    if end is not None and end_inclusive:
        end = key_after(end)  # None: nothing is above it, so unbounded
    if start is not None and end is not None and start > end:  # (b, b) exclusive at both ends
        return start, start
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
