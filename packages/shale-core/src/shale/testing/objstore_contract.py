"""The behaviour every object store must have, as a reusable pytest test class.

A backend's test module subclasses :class:`ObjectStoreContract` under a ``Test*`` name and
provides a ``store`` fixture returning a fresh, empty store for each test::

    import pytest
    from shale.testing.objstore_contract import ObjectStoreContract

    class TestMyStore(ObjectStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            store = MyStore(...)
            yield store
            store.close()

The base class is not named ``Test*``, so pytest collects it only through subclasses. Class
attributes tune it for slow or remote backends (``clock_skew``, ``race_seconds``, ...).

What it checks (the invariants of :mod:`shale.objstore.protocol`): round trips including empty
and large objects, overwrite, not-found errors (which are :class:`~shale.errors.DataError`),
ranged reads, ``head`` metadata, ``list`` order and prefixes (a prefix may end mid-name),
idempotent delete, ``put_if_absent`` and ``put_if_match`` including races between threads,
rejection of invalid keys, and that concurrent readers never see a partially written object.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from shale.errors import DataError, InvalidError, ShaleError
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
)

__all__ = ["INVALID_KEYS", "ObjectStoreContract"]

#: Keys every store must reject with :class:`~shale.errors.InvalidError`.
INVALID_KEYS: tuple[str, ...] = (
    "",
    "../x",
    "a/../b",
    "a/..",
    "./a",
    "a/./b",
    "/abs",
    "a//b",
    "a/",
    "a\x00b",
    "a\\b",
    "lone\udc80surrogate",
)

_MiB = 1 << 20


def _payload(tag: int, size: int) -> bytes:
    """Distinct, recognisable bytes for writer ``tag``."""
    head = f"writer-{tag:03d}:".encode()
    return (head * (size // len(head) + 1))[:size]


def _keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return [m.key for m in store.list(prefix)]


def _run_threads(count: int, target: Callable[[int], None], timeout: float = 60.0) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a store call hung"


class ObjectStoreContract:
    """Subclass as ``Test<Backend>`` and provide a ``store`` fixture (fresh, empty store)."""

    #: Allowed difference, in seconds, between ``last_modified`` and this machine's clock.
    clock_skew: ClassVar[float] = 5.0
    #: Size of the large round-trip object.
    large_size: ClassVar[int] = 5 * _MiB
    #: Threads racing in the ``put_if_absent``/``put_if_match`` race tests.
    race_threads: ClassVar[int] = 8
    #: Rounds of the race tests (each on a fresh key).
    race_rounds: ClassVar[int] = 5
    #: How long the partial-visibility test keeps overwriting, in seconds.
    race_seconds: ClassVar[float] = 0.5
    #: Object size in the partial-visibility test.
    race_object_size: ClassVar[int] = _MiB

    @pytest.fixture
    def store(self) -> Iterator[ObjectStore]:
        """Override in the subclass: a fresh, empty store for each test."""
        pytest.fail(f"{type(self).__name__} must define a `store` fixture returning a fresh store")
        yield  # pragma: no cover

    def _etag(self, store: ObjectStore, key: str) -> str:
        etag = store.head(key).etag
        if etag is None:
            pytest.skip("this store reports no etags, so put_if_match cannot be used")
        return etag

    # -- basics ----------------------------------------------------------------------------

    def test_implements_protocol(self, store: ObjectStore) -> None:
        assert isinstance(store, ObjectStore)
        assert isinstance(repr(store), str)

    def test_put_get_round_trip(self, store: ObjectStore) -> None:
        store.put("a", b"hello")
        store.put("dir/sub/b.sst", b"\x00\x01\xff" * 100)
        got = store.get("a")
        assert got == b"hello"
        assert isinstance(got, bytes)
        assert store.get("dir/sub/b.sst") == b"\x00\x01\xff" * 100

    def test_put_get_empty_object(self, store: ObjectStore) -> None:
        store.put("empty", b"")
        assert store.get("empty") == b""
        assert store.head("empty").size == 0
        assert _keys(store) == ["empty"]

    def test_put_get_large_object(self, store: ObjectStore) -> None:
        data = random.Random(7).randbytes(self.large_size)
        store.put("big/object.bin", data)
        assert store.get("big/object.bin") == data
        assert store.head("big/object.bin").size == len(data)
        mid = len(data) // 2
        assert store.get_range("big/object.bin", mid - 10, mid + 10) == data[mid - 10 : mid + 10]

    def test_put_not_durable_is_readable(self, store: ObjectStore) -> None:
        store.put("fast", b"x", durable=False)
        assert store.get("fast") == b"x"

    def test_keys_with_unicode_and_spaces(self, store: ObjectStore) -> None:
        keys = [
            "dir with space/file name.txt",
            "unicode/\u00e9t\u00e9.bin",
            "dots/a.b.c",
            ".hidden",
        ]
        for i, key in enumerate(keys):
            store.put(key, bytes([i]) * 3)
        for i, key in enumerate(keys):
            assert store.get(key) == bytes([i]) * 3
        assert _keys(store) == sorted(keys, key=lambda k: k.encode())

    def test_overwrite_replaces(self, store: ObjectStore) -> None:
        store.put("k", b"first version, long")
        store.put("k", b"second")
        assert store.get("k") == b"second"
        assert store.head("k").size == len(b"second")
        store.put("k", b"third version is the longest of all")
        assert store.get("k") == b"third version is the longest of all"
        assert _keys(store) == ["k"]

    def test_siblings_are_independent(self, store: ObjectStore) -> None:
        store.put("d/a", b"A")
        store.put("d/b", b"B")
        store.put("d/a", b"AA")
        store.delete("d/b")
        assert store.get("d/a") == b"AA"
        assert _keys(store) == ["d/a"]

    def test_get_missing_raises_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound) as info:
            store.get("missing/key")
        assert isinstance(info.value, DataError)
        assert isinstance(info.value, ObjectStoreError)
        assert isinstance(info.value, ShaleError)
        assert "missing/key" in str(info.value)
        with pytest.raises(ObjectNotFound):
            store.get("missing")

    def test_get_missing_under_existing_prefix(self, store: ObjectStore) -> None:
        store.put("db/wal/00001.sst", b"x")
        with pytest.raises(ObjectNotFound):
            store.get("db/wal/00002.sst")
        with pytest.raises(ObjectNotFound):
            store.get("db/wal")
        with pytest.raises(ObjectNotFound):
            store.get("db/wal/00001.sst/child")
        with pytest.raises(ObjectNotFound):
            store.head("db/wal")

    # -- ranged reads ------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (0, 10, slice(0, 10)),
            (0, 100, slice(0, 100)),
            (3, 7, slice(3, 7)),
            (90, 100, slice(90, 100)),
            (99, 100, slice(99, 100)),
            (90, 150, slice(90, 100)),
            (0, 1_000_000, slice(0, 100)),
            (100, 110, slice(0, 0)),
            (150, 200, slice(0, 0)),
            (5, 5, slice(0, 0)),
            (7, 3, slice(0, 0)),
            (0, 0, slice(0, 0)),
        ],
    )
    def test_get_range(self, store: ObjectStore, start: int, end: int, expected: slice) -> None:
        data = bytes(range(100))
        store.put("r", data)
        got = store.get_range("r", start, end)
        assert got == data[expected]
        assert isinstance(got, bytes)

    def test_get_range_of_empty_object(self, store: ObjectStore) -> None:
        store.put("e", b"")
        assert store.get_range("e", 0, 10) == b""

    def test_get_range_missing_raises_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound):
            store.get_range("missing", 0, 10)
        with pytest.raises(ObjectNotFound):
            store.get_range("missing", 0, 0)

    # -- head --------------------------------------------------------------------------------

    def test_head_fields(self, store: ObjectStore) -> None:
        before = time.time()
        store.put("h/obj", b"12345")
        after = time.time()
        meta = store.head("h/obj")
        assert isinstance(meta, ObjectMeta)
        assert meta.key == "h/obj"
        assert meta.size == 5
        assert before - self.clock_skew <= meta.last_modified <= after + self.clock_skew
        assert meta.etag is None or isinstance(meta.etag, str)

    def test_head_missing_raises_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound):
            store.head("nope")

    def test_etag_changes_on_every_overwrite(self, store: ObjectStore) -> None:
        store.put("e", b"same bytes")
        seen = {self._etag(store, "e")}
        for _ in range(5):
            store.put("e", b"same bytes")  # identical content and size, immediately
            seen.add(self._etag(store, "e"))
        assert len(seen) == 6

    def test_etag_stable_without_writes(self, store: ObjectStore) -> None:
        store.put("e", b"v")
        assert self._etag(store, "e") == self._etag(store, "e")
        store.put("other", b"w")
        assert self._etag(store, "e") == store.head("e").etag

    # -- list --------------------------------------------------------------------------------

    def test_list_empty_store(self, store: ObjectStore) -> None:
        assert list(store.list()) == []
        assert list(store.list("")) == []
        assert list(store.list("db/")) == []

    def test_list_sorted_by_key(self, store: ObjectStore) -> None:
        keys = ["b", "a/b", "a-c", "a", "a0", "ab", "a/c/d", "a/c-", "A", "z/y/x/w", "a.b", "_"]
        shuffled = keys[:]
        random.Random(3).shuffle(shuffled)
        for key in shuffled:
            if key == "a":
                continue  # "a" and "a/..." cannot coexist on a file system; see below
            store.put(key, key.encode())
        expected = sorted((k for k in keys if k != "a"), key=lambda k: k.encode())
        assert _keys(store) == expected
        assert _keys(store) == sorted(_keys(store))

    def test_list_many_keys(self, store: ObjectStore) -> None:
        keys = [f"db/{d}/{i:05d}.sst" for d in ("compacted", "wal", "manifest") for i in range(40)]
        rnd = random.Random(11)
        for key in rnd.sample(keys, len(keys)):
            store.put(key, key.encode(), durable=False)
        assert _keys(store) == sorted(keys)
        assert _keys(store, "db/wal/") == sorted(k for k in keys if k.startswith("db/wal/"))

    def test_list_reports_metadata(self, store: ObjectStore) -> None:
        store.put("m/one", b"1")
        store.put("m/three", b"333")
        metas = list(store.list("m/"))
        assert [(m.key, m.size) for m in metas] == [("m/one", 1), ("m/three", 3)]
        for m in metas:
            assert isinstance(m, ObjectMeta)
            head = store.head(m.key)
            assert head.size == m.size
            assert head.etag == m.etag
            assert abs(head.last_modified - m.last_modified) < 1.0

    def test_list_directory_prefix(self, store: ObjectStore) -> None:
        for key in ["db/wal/1", "db/wal/2", "db/walrus", "db/manifest/1", "dbx/wal/1", "other"]:
            store.put(key, b"x")
        assert _keys(store, "db/wal/") == ["db/wal/1", "db/wal/2"]
        assert _keys(store, "db/wal") == ["db/wal/1", "db/wal/2", "db/walrus"]
        assert _keys(store, "db/") == ["db/manifest/1", "db/wal/1", "db/wal/2", "db/walrus"]
        assert _keys(store, "db") == [
            "db/manifest/1",
            "db/wal/1",
            "db/wal/2",
            "db/walrus",
            "dbx/wal/1",
        ]

    def test_list_prefix_ending_mid_name(self, store: ObjectStore) -> None:
        keys = ["db/wal/00001.sst", "db/wal/00002.sst", "db/wal/00010.sst", "db/wal/10000.sst"]
        for key in keys:
            store.put(key, b"x")
        assert _keys(store, "db/wal/0000") == ["db/wal/00001.sst", "db/wal/00002.sst"]
        assert _keys(store, "db/wal/000") == keys[:3]
        assert _keys(store, "db/wal/1") == ["db/wal/10000.sst"]
        assert _keys(store, "db/w") == keys
        assert _keys(store, "db/wal/00001.sst") == ["db/wal/00001.sst"]
        assert _keys(store, "db/wal/00001.sst2") == []

    def test_list_nested_directories(self, store: ObjectStore) -> None:
        keys = ["n/a/b/c/d/e", "n/a/b/c/x", "n/a/b/y", "n/a/z", "n/b", "n/a-b/c"]
        for key in keys:
            store.put(key, b"x")
        assert _keys(store, "n/") == sorted(keys)
        assert _keys(store, "n/a/") == ["n/a/b/c/d/e", "n/a/b/c/x", "n/a/b/y", "n/a/z"]
        assert _keys(store, "n/a/b/c/") == ["n/a/b/c/d/e", "n/a/b/c/x"]
        assert _keys(store, "n/a") == sorted(k for k in keys if k.startswith("n/a"))

    def test_list_no_match(self, store: ObjectStore) -> None:
        store.put("x/y", b"1")
        assert _keys(store, "y") == []
        assert _keys(store, "x/z") == []
        assert _keys(store, "x/y/") == []
        assert _keys(store, "missing/dir/") == []

    def test_list_prefix_no_valid_key_can_have(self, store: ObjectStore) -> None:
        store.put("a/b", b"1")
        for prefix in ("/", "/a", "a//", "../", "./a", "a/../"):
            assert _keys(store, prefix) == [], prefix

    def test_list_after_delete(self, store: ObjectStore) -> None:
        store.put("l/1", b"1")
        store.put("l/2", b"2")
        store.delete("l/1")
        assert _keys(store, "l/") == ["l/2"]
        store.delete("l/2")
        assert _keys(store, "l/") == []
        assert _keys(store) == []

    # -- delete ------------------------------------------------------------------------------

    def test_delete_removes(self, store: ObjectStore) -> None:
        store.put("d/x", b"x")
        store.delete("d/x")
        with pytest.raises(ObjectNotFound):
            store.get("d/x")
        with pytest.raises(ObjectNotFound):
            store.head("d/x")

    def test_delete_is_idempotent(self, store: ObjectStore) -> None:
        store.delete("never/existed")
        store.put("once", b"1")
        store.delete("once")
        store.delete("once")
        assert _keys(store) == []

    def test_put_after_delete(self, store: ObjectStore) -> None:
        store.put("d/k", b"1")
        store.delete("d/k")
        store.put("d/k", b"2")
        assert store.get("d/k") == b"2"

    # -- put_if_absent -----------------------------------------------------------------------

    def test_put_if_absent_creates(self, store: ObjectStore) -> None:
        store.put_if_absent("manifest/00000000000000000001.manifest", b"m1")
        assert store.get("manifest/00000000000000000001.manifest") == b"m1"
        assert _keys(store) == ["manifest/00000000000000000001.manifest"]

    def test_put_if_absent_existing_raises_and_keeps_original(self, store: ObjectStore) -> None:
        store.put_if_absent("k", b"original")
        meta = store.head("k")
        with pytest.raises(ObjectAlreadyExists) as info:
            store.put_if_absent("k", b"intruder, longer than the original")
        assert isinstance(info.value, ObjectStoreError)
        assert "k" in str(info.value)
        assert store.get("k") == b"original"
        assert store.head("k").etag == meta.etag
        assert store.head("k").size == meta.size
        assert _keys(store) == ["k"]

    def test_put_if_absent_over_plain_put_raises(self, store: ObjectStore) -> None:
        store.put("k", b"put")
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_absent("k", b"")
        assert store.get("k") == b"put"

    def test_put_if_absent_after_delete(self, store: ObjectStore) -> None:
        store.put_if_absent("k", b"1")
        store.delete("k")
        store.put_if_absent("k", b"2")
        assert store.get("k") == b"2"

    def test_put_if_absent_empty_and_large(self, store: ObjectStore) -> None:
        big = random.Random(5).randbytes(2 * _MiB)
        store.put_if_absent("empty", b"")
        store.put_if_absent("big", big)
        assert store.get("empty") == b""
        assert store.get("big") == big

    def test_put_if_absent_race_has_one_winner(self, store: ObjectStore) -> None:
        n = self.race_threads
        for round_no in range(self.race_rounds):
            key = f"race/pia-{round_no}"
            barrier = threading.Barrier(n)
            results: list[Any] = [None] * n

            def run(
                i: int,
                key: str = key,
                barrier: threading.Barrier = barrier,
                results: list[Any] = results,
            ) -> None:
                payload = _payload(i, 1000 + 37 * i)
                barrier.wait(timeout=30)
                try:
                    store.put_if_absent(key, payload)
                    results[i] = "won"
                except ObjectAlreadyExists:
                    results[i] = "lost"
                except BaseException as exc:
                    results[i] = exc

            _run_threads(n, run)
            errors = [r for r in results if r not in ("won", "lost")]
            assert not errors, errors
            winners = [i for i, r in enumerate(results) if r == "won"]
            assert len(winners) == 1, results
            assert store.get(key) == _payload(winners[0], 1000 + 37 * winners[0])

    # -- put_if_match ------------------------------------------------------------------------

    def test_put_if_match_succeeds_with_current_etag(self, store: ObjectStore) -> None:
        store.put("c", b"v1")
        etag = self._etag(store, "c")
        store.put_if_match("c", b"v2", etag)
        assert store.get("c") == b"v2"
        new_etag = self._etag(store, "c")
        assert new_etag != etag
        store.put_if_match("c", b"v3", new_etag)
        assert store.get("c") == b"v3"

    def test_put_if_match_stale_etag_fails(self, store: ObjectStore) -> None:
        store.put("c", b"v1")
        stale = self._etag(store, "c")
        store.put("c", b"v2")
        current = self._etag(store, "c")
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_match("c", b"v3", stale)
        assert store.get("c") == b"v2"
        assert self._etag(store, "c") == current

    def test_put_if_match_same_content_overwrite_still_fails(self, store: ObjectStore) -> None:
        store.put("c", b"same")
        stale = self._etag(store, "c")
        store.put("c", b"same")
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_match("c", b"new", stale)
        assert store.get("c") == b"same"

    def test_put_if_match_missing_fails(self, store: ObjectStore) -> None:
        store.put("other", b"x")
        etag = self._etag(store, "other")
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_match("missing", b"v", etag)
        with pytest.raises(ObjectNotFound):
            store.get("missing")

    def test_put_if_match_after_delete_fails(self, store: ObjectStore) -> None:
        store.put("c", b"v1")
        etag = self._etag(store, "c")
        store.delete("c")
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_match("c", b"v2", etag)
        with pytest.raises(ObjectNotFound):
            store.get("c")

    def test_put_if_match_garbage_etag_fails(self, store: ObjectStore) -> None:
        store.put("c", b"v1")
        self._etag(store, "c")
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_match("c", b"v2", "not-an-etag")
        assert store.get("c") == b"v1"

    def test_put_if_match_with_etag_from_list_and_put_if_absent(self, store: ObjectStore) -> None:
        store.put_if_absent("c", b"v1")
        self._etag(store, "c")
        (meta,) = list(store.list("c"))
        assert meta.etag is not None
        store.put_if_match("c", b"v2", meta.etag)
        assert store.get("c") == b"v2"

    def test_put_if_match_race_has_one_winner(self, store: ObjectStore) -> None:
        n = self.race_threads
        store.put("cas", b"0")
        for round_no in range(self.race_rounds):
            etag = self._etag(store, "cas")
            barrier = threading.Barrier(n)
            results: list[Any] = [None] * n

            def run(
                i: int,
                etag: str = etag,
                barrier: threading.Barrier = barrier,
                results: list[Any] = results,
                r: int = round_no,
            ) -> None:
                barrier.wait(timeout=30)
                try:
                    store.put_if_match("cas", _payload(i, 100 + r), etag)
                    results[i] = "won"
                except ObjectAlreadyExists:
                    results[i] = "lost"
                except BaseException as exc:
                    results[i] = exc

            _run_threads(n, run)
            errors = [r for r in results if r not in ("won", "lost")]
            assert not errors, errors
            winners = [i for i, r in enumerate(results) if r == "won"]
            assert len(winners) == 1, results
            assert store.get("cas") == _payload(winners[0], 100 + round_no)

    # -- invalid input -----------------------------------------------------------------------

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
    def test_invalid_keys_rejected(self, store: ObjectStore, key: str) -> None:
        calls: list[tuple[str, Callable[[], object]]] = [
            ("put", lambda: store.put(key, b"x")),
            ("put_if_absent", lambda: store.put_if_absent(key, b"x")),
            ("put_if_match", lambda: store.put_if_match(key, b"x", "etag")),
            ("get", lambda: store.get(key)),
            ("get_range", lambda: store.get_range(key, 0, 1)),
            ("head", lambda: store.head(key)),
            ("delete", lambda: store.delete(key)),
        ]
        for name, call in calls:
            try:
                call()
            except InvalidError as exc:
                assert isinstance(exc, ValueError)  # InvalidError is also a ValueError
            else:
                pytest.fail(f"{name} accepted the invalid key {key!r}")
        assert list(store.list()) == [], "an invalid key wrote something"

    def test_non_str_key_rejected(self, store: ObjectStore) -> None:
        with pytest.raises(InvalidError):
            store.put(b"bytes-key", b"x")  # type: ignore[arg-type]
        with pytest.raises(InvalidError):
            store.get(None)  # type: ignore[arg-type]

    # -- concurrency -------------------------------------------------------------------------

    def test_concurrent_readers_never_see_partial_objects(self, store: ObjectStore) -> None:
        size = self.race_object_size
        key = "race/partial"
        store.put(key, bytes([1]) * size)
        stop = threading.Event()
        problems: list[str] = []
        counts = {"writes": 0, "reads": 0}

        def writer() -> None:
            try:
                deadline = time.monotonic() + self.race_seconds
                i = 1
                while time.monotonic() < deadline or counts["writes"] < 3:
                    i = i % 250 + 1
                    store.put(key, bytes([i]) * size, durable=False)
                    counts["writes"] += 1
            except BaseException as exc:
                problems.append(f"writer failed: {exc!r}")
            finally:
                stop.set()

        def reader(r: int) -> None:
            try:
                while not stop.is_set() or counts["reads"] < 3:
                    data = store.get(key)
                    counts["reads"] += 1
                    if len(data) != size or data.count(data[:1]) != size:
                        problems.append(f"partial object: len={len(data)}")
                        return
                    part = store.get_range(key, size // 2 - 4096, size // 2 + 4096)
                    if len(part) != 8192 or part.count(part[:1]) != 8192:
                        problems.append(f"partial range: len={len(part)}")
                        return
            except BaseException as exc:
                problems.append(f"reader {r} failed: {exc!r}")

        threads = [threading.Thread(target=writer, daemon=True)]
        threads += [threading.Thread(target=reader, args=(r,), daemon=True) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a store call hung"
        assert not problems, problems
        assert counts["writes"] >= 3 and counts["reads"] >= 3
