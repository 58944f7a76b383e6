"""``WalReader.last_wal_file_id`` and ``WalReader.iterator`` (SlateDB's ``SlateDbWalReader``):
the tail probe, batches of whole WAL files with their ids, read-ahead within
``max_buffered_bytes``, live tailing, garbage-collected files, closing.

The WALs a garbage collector would delete (ids below the manifest's ``replay_after_wal_id``)
are deleted from the store directly, as in ``test_changes.py``.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

import shale
from shale import ids
from shale.batch import WriteBatch
from shale.errors import DataError, InvalidError
from shale.objstore.memory import MemoryStore
from shale.sst import SsTable
from shale.sst.table import TAIL_READ
from shale.wal_iterator import WalRows


def _write(store: MemoryStore, sessions: list[int], **kw: Any) -> None:
    """One writer per entry of ``sessions``, each writing that many WAL files of one put."""
    for n, count in enumerate(sessions):
        with shale.Db.open("db", object_store=store, **kw) as db:
            for i in range(count):
                db.put(b"k%d-%d" % (n, i), b"v%d" % i)
                db.flush()


def _collect_wal(store: MemoryStore) -> list[int]:
    """Flush to L0 (a writer session) and delete the WALs a collector would."""
    with shale.Db.open("db", object_store=store) as db:
        db.flush(memtable=True)
        floor = db.refresh_manifest().replay_after_wal_id
    gone = [i for i in range(1, floor) if _has(store, i)]
    for i in gone:
        store.delete(ids.wal_path("db", i))
    return gone


def _has(store: MemoryStore, wal_id: int) -> bool:
    return any(m.key == ids.wal_path("db", wal_id) for m in store.list("db/wal/"))


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "shale-wal-fetch"]


@pytest.fixture
def store() -> MemoryStore:
    """Three writers: fence 1 and files 2-6, fence 7 and files 8-12, then fence 13 alone."""
    store = MemoryStore()
    _write(store, [5, 5, 0])
    return store


def test_last_wal_file_id_is_the_tail_fences_included(store: MemoryStore) -> None:
    reader = shale.WalReader("db", object_store=store)
    assert [f.id for f in reader.list()] == list(range(1, 14))
    for after in (0, 1, 5, 7, 12):
        assert reader.last_wal_file_id(after) == 13  # the trailing fence counts
    # no file after it: the id itself, even past the tail (SlateDB's answer)
    assert reader.last_wal_file_id(13) == 13
    assert reader.last_wal_file_id(replay_after_wal_id=100) == 100


def test_last_wal_file_id_below_collected_files_is_truncated(store: MemoryStore) -> None:
    gone = _collect_wal(store)
    assert gone == list(range(1, len(gone) + 1))
    reader = shale.WalReader("db", object_store=store)
    tail = reader.list()[-1].id
    for after in (0, gone[-1] - 1):
        with pytest.raises(DataError, match="truncated") as info:
            reader.last_wal_file_id(after)
        assert info.value.detail["wal_id"] == after  # file after+1 is gone: the probe stops
    assert reader.last_wal_file_id(gone[-1]) == tail  # a cursor at the floor goes on


def test_no_database_is_a_data_error() -> None:
    reader = shale.WalReader("db", object_store=MemoryStore())
    with pytest.raises(DataError, match="no manifest"):
        reader.last_wal_file_id(0)
    with pytest.raises(DataError, match="no manifest"):
        reader.iterator(1).next()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_fetch_tasks": 1, "max_buffered_bytes": 1, "read_ahead_bytes": 1},
        {"max_fetch_tasks": 8, "max_buffered_bytes": 500},
    ],
)
def test_bounded_iterator_returns_each_file_with_its_id(
    store: MemoryStore, options: dict[str, int]
) -> None:
    reader = shale.WalReader("db", object_store=store, **options)
    tail = reader.last_wal_file_id(0)
    with reader.iterator(1, end_wal_file_id=tail + 1) as it:
        batches = list(it)
        assert it.done
    assert [b.last_consumed_wal_file_id for b in batches] == list(range(1, tail + 1))
    assert all(isinstance(b, WalRows) for b in batches)
    assert [b.rows for b in batches] == [reader.get(i).rows() for i in range(1, tail + 1)]
    assert [i for i, b in enumerate(batches, 1) if not b.rows] == [1, 7, 13]  # the fences
    seqs = [r.seq for b in batches for r in b.rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_consumer_resumes_after_the_last_consumed_id(store: MemoryStore) -> None:
    reader = shale.WalReader("db", object_store=store)
    with reader.iterator(1, end_wal_file_id=6) as it:
        cursor = [b.last_consumed_wal_file_id for b in it][-1]
    tail = reader.last_wal_file_id(cursor)
    with reader.iterator(cursor + 1, end_wal_file_id=tail + 1) as it:
        assert [b.last_consumed_wal_file_id for b in it] == list(range(6, 14))


def test_live_iterator_waits_for_the_writer(store: MemoryStore) -> None:
    reader = shale.WalReader("db", object_store=store)
    with reader.iterator(12, poll_interval=0.01) as it:
        assert [next(it).last_consumed_wal_file_id for _ in range(2)] == [12, 13]
        assert it.next(timeout=0) is None and not it.done  # at the tail: nothing yet
        with shale.Db.open("db", object_store=store) as db:  # fence 14
            db.put(b"late", b"1")
            db.flush()  # file 15
        got = [it.next(timeout=60), it.next(timeout=60)]
    assert [b and b.last_consumed_wal_file_id for b in got] == [14, 15]
    assert got[0] is not None and got[0].rows == []
    assert got[1] is not None and [r.key for r in got[1].rows] == [b"late"]


def test_live_iterator_at_a_collected_file_is_truncated(store: MemoryStore) -> None:
    gone = _collect_wal(store)
    reader = shale.WalReader("db", object_store=store)
    for start in (0, 1, gone[-1]):
        with reader.iterator(start) as it, pytest.raises(DataError, match="truncated") as info:
            it.next(timeout=60)
        assert info.value.detail["wal_id"] == start
    with reader.iterator(gone[-1] + 1) as it:
        batch = it.next(timeout=60)
        assert batch is not None and batch.last_consumed_wal_file_id == gone[-1] + 1


def test_a_file_collected_mid_read_is_a_data_error_and_ends_the_iterator(
    store: MemoryStore,
) -> None:
    reader = shale.WalReader("db", object_store=store, max_buffered_bytes=1, max_fetch_tasks=1)
    it = reader.iterator(2, end_wal_file_id=13)
    assert it.next(timeout=60) is not None  # file 2; file 3 may be read ahead already
    for i in range(4, 7):  # collected while the iterator reads
        store.delete(ids.wal_path("db", i))
    assert next(it).last_consumed_wal_file_id == 3
    with pytest.raises(DataError, match="truncated") as info:
        next(it)
    assert info.value.detail["wal_id"] == 4
    assert it.done and not _fetch_threads()
    with pytest.raises(DataError):  # and again
        it.next()


def test_big_files_are_read_in_windows_of_read_ahead_bytes() -> None:
    store = _Recording()
    with shale.Db.open("db", object_store=store) as db:
        for n in range(2):
            batch = WriteBatch()
            for i in range(150):
                batch.put(b"big%d-%04d" % (n, i), bytes([i % 251]) * 1000)
            db.write(batch)
            db.flush()
    reader = shale.WalReader("db", object_store=store)
    sizes = {m.id: m.size for m in reader.list_metadata()}
    big = [i for i, size in sizes.items() if size > TAIL_READ]
    assert len(big) == 2
    want = [reader.get(i).rows() for i in sorted(sizes)]
    for read_ahead in (1, 20_000, 10**9):
        store.reads.clear()
        r = shale.WalReader("db", object_store=store, read_ahead_bytes=read_ahead)
        with r.iterator(1, end_wal_file_id=max(sizes) + 1) as it:
            assert [b.rows for b in it] == want
        for i in big:
            blocks = [s for _, s in SsTable.open(store, ids.wal_path("db", i)).blocks()]
            ends = {sum(blocks[:n]) for n in range(len(blocks) + 1)}
            tail_start = sizes[i] - TAIL_READ
            data = [
                (a, b) for k, a, b in store.reads if k == ids.wal_path("db", i) and a < tail_start
            ]
            assert data and data[0][0] == 0  # from the first block on, contiguous
            assert all(a2 == b1 for (_, b1), (a2, _) in itertools.pairwise(data))
            assert all(a in ends and b in ends for a, b in data)  # whole blocks
            for a, b in data[:-1]:  # the fewest blocks making read_ahead_bytes
                last_block = b - max(e for e in ends if e < b)
                assert b - a >= read_ahead > b - a - last_block
            if read_ahead == 10**9:
                assert len(data) == 1


class _Recording(MemoryStore):
    """A memory store that records its ranged reads ``(key, start, end)``."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int, int]] = []

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.reads.append((key, start, end))
        return super().get_range(key, start, end)


def test_the_buffer_stays_within_max_buffered_bytes(store: MemoryStore) -> None:
    reader = shale.WalReader("db", object_store=store)
    sizes = [m.size for m in reader.list_metadata()]
    limit = 2 * max(sizes) + 1  # two files fit, a third does not
    r = shale.WalReader("db", object_store=store, max_buffered_bytes=limit, max_fetch_tasks=8)
    with r.iterator(1, end_wal_file_id=14) as it:
        first = next(it)
        # nothing consumed: the fetch threads fill the buffer as far as the bound allows
        with it._cond:
            while it.buffered_bytes + max(sizes) <= limit and not it._ready.get(13):
                it._cond.wait(1.0)
        assert it.buffered_bytes <= limit
        rest = list(it)
    assert [b.last_consumed_wal_file_id for b in [first, *rest]] == list(range(1, 14))
    assert 0 < it.peak_buffered_bytes <= limit
    # a bound below one file still reads every file, one at a time
    r = shale.WalReader("db", object_store=store, max_buffered_bytes=1)
    with r.iterator(1, end_wal_file_id=14) as it:
        assert len(list(it)) == 13
    assert it.peak_buffered_bytes == max(sizes)


def test_early_close_stops_every_fetch_thread(store: MemoryStore) -> None:
    reader = shale.WalReader("db", object_store=store, max_fetch_tasks=4)
    it = reader.iterator(1)
    assert next(it).last_consumed_wal_file_id == 1
    it.close()
    assert not _fetch_threads() and it.done
    assert it.next() is None and list(it) == []
    # a live iterator blocked at the tail in another thread is woken by close()
    it = reader.iterator(13, poll_interval=3600)
    assert next(it).last_consumed_wal_file_id == 13
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(it.next()))
    t.start()
    it.close()
    t.join(60)
    assert not t.is_alive() and out == [None]
    assert not _fetch_threads()
    # closing the reader closes its iterators
    its = [reader.iterator(1), reader.iterator(5, poll_interval=3600)]
    for i in its:
        i.next(timeout=60)
    reader.close()
    assert all(i.done for i in its) and not _fetch_threads()


@pytest.mark.parametrize(
    "kw",
    [
        {"max_buffered_bytes": 0},
        {"max_fetch_tasks": 0},
        {"read_ahead_bytes": 0},
        {"max_buffered_bytes": True},
        {"read_ahead_bytes": "1"},
        {"max_buffered_bytes": 2**64},
        {"max_fetch_tasks": 2**32},
    ],
)
def test_bad_options_are_invalid_before_anything_is_opened(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidError):
        shale.WalReader("memory:///never-opened", **kw)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.last_wal_file_id(-1),
        lambda r: r.last_wal_file_id(True),
        lambda r: r.last_wal_file_id("1"),
        lambda r: r.last_wal_file_id(2**64),
        lambda r: r.iterator(-1),
        lambda r: r.iterator(None),
        lambda r: r.iterator(5, end_wal_file_id=4),
        lambda r: r.iterator(1, poll_interval=0),
        lambda r: r.iterator(1, poll_interval=float("nan")),
        lambda r: r.iterator(1).next(timeout=-1),
    ],
)
def test_bad_arguments_are_invalid_before_anything_is_read(call: Any) -> None:
    store = MemoryStore()  # no database: any read would be a DataError
    with pytest.raises(InvalidError):
        call(shale.WalReader("db", object_store=store))


def test_a_separate_wal_store_reads_the_manifest_from_the_database_store() -> None:
    main, wal = MemoryStore(), MemoryStore()
    with shale.Db.open("db", object_store=main, wal_store=wal) as db:  # fence 1
        db.put(b"a", b"1")
        db.flush()  # file 2
    assert not list(main.list("db/wal/"))
    with shale.WalReader("db", object_store=main, wal_store=wal) as reader:
        assert reader.last_wal_file_id(0) == 2
        with reader.iterator(1, poll_interval=0.01) as it:
            assert [next(it).last_consumed_wal_file_id for _ in range(2)] == [1, 2]
            assert it.next(timeout=0) is None
