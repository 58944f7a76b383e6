"""Transactions: one test per rule (SI write-write, SSI read-write and phantoms, read-only
never aborts, mark_read / unmark_write, own writes in reads, rollback, the tracker forgetting),
the atomic conveniences, and a multi-thread bank transfer whose total never changes."""

from __future__ import annotations

import pathlib
import random
import threading
from collections.abc import Iterator

import pytest

import shale
from shale import InvalidError, TransactionError
from shale.db import Db
from shale.settings import Settings

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    merge_operator="concat",
)


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[Db]:
    d = Db.open(str(tmp_path / "db"), FAST)
    yield d
    d.close()


def tracked(db: Db) -> tuple[int, int]:
    return db._inner.writer.txns.counts()


# -- API ------------------------------------------------------------------------------------


def test_exports_and_isolation_check(db: Db) -> None:
    assert shale.Transaction is shale.transaction.Transaction
    assert "Transaction" in shale.__all__ and "IsolationLevel" in shale.__all__
    with pytest.raises(InvalidError):
        db.begin("repeatable-read")  # type: ignore[arg-type]
    txn = db.begin()
    assert txn.isolation == "snapshot" and len(txn.id) == 36
    txn.rollback()


def test_seqnum_is_the_committed_seq_at_begin(db: Db) -> None:
    h = db.put(b"a", b"1")
    txn = db.begin()
    assert txn.seqnum == h.seq
    db.put(b"a", b"2")
    assert txn.get(b"a") == b"1"  # the snapshot does not move
    assert txn.get_key_value(b"a").seq == h.seq  # type: ignore[union-attr]
    txn.rollback()


def test_context_manager_commits_or_rolls_back(db: Db) -> None:
    with db.begin() as txn:
        txn.put(b"k", b"v")
    assert db.get(b"k") == b"v"
    with pytest.raises(RuntimeError), db.begin() as txn:
        txn.put(b"k", b"lost")
        raise RuntimeError("boom")
    assert db.get(b"k") == b"v"
    assert tracked(db) == (0, 0)


def test_finished_transaction_refuses_calls(db: Db) -> None:
    txn = db.begin()
    txn.put(b"a", b"1")
    assert txn.commit() is not None
    for call in (lambda: txn.get(b"a"), lambda: txn.put(b"a", b"2"), txn.commit):
        with pytest.raises(InvalidError):
            call()
    txn.rollback()  # harmless


def test_commit_is_one_batch_with_ttl(db: Db) -> None:
    clock_now = db.clock.now_ms()
    with db.begin() as txn:
        txn.put(b"a", b"1", ttl=60_000)
        txn.put(b"b", b"2")
        txn.delete(b"c")
    a, b = db.get_key_value(b"a"), db.get_key_value(b"b")
    assert a is not None and b is not None and a.seq == b.seq
    assert a.expire_ts is not None and a.expire_ts >= clock_now + 60_000
    assert b.expire_ts is None


# -- reads see the snapshot plus the transaction's own writes --------------------------------


def test_own_writes_in_get_and_scans(db: Db) -> None:
    for k in (b"a", b"c", b"e"):
        db.put(k, k.upper())
    db.merge(b"m", b"1")
    txn = db.begin()
    txn.put(b"b", b"own-b")
    txn.delete(b"c")
    txn.put(b"e", b"own-e")
    txn.merge(b"m", b"2")
    txn.merge(b"n", b"x")
    txn.put(b"z", b"own-z")
    assert txn.get(b"c") is None and txn.get(b"e") == b"own-e"
    assert txn.get(b"m") == b"12" and txn.get(b"n") == b"x"
    want = [(b"a", b"A"), (b"b", b"own-b"), (b"e", b"own-e"), (b"m", b"12"), (b"n", b"x"),
            (b"z", b"own-z")]  # fmt: skip
    assert list(txn.scan()) == want
    assert list(txn.scan(reverse=True)) == want[::-1]
    assert list(txn.scan(b"b", b"n")) == want[1:4]
    assert list(txn.scan(b"b", b"n", reverse=True)) == want[1:4][::-1]
    assert list(txn.scan_prefix(b"e")) == [(b"e", b"own-e")]
    assert db.get(b"b") is None  # nothing is visible before the commit
    txn.commit()
    assert list(db.scan()) == want


def test_merge_without_operator_refused_at_once(tmp_path: pathlib.Path) -> None:
    with Db.open(str(tmp_path / "db"), FAST.replace(merge_operator=None)) as db:
        txn = db.begin()
        with pytest.raises(InvalidError, match="merge operator"):
            txn.merge(b"k", b"x")
        assert txn.commit() is None  # the refused operand was not buffered


def test_rollback_writes_nothing(db: Db) -> None:
    txn = db.begin()
    txn.put(b"a", b"1")
    txn.rollback()
    assert db.get(b"a") is None
    assert tracked(db) == (0, 0)


# -- conflicts -----------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["snapshot", "serializable"])
def test_write_write_conflict_aborts(db: Db, isolation: str) -> None:
    t1, t2 = db.begin(isolation), db.begin(isolation)  # type: ignore[arg-type]
    t1.put(b"k", b"1")
    t2.put(b"k", b"2")
    t1.commit()
    with pytest.raises(TransactionError, match="write-write"):
        t2.commit()
    assert db.get(b"k") == b"1"


def test_plain_write_counts_as_a_commit(db: Db) -> None:
    txn = db.begin()
    txn.put(b"k", b"txn")
    db.put(b"k", b"plain")
    with pytest.raises(TransactionError):
        txn.commit()
    assert db.get(b"k") == b"plain"


def test_snapshot_allows_write_skew_serializable_does_not(db: Db) -> None:
    for isolation, aborts in (("snapshot", False), ("serializable", True)):
        db.put(b"x", b"1")
        db.put(b"y", b"1")
        t1, t2 = db.begin(isolation), db.begin(isolation)  # type: ignore[arg-type]
        if t1.get(b"y") == b"1":
            t1.put(b"x", b"0")
        if t2.get(b"x") == b"1":
            t2.put(b"y", b"0")
        t1.commit()
        if aborts:
            with pytest.raises(TransactionError, match="read-write"):
                t2.commit()
            assert (db.get(b"x"), db.get(b"y")) == (b"0", b"1")
        else:
            t2.commit()
            assert (db.get(b"x"), db.get(b"y")) == (b"0", b"0")


@pytest.mark.parametrize("reverse", [False, True])
def test_serializable_scan_phantom_aborts(db: Db, reverse: bool) -> None:
    txn = db.begin("serializable")
    assert list(txn.scan(b"user/", b"user0", reverse=reverse)) == []
    txn.put(b"count", b"0")
    db.put(b"user/new", b"1")  # a phantom inside the scanned range
    with pytest.raises(TransactionError, match="range"):
        txn.commit()


def test_write_outside_the_scanned_range_does_not_conflict(db: Db) -> None:
    txn = db.begin("serializable")
    list(txn.scan_prefix(b"user/"))
    txn.put(b"count", b"0")
    db.put(b"users", b"1")
    db.put(b"user.", b"1")
    assert txn.commit() is not None


def test_read_only_transactions_never_abort(db: Db) -> None:
    db.put(b"k", b"0")
    for isolation in ("snapshot", "serializable"):
        txn = db.begin(isolation)  # type: ignore[arg-type]
        assert txn.get(b"k") is not None
        list(txn.scan())
        db.put(b"k", b"changed")
        assert txn.commit() is None


def test_snapshot_ignores_read_write_conflicts(db: Db) -> None:
    txn = db.begin("snapshot")
    txn.get(b"k")
    list(txn.scan())
    txn.mark_read([b"k"])
    txn.put(b"other", b"1")
    db.put(b"k", b"changed")
    assert txn.commit() is not None


def test_mark_read_makes_a_key_conflict(db: Db) -> None:
    txn = db.begin("serializable")
    txn.mark_read([b"guard"])
    txn.put(b"out", b"1")
    db.put(b"guard", b"x")
    with pytest.raises(TransactionError, match="read-write"):
        txn.commit()


def test_unmark_write_drops_a_key_from_the_write_check(db: Db) -> None:
    txn = db.begin("snapshot")
    txn.put(b"k", b"txn")
    txn.unmark_write([b"k"])
    db.put(b"k", b"plain")
    assert txn.commit() is not None
    assert db.get(b"k") == b"txn"  # still written
    # a later write marks it again
    txn = db.begin("snapshot")
    txn.put(b"k", b"1")
    txn.unmark_write([b"k"])
    txn.put(b"k", b"2")
    db.put(b"k", b"plain")
    with pytest.raises(TransactionError):
        txn.commit()


def test_commit_before_begin_does_not_conflict(db: Db) -> None:
    db.put(b"k", b"old")
    txn = db.begin("serializable")
    assert txn.get(b"k") == b"old"
    txn.put(b"k", b"new")
    assert txn.commit() is not None


# -- the tracker forgets ---------------------------------------------------------------------


def test_tracker_records_nothing_without_live_transactions(db: Db) -> None:
    for i in range(20):
        db.put(b"k%d" % i, b"v")
    assert tracked(db) == (0, 0)


def test_tracker_forgets_what_no_live_transaction_can_conflict_with(db: Db) -> None:
    old = db.begin()
    db.put(b"a", b"1")
    db.put(b"b", b"1")
    assert tracked(db) == (1, 2)
    young = db.begin()  # started after both commits
    db.put(b"c", b"1")
    assert tracked(db) == (2, 3)
    old.rollback()  # only ``young`` is live: commits at or below its start are dropped
    assert tracked(db) == (1, 1)
    young.rollback()
    assert tracked(db) == (0, 0)


def test_dropped_transaction_is_forgotten(db: Db) -> None:
    txn = db.begin()
    db.put(b"a", b"1")
    assert tracked(db) == (1, 1)
    del txn
    assert tracked(db) == (0, 0)


def test_failed_commit_ends_the_transaction(db: Db) -> None:
    t1, t2 = db.begin(), db.begin()
    t1.put(b"k", b"1")
    t2.put(b"k", b"2")
    t1.commit()
    with pytest.raises(TransactionError):
        t2.commit()
    assert t2.finished
    assert tracked(db) == (0, 0)


# -- transact and the atomic conveniences --------------------------------------------------


def test_transact_retries_on_conflict(db: Db) -> None:
    calls = []

    def fn(txn: shale.Transaction) -> int:
        calls.append(txn.seqnum)
        n = int(txn.get(b"n") or b"0")
        if len(calls) == 1:
            db.put(b"n", b"10")  # a concurrent writer: the first attempt must conflict
        txn.put(b"n", b"%d" % (n + 1))
        return n + 1

    assert db.transact(fn) == 11
    assert len(calls) == 2 and calls[1] > calls[0]
    assert db.get(b"n") == b"11"


def test_transact_gives_up_after_retries(db: Db) -> None:
    attempts = []

    def fn(txn: shale.Transaction) -> None:
        attempts.append(1)
        txn.put(b"k", b"txn")
        db.put(b"k", b"always-first")

    with pytest.raises(TransactionError):
        db.transact(fn, retries=2)
    assert len(attempts) == 3
    with pytest.raises(InvalidError):
        db.transact(fn, retries=-1)
    assert tracked(db) == (0, 0)


def test_transact_propagates_other_errors_without_retry(db: Db) -> None:
    attempts = []

    def fn(txn: shale.Transaction) -> None:
        attempts.append(1)
        txn.put(b"k", b"v")
        raise KeyError("mine")

    with pytest.raises(KeyError):
        db.transact(fn)
    assert attempts == [1] and db.get(b"k") is None


def test_put_if_absent_compare_and_set_update(db: Db) -> None:
    assert db.put_if_absent(b"k", b"1") is True
    assert db.put_if_absent(b"k", b"2") is False
    assert db.get(b"k") == b"1"
    assert db.compare_and_set(b"k", b"0", b"x") is False
    assert db.compare_and_set(b"k", b"1", b"x") is True
    assert db.compare_and_set(b"absent", None, b"y") is True
    assert db.compare_and_set(b"absent", b"y", None) is True
    assert db.get(b"absent") is None
    assert db.update(b"n", lambda v: b"%d" % (int(v or b"0") + 5)) == b"5"
    assert db.update(b"n", lambda v: None) is None and db.get(b"n") is None


def test_update_is_atomic_across_threads(db: Db) -> None:
    def work() -> None:
        for _ in range(25):
            db.update(b"ctr", lambda v: b"%d" % (int(v or b"0") + 1), durable=False)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.get(b"ctr") == b"100"


@pytest.mark.parametrize("isolation", ["snapshot", "serializable"])
def test_bank_transfers_keep_the_total(db: Db, isolation: str) -> None:
    accounts = [b"acct/%02d" % i for i in range(6)]
    for a in accounts:
        db.put(a, b"100")
    errors: list[BaseException] = []
    audits: list[int] = []

    def transfer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(30):
                src, dst = rng.sample(accounts, 2)
                amount = rng.randint(1, 30)

                def move(
                    txn: shale.Transaction, src: bytes = src, dst: bytes = dst, amount: int = amount
                ) -> None:
                    s, d = int(txn.get(src) or b"0"), int(txn.get(dst) or b"0")
                    if s >= amount:
                        txn.put(src, b"%d" % (s - amount))
                        txn.put(dst, b"%d" % (d + amount))

                db.transact(move, retries=1000, isolation=isolation, durable=False)  # type: ignore[arg-type]
                with db.begin(isolation) as audit:  # type: ignore[arg-type]
                    audits.append(sum(int(v) for _k, v in audit.scan_prefix(b"acct/")))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=transfer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(audits) == {600}
    assert sum(int(v) for _k, v in db.scan_prefix(b"acct/")) == 600
    assert all(int(v) >= 0 for _k, v in db.scan_prefix(b"acct/"))
    assert tracked(db) == (0, 0)


def test_scan_seek(db: Db) -> None:
    for k in (b"a", b"c", b"e", b"g"):
        db.put(k, k)
    txn = db.begin()
    txn.put(b"d", b"own")
    it = txn.scan()
    assert next(it) == (b"a", b"a")
    it.seek(b"d")
    assert list(it) == [(b"d", b"own"), (b"e", b"e"), (b"g", b"g")]
    it = txn.scan(reverse=True)
    assert next(it) == (b"g", b"g")
    it.seek(b"c")
    assert list(it) == [(b"c", b"c"), (b"a", b"a")]
    it = txn.scan(b"b", b"f")
    with pytest.raises(InvalidError):
        it.seek(b"z")
    assert next(it) == (b"c", b"c")
    with pytest.raises(InvalidError):
        it.seek(b"c")
    txn.rollback()


# -- asyncio ---------------------------------------------------------------------------------


def test_async_transaction(tmp_path: pathlib.Path) -> None:
    from shale.aio import AsyncDb, AsyncTransaction

    async def main() -> None:
        async with await AsyncDb.open(str(tmp_path / "db"), FAST) as adb:
            await adb.put(b"a", b"1")
            async with adb.begin("serializable") as txn:
                assert isinstance(txn, AsyncTransaction) and txn.isolation == "serializable"
                assert await txn.get(b"a") == b"1"
                txn.put(b"b", b"2")
                assert await txn.scan().to_list() == [(b"a", b"1"), (b"b", b"2")]
                assert await txn.scan(reverse=True).to_list() == [(b"b", b"2"), (b"a", b"1")]
            assert await adb.get(b"b") == b"2"
            with pytest.raises(RuntimeError):
                async with adb.begin() as txn:
                    txn.put(b"c", b"3")
                    raise RuntimeError
            assert await adb.get(b"c") is None
            t1, t2 = adb.begin(), adb.begin()
            t1.put(b"a", b"x")
            t2.put(b"a", b"y")
            assert await t1.commit() is not None
            with pytest.raises(TransactionError):
                await t2.commit()
            attempts = []

            async def bump(txn: AsyncTransaction) -> bytes:
                attempts.append(1)
                v = (await txn.get(b"a") or b"") + b"+"
                if len(attempts) == 1:
                    await adb.put(b"a", b"z")  # conflicts with the first attempt
                txn.put(b"a", v)
                return v

            assert await adb.transact(bump) == b"z+"
            assert len(attempts) == 2 and await adb.get(b"a") == b"z+"
            assert tracked(adb.sync) == (0, 0)

    import asyncio

    asyncio.run(main())


def test_closed_database_refuses_transactions(tmp_path: pathlib.Path) -> None:
    db = Db.open(str(tmp_path / "db"), FAST)
    txn = db.begin()
    txn.put(b"k", b"v")
    db.close()
    with pytest.raises(shale.ClosedError):
        db.begin()
    with pytest.raises(shale.ClosedError):
        txn.commit()
    assert txn.finished and tracked(db) == (0, 0)
