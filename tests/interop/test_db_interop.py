"""Whole-database interop: shale and the official ``slatedb`` 0.17.0 package read each other's
databases.

* **shale writes, official reads** (:func:`test_official_reads_shale_db`): puts, deletes,
  merges (``concat``), TTL rows (one a day long, one already expired via ``Ttl.at(1000)``),
  several ``flush(memtable=True)`` rounds (several L0 SSTs) and a WAL tail (durable writes after
  the last memtable flush, never in an L0), then ``close()``. The official ``DbReader`` must
  return, for every key and for the full scan, exactly what shale reads, with the same seq,
  create_ts and expire_ts.
* **official writes, shale reads and writes on top**
  (:func:`test_shale_reads_and_extends_official_db`): every ``official_dbs`` shape, on a copy
  (opening a writer fences: new manifests, a fence WAL). shale must read every key and the full
  scan as the official reader did; then shale writes more (an L0 round and a WAL tail), closes,
  and the official reader must see the old data and shale's writes.
* **sorted runs** (:func:`test_shale_reads_official_sorted_run`): the ``compacted`` shape holds a
  multi-SST sorted run written by the official compactor; shale's forward and reverse scans,
  bounded scans across SST boundaries and reverse seeks must agree with the official scan.

TTL comparison choice: the official 0.17.0 read path does **not** hide expired rows (expiry only
takes effect when a flush or compaction rewrites them; see docs/compatibility.md), while shale
hides them by default (``Settings.hide_expired``). Every comparison with the official package
therefore uses shale's ``include_expired=True`` reads, which are SlateDB's semantics. Separately,
:func:`_check_hidden_reads` checks shale's default reads against the same data: exactly the keys
whose resolved ``expire_ts`` is in the past change (they disappear, or a merge loses only its
expired operands), nothing else does.

Expired rows and reopening: opening a database replays its WAL into a memtable that is flushed to
L0 at once, and that flush rewrites expired rows, as SlateDB's does. Reads right after ``open``
race with it, so comparisons after a reopen allow an already-expired key either state
(:func:`_assert_same_modulo_expired`); every other key must match exactly.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from shale.batch import Ttl, WriteBatch
from shale.db import Db
from shale.settings import Settings

pytestmark = pytest.mark.interop

#: TTL of the "live" TTL rows: one day.
LONG_TTL_MS = 86_400_000
#: ``expire_ts`` of the "already expired" rows.
EXPIRED_AT_MS = 1000


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = dict(
        flush_interval=0.01,
        manifest_poll_interval=0.05,
        compactor_options=None,
        garbage_collector_options=None,
    )
    base.update(kw)
    return Settings(**base)


def _open(db_dir: Path, settings: Settings) -> Db:
    return Db.open(str(db_dir), settings)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


class Model:
    """What every key should read as (SlateDB semantics: expired rows still count).

    Only keys without TTL are modelled exactly; TTL keys are listed in :attr:`ttl_keys` and
    checked against the official reader instead (their flush-time tombstoning is engine logic).
    """

    def __init__(self, initial: dict[bytes, bytes | None] | None = None) -> None:
        self.values: dict[bytes, bytes | None] = dict(initial or {})
        self.ttl_keys: set[bytes] = set()

    def put(self, db: Db, key: bytes, value: bytes, ttl: Ttl | None = None) -> None:
        db.put(key, value, ttl=ttl)
        self.values[key] = value
        if ttl is not None:
            self.ttl_keys.add(key)

    def delete(self, db: Db, key: bytes) -> None:
        db.delete(key)
        self.values[key] = None

    def merge(self, db: Db, key: bytes, operand: bytes, ttl: Ttl | None = None) -> None:
        db.merge(key, operand, ttl=ttl)
        self.values[key] = (self.values.get(key) or b"") + operand
        if ttl is not None:
            self.ttl_keys.add(key)

    def write(self, db: Db, ops: list[tuple[str, bytes, bytes]]) -> None:
        wb = WriteBatch()
        for op, key, value in ops:
            if op == "put":
                wb.put(key, value)
                self.values[key] = value
            elif op == "merge":
                wb.merge(key, value)
                self.values[key] = (self.values.get(key) or b"") + value
            else:
                wb.delete(key)
                self.values[key] = None
        db.write(wb)

    def exact(self) -> dict[bytes, bytes | None]:
        return {k: v for k, v in self.values.items() if k not in self.ttl_keys}


def _shale_reads(
    db: Db, keys: list[bytes]
) -> tuple[
    dict[bytes, bytes | None], dict[bytes, tuple[int, int, int | None]], list[tuple[bytes, bytes]]
]:
    """Every key's value and metadata plus a full scan, all with SlateDB's TTL semantics."""
    values: dict[bytes, bytes | None] = {}
    meta: dict[bytes, tuple[int, int, int | None]] = {}
    for k in keys:
        kv = db.get_key_value(k, include_expired=True)
        assert db.get(k, include_expired=True) == (None if kv is None else kv.value), k
        values[k] = None if kv is None else kv.value
        if kv is not None:
            meta[k] = (kv.seq, kv.create_ts, kv.expire_ts)  # type: ignore[assignment]
    return values, meta, list(db.scan(include_expired=True))


def _check_hidden_reads(
    db: Db,
    values: dict[bytes, bytes | None],
    meta: dict[bytes, tuple[int, int, int | None]],
    scan: list[tuple[bytes, bytes]],
) -> None:
    """shale's default reads hide exactly the rows whose expire_ts has passed.

    A key whose resolved ``expire_ts`` (the minimum over its versions) is past reads as absent,
    except a merge result: shale then drops only the expired operands (as a compaction would),
    so the value changes but may stay present. Every other key reads exactly the same.
    """
    now = int(time.time() * 1000)
    dead = {k for k, (_, _, exp) in meta.items() if exp is not None and exp <= now}
    # keys whose expiry falls in the next minute could flip during the check: none are written
    assert not any(exp is not None and now < exp < now + 60_000 for _, _, exp in meta.values())
    hidden: dict[bytes, bytes | None] = {}
    for k, v in values.items():
        got = db.get(k)
        if k in dead:
            assert got is None or (_is_merge_key(k) and got != v), k
        else:
            assert got == v, k
        hidden[k] = got
    assert list(db.scan()) == [(k, hidden[k]) for k, _ in scan if hidden.get(k) is not None]


def _assert_same_modulo_expired(
    got: tuple[Any, Any, Any], want: tuple[Any, Any, Any]
) -> set[bytes]:
    """``got`` (values, metadata, scan) equals ``want`` except on keys already expired in ``want``.

    Why the exception: opening a database replays its WAL into a memtable that the L0 flusher
    writes out at once, and that flush rewrites expired rows (a value becomes a tombstone, a
    merge operand is dropped), as SlateDB's does. Whether a read right after ``open`` sees the
    rows before or after that flush is a race, so an expired key reads either as before, absent,
    or (a merge) without its expired operands. Every other key must match exactly.
    Returns the set of expired keys.
    """
    g_values, g_meta, g_scan = got
    w_values, w_meta, w_scan = want
    now = int(time.time() * 1000)
    expired = {k for k, (_, _, exp) in w_meta.items() if exp is not None and exp <= now}
    assert set(g_values) == set(w_values)
    for k, v in w_values.items():
        if k in expired:
            assert g_values[k] in (v, None) or _is_merge_key(k), k
        else:
            assert g_values[k] == v, k
            assert g_meta.get(k) == w_meta.get(k), k
    assert [kv for kv in g_scan if kv[0] not in expired] == [
        kv for kv in w_scan if kv[0] not in expired
    ]
    # (the scan ran a little later than the gets: the flush may have happened in between)
    for k, v in g_scan:
        if k in expired:
            assert v == w_values[k] or _is_merge_key(k), k
    return expired


def _is_merge_key(key: bytes) -> bool:
    """Merge keys of both workloads are named ``m:...`` or ``ttl:merge...``."""
    return key.startswith((b"m:", b"ttl:merge"))


# --------------------------------------------------------------------------------------------
# 1a: shale writes, the official package reads
# --------------------------------------------------------------------------------------------


def _shale_workload(db: Db, m: Model) -> dict[str, Any]:
    """Three L0 rounds then a WAL tail; returns what each phase left where."""
    live = Ttl.after(LONG_TTL_MS)
    dead = Ttl.at(EXPIRED_AT_MS)
    n = 1100  # > min_filter_keys: the first L0 carries a bloom filter

    # L0 #1: plain puts in batches, merges on a base and without one, TTL rows
    for start in range(0, n, 100):
        m.write(
            db,
            [
                ("put", b"k%05d" % i, b"v%d-" % i + b"x" * (i % 37))
                for i in range(start, start + 100)
            ],
        )
    m.put(db, b"m:base", b"base")
    m.merge(db, b"m:base", b"+1")
    m.merge(db, b"m:nobase", b"a")
    m.put(db, b"ttl:live-l0", b"lives", live)
    m.put(db, b"ttl:dead-l0", b"dies", dead)
    m.merge(db, b"ttl:merge-dead-op", b"dead-op", dead)
    m.put(db, b"to-delete", b"soon gone")
    db.flush(memtable=True)

    # L0 #2: overwrites, deletes, merges over an L0 base, binary keys, empty and big values
    for i in range(0, n, 7):
        m.put(db, b"k%05d" % i, b"over-%d" % i)
    for i in range(3, n, 11):
        m.delete(db, b"k%05d" % i)
    m.merge(db, b"m:base", b"+2")
    m.merge(db, b"m:nobase", b"b")
    m.delete(db, b"to-delete")
    m.put(db, b"m:deleted", b"gone")
    m.delete(db, b"m:deleted")
    m.merge(db, b"m:deleted", b"fresh")
    m.merge(db, b"ttl:merge-dead-op", b"+live")
    for key in (b"\x00", b"\x00\x00\x01", b"\xff", b"\xff\xff\xfe", b"a\x00b", b"\x00\xff"):
        m.put(db, key, b"bin:" + key)
    m.put(db, b"empty", b"")
    m.put(db, b"empty-l0", b"")
    m.put(db, b"big:1", bytes(range(256)) * 40)
    m.put(db, b"K" * 65_535, b"longest key")  # the largest key SlateDB accepts
    db.flush(memtable=True)

    # L0 #3: history on the same keys, a batch mixing every kind
    m.write(
        db,
        [
            ("put", b"batch:a", b"A"),
            ("merge", b"m:base", b"+3"),
            ("delete", b"k00001", b""),
            ("merge", b"m:batch-only", b"x"),
            ("merge", b"m:batch-only", b"y"),
        ],
    )
    m.put(db, b"ttl:live-l0", b"lives-again", live)
    for i in range(1, n, 13):
        m.put(db, b"k%05d" % i, b"third-%d" % i)
    m.put(db, b"empty", b"now-full")
    db.flush(memtable=True)
    l0_keys = set(m.values)

    # WAL tail: durable writes after the last memtable flush
    tail = [
        b"wal:1",
        b"k00000",
        b"k00002",
        b"m:base",
        b"m:wal-only",
        b"ttl:live-wal",
        b"ttl:dead-wal",
        b"big:1",
        b"wal:empty",
        b"wal:huge",
    ] + [b"wal:batch-%d" % i for i in range(20)]
    m.put(db, b"wal:1", b"only-in-wal")
    m.put(db, b"k00000", b"wal-overwrite")
    m.delete(db, b"k00002")
    m.merge(db, b"m:base", b"+wal")
    m.merge(db, b"m:wal-only", b"w1")
    m.merge(db, b"m:wal-only", b"w2")
    m.put(db, b"ttl:live-wal", b"wal-lives", live)
    m.put(db, b"ttl:dead-wal", b"wal-dies", dead)
    m.delete(db, b"big:1")
    m.write(db, [("put", b"wal:batch-%d" % i, b"b%d" % i) for i in range(20)])
    m.put(db, b"wal:empty", b"")
    # one WAL SST over several 64 KiB WAL blocks: a 70 KB row inside a 2000-row batch
    m.write(
        db,
        [("put", b"wal:many-%04d" % i, b"m%d" % i * 20) for i in range(2000)]
        + [("put", b"wal:huge", b"H" * 70_000)],
    )
    return {"l0_keys": l0_keys, "tail": tail}


SHALE_VARIANTS = {
    "default": {},
    "zstd-1k": {"compression_codec": "zstd", "block_size": 1024},
    "lz4": {"compression_codec": "lz4"},
    "snappy": {"compression_codec": "snappy"},
    "zlib": {"compression_codec": "zlib"},
    "manifest-v1": {"manifest_format_version": 1},
}


@pytest.mark.parametrize("variant", list(SHALE_VARIANTS))
def test_official_reads_shale_db(tmp_path: Path, official_reader: Any, variant: str) -> None:
    store_dir = tmp_path / "store"
    db_dir = store_dir / "db"
    settings = _settings(merge_operator="concat", **SHALE_VARIANTS[variant])
    m = Model()
    db = _open(db_dir, settings)
    try:
        phases = _shale_workload(db, m)
        keys = sorted(set(m.values) | {b"never-written", b"k99999"})
        values, meta, scan = _shale_reads(db, keys)
        manifest = db.manifest()
        assert len(manifest.l0) == 3, "three memtable flushes -> three L0 SSTs"
        _check_hidden_reads(db, values, meta, scan)
    finally:
        db.close()

    # shale's reads agree with the independent model (non-TTL keys)
    for k, v in m.exact().items():
        assert values[k] == v, k
    assert values[b"ttl:live-l0"] == b"lives-again"
    assert values[b"ttl:live-wal"] == b"wal-lives"
    # expired before the flush: the L0 flush turned the value into a tombstone
    assert values[b"ttl:dead-l0"] is None
    # expired but only in the WAL: still returned (SlateDB semantics), hidden by default
    assert values[b"ttl:dead-wal"] == b"wal-dies"
    assert meta[b"ttl:dead-wal"][2] == EXPIRED_AT_MS
    # the expired operand was dropped by the flush; the later live operand stays
    assert values[b"ttl:merge-dead-op"] == b"+live"

    if variant == "default":  # (two more oracle processes: once is enough)
        # the WAL tail really is only in the WAL (after replay_after_wal_id), per the official
        # package's own Admin and WAL reader
        summary = official_reader.manifest(store_dir)
        assert len(summary.l0) == 3
        assert summary.compacted == []
        wal_rows = official_reader.wal_rows(store_dir)
        tail_wal_keys = {
            r[0]
            for wid, rows in wal_rows.items()
            if wid > summary.replay_after_wal_id
            for r in rows
        }
        assert set(phases["tail"]) <= tail_wal_keys
        assert b"k00500" not in tail_wal_keys

    official = official_reader.read(store_dir, keys, merge_operator="concat")
    assert official.values == values
    assert official.scan == scan
    assert official.key_values == meta

    # shale reopening its own database (WAL replay) reads the same. Exception: an expired row
    # replayed from the WAL may already have been rewritten as a tombstone by the L0 flush of
    # the replayed memtable (as in SlateDB), so expired keys may read as absent instead.
    copy = tmp_path / "copy"
    shutil.copytree(store_dir, copy)
    db2 = _open(copy / "db", settings)
    try:
        values2, meta2, scan2 = _shale_reads(db2, keys)
    finally:
        db2.close()
    expired = _assert_same_modulo_expired((values2, meta2, scan2), (values, meta, scan))
    assert expired == {b"ttl:dead-wal"}


# --------------------------------------------------------------------------------------------
# 1b: the official package writes, shale reads and writes on top, the official package reads
# --------------------------------------------------------------------------------------------

OFFICIAL_SHAPES = (
    "mixed",
    "codec_snappy",
    "codec_zlib",
    "codec_lz4",
    "codec_zstd",
    "compacted",
    "block1k",
    "walbig",
)


def _official_settings(d: Any) -> Settings:
    kw: dict[str, Any] = {"block_size": d.block_size}
    if d.merge_operator:
        kw["merge_operator"] = d.merge_operator
    if d.codec:
        kw["compression_codec"] = d.codec
    return _settings(**kw)


def _copy_official(d: Any, dest: Path) -> Path:
    shutil.copytree(d.store_dir, dest)
    return dest


@pytest.mark.parametrize("shape", OFFICIAL_SHAPES)
def test_shale_reads_and_extends_official_db(
    tmp_path: Path, official_dbs: Any, official_reader: Any, shape: str
) -> None:
    d = official_dbs[shape]
    store_dir = _copy_official(d, tmp_path / "store")
    keys = sorted(d.expected)
    settings = _official_settings(d)
    db = _open(store_dir / d.db_path, settings)
    try:
        values, meta, scan = _shale_reads(db, keys)
        _assert_same_modulo_expired((values, meta, scan), (d.expected, d.key_values, d.scan))
        _check_hidden_reads(db, values, meta, scan)

        # shale writes on top: an L0 round, then a WAL tail
        m = Model(d.expected)
        with_ttl = {k for k, (_, _, exp) in d.key_values.items() if exp is not None}
        existing = [k for k in keys if d.expected[k] is not None and k not in with_ttl]
        for i, k in enumerate(existing[:40]):
            if i % 2:
                m.delete(db, k)
            else:
                m.put(db, k, b"shale-over:" + k)
        for i in range(200):
            m.put(db, b"shale:%04d" % i, b"sv%d" % i)
        if d.merge_operator:
            m.merge(db, b"shale:merge", b"s1")
            for k in existing[40:45]:
                m.merge(db, k, b"+shale")
        db.flush(memtable=True)
        for i in range(0, 200, 3):
            m.put(db, b"shale:%04d" % i, b"wal-%d" % i)
        for k in existing[45:50]:
            m.delete(db, k)
        m.put(db, b"shale:wal-only", b"tail")
        if d.merge_operator:
            m.merge(db, b"shale:merge", b"s2")
        new_keys = sorted(set(m.values))
        after_values, after_meta, after_scan = _shale_reads(db, new_keys)
    finally:
        db.close()

    # Every key reads as the model says, except rows already expired when shale opened: the L0
    # flush of the replayed WAL memtable rewrites them (an expired value becomes a tombstone,
    # an expired merge operand is dropped), exactly as SlateDB's flush does.
    now = int(time.time() * 1000)
    dead = {k for k, (_, _, exp) in d.key_values.items() if exp is not None and exp <= now}
    for k, v in m.values.items():
        if k in dead:
            assert after_values[k] in (v, None) or _is_merge_key(k), k
        else:
            assert after_values[k] == v, k
    official = official_reader.read(store_dir, new_keys, merge_operator=d.merge_operator)
    assert official.values == after_values
    assert official.scan == after_scan
    assert official.key_values == after_meta


# --------------------------------------------------------------------------------------------
# 1c: a sorted run written by the official compactor
# --------------------------------------------------------------------------------------------


def test_shale_reads_official_sorted_run(tmp_path: Path, official_dbs: Any) -> None:
    d = official_dbs["compacted"]
    assert d.manifest.compacted, "the fixture has a sorted run"
    store_dir = _copy_official(d, tmp_path / "store")
    db = _open(store_dir / d.db_path, _official_settings(d))
    try:
        runs = db.manifest().compacted
        assert runs
        ssts = max((r.ssts for r in runs), key=len)
        assert len(ssts) >= 2, "the run spans several SSTs (max_sst_size 32 KiB)"
        forward = list(db.scan(include_expired=True))
        assert forward == d.scan
        reverse = list(db.scan(reverse=True, include_expired=True))
        assert reverse == list(reversed(d.scan))

        # bounded scans straddling every SST boundary of the run, both directions
        live = dict(d.scan)
        ordered = [k for k, _ in d.scan]
        for view in ssts[1:]:
            boundary = view.sst.info.first_entry
            assert boundary is not None
            lo = boundary[:-1] + bytes([max(boundary[-1] - 3, 0)])
            hi = boundary + b"\x05"
            want = [(k, live[k]) for k in ordered if lo <= k < hi]
            assert list(db.scan(lo, hi, include_expired=True)) == want
            assert list(db.scan(lo, hi, reverse=True, include_expired=True)) == want[::-1]
            assert len(want) >= 2
            # point reads of the keys on both sides of the boundary
            for k, v in want:
                assert db.get(k, include_expired=True) == v

        # a reverse scan that seeks backwards across a boundary
        boundary = ssts[1].sst.info.first_entry
        it = db.scan(reverse=True, include_expired=True)
        first = next(it)
        assert first == d.scan[-1]
        it.seek(boundary)
        rest = list(it)
        assert rest == [(k, live[k]) for k in reversed(ordered) if k <= boundary]

        # scan_prefix over the whole run
        pref = list(db.scan_prefix(b"c", include_expired=True))
        assert pref == [(k, v) for k, v in d.scan if k.startswith(b"c")]
        assert list(db.scan_prefix(b"c", reverse=True, include_expired=True)) == pref[::-1]
    finally:
        db.close()
