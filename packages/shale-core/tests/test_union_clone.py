"""Clones of a union of several sources (``Admin.clone(target, sources=...)``, SlateDB's
``Manifest::cloned_from_union``): merging shards back together.

Real stores and shale's real writer, compactor and collector; the crash cases run the
protocol's own step functions and stop where a crash would.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from shale import Admin, DataError, Db, InvalidError, Settings
from shale.admin import CloneSourceSpec
from shale.meta import clone as clone_mod
from shale.meta import union_clone
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale.objstore import ObjectStore
from shale.objstore.memory import MemoryStore

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
KEYS = [b"k%03d" % i for i in range(90)]


def make_shard(
    store: ObjectStore, root: str, keys: list[bytes], settings: Settings = FAST
) -> dict[bytes, bytes]:
    """``keys`` written in two L0s (every fifth one overwritten in the second), flushed."""
    expected = {}
    with Db.open(root, settings, object_store=store) as db:
        for k in keys:
            db.put(k, root.encode() + b":" + k)
            expected[k] = root.encode() + b":" + k
        db.flush(memtable=True)
        for k in keys[::5]:
            db.put(k, b"v2:" + k)
            expected[k] = b"v2:" + k
        db.flush(memtable=True)
    return expected


def reads(store: ObjectStore, root: str, settings: Settings = FAST) -> dict[bytes, bytes]:
    with Db.open(root, settings, object_store=store) as db:
        got = dict(db.scan())
        probe = [*got, b"a", b"k", b"z"]
        assert {k: db.get(k) for k in probe} == {k: got.get(k) for k in probe}
        assert [k for k, _ in db.scan(reverse=True)] == sorted(got, reverse=True)
        return got


def manifest(store: ObjectStore, root: str):  # type: ignore[no-untyped-def]
    return StoredManifest.load(ManifestStore(store, root)).manifest


def listing(store: ObjectStore) -> dict[str, bytes]:
    return {m.key: store.get(m.key) for m in store.list("")}


def final_cps(store: ObjectStore, root: str) -> dict[Any, Any]:
    return {c.id: c for c in Admin(root, object_store=store).list_checkpoints()}


def test_union_of_two_shards() -> None:
    store = MemoryStore()
    a = make_shard(store, "s/a", KEYS[:40])
    b = make_shard(store, "s/b", KEYS[40:])
    r = Admin("s/a", object_store=store).clone("s/u", sources=["s/a", "s/b"])
    assert r.created and r.path == "s/u" and r.sources == ["s/a", "s/b"]
    m = ManifestStore(store, "s/u").read(r.manifest_id)
    assert reads(store, "s/u") == a | b
    assert m.initialized and m.wal_id_last_seen == 0 and m.replay_after_wal_id == 0
    assert len(m.l0) == 4 and [e.path for e in m.external_dbs] == ["s/a", "s/b"]
    assert m.last_l0_seq == max(manifest(store, p).last_l0_seq for p in ("s/a", "s/b"))
    for path in ("s/a", "s/b"):  # a never-expiring final checkpoint in every source
        cp = final_cps(store, path)[r.final_checkpoint_ids[path]]
        assert cp.expire_time_s is None and cp.name == "clone:s/u"
        assert r.source_checkpoint_ids[path] in final_cps(store, path)
    # writable, and apart from its sources
    with Db.open("s/u", FAST, object_store=store) as db:
        db.put(b"k000", b"union")
        db.put(b"zzz", b"new")
        db.flush(memtable=True)
    assert reads(store, "s/u") == a | b | {b"k000": b"union", b"zzz": b"new"}
    assert reads(store, "s/a") == a
    again = Admin("s/b", object_store=store).clone("s/u", sources=["s/a", "s/b"])
    assert not again.created and again.final_checkpoint_ids == r.final_checkpoint_ids


def test_union_of_three_projected_sources_and_a_global_projection() -> None:
    store = MemoryStore()
    full = {}
    for name in ("r/x", "r/y", "r/z"):  # three full copies, projected apart
        full = make_shard(store, name, KEYS)
    specs = [
        CloneSourceSpec("r/x", projection=(None, b"k020")),
        CloneSourceSpec("r/y", projection=(b"k020", b"k055")),
        ("r/z", None, (b"k055", None)),
    ]
    admin = Admin("r/x", object_store=store)
    admin.clone("r/u", sources=specs)
    assert reads(store, "r/u") == _mix(full)
    admin.clone("r/g", sources=specs, projection=(b"k010", b"k060"))
    want = {k: v for k, v in _mix(full).items() if b"k010" <= k < b"k060"}
    assert reads(store, "r/g") == want
    # one spec is a plain clone, and a checkpoint of a source can be named
    cp = Admin("r/y", object_store=store).create_checkpoint(name="pin")
    one = admin.clone("r/one", sources=[CloneSourceSpec("r/y", cp.id, (b"k030", b"k040"))])
    assert one.source_checkpoint_ids == {"r/y": cp.id}
    assert reads(store, "r/one") == {k: v for k, v in _mix(full).items() if b"k030" <= k < b"k040"}


def _mix(full: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """What the three projected copies of ``full`` (written last by ``r/z``) read as."""
    out = {}
    for k, v in full.items():
        owner = b"r/x" if k < b"k020" else b"r/y" if k < b"k055" else b"r/z"
        out[k] = v if v.startswith(b"v2:") else owner + b":" + k
    return out


def test_refusals_write_nothing() -> None:
    store = MemoryStore()
    make_shard(store, "s/a", KEYS[:40])
    make_shard(store, "s/b", KEYS[30:])  # overlaps s/a on k030..k039
    admin = Admin("s/a", object_store=store)
    before = listing(store)
    cases = [
        lambda: admin.clone("s/u", sources=["s/a", "s/b"]),  # overlapping
        lambda: admin.clone("s/u", sources=[("s/a", None, (None, b"k035")), "s/b"]),
        lambda: admin.clone("s/u", sources=[]),
        lambda: admin.clone("s/u", sources=["s/a", "/s/a/"]),  # given twice
        lambda: admin.clone("s/a", sources=["s/a", "s/b"]),  # the target is a source
        lambda: admin.clone("s/u", sources=["s/a", "s/missing"]),
        lambda: admin.clone("s/u", sources=["s/a", ("s/b", "not-a-uuid")]),
        lambda: admin.clone("s/u", sources=["s/a"], source="s/b"),
        lambda: admin.clone("s/u", sources=[("s/a", None, (b"b", b"a")), "s/b"]),
    ]
    for case in cases:
        with pytest.raises(InvalidError):
            case()
        assert listing(store) == before
    # projected apart, the same two sources make a union
    admin.clone("s/u", sources=[("s/a", None, (None, b"k035")), ("s/b", None, (b"k035", None))])
    assert len(reads(store, "s/u")) == 90


def test_a_source_wal_with_rows_is_refused() -> None:
    store = MemoryStore()
    make_shard(store, "s/a", KEYS[:40])
    make_shard(store, "s/b", KEYS[40:])
    with Db.open("s/b", FAST, object_store=store) as db:
        db.put(b"k050", b"in the WAL only")
    before = listing(store)
    with pytest.raises(InvalidError, match="WAL"):
        Admin("s/a", object_store=store).clone("s/u", sources=["s/a", "s/b"])
    assert listing(store) == before
    with Db.open("s/b", FAST, object_store=store) as db:
        db.flush(memtable=True)
    Admin("s/a", object_store=store).clone("s/u", sources=["s/a", "s/b"])
    assert reads(store, "s/u")[b"k050"] == b"in the WAL only"


def test_interrupted_union_is_finished_by_a_rerun() -> None:
    store = MemoryStore()
    want = make_shard(store, "s/a", KEYS[:40]) | make_shard(store, "s/b", KEYS[40:])
    admin = Admin("s/a", object_store=store)
    specs = [union_clone.UnionSpec("s/a"), union_clone.UnionSpec("s/b")]
    # crash after step 2: an uninitialized manifest, no final checkpoints
    union_clone._start(store, specs, "s/u", ManifestStore(store, "s/u"), admin._now_s(), None)
    assert not manifest(store, "s/u").initialized
    with pytest.raises(DataError):
        Db.open("s/u", FAST, object_store=store)
    with pytest.raises(InvalidError, match="already exists"):
        admin.clone("s/u", sources=["s/a", "s/c"])
    r = admin.clone("s/u", sources=["s/a", "s/b"])
    assert r.created and reads(store, "s/u") == want
    # crash after step 3 (final checkpoints made, not initialized)
    stored = union_clone._start(
        store, specs, "s/v", ManifestStore(store, "s/v"), admin._now_s(), None
    )
    clone_mod._pin_finals(store, stored.manifest, "s/v", admin._now_s(), 2, 10.0)
    assert admin.clone("s/v", sources=["s/b", "s/a"]).created
    assert reads(store, "s/v") == want


def test_delete_db_releases_every_source() -> None:
    store = MemoryStore()
    for name, keys in (("s/a", KEYS[:30]), ("s/b", KEYS[30:60]), ("s/c", KEYS[60:])):
        make_shard(store, name, keys)
    r = Admin("s/a", object_store=store).clone("s/u", sources=["s/a", "s/b", "s/c"])
    for path, final in r.final_checkpoint_ids.items():
        assert final in final_cps(store, path)
    with pytest.raises(InvalidError, match="clone:s/u"):
        Admin("s/b", object_store=store).delete_db(confirm=True, idle=0)
    Admin("s/u", object_store=store).delete_db(confirm=True, idle=0)
    for path, final in r.final_checkpoint_ids.items():
        assert final not in final_cps(store, path)
        left = final_cps(store, path).values()  # only the short-lived source checkpoint
        assert [c.id for c in left] == [r.source_checkpoint_ids[path]]
        assert all(c.expire_time_s is not None for c in left)


def test_compaction_on_the_union_and_gc_of_a_source() -> None:
    shale_compactor = pytest.importorskip("shale_compactor")
    shale_gc = pytest.importorskip("shale_gc")
    from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions

    store = MemoryStore()
    want = make_shard(store, "s/a", KEYS[:45]) | make_shard(store, "s/b", KEYS[45:])
    Admin("s/a", object_store=store).clone("s/u", sources=["s/a", "s/b"])
    opts = CompactorOptions(poll_interval=0.05)
    with shale_compactor.Compactor(store, "s/u", FAST, options=opts) as c:
        c.submit(shale_compactor.FULL)
        (report,) = c.run_once(timeout=60)
    assert report.status == "completed"
    m = manifest(store, "s/u")
    assert not m.l0 and len(m.compacted) == 1
    assert reads(store, "s/u") == want
    # the source compacts and collects its old L0s: the ones the union references stay
    with shale_compactor.Compactor(store, "s/a", FAST, options=opts) as c:
        c.submit(shale_compactor.FULL)
        c.run_once(timeout=60)
    for cp in Admin("s/a", object_store=store).list_checkpoints():
        if cp.name != "clone:s/u":
            Admin("s/a", object_store=store).delete_checkpoint(cp.id)
    d = GcDirectoryOptions(interval=None, min_age=0)
    gc = shale_gc.GarbageCollector(store, "s/a", GarbageCollectorOptions(d, d, d, d))
    assert gc.run_once().ok
    assert reads(store, "s/u") == want


def test_union_of_segmented_sources() -> None:
    seg = FAST.replace(prefix_extractor="fixed3")
    store = MemoryStore()
    a_keys = [p + b"%03d" % i for p in (b"aaa", b"bbb") for i in range(20)]
    b_keys = [p + b"%03d" % i for p in (b"bbb", b"ccc") for i in range(20, 40)]
    want = make_shard(store, "s/a", a_keys, seg) | make_shard(store, "s/b", b_keys, seg)
    Admin("s/a", object_store=store).clone("s/u", sources=["s/a", "s/b"])
    m = manifest(store, "s/u")
    assert m.segment_extractor_name == "fixed3"
    assert [s.prefix for s in m.segments] == [b"aaa", b"bbb", b"ccc"]
    assert len(next(s for s in m.segments if s.prefix == b"bbb").l0) == 4
    assert reads(store, "s/u", seg) == want
    with Db.open("s/u", seg, object_store=store) as db:
        db.put(b"ddd1", b"new")
        assert db.get(b"ddd1") == b"new"
    # sources sharing keys inside one segment are refused; extractors must agree
    make_shard(store, "s/c", [b"bbb030"], seg)
    with pytest.raises(InvalidError, match="segment"):
        Admin("s/a", object_store=store).clone("s/v", sources=["s/a", "s/b", "s/c"])
    make_shard(store, "s/plain", [b"zzz"])
    with pytest.raises(InvalidError, match="extractor"):
        Admin("s/a", object_store=store).clone("s/v", sources=["s/a", "s/plain"])


def test_cli_union_clone(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shale.cli import main

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    want = make_shard_dir(a, KEYS[:50]) | make_shard_dir(b, KEYS[50:])
    target = str(tmp_path / "u")
    assert main(["clone", target, "--source", a, "--source", a]) == 2  # given twice
    assert main(["clone", target, "--source", a, "--source", b, "--checkpoint", "x"]) == 2
    capsys.readouterr()
    args = ["clone", target, "--source", a, "--source", b, "--start", "k010", "--json"]
    assert main(args) == 0
    assert '"created":true' in capsys.readouterr().out
    assert main(["clone", target, "--source", a, "--source", b, "--start", "k010"]) == 0
    assert "already a clone of" in capsys.readouterr().out
    with Db.open(target, FAST) as db:
        assert dict(db.scan()) == {k: v for k, v in want.items() if k >= b"k010"}


def make_shard_dir(path: str, keys: list[bytes]) -> dict[bytes, bytes]:
    with Db.open(path, FAST) as db:
        for k in keys:
            db.put(k, b"v" + k)
        db.flush(memtable=True)
    return {k: b"v" + k for k in keys}
