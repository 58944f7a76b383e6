"""Tests of shale/objstore/memory.py: the contract, the injectable clock and named stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shale.errors import InvalidError
from shale.objstore.memory import MemoryStore, forget_named, shale_open_object_store
from shale.testing.objstore_contract import ObjectStoreContract


class TestMemoryStoreContract(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        store = MemoryStore()
        yield store
        store.close()


@pytest.fixture(autouse=True)
def _forget_named_stores() -> Iterator[None]:
    yield
    forget_named()


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_injected_clock_stamps_last_modified() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.put("a", b"1")
    clock.now = 2_000.5
    store.put_if_absent("b", b"2")
    assert store.head("a").last_modified == 1_000.0
    assert store.head("b").last_modified == 2_000.5
    assert [m.last_modified for m in store.list()] == [1_000.0, 2_000.5]
    clock.now = 3_000.0
    store.put_if_match("a", b"11", store.head("a").etag or "")
    assert store.head("a").last_modified == 3_000.0


def test_etags_come_from_a_counter() -> None:
    store = MemoryStore()
    store.put("a", b"x")
    first = store.head("a").etag
    store.put("b", b"x")
    store.put("a", b"x")
    assert first is not None
    assert int(store.head("a").etag or "0", 16) > int(first, 16)


def test_accepts_bytes_like_and_copies_them() -> None:
    store = MemoryStore()
    buf = bytearray(b"abc")
    store.put("k", buf)  # type: ignore[arg-type]
    buf[0] = ord("z")
    assert store.get("k") == b"abc"
    store.put("m", memoryview(b"xyz")[1:])  # type: ignore[arg-type]
    assert store.get("m") == b"yz"
    with pytest.raises(InvalidError):
        store.put("s", "text")  # type: ignore[arg-type]


def test_get_range_rejects_negative_bounds() -> None:
    store = MemoryStore()
    store.put("k", b"abc")
    with pytest.raises(InvalidError):
        store.get_range("k", -1, 2)
    with pytest.raises(InvalidError):
        store.get_range("k", 0, -2)


def test_list_is_a_snapshot() -> None:
    store = MemoryStore()
    for i in range(5):
        store.put(f"k{i}", b"x")
    it = store.list()
    store.delete("k3")
    store.put("k9", b"x")
    assert [m.key for m in it] == ["k0", "k1", "k2", "k3", "k4"]


def test_clear_len_and_repr() -> None:
    store = MemoryStore.named("repr-test")
    store.put("a", b"1")
    assert len(store) == 1
    assert "repr-test" in repr(store)
    store.clear()
    assert len(store) == 0
    assert list(store.list()) == []


def test_named_stores_are_shared_until_forgotten() -> None:
    a = MemoryStore.named("db1")
    assert MemoryStore.named("db1") is a
    assert MemoryStore.named("db2") is not a
    a.put("k", b"v")
    forget_named("db1")
    fresh = MemoryStore.named("db1")
    assert fresh is not a
    assert list(fresh.list()) == []
    assert a.get("k") == b"v"  # old handles keep working
    with pytest.raises(InvalidError):
        MemoryStore.named("")


def test_named_is_thread_safe() -> None:
    got: list[MemoryStore] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait(timeout=10)
        got.append(MemoryStore.named("racy"))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and all(s is got[0] for s in got)


def test_hook_opens_fresh_and_named_stores() -> None:
    fresh1 = shale_open_object_store("memory://", {})
    fresh2 = shale_open_object_store("memory:///", {})
    assert isinstance(fresh1, MemoryStore) and isinstance(fresh2, MemoryStore)
    assert fresh1 is not fresh2
    named = shale_open_object_store("memory://shared", {})
    assert named is shale_open_object_store("MEMORY://shared/", {})
    assert named is MemoryStore.named("shared")


@pytest.mark.parametrize(
    "url", ["file:///tmp/x", "s3://bucket/p", "/plain/path", "memoryx://a", ""]
)
def test_hook_ignores_other_urls(url: str) -> None:
    assert shale_open_object_store(url, {}) is None


@pytest.mark.parametrize(
    "url", ["memory://name/path", "memory:///path", "memory://n?x=1", "memory://n#f"]
)
def test_hook_rejects_paths_and_queries(url: str) -> None:
    with pytest.raises(InvalidError):
        shale_open_object_store(url, {})


def test_hook_rejects_options() -> None:
    with pytest.raises(InvalidError, match="options"):
        shale_open_object_store("memory://", {"fsync": True})


def test_pytest_plugin_memory_store_fixture(memory_store: MemoryStore) -> None:
    assert isinstance(memory_store, MemoryStore)
    assert len(memory_store) == 0
    memory_store.put("k", b"v")
    assert memory_store.get("k") == b"v"
