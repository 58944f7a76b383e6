"""``Admin.clone``, ``Admin.detach`` and ``Admin.delete_db`` (issue 13, part 2).

Everything runs on real stores (memory, local directories) with shale's real writer; the
crash-between-steps cases run the protocol's own step functions and stop where a crash would.
"""

from __future__ import annotations

import dataclasses
import pathlib
import uuid

import pytest

from shale import Admin, DataError, Db, InvalidError, Settings
from shale.fbs.manifest import BOUND_EXCLUDED, BOUND_INCLUDED
from shale.ids import compacted_path
from shale.meta import clone as clone_mod
from shale.meta import detach as detach_mod
from shale.meta.delete import DELETING_MARKER
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale.objstore import ObjectStore
from shale.objstore.memory import MemoryStore

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
PARENT, CLONE = "dbs/parent", "dbs/clone"
KEYS = [b"k%03d" % i for i in range(150)]


def make_parent(
    store: ObjectStore, root: str = PARENT, *, wal_tail: bool = True
) -> dict[bytes, bytes]:
    """Two L0s and (by default) a WAL tail; returns what every key reads as."""
    expected: dict[bytes, bytes] = {}
    with Db.open(root, FAST, object_store=store) as db:
        for r in range(2):
            for i in range(r * 40, r * 40 + 100):
                db.put(KEYS[i], b"r%d-%d" % (r, i))
                expected[KEYS[i]] = b"r%d-%d" % (r, i)
            db.delete(KEYS[r * 9])
            expected.pop(KEYS[r * 9])
            db.flush(memtable=True)
        if wal_tail:
            for i in range(0, 150, 11):
                db.put(KEYS[i], b"wal-%d" % i)
                expected[KEYS[i]] = b"wal-%d" % i
    return expected


def reads(store: ObjectStore, root: str) -> dict[bytes, bytes]:
    with Db.open(root, FAST, object_store=store) as db:
        got = dict(db.scan())
        assert {k: db.get(k) for k in KEYS} == {k: got.get(k) for k in KEYS}
        return got


def listing(store: ObjectStore, prefix: str = "") -> dict[str, bytes]:
    return {m.key: store.get(m.key) for m in store.list(prefix)}


def manifest(store: ObjectStore, root: str):  # type: ignore[no-untyped-def]
    return StoredManifest.load(ManifestStore(store, root)).manifest


# -- creating ------------------------------------------------------------------------------


def test_clone_reads_the_parent_at_clone_time_and_writes_apart() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    admin = Admin(PARENT, object_store=store)
    result = admin.clone(CLONE)
    assert result.created and result.path == CLONE and result.source == PARENT
    m = manifest(store, CLONE)
    assert m.initialized and m.checkpoints == []
    (ext,) = m.external_dbs
    assert (
        ext.path == PARENT and ext.sst_ids and ext.final_checkpoint_id == result.final_checkpoint_id
    )
    # the parent holds a short-lived source checkpoint and the never-expiring final one
    cps = {cp.id: cp for cp in admin.list_checkpoints()}
    assert cps[result.source_checkpoint_id].expire_time_s is not None
    final = cps[result.final_checkpoint_id]
    assert final.expire_time_s is None and final.name == f"clone:{CLONE}"
    assert final.manifest_id == cps[result.source_checkpoint_id].manifest_id
    assert reads(store, CLONE) == expected
    parent_files = listing(store, PARENT + "/")
    with Db.open(CLONE, FAST, object_store=store) as db:
        db.put(b"k001", b"clone")
        db.flush(memtable=True)
    with Db.open(PARENT, FAST, object_store=store) as db:
        db.put(b"k002", b"parent-later")
    assert reads(store, CLONE)[b"k001"] == b"clone"
    assert reads(store, CLONE).get(b"k002") == expected.get(b"k002")
    assert reads(store, PARENT)[b"k001"] == expected[b"k001"]
    new_parent = listing(store, PARENT + "/")
    assert all(new_parent.get(k) == v for k, v in parent_files.items() if "/manifest/" not in k)
    # a retry of the same clone is a no-op
    again = admin.clone(CLONE)
    assert not again.created and again.final_checkpoint_id == result.final_checkpoint_id


def test_clone_at_a_checkpoint() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    admin = Admin(PARENT, object_store=store)
    with Db.open(PARENT, FAST, object_store=store) as db:
        db.flush(memtable=True)  # the WAL tail into an L0, so the checkpoint holds it
    cp = admin.create_checkpoint(name="before")
    with Db.open(PARENT, FAST, object_store=store) as db:
        db.put(b"k000", b"after")
        db.flush(memtable=True)
    result = Admin("elsewhere", object_store=store).clone(
        CLONE, source=PARENT, checkpoint=str(cp.id)
    )
    assert result.source_checkpoint_id == cp.id
    assert reads(store, CLONE) == expected
    assert admin.list_checkpoints(name="before")  # the caller's checkpoint is left alone


def test_refusals_write_nothing(tmp_path: pathlib.Path) -> None:
    store = MemoryStore()
    make_parent(store)
    Db.open("dbs/other", FAST, object_store=store).close()
    admin = Admin(PARENT, object_store=store)
    before = listing(store)
    cases = [
        lambda: admin.clone(PARENT),  # identical paths
        lambda: admin.clone("/dbs/parent/"),
        lambda: admin.clone("dbs/parent/inner"),  # nested
        lambda: admin.clone("dbs"),
        lambda: admin.clone(CLONE, source="dbs/missing"),  # no parent
        lambda: admin.clone(CLONE, checkpoint=uuid.uuid4()),  # unknown checkpoint
        lambda: admin.clone(CLONE, checkpoint="not-a-uuid"),
        lambda: admin.clone("dbs/other"),  # a database at the target
        lambda: admin.clone(CLONE, projection=(b"b", b"a")),
        lambda: admin.clone(CLONE, projection=("a", None)),  # type: ignore[arg-type]
        lambda: admin.clone(CLONE, projection=(b"a", b"z")),  # rows in the parent's WAL
        lambda: admin.clone("../x"),
    ]
    for case in cases:
        with pytest.raises(InvalidError):
            case()
        assert listing(store) == before
    # another source's clone at the target
    admin.clone(CLONE)
    with pytest.raises(InvalidError, match="already exists"):
        Admin("dbs/other", object_store=store).clone(CLONE)
    # stores that cannot share a root
    with pytest.raises(InvalidError, match="one object store"):
        Admin(str(tmp_path / "p")).clone("memory://x")


def test_clone_by_directories(tmp_path: pathlib.Path) -> None:
    """URL mode: the Admin opened the parent's directory; the clone lands next to it and
    opens by its own directory (the parent found in an enclosing one)."""
    (tmp_path / "data").mkdir()
    parent_dir, clone_dir = tmp_path / "data" / "parent", tmp_path / "data" / "c" / "clone"
    with Db.open(str(parent_dir), FAST) as db:
        for k in KEYS[:50]:
            db.put(k, b"v" + k)
    with Admin(str(parent_dir)) as admin:
        result = admin.clone(str(clone_dir))
        assert (result.source, result.path) == ("parent", "c/clone")
    with Db.open(str(clone_dir), FAST) as db:
        assert dict(db.scan()) == {k: b"v" + k for k in KEYS[:50]}


def test_projected_clone() -> None:
    store = MemoryStore()
    expected = make_parent(store, wal_tail=False)
    Admin(PARENT, object_store=store).clone(CLONE, projection=(b"k030", b"k070"))
    want = {k: v for k, v in expected.items() if b"k030" <= k < b"k070"}
    assert reads(store, CLONE) == want
    m = manifest(store, CLONE)
    for view in m.l0:
        assert view.visible_range is not None
        assert view.visible_range.start_bound.kind == BOUND_INCLUDED
        assert view.visible_range.end_bound == (BOUND_EXCLUDED, b"k070")
    # an open end, and a range only one L0 covers (the other one is dropped)
    Admin(PARENT, object_store=store).clone("dbs/tail", projection=(b"k120", None))
    assert reads(store, "dbs/tail") == {k: v for k, v in expected.items() if k >= b"k120"}
    tail = manifest(store, "dbs/tail")
    assert len(tail.l0) == 1 and tail.external_dbs[0].sst_ids == [tail.l0[0].sst.id]
    with Db.open("dbs/tail", FAST, object_store=store) as db:  # writable everywhere
        db.put(b"a", b"outside")
        assert db.get(b"a") == b"outside"


def test_clone_of_a_clone() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    Admin(PARENT, object_store=store).clone(CLONE)
    with Db.open(CLONE, FAST, object_store=store) as db:
        db.put(b"k005", b"c1")
        db.flush(memtable=True)
    expected[b"k005"] = b"c1"
    r2 = Admin(CLONE, object_store=store).clone("dbs/clone2")
    m2 = manifest(store, "dbs/clone2")
    assert [e.path for e in m2.external_dbs] == [PARENT, CLONE]
    first = manifest(store, CLONE).external_dbs[0]
    # the grandparent entry is pinned through the first clone's final checkpoint
    assert m2.external_dbs[0].source_checkpoint_id == first.final_checkpoint_id
    parent_cps = {cp.id for cp in Admin(PARENT, object_store=store).list_checkpoints()}
    assert m2.external_dbs[0].final_checkpoint_id in parent_cps
    assert r2.final_checkpoint_id in {
        cp.id for cp in Admin(CLONE, object_store=store).list_checkpoints()
    }
    assert reads(store, "dbs/clone2") == expected
    # detached from both, then the chain above is deleted: clone2 stands alone
    d = Admin("dbs/clone2", object_store=store).detach()
    assert sorted(d.detached) == [CLONE, PARENT] and not d.pending
    parent = Admin(PARENT, object_store=store)
    clone1_final = first.final_checkpoint_id
    assert clone1_final in {cp.id for cp in parent.list_checkpoints()}
    Admin(CLONE, object_store=store).delete_db(confirm=True, force=True)
    assert clone1_final not in {cp.id for cp in parent.list_checkpoints()}  # released
    parent.delete_db(confirm=True, force=True)
    assert listing(store, "dbs/clone2/") and not listing(store, PARENT + "/")
    assert reads(store, "dbs/clone2") == expected


def test_interrupted_clone_is_finished_by_a_retry() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    admin = Admin(PARENT, object_store=store)
    # crash after step 2: an uninitialized manifest, no final checkpoint, no WAL copied
    tms = ManifestStore(store, CLONE)
    clone_mod._start(store, PARENT, CLONE, tms, None, None, admin._now_s(), None)
    assert not manifest(store, CLONE).initialized
    with pytest.raises(DataError):
        Db.open(CLONE, FAST, object_store=store)  # an unfinished clone is not a database
    with pytest.raises(InvalidError, match="already exists"):
        Admin("dbs/x", object_store=store).clone(CLONE, source="dbs/parent2")
    result = admin.clone(CLONE)
    assert result.created and manifest(store, CLONE).initialized
    assert reads(store, CLONE) == expected
    # crash after step 3 (final checkpoint made, WALs not copied)
    stored = clone_mod._start(
        store, PARENT, "dbs/c3", ManifestStore(store, "dbs/c3"), None, None, admin._now_s(), None
    )
    clone_mod._pin_finals(store, stored.manifest, "dbs/c3", admin._now_s(), 2, 10.0)
    assert admin.clone("dbs/c3").created
    assert reads(store, "dbs/c3") == expected


# -- detaching -----------------------------------------------------------------------------


def test_detach_then_delete_the_parent() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    result = Admin(PARENT, object_store=store).clone(CLONE)
    clone_admin = Admin(CLONE, object_store=store)
    # a live checkpoint of the clone keeps the parent pinned (it reads the parent's copies)
    cp = clone_admin.create_checkpoint()
    d = clone_admin.detach()
    assert d.owned == [PARENT] and d.pending == [PARENT] and not d.detached
    assert {k.rsplit("/", 1)[-1] for k in d.copied} == {
        f"{i}.sst" for i in {v.sst.id for v in manifest(store, CLONE).l0}
    }
    assert manifest(store, CLONE).external_dbs[0].sst_ids == []
    assert result.final_checkpoint_id in {
        cp.id for cp in Admin(PARENT, object_store=store).list_checkpoints()
    }
    clone_admin.delete_checkpoint(cp.id)
    d = clone_admin.detach()
    assert d.detached == [PARENT] and not d.copied and not d.pending
    assert manifest(store, CLONE).external_dbs == []
    parent = Admin(PARENT, object_store=store)
    assert result.final_checkpoint_id not in {c.id for c in parent.list_checkpoints()}
    parent.delete_db(confirm=True, force=True)
    assert listing(store, PARENT + "/") == {}
    assert reads(store, CLONE) == expected
    assert clone_admin.detach() == ([], [], [], [])  # nothing left to do


def test_interrupted_detach_is_finished_by_a_rerun() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    Admin(PARENT, object_store=store).clone(CLONE)
    # crash after the copies (step 1): nothing but objects in the clone's compacted/
    stored = StoredManifest.load(ManifestStore(store, CLONE))
    from shale.meta.locator import SstLocator

    detach_mod._copy(SstLocator(store, CLONE), CLONE, stored.manifest, [])
    assert manifest(store, CLONE).external_dbs[0].sst_ids
    assert reads(store, CLONE) == expected
    d = Admin(CLONE, object_store=store).detach()
    assert d.copied == [] and d.detached == [PARENT]
    assert reads(store, CLONE) == expected
    m = manifest(store, CLONE)
    for view in m.l0:
        store.head(compacted_path(CLONE, view.sst.id))


def test_detach_without_copy_only_releases_unreferenced_sources() -> None:
    store = MemoryStore()
    make_parent(store)
    Admin(PARENT, object_store=store).clone(CLONE)
    d = Admin(CLONE, object_store=store).detach(copy=False)
    assert d == ([], [], [], [])
    assert manifest(store, CLONE).external_dbs[0].sst_ids


# -- deleting ------------------------------------------------------------------------------


def test_delete_db_checks() -> None:
    store = MemoryStore()
    make_parent(store)
    admin = Admin(PARENT, object_store=store)
    before = listing(store)
    for bad in (lambda: admin.delete_db(), lambda: admin.delete_db(confirm=1)):  # type: ignore[arg-type]
        with pytest.raises(InvalidError, match="confirm"):
            bad()
    with pytest.raises(InvalidError, match="not idle"):
        admin.delete_db(confirm=True)  # just written
    cp = admin.create_checkpoint()
    with pytest.raises(InvalidError, match="checkpoints pin"):
        admin.delete_db(confirm=True, idle=0)
    assert listing(store) == {
        **before,
        **{k: v for k, v in listing(store).items() if "/manifest/" in k},
    }
    admin.delete_checkpoint(cp.id)
    deleted = admin.delete_db(confirm=True, idle=0)
    assert deleted[-1] == f"{PARENT}/{DELETING_MARKER}" and listing(store) == {}
    assert deleted[-2].endswith(".manifest")  # the manifests go last
    assert admin.delete_db(confirm=True) == []  # nothing left: nothing to do
    store.put("dbs/junk/file", b"x")
    with pytest.raises(InvalidError, match="not a database"):
        Admin("dbs/junk", object_store=store).delete_db(confirm=True)


def test_delete_a_clone_releases_the_parent_and_resumes() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    result = Admin(PARENT, object_store=store).clone(CLONE)
    parent = Admin(PARENT, object_store=store)
    with pytest.raises(InvalidError, match="clone:dbs/clone"):
        parent.delete_db(confirm=True, idle=0)
    # an interrupted delete: the marker and part of the objects gone
    store.put(f"{CLONE}/{DELETING_MARKER}", b"")
    for key in [m.key for m in store.list(CLONE + "/wal/")]:
        store.delete(key)
    Admin(CLONE, object_store=store).delete_db(confirm=True)  # resumes: no idle check
    assert listing(store, CLONE + "/") == {}
    assert result.final_checkpoint_id not in {c.id for c in parent.list_checkpoints()}
    assert reads(store, PARENT) == expected


# -- CLI -----------------------------------------------------------------------------------


def test_cli_clone_detach_delete_db(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shale.cli import main

    parent, clone = str(tmp_path / "p"), str(tmp_path / "c")
    with Db.open(parent, FAST) as db:
        for k in KEYS[:40]:
            db.put(k, b"v" + k)
        db.flush(memtable=True)
    assert main(["clone", clone, "--source", parent, "--start", "6b303130", "--hex"]) == 0
    assert main(["clone", clone, "--source", parent, "--json"]) == 0  # a retry: a no-op
    assert '"created":false' in capsys.readouterr().out
    assert main(["delete-db", parent, "--yes", "--idle", "0"]) == 2  # the clone pins it
    assert "clone:c" in capsys.readouterr().err
    assert main(["detach", clone]) == 0
    assert "detached from p" in capsys.readouterr().out
    assert main(["delete-db", parent]) == 2  # no --yes
    assert main(["delete-db", parent, "--yes", "--force"]) == 0
    left = [f for f in (tmp_path / "p").rglob("*") if f.is_file() and f.name != ".shale-lock"]
    assert left == []
    with Db.open(clone, FAST) as db:
        assert dict(db.scan()) == {k: b"v" + k for k in KEYS[10:40]}
    assert main(["clone", clone, "--json"]) == 2  # --source is required


def test_async_admin_clone_detach_delete() -> None:
    import asyncio

    from shale.aio import AsyncAdmin

    store = MemoryStore()
    expected = make_parent(store)

    async def go() -> None:
        async with AsyncAdmin(PARENT, object_store=store) as admin:
            assert (await admin.clone(CLONE)).created
        async with AsyncAdmin(CLONE, object_store=store) as clone:
            assert (await clone.detach()).detached == [PARENT]
        async with AsyncAdmin(PARENT, object_store=store) as admin:
            assert await admin.delete_db(True, force=True)

    asyncio.run(go())
    assert listing(store, PARENT + "/") == {}
    assert reads(store, CLONE) == expected


def test_projection_cuts_views_and_keeps_the_rest() -> None:
    from shale.fbs.manifest import BOUND_UNBOUNDED, Bound, BytesRange, SortedRun
    from shale.meta.projection import intersect, key_range, project_manifest

    inc, exc = BOUND_INCLUDED, BOUND_EXCLUDED
    r = key_range(b"b", b"d")
    assert intersect(r, BytesRange(Bound(inc, b"d"), Bound(inc, b"z"))) is None  # [b,d) ∩ [d,z]
    assert intersect(r, BytesRange(Bound(exc, b"a"), Bound(inc, b"b"))) == BytesRange(
        Bound(inc, b"b"), Bound(inc, b"b")
    )
    assert intersect(r, BytesRange()) == r
    assert key_range(None, None) == BytesRange(Bound(BOUND_UNBOUNDED), Bound(BOUND_UNBOUNDED))

    store = MemoryStore()
    with Db.open(PARENT, FAST, object_store=store) as db:
        for chunk in (KEYS[0:50], KEYS[40:90], KEYS[100:150]):
            for k in chunk:
                db.put(k, b"v")
            db.flush(memtable=True)
    m = manifest(store, PARENT)
    m = dataclasses.replace(m, l0=m.l0[1:], compacted=[SortedRun(1, [])])  # drop the newest
    newest = manifest(store, PARENT).l0[0]  # keys k100..k149
    p = project_manifest(m, key_range(b"k045", b"k095"))
    assert p.compacted == []  # an empty run is dropped
    by_sst = {v.sst.id: v for v in p.l0}
    assert len(by_sst) == 2 and newest.sst.id not in by_sst
    whole = project_manifest(m, key_range(None, b"k200"))
    assert [v.visible_range for v in whole.l0] == [None, None]  # nothing cut: kept as it was


def test_a_writer_refuses_a_database_being_deleted() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    store.put(f"{PARENT}/{DELETING_MARKER}", b"")  # as an interrupted delete_db leaves it
    before = listing(store)
    with pytest.raises(DataError, match="being deleted"):
        Db.open(PARENT, FAST, object_store=store)
    assert listing(store) == before  # nothing written, nobody fenced
    store.delete(f"{PARENT}/{DELETING_MARKER}")
    assert reads(store, PARENT) == expected
