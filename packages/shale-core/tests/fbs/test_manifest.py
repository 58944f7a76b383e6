"""Manifest codec: V1/V2 round trips, shapes, refusals and hostile input."""

from __future__ import annotations

import dataclasses
import struct
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale.errors import DataError, InvalidError
from shale.fbs._table import (
    Reader,
    add_ulid,
    create_offset_vector,
    finish,
    new_builder,
    read_ulid,
)
from shale.fbs.manifest import (
    BOUND_EXCLUDED,
    BOUND_INCLUDED,
    BOUND_UNBOUNDED,
    EMPTY_SEQUENCE_TRACKER,
    Bound,
    BytesRange,
    Checkpoint,
    CompactedSst,
    ExternalDb,
    Manifest,
    Segment,
    SortedRun,
    SstView,
    decode_manifest,
    encode_manifest,
)
from shale.fbs.sst_meta import SsTableInfo, add_sst_info
from shale.ids import Ulid
from shale.meta.seq_tracker import SequenceTracker

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
ulids = st.integers(0, 2**128 - 1).map(Ulid)
infos = st.builds(
    SsTableInfo,
    first_entry=st.none() | st.binary(max_size=8),
    index_offset=u64,
    index_len=u64,
    filter_offset=u64,
    filter_len=u64,
    compression_format=st.integers(0, 4),
    sst_type=st.integers(0, 1),
    last_entry=st.none() | st.binary(max_size=8),
    stats_offset=u64,
    stats_len=u64,
    filter_format=st.integers(0, 1),
)
bounds = st.just(Bound(BOUND_UNBOUNDED)) | st.builds(
    Bound, st.sampled_from([BOUND_INCLUDED, BOUND_EXCLUDED]), st.binary(max_size=6)
)
ranges = st.builds(BytesRange, bounds, bounds)
ssts = st.builds(CompactedSst, ulids, infos, st.none() | st.integers(0, 2**16 - 1))
checkpoints = st.builds(
    Checkpoint,
    id=st.uuids(),
    manifest_id=u64,
    expire_time_s=st.none() | st.integers(1, 2**32 - 1),
    create_time_s=u32,
    name=st.none() | st.text(max_size=8),
)
external_dbs = st.builds(
    ExternalDb,
    path=st.text(max_size=12),
    source_checkpoint_id=st.uuids(),
    final_checkpoint_id=st.none() | st.uuids(),
    sst_ids=st.lists(ulids, max_size=3),
)


@st.composite
def trackers(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 6))
    seqs = sorted(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)))
    tss = sorted(draw(st.lists(st.integers(0, 2**31), min_size=n, max_size=n)))
    return SequenceTracker(seqs, tss).encode()


@st.composite
def manifests(draw: st.DrawFn, version: int = 2) -> Manifest:
    pool = draw(st.lists(ssts, max_size=5, unique_by=lambda s: s.id))
    if pool:
        if version == 1:
            views = st.sampled_from(pool).flatmap(
                lambda s: st.builds(SstView, st.just(s.id), st.just(s), st.none() | ranges)
            )
        else:
            views = st.builds(SstView, ulids, st.sampled_from(pool), st.none() | ranges)
        view_lists = st.lists(views, max_size=3)
    else:
        view_lists = st.just([])
    runs = st.lists(st.builds(SortedRun, u32, view_lists), max_size=3)
    segments: list[Segment] = []
    extractor = None
    if version == 2:
        segments = draw(
            st.lists(
                st.builds(Segment, st.binary(max_size=4), st.none() | ulids, view_lists, runs),
                max_size=2,
                unique_by=lambda s: s.prefix,
            )
        )
        segments.sort(key=lambda s: s.prefix)
        extractor = draw(st.none() | st.text(max_size=6))
    return Manifest(
        initialized=draw(st.booleans()),
        writer_epoch=draw(u64),
        compactor_epoch=draw(u64),
        replay_after_wal_id=draw(u64),
        wal_id_last_seen=draw(u64),
        last_compacted_l0_view_id=draw(st.none() | ulids),
        l0=draw(view_lists),
        compacted=draw(runs),
        last_l0_clock_tick=draw(i64),
        checkpoints=draw(st.lists(checkpoints, max_size=3)),
        last_l0_seq=draw(u64),
        recent_snapshot_min_seq=draw(u64),
        sequence_tracker=draw(trackers()),
        external_dbs=draw(st.lists(external_dbs, max_size=2)),
        wal_object_store_uri=draw(st.none() | st.text(max_size=10)) if version == 1 else None,
        segments=segments,
        segment_extractor_name=extractor,
    )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests(2))
def test_v2_round_trip(m: Manifest) -> None:
    data = encode_manifest(m)
    assert data[:2] == b"\x00\x02"
    assert decode_manifest(data) == (2, m)
    assert encode_manifest(decode_manifest(data)[1]) == data


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests(1))
def test_v1_round_trip(m: Manifest) -> None:
    data = encode_manifest(m, version=1)
    assert data[:2] == b"\x00\x01"
    assert decode_manifest(data) == (1, m)
    assert encode_manifest(decode_manifest(data)[1], version=1) == data
    # A V1 manifest without a WAL store can be rewritten as V2 and stays the same manifest.
    m2 = dataclasses.replace(m, wal_object_store_uri=None)
    assert decode_manifest(encode_manifest(m2, 2))[1] == m2


def test_initial_manifest() -> None:
    m = Manifest.initial()
    assert m.next_wal_sst_id == 1
    assert m.last_l0_clock_tick == -(2**63)
    assert m.sequence_tracker == EMPTY_SEQUENCE_TRACKER
    data = encode_manifest(m)
    # FORMAT.md 6.2: 0.17.0's first manifest starts 00 02 30 00.
    assert data[:4] == b"\x00\x02\x30\x00"
    assert decode_manifest(data) == (2, m)


def test_v2_shares_ssts_between_views() -> None:
    info = SsTableInfo(b"a", 10, 20, 10, 0, last_entry=b"z", stats_offset=30, stats_len=5)
    sst = CompactedSst(Ulid(5), info)
    other = CompactedSst(Ulid(3), info)
    m = dataclasses.replace(
        Manifest.initial(),
        l0=[SstView(Ulid(9), sst, BytesRange(Bound(BOUND_INCLUDED, b"a"))), SstView(Ulid(5), sst)],
        compacted=[SortedRun(1, [SstView(Ulid(3), other)])],
    )
    data = encode_manifest(m)
    assert decode_manifest(data)[1] == m
    # Two distinct SSTs are stored once each, sorted by ULID, though three views point at them.
    root = Reader(data[2:], "test").root()
    stored = [read_ulid(t.req_table(0, "id")) for t in root.req_tables(8, "ssts")]
    assert stored == [Ulid(3), Ulid(5)]
    with pytest.raises(InvalidError, match="view"):
        encode_manifest(m, version=1)


def test_version_specific_refusals() -> None:
    base = Manifest.initial()
    with pytest.raises(InvalidError):
        encode_manifest(dataclasses.replace(base, wal_object_store_uri="s3://x"), version=2)
    with pytest.raises(InvalidError):
        encode_manifest(dataclasses.replace(base, segments=[Segment(b"a")]), version=1)
    with pytest.raises(InvalidError):
        encode_manifest(dataclasses.replace(base, segment_extractor_name="f"), version=1)
    with pytest.raises(InvalidError):
        encode_manifest(base, version=3)
    with pytest.raises(InvalidError):
        encode_manifest(dataclasses.replace(base, writer_epoch=-1))
    with pytest.raises(InvalidError):
        encode_manifest(dataclasses.replace(base, compacted=[SortedRun(2**32)]))
    with pytest.raises(InvalidError):
        BytesRange(Bound(BOUND_UNBOUNDED, b"k"))
    with pytest.raises(InvalidError):
        BytesRange(Bound(BOUND_INCLUDED, None))
    with pytest.raises(InvalidError):
        BytesRange(Bound(0, b""))


def test_checkpoint_zero_expiry_means_never() -> None:
    assert Checkpoint(uuid.uuid4(), 1, 0, 5).expire_time_s is None


def test_bytes_range_contains() -> None:
    r = BytesRange(Bound(BOUND_INCLUDED, b"b"), Bound(BOUND_EXCLUDED, b"d"))
    assert [r.contains(k) for k in (b"a", b"b", b"c", b"d")] == [False, True, True, False]
    r = BytesRange(Bound(BOUND_EXCLUDED, b"b"), Bound(BOUND_INCLUDED, b"d"))
    assert [r.contains(k) for k in (b"b", b"c", b"d", b"e")] == [False, True, True, False]
    assert BytesRange().contains(b"")


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\x00\x00", b"\x00\x03" + bytes(40), b"\x01\x00", b"\x00\x02\x04"]
)
def test_bad_headers(data: bytes) -> None:
    with pytest.raises(DataError):
        decode_manifest(data)


def test_view_with_unknown_sst_is_data_error() -> None:
    sst = CompactedSst(Ulid(5), SsTableInfo(b"a", 1, 1, 1, 0))
    m = dataclasses.replace(Manifest.initial(), l0=[SstView(Ulid(5), sst)])
    data = bytearray(encode_manifest(m))
    # Change the low word of the view's sst_id Ulid (it is written right after the sst vector)
    # by re-encoding with a different id in the view only.
    other = dataclasses.replace(m, l0=[SstView(Ulid(5), dataclasses.replace(sst, id=Ulid(6)))])
    data2 = encode_manifest(other)
    assert len(data2) == len(data)
    # Splice: the ssts table from `m`, the views from `other`: find the differing bytes.
    diffs = [i for i in range(len(data)) if data[i] != data2[i]]
    assert len(diffs) == 2  # the stored SST's id and the view's sst_id
    data[diffs[1]] = data2[diffs[1]]
    with pytest.raises(DataError, match="missing from ssts"):
        decode_manifest(bytes(data))


def test_shared_table_bomb_is_bounded() -> None:
    """Vectors whose entries all point at one table must not multiply the work."""
    b = new_builder()
    sst_id = add_ulid(b, Ulid(1))
    info = add_sst_info(b, SsTableInfo(b"a", 1, 1, 1, 0))
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(1, info, 0)
    b.PrependUOffsetTRelativeSlot(0, sst_id, 0)
    ssts = create_offset_vector(b, [b.EndObject()])
    vid = add_ulid(b, Ulid(1))
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(1, vid, 0)
    b.PrependUOffsetTRelativeSlot(0, vid, 0)
    view = b.EndObject()
    views = create_offset_vector(b, [view] * 2000)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(1, views, 0)
    run = b.EndObject()
    runs = create_offset_vector(b, [run] * 2000)
    empty = create_offset_vector(b, [])
    b.StartObject(18)
    b.PrependUOffsetTRelativeSlot(12, empty, 0)
    b.PrependUOffsetTRelativeSlot(10, runs, 0)
    b.PrependUOffsetTRelativeSlot(9, empty, 0)
    b.PrependUOffsetTRelativeSlot(8, ssts, 0)
    data = b"\x00\x02" + finish(b, b.EndObject())
    t0 = time.monotonic()
    with pytest.raises(DataError, match="more tables"):
        decode_manifest(data)
    assert time.monotonic() - t0 < 2.0


def test_depth_limit() -> None:
    from shale.fbs._table import MAX_DEPTH, Reader

    r = Reader(encode_manifest(Manifest.initial())[2:], "test")
    with pytest.raises(DataError, match="deeply"):
        r.table_at(struct.unpack_from("<I", r.buf, 0)[0], MAX_DEPTH + 1)


def _only_data_error(data: bytes) -> None:
    try:
        decode_manifest(data)
    except DataError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"\x00\x01", b"\x00\x02"]), st.binary(max_size=300))
def test_fuzz_random_bodies(header: bytes, body: bytes) -> None:
    _only_data_error(header + body)


@st.composite
def mutated_manifests(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([1, 2]))
    buf = bytearray(encode_manifest(draw(manifests(version)), version))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "word"]))
        i = draw(st.integers(2, len(buf) - 1))
        if op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del buf[max(i, 3) :]
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            j = i - (i % 4)
            buf[j : j + 4] = struct.pack("<I", draw(st.integers(0, 2**32 - 1)))
        if len(buf) < 4:
            break
    return bytes(buf)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_manifests())
def test_fuzz_mutated_manifests(data: bytes) -> None:
    _only_data_error(data)


def _rich_manifest() -> Manifest:
    info = SsTableInfo(b"a", 100, 20, 90, 10, 1, 0, b"zz", 120, 8, 1)
    a = CompactedSst(Ulid(7 << 80 | 1), info)
    b = CompactedSst(Ulid(7 << 80 | 2), dataclasses.replace(info, first_entry=b"m"))
    rng = BytesRange(Bound(BOUND_INCLUDED, b"b"), Bound(BOUND_EXCLUDED, b"y"))
    return dataclasses.replace(
        Manifest.initial(),
        writer_epoch=3,
        l0=[SstView(a.id, a, rng)],
        compacted=[SortedRun(4, [SstView(b.id, b)])],
        checkpoints=[Checkpoint(uuid.UUID(int=99), 5, 1000, 900, "cp")],
        external_dbs=[ExternalDb("src", uuid.UUID(int=1), None, [a.id])],
        sequence_tracker=SequenceTracker([1, 5, 9], [100, 160, 220]).encode(),
    )


@pytest.mark.parametrize("version", [1, 2])
def test_many_seeded_mutations(version: int) -> None:
    """Thousands of cheap random corruptions of one realistic manifest: DataError or a value."""
    import random

    good = encode_manifest(_rich_manifest(), version)
    rnd = random.Random(version)
    for _ in range(3000):
        buf = bytearray(good)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(2, len(buf))
            op = rnd.random()
            if op < 0.5:
                buf[i] ^= 1 << rnd.randrange(8)
            elif op < 0.8:
                buf[i] = rnd.randrange(256)
            else:
                del buf[i:]
                break
        _only_data_error(bytes(buf))
