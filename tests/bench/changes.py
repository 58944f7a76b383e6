"""Change stream throughput (docs/changes.md): rows/s a ``db.changes()`` stream delivers while
the writer writes, and rows/s of catching up on a backlog with ``shale.changes``.

Run with ``python tests/bench/changes.py [--rows N]`` or as part of ``nox -s bench``. A local
directory store; write batches of 10 rows, not waiting for durability, WAL ``flush_interval``
10 ms. Prints one table; asserts nothing about timings (only that every row arrived in order).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time

import shale

BATCH = 10
VALUE = b"v" * 100


def _write(db: shale.Db, rows: int, start: int = 0) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + rows, BATCH):
        b = shale.WriteBatch()
        for j in range(i, i + BATCH):
            b.put(b"key%09d" % j, VALUE)
        db.write(b, durable=False)
    db.flush()
    return time.perf_counter() - t0


def tail_while_writing(path: str, rows: int) -> tuple[float, float]:
    """(stream rows/s, writer rows/s) with the stream tailing the running writer."""
    settings = shale.Settings(flush_interval=0.01)
    with shale.Db.open(path, settings) as db:
        stream = db.changes(poll_interval=0.05)
        took: list[float] = []
        writer = threading.Thread(target=lambda: took.append(_write(db, rows)))
        t0 = time.perf_counter()
        writer.start()
        n, last = 0, 0
        deadline = time.monotonic() + 300
        while n < rows and time.monotonic() < deadline:
            for ch in stream.read_batch(1.0, max_rows=10_000):
                assert ch.seq >= last
                last = ch.seq
                n += 1
        elapsed = time.perf_counter() - t0
        writer.join()
        stream.close()
    assert n == rows, (n, rows)
    return rows / elapsed, rows / took[0]


def catch_up(path: str, rows: int) -> float:
    """Rows/s of ``shale.changes(follow=False)`` over a backlog of ``rows`` rows."""
    with shale.Db.open(path, shale.Settings(flush_interval=0.01)) as db:
        _write(db, rows)
    t0 = time.perf_counter()
    with shale.changes(path, follow=False) as stream:
        n = sum(1 for _ in stream)
    elapsed = time.perf_counter() - t0
    assert n == rows, (n, rows)
    return rows / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=200_000, help="rows written (default 200000)")
    p.add_argument("--quick", action="store_true", help="20000 rows")
    args = p.parse_args(argv)
    rows = 20_000 if args.quick else args.rows
    rows -= rows % BATCH
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        stream_rate, write_rate = tail_while_writing(d1 + "/db", rows)
        backlog_rate = catch_up(d2 + "/db", rows)
    print(f"change stream ({rows} rows of {len(VALUE)} B, batches of {BATCH}, local store)")
    print(f"{'case':<44}{'rows/s':>12}")
    print(f"{'db.changes() tailing the writer':<44}{stream_rate:>12,.0f}")
    print(f"{'  (the writer meanwhile, durable=False)':<44}{write_rate:>12,.0f}")
    print(f"{'shale.changes() catching up on a backlog':<44}{backlog_rate:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
