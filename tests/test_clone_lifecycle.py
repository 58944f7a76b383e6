"""A clone's life with shale's writer, compactor and garbage collector (issue 9, item 4).

The clone is built as the official ``CloneBuilder`` builds one (see
tests/interop/test_clones_interop.py for real ones): a source checkpoint and a final checkpoint
in the parent pin the parent's manifest version the clone starts from; the clone's manifest is
that version with ``external_dbs`` naming the parent's path and every SST id, and the parent's
WAL SSTs after ``replay_after_wal_id`` are copied.

* Writing to the clone, compacting it (the parent's SSTs are compacted away) and collecting its
  garbage never touch one object of the parent; the clone reads the same throughout.
* The parent's garbage collector keeps everything the clone still reads, because the final
  checkpoint pins it; without the checkpoints it would delete those SSTs -- and the clone then
  refuses to open instead of answering wrongly.
"""

from __future__ import annotations

import dataclasses
import pathlib
import signal
import subprocess
import sys
import uuid

import pytest

from shale import Admin, DataError, Db, InvalidError, Settings
from shale.fbs.manifest import ExternalDb, Manifest, encode_manifest
from shale.ids import Ulid, compacted_path, manifest_path, parse_numbered, wal_path
from shale.meta.manifest_store import ManifestStore, StoredManifest, add_checkpoint
from shale.objstore import ObjectStore
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions
from shale_compactor import FULL, Compactor
from shale_gc import GarbageCollector

PARENT = "dbs/parent"
CLONE = "dbs/clone"
SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
NOW_GC = GcDirectoryOptions(interval=None, min_age=0)
GC_ALL = GarbageCollectorOptions(manifest=NOW_GC, wal=NOW_GC, compacted=NOW_GC, compactions=NOW_GC)
KEYS = [b"k%04d" % i for i in range(260)]


def _sst_ids(m: Manifest) -> list[Ulid]:
    out = [v.sst.id for v in m.l0]
    for run in m.compacted:
        out.extend(v.sst.id for v in run.ssts)
    return out


def _compact_full(store: ObjectStore, root: str) -> None:
    c = Compactor(store, root, SETTINGS, options=CompactorOptions(poll_interval=0.05))
    try:
        c.submit(FULL)
        (report,) = c.run_once()
        assert report.status == "completed", report
    finally:
        c.stop()


def _write_rounds(db: Db, expected: dict[bytes, bytes], tag: str, rounds: int) -> None:
    for r in range(rounds):
        for i in range(r * 50, r * 50 + 120):
            k, v = b"k%04d" % i, f"{tag}{r}-{i}".encode()
            db.put(k, v)
            expected[k] = v
        db.delete(b"k%04d" % (r * 11 + 3))
        expected.pop(b"k%04d" % (r * 11 + 3), None)
        db.flush(memtable=True)


def make_parent(store: ObjectStore) -> dict[bytes, bytes]:
    """A sorted run, two L0s above it and a WAL tail."""
    expected: dict[bytes, bytes] = {}
    with Db.open(PARENT, SETTINGS, object_store=store) as db:
        _write_rounds(db, expected, "a", 3)
    _compact_full(store, PARENT)
    with Db.open(PARENT, SETTINGS, object_store=store) as db:
        _write_rounds(db, expected, "b", 2)
        for i in range(0, 260, 13):
            db.put(b"k%04d" % i, b"wal-%d" % i)
            expected[b"k%04d" % i] = b"wal-%d" % i
    return expected


def make_clone(store: ObjectStore) -> Manifest:
    """Clone the parent the way the official CloneBuilder does (checkpoints included)."""
    parent = StoredManifest.load(ManifestStore(store, PARENT))
    ids: list[uuid.UUID] = []

    def pin(m: Manifest, next_id: int) -> Manifest:
        now = int(parent.manifest.last_l0_clock_tick // 1000)
        m, source = add_checkpoint(m, manifest_id=next_id, now_s=now, lifetime_s=300)
        m, final = add_checkpoint(m, manifest_id=next_id, now_s=now, source=source.id)
        ids[:] = [source.id, final.id]
        return m

    pinned = parent.update(pin)
    m = dataclasses.replace(
        pinned,
        checkpoints=[],
        external_dbs=[ExternalDb(PARENT, ids[0], ids[1], _sst_ids(pinned))],
    )
    store.put(manifest_path(CLONE, 1), encode_manifest(m))
    for meta in list(store.list(PARENT + "/wal/")):
        wal_id = parse_numbered(meta.key, ".sst")
        if wal_id is not None and wal_id > pinned.replay_after_wal_id:
            store.put(wal_path(CLONE, wal_id), store.get(meta.key))
    return m


def _objects(store: ObjectStore, prefix: str) -> dict[str, bytes]:
    return {meta.key: store.get(meta.key) for meta in store.list(prefix)}


def _assert_reads(store: ObjectStore, root: str, expected: dict[bytes, bytes]) -> None:
    with Db.open(root, SETTINGS, object_store=store) as db:
        assert {k: db.get(k) for k in KEYS} == {k: expected.get(k) for k in KEYS}
        assert list(db.scan()) == sorted(expected.items())
        assert list(db.scan(reverse=True)) == sorted(expected.items(), reverse=True)


def test_clone_writes_compacts_and_collects_without_touching_the_parent() -> None:
    store = MemoryStore()
    parent_expected = make_parent(store)
    clone_m = make_clone(store)
    external = set(clone_m.external_dbs[0].sst_ids)
    assert len(clone_m.compacted) == 1 and len(clone_m.l0) == 2  # runs and L0s are external
    parent_before = _objects(store, PARENT + "/")
    expected = dict(parent_expected)

    with Db.open(CLONE, SETTINGS, object_store=store) as db:
        _write_rounds(db, expected, "c", 2)
    _compact_full(store, CLONE)
    m = StoredManifest.load(ManifestStore(store, CLONE)).manifest
    assert not set(_sst_ids(m)) & external, "the parent's SSTs were compacted away"
    # as SlateDB's compactor: the source entry stays (its checkpoints), its ids are dropped
    (ext,) = m.external_dbs
    assert (
        ext.sst_ids == [] and ext.final_checkpoint_id == clone_m.external_dbs[0].final_checkpoint_id
    )
    for sst_id in _sst_ids(m):  # every output is the clone's own
        assert store.head(compacted_path(CLONE, sst_id))
    _assert_reads(store, CLONE, expected)

    report = GarbageCollector(store, CLONE, GC_ALL).run_once()
    assert report.ok, report
    assert report.deleted, "the clone had garbage of its own"
    assert _objects(store, PARENT + "/") == parent_before
    _assert_reads(store, CLONE, expected)
    _assert_reads(store, PARENT, parent_expected)


def test_parent_gc_keeps_what_the_clone_reads() -> None:
    store = MemoryStore()
    parent_expected = make_parent(store)
    clone_m = make_clone(store)
    external = clone_m.external_dbs[0].sst_ids
    clone_expected = dict(parent_expected)

    # the parent moves on: its original SSTs leave its latest manifest
    with Db.open(PARENT, SETTINGS, object_store=store) as db:
        _write_rounds(db, parent_expected, "p", 2)
    _compact_full(store, PARENT)
    latest = StoredManifest.load(ManifestStore(store, PARENT)).manifest
    assert not set(_sst_ids(latest)) & set(external)

    report = GarbageCollector(store, PARENT, GC_ALL).run_once()
    assert report.ok, report
    assert report.deleted  # the parent had garbage, but not what the checkpoint pins
    for sst_id in external:
        assert store.head(compacted_path(PARENT, sst_id))
    _assert_reads(store, CLONE, clone_expected)
    _assert_reads(store, PARENT, parent_expected)

    # control: without the clone's checkpoints the parent's GC deletes those SSTs, and the clone
    # then refuses to open rather than answer from what is left
    parent = StoredManifest.load(ManifestStore(store, PARENT))
    parent.update(lambda m, _n: dataclasses.replace(m, checkpoints=[]))
    GarbageCollector(store, PARENT, GC_ALL).run_once()
    gone = [i for i in external if not list(store.list(compacted_path(PARENT, i)))]
    assert gone
    before = _objects(store, CLONE + "/")
    with pytest.raises(DataError, match="external_dbs"):
        Db.open(CLONE, SETTINGS, object_store=store)
    assert _objects(store, CLONE + "/") == before


# -- clones shale makes (Admin.clone), detached, deleted (issue 13, part 2) -------------------


def test_shale_clone_compacted_collected_and_released_by_the_detach_gc() -> None:
    """Both compact and collect with both readable throughout; once the clone's compactions
    replaced every parent SST, the ``detach="release"`` GC drops the final checkpoint and the
    parent's GC may then delete what only that checkpoint kept."""
    store = MemoryStore()
    parent_expected = make_parent(store)
    result = Admin(PARENT, object_store=store).clone(CLONE)
    external = set(
        StoredManifest.load(ManifestStore(store, CLONE)).manifest.external_dbs[0].sst_ids
    )
    clone_expected = dict(parent_expected)
    with Db.open(CLONE, SETTINGS, object_store=store) as db:
        _write_rounds(db, clone_expected, "c", 2)
    _compact_full(store, CLONE)
    with Db.open(PARENT, SETTINGS, object_store=store) as db:
        _write_rounds(db, parent_expected, "p", 2)
    _compact_full(store, PARENT)
    for root in (CLONE, PARENT):
        report = GarbageCollector(store, root, GC_ALL).run_once()
        assert report.ok, report
    for sst_id in external:  # pinned in the parent by the clone's final checkpoint
        store.head(compacted_path(PARENT, sst_id))
    _assert_reads(store, CLONE, clone_expected)
    _assert_reads(store, PARENT, parent_expected)

    # the compactor's checkpoint pins the clone's version from before its compaction, which
    # still read the parent: not released yet
    report = GarbageCollector(store, CLONE, GC_ALL, detach="release").run_once()
    assert report.ok and report.detach.pending == [PARENT] and not report.detach.detached
    clone_admin = Admin(CLONE, object_store=store)
    for cp in clone_admin.list_checkpoints():  # as their expiry would
        clone_admin.delete_checkpoint(cp.id)
    report = GarbageCollector(store, CLONE, GC_ALL, detach="release").run_once()
    assert report.ok and report.detach.detached == [PARENT], report
    assert StoredManifest.load(ManifestStore(store, CLONE)).manifest.external_dbs == []
    parent_cps = Admin(PARENT, object_store=store).list_checkpoints()
    assert result.final_checkpoint_id not in {cp.id for cp in parent_cps}
    # the clone's source checkpoint (300 s) and the parent compactor's still pin them: drop
    # them as their expiry would
    parent_admin = Admin(PARENT, object_store=store)
    for cp in parent_cps:
        parent_admin.delete_checkpoint(cp.id)
    assert GarbageCollector(store, PARENT, GC_ALL).run_once().ok
    assert not any(list(store.list(compacted_path(PARENT, i))) for i in external)
    _assert_reads(store, CLONE, clone_expected)
    _assert_reads(store, PARENT, parent_expected)


def test_detach_copy_gc_then_the_parent_is_deleted() -> None:
    store = MemoryStore()
    parent_expected = make_parent(store)
    Admin(PARENT, object_store=store).clone(CLONE)
    clone_expected = dict(parent_expected)
    with Db.open(CLONE, SETTINGS, object_store=store) as db:
        _write_rounds(db, clone_expected, "c", 1)
    parent = Admin(PARENT, object_store=store)
    with pytest.raises(InvalidError, match="clone:dbs/clone"):
        parent.delete_db(confirm=True, idle=0)  # the clone still pins it
    report = GarbageCollector(store, CLONE, GC_ALL, detach="copy").run_once()
    assert report.ok and report.detach.copied and report.detach.detached == [PARENT], report
    assert parent.delete_db(confirm=True, force=True)
    assert _objects(store, PARENT + "/") == {}
    _assert_reads(store, CLONE, clone_expected)
    _compact_full(store, CLONE)
    assert GarbageCollector(store, CLONE, GC_ALL).run_once().ok
    _assert_reads(store, CLONE, clone_expected)


_CRASH = """
import os, signal, sys
from shale import Admin
from shale.meta import clone
from shale.objstore.local import LocalStore

def crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

setattr(clone, sys.argv[2], crash)
Admin("dbs/parent", object_store=LocalStore(sys.argv[1])).clone("dbs/clone")
"""


@pytest.mark.parametrize(
    ("step", "state"),
    [("_clone_manifest", None), ("_pin_finals", False), ("_copy_wals", False)],
)
def test_clone_killed_between_steps_then_retried(
    tmp_path: pathlib.Path, step: str, state: bool | None
) -> None:
    """``kill -9`` before step 2 (source pinned, nothing at the target), after it (an
    uninitialized manifest) and after step 3 (final checkpoint made, no WAL copied); the
    retry finishes one clone with one final checkpoint."""
    store = LocalStore(tmp_path)
    expected = make_parent(store)
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(tmp_path), step], timeout=120, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    found = ManifestStore(store, CLONE).read_latest()
    assert (None if found is None else found[1].initialized) == state
    result = Admin(PARENT, object_store=store).clone(CLONE)
    assert result.created
    _assert_reads(store, CLONE, expected)
    finals = [c for c in Admin(PARENT, object_store=store).list_checkpoints() if c.name]
    assert [c.id for c in finals] == [result.final_checkpoint_id]


def test_gc_cli_detach_copy(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``shale gc run CLONE --once --detach copy`` detaches a clone opened by its directory
    (the parent found in the enclosing one)."""
    from shale.cli import main

    store = LocalStore(tmp_path)
    expected = make_parent(store)
    Admin(PARENT, object_store=store).clone(CLONE)
    argv = ["gc", "run", str(tmp_path / CLONE), "--once", "--min-age", "0", "--detach", "copy"]
    assert main(argv) == 0
    assert "released ['dbs/parent']" in capsys.readouterr().out
    assert StoredManifest.load(ManifestStore(store, CLONE)).manifest.external_dbs == []
    Admin(PARENT, object_store=store).delete_db(confirm=True, force=True)
    _assert_reads(store, CLONE, expected)
