"""Only shale's public error kinds cross the API (issue 9 item 14).

A table of the bad arguments found by hand (checkpoint lifetimes and names, string checkpoint
ids, flags, timeouts, prefixes, paths), then a hypothesis fuzz: every public ``Db`` /
``DbSnapshot`` / ``WriteBatch`` / ``Ttl`` call with junk in each argument either works or raises
a :class:`shale.ShaleError` -- never a raw ``TypeError``, ``ValueError``, ``OverflowError``,
``UnicodeError`` or ``StopIteration``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import InvalidError, ShaleError
from shale.batch import Ttl, WriteBatch
from shale.db import Db
from shale.objstore.memory import MemoryStore
from shale.settings import Settings

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    merge_operator="concat",
)


@pytest.fixture(scope="module")
def db() -> Iterator[Db]:
    d = Db.open("db", FAST, object_store=MemoryStore())
    d.put(b"k", b"v")
    yield d
    d.close()


BAD_CALLS: list[tuple[str, Callable[[Db], Any]]] = [
    ("lifetime='x'", lambda db: db.create_checkpoint(lifetime="x")),  # type: ignore[arg-type]
    ("lifetime=nan", lambda db: db.create_checkpoint(lifetime=math.nan)),
    ("lifetime=inf", lambda db: db.create_checkpoint(lifetime=math.inf)),
    ("lifetime=-1", lambda db: db.create_checkpoint(lifetime=-1)),
    ("lifetime=True", lambda db: db.create_checkpoint(lifetime=True)),
    ("lifetime=1e12", lambda db: db.create_checkpoint(lifetime=1e12)),
    ("name=123", lambda db: db.create_checkpoint(name=123)),  # type: ignore[arg-type]
    ("name=surrogate", lambda db: db.create_checkpoint(name="a\udc80")),
    ("list name=5", lambda db: db.list_checkpoints(5)),  # type: ignore[arg-type]
    ("refresh id=123", lambda db: db.refresh_checkpoint(123)),  # type: ignore[arg-type]
    ("refresh id='x'", lambda db: db.refresh_checkpoint("not-a-uuid")),
    ("refresh lifetime", lambda db: db.refresh_checkpoint(uuid.uuid4(), lifetime="x")),  # type: ignore[arg-type]
    ("delete id=None", lambda db: db.delete_checkpoint(None)),  # type: ignore[arg-type]
    ("put durable='no'", lambda db: db.put(b"k", b"v", durable="no")),  # type: ignore[arg-type]
    ("scan reverse='x'", lambda db: db.scan(reverse="x")),  # type: ignore[arg-type]
    ("get dirty=1", lambda db: db.get(b"k", dirty=1)),  # type: ignore[arg-type]
    ("get include_expired='x'", lambda db: db.get(b"k", include_expired="x")),  # type: ignore[arg-type]
    ("flush memtable='x'", lambda db: db.flush(memtable="x")),  # type: ignore[arg-type]
    ("wait_durable('x')", lambda db: db.put(b"k", b"v", durable=False).wait_durable("x")),  # type: ignore[arg-type]
    ("wait_durable(nan)", lambda db: db.put(b"k", b"v", durable=False).wait_durable(math.nan)),
    ("wait_durable(-1)", lambda db: db.put(b"k", b"v", durable=False).wait_durable(-1)),
    ("snapshot scan_prefix('x')", lambda db: db.snapshot().scan_prefix("x")),  # type: ignore[arg-type]
    ("snapshot include_expired", lambda db: db.snapshot().get(b"k", include_expired=2)),  # type: ignore[arg-type]
    ("open path NUL", lambda db: Db.open("/tmp/x\x00y", FAST)),
    ("open store_options='x'", lambda db: Db.open("memory://bad-opts", FAST, store_options="x")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("what", "call"), BAD_CALLS, ids=[w for w, _ in BAD_CALLS])
def test_bad_arguments_are_invalid_errors(db: Db, what: str, call: Callable[[Db], Any]) -> None:
    with pytest.raises(InvalidError):
        call(db)


def test_checkpoint_ids_may_be_strings(db: Db) -> None:
    """``refresh_checkpoint(str(id))`` said "unknown checkpoint" for one that exists."""
    cp = db.create_checkpoint(lifetime=60, scope="durable")
    db.refresh_checkpoint(str(cp.id), lifetime=120)
    (found,) = [c for c in db.list_checkpoints() if c.id == cp.id]
    assert found.expire_time_s is not None
    db.refresh_checkpoint(str(cp.id).upper(), lifetime=None)
    assert [c.expire_time_s for c in db.list_checkpoints() if c.id == cp.id] == [None]
    db.delete_checkpoint(str(cp.id))
    assert all(c.id != cp.id for c in db.list_checkpoints())


def test_bad_checkpoint_arguments_flush_nothing(db: Db) -> None:
    db.put(b"pending", b"1", durable=False)
    before = db.metrics()["l0_sst_count"]
    with pytest.raises(InvalidError):
        db.create_checkpoint(lifetime=math.nan)  # scope "all" would flush the memtable first
    assert db.metrics()["l0_sst_count"] == before


# -- fuzz ----------------------------------------------------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.just(object()),
    st.just(uuid.uuid4()),
    st.just(Ttl.after(5)),
)

CALLS: dict[str, Callable[[Db, Any], Any]] = {
    "put.key": lambda db, x: db.put(x, b"v", durable=False),
    "put.value": lambda db, x: db.put(b"k", x, durable=False),
    "put.ttl": lambda db, x: db.put(b"k", b"v", ttl=x, durable=False),
    "put.durable": lambda db, x: db.put(b"k", b"v", durable=x),
    "merge.ttl": lambda db, x: db.merge(b"m", b"x", ttl=x, durable=False),
    "merge.operand": lambda db, x: db.merge(b"m", x, durable=False),
    "delete.key": lambda db, x: db.delete(x, durable=False),
    "write.batch": lambda db, x: db.write(x),
    "batch.put.ttl": lambda db, x: WriteBatch().put(b"k", b"v", ttl=x),
    "batch.merge.key": lambda db, x: WriteBatch().merge(x, b"v"),
    "get.key": lambda db, x: db.get(x),
    "get.durability": lambda db, x: db.get(b"k", durability=x),
    "get.dirty": lambda db, x: db.get(b"k", dirty=x),
    "get.include_expired": lambda db, x: db.get_key_value(b"k", include_expired=x),
    "scan.start": lambda db, x: list(db.scan(x)),
    "scan.end": lambda db, x: list(db.scan(None, x)),
    "scan.reverse": lambda db, x: list(db.scan(reverse=x)),
    "scan_prefix": lambda db, x: list(db.scan_prefix(x)),
    "seek": lambda db, x: db.scan().seek(x),
    "snapshot.get": lambda db, x: db.snapshot().get(x),
    "snapshot.scan_prefix": lambda db, x: list(db.snapshot().scan_prefix(x)),
    "namespace.prefix": lambda db, x: db.namespace(x),
    "namespace.put.key": lambda db, x: db.namespace(b"n/").put(x, b"v", durable=False),
    "namespace.write": lambda db, x: db.namespace(b"n/").write(x, durable=False),
    "namespace.scan.start": lambda db, x: list(db.namespace(b"n/").scan(x)),
    "namespace.seek": lambda db, x: db.namespace(b"n/").scan().seek(x),
    "mapping.durable": lambda db, x: db.mapping(durable=x),
    "mapping.contains": lambda db, x: x in db.mapping(),
    "mapping.get": lambda db, x: db.mapping().get(x),
    "mapping.keys.prefix": lambda db, x: list(db.mapping().keys(prefix=x)),
    "mapping.update": lambda db, x: db.mapping(durable=False).update(x),
    "flush.memtable": lambda db, x: db.flush(memtable=x) if x is not True else None,
    "checkpoint.lifetime": lambda db, x: db.create_checkpoint(lifetime=x, scope="durable"),
    "checkpoint.name": lambda db, x: db.create_checkpoint(name=x, scope="durable"),
    "checkpoint.scope": lambda db, x: db.create_checkpoint(scope=x) if x != "all" else None,
    "checkpoint.list": lambda db, x: db.list_checkpoints(x),
    "checkpoint.refresh.id": lambda db, x: db.refresh_checkpoint(x),
    "checkpoint.refresh.lifetime": lambda db, x: db.refresh_checkpoint(uuid.uuid4(), lifetime=x),
    "checkpoint.delete": lambda db, x: db.delete_checkpoint(x),
    "wait_durable.timeout": lambda db, x: db.put(b"w", b"v").wait_durable(x),
    "ttl.after": lambda db, x: Ttl.after(x),
    "ttl.at": lambda db, x: Ttl.at(x),
    "ttl.init": lambda db, x: Ttl("at", x),
}


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(call=st.sampled_from(sorted(CALLS)), junk=JUNK)
def test_fuzz_only_public_error_kinds_cross_the_api(db: Db, call: str, junk: Any) -> None:
    try:
        CALLS[call](db, junk)
    except ShaleError:
        pass
