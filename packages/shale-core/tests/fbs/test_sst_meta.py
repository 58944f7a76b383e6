"""SsTableInfo, index and stats FlatBuffers: round trips, exact layouts, hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale.errors import DataError, InvalidError
from shale.fbs import sst_meta
from shale.fbs.sst_meta import (
    BlockMeta,
    BlockStats,
    IndexBuilder,
    SsTableInfo,
    SstStats,
    decode_index,
    decode_sst_info,
    decode_stats,
    encode_index,
    encode_sst_info,
    encode_stats,
)

u64 = st.integers(0, 2**64 - 1)
u16 = st.integers(0, 2**16 - 1)
maybe_bytes = st.none() | st.binary(max_size=24)

infos = st.builds(
    SsTableInfo,
    first_entry=maybe_bytes,
    index_offset=u64,
    index_len=u64,
    filter_offset=u64,
    filter_len=u64,
    compression_format=st.integers(0, 4),
    sst_type=st.integers(0, 1),
    last_entry=maybe_bytes,
    stats_offset=u64,
    stats_len=u64,
    filter_format=st.integers(0, 1),
)
metas = st.lists(st.builds(BlockMeta, u64, st.binary(max_size=16)), max_size=12)
stats = st.builds(
    SstStats,
    num_puts=u64,
    num_deletes=u64,
    num_merges=u64,
    raw_key_size=u64,
    raw_val_size=u64,
    block_stats=st.lists(st.builds(BlockStats, u16, u16, u16), max_size=8),
)


def _vtable(buf: bytes) -> tuple[int, ...]:
    """The root table's vtable entries (after the two size fields)."""
    root = struct.unpack_from("<I", buf, 0)[0]
    vt = root - struct.unpack_from("<i", buf, root)[0]
    vt_len = struct.unpack_from("<H", buf, vt)[0]
    return struct.unpack_from(f"<{vt_len // 2}H", buf, vt)[2:]


@settings(max_examples=150, deadline=None)
@given(infos)
def test_sst_info_round_trip(info: SsTableInfo) -> None:
    buf = encode_sst_info(info)
    assert decode_sst_info(buf) == info
    assert encode_sst_info(decode_sst_info(buf)) == buf


@settings(max_examples=100, deadline=None)
@given(metas)
def test_index_round_trip(ms: list[BlockMeta]) -> None:
    buf = encode_index(ms)
    assert decode_index(buf) == ms
    assert encode_index(decode_index(buf)) == buf


@settings(max_examples=100, deadline=None)
@given(stats)
def test_stats_round_trip(s: SstStats) -> None:
    buf = encode_stats(s)
    assert decode_stats(buf) == s
    assert encode_stats(decode_stats(buf)) == buf


def test_wal_info_omits_defaults() -> None:
    """A WAL SST footer: no last_entry, no stats; sst_type Wal and filter_format present."""
    info = SsTableInfo(
        first_entry=(7).to_bytes(8, "big"),
        index_offset=200,
        index_len=30,
        filter_offset=200,
        filter_len=0,
        sst_type=sst_meta.SST_TYPE_WAL,
    )
    buf = encode_sst_info(info)
    vt = _vtable(buf)
    present = {slot for slot, off in enumerate(vt) if off}
    assert present == {0, 1, 2, 3, 6, 10}
    assert decode_sst_info(buf) == info


def test_stats_empty_block_vector_is_omitted() -> None:
    buf = encode_stats(SstStats(num_puts=3))
    assert 5 not in {slot for slot, off in enumerate(_vtable(buf)) if off}
    assert decode_stats(buf) == SstStats(num_puts=3)


def test_index_builder_matches_encode_index() -> None:
    ms = [BlockMeta(0, b""), BlockMeta(4100, b"k"), BlockMeta(8200, b"ka")]
    ib = IndexBuilder()
    for m in ms:
        ib.add_block(m.offset, m.first_key)
    assert len(ib) == 3
    assert ib.finish() == encode_index(ms)
    with pytest.raises(InvalidError):
        ib.finish()


def test_index_first_block_offset_absent() -> None:
    """Block 0 sits at offset 0, the default, so its BlockMeta has no offset field."""
    buf = encode_index([BlockMeta(0, b"")])
    assert decode_index(buf) == [BlockMeta(0, b"")]
    assert len(buf) < len(encode_index([BlockMeta(1, b"")]))


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(InvalidError):
        encode_sst_info(SsTableInfo(None, -1, 0, 0, 0))
    with pytest.raises(InvalidError):
        encode_sst_info(SsTableInfo(None, 0, 0, 0, 0, compression_format=9))
    with pytest.raises(InvalidError):
        encode_stats(SstStats(block_stats=[BlockStats(num_puts=70000)]))
    with pytest.raises(InvalidError):
        encode_index([BlockMeta(2**64, b"")])


def test_decode_rejects_unknown_enums() -> None:
    good = encode_sst_info(SsTableInfo(b"a", 1, 2, 3, 4, compression_format=4))
    # compression_format is the last field added: find its byte by flipping the value.
    bad = encode_sst_info(SsTableInfo(b"a", 1, 2, 3, 4, compression_format=1))
    diff = [i for i in range(len(good)) if good[i] != bad[i]]
    assert len(diff) == 1
    hostile = bytearray(good)
    hostile[diff[0]] = 0x7F
    with pytest.raises(DataError):
        decode_sst_info(bytes(hostile))


@pytest.mark.parametrize("buf", [b"", b"\x00", b"\x00\x00\x00", b"\xff\xff\xff\xff", bytes(8)])
def test_tiny_buffers(buf: bytes) -> None:
    for decode in (decode_sst_info, decode_index, decode_stats):
        with pytest.raises(DataError):
            decode(buf)


def test_index_missing_required_vector() -> None:
    # An SsTableIndex with no fields at all: block_meta is required.
    from shale.fbs._table import finish, new_builder

    b = new_builder()
    b.StartObject(1)
    with pytest.raises(DataError, match="required"):
        decode_index(finish(b, b.EndObject()))


def _decoders_only_raise_data_error(buf: bytes) -> None:
    for decode in (decode_sst_info, decode_index, decode_stats):
        try:
            decode(buf)
        except DataError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(buf: bytes) -> None:
    _decoders_only_raise_data_error(buf)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    which = draw(st.sampled_from(["info", "index", "stats"]))
    if which == "info":
        buf = bytearray(encode_sst_info(draw(infos)))
    elif which == "index":
        buf = bytearray(encode_index(draw(metas)))
    else:
        buf = bytearray(encode_stats(draw(stats)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert"]))
        if not buf:
            break
        i = draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del buf[i:]
        else:
            buf[i:i] = draw(st.binary(min_size=1, max_size=4))
    return bytes(buf)


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_fuzz_mutated_buffers(buf: bytes) -> None:
    _decoders_only_raise_data_error(buf)
