"""Interop: segmented databases (RFC-0024) and sorted runs split inside a key, both ways.

Databases are written by the official ``slatedb`` 0.17 package in a child process (this file
doubles as the worker script, see ``__main__``), like the fixtures in ``conftest.py``:

* ``segmented``: a ``fixed3`` segment extractor (the official package has no built-in one; the
  fixture's Python extractor is named ``fixed3`` and cuts 3 bytes, like shale's built-in
  :class:`shale.meta.segments.FixedPrefixExtractor`), six prefixes including binary ones at both
  ends of the key space, puts/overwrites/deletes/``concat`` merges, the embedded official
  compactor with a 4 KiB ``max_sst_size`` (so every segment gets a multi-SST sorted run), an
  open snapshot pinning older versions through the flushes, more L0s on top of the runs and a
  WAL tail. The official engine rejects keys without a prefix, so its root tree stays empty.
* ``hotkey`` (issue 9, item 1): an unsegmented database whose hot keys have hundreds of
  versions pinned by open snapshots, compacted by the official compactor with a 2 KiB
  ``max_sst_size``: the run's SSTs are split *inside* those keys' version groups (checked),
  which is where shale's point lookups and reverse scans used to return an older version.

Checks:

* shale reads what the official reader reads: ``get``/``get_key_value`` for every key, full
  scans in both directions, ranged and prefix scans that cross segment boundaries, ``seek``,
  a snapshot, ``durability="remote"`` (:func:`test_shale_reads_official_segmented_db`);
* a writer without the extractor is refused before anything is written;
* shale extends the official database (new and existing segments), compacts every segment with
  its compactor, collects garbage with ``min_age`` 0, and the official reader then reads
  exactly shale's model (:func:`test_shale_extends_compacts_and_gcs_official_segmented_db`);
* a segmented database written and compacted by shale is read by the official reader, and an
  official writer (with its compactor) continues it; shale reads the result
  (:func:`test_official_reads_and_continues_shale_segmented_db`);
* compactions the official ``Admin`` submits for segments (a tiered merge and a
  ``DRAIN_SEGMENT``) are run by shale's compactor (:func:`test_shale_runs_official_segment_specs`);
* the hot-key database (:func:`test_official_run_split_inside_a_key`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shale.testing.script_worker import WorkerError, run_script, worker_main

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.interop

DB_PATH = "db"
PREFIXES = (b"\x00\x00\x01", b"aaa", b"aab", b"m\xffz", b"zzz", b"\xff\xff\xff")
HOT_KEYS = (b"hot:a", b"hot:b")
#: Budget of one official child process.
OFFICIAL_TIMEOUT_S = 150.0
#: How long the official embedded compactor may take.
COMPACTION_WAIT_S = 90.0


def _keys(n: int = 30) -> list[bytes]:
    return [p + b"%03d" % i for p in PREFIXES for i in range(n)]


# --------------------------------------------------------------------------------------------
# Fixtures (pytest side)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official_segmented(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ``segmented`` and ``hotkey`` databases, generated once per module."""
    pytest.importorskip("slatedb")
    base = tmp_path_factory.mktemp("official_segmented")
    started = time.monotonic()
    value = _run_official({"op": "generate", "base": str(base)}, OFFICIAL_TIMEOUT_S)
    logger.info("generated segmented databases in %.1fs", time.monotonic() - started)
    out: dict[str, Any] = value
    return out


def _copy(src: str, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _files(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }


def _settings(**kw: Any) -> Any:
    from shale.settings import Settings

    base: dict[str, Any] = {
        "compactor_options": None,
        "garbage_collector_options": None,
        "merge_operator": "concat",
        "prefix_extractor": "fixed3",
        "hide_expired": False,
        "manifest_poll_interval": 0.05,
        "flush_interval": 0.01,
        "l0_max_ssts": 10_000,
    }
    base.update(kw)
    return Settings(**base)


def _open(store_dir: Path, **kw: Any) -> Any:
    from shale.db import Db

    return Db.open(str(store_dir / DB_PATH), _settings(**kw), store_options={"fsync": False})


def _ranges() -> list[tuple[bytes | None, bytes | None]]:
    return [
        (None, None),
        (b"aaa010", b"aab005"),  # inside one segment into the next
        (b"aa", b"zzz"),  # across several
        (b"\x00", b"aab"),
        (b"m\xffz029", None),
        (None, b"\x00\x00\x01\x00"),
        (b"n", b"zz"),  # between segments: empty
    ]


def _official_read(store_dir: Path, keys: list[bytes], extractor: str | None = "fixed3") -> Any:
    return _run_official(
        {
            "op": "read",
            "store_dir": str(store_dir),
            "keys": keys,
            "extractor": extractor,
            "ranges": _ranges(),
            "prefixes": [b"a", b"aa", b"aab", b"m", b"\xff", b"hot:"],
        },
        OFFICIAL_TIMEOUT_S,
    )


def _shale_read(db: Any, keys: list[bytes]) -> dict[str, Any]:
    def scan(start: bytes | None, end: bytes | None, reverse: bool) -> list[tuple[bytes, bytes]]:
        return list(db.scan(start, end, reverse=reverse))

    values = {k: db.get(k) for k in keys}
    kvs = {}
    for k in keys:
        kv = db.get_key_value(k)
        if kv is not None:
            kvs[k] = (kv.seq, kv.create_ts, kv.expire_ts)
    return {
        "values": values,
        "key_values": kvs,
        "ranges": [(scan(a, b, False), scan(a, b, True)) for a, b in _ranges()],
        "prefixes": [
            list(db.scan_prefix(p)) for p in [b"a", b"aa", b"aab", b"m", b"\xff", b"hot:"]
        ],
    }


def _assert_same(shale: dict[str, Any], official: dict[str, Any]) -> None:
    bad = {
        k: (v, official["values"][k])
        for k, v in shale["values"].items()
        if v != official["values"][k]
    }
    assert not bad, f"{len(bad)} keys differ, e.g. {list(bad.items())[:3]}"
    assert shale["key_values"] == official["key_values"]
    for i, (mine, theirs) in enumerate(zip(shale["ranges"], official["ranges"], strict=True)):
        assert mine[0] == theirs[0], f"forward scan of {_ranges()[i]}"
        assert mine[1] == theirs[1], f"reverse scan of {_ranges()[i]}"
    assert shale["prefixes"] == official["prefixes"]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_official_segmented_shape(official_segmented: dict[str, Any]) -> None:
    """The oracle database has what the other tests rely on."""
    from shale.meta.manifest_store import ManifestStore
    from shale.objstore.local import LocalStore

    d = official_segmented["segmented"]
    m = ManifestStore(LocalStore(d["store_dir"]), DB_PATH).read_latest()[1]  # type: ignore[index]
    assert m.segment_extractor_name == "fixed3"
    assert [s.prefix for s in m.segments] == sorted(PREFIXES)
    assert not m.l0 and not m.compacted  # the official engine never writes the root tree
    assert all(s.compacted for s in m.segments), "every segment has a sorted run"
    assert any(len(s.compacted[0].ssts) > 1 for s in m.segments)
    assert all(s.l0 for s in m.segments), "L0s on top of the runs"
    assert d["wal_only"], "a WAL tail"


def test_shale_reads_official_segmented_db(
    official_segmented: dict[str, Any], tmp_path: Path
) -> None:
    from shale.errors import InvalidError

    d = official_segmented["segmented"]
    store_dir = _copy(d["store_dir"], tmp_path / "s")
    official = d["read"]
    keys = list(official["values"])
    assert sum(v is not None for v in official["values"].values()) > 100
    # a writer without the extractor (or with another) is refused, and writes nothing
    before = _files(store_dir)
    for kw in ({"prefix_extractor": None}, {"prefix_extractor": "fixed4"}):
        with pytest.raises(InvalidError):
            _open(store_dir, **kw)
    assert _files(store_dir) == before
    with _open(store_dir) as db:
        _assert_same(_shale_read(db, keys), official)
        # durable reads: everything official is durable
        assert {k: db.get(k, durability="remote") for k in keys} == official["values"]
        with db.snapshot() as snap:
            assert list(snap.scan()) == official["ranges"][0][0]
            assert {k: snap.get(k) for k in keys} == official["values"]
        # seek across segment boundaries, both directions
        full = official["ranges"][0][0]
        it = db.scan()
        assert next(it) == full[0]
        it.seek(b"m")
        assert list(it) == [kv for kv in full if kv[0] >= b"m"]
        it = db.scan(reverse=True)
        assert next(it) == full[-1]
        it.seek(b"aab")
        assert list(it) == [kv for kv in reversed(full) if kv[0] <= b"aab"]


def _extend(db: Any, model: dict[bytes, bytes | None]) -> None:
    """More writes: overwrites, deletes and merges in existing segments, a new segment."""
    for r in range(3):
        for i, k in enumerate(_keys()):
            if (i + r) % 5 == 0:
                db.put(k, b"shale-%d-%d" % (r, i), durable=False)
                model[k] = b"shale-%d-%d" % (r, i)
            elif (i + r) % 11 == 0:
                db.delete(k, durable=False)
                model[k] = None
        for i in range(20):
            k = b"new%03d" % i
            db.put(k, b"n%d" % r, durable=False)
            model[k] = b"n%d" % r
        db.merge(b"aaa001", b"+m%d" % r, durable=False)
        old = model.get(b"aaa001")
        model[b"aaa001"] = (old or b"") + b"+m%d" % r
        db.flush(memtable=True)
    db.put(b"zzz-wal", b"tail")
    model[b"zzz-wal"] = b"tail"


def test_shale_extends_compacts_and_gcs_official_segmented_db(
    official_segmented: dict[str, Any], tmp_path: Path
) -> None:
    from shale.objstore.local import LocalStore
    from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions
    from shale_compactor import Compactor
    from shale_gc import GarbageCollector

    d = official_segmented["segmented"]
    store_dir = _copy(d["store_dir"], tmp_path / "s")
    model: dict[bytes, bytes | None] = dict(d["read"]["values"])
    with _open(store_dir) as db:
        _extend(db, model)
        m = db.manifest()
        assert b"new" in [s.prefix for s in m.segments] and not m.l0
        store = LocalStore(store_dir, fsync=False)
        opts = CompactorOptions(
            poll_interval=0.05,
            min_compaction_sources=2,
            max_sst_size=4096,
            max_concurrent_compactions=16,
        )
        with Compactor(store, DB_PATH, _settings(), options=opts) as c:
            reports = c.run_once(timeout=120)
        assert {r.segment for r in reports} >= set(PREFIXES) | {b"new"}
        assert all(r.status == "completed" for r in reports), reports
        m = db.refresh_manifest()
        assert all(not s.l0 for s in m.segments)
        run_ids = [r.id for s in m.segments for r in s.compacted]
        assert len(run_ids) == len(set(run_ids)), "run ids stay unique across segments"
        for cp in db.list_checkpoints():
            db.delete_checkpoint(cp.id)
        dirs = GcDirectoryOptions(interval=None, min_age=0)
        gc = GarbageCollector(
            store, DB_PATH, GarbageCollectorOptions(dirs, dirs, dirs, dirs)
        ).run_once()
        assert gc.ok, gc.summary()
        assert gc.kinds["compacted"].deleted
        keys = sorted(model)
        want = {k: model[k] for k in keys}
        assert {k: db.get(k) for k in keys} == want
        mine = _shale_read(db, keys)
    official = _official_read(store_dir, keys)
    assert official["values"] == want
    _assert_same(mine, official)
    live = [(k, v) for k, v in sorted(model.items()) if v is not None]
    assert official["ranges"][0][0] == live


def _shale_segmented_db(store_dir: Path) -> dict[bytes, bytes | None]:
    from shale.objstore.local import LocalStore
    from shale.settings import CompactorOptions
    from shale_compactor import Compactor

    model: dict[bytes, bytes | None] = {}
    with _open(store_dir) as db:
        for r in range(4):
            for i, k in enumerate(_keys(40)):
                if (i * 7 + r) % 9 == 0:
                    db.delete(k, durable=False)
                    model[k] = None
                else:
                    v = b"%d-%d-" % (r, i) + b"v" * (i % 30)
                    db.put(k, v, durable=False)
                    model[k] = v
            db.merge(b"aab000", b"+%d" % r, durable=False)
            model[b"aab000"] = (model.get(b"aab000") or b"") + b"+%d" % r
            db.flush(memtable=True)
        opts = CompactorOptions(
            poll_interval=0.05,
            min_compaction_sources=2,
            max_sst_size=4096,
            max_concurrent_compactions=16,
        )
        with Compactor(
            LocalStore(store_dir / DB_PATH, fsync=False), "", _settings(), options=opts
        ) as c:
            assert all(r.status == "completed" for r in c.run_once(timeout=120))
        db.put(b"aaa-l0", b"on top")  # an L0 above the runs
        model[b"aaa-l0"] = b"on top"
        db.flush(memtable=True)
        db.put(b"zzz-wal", b"wal only")
        model[b"zzz-wal"] = b"wal only"
    return model


def test_official_reads_and_continues_shale_segmented_db(tmp_path: Path) -> None:
    pytest.importorskip("slatedb")
    from shale.meta.manifest_store import ManifestStore
    from shale.objstore.local import LocalStore

    store_dir = tmp_path / "s"
    model = _shale_segmented_db(store_dir)
    m = ManifestStore(LocalStore(store_dir), DB_PATH).read_latest()[1]  # type: ignore[index]
    assert m.segment_extractor_name == "fixed3" and len(m.segments) == len(PREFIXES)
    assert all(s.compacted for s in m.segments)
    keys = sorted(model)
    official = _official_read(store_dir, keys)
    assert official["values"] == model
    with _open(store_dir) as db:
        _assert_same(_shale_read(db, keys), official)
    # an official writer with the same extractor continues the database, its compactor on
    ops = [("put", p + b"off%d" % i, b"official-%d" % i) for p in PREFIXES for i in range(3)]
    ops += [("delete", b"aaa001", b""), ("put", b"off" + b"001", b"new segment")]
    state = _run_official(
        {"op": "continue", "store_dir": str(store_dir), "ops": ops}, OFFICIAL_TIMEOUT_S
    )
    assert b"off" in state["segments"]
    for op, k, v in ops:
        model[k] = v if op == "put" else None
    keys = sorted(model)
    with _open(store_dir) as db:
        assert {k: db.get(k) for k in keys} == model
        mine = _shale_read(db, keys)
    _assert_same(mine, _official_read(store_dir, keys))


def test_shale_runs_official_segment_specs(
    official_segmented: dict[str, Any], tmp_path: Path
) -> None:
    """Compactions the official ``Admin`` submits -- a tiered merge of one segment and a drain
    of another -- are run by shale's compactor; the official reader sees the result."""
    from shale.meta.manifest_store import ManifestStore
    from shale.objstore.local import LocalStore
    from shale.settings import CompactorOptions
    from shale_compactor import Compactor

    d = official_segmented["segmented"]
    store_dir = _copy(d["store_dir"], tmp_path / "s")
    m = ManifestStore(LocalStore(store_dir), DB_PATH).read_latest()[1]  # type: ignore[index]
    by_prefix = {x.prefix: x for x in m.segments}
    aab, drained = by_prefix[b"aab"], by_prefix[b"m\xffz"]
    specs = [
        (
            "tiered",
            b"aab",
            [str(v.id) for v in aab.l0],
            [r.id for r in aab.compacted],
            min(r.id for r in aab.compacted),
        ),
        (
            "drain",
            b"m\xffz",
            [str(v.id) for v in drained.l0],
            [r.id for r in drained.compacted],
            0,
        ),
    ]
    _run_official({"op": "submit", "store_dir": str(store_dir), "specs": specs}, OFFICIAL_TIMEOUT_S)
    # no proposals of its own: only the submitted specs run
    opts = CompactorOptions(
        poll_interval=0.05, min_compaction_sources=99, max_compaction_sources=99
    )
    with Compactor(LocalStore(store_dir, fsync=False), DB_PATH, _settings(), options=opts) as c:
        reports = c.run_once(timeout=120)
    assert sorted((r.segment, r.drain, r.status) for r in reports) == [
        (b"aab", False, "completed"),
        (b"m\xffz", True, "completed"),
    ]
    m = ManifestStore(LocalStore(store_dir), DB_PATH).read_latest()[1]  # type: ignore[index]
    by_prefix = {x.prefix: x for x in m.segments}
    assert not by_prefix[b"aab"].l0 and len(by_prefix[b"aab"].compacted) == 1
    assert not by_prefix[b"m\xffz"].l0 and not by_prefix[b"m\xffz"].compacted
    want = {k: (None if k.startswith(b"m\xffz") else v) for k, v in d["read"]["values"].items()}
    keys = sorted(want)
    official = _official_read(store_dir, keys)
    assert official["values"] == want
    with _open(store_dir) as db:
        _assert_same(_shale_read(db, keys), official)


def test_official_run_split_inside_a_key(
    official_segmented: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 9, item 1, on a run the official compactor wrote: a hot key's versions continue
    from one SST of the run into the next; shale's gets, snapshot gets and reverse scans must
    return the newest version, as the official reader does."""
    from shale.meta.manifest_store import ManifestStore
    from shale.objstore.local import LocalStore

    d = official_segmented["hotkey"]
    store_dir = _copy(d["store_dir"], tmp_path / "h")
    m = ManifestStore(LocalStore(store_dir), DB_PATH).read_latest()[1]  # type: ignore[index]
    assert m.compacted, "the official compactor wrote a sorted run"
    split = set()
    for run in m.compacted:
        for a, b in zip(run.ssts, run.ssts[1:], strict=False):
            if a.sst.info.last_entry == b.sst.info.first_entry:
                split.add(a.sst.info.last_entry)
    assert split & set(HOT_KEYS), f"no hot key spans two SSTs: {split}"
    keys = sorted(d["read"]["values"])
    official = d["read"]
    with _open(store_dir, prefix_extractor=None, merge_operator=None) as db:
        _assert_same(_shale_read(db, keys), official)
        with db.snapshot() as snap:
            assert {k: snap.get(k) for k in keys} == official["values"]
            assert list(snap.scan(reverse=True)) == official["ranges"][0][1]
    # and after a reopen (nothing cached)
    with _open(store_dir, prefix_extractor=None, merge_operator=None) as db:
        for k in HOT_KEYS:
            assert db.get(k) == official["values"][k]
        assert list(db.scan(b"hot:", b"hot;", reverse=True)) == [
            kv for kv in official["ranges"][0][1] if kv[0].startswith(b"hot:")
        ]


# --------------------------------------------------------------------------------------------
# The official worker (child process)
# --------------------------------------------------------------------------------------------


def _run_official(request: dict[str, Any], timeout: float) -> Any:
    """Run ``request`` with the official package in a child process (this file as a script)."""
    try:
        return run_script(__file__, {**request, "timeout": timeout}, timeout + 15.0)
    except WorkerError as exc:
        pytest.fail(f"official {exc}")


def _worker_main(argv: list[str]) -> int:
    return worker_main(argv, _dispatch)


def _slatedb() -> Any:
    import slatedb.uniffi as s  # only the worker loads the native library

    return s


def _store(s: Any, store_dir: Path) -> Any:
    return s.ObjectStoreBuilder.from_url("file://" + str(store_dir.resolve())).build()


def _fixed(s: Any, n: int) -> Any:
    class Fixed(s.PrefixExtractor):  # type: ignore[misc,name-defined]
        """The official side of shale's ``FixedPrefixExtractor``: ``fixed<n>``."""

        def name(self) -> str:
            return f"fixed{n}"

        def prefix_len(self, target: Any) -> int | None:
            key = target.key if target.is_POINT() else target.prefix
            return n if len(key) >= n else None

    return Fixed()


def _concat(s: Any) -> Any:
    class Concat(s.MergeOperator):  # type: ignore[misc,name-defined]
        def merge(self, key: bytes, existing_value: bytes | None, operand: bytes) -> bytes:
            return (existing_value or b"") + operand

    return Concat()


def _official_settings(s: Any, max_sst_size: int) -> Any:
    settings = s.Settings.default()
    settings.set("garbage_collector_options", "null")
    for key, value in {
        "compactor_options.poll_interval": '"50ms"',
        "compactor_options.commit_compacted_interval": '"50ms"',
        "compactor_options.worker.compactions_poll_interval": '"50ms"',
        "compactor_options.worker.max_sst_size": str(max_sst_size),
        "compactor_options.worker.max_subcompactions": "1",
        "manifest_poll_interval": '"100ms"',
    }.items():
        settings.set(key, value)
    return settings


async def _open_writer(s: Any, store: Any, max_sst_size: int, extractor: bool) -> Any:
    b = s.DbBuilder(DB_PATH, store)
    b.with_settings(_official_settings(s, max_sst_size))
    b.with_merge_operator(_concat(s))
    if extractor:
        b.with_segment_extractor(_fixed(s, 3))
    return await asyncio.wait_for(b.build(), 30.0)


async def _manifest(s: Any, store: Any) -> Any:
    admin = s.AdminBuilder(DB_PATH, store).build()
    return await admin.read_manifest(None)


async def _wait_runs(s: Any, store: Any, done: Any) -> Any:
    deadline = time.monotonic() + COMPACTION_WAIT_S
    while True:
        m = await _manifest(s, store)
        if done(m):
            return m
        if time.monotonic() > deadline:
            raise TimeoutError(f"the official compactor did not get there: {m}")
        await asyncio.sleep(0.1)


async def _flush(s: Any, db: Any) -> None:
    await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.MEM_TABLE))


async def _gen_segmented(s: Any, store_dir: Path) -> dict[str, Any]:
    store_dir.mkdir(parents=True)
    store = _store(s, store_dir)
    db = await _open_writer(s, store, 4096, extractor=True)
    wal_only: list[bytes] = []
    snaps = []
    try:
        try:
            await db.put(b"ab", b"no prefix")
            accepted = True
        except Exception:  # the official package's Error.Invalid (EmptySegmentPrefix)
            accepted = False
        assert not accepted, "the official engine accepted a key without a segment prefix"
        for r in range(5):
            wb = s.WriteBatch()
            for i, k in enumerate(_keys()):
                if (i + r) % 13 == 0:
                    wb.delete(k)
                elif r == 0 or (i + r) % 3 == 0:
                    wb.put(k, b"r%d-%d-" % (r, i) + b"x" * (100 + i % 100))
            await db.write(wb)
            await db.merge(b"aab007", b"+%d" % r)
            await db.merge(b"zzz000", b"m%d" % r)
            if r == 1:
                snaps.append(await db.snapshot())  # pins older versions in the runs
            await _flush(s, db)

        def every_segment_has_a_run(m: Any) -> bool:
            return len(m.segments) == len(PREFIXES) and all(x.compacted for x in m.segments)

        await _wait_runs(s, store, every_segment_has_a_run)
        # L0s on top of the runs (one flush per segment touched)
        for i, k in enumerate(_keys()[::4]):
            await db.put(k, b"l0-%d" % i)
        await db.merge(b"aab007", b"+l0")
        await _flush(s, db)
        # the WAL tail
        for k in (b"aaa000", b"zzz029", b"\xff\xff\xffwal"):
            await db.put(k, b"wal:" + k)
            wal_only.append(k)
        await db.delete(b"aab001")
        wal_only.append(b"aab001")
        await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.WAL))
    finally:
        for snap in snaps:
            del snap
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), 30.0
        )
    keys = sorted(set(_keys()) | set(wal_only))
    read = await _read(s, store_dir, keys, "fixed3", _ranges(), _PREFIX_SCANS)
    return {"store_dir": str(store_dir), "wal_only": wal_only, "read": read}


async def _gen_hotkey(s: Any, store_dir: Path) -> dict[str, Any]:
    store_dir.mkdir(parents=True)
    store = _store(s, store_dir)
    db = await _open_writer(s, store, 2048, extractor=False)
    snaps = []
    try:
        for r in range(5):
            snaps.append(await db.snapshot())
            for v in range(60):
                for hk in HOT_KEYS:
                    await db.put(hk, b"%s-r%d-v%03d-" % (hk, r, v) + b"h" * 30)
            for i in range(40):
                await db.put(b"cold%03d" % i, b"c%d-%d" % (r, i))
            await _flush(s, db)
        await _wait_runs(s, store, lambda m: bool(m.compacted))
    finally:
        for snap in snaps:
            del snap
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), 30.0
        )
    keys = [*HOT_KEYS, *(b"cold%03d" % i for i in range(40))]
    read = await _read(s, store_dir, keys, None, _ranges(), _PREFIX_SCANS)
    return {"store_dir": str(store_dir), "read": read}


_PREFIX_SCANS = [b"a", b"aa", b"aab", b"m", b"\xff", b"hot:"]


async def _collect(it: Any) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    while True:
        batch = await it.next_batch(1024)
        if not batch:
            return out
        out.extend((bytes(kv.key), bytes(kv.value)) for kv in batch)


async def _read(
    s: Any,
    store_dir: Path,
    keys: list[bytes],
    extractor: str | None,
    ranges: list[tuple[bytes | None, bytes | None]],
    prefixes: list[bytes],
) -> dict[str, Any]:
    """A FOLLOW_LATEST ``DbReader`` (writes nothing): gets, scans both ways, prefix scans."""
    store = _store(s, store_dir)
    b = s.DbReaderBuilder(DB_PATH, store)
    b.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
    b.with_merge_operator(_concat(s))
    if extractor is not None:
        assert extractor.startswith("fixed")
        b.with_segment_extractor(_fixed(s, int(extractor[5:])))
    reader = await b.build()
    try:
        values: dict[bytes, bytes | None] = {}
        kvs: dict[bytes, tuple[int, int, int | None]] = {}
        for k in keys:
            got = await reader.get(k)
            values[k] = None if got is None else bytes(got)
            kv = await reader.get_key_value(k)
            if kv is not None:
                kvs[k] = (int(kv.seq), int(kv.create_ts), kv.expire_ts)

        def opts(order: Any) -> Any:
            return s.ScanOptions(
                durability_filter=s.DurabilityLevel.MEMORY,
                dirty=False,
                read_ahead_bytes=1,
                cache_blocks=False,
                max_fetch_tasks=1,
                order=order,
            )

        out_ranges = []
        for start, end in ranges:
            rng = s.KeyRange(start=start, start_inclusive=True, end=end, end_inclusive=False)
            fwd = await _collect(
                await reader.scan_with_options(rng, opts(s.IterationOrder.ASCENDING))
            )
            rev = await _collect(
                await reader.scan_with_options(rng, opts(s.IterationOrder.DESCENDING))
            )
            out_ranges.append((fwd, rev))
        everything = s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
        out_prefixes = [await _collect(await reader.scan_prefix(p, everything)) for p in prefixes]
        return {
            "values": values,
            "key_values": kvs,
            "ranges": out_ranges,
            "prefixes": out_prefixes,
        }
    finally:
        await asyncio.wait_for(reader.shutdown(), 30.0)


async def _continue(s: Any, store_dir: Path, ops: list[tuple[str, bytes, bytes]]) -> Any:
    """An official writer (extractor ``fixed3``, compactor on) continues a database."""
    store = _store(s, store_dir)
    db = await _open_writer(s, store, 4096, extractor=True)
    try:
        for round_ in range(4):  # four L0s per segment touched: the compactor runs
            wb = s.WriteBatch()
            for op, k, v in ops:
                if op == "put":
                    wb.put(k, v if round_ == 3 else v + b"-old")
                elif round_ == 3:
                    wb.delete(k)
            await db.write(wb)
            await _flush(s, db)

        def compacted_new_segment(m: Any) -> bool:
            return any(x.prefix == b"off" and x.compacted for x in m.segments)

        m = await _wait_runs(s, store, compacted_new_segment)
    finally:
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), 30.0
        )
    return {"segments": [bytes(x.prefix) for x in m.segments]}


async def _submit(s: Any, store_dir: Path, specs: list[Any]) -> None:
    """Submit compactions with the official ``Admin`` (no compactor runs here)."""
    admin = s.AdminBuilder(DB_PATH, _store(s, store_dir)).build()
    for kind, segment, l0, runs, dest in specs:
        sources = [s.SourceId.SST_VIEW(u) for u in l0] + [s.SourceId.SORTED_RUN(r) for r in runs]
        if kind == "drain":
            spec = s.CompactionSpec.DRAIN_SEGMENT(segment, sources)
        else:
            spec = s.CompactionSpec.TIERED(segment, sources, dest)
        await admin.submit_compaction(spec)


async def _dispatch(request: dict[str, Any]) -> Any:
    s = _slatedb()
    op = request["op"]
    if op == "generate":
        base = Path(request["base"])
        seg, hot = await asyncio.gather(
            _gen_segmented(s, base / "segmented"), _gen_hotkey(s, base / "hotkey")
        )
        return {"segmented": seg, "hotkey": hot}
    if op == "read":
        return await _read(
            s,
            Path(request["store_dir"]),
            request["keys"],
            request["extractor"],
            request["ranges"],
            request["prefixes"],
        )
    if op == "submit":
        return await _submit(s, Path(request["store_dir"]), request["specs"])
    if op == "continue":
        return await _continue(s, Path(request["store_dir"]), request["ops"])
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv))
