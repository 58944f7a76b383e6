"""Write batches: several operations applied atomically with one seq and one create_ts.

Rules (SlateDB's): within a batch a ``put`` or ``delete`` of a key replaces every earlier op on
that key; ``merge`` operands on a key accumulate. Keys must be non-empty bytes of at most 65,535
bytes; values at most 4 GiB - 1. Bad input raises :class:`~shale.errors.InvalidError` at once,
before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from shale.errors import InvalidError
from shale.row import MAX_KEY_LEN, MAX_VALUE_LEN, MERGE, TOMBSTONE, VALUE


@dataclass(frozen=True)
class Ttl:
    """A time-to-live choice: ``Ttl.after(ms)``, ``Ttl.at(epoch_ms)`` or ``Ttl.no_expiry()``.

    A plain ``int`` TTL means ``Ttl.after(int)``; ``None`` means the database's ``default_ttl``.
    """

    mode: str  # "after" | "at" | "never"
    ms: int = 0

    @classmethod
    def after(cls, ms: int) -> Ttl:
        return cls("after", _positive_ms(ms))

    @classmethod
    def at(cls, epoch_ms: int) -> Ttl:
        if not isinstance(epoch_ms, int) or isinstance(epoch_ms, bool) or epoch_ms < 0:
            raise InvalidError(
                "expire time must be a non-negative int of epoch milliseconds", ttl=epoch_ms
            )
        return cls("at", epoch_ms)

    @classmethod
    def no_expiry(cls) -> Ttl:
        return cls("never")

    def expire_ts(self, create_ts: int) -> int | None:
        if self.mode == "never":
            return None
        if self.mode == "at":
            return self.ms
        ts = create_ts + self.ms
        return ts if ts < 2**63 else None  # an overflowing TTL means no expiry, as SlateDB


def _positive_ms(ms: object) -> int:
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        raise InvalidError("ttl must be a positive int of milliseconds", ttl=ms)
    return ms


def to_ttl(ttl: int | Ttl | None) -> Ttl | None:
    if ttl is None or isinstance(ttl, Ttl):
        return ttl
    return Ttl.after(_positive_ms(ttl))


def check_key(key: object) -> bytes:
    if isinstance(key, (bytearray, memoryview)):
        key = bytes(key)
    if not isinstance(key, bytes):
        raise InvalidError("key must be bytes", type=type(key).__name__)
    if not key:
        raise InvalidError("key must not be empty")
    if len(key) > MAX_KEY_LEN:
        raise InvalidError("key is longer than 65535 bytes", length=len(key))
    return key


def check_value(value: object) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise InvalidError("value must be bytes", type=type(value).__name__)
    if len(value) > MAX_VALUE_LEN:
        raise InvalidError("value is longer than 4 GiB - 1 bytes", length=len(value))
    return value


class WriteBatch:
    """Operations to apply atomically with :meth:`shale.Db.write`."""

    def __init__(self) -> None:
        # key -> list of (kind, value, ttl)
        self._ops: dict[bytes, list[tuple[int, bytes, Ttl | None]]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._ops.values())

    def is_empty(self) -> bool:
        return not self._ops

    def put(self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None) -> WriteBatch:
        """Set ``key`` to ``value`` (replaces earlier ops on the key in this batch)."""
        self._ops[check_key(key)] = [(VALUE, check_value(value), to_ttl(ttl))]
        return self

    def delete(self, key: bytes) -> WriteBatch:
        """Delete ``key`` (replaces earlier ops on the key in this batch)."""
        self._ops[check_key(key)] = [(TOMBSTONE, b"", None)]
        return self

    def merge(self, key: bytes, operand: bytes, *, ttl: int | Ttl | None = None) -> WriteBatch:
        """Add a merge operand for ``key`` (operands in one batch accumulate)."""
        k = check_key(key)
        op = (MERGE, check_value(operand), to_ttl(ttl))
        self._ops.setdefault(k, []).append(op)
        return self

    def items(self) -> list[tuple[bytes, list[tuple[int, bytes, Ttl | None]]]]:
        """The ops grouped by key, keys sorted (the order rows take in the WAL)."""
        return sorted(self._ops.items())
