"""``SsTable.scan_rows`` (windows of blocks decoded by ``decode_chunks``) against
``iter_rows``, and the ``decode_chunks`` twins against each other, damaged blocks included."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale.errors import DataError
from shale.objstore.memory import MemoryStore
from shale.sst import SsTable
from shale.sst import compression as C
from shale.sst.builder import build_sst

Row = tuple[Any, ...]


def _rows(n: int, size: int = 40) -> list[Row]:
    return [
        (b"key%05d" % i, n - i, i % 3, b"" if i % 3 == 1 else b"v" * size, None, None)
        for i in range(n)
    ]


def _table(rows: list[Row], **opts: Any) -> SsTable:
    store = MemoryStore()
    store.put("t.sst", build_sst(rows, block_size=opts.pop("block_size", 256), **opts))
    return SsTable.open(store, "t.sst", policies=())


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    lo=st.none() | st.integers(0, 420),
    hi=st.none() | st.integers(0, 420),
    window=st.sampled_from([1, 300, 2000, 1 << 20]),
    codec=st.sampled_from(["none", "zlib"]),
)
def test_scan_rows_equals_iter_rows(
    n: int, lo: int | None, hi: int | None, window: int, codec: str
) -> None:
    table = _table(_rows(n), compression=codec)
    start = None if lo is None else b"key%05d" % lo
    end = None if hi is None else b"key%05d" % hi
    assert list(table.scan_rows(start, end, window=window)) == list(table.iter_rows(start, end))


def _framed(rows_per_block: list[list[Row]]) -> tuple[bytes, list[int]]:
    from shale.sst.block import BlockBuilder

    data = bytearray()
    offsets = [0]
    for rows in rows_per_block:
        b = BlockBuilder(65536)
        for r in rows:
            assert b.add(r)
        data += C.frame_chunk(b.finish(), C.NONE)
        offsets.append(len(data))
    return bytes(data), offsets


def test_decode_chunks_twins(block_impl: ModuleType) -> None:
    blocks = [_rows(5)[:2], _rows(5)[2:], [(b"z", 1, 0, b"x", 5, 6)]]
    data, offsets = _framed(blocks)
    assert block_impl.decode_chunks(data, offsets, 2, C.NONE, None, 0) == blocks
    assert block_impl.decode_chunks(b"pad" + data, [o + 3 for o in offsets]) == blocks
    # a flipped byte: the CRC says so, with the same message in both twins
    bad = bytearray(data)
    bad[offsets[1] + 3] ^= 1
    with pytest.raises(DataError, match="SST data block checksum mismatch"):
        block_impl.decode_chunks(bytes(bad), offsets, 2, C.NONE, None, 0)
    with pytest.raises(DataError, match="shorter than its checksum"):
        block_impl.decode_chunks(data, [0, 3], 2, C.NONE, None, 0)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200), cut=st.integers(0, 200))
def test_decode_chunks_twins_agree_on_garbage(both_twins: Any, data: bytes, cut: int) -> None:
    py, c = both_twins("block")
    framed = data + C.frame_chunk(data, C.NONE)[-4:]  # a valid CRC over garbage payloads
    offsets = [0, min(cut, len(framed)), len(framed)]
    results = []
    for impl in (py, c):
        try:
            results.append(("ok", impl.decode_chunks(framed, offsets, 2, C.NONE, None, 7)))
        except DataError as exc:
            results.append(("error", str(exc)))
    assert results[0] == results[1]


@pytest.mark.parametrize("wal", [False, True])
@pytest.mark.parametrize("n", [1, 3, 400])
def test_block_rows_are_the_blocks_in_order(wal: bool, n: int) -> None:
    rows = _rows(n)
    if wal:  # a WAL SST's rows come in seq order
        rows = [(k, i + 1, kind, v, e, c) for i, (k, _s, kind, v, e, c) in enumerate(rows)]
    data = build_sst(rows, block_size=256, wal=wal, compression=None)
    for table in (SsTable.from_bytes(data, policies=()), _table(rows, wal=wal)):
        blocks = table.block_rows()
        assert len(blocks) == table.block_count
        assert [r for b in blocks for r in b] == rows == list(table.iter_rows())
