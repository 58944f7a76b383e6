"""Unit tests of :mod:`shale.engine.memtable`: versions, visibility bounds, ordering of range
reads (ascending and reverse, across the sorted keys and the recently inserted ones), sizes,
and freezing."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale.engine.memtable import ROW_MEMORY_OVERHEAD, ROW_OVERHEAD, Memtable
from shale.row import MERGE, TOMBSTONE, VALUE


def row(
    key: bytes, seq: int, value: bytes = b"v", kind: int = VALUE, ts: int | None = None
) -> tuple:  # type: ignore[type-arg]
    return (key, seq, kind, value, None, seq if ts is None else ts)


def test_empty() -> None:
    mt = Memtable()
    assert mt.is_empty() and len(mt) == 0
    assert mt.get(b"a", 10) == []
    assert list(mt.iter_rows()) == []
    assert mt.sorted_keys() == []
    assert mt.min_seq is None and mt.max_seq == 0 and mt.last_tick is None


def test_get_returns_visible_versions_newest_first() -> None:
    mt = Memtable()
    mt.put(row(b"k", 1, b"a"))
    mt.put(row(b"x", 2))
    mt.put(row(b"k", 3, b"b", MERGE))
    mt.put(row(b"k", 5, b"", TOMBSTONE))
    assert [r[1] for r in mt.get(b"k", 10)] == [5]  # down to the newest value or tombstone
    assert [r[1] for r in mt.get(b"k", 4)] == [3, 1]
    assert [r[1] for r in mt.get(b"k", 1)] == [1]
    assert mt.get(b"k", 0) == []
    assert mt.get(b"missing", 10) == []


def test_counters_and_sizes() -> None:
    mt = Memtable()
    mt.put(row(b"key", 7, b"value", ts=100))
    mt.put(row(b"k2", 9, b"vv", ts=50))
    assert len(mt) == mt.num_rows == 2
    assert mt.size == (3 + 5 + ROW_OVERHEAD) + (2 + 2 + ROW_OVERHEAD)
    assert mt.mem_bytes == (3 + 5 + ROW_MEMORY_OVERHEAD) + (2 + 2 + ROW_MEMORY_OVERHEAD)
    assert (mt.min_seq, mt.max_seq) == (7, 9)
    assert mt.last_tick == 100  # the largest create_ts, not the last one


def test_iter_rows_orders_keys_and_versions() -> None:
    mt = Memtable()
    for seq, key in enumerate([b"c", b"a", b"b", b"a", b"c"], start=1):
        mt.put(row(key, seq))
    got = [(r[0], r[1]) for r in mt.iter_rows()]
    assert got == [(b"a", 4), (b"a", 2), (b"b", 3), (b"c", 5), (b"c", 1)]
    rev = [(r[0], r[1]) for r in mt.iter_rows(reverse=True)]
    assert rev == [(b"c", 5), (b"c", 1), (b"b", 3), (b"a", 4), (b"a", 2)]


def test_iter_rows_bounds_and_max_seq() -> None:
    mt = Memtable()
    for i, key in enumerate([b"a", b"b", b"c", b"d"], start=1):
        mt.put(row(key, i))
    assert [r[0] for r in mt.iter_rows(b"b", b"d")] == [b"b", b"c"]  # end excluded
    assert [r[0] for r in mt.iter_rows(b"b", b"d", reverse=True)] == [b"c", b"b"]
    assert [r[0] for r in mt.iter_rows(start=b"c")] == [b"c", b"d"]
    assert [r[0] for r in mt.iter_rows(end=b"b")] == [b"a"]
    assert [r[0] for r in mt.iter_rows(max_seq=2)] == [b"a", b"b"]
    assert list(mt.iter_rows(b"x", b"z")) == []


def test_range_reads_merge_sorted_and_recent_keys() -> None:
    """Past the fold threshold keys move into the sorted list; reads in between see both."""
    rng = random.Random(7)
    keys = [b"k%06d" % i for i in range(6000)]
    rng.shuffle(keys)
    mt = Memtable()
    seen: list[bytes] = []
    for seq, key in enumerate(keys, start=1):
        mt.put(row(key, seq))
        seen.append(key)
        if seq in (10, 4097, 5000, 6000):  # before, at and after a fold
            assert mt.sorted_keys() == sorted(seen)
            lo, hi = b"k001000", b"k002000"
            want = [k for k in sorted(seen) if lo <= k < hi]
            assert [r[0] for r in mt.iter_rows(lo, hi)] == want
            assert [r[0] for r in mt.iter_rows(lo, hi, reverse=True)] == want[::-1]


def test_a_reader_bound_hides_later_rows_of_a_key() -> None:
    mt = Memtable()
    mt.put(row(b"k", 1, b"old"))
    it = mt.iter_rows(max_seq=1)
    mt.put(row(b"k", 2, b"new"))  # inserted after the read fixed its bound
    assert [r[3] for r in it] == [b"old"]


def test_freeze_keeps_rows_and_records_the_wal_id() -> None:
    mt = Memtable()
    for i in range(50):
        mt.put(row(b"k%02d" % (49 - i), i + 1))
    assert mt.freeze(12) is mt
    assert mt.frozen and mt.wal_id == 12
    assert mt.sorted_keys() == [b"k%02d" % i for i in range(50)]
    assert len(list(mt.iter_rows())) == 50
    assert Memtable().freeze(None).wal_id is None


def test_concurrent_readers_see_every_committed_row() -> None:
    """Readers take no lock: a read bounded by a seq sees every row at or below it."""
    mt = Memtable()
    committed = [0]
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            bound = committed[0]
            keys = [r[0] for r in mt.iter_rows(max_seq=bound)]
            if len(keys) != bound:
                errors.append(f"bound {bound}: saw {len(keys)} rows")
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for seq in range(1, 3001):
            mt.put(row(b"k%05d" % ((seq * 7919) % 3001), seq))
            committed[0] = seq
    finally:
        done.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("reverse", [False, True])
def test_iter_rows_matches_a_sorted_model(reverse: bool) -> None:
    rng = random.Random(reverse)
    mt = Memtable()
    rows = []
    for seq in range(1, 2000):
        r = row(b"%03d" % rng.randrange(300), seq)
        mt.put(r)
        rows.append(r)
    start, end, bound = b"050", b"250", 1500
    model = sorted(
        (r for r in rows if start <= r[0] < end and r[1] <= bound),
        key=lambda r: (r[0], -r[1]),
    )
    if reverse:
        model = sorted(model, key=lambda r: (r[0], r[1]), reverse=True)
        model = sorted(model, key=lambda r: r[0], reverse=True)  # stable: newest first per key
    assert list(mt.iter_rows(start, end, max_seq=bound, reverse=reverse)) == model


def test_to_base_stops_at_the_newest_value_or_tombstone() -> None:
    mt = Memtable()
    mt.put((b"a", 1, VALUE, b"a1", None, 0))
    mt.put((b"a", 2, VALUE, b"a2", None, 0))
    mt.put((b"a", 3, MERGE, b"+", None, 0))
    mt.put((b"b", 4, TOMBSTONE, b"", None, 0))
    mt.put((b"b", 5, MERGE, b"+", None, 0))
    mt.put((b"c", 6, MERGE, b"+", None, 0))
    got = [(r[0], r[1]) for r in mt.iter_rows(to_base=True)]
    assert got == [(b"a", 3), (b"a", 2), (b"b", 5), (b"b", 4), (b"c", 6)]
    got = [(r[0], r[1]) for r in mt.iter_rows(to_base=True, reverse=True, max_seq=2)]
    assert got == [(b"a", 2)]
    assert len(list(mt.iter_rows())) == 6  # a flush still gets every version


def test_put_rows_is_put_one_by_one_with_true_seq_bounds() -> None:
    rows = [row(b"b", 7), row(b"a", 5, ts=99), row(b"b", 9, kind=MERGE), row(b"c", 6)]
    one, many = Memtable(), Memtable()
    for r in rows:
        one.put(r)
    many.put_rows(rows)  # a WAL SST's rows: by key, not by seq
    assert list(many.iter_rows()) == list(one.iter_rows())
    assert (many.size, many.mem_bytes, many.num_rows) == (one.size, one.mem_bytes, one.num_rows)
    assert (many.min_seq, many.max_seq, many.last_tick) == (5, 9, 99)
    many.put_rows([])
    assert many.num_rows == 4


def test_put_rows_skips_rows_at_or_below_the_floor() -> None:
    rows = [row(b"b", 7), row(b"a", 5, ts=99), row(b"b", 9, kind=MERGE), row(b"c", 6)]
    mt = Memtable()
    assert mt.put_rows(rows, floor=6) == 2  # a replay's rows already in L0 are skipped
    assert [(r[0], r[1]) for r in mt.iter_rows()] == [(b"b", 9), (b"b", 7)]
    assert (mt.min_seq, mt.max_seq, mt.num_rows, mt.last_tick) == (7, 9, 2, 9)
    assert mt.put_rows(rows, floor=9) == 0 and mt.num_rows == 2


ROWS = st.lists(
    st.tuples(
        st.sampled_from([b"a", b"b", b"c"]),
        st.integers(1, 50),
        st.sampled_from([VALUE, TOMBSTONE, MERGE]),
        st.binary(max_size=3),
        st.none() | st.integers(0, 9),
        st.none() | st.integers(0, 9),
    ),
    min_size=1,
    max_size=30,
)


@given(
    rows=ROWS,
    max_seq=st.integers(0, 60),
    tick=st.none() | st.integers(0, 9),
    floor=st.none() | st.integers(0, 60),
)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_twins_agree(
    both_twins: Any,
    rows: list[tuple],  # type: ignore[type-arg]
    max_seq: int,
    tick: int | None,
    floor: int | None,
) -> None:
    py, c = both_twins("memtable")
    got = []
    for impl in (py, c):
        versions: dict[bytes, tuple | list[tuple]] = {}  # type: ignore[type-arg]
        new: list[bytes] = []
        stats = impl.insert_rows(versions, new, list(rows), tick, floor)
        to_base = {  # a key with one version holds the row itself
            k: impl.versions_to_base(v, max_seq) for k, v in versions.items() if type(v) is list
        }
        got.append((stats, versions, new, to_base))
    assert got[0] == got[1]
