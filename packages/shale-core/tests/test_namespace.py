"""shale.namespace: prefix-scoped views never see another prefix's keys, in any direction."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import (
    Db,
    DbReader,
    InvalidError,
    Namespace,
    ReadOnlyNamespace,
    Settings,
    TransactionError,
    WriteBatch,
)
from shale.objstore.memory import MemoryStore
from shale.row import MAX_KEY_LEN

QUIET = Settings(
    flush_interval=None,
    compactor_options=None,
    garbage_collector_options=None,
    merge_operator="concat",
    l0_max_ssts=1000,
)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def db(store: MemoryStore) -> Iterator[Db]:
    d = Db.open("db", QUIET, object_store=store)
    yield d
    d.close()


@pytest.mark.parametrize("bad", [b"", "users/", None, 1, [b"a"], b"x" * MAX_KEY_LEN])
def test_bad_prefixes_are_invalid(db: Db, bad: Any) -> None:
    with pytest.raises(InvalidError):
        db.namespace(bad)
    with pytest.raises(InvalidError):
        db.namespace(b"ok/").namespace(bad)


def test_keys_go_in_and_come_out_without_the_prefix(db: Db) -> None:
    users = db.namespace(bytearray(b"users/"))
    assert users.prefix == b"users/" and isinstance(users, Namespace)
    h = users.put(b"ann", b"1")
    users.put(b"bob", b"2", ttl=60_000, durable=False)
    assert db.get(b"users/ann") == b"1" and users.get(b"ann") == b"1"
    kv = users.get_key_value(b"ann")
    assert kv is not None and kv.key == b"ann" and kv.seq == h.seq
    assert users.get_key_value(b"zed") is None
    assert list(users.scan()) == [(b"ann", b"1"), (b"bob", b"2")]
    assert list(users.scan(reverse=True)) == [(b"bob", b"2"), (b"ann", b"1")]
    assert list(users.scan(b"b")) == [(b"bob", b"2")]
    assert list(users.scan(None, b"b")) == [(b"ann", b"1")]
    assert list(users.scan(b"b", b"b")) == []
    assert list(users.scan_prefix(b"a")) == [(b"ann", b"1")]
    assert list(users.scan_prefix(b"")) == list(users.scan())
    users.delete(b"ann")
    assert users.get(b"ann") is None and db.get(b"users/ann") is None
    with pytest.raises(InvalidError):
        users.put(b"", b"v")  # a namespace's keys are non-empty, like every key
    with pytest.raises(InvalidError):
        list(users.scan(b"b", b"a"))
    with pytest.raises(InvalidError):
        users.put(b"k" * (MAX_KEY_LEN - 5), b"v")  # too long once prefixed
    users.put(b"late", b"x", durable=False)
    assert users.get(b"late") == b"x"
    assert users.get(b"late", durability="remote") is None  # options pass through
    assert "users/" in repr(users)


def test_merge_and_the_key_equal_to_the_prefix(db: Db) -> None:
    ns = db.namespace(b"n")
    ns.merge(b"m", b"a")
    ns.merge(b"m", b"b")
    assert ns.get(b"m") == b"ab" and db.get(b"nm") == b"ab"
    db.put(b"n", b"the parent's key")  # the prefix itself is the parent's, not the namespace's
    assert list(ns.scan()) == [(b"m", b"ab")] == list(ns.scan(reverse=True))
    assert db.namespace(b"n").mapping().count() == 1


def test_nested_namespaces_compose(db: Db) -> None:
    inner = db.namespace(b"a/").namespace(b"b/")
    assert isinstance(inner, Namespace) and inner.prefix == b"a/b/"
    inner.put(b"k", b"v")
    assert db.get(b"a/b/k") == b"v"
    assert list(db.namespace(b"a/").scan()) == [(b"b/k", b"v")]
    assert list(db.namespace(b"a/b/").scan()) == [(b"k", b"v")]
    m = db.namespace(b"a/").mapping()
    m[b"b/j"] = b"w"
    assert list(inner.mapping().items()) == [(b"j", b"w"), (b"k", b"v")]


def test_a_namespaced_batch_is_one_atomic_batch(db: Db) -> None:
    ns = db.namespace(b"t/")
    db.put(b"t/old", b"x")
    batch = WriteBatch().put(b"a", b"1").delete(b"old").merge(b"c", b"x").merge(b"c", b"y")
    batch.put(b"d", b"p").merge(b"d", b"q")  # a put then operands: kept in order
    batch.put(b"e", b"p", ttl=60_000)
    h = ns.write(batch)
    seqs = {kv.seq for kv in (ns.get_key_value(k) for k in (b"a", b"c", b"d", b"e")) if kv}
    assert seqs == {h.seq}
    assert list(ns.scan()) == [(b"a", b"1"), (b"c", b"xy"), (b"d", b"pq"), (b"e", b"p")]
    assert db.get(b"a") is None and db.get(b"t/old") is None
    kv = db.get_key_value(b"t/e")
    assert kv is not None and kv.expire_ts is not None
    assert len(batch) == 7  # the caller's batch is untouched
    # all or nothing: a key too long once prefixed fails before anything is written
    last = db.put(b"mark", b"").seq
    bad = WriteBatch().put(b"ok", b"1").put(b"k" * (MAX_KEY_LEN - 1), b"v")
    with pytest.raises(InvalidError):
        ns.write(bad)
    assert ns.get(b"ok") is None and db.put(b"mark", b"").seq == last + 1
    with pytest.raises(InvalidError):
        ns.write(WriteBatch())
    with pytest.raises(InvalidError):
        ns.write({b"a": b"1"})  # type: ignore[arg-type]


def test_readers_never_see_half_a_namespaced_batch(db: Db) -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # interleave the two threads as finely as possible
    ns = db.namespace(b"pair/")
    ns.write(WriteBatch().put(b"a", b"0").put(b"b", b"0"))
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        # bounded: every version stays in the memtable and a scan steps over all of them, so
        # an unbounded writer makes the scans quadratic (minutes with the pure twins)
        while not stop.is_set() and written[0] < 2000:
            i = written[0] = written[0] + 1
            ns.write(WriteBatch().put(b"a", b"%d" % i).put(b"b", b"%d" % i), durable=False)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for n in range(200):
            rows = dict(ns.scan(reverse=n % 2 == 1))
            assert rows.keys() == {b"a", b"b"} and rows[b"a"] == rows[b"b"], rows
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert written[0] > 10 and ns.get(b"a") == ns.get(b"b") == b"%d" % written[0]


def test_snapshots_of_namespaces(db: Db) -> None:
    ns = db.namespace(b"s/")
    ns.put(b"k", b"1")
    with ns.snapshot() as snap:
        seq = snap.seq
        ns.put(b"k", b"2")
        ns.put(b"j", b"3")
        assert snap.get(b"k") == b"1" and list(snap.scan()) == [(b"k", b"1")]
        assert snap.mapping()[b"k"] == b"1"
        assert snap.namespace(b"x").prefix == b"s/x"
        with pytest.raises(InvalidError, match="snapshot already"):
            snap.snapshot()
    assert seq < db.get_key_value(b"s/k").seq  # type: ignore[union-attr]
    with db.snapshot() as raw:  # a namespace of a snapshot the caller made
        ns.put(b"k", b"4")
        view = ReadOnlyNamespace(raw, b"s/")
        assert view.get(b"k") == b"2" and view.get(b"j") == b"3"
        assert not hasattr(view, "put")


def test_read_only_namespaces_on_a_reader(db: Db, store: MemoryStore) -> None:
    users = db.namespace(b"users/")
    users.mapping().update({b"ann": b"1", b"bob": b"2"})
    db.put(b"usersX", b"outside")
    db.put(b"other/ann", b"no")
    with DbReader.open("db", QUIET, object_store=store, mode="follow_latest") as reader:
        view = reader.namespace(b"users/")
        assert isinstance(view, ReadOnlyNamespace) and not isinstance(view, Namespace)
        assert view.get(b"ann") == b"1" and view.get(b"usersX") is None
        assert list(view.scan(reverse=True)) == [(b"bob", b"2"), (b"ann", b"1")]
        it = view.scan()
        assert next(it) == (b"ann", b"1")
        it.seek(b"b")
        assert list(it) == [(b"bob", b"2")]
        assert dict(view.mapping().items()) == {b"ann": b"1", b"bob": b"2"}
        assert reader.mapping()[b"usersX"] == b"outside"
        with view.snapshot() as snap:
            assert snap.get(b"bob") == b"2"
        with pytest.raises(TypeError):
            view.mapping()[b"c"] = b"3"  # type: ignore[index]


# -- the isolation model --------------------------------------------------------------------------

ALPHABET = [0x00, 0x61, 0x62, 0xFF]  # \x00, a, b, \xff: the boundaries that matter
KEY = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=4).map(bytes)
PREFIXES = [b"a", b"a\xff", b"a\x00", b"b", b"\xff", b"\xff\xff", b"ab"]
PREFIX = st.sampled_from(PREFIXES)

OP = st.one_of(
    st.tuples(st.just("put"), PREFIX, KEY, st.binary(max_size=2)),
    st.tuples(st.just("delete"), PREFIX, KEY, st.just(b"")),
    st.tuples(st.just("root_put"), st.just(b""), KEY, st.binary(max_size=2)),
    st.tuples(st.just("root_delete"), st.just(b""), KEY, st.just(b"")),
    st.tuples(
        st.just("batch"),
        PREFIX,
        st.lists(st.tuples(KEY, st.binary(max_size=2)), min_size=1, max_size=3),
        st.just(b""),
    ),
    st.tuples(st.just("flush"), st.just(b""), st.just(b""), st.just(b"")),
)


def _open(db: Db, prefix: bytes, nested: bool) -> Namespace:
    if nested and len(prefix) > 1:
        return db.namespace(prefix[:1]).namespace(prefix[1:])
    return db.namespace(prefix)


def _inside(model: dict[bytes, bytes], prefix: bytes) -> list[tuple[bytes, bytes]]:
    return sorted(
        (k[len(prefix) :], v) for k, v in model.items() if k.startswith(prefix) and k != prefix
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(OP, max_size=14),
    nested=st.booleans(),
    start=st.none() | KEY,
    end=st.none() | KEY,
    seek=KEY,
    take=st.integers(0, 3),
)
def test_no_read_or_scan_leaves_its_namespace(
    ops: list[tuple[str, bytes, Any, bytes]],
    nested: bool,
    start: bytes | None,
    end: bytes | None,
    seek: bytes,
    take: int,
) -> None:
    model: dict[bytes, bytes] = {}
    with Db.open("db", QUIET, object_store=MemoryStore()) as db:
        for kind, prefix, key, value in ops:
            if kind == "put":
                _open(db, prefix, nested).put(key, value, durable=False)
                model[prefix + key] = value
            elif kind == "delete":
                _open(db, prefix, nested).delete(key, durable=False)
                model.pop(prefix + key, None)
            elif kind == "root_put":
                db.put(key, value, durable=False)
                model[key] = value
            elif kind == "root_delete":
                db.delete(key, durable=False)
                model.pop(key, None)
            elif kind == "batch":
                batch = WriteBatch()
                for k, v in key:
                    batch.put(k, v)
                _open(db, prefix, nested).write(batch, durable=False)
                model.update((prefix + k, v) for k, v in key)
            else:
                db.flush(memtable=True)
        if start is not None and end is not None and start > end:
            start, end = end, start
        for prefix in PREFIXES:
            ns = _open(db, prefix, nested)
            want = _inside(model, prefix)
            assert list(ns.scan()) == want, prefix
            assert list(ns.scan(reverse=True)) == want[::-1], prefix
            assert ns.mapping().count() == len(want)
            for key in {start, end, seek} - {None}:
                assert key is not None
                assert ns.get(key) == dict(want).get(key)
            ranged = [(k, v) for k, v in want if (start is None or k >= start)]
            ranged = [(k, v) for k, v in ranged if end is None or k < end]
            assert list(ns.scan(start, end)) == ranged, prefix
            assert list(ns.scan(start, end, reverse=True)) == ranged[::-1], prefix
            _check_seek(ns, want, seek, take, reverse=False)
            _check_seek(ns, want, seek, take, reverse=True)
            with ns.snapshot() as snap:
                assert list(snap.scan(reverse=True)) == want[::-1]


def _check_seek(
    ns: Namespace, want: list[tuple[bytes, bytes]], seek: bytes, take: int, reverse: bool
) -> None:
    order = want[::-1] if reverse else want
    it = ns.scan(reverse=reverse)
    got = [next(it) for _ in range(min(take, len(order)))]
    assert got == order[: len(got)]
    last = got[-1][0] if got else None
    if last is not None and (seek <= last if not reverse else seek >= last):
        with pytest.raises(InvalidError):
            it.seek(seek)
        return
    it.seek(seek)
    rest = [kv for kv in order[len(got) :] if (kv[0] >= seek if not reverse else kv[0] <= seek)]
    assert list(it) == rest


# -- transactions scoped to a namespace ---------------------------------------------------------


def test_namespace_transaction_reads_and_writes_inside(db: Db) -> None:
    users = db.namespace(b"users/")
    db.put(b"users/ann", b"1")
    db.put(b"usersX", b"outside")  # a neighbour that shares the prefix's bytes but not the prefix
    db.put(b"users", b"the prefix itself")
    with users.begin() as txn:
        assert txn.get(b"ann") == b"1" and txn.get(b"bob") is None
        txn.put(b"bob", b"2")
        txn.delete(b"ann")
        txn.merge(b"cat", b"x")
        assert txn.get(b"bob") == b"2" and txn.get(b"ann") is None
        kv = txn.get_key_value(b"bob")
        assert kv is not None and kv.key == b"bob"
        assert list(txn.scan()) == [(b"bob", b"2"), (b"cat", b"x")]
        assert list(txn.scan(reverse=True)) == [(b"cat", b"x"), (b"bob", b"2")]
        assert list(txn.scan_prefix(b"c")) == [(b"cat", b"x")]
        assert txn.transaction.get(b"users/bob") == b"2"  # the root transaction, prefixed
    assert txn.finished
    assert db.get(b"users/bob") == b"2" and db.get(b"users/ann") is None
    assert db.get(b"users/cat") == b"x" and db.get(b"usersX") == b"outside"
    nested = users.namespace(b"vip/")
    with nested.begin() as t2:
        t2.put(b"dan", b"3")
    assert db.get(b"users/vip/dan") == b"3"


def test_namespace_transaction_rolls_back_on_error(db: Db) -> None:
    ns = db.namespace(b"n/")
    with pytest.raises(RuntimeError), ns.begin() as txn:
        txn.put(b"k", b"v")
        raise RuntimeError("boom")
    assert txn.finished and db.get(b"n/k") is None


def test_namespace_scan_conflict_range_is_clamped(db: Db) -> None:
    """A serializable scan of a namespace conflicts with writes inside it, not beside it."""
    a, b = db.namespace(b"a/"), db.namespace(b"b/")
    txn = a.begin("serializable")
    assert list(txn.scan()) == []
    db.put(b"b/x", b"1")  # another namespace: no phantom for `a`
    db.put(b"a", b"1")  # the prefix key itself is outside the namespace
    txn.put(b"k", b"v")
    txn.commit()
    txn = a.begin("serializable")
    list(txn.scan())
    b.put(b"y", b"2")
    a.put(b"z", b"3")  # a phantom inside the scanned namespace
    txn.put(b"k", b"w")
    with pytest.raises(TransactionError):
        txn.commit()
    assert a.get(b"k") == b"v"


def test_namespace_mark_read_and_unmark_write_are_prefixed(db: Db) -> None:
    ns = db.namespace(b"p/")
    txn = ns.begin("serializable")
    txn.mark_read([b"watched"])
    txn.put(b"out", b"1")
    db.put(b"watched", b"root key, not the namespace's")  # no conflict
    txn.commit()
    txn = ns.begin("serializable")
    txn.mark_read([b"watched"])
    txn.put(b"out", b"2")
    ns.put(b"watched", b"x")
    with pytest.raises(TransactionError):
        txn.commit()
    txn = ns.begin()
    txn.put(b"w", b"1")
    txn.unmark_write([b"w"])
    ns.put(b"w", b"other")
    txn.commit()  # no write-write conflict: unmarked
    assert ns.get(b"w") == b"1"


def test_namespace_atomic_conveniences(db: Db) -> None:
    ns = db.namespace(b"c/")
    assert ns.put_if_absent(b"k", b"1") is True and ns.put_if_absent(b"k", b"2") is False
    assert ns.compare_and_set(b"k", b"1", b"3") is True and db.get(b"c/k") == b"3"
    assert ns.update(b"n", lambda v: b"1" if v is None else v + b"1") == b"1"
    assert ns.transact(lambda t: t.get(b"k")) == b"3"
    assert db.get(b"k") is None and db.get(b"n") is None


def test_namespace_update_is_atomic_across_threads(db: Db) -> None:
    ns = db.namespace(b"ctr/")

    def bump() -> None:
        for _ in range(20):
            ns.update(b"n", lambda v: str(int(v or b"0") + 1).encode(), durable=False)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert db.get(b"ctr/n") == b"80"
