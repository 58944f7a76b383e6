"""``shale.Admin`` answers what the official ``Admin`` answers, on databases written by both.

The official side runs in a child process (``official_admin_worker.py``) and reports plain
JSON; :func:`_shale_inspect` builds the same shape from ``shale.Admin``. Compared: every
manifest and ``.compactions`` version, a manifest id range, the compactor state view, one
compaction read by id, the checkpoints, and sequence <-> timestamp lookups (both roundings)
over the whole tracker. Checkpoints cross over: made by one Admin (also from a source),
refreshed and deleted by the other.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shale.admin import Admin, VersionedCompactions, VersionedManifest
from shale.clock import ManualClock
from shale.db import Db
from shale.meta.seq_tracker import SequenceTracker
from shale.settings import Settings

pytestmark = pytest.mark.interop

WORKER = Path(__file__).with_name("official_admin_worker.py")
TIMEOUT_S = 120.0
T0_MS = 1_700_000_000_000


def _official(store_dir: Path, db_path: str, op: str, **request: Any) -> Any:
    pytest.importorskip("slatedb.uniffi")
    payload = json.dumps({"op": op, "store_dir": str(store_dir), "db_path": db_path, **request})
    proc = subprocess.run(
        [sys.executable, str(WORKER), payload],
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    return json.loads(proc.stdout)


def _ulid(value: Any) -> str | None:
    return None if value is None else str(value)


def _checkpoint(c: Any) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "manifest_id": c.manifest_id,
        "expire_time_s": c.expire_time_s,
        "create_time_s": c.create_time_s,
        "name": c.name,
    }


def _manifest(v: VersionedManifest) -> dict[str, Any]:
    m = v.manifest
    return {
        "id": v.id,
        "writer_epoch": m.writer_epoch,
        "compactor_epoch": m.compactor_epoch,
        "replay_after_wal_id": m.replay_after_wal_id,
        "next_wal_sst_id": m.next_wal_sst_id,
        "last_l0_seq": m.last_l0_seq,
        "last_l0_clock_tick": m.last_l0_clock_tick,
        "recent_snapshot_min_seq": m.recent_snapshot_min_seq,
        "last_compacted_l0_view_id": _ulid(m.last_compacted_l0_view_id),
        "l0": [[str(x.id), str(x.sst.id)] for x in m.l0],
        "compacted": [[r.id, [str(x.sst.id) for x in r.ssts]] for r in m.compacted],
        "checkpoints": [_checkpoint(c) for c in m.checkpoints],
    }


_STATUS = {
    0: "submitted",
    1: "running",
    2: "completed",
    3: "failed",
    4: "compacted",
    5: "scheduled",
}


def _compaction(c: Any) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "status": _STATUS[c.status],
        "output_ssts": [str(o.id) for o in c.output_ssts],
    }


def _compactions(v: VersionedCompactions | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "id": v.id,
        "compactor_epoch": v.compactions.compactor_epoch,
        "compactions": [_compaction(c) for c in v.compactions.recent_compactions],
    }


def _probes(admin: Admin) -> tuple[list[int], list[int]]:
    """Sequence numbers and timestamps around every tracker entry (and past both ends)."""
    latest = admin.read_manifest()
    assert latest is not None
    tracker = SequenceTracker.decode(latest.manifest.sequence_tracker)
    seqs = {0, 1, latest.manifest.last_l0_seq + 5}
    stamps = {0}
    for s, t in zip(tracker.seqs, tracker.timestamps, strict=True):
        seqs.update((max(0, s - 1), s, s + 1))
        stamps.update((t - 1, t, t + 1))
    return sorted(seqs), sorted(stamps)


def _shale_inspect(admin: Admin, seqs: list[int], stamps: list[int]) -> dict[str, Any]:
    latest_c = admin.read_compactions()
    one = None
    if latest_c is not None and latest_c.compactions.recent_compactions:
        cid = latest_c.compactions.recent_compactions[0].id
        found = admin.read_compaction(str(cid))
        one = None if found is None else _compaction(found)
    view = admin.read_compactor_state_view()
    latest = admin.read_manifest()
    return {
        "manifests": [_manifest(v) for v in admin.list_manifests()],
        "manifest_ids_2_4": [v.id for v in admin.list_manifests(2, 4)],
        "latest": None if latest is None else _manifest(latest),
        "compactions": [_compactions(v) for v in admin.list_compactions()],
        "latest_compactions": _compactions(latest_c),
        "view": {"manifest": view.manifest.id, "compactions": _compactions(view.compactions)},
        "one_compaction": one,
        "checkpoints": [_checkpoint(c) for c in admin.list_checkpoints()],
        "lookups": {
            "ts": [
                [
                    s,
                    admin.get_timestamp_for_sequence(s),
                    admin.get_timestamp_for_sequence(s, round_up=True),
                ]
                for s in seqs
            ],
            "seq": [
                [
                    t,
                    admin.get_sequence_for_timestamp(t),
                    admin.get_sequence_for_timestamp(t, round_up=True),
                ]
                for t in stamps
            ],
        },
    }


def _compare(store_dir: Path, db_path: str) -> dict[str, Any]:
    from shale.objstore.local import LocalStore

    admin = Admin(db_path, object_store=LocalStore(str(store_dir)))
    seqs, stamps = _probes(admin)
    ours = _shale_inspect(admin, seqs, stamps)
    theirs = _official(store_dir, db_path, "inspect", seqs=seqs, timestamps=stamps)
    for key in ours:
        assert ours[key] == theirs[key], key
    return ours


@pytest.mark.parametrize("shape", ["mixed", "compacted"])
def test_admin_matches_official_on_official_databases(
    official_dbs: dict[str, Any], shape: str
) -> None:
    db = official_dbs[shape]
    ours = _compare(db.store_dir, db.db_path)
    assert ours["manifests"]
    if shape == "compacted":
        assert ours["latest"]["compacted"]  # a sorted run: compactions were compared too
        assert ours["latest_compactions"] is not None
        assert any(len(r) > 1 for r in ours["lookups"]["ts"])


@pytest.fixture
def shale_db(tmp_path: Path) -> tuple[Path, str]:
    """A shale-written database at ``db`` in a local store: L0 flushes a tracker interval
    apart, a full compaction by shale's compactor, a checkpoint, a WAL tail."""
    pytest.importorskip("shale_compactor")
    from shale.objstore.local import LocalStore
    from shale_compactor import Compactor

    store_dir = tmp_path / "store"
    store_dir.mkdir()
    store = LocalStore(str(store_dir))
    clock = ManualClock(T0_MS)
    settings = Settings(compactor_options=None, garbage_collector_options=None)
    with Db.open("db", settings, object_store=store, clock=clock) as db:
        for round_ in range(4):
            for i in range(200):
                db.put(b"k%04d" % (round_ * 100 + i), b"r%d" % round_)
            db.flush(memtable=True)
            clock.advance(90_000)
        admin = Admin("db", object_store=store, clock=clock)
        admin.submit_compaction("full")
        with Compactor(store, "db", settings, clock=clock) as compactor:
            reports = compactor.run_once(timeout=60)
        assert reports and all(r.error is None for r in reports)
        admin.create_checkpoint(name="pinned", lifetime=3600)
        db.put(b"tail", b"wal")
        db.flush()
    return store_dir, "db"


def test_admin_matches_official_on_a_shale_database(shale_db: tuple[Path, str]) -> None:
    ours = _compare(*shale_db)
    assert ours["latest"]["compacted"] and ours["one_compaction"] is not None
    assert "pinned" in [c["name"] for c in ours["checkpoints"]]


def test_checkpoints_cross_over(official_dbs: dict[str, Any], tmp_path: Path) -> None:
    from shale.objstore.local import LocalStore

    db = official_dbs["mixed"]
    store_dir = tmp_path / "store"
    shutil.copytree(db.store_dir, store_dir)  # the session's databases stay untouched
    admin = Admin(db.db_path, object_store=LocalStore(str(store_dir)))

    made = _official(
        store_dir, db.db_path, "create_checkpoint", name="theirs", lifetime_ms=3_600_000
    )
    (cp,) = admin.list_checkpoints("theirs")
    assert str(cp.id) == made["id"] and cp.manifest_id == made["manifest_id"]
    assert cp.expire_time_s is not None and cp.expire_time_s - cp.create_time_s == 3600

    ours = admin.create_checkpoint(source=made["id"], name="ours-from-theirs")
    assert ours.manifest_id == made["manifest_id"]
    theirs = _official(store_dir, db.db_path, "create_checkpoint", source=str(ours.id))
    assert theirs["manifest_id"] == made["manifest_id"]

    admin.refresh_checkpoint(made["id"])  # never expires now
    _official(store_dir, db.db_path, "refresh_checkpoint", id=str(ours.id), lifetime_ms=60_000)
    _official(store_dir, db.db_path, "delete_checkpoint", id=theirs["id"])
    by_id = {str(c.id): c for c in admin.list_checkpoints()}
    assert set(by_id) == {made["id"], str(ours.id)}
    assert by_id[made["id"]].expire_time_s is None
    refreshed = by_id[str(ours.id)]
    assert refreshed.expire_time_s is not None
    assert refreshed.expire_time_s - refreshed.create_time_s in range(60, 120)
    _compare(store_dir, db.db_path)  # and every answer still agrees
