"""shale.changes / db.changes: a resumable change stream over the WAL.

Every acknowledged write appears exactly once, in seq order, across writer restarts and fencing;
a cursor is exclusive; a gap left by WAL garbage collection is an error naming the resume seq.
(WAL GC with a consumer's pin is tested with the real collector in shale-gc's
``test_consumer_pins.py``; here the WALs GC would delete -- ids below the manifest's
``replay_after_wal_id`` -- are deleted from the store directly.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shale
from shale import ids
from shale.batch import WriteBatch
from shale.errors import ChangesGoneError, ClosedError, DataError, InvalidError
from shale.merge_operators import ConcatMergeOperator
from shale.meta.consumers import read_cursor
from shale.objstore.memory import MemoryStore

Model = list[tuple[int, str, bytes, bytes | None]]


def _open(store: MemoryStore, **kw: Any) -> shale.Db:
    return shale.Db.open("db", object_store=store, merge_operator=ConcatMergeOperator(), **kw)


def _seen(stream: shale.ChangeStream) -> Model:
    return [(c.seq, c.kind, c.key, c.value) for c in stream]


def _all(store: MemoryStore, since: int | None = None, **kw: Any) -> Model:
    with shale.changes("db", since, object_store=store, follow=False, **kw) as s:
        return _seen(s)


def _put(db: shale.Db, model: Model, key: bytes, value: bytes) -> int:
    h = db.put(key, value)
    model.append((h.seq, "value", key, value))
    return h.seq


def _collect_wal(store: MemoryStore, db: shale.Db) -> list[int]:
    """Flush to L0 and delete the WALs a garbage collector would: ids < replay_after_wal_id."""
    db.flush(memtable=True)
    floor = db.refresh_manifest().replay_after_wal_id
    present = {m.key for m in store.list("db/wal/")}
    gone = [i for i in range(1, floor) if ids.wal_path("db", i) in present]
    for i in gone:
        store.delete(ids.wal_path("db", i))
    return gone


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_every_write_once_in_order_and_the_cursor_is_exclusive(store: MemoryStore) -> None:
    model: Model = []
    with _open(store) as db:
        for i in range(6):
            _put(db, model, b"k%d" % i, b"v%d" % i)
        h = db.delete(b"k1")
        model.append((h.seq, "tombstone", b"k1", None))
        h = db.merge(b"m", b"x")
        model.append((h.seq, "merge", b"m", b"x"))
        b = WriteBatch()
        b.put(b"b2", b"2")
        b.put(b"b1", b"1")
        h = db.write(b)
        model += [(h.seq, "value", b"b1", b"1"), (h.seq, "value", b"b2", b"2")]
    assert _all(store) == model
    assert _all(store, 0) == model
    for cut in (1, 4, model[-1][0] - 1, model[-1][0]):
        assert _all(store, cut) == [r for r in model if r[0] > cut]
    assert _all(store, stop_at_seq=3) == [r for r in model if r[0] <= 3]
    # stop at a batch's seq: all of its rows
    last = model[-1][0]
    assert _all(store, 1, stop_at_seq=last) == [r for r in model if r[0] > 1]
    assert _all(store, last, stop_at_seq=last) == []


def test_follow_tails_a_running_writer(store: MemoryStore) -> None:
    model: Model = []
    db = _open(store, settings=shale.Settings(flush_interval=0.01))
    stream = db.changes(poll_interval=0.05)
    done = threading.Event()

    def writer() -> None:
        for i in range(150):
            _put(db, model, b"k%03d" % (i % 40), b"%d" % i)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    got: Model = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not (done.is_set() and len(got) >= len(model)):
            got += [(c.seq, c.kind, c.key, c.value) for c in stream.read_batch(0.2)]
    finally:
        t.join(30)
        stream.close()
        db.close()
    assert got == model and len(got) == 150


def test_shale_changes_follows_by_polling(store: MemoryStore) -> None:
    model: Model = []
    with _open(store) as db, shale.changes("db", object_store=store, poll_interval=0.02) as s:
        _put(db, model, b"a", b"1")
        assert [c.seq for c in s.read_batch(5)] == [model[0][0]]
        assert s.read_batch(0.05) == []  # nothing new: waits, then returns empty
        _put(db, model, b"b", b"2")
        assert next(s).seq == model[1][0]
        assert s.position == model[1][0]


def test_close_from_another_thread_ends_a_blocked_iteration(store: MemoryStore) -> None:
    with _open(store):
        pass
    s = shale.changes("db", object_store=store, poll_interval=0.05)
    threading.Timer(0.2, s.close).start()
    started = time.monotonic()
    assert list(s) == []
    assert time.monotonic() - started < 5
    assert s.done and s.closed


def test_writer_restarts_continue_the_stream(store: MemoryStore) -> None:
    model: Model = []
    # made before the database exists: start=False defers the first read
    stream = shale.changes("db", object_store=store, poll_interval=0.02, start=False)
    for round_ in range(3):
        with _open(store) as db:  # each open writes an empty fence WAL first
            for i in range(3):
                _put(db, model, b"r%d-%d" % (round_, i), b"x")
    got = [(c.seq, c.kind, c.key, c.value) for c in stream.read_batch(5, max_rows=100)]
    while len(got) < len(model):
        batch = stream.read_batch(2)
        assert batch, "the stream stalled"
        got += [(c.seq, c.kind, c.key, c.value) for c in batch]
    stream.close()
    assert got == model
    empty = [f.id for f in shale.WalReader("db", object_store=store).list() if not f.rows()]
    assert len(empty) == 3  # the fences were there, and skipped


def test_a_fenced_writers_unuploaded_rows_never_appear(store: MemoryStore) -> None:
    model: Model = []
    slow = shale.Settings(flush_interval=None)  # uploads only on demand
    old = _open(store, settings=slow)
    _put(old, model, b"acked", b"1")
    lost = old.put(b"never-durable", b"x", durable=False)  # buffered, not uploaded
    new = _open(store)  # fences the old writer with an empty WAL
    with pytest.raises(ClosedError):
        old.flush()  # its upload collides with the fence
    _put(new, model, b"after", b"2")
    new.close()
    old.close()
    assert old.close_reason == "fenced"
    seen = _all(store)
    assert seen == model
    assert b"never-durable" not in {r[2] for r in seen}
    # the new writer reused the lost write's seq: every seq still appears once
    assert [r[0] for r in seen] == sorted({r[0] for r in seen})
    assert lost.seq in {r[0] for r in seen}


def test_gc_gap_is_an_error_naming_the_resume_seq(store: MemoryStore) -> None:
    model: Model = []
    with _open(store) as db:
        for i in range(8):
            _put(db, model, b"k%d" % i, b"v")
        gone = _collect_wal(store, db)
        assert gone
        for i in range(3):
            _put(db, model, b"n%d" % i, b"v")
    with pytest.raises(ChangesGoneError) as info:
        _all(store, 2)
    err = info.value
    assert isinstance(err, DataError) and err.since_seq == 2
    assert "resume_seq" in str(err)
    retained = _all(store)  # since_seq=None: the oldest retained, no error
    assert retained and retained == [r for r in model if r[0] > retained[0][0] - 1]
    assert err.resume_seq == retained[0][0] - 1
    assert _all(store, err.resume_seq) == retained  # resuming there works
    with pytest.raises(ChangesGoneError):
        _all(store, 0)


def test_gc_gap_mid_stream(store: MemoryStore) -> None:
    model: Model = []
    with _open(store) as db:
        for i in range(6):
            _put(db, model, b"k%d" % i, b"v")
        s = shale.changes("db", object_store=store, follow=False)
        assert next(s).seq == model[0][0]  # read the first file only
        _collect_wal(store, db)
        _put(db, model, b"late", b"v")
        with pytest.raises(ChangesGoneError) as info:
            list(s)
        assert info.value.since_seq == model[0][0]
        assert info.value.resume_seq > model[0][0]
        s.close()


def test_deleted_fence_objects_are_not_a_gap(store: MemoryStore) -> None:
    model: Model = []
    with _open(store) as db:
        _put(db, model, b"a", b"1")
    store.delete(ids.wal_path("db", 1))  # the first writer's empty fence
    assert _all(store, 0) == model


def test_consumer_commits_resumes_and_pins(store: MemoryStore) -> None:
    model: Model = []
    with _open(store) as db:
        for i in range(5):
            _put(db, model, b"k%d" % i, b"v")
    with shale.changes("db", object_store=store, follow=False, consumer="idx") as s:
        first = [next(s) for _ in range(3)]
        s.commit()
        cur = read_cursor(store, "db", "idx")
        assert cur is not None and cur.seq == first[-1].seq and cur.wal_id == first[-1].wal_id
        with pytest.raises(InvalidError):
            s.commit(first[-1].seq + 1)  # not yielded yet
    # a crash before the next commit: the uncommitted rest comes again, nothing before it
    with shale.changes("db", object_store=store, follow=False, consumer="idx") as s:
        rest = _seen(s)
        s.commit()
    assert rest == model[3:]
    assert _all(store, consumer="idx") == []
    # an explicit since_seq beats the stored cursor
    assert _all(store, 1, consumer="idx") == model[1:]


def test_a_new_consumer_pins_from_where_it_starts(store: MemoryStore) -> None:
    with _open(store) as db:
        db.put(b"a", b"1")
    with shale.changes("db", object_store=store, follow=False, consumer="fresh") as s:
        list(s)  # reading starts the stream: the cursor is written before any row
    cur = read_cursor(store, "db", "fresh")
    assert cur is not None and cur.seq is None and cur.wal_id == 1


def test_commit_needs_a_consumer(store: MemoryStore) -> None:
    with _open(store) as db:
        db.put(b"a", b"1")
    with shale.changes("db", object_store=store, follow=False) as s:
        next(s)
        with pytest.raises(InvalidError):
            s.commit()


def test_no_database_is_a_data_error(store: MemoryStore) -> None:
    with pytest.raises(DataError, match="no database"):
        _all(store)


@pytest.mark.parametrize(
    "kw",
    [
        {"since_seq": -1},
        {"since_seq": "3"},
        {"since_seq": True},
        {"stop_at_seq": -5},
        {"poll_interval": 0},
        {"poll_interval": "1"},
        {"follow": 1},
        {"consumer": ""},
        {"consumer": "../x"},
        {"consumer": "a/b"},
        {"pin_lifetime": -1},
        {"store_options": []},
    ],
)
def test_bad_arguments_are_invalid_before_anything_is_read(kw: dict[str, Any]) -> None:
    store = MemoryStore()
    with pytest.raises(InvalidError):
        shale.changes("db", object_store=store, **kw)
    assert list(store.list("")) == []


def test_db_changes_refuses_store_arguments(store: MemoryStore) -> None:
    with _open(store) as db, pytest.raises(InvalidError):
        db.changes(object_store=store)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from([b"a", b"b", b"c"]), st.binary(max_size=4)),
        st.tuples(st.just("delete"), st.sampled_from([b"a", b"b"]), st.just(b"")),
        st.tuples(st.just("merge"), st.sampled_from([b"m", b"a"]), st.binary(max_size=3)),
        st.tuples(st.just("batch"), st.sampled_from([b"b", b"d"]), st.binary(max_size=3)),
        st.tuples(st.just("restart"), st.just(b""), st.just(b"")),
        st.tuples(st.just("flush"), st.just(b""), st.just(b"")),
    ),
    max_size=25,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops, cut=st.integers(min_value=0, max_value=30))
def test_stream_agrees_with_a_model(ops: list[tuple[str, bytes, bytes]], cut: int) -> None:
    store = MemoryStore()
    model: Model = []
    db = _open(store)
    try:
        for op, key, value in ops:
            if op == "put":
                _put(db, model, key, value)
            elif op == "delete":
                h = db.delete(key)
                model.append((h.seq, "tombstone", key, None))
            elif op == "merge":
                h = db.merge(key, value)
                model.append((h.seq, "merge", key, value))
            elif op == "batch":
                b = WriteBatch()
                b.put(key + b"2", value)
                b.delete(key + b"1")
                h = db.write(b)
                model += [
                    (h.seq, "tombstone", key + b"1", None),
                    (h.seq, "value", key + b"2", value),
                ]
            elif op == "restart":
                db.close()
                db = _open(store)
            else:
                db.flush(memtable=True)
    finally:
        db.close()
    assert _all(store) == model
    assert _all(store, cut) == [r for r in model if r[0] > cut]


def test_async_for_tails_commits_and_survives_cancellation(store: MemoryStore) -> None:
    import asyncio

    from shale import aio

    model: Model = []

    async def main() -> Model:
        got: Model = []
        with _open(store) as db:
            s = aio.changes("db", object_store=store, poll_interval=0.05, consumer="a")
            async with s:
                await asyncio.to_thread(_put, db, model, b"a", b"1")
                first = await asyncio.wait_for(s.__anext__(), 10)
                got.append((first.seq, first.kind, first.key, first.value))
                await s.commit()
                # a cancelled wait (nothing to read yet) loses nothing
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(s.__anext__(), 0.01)
                for i in range(3):
                    await asyncio.to_thread(_put, db, model, b"b%d" % i, b"2")
                async for ch in s:
                    got.append((ch.seq, ch.kind, ch.key, ch.value))
                    if len(got) == len(model):
                        break
        return got

    assert asyncio.run(main()) == model
    cur = read_cursor(store, "db", "a")
    assert cur is not None and cur.seq == model[0][0]


def test_shale_changes_stays_the_function_after_db_changes(store: MemoryStore) -> None:
    import subprocess
    import sys

    code = (
        "import shale\n"
        "from shale.objstore.memory import MemoryStore\n"
        "db = shale.Db.open('db', object_store=MemoryStore())\n"
        "db.changes(follow=False).close()\n"  # imports the stream's module first
        "assert callable(shale.changes), shale.changes\n"
        "db.close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_idle_following_consumer_refreshes_its_pin(store: MemoryStore) -> None:
    from shale.change_stream import ChangeStream
    from shale.clock import ManualClock

    with _open(store) as db:
        db.put(b"a", b"1")
    clock = ManualClock(1_000_000)
    s = ChangeStream(store, "db", consumer="c", pin_lifetime=10, poll_interval=0.01, clock=clock)
    assert len(s.read_batch(1)) == 1
    s.commit()
    first = read_cursor(store, "db", "c")
    assert first is not None and first.updated_ms == 1_000_000
    clock.advance(4_000)  # under half the lifetime: no rewrite
    assert s.read_batch(0.05) == []
    assert read_cursor(store, "db", "c") == first
    clock.advance(2_000)  # past half of it: the idle stream re-writes the same cursor
    assert s.read_batch(0.05) == []
    again = read_cursor(store, "db", "c")
    assert again is not None and again.updated_ms == 1_006_000
    assert (again.seq, again.wal_id) == (first.seq, first.wal_id)
    s.close()


def test_cli_changes(store: MemoryStore, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from shale import cli

    path = str(tmp_path / "db")
    with shale.Db.open(path) as db:
        seqs = [db.put(b"k%d" % i, b"\xff%d" % i).seq for i in range(4)]
    capsys.readouterr()
    assert cli.main(["changes", path, "--since", str(seqs[0]), "--bytes", "hex"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["seq"] for d in lines] == seqs[1:]
    assert lines[0]["key"] == b"k1".hex() and lines[0]["value"] == b"\xff1".hex()
    assert lines[0]["kind"] == "value" and lines[0]["wal_id"] >= 2
    assert cli.main(["changes", path, "--consumer", "c", "--stop-at", str(seqs[1])]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert cli.main(["changes", path, "--consumer", "c"]) == 0  # resumes after the commit
    assert [json.loads(x)["seq"] for x in capsys.readouterr().out.splitlines()] == seqs[2:]
    assert cli.main(["changes", path, "--consumer", "../bad"]) == 2
    assert "invalid" in capsys.readouterr().err


def test_cli_changes_gap_exits_2_naming_the_resume_seq(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from shale import cli

    path = tmp_path / "db"
    with shale.Db.open(str(path)) as db:
        for i in range(4):
            db.put(b"k%d" % i, b"v")
        db.flush(memtable=True)
        floor = db.manifest().replay_after_wal_id
    for i in range(1, floor):
        (path / "wal" / f"{i:020d}.sst").unlink()
    capsys.readouterr()
    assert cli.main(["changes", str(path), "--since", "0"]) == 2
    err = capsys.readouterr().err
    assert "error: data:" in err and "resume_seq=" in err


def test_a_kept_fence_below_deleted_wals_is_still_a_gap(store: MemoryStore) -> None:
    """SlateDB's GC keeps empty fence objects by default: id 1 may survive its neighbours."""
    model: Model = []
    with _open(store) as db:
        for i in range(5):
            _put(db, model, b"k%d" % i, b"v")
        db.flush(memtable=True)
        floor = db.refresh_manifest().replay_after_wal_id
        for i in range(2, floor):  # delete the data WALs, keep the fence at id 1
            store.delete(ids.wal_path("db", i))
        _put(db, model, b"new", b"v")
    assert store.head(ids.wal_path("db", 1)).size == 0
    with pytest.raises(ChangesGoneError) as info:
        _all(store, 0)
    assert _all(store, info.value.resume_seq) == [r for r in model if r[0] > info.value.resume_seq]
    assert _all(store)[-1][2] == b"new"


def test_a_consumer_pins_from_its_creation(store: MemoryStore) -> None:
    with _open(store) as db:
        db.put(b"a", b"1")
        s = shale.changes("db", object_store=store, consumer="early")
        cur = read_cursor(store, "db", "early")  # written by changes(), before any read
        assert cur is not None and cur.seq is None and cur.wal_id == 1
        s.close()
    with pytest.raises(DataError, match="no database"):
        shale.changes("nothing-here", object_store=store)
    with pytest.raises(InvalidError):
        shale.changes("db", object_store=store, start=1)  # type: ignore[arg-type]
