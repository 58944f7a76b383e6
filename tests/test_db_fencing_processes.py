"""Fencing across processes: a writer fenced by a newer one stops and never touches the bucket.

Process A (this file run as a script, see :func:`_writer_main`) opens a database on a local
directory and writes; the test opens writer B in this process. Checked:

* **busy writer** (:func:`test_busy_writer_is_fenced_and_writes_nothing_more`): A writes durable
  puts in a loop while a second thread keeps memtables freezing (non-durable puts of larger values,
  ``flush(memtable=True)``), so WAL uploads, L0 uploads and manifest updates are all in flight
  when B opens. A's next write raises ``ClosedError(reason="fenced")``; A reports it and exits
  with :data:`EXIT_FENCED`. B writes, closes; the bucket is snapshotted (every file's name,
  size, inode, mtime and content hash); A is then told to try every operation (puts durable or
  not, delete, merge, batch, flush, memtable flush, checkpoint, manifest refresh, close) and to
  idle a while so its background threads could act; the bucket must be unchanged. Finally every
  write A acknowledged and every write of B is readable by a fresh writer.
* **idle writer** (:func:`test_idle_writer_is_fenced_by_the_manifest_poller`): A writes a little,
  then waits; B opens. A's manifest poller notices the newer epoch without A writing anything,
  ``close_reason`` becomes ``"fenced"``, and A's next write raises ``ClosedError("fenced")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Exit code of a writer that was fenced and did what it was told afterwards.
EXIT_FENCED = 17
#: Exit code of a writer that met anything unexpected.
EXIT_UNEXPECTED = 2
LINE_TIMEOUT_S = 30.0


def _settings_kw() -> dict[str, Any]:
    return {
        "flush_interval": 0.01,
        "l0_sst_size_bytes": 64 * 1024,
        "l0_max_ssts": 1024,
        "manifest_poll_interval": 0.05,
        "compactor_options": None,
        "garbage_collector_options": None,
        "merge_operator": "concat",
    }


# --------------------------------------------------------------------------------------------
# process A
# --------------------------------------------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


def _attempts(db: Any) -> list[dict[str, Any]]:
    """Try every operation on a fenced database; report what each raised."""
    from shale import ClosedError
    from shale.batch import WriteBatch

    ops: list[tuple[str, Any]] = [
        ("put", lambda: db.put(b"after-fence", b"x")),
        ("put_nondurable", lambda: db.put(b"after-fence-2", b"x", durable=False)),
        ("delete", lambda: db.delete(b"a-0000000")),
        ("merge", lambda: db.merge(b"after-fence-m", b"x")),
        ("write", lambda: db.write(WriteBatch().put(b"after-fence-b", b"x"))),
        ("flush", lambda: db.flush()),
        ("flush_memtable", lambda: db.flush(memtable=True)),
        ("checkpoint", lambda: db.create_checkpoint()),
        ("refresh_manifest", lambda: db.refresh_manifest()),
        ("get", lambda: db.get(b"a-0000000")),
    ]
    out = []
    for name, fn in ops:
        try:
            fn()
            out.append({"op": name, "error": None})
        except ClosedError as exc:
            out.append({"op": name, "error": "ClosedError", "reason": exc.reason})
        except Exception as exc:
            out.append({"op": name, "error": type(exc).__name__, "message": str(exc)})
    return out


def _writer_main(argv: list[str]) -> int:
    """Process A. ``argv``: ``<db_dir> busy|idle``; commands arrive on stdin, one per line."""
    from shale import ClosedError
    from shale.db import Db
    from shale.settings import Settings

    db_dir, mode = argv[1], argv[2]
    db = Db.open(db_dir, Settings(**_settings_kw()))
    _emit({"event": "ready"})
    stop = threading.Event()

    def churn() -> None:
        # keeps memtables freezing and L0 flushes in flight; errors after the fence are expected
        n = 0
        try:
            while not stop.is_set():
                db.put(b"z-%07d" % n, os.urandom(2000), durable=False)
                n += 1
                if n % 50 == 0:
                    db.flush(memtable=True)
        except ClosedError:
            return

    try:
        n = 0
        if mode == "busy":
            threading.Thread(target=churn, daemon=True).start()
            while True:
                key = b"a-%07d" % n
                try:
                    db.put(key, b"value-%d" % n)
                except ClosedError as exc:
                    _emit(
                        {
                            "event": "fenced",
                            "reason": exc.reason,
                            "acked": n,
                            "close_reason": db.close_reason,
                        }
                    )
                    break
                n += 1
                if n == 20:
                    _emit({"event": "writing"})
        else:
            for n in range(50):
                db.put(b"a-%07d" % n, b"value-%d" % n)
            _emit({"event": "writing", "acked": 50})
        stop.set()
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "status":
                _emit({"event": "status", "close_reason": db.close_reason})
            elif cmd == "try":
                _emit({"event": "attempts", "results": _attempts(db)})
            elif cmd == "idle":
                time.sleep(1.0)  # background threads get every chance to act
                _emit({"event": "idled"})
            elif cmd == "close":
                db.close()
                _emit({"event": "closed", "close_reason": db.close_reason})
            elif cmd == "exit":
                return EXIT_FENCED if db.close_reason == "fenced" else EXIT_UNEXPECTED
        return EXIT_UNEXPECTED
    except BaseException as exc:
        _emit({"event": "unexpected", "error": repr(exc)})
        return EXIT_UNEXPECTED


# --------------------------------------------------------------------------------------------
# the test side
# --------------------------------------------------------------------------------------------


class _WriterA:
    """Process A, its stdin for commands and its JSON event lines."""

    def __init__(self, db_dir: Path, mode: str) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(db_dir), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.stderr = b""
        self._threads = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self._events.append(json.loads(line))
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def expect(self, event: str, timeout: float = LINE_TIMEOUT_S) -> dict[str, Any]:
        """The next event named ``event`` (fails on an ``unexpected`` event or a timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, e in enumerate(self._events):
                    if e["event"] == "unexpected":
                        raise AssertionError(f"writer A failed: {e} {self.stderr[-3000:]!r}")
                    if e["event"] == event:
                        del self._events[: i + 1]
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no {event!r} from writer A: {self._events} "
                        f"rc={self.proc.poll()} {self.stderr[-3000:]!r}"
                    )
                self._cond.wait(left)

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        """Send ``exit``, wait for the exit code, release the pipes."""
        try:
            self.send("exit")
            return self.proc.wait(timeout=LINE_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(timeout=10)
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()


def _bucket(db_dir: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every file under the database directory (temp files too): size, inode, mtime, hash."""
    out = {}
    for p in sorted(db_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(db_dir))] = (
                st.st_size,
                st.st_ino,
                st.st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest(),
            )
    return out


def _open(db_dir: Path) -> Any:
    from shale.db import Db
    from shale.settings import Settings

    return Db.open(str(db_dir), Settings(**_settings_kw()))


def test_busy_writer_is_fenced_and_writes_nothing_more(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    a = _WriterA(db_dir, "busy")
    try:
        a.expect("ready")
        a.expect("writing")
        time.sleep(0.3)  # WAL and L0 uploads well under way

        b = _open(db_dir)
        try:
            fenced = a.expect("fenced")
            assert fenced["reason"] == "fenced"
            assert fenced["close_reason"] == "fenced"
            acked = fenced["acked"]
            assert acked >= 20
            for i in range(100):
                b.put(b"b-%04d" % i, b"from-b-%d" % i)
            b.flush(memtable=True)
            b.put(b"b-wal", b"tail")
            for i in range(acked):
                assert b.get(b"a-%07d" % i) == b"value-%d" % i, i
        finally:
            b.close()

        before = _bucket(db_dir)
        a.send("try")
        attempts = a.expect("attempts")["results"]
        a.send("idle")
        a.expect("idled")
        a.send("close")
        closed = a.expect("closed")
        a.send("status")
        status = a.expect("status")
        after = _bucket(db_dir)
    finally:
        rc = a.finish()

    assert rc == EXIT_FENCED, a.stderr[-3000:]
    for r in attempts:
        assert r["error"] == "ClosedError" and r["reason"] == "fenced", r
    assert closed["close_reason"] == "fenced"
    assert status["close_reason"] == "fenced"
    assert after == before, {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(k for k in before if k in after and before[k] != after[k]),
    }

    # a fresh writer sees everything A acknowledged and everything B wrote
    c = _open(db_dir)
    try:
        for i in range(acked):
            assert c.get(b"a-%07d" % i) == b"value-%d" % i, i
        for i in range(100):
            assert c.get(b"b-%04d" % i) == b"from-b-%d" % i
        assert c.get(b"b-wal") == b"tail"
        assert c.get(b"after-fence") is None
        assert c.get(b"after-fence-2") is None
    finally:
        c.close()


def test_idle_writer_is_fenced_by_the_manifest_poller(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    a = _WriterA(db_dir, "idle")
    try:
        a.expect("ready")
        a.expect("writing")
        a.send("status")
        assert a.expect("status")["close_reason"] is None

        b = _open(db_dir)
        try:
            # A writes nothing; its poller (every 50 ms) must notice the newer writer epoch
            deadline = time.monotonic() + 10
            while True:
                a.send("status")
                if a.expect("status")["close_reason"] == "fenced":
                    break
                assert time.monotonic() < deadline, "A never noticed it was fenced"
                time.sleep(0.05)
            b.put(b"b", b"from-b")
        finally:
            b.close()
        before = _bucket(db_dir)
        a.send("try")
        attempts = a.expect("attempts")["results"]
        a.send("idle")
        a.expect("idled")
        a.send("close")
        a.expect("closed")
        after = _bucket(db_dir)
    finally:
        rc = a.finish()
    assert rc == EXIT_FENCED, a.stderr[-3000:]
    for r in attempts:
        assert r["error"] == "ClosedError" and r["reason"] == "fenced", r
    assert after == before

    c = _open(db_dir)
    try:
        for i in range(50):
            assert c.get(b"a-%07d" % i) == b"value-%d" % i
        assert c.get(b"b") == b"from-b"
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(_writer_main(sys.argv))
