"""db.watch: in-process delivery of committed changes under a prefix, off the write path."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import shale
from shale.errors import InvalidError
from shale.objstore.memory import MemoryStore
from shale.wal_reader import Change


@pytest.fixture
def db() -> Any:
    d = shale.Db.open("db", object_store=MemoryStore())
    yield d
    d.close()


def _wait(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_no_hooks_while_nobody_watches(db: shale.Db) -> None:
    inner = db._inner
    assert inner.writer.on_commit is None and inner.wal.on_durable is None
    w = db.watch(b"", lambda c: None, durable=False)
    assert inner.writer.on_commit is not None and inner.wal.on_durable is None
    w.close()
    assert inner.writer.on_commit is None
    w = db.watch(b"", lambda c: None)
    assert inner.wal.on_durable is not None and inner.writer.on_commit is None
    w.close()
    assert inner.wal.on_durable is None


def test_durable_watch_gets_the_prefix_in_seq_order_with_wal_ids(db: shale.Db) -> None:
    got: list[Change] = []
    with db.watch(b"a/", got.append) as w:
        seqs = []
        for i in range(20):
            seqs.append(db.put(b"a/%d" % i, b"x").seq)
            db.put(b"b/%d" % i, b"y")
        db.delete(b"a/0")
        _wait(lambda: len(got) == 21)
    assert [c.seq for c in got[:20]] == seqs
    assert all(c.key.startswith(b"a/") and c.wal_id is not None for c in got)
    assert got[-1].kind == "tombstone" and got[-1].value is None
    assert w.delivered == 21 and w.closed
    # what a durable watch delivered is what the change stream reads
    with db.changes(follow=False) as s:
        streamed = [c for c in s if c.key.startswith(b"a/")]
    assert streamed == got


def test_non_durable_watch_delivers_at_commit(db: shale.Db) -> None:
    got: list[Change] = []
    with db.watch(b"", got.append, durable=False):
        h = db.put(b"k", b"v", durable=False)
        _wait(lambda: len(got) == 1)
    assert got[0].seq == h.seq and got[0].wal_id is None


def test_a_slow_callback_does_not_block_writes(db: shale.Db) -> None:
    release = threading.Event()
    got: list[int] = []

    def slow(c: Change) -> None:
        release.wait(10)
        got.append(c.seq)

    with db.watch(b"", slow, durable=False):
        started = time.monotonic()
        for i in range(50):
            db.put(b"k%d" % i, b"v")
        assert time.monotonic() - started < 5  # writes went on while the callback sat
        assert got == []
        release.set()
        _wait(lambda: len(got) == 50)
    assert got == sorted(got)


def test_a_failing_callback_is_counted_and_delivery_goes_on(db: shale.Db) -> None:
    got: list[bytes] = []

    def flaky(c: Change) -> None:
        if c.key == b"bad":
            raise RuntimeError("boom")
        got.append(c.key)

    with db.watch(b"", flaky) as w:
        db.put(b"bad", b"1")
        db.put(b"good", b"2")
        _wait(lambda: got == [b"good"])
    assert w.errors == 1
    assert db.get(b"bad") == b"1"


def test_overflow_stops_the_watch_and_says_so(db: shale.Db) -> None:
    release = threading.Event()
    got: list[int] = []

    def stuck(c: Change) -> None:
        release.wait(10)
        got.append(c.seq)

    w = db.watch(b"", stuck, durable=False, max_pending=5)
    for i in range(20):
        db.put(b"k%d" % i, b"v")  # never blocked by the full queue
    assert w.overflowed
    release.set()
    w.close()
    assert 1 <= len(got) <= 6 and got == sorted(got)  # what was queued, then nothing
    assert db.get(b"k19") == b"v"


def test_asyncio_queue_receives_changes_and_none_at_close(db: shale.Db) -> None:
    async def main() -> list[Change | None]:
        q: asyncio.Queue[Change | None] = asyncio.Queue()
        w = db.watch(b"q", queue=q)
        await asyncio.to_thread(db.put, b"q1", b"1")
        await asyncio.to_thread(db.put, b"x", b"2")
        await asyncio.to_thread(db.put, b"q2", b"3")
        out = [await asyncio.wait_for(q.get(), 5), await asyncio.wait_for(q.get(), 5)]
        await asyncio.to_thread(w.close)
        out.append(await asyncio.wait_for(q.get(), 5))
        return out

    got = asyncio.run(main())
    assert [c.key if c else None for c in got] == [b"q1", b"q2", None]


def test_a_full_asyncio_queue_overflows_the_watch(db: shale.Db) -> None:
    async def main() -> Any:
        q: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=2)
        w = db.watch(b"", queue=q)
        for i in range(6):
            await asyncio.to_thread(db.put, b"k%d" % i, b"v")
        for _ in range(200):
            if w.overflowed:
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(w.close)
        return w

    assert asyncio.run(main()).overflowed


@pytest.mark.parametrize(
    "args,kw",
    [
        (("a",), {"callback": print}),
        ((b"a",), {}),
        ((b"a", print), {"queue": asyncio.Queue()}),
        ((b"a", 3), {}),
        ((b"a", print), {"durable": 1}),
        ((b"a", print), {"max_pending": 0}),
        ((b"a",), {"queue": []}),
        ((b"a",), {"queue": asyncio.Queue()}),  # no running loop
    ],
)
def test_bad_arguments_are_invalid(db: shale.Db, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidError):
        db.watch(*args, **kw)
    assert db._inner.writer.on_commit is None


def test_durable_watch_needs_the_wal() -> None:
    with shale.Db.open(
        "db", object_store=MemoryStore(), settings=shale.Settings(wal_enabled=False)
    ) as d:
        with pytest.raises(InvalidError):
            d.watch(b"", print)
        d.watch(b"", print, durable=False).close()


def test_closing_the_database_ends_its_watches_after_delivering() -> None:
    got: list[int] = []
    d = shale.Db.open(
        "db", object_store=MemoryStore(), settings=shale.Settings(flush_interval=None)
    )
    w = d.watch(b"", lambda c: got.append(c.seq))
    h = d.put(b"k", b"v", durable=False)  # uploaded by close()'s final flush
    d.close()
    assert got == [h.seq] and w.closed
    assert not w._thread.is_alive()
