"""Key and value codecs: Python objects to the bytes shale stores, and back.

shale keys and values are bytes. These codecs turn common Python values into bytes so that users
stop hand-rolling big-endian encodings (docs/codecs.md):

* **Key codecs preserve order**: ``a < b`` implies ``encode(a) < encode(b)`` as bytes, so a scan
  returns keys in the order of the values they encode. :data:`TUPLE` (FoundationDB's tuple
  layer: ``None``, ``bytes``, ``str``, ``int`` of any size, ``float``, ``bool``, nested tuples),
  :class:`Int` (fixed width, signed or not), :data:`STR` (UTF-8) and :data:`BYTES`.
* **Value codecs** need not preserve order: :data:`JSON`, :data:`MSGPACK` (when the ``msgpack``
  package is installed), and the key codecs.

A codec has ``encode(obj) -> bytes`` and ``decode(data) -> obj``; an order-preserving one also
``prefix_range(prefix) -> (start, end)``, the key range of every encoding that starts with the
encoding of ``prefix`` (for a tuple: every tuple that starts with the prefix's elements).
``encode`` raises :class:`~shale.InvalidError` for a value it cannot encode; ``decode`` raises
:class:`~shale.DataError` for bytes that are not a valid encoding.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Protocol, TypeVar

from shale.errors import DataError, InvalidError
from shale.keys import prefix_end

__all__ = [
    "BYTES",
    "JSON",
    "MSGPACK",
    "STR",
    "TUPLE",
    "BytesCodec",
    "Codec",
    "Int",
    "JsonCodec",
    "KeyCodec",
    "MsgpackCodec",
    "StrCodec",
    "TupleCodec",
]

T = TypeVar("T")


class Codec(Protocol[T]):
    """Objects of one kind to bytes and back."""

    name: str

    def encode(self, obj: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...


class KeyCodec(Codec[T], Protocol[T]):
    """A codec whose encodings sort like the values (usable for keys)."""

    def prefix_range(self, prefix: Any) -> tuple[bytes | None, bytes | None]: ...


def _byte_prefix_range(prefix: bytes) -> tuple[bytes | None, bytes | None]:
    return (prefix or None), prefix_end(prefix) if prefix else None


class BytesCodec:
    """Bytes as they are (``bytearray`` and ``memoryview`` are copied to ``bytes``)."""

    name = "bytes"

    def encode(self, obj: bytes) -> bytes:
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        if not isinstance(obj, bytes):
            raise InvalidError("the bytes codec encodes bytes", type=type(obj).__name__)
        return obj

    def decode(self, data: bytes) -> bytes:
        return bytes(data)

    def prefix_range(self, prefix: bytes) -> tuple[bytes | None, bytes | None]:
        """Every key starting with ``prefix``."""
        return _byte_prefix_range(self.encode(prefix))


class StrCodec:
    """``str`` as UTF-8 (which sorts like the strings' code points)."""

    name = "str"

    def encode(self, obj: str) -> bytes:
        if not isinstance(obj, str):
            raise InvalidError("the str codec encodes str", type=type(obj).__name__)
        try:
            return obj.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise InvalidError("the string is not valid Unicode", error=str(exc)) from None

    def decode(self, data: bytes) -> str:
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError("stored bytes are not UTF-8", error=str(exc)) from None

    def prefix_range(self, prefix: str) -> tuple[bytes | None, bytes | None]:
        """Every string starting with ``prefix``."""
        return _byte_prefix_range(self.encode(prefix))


class Int:
    """Integers as fixed-width big-endian bytes that sort like the numbers.

    ``Int(8)`` (the default) holds a signed 64-bit int: the sign bit is flipped so negative
    numbers sort first. ``Int(4, signed=False)`` holds 0 .. 2**32 - 1.

    :raises InvalidError: ``width`` is not 1..16.
    """

    def __init__(self, width: int = 8, *, signed: bool = True) -> None:
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 16:
            raise InvalidError("Int width must be 1..16 bytes", width=width)
        self.width = width
        self.signed = bool(signed)
        bits = 8 * width
        self._offset = 1 << (bits - 1) if signed else 0
        self._min = -self._offset
        self._max = (1 << bits) - 1 - self._offset
        self.name = f"int{bits}" if signed else f"uint{bits}"

    def encode(self, obj: int) -> bytes:
        if not isinstance(obj, int) or isinstance(obj, bool):
            raise InvalidError(f"the {self.name} codec encodes int", type=type(obj).__name__)
        if not self._min <= obj <= self._max:
            raise InvalidError(
                f"{obj} does not fit {self.name}", minimum=self._min, maximum=self._max
            )
        return (obj + self._offset).to_bytes(self.width, "big")

    def decode(self, data: bytes) -> int:
        if len(data) != self.width:
            raise DataError(f"a {self.name} is {self.width} bytes", length=len(data))
        return int.from_bytes(data, "big") - self._offset

    def prefix_range(self, prefix: int) -> tuple[bytes | None, bytes | None]:
        """Exactly ``prefix`` (a fixed-width int has no longer keys starting with it)."""
        key = self.encode(prefix)
        return key, key + b"\x00"

    def __repr__(self) -> str:
        return f"Int({self.width}, signed={self.signed})"


class JsonCodec:
    """JSON values (compact, UTF-8; ``NaN`` and infinities refused, as JSON has none)."""

    name = "json"

    def __init__(self, *, sort_keys: bool = False) -> None:
        self._sort_keys = sort_keys

    def encode(self, obj: Any) -> bytes:
        try:
            text = json.dumps(
                obj,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
                sort_keys=self._sort_keys,
            )
        except (TypeError, ValueError) as exc:
            raise InvalidError("the value is not JSON-serialisable", error=str(exc)) from None
        return text.encode("utf-8", "surrogatepass")

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(bytes(data).decode("utf-8", "surrogatepass"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DataError("stored bytes are not JSON", error=str(exc)) from None


class MsgpackCodec:
    """MessagePack values, through the ``msgpack`` package (``pip install msgpack``).

    :raises InvalidError: on use, when ``msgpack`` is not installed.
    """

    name = "msgpack"

    def _module(self) -> Any:
        try:
            import msgpack  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise InvalidError(
                "the msgpack codec needs the msgpack package: pip install msgpack"
            ) from None
        return msgpack

    def encode(self, obj: Any) -> bytes:
        mp = self._module()
        try:
            data: bytes = mp.packb(obj, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidError("the value is not msgpack-serialisable", error=str(exc)) from None
        return data

    def decode(self, data: bytes) -> Any:
        mp = self._module()
        try:
            return mp.unpackb(bytes(data), raw=False)
        except Exception as exc:
            raise DataError("stored bytes are not msgpack", error=str(exc)) from None


# -- the tuple layer -----------------------------------------------------------------------------

_NULL, _BYTES, _STR, _NESTED = 0x00, 0x01, 0x02, 0x05
_INT_ZERO, _POS_BIG, _NEG_BIG = 0x14, 0x1D, 0x0B
_DOUBLE, _FALSE, _TRUE = 0x21, 0x26, 0x27
_ESCAPED_NULL = b"\x00\xff"


def _escape(data: bytes) -> bytes:
    return data.replace(b"\x00", _ESCAPED_NULL) + b"\x00"


def _encode_int(n: int, out: bytearray) -> None:
    if n == 0:
        out.append(_INT_ZERO)
        return
    size = (abs(n).bit_length() + 7) // 8
    if size <= 8:
        if n > 0:
            out.append(_INT_ZERO + size)
            out += n.to_bytes(size, "big")
        else:
            out.append(_INT_ZERO - size)
            out += (n + (1 << (8 * size)) - 1).to_bytes(size, "big")
        return
    if size > 255:
        raise InvalidError("a tuple int is at most 255 bytes long", bits=abs(n).bit_length())
    if n > 0:
        out.append(_POS_BIG)
        out.append(size)
        out += n.to_bytes(size, "big")
    else:
        out.append(_NEG_BIG)
        out.append(size ^ 0xFF)
        out += (n + (1 << (8 * size)) - 1).to_bytes(size, "big")


def _encode_double(x: float, out: bytearray) -> None:
    raw = bytearray(struct.pack(">d", x))
    if raw[0] & 0x80:  # negative: flip every bit
        raw = bytearray(b ^ 0xFF for b in raw)
    else:  # positive: flip the sign bit
        raw[0] ^= 0x80
    out.append(_DOUBLE)
    out += raw


def _encode_item(item: object, out: bytearray, nested: bool) -> None:
    if item is None:
        out += _ESCAPED_NULL if nested else b"\x00"
    elif item is True:
        out.append(_TRUE)
    elif item is False:
        out.append(_FALSE)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        out.append(_BYTES)
        out += _escape(bytes(item))
    elif isinstance(item, str):
        out.append(_STR)
        out += _escape(StrCodec().encode(item))
    elif isinstance(item, int):
        _encode_int(item, out)
    elif isinstance(item, float):
        if math.isnan(item):
            raise InvalidError("NaN has no place in a key order")
        _encode_double(item, out)
    elif isinstance(item, tuple):
        out.append(_NESTED)
        for sub in item:
            _encode_item(sub, out, True)
        out.append(0x00)
    else:
        raise InvalidError(
            "a tuple key holds None, bytes, str, int, float, bool and tuples",
            type=type(item).__name__,
        )


def _find_terminator(data: bytes, pos: int) -> int:
    while True:
        end = data.find(b"\x00", pos)
        if end < 0:
            raise DataError("an unterminated string in a tuple key")
        if end + 1 < len(data) and data[end + 1] == 0xFF:
            pos = end + 2
            continue
        return end


def _decode_item(data: bytes, pos: int, nested: bool) -> tuple[object, int]:
    code = data[pos]
    pos += 1
    if code == _NULL:
        if nested:
            if pos < len(data) and data[pos] == 0xFF:
                return None, pos + 1
            raise DataError("a bare null inside a nested tuple")
        return None, pos
    if code in (_BYTES, _STR):
        end = _find_terminator(data, pos)
        raw = data[pos:end].replace(_ESCAPED_NULL, b"\x00")
        return (raw if code == _BYTES else StrCodec().decode(raw)), end + 1
    if code == _NESTED:
        items: list[object] = []
        while True:
            if pos >= len(data):
                raise DataError("an unterminated nested tuple in a tuple key")
            if data[pos] == 0x00 and not (pos + 1 < len(data) and data[pos + 1] == 0xFF):
                return tuple(items), pos + 1
            item, pos = _decode_item(data, pos, True)
            items.append(item)
    if _INT_ZERO - 8 <= code <= _INT_ZERO + 8:
        size = abs(code - _INT_ZERO)
        if pos + size > len(data):
            raise DataError("a truncated int in a tuple key")
        n = int.from_bytes(data[pos : pos + size], "big")
        if code < _INT_ZERO:
            n -= (1 << (8 * size)) - 1
        return n, pos + size
    if code in (_POS_BIG, _NEG_BIG):
        if pos >= len(data):
            raise DataError("a truncated int in a tuple key")
        size = data[pos] if code == _POS_BIG else data[pos] ^ 0xFF
        pos += 1
        if pos + size > len(data):
            raise DataError("a truncated int in a tuple key")
        n = int.from_bytes(data[pos : pos + size], "big")
        if code == _NEG_BIG:
            n -= (1 << (8 * size)) - 1
        return n, pos + size
    if code == _DOUBLE:
        if pos + 8 > len(data):
            raise DataError("a truncated float in a tuple key")
        word = bytearray(data[pos : pos + 8])
        if word[0] & 0x80:
            word[0] ^= 0x80
        else:
            word = bytearray(b ^ 0xFF for b in word)
        return struct.unpack(">d", bytes(word))[0], pos + 8
    if code == _FALSE:
        return False, pos
    if code == _TRUE:
        return True, pos
    raise DataError("an unknown type code in a tuple key", code=code)


class TupleCodec:
    """Tuples as FoundationDB's tuple layer encodes them: order-preserving, self-delimiting.

    Elements: ``None``, ``bytes``, ``str``, ``int`` (any size up to 255 bytes), ``float`` (not
    NaN), ``bool`` and nested tuples. Within one type, encodings sort like the values (tuples
    element by element, a shorter tuple before its extensions); across types, by type:
    ``None < bytes < str < tuple < int < float < bool`` (so ``1`` sorts before ``0.5``).
    A scalar passed to :meth:`encode` is a one-element tuple.
    """

    name = "tuple"

    def encode(self, obj: tuple[Any, ...] | Any) -> bytes:
        items = obj if isinstance(obj, tuple) else (obj,)
        out = bytearray()
        for item in items:
            _encode_item(item, out, False)
        return bytes(out)

    def decode(self, data: bytes) -> tuple[Any, ...]:
        data = bytes(data)
        items = []
        pos = 0
        try:
            while pos < len(data):
                item, pos = _decode_item(data, pos, False)
                items.append(item)
        except IndexError:
            raise DataError("a truncated tuple key") from None
        return tuple(items)

    def prefix_range(self, prefix: tuple[Any, ...] | Any) -> tuple[bytes | None, bytes | None]:
        """Every tuple whose first elements are ``prefix``'s (``()``: every tuple)."""
        return _byte_prefix_range(self.encode(prefix))


#: Bytes as they are.
BYTES = BytesCodec()
#: ``str`` as UTF-8.
STR = StrCodec()
#: FoundationDB-style tuples (order-preserving).
TUPLE = TupleCodec()
#: JSON values.
JSON = JsonCodec()
#: MessagePack values (needs ``msgpack``).
MSGPACK = MsgpackCodec()
