"""Ask the official ``slatedb`` 0.17 ``Admin`` about a database; print plain JSON.

Run as a child process by ``test_admin_interop.py`` (a native crash or hang then fails one test,
not pytest): ``python official_admin_worker.py REQUEST_JSON``. The request names the store
directory, the database path inside it and the operation:

* ``inspect``: every manifest and ``.compactions`` version, the compactor state view, the
  checkpoints, one compaction read by id, and ``seqs``/``timestamps`` looked up both ways
  (rounding down and up);
* ``create_checkpoint``: ``create_detached_checkpoint`` with ``name``/``lifetime_ms``/``source``;
* ``refresh_checkpoint`` / ``delete_checkpoint`` with ``id`` (and ``lifetime_ms``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any


def _ulid(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _manifest(v: Any) -> dict[str, Any]:
    return {
        "id": int(v.id),
        "writer_epoch": int(v.writer_epoch),
        "compactor_epoch": int(v.compactor_epoch),
        "replay_after_wal_id": int(v.replay_after_wal_id),
        "next_wal_sst_id": int(v.next_wal_sst_id),
        "last_l0_seq": int(v.last_l0_seq),
        "last_l0_clock_tick": int(v.last_l0_clock_tick),
        "recent_snapshot_min_seq": int(v.recent_snapshot_min_seq),
        "last_compacted_l0_view_id": _ulid(v.last_compacted_l0_sst_view_id),
        "l0": [[_ulid(x.id), _ulid(x.sst.id)] for x in v.l0],
        "compacted": [[int(r.id), [_ulid(x.sst.id) for x in r.sst_views]] for r in v.compacted],
        "checkpoints": [_checkpoint(c) for c in v.checkpoints],
    }


def _checkpoint(c: Any) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "manifest_id": int(c.manifest_id),
        "expire_time_s": None if c.expire_time_secs is None else int(c.expire_time_secs),
        "create_time_s": int(c.create_time_secs),
        "name": c.name,
    }


def _compaction(c: Any) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "status": str(c.status).rsplit(".", 1)[-1].lower(),
        "output_ssts": [_ulid(h.id) for h in c.output_ssts],
    }


def _compactions(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "id": int(v.id),
        "compactor_epoch": int(v.compactor_epoch),
        "compactions": [_compaction(c) for c in v.recent_compactions],
    }


async def _inspect(admin: Any, request: dict[str, Any]) -> dict[str, Any]:
    manifests = await admin.list_manifests(None, None)
    latest = await admin.read_manifest(None)
    compactions = await admin.list_compactions(None, None)
    latest_c = await admin.read_compactions(None)
    view = await admin.read_compactor_state_view()
    one = None
    if latest_c is not None and latest_c.recent_compactions:
        cid = str(latest_c.recent_compactions[0].id)
        found = await admin.read_compaction(cid, None)
        one = None if found is None else _compaction(found)
    lookups: dict[str, Any] = {"ts": [], "seq": []}
    for seq in request.get("seqs", []):
        lookups["ts"].append(
            [
                seq,
                await admin.get_timestamp_for_sequence(seq, False),
                await admin.get_timestamp_for_sequence(seq, True),
            ]
        )
    for ts in request.get("timestamps", []):
        lookups["seq"].append(
            [
                ts,
                await admin.get_sequence_for_timestamp(ts, False),
                await admin.get_sequence_for_timestamp(ts, True),
            ]
        )
    some = await admin.list_manifests(2, 4)
    return {
        "manifests": [_manifest(v) for v in manifests],
        "manifest_ids_2_4": [int(v.id) for v in some],
        "latest": None if latest is None else _manifest(latest),
        "compactions": [_compactions(v) for v in compactions],
        "latest_compactions": _compactions(latest_c),
        "view": {
            "manifest": _manifest(view.manifest)["id"],
            "compactions": _compactions(view.compactions),
        },
        "one_compaction": one,
        "checkpoints": [_checkpoint(c) for c in await admin.list_checkpoints(None)],
        "lookups": lookups,
    }


async def _main(request: dict[str, Any]) -> Any:
    import slatedb.uniffi as s

    store = s.ObjectStoreBuilder.from_url(
        "file://" + str(Path(request["store_dir"]).resolve())
    ).build()
    admin = s.AdminBuilder(request["db_path"], store).build()
    op = request["op"]
    if op == "inspect":
        return await _inspect(admin, request)
    if op == "create_checkpoint":
        made = await admin.create_detached_checkpoint(
            s.CheckpointOptions(
                lifetime_ms=request.get("lifetime_ms"),
                source=request.get("source"),
                name=request.get("name"),
            )
        )
        return {"id": str(made.id), "manifest_id": int(made.manifest_id)}
    if op == "refresh_checkpoint":
        await admin.refresh_checkpoint(request["id"], request.get("lifetime_ms"))
        return None
    if op == "delete_checkpoint":
        await admin.delete_checkpoint(request["id"])
        return None
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(json.loads(sys.argv[1])))))
