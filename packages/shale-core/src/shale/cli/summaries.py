"""JSON-safe summaries of manifests, SST views and checkpoints (what ``shale manifest show``,
``manifest list``, ``checkpoint list`` and ``info URL`` print).

Keys and key ranges are printed in the form chosen with ``--bytes`` / ``--hex``
(:func:`shale.cli.output.show_bytes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shale.cli.output import show_bytes, when
from shale.fbs.manifest import BOUND_EXCLUDED, BOUND_INCLUDED

if TYPE_CHECKING:
    from shale.fbs.manifest import Checkpoint, Manifest, SstView

__all__ = ["checkpoint_summary", "manifest_brief", "manifest_summary", "sst_summary"]


def sst_summary(view: SstView, fmt: str) -> dict[str, Any]:
    """One SST view: ids, first and last key, visible range if any."""
    info = view.sst.info
    out: dict[str, Any] = {
        "id": str(view.sst.id),
        "first_key": show_bytes(info.first_entry, fmt),
        "last_key": show_bytes(info.last_entry, fmt),
    }
    if view.id != view.sst.id:
        out["view_id"] = str(view.id)
    if view.visible_range is not None:
        r = view.visible_range
        out["visible_range"] = {
            "start": None if r.start_bound.key is None else show_bytes(r.start_bound.key, fmt),
            "start_inclusive": r.start_bound.kind != BOUND_EXCLUDED,
            "end": None if r.end_bound.key is None else show_bytes(r.end_bound.key, fmt),
            "end_inclusive": r.end_bound.kind == BOUND_INCLUDED,
        }
    return out


def checkpoint_summary(cp: Checkpoint) -> dict[str, Any]:
    """One checkpoint: id, pinned manifest, name, create and expire times (ISO-8601 UTC)."""
    return {
        "id": str(cp.id),
        "manifest_id": cp.manifest_id,
        "name": cp.name,
        "create_time": when(cp.create_time_s),
        "expire_time": when(cp.expire_time_s),
    }


def _view_id(value: Any) -> str | None:
    return None if value is None else str(value)


def manifest_summary(
    manifest_id: int, m: Manifest, *, hex_keys: bool = False, bytes_format: str | None = None
) -> dict[str, Any]:
    """A JSON-safe summary of manifest version ``manifest_id`` (what ``manifest show`` prints).

    Keys: ``id``, ``writer_epoch``, ``compactor_epoch``, ``replay_after_wal_id``,
    ``wal_id_last_seen``, ``last_l0_seq``, ``last_l0_clock_tick`` (``None`` before the first L0
    flush), ``recent_snapshot_min_seq``, ``last_compacted_l0_view_id``, ``l0`` (newest first),
    ``sorted_runs`` (``id`` and ``ssts`` with key ranges) and ``checkpoints``; for a segmented
    database also ``segment_extractor`` and ``segments`` (each with ``prefix``, ``l0``,
    ``sorted_runs`` and ``last_compacted_l0_view_id`` like the root tree).

    :param hex_keys: print keys as hex (the same as ``bytes_format="hex"``).
    :param bytes_format: ``"escaped"`` (default), ``"base64"`` or ``"hex"``.
    """
    fmt = "hex" if hex_keys else (bytes_format or "escaped")
    tick = m.last_l0_clock_tick
    return {
        "id": manifest_id,
        "writer_epoch": m.writer_epoch,
        "compactor_epoch": m.compactor_epoch,
        "replay_after_wal_id": m.replay_after_wal_id,
        "wal_id_last_seen": m.wal_id_last_seen,
        "last_l0_seq": m.last_l0_seq,
        "last_l0_clock_tick": None if tick == -(2**63) else tick,
        "recent_snapshot_min_seq": m.recent_snapshot_min_seq,
        "last_compacted_l0_view_id": _view_id(m.last_compacted_l0_view_id),
        "l0": [sst_summary(v, fmt) for v in m.l0],
        "sorted_runs": [
            {"id": run.id, "ssts": [sst_summary(v, fmt) for v in run.ssts]} for run in m.compacted
        ],
        "checkpoints": [checkpoint_summary(cp) for cp in m.checkpoints],
        **(_segments_summary(m, fmt) if m.segments or m.segment_extractor_name else {}),
    }


def _segments_summary(m: Manifest, fmt: str) -> dict[str, Any]:
    return {
        "segment_extractor": m.segment_extractor_name,
        "segments": [
            {
                "prefix": show_bytes(seg.prefix, fmt),
                "last_compacted_l0_view_id": _view_id(seg.last_compacted_l0_view_id),
                "l0": [sst_summary(v, fmt) for v in seg.l0],
                "sorted_runs": [
                    {"id": run.id, "ssts": [sst_summary(v, fmt) for v in run.ssts]}
                    for run in seg.compacted
                ],
            }
            for seg in m.segments
        ],
    }


def manifest_brief(manifest_id: int, m: Manifest) -> dict[str, Any]:
    """One line's worth of a manifest (``manifest list``): ids, epochs and counts."""
    return {
        "id": manifest_id,
        "writer_epoch": m.writer_epoch,
        "compactor_epoch": m.compactor_epoch,
        "replay_after_wal_id": m.replay_after_wal_id,
        "last_l0_seq": m.last_l0_seq,
        "l0": len(m.l0) + sum(len(s.l0) for s in m.segments),
        "sorted_runs": len(m.compacted) + sum(len(s.compacted) for s in m.segments),
        "segments": len(m.segments),
        "checkpoints": len(m.checkpoints),
    }
