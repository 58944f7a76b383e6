"""Official clones (issue 9, item 4): shale reads, writes, compacts and collects databases the
official ``slatedb`` 0.17.0 ``CloneBuilder`` made, and the official package still reads them.

The ``official_clones`` fixture (conftest.py) holds, in one ``file://`` store, a parent at
``dbs/parent`` (a multi-SST sorted run from the official compactor, L0s, a WAL tail) and
``clone`` (plain), ``clone_w`` (the official writer added an L0 and a WAL tail), ``clone_cc``
(a clone of ``clone_w``: SSTs from two sources) and ``clone_proj`` (projected on a key range:
views with a ``visible_range``). Every test works on a copy of the store.

Two ways to open a clone, both checked: by its own directory (``Db.open(".../dbs/clone")``,
whose store root is the clone's directory, so the parent is found in the enclosing one) and
the official way, the store root plus the path (``object_store=LocalStore(store)``).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from shale import Admin, DataError, Db, Settings
from shale.fbs.manifest import decode_manifest
from shale.objstore.local import LocalStore
from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions
from shale_compactor import FULL, Compactor
from shale_gc import GarbageCollector

pytestmark = pytest.mark.interop

SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    merge_operator="concat",
)
NOW_GC = GcDirectoryOptions(interval=None, min_age=0)
GC_ALL = GarbageCollectorOptions(manifest=NOW_GC, wal=NOW_GC, compacted=NOW_GC, compactions=NOW_GC)
CLONE_NAMES = ("clone", "clone_w", "clone_cc", "clone_proj")
#: ``clone_proj``'s projection range (conftest.CLONE_PROJECTION).
CLONE_PROJECTION = (b"c000300", b"c001200")


def _copy(clones: Any, tmp_path: Path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(clones.store_dir, dst)
    return dst


def _digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _latest_manifest(db_dir: Path) -> Any:
    latest = sorted((db_dir / "manifest").glob("*.manifest"))[-1]
    return decode_manifest(latest.read_bytes())[1]


def _assert_reads_like(db: Db, d: Any, keys: list[bytes] | None = None) -> None:
    """``get``/``get_key_value`` of every key and forward, reverse and bounded scans equal
    what the official reader read (no TTLs here: plain reads)."""
    keys = d.keys if keys is None else keys
    assert {k: db.get(k) for k in keys} == {k: d.expected[k] for k in keys}
    for k in keys:
        kv = db.get_key_value(k)
        if kv is None:
            assert k not in d.key_values
        else:
            assert (kv.seq, kv.create_ts, kv.expire_ts) == d.key_values[k], k
    assert list(db.scan()) == d.scan
    assert list(db.scan(reverse=True)) == d.scan[::-1]
    for lo, hi in ((b"c000250", b"c000350"), (b"c001150", b"c001250"), (b"c0009", b"m:d")):
        want = [kv for kv in d.scan if lo <= kv[0] < hi]
        assert list(db.scan(lo, hi)) == want
        assert list(db.scan(lo, hi, reverse=True)) == want[::-1]


# -- the fixture -----------------------------------------------------------------------------


def test_official_clone_shapes(official_clones: Any) -> None:
    dbs = official_clones.store_dir / "dbs"
    parent = _latest_manifest(dbs / "parent")
    assert parent.compacted and parent.l0 and not parent.external_dbs
    finals = {cp.id for cp in parent.checkpoints if cp.expire_time_s is None}
    for name in CLONE_NAMES:
        m = _latest_manifest(dbs / name)
        assert m.initialized and m.external_dbs, name
        assert m.external_dbs[0].path == "dbs/parent"
        if name != "clone_cc":
            assert m.external_dbs[0].final_checkpoint_id in finals, name
    assert [e.path for e in _latest_manifest(dbs / "clone_cc").external_dbs] == [
        "dbs/parent",
        "dbs/clone_w",
    ]
    proj = _latest_manifest(dbs / "clone_proj")
    assert all(v.visible_range is not None for v in proj.l0)
    assert not (dbs / "clone").joinpath("compacted").exists()  # nothing copied but WALs
    d = official_clones.dbs["clone_proj"]
    assert d.scan and all(b"c000300" <= k < b"c001200" for k, _ in d.scan)


def test_official_clone_is_unreadable_without_its_parent(
    official_clones: Any, official_reader: Any, tmp_path: Path
) -> None:
    """The premise of item 4: the official reader needs the parent's SSTs too."""
    store = _copy(official_clones, tmp_path)
    shutil.rmtree(store / "dbs" / "parent" / "compacted")
    with pytest.raises(official_reader.error):
        official_reader.read(store, [b"c000001"], db_path="dbs/clone", merge_operator="concat")
    with pytest.raises(DataError, match="external_dbs"):
        Db.open(str(store / "dbs" / "clone"), SETTINGS)


# -- shale reads official clones --------------------------------------------------------------


@pytest.mark.parametrize("name", ("parent", *CLONE_NAMES))
def test_shale_reads_official_clone(official_clones: Any, tmp_path: Path, name: str) -> None:
    store = _copy(official_clones, tmp_path)
    d = official_clones.dbs[name]
    others = _digest(store / "dbs" / "parent") if name != "parent" else None
    with Db.open(str(store / d.db_path), SETTINGS) as db:  # by the clone's own directory
        _assert_reads_like(db, d)
    with Db.open(d.db_path, SETTINGS, object_store=LocalStore(store)) as db:  # the official way
        _assert_reads_like(db, d)
    if others is not None:
        assert _digest(store / "dbs" / "parent") == others  # reading a clone writes nothing there


# -- shale writes, compacts and collects official clones --------------------------------------


@pytest.mark.parametrize("name", ("clone_w", "clone_cc", "clone_proj"))
def test_shale_writes_compacts_and_collects_official_clone(
    official_clones: Any, official_reader: Any, tmp_path: Path, name: str
) -> None:
    store = _copy(official_clones, tmp_path)
    d = official_clones.dbs[name]
    db_dir = store / d.db_path
    sources = [p for p in (store / "dbs").iterdir() if p != db_dir]
    before = {p.name: _digest(p) for p in sources}
    model = {k: v for k, v in d.expected.items()}

    with Db.open(str(db_dir), SETTINGS) as db:
        for i in range(0, 1600, 7):
            k = b"c%06d" % i
            db.put(k, b"shale-%d" % i)
            model[k] = b"shale-%d" % i
        for i in range(1, 1600, 40):
            db.delete(b"c%06d" % i)
            model[b"c%06d" % i] = None
        db.merge(b"m:counter", b"+shale")
        model[b"m:counter"] = (model.get(b"m:counter") or b"") + b"+shale"
        db.flush(memtable=True)
        db.put(b"c000004", b"shale-wal")
        model[b"c000004"] = b"shale-wal"

    keys = sorted(set(d.keys) | set(model))
    # the standalone compactor and GC, on the clone's own directory (parent in the enclosing one)
    local = LocalStore(db_dir)
    c = Compactor(local, "", SETTINGS, options=CompactorOptions(poll_interval=0.05))
    try:
        c.submit(FULL)
        (report,) = c.run_once()
    finally:
        c.stop()
    assert report.status == "completed", report
    m = _latest_manifest(db_dir)
    own = {p.stem for p in (db_dir / "compacted").glob("*.sst")}
    assert not m.l0 and len(m.compacted) == 1
    assert {str(v.sst.id) for v in m.compacted[0].ssts} <= own  # the parents' were compacted away
    assert all(e.sst_ids == [] for e in m.external_dbs)  # and forgotten, as SlateDB does
    gc = GarbageCollector(local, "", GC_ALL).run_once()
    assert gc.ok, gc
    assert {p.name: _digest(p) for p in sources} == before  # no source object touched

    want = {k: model.get(k) for k in keys}
    scan = sorted((k, v) for k, v in model.items() if v is not None)
    with Db.open(str(db_dir), SETTINGS) as db:
        assert {k: db.get(k) for k in keys} == want
        assert list(db.scan()) == scan
        assert list(db.scan(reverse=True)) == scan[::-1]
    official = official_reader.read(store, keys, db_path=d.db_path, merge_operator="concat")
    assert official.values == want
    assert official.scan == scan
    # the sources still read as before, for the official reader and for shale
    for src in ("parent", "clone_w"):
        if src == name:
            continue
        s = official_clones.dbs[src]
        read = official_reader.read(store, s.keys, db_path=s.db_path, merge_operator="concat")
        assert read.values == s.expected and read.scan == s.scan


def test_parent_gc_keeps_what_official_clones_read(
    official_clones: Any, official_reader: Any, tmp_path: Path
) -> None:
    """shale writes to the parent, compacts it fully and collects its garbage with min_age 0:
    the clones' final checkpoints pin the SSTs they read."""
    store = _copy(official_clones, tmp_path)
    parent = official_clones.dbs["parent"]
    parent_dir = store / parent.db_path
    with Db.open(str(parent_dir), SETTINGS) as db:
        for i in range(0, 1500, 2):
            db.put(b"c%06d" % i, b"moved-on-%d" % i)
        db.flush(memtable=True)
    local = LocalStore(parent_dir)
    c = Compactor(local, "", SETTINGS, options=CompactorOptions(poll_interval=0.05))
    try:
        c.submit(FULL)
        (report,) = c.run_once()
    finally:
        c.stop()
    assert report.status == "completed", report
    gc = GarbageCollector(local, "", GC_ALL).run_once()
    assert gc.ok, gc
    assert gc.deleted, "the parent had garbage to collect"
    for name in CLONE_NAMES:
        d = official_clones.dbs[name]
        read = official_reader.read(store, d.keys, db_path=d.db_path, merge_operator="concat")
        assert read.values == d.expected and read.scan == d.scan, name
        with Db.open(d.db_path, SETTINGS, object_store=LocalStore(store)) as db:
            assert list(db.scan()) == d.scan, name


# -- an unfinished clone ------------------------------------------------------------------------


def test_unfinished_official_clone_is_refused(
    official_clones: Any, official_reader: Any, tmp_path: Path
) -> None:
    """A clone whose creation stopped after its first manifest (initialized=false, WALs not
    copied): the official DbReader refuses it (InvalidDBState), and so does shale -- before
    writing anything."""
    store = _copy(official_clones, tmp_path)
    first = sorted((store / "dbs" / "clone" / "manifest").glob("*.manifest"))[0]
    assert not decode_manifest(first.read_bytes())[1].initialized
    unfinished = store / "dbs" / "unfinished"
    (unfinished / "manifest").mkdir(parents=True)
    shutil.copy(first, unfinished / "manifest" / first.name)
    before = _digest(store)
    with pytest.raises(official_reader.error, match="invalid DB state"):
        official_reader.read(store, [b"c000001"], db_path="dbs/unfinished")
    with pytest.raises(DataError, match="initialized=false"):
        Db.open(str(unfinished), SETTINGS)
    assert _digest(store) == before


# -- clones shale makes (Admin.clone, issue 13 part 2) -------------------------------------------


def test_official_reads_shale_clones_like_official_ones(
    official_clones: Any, official_reader: Any, tmp_path: Path
) -> None:
    """shale's ``Admin.clone`` of the official parent (plain; projected at the official
    projected clone's checkpoint) and of the official ``clone_w`` (two sources) read, in the
    official reader and in shale, exactly as the official clones of the same databases --
    values, seqs and create times."""
    store = _copy(official_clones, tmp_path)
    local = LocalStore(store)
    proj_final = _latest_manifest(store / "dbs" / "clone_proj").external_dbs[0].final_checkpoint_id
    admin = Admin("dbs/parent", settings=SETTINGS, object_store=local)
    made = {
        "s_clone": ("clone", admin.clone("dbs/s_clone")),
        "s_proj": (
            "clone_proj",
            admin.clone("dbs/s_proj", checkpoint=proj_final, projection=CLONE_PROJECTION),
        ),
        "s_cc": ("clone_cc", admin.clone("dbs/s_cc", source="dbs/clone_w")),
    }
    assert [e.path for e in _latest_manifest(store / "dbs" / "s_cc").external_dbs] == [
        "dbs/parent",
        "dbs/clone_w",
    ]
    for name, (twin, _result) in made.items():
        d = official_clones.dbs[twin]
        read = official_reader.read(store, d.keys, db_path=f"dbs/{name}", merge_operator="concat")
        assert read.values == d.expected, name
        assert read.key_values == d.key_values, name
        assert read.scan == d.scan, name
        with Db.open(f"dbs/{name}", SETTINGS, object_store=local) as db:
            _assert_reads_like(db, d)


def test_official_and_shale_clones_of_a_shale_parent(official_reader: Any, tmp_path: Path) -> None:
    """The same shale-written parent cloned by the official ``CloneBuilder`` and by shale,
    projected and plain: the official reader and shale read them alike. A clone shale makes
    of a parent with a WAL tail reads, in the official reader, as the parent itself."""
    store = tmp_path / "store"
    local = LocalStore(store)
    keys = [b"k%04d" % i for i in range(300)]
    with Db.open("dbs/p", SETTINGS, object_store=local) as db:
        for r in range(3):
            for i in range(r * 60, r * 60 + 150):
                db.put(keys[i], b"r%d-%d" % (r, i))
            db.delete(keys[r * 13])
            db.flush(memtable=True)
    proj = (b"k0100", b"k0200")
    official_reader.clone(store, "dbs/p", "dbs/o_proj", proj)
    Admin("dbs/p", settings=SETTINGS, object_store=local).clone("dbs/s_proj", projection=proj)
    official_reader.clone(store, "dbs/p", "dbs/o_clone")
    Admin("dbs/p", settings=SETTINGS, object_store=local).clone("dbs/s_clone")
    for kind in ("clone", "proj"):
        o = official_reader.read(store, keys, db_path=f"dbs/o_{kind}")
        s = official_reader.read(store, keys, db_path=f"dbs/s_{kind}")
        assert s == o and o.scan, kind
        with Db.open(f"dbs/s_{kind}", SETTINGS, object_store=local) as db:
            assert list(db.scan()) == o.scan
            kvs = {k: db.get_key_value(k) for k in keys}
            got = {k: (kv.seq, kv.create_ts, kv.expire_ts) for k, kv in kvs.items() if kv}
            assert got == o.key_values, kind
    assert all(proj[0] <= k < proj[1] for k, _ in o.scan)
    with Db.open("dbs/p", SETTINGS, object_store=local) as db:  # a WAL tail
        for i in range(0, 300, 7):
            db.put(keys[i], b"wal-%d" % i)
    Admin("dbs/p", settings=SETTINGS, object_store=local).clone("dbs/s_tail")
    # the official clone copies the WAL up to the manifest's wal_id_last_seen, which a shale
    # close records: the tail that lives only in the WAL is in its clone too
    official_reader.clone(store, "dbs/p", "dbs/o_tail")
    parent = official_reader.read(store, keys, db_path="dbs/p")
    assert official_reader.read(store, keys, db_path="dbs/s_tail") == parent
    assert official_reader.read(store, keys, db_path="dbs/o_tail") == parent
    assert parent.values[keys[7]] == b"wal-7"


def test_official_package_finishes_a_clone_shale_started(
    official_clones: Any, official_reader: Any, tmp_path: Path
) -> None:
    """SlateDB's retry finishes what shale's ``Admin.clone`` left after its step 2 (an
    uninitialized manifest): the protocols match step for step."""
    from shale.meta import clone as clone_mod
    from shale.meta.manifest_store import ManifestStore

    store = _copy(official_clones, tmp_path)
    local = LocalStore(store)
    ms = ManifestStore(local, "dbs/half")
    clone_mod._start(local, "dbs/parent", "dbs/half", ms, None, None, int(time.time()), None)
    assert not _latest_manifest(store / "dbs" / "half").initialized
    official_reader.clone(store, "dbs/parent", "dbs/half")
    m = _latest_manifest(store / "dbs" / "half")
    assert m.initialized and len(m.external_dbs) == 1
    d = official_clones.dbs["clone"]
    read = official_reader.read(store, d.keys, db_path="dbs/half", merge_operator="concat")
    assert read.values == d.expected and read.key_values == d.key_values
