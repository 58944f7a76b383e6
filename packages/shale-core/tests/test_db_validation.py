"""Bad input fails before anything is written; nothing acknowledged is ever skipped silently.

Regression tests of issue 9 items 2 (a batch's ops on one key with different TTLs), 6 (TTL and
expiry validation; a WAL buffer that cannot be encoded), 12 (merge operands checked at write
time; a poisoned row is a ``DataError`` for its key only) and 13 (``ClosedError`` carries its
cause).
"""

from __future__ import annotations

import math
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shale import ClosedError, DataError, InvalidError, UnavailableError, ids
from shale.batch import Ttl, WriteBatch
from shale.clock import ManualClock
from shale.db import Db
from shale.merge_operators import CounterMergeOperator
from shale.objstore import ObjectMeta, PermanentStoreError, TransientStoreError
from shale.objstore.memory import MemoryStore
from shale.settings import Settings

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
NOW = 1_700_000_000_000


def open_db(path: str | pathlib.Path, settings: Settings = FAST, **kw: Any) -> Db:
    return Db.open(str(path), settings, **kw)


def nothing_written(db: Db, *keys: bytes) -> bool:
    return db.metrics()["last_seq"] == 0 and all(db.get(k) is None for k in keys)


# -- item 6: TTLs and expiry are checked at the API --------------------------------------------

BAD_TTLS: list[Any] = [
    0,
    -1,
    True,
    False,
    1.5,
    math.nan,
    math.inf,
    "100",
    b"1",
    2**64,
    [1],
]
BAD_EXPIRE_AT: list[Any] = [2**63, 2**70, -1, True, 1.0, math.nan, math.inf, "1", None]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
def test_bad_ttl_is_invalid_before_anything_is_written(tmp_path: pathlib.Path, ttl: Any) -> None:
    with open_db(tmp_path / "db", merge_operator=CounterMergeOperator()) as db:
        with pytest.raises(InvalidError):
            db.put(b"k", b"v", ttl=ttl)
        with pytest.raises(InvalidError):
            db.merge(b"k", CounterMergeOperator.encode(1), ttl=ttl)
        with pytest.raises(InvalidError):
            WriteBatch().put(b"k", b"v", ttl=ttl)
        with pytest.raises(InvalidError):
            WriteBatch().merge(b"k", CounterMergeOperator.encode(1), ttl=ttl)
        with pytest.raises(InvalidError):
            Ttl.after(ttl)
        assert nothing_written(db, b"k")


@pytest.mark.parametrize("epoch_ms", BAD_EXPIRE_AT, ids=repr)
def test_bad_expire_time_is_invalid(epoch_ms: Any) -> None:
    with pytest.raises(InvalidError):
        Ttl.at(epoch_ms)
    with pytest.raises(InvalidError):
        Ttl("at", epoch_ms)  # the constructor checks too


def test_ttl_constructor_checks_everything() -> None:
    with pytest.raises(InvalidError):
        Ttl("later", 5)
    with pytest.raises(InvalidError):
        Ttl("after", 0)
    with pytest.raises(InvalidError):
        Ttl("never", 5)
    assert Ttl.at(2**63 - 1).ms == 2**63 - 1
    assert Ttl.after(2**64 - 1).ms == 2**64 - 1


def test_expire_at_beyond_i64_never_reaches_the_wal(tmp_path: pathlib.Path) -> None:
    """The issue's reproduction: ``Ttl.at(2**63)`` used to kill the WAL upload."""
    for flush_interval in (0.01, None):
        path = tmp_path / f"db-{flush_interval}"
        with open_db(path, FAST.replace(flush_interval=flush_interval)) as db:
            db.put(b"a", b"1", durable=False)
            with pytest.raises(InvalidError):
                db.put(b"b", b"2", ttl=Ttl.at(2**63), durable=False)
            db.put(b"c", b"3")
            db.flush()
        with open_db(path) as db:
            assert (db.get(b"a"), db.get(b"b"), db.get(b"c")) == (b"1", None, b"3")


def test_expiry_that_overflows_i64_means_no_expiry(tmp_path: pathlib.Path) -> None:
    """SlateDB: "a TTL that overflows means no TTL" -- for ``Ttl.after`` and ``default_ttl``."""
    clock = ManualClock(NOW)
    settings = FAST.replace(default_ttl=2**63 - 1)
    with open_db(tmp_path / "db", settings, clock=clock) as db:
        db.put(b"default", b"v")
        db.put(b"after", b"v", ttl=2**64 - 1)
        db.put(b"edge", b"v", ttl=2**63 - 1 - NOW)
        db.flush()
    with open_db(tmp_path / "db", clock=clock) as db:
        assert db.get_key_value(b"default").expire_ts is None  # type: ignore[union-attr]
        assert db.get_key_value(b"after").expire_ts is None  # type: ignore[union-attr]
        assert db.get_key_value(b"edge").expire_ts == 2**63 - 1  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, math.nan, math.inf, 2**63, "soon"], ids=repr)
def test_bad_default_ttl_is_invalid(bad: Any) -> None:
    with pytest.raises(InvalidError):
        Settings(default_ttl=bad)
    with pytest.raises(InvalidError):
        Settings.from_dict({"default_ttl": bad})


@pytest.mark.parametrize("bad", ["nan", "inf", "-5", "0", "1.5", "9223372036854775808"])
def test_bad_default_ttl_from_env_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidError):
        Settings.from_env(environ={"SHALE_DEFAULT_TTL": bad})


def test_unencodable_wal_buffer_is_never_skipped(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: if a WAL buffer ever cannot be encoded (a bug: the API checks every
    field), the database fails; no later write or close() reports success on top of it."""
    import shale.engine.wal_buffer as dbmod

    real = dbmod.SstBuilder

    class Exploding(real):  # type: ignore[misc,valid-type]
        def add_rows(self, rows: Any) -> None:
            rows = list(rows)
            if any(r[0] == b"poison" for r in rows):
                raise OverflowError("cannot encode")
            super().add_rows(rows)

    monkeypatch.setattr(dbmod, "SstBuilder", Exploding)
    path = tmp_path / "db"
    db = open_db(path, FAST.replace(flush_interval=None))
    db.put(b"a", b"1", durable=False)
    db.put(b"poison", b"2", durable=False)
    with pytest.raises(ClosedError) as info:
        db.flush()
    assert info.value.reason == "failed"
    assert "cannot encode" in str(info.value)
    assert info.value.__cause__ is not None
    with pytest.raises(ClosedError):
        db.put(b"c", b"3")  # never acknowledged on top of the lost buffer
    with pytest.raises(ClosedError) as info:
        db.close()
    assert info.value.reason == "failed" and "cannot encode" in str(info.value)
    monkeypatch.setattr(dbmod, "SstBuilder", real)
    with open_db(path) as db2:
        assert db2.get(b"c") is None


def test_unencodable_wal_buffer_wakes_durable_writers(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shale.engine.wal_buffer as dbmod

    class Exploding(dbmod.SstBuilder):  # type: ignore[misc,name-defined]
        def finish(self) -> bytes:
            raise OverflowError("cannot encode")

    monkeypatch.setattr(dbmod, "SstBuilder", Exploding)
    db = open_db(tmp_path / "db")
    with pytest.raises(ClosedError) as info:
        db.put(b"a", b"1")
    assert info.value.reason == "failed" and info.value.__cause__ is not None
    assert "cannot encode" in str(info.value)
    with pytest.raises(ClosedError):
        db.close()


# -- item 2: a batch's ops on one key read like the same ops written one by one ----------------


def _concat_db(path: pathlib.Path, clock: ManualClock, **settings: Any) -> Db:
    return open_db(path, FAST.replace(merge_operator="concat", **settings), clock=clock)


MIXED_TTL_BATCHES: list[list[tuple[str, bytes, Any]]] = [
    [("put", b"a", None), ("merge", b"b", 1000)],
    [("put", b"a", 1000), ("merge", b"b", None)],
    [("merge", b"a", 500), ("merge", b"b", 1000)],
    [("merge", b"a", None), ("merge", b"b", Ttl.at(NOW + 1000))],
    [("delete", b"", None), ("merge", b"a", 500), ("merge", b"b", 1000)],
    [("put", b"a", Ttl.no_expiry()), ("merge", b"b", 1000)],
]


def _batch(ops: list[tuple[str, bytes, Any]]) -> WriteBatch:
    b = WriteBatch()
    for kind, value, ttl in ops:
        if kind == "put":
            b.put(b"k", value, ttl=ttl)
        elif kind == "merge":
            b.merge(b"k", value, ttl=ttl)
        else:
            b.delete(b"k")
    return b


@pytest.mark.parametrize("ops", MIXED_TTL_BATCHES, ids=str)
def test_batch_ops_on_one_key_with_different_ttls_are_invalid(
    tmp_path: pathlib.Path, ops: list[tuple[str, bytes, Any]]
) -> None:
    clock = ManualClock(NOW)
    with _concat_db(tmp_path / "db", clock) as db:
        with pytest.raises(InvalidError, match="share one TTL"):
            db.write(_batch(ops).put(b"other", b"x"))
        assert nothing_written(db, b"k", b"other")


SAME_TTL_BATCHES: list[list[tuple[str, bytes, Any]]] = [
    [("put", b"a", None), ("merge", b"b", None)],
    [("put", b"a", 1000), ("merge", b"b", 1000), ("merge", b"c", Ttl.at(NOW + 1000))],
    [("merge", b"a", 1000), ("merge", b"b", 1000)],
    [("delete", b"", None), ("merge", b"a", 1000)],
    [("merge", b"a", None), ("merge", b"b", 500)],  # default_ttl 500 = the explicit 500
    [("merge", b"a", 1000), ("put", b"b", 500)],  # a put replaces earlier ops
]


@pytest.mark.parametrize("ops", SAME_TTL_BATCHES, ids=str)
def test_batch_reads_like_one_by_one_writes(
    tmp_path: pathlib.Path, ops: list[tuple[str, bytes, Any]]
) -> None:
    clock = ManualClock(NOW)
    with _concat_db(tmp_path / "batch", clock, default_ttl=500) as db:
        db.put(b"k", b"old")
        db.write(_batch(ops))
        batched = [db.get_key_value(b"k")]
        for t in (499, 500, 999, 1000, 5000):
            clock.set(NOW + t)
            batched.append(db.get_key_value(b"k"))
    clock.set(NOW)
    with _concat_db(tmp_path / "one", clock, default_ttl=500) as db:
        db.put(b"k", b"old")
        for kind, value, ttl in ops:
            if kind == "put":
                db.put(b"k", value, ttl=ttl)
            elif kind == "merge":
                db.merge(b"k", value, ttl=ttl)
            else:
                db.delete(b"k")
        single = [db.get_key_value(b"k")]
        for t in (499, 500, 999, 1000, 5000):
            clock.set(NOW + t)
            single.append(db.get_key_value(b"k"))

    def view(kvs: list[Any]) -> list[Any]:
        return [None if kv is None else (kv.value, kv.expire_ts) for kv in kvs]

    assert view(batched) == view(single)


# -- item 12: merge operands are checked when they are written ---------------------------------


def test_merge_without_operator_is_invalid_before_anything_is_written(
    db_path: pathlib.Path,
) -> None:
    with open_db(db_path) as db:
        with pytest.raises(InvalidError, match="merge operator missing"):
            db.merge(b"m", b"a")
        with pytest.raises(InvalidError, match="merge operator missing"):
            db.write(WriteBatch().put(b"p", b"1").merge(b"m", b"a"))
        with pytest.raises(InvalidError, match="merge operator missing"):
            db.write(WriteBatch().put(b"m", b"1").merge(b"m", b"a"))
        assert nothing_written(db, b"m", b"p")
        db.put(b"ok", b"1")
        db.flush(memtable=True)
        assert db.get(b"ok") == b"1"


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "db"


@pytest.mark.parametrize("operand", [b"", b"1", b"1234567", b"123456789"], ids=repr)
def test_counter_operand_not_8_bytes_is_invalid(db_path: pathlib.Path, operand: bytes) -> None:
    with open_db(db_path, FAST.replace(merge_operator="counter")) as db:
        with pytest.raises(InvalidError, match="merge operand rejected"):
            db.merge(b"c", operand)
        with pytest.raises(InvalidError, match="merge operand rejected"):
            db.write(WriteBatch().merge(b"x", CounterMergeOperator.encode(1)).merge(b"c", operand))
        assert nothing_written(db, b"c", b"x")
        db.merge(b"c", CounterMergeOperator.encode(2))
        db.merge(b"c", CounterMergeOperator.encode(3))
        assert CounterMergeOperator.decode(db.get(b"c") or b"") == 5


def test_operator_validate_errors_are_wrapped(db_path: pathlib.Path) -> None:
    class Picky:
        name = "picky"

        def validate(self, operand: bytes) -> None:
            if not operand.isdigit():
                raise ValueError("digits only")

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            return (existing or b"") + operand

    with open_db(db_path, merge_operator=Picky()) as db:
        with pytest.raises(InvalidError) as info:
            db.merge(b"k", b"x")
        assert isinstance(info.value.__cause__, ValueError)
        assert "picky" in str(info.value) and "digits only" in str(info.value)
        db.merge(b"k", b"1")
        assert db.get(b"k") == b"1"


def test_poisoned_row_is_a_data_error_for_that_key_only(db_path: pathlib.Path) -> None:
    """Operands another tool stored that the operator cannot merge: reads of that key raise
    ``DataError``; other keys, scans of other ranges and flushes go on."""
    with open_db(db_path, FAST.replace(merge_operator="concat")) as db:
        db.merge(b"bad", b"xyz")  # fine for concat, poison for counter
        db.merge(b"bad", b"xyz")
        db.put(b"good", CounterMergeOperator.encode(7))
        db.merge(b"good", CounterMergeOperator.encode(1))
    with open_db(db_path, FAST.replace(merge_operator="counter")) as db:
        with pytest.raises(DataError, match="merge operator failed"):
            db.get(b"bad")
        with pytest.raises(DataError):
            list(db.scan())
        assert CounterMergeOperator.decode(db.get(b"good") or b"") == 8
        assert [k for k, _ in db.scan(b"c")] == [b"good"]
        db.flush(memtable=True)
        assert CounterMergeOperator.decode(db.get(b"good") or b"") == 8


# -- item 13: a closed-by-failure database says why --------------------------------------------


def test_closed_error_after_a_corrupt_manifest_names_the_cause() -> None:
    store = MemoryStore()
    db = Db.open("db", FAST, object_store=store)
    db.put(b"k", b"v")
    store.put(ids.manifest_path("db", db.metrics()["manifest_id"] + 1), b"garbage")
    # the next manifest update reads the corrupt manifest and fails the database
    with pytest.raises(ClosedError) as info:
        db.flush(memtable=True)
    err = info.value
    assert err.reason == "failed"
    assert isinstance(err.__cause__, DataError)
    assert "DataError" in str(err)
    with pytest.raises(ClosedError) as info2:
        db.get(b"k")
    assert isinstance(info2.value.__cause__, DataError)
    with pytest.raises(ClosedError):
        db.close()


# -- item 13: components are checked when the database opens -----------------------------------


def test_missing_codec_library_fails_open_before_anything_is_written(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compression_codec="zstd"`` without the extra used to open fine; the first write then
    killed the database with no cause."""
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)  # "import zstandard" raises ImportError
    path = tmp_path / "db"
    with pytest.raises(InvalidError, match=r"shale-core\[zstd\]") as info:
        open_db(path, FAST.replace(compression_codec="zstd"))
    assert info.value.detail["field"] == "compression_codec"
    assert not path.exists()
    store = MemoryStore()
    with pytest.raises(InvalidError, match="zstd"):
        Db.open("db", FAST.replace(compression_codec="zstd"), object_store=store)
    assert list(store.list("")) == []


class _FloatClock:
    def now_ms(self) -> float:
        return 1.7e12


class _FarClock:
    def now_ms(self) -> int:
        return 2**63


class _NoMerge:
    name = "nomerge"


class _BadValidate:
    name = "badvalidate"
    validate = 5

    def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
        return operand


BAD_COMPONENTS: list[tuple[str, Any]] = [
    ("merge_operator", 5),
    ("merge_operator", _NoMerge()),
    ("merge_operator", _BadValidate()),
    ("filter_policies", [5]),
    ("filter_policies", "_bf"),
    ("transformer", object()),
    ("clock", 5),
    ("clock", _FloatClock()),
    ("clock", _FarClock()),
    ("block_cache", {}),
    ("store_options", "fsync"),
    ("store_options", {1: True}),
    ("store_options", {"no_such_option": 1}),
]


@pytest.mark.parametrize(("name", "value"), BAD_COMPONENTS, ids=lambda v: repr(v)[:30])
def test_bad_component_fails_open_before_anything_is_written(
    tmp_path: pathlib.Path, name: str, value: Any
) -> None:
    path = tmp_path / "db"
    with pytest.raises(InvalidError):
        open_db(path, **{name: value})
    assert not path.exists()


@pytest.mark.parametrize("path", ["db\x00x", "", 5, None, b"db"], ids=repr)
def test_bad_path_is_invalid(tmp_path: pathlib.Path, path: Any) -> None:
    with pytest.raises(InvalidError):
        Db.open(path if not isinstance(path, str) else str(tmp_path / path) if path else path)


@pytest.mark.parametrize("root", ["a\x00b", "a/../b", 5, None], ids=repr)
def test_bad_root_in_an_explicit_store_is_invalid(root: Any) -> None:
    store = MemoryStore()
    with pytest.raises(InvalidError):
        Db.open(root, FAST, object_store=store)
    assert list(store.list("")) == []


def test_object_store_must_be_a_store() -> None:
    with pytest.raises(InvalidError, match="ObjectStore"):
        Db.open("db", FAST, object_store=object())  # type: ignore[arg-type]


# -- item 14: a store that refuses for good is not "unavailable", and nothing retries it -------


class DenyingStore(MemoryStore):
    """A store whose operations named in ``deny`` raise ``PermanentStoreError`` (access
    denied) for keys under ``prefix``; counts the refused calls."""

    def __init__(self) -> None:
        super().__init__()
        self.deny: set[str] = set()
        self.prefix = ""
        self.refused = 0

    def _check(self, op: str, key: str) -> None:
        if op in self.deny and key.startswith(self.prefix):
            self.refused += 1
            raise PermanentStoreError("access denied", key=key, status=403)

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._check("put", key)
        super().put(key, data, durable=durable)

    def put_if_absent(self, key: str, data: bytes) -> None:
        self._check("put_if_absent", key)
        super().put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self._check("put_if_match", key)
        super().put_if_match(key, data, etag)

    def get(self, key: str) -> bytes:
        self._check("get", key)
        return super().get(key)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        self._check("list", prefix)
        return super().list(prefix)


def test_permanent_store_error_is_not_retryable() -> None:
    err = PermanentStoreError("access denied")
    assert not isinstance(err, UnavailableError)
    assert isinstance(err, InvalidError) and err.kind == "invalid"
    assert isinstance(TransientStoreError("x"), UnavailableError)


def test_wal_upload_denied_fails_the_database_instead_of_retrying() -> None:
    """Permission denied used to be "unavailable": the WAL uploader retried it forever and
    every durable write raised UnavailableError ("queued, will be retried")."""
    store = DenyingStore()
    db = Db.open("db", FAST, object_store=store)
    db.put(b"before", b"1")
    store.deny, store.prefix = {"put_if_absent"}, "db/wal/"
    with pytest.raises(ClosedError) as info:
        db.put(b"k", b"v")
    assert info.value.reason == "failed"
    assert isinstance(info.value.__cause__, PermanentStoreError)
    assert "access denied" in str(info.value)
    assert store.refused == 1  # tried once, never retried
    with pytest.raises(ClosedError):
        db.put(b"later", b"x")
    with pytest.raises(ClosedError):
        db.close()


def test_wal_flush_denied_in_the_callers_thread_never_drops_the_buffer() -> None:
    store = DenyingStore()
    db = Db.open("db", FAST.replace(flush_interval=None), object_store=store)
    db.put(b"a", b"1", durable=False)
    store.deny, store.prefix = {"put_if_absent"}, "db/wal/"
    with pytest.raises(ClosedError) as info:
        db.flush()
    assert isinstance(info.value.__cause__, PermanentStoreError)
    store.deny = set()
    with pytest.raises(ClosedError):
        db.put(b"c", b"3")  # not acknowledged on top of the lost buffer
    with pytest.raises(ClosedError):
        db.close()


def test_l0_upload_denied_fails_the_database() -> None:
    store = DenyingStore()
    db = Db.open("db", FAST, object_store=store)
    db.put(b"a", b"1")
    store.deny, store.prefix = {"put"}, "db/compacted/"
    with pytest.raises(ClosedError) as info:
        db.flush(memtable=True)
    assert isinstance(info.value.__cause__, PermanentStoreError)
    assert store.refused == 1
    with pytest.raises(ClosedError):
        db.close()


def test_manifest_poll_denied_fails_the_database() -> None:
    store = DenyingStore()
    db = Db.open("db", FAST, object_store=store)
    store.deny, store.prefix = {"list", "get"}, "db/manifest"
    deadline = time.monotonic() + 10
    while db.close_reason is None and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert db.close_reason == "failed"
    refused = store.refused
    threading.Event().wait(0.3)  # several poll intervals: nothing polls any more
    assert store.refused == refused
    with pytest.raises(ClosedError) as info:
        db.get(b"k")
    assert isinstance(info.value.__cause__, PermanentStoreError)
    with pytest.raises(ClosedError):
        db.close()


def test_paths_may_be_path_like_everywhere(tmp_path: pathlib.Path) -> None:
    import asyncio

    import shale
    from shale.plugins import open_store

    where = tmp_path / "db"
    with Db.open(where) as db:  # a pathlib.Path
        db.put(b"k", b"v")
    with shale.DbReader.open(where, mode="follow_latest") as reader:
        assert reader.get(b"k") == b"v"
    assert shale.Admin(where).list_checkpoints() == []
    assert open_store(where).get("manifest/00000000000000000001.manifest")

    async def aio() -> bytes | None:
        db = await shale.aio.AsyncDb.open(where)
        try:
            return await db.get(b"k")
        finally:
            await db.close()

    assert asyncio.run(aio()) == b"v"
    for bad in (b"/tmp/bytes-path", "", "a\x00b", 3):
        with pytest.raises(InvalidError, match=r"os\.PathLike"):
            Db.open(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidError):
            shale.Admin(bad)  # type: ignore[arg-type]
