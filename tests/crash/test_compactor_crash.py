"""Crash safety of the compactor: a standalone compactor SIGKILLed at random moments resumes its
job, and the compacted database holds exactly the rows it held before.

Setup: a shale database with 8 L0 SSTs of about 4 MB each (overlapping keys, overwrites,
deletes of present and absent keys, ``concat`` merges), written and closed in this process. The
expected rows are what shale reads from it before any compaction, checked against a plain dict
model of the writes.

Then, repeatedly, ``compactor_worker.py`` (see its docstring) is started on the directory: it
fences the previous compactor, submits one full compaction when none is active (otherwise the
active one is resumed) and runs it to the end. The parent SIGKILLs it after a random delay of
0.2 s up to 90 % of an uninterrupted run (calibrated on a copy first), so kills land while the
compactor opens (fencing, recovery), while output SSTs are written and recorded, and around
the commit. A job that ends before its kill is followed by a new full compaction of the single
sorted run (same rows, another multi-SST job), so there is always a job to interrupt. After at
least :data:`MIN_KILLS` kills a last worker runs to completion.

Checks:

* **resumed, not restarted**: after every kill the ``.compactions`` file (read with
  :func:`shale_compactor.state.read_view`, compactions before manifest) holds the interrupted job
  under the same id, still Running (or Submitted), and its recorded ``output_ssts`` only grow:
  the list after one kill is a prefix of the list after the next kill and of the outputs the job
  finally commits. At least one job must have been interrupted with outputs recorded and then
  completed with them carried over, and the restarted worker must report ``RESUME`` with those
  outputs;
* no job is ever marked Failed, and a new job is submitted only when none is active;
* no manifest (after any cycle) references an SST twice; the final one has no L0 SST and one
  sorted run;
* the final rows, read by shale and by the official ``slatedb`` package (when installed), are
  exactly the expected rows.

``SHALE_CRASH_SEED`` fixes the random schedule; the seed is in every failure message.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("compactor_worker.py")
ORACLE = Path(__file__).parent.parent / "interop" / "conftest.py"
#: Output SSTs are cut at this size, so a job records its progress many times.
MAX_SST_SIZE = 1024 * 1024
#: L0 SSTs and rows per L0 (about 4 MB each).
L0_COUNT = 8
ROWS_PER_L0 = 80_000
KEY_SPACE = 400_000
MERGE_KEYS = 5_000
MIN_KILLS = 10
MAX_CYCLES = 60
#: Give up starting new cycles after this long (the test then fails on too few kills).
BUDGET_S = 60.0
WORKER_TIMEOUT_S = 120.0


# -- the database ---------------------------------------------------------------------------------


def _settings() -> Any:
    """The database's settings: the worker's (its merge operator, no embedded compactor)."""
    from shale.settings import Settings

    spec = importlib.util.spec_from_file_location("shale_compactor_crash_worker", WORKER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return Settings(**mod.SETTINGS)


def _build(db_dir: Path, rng: random.Random) -> dict[bytes, bytes]:
    """Write the 8 L0 SSTs; return the rows shale reads (checked against a dict model)."""
    from shale.batch import WriteBatch
    from shale.db import Db

    model: dict[bytes, bytes | None] = {}
    with Db.open(str(db_dir), _settings(), store_options={"fsync": False}) as db:
        for r in range(L0_COUNT):
            wb = WriteBatch()
            for j in range(ROWS_PER_L0):
                key = b"k%08d" % rng.randrange(KEY_SPACE)
                value = rng.randbytes(rng.randrange(16, 48))
                wb.put(key, value)
                model[key] = value
                if j % 1000 == 999:
                    db.write(wb, durable=False)
                    wb = WriteBatch()
            for _ in range(3000):  # present and absent keys
                key = b"k%08d" % rng.randrange(KEY_SPACE)
                wb.delete(key)
                model[key] = None
            for _ in range(2000):
                key = b"m%05d" % rng.randrange(MERGE_KEYS)
                operand = b"<%d:%d>" % (r, rng.randrange(100))
                wb.merge(key, operand)
                model[key] = (model.get(key) or b"") + operand
            if r == 5:  # merges over deleted bases
                for i in range(0, MERGE_KEYS, 97):
                    wb.delete(b"m%05d" % i)
                    model[b"m%05d" % i] = None
            db.write(wb, durable=False)
            db.flush(memtable=True)
        m = db.manifest()
        assert len(m.l0) == L0_COUNT and not m.compacted
        rows = dict(db.scan())
    want = {k: v for k, v in model.items() if v is not None}
    assert rows == want, "shale's reads of the built database differ from the model"
    sizes = [p.stat().st_size for p in (db_dir / "compacted").glob("*.sst")]
    assert len(sizes) == L0_COUNT and min(sizes) > 3_000_000, sizes
    return rows


# -- one worker process ------------------------------------------------------------------------


class _Run:
    """One worker process and the lines read from its stdout."""

    def __init__(self, db_dir: Path) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(db_dir), str(MAX_SST_SIZE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[list[str]] = []
        self.ready_at: float | None = None
        self.stderr = b""
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith(b"\n"):
                break
            parts = line.decode().split()
            if parts and parts[0] == "READY":
                self.ready_at = time.monotonic()
            self.lines.append(parts)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def _join(self) -> None:
        self._out.join(timeout=30)
        self._err.join(timeout=30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def kill_after(self, delay: float) -> bool:
        """SIGKILL after ``delay`` seconds from the start; ``False`` if it exited before."""
        try:
            self.proc.wait(timeout=max(0.0, self.started + delay - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self._join()
            return True
        self._join()
        return False

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._join()
        return rc

    def tagged(self, tag: str) -> list[list[str]]:
        return [parts for parts in self.lines if parts and parts[0] == tag]


# -- state snapshots ------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    """The ``.compactions`` file and manifest after one cycle (ids as strings)."""

    active: dict[str, tuple[int, list[str]]]  # id -> (status, output SST ids)
    finished: dict[str, tuple[int, list[str]]]
    runs: list[tuple[int, list[str]]]
    l0: list[str]
    compactor_epoch: int | None


def _snapshot(db_dir: Path) -> _Snapshot:
    from shale.objstore.local import LocalStore
    from shale_compactor.state import is_active, read_view

    view = read_view(LocalStore(db_dir))
    active: dict[str, tuple[int, list[str]]] = {}
    finished: dict[str, tuple[int, list[str]]] = {}
    for c in view.recent_compactions():
        entry = (c.status, [str(s.id) for s in c.output_ssts])
        (active if is_active(c) else finished)[str(c.id)] = entry
    m = view.manifest
    return _Snapshot(
        active=active,
        finished=finished,
        runs=[(r.id, [str(v.sst.id) for v in r.ssts]) for r in m.compacted],
        l0=[str(v.sst.id) for v in m.l0],
        compactor_epoch=None if view.compactions is None else view.compactions.compactor_epoch,
    )


@dataclass
class _Job:
    """What the parent saw of one compaction across cycles."""

    id: str
    outputs_at_kills: list[list[str]] = field(default_factory=list)
    resumed_with: list[int] = field(default_factory=list)  # the workers' RESUME counts
    final_outputs: list[str] | None = None


def _official_scan(store_dir: Path, db_path: str) -> list[tuple[bytes, bytes]] | None:
    """A full scan by the official package (``None`` when it is not installed)."""
    if importlib.util.find_spec("slatedb") is None:
        return None
    name = "shale_crash_interop_oracle"
    oracle = sys.modules.get(name)
    if oracle is None:  # tests/interop/conftest.py, loaded as a module (its dataclasses need it
        # registered); its OfficialReader runs the official package in a child process
        spec = importlib.util.spec_from_file_location(name, ORACLE)
        assert spec is not None and spec.loader is not None
        oracle = importlib.util.module_from_spec(spec)
        sys.modules[name] = oracle
        spec.loader.exec_module(oracle)
    read = oracle.OfficialReader().read(
        store_dir, [], db_path=db_path, merge_operator="concat", timeout=120.0
    )
    scan: list[tuple[bytes, bytes]] = read.scan
    return scan


# -- the test -------------------------------------------------------------------------------------


def test_sigkilled_compactor_resumes_and_loses_nothing(tmp_path: Path) -> None:
    from shale.db import Db
    from shale.fbs.compactions import (
        STATUS_COMPLETED,
        STATUS_FAILED,
        STATUS_RUNNING,
        STATUS_SUBMITTED,
    )

    seed = int(os.environ.get("SHALE_CRASH_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    store_dir = tmp_path / "store"
    db_dir = store_dir / "db"
    t_build = time.monotonic()
    expected = _build(db_dir, rng)
    build_s = time.monotonic() - t_build

    # calibrate: one uninterrupted run on a copy
    calib = tmp_path / "calib"
    shutil.copytree(db_dir, calib)
    run = _Run(calib)
    rc = run.wait(WORKER_TIMEOUT_S)
    assert rc == 0, f"seed={seed}: calibration worker rc={rc}: {run.stderr.decode()[-3000:]}"
    full_run_s = time.monotonic() - run.started
    (report,) = run.tagged("REPORT")
    calib_outputs = int(report[3])
    assert calib_outputs >= 5, f"max_sst_size should split the output: {report}"
    shutil.rmtree(calib)
    log.info(
        "built %d rows in %.1fs; uninterrupted run %.2fs (job %ss, %d outputs)",
        len(expected),
        build_s,
        full_run_s,
        report[4],
        calib_outputs,
    )

    jobs: dict[str, _Job] = {}
    started = time.monotonic()
    kills = completions = 0
    prev = _snapshot(db_dir)
    cycle = 0
    while kills < MIN_KILLS and cycle < MAX_CYCLES and time.monotonic() - started < BUDGET_S:
        ctx = f"seed={seed} cycle={cycle}"
        delay = rng.uniform(0.2, max(0.3, 0.9 * full_run_s))
        run = _Run(db_dir)
        killed = run.kill_after(delay)
        if killed:
            assert run.proc.returncode == -signal.SIGKILL
            kills += 1
        else:
            assert run.proc.returncode == 0, (
                f"{ctx}: worker rc={run.proc.returncode}: {run.stderr.decode()[-3000:]}"
            )
            completions += 1
        assert b"ERROR" not in run.stderr, f"{ctx}: {run.stderr.decode()[-3000:]}"
        snap = _snapshot(db_dir)
        referenced = [s for _, ssts in snap.runs for s in ssts] + snap.l0
        assert len(referenced) == len(set(referenced)), f"{ctx}: an SST is referenced twice"
        # the worker resumed the job the previous cycle left active, or submitted one only
        # when none was active
        for parts in run.tagged("RESUME"):
            jid, carried = parts[1], int(parts[2])
            assert jid in prev.active, f"{ctx}: resumed {jid}, not active before: {prev.active}"
            assert carried == len(prev.active[jid][1]), (ctx, parts, prev.active[jid])
            jobs[jid].resumed_with.append(carried)
        for parts in run.tagged("SUBMITTED"):
            assert not prev.active, f"{ctx}: a new job while {list(prev.active)} was active"
            jobs.setdefault(parts[1], _Job(parts[1]))
        for jid, (_, outputs) in prev.active.items():
            if jid in snap.active:
                # interrupted again: same id, outputs carried over and only growing
                status_now, now = snap.active[jid]
                assert status_now in (STATUS_RUNNING, STATUS_SUBMITTED), (ctx, status_now)
                assert now[: len(outputs)] == outputs, f"{ctx}: outputs of {jid} not carried"
            else:
                # finished in this cycle: completed, with the recorded outputs as a prefix
                assert jid in snap.finished, f"{ctx}: job {jid} vanished: {snap}"
                status_now, final = snap.finished[jid]
                assert status_now == STATUS_COMPLETED, f"{ctx}: job {jid} status {status_now}"
                assert final[: len(outputs)] == outputs, f"{ctx}: {jid} restarted from scratch"
        for jid, (_, outputs) in snap.active.items():
            job = jobs.setdefault(jid, _Job(jid))
            assert killed, f"{ctx}: worker exited 0 leaving {jid} active"
            job.outputs_at_kills.append(outputs)
        for jid, (status, outputs) in snap.finished.items():
            assert status != STATUS_FAILED, f"{ctx}: job {jid} failed"
            if jid in jobs and jobs[jid].final_outputs is None:
                jobs[jid].final_outputs = outputs
                assert snap.runs == [(0, outputs)], f"{ctx}: the run is not {jid}'s outputs"
        log.info(
            "%s delay=%.2fs killed=%s active=%s runs=%s",
            ctx,
            delay,
            killed,
            {j: len(o) for j, (_, o) in snap.active.items()},
            [(r, len(s)) for r, s in snap.runs],
        )
        prev = snap
        cycle += 1
    assert kills >= MIN_KILLS, f"seed={seed}: only {kills} kills in {cycle} cycles"

    # finally let it finish
    run = _Run(db_dir)
    rc = run.wait(WORKER_TIMEOUT_S)
    assert rc == 0, f"seed={seed}: final worker rc={rc}: {run.stderr.decode()[-3000:]}"
    final = _snapshot(db_dir)
    for jid, (_, outputs) in prev.active.items():
        status, committed = final.finished[jid]
        assert status == STATUS_COMPLETED and committed[: len(outputs)] == outputs
        jobs[jid].final_outputs = committed
    assert not final.active, final.active
    assert final.l0 == [], final.l0
    assert len(final.runs) == 1 and final.runs[0][0] == 0, final.runs
    referenced = [s for _, ssts in final.runs for s in ssts] + final.l0
    assert len(referenced) == len(set(referenced)), "an SST is referenced twice"

    # resumed, not restarted: a job killed with outputs recorded committed them
    resumed = [
        j
        for j in jobs.values()
        if j.final_outputs is not None
        and any(o and j.final_outputs[: len(o)] == o for o in j.outputs_at_kills)
    ]
    assert resumed, f"seed={seed}: no job was resumed with recorded outputs: {jobs}"
    assert any(n > 0 for j in resumed for n in j.resumed_with), f"seed={seed}: {jobs}"

    # the rows: official package (read-only), then shale (opening fences; nothing else reads)
    official = _official_scan(store_dir, "db")
    if official is not None:
        assert official == sorted(expected.items()), f"seed={seed}: official scan differs"
    with Db.open(str(db_dir), _settings()) as db:
        rows = dict(db.scan())
        sample = rng.sample(sorted(expected), 500)
        assert all(db.get(k) == expected[k] for k in sample)
    assert rows == expected, f"seed={seed}: shale reads {len(rows)} rows, expected {len(expected)}"
    orphans = {p.stem for p in (db_dir / "compacted").glob("*.sst")} - set(referenced)
    log.info(
        "compactor crash test: seed=%d cycles=%d kills=%d completions=%d jobs=%d "
        "resumed=%d max_outputs_carried=%d orphan_ssts=%d seconds=%.1f",
        seed,
        cycle,
        kills,
        completions,
        len(jobs),
        len(resumed),
        max((max(j.resumed_with, default=0) for j in jobs.values()), default=0),
        len(orphans),
        time.monotonic() - started,
    )
