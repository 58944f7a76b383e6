"""The asyncio facade ``shale.aio`` (plain ``asyncio.run``; no pytest-asyncio)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import shale
from shale import ClosedError, InvalidError, WriteBatch
from shale.aio import AsyncDb, AsyncDbIterator, AsyncDbSnapshot, AsyncWriteHandle
from shale.objstore.memory import MemoryStore
from shale.settings import Settings

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    merge_operator="concat",
)


def arun(
    fn: Callable[[AsyncDb], Awaitable[Any]],
    path: str | pathlib.Path,
    settings: Settings = FAST,
    **kw: Any,
) -> Any:
    """Open ``path``, run ``fn(db)`` in a fresh event loop, close."""

    async def main() -> Any:
        async with await AsyncDb.open(str(path), settings, **kw) as db:
            return await fn(db)

    return asyncio.run(main())


@pytest.fixture
def path(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "db")


def test_exported_as_shale_aio() -> None:
    assert shale.aio.AsyncDb is AsyncDb


def test_put_get_delete_merge_write(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        h = await db.put(b"k", b"v1")
        assert isinstance(h, AsyncWriteHandle) and h.seq >= 1 and h.create_ts > 0
        assert await db.get(b"k") == b"v1"
        kv = await db.get_key_value(b"k")
        assert kv is not None and kv.value == b"v1" and kv.seq == h.seq
        await db.delete(b"k")
        assert await db.get(b"k") is None
        await db.merge(b"m", b"a")
        await db.merge(b"m", b"b", durable=False)
        assert await db.get(b"m") == b"ab"
        wh = await db.write(WriteBatch().put(b"x", b"1").put(b"y", b"2"))
        assert (await db.get_key_value(b"y")).seq == wh.seq  # type: ignore[union-attr]
        nd = await db.put(b"nd", b"v", durable=False)
        await nd.wait_durable(timeout=5)
        assert await db.get(b"nd", durability="remote") == b"v"
        assert repr(nd).startswith("AsyncWriteHandle(seq=")
        assert db.metrics()["last_seq"] >= wh.seq
        assert db.sync.get(b"x") == b"1"
        assert repr(db).endswith("open>")

    arun(body, path)


def test_errors_surface_from_await(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        with pytest.raises(InvalidError):
            await db.put(b"", b"v")
        with pytest.raises(InvalidError):
            await db.write(WriteBatch())
        with pytest.raises(InvalidError):
            await db.get(b"k", durability="disk")
        with pytest.raises(InvalidError):
            db.scan(b"b", b"a")  # checked at call time
        with pytest.raises(InvalidError):
            db.scan(durability="disk")
        with pytest.raises(InvalidError):
            db.scan(batch_size=0)

    arun(body, path)


def test_ttl_and_include_expired(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        await db.put(b"t", b"v", ttl=20)
        await asyncio.sleep(0.04)
        assert await db.get(b"t") is None
        assert await db.get(b"t", include_expired=True) == b"v"
        assert [k async for k, _ in db.scan()] == []
        assert [k async for k, _ in db.scan(include_expired=True)] == [b"t"]

    arun(body, path)


def test_scan_batches_reverse_prefix(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        batch = WriteBatch()
        for i in range(1000):
            batch.put(b"k%04d" % i, b"v%d" % i)
        batch.put(b"z", b"last")
        await db.write(batch)
        await db.flush(memtable=True)  # half from L0 ...
        await db.delete(b"k0500")  # ... half from the memtable
        rows = [r async for r in db.scan(batch_size=7)]
        assert len(rows) == 1000 and rows[0] == (b"k0000", b"v0") and rows[-1] == (b"z", b"last")
        assert b"k0500" not in [k for k, _ in rows]
        back = [k async for k, _ in db.scan(b"k0100", b"k0110", reverse=True, batch_size=3)]
        assert back == [b"k%04d" % i for i in range(109, 99, -1)]
        assert len(await db.scan_prefix(b"k00").to_list()) == 100
        assert len(await db.scan_prefix(b"").to_list()) == 1000
        assert await db.scan_prefix(b"k").to_list(limit=2) == [(b"k0000", b"v0"), (b"k0001", b"v1")]
        assert [r async for r in db.scan(b"q", b"q")] == []
        with pytest.raises(InvalidError):
            db.scan_prefix("k")  # type: ignore[arg-type]

    arun(body, path)


def test_seek_inside_and_beyond_the_fetched_batch(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        batch = WriteBatch()
        for i in range(100):
            batch.put(b"k%03d" % i, b"")
        await db.write(batch)

        it = db.scan(batch_size=10)
        assert isinstance(it, AsyncDbIterator)
        assert (await it.__anext__())[0] == b"k000"  # fetched k000..k009
        await it.seek(b"k005")  # inside the batch: no engine seek
        assert (await it.__anext__())[0] == b"k005"
        await it.seek(b"k0505")  # beyond it (between keys)
        assert (await it.__anext__())[0] == b"k051"
        with pytest.raises(InvalidError):
            await it.seek(b"k051")  # not past the last key returned
        with pytest.raises(InvalidError):
            await it.seek(b"k040")
        assert [k async for k, _ in it][:2] == [b"k052", b"k053"]

        it = db.scan(b"k010", b"k090", reverse=True, batch_size=4)
        assert (await it.__anext__())[0] == b"k089"
        await it.seek(b"k087")  # inside the fetched k089..k086
        assert (await it.__anext__())[0] == b"k087"
        await it.seek(b"k020")
        assert await it.to_list() == [(b"k%03d" % i, b"") for i in range(20, 9, -1)]
        with pytest.raises(InvalidError):
            await it.seek(b"k095")  # outside the range

        it = db.scan(b"k050")
        await it.seek(b"k098")  # before the first fetch
        assert await it.to_list() == [(b"k098", b""), (b"k099", b"")]
        await it.seek(b"k099\x00")  # after exhaustion: still empty
        assert await it.to_list() == []

    arun(body, path)


def test_concurrent_scanners_of_one_iterator_are_serialised(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        batch = WriteBatch()
        for i in range(300):
            batch.put(b"k%03d" % i, b"")
        await db.write(batch)
        it = db.scan(batch_size=5)

        async def drain() -> list[bytes]:
            return [k async for k, _ in it]

        parts = await asyncio.gather(drain(), drain(), drain())
        got = sorted(k for part in parts for k in part)
        assert got == [b"k%03d" % i for i in range(300)]  # each row exactly once

    arun(body, path)


def test_snapshot(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        await db.put(b"a", b"1")
        async with db.snapshot() as snap:
            assert isinstance(snap, AsyncDbSnapshot)
            await db.put(b"a", b"2")
            await db.put(b"b", b"new")
            await db.flush(memtable=True)
            assert await snap.get(b"a") == b"1" and await db.get(b"a") == b"2"
            assert (await snap.get_key_value(b"a")).value == b"1"  # type: ignore[union-attr]
            assert await snap.get(b"b") is None
            assert [r async for r in snap.scan()] == [(b"a", b"1")]
            assert await snap.scan_prefix(b"a").to_list() == [(b"a", b"1")]
            assert [k async for k, _ in snap.scan(reverse=True)] == [b"a"]
            assert snap.seq < db.metrics()["last_seq"]
        with db.snapshot() as snap2:
            assert await snap2.get(b"b") == b"new"

    arun(body, path)


def test_checkpoints_and_manifest(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        await db.put(b"k", b"v")
        info = await db.create_checkpoint(name="c1", lifetime=60)
        assert [c.id for c in await db.list_checkpoints("c1")] == [info.id]
        await db.refresh_checkpoint(info.id, lifetime=None)
        assert (await db.list_checkpoints())[0].expire_time_s is None
        await db.delete_checkpoint(info.id)
        assert await db.list_checkpoints() == []
        m = await db.refresh_manifest()
        assert db.manifest() is m and len(m.l0) >= 1

    arun(body, path)


def test_event_loop_is_never_blocked(path: str) -> None:
    """Durable writes wait for a slow WAL upload on worker threads; the loop keeps ticking."""

    class SlowStore(MemoryStore):
        def put_if_absent(self, key: str, data: bytes) -> None:
            if "wal/" in key and data:
                time.sleep(0.05)
            super().put_if_absent(key, data)

    async def main() -> None:
        async with await AsyncDb.open("db", FAST, object_store=SlowStore()) as db:
            ticks = 0
            stop = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.005)

            t = asyncio.create_task(ticker())
            t0 = time.perf_counter()
            await asyncio.gather(*(db.put(b"k%03d" % i, b"v") for i in range(64)))
            elapsed = time.perf_counter() - t0
            stop.set()
            await t
            assert elapsed >= 0.05  # the writes really waited for the upload
            assert ticks >= elapsed / 0.005 / 4  # and the loop ran meanwhile
            assert db.metrics()["wal_buffer_flushes"] < 64  # group commit still works

    asyncio.run(main())


def test_close_and_use_after_close(path: str) -> None:
    async def main() -> AsyncDb:
        db = await AsyncDb.open(path, FAST)
        await db.put(b"k", b"v", durable=False)
        snap = db.snapshot()
        await db.close()
        await db.close()  # idempotent
        assert db.close_reason == "clean"
        for call in (db.get(b"k"), db.put(b"k", b"v"), db.flush(), snap.get(b"k")):
            with pytest.raises(ClosedError):
                await call
        with pytest.raises(ClosedError):
            db.scan()
        with pytest.raises(ClosedError):
            db.snapshot()
        return db

    asyncio.run(main())

    async def reopen(db: AsyncDb) -> bytes | None:
        return await db.get(b"k")  # close flushed the non-durable write

    assert arun(reopen, path) == b"v"


def test_executor_options(path: str) -> None:
    names: set[str] = set()

    async def body(db: AsyncDb) -> None:
        def where() -> None:
            names.add(threading.current_thread().name)

        await db._run(where)  # the facade's own runner

    arun(body, path, max_workers=2)
    assert all(n.startswith("shale-aio") for n in names)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as pool:
        arun(lambda db: db.put(b"k", b"v"), path, executor=pool)
        assert pool.submit(lambda: 7).result() == 7  # close() left our executor running

    with pytest.raises(InvalidError):
        arun(lambda db: db.get(b"k"), path, max_workers=0)
    with pytest.raises(InvalidError):
        arun(lambda db: db.get(b"k"), path, batch_size=0)


def test_open_errors_and_components(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidError):
        asyncio.run(AsyncDb.open(str(tmp_path / "x"), settings={}))  # type: ignore[arg-type]
    store = MemoryStore()
    arun(lambda db: db.put(b"k", b"v"), "prefix", object_store=store)
    assert any(m.key.startswith("prefix/wal/") for m in store.list(""))


def test_cancelled_calls_still_run(path: str) -> None:
    async def body(db: AsyncDb) -> None:
        gate = threading.Event()
        await db.put(b"c0", b"v")
        # occupy every worker so the next jobs are queued, not started, when cancelled
        blockers = [asyncio.ensure_future(db._run(gate.wait, 5)) for _ in range(2)]
        await asyncio.sleep(0.01)
        task = asyncio.create_task(db.put(b"c1", b"v"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        failing = asyncio.create_task(db.put(b"", b"bad"))  # its error is dropped quietly
        await asyncio.sleep(0.01)
        failing.cancel()
        gate.set()
        await asyncio.gather(*blockers)
        for _ in range(500):  # committed although its caller was cancelled
            if await db.get(b"c1") == b"v":
                break
            await asyncio.sleep(0.01)
        assert await db.get(b"c1") == b"v"

    arun(body, path, max_workers=2)


def test_async_with_open_needs_no_double_await(path: str) -> None:
    from shale.aio import AsyncDbReader

    async def main() -> None:
        async with AsyncDb.open(path, FAST) as db:  # no `await` before AsyncDb.open
            await db.put(b"k", b"v")
            assert await db.get(b"k") == b"v"
            opened = db
        assert opened.close_reason == "clean"  # closed when the block ended
        db2 = await AsyncDb.open(path, FAST)  # awaiting it still gives the handle
        try:
            assert await db2.get(b"k") == b"v"
        finally:
            await db2.close()
        async with AsyncDbReader.open(path, FAST, mode="follow_latest") as reader:
            assert await reader.get(b"k") == b"v"
        assert reader.close_reason == "clean"
        with pytest.raises(InvalidError):
            async with AsyncDb.open(path, FAST, max_workers=0):
                pass  # never reached: the open fails on entry

    asyncio.run(main())
