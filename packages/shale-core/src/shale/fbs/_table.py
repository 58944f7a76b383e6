"""Bounds-checked FlatBuffers reading, and the writing helpers shared by the codecs.

Reading (:class:`Reader`, :class:`Table`) follows the schema, never the data: every offset is
checked before it is followed, so any malformed buffer -- truncated, bit-flipped, hostile --
raises :class:`~shale.errors.DataError` and nothing else. The checks are those of the
flatbuffers verifier (FORMAT.md section 5), minus alignment, which we do not need because
``struct`` reads unaligned data:

- the root offset, every table, vtable, vector and string lies inside the buffer;
- a vtable is at least 4 bytes, of even length, and every field lies inside its table;
- required fields are present (the caller says which are required);
- nesting depth is bounded (:data:`MAX_DEPTH`) and so is the number of tables visited
  (one per 4 bytes of buffer; a buffer written by a FlatBuffers builder never shares tables,
  so a real file cannot exceed it). This bounds the work a crafted DAG of shared offsets can
  cause, so decoding never hangs.

Writing uses ``flatbuffers.Builder`` (``force_defaults`` off, vtables deduplicated against every
vtable written before, as Rust's builder does). FORMAT.md section 4: the bytes equal SlateDB's
when fields are added in flatc's order (8-byte scalars, then 4-byte fields and offsets, then
2-byte, then 1-byte; reverse declaration order within a size) and children are created in the
order the Rust code visits them. Each codec module states its orders next to the code.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import flatbuffers

from shale.errors import DataError, InvalidError
from shale.ids import Ulid

__all__ = [
    "MAX_DEPTH",
    "Reader",
    "Table",
    "add_ulid",
    "add_uuid",
    "check_int",
    "check_uint",
    "create_offset_vector",
    "create_u32_vector",
    "decode_guard",
    "finish",
    "new_builder",
    "read_ulid",
    "read_uuid",
]

#: Deepest nesting of tables a reader follows. SlateDB's deepest path is about 7 levels
#: (manifest -> segment -> run -> view -> range -> bound -> key); the verifier allows 64.
MAX_DEPTH = 64

_U8 = struct.Struct("<B")
_I8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")

T = TypeVar("T")


class Reader:
    """One FlatBuffer being read: the bytes, a label for errors, and the table budget."""

    __slots__ = ("budget", "buf", "size", "what")

    def __init__(self, buf: bytes | bytearray | memoryview, what: str) -> None:
        self.buf = bytes(buf)
        self.size = len(self.buf)
        self.what = what
        # A builder never shares tables, and every table takes at least 4 bytes.
        self.budget = self.size // 4 + 1

    def fail(self, message: str, **detail: object) -> DataError:
        """A :class:`DataError` naming the object being decoded."""
        return DataError(f"malformed {self.what}: {message}", **detail)

    def root(self) -> Table:
        """The root table (``u32le`` offset at byte 0; no identifier, no size prefix)."""
        if self.size < 4:
            raise self.fail("buffer shorter than the root offset", size=self.size)
        return self.table_at(_U32.unpack_from(self.buf, 0)[0], 0)

    def table_at(self, pos: int, depth: int) -> Table:
        """The table whose ``soffset`` sits at ``pos``."""
        if depth > MAX_DEPTH:
            raise self.fail("tables nested too deeply", depth=depth)
        self.budget -= 1
        if self.budget < 0:
            raise self.fail("more tables than the buffer can hold")
        size = self.size
        if pos < 0 or pos + 4 > size:
            raise self.fail("table out of bounds", pos=pos, size=size)
        vt = pos - _I32.unpack_from(self.buf, pos)[0]
        if vt < 0 or vt + 4 > size:
            raise self.fail("vtable out of bounds", pos=vt, size=size)
        vt_len, obj_len = struct.unpack_from("<HH", self.buf, vt)
        if vt_len < 4 or vt_len & 1 or vt + vt_len > size:
            raise self.fail("bad vtable", pos=vt, vtable_len=vt_len)
        if obj_len < 4 or pos + obj_len > size:
            raise self.fail("bad table size", pos=pos, table_len=obj_len)
        return Table(self, pos, vt, vt_len, obj_len, depth)

    def vector_at(self, ref: int, elem_size: int) -> tuple[int, int]:
        """Follow the ``uoffset`` at ``ref`` to a vector: ``(first element pos, count)``."""
        start = ref + _U32.unpack_from(self.buf, ref)[0]
        if start + 4 > self.size:
            raise self.fail("vector out of bounds", pos=start, size=self.size)
        count = _U32.unpack_from(self.buf, start)[0]
        if start + 4 + count * elem_size > self.size:
            raise self.fail("vector overruns buffer", pos=start, count=count, size=self.size)
        return start + 4, count


class Table:
    """A verified table: its position, vtable, and typed accessors by slot number.

    Scalar accessors return the schema default when the field is absent. Offset accessors
    return ``None`` when absent unless ``required`` is set, in which case absence is a
    :class:`DataError`.
    """

    __slots__ = ("_depth", "_obj_len", "_pos", "_reader", "_vt", "_vt_len")

    def __init__(
        self, reader: Reader, pos: int, vt: int, vt_len: int, obj_len: int, depth: int
    ) -> None:
        self._reader = reader
        self._pos = pos
        self._vt = vt
        self._vt_len = vt_len
        self._obj_len = obj_len
        self._depth = depth

    # -- locating fields ---------------------------------------------------------------------

    def _field(self, slot: int, size: int) -> int:
        """Absolute position of field ``slot`` (``size`` bytes), or 0 if absent."""
        vo = 4 + 2 * slot
        if vo + 2 > self._vt_len:
            return 0
        off: int = _U16.unpack_from(self._reader.buf, self._vt + vo)[0]
        if off == 0:
            return 0
        if off < 4 or off + size > self._obj_len:
            raise self._reader.fail("field outside its table", slot=slot, offset=off)
        return self._pos + off

    def fail(self, message: str, **detail: object) -> DataError:
        """A :class:`DataError` naming the object being decoded."""
        return self._reader.fail(message, **detail)

    def has(self, slot: int) -> bool:
        """Whether the field is present at all."""
        return self._field(slot, 1) != 0

    def _missing(self, slot: int, name: str) -> DataError:
        return self._reader.fail("required field missing", field=name, slot=slot)

    # -- scalars -----------------------------------------------------------------------------

    def _scalar(self, slot: int, st: struct.Struct, default: int) -> int:
        p = self._field(slot, st.size)
        if p == 0:
            return default
        value: int = st.unpack_from(self._reader.buf, p)[0]
        return value

    def u8(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _U8, default)

    def i8(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _I8, default)

    def u16(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _U16, default)

    def u32(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _U32, default)

    def u64(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _U64, default)

    def i64(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _I64, default)

    def boolean(self, slot: int, default: bool = False) -> bool:
        return bool(self._scalar(slot, _U8, int(default)))

    def opt_u16(self, slot: int) -> int | None:
        """A ``uint16 = null`` field: ``None`` when absent."""
        p = self._field(slot, 2)
        if p == 0:
            return None
        value: int = _U16.unpack_from(self._reader.buf, p)[0]
        return value

    # -- offsets -----------------------------------------------------------------------------

    def table(self, slot: int, name: str, required: bool = False) -> Table | None:
        """The child table at ``slot``."""
        p = self._field(slot, 4)
        if p == 0:
            if required:
                raise self._missing(slot, name)
            return None
        target = p + _U32.unpack_from(self._reader.buf, p)[0]
        return self._reader.table_at(target, self._depth + 1)

    def req_table(self, slot: int, name: str) -> Table:
        """The child table at ``slot``; absence is a :class:`DataError`."""
        t = self.table(slot, name, required=True)
        assert t is not None
        return t

    def byte_vector(self, slot: int, name: str, required: bool = False) -> bytes | None:
        """A ``[ubyte]`` field as ``bytes``."""
        p = self._field(slot, 4)
        if p == 0:
            if required:
                raise self._missing(slot, name)
            return None
        start, count = self._reader.vector_at(p, 1)
        return self._reader.buf[start : start + count]

    def string(self, slot: int, name: str, required: bool = False) -> str | None:
        """A ``string`` field, decoded as strict UTF-8."""
        raw = self.byte_vector(slot, name, required)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._reader.fail("string is not UTF-8", field=name) from None

    def u32_vector(self, slot: int, name: str, required: bool = False) -> list[int] | None:
        """A ``[uint32]`` field."""
        p = self._field(slot, 4)
        if p == 0:
            if required:
                raise self._missing(slot, name)
            return None
        start, count = self._reader.vector_at(p, 4)
        return list(struct.unpack_from(f"<{count}I", self._reader.buf, start))

    def tables(self, slot: int, name: str, required: bool = False) -> list[Table] | None:
        """A vector of tables."""
        p = self._field(slot, 4)
        if p == 0:
            if required:
                raise self._missing(slot, name)
            return None
        start, count = self._reader.vector_at(p, 4)
        reader = self._reader
        buf = reader.buf
        depth = self._depth + 1
        out = []
        for i in range(count):
            ref = start + 4 * i
            out.append(reader.table_at(ref + _U32.unpack_from(buf, ref)[0], depth))
        return out

    def req_tables(self, slot: int, name: str) -> list[Table]:
        """A required vector of tables."""
        t = self.tables(slot, name, required=True)
        assert t is not None
        return t

    def map_tables(
        self, slot: int, name: str, fn: Callable[[Table], T], required: bool = False
    ) -> list[T] | None:
        """``[fn(t) for t in tables(slot)]``, or ``None`` when absent and not required."""
        ts = self.tables(slot, name, required)
        return None if ts is None else [fn(t) for t in ts]


def decode_guard(what: str, fn: Callable[[], T]) -> T:
    """Run a decoder, turning any stray low-level exception into :class:`DataError`.

    The reader checks bounds itself; this is the belt to those braces, so that a decoder bug
    on hostile input still surfaces as corrupt data rather than as an ``IndexError``.
    """
    try:
        return fn()
    except DataError:
        raise
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError, TypeError) as exc:
        raise DataError(f"malformed {what}: {exc.__class__.__name__}: {exc}") from exc


def read_ulid(t: Table) -> Ulid:
    """``table Ulid { high: u64 (0); low: u64 (1) }``."""
    return Ulid.from_parts(t.u64(0), t.u64(1))


def read_uuid(t: Table) -> uuid.UUID:
    """``table Uuid { high: u64 (0); low: u64 (1) }``; high = first 8 bytes, big-endian."""
    return uuid.UUID(int=(t.u64(0) << 64) | t.u64(1))


# -- writing -----------------------------------------------------------------------------------


def new_builder(initial_size: int = 1024) -> flatbuffers.Builder:
    """A builder configured like SlateDB's: defaults are not serialized."""
    b = flatbuffers.Builder(initial_size)
    b.ForceDefaults(False)
    return b


def check_uint(name: str, value: int, bits: int) -> int:
    """``value`` if it is an unsigned ``bits``-bit integer, else :class:`InvalidError`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise InvalidError(f"{name} must be a u{bits}", value=value)
    return value


def check_int(name: str, value: int, bits: int) -> int:
    """``value`` if it is a signed ``bits``-bit integer, else :class:`InvalidError`."""
    lim = 1 << (bits - 1)
    if not isinstance(value, int) or isinstance(value, bool) or not -lim <= value < lim:
        raise InvalidError(f"{name} must be an i{bits}", value=value)
    return value


def add_ulid(b: flatbuffers.Builder, ulid: Ulid) -> int:
    """Write ``Ulid { high, low }``; add order: low, high."""
    b.StartObject(2)
    b.PrependUint64Slot(1, ulid.low, 0)
    b.PrependUint64Slot(0, ulid.high, 0)
    off: int = b.EndObject()
    return off


def add_uuid(b: flatbuffers.Builder, value: uuid.UUID) -> int:
    """Write ``Uuid { high, low }``; add order: low, high."""
    n = value.int
    b.StartObject(2)
    b.PrependUint64Slot(1, n & 0xFFFF_FFFF_FFFF_FFFF, 0)
    b.PrependUint64Slot(0, n >> 64, 0)
    off: int = b.EndObject()
    return off


def create_offset_vector(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    """A vector of already-written tables (Rust ``create_vector(&[WIPOffset])``)."""
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    end: int = b.EndVector()
    return end


def create_u32_vector(b: flatbuffers.Builder, values: Iterable[int], name: str) -> int:
    """A ``[uint32]`` vector (Rust ``create_vector(&[u32])``)."""
    vals = [check_uint(name, v, 32) for v in values]
    b.StartVector(4, len(vals), 4)
    for v in reversed(vals):
        b.PrependUint32(v)
    end: int = b.EndVector()
    return end


def finish(b: flatbuffers.Builder, root: int) -> bytes:
    """``Finish(root)`` with no identifier and no size prefix; the finished bytes."""
    b.Finish(root)
    return bytes(b.Output())
