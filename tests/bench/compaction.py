"""Compaction benchmark: shale's compactor beside the official ``slatedb`` 0.17.0 package.

Two measurements, each engine in its own child processes (this file doubles as the worker
script, see ``--worker``), on a local-directory object store in a fresh temporary directory:

1. **Merge throughput.** A database of ``mb`` MB of ``value_size``-byte values (unique keys,
   ``l0_count`` L0 SSTs, each spanning the whole key range, so every output row is a real
   ``l0_count``-way merge; no compression) is written by the engine itself with its compactor
   off and closed. Then one full compaction of it into a single sorted run is timed:

   * shale: a standalone :class:`shale_compactor.Compactor` (``Compactor.open`` +
     ``submit(FULL)`` + ``run_once``), default :class:`~shale.settings.CompactorOptions`
     (256 MiB output SSTs, 4 fetch tasks). The clock runs from just before ``Compactor.open``
     (which fences and loads the state) to ``run_once`` returning (the run is committed).
   * official: the embedded compactor of an official ``Db`` opened on the same kind of database
     with ``compactor_options.poll_interval = 50ms`` (other compactor options default; it may
     split the job into parallel subcompactions, which the official package does by default).
     The clock runs from just before ``DbBuilder.build()`` (the L0 SSTs exist) to the first
     manifest, polled through ``Admin.read_manifest`` every 20 ms, that lists a sorted run and
     no L0 SST. So it includes opening the writer, up to one 50 ms compactor poll and up to
     20 ms of polling granularity; both sides therefore time "closed L0s to committed run".

   MB/s is the summed size of the source L0 SST files divided by that time; each compaction
   runs in a fresh process, whose peak RSS is reported. shale's compaction fsyncs its output
   before committing it, the official package's local store never fsyncs; the row "shale
   without fsync" repeats shale's compaction on a store opened with ``fsync=False``, the
   like-for-like figure (the fsync of 210 MB depends on the disk more than on either engine).

2. **Writer throughput during a compaction.** On a fresh copy of the same database, one thread
   does non-durable puts (``value_size_put``-byte values, fresh pseudo-random keys) while the
   database's *in-process* compactor (``Settings.compactor_options`` on; official: its embedded
   compactor) compacts the ``l0_count`` L0s -- the window runs from the moment the job is seen
   running to its commit (or ``put_cap`` seconds). Then, on another copy with the compactor
   off, the same loop runs for the same duration. The table shows both rates and their ratio
   (target: shale keeps >= 80 %). shale's compaction thread shares the writer's GIL; the
   official compactor runs on native threads.

3. **Scheduling latency.** A fresh database with its in-process compactor at the *default*
   options (``poll_interval`` 5 s on both engines) gets ``min_compaction_sources`` (4) small L0
   SSTs, one memtable flush each; the time from the flush that makes a compaction due
   returning to the ``.compactions`` file listing a compaction (each engine's ``Admin``, polled
   every 5 ms) is the latency, median of ``schedule_reps`` databases per engine. shale's
   embedded compactor is woken by the flush (the ``shale_l0_flushed`` hook); a compactor that
   polls waits up to ``poll_interval`` (2.5 s on average).

``--rounds N`` repeats the measurements N times, the engines alternating within each round, and
prints medians plus the spreads.

Run ``python tests/bench/compaction.py`` (200 MB, a few minutes on 2 cores), ``--quick``
(10 MB), ``--mb N``, ``--engines shale``, ``--json out.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import engine

ENGINES = ("shale", "official")
RESULT_PREFIX = "BENCH-RESULT "
#: Both engines: L0 backpressure off (the default, 8, is exactly the prepared L0 count, so a
#: writer without a compactor would stall its memtable flushes and its close).
L0_MAX_SSTS = 64


@dataclasses.dataclass(frozen=True)
class Params:
    """Sizes of the benchmark."""

    mb: float = 200.0
    value_size: int = 1000
    l0_count: int = 8
    value_size_put: int = 100
    #: longest put window (seconds) when the compaction takes longer
    put_cap: float = 20.0
    #: databases per engine in the scheduling-latency measurement
    schedule_reps: int = 5
    #: L0 SSTs that make a compaction due (both engines' default min_compaction_sources)
    schedule_l0: int = 4

    @property
    def rows(self) -> int:
        return int(self.mb * 1e6 / self.value_size)


FULL = Params()
QUICK = dataclasses.replace(FULL, mb=10.0, schedule_reps=3)


def _l0_bytes(db_dir: str) -> tuple[int, int]:
    """(number, summed size) of the SSTs under ``db_dir/compacted``."""
    sizes = [p.stat().st_size for p in Path(db_dir, "compacted").glob("*.sst")]
    return len(sizes), sum(sizes)


def _round_rows(p: Params, r: int) -> range:
    """Row indexes of L0 number ``r``: every ``l0_count``-th key, so each L0 spans all keys."""
    return range(r, p.rows, p.l0_count)


def _put_key(i: int) -> bytes:
    """Fresh keys for the put loops, scattered over the key space (not in insertion order)."""
    return b"put%010d" % ((i * 2654435761) % 4294967311)


# ---------------------------------------------------------------------------------------------
# shale workers
# ---------------------------------------------------------------------------------------------


def _shale_settings(compactor: bool) -> Any:
    from shale.settings import CompactorOptions, Settings

    return Settings(
        compactor_options=CompactorOptions(poll_interval=0.05) if compactor else None,
        garbage_collector_options=None,
        l0_max_ssts=L0_MAX_SSTS,
    )


def shale_prepare(p: Params, db_dir: str) -> dict[str, float]:
    """``l0_count`` L0 SSTs of ``mb / l0_count`` MB each, compactor off."""
    from shale.batch import WriteBatch
    from shale.db import Db

    pool = engine._ValuePool(p.value_size)
    with Db.open(db_dir, _shale_settings(False), store_options={"fsync": False}) as db:
        for r in range(p.l0_count):
            wb = WriteBatch()
            rows = _round_rows(p, r)
            for n, i in enumerate(rows, 1):
                wb.put(engine._key(i), pool.get(i))
                if n % 1000 == 0 or n == len(rows):
                    db.write(wb, durable=False)
                    wb = WriteBatch()
            db.flush(memtable=True)
        assert len(db.manifest().l0) == p.l0_count
    count, size = _l0_bytes(db_dir)
    return {"l0_ssts": count, "l0_bytes": size}


def _shale_full_compaction(db_dir: str, **open_kw: Any) -> tuple[int, float, Any]:
    """(source bytes, seconds from open to commit, report) of one full compaction by a
    standalone compactor."""
    from shale_compactor import FULL, Compactor

    _, size = _l0_bytes(db_dir)
    t0 = time.perf_counter()
    with Compactor.open(db_dir, _shale_settings(False), **open_kw) as compactor:
        compactor.submit(FULL)
        (report,) = compactor.run_once()
    dt = time.perf_counter() - t0
    assert report.status == "completed", report
    return size, dt, report


def shale_compact(p: Params, db_dir: str) -> dict[str, float]:
    """One full compaction by a standalone compactor, timed open-to-commit."""
    size, dt, report = _shale_full_compaction(db_dir)
    return {
        "compact_mbps": size / 1e6 / dt,
        "compact_s": dt,
        "compact_rss": engine._peak_rss_mib(),
        "compact_outputs": len(report.output_ssts),
        "compact_job_s": report.duration_s,
    }


def shale_compact_nofsync(p: Params, db_dir: str) -> dict[str, float]:
    """:func:`shale_compact` on a local store opened with ``fsync=False`` -- like the official
    package's local store, which never fsyncs -- so the disk's fsync speed is out of it."""
    size, dt, _ = _shale_full_compaction(db_dir, store_options={"fsync": False})
    return {"compact_nofsync_mbps": size / 1e6 / dt}


def _shale_put_loop(db: Any, p: Params, until: Callable[[], bool], cap: float) -> tuple[int, float]:
    """Non-durable puts until ``until()`` (checked every 256 puts) or ``cap`` seconds."""
    pool = engine._ValuePool(p.value_size_put)
    put = db.put
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + cap
    while True:
        for i in range(n, n + 256):
            put(_put_key(i), pool.get(i), durable=False)
        n += 256
        now = time.perf_counter()
        if now >= deadline or until():
            return n, now - t0


def shale_put_during(p: Params, db_dir: str) -> dict[str, float]:
    """Puts while the embedded compactor compacts the L0s; the window is the job's life."""
    import shale
    import shale.plugins
    from shale.db import Db
    from shale_compactor.plugin import embedded_compactor

    done = threading.Event()

    class OnCompaction:
        @shale.hookimpl
        def shale_compaction_finished(self, report: Any) -> None:
            done.set()

    host = shale.plugins.get_host()
    host.register(OnCompaction(), name="bench-on-compaction")
    try:
        with Db.open(db_dir, _shale_settings(True)) as db:
            compactor = embedded_compactor(db)
            assert compactor is not None
            deadline = time.monotonic() + 30
            while not compactor.status() and not done.is_set():
                assert time.monotonic() < deadline, "the embedded compactor never started"
                time.sleep(0.002)
            n, window = _shale_put_loop(db, p, done.is_set, p.put_cap)
            finished_in_window = done.is_set()
            assert done.wait(600), "the compaction did not finish"
            m = db.refresh_manifest()
    finally:
        host.unregister(name="bench-on-compaction")
    assert m.compacted, "no sorted run after the compaction"
    return {
        "put_during": n / window,
        "put_window_s": window,
        "put_window_complete": float(finished_in_window),
    }


def shale_put_alone(p: Params, db_dir: str) -> dict[str, float]:
    """The same put loop for ``p.put_cap`` seconds (the other step's window), compactor off."""
    from shale.db import Db

    with Db.open(db_dir, _shale_settings(False)) as db:
        n, window = _shale_put_loop(db, p, lambda: False, p.put_cap)
    return {"put_alone": n / window}


def shale_schedule(p: Params, db_dir: str) -> dict[str, float]:
    """Seconds from the flush that makes a compaction due to the ``.compactions`` file listing
    one (default compactor options: a 5 s poll), median of ``p.schedule_reps`` databases."""
    from shale.admin import Admin
    from shale.db import Db
    from shale.settings import Settings

    latencies = []
    for rep in range(p.schedule_reps):
        path = os.path.join(db_dir, f"rep{rep}")
        settings = Settings(garbage_collector_options=None)  # compactor on, default options
        admin = Admin(path)
        with Db.open(path, settings) as db:
            for r in range(p.schedule_l0):
                for i in range(100):
                    db.put(engine._key(i), b"v%d" % r, durable=False)
                db.flush(memtable=True)
            t0 = time.perf_counter()
            while True:
                c = admin.read_compactions()
                if c is not None and c.compactions.recent_compactions:
                    break
                assert time.perf_counter() - t0 < 60, "no compaction scheduled"
                time.sleep(0.005)
            latencies.append(time.perf_counter() - t0)
        admin.close()
    latencies.sort()
    return {"schedule_s": latencies[len(latencies) // 2], "schedule_max_s": latencies[-1]}


# ---------------------------------------------------------------------------------------------
# official workers
# ---------------------------------------------------------------------------------------------


async def _official_open(db_dir: str, compactor: bool) -> tuple[Any, Any]:
    """An official writer on ``db_dir`` (and its object store), compactor on or off."""
    s = engine._slatedb()
    store = s.ObjectStore.resolve("file:///")
    settings = s.Settings.default()
    settings.set("garbage_collector_options", "null")
    settings.set("l0_max_ssts", str(L0_MAX_SSTS))
    settings.set("l0_max_ssts_per_key", str(L0_MAX_SSTS))  # 0.17: every L0 spans every key
    if compactor:
        # every polling interval of the 0.17 compactor (coordinator and worker) at 50 ms
        for key in (
            "poll_interval",
            "commit_compacted_interval",
            "worker.compactions_poll_interval",
        ):
            settings.set(f"compactor_options.{key}", '"50ms"')
    else:
        settings.set("compactor_options", "null")
    builder = s.DbBuilder(os.path.abspath(db_dir).lstrip("/"), store)
    builder.with_settings(settings)
    return await builder.build(), store


def _official_admin(db_dir: str, store: Any) -> Any:
    s = engine._slatedb()
    return s.AdminBuilder(os.path.abspath(db_dir).lstrip("/"), store).build()


async def official_prepare(p: Params, db_dir: str) -> dict[str, float]:
    s = engine._slatedb()
    db, _ = await _official_open(db_dir, compactor=False)
    try:
        pool = engine._ValuePool(p.value_size)
        for r in range(p.l0_count):
            wb = s.WriteBatch()
            rows = _round_rows(p, r)
            for n, i in enumerate(rows, 1):
                wb.put(engine._key(i), pool.get(i))
                if n % 1000 == 0 or n == len(rows):
                    await db.write(wb)
                    wb = s.WriteBatch()
            await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.MEM_TABLE))
    finally:
        await engine._official_close(db)
    count, size = _l0_bytes(db_dir)
    return {"l0_ssts": count, "l0_bytes": size}


async def _wait_for_run(admin: Any, timeout: float) -> Any:
    deadline = time.perf_counter() + timeout
    while True:
        m = await admin.read_manifest(None)
        if m is not None and m.compacted and not m.l0:
            return m
        if time.perf_counter() > deadline:
            raise TimeoutError("the official compactor committed no run")
        await asyncio.sleep(0.02)


async def official_compact(p: Params, db_dir: str) -> dict[str, float]:
    engine._slatedb()  # load the native library before the clock starts
    _, size = _l0_bytes(db_dir)
    t0 = time.perf_counter()
    db, store = await _official_open(db_dir, compactor=True)
    try:
        m = await _wait_for_run(_official_admin(db_dir, store), 600)
        dt = time.perf_counter() - t0
    finally:
        await engine._official_close(db)
    return {
        "compact_mbps": size / 1e6 / dt,
        "compact_s": dt,
        "compact_rss": engine._peak_rss_mib(),
        "compact_outputs": sum(len(r.sst_views) for r in m.compacted),
        "compact_runs": len(m.compacted),
    }


async def _official_put_loop(
    db: Any, p: Params, until: Callable[[], bool], cap: float
) -> tuple[int, float]:
    pool = engine._ValuePool(p.value_size_put)
    put = db.put
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + cap
    while True:
        for i in range(n, n + 256):
            await put(_put_key(i), pool.get(i))
        n += 256
        now = time.perf_counter()
        if now >= deadline or until():
            return n, now - t0


async def official_put_during(p: Params, db_dir: str) -> dict[str, float]:
    db, store = await _official_open(db_dir, compactor=True)
    admin = _official_admin(db_dir, store)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until a compaction is running
            c = await admin.read_compactions(None)
            if c is not None and any(x.active for x in c.recent_compactions):
                break
            assert time.monotonic() < deadline, "the official compactor never started"
            await asyncio.sleep(0.005)
        done = asyncio.Event()

        async def watch() -> None:
            await _wait_for_run(admin, 600)
            done.set()

        watcher = asyncio.ensure_future(watch())
        n, window = await _official_put_loop(db, p, done.is_set, p.put_cap)
        finished_in_window = done.is_set()
        await watcher
    finally:
        await engine._official_close(db)
    return {
        "put_during": n / window,
        "put_window_s": window,
        "put_window_complete": float(finished_in_window),
    }


async def official_put_alone(p: Params, db_dir: str) -> dict[str, float]:
    db, _ = await _official_open(db_dir, compactor=False)
    try:
        n, window = await _official_put_loop(db, p, lambda: False, p.put_cap)
    finally:
        await engine._official_close(db)
    return {"put_alone": n / window}


async def official_schedule(p: Params, db_dir: str) -> dict[str, float]:
    """As :func:`shale_schedule`, for the official package (its default compactor options)."""
    s = engine._slatedb()
    latencies = []
    for rep in range(p.schedule_reps):
        path = os.path.join(db_dir, f"rep{rep}")
        store = s.ObjectStore.resolve("file:///")
        settings = s.Settings.default()
        settings.set("garbage_collector_options", "null")
        builder = s.DbBuilder(os.path.abspath(path).lstrip("/"), store)
        builder.with_settings(settings)
        db = await builder.build()
        admin = _official_admin(path, store)
        try:
            for r in range(p.schedule_l0):
                for i in range(100):
                    await db.put(engine._key(i), b"v%d" % r)
                await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.MEM_TABLE))
            t0 = time.perf_counter()
            while True:
                c = await admin.read_compactions(None)
                if c is not None and c.recent_compactions:
                    break
                assert time.perf_counter() - t0 < 60, "no compaction scheduled"
                await asyncio.sleep(0.005)
            latencies.append(time.perf_counter() - t0)
        finally:
            await engine._official_close(db)
    latencies.sort()
    return {"schedule_s": latencies[len(latencies) // 2], "schedule_max_s": latencies[-1]}


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------


def _rows(p: Params) -> list[engine.Row]:
    Row = engine.Row
    return [
        Row(
            "compact_mbps",
            f"full compaction, {p.mb:g} MB, {p.l0_count} L0s, {p.value_size} B values",
            "MB/s",
        ),
        Row(
            "compact_nofsync_mbps",
            "  the same, shale without fsync (as the official)",
            "MB/s",
        ),
        Row("compact_s", "full compaction wall time (open to commit)", "s", higher_better=False),
        Row("compact_rss", "full compaction peak RSS", "MiB", higher_better=False),
        Row("put_alone", "put, not waiting (compactor off)", "ops/s"),
        Row("put_during", "put, not waiting, during the compaction", "ops/s"),
        Row("put_kept_pct", "put throughput kept during compaction", "%", target=80),
        Row(
            "schedule_s",
            "compaction scheduled after the L0 flush making it due",
            "s",
            higher_better=False,
            target=1,
        ),
        Row(
            "schedule_max_s", f"  the same, slowest of {p.schedule_reps}", "s", higher_better=False
        ),
    ]


def format_table(results: dict[str, dict[str, float]], p: Params) -> str:
    """The table: engine.py's layout, plus the put-kept percentage."""
    for res in results.values():
        if "put_during" in res and res.get("put_alone") and "put_kept_pct" not in res:
            res["put_kept_pct"] = 100.0 * res["put_during"] / res["put_alone"]
    lines = []
    head = (
        f"{'workload':<52}{'unit':>6}{'shale':>13}{'official':>13}{'shale/off':>11}"
        f"{'target':>12}{'met':>5}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    shale, official = results.get("shale", {}), results.get("official", {})
    for row in _rows(p):
        s = shale.get(row.metric)
        # the official package's local store never fsyncs: its one compaction is the peer
        o = official.get("compact_mbps" if row.metric == "compact_nofsync_mbps" else row.metric)
        if s is None and o is None:
            continue
        ratio = f"{s / o:.2f}x" if s is not None and o else "-"
        unit = "MB/s" if row.unit == "%" else row.unit  # engine._fmt: one decimal
        lines.append(
            f"{row.label:<52}{row.unit:>6}{engine._fmt(s, unit):>13}"
            f"{engine._fmt(o, unit):>13}{ratio:>11}{engine._target_text(row):>12}"
            f"{engine._met(row, s, o):>5}"
        )
    for name, res in results.items():
        if "compact_s" in res:
            extra = f", {res['compact_runs']:.0f} run(s)" if "compact_runs" in res else ""
            lines.append(
                f"{name}: compaction wrote {res['compact_outputs']:.0f} SST(s){extra} "
                f"from {res['l0_ssts']:.0f} L0 SSTs of {res['l0_bytes'] / 1e6:.1f} MB; "
                f"put window {res.get('put_window_s', 0):.2f}s"
                f"{'' if res.get('put_window_complete', 1) else ' (capped)'}"
            )
    lines.append(
        "Ratios are shale/official: above 1 is better for shale on MB/s and ops/s, "
        "below 1 on s and MiB."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------


def _worker_main(engine_name: str, step: str, params_json: str, db_dir: str) -> int:
    p = Params(**json.loads(params_json))
    fn = globals()[f"{engine_name}_{step}"]
    try:
        value = asyncio.run(fn(p, db_dir)) if engine_name == "official" else fn(p, db_dir)
        result = {"ok": True, "value": value}
    except BaseException:  # report everything; the parent prints it and carries on
        result = {"ok": False, "error": traceback.format_exc()}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _run_step(
    engine_name: str, step: str, p: Params, db_dir: str, timeout: float
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        engine_name,
        step,
        json.dumps(dataclasses.asdict(p)),
        db_dir,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"{step} timed out after {timeout:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    return {
        "ok": False,
        "error": f"{step}: worker died rc={proc.returncode}\n{proc.stderr[-3000:]}",
    }


def run_interleaved(
    engines: Sequence[str], p: Params, rounds: int, timeout: float, log: Callable[[str], None]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]], list[str]]:
    """Prepare one database per engine, then ``rounds`` rounds of compact / put_during /
    put_alone / schedule, the engines alternating within each round (each step on a fresh copy
    of its engine's database, in its own process). Returns the medians, every sample, errors."""
    samples: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as root:
        bases: dict[str, str] = {}

        def step(engine_name: str, name: str, db_dir: str, params: Params = p) -> bool:
            # Start every step with nothing dirty in the page cache: the copy of the prepared
            # database (and the other engine's unsynced writes) would otherwise be written back
            # during the step, behind the fsyncs of whichever engine makes them.
            os.sync()
            t0 = time.perf_counter()
            res = _run_step(engine_name, name, params, db_dir, timeout)
            log(
                f"  {name:<12} {engine_name:<9} {time.perf_counter() - t0:6.1f}s"
                f"{'' if res['ok'] else '  FAILED'}"
            )
            if not res["ok"]:
                errors.append(f"{name}/{engine_name}: {res['error'].strip()}")
                return False
            for k, v in res["value"].items():
                samples[engine_name].setdefault(k, []).append(float(v))
            return True

        for e in engines:
            base = os.path.join(root, e, "base")
            if step(e, "prepare", base):
                bases[e] = base
        for r in range(rounds):
            if rounds > 1:
                log(f" round {r + 1}/{rounds}")
            for name in ("compact", "compact_nofsync", "put_during"):
                for e in bases:
                    if f"{e}_{name}" not in globals():
                        continue
                    copy = os.path.join(root, e, name)
                    shutil.copytree(bases[e], copy)
                    step(e, name, copy)
                    shutil.rmtree(copy)
            for e in bases:
                window = samples[e].get("put_window_s")
                if window:  # on a fresh copy too: the base stays as prepared for later rounds
                    copy = os.path.join(root, e, "put_alone")
                    shutil.copytree(bases[e], copy)
                    step(e, "put_alone", copy, dataclasses.replace(p, put_cap=window[-1]))
                    shutil.rmtree(copy)
            for e in bases if r == 0 else ():  # each step already repeats schedule_reps times
                sched = os.path.join(root, e, "schedule")
                os.makedirs(sched)
                step(e, "schedule", sched)
                shutil.rmtree(sched)
    medians = {e: {k: statistics.median(v) for k, v in per.items()} for e, per in samples.items()}
    for e, per in samples.items():  # the kept percentage of each round, then its median
        during, alone = per.get("put_during", []), per.get("put_alone", [])
        kept = [100.0 * d / a for d, a in zip(during, alone, strict=False) if a]
        if kept:
            per["put_kept_pct"] = kept
            medians[e]["put_kept_pct"] = statistics.median(kept)
    return medians, samples, errors


def format_spreads(samples: dict[str, dict[str, list[float]]], p: Params) -> str:
    """min / median / max of every metric with more than one sample."""
    lines = []
    for row in _rows(p):
        for e, per in samples.items():
            v = per.get(row.metric)
            if v and len(v) > 1:
                unit = "MB/s" if row.unit == "%" else row.unit
                lines.append(
                    f"  {row.metric:<22}{e:<9} n={len(v):<3} min {engine._fmt(min(v), unit):>10}"
                    f"  median {engine._fmt(statistics.median(v), unit):>10}"
                    f"  max {engine._fmt(max(v), unit):>10}"
                )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the compaction benchmark and print its table; 0 on success, 1 if a step failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker_main(*argv[1:5])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK.mb:g} MB instead of {FULL.mb:g}")
    ap.add_argument("--mb", type=float, default=None, help="database size in MB")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines")
    ap.add_argument("--json", default="", help="also write the raw results to this file")
    ap.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds (the table shows medians)"
    )
    args = ap.parse_args(argv)
    p = QUICK if args.quick else FULL
    if args.mb is not None:
        p = dataclasses.replace(p, mb=args.mb)
    engines = [e for e in args.engines.split(",") if e]
    if "official" in engines and importlib.util.find_spec("slatedb") is None:
        print("the official slatedb package is not installed: shale only", file=sys.stderr)
        engines.remove("official")
    t0 = time.perf_counter()
    print(
        f"Compaction benchmark, shale vs official slatedb ({p.mb:g} MB, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]})",
        flush=True,
    )
    print(engine._versions(), flush=True)
    print(f"load average at start: {engine._loadavg()}", flush=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results, samples, errors = run_interleaved(engines, p, args.rounds, 1800.0, log)
    print(format_table(results, p))
    if args.rounds > 1:
        print(f"medians of {args.rounds} interleaved rounds; spreads:")
        print(format_spreads(samples, p))
    print(f"total {time.perf_counter() - t0:.0f}s, load average at end: {engine._loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "params": dataclasses.asdict(p),
                    "results": results,
                    "samples": samples,
                    "errors": errors,
                },
                f,
                indent=1,
            )
    for err in errors:
        print(f"\nFAILED {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
