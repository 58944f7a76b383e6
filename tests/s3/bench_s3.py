"""Engine speed over ``s3://`` (a private SeaweedFS server on loopback) beside a local directory.

Not a test (pytest does not collect it); run it by hand::

    .venv/bin/python tests/s3/bench_s3.py [--puts 300] [--writers-puts 30] [--rows 20000]

Measured, for each store:

* **durable put, 1 writer** -- sequential ``put()`` calls that each wait for their WAL SST:
  puts/s and latency p50/p99;
* **durable put, 64 writers** -- 64 threads doing the same at once (group commit shares one
  WAL upload between the writers that arrive during the previous one);
* **SST reads** -- ``--rows`` keys (16-byte keys, 100-byte values) written in batches and
  flushed to one L0 SST, then the database reopened (empty memtable, cold block cache):
  random point ``get`` s cold (blocks fetched from the store) and warm (block cache), and a
  full scan, cold and warm, in rows/s.

Prints a Markdown table. The server is started with :func:`shale_minio.testing.start_seaweed`
and removed afterwards; nothing touches the session servers of the test suite.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from shale.batch import WriteBatch
from shale.db import Db
from shale.settings import Settings

SETTINGS: dict[str, Any] = {
    "flush_interval": 0.01,
    "manifest_poll_interval": 1.0,
    "compactor_options": None,
    "garbage_collector_options": None,
}


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def _durable_puts(open_db: Callable[[], Db], writers: int, per_writer: int) -> dict[str, float]:
    db = open_db()
    try:
        db.put(b"warmup", b"x")
        latencies: list[float] = []
        lock = threading.Lock()
        start = threading.Barrier(writers + 1)

        def run(w: int) -> None:
            mine = []
            value = b"v" * 100
            start.wait()
            for i in range(per_writer):
                t0 = time.perf_counter()
                db.put(b"p%03d-%06d" % (w, i), value)
                mine.append(time.perf_counter() - t0)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    return {
        "ops_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": _pct(latencies, 0.99) * 1000,
    }


def _sst_reads(open_db: Callable[[], Db], rows: int, gets: int) -> dict[str, float]:
    db = open_db()
    try:
        for start in range(0, rows, 1000):
            batch = WriteBatch()
            for i in range(start, min(rows, start + 1000)):
                batch.put(b"key-%012d" % i, b"%08d" % i + b"r" * 92)
            db.write(batch)
        db.flush(memtable=True)
    finally:
        db.close()
    rng = random.Random(1)
    keys = [b"key-%012d" % rng.randrange(rows) for _ in range(gets)]
    out: dict[str, float] = {}
    db = open_db()  # cold: nothing in memory but the manifest
    try:
        assert len(db.manifest().l0) == 1 and db.metrics()["memtable_bytes"] == 0
        for label in ("cold", "warm"):
            lat = []
            t0 = time.perf_counter()
            for k in keys:
                t1 = time.perf_counter()
                v = db.get(k)
                lat.append(time.perf_counter() - t1)
                assert v is not None
            elapsed = time.perf_counter() - t0
            out[f"get_{label}_ops_s"] = len(keys) / elapsed
            out[f"get_{label}_p50_ms"] = statistics.median(lat) * 1000
            out[f"get_{label}_p99_ms"] = _pct(lat, 0.99) * 1000
    finally:
        db.close()
    db = open_db()
    try:
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            n = sum(1 for _ in db.scan())
            elapsed = time.perf_counter() - t0
            assert n == rows, n
            out[f"scan_{label}_rows_s"] = n / elapsed
    finally:
        db.close()
    return out


def _bench(name: str, make_open: Callable[[str], Callable[[], Db]], args: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"store": name}
    one = _durable_puts(make_open("put1"), 1, args.puts)
    many = _durable_puts(make_open("put64"), 64, args.writers_puts)
    reads = _sst_reads(make_open("reads"), args.rows, args.gets)
    res.update({f"put1_{k}": v for k, v in one.items()})
    res.update({f"put64_{k}": v for k, v in many.items()})
    res.update(reads)
    return res


def _table(results: list[dict[str, Any]]) -> str:
    rows: list[tuple[str, str | tuple[str, ...], str]] = [
        ("durable put, 1 writer: puts/s", "put1_ops_s", "{:,.0f}"),
        ("durable put, 1 writer: p50 / p99 ms", ("put1_p50_ms", "put1_p99_ms"), "{:.2f} / {:.2f}"),
        ("durable put, 64 writers: puts/s", "put64_ops_s", "{:,.0f}"),
        (
            "durable put, 64 writers: p50 / p99 ms",
            ("put64_p50_ms", "put64_p99_ms"),
            "{:.2f} / {:.2f}",
        ),
        ("get from SST, cold cache: gets/s", "get_cold_ops_s", "{:,.0f}"),
        (
            "get from SST, cold cache: p50 / p99 ms",
            ("get_cold_p50_ms", "get_cold_p99_ms"),
            "{:.3f} / {:.3f}",
        ),
        ("get from SST, warm cache: gets/s", "get_warm_ops_s", "{:,.0f}"),
        (
            "get from SST, warm cache: p50 / p99 ms",
            ("get_warm_p50_ms", "get_warm_p99_ms"),
            "{:.3f} / {:.3f}",
        ),
        ("full scan, cold cache: rows/s", "scan_cold_rows_s", "{:,.0f}"),
        ("full scan, warm cache: rows/s", "scan_warm_rows_s", "{:,.0f}"),
    ]
    head = "| measure | " + " | ".join(r["store"] for r in results) + " |"
    sep = "|---|" + "---:|" * len(results)
    lines = [head, sep]
    for label, key, fmt in rows:
        cells = []
        for r in results:
            names = key if isinstance(key, tuple) else (key,)
            vals = [r[k] for k in names]
            cells.append(fmt.format(*vals))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=300, help="durable puts of the 1-writer run")
    parser.add_argument(
        "--writers-puts", type=int, default=30, help="durable puts per writer of the 64-writer run"
    )
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the SST read runs")
    parser.add_argument("--gets", type=int, default=2_000, help="random point gets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from shale_minio.testing import start_seaweed

    settings = Settings(**SETTINGS)
    results = []
    with tempfile.TemporaryDirectory(prefix="shale-bench-local-") as tmp:
        results.append(
            _bench("local directory", lambda name: lambda: Db.open(f"{tmp}/{name}", settings), args)
        )
    with start_seaweed() as server:
        bucket = server.make_bucket()
        options = server.options()
        results.append(
            _bench(
                "s3:// (SeaweedFS, loopback)",
                lambda name: (
                    lambda: Db.open(f"s3://{bucket}/{name}", settings, store_options=options)
                ),
                args,
            )
        )
    sys.stdout.write(_table(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
