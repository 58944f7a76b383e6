"""Micro-benchmarks of the accelerated modules, both twins side by side.

Reports block encode/decode MB/s, bloom build/probe ops/s, merge rows/s and memtable inserts
for the pure-Python and the Cython twin, and the ratio between them. Medians of several
repeats; these machines are shared, so read the ratios, not the absolute figures.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from types import ModuleType

from shale import _accel

REPEATS = 5


def _median_seconds(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rows(n: int, value_size: int = 100) -> list[tuple]:
    rnd = random.Random(7)
    return [
        (b"user:%010d" % i, 1000 + i, 0, rnd.randbytes(value_size), None, 1_700_000_000_000)
        for i in range(n)
    ]


def bench_block(impl: ModuleType) -> dict[str, float]:
    rows = _rows(20_000)
    raw = sum(len(r[0]) + len(r[3]) for r in rows)

    def encode() -> list[bytes]:
        blocks = []
        b = impl.BlockBuilder(4096, 2)
        for r in rows:
            if not b.add(r):
                blocks.append(b.finish())
                b = impl.BlockBuilder(4096, 2)
                b.add(r)
        blocks.append(b.finish())
        return blocks

    blocks = encode()
    enc = _median_seconds(encode)

    def decode() -> None:
        for blk in blocks:
            impl.decode_block(blk, 2)

    dec = _median_seconds(decode)
    return {
        "block encode MB/s": raw / enc / 1e6,
        "block decode MB/s": raw / dec / 1e6,
        "block decode rows/s": len(rows) / dec,
    }


def bench_bloom(impl: ModuleType) -> dict[str, float]:
    keys = [b"user:%010d" % i for i in range(100_000)]

    def build() -> bytes:
        out: bytes = impl.build_filter(impl.hash_keys(keys), 10)
        return out

    data = build()
    b = _median_seconds(build)
    f = impl.BloomFilter(data)
    hashes = impl.hash_keys(keys[:50_000])

    def probe() -> None:
        may = f.may_contain_hash
        for h in hashes:
            may(h)

    p = _median_seconds(probe)
    t_hash = _median_seconds(lambda: impl.hash_keys(keys))
    return {
        "bloom build keys/s": len(keys) / b,
        "bloom probe ops/s": len(hashes) / p,
        "siphash keys/s": len(keys) / t_hash,
    }


def bench_merge(impl: ModuleType) -> dict[str, float]:
    n = 100_000
    sources = []
    for s in range(4):
        sources.append([(b"k%09d" % (i * 4 + s), 10, 0, b"v", None, None) for i in range(n)])

    def run() -> int:
        c = 0
        for _ in impl.MergeIterator([iter(x) for x in sources]):
            c += 1
        return c

    t = _median_seconds(run, 3)
    return {"merge rows/s (4 sources)": 4 * n / t}


def bench_memtable(impl: ModuleType) -> dict[str, float]:
    rows = _rows(100_000, 16)

    def run() -> int:
        versions: dict[bytes, list[tuple]] = {}  # type: ignore[type-arg]
        impl.insert_rows(versions, [], rows, None)
        return len(versions)

    t = _median_seconds(run, 3)
    return {"memtable insert rows/s": len(rows) / t}


def bench_datawriter(impl: ModuleType) -> dict[str, float]:
    """Rows through the SST data writer (1 KB values, 4 KiB blocks: a compaction's write loop)."""
    n = 20_000
    rows = [(b"key%010d" % i, n - i, 0, bytes(1000), None, None) for i in range(n)]

    def run() -> int:
        w = impl.DataWriter(4096, 2, 0, None, False, True)
        w.add_rows(iter(rows), n, 1 << 62)
        w.close_block()
        return int(w.size)

    t = _median_seconds(run, 3)
    return {"SST data writer rows/s": n / t}


def run() -> list[tuple[str, float, float | None]]:
    """Rows of (metric, pure value, compiled value or None)."""
    out = []
    for name, fn in (
        ("block", bench_block),
        ("bloom", bench_bloom),
        ("merge", bench_merge),
        ("memtable", bench_memtable),
        ("datawriter", bench_datawriter),
    ):
        twins = _accel.twins(name)
        py = fn(twins["py"])
        c = fn(twins["c"]) if "c" in twins else {}
        for metric, value in py.items():
            out.append((metric, value, c.get(metric)))
    return out


def main() -> None:
    print("Accelerated modules, pure-Python vs Cython twin (medians; compare ratios)")
    print(f"{'metric':<28}{'pure':>14}{'cython':>14}{'cython/pure':>13}")
    for metric, py, c in run():
        cs = f"{c:>14,.0f}" if c is not None else f"{'not built':>14}"
        ratio = f"{c / py:>12.1f}x" if c else f"{'-':>13}"
        print(f"{metric:<28}{py:>14,.0f}{cs}{ratio}")


if __name__ == "__main__":
    main()
