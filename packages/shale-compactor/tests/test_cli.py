"""``shale compactor run|submit|status``: in-process through ``shale.cli.main``, plus one real
process stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import shale
from shale import cli
from shale.batch import WriteBatch
from shale.db import Db
from shale.settings import Settings
from shale_compactor.state import read_view

NOFSYNC = ["--store-option", "fsync=false"]
SETTINGS = Settings(flush_interval=0.01, compactor_options=None, garbage_collector_options=None)
WAIT_S = 60.0


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    for name in list(os.environ):
        if name.upper().startswith("SHALE_") and name.upper() not in {
            n.upper() for n in shale.env.NOT_SETTINGS
        }:
            monkeypatch.delenv(name)
    return Run(capsys)


def make_db(path: pathlib.Path, l0s: int) -> dict[bytes, bytes]:
    expected = {}
    with Db.open(str(path), SETTINGS, store_options={"fsync": False}) as db:
        for r in range(l0s):
            batch = WriteBatch()
            for i in range(100):
                k, v = b"k%03d" % i, b"v%d-%d" % (r, i)
                batch.put(k, v)
                expected[k] = v
            db.write(batch)
            db.flush(memtable=True)
    return expected


def read_all(path: pathlib.Path) -> dict[bytes, bytes]:
    with Db.open(str(path), SETTINGS, store_options={"fsync": False}) as db:
        return dict(db.scan())


def store_of(path: pathlib.Path) -> Any:
    from shale.plugins import open_store

    return open_store(str(path), fsync=False)


def test_help_lists_the_commands(run: Run) -> None:
    with pytest.raises(SystemExit) as exc:
        run("compactor", "--help")
    assert exc.value.code == 0
    out = run.capsys.readouterr().out
    assert "run" in out and "submit" in out and "status" in out


def test_submit_status_run_once(run: Run, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    expected = make_db(path, 2)
    url = str(path)

    code, out, err = run("compactor", "status", url, *NOFSYNC)
    assert code == 0, err
    assert "compactor epoch: none" in out and "no compactions" in out and "L0 SSTs: 2" in out

    code, out, err = run("compactor", "submit", url, "--full", *NOFSYNC)
    assert code == 0, err
    cid = out.strip()
    assert len(cid) == 26

    code, out, err = run("compactor", "status", url, *NOFSYNC)
    assert code == 0 and cid in out and "submitted" in out and "2 L0" in out

    code, out, err = run("compactor", "run", url, "--once", *NOFSYNC)
    assert code == 0, err
    (report,) = [json.loads(line) for line in out.splitlines()]
    assert report["id"] == cid and report["status"] == "completed" and report["l0"] == 2

    code, out, err = run("compactor", "status", url, "--json", *NOFSYNC)
    assert code == 0, err
    status = json.loads(out)
    assert status["l0"] == 0 and status["sorted_runs"] == [0]
    assert status["compactor_epoch"] == 1
    assert [(c["id"], c["status"], c["percentage"]) for c in status["compactions"]] == [
        (cid, "completed", 100.0)
    ]
    assert read_all(path) == expected

    # a manual spec in SlateDB's shape: rewrite sorted run 0 alone
    spec = json.dumps({"Spec": {"sources": [{"SortedRun": 0}], "destination": 0}})
    code, out, err = run("compactor", "submit", url, "--spec", spec, *NOFSYNC)
    assert code == 0, err
    code, out, err = run("compactor", "run", url, "--once", *NOFSYNC)
    assert code == 0 and json.loads(out)["sorted_runs"] == [0]
    assert read_all(path) == expected


def test_errors_are_one_line(run: Run, tmp_path: pathlib.Path) -> None:
    empty = str(tmp_path / "nothing")
    for argv in (("status", empty), ("submit", empty, "--full"), ("run", empty, "--once")):
        code, _out, err = run("compactor", *argv, *NOFSYNC)
        assert err == f"error: data: no database at {empty} (no manifest found)\n", (argv, err)
        assert code == 2 and not pathlib.Path(empty).exists(), argv
    path = tmp_path / "db"
    make_db(path, 1)
    code, _, err = run("compactor", "submit", str(path), "--spec", "{bad", *NOFSYNC)
    assert code == 2 and err.startswith("error: invalid:")
    code, _, err = run(
        "compactor",
        "submit",
        str(path),
        "--spec",
        '{"sorted_runs": [4], "destination": 4}',
        *NOFSYNC,
    )
    assert code == 2 and "consecutive" in err
    with pytest.raises(SystemExit):
        run("compactor", "submit", str(path))  # --full or --spec is required


def test_run_stops_cleanly_on_sigterm(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    expected = make_db(path, 4)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shale",
            "compactor",
            "run",
            str(path),
            "--poll-interval",
            "0.05",
            *NOFSYNC,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = store_of(path)
        deadline = time.monotonic() + WAIT_S
        tick = threading.Event()
        while not read_view(store, "").manifest.compacted:  # wait for the first compaction
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no compaction happened"
            tick.wait(0.02)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopping (SIGTERM)" in err and "compactor stopped" in err
    assert "Traceback" not in err
    assert read_all(path) == expected


# -- worker ---------------------------------------------------------------------------------------


def test_worker_rejects_bad_options(run: Run, tmp_path: pathlib.Path) -> None:
    make_db(tmp_path / "db", 1)
    code, _out, err = run("compactor", "worker", str(tmp_path / "db"), "--max-concurrent", "0")
    assert code != 0 and "max_concurrent_compactions" in err


def test_worker_process_releases_its_job_on_sigint(tmp_path: pathlib.Path) -> None:
    """A worker process holding a job (slowed: 0.3 s per .compactions write) stops on SIGINT
    and hands the job back to Scheduled with the outputs it recorded."""
    from shale.objstore.local import LocalStore
    from shale.settings import CompactorOptions
    from shale_compactor import Compactor

    path = tmp_path / "db"
    with Db.open(str(path), SETTINGS, store_options={"fsync": False}) as db:
        for r in range(4):  # four L0 SSTs of 3000 rows: a job of many 4 KiB outputs
            for i in range(3000):
                db.put(b"k%05d" % i, b"v%d-%d" % (r, i) * 4)
            db.flush(memtable=True)
    store = LocalStore(str(path))
    coordinator = Compactor(store, "", SETTINGS, options=CompactorOptions(worker=None))
    try:
        coordinator.run_once()  # schedules the due job for a worker
    finally:
        coordinator.stop()
    (job,) = read_view(store, "").compactions.recent_compactions  # type: ignore[union-attr]
    settings = tmp_path / "worker.json"
    settings.write_text(json.dumps({"compactor_options": {"worker": {"max_sst_size": 4096}}}))
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        SHALE_PLUGIN_FAULTS_SPEC=json.dumps(
            {"ops": "put_if_absent", "prefix": "compactions/", "error": None, "latency": 0.3}
        ),
    )
    argv = [
        "compactor",
        "worker",
        str(path),
        "--settings",
        str(settings),
        "--poll-interval",
        "0.05",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "shale", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )

    def current() -> Any:
        return read_view(store, "").compactions.recent_compactions[0]  # type: ignore[union-attr]

    try:
        deadline = time.monotonic() + WAIT_S
        tick = threading.Event()
        while not current().output_ssts:  # claimed and one output recorded
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker did not start the job"
            tick.wait(0.02)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopping (SIGINT)" in err and "Traceback" not in err
    released = current()
    assert released.id == job.id
    assert (released.status, released.worker_id) == (5, None)  # Scheduled, unclaimed
    assert released.output_ssts
