"""Change data capture with real processes: writers that fence each other, WAL GC running in
the writer, and a consumer killed with SIGKILL mid-stream.

1. The test creates the database and starts a consumer process, ``shale changes DIR --follow
   --consumer idx`` (it commits its cursor after each batch of printed lines), before any
   write: its cursor pins the WAL from the start.
2. Writer ``a`` (this file run as ``writer a``) writes unique keys and prints each
   acknowledged seq; the writer's in-process GC deletes WALs flushed to L0 (``min_age`` 0.2 s).
3. The consumer is killed with SIGKILL once it has printed some lines; its stored cursor ``C``
   is read.
4. Writer ``b`` opens (fencing ``a``: ``a``'s next write fails), writes more and closes.
5. A new consumer resumes from the stored cursor and runs to the end.

Checks: the first consumer printed every acknowledged seq up to ``C`` once, in order; the
resumed one printed exactly the acknowledged seqs after ``C`` (nothing lost, nothing
duplicated past the cursor) -- plus at most ``a``'s one write that was durable but whose
acknowledgement the fence cut off; no row of ``a`` after the fence; and GC did delete WALs
(the ones before the pin), so the pin is what kept the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WAIT_S = 60.0


def _settings() -> Any:
    from shale.settings import GarbageCollectorOptions, GcDirectoryOptions, Settings

    gc = GcDirectoryOptions(interval=0.1, min_age=0.2)
    return Settings(
        flush_interval=0.005,
        l0_sst_size_bytes=2 * 1024,
        compactor_options=None,
        garbage_collector_options=GarbageCollectorOptions(
            manifest=None, wal=gc, compacted=None, compactions=None
        ),
    )


def _writer_main(db_dir: str, tag: str, count: int) -> int:
    import shale

    db = shale.Db.open(db_dir, _settings())
    try:
        for i in range(count):
            key = f"{tag}{i:05d}"
            h = db.put(key.encode(), b"x" * 40)
            os.write(1, (json.dumps({"key": key, "seq": h.seq}) + "\n").encode())
    except shale.ClosedError:
        os.write(1, b'{"fenced": true}\n')
        return 0
    db.close()
    os.write(1, b'{"closed": true}\n')
    return 0


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def _wait(pred: Any, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _spawn(args: list[str], out: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with out.open("wb") as f, out.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(args, stdout=f, stderr=err, env=env)


def _err(out: Path) -> str:
    return out.with_suffix(".err").read_text()[-3000:]


def _consumer(db_dir: str, out: Path, follow: bool) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "shale", "changes", db_dir, "--consumer", "idx"]
    cmd += ["--follow", "--poll-interval", "0.02"] if follow else []
    return _spawn(cmd, out)


def _writer(db_dir: str, tag: str, count: int, out: Path) -> subprocess.Popen[bytes]:
    me = str(Path(__file__).resolve())
    return _spawn([sys.executable, me, "writer", db_dir, tag, str(count)], out)


def test_killed_consumer_resumes_exactly_across_fencing_and_gc(tmp_path: Path) -> None:
    import shale
    from shale.meta.consumers import read_cursor
    from shale.objstore.local import LocalStore

    db_dir = str(tmp_path / "db")
    shale.Db.open(db_dir, _settings()).close()
    cursor_file = tmp_path / "db" / "shale-consumers" / "idx.json"
    c1_out, c2_out = tmp_path / "c1.jsonl", tmp_path / "c2.jsonl"
    a_out, b_out = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        c1 = _consumer(db_dir, c1_out, follow=True)
        procs.append(c1)
        _wait(cursor_file.is_file, "the consumer's first cursor")
        a = _writer(db_dir, "a", 100_000, a_out)  # until fenced
        procs.append(a)
        _wait(lambda: len(_lines(c1_out)) >= 60, "the consumer to print 60 changes")
        c1.send_signal(signal.SIGKILL)
        c1.wait(WAIT_S)
        b = _writer(db_dir, "b", 80, b_out)
        procs.append(b)
        assert b.wait(WAIT_S) == 0, _err(b_out)
        assert a.wait(WAIT_S) == 0, _err(a_out)
        cursor = read_cursor(LocalStore(str(tmp_path)), "db", "idx")
        assert cursor is not None and cursor.seq is not None
        wal_ids = [f.id for f in shale.WalReader(db_dir).list()]
        assert min(wal_ids) > 1  # GC deleted WALs (those before the pin) ...
        assert min(wal_ids) <= cursor.wal_id  # ... and kept the pinned one
        c2 = _consumer(db_dir, c2_out, follow=False)
        procs.append(c2)
        assert c2.wait(WAIT_S) == 0, _err(c2_out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    a_lines, b_lines = _lines(a_out), _lines(b_out)
    assert a_lines[-1] == {"fenced": True} and b_lines[-1] == {"closed": True}
    acked = {d["key"]: d["seq"] for d in a_lines + b_lines if "key" in d}
    a_last = max(int(k[1:]) for k in acked if k.startswith("a"))
    first = [(d["seq"], d["key"]) for d in _lines(c1_out)]
    resumed = [(d["seq"], d["key"]) for d in _lines(c2_out)]
    c = cursor.seq
    # the killed consumer: every acknowledged write up to its cursor, once, in order
    assert [s for s, _ in first] == sorted({s for s, _ in first})
    assert [k for s, k in first if s <= c] == [
        k for k, s in sorted(acked.items(), key=lambda kv: kv[1]) if s <= c
    ]
    # resumed: exactly what comes after the cursor
    assert all(s > c for s, _ in resumed)
    assert [s for s, _ in resumed] == sorted({s for s, _ in resumed})
    extra = [k for _, k in resumed if k not in acked]
    assert extra in ([], [f"a{a_last + 1:05d}"])  # durable, its ack cut off by the fence
    assert [k for _, k in resumed if k in acked] == [
        k for k, s in sorted(acked.items(), key=lambda kv: kv[1]) if s > c
    ]
    for _, k in first + resumed:  # every streamed row is a write that was made
        assert k in acked or k in extra
    assert len([k for k in acked if k.startswith("b")]) == 80


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        sys.exit(_writer_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    sys.exit(2)
