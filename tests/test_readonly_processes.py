"""``shale get``/``scan`` against a writer running in another process fence nobody.

The writer (this file run as a script, :func:`_writer_main`) writes durable puts in a loop and
keeps memtables flushing to L0, so WAL uploads and manifest updates are in flight the whole
time; it reports every acknowledged write count on stdout. Meanwhile the test runs the
read-only commands, in-process and once as a real ``python -m shale`` process, and checks that
each sees every write acknowledged before it started, that the writer keeps writing, and that
the writer closes cleanly at the end (it was never fenced).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

LINE_TIMEOUT_S = 30.0


def _settings_kw() -> dict[str, Any]:
    return {
        "flush_interval": 0.01,
        "l0_sst_size_bytes": 16 * 1024,
        "l0_max_ssts": 100_000,
        "manifest_poll_interval": 0.05,
        "compactor_options": None,
        "garbage_collector_options": None,
    }


def _emit(obj: dict[str, Any]) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


def _writer_main(argv: list[str]) -> int:
    """The writer process. ``argv``: ``<db_dir>``; ``stop`` on stdin closes it."""
    from shale import ClosedError
    from shale.db import Db
    from shale.settings import Settings

    db = Db.open(argv[1], Settings(**_settings_kw()), store_options={"fsync": False})
    stop = threading.Event()

    def wait_for_stop() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    n = 0
    try:
        while not stop.is_set():
            db.put(b"a-%07d" % n, b"value-%d" % n + b"." * 200)
            n += 1
            if n % 10 == 0:
                _emit({"event": "acked", "n": n})
            if n % 100 == 0:
                db.flush(memtable=True)  # L0 flushes and manifest updates keep coming
    except ClosedError as exc:
        _emit({"event": "closed", "close_reason": exc.reason, "n": n})
        return 2
    db.close()
    _emit({"event": "closed", "close_reason": db.close_reason, "n": n})
    return 0


class _Writer:
    def __init__(self, db_dir: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(db_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.acked = 0
        self.closed: dict[str, Any] | None = None
        self.stderr = b""
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._cond:
                if event["event"] == "acked":
                    self.acked = event["n"]
                else:
                    self.closed = event
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_acked(self, n: int) -> int:
        deadline = time.monotonic() + LINE_TIMEOUT_S
        with self._cond:
            while self.acked < n:
                if self.closed is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"writer stopped at {self.acked}: {self.closed} {self.stderr[-3000:]!r}"
                    )
                self._cond.wait(0.5)
            return self.acked

    def stop(self) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(b"stop\n")
                self.proc.stdin.flush()
            except BrokenPipeError:  # it has exited already
                pass
            self.proc.wait(timeout=LINE_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(timeout=10)
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
        assert self.closed is not None, self.stderr[-3000:]
        return self.closed


def test_cli_reads_of_a_live_writer_in_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shale import cli

    db_dir = tmp_path / "db"
    writer = _Writer(db_dir)
    try:
        seen = writer.wait_acked(50)
        for round_ in range(8):
            seen = writer.wait_acked(seen + 20)  # the writer keeps writing between reads
            newest = seen - 1
            capsys.readouterr()
            assert cli.main(["get", str(db_dir), f"a-{newest:07d}"]) == 0
            out = capsys.readouterr().out
            assert out.startswith(f"value-{newest}."), out[:100]
            args = ["scan", str(db_dir), "--keys-only", "--prefix", "a-"]
            if round_ % 2:
                args.append("--reverse")
            assert cli.main(args) == 0
            keys = capsys.readouterr().out.split()
            assert len(keys) >= seen and len(set(keys)) == len(keys)
            assert set(keys) >= {f"a-{i:07d}" for i in range(seen)}
        # and once as a separate process, as a user would run it
        seen = writer.wait_acked(seen + 20)
        proc = subprocess.run(
            [sys.executable, "-m", "shale", "get", str(db_dir), f"a-{seen - 1:07d}"],
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith(b"value-%d." % (seen - 1))
        writer.wait_acked(seen + 50)  # still writing: not fenced
    finally:
        closed = writer.stop()
    assert closed["close_reason"] == "clean", (closed, writer.stderr[-3000:])
    assert writer.proc.returncode == 0


if __name__ == "__main__":
    sys.exit(_writer_main(sys.argv))
