"""``shale dump`` and ``shale load`` as real processes: against a live writer, and killed.

* A dump of a database whose writer (another process, this file run as a script) is open
  changes no object of the bucket (every object hashed before and after) and fences nobody.
* A dump taken while that writer writes is one point in time: the writer writes keys in order,
  so the dump holds exactly the keys ``0..k-1`` for some ``k`` at least the writes acknowledged
  before it started.
* ``kill -9`` of a ``shale load`` half-way, then ``shale load --resume``, leaves the target
  with exactly the source's contents.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

LINE_TIMEOUT_S = 30.0
NOFSYNC = ["--store-option", "fsync=false"]


def _settings_kw() -> dict[str, Any]:
    return {
        "flush_interval": 0.01,
        "l0_sst_size_bytes": 16 * 1024,
        "l0_max_ssts": 100_000,
        "compactor_options": None,
        "garbage_collector_options": None,
    }


def _writer_main(db_dir: str) -> int:
    """The writer: on ``write N`` it writes N more keys and says ``done``; on ``run`` it
    writes until ``stop``, saying ``acked`` every 10 keys; ``stop`` closes it."""
    from shale import ClosedError
    from shale.db import Db
    from shale.settings import Settings

    db = Db.open(db_dir, Settings(**_settings_kw()), store_options={"fsync": False})
    stop = threading.Event()
    looping: threading.Thread | None = None
    n = 0

    def emit(**obj: Any) -> None:
        os.write(1, (json.dumps(obj) + "\n").encode())

    def put() -> None:
        nonlocal n
        db.put(b"a-%07d" % n, b"value-%d." % n + b"." * 100, ttl=3_600_000 if n % 7 else None)
        n += 1
        if n % 100 == 0:
            db.flush(memtable=True)  # L0 SSTs and manifest versions, not only the WAL

    try:
        for line in sys.stdin:
            cmd = line.split()
            if cmd[0] == "write":
                for _ in range(int(cmd[1])):
                    put()
                emit(event="done", n=n)
            elif cmd[0] == "run":

                def loop() -> None:
                    while not stop.is_set():
                        put()
                        if n % 10 == 0:
                            emit(event="acked", n=n)

                looping = threading.Thread(target=loop)
                looping.start()
            elif cmd[0] == "stop":
                break
    except ClosedError as exc:
        emit(event="closed", close_reason=exc.reason, n=n)
        return 2
    stop.set()
    if looping is not None:
        looping.join()
    db.close()
    emit(event="closed", close_reason=db.close_reason, n=n)
    return 0


class _Writer:
    def __init__(self, db_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(db_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, event: str, n: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + LINE_TIMEOUT_S
        with self._cond:
            while True:
                for e in reversed(self.events):
                    if e["event"] == event and e["n"] >= n:
                        return e
                    if e["event"] == "closed":
                        raise AssertionError(f"writer closed: {e}")
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    err = self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"no {event} {n}: {self.events[-3:]} {err[-3000:]!r}")
                self._cond.wait(0.5)

    def stop(self) -> dict[str, Any]:
        self.send("stop")
        try:
            self.proc.wait(timeout=LINE_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=10)
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
        closed = self.events[-1]
        assert closed["event"] == "closed", self.events[-3:]
        return closed


def _hashes(root: Path) -> dict[str, str]:
    """The bucket's objects and their hashes: the local store's staging files (``.tmp-*``,
    renamed into place or removed by a running writer) are not objects."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name.startswith(".tmp-") or not p.is_file():
            continue
        try:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        except FileNotFoundError:  # a staging file renamed between the listing and the read
            continue
    return out


def _settled(root: Path) -> dict[str, str]:
    """The bucket's hashes once two reads 0.3 s apart agree (background uploads are done)."""
    last = _hashes(root)
    for _ in range(50):
        time.sleep(0.3)
        now = _hashes(root)
        if now == last:
            return now
        last = now
    raise AssertionError("the idle writer keeps changing the bucket")


def _shale(*argv: str, stdin: Any = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "shale", *argv], capture_output=True, stdin=stdin, timeout=120
    )


def _rows(dump: bytes) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in dump.splitlines()]
    assert lines[0]["format"] == "shale-dump" and lines[-1]["end"] is True
    return lines[1:-1]


def test_dump_of_a_live_database_leaves_the_bucket_byte_identical(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    writer = _Writer(db_dir)
    try:
        writer.send("write 350")
        writer.wait("done", 350)
        before = _settled(db_dir)  # the idle writer writes nothing by itself
        assert any(k.startswith("compacted/") for k in before)  # L0 SSTs, WAL and manifests
        proc = _shale("dump", str(db_dir))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _hashes(db_dir) == before  # the dump wrote, changed and deleted nothing
        rows = _rows(proc.stdout)
        assert [r["key"] for r in rows] == [
            base64.b64encode(b"a-%07d" % i).decode() for i in range(350)
        ]
        assert sum("expire_ts" in r for r in rows) == 350 - 50  # every 7th key has no TTL
        writer.send("write 20")  # still the writer: it was not fenced
        writer.wait("done", 370)
    finally:
        closed = writer.stop()
    assert closed["close_reason"] == "clean"


def test_a_dump_during_writes_is_one_point_in_time(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    writer = _Writer(db_dir)
    try:
        writer.send("write 50")
        writer.wait("done", 50)
        writer.send("run")
        acked = writer.wait("acked", 100)["n"]
        proc = _shale("dump", str(db_dir), "--escape")
        assert proc.returncode == 0, proc.stderr[-3000:]
        keys = [r["key"] for r in _rows(proc.stdout)]
        assert len(keys) >= acked
        assert keys == [f"a-{i:07d}" for i in range(len(keys))]  # no gap: one point in time
        writer.wait("acked", len(keys) + 50)  # and the writer writes on
    finally:
        closed = writer.stop()
    assert closed["close_reason"] == "clean"


def _make_source(db_dir: Path, n: int) -> None:
    from shale.batch import WriteBatch
    from shale.db import Db
    from shale.settings import Settings

    settings = Settings(compactor_options=None, garbage_collector_options=None)
    with Db.open(str(db_dir), settings, store_options={"fsync": False}) as db:
        for i in range(0, n, 1000):
            wb = WriteBatch()
            for j in range(i, min(n, i + 1000)):
                wb.put(b"k-%06d" % j, os.urandom(j % 50), ttl=86_400_000 if j % 3 == 0 else None)
            db.write(wb)


def test_kill_9_of_a_load_then_resume_gives_the_source(tmp_path: Path) -> None:
    n = 20_000
    src, dst, dump = tmp_path / "src", tmp_path / "dst", tmp_path / "d.jsonl"
    _make_source(src, n)
    proc = _shale("dump", str(src), "-o", str(dump))
    assert proc.returncode == 0, proc.stderr[-3000:]
    load = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shale",
            "load",
            str(dst),
            "-i",
            str(dump),
            "--batch-rows",
            "10",
            *NOFSYNC,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(list((dst / "wal").glob("*.sst"))) < 30:  # some batches are durable
        assert load.poll() is None, load.stderr.read() if load.stderr else b""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    load.send_signal(signal.SIGKILL)
    load.wait()
    for pipe in (load.stdout, load.stderr):
        if pipe is not None:
            pipe.close()
    assert load.returncode == -signal.SIGKILL  # killed half-way, not finished

    partial = _rows(_shale("dump", str(dst)).stdout)
    assert 0 < len(partial) < n
    proc = _shale("load", str(dst), "-i", str(dump), "--resume", *NOFSYNC)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout)
    assert stats["skipped_resume"] == len(partial)
    assert stats["written"] == n - len(partial)
    got = _rows(_shale("dump", str(dst)).stdout)
    assert got == _rows(dump.read_bytes())


if __name__ == "__main__":
    sys.exit(_writer_main(sys.argv[1]))
