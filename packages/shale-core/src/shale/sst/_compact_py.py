"""The compaction kernel: merge -> retention -> SST data blocks, for one compaction (sub)range.

Pure-Python reference twin of ``shale/sst/_compact_c.pyx`` (same API, same output bytes, same
errors); the compaction executor (``shale_compactor.executor``) uses the kernel for the common
case -- no merge operator, no compaction filter, uncompressed and untransformed blocks, only
``_bf`` bloom filters -- and its general row pipeline otherwise. The compiled twin runs the
whole loop with the GIL released, so several kernels (the key ranges of one job) run in
parallel threads.

What it does, as a pipeline (each stage is the reference for the compiled twin)::

    sources: callables -> windows of stored blocks   (CRC-checked and decoded: the block codec)
    -> rows within each window's [start, end)
    -> MergeIterator                                  key ascending, seq descending, source order
    -> retention                                      SlateDB's RetentionIterator, no operator
    -> resume skip                                    rows an interrupted run already wrote
    -> the SST's DataWriter                           blocks, index, stats, split points

Invariants and why:

* **Sources** are callables returning the next *window* of one source -- a tuple ``(data,
  offsets, version, start, end, first_block)``: ``data`` holds consecutive stored data blocks
  (chunks ``payload || u32be crc32``) at ``offsets`` (relative to ``data``, one more than the
  blocks), ``version`` the SST format version, ``[start, end)`` the keys of the window wanted
  (``None``: unbounded; a row at or above ``end`` ends the window) and ``first_block`` the first
  block's number in its SST (for errors) -- or ``None`` when the source is exhausted. A sorted
  run is one source whose windows come from its SSTs in order. The callable runs with the GIL
  held (in the compiled twin, from inside the loop).
* **Retention** is the executor's (``shale_compactor.retention``) without a merge operator: a
  merge operand raises ``InvalidError("merge operator missing")``; expired values become
  tombstones (keeping ``create_ts``); a key's versions are kept newest first down to the first
  at or below ``retention_min_seq`` (all but the newest when it is ``None``); tombstones at the
  tail are dropped when ``filter_tombstones``; a duplicate ``(key, seq)`` keeps the later row.
* **Resume**: with ``resume=(key, seq)`` the kept rows of ``key`` with seq ``>= seq`` are
  skipped (the interrupted run wrote them); the sources must start at ``key``.
* **Output** goes to the :class:`shale.sst.datawriter.DataWriter` of an
  :class:`~shale.sst.builder.SstBuilder` (``SstBuilder.writer``): its blocks, index entries,
  block stats and totals are exactly what adding the kept rows one by one gives (the same
  split points too). :meth:`Kernel.run` stops after the row whose block closing pushed the
  data size above ``max_size`` (``RUN_SPLIT``: finish the SST with :meth:`Kernel.finish_sst`
  and go on with a new writer), when about ``out_bytes`` of finished blocks are ready
  (``RUN_MORE``; the reference twin stops every 1024 rows instead), or at the end
  (``RUN_DONE``). :meth:`Kernel.finish_sst` closes the open block and returns the SipHash-1-3
  hash of every row's key (``hash_keys``), which ``SstBuilder.finish_parts(key_hashes=...)``
  turns into the ``_bf`` filter without keeping the keys.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from shale.errors import InvalidError
from shale.merge import MergeIterator
from shale.sst import block as _block
from shale.sst import bloom as _bloom

__all__ = ["RUN_DONE", "RUN_MORE", "RUN_SPLIT", "Kernel", "crc32", "crc32_simd"]

#: :meth:`Kernel.run` results: more rows to come, the SST must be finished now, all rows done.
RUN_MORE = 0
RUN_SPLIT = 1
RUN_DONE = 2

#: Rows per :meth:`Kernel.run` call of this twin.
ROWS_PER_RUN = 1024

_TOMBSTONE = 1
_MERGE = 2

Row = tuple[Any, ...]
Window = tuple[bytes, list[int], int, "bytes | None", "bytes | None", int]


def crc32(data: bytes, value: int = 0) -> int:
    """The SST chunk checksum, ``zlib.crc32`` (the compiled twin folds it with PCLMULQDQ)."""
    return zlib.crc32(data, value)


def crc32_simd() -> bool:
    """Whether :func:`crc32` uses carry-less multiplication (never in this twin)."""
    return False


def _key_detail(key: bytes) -> bytes:
    return key if len(key) <= 64 else key[:64] + b"..."


def _source_rows(next_window: Callable[[], Window | None]) -> Iterator[Row]:
    """The rows of one source, window by window, within each window's bounds."""
    while True:
        w = next_window()
        if w is None:
            return
        data, offsets, version, start, end, first_block = w
        blocks = _block.decode_chunks(data, list(offsets), version, 0, None, first_block)
        for rows in blocks:
            if start is not None:
                rows = [r for r in rows if r[0] >= start]
                if rows:
                    start = None  # the rows that follow are above it
            if end is not None and rows and rows[-1][0] >= end:
                yield from (r for r in rows if r[0] < end)
                break  # nothing else in this window is in range
            yield from rows


def _keep(
    group: list[Row], tick: int | None, min_seq: int | None, filter_tombstones: bool
) -> list[Row]:
    """The versions of one key a compaction keeps (newest first)."""
    for row in group:
        if row[2] == _MERGE:
            raise InvalidError("merge operator missing", key=_key_detail(row[0]), seq=row[1])
    out: list[Row] = []
    for row in group:
        expire = row[4]
        if tick is not None and expire is not None and expire <= tick:
            row = (row[0], row[1], _TOMBSTONE, b"", None, row[5])
        out.append(row)
        if min_seq is not None and row[1] > min_seq:
            continue
        break  # the boundary version: everything older is invisible to every reader
    if filter_tombstones:
        while out and out[-1][2] == _TOMBSTONE:
            out.pop()
    return out


def _retain(
    rows: Iterable[Row], tick: int | None, min_seq: int | None, filter_tombstones: bool
) -> Iterator[Row]:
    group: list[Row] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            yield from _keep(group, tick, min_seq, filter_tombstones)
            group = []
        if group and group[-1][1] == row[1]:
            group[-1] = row  # a duplicate (key, seq): the later row wins, as in SlateDB
        else:
            group.append(row)
    if group:
        yield from _keep(group, tick, min_seq, filter_tombstones)


def _skip(rows: Iterable[Row], key: bytes, seq: int) -> Iterator[Row]:
    it = iter(rows)
    for row in it:
        if row[0] == key and row[1] >= seq:
            continue
        yield row
        break
    yield from it


class Kernel:
    """Merge -> retention -> SST data blocks for one compaction (see the module docstring).

    :param sources: one callable per source, newest first, returning its next window or
        ``None``.
    :param block_size: the SST block size (the writers' too).
    :param compaction_clock_tick: rows with ``expire_ts <=`` this have expired (``None``: none).
    :param retention_min_seq: the oldest seq a snapshot may read at (``None``: no snapshots).
    :param filter_tombstones: drop tombstones at the tail of a key's kept versions.
    :param resume: ``(key, seq)`` of the last row an interrupted run wrote, or ``None``.
    :param hash_keys: :meth:`finish_sst` returns the key hashes for the ``_bf`` filter.
    """

    def __init__(
        self,
        sources: list[Callable[[], Window | None]],
        *,
        block_size: int,
        compaction_clock_tick: int | None = None,
        retention_min_seq: int | None = None,
        filter_tombstones: bool = False,
        resume: tuple[bytes, int] | None = None,
        hash_keys: bool = False,
    ) -> None:
        self.block_size = block_size
        self.hash_keys = hash_keys
        rows: Iterable[Row] = MergeIterator([_source_rows(s) for s in sources])
        rows = _retain(rows, compaction_clock_tick, retention_min_seq, filter_tombstones)
        if resume is not None:
            rows = _skip(rows, bytes(resume[0]), resume[1])
        self._rows = iter(rows)

    def run(self, writer: Any, max_size: int, out_bytes: int, fd: int = -1) -> int:
        """Add rows to ``writer`` until ``RUN_SPLIT``, ``RUN_DONE`` or ``RUN_MORE`` (see the
        module docstring; ``out_bytes`` is ignored by this twin). With ``fd`` >= 0 the finished
        blocks are written to that file (from its current position) instead of being left in
        ``writer.chunks``; the writer's index, stats and size are the same either way.

        :raises OSError: writing to ``fd`` failed.
        """
        n = writer.add_rows(self._rows, ROWS_PER_RUN, max_size)
        if fd >= 0:
            _write_chunks(fd, writer)
        if writer.size > max_size:
            return RUN_SPLIT
        return RUN_DONE if n < ROWS_PER_RUN else RUN_MORE

    def finish_sst(self, writer: Any, fd: int = -1) -> list[int] | None:
        """Close ``writer``'s open block (its blocks to ``fd`` when >= 0, as :meth:`run`);
        return its rows' key hashes (``hash_keys``).

        :raises OSError: writing to ``fd`` failed.
        """
        writer.close_block()
        if fd >= 0:
            _write_chunks(fd, writer)
        hashes = _bloom.hash_keys(writer.keys) if self.hash_keys else None
        writer.keys = []
        return hashes


def _write_chunks(fd: int, writer: Any) -> None:
    """Write ``writer.chunks`` (finished blocks) to ``fd`` and empty it."""
    for chunk in writer.chunks:
        view = memoryview(chunk).cast("B")
        while view:
            view = view[os.write(fd, view) :]
    writer.chunks = []
