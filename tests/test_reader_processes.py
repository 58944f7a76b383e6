"""One writer and three readers in separate processes: readers never go back in time and always
equal the model.

The writer process (this file run as ``writer``) writes a deterministic sequence of batches with
the in-process compactor and GC running (GC ``min_age`` 0.3 s, so SSTs and WALs a reader saw are
deleted under it); each batch also sets ``count`` to the number of batches written so far, so a
reader knows which model state it must equal. Early on it makes a checkpoint and reports its id.
Each reader process (``reader <mode>``) opens a :class:`shale.DbReader` in its mode with a fast
poller, and in a loop takes a snapshot, scans it whole, and checks: the rows equal the model at
that ``count``; ``count`` and the reader's seq never decrease; a ``checkpoint`` reader never
moves. It reports how many checks it made and the counts it saw.
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

KEYS = 40
RUN_S = 6.0
LINE_TIMEOUT_S = 60.0


def _settings() -> Any:
    from shale.settings import (
        CompactorOptions,
        GarbageCollectorOptions,
        GcDirectoryOptions,
        Settings,
    )

    gc = GcDirectoryOptions(interval=0.2, min_age=0.3)
    return Settings(
        flush_interval=0.01,
        l0_sst_size_bytes=4 * 1024,
        manifest_poll_interval=0.1,
        compactor_options=CompactorOptions(poll_interval=0.1, min_compaction_sources=2),
        garbage_collector_options=GarbageCollectorOptions(
            manifest=gc, wal=gc, compacted=gc, compactions=gc
        ),
    )


def _step(i: int) -> tuple[bytes, bytes | None]:
    """Batch ``i``: a put or (every 7th) a delete of one key, plus ``count = i + 1``."""
    key = b"k%02d" % ((i * 7) % KEYS)
    return (key, None) if i % 7 == 3 else (key, b"v%d-" % i + b"x" * 64)


def model(count: int) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for i in range(count):
        key, value = _step(i)
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    if count:
        out[b"count"] = b"%d" % count
    return out


def _diff(got: dict[bytes, bytes], want: dict[bytes, bytes]) -> list[Any]:
    keys = sorted(set(got) | set(want))
    return [
        (k, got.get(k, b"")[:8], want.get(k, b"")[:8]) for k in keys if got.get(k) != want.get(k)
    ]


def _emit(obj: dict[str, Any]) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


def _writer_main(db_dir: str) -> int:
    from shale import WriteBatch
    from shale.db import Db

    db = Db.open(db_dir, _settings(), store_options={"fsync": False})
    deadline = time.monotonic() + RUN_S
    i = 0
    while time.monotonic() < deadline:
        key, value = _step(i)
        b = WriteBatch()
        if value is None:
            b.delete(key)
        else:
            b.put(key, value)
        b.put(b"count", b"%d" % (i + 1))
        db.write(b)
        i += 1
        if i == 50:
            cp = db.create_checkpoint(lifetime=600)
            _emit({"event": "checkpoint", "id": str(cp.id)})
        if i % 25 == 0:
            db.flush(memtable=True)  # L0 SSTs keep coming, so the compactor and GC work
    db.close()
    _emit({"event": "closed", "n": i, "close_reason": db.close_reason})
    return 0


def _reader_main(db_dir: str, mode: str, checkpoint: str) -> int:
    from shale import DbReader, ReaderOptions

    options = ReaderOptions(manifest_poll_interval=0.05, checkpoint_lifetime=2.0)
    kw: dict[str, Any] = {"checkpoint": checkpoint} if mode == "checkpoint" else {"mode": mode}
    last_count = last_seq = -1
    checks = 0
    counts = set()
    with DbReader.open(db_dir, _settings(), options=options, **kw) as r:
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            seq = r.metrics()["last_seq"]
            with r.snapshot() as snap:
                rows = dict(snap.scan())
            count = int(rows.get(b"count", b"0"))
            want = model(count)
            assert rows == want, (mode, count, _diff(rows, want))
            assert count >= last_count and seq >= last_seq, (mode, count, last_count)
            if mode == "checkpoint":
                assert last_count in (-1, count), (count, last_count)
            last_count, last_seq = count, seq
            counts.add(count)
            checks += 1
        metrics = r.metrics()
        own = str(r.checkpoint.id) if r.checkpoint is not None else None
    _emit(
        {
            "event": "done",
            "mode": mode,
            "checks": checks,
            "distinct_counts": len(counts),
            "last_count": last_count,
            "retries": metrics["reader_read_retries"],
            "polls": metrics["reader_polls"],
            "checkpoint": own,
        }
    )
    return 0


class _Proc:
    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._out), threading.Thread(target=self._err)]
        for t in self._threads:
            t.daemon = True
            t.start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()

    def _err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_event(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + LINE_TIMEOUT_S
        with self._cond:
            while True:
                for e in self.events:
                    if e["event"] == name:
                        return e
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise AssertionError(f"exited without {name}: {self.stderr[-3000:]!r}")
                assert time.monotonic() < deadline, f"timed out waiting for {name}"
                self._cond.wait(0.2)

    def finish(self) -> int:
        try:
            rc = self.proc.wait(timeout=LINE_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(timeout=10)
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
        assert rc == 0, self.stderr[-3000:]
        return rc


def test_one_writer_three_readers_in_processes(tmp_path: Path) -> None:
    db_dir = str(tmp_path / "db")
    writer = _Proc("writer", db_dir)
    checkpoint = writer.wait_event("checkpoint")["id"]
    readers = [
        _Proc("reader", db_dir, mode, checkpoint)
        for mode in ("managed_checkpoint", "follow_latest", "checkpoint")
    ]
    closed = writer.wait_event("closed")
    writer.finish()
    assert closed["close_reason"] == "clean"  # no reader fenced it
    done = []
    for p in readers:
        done.append(p.wait_event("done"))
        p.finish()
    by_mode = {d["mode"]: d for d in done}
    for mode in ("managed_checkpoint", "follow_latest"):
        d = by_mode[mode]
        assert d["checks"] > 5 and d["distinct_counts"] > 3, d  # it followed the writer
        assert d["polls"] > 5, d
    assert by_mode["checkpoint"]["distinct_counts"] == 1
    assert by_mode["checkpoint"]["last_count"] >= 50
    # every reader's final state is the writer's final state or earlier, never beyond it
    for d in done:
        assert d["last_count"] <= closed["n"], d
    # the managed reader removed its checkpoint; the writer's own is still there
    from shale import DbReader

    own = by_mode["managed_checkpoint"]["checkpoint"]
    assert own is not None and own != checkpoint
    with DbReader.open(db_dir, _settings(), mode="follow_latest") as r:
        left = {str(c.id) for c in r.manifest().checkpoints}  # (and the compactor's)
        assert checkpoint in left and own not in left
        assert dict(r.scan()) == model(closed["n"])


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        sys.exit(_writer_main(sys.argv[2]))
    sys.exit(_reader_main(sys.argv[2], sys.argv[3], sys.argv[4]))
