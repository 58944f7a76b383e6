"""Compactions codec: versions 1 and 2, round trips, refusals and hostile input."""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale.errors import DataError, InvalidError
from shale.fbs._table import Reader
from shale.fbs.compactions import (
    SPEC_DRAIN_SEGMENT,
    SPEC_TIERED,
    STATUS_COMPACTED,
    STATUS_COMPLETED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    Compaction,
    CompactionContext,
    Compactions,
    Subcompaction,
    decode_compactions,
    encode_compactions,
)
from shale.fbs.manifest import (
    BOUND_EXCLUDED,
    BOUND_INCLUDED,
    BOUND_UNBOUNDED,
    Bound,
    BytesRange,
    CompactedSst,
)
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import Ulid

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
ulids = st.integers(0, 2**128 - 1).map(Ulid)
infos = st.builds(
    SsTableInfo,
    first_entry=st.none() | st.binary(max_size=6),
    index_offset=u64,
    index_len=u64,
    filter_offset=u64,
    filter_len=u64,
    compression_format=st.integers(0, 4),
    sst_type=st.integers(0, 1),
    last_entry=st.none() | st.binary(max_size=6),
    stats_offset=u64,
    stats_len=u64,
    filter_format=st.integers(0, 1),
)
outputs = st.lists(
    st.builds(CompactedSst, ulids, infos, st.none() | st.integers(0, 2**16 - 1)), max_size=2
)
bounds = st.just(Bound(BOUND_UNBOUNDED)) | st.builds(
    Bound, st.sampled_from([BOUND_INCLUDED, BOUND_EXCLUDED]), st.binary(max_size=4)
)
contexts = st.builds(
    CompactionContext,
    st.lists(st.builds(Subcompaction, st.builds(BytesRange, bounds, bounds), outputs), max_size=2),
    u64,
)


@st.composite
def compactions_v2(draw: st.DrawFn) -> Compaction:
    spec_type = draw(st.sampled_from([SPEC_TIERED, SPEC_DRAIN_SEGMENT]))
    worker = draw(st.none() | st.tuples(st.text(max_size=26), u64))
    return Compaction(
        id=draw(ulids),
        status=draw(st.integers(0, 5)),
        l0_view_ids=draw(st.lists(ulids, max_size=3)),
        sorted_runs=draw(st.lists(u32, max_size=3)),
        destination=draw(u32) if spec_type == SPEC_TIERED else 0,
        segment=draw(st.binary(min_size=spec_type == SPEC_DRAIN_SEGMENT, max_size=4)),
        output_ssts=draw(outputs),
        worker_id=None if worker is None else worker[0],
        last_heartbeat_ms=None if worker is None else worker[1],
        spec_type=spec_type,
        ctx=draw(st.none() | contexts),
    )


@st.composite
def compactions_v1(draw: st.DrawFn) -> Compaction:
    runs = draw(st.lists(u32, max_size=3))
    return Compaction(
        id=draw(ulids),
        status=draw(st.integers(0, 3)),
        l0_view_ids=draw(st.lists(ulids, max_size=3)),
        sorted_runs=runs,
        destination=min(runs) if runs else 0,
        output_ssts=draw(outputs),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(u64, st.lists(compactions_v2(), max_size=3))
def test_v2_round_trip(epoch: int, cs: list[Compaction]) -> None:
    c = Compactions(epoch, cs)
    data = encode_compactions(c)
    assert data[:2] == b"\x00\x02"
    assert decode_compactions(data) == (2, c)
    assert encode_compactions(decode_compactions(data)[1]) == data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(u64, st.lists(compactions_v1(), max_size=3))
def test_v1_round_trip(epoch: int, cs: list[Compaction]) -> None:
    c = Compactions(epoch, cs)
    data = encode_compactions(c, version=1)
    assert data[:2] == b"\x00\x01"
    assert decode_compactions(data) == (1, c)
    assert encode_compactions(decode_compactions(data)[1], version=1) == data


def _compaction(**kw: object) -> Compaction:
    base = Compaction(Ulid(42), STATUS_RUNNING, [Ulid(2), Ulid(1)], [5, 3], destination=3)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_v1_infers_destination_and_omits_v2_fields() -> None:
    c = _compaction(destination=9, worker_id="w", last_heartbeat_ms=5, ctx=CompactionContext())
    _, back = decode_compactions(encode_compactions(Compactions(1, [c]), version=1))
    got = back.recent_compactions[0]
    assert got.destination == 3  # min(sorted_runs)
    assert got.worker_id is None and got.ctx is None
    assert got.output_ssts == []
    # L0-only: destination inferred as 0.
    c = _compaction(sorted_runs=[], destination=7)
    _, back = decode_compactions(encode_compactions(Compactions(1, [c]), version=1))
    assert back.recent_compactions[0].destination == 0
    # Version 2 keeps the explicit destination.
    _, back = decode_compactions(encode_compactions(Compactions(1, [c])))
    assert back.recent_compactions[0].destination == 7


def test_v2_always_writes_segment_and_outputs() -> None:
    data = encode_compactions(Compactions(0, [_compaction()]))
    root = Reader(data[2:], "test").root()
    comp = root.req_tables(1, "recent_compactions")[0]
    assert comp.tables(4, "output_ssts") == []
    spec = comp.req_table(2, "spec")
    assert spec.byte_vector(3, "segment") == b""
    data1 = encode_compactions(Compactions(0, [_compaction()]), version=1)
    comp1 = Reader(data1[2:], "test").root().req_tables(1, "recent_compactions")[0]
    assert comp1.tables(4, "output_ssts") is None
    assert comp1.req_table(2, "spec").byte_vector(3, "segment") is None


@pytest.mark.parametrize(
    "change",
    [
        {"status": STATUS_COMPACTED},
        {"status": STATUS_SCHEDULED},
        {"spec_type": SPEC_DRAIN_SEGMENT, "segment": b"seg"},
        {"segment": b"seg"},
    ],
)
def test_v1_refuses_what_it_cannot_represent(change: dict[str, object]) -> None:
    with pytest.raises(InvalidError):
        encode_compactions(Compactions(0, [_compaction(**change)]), version=1)
    encode_compactions(Compactions(0, [_compaction(**change)]), version=2)


@pytest.mark.parametrize(
    "change",
    [
        {"status": 9},
        {"spec_type": 3},
        {"spec_type": SPEC_DRAIN_SEGMENT},  # needs a segment
        {"worker_id": "w"},  # without a heartbeat
        {"destination": -1},
        {"sorted_runs": [2**32]},
    ],
)
def test_invalid_compactions(change: dict[str, object]) -> None:
    with pytest.raises(InvalidError):
        encode_compactions(Compactions(0, [_compaction(**change)]))


def test_unknown_version_and_short_input() -> None:
    good = encode_compactions(Compactions(1, [_compaction()]))
    for bad in (b"", b"\x00", b"\x00\x03" + good[2:], b"\x00\x00" + good[2:]):
        with pytest.raises(DataError):
            decode_compactions(bad)
    with pytest.raises(InvalidError):
        encode_compactions(Compactions(1, []), version=3)


def test_completed_compaction_with_outputs() -> None:
    out = CompactedSst(Ulid(77), SsTableInfo(b"a", 10, 5, 10, 0, last_entry=b"b"))
    c = Compactions(2, [_compaction(status=STATUS_COMPLETED, output_ssts=[out])])
    assert decode_compactions(encode_compactions(c)) == (2, c)
    assert decode_compactions(encode_compactions(c, 1)) == (1, c)


def _only_data_error(data: bytes) -> None:
    try:
        decode_compactions(data)
    except DataError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"\x00\x01", b"\x00\x02"]), st.binary(max_size=200))
def test_fuzz_random_bodies(header: bytes, body: bytes) -> None:
    _only_data_error(header + body)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(compactions_v2(), min_size=1, max_size=2), st.data())
def test_fuzz_mutated(cs: list[Compaction], data: st.DataObject) -> None:
    buf = bytearray(encode_compactions(Compactions(1, cs)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(2, len(buf) - 1))
        op = data.draw(st.sampled_from(["flip", "word", "truncate"]))
        if op == "flip":
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "word":
            j = i - i % 4
            buf[j : j + 4] = struct.pack("<I", data.draw(u32))
        else:
            del buf[max(i, 3) :]
            break
    _only_data_error(bytes(buf))


def test_many_seeded_mutations() -> None:
    out = CompactedSst(Ulid(77), SsTableInfo(b"a", 10, 5, 10, 0, last_entry=b"b"))
    ctx = CompactionContext(
        [Subcompaction(BytesRange(Bound(BOUND_INCLUDED, b"a")), [out])], retention_min_seq=4
    )
    c = Compactions(
        3,
        [
            _compaction(worker_id="01ABC", last_heartbeat_ms=99, ctx=ctx, output_ssts=[out]),
            _compaction(spec_type=SPEC_DRAIN_SEGMENT, segment=b"seg", destination=0),
        ],
    )
    good = encode_compactions(c)
    assert decode_compactions(good) == (2, c)
    rnd = random.Random(7)
    for _ in range(3000):
        buf = bytearray(good)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(2, len(buf))
            if rnd.random() < 0.6:
                buf[i] ^= 1 << rnd.randrange(8)
            else:
                buf[i] = rnd.randrange(256)
        _only_data_error(bytes(buf))
