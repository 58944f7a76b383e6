"""Caller-supplied sequence numbers (SlateDB's ``WriteOptions.seqnum``): a write may choose its
seq, which must be greater than every seq so far; ``0`` (or ``None``) lets the database assign
the next one. A refused seqnum leaves no trace. Checked on every write path (put, delete,
merge, batches, transactions, namespaces, segments, asyncio), across flushes and reopens, and
against a model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale import Db, DbReader, Settings, WalReader, WriteBatch
from shale.aio import AsyncDb
from shale.engine.batch_rules import MAX_USER_SEQNUM
from shale.errors import InvalidError

SETTINGS = Settings(flush_interval=0.01, compactor_options=None, merge_operator="concat")

BAD = [True, False, -1, 1.5, "7", b"7", MAX_USER_SEQNUM + 1, 2**64]


def _seqs(db: Db, keys: list[bytes]) -> dict[bytes, int | None]:
    out: dict[bytes, int | None] = {}
    for k in keys:
        kv = db.get_key_value(k)
        out[k] = None if kv is None else kv.seq
    return out


def test_chosen_seq_is_used_and_the_next_ones_follow(tmp_path: Path) -> None:
    with Db.open(tmp_path / "db", SETTINGS) as db:
        assert db.put(b"a", b"1").seq == 1
        assert db.put(b"b", b"2", seqnum=100).seq == 100
        assert db.put(b"c", b"3").seq == 101
        assert db.delete(b"a", seqnum=200).seq == 200
        assert db.merge(b"m", b"x", seqnum=201).seq == 201
        assert db.merge(b"m", b"y").seq == 202
        assert db.put(b"d", b"4", seqnum=0).seq == 203  # 0: the database's choice
        assert db.put(b"e", b"5", seqnum=None).seq == 204  # type: ignore[arg-type]
        assert _seqs(db, [b"a", b"b", b"c", b"m", b"d"]) == {
            b"a": None,
            b"b": 100,
            b"c": 101,
            b"m": 202,
            b"d": 203,
        }
        assert db.get(b"m") == b"xy"


@pytest.mark.parametrize("chosen", [1, 5])  # equal to the last seq, and below it
def test_a_seq_not_above_the_last_is_refused_without_a_trace(tmp_path: Path, chosen: int) -> None:
    with Db.open(tmp_path / "db", SETTINGS) as db:
        for i in range(5):
            db.put(b"k%d" % i, b"v")
        if chosen == 1:
            db.put(b"big", b"v", seqnum=50)
            chosen = 50
        last = db.put(b"last", b"v").seq
        for write in (
            lambda: db.put(b"x", b"1", seqnum=chosen),
            lambda: db.put(b"x", b"1", seqnum=last),
            lambda: db.delete(b"k0", seqnum=last),
            lambda: db.merge(b"x", b"1", seqnum=last),
            lambda: db.write(WriteBatch().put(b"x", b"1").delete(b"k1"), seqnum=last),
        ):
            with pytest.raises(InvalidError, match="greater than the current maximum") as exc:
                write()
            assert exc.value.detail["provided"] in (chosen, last)
            assert exc.value.detail["current"] == last
        assert db.get(b"x") is None and db.get(b"k0") == b"v" and db.get(b"k1") == b"v"
        assert db.put(b"after", b"v").seq == last + 1  # no gap left by the refusals


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_bad_seqnums_are_refused_before_anything_is_written(tmp_path: Path, bad: object) -> None:
    with Db.open(tmp_path / "db", SETTINGS) as db:
        db.put(b"a", b"1")
        for write in (
            lambda: db.put(b"x", b"1", seqnum=bad),  # type: ignore[arg-type]
            lambda: db.delete(b"a", seqnum=bad),  # type: ignore[arg-type]
            lambda: db.merge(b"x", b"1", seqnum=bad),  # type: ignore[arg-type]
            lambda: db.write(WriteBatch().put(b"x", b"1"), seqnum=bad),  # type: ignore[arg-type]
        ):
            with pytest.raises(InvalidError, match="seqnum must be an int"):
                write()
        txn = db.begin()
        txn.put(b"x", b"1")
        with pytest.raises(InvalidError, match="seqnum must be an int"):
            txn.commit(seqnum=bad)  # type: ignore[arg-type]
        assert not txn.finished  # a bad argument leaves the transaction open
        txn.rollback()
        assert db.get(b"x") is None and db.get(b"a") == b"1"
        assert db.put(b"b", b"2").seq == 2


def test_largest_seqnum(tmp_path: Path) -> None:
    with Db.open(tmp_path / "db", SETTINGS) as db:
        assert db.put(b"a", b"1", seqnum=MAX_USER_SEQNUM).seq == MAX_USER_SEQNUM
        assert db.put(b"b", b"2").seq == MAX_USER_SEQNUM + 1  # still a u64
    with Db.open(tmp_path / "db", SETTINGS) as db:
        assert _seqs(db, [b"a", b"b"]) == {b"a": MAX_USER_SEQNUM, b"b": MAX_USER_SEQNUM + 1}
        db.flush(memtable=True)
    with Db.open(tmp_path / "db", SETTINGS) as db:
        assert db.manifest().last_l0_seq == MAX_USER_SEQNUM + 1
        assert db.put(b"c", b"3").seq == MAX_USER_SEQNUM + 2


def test_batch_rows_share_the_chosen_seq(tmp_path: Path) -> None:
    with Db.open(tmp_path / "db", SETTINGS) as db:
        h = db.write(WriteBatch().put(b"a", b"1").merge(b"m", b"x").delete(b"z"), seqnum=77)
        assert h.seq == 77
        assert _seqs(db, [b"a", b"m"]) == {b"a": 77, b"m": 77}
        with db.write_batch() as wb:
            wb.put(b"b", b"2")
        assert wb.handle.seq == 78  # type: ignore[union-attr]


def test_transactions(tmp_path: Path) -> None:
    with Db.open(tmp_path / "db", SETTINGS) as db:
        db.put(b"a", b"1")
        txn = db.begin()
        txn.put(b"t", b"1")
        h = txn.commit(seqnum=40)
        assert h is not None and h.seq == 40 and db.get_key_value(b"t").seq == 40  # type: ignore[union-attr]
        # refused: not above the last seq; the transaction ends and nothing is written
        txn = db.begin()
        txn.put(b"u", b"1")
        with pytest.raises(InvalidError, match="greater than the current maximum"):
            txn.commit(seqnum=40)
        assert txn.finished and db.get(b"u") is None
        # a transaction that started before a chosen-seq write still sees its conflicts
        old = db.begin()
        old.put(b"a", b"from-old")
        db.put(b"a", b"2", seqnum=1000)
        with pytest.raises(Exception, match="onflict"):
            old.commit(seqnum=2000)
        assert db.get(b"a") == b"2" and db.put(b"n", b"v").seq == 1001
        # an empty transaction writes nothing and takes no seq
        assert db.begin().commit(seqnum=5) is None


def test_namespaces_and_segments(tmp_path: Path) -> None:
    with Db.open(tmp_path / "db", SETTINGS) as db:
        ns = db.namespace(b"users/")
        assert ns.put(b"a", b"1", seqnum=10).seq == 10
        assert ns.delete(b"b", seqnum=11).seq == 11
        assert ns.merge(b"c", b"x", seqnum=12).seq == 12
        assert ns.write(WriteBatch().put(b"d", b"4"), seqnum=13).seq == 13
        txn = ns.begin()
        txn.put(b"e", b"5")
        assert txn.commit(seqnum=14).seq == 14  # type: ignore[union-attr]
        assert db.get_key_value(b"users/e").seq == 14  # type: ignore[union-attr]
    seg = Settings(flush_interval=0.01, compactor_options=None, prefix_extractor="fixed2")
    with Db.open(tmp_path / "seg", seg) as db:
        assert db.put(b"aa1", b"1", seqnum=5).seq == 5
        assert db.write(WriteBatch().put(b"bb1", b"2").put(b"aa2", b"3"), seqnum=9).seq == 9
        with pytest.raises(InvalidError, match="greater than the current maximum"):
            db.write(WriteBatch().put(b"cc1", b"2"), seqnum=9)
        assert db.get(b"cc1") is None and db.put(b"cc2", b"v").seq == 10


def test_asyncio(tmp_path: Path) -> None:
    async def main() -> None:
        async with await AsyncDb.open(tmp_path / "db", SETTINGS) as db:
            assert (await db.put(b"a", b"1", seqnum=3)).seq == 3
            assert (await db.delete(b"a", seqnum=4)).seq == 4
            assert (await db.merge(b"m", b"x", seqnum=5)).seq == 5
            assert (await db.write(WriteBatch().put(b"b", b"2"), seqnum=6)).seq == 6
            txn = db.begin()
            txn.put(b"c", b"3")
            h = await txn.commit(seqnum=7)
            assert h is not None and h.seq == 7
            with pytest.raises(InvalidError):
                await db.put(b"d", b"4", seqnum=7)

    asyncio.run(main())


@pytest.mark.parametrize("flush_memtable", [False, True])
def test_chosen_seqs_survive_a_reopen_and_readers_see_them(
    tmp_path: Path, flush_memtable: bool
) -> None:
    path = tmp_path / "db"
    with Db.open(path, SETTINGS) as db:
        db.put(b"a", b"1")
        db.put(b"b", b"2", seqnum=500)
        db.write(WriteBatch().put(b"c", b"3").put(b"d", b"4"), seqnum=900)
        if flush_memtable:
            db.flush(memtable=True)
    with DbReader.open(path, SETTINGS) as reader:
        kv = reader.get_key_value(b"c")
        assert kv is not None and kv.seq == 900
    if not flush_memtable:
        with WalReader(path) as wal:
            seqs = [c.seq for f in wal.list() for c in f.rows()]
        assert seqs == [1, 500, 900, 900]
    with Db.open(path, SETTINGS) as db:
        assert _seqs(db, [b"a", b"b", b"c"]) == {b"a": 1, b"b": 500, b"c": 900}
        assert db.put(b"e", b"5").seq == 901
        with pytest.raises(InvalidError):
            db.put(b"f", b"6", seqnum=900)


def test_change_stream_resumes_across_chosen_seq_gaps(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Db.open(path, SETTINGS) as db:
        db.put(b"a", b"1")
        db.put(b"b", b"2", seqnum=50)
        db.put(b"c", b"3")
        stream = db.changes(since_seq=1)
        got = []
        for change in stream:
            got.append((change.seq, change.key))
            if len(got) == 2:
                break
        stream.close()
    assert got == [(50, b"b"), (51, b"c")]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"c"]),
            st.one_of(st.just(0), st.integers(min_value=1, max_value=60)),
        ),
        min_size=1,
        max_size=25,
    ),
    st.integers(min_value=0, max_value=24),
)
def test_model(tmp_path_factory: pytest.TempPathFactory, writes: list, reopen_at: int) -> None:  # type: ignore[type-arg]
    """Seqs strictly increase; a chosen seq is refused iff it is not above the last one, and a
    refusal changes nothing; the latest value of each key wins, also after a reopen."""
    path = tmp_path_factory.mktemp("seqnum_model") / "db"
    last = 0
    latest: dict[bytes, tuple[bytes, int]] = {}
    db = Db.open(path, SETTINGS)
    try:
        for i, (key, chosen) in enumerate(writes):
            if i == reopen_at:
                db.close()
                db = Db.open(path, SETTINGS)
            value = b"%d" % i
            if chosen and chosen <= last:
                with pytest.raises(InvalidError):
                    db.put(key, value, seqnum=chosen)
                continue
            seq = db.put(key, value, seqnum=chosen).seq
            assert seq == (chosen or last + 1)
            last = seq
            latest[key] = (value, seq)
        for key, (value, seq) in latest.items():
            kv = db.get_key_value(key)
            assert kv is not None and (kv.value, kv.seq) == (value, seq)
    finally:
        db.close()
