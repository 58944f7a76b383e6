"""The hand-written index and stats codecs (``shale.fbs.blockmeta``, both twins) against the
``flatbuffers.Builder`` / :class:`~shale.fbs._table.Table` codecs they replaced.

The reference encoders and decoders below are the previous implementation, kept verbatim: the
encoders' bytes must be identical for any input, and the decoders must accept and reject
exactly the same buffers, with identical results. The twins must also agree with each other
on error messages.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import flatbuffers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import _accel
from shale.errors import DataError, InvalidError
from shale.fbs import blockmeta, sst_meta
from shale.fbs._blockmeta_py import BlockMeta, BlockStats, SstStats
from shale.fbs._table import (
    Reader,
    check_uint,
    create_offset_vector,
    decode_guard,
    finish,
    new_builder,
)
from shale.sst.builder import SstBuilder

# -- the reference: the previous flatbuffers.Builder-based codecs --------------------------------


def _ref_encode_index(metas: list[BlockMeta]) -> bytes:
    b = new_builder(1024)
    offs = []
    for m in metas:
        key = b.CreateByteVector(bytes(m.first_key))
        b.StartObject(2)
        b.PrependUint64Slot(0, check_uint("block offset", m.offset, 64), 0)
        b.PrependUOffsetTRelativeSlot(1, key, 0)
        offs.append(b.EndObject())
    vec = create_offset_vector(b, offs)
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    return finish(b, b.EndObject())


def _ref_encode_stats(stats: SstStats) -> bytes:
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


def _ref_decode_index(buf: bytes) -> list[BlockMeta]:
    reader = Reader(buf, "SsTableIndex")

    def run() -> list[BlockMeta]:
        out = []
        for t in reader.root().req_tables(0, "block_meta"):
            key = t.byte_vector(1, "first_key", required=True)
            assert key is not None
            out.append(BlockMeta(t.u64(0), key))
        return out

    return decode_guard("SsTableIndex", run)


def _ref_decode_stats(buf: bytes) -> SstStats:
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


def _settings(examples: int) -> settings:
    # The twin fixtures are function-scoped; they hold no state, so reuse across examples is fine.
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- strategies ------------------------------------------------------------------------------------

offsets = st.one_of(st.just(0), st.integers(1, 2**40), st.integers(2**40, 2**64 - 1))
keys = st.binary(max_size=300)
small_metas = st.lists(st.builds(BlockMeta, offsets, keys), min_size=1, max_size=40)
u16 = st.one_of(st.just(0), st.integers(1, 0xFFFF))
u64 = st.one_of(st.just(0), st.integers(1, 2**64 - 1))
block_stats = st.builds(BlockStats, u16, u16, u16)
small_stats = st.builds(SstStats, u64, u64, u64, u64, u64, st.lists(block_stats, max_size=40))


@st.composite
def large_metas(draw: st.DrawFn) -> list[BlockMeta]:
    """1..5000 blocks: random offsets up to 2^40 (some 0) and keys of 0..300 bytes."""
    n = draw(st.integers(1, 5000))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    out = []
    for _ in range(n):
        off = 0 if rnd.random() < 0.05 else rnd.randint(1, 2**40)
        klen = rnd.choice((0, rnd.randint(0, 8), rnd.randint(0, 40), rnd.randint(0, 300)))
        out.append(BlockMeta(off, rnd.randbytes(klen)))
    return out


@st.composite
def large_stats(draw: st.DrawFn) -> SstStats:
    """0..5000 blocks; each counter is 0 often enough to cover every field combination."""
    n = draw(st.integers(0, 5000))
    rnd = random.Random(draw(st.integers(0, 2**32)))

    def c16() -> int:
        return 0 if rnd.random() < 0.4 else rnd.randint(1, 0xFFFF)

    blocks = [BlockStats(c16(), c16(), c16()) for _ in range(n)]
    p, d, m, k, v = (0 if rnd.random() < 0.3 else rnd.randint(1, 2**64 - 1) for _ in range(5))
    return SstStats(p, d, m, k, v, blocks)


def _outcome(fn: Any, buf: bytes) -> object:
    """The decoded value, or ``DataError`` (any other exception propagates)."""
    try:
        return fn(buf)
    except DataError:
        return DataError


def _error(fn: Any, buf: bytes) -> object:
    try:
        return fn(buf)
    except DataError as exc:
        return ("DataError", str(exc))


@st.composite
def mutated(draw: st.DrawFn, encoded: bytes) -> bytes:
    buf = bytearray(encoded)
    for _ in range(draw(st.integers(1, 4))):
        if not buf:
            break
        i = draw(st.integers(0, len(buf) - 1))
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert"]))
        if op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del buf[i:]
        else:
            buf[i:i] = draw(st.binary(min_size=1, max_size=4))
    return bytes(buf)


# -- encoders: byte-identical to the Builder -------------------------------------------------------


@_settings(150)
@given(metas=small_metas)
def test_index_matches_builder_small(blockmeta_impl: ModuleType, metas: list[BlockMeta]) -> None:
    assert blockmeta_impl.encode_index(metas) == _ref_encode_index(metas)


@_settings(25)
@given(metas=large_metas())
def test_index_matches_builder_large(blockmeta_impl: ModuleType, metas: list[BlockMeta]) -> None:
    buf = blockmeta_impl.encode_index(metas)
    assert buf == _ref_encode_index(metas)
    assert blockmeta_impl.decode_index(buf) == metas


@_settings(150)
@given(stats=small_stats)
def test_stats_matches_builder_small(blockmeta_impl: ModuleType, stats: SstStats) -> None:
    assert blockmeta_impl.encode_stats(stats) == _ref_encode_stats(stats)


@_settings(25)
@given(stats=large_stats())
def test_stats_matches_builder_large(blockmeta_impl: ModuleType, stats: SstStats) -> None:
    buf = blockmeta_impl.encode_stats(stats)
    assert buf == _ref_encode_stats(stats)
    assert blockmeta_impl.decode_stats(buf) == stats


@pytest.mark.parametrize(
    "blocks",
    [
        [BlockStats(p, d, m) for p in (0, 1) for d in (0, 2) for m in (0, 3)] * 3,
        [BlockStats()] * 5,
        [BlockStats(1)],
        [BlockStats(0, 0, 7), BlockStats(0, 5), BlockStats(65535, 65535, 65535)],
    ],
)
@pytest.mark.parametrize(
    "totals", [(0, 0, 0, 0, 0), (1, 0, 0, 0, 0), (0, 0, 0, 0, 9), (5, 4, 3, 2, 2**64 - 1)]
)
def test_stats_every_layout(
    blockmeta_impl: ModuleType, blocks: list[BlockStats], totals: tuple[int, ...]
) -> None:
    """Every field combination at both alignments, vtables shared and not, all totals."""
    p, d, m, k, v = totals
    for bs in (blocks, []):
        stats = SstStats(p, d, m, k, v, bs)
        assert blockmeta_impl.encode_stats(stats) == _ref_encode_stats(stats)


def test_index_layout_edges(blockmeta_impl: ModuleType) -> None:
    """Offsets 0 after non-zero ones, every padding of a key, u64 max, one and many blocks."""
    cases = [
        [BlockMeta(0, b"")],
        [BlockMeta(1, b"")],
        [BlockMeta(2**64 - 1, b"\xff" * 7)],
        [BlockMeta(0, b"a"), BlockMeta(0, b"ab"), BlockMeta(5, b""), BlockMeta(0, b"abc")],
        [BlockMeta(i * 4096, bytes(i % 9)) for i in range(200)],
        [BlockMeta(i % 3, bytes(i % 5)) for i in range(100)],
    ]
    for metas in cases:
        buf = blockmeta_impl.encode_index(metas)
        assert buf == _ref_encode_index(metas)
        assert blockmeta_impl.decode_index(buf) == metas


def test_index_builder_incremental(blockmeta_impl: ModuleType) -> None:
    rnd = random.Random(7)
    metas = [
        BlockMeta(rnd.randint(0, 2**40), rnd.randbytes(rnd.randint(0, 30))) for _ in range(700)
    ]
    ib = blockmeta_impl.IndexBuilder()
    assert len(ib) == 0
    for i, m in enumerate(metas):
        ib.add_block(m.offset, bytearray(m.first_key) if i % 2 else m.first_key)
        assert len(ib) == i + 1
    assert ib.finish() == _ref_encode_index(metas)
    with pytest.raises(InvalidError):
        ib.finish()
    with pytest.raises(InvalidError):
        ib.add_block(1, b"x")


def test_empty_index(blockmeta_impl: ModuleType) -> None:
    """No blocks: SlateDB never writes it, but the encoding is still the Builder's."""
    assert blockmeta_impl.encode_index([]) == _ref_encode_index([])
    assert blockmeta_impl.decode_index(_ref_encode_index([])) == []


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.5, "1", None])
def test_encoders_reject_bad_numbers(blockmeta_impl: ModuleType, bad: object) -> None:
    with pytest.raises(InvalidError):
        blockmeta_impl.encode_index([BlockMeta(bad, b"")])  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        blockmeta_impl.IndexBuilder().add_block(bad, b"")
    with pytest.raises(InvalidError):
        blockmeta_impl.encode_stats(SstStats(raw_key_size=bad))  # type: ignore[arg-type]
    for i in range(3):
        counts: list[Any] = [1, 2, 3]
        counts[i] = bad if bad != 2**64 else 70000
        with pytest.raises(InvalidError):
            blockmeta_impl.encode_stats(SstStats(block_stats=[BlockStats(*counts)]))


def test_encoders_accept_int_subclasses_and_duck_types(blockmeta_impl: ModuleType) -> None:
    class Count(int):
        pass

    class Duck:
        num_puts = 3
        num_deletes = 0
        num_merges = Count(1)

    duck: Any = Duck()
    stats = SstStats(num_puts=Count(4), block_stats=[duck, BlockStats(1, 2, 3)])
    expected = SstStats(num_puts=4, block_stats=[BlockStats(3, 0, 1), BlockStats(1, 2, 3)])
    assert blockmeta_impl.encode_stats(stats) == _ref_encode_stats(expected)
    metas = [BlockMeta(Count(4096), memoryview(b"k"))]  # type: ignore[arg-type]
    assert blockmeta_impl.encode_index(metas) == _ref_encode_index([BlockMeta(4096, b"k")])


# -- decoders: same verdicts as the Table-based reader --------------------------------------------


def test_decoders_accept_other_encodings(blockmeta_impl: ModuleType) -> None:
    """Any valid encoding: defaults written, other field orders, trailing unknown slots."""
    b = flatbuffers.Builder(0)
    b.ForceDefaults(True)
    k1 = b.CreateByteVector(b"")
    b.StartObject(4)  # two extra slots: a newer schema
    b.PrependUOffsetTRelativeSlot(1, k1, 0)
    b.PrependUint64Slot(0, 0, 0)
    b.PrependUint32Slot(3, 99, 0)
    m1 = b.EndObject()
    k2 = b.CreateByteVector(b"key")
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(1, k2, 0)
    b.PrependUint64Slot(0, 77, 0)
    m2 = b.EndObject()
    vec = create_offset_vector(b, [m1, m2, m1])
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    buf = finish(b, b.EndObject())
    expected = [BlockMeta(0, b""), BlockMeta(77, b"key"), BlockMeta(0, b"")]
    assert _ref_decode_index(buf) == expected
    assert blockmeta_impl.decode_index(buf) == expected
    assert blockmeta_impl.decode_index(bytearray(buf)) == expected

    b = flatbuffers.Builder(0)
    b.ForceDefaults(True)
    b.StartObject(3)
    b.PrependUint16Slot(0, 5, 0)
    b.PrependUint16Slot(2, 0, 0)
    t = b.EndObject()
    vec = create_offset_vector(b, [t, t])
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(5, vec, 0)
    b.PrependUint64Slot(3, 8, 0)
    buf = finish(b, b.EndObject())
    expected_stats = SstStats(raw_key_size=8, block_stats=[BlockStats(5), BlockStats(5)])
    assert _ref_decode_stats(buf) == expected_stats
    assert blockmeta_impl.decode_stats(buf) == expected_stats


@_settings(150)
@given(
    data=st.data(),
    metas=st.lists(st.builds(BlockMeta, offsets, st.binary(max_size=12)), max_size=10),
)
def test_decode_index_same_verdict_as_reference(
    blockmeta_impl: ModuleType, data: st.DataObject, metas: list[BlockMeta]
) -> None:
    buf = data.draw(mutated(_ref_encode_index(metas)))
    assert _outcome(blockmeta_impl.decode_index, buf) == _outcome(_ref_decode_index, buf)


@_settings(150)
@given(
    data=st.data(),
    stats=st.builds(SstStats, u64, u64, u64, u64, u64, st.lists(block_stats, max_size=8)),
)
def test_decode_stats_same_verdict_as_reference(
    blockmeta_impl: ModuleType, data: st.DataObject, stats: SstStats
) -> None:
    buf = data.draw(mutated(_ref_encode_stats(stats)))
    assert _outcome(blockmeta_impl.decode_stats, buf) == _outcome(_ref_decode_stats, buf)


@_settings(150)
@given(buf=st.binary(max_size=120))
def test_decoders_random_bytes(blockmeta_impl: ModuleType, buf: bytes) -> None:
    assert _outcome(blockmeta_impl.decode_index, buf) == _outcome(_ref_decode_index, buf)
    assert _outcome(blockmeta_impl.decode_stats, buf) == _outcome(_ref_decode_stats, buf)


@_settings(200)
@given(data=st.data(), metas=small_metas, stats=small_stats)
def test_twins_raise_identical_errors(
    both_twins: Any, data: st.DataObject, metas: list[BlockMeta], stats: SstStats
) -> None:
    py, c = both_twins("blockmeta")
    buf = data.draw(mutated(py.encode_index(metas[:6])))
    assert _error(py.decode_index, buf) == _error(c.decode_index, buf)
    buf = data.draw(mutated(py.encode_stats(stats)))
    assert _error(py.decode_stats, buf) == _error(c.decode_stats, buf)


def test_decode_required_fields(blockmeta_impl: ModuleType) -> None:
    b = new_builder()
    b.StartObject(1)
    with pytest.raises(DataError, match="required"):
        blockmeta_impl.decode_index(finish(b, b.EndObject()))
    b = new_builder()
    b.StartObject(2)
    b.PrependUint64Slot(0, 5, 0)
    meta = b.EndObject()
    vec = create_offset_vector(b, [meta])
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    with pytest.raises(DataError, match="required field missing"):
        blockmeta_impl.decode_index(finish(b, b.EndObject()))


# -- wiring ----------------------------------------------------------------------------------------


def test_facades_export_one_set_of_types() -> None:
    assert sst_meta.BlockMeta is blockmeta.BlockMeta is BlockMeta
    assert sst_meta.BlockStats is blockmeta.BlockStats is BlockStats
    assert sst_meta.SstStats is blockmeta.SstStats is SstStats
    assert sst_meta.decode_index is blockmeta.IMPLEMENTATION.decode_index
    assert "blockmeta" in _accel.ACCELERATED
    assert _accel.is_compiled("blockmeta") == blockmeta.IMPLEMENTATION.__name__.endswith("_c")
    for impl in _accel.twins("blockmeta").values():
        assert impl.BlockMeta is BlockMeta and impl.SstStats is SstStats


def test_records_behave_like_before() -> None:
    m = BlockMeta(offset=5, first_key=b"k")
    assert (m.offset, m.first_key) == (5, b"k")
    assert BlockStats() == BlockStats(0, 0, 0) and BlockStats(num_merges=2).num_merges == 2
    with pytest.raises(AttributeError):
        m.offset = 6  # type: ignore[misc]
    assert SstStats().block_stats == []


def test_sst_builder_finished_size() -> None:
    b = SstBuilder(block_size=1024, filter_policies=[])
    assert b.finished_size == 0
    for i in range(40):
        b.add((b"k%04d" % i, 100 - i, 0, bytes(100), None, None))
    closed = b.finished_size
    assert closed > 0
    assert closed <= b.estimated_size()
    assert closed == sum(len(p) for p in b._w.chunks)  # the framed blocks closed so far
    data = b.finish()
    assert b.finished_size == 0
    # The closed blocks are the start of the file, before the index.
    assert closed < len(data)
