"""Unit tests of :mod:`shale.batch`: both twins of ``WriteBatch`` hold the same ops, list them in
the same order and refuse the same input with the same errors."""

from __future__ import annotations

import pickle
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale import _accel
from shale.batch import PendingWriteBatch, Ttl, WriteBatch
from shale.errors import InvalidError
from shale.row import MAX_KEY_LEN, MERGE, TOMBSTONE, VALUE


def test_facade_registered() -> None:
    assert "batch" in _accel.ACCELERATED
    assert issubclass(PendingWriteBatch, WriteBatch)


def test_put_delete_replace_merge_accumulates(batch_impl: ModuleType) -> None:
    wb = batch_impl.WriteBatch()
    assert wb.is_empty() and len(wb) == 0 and wb.items() == [] and wb.keys() == []
    assert wb.put(b"b", b"1") is wb
    wb.put(b"b", b"2", ttl=5)
    wb.merge(b"a", b"x").merge(b"a", b"y", ttl=Ttl.at(7))
    wb.delete(b"c").merge(b"c", b"z")
    wb.merge(b"d", b"m").put(b"d", b"v")
    wb.put(b"e", b"v").delete(b"e")
    assert not wb.is_empty() and len(wb) == 7
    assert wb.items() == [
        (b"a", [(MERGE, b"x", None), (MERGE, b"y", Ttl.at(7))]),
        (b"b", [(VALUE, b"2", Ttl.after(5))]),
        (b"c", [(TOMBSTONE, b"", None), (MERGE, b"z", None)]),
        (b"d", [(VALUE, b"v", None)]),
        (b"e", [(TOMBSTONE, b"", None)]),
    ]
    assert wb.keys() == [b"a", b"b", b"c", b"d", b"e"]
    assert wb.ops(b"a") == [(MERGE, b"x", None), (MERGE, b"y", Ttl.at(7))]
    assert wb.ops(b"zz") is None


def test_keys_sort_bytewise(batch_impl: ModuleType) -> None:
    keys = [b"\xff", b"a\x00", b"a", b"\x00", b"ab", b"\x7f\xff", b"\x80", b"a\xff\x00"]
    wb = batch_impl.WriteBatch()
    for k in keys:
        wb.put(k, k)
    assert wb.keys() == sorted(keys)
    assert [k for k, _ in wb.items()] == sorted(keys)


def test_copies_buffers(batch_impl: ModuleType) -> None:
    wb = batch_impl.WriteBatch()
    key, value = bytearray(b"k"), bytearray(b"v")
    wb.put(key, memoryview(value))
    wb.merge(memoryview(b"m"), bytearray(b"o"))
    key[0], value[0] = 0, 0
    assert wb.items() == [(b"k", [(VALUE, b"v", None)]), (b"m", [(MERGE, b"o", None)])]
    assert all(type(k) is bytes and type(o[1]) is bytes for k, ops in wb.items() for o in ops)


_BAD: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("put", ("k", b"v"), {}),
    ("put", (b"", b"v"), {}),
    ("put", (b"k" * (MAX_KEY_LEN + 1), b"v"), {}),
    ("put", (b"k", "v"), {}),
    ("put", (b"k", None), {}),
    ("put", (b"k", b"v"), {"ttl": 0}),
    ("put", (b"k", b"v"), {"ttl": -1}),
    ("put", (b"k", b"v"), {"ttl": True}),
    ("put", (b"k", b"v"), {"ttl": 1.5}),
    ("put", (b"k", b"v"), {"ttl": 2**64}),
    ("put", ("k", 5), {"ttl": 0}),  # the key is checked first
    ("delete", (b"",), {}),
    ("delete", (3,), {}),
    ("merge", (b"", b"o"), {}),
    ("merge", (b"k", 1), {}),
    ("merge", (b"k", b"o"), {"ttl": "x"}),
]


@pytest.mark.parametrize(("method", "args", "kwargs"), _BAD)
def test_same_errors(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    seen = []
    for impl in _accel.twins("batch").values():
        wb = impl.WriteBatch()
        wb.put(b"k", b"before")
        with pytest.raises(InvalidError) as info:
            getattr(wb, method)(*args, **kwargs)
        seen.append((str(info.value), getattr(info.value, "details", None)))
        assert wb.items() == [(b"k", [(VALUE, b"before", None)])]  # nothing changed
    assert all(s == seen[0] for s in seen)


def test_wrong_arity_is_a_type_error(batch_impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        batch_impl.WriteBatch(1)
    with pytest.raises(TypeError):
        batch_impl.WriteBatch().put(b"k", b"v", 5)
    with pytest.raises(TypeError):
        batch_impl.WriteBatch().delete(b"k", ttl=5)


def test_pickles(batch_impl: ModuleType) -> None:
    wb = batch_impl.WriteBatch()
    wb.put(b"b", b"1", ttl=Ttl.no_expiry()).merge(b"a", b"x")
    copy = pickle.loads(pickle.dumps(wb))
    assert type(copy) is type(wb) and copy.items() == wb.items()


def test_subclass_with_arguments(batch_impl: ModuleType) -> None:
    class Tagged(batch_impl.WriteBatch):  # type: ignore[name-defined,misc]
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

    wb = Tagged("t")
    wb.put(b"k", b"v")
    assert wb.tag == "t" and wb.items() == [(b"k", [(VALUE, b"v", None)])]


_keys = st.binary(min_size=1, max_size=4)
_ttls = st.one_of(
    st.none(),
    st.integers(min_value=-2, max_value=2**64),
    st.builds(Ttl.at, st.integers(min_value=0, max_value=2**63 - 1)),
    st.just(Ttl.no_expiry()),
)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _keys, st.binary(max_size=3), _ttls),
        st.tuples(st.just("delete"), _keys, st.none(), st.none()),
        st.tuples(st.just("merge"), _keys, st.binary(max_size=3), _ttls),
        st.tuples(
            st.sampled_from(["put", "merge"]), st.sampled_from([b"", "s"]), st.just(b""), _ttls
        ),
    ),
    max_size=40,
)


def _apply(impl: ModuleType, ops: list[tuple[str, Any, Any, Any]]) -> list[Any]:
    wb = impl.WriteBatch()
    trace: list[Any] = []
    for method, key, value, ttl in ops:
        try:
            if method == "delete":
                wb.delete(key)
            else:
                getattr(wb, method)(key, value, ttl=ttl)
            trace.append(None)
        except InvalidError as exc:
            trace.append(str(exc))
    return [trace, wb.items(), wb.keys(), len(wb), wb.is_empty(), [wb.ops(k) for k in wb.keys()]]


@settings(max_examples=300, deadline=None)
@given(ops=_ops)
def test_twins_agree(ops: list[tuple[str, Any, Any, Any]]) -> None:
    twins = _accel.twins("batch")
    if len(twins) < 2:
        pytest.skip("compiled twin not built")
    assert _apply(twins["c"], ops) == _apply(twins["py"], ops)
