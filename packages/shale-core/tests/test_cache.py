"""Tests of shale.cache.BlockCache: LRU order, byte accounting, stats, threads, SST reader use.

Every test runs on both twins (``_cache_py`` and ``_cache_c``): the autouse fixture below puts the
twin's class behind this module's ``BlockCache``.
"""

from __future__ import annotations

import random
import threading
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale import _accel
from shale import cache as _facade
from shale.errors import InvalidError
from shale.row import VALUE
from shale.sst import SsTable, build_sst

BlockCache = _facade.BlockCache


@pytest.fixture(autouse=True)
def _both_twins(cache_impl: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(globals(), "BlockCache", cache_impl.BlockCache)


def test_get_put_and_len() -> None:
    c = BlockCache(100)
    assert c.get("a") is None
    c.put("a", [1], 10)
    assert c.get("a") == [1]
    assert len(c) == 1
    assert c.capacity_bytes == 100
    assert "entries=1" in repr(c)


def test_lru_eviction_order() -> None:
    c = BlockCache(30)
    c.put("a", "A", 10)
    c.put("b", "B", 10)
    c.put("c", "C", 10)
    assert c.get("a") == "A"  # a is now the most recently used; b is the oldest
    c.put("d", "D", 10)
    assert c.get("b") is None
    assert [c.get(k) for k in "acd"] == ["A", "C", "D"]
    # order is now a, c, d (oldest first); a put of an existing key refreshes it too
    c.put("a", "A2", 10)
    c.put("e", "E", 10)
    assert c.get("c") is None
    assert [c.get(k) for k in "dae"] == ["D", "A2", "E"]


def test_byte_accounting_evicts_as_many_as_needed() -> None:
    c = BlockCache(100)
    for i in range(10):
        c.put(i, i, 10)
    assert c.stats()["size_bytes"] == 100 and len(c) == 10
    c.put("big", "x", 35)  # needs 4 entries of 10 bytes to go
    s = c.stats()
    assert s["size_bytes"] == 95 and s["entries"] == 7 and s["evictions"] == 4
    assert [c.get(i) for i in range(4)] == [None] * 4
    assert c.get(4) == 4


def test_replacing_a_key_adjusts_size() -> None:
    c = BlockCache(100)
    c.put("a", 1, 60)
    c.put("a", 2, 20)
    assert c.stats()["size_bytes"] == 20 and len(c) == 1 and c.get("a") == 2
    c.put("b", 3, 80)  # fits exactly with the replaced charge
    assert c.stats()["evictions"] == 0 and c.stats()["size_bytes"] == 100


def test_oversized_item_is_not_cached_and_drops_the_old_entry() -> None:
    c = BlockCache(50)
    c.put("keep", 1, 10)
    c.put("k", "old", 10)
    c.put("k", "new but huge", 51)
    assert c.get("k") is None  # never the stale "old"
    assert c.get("keep") == 1  # the cache was not flushed to make room
    s = c.stats()
    assert s["size_bytes"] == 10 and s["entries"] == 1 and s["evictions"] == 0
    c.put("exact", 2, 50)  # charge == capacity fits
    assert c.get("exact") == 2 and c.get("keep") is None


def test_zero_charge_and_exact_capacity() -> None:
    c = BlockCache(10)
    c.put("z", 0, 0)
    c.put("t", 1, 10)
    assert c.get("z") == 0 and c.get("t") == 1


def test_capacity_zero_disables() -> None:
    c = BlockCache(0)
    c.put("a", 1, 0)
    c.put("b", 1, 5)
    assert c.get("a") is None and c.get("b") is None
    assert len(c) == 0
    assert c.stats() == {
        "hits": 0,
        "misses": 2,
        "inserts": 0,
        "evictions": 0,
        "size_bytes": 0,
        "entries": 0,
        "capacity_bytes": 0,
    }


def test_remove_and_clear() -> None:
    c = BlockCache(100)
    c.put("a", 1, 30)
    c.put("b", 2, 30)
    c.remove("a")
    c.remove("missing")
    assert c.get("a") is None and len(c) == 1 and c.stats()["size_bytes"] == 30
    c.clear()
    s = c.stats()
    assert len(c) == 0 and s["size_bytes"] == 0 and s["entries"] == 0
    assert s["evictions"] == 0 and s["inserts"] == 2  # counters survive clear()


def test_stats_counters() -> None:
    c = BlockCache(20)
    c.get("a")  # miss
    c.put("a", 1, 10)
    c.put("b", 2, 10)
    c.get("a")  # hit
    c.get("b")  # hit
    c.put("c", 3, 10)  # evicts a
    c.get("a")  # miss
    c.put("huge", 0, 21)  # not cached: no insert
    assert c.stats() == {
        "hits": 2,
        "misses": 2,
        "inserts": 3,
        "evictions": 1,
        "size_bytes": 20,
        "entries": 2,
        "capacity_bytes": 20,
    }


@pytest.mark.parametrize("bad", [-1, 1.5, "10", None, True])
def test_bad_capacity(bad: object) -> None:
    with pytest.raises(InvalidError):
        BlockCache(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 2.0, "3", None, False])
def test_bad_charge(bad: object) -> None:
    with pytest.raises(InvalidError):
        BlockCache(10).put("k", 1, bad)  # type: ignore[arg-type]


def test_none_value_is_rejected() -> None:
    with pytest.raises(InvalidError):
        BlockCache(10).put("k", None, 1)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(0, 200),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["get", "put", "remove"]), st.integers(0, 12), st.integers(0, 120)
        ),
        max_size=80,
    ),
)
def test_matches_a_reference_model(capacity: int, ops: list[tuple[str, int, int]]) -> None:
    """Against a plain list-based LRU model: same hits, contents, size and counters."""
    c = BlockCache(capacity)
    model: list[tuple[int, int, int]] = []  # (key, value, charge), oldest first
    hits = misses = inserts = evictions = 0
    for n, (op, key, charge) in enumerate(ops):
        found = [e for e in model if e[0] == key]
        if op == "get":
            got = c.get(key)
            if found:
                hits += 1
                model.remove(found[0])
                model.append(found[0])
                assert got == found[0][1]
            else:
                misses += 1
                assert got is None
        elif op == "put":
            c.put(key, n, charge)
            if capacity == 0:
                continue
            if found:
                model.remove(found[0])
            if charge <= capacity:
                model.append((key, n, charge))
                inserts += 1
                while sum(e[2] for e in model) > capacity:
                    model.pop(0)
                    evictions += 1
        else:
            c.remove(key)
            if found:
                model.remove(found[0])
        size = sum(e[2] for e in model)
        assert c.stats() == {
            "hits": hits,
            "misses": misses,
            "inserts": inserts,
            "evictions": evictions,
            "size_bytes": size,
            "entries": len(model),
            "capacity_bytes": capacity,
        }
        assert size <= capacity


def test_concurrent_get_put() -> None:
    capacity = 5_000
    c = BlockCache(capacity)
    errors: list[BaseException] = []
    over: list[int] = []
    start = threading.Barrier(5)

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            start.wait()
            for _ in range(4_000):
                key = rnd.randrange(300)
                value = c.get(key)
                if value is None:
                    c.put(key, ("block", key), rnd.randrange(1, 400))
                else:
                    assert value == ("block", key)
                if rnd.random() < 0.02:
                    c.remove(rnd.randrange(300))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def watcher() -> None:
        start.wait()
        for _ in range(2_000):
            s = c.stats()
            if s["size_bytes"] > capacity:
                over.append(s["size_bytes"])

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    threads.append(threading.Thread(target=watcher))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert over == []
    s = c.stats()
    assert s["hits"] + s["misses"] == 4 * 4_000
    assert 0 < s["size_bytes"] <= capacity
    assert s["entries"] == len(c)


def test_sst_reader_charges_decoded_blocks() -> None:
    rows = [(b"key-%06d" % i, 100, VALUE, b"v" * 50, None, None) for i in range(2000)]
    data = build_sst(rows)
    cache = BlockCache(10 * 1024 * 1024)
    t = SsTable.from_bytes(data, block_cache=cache, cache_id="sst-1")
    assert t.rows() == rows
    s = cache.stats()
    assert s["entries"] == t.block_count and s["misses"] == t.block_count
    # each block is charged at least 64 bytes per row on top of its payload
    assert s["size_bytes"] > 64 * len(rows)
    assert t.rows() == rows
    assert cache.stats()["hits"] == t.block_count
    # a cache a quarter of that size keeps only some of the blocks, within its budget
    small = BlockCache(s["size_bytes"] // 4)
    t2 = SsTable.from_bytes(data, block_cache=small, cache_id="sst-1")
    assert t2.rows() == rows
    assert 0 < len(small) < t2.block_count
    assert small.stats()["size_bytes"] <= small.capacity_bytes


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["get", "put", "remove", "clear"]),
        st.integers(0, 12),
        st.integers(0, 40),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(0, 120), ops=_OPS)
def test_twins_agree_on_every_call(capacity: int, ops: list[Any]) -> None:
    """The compiled cache answers, evicts, orders and counts exactly as the reference."""
    twins = _accel.twins("cache")
    if "c" not in twins:
        pytest.skip("compiled twin not in use")
    py, c = twins["py"].BlockCache(capacity), twins["c"].BlockCache(capacity)
    for op, key, charge in ops:
        if op == "get":
            assert py.get(key) == c.get(key)
        elif op == "put":
            py.put(key, ("v", key, charge), charge)
            c.put(key, ("v", key, charge), charge)
        elif op == "remove":
            py.remove(key)
            c.remove(key)
        else:
            py.clear()
            c.clear()
        assert py.keys() == c.keys()
        assert py.stats() == c.stats()
        assert len(py) == len(c)
