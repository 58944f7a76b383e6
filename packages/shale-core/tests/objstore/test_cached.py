"""The object-store disk cache (shale.objstore.cached) over real stores."""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shale.errors import InvalidError
from shale.objstore.cached import (
    CachedObjectStore,
    CorruptCacheFile,
    read_cache_file,
    upload_kind,
    write_cache_file,
)
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.objstore.protocol import ObjectMeta, ObjectStore
from shale.settings import ObjectStoreCacheOptions
from shale.testing.objstore_contract import ObjectStoreContract

KEY = "db/compacted/01ARZ3NDEKTSV4RRFFQ69G5FAV.sst"
KEY2 = "db/compacted/01ARZ3NDEKTSV4RRFFQ69G5FAW.sst"
PS = 1024


class CountingStore:
    """A real store, with its calls counted (what reached the backend)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.ranges: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._count("put")
        self.inner.put(key, data, durable=durable)

    def put_if_absent(self, key: str, data: bytes, **kw: Any) -> None:
        self.inner.put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self.inner.put_if_match(key, data, etag)

    def get(self, key: str) -> bytes:
        self._count("get")
        return self.inner.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self._count("get_range")
        with self._lock:
            self.ranges.append((key, start, end))
        return self.inner.get_range(key, start, end)

    def head(self, key: str) -> ObjectMeta:
        self._count("head")
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def _opts(folder: Path, **kw: Any) -> ObjectStoreCacheOptions:
    kw.setdefault("part_size_bytes", PS)
    kw.setdefault("scan_interval", None)
    return ObjectStoreCacheOptions(root_folder=str(folder), **kw)


@pytest.fixture(params=["memory", "local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CountingStore]:
    inner: ObjectStore = MemoryStore() if request.param == "memory" else LocalStore(tmp_path / "s")
    store = CountingStore(inner)
    yield store
    store.close()


def _data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def _cache_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _parts(folder: Path) -> list[Path]:
    return sorted(p for p in _cache_files(folder) if p.name.startswith("part-"))


def test_ranged_reads_fetch_aligned_parts(backend: CountingStore, tmp_path: Path) -> None:
    data = _data(5000)
    backend.put(KEY, data)
    cached = CachedObjectStore(backend, _opts(tmp_path / "c"))
    assert cached.get_range(KEY, 1500, 2100) == data[1500:2100]
    assert backend.ranges == [(KEY, 1024, 3072)]  # one request for the two missing parts
    backend.ranges.clear()
    assert cached.get_range(KEY, 1100, 1200) == data[1100:1200]
    assert backend.ranges == []
    # the whole object: parts 0 and 4 are missing, fetched as two aligned runs
    assert cached.get(KEY) == data
    assert backend.ranges == [(KEY, 0, 1024), (KEY, 3072, 5000)]
    backend.ranges.clear()
    assert cached.get_range(KEY, 0, 10_000) == data  # clipped to the size
    assert cached.get_range(KEY, 6000, 7000) == b""
    assert backend.ranges == []
    assert backend.calls["head"] == 1  # the size is cached too
    assert cached.head(KEY).size == 5000
    assert backend.calls["head"] == 1
    m = cached.cache_metrics()
    assert m["disk_cache_part_misses"] == 5 and m["disk_cache_inner_gets"] == 3
    assert m["disk_cache_files"] == 6  # five parts and the head


def test_other_objects_pass_through(backend: CountingStore, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    cached = CachedObjectStore(backend, _opts(folder))
    for key in (
        "db/manifest/00000000000000000001.manifest",
        "db/wal/00000000000000000001.sst",
        "db/compacted/notaulid.sst",
    ):
        cached.put(key, b"x" * 3000)
        assert cached.get(key) == b"x" * 3000
        assert cached.get_range(key, 10, 20) == b"x" * 10
        assert cached.get(key) == b"x" * 3000
    assert backend.calls["get"] == 6
    assert _cache_files(folder) == []


def test_size_bound_holds_and_evicts_lru(backend: CountingStore, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    bound = 12 * 1024
    cached = CachedObjectStore(backend, _opts(folder, max_cache_size_bytes=bound))
    objects = {}
    for i in range(8):
        key = f"db/compacted/01ARZ3NDEKTSV4RRFFQ69G5F{i:02d}.sst"
        objects[key] = _data(4000 + i, seed=i)
        backend.put(key, objects[key])
    rng = random.Random(7)
    for _ in range(200):
        key = rng.choice(list(objects))
        a = rng.randrange(4000)
        b = rng.randrange(a, 4001)
        assert cached.get_range(key, a, b) == objects[key][a:b]
        on_disk = sum(p.stat().st_size for p in _cache_files(folder))
        assert on_disk <= bound
        assert cached.cache_metrics()["disk_cache_bytes"] == on_disk
    assert cached.cache_metrics()["disk_cache_evictions"] > 0


def test_unbounded_cache_accounts_its_bytes(backend: CountingStore, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    backend.put(KEY, _data(5000))
    cached = CachedObjectStore(backend, _opts(folder, max_cache_size_bytes=None))
    cached.get(KEY)
    on_disk = sum(p.stat().st_size for p in _cache_files(folder))
    assert cached.cache_metrics()["disk_cache_bytes"] == on_disk > 5000


def test_least_recently_used_goes_first(backend: CountingStore, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    data = _data(3 * PS)
    backend.put(KEY, data)
    file_size = 24 + 4 + PS  # header (one chunk) + payload
    # room for the head and exactly three parts
    cached = CachedObjectStore(backend, _opts(folder, max_cache_size_bytes=3 * file_size + 200))
    assert cached.get(KEY) == data
    cached.get_range(KEY, 0, 10)  # part 0 is now the most recently used part
    backend.put(KEY2, _data(PS, seed=2))
    cached.get(KEY2)
    names = {p.name for p in _parts(folder) if p.parent.name == KEY.rsplit("/", 1)[1]}
    assert "part-1024-000000000" in names
    assert "part-1024-000000001" not in names  # the least recently used part went


def test_restart_keeps_parts(backend: CountingStore, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    data = _data(4000)
    backend.put(KEY, data)
    first = CachedObjectStore(backend, _opts(folder), namespace="db-a")
    assert first.get(KEY) == data
    before = dict(backend.calls)
    second = CachedObjectStore(backend, _opts(folder), namespace="db-a")
    assert second.cache_metrics()["disk_cache_files"] == 5
    assert second.get(KEY) == data
    assert dict(backend.calls) == before  # nothing reached the backend
    assert second.cache_metrics()["disk_cache_part_hits"] == 4
    # another namespace shares the folder (and its bound) but not the entries
    third = CachedObjectStore(backend, _opts(folder), namespace="db-b")
    assert third.cache_metrics()["disk_cache_files"] == 5
    assert third.get(KEY) == data
    assert backend.calls["get_range"] > before["get_range"]


def _truncate(p: Path) -> None:
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size - 7)


def _flip_payload(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[-100] ^= 0x40
    p.write_bytes(bytes(raw))


def _flip_header(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[10] ^= 0x01
    p.write_bytes(bytes(raw))


def _zero_fill(p: Path) -> None:
    p.write_bytes(b"\0" * p.stat().st_size)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _flip_payload, _flip_header, _zero_fill, _empty])
def test_damaged_part_is_refetched_never_served(
    backend: CountingStore, tmp_path: Path, damage: Any
) -> None:
    folder = tmp_path / "c"
    data = _data(4000)
    backend.put(KEY, data)
    cached = CachedObjectStore(backend, _opts(folder))
    assert cached.get(KEY) == data
    victim = _parts(folder)[1]
    damage(victim)
    gets = backend.calls["get_range"]
    assert cached.get(KEY) == data  # the same instance: every read checks what it reads
    assert backend.calls["get_range"] == gets + 1
    assert cached.cache_metrics()["disk_cache_corrupt_files"] == 1
    read_cache_file(str(victim))  # rewritten whole
    # and after a restart, too
    damage(victim)
    again = CachedObjectStore(backend, _opts(folder))
    assert again.get_range(KEY, 1024, 2048) == data[1024:2048]
    assert again.cache_metrics()["disk_cache_corrupt_files"] == 1


def test_damaged_head_is_refetched(backend: CountingStore, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    data = _data(4000)
    backend.put(KEY, data)
    cached = CachedObjectStore(backend, _opts(folder))
    cached.get(KEY)
    head = next(p for p in _cache_files(folder) if p.name == "head")
    _flip_payload(head) if head.stat().st_size > 100 else _truncate(head)
    assert cached.get(KEY) == data
    assert backend.calls["head"] == 2


def test_file_format_checks(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    payload = _data(100_000)
    write_cache_file(path, payload)
    assert read_cache_file(path) == (payload, len(payload))
    assert read_cache_file(path, 40_000, 70_000) == (payload[40_000:70_000], len(payload))
    raw = bytearray(Path(path).read_bytes())
    raw[-1] ^= 1  # the last chunk
    Path(path).write_bytes(bytes(raw))
    assert read_cache_file(path, 0, 1000)[0] == payload[:1000]  # untouched chunk verifies
    with pytest.raises(CorruptCacheFile):
        read_cache_file(path, 99_000, 100_000)
    assert os.listdir(tmp_path) == ["f"]  # no temp file left behind


def test_concurrent_readers_fetch_each_part_once(backend: CountingStore, tmp_path: Path) -> None:
    data = _data(64 * PS)
    backend.put(KEY, data)
    cached = CachedObjectStore(backend, _opts(tmp_path / "c"))
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(100):
                a = rng.randrange(len(data))
                b = min(len(data), a + rng.randrange(1, 5000))
                assert cached.get_range(KEY, a, b) == data[a:b]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    fetched = Counter(p for _, a, b in backend.ranges for p in range(a // PS, (b - 1) // PS + 1))
    assert fetched and max(fetched.values()) == 1  # no part fetched twice
    assert backend.calls["head"] == 1


def test_put_caching_follows_the_options(backend: CountingStore, tmp_path: Path) -> None:
    data = _data(3000)
    off = CachedObjectStore(backend, _opts(tmp_path / "off"))
    off.put(KEY, data)
    assert _cache_files(tmp_path / "off") == []
    flush_only = CachedObjectStore(backend, _opts(tmp_path / "f", cache_on_flush=True))
    flush_only.put(KEY, data)  # not marked as a flush: a compaction output
    assert _cache_files(tmp_path / "f") == []
    with upload_kind("flush"):
        flush_only.put(KEY2, data)
    before = dict(backend.calls)
    assert flush_only.get(KEY2) == data
    assert flush_only.head(KEY2).size == 3000
    assert dict(backend.calls) == before  # served from the cache it wrote
    compaction = CachedObjectStore(backend, _opts(tmp_path / "k", cache_on_compaction=True))
    compaction.put(KEY, data)
    with upload_kind("flush"):
        compaction.put(KEY2, data)
    assert {p.parent.name for p in _parts(tmp_path / "k")} == {KEY.rsplit("/", 1)[1]}
    both = CachedObjectStore(backend, _opts(tmp_path / "b", cache_puts=True))
    both.put(KEY, data)
    assert both.cache_metrics()["disk_cache_puts_cached"] == 1


def test_delete_drops_cached_files(backend: CountingStore, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    backend.put(KEY, _data(3000))
    cached = CachedObjectStore(backend, _opts(folder))
    cached.get(KEY)
    assert _cache_files(folder)
    cached.delete(KEY)
    assert _cache_files(folder) == []
    assert cached.cache_metrics()["disk_cache_bytes"] == 0


def test_preload_stops_at_the_budget(backend: CountingStore, tmp_path: Path) -> None:
    keys = [f"db/compacted/01ARZ3NDEKTSV4RRFFQ69G5F{i:02d}.sst" for i in range(4)]
    for i, key in enumerate(keys):
        backend.put(key, _data(2000, seed=i))
    cached = CachedObjectStore(backend, _opts(tmp_path / "c"))
    assert cached.preload(keys, max_bytes=5000) == 2
    before = backend.calls["get_range"]
    assert cached.get(keys[0]) == _data(2000, seed=0)
    assert cached.get(keys[1]) == _data(2000, seed=1)
    assert backend.calls["get_range"] == before
    cached.get(keys[2])
    assert backend.calls["get_range"] > before


def test_stale_temp_files_are_swept(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    old = folder / ".tmp-dead"
    old.write_bytes(b"torn")
    os.utime(old, (1, 1))
    fresh = folder / ".tmp-live"  # maybe another process writing right now
    fresh.write_bytes(b"x")
    CachedObjectStore(MemoryStore(), _opts(folder))
    assert not old.exists() and fresh.exists()


def test_root_folder_is_required() -> None:
    with pytest.raises(InvalidError):
        CachedObjectStore(MemoryStore(), ObjectStoreCacheOptions())


class TestCachedStoreContract(ObjectStoreContract):
    """Every other object passes through: the wrapper keeps the store contract."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ObjectStore]:
        store = CachedObjectStore(MemoryStore(), _opts(tmp_path / "c"))
        yield store
        store.close()
