"""Crash safety: a writer process SIGKILLed at random moments loses no acknowledged write.

Each cycle starts ``crash_worker.py`` (see its docstring) on the same local database directory,
waits for it to open, lets it write for a random 0.2-1.5 s -- 4 writer threads doing durable
puts and batches of unique keys, one thread forcing ``flush(memtable=True)`` -- and SIGKILLs it.
The parent collects the acknowledgement lines from the worker's stdout, then reopens the
database in this process and checks:

* every acknowledged key is present with its value (point ``get`` on a sample, all via a scan);
* every key present has the value its writer would have written (no torn or mixed-up rows);
* write batches are atomic: all of a batch's keys are present or none;
* opening replays the WAL and leaves a database the next writer can open.

Some cycles kill the worker while it is still opening (fencing, WAL replay, the replayed L0
flush). ``SHALE_CRASH_SEED`` fixes the random schedule; the seed is in every failure message.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from shale.db import Db
from shale.settings import Settings

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("crash_worker.py")
CYCLES = 24
#: Stop starting new cycles after this long (the test must stay around a minute).
BUDGET_S = 50.0
READY_TIMEOUT_S = 30.0


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shale_crash_worker", WORKER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Run:
    """One worker process and the acknowledgement lines read from its stdout."""

    def __init__(self, db_dir: Path, cycle: int, seed: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(db_dir), str(cycle), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.ready = threading.Event()
        self.puts: list[bytes] = []
        self.batches: list[list[bytes]] = []
        self.stderr = b""
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith(b"\n"):
                break  # a torn last line: never acknowledged
            parts = line.split()
            if parts == [b"READY"]:
                self.ready.set()
            elif parts[0] == b"A":
                self.puts.append(parts[1])
            elif parts[0] == b"B":
                self.batches.append(parts[1:])

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        self._out.join(timeout=30)
        self._err.join(timeout=30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return rc


def _check(
    db_dir: Path,
    worker: ModuleType,
    acked: dict[bytes, bytes],
    batches: list[list[bytes]],
    rng: random.Random,
    ctx: str,
) -> tuple[int, set[str]]:
    """Reopen the database and check it; returns the number of keys present and the L0 files."""
    value_for = worker.value_for
    db = Db.open(str(db_dir), Settings(**worker.SETTINGS))
    try:
        present = dict(db.scan())
        missing = [k for k in acked if k not in present]
        assert not missing, f"{ctx}: {len(missing)} acknowledged keys lost, e.g. {missing[:5]}"
        wrong = [k for k, v in present.items() if v != value_for(k)]
        assert not wrong, f"{ctx}: wrong values for {wrong[:5]}"
        for b in batches:
            found = [k in present for k in b]
            assert all(found) or not any(found), f"{ctx}: torn batch {b} {found}"
        for k in rng.sample(sorted(acked), min(200, len(acked))):
            assert db.get(k) == acked[k], f"{ctx}: get({k!r})"
        m = db.manifest()
        return len(present), {f"{v.sst.id}.sst" for v in m.l0}
    finally:
        db.close()


def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHALE_CRASH_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    worker = _load_worker()
    db_dir = tmp_path / "db"
    acked: dict[bytes, bytes] = {}
    all_batches: list[list[bytes]] = []
    started = time.monotonic()
    cycles = 0
    early_kills = 0
    for cycle in range(CYCLES):
        if time.monotonic() - started > BUDGET_S and cycles >= 20:
            break
        ctx = f"seed={seed} cycle={cycle}"
        run = _Run(db_dir, cycle, rng.randrange(2**32))
        early = cycle % 6 == 5  # kill while opening, or just after
        try:
            if early:
                time.sleep(rng.uniform(0.05, 0.6))
            else:
                assert run.ready.wait(READY_TIMEOUT_S), f"{ctx}: worker never opened"
                time.sleep(rng.uniform(0.2, 1.5))
        finally:
            rc = run.kill()
        assert rc == -signal.SIGKILL, f"{ctx}: worker exited rc={rc}: {run.stderr.decode()[-3000:]}"
        assert b"ERROR" not in run.stderr, f"{ctx}: {run.stderr.decode()[-3000:]}"
        if not early:
            assert run.puts, f"{ctx}: no acknowledged put in the cycle"
        early_kills += early
        for k in run.puts:
            acked[k] = worker.value_for(k)
        for b in run.batches:
            for k in b:
                acked[k] = worker.value_for(k)
        all_batches.extend(run.batches)
        present, l0_files = _check(db_dir, worker, acked, all_batches, rng, ctx)
        assert present >= len(acked)
        cycles += 1
    assert cycles >= 20 and early_kills >= 3
    assert len(acked) > 1000, f"seed={seed}: only {len(acked)} acknowledged writes"
    assert len(l0_files) >= cycles, f"seed={seed}: only {len(l0_files)} L0 SSTs"
    # evidence that kills landed mid-flush: SSTs uploaded but never published, temp files
    orphans = {p.name for p in (db_dir / "compacted").glob("*.sst")} - l0_files
    temps = list(db_dir.rglob(".tmp-*"))
    log.info(
        "crash test: seed=%d cycles=%d early_kills=%d acknowledged=%d present=%d "
        "l0_ssts=%d orphan_ssts=%d temp_files=%d seconds=%.1f",
        seed,
        cycles,
        early_kills,
        len(acked),
        present,
        len(l0_files),
        len(orphans),
        len(temps),
        time.monotonic() - started,
    )
