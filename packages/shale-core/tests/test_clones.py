"""Clones (FORMAT.md 2, 6): SSTs listed in ``external_dbs`` are read under the source's path,
and manifests shale cannot read correctly are refused at open, before anything is written.

The clones here are built the way the official ``CloneBuilder`` builds them (see
tests/interop/test_clones_interop.py for the official ones): the parent's latest manifest with
``external_dbs`` naming the parent's path (relative to the store root) and every SST id, no
checkpoints, and the parent's WAL SSTs after ``replay_after_wal_id`` copied.
"""

from __future__ import annotations

import dataclasses
import pathlib
import uuid

import pytest

from shale import DataError, InvalidError
from shale.db import Db
from shale.fbs.manifest import ExternalDb, Manifest, encode_manifest
from shale.ids import Ulid, compacted_path, manifest_path, parse_numbered, wal_path
from shale.meta.locator import SstLocator
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale.objstore import ObjectNotFound, ObjectStore
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.settings import Settings

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
PARENT = "dbs/parent"
CLONE = "dbs/clone"


def _sst_ids(m: Manifest) -> list[Ulid]:
    out = [v.sst.id for v in m.l0]
    for run in m.compacted:
        out.extend(v.sst.id for v in run.ssts)
    return out


def make_parent(store: ObjectStore, root: str = PARENT) -> dict[bytes, bytes]:
    """Three L0s of overlapping keys and a WAL tail; returns what every key reads as."""
    expected: dict[bytes, bytes] = {}
    with Db.open(root, FAST, object_store=store) as db:
        for r in range(3):
            for i in range(r * 40, r * 40 + 100):
                k, v = b"k%04d" % i, b"r%d-%d" % (r, i)
                db.put(k, v)
                expected[k] = v
            db.delete(b"k%04d" % (r * 7))
            expected.pop(b"k%04d" % (r * 7), None)
            db.flush(memtable=True)
        for i in range(0, 200, 9):  # the WAL tail
            db.put(b"k%04d" % i, b"wal-%d" % i)
            expected[b"k%04d" % i] = b"wal-%d" % i
    return expected


def make_clone(
    store: ObjectStore,
    parent: str = PARENT,
    clone: str = CLONE,
    *,
    source_path: str | None = None,
    **changes: object,
) -> Manifest:
    """An official-style clone of ``parent`` at ``clone``; ``changes`` alter its manifest."""
    stored = StoredManifest.load(ManifestStore(store, parent))
    pm = stored.manifest
    m = dataclasses.replace(
        pm,
        checkpoints=[],
        external_dbs=[
            ExternalDb(
                path=parent if source_path is None else source_path,
                source_checkpoint_id=uuid.uuid4(),
                final_checkpoint_id=uuid.uuid4(),
                sst_ids=_sst_ids(pm),
            )
        ],
    )
    m = dataclasses.replace(m, **changes)  # type: ignore[arg-type]
    version = 1 if m.wal_object_store_uri is not None else 2
    store.put(manifest_path(clone, 1), encode_manifest(m, version))
    for meta in list(store.list(parent + "/wal/")):
        wal_id = parse_numbered(meta.key, ".sst")
        if wal_id is not None and wal_id > pm.replay_after_wal_id:
            store.put(wal_path(clone, wal_id), store.get(meta.key))
    return m


def listing(store: ObjectStore) -> dict[str, bytes]:
    return {meta.key: store.get(meta.key) for meta in store.list("")}


def assert_reads(db: Db, expected: dict[bytes, bytes]) -> None:
    keys = [b"k%04d" % i for i in range(220)]
    assert {k: db.get(k) for k in keys} == {k: expected.get(k) for k in keys}
    assert list(db.scan()) == sorted(expected.items())
    assert list(db.scan(reverse=True)) == sorted(expected.items(), reverse=True)
    assert list(db.scan(b"k0050", b"k0130")) == [
        kv for kv in sorted(expected.items()) if b"k0050" <= kv[0] < b"k0130"
    ]


# -- reading a clone ------------------------------------------------------------------------


def test_clone_reads_the_parents_ssts_in_one_store() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    make_clone(store)
    parent_files = {k: v for k, v in listing(store).items() if k.startswith(PARENT + "/")}
    with Db.open(CLONE, FAST, object_store=store) as db:
        assert db.manifest().external_dbs
        assert_reads(db, expected)
        # writes to the clone land under the clone's path only
        db.put(b"k0001", b"clone-write")
        db.delete(b"k0002")
        db.flush(memtable=True)
        expected[b"k0001"] = b"clone-write"
        expected.pop(b"k0002", None)
        assert_reads(db, expected)
    with Db.open(CLONE, FAST, object_store=store) as db:
        assert_reads(db, expected)
        assert db.manifest().external_dbs  # kept by every manifest the clone writes
    assert {k: v for k, v in listing(store).items() if k.startswith(PARENT + "/")} == parent_files
    with Db.open(PARENT, FAST, object_store=store) as parent:
        assert parent.get(b"k0001") == b"r0-1"


def test_clone_opened_by_its_directory(tmp_path: pathlib.Path) -> None:
    """``Db.open("/data/dbs/clone")``: the store root is the clone's directory, the parent lies
    outside it; the enclosing directories are searched (as the official layout puts both in
    one tree)."""
    data = tmp_path / "data"
    store = LocalStore(data)
    expected = make_parent(store)
    make_clone(store)
    with Db.open(str(data / CLONE), FAST) as db:
        assert_reads(db, expected)
    # the database at a prefix of a store that encloses the official store root
    with Db.open("data/" + CLONE, FAST, object_store=LocalStore(tmp_path)) as db:
        assert_reads(db, expected)


def test_clone_source_path_with_slashes_is_normalized() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    make_clone(store, source_path="/" + PARENT + "/")
    with Db.open(CLONE, FAST, object_store=store) as db:
        assert_reads(db, expected)


def test_clone_of_a_clone_reads_both_sources() -> None:
    store = MemoryStore()
    expected = make_parent(store)
    make_clone(store)
    with Db.open(CLONE, FAST, object_store=store) as db:
        db.put(b"k0003", b"first-clone")
        db.flush(memtable=True)
    expected[b"k0003"] = b"first-clone"
    stored = StoredManifest.load(ManifestStore(store, CLONE))
    m1 = stored.manifest
    own = [i for i in _sst_ids(m1) if i not in set(m1.external_dbs[0].sst_ids)]
    m2 = dataclasses.replace(
        m1,
        checkpoints=[],
        external_dbs=[
            m1.external_dbs[0],
            ExternalDb(CLONE, uuid.uuid4(), uuid.uuid4(), own),
        ],
    )
    store.put(manifest_path("dbs/clone2", 1), encode_manifest(m2))
    with Db.open("dbs/clone2", FAST, object_store=store) as db:
        assert_reads(db, expected)


def test_missing_source_fails_at_open_and_writes_nothing() -> None:
    store = MemoryStore()
    make_parent(store)
    make_clone(store, source_path="dbs/elsewhere")
    before = listing(store)
    with pytest.raises(ObjectNotFound, match="external_dbs") as err:
        Db.open(CLONE, FAST, object_store=store)
    assert "dbs/elsewhere" in str(err.value)
    assert isinstance(err.value, DataError)
    assert listing(store) == before


def test_locator_search_order_and_cache(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    store = LocalStore(data)
    make_parent(store)
    m = make_clone(store)
    sst = m.external_dbs[0].sst_ids[0]
    own = Ulid.new(1, None)
    loc = SstLocator(LocalStore(data / CLONE))
    assert loc.locate(sst) == (loc.store, compacted_path("", sst))  # not observed: own
    loc.observe(m.external_dbs)
    assert loc.is_external(sst) and not loc.is_external(own)
    found, key = loc.locate(sst)
    assert isinstance(found, LocalStore) and found.root == str(data)
    assert key == compacted_path(PARENT, sst)
    assert loc.locate(own) == (loc.store, compacted_path("", own))
    # cached: a second SST of the same source is not probed again
    other = m.external_dbs[0].sst_ids[-1]
    assert loc.locate(other)[1] == compacted_path(PARENT, other)


def test_local_store_enclosing_store(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)  # a store creates its root on first write only
    store = LocalStore(tmp_path / "a" / "b")
    up = store.enclosing_store()
    assert isinstance(up, LocalStore) and up.root == str(tmp_path / "a")
    top = LocalStore("/")
    assert top.enclosing_store() is None


# -- refusing shapes shale cannot read correctly ----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"initialized": False}, DataError, "initialized=false"),
        ({"wal_object_store_uri": ""}, InvalidError, "wal_object_store_uri"),
    ],
)
def test_refused_manifests_fail_at_open_and_write_nothing(
    changes: dict[str, object], error: type[Exception], match: str
) -> None:
    store = MemoryStore()
    make_parent(store)
    make_clone(store, **changes)
    before = listing(store)
    with pytest.raises(error, match=match):
        Db.open(CLONE, FAST, object_store=store)
    assert listing(store) == before  # no fencing manifest, no fence WAL


def test_unknown_sst_format_version_fails_at_open() -> None:
    store = MemoryStore()
    make_parent(store)
    stored = StoredManifest.load(ManifestStore(store, PARENT))
    m = stored.manifest
    view = m.l0[0]
    odd = dataclasses.replace(view, sst=dataclasses.replace(view.sst, format_version=3))
    store.put(
        manifest_path(PARENT, stored.id + 1),
        encode_manifest(dataclasses.replace(m, l0=[odd, *m.l0[1:]])),
    )
    before = listing(store)
    with pytest.raises(DataError, match="unknown format version"):
        Db.open(PARENT, FAST, object_store=store)
    assert listing(store) == before


def test_malformed_source_path_fails_at_open() -> None:
    store = MemoryStore()
    make_parent(store)
    make_clone(store, source_path="dbs/../parent")
    before = listing(store)
    with pytest.raises(DataError, match="clone source path"):
        Db.open(CLONE, FAST, object_store=store)
    assert listing(store) == before


def test_prune_external_ssts_keeps_entries_and_live_ids() -> None:
    from shale.meta.locator import prune_external_ssts

    store = MemoryStore()
    make_parent(store)
    m = make_clone(store)
    assert prune_external_ssts(m) is m  # every listed id is still in the tree
    kept = m.l0[0].sst.id
    smaller = dataclasses.replace(m, l0=m.l0[:1], compacted=[])
    (ext,) = prune_external_ssts(smaller).external_dbs
    assert ext.sst_ids == [kept]
    assert ext.final_checkpoint_id == m.external_dbs[0].final_checkpoint_id
    (ext,) = prune_external_ssts(dataclasses.replace(m, l0=[], compacted=[])).external_dbs
    assert ext.sst_ids == [] and ext.path == PARENT


def test_undecodable_manifest_fails_at_open_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Values no SlateDB release defines -- a compression codec id 9 in an SST's info, a
    manifest format version 3 -- are DataErrors at open, and nothing is written (the database
    is not mistaken for an empty one)."""
    import struct

    from shale.fbs import sst_meta

    store = MemoryStore()
    make_parent(store)
    stored = StoredManifest.load(ManifestStore(store, PARENT))
    m = stored.manifest
    view = m.l0[0]
    info = dataclasses.replace(view.sst.info, compression_format=9)
    odd = dataclasses.replace(view, sst=dataclasses.replace(view.sst, info=info))
    with monkeypatch.context() as mp:
        mp.setattr(sst_meta, "_COMPRESSIONS", frozenset(range(10)))
        data = encode_manifest(dataclasses.replace(m, l0=[odd, *m.l0[1:]]))
    store.put(manifest_path(PARENT, stored.id + 1), data)
    before = listing(store)
    with pytest.raises(DataError, match="unknown compression format"):
        Db.open(PARENT, FAST, object_store=store)
    assert listing(store) == before

    future = struct.pack(">H", 3) + encode_manifest(m)[2:]
    store.put(manifest_path(PARENT, stored.id + 1), future)
    before = listing(store)
    with pytest.raises(DataError, match="unsupported manifest version"):
        Db.open(PARENT, FAST, object_store=store)
    assert listing(store) == before
