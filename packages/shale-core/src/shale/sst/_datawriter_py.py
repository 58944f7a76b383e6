"""The data section of an SST being built: rows -> data blocks -> framed chunks, index entries,
block stats and totals. Pure-Python reference twin of ``shale/sst/_datawriter_c.pyx``.

:class:`shale.sst.builder.SstBuilder` owns one :class:`DataWriter` and adds the sections after
the data (filter, index, stats, info, footer) in ``finish``. Split out because it is the per-row
and per-block hot loop of every memtable flush and compaction; the compiled twin runs it with no
Python bytecode per row.

Invariants (both twins, pinned by ``tests/sst/test_datawriter.py``):

* Row order is checked before the row is added: compacted SSTs take keys ascending then seqs
  descending, WAL SSTs seqs non-decreasing; the errors are :class:`~shale.errors.InvalidError`
  with the messages below. A rejected row changes nothing.
* A block is closed when the next row does not fit (SlateDB's rule, :class:`BlockBuilder`);
  its index key is the shortest separator from the previous block's last key (compacted;
  ``b""`` for the first block) or its first seq as ``u64be`` (WAL); its chunk
  ``T(C(payload)) || u32be crc32`` is appended to :attr:`chunks` as two ``bytes`` (never copied
  into one growing buffer: a bytearray the size of a 256 MB SST is reallocated and copied
  dozens of times as it grows); :attr:`size` is their total length.
* :meth:`add_rows` is :meth:`add` in a loop that stops after ``max_rows`` rows or right after the
  row whose block closing pushed :attr:`size` above ``max_size`` -- where SlateDB splits outputs.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

from shale.errors import InvalidError
from shale.fbs.blockmeta import BlockStats, IndexBuilder
from shale.sst import block as _block
from shale.sst import compression as C

__all__ = ["DataWriter", "shortest_separator"]

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


class DataWriter:
    """Rows in, framed data blocks out (see the module docstring).

    :param block_size: target data-block size in bytes.
    :param version: SST format version (1 or 2).
    :param codec: compression codec id.
    :param transformer: optional block transformer.
    :param wal: WAL order and seq index keys.
    :param keep_keys: collect every row's key in :attr:`keys` (for the filters).
    """

    def __init__(
        self,
        block_size: int,
        version: int,
        codec: int,
        transformer: Any,
        wal: bool,
        keep_keys: bool,
    ) -> None:
        self.block_size = block_size
        self.version = version
        self.codec = codec
        self.transformer = transformer
        self.wal = wal
        self.keep_keys = keep_keys
        #: finished, framed data blocks (and their CRCs), in order
        self.chunks: list[bytes] = []
        #: total length of ``chunks``
        self.size = 0
        self.index = IndexBuilder()
        self.block_stats: list[BlockStats] = []
        self.keys: list[bytes] = []
        self.first_entry: bytes | None = None
        self.last_key: bytes | None = None
        self.last_seq: int | None = None
        self.num_rows = 0
        self.puts = self.deletes = self.merges = 0
        self.raw_key = self.raw_val = 0
        self._block = _block.BlockBuilder(block_size, version)
        self._prev_block_last: bytes | None = None

    def open_block_size(self) -> int:
        """Estimated encoded size of the open block."""
        return self._block.estimated_size()

    def add(self, row: tuple) -> None:  # type: ignore[type-arg]
        """Append one row tuple (see :mod:`shale.row`).

        :raises InvalidError: rows out of order, bad keys or values.
        """
        key = row[0]
        seq = row[1]
        last_key = self.last_key
        if last_key is not None:
            last_seq = self.last_seq
            if self.wal:
                if last_seq is not None and seq < last_seq:
                    raise InvalidError("WAL rows must be in seq order", seq=seq, prev=last_seq)
            elif key < last_key or (key == last_key and last_seq is not None and seq >= last_seq):
                raise InvalidError(
                    "compacted SST rows must be sorted by key, then seq descending",
                    key=key,
                    seq=seq,
                )
        if not self._block.add(row):
            self.close_block()
            if not self._block.add(row):  # an empty block always accepts
                raise InvalidError("row rejected by an empty block", key=key)
        if self.num_rows == 0:
            self.first_entry = _U64.pack(seq) if self.wal else key
        self.num_rows += 1
        self.last_key = key
        self.last_seq = seq
        if self.keep_keys:
            self.keys.append(key)

    def add_rows(self, rows: Iterator[tuple], max_rows: int, max_size: int) -> int:  # type: ignore[type-arg]
        """Add rows from ``rows`` until it is exhausted, ``max_rows`` were added, or the row
        just added closed a block that made :attr:`size` exceed ``max_size``.

        :return: the number of rows added (``< max_rows`` and ``size <= max_size``: the
            iterator is exhausted).
        """
        add = self.add
        n = 0
        for row in rows:
            add(row)
            n += 1
            if n >= max_rows or self.size > max_size:
                break
        return n

    def close_block(self) -> None:
        """Close the open block (if it has rows): frame it into :attr:`chunks`, index it."""
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
        self.index.add_block(self.size, index_key)
        self.block_stats.append(BlockStats(blk.num_puts, blk.num_deletes, blk.num_merges))
        self.puts += blk.num_puts
        self.deletes += blk.num_deletes
        self.merges += blk.num_merges
        self.raw_key += blk.raw_key_size
        self.raw_val += blk.raw_value_size
        self._prev_block_last = blk.last_key
        stored = C.compress(self.codec, blk.finish())
        if self.transformer is not None:
            stored = self.transformer.encode(stored)
        self.chunks.append(stored)
        self.chunks.append(_CRC.pack(zlib.crc32(stored)))
        self.size += len(stored) + 4
