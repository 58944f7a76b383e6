"""The ``shale dump`` file format: versioned JSON Lines, one live key per line (``docs/backup.md``).

A dump is UTF-8 JSON Lines, one JSON object per ``\\n``-terminated line:

1. a **header**: ``{"format": "shale-dump", "version": 1, "encoding": "base64"|"escaped",
   "source": URL, "created": ISO-8601, "created_ms": epoch ms, "last_seq": int|null,
   "checkpoint": UUID|null, "start": KEY|null, "end": KEY|null}`` -- ``start``/``end`` are the
   dumped key range ``[start, end)`` (``null``: unbounded), encoded like the keys;
2. one **row** per live key, in ascending key order: ``{"key": KEY, "value": VALUE}`` plus
   ``"expire_ts": epoch ms`` when the row has a TTL;
3. an **end line**: ``{"end": true, "rows": N}``. A dump without it was cut short.

Invariants and why:

* **Readable across versions.** A reader accepts every ``version`` up to :data:`VERSION` and
  ignores object members it does not know, so later versions may add members (a newer dump
  whose meaning changed bumps ``version`` and an older shale refuses it by name).
* **Keys strictly ascend.** ``shale load --resume`` relies on it (a batch boundary is a key), so
  the reader checks it and rejects a dump that breaks it.
* **Every defect names its line.** :class:`DumpFormatError` carries the 1-based line number; the
  reader raises it before yielding anything from a bad line.

Byte encodings: ``base64`` is standard base64 with padding. ``escaped`` is readable text: the
bytes decoded as UTF-8, each byte that is not part of valid UTF-8 written as ``\\xNN`` (two
lowercase hex digits) and each backslash doubled -- so ``b"a\\\\b\\xff"`` is ``a\\\\\\\\b\\\\xff``
inside the JSON string. It is reversible for every byte string.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from shale.errors import DataError, InvalidError

__all__ = [
    "ENCODINGS",
    "FORMAT",
    "VERSION",
    "DumpFormatError",
    "DumpReader",
    "DumpWriter",
    "Header",
    "Row",
    "decode_bytes",
    "encode_bytes",
]

#: The header's ``format`` member.
FORMAT = "shale-dump"
#: The newest format version this shale writes and reads.
VERSION = 1
#: Byte encodings of keys and values.
ENCODINGS = ("base64", "escaped")

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})?")


class DumpFormatError(DataError):
    """A dump line that cannot be read: bad JSON, a bad member, a wrong version, keys out of
    order, or a dump cut short. ``line`` is the 1-based line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


# -- bytes <-> text ------------------------------------------------------------------------------


def encode_bytes(data: bytes, encoding: str) -> str:
    """``data`` as a JSON string member in ``encoding`` (``base64`` or ``escaped``)."""
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    if encoding == "escaped":
        return data.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    raise InvalidError("unknown byte encoding", encoding=encoding)


def decode_bytes(text: str, encoding: str) -> bytes:
    """The inverse of :func:`encode_bytes`. :raises ValueError: ``text`` is not valid."""
    if encoding == "base64":
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError("not valid base64") from None
    out = bytearray()
    pos = 0
    try:
        for m in _ESCAPE.finditer(text):
            out += text[pos : m.start()].encode("utf-8")
            if m.group(1) is None:
                raise ValueError("a backslash that is neither \\\\ nor \\xNN")
            out += b"\\" if m.group(1) == "\\" else bytes([int(m.group(1)[1:], 16)])
            pos = m.end()
        out += text[pos:].encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not encodable as UTF-8 (a lone surrogate)") from None
    return bytes(out)


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """A dump's first line (see the module docstring)."""

    source: str
    encoding: str = "base64"
    version: int = VERSION
    created_ms: int = 0
    last_seq: int | None = None
    checkpoint: str | None = None
    start: bytes | None = None
    end: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        created = datetime.datetime.fromtimestamp(self.created_ms / 1000, datetime.UTC)
        return {
            "format": FORMAT,
            "version": self.version,
            "encoding": self.encoding,
            "source": self.source,
            "created": created.isoformat(timespec="milliseconds"),
            "created_ms": self.created_ms,
            "last_seq": self.last_seq,
            "checkpoint": self.checkpoint,
            "start": None if self.start is None else encode_bytes(self.start, self.encoding),
            "end": None if self.end is None else encode_bytes(self.end, self.encoding),
        }


class Row(tuple[bytes, bytes, "int | None"]):
    """One dumped key: ``(key, value, expire_ts)``; ``expire_ts`` is ``None`` without a TTL."""

    __slots__ = ()

    def __new__(cls, key: bytes, value: bytes, expire_ts: int | None = None) -> Row:
        return super().__new__(cls, (key, value, expire_ts))

    @property
    def key(self) -> bytes:
        return self[0]

    @property
    def value(self) -> bytes:
        return self[1]

    @property
    def expire_ts(self) -> int | None:
        return self[2]


# -- writing -------------------------------------------------------------------------------------


class DumpWriter:
    """Writes a dump to a binary stream: the header at once, then :meth:`row` per key in
    ascending order, then :meth:`finish` (the end line). Counts ``rows`` and ``bytes``."""

    def __init__(self, out: IO[bytes], header: Header) -> None:
        if header.encoding not in ENCODINGS:
            raise InvalidError("unknown byte encoding", encoding=header.encoding)
        self._out = out
        self._enc = header.encoding
        self._last: bytes | None = None
        self.rows = 0
        self.bytes = 0
        self._line(header.to_json())

    def _line(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self._out.write(data)
        self.bytes += len(data)

    def row(self, key: bytes, value: bytes, expire_ts: int | None = None) -> None:
        """Add one key. :raises InvalidError: ``key`` is not above the previous key."""
        if self._last is not None and key <= self._last:
            raise InvalidError("dump rows must be in ascending key order", key=key)
        self._last = key
        obj: dict[str, Any] = {
            "key": encode_bytes(key, self._enc),
            "value": encode_bytes(value, self._enc),
        }
        if expire_ts is not None:
            obj["expire_ts"] = expire_ts
        self._line(obj)
        self.rows += 1

    def finish(self) -> None:
        """Write the end line (a dump without it reads as cut short)."""
        self._line({"end": True, "rows": self.rows})
        self._out.flush()


# -- reading -------------------------------------------------------------------------------------


class DumpReader:
    """Reads a dump from a binary stream: :attr:`header` on construction, then iterating
    yields :class:`Row` s in order and checks the end line.

    ``line`` is the number of the last line read and ``offset`` the bytes read so far (for a
    progress bar). :raises DumpFormatError: at the first bad line (also a missing header or end
    line); nothing of that line is yielded.
    """

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src
        self.line = 0
        self.offset = 0
        self.rows = 0
        first = self._next_obj()
        if first is None:
            raise DumpFormatError(1, "empty input: not a shale dump")
        self.header = self._parse_header(first)

    def _next_obj(self) -> dict[str, Any] | None:
        raw = self._src.readline()
        if not raw:
            return None
        self.line += 1
        self.offset += len(raw)
        if not raw.endswith(b"\n"):
            raise DumpFormatError(self.line, "truncated line (no newline at its end)")
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise DumpFormatError(self.line, f"not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise DumpFormatError(self.line, "not a JSON object")
        return obj

    def _parse_header(self, obj: dict[str, Any]) -> Header:
        if obj.get("format") != FORMAT:
            raise DumpFormatError(1, f"not a shale dump (the header's format is not {FORMAT!r})")
        version = obj.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise DumpFormatError(1, f"bad format version {version!r}")
        if version > VERSION:
            raise DumpFormatError(
                1, f"dump format version {version} is newer than this shale reads ({VERSION})"
            )
        encoding = obj.get("encoding")
        if encoding not in ENCODINGS:
            raise DumpFormatError(1, f"unknown encoding {encoding!r}")
        source = obj.get("source")
        last_seq = obj.get("last_seq")
        created_ms = obj.get("created_ms", 0)
        checkpoint = obj.get("checkpoint")
        bounds = []
        for name in ("start", "end"):
            text = obj.get(name)
            bounds.append(None if text is None else self._bytes(text, encoding, name))
        if not isinstance(source, str):
            raise DumpFormatError(1, "the header has no source")
        if last_seq is not None and not _is_int(last_seq):
            raise DumpFormatError(1, "bad last_seq")
        if not _is_int(created_ms) or not (checkpoint is None or isinstance(checkpoint, str)):
            raise DumpFormatError(1, "bad created_ms or checkpoint")
        return Header(source, encoding, version, created_ms, last_seq, checkpoint, *bounds)

    def _bytes(self, text: object, encoding: str, what: str) -> bytes:
        if not isinstance(text, str):
            raise DumpFormatError(self.line, f"{what} is not a string")
        try:
            return decode_bytes(text, encoding)
        except ValueError as exc:
            raise DumpFormatError(self.line, f"bad {what}: {exc}") from None

    def __iter__(self) -> Iterator[Row]:
        enc = self.header.encoding
        start, end = self.header.start, self.header.end
        last: bytes | None = None
        while True:
            obj = self._next_obj()
            if obj is None:
                raise DumpFormatError(
                    self.line + 1, f"the dump was cut short: no end line after {self.rows} rows"
                )
            if "end" in obj:
                if obj.get("end") is not True or obj.get("rows") != self.rows:
                    raise DumpFormatError(
                        self.line, f"end line says rows={obj.get('rows')!r}, read {self.rows}"
                    )
                if self._src.readline():
                    raise DumpFormatError(self.line + 1, "data after the end line")
                return
            key = self._bytes(obj.get("key"), enc, "key")
            value = self._bytes(obj.get("value"), enc, "value")
            expire_ts = obj.get("expire_ts")
            if expire_ts is not None and (not _is_int(expire_ts) or expire_ts < 0):
                raise DumpFormatError(self.line, "bad expire_ts")
            if not key:
                raise DumpFormatError(self.line, "empty key")
            if last is not None and key <= last:
                raise DumpFormatError(self.line, "keys are not in ascending order")
            if (start is not None and key < start) or (end is not None and key >= end):
                raise DumpFormatError(self.line, "key outside the header's start/end range")
            last = key
            self.rows += 1
            yield Row(key, value, expire_ts)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
