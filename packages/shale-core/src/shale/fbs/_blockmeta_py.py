"""Codecs for an SST's per-block metadata: the index and the stats FlatBuffers (reference twin).

FORMAT.md sections 3.8, 3.10 and 4. :mod:`shale.fbs.sst_meta` re-exports this API through the
:mod:`shale.fbs.blockmeta` facade; ``shale.fbs._blockmeta_c`` is the compiled twin (same API, same
bytes, same errors) and shares the record types defined here.

- ``SsTableIndex { block_meta: [BlockMeta] (required) }``,
  ``BlockMeta { offset: u64 (0); first_key: [ubyte] (1, required) }``. Creation order: for
  each block its ``first_key`` vector then its table (add order offset, first_key); then the
  vector of tables and the root. (Rust creates a block's vector when its first row arrives
  and its table when the block closes, but nothing else enters its builder in between, so
  :meth:`IndexBuilder.add_block` creates both at once and the bytes are the same.)
- ``SstStats { num_puts, num_deletes, num_merges, raw_key_size, raw_val_size: u64 (0-4);
  block_stats: [BlockStats] (5) }``, ``BlockStats { num_puts, num_deletes, num_merges: u16 }``.
  Creation order: the BlockStats tables in block order (add order num_merges, num_deletes,
  num_puts), the vector (omitted when empty), the root (add order raw_val_size, raw_key_size,
  num_merges, num_deletes, num_puts, block_stats).

An SST of 64 MB has ~16k blocks, hence ~16k tables in each of these buffers, so they are written
and read by hand with ``struct`` rather than through ``flatbuffers.Builder`` and
:class:`shale.fbs._table.Table` (~15 us per block). The output is byte for byte what
``flatbuffers.Builder`` (which SlateDB's Rust builder agrees with) writes for the orders above:
tests/fbs/test_sst_meta_fast.py compares with the Builder on random inputs, and the interop
golden tests with files written by SlateDB. What the Builder does, reproduced below:

- The buffer is built back to front. ``off`` counts the bytes written so far (the Builder's
  ``Offset()``); a thing written when ``off`` became ``o`` starts at ``len(final) - o``. The
  encoders collect pieces in write order, each in memory order, and join them reversed.
- ``Prep(size, extra)`` pads with zeros so that ``off + extra`` becomes a multiple of ``size``,
  and raises ``minalign`` (the alignment ``Finish`` pads the buffer to) to ``size``.
- A byte vector: padding to 4, the data, then its ``u32`` length.
- A table: its non-default fields in add order, each aligned to its size, then the ``soffset``
  to its vtable (aligned to 4). The table starts at the ``soffset``; its size counts from
  ``StartObject`` and so includes the alignment padding of its first field. A field's vtable
  entry is its distance from the table start.
- A vtable, ``u16`` each: its byte length, the table size, an entry per slot up to the last
  present one. It is written just before (in memory) its table unless an equal vtable (same
  entries and table size) was written earlier in the buffer; the ``soffset`` (table position
  minus vtable position) then points back at that one and is negative.
- A ``uoffset`` holds the distance from itself to its target, which always lies after it.
- ``Finish``: ``Prep(minalign, 4)``, then the root ``uoffset`` at byte 0.

Decoders make one pass over the vector and check every offset before following it -- the checks
of :class:`shale.fbs._table.Reader`: everything inside the buffer, vtables at least 4 bytes and
even, fields inside their table, required fields present -- so they accept any valid encoding
and raise :class:`~shale.errors.DataError` on anything else. Each distinct vtable is checked
once (a builder shares a few among all the tables).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from shale.errors import DataError, InvalidError

__all__ = [
    "MAX_SIZE",
    "BlockMeta",
    "BlockStats",
    "IndexBuilder",
    "SstStats",
    "decode_index",
    "decode_stats",
    "encode_index",
    "encode_stats",
]

#: Largest buffer an encoder writes (FlatBuffers offsets are 32-bit signed).
MAX_SIZE = 0x7FFF_FFFF


class BlockMeta(NamedTuple):
    """One index entry: a data block's absolute offset and its partition first key."""

    offset: int
    first_key: bytes


class BlockStats(NamedTuple):
    """Row counts of one data block (u16 each)."""

    num_puts: int = 0
    num_deletes: int = 0
    num_merges: int = 0


@dataclass(frozen=True, slots=True)
class SstStats:
    """The stats block of a compacted SST."""

    num_puts: int = 0
    num_deletes: int = 0
    num_merges: int = 0
    raw_key_size: int = 0
    raw_val_size: int = 0
    block_stats: list[BlockStats] = field(default_factory=list)


# -- index ---------------------------------------------------------------------------------------

_PAD = tuple(bytes(i) for i in range(8))
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_HH = struct.Struct("<HH")
_U64_MAX = (1 << 64) - 1
_new_tuple = tuple.__new__

# A BlockMeta table in memory order -- soffset, first_key uoffset, [offset u64, its alignment
# padding] -- then the u32 length of the first_key vector, which follows the table. The "_VT"
# variants are preceded by a new vtable: (8, table size, offset entry, first_key entry).
_BM_VT = struct.Struct("<HHHHiIQI")  # offset present, table size 16
_BM = struct.Struct("<iIQI")
_BM_VT_PAD = struct.Struct("<HHHHiIQ4xI")  # offset present, 4 bytes of padding: size 20
_BM_PAD = struct.Struct("<iIQ4xI")
_BM0_VT = struct.Struct("<HHHHiII")  # offset 0, hence absent: size 8
_BM0 = struct.Struct("<iII")
# The SsTableIndex root table after its vtable (6 bytes, table size 8, block_meta at 4): the
# soffset 6 and block_meta's uoffset 4 (the vector follows the table).
_INDEX_ROOT = struct.Struct("<HHHiI").pack(6, 8, 4, 6, 4)


def _fail(what: str, message: str, **detail: object) -> DataError:
    return DataError(f"malformed {what}: {message}", **detail)


def _check_uint(name: str, value: int, bits: int) -> int:
    """``value`` if it is an unsigned ``bits``-bit integer, else :class:`InvalidError`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise InvalidError(f"{name} must be a u{bits}", value=value)
    return value


class IndexBuilder:
    """Builds an ``SsTableIndex`` incrementally, one :meth:`add_block` per data block.

    Call :meth:`add_block` in file order; :meth:`finish` returns the FlatBuffer (the chunk
    payload, before compression and CRC). A block costs one ``struct.pack``: its key vector and
    ``BlockMeta`` table are written to the back-to-front buffer as they are created.
    """

    __slots__ = ("_finished", "_metas", "_off", "_parts", "_vtables")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._metas: list[int] = []  # offset of each BlockMeta table (from the buffer's end)
        self._vtables: dict[int, int] = {}  # BlockMeta table size -> offset of its vtable
        self._off = 0
        self._finished = False

    def __len__(self) -> int:
        return len(self._metas)

    def add_packed(self, data: bytes) -> None:
        """:meth:`add_block` for each entry of ``data``: ``u64le offset || u32le key length ||
        key``, repeated (the compaction kernel hands its blocks over in one call)."""
        view = memoryview(data)
        pos = 0
        while pos < len(data):
            (offset,) = _U64.unpack_from(data, pos)
            (n,) = _U32.unpack_from(data, pos + 8)
            if pos + 12 + n > len(data):
                raise InvalidError("truncated packed index entry", offset=pos)
            self.add_block(offset, bytes(view[pos + 12 : pos + 12 + n]))
            pos += 12 + n

    def add_block(self, offset: int, first_key: bytes) -> None:
        """Record a block: creates its ``first_key`` vector, then its ``BlockMeta`` table.

        :param offset: the block's absolute file offset (u64).
        :param first_key: its index key (``bytes``-like).
        :raises InvalidError: ``offset`` is not a u64, or the builder is finished.
        """
        if self._finished:
            raise InvalidError("IndexBuilder already finished")
        if offset.__class__ is not int or offset < 0 or offset > _U64_MAX:
            _check_uint("block offset", offset, 64)  # raises
        key = first_key if first_key.__class__ is bytes else bytes(first_key)
        n = len(key)
        off = self._off
        parts = self._parts
        # The key vector: padding (so the length field is 4-aligned), data, length (packed
        # with the table below).
        pad = -(off + n) & 3
        if pad:
            parts.append(_PAD[pad])
        parts.append(key)
        off += pad + n + 4
        vtables = self._vtables
        if offset:
            # offset u64 (8-aligned: 4 bytes of padding when off is 4 mod 8), uoffset, soffset.
            size = 20 if off & 4 else 16
            off += size
            vt = vtables.get(size)
            if vt is None:
                if size == 20:
                    parts.append(_BM_VT_PAD.pack(8, 20, 8, 4, 8, 16, offset, n))
                else:
                    parts.append(_BM_VT.pack(8, 16, 8, 4, 8, 12, offset, n))
            elif size == 20:
                parts.append(_BM_PAD.pack(vt - off, 16, offset, n))
            else:
                parts.append(_BM.pack(vt - off, 12, offset, n))
        else:
            size = 8
            off += 8
            vt = vtables.get(8)
            if vt is None:
                parts.append(_BM0_VT.pack(8, 8, 0, 4, 8, 4, n))
            else:
                parts.append(_BM0.pack(vt - off, 4, n))
        self._metas.append(off)
        if vt is None:
            off += 8
            vtables[size] = off
        if off > MAX_SIZE:
            raise InvalidError("FlatBuffer exceeds the size limit", size=off)
        self._off = off

    def finish(self) -> bytes:
        """The encoded index; the builder cannot be used afterwards."""
        if self._finished:
            raise InvalidError("IndexBuilder already finished")
        self._finished = True
        metas = self._metas
        parts = self._parts
        self._parts = []
        n = len(metas)
        # The vector of BlockMeta uoffsets; off is a multiple of 4, as is every piece so far.
        # Element j is written when off reaches base - 4 * j.
        base = self._off + 4 * n
        parts.append(struct.pack(f"<{n + 1}I", n, *[base - 4 * j - m for j, m in enumerate(metas)]))
        parts.append(_INDEX_ROOT)
        off = base + 4 + 8 + 6
        # minalign is 8 once a u64 was written (a block offset > 0), else 4.
        pad = -(off + 4) & (7 if (16 in self._vtables or 20 in self._vtables) else 3)
        parts.append(_PAD[pad])
        parts.append(_U32.pack(pad + 10))
        parts.reverse()
        return b"".join(parts)


def encode_index(metas: list[BlockMeta]) -> bytes:
    """The ``SsTableIndex`` FlatBuffer for ``metas`` (in file order).

    :raises InvalidError: an offset is not a u64.
    """
    ib = IndexBuilder()
    add = ib.add_block
    for m in metas:
        add(m.offset, m.first_key)
    return ib.finish()


def _root_table(buf: bytes, what: str) -> tuple[int, int, int, int]:
    """The root table's ``(pos, vtable pos, vtable length, table size)``, bounds-checked."""
    size = len(buf)
    if size < 4:
        raise _fail(what, "buffer shorter than the root offset", size=size)
    pos = _U32.unpack_from(buf, 0)[0]
    if pos + 4 > size:
        raise _fail(what, "table out of bounds", pos=pos, size=size)
    vt = pos - _I32.unpack_from(buf, pos)[0]
    if vt < 0 or vt + 4 > size:
        raise _fail(what, "vtable out of bounds", pos=vt, size=size)
    vt_len, obj_len = _HH.unpack_from(buf, vt)
    if vt_len < 4 or vt_len & 1 or vt + vt_len > size:
        raise _fail(what, "bad vtable", pos=vt, vtable_len=vt_len)
    if obj_len < 4 or pos + obj_len > size:
        raise _fail(what, "bad table size", pos=pos, table_len=obj_len)
    return pos, vt, vt_len, obj_len


def _entry(buf: bytes, vt: int, vt_len: int, obj_len: int, slot: int, width: int, what: str) -> int:
    """The vtable entry of ``slot`` (0 when absent), checked to lie inside the table."""
    vo = 4 + 2 * slot
    if vo + 2 > vt_len:
        return 0
    e: int = _U16.unpack_from(buf, vt + vo)[0]
    if e and (e < 4 or e + width > obj_len):
        raise _fail(what, "field outside its table", slot=slot, offset=e)
    return e


def _vector(buf: bytes, ref: int, elem_size: int, what: str) -> tuple[int, int]:
    """Follow the uoffset at ``ref`` to a vector: ``(first element pos, count)``."""
    size = len(buf)
    start = ref + _U32.unpack_from(buf, ref)[0]
    if start + 4 > size:
        raise _fail(what, "vector out of bounds", pos=start, size=size)
    count: int = _U32.unpack_from(buf, start)[0]
    if start + 4 + count * elem_size > size:
        raise _fail(what, "vector overruns buffer", pos=start, count=count, size=size)
    return start + 4, count


def _child_vtable(
    buf: bytes, vt: int, slots: tuple[tuple[int, int], ...], what: str
) -> tuple[int, ...]:
    """Check the vtable at ``vt`` of a vector element; ``(table size, entry per slot)``.

    ``slots`` gives each wanted slot with its field width. Results are cached by vtable
    position: every table of a vector normally shares one of a few vtables.
    """
    size = len(buf)
    if vt < 0 or vt + 4 > size:
        raise _fail(what, "vtable out of bounds", pos=vt, size=size)
    vt_len, obj_len = _HH.unpack_from(buf, vt)
    if vt_len < 4 or vt_len & 1 or vt + vt_len > size:
        raise _fail(what, "bad vtable", pos=vt, vtable_len=vt_len)
    if obj_len < 4:
        raise _fail(what, "bad table size", pos=vt, table_len=obj_len)
    return (obj_len, *(_entry(buf, vt, vt_len, obj_len, s, w, what) for s, w in slots))


_BLOCK_META_SLOTS = ((0, 8), (1, 4))


def decode_index(buf: bytes) -> list[BlockMeta]:
    """Decode an ``SsTableIndex`` (the chunk payload after CRC check and decompression).

    One pass over the ``block_meta`` vector, checking every offset before following it (the
    same checks as :class:`shale.fbs._table.Reader`).

    :raises DataError: the buffer is not a valid index.
    """
    what = "SsTableIndex"
    buf = bytes(buf)
    try:
        pos, vt, vt_len, obj_len = _root_table(buf, what)
        e = _entry(buf, vt, vt_len, obj_len, 0, 4, what)
        if not e:
            raise _fail(what, "required field missing", field="block_meta", slot=0)
        start, count = _vector(buf, pos + e, 4, what)
        size = len(buf)
        u32 = _U32.unpack_from
        i32 = _I32.unpack_from
        u64 = _U64.unpack_from
        cache: dict[int, tuple[int, ...]] = {}
        out: list[BlockMeta] = []
        append = out.append
        ref = start
        for rel in struct.unpack_from(f"<{count}I", buf, start):
            t = ref + rel
            ref += 4
            if t + 4 > size:
                raise _fail(what, "table out of bounds", pos=t, size=size)
            vt = t - i32(buf, t)[0]
            layout = cache.get(vt)
            if layout is None:
                layout = cache[vt] = _child_vtable(buf, vt, _BLOCK_META_SLOTS, what)
                if not layout[2]:
                    raise _fail(what, "required field missing", field="first_key", slot=1)
            obj_len, fo, fk = layout
            if t + obj_len > size:
                raise _fail(what, "bad table size", pos=t, table_len=obj_len)
            p = t + fk
            s = p + u32(buf, p)[0] + 4
            if s > size:
                raise _fail(what, "vector out of bounds", pos=s - 4, size=size)
            end = s + u32(buf, s - 4)[0]
            if end > size:
                raise _fail(what, "vector overruns buffer", pos=s - 4, size=size)
            append(_new_tuple(BlockMeta, (u64(buf, t + fo)[0] if fo else 0, buf[s:end])))
        return out
    except DataError:
        raise
    except (struct.error, IndexError, ValueError, OverflowError, TypeError) as exc:
        raise DataError(f"malformed {what}: {exc.__class__.__name__}: {exc}") from exc


# -- stats ---------------------------------------------------------------------------------------


def _table_layout(
    fields: tuple[tuple[int, int], ...], nslots: int, start: int
) -> tuple[tuple[int, ...], int, str]:
    """How the Builder lays out a table whose ``fields`` ``(slot, width)`` are added in order
    when ``off`` is ``start``: ``(vtable entries up to the last present slot, table size,
    struct format of the table from its soffset, excluding the soffset)``."""
    off = start
    at: dict[int, int] = {}
    for slot, width in fields:
        off += -off & (width - 1)
        off += width
        at[slot] = off
    pad = -off & 3
    obj = off + pad + 4
    entries = [obj - at[s] if s in at else 0 for s in range(nslots)]
    while entries and not entries[-1]:
        entries.pop()
    # Memory order: soffset, pad, then the fields in reverse add order with the alignment
    # padding that preceded each (in write order) after it.
    fmt = f"{pad}x" if pad else ""
    off = start
    pieces = []
    for _slot, width in fields:
        gap = -off & (width - 1)
        off += gap + width
        pieces.append({2: "H", 4: "I", 8: "Q"}[width] + (f"{gap}x" if gap else ""))
    fmt += "".join(reversed(pieces))
    return tuple(entries), obj - start, fmt


def _block_stats_layouts() -> list[tuple[tuple[int, ...], int, struct.Struct, bytes]]:
    """BlockStats layouts indexed by ``mask * 2 + (off & 2) // 2`` where mask bit 2/1/0 says
    num_puts/num_deletes/num_merges is non-zero (``off`` is always even here):
    ``(vtable key, table size, struct for soffset + fields, the vtable's bytes)``."""
    out = []
    for index in range(16):
        mask, start = index >> 1, (index & 1) * 2
        # Add order num_merges, num_deletes, num_puts (slots 2, 1, 0), u16 each.
        fields = tuple((slot, 2) for slot, bit in ((2, 1), (1, 2), (0, 4)) if mask & bit)
        entries, size, fmt = _table_layout(fields, 3, start)
        vtable = struct.pack(f"<{len(entries) + 2}H", 2 * len(entries) + 4, size, *entries)
        out.append(((*entries, size), size, struct.Struct("<i" + fmt), vtable))
    return out


_BS_LAYOUTS = _block_stats_layouts()


def encode_stats(stats: SstStats) -> bytes:
    """The ``SstStats`` FlatBuffer (the stats chunk payload).

    :raises InvalidError: a counter is out of range (block counters are u16).
    """
    parts: list[bytes] = []
    vtables: dict[tuple[int, ...], int] = {}  # (entries..., table size) -> vtable offset
    tables: list[int] = []
    off = 0
    layouts = _BS_LAYOUTS
    for bs in stats.block_stats:
        p, d, m = bs.num_puts, bs.num_deletes, bs.num_merges
        if not (
            p.__class__ is d.__class__ is m.__class__ is int
            and 0 <= p <= 0xFFFF
            and 0 <= d <= 0xFFFF
            and 0 <= m <= 0xFFFF
        ):
            _check_uint("block num_merges", m, 16)
            _check_uint("block num_deletes", d, 16)
            _check_uint("block num_puts", p, 16)
        key, size, st, vtable = layouts[(p > 0) << 3 | (d > 0) << 2 | (m > 0) << 1 | (off >> 1 & 1)]
        off += size
        tables.append(off)
        vt = vtables.get(key)
        if vt is None:
            soff = len(vtable)
        else:
            soff = vt - off
        # Present fields, in memory order num_puts, num_deletes, num_merges.
        if m:
            if d:
                packed = st.pack(soff, p, d, m) if p else st.pack(soff, d, m)
            else:
                packed = st.pack(soff, p, m) if p else st.pack(soff, m)
        elif d:
            packed = st.pack(soff, p, d) if p else st.pack(soff, d)
        else:
            packed = st.pack(soff, p) if p else st.pack(soff)
        parts.append(packed)
        if vt is None:
            parts.append(vtable)
            off += len(vtable)
            vtables[key] = off
    vec_off = 0
    if tables:
        # The vector of BlockStats uoffsets (4-aligned); element j is written at base - 4 * j.
        pad = -off & 3
        if pad:
            parts.append(_PAD[pad])
        base = off + pad + 4 * len(tables)
        parts.append(
            struct.pack(
                f"<{len(tables) + 1}I",
                len(tables),
                *[base - 4 * j - t for j, t in enumerate(tables)],
            )
        )
        off = vec_off = base + 4
    # The SstStats table: add order raw_val_size, raw_key_size, num_merges, num_deletes,
    # num_puts (u64, slots 4..0; zeros skipped), then block_stats (uoffset, slot 5).
    present = [
        (slot, value)
        for slot, value in (
            (4, _check_uint("raw_val_size", stats.raw_val_size, 64)),
            (3, _check_uint("raw_key_size", stats.raw_key_size, 64)),
            (2, _check_uint("num_merges", stats.num_merges, 64)),
            (1, _check_uint("num_deletes", stats.num_deletes, 64)),
            (0, _check_uint("num_puts", stats.num_puts, 64)),
        )
        if value
    ]
    fields = [(slot, 8) for slot, _ in present]
    if vec_off:
        fields.append((5, 4))
    entries, size, fmt = _table_layout(tuple(fields), 6, off)
    off += size
    # Memory order: soffset, the block_stats uoffset (written when off was obj - 4, obj being
    # the table's offset, now off), then the u64s in reverse add order.
    args = [v for _, v in reversed(present)]
    if vec_off:
        args.insert(0, off - 4 - vec_off)
    key = (*entries, size)
    vt = vtables.get(key)
    if vt is None:
        vtable = struct.pack(f"<{len(entries) + 2}H", 2 * len(entries) + 4, size, *entries)
        soff = len(vtable)
    else:
        vtable = b""
        soff = vt - off
    parts.append(struct.pack("<i" + fmt, soff, *args))
    obj = off
    off += len(vtable)
    parts.append(vtable)
    # Finish: minalign is 8 when a u64 was written, else 4 (every table has an soffset).
    pad = -(off + 4) & (7 if present else 3)
    parts.append(_PAD[pad])
    parts.append(_U32.pack(off + pad + 4 - obj))
    parts.reverse()
    return b"".join(parts)


_BLOCK_STATS_SLOTS = ((0, 2), (1, 2), (2, 2))


def decode_stats(buf: bytes) -> SstStats:
    """Decode an ``SstStats`` FlatBuffer (one pass over ``block_stats``, bounds-checked).

    :raises DataError: the buffer is not a valid stats table.
    """
    what = "SstStats"
    buf = bytes(buf)
    try:
        pos, vt, vt_len, obj_len = _root_table(buf, what)
        u64 = _U64.unpack_from
        totals = []
        for slot in range(5):
            e = _entry(buf, vt, vt_len, obj_len, slot, 8, what)
            totals.append(u64(buf, pos + e)[0] if e else 0)
        blocks: list[BlockStats] = []
        e = _entry(buf, vt, vt_len, obj_len, 5, 4, what)
        if e:
            start, count = _vector(buf, pos + e, 4, what)
            size = len(buf)
            i32 = _I32.unpack_from
            u16 = _U16.unpack_from
            cache: dict[int, tuple[int, ...]] = {}
            append = blocks.append
            ref = start
            for rel in struct.unpack_from(f"<{count}I", buf, start):
                t = ref + rel
                ref += 4
                if t + 4 > size:
                    raise _fail(what, "table out of bounds", pos=t, size=size)
                vt = t - i32(buf, t)[0]
                layout = cache.get(vt)
                if layout is None:
                    layout = cache[vt] = _child_vtable(buf, vt, _BLOCK_STATS_SLOTS, what)
                obj_len, ep, ed, em = layout
                if t + obj_len > size:
                    raise _fail(what, "bad table size", pos=t, table_len=obj_len)
                append(
                    _new_tuple(
                        BlockStats,
                        (
                            u16(buf, t + ep)[0] if ep else 0,
                            u16(buf, t + ed)[0] if ed else 0,
                            u16(buf, t + em)[0] if em else 0,
                        ),
                    )
                )
        puts, deletes, merges, raw_key, raw_val = totals
        return SstStats(puts, deletes, merges, raw_key, raw_val, blocks)
    except DataError:
        raise
    except (struct.error, IndexError, ValueError, OverflowError, TypeError) as exc:
        raise DataError(f"malformed {what}: {exc.__class__.__name__}: {exc}") from exc
