"""Interop: shale's compactor on databases the official ``slatedb`` 0.17.0 package reads and writes.

* **official writes, shale compacts, official reads** (:func:`test_shale_compacts_official_db`):
  a copy of an ``official_dbs`` shape is compacted by a standalone shale
  :class:`~shale_compactor.Compactor` (``submit(FULL)`` + ``run_once``, small ``max_sst_size``
  so the output run has several SSTs, the shape's codec, block size and ``concat`` merge
  operator). The official package must then read what it read before: every key (``get`` and
  ``get_key_value``) and the full scan. Its ``Admin`` must decode shale's manifest (no L0 left,
  one multi-SST run) and shale's ``.compactions`` file (the job Completed).
* **shale writes, shale compacts, official reads** (:func:`test_shale_compacts_shale_db`):
  several L0 flushes of puts, overwrites, deletes, merges and TTL rows plus a WAL tail, written
  by :class:`shale.Db`; what shale read before the compaction, the official package reads after.
* **the official compactor continues** (:func:`test_official_compactor_continues_after_shale`):
  after shale's compaction, an official writer with its embedded compactor enabled opens the
  database (fencing shale's compactor epoch, reading shale's ``.compactions`` file), flushes
  several L0s until its own compactor commits a sorted run, and closes; then the official reader
  and shale read identical data, equal to the model (the state before plus the new writes).
* **the official compactor takes over an interrupted shale job**
  (:func:`test_official_compactor_takes_over_interrupted_shale_job`): a shale job stopped after
  three recorded outputs is left Running in the ``.compactions`` file; the official ``Admin``
  decodes it (hiding its outputs, as 0.17 does for Running jobs), and an official writer with
  its compactor on compacts the database without adopting shale's partial outputs; both
  engines then read the model.

Expiry: the official 0.17 read path does not hide expired rows, but a compaction legitimately
rewrites a value (or tombstone) whose ``expire_ts <= manifest.last_l0_clock_tick`` into a
tombstone and drops such a merge operand (FEATURES: retention; SlateDB does the same). So the
"before == after" equality is asserted exactly for every key *without* such a row in the
compacted SSTs; for the few keys with one (the ``mixed`` shape's ``ttl:short-last``, the
shale-written database's ``ttl:dead-*``), the official value after compaction must equal an
independent model: the source SST rows with that rewrite applied, plus the live WAL rows,
resolved newest first with SlateDB's (non-hiding) read rules. Shale-side reads use
``include_expired=True`` (SlateDB's semantics), as in ``test_db_interop.py``.

The official writer of the third test runs in a child process (this file doubles as the worker
script, see ``__main__``), like the fixtures in ``conftest.py``: a hang or native crash fails one
test cleanly and the native library never loads into pytest.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from shale.testing.script_worker import WorkerError, run_script, worker_main

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.interop

DB_PATH = "db"
#: TTL of the "live" TTL rows written by shale: one day.
LONG_TTL_MS = 86_400_000
#: ``expire_ts`` of the "already expired" rows.
EXPIRED_AT_MS = 1000
#: Output SSTs are cut at this size, so every compaction writes a multi-SST run.
MAX_SST_SIZE = 4 * 1024
#: Budget of one official writer child process.
OFFICIAL_WRITER_TIMEOUT_S = 120.0
#: How long the official embedded compactor may take to commit a run.
OFFICIAL_COMPACTION_WAIT_S = 60.0

# shale.row kinds
VALUE, TOMBSTONE, MERGE = 0, 1, 2

Row = tuple[bytes, int, int, bytes, "int | None", "int | None"]


# --------------------------------------------------------------------------------------------
# Helpers (pytest side)
# --------------------------------------------------------------------------------------------


def _compact_with_shale(
    db_dir: Path, *, merge_operator: str | None, codec: str | None = None, block_size: int = 4096
) -> Any:
    """A standalone shale compactor on ``db_dir``: ``submit(FULL)`` then ``run_once``.

    :returns: the single completed :class:`~shale_compactor.CompactionReport`.
    """
    from shale.settings import CompactorOptions, Settings
    from shale_compactor import FULL, Compactor

    settings = Settings(
        compactor_options=None,
        garbage_collector_options=None,
        merge_operator=merge_operator,
        compression_codec=codec,
        block_size=block_size,
    )
    options = CompactorOptions(poll_interval=0.05, max_sst_size=MAX_SST_SIZE)
    with Compactor.open(
        str(db_dir), settings, store_options={"fsync": False}, options=options
    ) as compactor:
        cid = compactor.submit(FULL)
        reports = compactor.run_once(timeout=120)
    mine = [r for r in reports if r.id == cid]
    assert len(mine) == 1, reports
    report = mine[0]
    assert report.status == "completed", report
    # only the submitted job ran (no scheduler proposal raced it)
    assert [r.id for r in reports] == [cid], reports
    return report


def _sst_rows(root: Path, sst_ids: list[str]) -> dict[bytes, list[Row]]:
    """Every row of the given ``compacted/<ULID>.sst`` files, grouped by key."""
    from shale.sst import SsTable

    out: dict[bytes, list[Row]] = {}
    for sst_id in sst_ids:
        table = SsTable.from_bytes((root / "compacted" / f"{sst_id}.sst").read_bytes())
        for row in table.rows():
            out.setdefault(row[0], []).append(tuple(row))  # type: ignore[arg-type]
    return out


class _Model:
    """What a full compaction of the current sources must leave readable (see module docstring).

    Built *before* the compaction from the latest manifest (official ``Admin``), the rows of its
    L0 and sorted-run SSTs and the live WAL rows (official ``SlateDbWalReader``).
    """

    def __init__(self, root: Path, manifest: Any, wal_rows: dict[int, list[Row]]) -> None:
        self.tick: int = manifest.last_l0_clock_tick
        ssts = list(manifest.l0) + [s for _, run in manifest.compacted for s in run]
        self.sst_rows = _sst_rows(root, ssts)
        self.wal_rows: dict[bytes, list[Row]] = {}
        for wal_id, rows in wal_rows.items():
            if wal_id > manifest.replay_after_wal_id:
                for r in rows:
                    if r[1] > manifest.last_l0_seq:
                        self.wal_rows.setdefault(r[0], []).append(r)
        #: keys with a row that the compaction rewrites (expired at the compaction's clock)
        self.affected = {
            k
            for k, rows in self.sst_rows.items()
            if any(r[4] is not None and r[4] <= self.tick for r in rows)
        }

    def value_after(self, key: bytes, merge_operator: str | None) -> bytes | None:
        """The value SlateDB's read rules give ``key`` once the compaction rewrote its rows."""
        from shale.merge_operators import ConcatMergeOperator, resolve_versions

        rows: list[Row] = []
        for r in self.sst_rows.get(key, []):
            expired = r[4] is not None and r[4] <= self.tick
            if not expired:
                rows.append(r)
            elif r[2] != MERGE:  # an expired value or tombstone: a tombstone (create_ts kept)
                rows.append((r[0], r[1], TOMBSTONE, b"", None, r[5]))
            # an expired merge operand is dropped
        rows += self.wal_rows.get(key, [])
        rows.sort(key=lambda r: -r[1])
        op = ConcatMergeOperator() if merge_operator == "concat" else None
        res = resolve_versions(rows, op, now_ms=None, hide_expired=False)
        return None if res is None else res[0]


def _assert_same_after_compaction(
    before_values: dict[bytes, bytes | None],
    before_kv: dict[bytes, tuple[int, int, int | None]],
    before_scan: list[tuple[bytes, bytes]],
    after: Any,
    model: _Model,
    merge_operator: str | None,
) -> None:
    """``after`` (an official read of the compacted database) against the read before."""
    unaffected = [k for k in before_values if k not in model.affected]
    assert len(unaffected) > 0.9 * len(before_values)
    diff = {
        k: (before_values[k], after.values[k])
        for k in unaffected
        if before_values[k] != after.values[k]
    }
    assert not diff, f"{len(diff)} keys changed by the compaction, e.g. {list(diff.items())[:5]}"
    diff_kv = {
        k: (before_kv.get(k), after.key_values.get(k))
        for k in unaffected
        if before_kv.get(k) != after.key_values.get(k)
    }
    assert not diff_kv, f"seq/create_ts/expire_ts changed: {list(diff_kv.items())[:5]}"
    expected = {k: v for k, v in before_scan if k not in model.affected}
    for k in model.affected:
        want = model.value_after(k, merge_operator)
        assert after.values[k] == want, (k, before_values.get(k), after.values[k], want)
        if want is not None:
            expected[k] = want
    assert after.scan == sorted(expected.items())


def _check_official_manifest_and_compactions(store_dir: Path, report: Any) -> Any:
    """The official ``Admin`` decodes shale's manifest and ``.compactions`` file."""
    m = _run_official({"op": "manifest", "store_dir": str(store_dir)})
    assert m["l0"] == [], m
    assert [r for r, _ in m["compacted"]] == [report.destination], m
    (ssts,) = [s for _, s in m["compacted"]]
    assert ssts == [str(s.id) for s in report.output_ssts]
    assert len(ssts) >= 2, "max_sst_size should split the run"
    assert len(set(ssts)) == len(ssts)
    assert m["last_compacted_l0_sst_view_id"] is not None
    c = m["compactions"]
    assert c is not None, "no .compactions file"
    statuses = {cid: status for cid, status, _ in c["recent"]}
    assert statuses.get(str(report.id)) == "COMPLETED", c
    assert c["compactor_epoch"] == m["compactor_epoch"]
    return m


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["mixed", "compacted", "codec_zstd", "block1k"])
def test_shale_compacts_official_db(
    shape: str, official_dbs: dict[str, Any], official_reader: Any, tmp_path: Path
) -> None:
    src = official_dbs[shape]
    store_dir = tmp_path / shape
    shutil.copytree(src.store_dir, store_dir)
    root = store_dir / src.db_path
    model = _Model(root, src.manifest, src.wal_rows)
    if shape == "mixed" or shape.startswith("codec_"):
        # the one TTL row the official flushes left as a value that has expired since (rows
        # already expired when flushed, like ttl:dead-l0, are tombstones in the L0s)
        assert model.affected == {b"ttl:short-last"}
    else:
        assert not model.affected

    report = _compact_with_shale(
        root, merge_operator=src.merge_operator, codec=src.codec, block_size=src.block_size
    )
    assert set(report.l0_view_ids) and len(report.l0_view_ids) == len(src.manifest.l0)
    assert report.destination == min([r for r, _ in src.manifest.compacted], default=0)
    _check_official_manifest_and_compactions(store_dir, report)

    after = official_reader.read(store_dir, list(src.expected), merge_operator=src.merge_operator)
    _assert_same_after_compaction(
        src.expected, src.key_values, src.scan, after, model, src.merge_operator
    )


def _write_shale_db(db_dir: Path) -> set[bytes]:
    """Several L0 flushes of puts, overwrites, deletes, merges, TTL rows, then a WAL tail."""
    from shale.batch import Ttl, WriteBatch
    from shale.db import Db
    from shale.settings import Settings

    settings = Settings(
        flush_interval=0.01,
        compactor_options=None,
        garbage_collector_options=None,
        merge_operator="concat",
    )
    keys: set[bytes] = set()
    with Db.open(str(db_dir), settings, store_options={"fsync": False}) as db:
        for r in range(5):
            wb = WriteBatch()
            for i in range(r * 300, r * 300 + 1200):
                wb.put(b"s%06d" % i, b"r%d-%d-" % (r, i) + b"x" * (i % 50))
                keys.add(b"s%06d" % i)
            db.write(wb)
            for i in range(r, 2000, 17):
                db.delete(b"s%06d" % i)
                keys.add(b"s%06d" % i)
            db.merge(b"m:counter", b"+%d" % r)
            db.merge(b"m:per-round-%d" % (r % 2), b"<%d>" % r)
            db.put(b"ttl:live-%d" % r, b"live", ttl=Ttl.after(LONG_TTL_MS))
            db.put(b"ttl:dead-%d" % r, b"dead", ttl=Ttl.at(EXPIRED_AT_MS))
            keys.update(
                {b"m:counter", b"m:per-round-%d" % (r % 2), b"ttl:live-%d" % r, b"ttl:dead-%d" % r}
            )
            if r == 2:
                db.put(b"m:reset", b"base")
                db.merge(b"m:reset", b"+a")
            if r == 3:
                db.delete(b"m:reset")
                db.merge(b"m:reset", b"fresh")
                keys.add(b"m:reset")
            # the last write before the flush: not yet expired at the flush's clock (the
            # memtable's last tick), so the L0 keeps it as a value; expired at the next flush
            db.put(b"ttl:short-%d" % r, b"short", ttl=Ttl.after(1))
            keys.add(b"ttl:short-%d" % r)
            db.flush(memtable=True)
            time.sleep(0.005)
        # the WAL tail: durable, never flushed to an L0
        db.put(b"s000000", b"wal-tail")
        db.merge(b"m:counter", b"+wal")
        db.delete(b"s000001")
        db.put(b"wal:only", b"w")
        keys.update({b"s000000", b"s000001", b"wal:only"})
        assert len(db.manifest().l0) == 5
    return keys


def _shale_read(
    db_dir: Path, keys: list[bytes], merge_operator: str | None
) -> tuple[
    dict[bytes, bytes | None], dict[bytes, tuple[int, int, int | None]], list[tuple[bytes, bytes]]
]:
    """shale's reads (``include_expired=True``) of a *copy* (opening a writer fences):
    values, ``key -> (seq, create_ts, expire_ts)`` of present keys, and the full scan."""
    from shale.db import Db
    from shale.settings import Settings

    copy = Path(tempfile.mkdtemp(prefix="shale-read-", dir=db_dir.parent))
    try:
        shutil.copytree(db_dir, copy / "db")
        settings = Settings(
            compactor_options=None, garbage_collector_options=None, merge_operator=merge_operator
        )
        with Db.open(str(copy / "db"), settings, store_options={"fsync": False}) as db:
            values: dict[bytes, bytes | None] = {}
            meta: dict[bytes, tuple[int, int, int | None]] = {}
            for k in keys:
                kv = db.get_key_value(k, include_expired=True)
                values[k] = None if kv is None else kv.value
                if kv is not None:
                    meta[k] = (kv.seq, kv.create_ts, kv.expire_ts)
            scan = list(db.scan(include_expired=True))
        return values, meta, scan
    finally:
        shutil.rmtree(copy)


def test_shale_compacts_shale_db(official_reader: Any, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    root = store_dir / DB_PATH
    keys = sorted(_write_shale_db(root))
    before = official_reader.read(store_dir, keys, merge_operator="concat")
    shale_values, shale_meta, shale_scan = _shale_read(root, keys, "concat")
    # the official package and shale agree before compaction (sanity of the baseline)
    assert before.values == shale_values
    assert before.key_values == shale_meta
    assert before.scan == shale_scan
    m = official_reader.manifest(store_dir)
    assert len(m.l0) == 5 and m.compacted == []
    model = _Model(root, m, official_reader.wal_rows(store_dir))
    # rows expired when flushed are tombstones in the L0s already; the short TTLs of the first
    # four flushes have expired by the last flush's clock, the compaction's
    assert model.affected == {b"ttl:short-%d" % r for r in range(4)}
    assert all(before.values[b"ttl:short-%d" % r] == b"short" for r in range(4))

    report = _compact_with_shale(root, merge_operator="concat")
    assert report.destination == 0 and len(report.l0_view_ids) == 5
    _check_official_manifest_and_compactions(store_dir, report)

    after = official_reader.read(store_dir, keys, merge_operator="concat")
    _assert_same_after_compaction(
        before.values, before.key_values, before.scan, after, model, "concat"
    )
    # the expired values became tombstones
    for r in range(5):
        assert after.values[b"ttl:dead-%d" % r] is None
        assert after.values[b"ttl:live-%d" % r] == b"live"
    assert [after.values[b"ttl:short-%d" % r] for r in range(5)] == [None] * 4 + [b"short"]


def _continuation_rounds(keys: list[bytes]) -> list[list[tuple[str, bytes, bytes]]]:
    """Five rounds of writes for the official writer: overwrites and deletes of existing keys,
    new keys, merges on an existing merge key."""
    existing = [k for k in keys if not k.startswith((b"ttl:", b"m:"))]
    merge_key = next((k for k in keys if k.startswith(b"m:") and k != b"m:deleted"), b"m:new")
    rounds = []
    for r in range(5):
        ops: list[tuple[str, bytes, bytes]] = []
        ops += [("put", k, b"official-%d" % r) for k in existing[r::7]]
        ops += [("delete", k, b"") for k in existing[r + 3 :: 29]]
        ops += [("put", b"o%06d" % i, b"o%d-%d" % (r, i)) for i in range(r * 200, r * 200 + 600)]
        ops += [("delete", b"o%06d" % (r * 200 + 5), b"")]
        ops += [("merge", merge_key, b"+o%d" % r), ("merge", b"m:official", b"<%d>" % r)]
        rounds.append(ops)
    return rounds


def _apply(values: dict[bytes, bytes | None], ops: list[tuple[str, bytes, bytes]]) -> None:
    for op, k, v in ops:
        if op == "put":
            values[k] = v
        elif op == "delete":
            values[k] = None
        else:
            values[k] = (values.get(k) or b"") + v


@pytest.mark.parametrize("shape", ["compacted", "mixed"])
def test_official_compactor_continues_after_shale(
    shape: str, official_dbs: dict[str, Any], official_reader: Any, tmp_path: Path
) -> None:
    src = official_dbs[shape]
    store_dir = tmp_path / shape
    shutil.copytree(src.store_dir, store_dir)
    root = store_dir / src.db_path
    report = _compact_with_shale(
        root, merge_operator=src.merge_operator, codec=src.codec, block_size=src.block_size
    )
    base = official_reader.read(store_dir, list(src.expected), merge_operator=src.merge_operator)
    shale_m = _check_official_manifest_and_compactions(store_dir, report)
    # WAL rows already expired: the official writer's open rewrites them (its replayed memtable
    # is flushed to L0), so the model leaves those keys to the cross-engine comparison
    now_ms = int(time.time() * 1000)
    wal_expired = {
        r[0] for rows in src.wal_rows.values() for r in rows if r[4] is not None and r[4] <= now_ms
    }

    rounds = _continuation_rounds(list(src.expected))
    result = _run_official(
        {
            "op": "continue",
            "store_dir": str(store_dir),
            "merge_operator": src.merge_operator,
            "codec": src.codec,
            "rounds": rounds,
            "tail": [("put", b"o-wal-tail", b"t")],
            "shale_runs": shale_m["compacted"],
        },
        timeout=OFFICIAL_WRITER_TIMEOUT_S,
    )
    logger.info("official continuation: %s", result)
    # the official compactor ran and committed: a run shale did not write
    assert result["runs_after"] != shale_m["compacted"], result
    shale_ssts = {s for _, ssts in shale_m["compacted"] for s in ssts}
    new_ssts = {s for _, ssts in result["runs_after"] for s in ssts} - shale_ssts
    assert new_ssts, result
    official_jobs = [c for c in result["compactions"]["recent"] if c[0] != str(report.id)]
    assert any(status == "COMPLETED" for _, status, _ in official_jobs), result
    assert result["compactions"]["compactor_epoch"] > shale_m["compactor_epoch"]

    expected = dict(base.values)
    for ops in rounds:
        _apply(expected, ops)
    _apply(expected, [("put", b"o-wal-tail", b"t")])
    keys = sorted(expected)
    official = official_reader.read(store_dir, keys, merge_operator=src.merge_operator)
    wrong = {
        k: (official.values[k], v)
        for k, v in expected.items()
        if k not in wal_expired and official.values[k] != v
    }
    assert not wrong, f"{len(wrong)} keys differ from the model, e.g. {list(wrong.items())[:5]}"
    # both engines read identical data
    shale_values, shale_meta, shale_scan = _shale_read(root, keys, src.merge_operator)
    diff = {
        k: (official.values[k], shale_values[k])
        for k in keys
        if official.values[k] != shale_values[k]
    }
    assert not diff, f"official vs shale: {list(diff.items())[:5]}"
    diff_meta = {
        k: (official.key_values.get(k), shale_meta.get(k))
        for k in keys
        if official.key_values.get(k) != shale_meta.get(k)
    }
    assert not diff_meta, f"official vs shale metadata: {list(diff_meta.items())[:5]}"
    assert official.scan == shale_scan


class _StopAfterOutputs:
    """Wraps a compaction executor: once ``n`` outputs are recorded, set the compactor's stop
    event, so the job is interrupted and left Running with those outputs (a stopped or killed
    compactor's state)."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner = inner
        self.n = n

    def execute(
        self, job: Any, *, on_output: Any, on_progress: Any = None, stop: Any = None
    ) -> Any:
        count = 0

        def output(sst: Any) -> None:
            nonlocal count
            on_output(sst)
            count += 1
            if count >= self.n and stop is not None:
                stop.set()

        return self.inner.execute(job, on_output=output, on_progress=on_progress, stop=stop)


def test_official_compactor_takes_over_interrupted_shale_job(
    official_reader: Any, tmp_path: Path
) -> None:
    """A shale job left Running with recorded outputs; the official compactor must cope."""
    from shale.batch import WriteBatch
    from shale.db import Db
    from shale.fbs.compactions import STATUS_RUNNING
    from shale.objstore.local import LocalStore
    from shale.settings import CompactorOptions, Settings
    from shale_compactor import FULL, Compactor
    from shale_compactor.state import read_view

    store_dir = tmp_path / "store"
    root = store_dir / DB_PATH
    settings = Settings(
        compactor_options=None, garbage_collector_options=None, merge_operator="concat"
    )
    with Db.open(str(root), settings, store_options={"fsync": False}) as db:
        for r in range(4):
            wb = WriteBatch()
            for i in range(r * 1500, r * 1500 + 4000):
                wb.put(b"c%06d" % i, b"r%d-%d-" % (r, i) + b"x" * (i % 64))
            for i in range(r, 6000, 23):
                wb.delete(b"c%06d" % i)
            wb.merge(b"m:counter", b"+%d" % r)
            db.write(wb)
            db.flush(memtable=True)
    keys = [b"c%06d" % i for i in range(8500)] + [b"m:counter"]
    before = official_reader.read(store_dir, keys, merge_operator="concat")

    options = CompactorOptions(poll_interval=0.05, max_sst_size=MAX_SST_SIZE)
    with Compactor.open(
        str(root), settings, store_options={"fsync": False}, options=options
    ) as compactor:
        compactor.executor = _StopAfterOutputs(compactor.executor, 3)
        cid = compactor.submit(FULL)
        assert compactor.run_once(timeout=60) == []  # interrupted: no report
    (job,) = read_view(LocalStore(root)).active_compactions()
    assert job.id == cid and job.status == STATUS_RUNNING and len(job.output_ssts) >= 3
    shale_outputs = {str(o.id) for o in job.output_ssts}
    state = _run_official({"op": "manifest", "store_dir": str(store_dir)})
    # 0.17 decodes the Running job and hides its outputs (FORMAT.md section 9)
    assert state["compactions"]["recent"] == [(str(cid), "RUNNING", 0)], state
    assert state["compacted"] == [] and len(state["l0"]) == 4

    rounds = _continuation_rounds(keys)
    result = _run_official(
        {
            "op": "continue",
            "store_dir": str(store_dir),
            "merge_operator": "concat",
            "codec": None,
            "rounds": rounds,
            "tail": [],
            "shale_runs": [],
        },
        timeout=OFFICIAL_WRITER_TIMEOUT_S,
    )
    logger.info("official takeover: %s", result)
    # the official compactor took the database over: shale's job is no longer active, and its
    # recorded outputs were not adopted (0.17 ignores the outputs of a Running job)
    recent = {c[0]: c[1] for c in result["compactions"]["recent"]}
    assert recent.get(str(cid)) in (None, "COMPLETED", "FAILED"), result
    referenced = {s for _, ssts in result["runs_after"] for s in ssts} | set(result["l0_after"])
    assert result["runs_after"], result
    assert not shale_outputs & referenced, "0.17 adopted outputs of a Running job"

    expected = dict(before.values)
    for ops in rounds:
        _apply(expected, ops)
    keys = sorted(expected)
    official = official_reader.read(store_dir, keys, merge_operator="concat")
    wrong = {k: (official.values[k], v) for k, v in expected.items() if official.values[k] != v}
    assert not wrong, f"{len(wrong)} keys differ from the model, e.g. {list(wrong.items())[:5]}"
    shale_values, shale_meta, shale_scan = _shale_read(root, keys, "concat")
    assert shale_values == official.values
    assert shale_meta == official.key_values
    assert shale_scan == official.scan


# --------------------------------------------------------------------------------------------
# The official writer/admin worker (child process)
# --------------------------------------------------------------------------------------------


def _run_official(request: dict[str, Any], timeout: float = 60.0) -> Any:
    """Run ``request`` with the official package in a child process (this file as a script);
    the child gives up after ``timeout`` seconds, and is killed 15 s later."""
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


def _concat(s: Any) -> Any:
    class Concat(s.MergeOperator):  # type: ignore[misc,name-defined]
        def merge(self, key: bytes, existing_value: bytes | None, operand: bytes) -> bytes:
            return (existing_value or b"") + operand

    return Concat()


async def _admin_state(s: Any, store: Any) -> dict[str, Any]:
    admin = s.AdminBuilder(DB_PATH, store).build()
    manifests = await admin.list_manifests(None, None)
    m = max(manifests, key=lambda v: v.id)
    c = await admin.read_compactions(None)
    return {
        "id": int(m.id),
        "compactor_epoch": int(m.compactor_epoch),
        "l0": [v.sst.id.value for v in m.l0],
        "compacted": [(int(r.id), [v.sst.id.value for v in r.sst_views]) for r in m.compacted],
        "last_compacted_l0_sst_view_id": m.last_compacted_l0_sst_view_id,
        "compactions": None
        if c is None
        else {
            "id": int(c.id),
            "compactor_epoch": int(c.compactor_epoch),
            "recent": [(x.id, x.status.name, len(x.output_ssts)) for x in c.recent_compactions],
        },
    }


async def _continue_with_official(request: dict[str, Any]) -> dict[str, Any]:
    """Open an official writer with its compactor on, write the rounds (one L0 each), wait
    until the official compactor has committed a sorted run shale did not write, close."""
    s = _slatedb()
    store = _store(s, Path(request["store_dir"]))
    settings = s.Settings.default()
    settings.set("garbage_collector_options", "null")
    for key, value in {
        "compactor_options.poll_interval": '"50ms"',
        "compactor_options.commit_compacted_interval": '"50ms"',
        "compactor_options.worker.compactions_poll_interval": '"50ms"',
        "compactor_options.worker.max_sst_size": "32768",
        "compactor_options.worker.max_subcompactions": "1",
        "manifest_poll_interval": '"100ms"',
    }.items():
        settings.set(key, value)
    if request["codec"] is not None:
        settings.set("compression_codec", f'"{request["codec"].capitalize()}"')
    builder = s.DbBuilder(DB_PATH, store)
    builder.with_settings(settings)
    if request["merge_operator"] == "concat":
        builder.with_merge_operator(_concat(s))
    db = await asyncio.wait_for(builder.build(), 30.0)
    shale_runs = [(r, list(x)) for r, x in request["shale_runs"]]
    try:
        for ops in request["rounds"]:
            wb = s.WriteBatch()
            for op, key, value in ops:
                if op == "put":
                    wb.put(key, value)
                elif op == "merge":
                    wb.merge(key, value)
                else:
                    wb.delete(key)
            await db.write(wb)
            await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.MEM_TABLE))
        deadline = time.monotonic() + OFFICIAL_COMPACTION_WAIT_S
        while True:
            state = await _admin_state(s, store)
            if state["compacted"] != shale_runs and len(state["l0"]) < len(request["rounds"]):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the official compactor committed nothing: {state}")
            await asyncio.sleep(0.05)
        for op, key, value in request["tail"]:
            assert op == "put"
            await db.put(key, value)
        await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.WAL))
    finally:
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), 30.0
        )
    final = await _admin_state(s, store)
    return {
        "runs_after": final["compacted"],
        "l0_after": final["l0"],
        "compactions": final["compactions"],
        "manifest_id": final["id"],
    }


async def _dispatch(request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "manifest":
        s = _slatedb()
        return await _admin_state(s, _store(s, Path(request["store_dir"])))
    if op == "continue":
        return await _continue_with_official(request)
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv))


def test_official_reads_a_trivially_moved_run(official_reader: Any, tmp_path: Path) -> None:
    """shale's trivial move (``enable_trivial_move``) makes a run of the L0 SSTs themselves;
    the official package reads every key, seq and scan as before, and its ``Admin`` lists the
    run with exactly those SSTs (none written)."""
    from shale import Db, Settings
    from shale.batch import WriteBatch
    from shale.settings import CompactorOptions
    from shale_compactor import FULL, Compactor

    store_dir = tmp_path / "store"
    root = store_dir / DB_PATH
    settings = Settings(compactor_options=None, garbage_collector_options=None)
    keys: list[bytes] = []
    with Db.open(str(root), settings, store_options={"fsync": False}) as db:
        for lo in (400, 0, 200):  # disjoint key ranges, flushed out of key order
            batch = WriteBatch()
            for i in range(lo, lo + 200):
                k = b"k%05d" % i
                if i % 11:
                    batch.put(k, b"v%d" % i)
                else:
                    batch.delete(k)
                keys.append(k)
            db.write(batch)
            db.flush(memtable=True)
        l0_ssts = [str(v.sst.id) for v in db.manifest().l0]
    before = official_reader.read(store_dir, keys)
    options = CompactorOptions(poll_interval=0.05, enable_trivial_move=True)
    with Compactor.open(
        str(root), settings, store_options={"fsync": False}, options=options
    ) as compactor:
        compactor.submit(FULL)
        (report,) = compactor.run_once(timeout=60)
    assert report.status == "completed"
    m = _run_official({"op": "manifest", "store_dir": str(store_dir)})
    assert m["l0"] == []
    ((dest, ssts),) = m["compacted"]
    assert dest == report.destination
    assert ssts == [l0_ssts[1], l0_ssts[0], l0_ssts[2]]  # key order; L0 was newest first
    after = official_reader.read(store_dir, keys)
    assert after.values == before.values
    assert after.key_values == before.key_values
    assert after.scan == before.scan
