"""Metrics overhead: put and get throughput with metrics on (the default) and off
(``metrics=False``), interleaved A/B rounds, medians. ``python tests/bench/bench_metrics.py
[--ops N] [--rounds R]``; docs/metrics.md quotes its output."""

from __future__ import annotations

import argparse
import statistics
import time

from shale import Db, Settings
from shale.objstore.memory import MemoryStore

SETTINGS = Settings(compactor_options=None, garbage_collector_options=None)


def one(metrics: bool, ops: int) -> tuple[float, float]:
    """(puts/s, gets/s) of one fresh in-memory database."""
    keys = [b"key%08d" % i for i in range(ops)]
    value = b"v" * 64
    with Db.open("bench", SETTINGS, object_store=MemoryStore(), metrics=metrics) as db:
        put = db.put
        t = time.perf_counter()
        for k in keys:
            put(k, value, durable=False)
        puts = ops / (time.perf_counter() - t)
        get = db.get
        t = time.perf_counter()
        for k in keys:
            get(k)
        gets = ops / (time.perf_counter() - t)
    return puts, gets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    one(True, 2000)  # warm up
    for r in range(args.rounds):
        for metrics in (True, False) if r % 2 == 0 else (False, True):
            results[metrics].append(one(metrics, args.ops))
    for i, what in enumerate(("put", "get")):
        on = statistics.median(x[i] for x in results[True])
        off = statistics.median(x[i] for x in results[False])
        print(
            f"{what}: metrics off {off:,.0f} ops/s, on {on:,.0f} ops/s, "
            f"overhead {100 * (off - on) / off:+.1f}% (median of {args.rounds} interleaved rounds)"
        )


if __name__ == "__main__":
    main()
