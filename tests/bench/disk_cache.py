"""The object-store disk cache over ``s3://`` (a private SeaweedFS server on loopback).

Not a test (pytest does not collect it); ``nox -s bench`` runs it, or by hand::

    python tests/bench/disk_cache.py [--rows 40000] [--gets 2000] [--quick]

A database of ``--rows`` rows (16-byte keys, 100-byte values) is written to S3 as L0 SSTs. Then,
each time through a fresh ``DbReader`` (an empty block cache, as a new process has):

* **no disk cache** -- cold random point gets and a full scan, every block from S3;
* **disk cache, cold** -- the same with an empty cache folder (the cache fills as it goes);
* **disk cache, warm** -- the same again with the folder the previous reader filled.

Prints a Markdown table: gets/s, scan rows/s, and the share of SST reads served from disk. Never
asserts on timings. The server is started with :func:`shale_minio.testing.start_seaweed` and
removed afterwards.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from typing import Any

from shale import Db, DbReader, Settings

BASE: dict[str, Any] = {"compactor_options": None, "garbage_collector_options": None}


def _reader_pass(
    url: str, options: dict[str, Any], settings: Settings, rows: int, gets: int
) -> dict[str, Any]:
    rng = random.Random(7)
    keys = [b"key-%011d" % rng.randrange(rows) for _ in range(gets)]
    reads = local = 0
    with DbReader.open(url, settings=settings, store_options=options) as reader:
        t0 = time.perf_counter()
        for k in keys:
            reader.get(k)
        get_s = time.perf_counter() - t0
        m = reader.metrics()
        reads += m.get("disk_cache_reads", 0)
        local += m.get("disk_cache_reads_local", 0)
    with DbReader.open(url, settings=settings, store_options=options) as reader:
        t0 = time.perf_counter()
        n = sum(1 for _ in reader.scan())
        scan_s = time.perf_counter() - t0
        m = reader.metrics()
        reads += m.get("disk_cache_reads", 0)
        local += m.get("disk_cache_reads_local", 0)
    share = local / reads if reads else 0.0
    return {"gets/s": gets / get_s, "scan rows/s": n / scan_s, "local": share}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=40_000)
    p.add_argument("--gets", type=int, default=2_000)
    p.add_argument("--quick", action="store_true", help="10,000 rows and 500 gets")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.gets = 10_000, 500

    from shale_minio.testing import start_seaweed

    with start_seaweed() as server, tempfile.TemporaryDirectory() as tmp:
        bucket = server.make_bucket("bench-disk-cache")
        url = f"s3://{bucket}/db"
        options = server.options()
        with Db.open(url, Settings(**BASE, l0_max_ssts=1000), store_options=options) as db:
            value = b"v" * 100
            for i in range(args.rows):
                db.put(b"key-%011d" % i, value, durable=False)
                if i % 10_000 == 9_999:
                    db.flush(memtable=True)
            db.flush(memtable=True)
        plain = Settings(**BASE)
        cached = Settings.from_dict(
            {
                "object_store_cache_options": {
                    "root_folder": f"{tmp}/cache",
                    "part_size_bytes": "1MiB",
                }
            },
            plain,
        )
        results = [
            ("no disk cache", _reader_pass(url, options, plain, args.rows, args.gets)),
            ("disk cache, cold", _reader_pass(url, options, cached, args.rows, args.gets)),
            ("disk cache, warm", _reader_pass(url, options, cached, args.rows, args.gets)),
        ]
    print(f"disk cache over S3 (SeaweedFS, loopback): {args.rows} rows, {args.gets} random gets\n")
    print("| reader | cold gets/s | full scan rows/s | SST reads from disk |")
    print("|---|---:|---:|---:|")
    for name, r in results:
        print(f"| {name} | {r['gets/s']:,.0f} | {r['scan rows/s']:,.0f} | {r['local']:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
