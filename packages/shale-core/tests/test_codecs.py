"""shale.codecs and shale.TypedView: round trips, order preservation (hypothesis), clear errors,
and typed reads and writes through a Db, a namespace, a transaction and a reader."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import shale
from shale import DataError, Db, InvalidError, Settings, TypedView, codecs
from shale.objstore.memory import MemoryStore

QUIET = Settings(flush_interval=None, compactor_options=None, garbage_collector_options=None)

ints = st.integers(min_value=-(2**200), max_value=2**200)
floats = st.floats(allow_nan=False)
scalars = st.none() | st.binary(max_size=6) | st.text(max_size=6) | ints | floats | st.booleans()
tuples = st.recursive(
    st.tuples(scalars) | st.tuples(scalars, scalars),
    lambda inner: st.tuples(inner) | st.tuples(scalars, inner) | st.tuples(inner, scalars),
    max_leaves=6,
)


@pytest.fixture
def db() -> Iterator[Db]:
    d = Db.open("db", QUIET, object_store=MemoryStore())
    yield d
    d.close()


def _same(a: Any, b: Any) -> bool:
    """Equality that tells -0.0 from 0.0 and True from 1 (the codec keeps both apart)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


@given(tuples)
def test_tuple_round_trip(t: tuple[Any, ...]) -> None:
    assert _same(codecs.TUPLE.decode(codecs.TUPLE.encode(t)), t)


@given(st.lists(ints, min_size=2, max_size=2))
def test_tuple_ints_sort_like_numbers(pair: list[int]) -> None:
    a, b = pair
    ea, eb = codecs.TUPLE.encode((a,)), codecs.TUPLE.encode((b,))
    assert (a < b) == (ea < eb) and (a == b) == (ea == eb)


@given(st.lists(floats, min_size=2, max_size=2))
def test_tuple_floats_sort_like_numbers(pair: list[float]) -> None:
    a, b = pair
    ea, eb = codecs.TUPLE.encode(a), codecs.TUPLE.encode(b)
    if a < b:
        assert ea < eb
    elif a > b:
        assert ea > eb


@given(
    st.lists(
        st.tuples(st.binary(max_size=4), st.text(max_size=4), st.integers(-(2**70), 2**70)),
        min_size=2,
        max_size=8,
    )
)
def test_homogeneous_tuples_sort_like_python_tuples(items: list[tuple[bytes, str, int]]) -> None:
    assert sorted(items, key=codecs.TUPLE.encode) == sorted(items)


@given(st.tuples(st.binary(max_size=4), st.integers(-9, 9)), st.binary(max_size=4))
def test_tuple_prefix_range_holds_exactly_the_extensions(
    prefix: tuple[bytes, int], other: bytes
) -> None:
    low, high = codecs.TUPLE.prefix_range(prefix)
    assert low is not None and high is not None

    def inside(t: tuple[Any, ...]) -> bool:
        e = codecs.TUPLE.encode(t)
        return low <= e < high

    assert inside(prefix) and inside((*prefix, other)) and inside((*prefix, None, 1))
    assert not inside((prefix[0], prefix[1] + 1)) and not inside((prefix[0] + b"\x00",))
    assert codecs.TUPLE.prefix_range(()) == (None, None)


def test_cross_type_order_is_documented() -> None:
    order = [(None,), (b"",), ("",), ((),), (0,), (0.5,), (False,), (True,)]
    assert sorted(reversed(order), key=codecs.TUPLE.encode) == order
    assert codecs.TUPLE.encode(()) == b""  # the empty tuple: the smallest key of all
    assert codecs.TUPLE.encode(1) == codecs.TUPLE.encode((1,))  # a scalar is a 1-tuple


@pytest.mark.parametrize(
    "bad", [object(), [1], {"a": 1}, float("nan"), 2**2100, ("\ud800",)], ids=repr
)
def test_tuple_encode_refuses_clearly(bad: object) -> None:
    with pytest.raises(InvalidError):
        codecs.TUPLE.encode(bad)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01abc",
        b"\x02ab",
        b"\x15",
        b"\x1d\x05\x01",
        b"\x21\x00",
        b"\x99",
        b"\x05\x15",
        b"\x05\x01ab",
    ],
)
def test_tuple_decode_refuses_corrupt_bytes(data: bytes) -> None:
    with pytest.raises(DataError):
        codecs.TUPLE.decode(data)


@given(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1))
def test_int_codec_orders_and_round_trips(a: int, b: int) -> None:
    c = codecs.Int()
    assert c.decode(c.encode(a)) == a
    assert (a < b) == (c.encode(a) < c.encode(b))


def test_int_codec_bounds_and_widths() -> None:
    u = codecs.Int(2, signed=False)
    assert u.encode(0) == b"\x00\x00" and u.encode(65535) == b"\xff\xff" and u.name == "uint16"
    for bad in (-1, 65536, 1.0, True, "1"):
        with pytest.raises(InvalidError):
            u.encode(bad)  # type: ignore[arg-type]
    with pytest.raises(DataError):
        u.decode(b"\x00")
    for width in (0, 17, 2.0):
        with pytest.raises(InvalidError):
            codecs.Int(width)  # type: ignore[arg-type]
    low, high = codecs.Int(4).prefix_range(7)
    assert low == codecs.Int(4).encode(7) and high is not None and low < high


def test_str_bytes_json_round_trips_and_errors() -> None:
    assert codecs.STR.decode(codecs.STR.encode("héllo")) == "héllo"
    assert codecs.STR.encode("a") < codecs.STR.encode("é") < codecs.STR.encode("\U0001f600")
    assert codecs.BYTES.encode(bytearray(b"x")) == b"x"
    value = {"name": "Ada", "tags": ["x", 1, None, 2.5], "nested": {"ok": True}}
    assert codecs.JSON.decode(codecs.JSON.encode(value)) == value
    assert codecs.JSON.encode({"b": 1, "a": 2}) == b'{"b":1,"a":2}'
    assert codecs.JsonCodec(sort_keys=True).encode({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    for codec, bad in ((codecs.STR, b"x"), (codecs.BYTES, "x"), (codecs.JSON, object())):
        with pytest.raises(InvalidError):
            codec.encode(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        codecs.JSON.encode(float("inf"))
    for codec, corrupt in ((codecs.STR, b"\xff"), (codecs.JSON, b"{nope")):
        with pytest.raises(DataError):
            codec.decode(corrupt)


def test_msgpack_round_trip_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("msgpack")  # installed by requirements-dev.txt (shale-core[msgpack])
    value = {"k": [1, b"raw", "text", None]}
    assert codecs.MSGPACK.decode(codecs.MSGPACK.encode(value)) == value
    with pytest.raises(DataError):
        codecs.MSGPACK.decode(b"\xc1")  # a never-used msgpack byte
    monkeypatch.setitem(sys.modules, "msgpack", None)  # as if not installed
    with pytest.raises(InvalidError, match="pip install msgpack"):
        codecs.MSGPACK.encode(1)


def test_typed_view_reads_writes_and_scans_in_value_order(db: Db) -> None:
    users = TypedView(db, key=codecs.TUPLE, value=codecs.JSON)
    for uid in (10, -3, 2, 100):
        users.put(("user", uid), {"id": uid})
    users[("group", 1)] = ["admins"]
    assert users.get(("user", 2)) == {"id": 2} and users[("group", 1)] == ["admins"]
    assert users.get(("user", 7)) is None and users.get(("user", 7), {}) == {}
    assert ("user", 10) in users and ("user", 7) not in users
    with pytest.raises(KeyError):
        users[("user", 7)]
    assert [k for k, _ in users.scan_prefix(("user",))] == [
        ("user", -3),
        ("user", 2),
        ("user", 10),
        ("user", 100),
    ]
    assert [k[1] for k, _ in users.scan_prefix(("user",), reverse=True)] == [100, 10, 2, -3]
    assert [k[1] for k, _ in users.scan(("user", 0), ("user", 50))] == [2, 10]
    users.delete(("user", 100), durable=False)
    assert ("user", 100) not in users
    assert users.update(("user", 2), lambda v: {**(v or {}), "seen": 1}) == {"id": 2, "seen": 1}
    assert users.update(("user", 2), lambda v: None) is None and ("user", 2) not in users
    assert "key=tuple value=json" in repr(users)


def test_typed_view_over_namespace_transaction_and_reader(db: Db) -> None:
    ns = db.namespace(b"t/")
    counts = TypedView(ns, key=codecs.STR, value=codecs.Int())
    counts["a"] = 1
    assert db.get(b"t/a") == codecs.Int().encode(1)
    with db.namespace(b"t/").begin() as txn:
        view = TypedView(txn, key=codecs.STR, value=codecs.Int())
        view.put("b", view.get("a", 0) + 1)  # type: ignore[operator]
    assert counts["b"] == 2 and list(counts.scan()) == [("a", 1), ("b", 2)]
    assert list(counts.scan_prefix("b")) == [("b", 2)]
    db.flush()
    with shale.DbReader.open("db", object_store=db.store, mode="follow_latest") as reader:
        ro = TypedView(reader.namespace(b"t/"), key=codecs.STR, value=codecs.Int())
        assert ro["a"] == 1 and dict(ro.scan()) == {"a": 1, "b": 2}
    with pytest.raises(InvalidError):
        TypedView(db, key=object())
    with pytest.raises(InvalidError):
        TypedView(db, key=codecs.JSON).scan_prefix("x")  # JSON has no prefix_range
    with pytest.raises(DataError):
        db.put(b"t/c", b"\x00")  # one byte: not an Int(8)
        counts["c"]


def test_codecs_reachable_from_the_package() -> None:
    assert shale.codecs.TUPLE is codecs.TUPLE and shale.TypedView is TypedView
