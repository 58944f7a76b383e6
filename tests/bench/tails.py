"""Durable-put latency tails, shale beside the official package, quiet and under mixed load.

Each run opens a fresh database in a local directory and has ``writers`` writers (threads for
shale, asyncio tasks for the official package) put 100-byte values and wait until each is
durable, for ``cap`` seconds, recording every put's latency. Reported: p50 and p99 in
milliseconds, and the p99 ratio shale/official (below 1 is better for shale).

Configurations: 1 and 64 writers, a 1 ms and a 100 ms ``flush_interval``, and two machine
states: *quiet*, and *mixed* -- two helper processes run beside the database, one burning CPU
and one writing 1 MiB chunks to a file and fsyncing each (the mixed load of issue 14).

Durability is not the same on both sides: shale fsyncs every WAL object and its directory on a
local disk (the store's default ``fsync=True``); the official package's local store
(``object_store``'s ``LocalFileSystem``) never fsyncs -- its "durable" on a local directory
means "in the page cache" (verified with ``strace -f -e fsync,fdatasync``: zero calls for 50
durable puts). So the table also shows shale with ``fsync=False``, the like-for-like figure.

Engines and configurations run in separate processes, interleaved: for each configuration,
shale, shale without fsync and the official package run one after the other, ``repeats``
times; the medians of the repeats are reported.

Run: ``python tests/bench/tails.py [--quick]`` (``nox -s bench`` runs it too).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

RESULT_PREFIX = "@@tails@@ "
VALUE = b"v" * 100
#: (writers, flush interval in seconds)
CONFIGS = [(1, 0.001), (64, 0.001), (1, 0.1), (64, 0.1)]
LOADS = ("quiet", "mixed")
ENGINES = ("shale", "shale_nofsync", "official")


def _percentiles(lat: list[float]) -> dict[str, float]:
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3

    return {"p50_ms": q(0.50), "p99_ms": q(0.99), "n": float(len(lat))}


# -- workers (child processes) -----------------------------------------------------------------


def _shale_run(root: str, writers: int, flush: float, cap: float, fsync: bool) -> list[float]:
    from shale.db import Db
    from shale.settings import Settings

    settings = Settings(
        flush_interval=flush, compactor_options=None, garbage_collector_options=None
    )
    db = Db.open(root, settings, store_options={"fsync": fsync})
    lats: list[list[float]] = [[] for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)
    stop = [0.0]

    def writer(w: int) -> None:
        out = lats[w]
        barrier.wait()
        end = stop[0]
        n = 0
        put = db.put
        clock = time.perf_counter
        while True:
            t0 = clock()
            if t0 >= end:
                break
            put(b"w%03d-%09d" % (w, n), VALUE)
            out.append(clock() - t0)
            n += 1

    try:
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        stop[0] = time.perf_counter() + cap
        barrier.wait()
        for t in threads:
            t.join()
    finally:
        db.close()
    return [x for out in lats for x in out]


async def _official_run(root: str, writers: int, flush: float, cap: float) -> list[float]:
    import slatedb.uniffi as s

    store = s.ObjectStore.resolve("file:///")
    settings = s.Settings.default()
    settings.set("compactor_options", "null")
    settings.set("garbage_collector_options", "null")
    settings.set("flush_interval", json.dumps(f"{round(flush * 1000)}ms"))
    builder = s.DbBuilder(os.path.abspath(root).lstrip("/"), store)
    builder.with_settings(settings)
    db = await builder.build()
    lat: list[float] = []
    end = time.perf_counter() + cap

    async def writer(w: int) -> None:
        n = 0
        clock = time.perf_counter
        while True:
            t0 = clock()
            if t0 >= end:
                break
            handle = await db.put(b"w%03d-%09d" % (w, n), VALUE)
            await handle.await_durable()
            lat.append(clock() - t0)
            n += 1

    try:
        await asyncio.gather(*(writer(w) for w in range(writers)))
    finally:
        await db.shutdown()
    return lat


def _worker(engine: str, writers: int, flush: float, cap: float, root: str) -> int:
    if engine == "official":
        lat = asyncio.run(_official_run(root, writers, flush, cap))
    else:
        lat = _shale_run(root, writers, flush, cap, fsync=engine == "shale")
    sys.stdout.write(RESULT_PREFIX + json.dumps(_percentiles(lat)) + "\n")
    return 0


# -- the mixed load ------------------------------------------------------------------------------

_BURNER = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"
_FSYNCER = (
    "import os, sys, time\n"
    "path = sys.argv[1]\n"
    "chunk = os.urandom(1 << 20)\n"
    "end = time.time() + 3600\n"
    "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
    "n = 0\n"
    "while time.time() < end:\n"
    "    os.write(fd, chunk)\n"
    "    os.fsync(fd)\n"
    "    n += 1\n"
    "    if n % 64 == 0:\n"
    "        os.ftruncate(fd, 0)\n"
    "        os.lseek(fd, 0, 0)\n"
)


class MixedLoad:
    """A CPU burner and an fsync-heavy writer running beside the benchmark."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> MixedLoad:
        path = os.path.join(self._root, "fsync-load.bin")
        self._procs = [
            subprocess.Popen([sys.executable, "-c", _BURNER]),
            subprocess.Popen([sys.executable, "-c", _FSYNCER, path]),
        ]
        time.sleep(0.3)  # let both reach their loops
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self._procs:
            p.kill()
        for p in self._procs:
            p.wait(timeout=30)


# -- the parent ----------------------------------------------------------------------------------


def _run_one(engine: str, writers: int, flush: float, cap: float) -> dict[str, float] | str:
    with tempfile.TemporaryDirectory(prefix=f"tails-{engine}-") as root:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            engine,
            str(writers),
            str(flush),
            str(cap),
            os.path.join(root, "db"),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=cap * 10 + 120, check=False
            )
        except subprocess.TimeoutExpired:
            return "timed out"
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                value: dict[str, float] = json.loads(line[len(RESULT_PREFIX) :])
                return value
        return f"worker died rc={proc.returncode}: {proc.stderr[-2000:]}"


def run(
    *, cap: float, repeats: int, engines: Sequence[str] = ENGINES, loads: Sequence[str] = LOADS
) -> tuple[dict[tuple[str, str, int, float], dict[str, float]], list[str]]:
    """``({(load, engine, writers, flush): {"p50_ms", "p99_ms"}}, errors)``: medians of
    ``repeats`` interleaved runs."""
    raw: dict[tuple[str, str, int, float], list[dict[str, float]]] = {}
    errors: list[str] = []
    for load in loads:
        with tempfile.TemporaryDirectory(prefix="tails-load-") as load_root:
            ctx: Any = MixedLoad(load_root) if load == "mixed" else _Nothing()
            with ctx:
                for (writers, flush), _rep in itertools.product(CONFIGS, range(repeats)):
                    for engine in engines:
                        res = _run_one(engine, writers, flush, cap)
                        if isinstance(res, str):
                            errors.append(f"{load}/{engine}/{writers}w/{flush}s: {res}")
                            continue
                        raw.setdefault((load, engine, writers, flush), []).append(res)
    out = {
        k: {m: statistics.median(r[m] for r in runs) for m in ("p50_ms", "p99_ms")}
        for k, runs in raw.items()
    }
    return out, errors


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def format_table(results: dict[tuple[str, str, int, float], dict[str, float]]) -> str:
    head = (
        f"{'durable put latency':<34}{'shale p50':>10}{'p99':>8}{'no-fsync p99':>13}"
        f"{'official p50':>13}{'p99':>8}{'p99 ratio':>10}{'no-fsync':>9}"
    )
    lines = [head, "-" * len(head)]
    for load in LOADS:
        for writers, flush in CONFIGS:

            def get(engine: str, metric: str, where: tuple[str, int, float]) -> float | None:
                r = results.get((where[0], engine, where[1], where[2]))
                return None if r is None else r[metric]

            where = (load, writers, flush)
            s50, s99 = get("shale", "p50_ms", where), get("shale", "p99_ms", where)
            n99 = get("shale_nofsync", "p99_ms", where)
            o50, o99 = get("official", "p50_ms", where), get("official", "p99_ms", where)
            if s99 is None and o99 is None:
                continue

            def f(x: float | None) -> str:
                return "-" if x is None else f"{x:.2f}"

            def ratio(a: float | None, b: float | None) -> str:
                return "-" if a is None or not b else f"{a / b:.2f}x"

            label = f"{load}, {writers} writer{'s' if writers > 1 else ''}, {flush * 1000:g} ms"
            lines.append(
                f"{label:<34}{f(s50):>10}{f(s99):>8}{f(n99):>13}{f(o50):>13}{f(o99):>8}"
                f"{ratio(s99, o99):>10}{ratio(n99, o99):>9}"
            )
    lines.append(
        "Milliseconds; p99 ratio = shale/official (below 1 is better for shale). shale fsyncs "
        "every WAL object; the official local store never fsyncs: 'no-fsync' is like-for-like."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        engine, writers, flush, cap, root = argv[1:6]
        return _worker(engine, int(writers), float(flush), float(cap), root)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 s per run, one repeat")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--cap", type=float, default=0.0, help="seconds per run (overrides)")
    args = ap.parse_args(argv)
    cap, repeats = (1.0, 1) if args.quick else (3.0, 3)
    if args.cap > 0:
        cap = args.cap
    engines = [e for e in args.engines.split(",") if e]
    if "official" in engines and importlib_find("slatedb") is None:
        engines.remove("official")
    print(
        f"Durable put tails, shale vs official slatedb ({cap:g} s per run, {repeats} "
        f"interleaved repeat(s), {os.cpu_count()} CPUs)",
        flush=True,
    )
    t0 = time.perf_counter()
    results, errors = run(
        cap=cap, repeats=repeats, engines=engines, loads=[x for x in args.loads.split(",") if x]
    )
    print(format_table(results))
    for e in errors:
        print("FAILED:", e)
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 1 if errors else 0


def importlib_find(name: str) -> object:
    import importlib.util

    return importlib.util.find_spec(name)


if __name__ == "__main__":
    sys.exit(main())
