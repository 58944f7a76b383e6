"""Identifiers and object names (FORMAT.md section 2).

- Manifest, ``.compactions`` and WAL ids are u64 counters written as 20 zero-padded digits.
- Compacted SSTs (L0 and sorted runs), SST views and compactions are named by ULIDs: a 48-bit
  millisecond timestamp and 80 random bits, written as 26 Crockford base-32 characters.
- Checkpoints are named by random UUIDv4s.

Ids and randomness are injectable: pass ``now_ms`` and ``rand`` to :meth:`Ulid.new`.
"""

from __future__ import annotations

import os
import random as _random
from dataclasses import dataclass

from shale.errors import DataError, InvalidError

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}
# Crockford decoding also accepts lower case and the usual look-alikes.
_DECODE.update({c.lower(): i for c, i in list(_DECODE.items())})
_DECODE.update({"I": 1, "i": 1, "L": 1, "l": 1, "O": 0, "o": 0})

U64_MAX = 2**64 - 1


def location(value: object, what: str = "path", *, allow_empty: bool = False) -> str:
    """A database's location (a path, a ``pathlib.Path`` or any ``os.PathLike``, or a URL) as
    the ``str`` the stores take.

    :raises InvalidError: not a ``str`` or a ``str`` path-like, empty (unless
        ``allow_empty``: an explicit object store roots it), or holding a NUL.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or (not value and not allow_empty) or "\x00" in value:
        raise InvalidError(
            f"{what} must be a non-empty str or os.PathLike without NUL", **{what: value}
        )
    return value


@dataclass(frozen=True, order=True, slots=True)
class Ulid:
    """A 128-bit ULID; ordering follows the value, so the timestamp first."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value < 2**128:
            raise InvalidError("ULID out of range", value=self.value)

    @classmethod
    def new(cls, now_ms: int, rand: _random.Random | None = None) -> Ulid:
        """A ULID for ``now_ms`` with 80 random bits (from ``rand`` when given)."""
        bits = rand.getrandbits(80) if rand is not None else int.from_bytes(os.urandom(10), "big")
        return cls(((now_ms & (2**48 - 1)) << 80) | bits)

    @classmethod
    def parse(cls, text: str) -> Ulid:
        """Parse the 26-character text form. :raises DataError: malformed text."""
        if len(text) != 26:
            raise DataError("malformed ULID", text=text)
        value = 0
        try:
            for ch in text:
                value = (value << 5) | _DECODE[ch]
        except KeyError:
            raise DataError("malformed ULID", text=text) from None
        if value >= 2**128:
            raise DataError("ULID overflows 128 bits", text=text)
        return cls(value)

    @classmethod
    def from_parts(cls, high: int, low: int) -> Ulid:
        """From the FlatBuffers ``Ulid { high, low }`` pair."""
        return cls((high << 64) | low)

    @property
    def high(self) -> int:
        return self.value >> 64

    @property
    def low(self) -> int:
        return self.value & U64_MAX

    @property
    def timestamp_ms(self) -> int:
        return self.value >> 80

    def __str__(self) -> str:
        v = self.value
        out = []
        for _ in range(26):
            out.append(_CROCKFORD[v & 31])
            v >>= 5
        return "".join(reversed(out))

    def __repr__(self) -> str:
        return f"Ulid({str(self)!r})"


def format_id(n: int) -> str:
    """A u64 id as the 20-digit zero-padded name SlateDB uses."""
    if not 0 <= n <= U64_MAX:
        raise InvalidError("id out of u64 range", id=n)
    return f"{n:020d}"


def join(root: str, *parts: str) -> str:
    """``root/part/...`` as an object-store path; an empty ``root`` adds nothing."""
    if not isinstance(root, str):
        raise InvalidError("a database root must be a str", type=type(root).__name__)
    root = root.strip("/")
    return "/".join([root, *parts]) if root else "/".join(parts)


_join = join


def manifest_path(root: str, manifest_id: int) -> str:
    return _join(root, "manifest", format_id(manifest_id) + ".manifest")


def compactions_path(root: str, compactions_id: int) -> str:
    return _join(root, "compactions", format_id(compactions_id) + ".compactions")


def wal_path(root: str, wal_id: int) -> str:
    return _join(root, "wal", format_id(wal_id) + ".sst")


def compacted_path(root: str, sst_id: Ulid) -> str:
    return _join(root, "compacted", str(sst_id) + ".sst")


def dir_path(root: str, name: str) -> str:
    """The prefix of one directory of the database, with a trailing slash."""
    return _join(root, name) + "/"


def parse_numbered(name: str, extension: str) -> int | None:
    """The u64 id of ``00000000000000000007.manifest``-style names, or ``None`` if not one."""
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(extension):
        return None
    stem = base[: -len(extension)]
    if not stem.isdigit():
        return None
    n = int(stem)
    return n if n <= U64_MAX else None


def parse_compacted(name: str) -> Ulid | None:
    """The ULID of a ``compacted/<ULID>.sst`` name, or ``None`` if not one."""
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(".sst"):
        return None
    try:
        return Ulid.parse(base[:-4])
    except DataError:
        return None
