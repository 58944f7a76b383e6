"""Latency and throughput of S3Store on a local SeaweedFS server, beside LocalStore.

Run: ``.venv/bin/python packages/shale-minio/benchmarks/bench_store.py [--small N] [--big N]``

Measures, one call at a time: small (1 KiB) put and get latency p50/p99, and 4 MiB put and get
throughput. The SeaweedFS server is started the same way as the test fixture.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from shale.objstore.local import LocalStore
from shale.objstore.protocol import ObjectStore
from shale_minio.testing import start_seaweed

MiB = 1 << 20


def _timings(n: int, fn: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench(name: str, store: ObjectStore, small_n: int, big_n: int) -> None:
    small = os.urandom(1024)
    big = os.urandom(4 * MiB)
    store.put("warm", small)
    store.get("warm")
    puts = _timings(small_n, lambda i: store.put(f"s/{i:06d}", small))
    gets = _timings(small_n, lambda i: store.get(f"s/{i:06d}"))
    big_puts = _timings(big_n, lambda i: store.put(f"b/{i:04d}", big))
    big_gets = _timings(big_n, lambda i: store.get(f"b/{i:04d}"))
    p = {q: (_pct(puts, q) * 1000, _pct(gets, q) * 1000) for q in (0.5, 0.99)}
    print(
        f"{name:<24} small put p50 {p[0.5][0]:5.2f} ms p99 {p[0.99][0]:5.2f} ms"
        f" | small get p50 {p[0.5][1]:5.2f} ms p99 {p[0.99][1]:5.2f} ms"
        f" | 4 MiB put {4 / statistics.median(big_puts):7.0f} MiB/s"
        f"  get {4 / statistics.median(big_gets):7.0f} MiB/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--big", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("LocalStore (fsync)", LocalStore(os.path.join(tmp, "a")), args.small, args.big)
        bench(
            "LocalStore (no fsync)",
            LocalStore(os.path.join(tmp, "b"), fsync=False),
            args.small,
            args.big,
        )
    with start_seaweed() as server, server.store() as store:
        bench("S3Store on SeaweedFS", store, args.small, args.big)


if __name__ == "__main__":
    main()
