"""The FlatBuffers inside an SST: SsTableInfo (footer), the index block and the stats block.

FORMAT.md sections 3.8, 3.10, 3.11 and 4. Encoders produce the bytes SlateDB 0.17.0 writes:

- ``SsTableInfo``: children first_entry vector, then last_entry vector, then the table with add
  order stats_len, stats_offset, filter_len, filter_offset, index_len, index_offset, last_entry,
  first_entry, filter_format, sst_type, compression_format. Default-valued scalars are omitted.
- ``SsTableIndex``: for each block the ``first_key`` vector then the ``BlockMeta`` table
  (add order offset, first_key), interleaved vec0, meta0, vec1, meta1, ...; then the vector of
  metas and the root table. Rust creates a block's vector when its first row arrives and its
  table when the block closes, but nothing else enters the FlatBuffers builder in between (the
  data blocks are not FlatBuffers), so :class:`IndexBuilder` creates both in
  :meth:`IndexBuilder.add_block` and the bytes are the same.
- ``SstStats``: BlockStats tables in block order (add order num_merges, num_deletes, num_puts),
  the vector (omitted when empty), then the table (add order raw_val_size, raw_key_size,
  num_merges, num_deletes, num_puts, block_stats).

Decoders accept any valid encoding and raise :class:`~shale.errors.DataError` on anything else,
including enum values SlateDB does not define.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import flatbuffers

from shale.errors import InvalidError
from shale.fbs._table import (
    Reader,
    Table,
    check_uint,
    create_offset_vector,
    decode_guard,
    finish,
    new_builder,
)

__all__ = [
    "COMPRESSION_LZ4",
    "COMPRESSION_NONE",
    "COMPRESSION_SNAPPY",
    "COMPRESSION_ZLIB",
    "COMPRESSION_ZSTD",
    "FILTER_FORMAT_COMPOSITE",
    "FILTER_FORMAT_LEGACY",
    "SST_TYPE_COMPACTED",
    "SST_TYPE_WAL",
    "BlockMeta",
    "BlockStats",
    "IndexBuilder",
    "SsTableInfo",
    "SstStats",
    "add_sst_info",
    "decode_index",
    "decode_sst_info",
    "decode_stats",
    "encode_index",
    "encode_sst_info",
    "encode_stats",
    "read_sst_info",
]

logger = logging.getLogger(__name__)

#: ``CompressionFormat`` (i8): the codec of every data, filter, index and stats chunk.
COMPRESSION_NONE = 0
COMPRESSION_SNAPPY = 1
COMPRESSION_ZLIB = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
_COMPRESSIONS = frozenset(range(5))

#: ``SstType`` (i8).
SST_TYPE_COMPACTED = 0
SST_TYPE_WAL = 1

#: ``FilterFormat`` (i8): legacy = one raw bloom filter; composite = named filters.
FILTER_FORMAT_LEGACY = 0
FILTER_FORMAT_COMPOSITE = 1


@dataclass(frozen=True, slots=True)
class SsTableInfo:
    """The SST footer table; the manifest embeds an identical copy for compacted SSTs.

    ``first_entry`` is the first key (compacted) or the first seq as 8 bytes u64be (WAL);
    ``last_entry`` the last key (compacted) or ``None`` (WAL). Offsets are absolute file
    offsets; lengths include the chunk's trailing CRC. ``filter_offset`` is the end of the data
    blocks even when there is no filter.
    """

    first_entry: bytes | None
    index_offset: int
    index_len: int
    filter_offset: int
    filter_len: int
    compression_format: int = COMPRESSION_NONE
    sst_type: int = SST_TYPE_COMPACTED
    last_entry: bytes | None = None
    stats_offset: int = 0
    stats_len: int = 0
    filter_format: int = FILTER_FORMAT_COMPOSITE


@dataclass(frozen=True, slots=True)
class BlockMeta:
    """One index entry: a data block's absolute offset and its partition first key."""

    offset: int
    first_key: bytes


@dataclass(frozen=True, slots=True)
class BlockStats:
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


# -- SsTableInfo -------------------------------------------------------------------------------


def add_sst_info(b: flatbuffers.Builder, info: SsTableInfo) -> int:
    """Write ``info`` into builder ``b`` (children first); returns the table offset.

    Shared with the manifest and compactions codecs, which embed SsTableInfo tables.
    """
    if info.compression_format not in _COMPRESSIONS:
        raise InvalidError("unknown compression format", value=info.compression_format)
    if info.sst_type not in (SST_TYPE_COMPACTED, SST_TYPE_WAL):
        raise InvalidError("unknown sst type", value=info.sst_type)
    if info.filter_format not in (FILTER_FORMAT_LEGACY, FILTER_FORMAT_COMPOSITE):
        raise InvalidError("unknown filter format", value=info.filter_format)
    first = None if info.first_entry is None else b.CreateByteVector(bytes(info.first_entry))
    last = None if info.last_entry is None else b.CreateByteVector(bytes(info.last_entry))
    b.StartObject(11)
    b.PrependUint64Slot(9, check_uint("stats_len", info.stats_len, 64), 0)
    b.PrependUint64Slot(8, check_uint("stats_offset", info.stats_offset, 64), 0)
    b.PrependUint64Slot(4, check_uint("filter_len", info.filter_len, 64), 0)
    b.PrependUint64Slot(3, check_uint("filter_offset", info.filter_offset, 64), 0)
    b.PrependUint64Slot(2, check_uint("index_len", info.index_len, 64), 0)
    b.PrependUint64Slot(1, check_uint("index_offset", info.index_offset, 64), 0)
    if last is not None:
        b.PrependUOffsetTRelativeSlot(7, last, 0)
    if first is not None:
        b.PrependUOffsetTRelativeSlot(0, first, 0)
    b.PrependInt8Slot(10, info.filter_format, 0)
    b.PrependInt8Slot(6, info.sst_type, 0)
    b.PrependInt8Slot(5, info.compression_format, 0)
    off: int = b.EndObject()
    return off


def read_sst_info(t: Table) -> SsTableInfo:
    """Decode an SsTableInfo table (also used for the copies inside manifests)."""
    compression = t.i8(5)
    if compression not in _COMPRESSIONS:
        raise t.fail("unknown compression format", value=compression)
    sst_type = t.i8(6)
    if sst_type not in (SST_TYPE_COMPACTED, SST_TYPE_WAL):
        raise t.fail("unknown sst type", value=sst_type)
    filter_format = t.i8(10)
    if filter_format not in (FILTER_FORMAT_LEGACY, FILTER_FORMAT_COMPOSITE):
        raise t.fail("unknown filter format", value=filter_format)
    return SsTableInfo(
        first_entry=t.byte_vector(0, "first_entry"),
        index_offset=t.u64(1),
        index_len=t.u64(2),
        filter_offset=t.u64(3),
        filter_len=t.u64(4),
        compression_format=compression,
        sst_type=sst_type,
        last_entry=t.byte_vector(7, "last_entry"),
        stats_offset=t.u64(8),
        stats_len=t.u64(9),
        filter_format=filter_format,
    )


def encode_sst_info(info: SsTableInfo) -> bytes:
    """The SsTableInfo FlatBuffer as SlateDB writes it in the SST footer (without the CRC).

    :raises InvalidError: a field is out of range or an enum value is unknown.
    """
    b = new_builder(256)
    return finish(b, add_sst_info(b, info))


def decode_sst_info(buf: bytes) -> SsTableInfo:
    """Decode an SsTableInfo FlatBuffer (the footer bytes ``[M, len-14)``, CRC removed).

    :raises DataError: the buffer is not a valid SsTableInfo.
    """
    reader = Reader(buf, "SsTableInfo")
    return decode_guard("SsTableInfo", lambda: read_sst_info(reader.root()))


# -- index ---------------------------------------------------------------------------------------


class IndexBuilder:
    """Builds an ``SsTableIndex`` incrementally, one :meth:`add_block` per data block.

    Call :meth:`add_block` in file order; :meth:`finish` returns the FlatBuffer (the chunk
    payload, before compression and CRC).
    """

    __slots__ = ("_builder", "_finished", "_metas")

    def __init__(self) -> None:
        self._builder = new_builder(1024)
        self._metas: list[int] = []
        self._finished = False

    def __len__(self) -> int:
        return len(self._metas)

    def add_block(self, offset: int, first_key: bytes) -> None:
        """Record a block: creates its ``first_key`` vector, then its ``BlockMeta`` table."""
        if self._finished:
            raise InvalidError("IndexBuilder already finished")
        b = self._builder
        key = b.CreateByteVector(bytes(first_key))
        b.StartObject(2)
        b.PrependUint64Slot(0, check_uint("block offset", offset, 64), 0)
        b.PrependUOffsetTRelativeSlot(1, key, 0)
        self._metas.append(b.EndObject())

    def finish(self) -> bytes:
        """The encoded index; the builder cannot be used afterwards."""
        if self._finished:
            raise InvalidError("IndexBuilder already finished")
        self._finished = True
        b = self._builder
        vec = create_offset_vector(b, self._metas)
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, vec, 0)
        return finish(b, b.EndObject())


def encode_index(metas: list[BlockMeta]) -> bytes:
    """The ``SsTableIndex`` FlatBuffer for ``metas`` (in file order)."""
    ib = IndexBuilder()
    for m in metas:
        ib.add_block(m.offset, m.first_key)
    return ib.finish()


def decode_index(buf: bytes) -> list[BlockMeta]:
    """Decode an ``SsTableIndex`` (the chunk payload after CRC check and decompression).

    :raises DataError: the buffer is not a valid index.
    """
    reader = Reader(buf, "SsTableIndex")

    def run() -> list[BlockMeta]:
        metas = reader.root().req_tables(0, "block_meta")
        out = []
        for t in metas:
            key = t.byte_vector(1, "first_key", required=True)
            assert key is not None
            out.append(BlockMeta(t.u64(0), key))
        return out

    return decode_guard("SsTableIndex", run)


# -- stats ---------------------------------------------------------------------------------------


def encode_stats(stats: SstStats) -> bytes:
    """The ``SstStats`` FlatBuffer (the stats chunk payload).

    :raises InvalidError: a counter is out of range (block counters are u16).
    """
    b = new_builder(256 + 16 * len(stats.block_stats))
    offs = []
    for bs in stats.block_stats:
        b.StartObject(3)
        b.PrependUint16Slot(2, check_uint("block num_merges", bs.num_merges, 16), 0)
        b.PrependUint16Slot(1, check_uint("block num_deletes", bs.num_deletes, 16), 0)
        b.PrependUint16Slot(0, check_uint("block num_puts", bs.num_puts, 16), 0)
        offs.append(b.EndObject())
    vec = create_offset_vector(b, offs) if offs else None
    b.StartObject(6)
    b.PrependUint64Slot(4, check_uint("raw_val_size", stats.raw_val_size, 64), 0)
    b.PrependUint64Slot(3, check_uint("raw_key_size", stats.raw_key_size, 64), 0)
    b.PrependUint64Slot(2, check_uint("num_merges", stats.num_merges, 64), 0)
    b.PrependUint64Slot(1, check_uint("num_deletes", stats.num_deletes, 64), 0)
    b.PrependUint64Slot(0, check_uint("num_puts", stats.num_puts, 64), 0)
    if vec is not None:
        b.PrependUOffsetTRelativeSlot(5, vec, 0)
    return finish(b, b.EndObject())


def decode_stats(buf: bytes) -> SstStats:
    """Decode an ``SstStats`` FlatBuffer.

    :raises DataError: the buffer is not a valid stats table.
    """
    reader = Reader(buf, "SstStats")

    def run() -> SstStats:
        t = reader.root()
        blocks = t.tables(5, "block_stats") or []
        return SstStats(
            num_puts=t.u64(0),
            num_deletes=t.u64(1),
            num_merges=t.u64(2),
            raw_key_size=t.u64(3),
            raw_val_size=t.u64(4),
            block_stats=[BlockStats(bt.u16(0), bt.u16(1), bt.u16(2)) for bt in blocks],
        )

    return decode_guard("SstStats", run)
