"""The arguments of a write: keys, values and TTLs, and their checks (:class:`Ttl`,
:func:`check_key`, :func:`check_value`, :func:`to_ttl`).

Keys must be non-empty bytes of at most 65,535 bytes; values at most 4 GiB - 1; ``bytearray``
and ``memoryview`` are copied to ``bytes``. Bad input raises :class:`~shale.errors.InvalidError`
at once, before anything is written. :mod:`shale.batch` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass

from shale.errors import InvalidError
from shale.row import MAX_KEY_LEN, MAX_VALUE_LEN

#: Largest ``expire_ts`` a row can store (an i64 of epoch milliseconds).
MAX_EXPIRE_TS = 2**63 - 1
#: Largest relative TTL, in milliseconds (SlateDB's ``Ttl::ExpireAfter`` takes a u64).
MAX_TTL_MS = 2**64 - 1

_MODES = ("after", "at", "never")


@dataclass(frozen=True)
class Ttl:
    """A time-to-live choice: ``Ttl.after(ms)``, ``Ttl.at(epoch_ms)`` or ``Ttl.no_expiry()``.

    A plain ``int`` TTL means ``Ttl.after(int)``; ``None`` means the database's ``default_ttl``.
    Every value is checked when the ``Ttl`` is made (also by the constructor), so a bad TTL
    raises :class:`~shale.errors.InvalidError` before anything is written:

    * ``after``: an ``int`` of milliseconds in ``[1, 2**64 - 1]`` (not a ``bool``, not a float);
      an expiry past the i64 range (``create_ts + ms >= 2**63``) means *no expiry*, as in
      SlateDB (FEATURES.md: "a TTL that overflows means no TTL");
    * ``at``: an ``int`` of epoch milliseconds in ``[0, 2**63 - 1]`` (the stored ``expire_ts``
      is an i64).
    """

    mode: str  # "after" | "at" | "never"
    ms: int = 0

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise InvalidError("ttl mode must be 'after', 'at' or 'never'", mode=self.mode)
        if self.mode == "after":
            _after_ms(self.ms)
        elif self.mode == "at":
            _epoch_ms(self.ms)
        elif self.ms != 0:
            raise InvalidError("a no-expiry ttl takes no milliseconds", ms=self.ms)

    @classmethod
    def after(cls, ms: int) -> Ttl:
        """Expire ``ms`` milliseconds after the write's ``create_ts``.

        :raises InvalidError: ``ms`` is not an int in ``[1, 2**64 - 1]``.
        """
        return cls("after", _after_ms(ms))

    @classmethod
    def at(cls, epoch_ms: int) -> Ttl:
        """Expire at ``epoch_ms`` (milliseconds since the Unix epoch).

        :raises InvalidError: ``epoch_ms`` is not an int in ``[0, 2**63 - 1]``.
        """
        return cls("at", _epoch_ms(epoch_ms))

    @classmethod
    def no_expiry(cls) -> Ttl:
        """Never expire (not even with a ``default_ttl``)."""
        return cls("never")

    def expire_ts(self, create_ts: int) -> int | None:
        """The ``expire_ts`` of a row written at ``create_ts`` (``None``: never expires)."""
        if self.mode == "never":
            return None
        if self.mode == "at":
            return self.ms
        return expire_after(create_ts, self.ms)


def expire_after(create_ts: int, ms: int) -> int | None:
    """``create_ts + ms``, or ``None`` (no expiry) when that overflows an i64, as SlateDB does."""
    ts = create_ts + ms
    return ts if ts <= MAX_EXPIRE_TS else None


def _after_ms(ms: object) -> int:
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 < ms <= MAX_TTL_MS:
        raise InvalidError("ttl must be a positive int of milliseconds, at most 2**64 - 1", ttl=ms)
    return ms


def _epoch_ms(epoch_ms: object) -> int:
    if (
        not isinstance(epoch_ms, int)
        or isinstance(epoch_ms, bool)
        or not 0 <= epoch_ms <= MAX_EXPIRE_TS
    ):
        raise InvalidError(
            "expire time must be an int of epoch milliseconds in [0, 2**63 - 1]", ttl=epoch_ms
        )
    return epoch_ms


def to_ttl(ttl: object) -> Ttl | None:
    """``ttl`` as a :class:`Ttl` (an ``int`` is ``Ttl.after``), or ``None`` for the default.

    :raises InvalidError: anything else, or an int out of range.
    """
    if ttl is None or isinstance(ttl, Ttl):
        return ttl
    return Ttl.after(_after_ms(ttl))


def check_key(key: object) -> bytes:
    if type(key) is bytes and 0 < len(key) <= MAX_KEY_LEN:  # the common case, first
        return key
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
    if type(value) is bytes and len(value) <= MAX_VALUE_LEN:  # the common case, first
        return value
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise InvalidError("value must be bytes", type=type(value).__name__)
    if len(value) > MAX_VALUE_LEN:
        raise InvalidError("value is longer than 4 GiB - 1 bytes", length=len(value))
    return value
