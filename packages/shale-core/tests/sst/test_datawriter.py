"""The SST data writer's twins (``shale.sst._datawriter_py`` / ``_datawriter_c``): same bytes,
index, stats and errors on random rows, and the SstBuilder streaming API built on it."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import _accel
from shale.errors import InvalidError
from shale.sst import SsTable, SstBuilder
from shale.sst import compression as C
from shale.sst.builder import build_sst

Row = tuple[Any, ...]


@st.composite
def sorted_rows(draw: st.DrawFn, wal: bool = False) -> list[Row]:
    """Compacted order (key ascending, seq descending), or commit order for WAL SSTs."""
    keys = sorted(set(draw(st.lists(st.binary(min_size=1, max_size=24), min_size=1, max_size=60))))
    rows: list[Row] = []
    seq = 10_000
    for key in keys:
        for _ in range(draw(st.integers(1, 3))):
            seq -= draw(st.integers(1, 5))
            kind = draw(st.sampled_from([0, 0, 0, 1, 2]))
            value = b"" if kind == 1 else draw(st.binary(max_size=300))
            expire = draw(st.none() | st.integers(-(2**40), 2**40))
            create = draw(st.none() | st.integers(0, 2**40))
            rows.append((key, seq, kind, value, expire, create))
    if wal:
        rows.sort(key=lambda r: r[1])
    return rows


def _state(w: Any) -> tuple[Any, ...]:
    w.close_block()
    return (
        b"".join(w.chunks),
        w.size,
        w.index.finish(),
        list(w.block_stats),
        w.keys,
        w.first_entry,
        w.last_key,
        w.last_seq,
        w.num_rows,
        (w.puts, w.deletes, w.merges, w.raw_key, w.raw_val),
    )


def _write(impl: ModuleType, rows: list[Row], **kw: Any) -> tuple[Any, ...]:
    w = impl.DataWriter(
        kw.get("block_size", 256), 2, kw.get("codec", C.NONE), None, kw.get("wal", False), True
    )
    it = iter(rows)
    while w.add_rows(it, kw.get("max_rows", 7), 1 << 40) == kw.get("max_rows", 7):
        pass
    return _state(w)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=sorted_rows(), block_size=st.sampled_from([64, 128, 256, 1024]))
def test_twins_write_the_same_bytes(both_twins: Any, rows: list[Row], block_size: int) -> None:
    py, c = both_twins("datawriter")
    assert _write(py, rows, block_size=block_size) == _write(c, rows, block_size=block_size)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=sorted_rows(wal=True))
def test_twins_write_the_same_wal_bytes(both_twins: Any, rows: list[Row]) -> None:
    py, c = both_twins("datawriter")
    assert _write(py, rows, wal=True) == _write(c, rows, wal=True)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=sorted_rows(), limit=st.integers(0, 3000))
def test_add_rows_stops_where_the_size_passes_the_limit(
    datawriter_impl: ModuleType, rows: list[Row], limit: int
) -> None:
    """add_rows stops right after the row whose block closing pushed ``size`` over the limit,
    exactly where a row-by-row loop checking ``size`` would."""
    w = datawriter_impl.DataWriter(128, 2, C.NONE, None, False, False)
    n = w.add_rows(iter(rows), 1 << 30, limit)
    ref = datawriter_impl.DataWriter(128, 2, C.NONE, None, False, False)
    m = 0
    for row in rows:
        ref.add(row)
        m += 1
        if ref.size > limit:
            break
    assert n == m and w.size == ref.size


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(b"b", 1, 0, b"", None, None), (b"a", 2, 0, b"", None, None)], "sorted by key"),
        ([(b"a", 1, 0, b"", None, None), (b"a", 1, 0, b"", None, None)], "sorted by key"),
        ([(b"a", 1, 0, b"", None, None), (b"a", 2, 0, b"", None, None)], "sorted by key"),
        ([(b"", 1, 0, b"", None, None)], "key length"),
        ([(b"a", 1, 7, b"", None, None)], "bad row kind"),
    ],
)
def test_errors(datawriter_impl: ModuleType, rows: list[Row], message: str) -> None:
    w = datawriter_impl.DataWriter(4096, 2, C.NONE, None, False, False)
    with pytest.raises(InvalidError, match=message):
        for row in rows:
            w.add(row)
    assert w.num_rows == len(rows) - 1  # the rejected row changed nothing


def test_wal_order_error(datawriter_impl: ModuleType) -> None:
    w = datawriter_impl.DataWriter(4096, 2, C.NONE, None, True, False)
    w.add((b"b", 5, 0, b"", None, None))
    with pytest.raises(InvalidError, match="WAL rows must be in seq order"):
        w.add((b"a", 4, 0, b"", None, None))


def test_shortest_separator_twins(datawriter_impl: ModuleType) -> None:
    sep = datawriter_impl.shortest_separator
    assert sep(b"abc", b"abd") == b"abd"
    assert sep(b"abc", b"abcd") == b"abcd"
    assert sep(b"ab", b"abcd") == b"abc"
    assert sep(b"abc", b"abc") == b"abc"
    assert sep(b"a", b"b") == b"b"


def test_registered_as_accelerated() -> None:
    assert "datawriter" in _accel.ACCELERATED


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=sorted_rows(), take_every=st.integers(1, 9), codec=st.sampled_from(["none", "zlib"]))
def test_streamed_parts_equal_finish(rows: list[Row], take_every: int, codec: str) -> None:
    """take_parts + finish_parts, concatenated, are exactly finish()'s bytes, and read back."""
    opts: dict[str, Any] = {"block_size": 128, "compression": codec, "min_filter_keys": 1}
    whole = build_sst(rows, **opts)
    b = SstBuilder(**opts)
    parts: list[bytes] = []
    for i, row in enumerate(rows, 1):
        b.add(row)
        if i % take_every == 0:
            parts += b.take_parts()
    parts += b.finish_parts()
    assert b"".join(parts) == whole
    from shale.objstore.memory import MemoryStore

    store = MemoryStore()
    store.put("x.sst", whole)
    assert [tuple(r) for r in SsTable.open(store, "x.sst").iter_rows()] == rows


def test_builder_add_until_and_finished(datawriter_impl: ModuleType) -> None:
    b = SstBuilder(block_size=128)
    rows = [(b"k%04d" % i, 1, 0, b"v" * 50, None, None) for i in range(100)]
    it = iter(rows)
    assert b.add_until(it, 10, 1 << 40) == 10
    assert len(b) == 10
    assert b.add_until(it, 1000, 1 << 40) == 90
    assert b.add_until(it, 1000, 1 << 40) == 0
    b.finish()
    with pytest.raises(InvalidError, match="already finished"):
        b.add_until(iter(rows), 1, 1)
    with pytest.raises(InvalidError, match="already finished"):
        b.finish_parts()
