"""Engine benchmark: shale's ``Db`` beside the official ``slatedb`` 0.17.0 package, one run.

Every workload runs with the same parameters on both engines, against a local-directory object
store in a fresh temporary directory, with the compactor and the garbage collector disabled on
both sides (so what is compared is the write and read path, not background work). Each engine
runs each workload in its own child process (this file doubles as the worker script, see
``--worker``), so peak RSS is per workload and neither engine's threads share a GIL or an
allocator with the other's.

How each side is driven:

* shale: the synchronous :class:`shale.Db` API, ``durable=False`` for writes that do not wait,
  threads for concurrent durable writers.
* official: ``import slatedb.uniffi`` (async API). ``put``/``write`` return before durability in
  0.17; a durable write awaits ``WriteHandle.await_durable()``; concurrent writers are asyncio
  tasks. Every call crosses the UniFFI/ctypes boundary, which costs tens to hundreds of
  microseconds per call from Python: the official column measures *the official package as a
  Python program uses it*, not the Rust engine alone.

Differences that matter when reading the table: shale's local store fsyncs durable writes by
default, the Rust ``object_store`` local store the official package uses does not, so the
durable-put rows are repeated with ``fsync=False`` for shale. shale flushes the WAL as soon as a
durable writer waits; SlateDB waits for the next ``flush_interval`` tick (100 ms on both).

Timed loops stop after ``count`` operations or ``cap`` seconds, whichever comes first (the
official package is slow enough per call that a fixed count would take minutes). Throughputs are
medians over ``repeats`` runs; latencies are medians of per-operation timings.

Run ``python tests/bench/engine.py`` (full, about 5 minutes on 2 cores), ``--quick`` (smaller
sizes), ``--scale 0.1`` (shrink further), ``--only reads,bulk``, ``--json out.json`` (raw
results), ``--profile`` (cProfile of shale's put/get/scan paths, in-process, no comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import importlib.util
import io
import json
import os
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

ENGINES = ("shale", "official")
RESULT_PREFIX = "BENCH-RESULT "
MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Params:
    """Sizes of every workload (counts are upper bounds; ``cap`` seconds stop a loop early)."""

    value_size: int = 100
    put_count: int = 200_000
    put_cap: float = 4.0
    durable_cap: float = 2.0
    batch_rows: int = 200_000
    batch_size: int = 100
    batch_cap: float = 4.0
    read_keys: int = 100_000
    get_count: int = 100_000
    get_cap: float = 3.0
    scan_count: int = 2_000
    scan_cap: float = 3.0
    scan_len: int = 100
    bulk_rows: int = 200_000
    bulk_value_size: int = 1000
    reopen_rows: int = 200_000
    repeats: int = 3
    writers: int = 64
    txn_cap: float = 2.0
    txn_threads: int = 16

    def scaled(self, factor: float) -> Params:
        """Counts and caps multiplied by ``factor`` (floors keep every loop meaningful)."""
        if factor == 1.0:
            return self

        def n(x: int, floor: int) -> int:
            return max(floor, int(x * factor))

        def t(x: float) -> float:
            return max(0.2, x * factor)

        return dataclasses.replace(
            self,
            put_count=n(self.put_count, 500),
            put_cap=t(self.put_cap),
            durable_cap=t(self.durable_cap),
            batch_rows=n(self.batch_rows, 10 * self.batch_size),
            batch_cap=t(self.batch_cap),
            read_keys=n(self.read_keys, 2 * self.scan_len + 100),
            get_count=n(self.get_count, 500),
            get_cap=t(self.get_cap),
            scan_count=n(self.scan_count, 50),
            scan_cap=t(self.scan_cap),
            bulk_rows=n(self.bulk_rows, 500),
            reopen_rows=n(self.reopen_rows, 500),
            txn_cap=t(self.txn_cap),
        )


FULL = Params()
QUICK = dataclasses.replace(
    FULL,
    put_count=50_000,
    put_cap=1.0,
    durable_cap=0.5,
    batch_rows=50_000,
    batch_cap=1.0,
    read_keys=20_000,
    get_count=20_000,
    get_cap=1.0,
    scan_count=500,
    scan_cap=1.0,
    bulk_rows=20_000,
    reopen_rows=20_000,
    repeats=1,
    txn_cap=0.5,
)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the workers
# ---------------------------------------------------------------------------------------------


def _key(i: int) -> bytes:
    return b"key%012d" % i


def _missing_key(i: int) -> bytes:
    return b"key%012d.m" % i  # sorts between key i and key i+1: inside every SST's key range


def _shuffled(n: int, seed: int) -> list[int]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return idx


def _values(n: int, size: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(size) for _ in range(n)]


class _ValuePool:
    """Distinct ``size``-byte values cut from a 1 MiB random pool (a fresh object each call)."""

    def __init__(self, size: int, seed: int = 99) -> None:
        self.size = size
        self._pool = random.Random(seed).randbytes(MiB + size)
        self._span = MiB

    def get(self, i: int) -> bytes:
        off = (i * 7919) % self._span
        return self._pool[off : off + self.size]


def _peak_rss_mib() -> float:
    """Peak resident set size of this process (``VmHWM``), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _capped(op: Callable[[Any], Any], items: Sequence[Any], cap: float) -> float:
    """Call ``op`` on ``items`` until done or ``cap`` seconds passed; return ops/s."""
    start = time.perf_counter()
    deadline = start + cap
    done = 0
    for lo in range(0, len(items), 512):
        chunk = items[lo : lo + 512]
        for item in chunk:
            op(item)
        done += len(chunk)
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start)


async def _acapped(op: Callable[[Any], Awaitable[Any]], items: Sequence[Any], cap: float) -> float:
    """:func:`_capped` for a coroutine function."""
    start = time.perf_counter()
    deadline = start + cap
    done = 0
    for lo in range(0, len(items), 512):
        chunk = items[lo : lo + 512]
        for item in chunk:
            await op(item)
        done += len(chunk)
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start)


def _p50_p99(lat: list[float]) -> tuple[float, float]:
    lat = sorted(lat)
    return statistics.median(lat) * 1e6, lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e6


def _latencies_us(
    op: Callable[[int], Any], starts: Sequence[int], cap: float
) -> tuple[float, float]:
    """(p50, p99) latency of ``op(start)`` in microseconds."""
    lat = []
    deadline = time.perf_counter() + cap
    for s in starts:
        t0 = time.perf_counter()
        op(s)
        lat.append(time.perf_counter() - t0)
        if t0 >= deadline:
            break
    return _p50_p99(lat)


async def _alatencies_us(
    op: Callable[[int], Awaitable[Any]], starts: Sequence[int], cap: float
) -> tuple[float, float]:
    lat = []
    deadline = time.perf_counter() + cap
    for s in starts:
        t0 = time.perf_counter()
        await op(s)
        lat.append(time.perf_counter() - t0)
        if t0 >= deadline:
            break
    return _p50_p99(lat)


def _median_of(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# ---------------------------------------------------------------------------------------------
# shale workers
# ---------------------------------------------------------------------------------------------


def _shale_open(path: str, *, fsync: bool = True) -> Any:
    from shale.db import Db
    from shale.settings import Settings

    settings = Settings(compactor_options=None, garbage_collector_options=None)
    return Db.open(path, settings, store_options={"fsync": fsync})


def _shale_populate(db: Any, n: int, size: int) -> None:
    from shale.batch import WriteBatch

    values = _values(n, size, seed=5)
    for lo in range(0, n, 1000):
        wb = WriteBatch()
        for i in range(lo, min(n, lo + 1000)):
            wb.put(_key(i), values[i])
        db.write(wb, durable=False)


def shale_put(p: Params, root: str) -> dict[str, float]:
    """Puts that do not wait for durability, fresh database per repeat."""
    values = _values(4096, p.value_size, seed=1)
    keys = [_key(i) for i in _shuffled(p.put_count, seed=2)]
    items = [(k, values[i % 4096]) for i, k in enumerate(keys)]
    rates = []
    for r in range(p.repeats):
        db = _shale_open(os.path.join(root, f"db{r}"))
        try:
            put = db.put
            rates.append(_capped(lambda kv: put(kv[0], kv[1], durable=False), items, p.put_cap))
        finally:
            db.close()
    return {"put_nowait": _median_of(rates)}


def _shale_durable(p: Params, root: str, writers: int, fsync: bool) -> float:
    value = b"v" * p.value_size
    rates = []
    for r in range(p.repeats):
        db = _shale_open(os.path.join(root, f"db{r}"), fsync=fsync)
        try:
            counts = [0] * writers
            barrier = threading.Barrier(writers + 1)
            deadline = [0.0]

            def writer(w: int) -> None:
                barrier.wait()
                n = 0
                stop = deadline[0]
                while time.perf_counter() < stop:
                    db.put(b"w%03d-%09d" % (w, n), value)
                    n += 1
                counts[w] = n

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
            for t in threads:
                t.start()
            start = time.perf_counter()
            deadline[0] = start + p.durable_cap
            barrier.wait()
            for t in threads:
                t.join()
            rates.append(sum(counts) / (time.perf_counter() - start))
        finally:
            db.close()
    return _median_of(rates)


def shale_durable1(p: Params, root: str) -> dict[str, float]:
    return {"durable_1": _shale_durable(p, root, 1, True)}


def shale_durable64(p: Params, root: str) -> dict[str, float]:
    return {"durable_n": _shale_durable(p, root, p.writers, True)}


def shale_durable1_nofsync(p: Params, root: str) -> dict[str, float]:
    return {"durable_1_nofsync": _shale_durable(p, root, 1, False)}


def shale_durable64_nofsync(p: Params, root: str) -> dict[str, float]:
    return {"durable_n_nofsync": _shale_durable(p, root, p.writers, False)}


def shale_batch(p: Params, root: str) -> dict[str, float]:
    """Write batches of ``batch_size`` puts (not waiting for durability), rows/s."""
    from shale.batch import WriteBatch

    values = _values(4096, p.value_size, seed=1)
    keys = [_key(i) for i in _shuffled(p.batch_rows, seed=3)]
    groups = [keys[lo : lo + p.batch_size] for lo in range(0, len(keys), p.batch_size)]
    rates = []
    for r in range(p.repeats):
        db = _shale_open(os.path.join(root, f"db{r}"))
        try:

            def one(group: list[bytes]) -> None:
                wb = WriteBatch()
                for j, k in enumerate(group):
                    wb.put(k, values[j])
                db.write(wb, durable=False)

            rates.append(_capped(one, groups, p.batch_cap) * p.batch_size)
        finally:
            db.close()
    return {"batch": _median_of(rates)}


def _shale_txn(p: Params, root: str, isolation: str, workers: int) -> float:
    """Small transactions (read one key, write it back plus one), not waiting for
    durability; each worker has its own keys, so none conflict: this is commit overhead."""
    value = b"v" * p.value_size
    db = _shale_open(os.path.join(root, f"{isolation}-{workers}"))
    try:
        counts = [0] * workers
        barrier = threading.Barrier(workers + 1)
        deadline = [0.0]

        def worker(w: int) -> None:
            barrier.wait()
            n = 0
            stop = deadline[0]
            while time.perf_counter() < stop:
                txn = db.begin(isolation)
                key = b"t%02d-%05d" % (w, n % 1000)
                txn.get(key)
                txn.put(key, value)
                txn.put(b"t%02d-last" % w, key)
                txn.commit(durable=False)
                n += 1
            counts[w] = n

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        start = time.perf_counter()
        deadline[0] = start + p.txn_cap
        barrier.wait()
        for t in threads:
            t.join()
        return sum(counts) / (time.perf_counter() - start)
    finally:
        db.close()


def shale_txn(p: Params, root: str) -> dict[str, float]:
    out = {}
    for iso, name in (("snapshot", "si"), ("serializable", "ssi")):
        for workers in (1, p.txn_threads):
            out[f"txn_{name}_{workers if workers == 1 else 'n'}"] = _shale_txn(
                p, root, iso, workers
            )
    return out


def shale_reads(p: Params, root: str) -> dict[str, float]:
    """Gets and scans, first from the memtable, then from a warm L0 SST."""
    db = _shale_open(os.path.join(root, "db"))
    out: dict[str, float] = {}
    try:
        n = p.read_keys
        _shale_populate(db, n, p.value_size)
        order = _shuffled(n, seed=4)
        hit = [_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        miss = [_missing_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        starts = random.Random(6).choices(range(n - p.scan_len), k=p.scan_count)
        get = db.get

        def scan100(s: int) -> None:
            rows = list(db.scan(_key(s), _key(s + p.scan_len)))
            assert len(rows) == p.scan_len

        def full_scan() -> float:
            t0 = time.perf_counter()
            c = 0
            for _ in db.scan():
                c += 1
            assert c == n
            return c / (time.perf_counter() - t0)

        out["get_mem"] = _median_of(_capped(get, hit, p.get_cap) for _ in range(p.repeats))
        out["scan_full_mem"] = _median_of(full_scan() for _ in range(p.repeats))
        out["scan100_mem_us"], out["scan100_mem_p99_us"] = _latencies_us(
            scan100, starts, p.scan_cap
        )
        db.flush(memtable=True)
        for i in range(0, n, 16):  # one get per block or better: every block is cached
            get(_key(i))
        out["get_sst"] = _median_of(_capped(get, hit, p.get_cap) for _ in range(p.repeats))
        out["get_missing"] = _median_of(_capped(get, miss, p.get_cap) for _ in range(p.repeats))
        out["scan_full_sst"] = _median_of(full_scan() for _ in range(p.repeats))
        out["scan100_sst_us"], out["scan100_sst_p99_us"] = _latencies_us(
            scan100, starts, p.scan_cap
        )
        assert get(_missing_key(0)) is None and get(_key(0)) is not None
    finally:
        db.close()
    return out


def shale_reader(p: Params, root: str) -> dict[str, float]:
    """A DbReader (follow_latest) on a database a writer left in one L0 SST: gets and scans."""
    from shale.reader import DbReader

    path = os.path.join(root, "db")
    n = p.read_keys
    db = _shale_open(path)
    try:
        _shale_populate(db, n, p.value_size)
        db.flush(memtable=True)
    finally:
        db.close()
    out: dict[str, float] = {}
    with DbReader.open(path, _shale_open_settings(), mode="follow_latest") as r:
        order = _shuffled(n, seed=4)
        hit = [_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        miss = [_missing_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        starts = random.Random(6).choices(range(n - p.scan_len), k=p.scan_count)
        get = r.get
        for i in range(0, n, 16):  # every block cached, as in the writer's get_sst
            get(_key(i))

        def scan100(s: int) -> None:
            rows = list(r.scan(_key(s), _key(s + p.scan_len)))
            assert len(rows) == p.scan_len

        def full_scan() -> float:
            t0 = time.perf_counter()
            c = sum(1 for _ in r.scan())
            assert c == n
            return c / (time.perf_counter() - t0)

        out["reader_get"] = _median_of(_capped(get, hit, p.get_cap) for _ in range(p.repeats))
        out["reader_get_missing"] = _median_of(
            _capped(get, miss, p.get_cap) for _ in range(p.repeats)
        )
        out["reader_scan_full"] = _median_of(full_scan() for _ in range(p.repeats))
        out["reader_scan100_us"], out["reader_scan100_p99_us"] = _latencies_us(
            scan100, starts, p.scan_cap
        )
        assert get(_missing_key(0)) is None and get(_key(0)) is not None
    return out


def _shale_open_settings() -> Any:
    from shale.settings import Settings

    return Settings(compactor_options=None, garbage_collector_options=None)


def shale_bulk(p: Params, root: str) -> dict[str, float]:
    """``bulk_rows`` non-durable puts of ``bulk_value_size`` bytes, then a flush: MB/s, RSS."""
    db = _shale_open(os.path.join(root, "db"))
    try:
        pool = _ValuePool(p.bulk_value_size)
        base = _rss_mib()
        put = db.put
        t0 = time.perf_counter()
        for i in range(p.bulk_rows):
            put(_key(i), pool.get(i), durable=False)
        db.flush()
        dt = time.perf_counter() - t0
    finally:
        db.close()
    mb = p.bulk_rows * p.bulk_value_size / 1e6
    return {"bulk_mbps": mb / dt, "bulk_rss": _peak_rss_mib(), "bulk_rss_base": base}


def shale_reopen_write(p: Params, root: str) -> dict[str, float]:
    """Leave ``reopen_rows`` rows in the WAL only (no L0 flush), for :func:`shale_reopen_open`."""
    from shale.batch import WriteBatch

    db = _shale_open(os.path.join(root, "db"))
    try:
        value = b"r" * p.value_size
        for lo in range(0, p.reopen_rows, 100):
            wb = WriteBatch()
            for i in range(lo, min(p.reopen_rows, lo + 100)):
                wb.put(_key(i), value)
            db.write(wb, durable=False)
        db.flush()
        assert db.metrics()["l0_sst_count"] == 0
    finally:
        db.close()
    return {}


def shale_reopen_open(p: Params, root: str) -> dict[str, float]:
    """Open copies of the database left by :func:`shale_reopen_write`: seconds to open.

    Imports and plugin discovery happen before the clock starts (a once-per-process cost).
    """
    import shale.db
    import shale.settings  # noqa: F401
    from shale.plugins import get_host

    get_host()
    times = []
    firsts: list[float] = []
    for r in range(p.repeats):
        copy = os.path.join(root, f"copy{r}")
        shutil.copytree(os.path.join(root, "db"), copy)
        t0 = time.perf_counter()
        db = _shale_open(copy)
        dt = time.perf_counter() - t0
        try:
            t1 = time.perf_counter()
            assert db.get(_key(p.reopen_rows // 2)) is not None
            firsts.append((time.perf_counter() - t1) * 1e6)
            replayed = db.metrics().get("wal_replayed_rows", 0)
            assert replayed == p.reopen_rows, replayed
        finally:
            db.close()
        times.append(dt)
    return {"reopen_s": _median_of(times), "first_get_us": _median_of(firsts)}


# ---------------------------------------------------------------------------------------------
# official workers (async)
# ---------------------------------------------------------------------------------------------


def _slatedb() -> Any:
    import slatedb.uniffi as s  # only the official workers load the native library

    return s


async def _official_open(path: str) -> Any:
    s = _slatedb()
    store = s.ObjectStore.resolve("file:///")
    settings = s.Settings.default()
    settings.set("compactor_options", "null")
    settings.set("garbage_collector_options", "null")
    builder = s.DbBuilder(os.path.abspath(path).lstrip("/"), store)
    builder.with_settings(settings)
    return await builder.build()


async def _official_close(db: Any, wal_only: bool = False) -> None:
    s = _slatedb()
    if wal_only:
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), 120
        )
    else:
        await asyncio.wait_for(db.shutdown(), 120)


async def _official_populate(db: Any, n: int, size: int) -> None:
    s = _slatedb()
    values = _values(n, size, seed=5)
    for lo in range(0, n, 1000):
        wb = s.WriteBatch()
        for i in range(lo, min(n, lo + 1000)):
            wb.put(_key(i), values[i])
        await db.write(wb)


async def official_put(p: Params, root: str) -> dict[str, float]:
    values = _values(4096, p.value_size, seed=1)
    keys = [_key(i) for i in _shuffled(p.put_count, seed=2)]
    items = [(k, values[i % 4096]) for i, k in enumerate(keys)]
    rates = []
    for r in range(p.repeats):
        db = await _official_open(os.path.join(root, f"db{r}"))
        try:
            put = db.put
            rates.append(await _acapped(lambda kv: put(kv[0], kv[1]), items, p.put_cap))
        finally:
            await _official_close(db)
    # The binding's best case: 64 puts in flight at once (asyncio.gather), fresh database.
    groups = [items[lo : lo + 64] for lo in range(0, len(items), 64)]
    db = await _official_open(os.path.join(root, "gather"))
    try:

        async def group(g: list[tuple[bytes, bytes]]) -> None:
            await asyncio.gather(*(put(k, v) for k, v in g))

        put = db.put
        gathered = await _acapped(group, groups, p.put_cap) * 64
    finally:
        await _official_close(db)
    return {"put_nowait": _median_of(rates), "put_nowait_gather": gathered}


async def _official_durable(p: Params, root: str, writers: int) -> float:
    value = b"v" * p.value_size
    rates = []
    for r in range(p.repeats):
        db = await _official_open(os.path.join(root, f"db{r}"))
        try:
            counts = [0] * writers
            start = time.perf_counter()
            stop = start + p.durable_cap

            async def writer(w: int) -> None:
                n = 0
                while time.perf_counter() < stop:
                    handle = await db.put(b"w%03d-%09d" % (w, n), value)
                    await handle.await_durable()
                    n += 1
                counts[w] = n

            await asyncio.gather(*(writer(w) for w in range(writers)))
            rates.append(sum(counts) / (time.perf_counter() - start))
        finally:
            await _official_close(db)
    return _median_of(rates)


async def official_durable1(p: Params, root: str) -> dict[str, float]:
    return {"durable_1": await _official_durable(p, root, 1)}


async def official_durable64(p: Params, root: str) -> dict[str, float]:
    return {"durable_n": await _official_durable(p, root, p.writers)}


async def official_batch(p: Params, root: str) -> dict[str, float]:
    s = _slatedb()
    values = _values(4096, p.value_size, seed=1)
    keys = [_key(i) for i in _shuffled(p.batch_rows, seed=3)]
    groups = [keys[lo : lo + p.batch_size] for lo in range(0, len(keys), p.batch_size)]
    rates = []
    for r in range(p.repeats):
        db = await _official_open(os.path.join(root, f"db{r}"))
        try:

            async def one(group: list[bytes]) -> None:
                wb = s.WriteBatch()
                for j, k in enumerate(group):
                    wb.put(k, values[j])
                await db.write(wb)

            rates.append(await _acapped(one, groups, p.batch_cap) * p.batch_size)
        finally:
            await _official_close(db)
    return {"batch": _median_of(rates)}


async def _official_txn(p: Params, root: str, isolation: str, workers: int) -> float:
    s = _slatedb()
    level = {
        "snapshot": s.IsolationLevel.SNAPSHOT,
        "serializable": s.IsolationLevel.SERIALIZABLE_SNAPSHOT,
    }[isolation]
    value = b"v" * p.value_size
    db = await _official_open(os.path.join(root, f"{isolation}-{workers}"))
    try:
        counts = [0] * workers
        start = time.perf_counter()
        stop = start + p.txn_cap

        async def worker(w: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                txn = await db.begin(level)
                key = b"t%02d-%05d" % (w, n % 1000)
                await txn.get(key)
                await txn.put(key, value)
                await txn.put(b"t%02d-last" % w, key)
                await txn.commit()  # returns before durability, like put
                n += 1
            counts[w] = n

        await asyncio.gather(*(worker(w) for w in range(workers)))
        return sum(counts) / (time.perf_counter() - start)
    finally:
        await _official_close(db)


async def official_txn(p: Params, root: str) -> dict[str, float]:
    out = {}
    for iso, name in (("snapshot", "si"), ("serializable", "ssi")):
        for workers in (1, p.txn_threads):
            out[f"txn_{name}_{workers if workers == 1 else 'n'}"] = await _official_txn(
                p, root, iso, workers
            )
    return out


async def official_reads(p: Params, root: str) -> dict[str, float]:
    s = _slatedb()
    db = await _official_open(os.path.join(root, "db"))
    out: dict[str, float] = {}
    try:
        n = p.read_keys
        await _official_populate(db, n, p.value_size)
        order = _shuffled(n, seed=4)
        hit = [_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        miss = [_missing_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        starts = random.Random(6).choices(range(n - p.scan_len), k=p.scan_count)
        get = db.get

        async def scan100(st: int) -> None:
            it = await db.scan(
                s.KeyRange(
                    start=_key(st),
                    start_inclusive=True,
                    end=_key(st + p.scan_len),
                    end_inclusive=False,
                )
            )
            rows = await it.next_batch(p.scan_len + 1)
            assert len(rows) == p.scan_len

        async def full_scan() -> float:
            t0 = time.perf_counter()
            it = await db.scan(
                s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
            )
            c = 0
            while True:
                batch = await it.next_batch(1024)
                if not batch:
                    break
                for _kv in batch:
                    c += 1
            assert c == n
            return c / (time.perf_counter() - t0)

        async def rates(keys: list[bytes]) -> float:
            return _median_of([await _acapped(get, keys, p.get_cap) for _ in range(p.repeats)])

        out["get_mem"] = await rates(hit)
        out["scan_full_mem"] = _median_of([await full_scan() for _ in range(p.repeats)])
        out["scan100_mem_us"], out["scan100_mem_p99_us"] = await _alatencies_us(
            scan100, starts, p.scan_cap
        )
        await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.MEM_TABLE))
        warm = [_key(i) for i in range(0, n, 16)]
        for lo in range(0, len(warm), 64):
            await asyncio.gather(*(get(k) for k in warm[lo : lo + 64]))
        out["get_sst"] = await rates(hit)
        out["get_missing"] = await rates(miss)
        out["scan_full_sst"] = _median_of([await full_scan() for _ in range(p.repeats)])
        out["scan100_sst_us"], out["scan100_sst_p99_us"] = await _alatencies_us(
            scan100, starts, p.scan_cap
        )
        assert await get(_missing_key(0)) is None and await get(_key(0)) is not None
    finally:
        await _official_close(db)
    return out


async def official_reader(p: Params, root: str) -> dict[str, float]:
    """The official DbReader (FOLLOW_LATEST) on a database its writer left in one L0 SST."""
    s = _slatedb()
    path = os.path.join(root, "db")
    n = p.read_keys
    db = await _official_open(path)
    try:
        await _official_populate(db, n, p.value_size)
        await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.MEM_TABLE))
    finally:
        await _official_close(db)
    builder = s.DbReaderBuilder(
        os.path.abspath(path).lstrip("/"), s.ObjectStore.resolve("file:///")
    )
    builder.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
    reader = await builder.build()
    out: dict[str, float] = {}
    try:
        order = _shuffled(n, seed=4)
        hit = [_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        miss = [_missing_key(i) for i in (order * (p.get_count // n + 1))[: p.get_count]]
        starts = random.Random(6).choices(range(n - p.scan_len), k=p.scan_count)
        get = reader.get
        warm = [_key(i) for i in range(0, n, 16)]
        for lo in range(0, len(warm), 64):
            await asyncio.gather(*(get(k) for k in warm[lo : lo + 64]))

        async def scan100(st: int) -> None:
            it = await reader.scan(
                s.KeyRange(
                    start=_key(st),
                    start_inclusive=True,
                    end=_key(st + p.scan_len),
                    end_inclusive=False,
                )
            )
            rows = await it.next_batch(p.scan_len + 1)
            assert len(rows) == p.scan_len

        async def full_scan() -> float:
            t0 = time.perf_counter()
            it = await reader.scan(
                s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
            )
            c = 0
            while True:
                batch = await it.next_batch(1024)
                if not batch:
                    break
                c += len(batch)
            assert c == n
            return c / (time.perf_counter() - t0)

        async def rates(keys: list[bytes]) -> float:
            return _median_of([await _acapped(get, keys, p.get_cap) for _ in range(p.repeats)])

        out["reader_get"] = await rates(hit)
        out["reader_get_missing"] = await rates(miss)
        out["reader_scan_full"] = _median_of([await full_scan() for _ in range(p.repeats)])
        out["reader_scan100_us"], out["reader_scan100_p99_us"] = await _alatencies_us(
            scan100, starts, p.scan_cap
        )
        assert await get(_missing_key(0)) is None and await get(_key(0)) is not None
    finally:
        await asyncio.wait_for(reader.shutdown(), 120)
    return out


async def official_bulk(p: Params, root: str) -> dict[str, float]:
    db = await _official_open(os.path.join(root, "db"))
    try:
        pool = _ValuePool(p.bulk_value_size)
        base = _rss_mib()
        put = db.put
        t0 = time.perf_counter()
        for i in range(p.bulk_rows):
            await put(_key(i), pool.get(i))
        await db.flush()
        dt = time.perf_counter() - t0
    finally:
        await _official_close(db)
    mb = p.bulk_rows * p.bulk_value_size / 1e6
    return {"bulk_mbps": mb / dt, "bulk_rss": _peak_rss_mib(), "bulk_rss_base": base}


async def official_reopen_write(p: Params, root: str) -> dict[str, float]:
    s = _slatedb()
    db = await _official_open(os.path.join(root, "db"))
    try:
        value = b"r" * p.value_size
        for lo in range(0, p.reopen_rows, 100):
            wb = s.WriteBatch()
            for i in range(lo, min(p.reopen_rows, lo + 100)):
                wb.put(_key(i), value)
            await db.write(wb)
        await db.flush()
    finally:
        await _official_close(db, wal_only=True)
    return {}


async def official_reopen_open(p: Params, root: str) -> dict[str, float]:
    _slatedb()  # load the native library before the clock starts
    times = []
    firsts: list[float] = []
    for r in range(p.repeats):
        copy = os.path.join(root, f"copy{r}")
        shutil.copytree(os.path.join(root, "db"), copy)
        t0 = time.perf_counter()
        db = await _official_open(copy)
        dt = time.perf_counter() - t0
        try:
            t1 = time.perf_counter()
            assert await db.get(_key(p.reopen_rows // 2)) is not None
            firsts.append((time.perf_counter() - t1) * 1e6)
            assert await db.get(_key(p.reopen_rows - 1)) is not None
        finally:
            await _official_close(db, wal_only=True)
        times.append(dt)
    return {"reopen_s": _median_of(times), "first_get_us": _median_of(firsts)}


# ---------------------------------------------------------------------------------------------
# Workloads, rows of the table, targets
# ---------------------------------------------------------------------------------------------

#: workload name -> engines that run it (in order). ``reopen`` is two steps, see _run_workload.
WORKLOADS: dict[str, tuple[str, ...]] = {
    "put": ENGINES,
    "durable1": ENGINES,
    "durable64": ENGINES,
    "durable1_nofsync": ("shale",),
    "durable64_nofsync": ("shale",),
    "batch": ENGINES,
    "txn": ENGINES,
    "reads": ENGINES,
    "reader": ENGINES,
    "bulk": ENGINES,
    "reopen": ENGINES,
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a metric, its unit, whether higher is better, and its target."""

    metric: str
    label: str
    unit: str
    higher_better: bool = True
    target: float | None = None
    #: compare with the official value instead of a number (the 64-writer durable target)
    target_official: bool = False
    #: the official figure shown on this row comes from another metric (fsync-off variants)
    official_metric: str | None = None
    #: the shale figure shown on this row comes from another metric
    shale_metric: str | None = None


def _rows(p: Params) -> list[Row]:
    bulk_mb = p.bulk_rows * p.bulk_value_size / 1e6
    full_bulk = p.bulk_rows * p.bulk_value_size >= 200_000_000
    return [
        Row("put_nowait", "put, not waiting for durability", "ops/s", target=500_000),
        Row(
            "put_nowait_gather",
            "put, not waiting (official: 64 in flight)",
            "ops/s",
            shale_metric="put_nowait",
        ),
        Row("durable_1", "durable put, 1 writer", "ops/s"),
        Row("durable_n", f"durable put, {p.writers} writers", "ops/s", target_official=True),
        Row(
            "durable_1_nofsync",
            "durable put, 1 writer (shale fsync off)",
            "ops/s",
            official_metric="durable_1",
        ),
        Row(
            "durable_n_nofsync",
            f"durable put, {p.writers} writers (shale fsync off)",
            "ops/s",
            official_metric="durable_n",
        ),
        Row("batch", f"write batch of {p.batch_size} puts", "rows/s"),
        Row("txn_si_1", "txn commit (get + 2 puts), SI, 1 thread", "ops/s"),
        Row("txn_si_n", f"txn commit, SI, {p.txn_threads} threads", "ops/s"),
        Row("txn_ssi_1", "txn commit, serializable, 1 thread", "ops/s"),
        Row("txn_ssi_n", f"txn commit, serializable, {p.txn_threads} threads", "ops/s"),
        Row("get_mem", "get, memtable", "ops/s", target=500_000),
        Row("get_sst", "get, L0 SST warm", "ops/s", target=200_000),
        Row("get_missing", "get, missing key (SST + bloom)", "ops/s", target=500_000),
        Row("scan_full_mem", "full scan, memtable", "rows/s"),
        Row("scan_full_sst", "full scan, L0 SST", "rows/s", target=2_000_000),
        Row("scan100_mem_us", f"{p.scan_len}-row scan p50, memtable", "us", higher_better=False),
        Row(
            "scan100_mem_p99_us", f"{p.scan_len}-row scan p99, memtable", "us", higher_better=False
        ),
        Row(
            "scan100_sst_us",
            f"{p.scan_len}-row scan p50, L0 SST",
            "us",
            higher_better=False,
            target=100,
        ),
        Row(
            "scan100_sst_p99_us",
            f"{p.scan_len}-row scan p99, L0 SST",
            "us",
            higher_better=False,
            target_official=True,
        ),
        Row("reader_get", "DbReader get, L0 SST warm", "ops/s"),
        Row("reader_get_missing", "DbReader get, missing key", "ops/s"),
        Row("reader_scan_full", "DbReader full scan, L0 SST", "rows/s"),
        Row(
            "reader_scan100_us",
            f"DbReader {p.scan_len}-row scan p50, L0 SST",
            "us",
            higher_better=False,
        ),
        Row(
            "reader_scan100_p99_us",
            f"DbReader {p.scan_len}-row scan p99, L0 SST",
            "us",
            higher_better=False,
        ),
        Row(
            "bulk_mbps",
            f"bulk load {bulk_mb:.0f} MB ({p.bulk_value_size} B values)",
            "MB/s",
            target=100,
        ),
        Row(
            "bulk_rss",
            "bulk load peak RSS",
            "MiB",
            higher_better=False,
            target=400 if full_bulk else None,
        ),
        Row("reopen_s", f"reopen, WAL replay of {p.reopen_rows:,} rows", "s", higher_better=False),
        Row(
            "first_get_us",
            "first get after reopen",
            "us",
            higher_better=False,
            target_official=True,
        ),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}"
    if unit in ("us", "MiB", "MB/s"):
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def _target_text(row: Row) -> str:
    if row.target_official:
        return ">= official" if row.higher_better else "<= official"
    if row.target is None:
        return ""
    op = ">=" if row.higher_better else "<="
    return f"{op} {_fmt(row.target, row.unit)}"


def _met(row: Row, shale: float | None, official: float | None) -> str:
    if shale is None:
        return ""
    if row.target_official:
        if official is None:
            return ""
        ok = shale >= official if row.higher_better else shale <= official
        return "yes" if ok else "NO"
    if row.target is None:
        return ""
    ok = shale >= row.target if row.higher_better else shale <= row.target
    return "yes" if ok else "NO"


def format_table(results: dict[str, dict[str, float]], p: Params) -> str:
    """The ratio table, one line per metric present in ``results``."""
    lines = []
    head = (
        f"{'workload':<44}{'unit':>6}{'shale':>13}{'official':>13}{'shale/off':>11}"
        f"{'target':>14}{'met':>5}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    shale, official = results.get("shale", {}), results.get("official", {})
    for row in _rows(p):
        s = shale.get(row.shale_metric or row.metric)
        o = official.get(row.official_metric or row.metric)
        if s is None and o is None:
            continue
        ratio = f"{s / o:.2f}x" if s is not None and o else "-"
        lines.append(
            f"{row.label:<44}{row.unit:>6}{_fmt(s, row.unit):>13}{_fmt(o, row.unit):>13}"
            f"{ratio:>11}{_target_text(row):>14}{_met(row, s, o):>5}"
        )
    lines.append(
        "Ratios are shale/official as measured: above 1 is better for shale on ops/s, "
        "rows/s and MB/s, below 1 is better on us, s and MiB."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------


def _worker_main(engine: str, step: str, params_json: str, root: str) -> int:
    """Child process: run one step of one engine and print its result as a JSON line."""
    p = Params(**json.loads(params_json))
    fn = globals()[f"{engine}_{step}"]
    try:
        value = asyncio.run(fn(p, root)) if engine == "official" else fn(p, root)
        result = {"ok": True, "value": value, "peak_rss_mib": _peak_rss_mib()}
    except BaseException:  # report everything; the parent prints it and carries on
        result = {"ok": False, "error": traceback.format_exc()}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _run_step(engine: str, step: str, p: Params, root: str, timeout: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        engine,
        step,
        json.dumps(dataclasses.asdict(p)),
        root,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    return {"ok": False, "error": f"worker died rc={proc.returncode}\n{proc.stderr[-3000:]}"}


def _run_workload(name: str, engine: str, p: Params, timeout: float) -> dict[str, Any]:
    steps = ["reopen_write", "reopen_open"] if name == "reopen" else [name]
    with tempfile.TemporaryDirectory(prefix=f"bench-{engine}-{name}-") as root:
        value: dict[str, float] = {}
        rss = 0.0
        for step in steps:
            res = _run_step(engine, step, p, root, timeout)
            if not res["ok"]:
                return res
            value.update(res["value"])
            rss = max(rss, res["peak_rss_mib"])
        return {"ok": True, "value": value, "peak_rss_mib": rss}


def run(
    p: Params,
    *,
    only: Sequence[str] | None = None,
    engines: Sequence[str] = ENGINES,
    timeout: float = 900.0,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Run the workloads; return ``({engine: {metric: value}}, [error messages])``."""
    results: dict[str, dict[str, float]] = {e: {} for e in engines}
    errors: list[str] = []
    for name, runs_on in WORKLOADS.items():
        if only and name not in only:
            continue
        for engine in runs_on:
            if engine not in engines:
                continue
            t0 = time.perf_counter()
            res = _run_workload(name, engine, p, timeout)
            if log:
                log(
                    f"  {name:<18} {engine:<9} {time.perf_counter() - t0:6.1f}s"
                    f"{'' if res['ok'] else '  FAILED'}"
                )
            if res["ok"]:
                results[engine].update(res["value"])
                results[engine][f"peak_rss_mib:{name}"] = res["peak_rss_mib"]
            else:
                errors.append(f"{name}/{engine}: {res['error'].strip()}")
    return results, errors


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _official_available() -> bool:
    return importlib.util.find_spec("slatedb") is not None


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("shale-core", "slatedb"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} not installed")
    from shale import _accel

    def impl(name: str) -> str:
        return "cython" if _accel.is_compiled(name) else "pure"

    out.append(
        "accelerators in use: " + ", ".join(f"{m}={impl(m)}" for m in ("block", "bloom", "merge"))
    )
    return "; ".join(out)


# ---------------------------------------------------------------------------------------------
# Profiling (in-process, shale only)
# ---------------------------------------------------------------------------------------------


def profile(p: Params, top: int = 14) -> str:
    """cProfile of shale's put, get (memtable, SST, missing) and scan paths, as text."""
    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as root:
        db = _shale_open(os.path.join(root, "db"))
        try:
            n = p.read_keys
            value = b"v" * p.value_size
            keys = [_key(i) for i in _shuffled(n, seed=2)]
            miss = [_missing_key(i) for i in range(n)]
            starts = random.Random(6).choices(range(n - p.scan_len), k=p.scan_count)

            def section(title: str, fn: Callable[[], Any]) -> None:
                prof = cProfile.Profile()
                t0 = time.perf_counter()
                prof.runcall(fn)
                out.write(f"\n=== {title} ({time.perf_counter() - t0:.2f}s under cProfile)\n")
                stats = pstats.Stats(prof, stream=out)
                stats.sort_stats("tottime").print_stats(top)

            section(
                f"put durable=False x{n}", lambda: [db.put(k, value, durable=False) for k in keys]
            )
            section(f"get memtable x{n}", lambda: [db.get(k) for k in keys])
            db.flush(memtable=True)
            for k in keys:
                db.get(k)
            section(f"get L0 SST warm x{n}", lambda: [db.get(k) for k in keys])
            section(f"get missing x{n}", lambda: [db.get(k) for k in miss])
            section("full scan L0 SST x3", lambda: [sum(1 for _ in db.scan()) for _ in range(3)])
            section(
                f"{p.scan_len}-row scan x{len(starts)}",
                lambda: [list(db.scan(_key(s), _key(s + p.scan_len))) for s in starts],
            )
        finally:
            db.close()
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the engine benchmark and print the table; 0 on success, 1 if any workload failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker_main(*argv[1:5])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply counts and time caps")
    ap.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(WORKLOADS))
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines")
    ap.add_argument("--json", default="", help="also write the raw results to this file")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="print a cProfile of shale's put/get/scan paths instead",
    )
    args = ap.parse_args(argv)
    p = (QUICK if args.quick else FULL).scaled(args.scale)
    if args.profile:
        sys.stdout.write(profile(p))
        return 0
    only = [w for w in args.only.split(",") if w]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workloads: {', '.join(unknown)}")
    engines = [e for e in args.engines.split(",") if e]
    if "official" in engines and not _official_available():
        print("the official slatedb package is not installed: shale only", file=sys.stderr)
        engines.remove("official")
    t0 = time.perf_counter()
    print(
        f"Engine benchmark, shale vs official slatedb ({'quick' if args.quick else 'full'}, "
        f"scale {args.scale:g}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})",
        flush=True,
    )
    print(_versions(), flush=True)
    print(
        f"load average at start: {_loadavg()} (the benchmark itself keeps about one core busy)",
        flush=True,
    )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results, errors = run(
        p, only=only or None, engines=engines, timeout=900.0 if not args.quick else 300.0, log=log
    )
    print(format_table(results, p))
    if args.quick or args.scale != 1.0:
        print("(reduced sizes: targets are for the full run)")
    print(f"total {time.perf_counter() - t0:.0f}s, load average at end: {_loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"params": dataclasses.asdict(p), "results": results, "errors": errors}, f, indent=1
            )
    for err in errors:
        print(f"\nFAILED {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
