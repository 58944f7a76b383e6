"""Manifest files: ``u16be version ‖ FlatBuffer(ManifestV1 | ManifestV2)`` (FORMAT.md 4-6, 8).

The in-memory :class:`Manifest` is version-neutral: an LSM tree of SST *views* (``SstView``:
a view id, the :class:`CompactedSst` it shows, an optional visible key range), checkpoints,
clone sources and segments. The two wire versions differ in shape:

- **V2** (what SlateDB 0.17.0 writes, always): every referenced SST is listed once in ``ssts``,
  sorted by ULID; views point at them by ``sst_id``. It cannot record ``wal_object_store_uri``
  (encoding one raises :class:`~shale.errors.InvalidError` rather than dropping it).
- **V1** (v0.12.1 and older readers): every view inlines its ``CompactedSsTable``; there are
  no view ids (a view's id *is* its SST id, so a view whose id differs cannot be written) and
  no segments (a manifest with segments or an extractor name cannot be written as V1).

Encoding reproduces SlateDB's bytes by following its child-creation and field-add orders
(FORMAT.md section 4); those orders are spelled out at each ``_add_*`` function below.
Decoding checks every offset (see :mod:`shale.fbs._table`) and raises
:class:`~shale.errors.DataError` for anything malformed, including a view that names an SST
missing from ``ssts``. The ``sequence_tracker`` bytes are returned as stored; decode them with
:class:`shale.meta.seq_tracker.SequenceTracker`.
"""

from __future__ import annotations

import logging
import struct
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

import flatbuffers

from shale.errors import DataError, InvalidError
from shale.fbs._table import (
    Reader,
    Table,
    add_ulid,
    add_uuid,
    check_int,
    check_uint,
    create_offset_vector,
    decode_guard,
    finish,
    new_builder,
    read_ulid,
    read_uuid,
)
from shale.fbs.sst_meta import SsTableInfo, add_sst_info, read_sst_info
from shale.ids import Ulid

__all__ = [
    "BOUND_EXCLUDED",
    "BOUND_INCLUDED",
    "BOUND_UNBOUNDED",
    "EMPTY_SEQUENCE_TRACKER",
    "MANIFEST_VERSIONS",
    "SST_FORMAT_VERSION",
    "Bound",
    "BytesRange",
    "Checkpoint",
    "CompactedSst",
    "ExternalDb",
    "Manifest",
    "Segment",
    "SortedRun",
    "SstView",
    "add_bytes_range",
    "add_compacted_sst",
    "decode_manifest",
    "encode_manifest",
    "read_bytes_range",
    "read_compacted_sst",
]

logger = logging.getLogger(__name__)

#: Manifest format versions this module reads and writes.
MANIFEST_VERSIONS = (1, 2)

#: The SST format version SlateDB records for every SST it writes.
SST_FORMAT_VERSION = 2

#: ``BoundType`` values (0 = Unknown is invalid).
BOUND_UNBOUNDED = 1
BOUND_INCLUDED = 2
BOUND_EXCLUDED = 3

#: An empty sequence tracker, as every manifest without tracked seqs stores it (FORMAT.md 7).
EMPTY_SEQUENCE_TRACKER = b"\x01" + bytes(12)

_I64_MIN = -(2**63)


class Bound(NamedTuple):
    """One end of a key range: ``(kind, key)``; ``key`` is ``None`` iff unbounded."""

    kind: int
    key: bytes | None = None


_UNBOUNDED = Bound(BOUND_UNBOUNDED, None)


def _check_bound(b: Bound, which: str) -> Bound:
    if not isinstance(b, tuple) or len(b) != 2:
        raise InvalidError(f"{which} must be a (kind, key) pair", value=b)
    kind, key = b
    if kind == BOUND_UNBOUNDED:
        if key is not None:
            raise InvalidError(f"unbounded {which} must have no key", key=key)
    elif kind in (BOUND_INCLUDED, BOUND_EXCLUDED):
        if not isinstance(key, bytes | bytearray | memoryview):
            raise InvalidError(f"bounded {which} needs a key", kind=kind)
        key = bytes(key)
    else:
        raise InvalidError(f"unknown {which} kind", kind=kind)
    return Bound(kind, key)


@dataclass(frozen=True, slots=True)
class BytesRange:
    """A key range with independent start and end bounds (``BytesRange`` in common.fbs)."""

    start_bound: Bound = _UNBOUNDED
    end_bound: Bound = _UNBOUNDED

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_bound", _check_bound(self.start_bound, "start bound"))
        object.__setattr__(self, "end_bound", _check_bound(self.end_bound, "end bound"))

    def contains(self, key: bytes) -> bool:
        """Whether ``key`` lies inside the range."""
        kind, k = self.start_bound
        if k is not None and (key < k or (kind == BOUND_EXCLUDED and key == k)):
            return False
        kind, k = self.end_bound
        return k is None or key < k or (kind == BOUND_INCLUDED and key == k)


@dataclass(frozen=True, slots=True)
class CompactedSst:
    """An SST in ``compacted/``: its id, the footer copy, and its SST format version.

    ``format_version`` ``None`` means the field was absent (a file from before it existed).
    """

    id: Ulid
    info: SsTableInfo
    format_version: int | None = SST_FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class SstView:
    """A view of an SST in the LSM tree: own id, the SST, optional visible key range."""

    id: Ulid
    sst: CompactedSst
    visible_range: BytesRange | None = None


@dataclass(frozen=True, slots=True)
class SortedRun:
    """A sorted run: views with disjoint key ranges, in key order."""

    id: int
    ssts: list[SstView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint pinning manifest ``manifest_id`` (times in Unix seconds, u32).

    ``expire_time_s`` ``None`` means never (stored as 0).
    """

    id: uuid.UUID
    manifest_id: int
    expire_time_s: int | None
    create_time_s: int
    name: str | None = None

    def __post_init__(self) -> None:
        if self.expire_time_s == 0:
            object.__setattr__(self, "expire_time_s", None)


@dataclass(frozen=True, slots=True)
class ExternalDb:
    """A clone source whose SSTs (``sst_ids``) live under another database's path."""

    path: str
    source_checkpoint_id: uuid.UUID
    final_checkpoint_id: uuid.UUID | None
    sst_ids: list[Ulid] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Segment:
    """The LSM tree of one key prefix (V2 only)."""

    prefix: bytes
    last_compacted_l0_view_id: Ulid | None = None
    l0: list[SstView] = field(default_factory=list)
    compacted: list[SortedRun] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Manifest:
    """One manifest version (FORMAT.md 6.3). ``l0`` is newest first; ``compacted`` is in
    descending run id order; ``sequence_tracker`` holds the encoded tracker bytes."""

    initialized: bool
    writer_epoch: int
    compactor_epoch: int
    replay_after_wal_id: int
    wal_id_last_seen: int
    last_compacted_l0_view_id: Ulid | None
    l0: list[SstView]
    compacted: list[SortedRun]
    last_l0_clock_tick: int
    checkpoints: list[Checkpoint]
    last_l0_seq: int
    recent_snapshot_min_seq: int
    sequence_tracker: bytes
    external_dbs: list[ExternalDb] = field(default_factory=list)
    wal_object_store_uri: str | None = None
    segments: list[Segment] = field(default_factory=list)
    segment_extractor_name: str | None = None

    @classmethod
    def initial(cls) -> Manifest:
        """The manifest a new database starts with (FORMAT.md 6.5)."""
        return cls(
            initialized=True,
            writer_epoch=0,
            compactor_epoch=0,
            replay_after_wal_id=0,
            wal_id_last_seen=0,
            last_compacted_l0_view_id=None,
            l0=[],
            compacted=[],
            last_l0_clock_tick=_I64_MIN,
            checkpoints=[],
            last_l0_seq=0,
            recent_snapshot_min_seq=0,
            sequence_tracker=EMPTY_SEQUENCE_TRACKER,
        )

    @property
    def next_wal_sst_id(self) -> int:
        """The next WAL id to assign (``wal_id_last_seen + 1``)."""
        return self.wal_id_last_seen + 1


# -- shared pieces (also used by the compactions codec) ---------------------------------------


def _add_bytes_bound(b: flatbuffers.Builder, bound: Bound) -> int:
    """``BytesBound``: key vector (if any), then the table; add order key, bound_type."""
    kind, key = _check_bound(bound, "bound")
    key_off = None if key is None else b.CreateByteVector(key)
    b.StartObject(2)
    if key_off is not None:
        b.PrependUOffsetTRelativeSlot(0, key_off, 0)
    b.PrependInt8Slot(1, kind, 0)
    off: int = b.EndObject()
    return off


def add_bytes_range(b: flatbuffers.Builder, r: BytesRange) -> int:
    """``BytesRange``: start bound, end bound, then the table; add order end, start."""
    start = _add_bytes_bound(b, r.start_bound)
    end = _add_bytes_bound(b, r.end_bound)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(1, end, 0)
    b.PrependUOffsetTRelativeSlot(0, start, 0)
    off: int = b.EndObject()
    return off


def _read_bound(t: Table) -> Bound:
    kind = t.i8(1)
    key = t.byte_vector(0, "key")
    if kind == BOUND_UNBOUNDED and key is None:
        return _UNBOUNDED
    if kind in (BOUND_INCLUDED, BOUND_EXCLUDED) and key is not None:
        return Bound(kind, key)
    raise t.fail("bad key bound", bound_type=kind, has_key=key is not None)


def read_bytes_range(t: Table) -> BytesRange:
    """Decode a ``BytesRange`` table (both bounds required)."""
    return BytesRange(
        _read_bound(t.req_table(0, "start_bound")), _read_bound(t.req_table(1, "end_bound"))
    )


def _check_format_version(v: int | None) -> int | None:
    return None if v is None else check_uint("format_version", v, 16)


def add_compacted_sst(
    b: flatbuffers.Builder, sst: CompactedSst, visible_range: BytesRange | None = None
) -> int:
    """``CompactedSsTable`` (V1 manifests, compactions files).

    Children: id Ulid, info, visible_range; add order visible_range, info, id, format_version.
    """
    fv = _check_format_version(sst.format_version)
    id_off = add_ulid(b, sst.id)
    info_off = add_sst_info(b, sst.info)
    range_off = None if visible_range is None else add_bytes_range(b, visible_range)
    b.StartObject(4)
    if range_off is not None:
        b.PrependUOffsetTRelativeSlot(2, range_off, 0)
    b.PrependUOffsetTRelativeSlot(1, info_off, 0)
    b.PrependUOffsetTRelativeSlot(0, id_off, 0)
    if fv is not None:
        b.PrependUint16(fv)
        b.Slot(3)
    off: int = b.EndObject()
    return off


def read_compacted_sst(t: Table) -> tuple[CompactedSst, BytesRange | None]:
    """Decode a ``CompactedSsTable``: the SST and its (V1-only) visible range."""
    sst = CompactedSst(
        id=read_ulid(t.req_table(0, "id")),
        info=read_sst_info(t.req_table(1, "info")),
        format_version=t.opt_u16(3),
    )
    rt = t.table(2, "visible_range")
    return sst, None if rt is None else read_bytes_range(rt)


# -- checkpoints and external dbs --------------------------------------------------------------


def _add_checkpoint(b: flatbuffers.Builder, cp: Checkpoint) -> int:
    """Children: id Uuid, name; add order manifest_id, name, metadata (never written),
    create_time, expire_time, id, metadata_type (NONE, omitted)."""
    expire = 0 if cp.expire_time_s is None else check_uint("expire_time_s", cp.expire_time_s, 32)
    create = check_uint("create_time_s", cp.create_time_s, 32)
    manifest_id = check_uint("checkpoint manifest_id", cp.manifest_id, 64)
    id_off = add_uuid(b, cp.id)
    name_off = None if cp.name is None else b.CreateString(cp.name)
    b.StartObject(7)
    b.PrependUint64Slot(1, manifest_id, 0)
    if name_off is not None:
        b.PrependUOffsetTRelativeSlot(6, name_off, 0)
    b.PrependUint32Slot(3, create, 0)
    b.PrependUint32Slot(2, expire, 0)
    b.PrependUOffsetTRelativeSlot(0, id_off, 0)
    off: int = b.EndObject()
    return off


def _read_checkpoint(t: Table) -> Checkpoint:
    expire = t.u32(2)
    return Checkpoint(
        id=read_uuid(t.req_table(0, "id")),
        manifest_id=t.u64(1),
        expire_time_s=expire or None,
        create_time_s=t.u32(3),
        name=t.string(6, "name"),
    )


def _add_external_dbs(b: flatbuffers.Builder, dbs: list[ExternalDb]) -> int | None:
    """Only when non-empty. Per db: path, source Uuid, final Uuid, sst_ids Ulids and vector,
    then the table (add order sst_ids, final, source, path); then the vector."""
    if not dbs:
        return None
    offs = []
    for db in dbs:
        path = b.CreateString(db.path)
        source = add_uuid(b, db.source_checkpoint_id)
        final = None if db.final_checkpoint_id is None else add_uuid(b, db.final_checkpoint_id)
        ids = create_offset_vector(b, [add_ulid(b, u) for u in db.sst_ids])
        b.StartObject(4)
        b.PrependUOffsetTRelativeSlot(3, ids, 0)
        if final is not None:
            b.PrependUOffsetTRelativeSlot(2, final, 0)
        b.PrependUOffsetTRelativeSlot(1, source, 0)
        b.PrependUOffsetTRelativeSlot(0, path, 0)
        offs.append(b.EndObject())
    return create_offset_vector(b, offs)


def _read_external_db(t: Table) -> ExternalDb:
    path = t.string(0, "path", required=True)
    assert path is not None
    final = t.table(2, "final_checkpoint_id")
    return ExternalDb(
        path=path,
        source_checkpoint_id=read_uuid(t.req_table(1, "source_checkpoint_id")),
        final_checkpoint_id=None if final is None else read_uuid(final),
        sst_ids=[read_ulid(u) for u in t.req_tables(3, "sst_ids")],
    )


def _check_scalars(m: Manifest) -> None:
    for name in (
        "writer_epoch",
        "compactor_epoch",
        "replay_after_wal_id",
        "wal_id_last_seen",
        "last_l0_seq",
        "recent_snapshot_min_seq",
    ):
        check_uint(name, getattr(m, name), 64)
    check_int("last_l0_clock_tick", m.last_l0_clock_tick, 64)


# -- V2 ------------------------------------------------------------------------------------------


def _trees(m: Manifest) -> list[tuple[list[SstView], list[SortedRun]]]:
    return [(m.l0, m.compacted)] + [(s.l0, s.compacted) for s in m.segments]


def _add_view_v2(b: flatbuffers.Builder, view: SstView) -> int:
    """``CompactedSsTableView``: sst_id Ulid, visible_range, id Ulid, then the table;
    add order visible_range, sst_id, id."""
    sst_id = add_ulid(b, view.sst.id)
    range_off = None if view.visible_range is None else add_bytes_range(b, view.visible_range)
    view_id = add_ulid(b, view.id)
    b.StartObject(3)
    if range_off is not None:
        b.PrependUOffsetTRelativeSlot(2, range_off, 0)
    b.PrependUOffsetTRelativeSlot(1, sst_id, 0)
    b.PrependUOffsetTRelativeSlot(0, view_id, 0)
    off: int = b.EndObject()
    return off


def _add_tree_v2(
    b: flatbuffers.Builder,
    l0: list[SstView],
    last_compacted: Ulid | None,
    runs: list[SortedRun],
) -> tuple[int, int | None, int]:
    """L0 views and vector; the last-compacted Ulid; each run's views, vector and
    ``SortedRunV2`` (add order ssts, id); the runs vector."""
    l0_vec = create_offset_vector(b, [_add_view_v2(b, v) for v in l0])
    last = None if last_compacted is None else add_ulid(b, last_compacted)
    run_offs = []
    for run in runs:
        run_id = check_uint("sorted run id", run.id, 32)
        views = create_offset_vector(b, [_add_view_v2(b, v) for v in run.ssts])
        b.StartObject(2)
        b.PrependUOffsetTRelativeSlot(1, views, 0)
        b.PrependUint32Slot(0, run_id, 0)
        run_offs.append(b.EndObject())
    return l0_vec, last, create_offset_vector(b, run_offs)


def _encode_v2(m: Manifest) -> bytes:
    if m.wal_object_store_uri is not None:
        raise InvalidError(
            "a V2 manifest cannot record wal_object_store_uri; encode version 1",
            uri=m.wal_object_store_uri,
        )
    _check_scalars(m)
    b = new_builder(4096)

    # 1. Every referenced SST once, sorted by ULID (the first occurrence wins).
    unique: dict[Ulid, CompactedSst] = {}
    for l0, runs in _trees(m):
        for view in l0:
            unique.setdefault(view.sst.id, view.sst)
        for run in runs:
            for view in run.ssts:
                unique.setdefault(view.sst.id, view.sst)
    sst_offs = []
    for sst_id in sorted(unique):
        sst = unique[sst_id]
        fv = _check_format_version(sst.format_version)
        id_off = add_ulid(b, sst.id)
        info_off = add_sst_info(b, sst.info)
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(1, info_off, 0)
        b.PrependUOffsetTRelativeSlot(0, id_off, 0)
        if fv is not None:
            b.PrependUint16(fv)
            b.Slot(2)
        sst_offs.append(b.EndObject())
    ssts = create_offset_vector(b, sst_offs)

    # 2. The root tree.
    l0_vec, last, runs_vec = _add_tree_v2(b, m.l0, m.last_compacted_l0_view_id, m.compacted)

    # 3. Segments (vector always written). Add order compacted, l0, last_compacted, prefix.
    seg_offs = []
    for seg in m.segments:
        prefix = b.CreateByteVector(bytes(seg.prefix))
        s_l0, s_last, s_runs = _add_tree_v2(b, seg.l0, seg.last_compacted_l0_view_id, seg.compacted)
        b.StartObject(4)
        b.PrependUOffsetTRelativeSlot(3, s_runs, 0)
        b.PrependUOffsetTRelativeSlot(2, s_l0, 0)
        if s_last is not None:
            b.PrependUOffsetTRelativeSlot(1, s_last, 0)
        b.PrependUOffsetTRelativeSlot(0, prefix, 0)
        seg_offs.append(b.EndObject())
    segments = create_offset_vector(b, seg_offs)

    # 4-7. Extractor name, checkpoints (always), external dbs (if any), tracker bytes.
    name = None if m.segment_extractor_name is None else b.CreateString(m.segment_extractor_name)
    checkpoints = create_offset_vector(b, [_add_checkpoint(b, cp) for cp in m.checkpoints])
    external = _add_external_dbs(b, m.external_dbs)
    tracker = b.CreateByteVector(bytes(m.sequence_tracker))

    # 8. ManifestV2. manifest_id (slot 0) is always 0, hence never written.
    b.StartObject(18)
    b.PrependUint64Slot(14, m.recent_snapshot_min_seq, 0)
    b.PrependUint64Slot(13, m.last_l0_seq, 0)
    b.PrependInt64Slot(11, m.last_l0_clock_tick, 0)
    b.PrependUint64Slot(6, m.wal_id_last_seen, 0)
    b.PrependUint64Slot(5, m.replay_after_wal_id, 0)
    b.PrependUint64Slot(4, m.compactor_epoch, 0)
    b.PrependUint64Slot(3, m.writer_epoch, 0)
    if name is not None:
        b.PrependUOffsetTRelativeSlot(17, name, 0)
    b.PrependUOffsetTRelativeSlot(16, segments, 0)
    b.PrependUOffsetTRelativeSlot(15, tracker, 0)
    b.PrependUOffsetTRelativeSlot(12, checkpoints, 0)
    b.PrependUOffsetTRelativeSlot(10, runs_vec, 0)
    b.PrependUOffsetTRelativeSlot(9, l0_vec, 0)
    b.PrependUOffsetTRelativeSlot(8, ssts, 0)
    if last is not None:
        b.PrependUOffsetTRelativeSlot(7, last, 0)
    if external is not None:
        b.PrependUOffsetTRelativeSlot(1, external, 0)
    b.PrependBoolSlot(2, bool(m.initialized), False)
    return finish(b, b.EndObject())


def _read_view_v2(t: Table, lookup: dict[Ulid, CompactedSst]) -> SstView:
    view_id = read_ulid(t.req_table(0, "id"))
    sst_id = read_ulid(t.req_table(1, "sst_id"))
    sst = lookup.get(sst_id)
    if sst is None:
        raise t.fail("view references an SST missing from ssts", sst_id=str(sst_id))
    rt = t.table(2, "visible_range")
    return SstView(view_id, sst, None if rt is None else read_bytes_range(rt))


def _read_runs_v2(ts: list[Table], lookup: dict[Ulid, CompactedSst]) -> list[SortedRun]:
    return [
        SortedRun(rt.u32(0), [_read_view_v2(v, lookup) for v in rt.req_tables(1, "ssts")])
        for rt in ts
    ]


def _decode_v2(root: Table) -> Manifest:
    lookup: dict[Ulid, CompactedSst] = {}
    for st in root.req_tables(8, "ssts"):
        sst = CompactedSst(
            id=read_ulid(st.req_table(0, "id")),
            info=read_sst_info(st.req_table(1, "info")),
            format_version=st.opt_u16(2),
        )
        lookup[sst.id] = sst
    last = root.table(7, "last_compacted_l0_sst_view_id")
    l0 = [_read_view_v2(v, lookup) for v in root.req_tables(9, "l0")]
    compacted = _read_runs_v2(root.req_tables(10, "compacted"), lookup)
    segments = []
    for seg in root.tables(16, "segments") or []:
        prefix = seg.byte_vector(0, "prefix", required=True)
        assert prefix is not None
        s_last = seg.table(1, "last_compacted_l0_sst_view_id")
        segments.append(
            Segment(
                prefix=prefix,
                last_compacted_l0_view_id=None if s_last is None else read_ulid(s_last),
                l0=[_read_view_v2(v, lookup) for v in seg.req_tables(2, "l0")],
                compacted=_read_runs_v2(seg.req_tables(3, "compacted"), lookup),
            )
        )
    segments.sort(key=lambda s: s.prefix)
    tracker = root.byte_vector(15, "sequence_tracker")
    return Manifest(
        initialized=root.boolean(2),
        writer_epoch=root.u64(3),
        compactor_epoch=root.u64(4),
        replay_after_wal_id=root.u64(5),
        wal_id_last_seen=root.u64(6),
        last_compacted_l0_view_id=None if last is None else read_ulid(last),
        l0=l0,
        compacted=compacted,
        last_l0_clock_tick=root.i64(11),
        checkpoints=[_read_checkpoint(c) for c in root.req_tables(12, "checkpoints")],
        last_l0_seq=root.u64(13),
        recent_snapshot_min_seq=root.u64(14),
        sequence_tracker=EMPTY_SEQUENCE_TRACKER if tracker is None else tracker,
        external_dbs=[_read_external_db(e) for e in root.tables(1, "external_dbs") or []],
        wal_object_store_uri=None,
        segments=segments,
        segment_extractor_name=root.string(17, "segment_extractor_name"),
    )


# -- V1 ------------------------------------------------------------------------------------------


def _v1_sst(view: SstView) -> CompactedSst:
    if view.id != view.sst.id:
        raise InvalidError(
            "a V1 manifest cannot record a view whose id differs from its SST id; encode V2",
            view_id=str(view.id),
            sst_id=str(view.sst.id),
        )
    return view.sst


def _encode_v1(m: Manifest) -> bytes:
    if m.segments or m.segment_extractor_name is not None:
        raise InvalidError("a V1 manifest cannot record segments; encode version 2")
    _check_scalars(m)
    b = new_builder(4096)
    # 1. L0 CompactedSsTables (id, info, visible_range, table), then the vector.
    l0 = create_offset_vector(b, [add_compacted_sst(b, _v1_sst(v), v.visible_range) for v in m.l0])
    # 2. l0_last_compacted (an SST id; equal to the view id in V1).
    last = None if m.last_compacted_l0_view_id is None else add_ulid(b, m.last_compacted_l0_view_id)
    # 3. Sorted runs: member tables, vector, SortedRun (add order ssts, id); runs vector.
    run_offs = []
    for run in m.compacted:
        run_id = check_uint("sorted run id", run.id, 32)
        members = create_offset_vector(
            b, [add_compacted_sst(b, _v1_sst(v), v.visible_range) for v in run.ssts]
        )
        b.StartObject(2)
        b.PrependUOffsetTRelativeSlot(1, members, 0)
        b.PrependUint32Slot(0, run_id, 0)
        run_offs.append(b.EndObject())
    runs = create_offset_vector(b, run_offs)
    # 4-7. Checkpoints, external dbs, WAL store URI, tracker.
    checkpoints = create_offset_vector(b, [_add_checkpoint(b, cp) for cp in m.checkpoints])
    external = _add_external_dbs(b, m.external_dbs)
    uri = None if m.wal_object_store_uri is None else b.CreateString(m.wal_object_store_uri)
    tracker = b.CreateByteVector(bytes(m.sequence_tracker))
    # 8. ManifestV1.
    b.StartObject(16)
    b.PrependUint64Slot(14, m.recent_snapshot_min_seq, 0)
    b.PrependUint64Slot(12, m.last_l0_seq, 0)
    b.PrependInt64Slot(10, m.last_l0_clock_tick, 0)
    b.PrependUint64Slot(6, m.wal_id_last_seen, 0)
    b.PrependUint64Slot(5, m.replay_after_wal_id, 0)
    b.PrependUint64Slot(4, m.compactor_epoch, 0)
    b.PrependUint64Slot(3, m.writer_epoch, 0)
    b.PrependUOffsetTRelativeSlot(15, tracker, 0)
    if uri is not None:
        b.PrependUOffsetTRelativeSlot(13, uri, 0)
    b.PrependUOffsetTRelativeSlot(11, checkpoints, 0)
    b.PrependUOffsetTRelativeSlot(9, runs, 0)
    b.PrependUOffsetTRelativeSlot(8, l0, 0)
    if last is not None:
        b.PrependUOffsetTRelativeSlot(7, last, 0)
    if external is not None:
        b.PrependUOffsetTRelativeSlot(1, external, 0)
    b.PrependBoolSlot(2, bool(m.initialized), False)
    return finish(b, b.EndObject())


def _read_view_v1(t: Table) -> SstView:
    sst, visible = read_compacted_sst(t)
    return SstView(sst.id, sst, visible)


def _decode_v1(root: Table) -> Manifest:
    last = root.table(7, "l0_last_compacted")
    tracker = root.byte_vector(15, "sequence_tracker")
    return Manifest(
        initialized=root.boolean(2),
        writer_epoch=root.u64(3),
        compactor_epoch=root.u64(4),
        replay_after_wal_id=root.u64(5),
        wal_id_last_seen=root.u64(6),
        last_compacted_l0_view_id=None if last is None else read_ulid(last),
        l0=[_read_view_v1(t) for t in root.req_tables(8, "l0")],
        compacted=[
            SortedRun(rt.u32(0), [_read_view_v1(t) for t in rt.req_tables(1, "ssts")])
            for rt in root.req_tables(9, "compacted")
        ],
        last_l0_clock_tick=root.i64(10),
        checkpoints=[_read_checkpoint(c) for c in root.req_tables(11, "checkpoints")],
        last_l0_seq=root.u64(12),
        recent_snapshot_min_seq=root.u64(14),
        sequence_tracker=EMPTY_SEQUENCE_TRACKER if tracker is None else tracker,
        external_dbs=[_read_external_db(e) for e in root.tables(1, "external_dbs") or []],
        wal_object_store_uri=root.string(13, "wal_object_store_uri"),
    )


# -- public entry points -------------------------------------------------------------------------


def encode_manifest(m: Manifest, version: int = 2) -> bytes:
    """The manifest file bytes: ``u16be version`` then the FlatBuffer.

    Version 2 is byte-identical to SlateDB 0.17.0; version 1 to what v0.12.1/HEAD write.

    :raises InvalidError: unknown version, a value out of range, or state the chosen version
        cannot represent (V2: ``wal_object_store_uri``; V1: segments, view ids).
    """
    if version == 2:
        body = _encode_v2(m)
    elif version == 1:
        body = _encode_v1(m)
    else:
        raise InvalidError("unsupported manifest version", version=version)
    return struct.pack(">H", version) + body


def decode_manifest(data: bytes) -> tuple[int, Manifest]:
    """Decode a manifest file: ``(format version, manifest)``.

    :raises DataError: too short, an unsupported version, or a malformed FlatBuffer.
    """
    if len(data) < 2:
        raise DataError("manifest too short", size=len(data))
    version = struct.unpack_from(">H", data, 0)[0]
    if version not in MANIFEST_VERSIONS:
        raise DataError("unsupported manifest version", version=version, supported=[1, 2])
    what = f"manifest V{version}"
    reader = Reader(memoryview(data)[2:], what)
    decode = _decode_v2 if version == 2 else _decode_v1
    return version, decode_guard(what, lambda: decode(reader.root()))
