"""``.compactions`` files: ``u16be version ‖ FlatBuffer(CompactionsV1)`` (FORMAT.md 4, 5, 9).

- **Version 2** (HEAD and 0.17.0) is what :func:`encode_compactions` writes by default,
  byte-identical to 0.17.0. The tiered spec records its ``destination`` and ``segment``
  (the segment byte vector is always present), ``output_ssts`` is always written (possibly
  empty), and a compaction may carry a ``worker`` and a ``ctx``.
- **Version 1** (v0.12.1, which accepts only 1) has none of those. Encoding version 1 omits
  them (``output_ssts`` only when non-empty, as v0.12.1 did) and refuses state v0.12.1 cannot
  understand: a drain-segment spec, a non-root segment, or the Compacted/Scheduled statuses.
  Decoding version 1 infers ``destination = min(sorted_runs)`` (0 when there are none).

A reader must ignore ``output_ssts`` while the status is Submitted, Scheduled or Running
(SlateDB drops them on decode); this codec keeps them so files round-trip byte for byte.

Child-creation order per compaction: id Ulid; the spec (l0_view_ids Ulids and vector if
non-empty, sorted_runs vector if non-empty, segment bytes, spec table); the worker (worker_id
string, WorkerSpec); ctx; output_ssts; the Compaction table. Then the vector of compactions and
the CompactionsV1 table.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field

import flatbuffers

from shale.errors import DataError, InvalidError
from shale.fbs._table import (
    Reader,
    Table,
    add_ulid,
    check_uint,
    create_offset_vector,
    create_u32_vector,
    decode_guard,
    finish,
    new_builder,
    read_ulid,
)
from shale.fbs.manifest import (
    BytesRange,
    CompactedSst,
    add_bytes_range,
    add_compacted_sst,
    read_bytes_range,
    read_compacted_sst,
)
from shale.ids import Ulid

__all__ = [
    "COMPACTIONS_VERSIONS",
    "SPEC_DRAIN_SEGMENT",
    "SPEC_TIERED",
    "STATUS_COMPACTED",
    "STATUS_COMPLETED",
    "STATUS_FAILED",
    "STATUS_RUNNING",
    "STATUS_SCHEDULED",
    "STATUS_SUBMITTED",
    "Compaction",
    "CompactionContext",
    "Compactions",
    "Subcompaction",
    "decode_compactions",
    "encode_compactions",
]

logger = logging.getLogger(__name__)

#: Compactions file versions this module reads and writes.
COMPACTIONS_VERSIONS = (1, 2)

#: ``CompactionStatus`` (i8). Compacted and Scheduled exist only in version 2.
STATUS_SUBMITTED = 0
STATUS_RUNNING = 1
STATUS_COMPLETED = 2
STATUS_FAILED = 3
STATUS_COMPACTED = 4
STATUS_SCHEDULED = 5
_STATUSES = frozenset(range(6))
_V1_STATUSES = frozenset(range(4))

#: ``CompactionSpec`` union tags. Drain-segment exists only in version 2.
SPEC_TIERED = 1
SPEC_DRAIN_SEGMENT = 2

_CTX_TIERED = 1


@dataclass(frozen=True, slots=True)
class Subcompaction:
    """A key sub-range of a compaction and the SSTs already produced for it."""

    range: BytesRange
    output_ssts: list[CompactedSst] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompactionContext:
    """``TieredCompactionContext``: state a worker needs to resume (0.17.0 never writes it)."""

    subcompactions: list[Subcompaction] = field(default_factory=list)
    retention_min_seq: int = 0


@dataclass(frozen=True, slots=True)
class Compaction:
    """One compaction job.

    Sources are ``l0_view_ids`` (newest first) and ``sorted_runs``; ``destination`` is the
    output run id (tiered specs); ``segment`` the segment prefix (``b""`` = root tree).
    ``worker_id``/``last_heartbeat_ms`` are both set once a worker claims the job.
    """

    id: Ulid
    status: int
    l0_view_ids: list[Ulid] = field(default_factory=list)
    sorted_runs: list[int] = field(default_factory=list)
    destination: int = 0
    segment: bytes = b""
    output_ssts: list[CompactedSst] = field(default_factory=list)
    worker_id: str | None = None
    last_heartbeat_ms: int | None = None
    spec_type: int = SPEC_TIERED
    ctx: CompactionContext | None = None


@dataclass(frozen=True, slots=True)
class Compactions:
    """The compactor's state object: its epoch and the recent compactions."""

    compactor_epoch: int
    recent_compactions: list[Compaction] = field(default_factory=list)


# -- encoding ------------------------------------------------------------------------------------


def _add_spec(b: flatbuffers.Builder, c: Compaction, version: int) -> int:
    """l0_view_ids (if any), sorted_runs (if any), segment (version 2: always), spec table."""
    views = (
        create_offset_vector(b, [add_ulid(b, u) for u in c.l0_view_ids]) if c.l0_view_ids else None
    )
    runs = create_u32_vector(b, c.sorted_runs, "sorted run id") if c.sorted_runs else None
    segment = b.CreateByteVector(bytes(c.segment)) if version >= 2 else None
    if c.spec_type == SPEC_TIERED:
        # Add order: destination, segment, l0_view_ids, sorted_runs, ssts (never written).
        b.StartObject(5)
        if version >= 2:
            b.PrependUint32Slot(4, check_uint("destination", c.destination, 32), 0)
            b.PrependUOffsetTRelativeSlot(3, segment, 0)
        if views is not None:
            b.PrependUOffsetTRelativeSlot(2, views, 0)
        if runs is not None:
            b.PrependUOffsetTRelativeSlot(1, runs, 0)
    else:
        # DrainSegmentSpec add order: sorted_runs, l0_view_ids, segment.
        b.StartObject(3)
        if runs is not None:
            b.PrependUOffsetTRelativeSlot(2, runs, 0)
        if views is not None:
            b.PrependUOffsetTRelativeSlot(1, views, 0)
        b.PrependUOffsetTRelativeSlot(0, segment, 0)
    off: int = b.EndObject()
    return off


def _add_ctx(b: flatbuffers.Builder, ctx: CompactionContext) -> int:
    """Subcompactions (if any: range, output_ssts if any, table with add order output_ssts,
    range), then ``TieredCompactionContext`` (add order retention_min_seq, subcompactions)."""
    subs = None
    if ctx.subcompactions:
        offs = []
        for sub in ctx.subcompactions:
            rng = add_bytes_range(b, sub.range)
            outs = (
                create_offset_vector(b, [add_compacted_sst(b, s) for s in sub.output_ssts])
                if sub.output_ssts
                else None
            )
            b.StartObject(2)
            if outs is not None:
                b.PrependUOffsetTRelativeSlot(1, outs, 0)
            b.PrependUOffsetTRelativeSlot(0, rng, 0)
            offs.append(b.EndObject())
        subs = create_offset_vector(b, offs)
    b.StartObject(2)
    b.PrependUint64Slot(1, check_uint("retention_min_seq", ctx.retention_min_seq, 64), 0)
    if subs is not None:
        b.PrependUOffsetTRelativeSlot(0, subs, 0)
    off: int = b.EndObject()
    return off


def _check_for_version(c: Compaction, version: int) -> None:
    if c.status not in _STATUSES:
        raise InvalidError("unknown compaction status", status=c.status)
    if c.spec_type not in (SPEC_TIERED, SPEC_DRAIN_SEGMENT):
        raise InvalidError("unknown compaction spec type", spec_type=c.spec_type)
    if c.spec_type == SPEC_DRAIN_SEGMENT and not c.segment:
        raise InvalidError("a drain-segment spec needs a non-empty segment", id=str(c.id))
    if version == 1:
        if c.status not in _V1_STATUSES:
            raise InvalidError("status not representable in compactions v1", status=c.status)
        if c.spec_type != SPEC_TIERED:
            raise InvalidError("drain-segment specs need compactions v2", id=str(c.id))
        if c.segment:
            raise InvalidError("segment compactions need compactions v2", id=str(c.id))
    if (c.worker_id is None) != (c.last_heartbeat_ms is None):
        raise InvalidError("worker_id and last_heartbeat_ms are set together", id=str(c.id))


def _add_compaction(b: flatbuffers.Builder, c: Compaction, version: int) -> int:
    _check_for_version(c, version)
    id_off = add_ulid(b, c.id)
    spec = _add_spec(b, c, version)
    worker = None
    ctx = None
    if version >= 2:
        if c.worker_id is not None:
            assert c.last_heartbeat_ms is not None
            wid = b.CreateString(c.worker_id)
            b.StartObject(2)
            b.PrependUint64Slot(1, check_uint("last_heartbeat_ms", c.last_heartbeat_ms, 64), 0)
            b.PrependUOffsetTRelativeSlot(0, wid, 0)
            worker = b.EndObject()
        if c.ctx is not None:
            ctx = _add_ctx(b, c.ctx)
    outputs = None
    if version >= 2 or c.output_ssts:
        outputs = create_offset_vector(b, [add_compacted_sst(b, s) for s in c.output_ssts])
    # Add order: ctx, worker, output_ssts, spec, id, ctx_type, status, spec_type.
    b.StartObject(8)
    if ctx is not None:
        b.PrependUOffsetTRelativeSlot(7, ctx, 0)
    if worker is not None:
        b.PrependUOffsetTRelativeSlot(5, worker, 0)
    if outputs is not None:
        b.PrependUOffsetTRelativeSlot(4, outputs, 0)
    b.PrependUOffsetTRelativeSlot(2, spec, 0)
    b.PrependUOffsetTRelativeSlot(0, id_off, 0)
    if ctx is not None:
        b.PrependUint8Slot(6, _CTX_TIERED, 0)
    b.PrependInt8Slot(3, c.status, 0)
    b.PrependUint8Slot(1, c.spec_type, 0)
    off: int = b.EndObject()
    return off


def encode_compactions(c: Compactions, version: int = 2) -> bytes:
    """The ``.compactions`` file bytes: ``u16be version`` then the FlatBuffer.

    :raises InvalidError: unknown version, out-of-range values, or state version 1 cannot
        represent.
    """
    if version not in COMPACTIONS_VERSIONS:
        raise InvalidError("unsupported compactions version", version=version)
    epoch = check_uint("compactor_epoch", c.compactor_epoch, 64)
    b = new_builder(1024)
    vec = create_offset_vector(b, [_add_compaction(b, x, version) for x in c.recent_compactions])
    # CompactionsV1 add order: compactor_epoch, recent_compactions.
    b.StartObject(2)
    b.PrependUint64Slot(0, epoch, 0)
    b.PrependUOffsetTRelativeSlot(1, vec, 0)
    return struct.pack(">H", version) + finish(b, b.EndObject())


# -- decoding ------------------------------------------------------------------------------------


def _read_outputs(t: Table, slot: int) -> list[CompactedSst]:
    return [read_compacted_sst(s)[0] for s in t.tables(slot, "output_ssts") or []]


def _read_ctx(t: Table) -> CompactionContext:
    subs = []
    for st in t.tables(0, "subcompactions") or []:
        subs.append(Subcompaction(read_bytes_range(st.req_table(0, "range")), _read_outputs(st, 1)))
    return CompactionContext(subs, t.u64(1))


def _read_compaction(t: Table, version: int) -> Compaction:
    cid = read_ulid(t.req_table(0, "id"))
    status = t.i8(3)
    if status not in _STATUSES:
        raise t.fail("unknown compaction status", status=status)
    spec_type = t.u8(1)
    spec = t.req_table(2, "spec")
    if spec_type == SPEC_TIERED:
        views = spec.tables(2, "l0_view_ids")
        if views is None:
            views = spec.tables(0, "ssts")  # deprecated: SST ids from before view ids
        runs = spec.u32_vector(1, "sorted_runs") or []
        if version >= 2:
            destination = spec.u32(4)
        else:
            destination = min(runs) if runs else 0
        segment = spec.byte_vector(3, "segment") or b""
    elif spec_type == SPEC_DRAIN_SEGMENT:
        seg = spec.byte_vector(0, "segment", required=True)
        assert seg is not None
        segment = seg
        views = spec.tables(1, "l0_view_ids")
        runs = spec.u32_vector(2, "sorted_runs") or []
        destination = 0
    else:
        raise t.fail("unknown compaction spec type", spec_type=spec_type)
    worker_id = None
    heartbeat = None
    wt = t.table(5, "worker")
    if wt is not None:
        worker_id = wt.string(0, "worker_id")
        if worker_id is not None:  # a worker without an id is unclaimed
            heartbeat = wt.u64(1)
    ctx = None
    ctx_type = t.u8(6)
    if ctx_type == _CTX_TIERED:
        ctx = _read_ctx(t.req_table(7, "ctx"))
    elif ctx_type != 0:
        raise t.fail("unknown compaction context type", ctx_type=ctx_type)
    return Compaction(
        id=cid,
        status=status,
        l0_view_ids=[read_ulid(u) for u in views or []],
        sorted_runs=runs,
        destination=destination,
        segment=segment,
        output_ssts=_read_outputs(t, 4),
        worker_id=worker_id,
        last_heartbeat_ms=heartbeat,
        spec_type=spec_type,
        ctx=ctx,
    )


def decode_compactions(data: bytes) -> tuple[int, Compactions]:
    """Decode a ``.compactions`` file: ``(format version, compactions)``.

    :raises DataError: too short, an unsupported version, or a malformed FlatBuffer.
    """
    if len(data) < 2:
        raise DataError("compactions file too short", size=len(data))
    version = struct.unpack_from(">H", data, 0)[0]
    if version not in COMPACTIONS_VERSIONS:
        raise DataError("unsupported compactions version", version=version, supported=[1, 2])
    what = f"compactions v{version}"
    reader = Reader(memoryview(data)[2:], what)

    def run() -> Compactions:
        root = reader.root()
        return Compactions(
            compactor_epoch=root.u64(0),
            recent_compactions=[
                _read_compaction(t, version) for t in root.req_tables(1, "recent_compactions")
            ],
        )

    return version, decode_guard(what, run)
