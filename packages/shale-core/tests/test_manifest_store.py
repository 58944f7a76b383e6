"""Tests for shale.meta.manifest_store: versions, the update loop, fencing, checkpoints."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shale.errors import ClosedError, DataError, InternalError, InvalidError, UnavailableError
from shale.fbs.manifest import Manifest, decode_manifest
from shale.meta.manifest_store import (
    MAX_PROBES,
    FenceableManifest,
    ManifestConflict,
    ManifestStore,
    StoredManifest,
    add_checkpoint,
    find_checkpoint,
    refresh_checkpoint,
    remove_checkpoint,
    remove_expired_checkpoints,
)
from shale.objstore import ObjectAlreadyExists, ObjectMeta, ObjectNotFound
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore

ROOT = "db"


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        return MemoryStore()
    return LocalStore(tmp_path / "store", fsync=False)


def snapshot(store: Any, prefix: str = "") -> dict[str, bytes]:
    return {m.key: store.get(m.key) for m in store.list(prefix)}


def with_checkpoint(name: str, now_s: int = 1000) -> Any:
    def mutate(m: Manifest, next_id: int) -> Manifest:
        return add_checkpoint(m, manifest_id=next_id, now_s=now_s, name=name)[0]

    return mutate


class Wrapper:
    """Delegates to a store; subclasses override one method to inject a fault."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._count("put")
        self.inner.put(key, data, durable=durable)

    def put_if_absent(self, key: str, data: bytes) -> None:
        self._count("put_if_absent")
        self.inner.put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self._count("put_if_match")
        self.inner.put_if_match(key, data, etag)

    def get(self, key: str) -> bytes:
        self._count("get")
        return bytes(self.inner.get(key))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return bytes(self.inner.get_range(key, start, end))

    def head(self, key: str) -> ObjectMeta:
        self._count("head")
        return self.inner.head(key)  # type: ignore[no-any-return]

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        self._count("list")
        return iter(list(self.inner.list(prefix)))

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


# -- ManifestStore -------------------------------------------------------------------------------


def test_empty_store(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    assert ms.list_ids() == []
    assert not ms.exists()
    assert ms.read_latest() is None
    with pytest.raises(DataError):
        StoredManifest.load(ms)
    with pytest.raises(ObjectNotFound):
        ms.read(1)
    with pytest.raises(DataError):  # ObjectNotFound is a DataError
        ms.read(1)


def test_try_write_and_read(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    m = Manifest.initial()
    ms.try_write(1, m)
    assert ms.exists()
    assert ms.read(1) == m
    assert store.get("db/manifest/00000000000000000001.manifest")[:2] == b"\x00\x02"
    with pytest.raises(ManifestConflict):
        ms.try_write(1, dataclasses.replace(m, writer_epoch=5))
    assert ms.read(1) == m
    with pytest.raises(InvalidError):
        ms.try_write(0, m)


def test_empty_root(store: Any) -> None:
    ms = ManifestStore(store, "")
    StoredManifest.create_or_load(ms)
    assert [meta.key for meta in store.list("")] == ["manifest/00000000000000000001.manifest"]


@pytest.mark.parametrize("version", [1, 2])
def test_format_versions_read_back(store: Any, version: int) -> None:
    ms = ManifestStore(store, ROOT, format_version=version)
    sm = StoredManifest.create_or_load(ms)
    sm.update(with_checkpoint("a"))
    for i in (1, 2):
        v, _ = decode_manifest(store.get(ms.path(i)))
        assert v == version
    # a store configured for the other version reads both
    other = ManifestStore(store, ROOT, format_version=3 - version)
    latest = other.read_latest()
    assert latest is not None and latest[0] == 2
    assert [cp.name for cp in latest[1].checkpoints] == ["a"]
    # and keeps appending in its own version
    StoredManifest.load(other).update(with_checkpoint("b"))
    assert decode_manifest(store.get(ms.path(3)))[0] == 3 - version
    assert [cp.name for cp in ms.read_latest()[1].checkpoints] == ["a", "b"]  # type: ignore[index]


def test_bad_format_version() -> None:
    with pytest.raises(InvalidError):
        ManifestStore(MemoryStore(), ROOT, format_version=3)


def test_corrupt_manifest_is_data_error(store: Any) -> None:
    store.put("db/manifest/00000000000000000001.manifest", b"\x00\x02garbage")
    ms = ManifestStore(store, ROOT)
    with pytest.raises(DataError):
        ms.read_latest()
    store.put("db/manifest/00000000000000000002.manifest", b"\x00\x07")
    with pytest.raises(DataError):
        ms.read(2)


def test_unknown_names_ignored_and_gaps(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    sm = StoredManifest.create_or_load(ms)
    for i in range(4):
        sm.update(with_checkpoint(f"c{i}"))
    assert sm.id == 5
    for key in (
        "db/manifest/foo.txt",
        "db/manifest/00000000000000000009.manifest.tmp",
        "db/manifest/9.manifest",  # not the canonical 20-digit name
        "db/manifest/abc.manifest",
        "db/manifest/sub/00000000000000000099.manifest",
        "db/manifestx/00000000000000000042.manifest",
        "db/compactions/00000000000000000077.compactions",
    ):
        store.put(key, b"junk")
    # GC deleted the old versions
    for i in (1, 2, 3):
        store.delete(ms.path(i))
    fresh = ManifestStore(store, ROOT)
    assert fresh.list_ids() == [4, 5]
    latest = fresh.read_latest()
    assert latest is not None and latest[0] == 5
    assert [cp.name for cp in latest[1].checkpoints] == ["c0", "c1", "c2", "c3"]
    assert StoredManifest.load(fresh).id == 5


class VanishingLatest(Wrapper):
    """On the first LIST, a new version is written and the listed latest deleted (GC race)."""

    def __init__(self, inner: Any, ms_for_race: ManifestStore) -> None:
        super().__init__(inner)
        self.ms_for_race = ms_for_race
        self.raced = False

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        listing = list(self.inner.list(prefix))
        if not self.raced and prefix.endswith("manifest/"):
            self.raced = True
            top = max(m.key for m in listing)
            sm = StoredManifest.load(self.ms_for_race)
            sm.update(with_checkpoint("racer"))
            self.inner.delete(top)
        self._count("list")
        return iter(listing)


def test_read_latest_listed_object_vanished(store: Any) -> None:
    base = ManifestStore(store, ROOT)
    sm = StoredManifest.create_or_load(base)
    sm.update(with_checkpoint("x"))  # id 2
    wrapped = VanishingLatest(store, ManifestStore(store, ROOT))
    ms = ManifestStore(wrapped, ROOT)
    latest = ms.read_latest()
    assert latest is not None
    assert latest[0] == 3
    assert [cp.name for cp in latest[1].checkpoints] == ["x", "racer"]
    assert wrapped.calls["list"] == 2
    assert base.list_ids() == [1, 3]


class AlwaysVanishing(Wrapper):
    def get(self, key: str) -> bytes:
        if key.endswith(".manifest"):
            raise ObjectNotFound("gone", key=key)
        return super().get(key)


def test_read_latest_gives_up_when_always_vanishing() -> None:
    inner = MemoryStore()
    StoredManifest.create_or_load(ManifestStore(inner, ROOT))
    ms = ManifestStore(AlwaysVanishing(inner), ROOT)
    with pytest.raises(UnavailableError):
        ms.read_latest()


def test_read_latest_probes_forward() -> None:
    inner = MemoryStore()
    wrapped = Wrapper(inner)
    ms = ManifestStore(wrapped, ROOT)
    sm = StoredManifest.create_or_load(ms)  # LISTs once (empty), writes 1
    other = StoredManifest.load(ManifestStore(inner, ROOT))
    for i in range(3):
        other.update(with_checkpoint(f"o{i}"))
    lists = wrapped.calls.get("list", 0)
    latest = ms.read_latest()
    assert latest is not None and latest[0] == 4
    assert wrapped.calls.get("list", 0) == lists  # found by probing, no LIST
    # more successors than MAX_PROBES: falls back to LIST, still correct
    for i in range(MAX_PROBES + 3):
        other.update(with_checkpoint(f"p{i}"))
    assert sm.refresh() is sm.manifest
    assert sm.id == 4 + MAX_PROBES + 3
    assert wrapped.calls["list"] == lists + 1


def test_read_latest_cache_survives_gc_of_older(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    sm = StoredManifest.create_or_load(ms)
    sm.update(with_checkpoint("a"))
    store.delete(ms.path(1))
    latest = ms.read_latest()
    assert latest is not None and latest[0] == 2


# -- GC boundary ----------------------------------------------------------------------------------


def test_boundary_blocks_resurrection(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    stale = StoredManifest.create_or_load(ms)  # knows id 1
    live = StoredManifest.load(ManifestStore(store, ROOT))
    live.update(with_checkpoint("a"))  # 2
    live.update(with_checkpoint("b"))  # 3
    gc = ManifestStore(store, ROOT)
    gc.advance_boundary(2)
    assert gc.read_boundary() == 2
    store.delete(gc.path(1))
    store.delete(gc.path(2))
    # the stale client recreates id 2 (it was deleted), which must count as a conflict
    stale.update(with_checkpoint("stale"))
    assert stale.id == 4
    assert [cp.name for cp in stale.manifest.checkpoints] == ["a", "b", "stale"]
    latest = ManifestStore(store, ROOT).read_latest()
    assert latest is not None and latest[0] == 4


def test_boundary_cached_candidate_skipped() -> None:
    inner = MemoryStore()
    ms = ManifestStore(inner, ROOT)
    StoredManifest.create_or_load(ms)  # cache: id 1
    live = StoredManifest.load(ManifestStore(inner, ROOT))
    live.update(with_checkpoint("a"))  # 2
    live.update(with_checkpoint("b"))  # 3
    ManifestStore(inner, ROOT).advance_boundary(2)
    inner.delete(ms.path(2))
    # probing from 1 finds 2 missing and would return the stale 1; the boundary rejects it
    latest = ms.read_latest()
    assert latest is not None and latest[0] == 3


def test_boundary_advance_never_lowers_and_parse(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    assert ms.read_boundary() == 0
    ms.advance_boundary(5)
    ms.advance_boundary(3)
    assert ms.read_boundary() == 5
    assert store.get("db/gc/manifest.boundary") == b"5"
    ms.advance_boundary(7)
    assert ms.read_boundary() == 7
    with pytest.raises(InvalidError):
        ms.advance_boundary(-1)
    store.put("db/gc/manifest.boundary", b" 9\n")
    assert ms.read_boundary() == 9
    store.put("db/gc/manifest.boundary", b"nine")
    with pytest.raises(DataError):
        ms.read_boundary()
    assert ManifestStore(store, ROOT, check_boundary=False).read_boundary() == 0


class RacingBoundary(Wrapper):
    """Another GC advances the boundary between our HEAD and our conditional PUT."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.raced = False

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        if not self.raced:
            self.raced = True
            self.inner.put(key, b"50")
        super().put_if_match(key, data, etag)


def test_boundary_concurrent_advance() -> None:
    inner = MemoryStore()
    ManifestStore(inner, ROOT).advance_boundary(1)
    ms = ManifestStore(RacingBoundary(inner), ROOT)
    ms.advance_boundary(10)
    assert ms.read_boundary() == 50


# -- StoredManifest -------------------------------------------------------------------------------


def test_create_or_load(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    sm = StoredManifest.create_or_load(ms)
    assert (sm.id, sm.manifest) == (1, Manifest.initial())
    assert ms.list_ids() == [1]
    again = StoredManifest.create_or_load(ManifestStore(store, ROOT))
    assert (again.id, again.manifest) == (1, Manifest.initial())
    custom = dataclasses.replace(Manifest.initial(), initialized=False)
    third = StoredManifest.create_or_load(ManifestStore(store, ROOT), custom)
    assert third.manifest == Manifest.initial()  # existing one wins
    assert ms.list_ids() == [1]


def test_create_or_load_custom_initial(store: Any) -> None:
    custom = dataclasses.replace(Manifest.initial(), initialized=False)
    sm = StoredManifest.create_or_load(ManifestStore(store, ROOT), custom)
    assert sm.manifest == custom
    assert ManifestStore(store, ROOT).read(1) == custom


def test_create_or_load_concurrent(store: Any) -> None:
    n = 8
    barrier = threading.Barrier(n)
    results: list[StoredManifest] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            initial = dataclasses.replace(Manifest.initial(), replay_after_wal_id=i)
            results.append(StoredManifest.create_or_load(ManifestStore(store, ROOT), initial))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ms = ManifestStore(store, ROOT)
    assert ms.list_ids() == [1]
    winner = ms.read(1)
    assert all(r.id == 1 and r.manifest == winner for r in results)


def test_update_consecutive_and_noop(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    sm = StoredManifest.create_or_load(ms)
    seen: list[int] = []

    def mutate(m: Manifest, next_id: int) -> Manifest:
        seen.append(next_id)
        return dataclasses.replace(m, wal_id_last_seen=m.wal_id_last_seen + 1)

    for _ in range(3):
        sm.update(mutate)
    assert seen == [2, 3, 4]
    assert ms.list_ids() == [1, 2, 3, 4]
    assert sm.manifest.wal_id_last_seen == 3
    before = snapshot(store)
    current = sm.manifest
    assert sm.update(lambda m, _id: None) is current
    assert snapshot(store) == before


def test_update_conflict_reapplies(store: Any) -> None:
    a = StoredManifest.create_or_load(ManifestStore(store, ROOT))
    b = StoredManifest.load(ManifestStore(store, ROOT))
    b.update(with_checkpoint("b"))
    calls: list[tuple[int, list[str | None]]] = []

    def mutate(m: Manifest, next_id: int) -> Manifest:
        calls.append((next_id, [cp.name for cp in m.checkpoints]))
        return add_checkpoint(m, manifest_id=next_id, now_s=1, name="a")[0]

    a.update(mutate)
    assert calls == [(2, []), (3, ["b"])]
    assert a.id == 3
    cps = {cp.name: cp.manifest_id for cp in a.manifest.checkpoints}
    assert cps == {"b": 2, "a": 3}


def test_update_rejects_bad_results(store: Any) -> None:
    sm = StoredManifest.create_or_load(ManifestStore(store, ROOT))
    with pytest.raises(InternalError):
        sm.update(lambda m, _id: "nope")  # type: ignore[arg-type,return-value]
    sm.update(lambda m, _id: dataclasses.replace(m, writer_epoch=3))
    with pytest.raises(InternalError):
        sm.update(lambda m, _id: dataclasses.replace(m, writer_epoch=2))
    assert sm.id == 2


@pytest.mark.parametrize("shared_store", [False, True])
def test_racing_updates_lose_nothing(store: Any, shared_store: bool) -> None:
    StoredManifest.create_or_load(ManifestStore(store, ROOT))
    threads_n, per_thread = 8, 6
    shared = ManifestStore(store, ROOT)
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            ms = shared if shared_store else ManifestStore(store, ROOT)
            sm = StoredManifest.load(ms)
            barrier.wait()
            for i in range(per_thread):
                sm.update(with_checkpoint(f"t{t}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    total = threads_n * per_thread
    ms = ManifestStore(store, ROOT)
    assert ms.list_ids() == list(range(1, total + 2))
    latest = ms.read_latest()
    assert latest is not None and latest[0] == total + 1
    names = [str(cp.name) for cp in latest[1].checkpoints]
    assert sorted(names) == sorted(f"t{t}-{i}" for t in range(threads_n) for i in range(per_thread))
    # every checkpoint pins the version that first contained it
    for cp in latest[1].checkpoints:
        assert find_checkpoint(ms.read(cp.manifest_id), cp.id) is not None
        if cp.manifest_id > 1:
            assert find_checkpoint(ms.read(cp.manifest_id - 1), cp.id) is None


class AlwaysConflicts(Wrapper):
    def put_if_absent(self, key: str, data: bytes) -> None:
        self._count("put_if_absent")
        raise ObjectAlreadyExists("taken", key=key)


class FakeClock:
    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_update_timeout() -> None:
    inner = MemoryStore()
    StoredManifest.create_or_load(ManifestStore(inner, ROOT))
    wrapped = AlwaysConflicts(inner)
    sm = StoredManifest.load(ManifestStore(wrapped, ROOT))
    clock = FakeClock(1.0)
    with pytest.raises(UnavailableError, match="timed out"):
        sm.update(with_checkpoint("x"), timeout=10.0, clock=clock)
    assert 5 <= wrapped.calls["put_if_absent"] <= 11
    assert sm.id == 1
    with pytest.raises(UnavailableError):
        FenceableManifest.init_writer(sm, timeout=3.0, clock=FakeClock(1.0))


class TransientPut(Wrapper):
    def put_if_absent(self, key: str, data: bytes) -> None:
        from shale.objstore import TransientStoreError

        raise TransientStoreError("boom", key=key)


def test_update_transient_error_propagates() -> None:
    from shale.objstore import TransientStoreError

    inner = MemoryStore()
    StoredManifest.create_or_load(ManifestStore(inner, ROOT))
    sm = StoredManifest.load(ManifestStore(TransientPut(inner), ROOT))
    with pytest.raises(TransientStoreError):
        sm.update(with_checkpoint("x"))
    assert sm.id == 1


# -- fencing --------------------------------------------------------------------------------------


def test_writer_fencing(store: Any) -> None:
    sm_a = StoredManifest.create_or_load(ManifestStore(store, ROOT))
    a = FenceableManifest.init_writer(sm_a)
    assert (a.role, a.epoch, a.id, a.manifest.writer_epoch) == ("writer", 1, 2, 1)
    a.update(with_checkpoint("a1"))
    assert a.id == 3
    b = FenceableManifest.init_writer(StoredManifest.load(ManifestStore(store, ROOT)))
    assert (b.epoch, b.id) == (2, 4)
    after_b = snapshot(store)

    with pytest.raises(ClosedError) as info:
        a.update(with_checkpoint("a2"))
    assert info.value.reason == "fenced"
    assert a.fenced
    assert snapshot(store) == after_b  # A wrote nothing after B
    with pytest.raises(ClosedError) as info:
        a.refresh()
    assert info.value.reason == "fenced"

    # a fresh A handle (not yet refreshed) is fenced by its first refresh too
    b.update(with_checkpoint("b1"))
    assert b.id == 5


def test_fenced_refresh_first(store: Any) -> None:
    a = FenceableManifest.init_writer(StoredManifest.create_or_load(ManifestStore(store, ROOT)))
    FenceableManifest.init_writer(StoredManifest.load(ManifestStore(store, ROOT)))
    with pytest.raises(ClosedError) as info:
        a.refresh()
    assert info.value.reason == "fenced"
    before = snapshot(store)
    calls: list[int] = []
    with pytest.raises(ClosedError):
        a.update(lambda m, i: calls.append(i))
    assert calls == [] and snapshot(store) == before


def test_fenced_update_checks_after_reload(store: Any) -> None:
    """A's cached view still shows its own epoch; the conflicting write reloads and the
    re-check fences it before the mutation runs again."""
    a = FenceableManifest.init_writer(StoredManifest.create_or_load(ManifestStore(store, ROOT)))
    FenceableManifest.init_writer(StoredManifest.load(ManifestStore(store, ROOT)))
    before = snapshot(store)
    calls: list[int] = []

    def mutate(m: Manifest, next_id: int) -> Manifest:
        calls.append(next_id)
        return with_checkpoint("a")(m, next_id)  # type: ignore[no-any-return]

    with pytest.raises(ClosedError) as info:
        a.update(mutate)
    assert info.value.reason == "fenced"
    assert calls == [3]  # one attempt against the stale view, whose write conflicted
    assert snapshot(store) == before


def test_compactor_fencing_and_role_independence(store: Any) -> None:
    sm = StoredManifest.create_or_load(ManifestStore(store, ROOT))
    w1 = FenceableManifest.init_writer(sm)  # manifest 2, writer_epoch 1
    c1 = FenceableManifest.init_compactor(StoredManifest.load(ManifestStore(store, ROOT)))
    assert (c1.role, c1.epoch, c1.id) == ("compactor", 1, 3)
    assert c1.manifest.writer_epoch == 1

    # a new writer fences w1 but not c1
    w2 = FenceableManifest.init_writer(StoredManifest.load(ManifestStore(store, ROOT)))
    assert (w2.epoch, w2.manifest.compactor_epoch) == (2, 1)
    c1.update(with_checkpoint("c1"))  # conflicts with w2's version, reloads, succeeds
    assert c1.manifest.writer_epoch == 2
    assert c1.refresh().compactor_epoch == 1
    with pytest.raises(ClosedError):
        w1.refresh()

    # a new compactor fences c1 but not w2
    c2 = FenceableManifest.init_compactor(StoredManifest.load(ManifestStore(store, ROOT)))
    assert (c2.epoch, c2.manifest.writer_epoch) == (2, 2)
    before = snapshot(store)
    with pytest.raises(ClosedError) as info:
        c1.update(with_checkpoint("c1-late"))
    assert info.value.reason == "fenced"
    assert snapshot(store) == before
    w2.update(with_checkpoint("w2"))
    m = w2.refresh()
    assert (m.writer_epoch, m.compactor_epoch) == (2, 2)
    assert [cp.name for cp in m.checkpoints] == ["c1", "w2"]


def test_fenced_update_may_not_change_epochs(store: Any) -> None:
    w = FenceableManifest.init_writer(StoredManifest.create_or_load(ManifestStore(store, ROOT)))
    with pytest.raises(InternalError):
        w.update(lambda m, _i: dataclasses.replace(m, writer_epoch=m.writer_epoch + 1))
    with pytest.raises(InternalError):
        w.update(lambda m, _i: dataclasses.replace(m, compactor_epoch=m.compactor_epoch + 1))
    assert w.id == 2


def test_stored_epoch_lower_is_internal_error(store: Any) -> None:
    ms = ManifestStore(store, ROOT)
    w = FenceableManifest.init_writer(StoredManifest.create_or_load(ms))
    # a buggy client writes a lower epoch directly
    ms.try_write(3, dataclasses.replace(w.manifest, writer_epoch=0))
    with pytest.raises(InternalError):
        w.refresh()


def test_init_concurrent_writers_get_distinct_epochs(store: Any) -> None:
    StoredManifest.create_or_load(ManifestStore(store, ROOT))
    n = 6
    barrier = threading.Barrier(n)
    epochs: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sm = StoredManifest.load(ManifestStore(store, ROOT))
            barrier.wait()
            epochs.append(FenceableManifest.init_writer(sm).epoch)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(epochs) == list(range(1, n + 1))
    ms = ManifestStore(store, ROOT)
    assert ms.list_ids() == list(range(1, n + 2))
    assert ms.read_latest()[1].writer_epoch == n  # type: ignore[index]


def test_bad_role() -> None:
    sm = StoredManifest.create_or_load(ManifestStore(MemoryStore(), ROOT))
    with pytest.raises(InvalidError):
        FenceableManifest(sm, 1, "reader")


# -- checkpoints ----------------------------------------------------------------------------------


def test_add_checkpoint() -> None:
    m = Manifest.initial()
    cid = uuid.UUID(int=7)
    m2, cp = add_checkpoint(
        m, manifest_id=6, now_s=100, lifetime_s=900, name="n", checkpoint_id=cid
    )
    assert m.checkpoints == []  # the input is not mutated
    assert m2.checkpoints == [cp]
    assert (cp.id, cp.manifest_id, cp.create_time_s, cp.expire_time_s, cp.name) == (
        cid,
        6,
        100,
        1000,
        "n",
    )
    m3, forever = add_checkpoint(m2, manifest_id=7, now_s=100)
    assert forever.expire_time_s is None and forever.name is None
    assert forever.id.version == 4
    # from a source checkpoint: pins the source's version
    m4, derived = add_checkpoint(m3, manifest_id=8, now_s=200, source=cid)
    assert derived.manifest_id == 6
    with pytest.raises(InvalidError):
        add_checkpoint(m4, manifest_id=8, now_s=1, source=uuid.UUID(int=99))
    with pytest.raises(InvalidError):
        add_checkpoint(m4, manifest_id=8, now_s=1, checkpoint_id=cid)
    with pytest.raises(InvalidError):
        add_checkpoint(m4, manifest_id=8, now_s=1, lifetime_s=-1)
    uninit = dataclasses.replace(m, initialized=False)
    with pytest.raises(InvalidError):
        add_checkpoint(uninit, manifest_id=2, now_s=1)


def test_remove_and_refresh_checkpoint() -> None:
    m, a = add_checkpoint(Manifest.initial(), manifest_id=2, now_s=10, lifetime_s=5)
    m, b = add_checkpoint(m, manifest_id=3, now_s=10)
    assert find_checkpoint(m, a.id) == a
    r = refresh_checkpoint(m, a.id, now_s=100, lifetime_s=60.9)
    assert find_checkpoint(r, a.id).expire_time_s == 160  # type: ignore[union-attr]
    assert find_checkpoint(r, b.id) == b
    assert [c.id for c in r.checkpoints] == [a.id, b.id]
    never = refresh_checkpoint(r, a.id, now_s=200, lifetime_s=None)
    assert find_checkpoint(never, a.id).expire_time_s is None  # type: ignore[union-attr]
    gone = remove_checkpoint(m, a.id)
    assert gone.checkpoints == [b]
    unknown = uuid.UUID(int=5)
    with pytest.raises(InvalidError, match="unknown checkpoint"):
        remove_checkpoint(m, unknown)
    with pytest.raises(InvalidError, match="unknown checkpoint"):
        refresh_checkpoint(m, unknown, now_s=1, lifetime_s=1)
    assert find_checkpoint(m, unknown) is None


def test_remove_expired_checkpoints() -> None:
    m, _ = add_checkpoint(Manifest.initial(), manifest_id=2, now_s=10, lifetime_s=5)  # exp 15
    m, b = add_checkpoint(m, manifest_id=2, now_s=10, lifetime_s=50)  # exp 60
    m, c = add_checkpoint(m, manifest_id=2, now_s=10)  # never
    assert remove_expired_checkpoints(m, 15) is m  # expire == now is not expired
    assert remove_expired_checkpoints(m, 16).checkpoints == [b, c]
    assert remove_expired_checkpoints(m, 10**9).checkpoints == [c]


def test_checkpoint_in_update_pins_written_version(store: Any) -> None:
    sm = StoredManifest.create_or_load(ManifestStore(store, ROOT))
    made: list[uuid.UUID] = []

    def mutate(m: Manifest, next_id: int) -> Manifest:
        new, cp = add_checkpoint(m, manifest_id=next_id, now_s=1_700_000_000, lifetime_s=900)
        made.append(cp.id)
        return new

    sm.update(mutate)
    cp = find_checkpoint(sm.manifest, made[-1])
    assert cp is not None and cp.manifest_id == sm.id == 2
    assert cp.expire_time_s is not None and cp.expire_time_s - cp.create_time_s == 900
    # round trip through the store
    assert ManifestStore(store, ROOT).read(2).checkpoints == [cp]
