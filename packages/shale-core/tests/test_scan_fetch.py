"""Per-scan ``read_ahead_bytes`` and ``max_fetch_tasks`` (SlateDB's ``ScanOptions``).

The database lives in a real :class:`~shale.objstore.local.LocalStore` seen through
:class:`CountingStore`, a store wrapper that adds a fixed latency to every ranged read of an SST
(as a remote store has) and records how many such reads were made, how many bytes they fetched
and the most that were in flight at once. The block cache is off, so every scan is cold.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shale import Db, DbReader, InvalidError, Settings
from shale.aio import AsyncDb
from shale.objstore import ObjectMeta
from shale.objstore.local import LocalStore

N = 3000
BLOCK = 4096
DELAY = 0.01


class CountingStore:
    """A LocalStore with latency on SST ranged reads, counting them (thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.inner = LocalStore(root)
        self.lock = threading.Lock()
        self.counting = False
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.bytes = 0
            self.in_flight = 0
            self.max_in_flight = 0

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if not (self.counting and key.endswith(".sst") and "/wal/" not in f"/{key}"):
            return self.inner.get_range(key, start, end)
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(DELAY)
            data = self.inner.get_range(key, start, end)
        finally:
            with self.lock:
                self.in_flight -= 1
        with self.lock:
            self.bytes += len(data)
        return data

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self.inner.put(key, data, durable=durable)

    def put_if_absent(self, key: str, data: bytes) -> None:
        self.inner.put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self.inner.put_if_match(key, data, etag)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def head(self, key: str) -> ObjectMeta:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def _settings(**kw: Any) -> Settings:
    return Settings(
        compactor_options=None,
        garbage_collector_options=None,
        flush_interval=None,
        block_size=BLOCK,
        l0_sst_size_bytes=64 << 20,
        **kw,
    )


ROWS = [(b"k%06d" % i, b"v%06d" % i * 32) for i in range(N)]  # about 700 KB of blocks


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CountingStore:
    s = CountingStore(tmp_path_factory.mktemp("scanfetch"))
    with Db.open("db", _settings(), object_store=s) as db:
        for key, value in ROWS:
            db.put(key, value, durable=False)
        db.flush(memtable=True)
    return s


@pytest.fixture
def db(store: CountingStore) -> Iterator[Db]:
    d = Db.open("db", _settings(block_cache_bytes=0), object_store=store)
    assert d.get(b"k000000x") is None  # opens the SST (tail, index, filter): not counted below
    store.reset()
    store.counting = True
    yield d
    store.counting = False
    d.close()


def _measure(
    store: CountingStore, it: Iterator[tuple[bytes, bytes]]
) -> tuple[list[Any], int, int, int]:
    store.reset()
    rows = list(it)
    return rows, store.requests, store.bytes, store.max_in_flight


def test_more_read_ahead_fewer_requests_same_rows(db: Db, store: CountingStore) -> None:
    default, n_default, b_default, _ = _measure(store, db.scan())
    assert default == ROWS
    one, n_one, b_one, _ = _measure(store, db.scan(read_ahead_bytes=1))
    small, n_small, _, _ = _measure(store, db.scan(read_ahead_bytes=16 * BLOCK))
    big, n_big, b_big, _ = _measure(store, db.scan(read_ahead_bytes=8 << 20))
    assert one == small == big == ROWS
    # one block per read, then 16 blocks per read, then the whole SST in one read
    assert n_one > n_small > n_default > n_big == 1
    assert n_one >= b_one // BLOCK
    assert b_one == b_big  # every block once, whatever the read-ahead
    assert b_default <= b_one  # (the default path also serves blocks from the SST's tail read)
    # explicit defaults are today's behaviour exactly
    explicit, n_explicit, _, _ = _measure(
        store, db.scan(read_ahead_bytes=256 * 1024, max_fetch_tasks=1)
    )
    assert explicit == ROWS and n_explicit == n_default


def test_parallel_fetches(db: Db, store: CountingStore) -> None:
    serial, n_serial, _, max_serial = _measure(store, db.scan(read_ahead_bytes=2 * BLOCK))
    started = time.monotonic()
    parallel, n_parallel, _, max_parallel = _measure(
        store, db.scan(read_ahead_bytes=2 * BLOCK, max_fetch_tasks=4)
    )
    took = time.monotonic() - started
    assert serial == parallel == ROWS
    assert n_serial == n_parallel
    assert max_serial == 1
    assert max_parallel == 4
    assert took < n_parallel * DELAY * 0.75  # the latency overlaps
    wide, _, _, max_wide = _measure(store, db.scan(read_ahead_bytes=BLOCK, max_fetch_tasks=16))
    assert wide == ROWS and 4 < max_wide <= 16


@pytest.mark.parametrize("tasks", [1, 3])
def test_reverse_bounded_and_seek(db: Db, store: CountingStore, tasks: int) -> None:
    lo, hi = b"k001000", b"k001500"
    want = [r for r in ROWS if lo <= r[0] < hi]
    for reverse in (False, True):
        got, _, fetched, _ = _measure(
            store,
            db.scan(lo, hi, reverse=reverse, read_ahead_bytes=1 << 20, max_fetch_tasks=tasks),
        )
        assert got == (want[::-1] if reverse else want)
        # never past the range: about the range's own blocks, not a 1 MiB window
        span = sum(len(k) + len(v) for k, v in want)
        assert fetched < span * 2 + 4 * BLOCK, (fetched, span)
    it = db.scan(read_ahead_bytes=3 * BLOCK, max_fetch_tasks=2)
    assert next(it) == ROWS[0]
    it.seek(b"k002000")
    assert list(it) == ROWS[2000:]


def test_reader_and_async_scans(db: Db, store: CountingStore) -> None:
    with DbReader.open("db", _settings(block_cache_bytes=0), object_store=store) as reader:
        rows, _, _, peak = _measure(store, reader.scan(read_ahead_bytes=BLOCK, max_fetch_tasks=4))
        assert rows == ROWS and peak == 4
        with pytest.raises(InvalidError):
            reader.scan(max_fetch_tasks=0)

    async def run() -> list[tuple[bytes, bytes]]:
        adb = await AsyncDb.open("db", _settings(block_cache_bytes=0), object_store=store)
        try:
            with pytest.raises(InvalidError):
                adb.scan(read_ahead_bytes=0)
            return [kv async for kv in adb.scan(read_ahead_bytes=BLOCK, max_fetch_tasks=2)]
        finally:
            await adb.close()

    store.reset()
    assert asyncio.run(run()) == ROWS
    assert store.max_in_flight == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"read_ahead_bytes": 0},
        {"read_ahead_bytes": -1},
        {"read_ahead_bytes": 1.5},
        {"read_ahead_bytes": True},
        {"read_ahead_bytes": "4096"},
        {"read_ahead_bytes": 2**64},
        {"max_fetch_tasks": 0},
        {"max_fetch_tasks": 2**32},
        {"max_fetch_tasks": False},
    ],
)
def test_bad_options_are_invalid_before_any_read(
    db: Db, store: CountingStore, kwargs: dict[str, Any]
) -> None:
    store.reset()
    with pytest.raises(InvalidError):
        db.scan(**kwargs)
    with pytest.raises(InvalidError):
        db.scan_prefix(b"k", **kwargs)
    assert store.requests == 0


def test_snapshot_transaction_and_namespace_scans_take_the_fetch_options(
    db: Db, store: CountingStore
) -> None:
    with db.snapshot() as snap:
        rows, _, _, peak = _measure(store, snap.scan(read_ahead_bytes=BLOCK, max_fetch_tasks=4))
        assert rows == ROWS and peak == 4
        with pytest.raises(InvalidError):
            snap.scan(max_fetch_tasks=0)
    for isolation in ("snapshot", "serializable"):
        with db.begin(isolation) as txn:
            rows, n, _, peak = _measure(
                store, txn.scan(read_ahead_bytes=BLOCK, max_fetch_tasks=3, cache_blocks=False)
            )
            assert rows == ROWS and peak == 3 and n > 1
            with pytest.raises(InvalidError):
                txn.scan(read_ahead_bytes=0)
    ns = db.namespace(b"k00")
    rows, _, _, peak = _measure(store, ns.scan(read_ahead_bytes=BLOCK, max_fetch_tasks=2))
    assert rows == [(k[3:], v) for k, v in ROWS if k.startswith(b"k00")] and peak == 2


def test_async_snapshot_and_transaction_scans_take_the_fetch_options(store: CountingStore) -> None:
    async def run() -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        adb = await AsyncDb.open("db", _settings(block_cache_bytes=0), object_store=store)
        try:
            async with adb.snapshot() as snap:
                a = [kv async for kv in snap.scan(read_ahead_bytes=BLOCK, max_fetch_tasks=2)]
            async with adb.begin("serializable") as txn:
                b = [kv async for kv in txn.scan(cache_blocks=False, read_ahead_bytes=BLOCK)]
            return a, b
        finally:
            await adb.close()

    a, b = asyncio.run(run())
    assert a == b == ROWS
