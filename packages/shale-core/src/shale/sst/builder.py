"""Writing SlateDB SST files (format version 2), byte-identical to SlateDB's writer.

Layout (FORMAT.md 3.1): data blocks, an optional composite filter block, the index block, the
stats block (compacted SSTs only), the ``SsTableInfo`` FlatBuffer with its CRC, then the footer
``u64be metadata offset || u16be format version``. Every section but the info is a chunk
(:func:`shale.sst.compression.frame_chunk`).

Two kinds of SST share the layout:

- **compacted** (L0 and sorted runs): rows ordered by key ascending then seq descending; the
  index holds shortest separators; bloom filters are written when there are at least
  ``min_filter_keys`` rows; a stats block is always written.
- **WAL**: rows in commit order (seq non-decreasing); the index holds each block's first seq as
  ``u64be``; no filter, no stats. SlateDB 0.17 fills WAL blocks up to 65535 bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from shale.errors import InvalidError
from shale.fbs import sst_meta as M
from shale.sst import block as _block
from shale.sst import compression as C

FORMAT_VERSION = 2
#: SlateDB's block sizes: 1 KiB to 64 KiB.
BLOCK_SIZES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
DEFAULT_BLOCK_SIZE = 4096
#: SlateDB 0.17 fills WAL blocks up to u16::MAX bytes whatever the SST block size.
WAL_BLOCK_SIZE = 65535
DEFAULT_MIN_FILTER_KEYS = 1000

_FOOTER = struct.Struct(">QH")
_U64 = struct.Struct(">Q")
_CRC = struct.Struct(">I")


def shortest_separator(prev_last: bytes, first: bytes) -> bytes:
    """The index key SlateDB stores for a block that starts with ``first`` after ``prev_last``.

    The shortest prefix of ``first`` that sorts above ``prev_last``; the whole key when both
    are equal (one key's versions span the block boundary).
    """
    n = min(len(prev_last), len(first))
    for i in range(n):
        if prev_last[i] != first[i]:
            return first[: i + 1]
    if len(prev_last) < len(first):
        return first[: len(prev_last) + 1]
    return first


def default_filter_policies() -> list[Any]:
    """SlateDB's default: the ``_bf`` bloom filter at 10 bits per key."""
    from shale.sst.filters import BloomFilterPolicy

    return [BloomFilterPolicy(10)]


class SstBuilder:
    """Build one SST from rows added in order.

    :param wal: build a WAL SST (commit order, seq index, no filter or stats).
    :param block_size: target data-block size in bytes (WAL: the fill limit).
    :param compression: codec id or name (``none``, ``snappy``, ``zlib``, ``lz4``, ``zstd``).
    :param filter_policies: filter policies to write for compacted SSTs (default: SlateDB's
        ``_bf`` at 10 bits per key); an empty sequence writes no filter.
    :param min_filter_keys: write filters only when the SST has at least this many rows.
    :param transformer: optional reversible block transform (encryption).
    :param version: SST format version, 2 (default) or 1 (legacy V1 row codec, for tests of
        old files).
    """

    def __init__(
        self,
        *,
        wal: bool = False,
        block_size: int = DEFAULT_BLOCK_SIZE,
        compression: int | str | None = "none",
        filter_policies: Sequence[Any] | None = None,
        min_filter_keys: int = DEFAULT_MIN_FILTER_KEYS,
        transformer: C.BlockTransformer | None = None,
        version: int = FORMAT_VERSION,
    ) -> None:
        if version not in (1, 2):
            raise InvalidError("SST format version must be 1 or 2", version=version)
        if not isinstance(block_size, int) or block_size < 64 or block_size > 65536:
            raise InvalidError(
                "block size must be between 64 bytes and 64 KiB", block_size=block_size
            )
        self.wal = wal
        self.block_size = block_size
        self.codec = C.codec_id(compression)
        self.policies = list(
            default_filter_policies() if filter_policies is None else filter_policies
        )
        self.min_filter_keys = min_filter_keys
        self.transformer = transformer
        self.version = version
        self._out = bytearray()
        self._block = _block.BlockBuilder(block_size, version)
        self._index = M.IndexBuilder()
        self._block_stats: list[M.BlockStats] = []
        self._keys: list[bytes] = []
        self._first_entry: bytes | None = None
        self._prev_block_last: bytes | None = None
        self._last_key: bytes | None = None
        self._last_seq: int | None = None
        self._num_rows = 0
        self._puts = self._deletes = self._merges = 0
        self._raw_key = self._raw_val = 0
        self._finished = False

    def __len__(self) -> int:
        """Rows added so far."""
        return self._num_rows

    @property
    def finished_size(self) -> int:
        """Bytes of the data blocks closed so far (framed: compressed, transformed, with CRC).

        Excludes the open block, the filter, index, stats and footer; 0 after :meth:`finish`.
        """
        return len(self._out)

    def estimated_size(self) -> int:
        """Bytes written so far plus the open block (excluding filter, index and footer)."""
        return len(self._out) + self._block.estimated_size()

    def add(self, row: tuple) -> None:  # type: ignore[type-arg]
        """Append one row tuple (see :mod:`shale.row`).

        :raises InvalidError: rows out of order (compacted: key ascending then seq descending;
            WAL: seq non-decreasing), bad keys or values, or a finished builder.
        """
        if self._finished:
            raise InvalidError("SST builder already finished")
        key = row[0]
        seq = row[1]
        if self._last_key is not None:
            if self.wal:
                if self._last_seq is not None and seq < self._last_seq:
                    raise InvalidError(
                        "WAL rows must be in seq order", seq=seq, prev=self._last_seq
                    )
            elif key < self._last_key or (
                key == self._last_key and self._last_seq is not None and seq >= self._last_seq
            ):
                raise InvalidError(
                    "compacted SST rows must be sorted by key, then seq descending",
                    key=key,
                    seq=seq,
                )
        if not self._block.add(row):
            self._close_block()
            if not self._block.add(row):  # an empty block always accepts
                raise InvalidError("row rejected by an empty block", key=key)
        if self._num_rows == 0:
            self._first_entry = _U64.pack(seq) if self.wal else key
        self._num_rows += 1
        self._last_key = key
        self._last_seq = seq
        if not self.wal and self.policies:
            self._keys.append(key)

    def add_rows(self, rows: Iterable[tuple]) -> None:  # type: ignore[type-arg]
        """Append many rows (see :meth:`add`)."""
        for r in rows:
            self.add(r)

    def _close_block(self) -> None:
        blk = self._block
        if blk.is_empty():
            return
        if self.wal:
            index_key = _U64.pack(blk.first_seq)
        elif self._prev_block_last is None:
            index_key = b""
        else:
            first_key = blk.first_key
            assert first_key is not None  # a closed block has rows
            index_key = shortest_separator(self._prev_block_last, first_key)
        self._index.add_block(len(self._out), index_key)
        self._block_stats.append(M.BlockStats(blk.num_puts, blk.num_deletes, blk.num_merges))
        self._puts += blk.num_puts
        self._deletes += blk.num_deletes
        self._merges += blk.num_merges
        self._raw_key += blk.raw_key_size
        self._raw_val += blk.raw_value_size
        self._prev_block_last = blk.last_key
        self._out += C.frame_chunk(blk.finish(), self.codec, self.transformer)
        self._block = _block.BlockBuilder(self.block_size, self.version)

    def finish(self) -> bytes:
        """Close the last block and write filter, index, stats, info and footer.

        :raises InvalidError: no rows were added (SlateDB never writes an empty SST; the
            zero-length WAL fence object is written directly, not through a builder).
        """
        if self._num_rows == 0:
            raise InvalidError("an SST needs at least one row")
        self._close_block()
        self._finished = True
        out = self._out
        data_end = len(out)
        filter_len = 0
        if not self.wal and self.policies and self._num_rows >= self.min_filter_keys:
            from shale.sst.filters import encode_composite

            payload = encode_composite([(p.name, p.build(self._keys)) for p in self.policies])
            out += C.frame_chunk(payload, self.codec, self.transformer)
            filter_len = len(out) - data_end
        self._keys = []
        index_offset = len(out)
        out += C.frame_chunk(self._index.finish(), self.codec, self.transformer)
        index_len = len(out) - index_offset
        stats_offset = stats_len = 0
        if not self.wal:
            stats = M.SstStats(
                self._puts,
                self._deletes,
                self._merges,
                self._raw_key,
                self._raw_val,
                self._block_stats,
            )
            stats_offset = len(out)
            out += C.frame_chunk(M.encode_stats(stats), self.codec, self.transformer)
            stats_len = len(out) - stats_offset
        info = M.SsTableInfo(
            first_entry=self._first_entry,
            index_offset=index_offset,
            index_len=index_len,
            filter_offset=data_end,
            filter_len=filter_len,
            compression_format=self.codec,
            sst_type=M.SST_TYPE_WAL if self.wal else M.SST_TYPE_COMPACTED,
            last_entry=None if self.wal else self._last_key,
            stats_offset=stats_offset,
            stats_len=stats_len,
            filter_format=M.FILTER_FORMAT_COMPOSITE,
        )
        self.info = info
        meta_offset = len(out)
        info_bytes = M.encode_sst_info(info)
        out += info_bytes
        out += _CRC.pack(zlib.crc32(info_bytes))
        out += _FOOTER.pack(meta_offset, self.version)
        self._out = bytearray()
        return bytes(out)


def build_sst(rows: Iterable[tuple], **options: Any) -> bytes:  # type: ignore[type-arg]
    """Build an SST from ``rows`` in one call; ``options`` as for :class:`SstBuilder`."""
    b = SstBuilder(**options)
    b.add_rows(rows)
    return b.finish()
