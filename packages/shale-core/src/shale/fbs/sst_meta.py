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

``SsTableInfo`` is written with ``flatbuffers.Builder`` (one per SST; the manifest codecs embed
it too). The index and stats codecs live in :mod:`shale.fbs.blockmeta` (an accelerated module with
a pure-Python and a Cython twin) and are re-exported here: those buffers hold a table per data
block -- a 64 MB SST has ~16k -- so they are written and read by hand, byte for byte what
``flatbuffers.Builder`` writes. The per-block records :class:`BlockMeta` and
:class:`BlockStats` are named tuples, which are cheap to create.

Decoders accept any valid encoding and raise :class:`~shale.errors.DataError` on anything else,
including enum values SlateDB does not define.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import flatbuffers

from shale.errors import InvalidError
from shale.fbs._table import (
    Reader,
    Table,
    check_uint,
    decode_guard,
    finish,
    new_builder,
)
from shale.fbs.blockmeta import (
    BlockMeta,
    BlockStats,
    IndexBuilder,
    SstStats,
    decode_index,
    decode_stats,
    encode_index,
    encode_stats,
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
