"""Acceptance of distributed compaction (RFC-0025), with real processes.

A standalone coordinator (``shale compactor run`` with ``compactor_options.worker = none``:
SlateDB's "standalone coordinator + remote workers" deployment) and two ``shale compactor
worker`` processes share one database in a local directory store. The workers' ``.compactions``
writes are slowed by the faults plugin (``SHALE_PLUGIN_FAULTS_SPEC``: 0.3 s per conditional
write), so a job that records each output SST lasts seconds. The worker that claimed the job is
SIGKILLed after its first output is recorded; the coordinator reclaims the job once the dead
worker's heartbeat is older than ``worker_heartbeat_timeout``; the other worker resumes it
after the recorded outputs and reports it Compacted; the coordinator commits it. The database
then reads the same in shale and in the official ``slatedb`` package.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shale import Db, Settings
from shale.fbs.compactions import STATUS_COMPLETED, STATUS_RUNNING, Compaction
from shale.objstore.local import LocalStore
from shale_compactor.state import read_view

WAIT_S = 120.0
NO_COMPACTOR = Settings(compactor_options=None, garbage_collector_options=None)


def wait_for(pred: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        tick.wait(0.05)


def jobs(db_dir: Path) -> list[Compaction]:
    c = read_view(LocalStore(str(db_dir)), "").compactions
    return [] if c is None else c.recent_compactions


def spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "shale", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_killed_worker_job_is_finished_by_the_other(tmp_path: Path, official_reader: Any) -> None:
    store_dir = tmp_path / "store"
    db_dir = store_dir / "db"
    expected: dict[bytes, bytes] = {}
    with Db.open(str(db_dir), NO_COMPACTOR) as db:  # four overlapping L0 SSTs: one job due
        for r in range(4):
            for i in range(3000):
                k = b"key%06d" % i
                if (i + r) % 11 == 0:
                    db.delete(k)
                    expected.pop(k, None)
                else:
                    v = b"r%d-%d-" % (r, i) + b"v" * (i % 97)
                    db.put(k, v)
                    expected[k] = v
            db.flush(memtable=True)

    coordinator_settings = tmp_path / "coordinator.json"
    coordinator_settings.write_text(
        json.dumps(
            {
                "garbage_collector_options": None,
                "compactor_options": {
                    "worker": None,
                    "poll_interval": "200ms",
                    "commit_compacted_interval": "200ms",
                    "worker_heartbeat_timeout": "3s",
                },
            }
        )
    )
    worker_settings = tmp_path / "worker.json"
    worker_settings.write_text(
        json.dumps({"compactor_options": {"worker": {"max_sst_size": 32 * 1024}}})
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    slow = dict(
        env,
        SHALE_PLUGIN_FAULTS_SPEC=json.dumps(
            {"ops": "put_if_absent", "prefix": "compactions/", "error": None, "latency": 0.3}
        ),
    )
    url = str(db_dir)
    worker_args = ["--settings", str(worker_settings), "--poll-interval", "0.2"]
    worker_args += ["--heartbeat-interval", "0.3"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("w1", "w2"):
            procs[name] = spawn(
                ["compactor", "worker", url, *worker_args], tmp_path / f"{name}.log", slow
            )
        ids = {}
        for name in ("w1", "w2"):
            log = tmp_path / f"{name}.log"
            found = wait_for(
                lambda log=log: re.search(r"compaction worker (\S+) running", log.read_text()),
                f"{name} to start",
            )
            ids[found.group(1)] = name
        procs["coordinator"] = spawn(
            ["compactor", "run", url, "--settings", str(coordinator_settings)],
            tmp_path / "coordinator.log",
            env,
        )

        # the job is claimed and its first output recorded: SIGKILL the worker holding it
        claimed = wait_for(
            lambda: next(
                (c for c in jobs(db_dir) if c.status == STATUS_RUNNING and c.output_ssts), None
            ),
            "a claimed job with a recorded output",
        )
        victim = ids[claimed.worker_id]
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(30)
        at_kill = next(c for c in jobs(db_dir) if c.id == claimed.id)
        assert at_kill.status == STATUS_RUNNING and at_kill.worker_id == claimed.worker_id
        recorded = at_kill.output_ssts

        # reclaimed after the heartbeat timeout, finished by the other worker, committed
        done = wait_for(
            lambda: next(
                (c for c in jobs(db_dir) if c.id == claimed.id and c.status == STATUS_COMPLETED),
                None,
            ),
            "the job to be completed",
        )
        survivor = next(n for n in ("w1", "w2") if n != victim)
        assert ids[done.worker_id] == survivor
        assert done.output_ssts[: len(recorded)] == recorded  # resumed, not redone
        assert len(done.output_ssts) > len(recorded)

        for name in ("coordinator", survivor):
            procs[name].send_signal(signal.SIGTERM)
            assert procs[name].wait(60) == 0, (tmp_path / f"{name}.log").read_text()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(30)

    view = read_view(LocalStore(str(db_dir)), "")
    m = view.manifest
    assert not m.l0 and len(m.compacted) == 1
    assert [v.sst.id for v in m.compacted[0].ssts] == [s.id for s in done.output_ssts]

    want = sorted(expected.items())
    official = official_reader.read(store_dir, list(expected), db_path="db")
    assert official.scan == want
    assert {k: v for k, v in official.values.items() if v is not None} == expected
    with Db.open(str(db_dir), NO_COMPACTOR) as db:
        assert list(db.scan()) == want

    # the official package decodes every .compactions version the workers and the coordinator
    # wrote: the job went Scheduled (proposed and validated in one tick: no Submitted version)
    # -> Running -> (reclaimed) Scheduled -> Running -> Compacted -> Completed
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("official_admin_worker.py")),
            json.dumps({"op": "inspect", "store_dir": str(store_dir), "db_path": "db"}),
        ],
        capture_output=True,
        timeout=WAIT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    seen = [
        c["status"]
        for v in json.loads(proc.stdout)["compactions"]
        for c in v["compactions"]
        if c["id"] == str(done.id)
    ]
    steps = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    assert steps == [
        "scheduled",
        "running",
        "scheduled",
        "running",
        "compacted",
        "completed",
    ], seen


if not sys.platform.startswith("linux"):  # pragma: no cover - SIGKILL semantics
    pytestmark = pytest.mark.skip("POSIX signals")
