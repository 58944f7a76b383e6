"""Data-block codec, pure-Python reference twin (FORMAT.md sections 3.4, 3.5 and 3.7).

A data block, once its chunk CRC is checked and it is decompressed, is::

    block = entries || offsets[0..n) as u16be || n as u16be

* **Version 2** (every SST SlateDB writes today): rows are ``SstRowCodecV2`` rows with prefix
  compression against the *previous* key; ``offsets`` are *restart points*, one every 16 rows,
  where the full key is stored (``shared = 0``).
* **Version 1** (old SSTs): rows are ``SstRowCodecV0`` rows with the prefix taken against the
  block's *first* key; ``offsets`` has one entry per row.

Invariants this module keeps, and why:

* :class:`BlockBuilder` reproduces SlateDB's block-closing rule exactly (section 3.7), so SSTs we
  write split into the same blocks as SlateDB's and can be compared byte-for-byte.
* :func:`decode_block` never returns rows from a malformed payload and never lets an
  ``IndexError`` or ``struct.error`` escape: every malformation raises :class:`DataError` with
  ``key=value`` detail. It checks everything that is checkable without the SST around it: the
  offset array against the real entry boundaries, the restart count, varint and field bounds,
  flag bits, key lengths and prefix lengths, and that the entries end exactly where the offset
  array starts. (A bit flip that still parses is the chunk CRC's job, not this module's.)
* Decoding is lenient exactly where SlateDB's reader is: a V2 tombstone with a non-zero
  ``value_len`` has its value bytes skipped, and a V1 tombstone's ``expire_ts`` is read and
  dropped (``None``), as ``SstRowCodecV0::decode`` does.

The compiled twin ``_block_c.pyx`` has the same API and returns identical rows and bytes.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from shale.errors import DataError, InvalidError
from shale.row import (
    FLAG_HAS_CREATE_TS,
    FLAG_HAS_EXPIRE_TS,
    FLAG_MERGE_OPERAND,
    FLAG_TOMBSTONE,
    MAX_KEY_LEN,
    MAX_VALUE_LEN,
    MERGE,
    TOMBSTONE,
    VALUE,
    RowTuple,
)

__all__ = [
    "RESTART_INTERVAL",
    "BlockBuilder",
    "decode_block",
    "decode_chunks",
    "encoded_row_size",
]

logger = logging.getLogger(__name__)

#: A V2 block has a restart point every this many rows.
RESTART_INTERVAL = 16
#: Largest block size accepted by :class:`BlockBuilder` (offsets are u16; SlateDB's largest
#: configurable block is 64 KiB).
MAX_BLOCK_SIZE = 65536

#: What ``add`` accepts: a 6-tuple (``shale.row.Row`` or plain); validated at run time.
AnyRow = tuple[Any, ...]

_KNOWN_FLAGS = FLAG_TOMBSTONE | FLAG_HAS_EXPIRE_TS | FLAG_HAS_CREATE_TS | FLAG_MERGE_OPERAND
_U64_LIMIT = 1 << 64
_I64_MIN = -(1 << 63)
_I64_LIMIT = 1 << 63

_U16 = struct.Struct(">H")
_U16U16 = struct.Struct(">HH")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_U64U8 = struct.Struct(">QB")


# --------------------------------------------------------------------------------------------
# helpers


def _varint(n: int) -> bytes:
    """Unsigned LEB128 of ``n`` (a u32)."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varint_len(n: int) -> int:
    """Length of the LEB128 encoding of ``n``."""
    if n < 0x80:
        return 1
    if n < 0x4000:
        return 2
    if n < 0x200000:
        return 3
    if n < 0x10000000:
        return 4
    return 5


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b``.

    Binary search over slice comparisons: O(log n) C-speed ``memcmp`` calls instead of a
    Python-level loop per byte.
    """
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # invariant: a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _check_row(row: AnyRow) -> RowTuple:
    """Validate a row tuple; return it unpacked, with the value ``b""`` for tombstones.

    Raises:
        InvalidError: not a 6-tuple, empty or too long key, bad seq/kind/timestamps, or a
            value longer than ``2**32 - 1`` bytes.
    """
    if not isinstance(row, tuple) or len(row) != 6:
        raise InvalidError("row must be a 6-tuple", row_type=type(row).__name__)
    key, seq, kind, value, expire_ts, create_ts = row
    if not isinstance(key, bytes):
        raise InvalidError("key must be bytes", key_type=type(key).__name__)
    if not key or len(key) > MAX_KEY_LEN:
        raise InvalidError("key length out of range", key_len=len(key), max=MAX_KEY_LEN)
    if not isinstance(seq, int) or not 0 <= seq < _U64_LIMIT:
        raise InvalidError("seq must be an int in [0, 2**64)", seq=seq)
    if not isinstance(kind, int) or kind not in (VALUE, TOMBSTONE, MERGE):
        raise InvalidError("bad row kind", kind=kind)
    if not isinstance(value, bytes):
        raise InvalidError("value must be bytes", value_type=type(value).__name__)
    if kind == TOMBSTONE:
        value = b""
    elif len(value) > MAX_VALUE_LEN:
        raise InvalidError("value too long", value_len=len(value), max=MAX_VALUE_LEN)
    if expire_ts is not None and (
        not isinstance(expire_ts, int) or not _I64_MIN <= expire_ts < _I64_LIMIT
    ):
        raise InvalidError("expire_ts must be None or an i64", expire_ts=expire_ts)
    if create_ts is not None and (
        not isinstance(create_ts, int) or not _I64_MIN <= create_ts < _I64_LIMIT
    ):
        raise InvalidError("create_ts must be None or an i64", create_ts=create_ts)
    return key, seq, kind, value, expire_ts, create_ts


def _flags(kind: int, expire_ts: int | None, create_ts: int | None) -> int:
    flags = FLAG_TOMBSTONE if kind == TOMBSTONE else FLAG_MERGE_OPERAND if kind == MERGE else 0
    if expire_ts is not None:
        flags |= FLAG_HAS_EXPIRE_TS
    if create_ts is not None:
        flags |= FLAG_HAS_CREATE_TS
    return flags


def _v2_size(
    shared: int, key_len: int, value_len: int, expire_ts: int | None, create_ts: int | None
) -> int:
    """Encoded size of a V2 row (``SstRowEntryV2::encoded_size``)."""
    unshared = key_len - shared
    size = _varint_len(shared) + _varint_len(unshared) + _varint_len(value_len)
    size += unshared + value_len + 9
    if expire_ts is not None:
        size += 8
    if create_ts is not None:
        size += 8
    return size


def _v1_size(
    prefix: int,
    key_len: int,
    kind: int,
    value_len: int,
    expire_ts: int | None,
    create_ts: int | None,
) -> int:
    """Encoded size of a V1 row (``RowEntry::encoded_size``)."""
    size = 4 + (key_len - prefix) + 9
    if expire_ts is not None:
        size += 8
    if create_ts is not None:
        size += 8
    if kind != TOMBSTONE:
        size += 4 + value_len
    return size


def encoded_row_size(row: AnyRow, prev_key: bytes | None = None) -> int:
    """V2 encoded size of ``row`` in bytes (the entry only, not its restart offset).

    Args:
        row: a row tuple ``(key, seq, kind, value, expire_ts, create_ts)``.
        prev_key: the previous key in the block; ``shared`` is computed against it. ``None``
            means the row is at a restart point (``shared = 0``).

    Raises:
        InvalidError: the row is malformed (see :meth:`BlockBuilder.add`).
    """
    key, _seq, _kind, value, expire_ts, create_ts = _check_row(row)
    if prev_key is None:
        shared = 0
    elif isinstance(prev_key, bytes):
        shared = _common_prefix(prev_key, key)
    else:
        raise InvalidError("prev_key must be bytes or None", prev_type=type(prev_key).__name__)
    return _v2_size(shared, len(key), len(value), expire_ts, create_ts)


# --------------------------------------------------------------------------------------------
# builder


class BlockBuilder:
    """Accumulates rows into one data block, closing it exactly where SlateDB would.

    ``finish()`` returns the payload ``entries || offsets || count`` (no CRC and no
    compression: the SST layer frames it) and **resets the builder to empty**, so one
    builder can be reused for every block of an SST.

    Args:
        block_size: the target size in bytes (1..65536): ``DbBuilder.with_sst_block_size``
            for compacted SSTs, 65535 for WAL SSTs written like SlateDB 0.17.0.
        version: 2 for V2 blocks (``SstRowCodecV2``, restarts every 16 rows), 1 for V1 blocks
            (``SstRowCodecV0``, one offset per row, prefix against the block's first key).

    Raises:
        InvalidError: bad ``block_size`` or ``version``.
    """

    def __init__(self, block_size: int, version: int = 2) -> None:
        if not isinstance(block_size, int) or not 1 <= block_size <= MAX_BLOCK_SIZE:
            raise InvalidError("block_size out of range", block_size=block_size)
        if version not in (1, 2) or not isinstance(version, int):
            raise InvalidError("unknown block version", version=version)
        self._block_size = block_size
        self._version = version
        self._reset()

    def _reset(self) -> None:
        self._data = bytearray()
        self._offsets: list[int] = []
        self._count = 0
        self._first_key: bytes | None = None
        self._first_seq: int | None = None
        self._last_key: bytes | None = None
        self._num_puts = 0
        self._num_deletes = 0
        self._num_merges = 0
        self._raw_key_size = 0
        self._raw_value_size = 0

    def add(self, row: AnyRow) -> bool:
        """Append ``row`` if it fits; return whether it was added.

        An empty block accepts any row (an entry larger than ``block_size`` becomes a block of
        its own). Otherwise the row is added only if the block stays within ``block_size``
        under SlateDB's rule for this version (FORMAT.md section 3.7). Flags: TOMBSTONE for
        kind 1, MERGE_OPERAND for kind 2, HAS_EXPIRE_TS / HAS_CREATE_TS when the timestamp is
        not ``None``. A tombstone's value is ignored (V2 writes ``value_len = 0``, V1 no value).

        Args:
            row: ``(key, seq, kind, value, expire_ts, create_ts)``.

        Returns:
            ``True`` if added; ``False`` (nothing added) if the block is full.

        Raises:
            InvalidError: empty key, key > 65535 bytes, value > 2**32 - 1 bytes, unknown kind,
                seq outside u64, a timestamp outside i64, or wrong types.
        """
        key, seq, kind, value, expire_ts, create_ts = _check_row(row)
        data = self._data
        flags = _flags(kind, expire_ts, create_ts)
        if self._version == 2:
            restart = self._count % RESTART_INTERVAL == 0
            last = self._last_key
            shared = 0 if restart or last is None else _common_prefix(last, key)
            if self._count:
                size = len(data) + 2 * len(self._offsets) + 2
                size += _v2_size(shared, len(key), len(value), expire_ts, create_ts)
                if restart:
                    size += 2
                if size > self._block_size:
                    return False
            if restart:
                self._offsets.append(len(data))
            data += _varint(shared)
            data += _varint(len(key) - shared)
            data += _varint(len(value))
            data += key[shared:]
            data += value
            data += _U64U8.pack(seq, flags)
            if expire_ts is not None:
                data += _I64.pack(expire_ts)
            if create_ts is not None:
                data += _I64.pack(create_ts)
        else:
            first = self._first_key
            prefix = 0 if first is None else _common_prefix(first, key)
            if self._count:
                size = len(data) + 2 * len(self._offsets) + 2
                size += _v1_size(prefix, len(key), kind, len(value), expire_ts, create_ts)
                if size > self._block_size:
                    return False
            self._offsets.append(len(data))
            data += _U16U16.pack(prefix, len(key) - prefix)
            data += key[prefix:]
            data += _U64U8.pack(seq, flags)
            if expire_ts is not None:
                data += _I64.pack(expire_ts)
            if create_ts is not None:
                data += _I64.pack(create_ts)
            if kind != TOMBSTONE:
                data += _U32.pack(len(value))
                data += value
        if self._count == 0:
            self._first_key = key
            self._first_seq = seq
        self._last_key = key
        self._count += 1
        if kind == VALUE:
            self._num_puts += 1
        elif kind == TOMBSTONE:
            self._num_deletes += 1
        else:
            self._num_merges += 1
        self._raw_key_size += len(key)
        self._raw_value_size += len(value)
        return True

    def is_empty(self) -> bool:
        """Whether no row has been added since construction or the last :meth:`finish`."""
        return self._count == 0

    def __len__(self) -> int:
        """Number of rows in the block."""
        return self._count

    @property
    def block_size(self) -> int:
        """The target block size given to the constructor."""
        return self._block_size

    @property
    def version(self) -> int:
        """The block version (1 or 2)."""
        return self._version

    @property
    def first_key(self) -> bytes | None:
        """Key of the first row, or ``None`` when empty."""
        return self._first_key

    @property
    def first_seq(self) -> int | None:
        """Seq of the first row, or ``None`` when empty."""
        return self._first_seq

    @property
    def last_key(self) -> bytes | None:
        """Key of the last row, or ``None`` when empty."""
        return self._last_key

    @property
    def num_puts(self) -> int:
        """Number of VALUE rows."""
        return self._num_puts

    @property
    def num_deletes(self) -> int:
        """Number of TOMBSTONE rows."""
        return self._num_deletes

    @property
    def num_merges(self) -> int:
        """Number of MERGE rows."""
        return self._num_merges

    @property
    def raw_key_size(self) -> int:
        """Sum of the full key lengths."""
        return self._raw_key_size

    @property
    def raw_value_size(self) -> int:
        """Sum of the value lengths (a tombstone counts 0)."""
        return self._raw_value_size

    def estimated_size(self) -> int:
        """Exact length of the payload :meth:`finish` would return now (2 when empty)."""
        return len(self._data) + 2 * len(self._offsets) + 2

    def finish(self) -> bytes:
        """Return the block payload and reset the builder to empty.

        Raises:
            InvalidError: the block is empty (SlateDB never writes an empty block).
        """
        if self._count == 0:
            raise InvalidError("cannot finish an empty block")
        offsets = self._offsets
        out = self._data
        out += struct.pack(f">{len(offsets) + 1}H", *offsets, len(offsets))
        result = bytes(out)
        self._reset()
        return result


# --------------------------------------------------------------------------------------------
# decoder


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise InvalidError("block data must be bytes-like", data_type=type(data).__name__)


def _check_flags(flags: int, entry: int, pos: int) -> None:
    if flags & ~_KNOWN_FLAGS:
        raise DataError("unknown row flag bits", flags=flags, entry=entry, offset=pos)
    if flags & FLAG_TOMBSTONE and flags & FLAG_MERGE_OPERAND:
        raise DataError(
            "row is both tombstone and merge operand", flags=flags, entry=entry, offset=pos
        )


def _truncated(what: str, entry: int, pos: int) -> DataError:
    return DataError("truncated block entry", field=what, entry=entry, offset=pos)


def _read_varint(data: bytes, pos: int, end: int, what: str, entry: int) -> tuple[int, int]:
    """Decode a u32 LEB128 varint at ``pos``; return (value, new_pos)."""
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _truncated(what, entry, start)
        b = data[pos]
        pos += 1
        if shift == 28 and b > 0x0F:
            raise DataError("varint overflows u32", field=what, entry=entry, offset=start)
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _read_trailer(data: bytes, version: int) -> tuple[int, list[int]]:
    """Parse ``offsets || count``; return (data_end, offsets)."""
    size = len(data)
    if size < 2:
        raise DataError("block too short", size=size, version=version)
    (count,) = _U16.unpack_from(data, size - 2)
    if count == 0:
        raise DataError("block has no offsets", size=size, version=version)
    data_end = size - 2 - 2 * count
    if data_end <= 0:
        raise DataError("block offset count out of range", count=count, size=size, version=version)
    offsets = list(struct.unpack_from(f">{count}H", data, data_end))
    return data_end, offsets


def _decode_v2(data: bytes) -> list[RowTuple]:
    data_end, restarts = _read_trailer(data, 2)
    n_restarts = len(restarts)
    rows: list[RowTuple] = []
    append = rows.append
    prev_key = b""
    pos = 0
    i = 0
    while pos < data_end:
        start = pos
        if i % RESTART_INTERVAL == 0:
            r = i // RESTART_INTERVAL
            if r >= n_restarts:
                raise DataError(
                    "more entries than restart offsets allow",
                    entry=i,
                    offset=pos,
                    restarts=n_restarts,
                )
            if restarts[r] != pos:
                raise DataError(
                    "restart offset does not match entry boundary",
                    entry=i,
                    restart=r,
                    stored=restarts[r],
                    actual=pos,
                )
        # three varints; fast path for the common one-byte case
        b = data[pos] if pos < data_end else 0x80
        if b < 0x80:
            shared = b
            pos += 1
        else:
            shared, pos = _read_varint(data, pos, data_end, "shared", i)
        b = data[pos] if pos < data_end else 0x80
        if b < 0x80:
            unshared = b
            pos += 1
        else:
            unshared, pos = _read_varint(data, pos, data_end, "unshared", i)
        b = data[pos] if pos < data_end else 0x80
        if b < 0x80:
            value_len = b
            pos += 1
        else:
            value_len, pos = _read_varint(data, pos, data_end, "value_len", i)
        if shared > len(prev_key):
            raise DataError(
                "shared prefix longer than previous key",
                entry=i,
                offset=start,
                shared=shared,
                prev_key_len=len(prev_key),
            )
        if shared and i % RESTART_INTERVAL == 0:
            raise DataError("restart entry has shared > 0", entry=i, offset=start, shared=shared)
        key_len = shared + unshared
        if key_len == 0 or key_len > MAX_KEY_LEN:
            raise DataError("key length out of range", entry=i, offset=start, key_len=key_len)
        if pos + unshared + value_len + 9 > data_end:
            raise _truncated("key/value/seq/flags", i, start)
        if shared == 0:
            key = data[pos : pos + unshared]
        elif unshared == 0 and shared == len(prev_key):
            key = prev_key
        else:
            key = prev_key[:shared] + data[pos : pos + unshared]
        pos += unshared
        vpos = pos
        pos += value_len
        seq, flags = _U64U8.unpack_from(data, pos)
        pos += 9
        _check_flags(flags, i, start)
        expire_ts = create_ts = None
        if flags & FLAG_HAS_EXPIRE_TS:
            if pos + 8 > data_end:
                raise _truncated("expire_ts", i, start)
            (expire_ts,) = _I64.unpack_from(data, pos)
            pos += 8
        if flags & FLAG_HAS_CREATE_TS:
            if pos + 8 > data_end:
                raise _truncated("create_ts", i, start)
            (create_ts,) = _I64.unpack_from(data, pos)
            pos += 8
        if flags & FLAG_TOMBSTONE:
            append((key, seq, TOMBSTONE, b"", expire_ts, create_ts))
        else:
            append(
                (
                    key,
                    seq,
                    MERGE if flags & FLAG_MERGE_OPERAND else VALUE,
                    data[vpos : vpos + value_len],
                    expire_ts,
                    create_ts,
                )
            )
        prev_key = key
        i += 1
    expected = (i + RESTART_INTERVAL - 1) // RESTART_INTERVAL
    if expected != n_restarts:
        raise DataError(
            "restart count does not match entry count",
            entries=i,
            restarts=n_restarts,
            expected=expected,
        )
    return rows


def _decode_v1(data: bytes) -> list[RowTuple]:
    data_end, offsets = _read_trailer(data, 1)
    rows: list[RowTuple] = []
    append = rows.append
    first_key = b""
    pos = 0
    for i, stored in enumerate(offsets):
        if stored != pos:
            raise DataError(
                "row offset does not match entry boundary", entry=i, stored=stored, actual=pos
            )
        start = pos
        if pos + 4 > data_end:
            raise _truncated("key lengths", i, start)
        prefix, suffix = _U16U16.unpack_from(data, pos)
        pos += 4
        if prefix > len(first_key):
            raise DataError(
                "key prefix longer than the block's first key",
                entry=i,
                offset=start,
                prefix=prefix,
                first_key_len=len(first_key),
            )
        key_len = prefix + suffix
        if key_len == 0 or key_len > MAX_KEY_LEN:
            raise DataError("key length out of range", entry=i, offset=start, key_len=key_len)
        if pos + suffix + 9 > data_end:
            raise _truncated("key/seq/flags", i, start)
        key = (
            data[pos : pos + suffix]
            if prefix == 0
            else first_key[:prefix] + data[pos : pos + suffix]
        )
        pos += suffix
        seq, flags = _U64U8.unpack_from(data, pos)
        pos += 9
        _check_flags(flags, i, start)
        expire_ts = create_ts = None
        if flags & FLAG_HAS_EXPIRE_TS:
            if pos + 8 > data_end:
                raise _truncated("expire_ts", i, start)
            (expire_ts,) = _I64.unpack_from(data, pos)
            pos += 8
        if flags & FLAG_HAS_CREATE_TS:
            if pos + 8 > data_end:
                raise _truncated("create_ts", i, start)
            (create_ts,) = _I64.unpack_from(data, pos)
            pos += 8
        if flags & FLAG_TOMBSTONE:
            # SstRowCodecV0 drops a tombstone's expire_ts.
            append((key, seq, TOMBSTONE, b"", None, create_ts))
        else:
            if pos + 4 > data_end:
                raise _truncated("value_len", i, start)
            (value_len,) = _U32.unpack_from(data, pos)
            pos += 4
            if pos + value_len > data_end:
                raise _truncated("value", i, start)
            append(
                (
                    key,
                    seq,
                    MERGE if flags & FLAG_MERGE_OPERAND else VALUE,
                    data[pos : pos + value_len],
                    expire_ts,
                    create_ts,
                )
            )
            pos += value_len
        if i == 0:
            first_key = key
    if pos != data_end:
        raise DataError(
            "trailing bytes between entries and offsets",
            entries=len(offsets),
            end=pos,
            data_end=data_end,
        )
    return rows


def decode_block(data: bytes, version: int = 2) -> list[RowTuple]:
    """Decode every row of a block payload, in stored order.

    Args:
        data: the payload after the chunk CRC check and decompression (bytes-like).
        version: the SST format version, 2 (``SstRowCodecV2``) or 1 (``SstRowCodecV0``).

    Returns:
        A list of row tuples ``(key, seq, kind, value, expire_ts, create_ts)``.

    Raises:
        DataError: the payload is malformed in any way (too short, bad count or offsets,
            truncated fields or varints, bad prefix lengths, unknown flags, TOMBSTONE with
            MERGE_OPERAND, empty key, bytes left between the entries and the offsets).
        InvalidError: ``version`` is not 1 or 2, or ``data`` is not bytes-like.
    """
    data = _as_bytes(data)
    if version == 2:
        return _decode_v2(data)
    if version == 1:
        return _decode_v1(data)
    raise InvalidError("unknown block version", version=version)


def decode_chunks(
    data: bytes,
    offsets: Sequence[int],
    version: int = 2,
    codec: int = 0,
    transformer: Any = None,
    first_block: int = 0,
) -> list[list[RowTuple]]:
    """Decode consecutive stored data blocks read in one piece (a scan's or a compaction's
    read-ahead window).

    Args:
        data: the stored bytes; block ``k`` is ``data[offsets[k]:offsets[k + 1]]``, a chunk
            ``T(C(payload)) || u32be crc32``.
        offsets: ``n + 1`` increasing offsets into ``data`` for ``n`` blocks.
        version: the SST format version.
        codec: the SST's compression codec id.
        transformer: the SST's block transformer, if any.
        first_block: the SST block number of block 0 (for error details).

    Returns:
        One list of row tuples per block.

    Raises:
        DataError: as :meth:`shale.sst.table.SsTable.read_block` for a damaged block (checksum,
            undecodable payload, malformed or empty block).
    """
    from shale.errors import ShaleError
    from shale.sst.compression import unframe_chunk

    out = []
    for k in range(len(offsets) - 1):
        chunk = data[offsets[k] : offsets[k + 1]]
        payload = unframe_chunk(chunk, codec, transformer, what="data block")
        try:
            rows = decode_block(payload, version)
        except ShaleError:
            raise
        except Exception as exc:
            raise DataError(
                "malformed SST data block", block=first_block + k, error=str(exc)
            ) from exc
        if not rows:
            raise DataError("empty SST data block", block=first_block + k)
        out.append(rows)
    return out
