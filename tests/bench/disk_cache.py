"""The object-store disk cache over ``s3://`` (a private SeaweedFS server on loopback).

Not a test (pytest does not collect it); ``nox -s bench`` runs it, or by hand::

    python tests/bench/disk_cache.py [--rows 40000] [--gets 2000] [--quick]

A database of ``--rows`` rows (16-byte keys, 100-byte values) is written to S3 as L0 SSTs. Then,
each time through a fresh ``DbReader`` (an empty block cache, as a new process has):

* **no disk cache** -- cold random point gets and a full scan, every block from S3;
* **disk cache, cold** -- the same with an empty cache folder (the cache fills as it goes);
* **disk cache, warm** -- the same again with the folder the previous reader filled.

Beside it, the official package on the same database, each pass in a child process (its native
library stays out of this one): its ``DbReader`` (follow latest; the 0.17 Python reader takes no
cache options) with no disk cache, then its ``Db`` opened with ``object_store_cache_options``
(the only handle of the 0.17 binding that takes them) with an empty, then a filled cache folder.
The official passes run after shale's (its writer fences nobody that is still running).

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


_OFFICIAL = r"""
import asyncio, json, random, sys, time
import slatedb.uniffi as s

req = json.loads(sys.argv[1])


async def main():
    store = s.ObjectStore.resolve(f"s3://{req['bucket']}")
    rng = random.Random(7)
    keys = [b"key-%011d" % rng.randrange(req["rows"]) for _ in range(req["gets"])]
    if req["cache"] is None:
        builder = s.DbReaderBuilder(req["db_path"], store)
        builder.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
        handle = await builder.build()
    else:
        settings = s.Settings.default()
        settings.set("compactor_options", "null")
        settings.set("garbage_collector_options", "null")
        opts = json.loads(settings.to_json_string())["object_store_cache_options"]
        opts.update(root_folder=req["cache"], part_size_bytes=1 << 20)
        settings.set("object_store_cache_options", json.dumps(opts))
        builder = s.DbBuilder(req["db_path"], store)
        builder.with_settings(settings)
        handle = await builder.build()
    try:
        t0 = time.perf_counter()
        for k in keys:
            await handle.get(k)
        get_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        it = await handle.scan(
            s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
        )
        n = 0
        while True:
            batch = await it.next_batch(1024)
            if not batch:
                break
            n += len(batch)
        scan_s = time.perf_counter() - t0
    finally:
        await handle.shutdown()
    print(json.dumps({"gets/s": len(keys) / get_s, "scan rows/s": n / scan_s}))


asyncio.run(main())
"""


def _official_pass(
    server: Any, bucket: str, db_path: str, cache: str | None, rows: int, gets: int
) -> dict[str, Any] | None:
    """One official pass in a child process; ``None`` when the package is missing or failed."""
    import importlib.util
    import json
    import os
    import subprocess

    if importlib.util.find_spec("slatedb") is None:
        return None
    request = {"bucket": bucket, "db_path": db_path, "cache": cache, "rows": rows, "gets": gets}
    proc = subprocess.run(
        [sys.executable, "-c", _OFFICIAL, json.dumps(request)],
        env={**os.environ, **server.env()},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        print(f"official pass failed: {proc.stderr[-1500:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


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
        official = [
            _official_pass(server, bucket, "db", None, args.rows, args.gets),
            _official_pass(server, bucket, "db", f"{tmp}/official", args.rows, args.gets),
            _official_pass(server, bucket, "db", f"{tmp}/official", args.rows, args.gets),
        ]
    print(f"disk cache over S3 (SeaweedFS, loopback): {args.rows} rows, {args.gets} random gets\n")
    print(
        "| pass | shale cold gets/s | official | ratio | shale full scan rows/s | official"
        " | ratio | shale SST reads from disk |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, r), o in zip(results, official, strict=True):
        og = "-" if o is None else f"{o['gets/s']:,.0f}"
        os_ = "-" if o is None else f"{o['scan rows/s']:,.0f}"
        rg = "-" if o is None else f"{r['gets/s'] / o['gets/s']:.2f}x"
        rs = "-" if o is None else f"{r['scan rows/s'] / o['scan rows/s']:.2f}x"
        print(
            f"| {name} | {r['gets/s']:,.0f} | {og} | {rg} | {r['scan rows/s']:,.0f} | {os_}"
            f" | {rs} | {r['local']:.0%} |"
        )
    print(
        "\nofficial: its DbReader without a cache (first row), its Db with "
        "object_store_cache_options (empty folder, then filled); shale: a DbReader each time."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
