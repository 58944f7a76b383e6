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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from shale.errors import InvalidError
from shale.fbs import sst_meta as M
from shale.sst import compression as C
from shale.sst.datawriter import DataWriter, shortest_separator

FORMAT_VERSION = 2
#: SlateDB's block sizes: 1 KiB to 64 KiB.
BLOCK_SIZES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
DEFAULT_BLOCK_SIZE = 4096
#: SlateDB 0.17 fills WAL blocks up to u16::MAX bytes whatever the SST block size.
WAL_BLOCK_SIZE = 65535
DEFAULT_MIN_FILTER_KEYS = 1000

_FOOTER = struct.Struct(">QH")
_CRC = struct.Struct(">I")

__all__ = [
    "BLOCK_SIZES",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MIN_FILTER_KEYS",
    "FORMAT_VERSION",
    "WAL_BLOCK_SIZE",
    "SstBuilder",
    "build_sst",
    "default_filter_policies",
    "shortest_separator",
]


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
        self._w = DataWriter(
            block_size, version, self.codec, transformer, wal, bool(not wal and self.policies)
        )
        #: append one row (the data writer's ``add``; checked for ``finish`` by ``add``)
        self._add = self._w.add
        self._finished = False

    def __len__(self) -> int:
        """Rows added so far."""
        return self._w.num_rows

    @property
    def finished_size(self) -> int:
        """Bytes of the data blocks closed so far (framed: compressed, transformed, with CRC).

        Excludes the open block, the filter, index, stats and footer; 0 after :meth:`finish`.
        """
        return 0 if self._finished else self._w.size

    def estimated_size(self) -> int:
        """Bytes written so far plus the open block (excluding filter, index and footer)."""
        if self._finished:
            return 0
        return self._w.size + self._w.open_block_size()

    def add(self, row: tuple) -> None:  # type: ignore[type-arg]
        """Append one row tuple (see :mod:`shale.row`).

        :raises InvalidError: rows out of order (compacted: key ascending then seq descending;
            WAL: seq non-decreasing), bad keys or values, or a finished builder.
        """
        if self._finished:
            raise InvalidError("SST builder already finished")
        self._add(row)

    def add_rows(self, rows: Iterable[tuple]) -> None:  # type: ignore[type-arg]
        """Append many rows (see :meth:`add`)."""
        if self._finished:
            raise InvalidError("SST builder already finished")
        it = iter(rows)
        add_rows = self._w.add_rows
        while add_rows(it, 1 << 30, 1 << 62) == 1 << 30:
            pass

    def add_until(self, rows: Iterator[tuple], max_rows: int, max_size: int) -> int:  # type: ignore[type-arg]
        """Add rows from the iterator ``rows`` until it is exhausted, ``max_rows`` rows were
        added, or the row just added closed a data block that made :attr:`finished_size`
        exceed ``max_size`` (SlateDB's output split point); return the number added.

        The compaction executor's write loop: one call per ``max_rows`` rows instead of one
        :meth:`add` per row.
        """
        if self._finished:
            raise InvalidError("SST builder already finished")
        return self._w.add_rows(rows, max_rows, max_size)

    @property
    def writer(self) -> DataWriter:
        """The data writer (rows -> data blocks) this builder finishes; the compaction kernel
        (:mod:`shale.sst.compact`) writes into it directly."""
        return self._w

    def take_parts(self) -> list[bytes]:
        """Hand over the data blocks finished since the last call (framed pieces, in order);
        :meth:`finish_parts` then returns only what follows them. For writers that stream an
        SST while it is being built (the compaction executor)."""
        w = self._w
        parts = w.chunks
        w.chunks = []
        return parts

    def finish(self) -> bytes:
        """Close the last block and write filter, index, stats, info and footer; return the
        whole SST.

        :raises InvalidError: no rows were added (SlateDB never writes an empty SST; the
            zero-length WAL fence object is written directly, not through a builder).
        """
        return b"".join(self.finish_parts())

    def finish_parts(self, *, key_hashes: Sequence[int] | None = None) -> list[bytes]:
        """As :meth:`finish`, but return the SST as a list of consecutive pieces (data blocks
        and their CRCs, then the metadata tail) without joining them: a writer that can
        stream them (``os.writev``, a multipart upload) avoids one copy of the whole SST.

        :param key_hashes: the SipHash-1-3 hash of every row's key, in order, when the rows
            were written by the compaction kernel (which keeps no keys): the filters are built
            from them (every policy must have ``build_hashed``, as the ``_bf`` bloom filter).
        """
        w = self._w
        if w.num_rows == 0:
            raise InvalidError("an SST needs at least one row")
        if self._finished:
            raise InvalidError("SST builder already finished")
        w.close_block()
        self._finished = True
        data_end = w.size
        tail = bytearray()  # everything after the data blocks; offsets are data_end + len(tail)
        filter_len = 0
        if not self.wal and self.policies and w.num_rows >= self.min_filter_keys:
            from shale.sst.filters import encode_composite

            if key_hashes is not None:
                built = [(p.name, p.build_hashed(key_hashes)) for p in self.policies]
            else:
                built = [(p.name, p.build(w.keys)) for p in self.policies]
            payload = encode_composite(built)
            tail += C.frame_chunk(payload, self.codec, self.transformer)
            filter_len = len(tail)
        w.keys = []
        index_offset = data_end + len(tail)
        tail += C.frame_chunk(w.index.finish(), self.codec, self.transformer)
        index_len = data_end + len(tail) - index_offset
        stats_offset = stats_len = 0
        if not self.wal:
            stats = M.SstStats(w.puts, w.deletes, w.merges, w.raw_key, w.raw_val, w.block_stats)
            stats_offset = data_end + len(tail)
            tail += C.frame_chunk(M.encode_stats(stats), self.codec, self.transformer)
            stats_len = data_end + len(tail) - stats_offset
        info = M.SsTableInfo(
            first_entry=w.first_entry,
            index_offset=index_offset,
            index_len=index_len,
            filter_offset=data_end,
            filter_len=filter_len,
            compression_format=self.codec,
            sst_type=M.SST_TYPE_WAL if self.wal else M.SST_TYPE_COMPACTED,
            last_entry=None if self.wal else w.last_key,
            stats_offset=stats_offset,
            stats_len=stats_len,
            filter_format=M.FILTER_FORMAT_COMPOSITE,
        )
        self.info = info
        meta_offset = data_end + len(tail)
        info_bytes = M.encode_sst_info(info)
        tail += info_bytes
        tail += _CRC.pack(zlib.crc32(info_bytes))
        tail += _FOOTER.pack(meta_offset, self.version)
        parts = w.chunks
        w.chunks = []
        w.size = 0
        parts.append(bytes(tail))
        return parts


def build_sst(rows: Iterable[tuple], **options: Any) -> bytes:  # type: ignore[type-arg]
    """Build an SST from ``rows`` in one call; ``options`` as for :class:`SstBuilder`."""
    b = SstBuilder(**options)
    b.add_rows(rows)
    return b.finish()
