"""Tests for shale_gc.collector: each collector's rules on hand-built databases in a MemoryStore
with a manual clock, expired checkpoints, GC boundaries, dry runs, plugins, failures, the loop."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import pytest

import shale
from shale.clock import ManualClock
from shale.fbs.compactions import STATUS_COMPLETED, STATUS_RUNNING, Compaction
from shale.ids import compacted_path, compactions_path, manifest_path, wal_path
from shale.meta.compactions_store import CompactionsStore
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale.objstore import ObjectNotFound, TransientStoreError
from shale.objstore.memory import MemoryStore
from shale.settings import GarbageCollectorOptions, GcDirectoryOptions
from shale_gc import GarbageCollector, GcObject, GcReport
from shale_gc.rules import (
    KEEP_ACTIVE_COMPACTION,
    KEEP_CHECKPOINT_REFERENCE,
    KEEP_CHECKPOINT_WAL,
    KEEP_LATEST,
    KEEP_LOW_WATERMARK,
    KEEP_PINNED,
    KEEP_REFERENCED,
    KEEP_TOO_YOUNG,
    KEEP_UNREPLAYED,
)

ROOT = "db"


def options(min_age: float = 300.0, interval: float | None = 60.0, **disabled: None) -> Any:
    d = GcDirectoryOptions(interval=interval, min_age=min_age)
    kw: dict[str, Any] = {k: d for k in ("manifest", "wal", "compacted", "compactions")}
    kw.update(disabled)
    return GarbageCollectorOptions(**kw)


def gc_for(built: Any, min_age: float = 300.0, **kw: Any) -> GarbageCollector:
    return GarbageCollector(built.store, ROOT, options(min_age), clock=built.clock, **kw)


def deleted(report: GcReport, kind: str) -> list[str]:
    return sorted(o.key for o in report.kinds[kind].deleted)


def kept(report: GcReport, kind: str) -> dict[str, str]:
    return {o.key: r for o, r in report.kinds[kind].kept}


# -- WAL -----------------------------------------------------------------------------------------


def test_wal_gc_deletes_only_replayed_old_wals(built: Any) -> None:
    built.wal(1, empty=True)  # the writer's fence object
    for i in range(2, 8):
        built.wal(i)
    built.update(replay_after_wal_id=5, wal_id_last_seen=7)
    gc = gc_for(built)
    r = gc.run_once(["wal"])
    assert deleted(r, "wal") == []
    assert set(kept(r, "wal").values()) == {KEEP_TOO_YOUNG, KEEP_UNREPLAYED}
    built.advance(300)  # exactly min_age: still kept (strictly older is required)
    assert deleted(gc.run_once(["wal"]), "wal") == []
    built.advance(1)
    r = gc.run_once(["wal"])
    assert deleted(r, "wal") == [wal_path(ROOT, i) for i in range(1, 5)]
    assert r.kinds["wal"].bytes_freed > 0
    assert kept(r, "wal") == {wal_path(ROOT, i): KEEP_UNREPLAYED for i in (5, 6, 7)}
    assert built.keys("wal") == [wal_path(ROOT, i) for i in (5, 6, 7)]
    assert deleted(gc.run_once(["wal"]), "wal") == []  # idempotent


def test_wal_gc_respects_checkpoints(built: Any) -> None:
    for i in range(1, 12):
        built.wal(i)
    built.update(replay_after_wal_id=3, wal_id_last_seen=5)
    cid, _ = built.checkpoint()
    built.update(replay_after_wal_id=10, wal_id_last_seen=11)
    built.advance(1000)
    gc = gc_for(built)
    r = gc.run_once(["wal"])
    assert deleted(r, "wal") == [wal_path(ROOT, i) for i in (1, 2, 3)]
    k = kept(r, "wal")
    assert all(k[wal_path(ROOT, i)] == KEEP_CHECKPOINT_WAL for i in range(4, 10))
    built.delete_checkpoint(cid)
    r = gc.run_once(["wal"])
    assert deleted(r, "wal") == [wal_path(ROOT, i) for i in range(4, 10)]
    assert built.keys("wal") == [wal_path(ROOT, 10), wal_path(ROOT, 11)]


def test_wal_gc_skipped_with_a_separate_wal_store(clock: ManualClock) -> None:
    store = MemoryStore(clock=lambda: clock.now_ms() / 1000)
    ms = ManifestStore(store, ROOT, format_version=1)
    stored = StoredManifest.create_or_load(ms)
    stored.update(
        lambda m, _n: dataclasses.replace(m, replay_after_wal_id=5, wal_object_store_uri="")
    )
    store.put(wal_path(ROOT, 1), b"")
    clock.advance(10**6)
    gc = GarbageCollector(store, ROOT, options(0), clock=clock, manifest_format_version=1)
    r = gc.run_once(["wal"])
    assert r.kinds["wal"].error is not None and "separate WAL store" in r.kinds["wal"].error
    assert store.head(wal_path(ROOT, 1)).size == 0


# -- compacted -----------------------------------------------------------------------------------


def test_compacted_gc_min_age_cutoff(built: Any) -> None:
    """SlateDB's test_compacted_gc_respects_min_age_cutoff, in seconds."""
    t0 = built.clock.now_ms()
    to_delete = built.sst(ts_ms=t0 + 1_000)
    within_min_age = built.sst(ts_ms=t0 + 7_000)
    active_recent = built.sst(ts_ms=t0 + 8_000)
    built.compactions(Compaction(built.compaction_id(t0 + 9_000), STATUS_RUNNING, sorted_runs=[0]))
    built.add_l0(active_recent)
    built.clock.set(t0 + 10_000)
    r = GarbageCollector(built.store, ROOT, options(5), clock=built.clock).run_once(["compacted"])
    assert deleted(r, "compacted") == [compacted_path(ROOT, to_delete.id)]
    k = kept(r, "compacted")
    assert k[compacted_path(ROOT, within_min_age.id)] == KEEP_TOO_YOUNG
    assert k[compacted_path(ROOT, active_recent.id)] == KEEP_REFERENCED


def test_compacted_gc_newest_l0_and_low_watermark(built: Any) -> None:
    t0 = built.clock.now_ms()
    old = built.sst(ts_ms=t0 + 1_000)
    orphan = built.sst(ts_ms=t0 + 6_000)  # newer than the newest published L0
    l0 = built.sst(ts_ms=t0 + 5_000)
    built.add_l0(l0)
    built.clock.set(t0 + 100_000)
    gc = GarbageCollector(built.store, ROOT, options(0), clock=built.clock)
    # no compactions file: the watermark is the Unix epoch, nothing is deleted
    r = gc.run_once(["compacted"])
    assert deleted(r, "compacted") == []
    assert kept(r, "compacted")[compacted_path(ROOT, old.id)] == KEEP_LOW_WATERMARK
    built.compactions()  # an empty file: same
    assert deleted(gc.run_once(["compacted"]), "compacted") == []
    built.compactions(Compaction(built.compaction_id(t0 + 50_000), STATUS_COMPLETED))
    r = gc.run_once(["compacted"])
    assert deleted(r, "compacted") == [compacted_path(ROOT, old.id)]
    assert "newest L0" in kept(r, "compacted")[compacted_path(ROOT, orphan.id)]
    newer = built.sst(ts_ms=t0 + 7_000)
    built.add_l0(newer)  # now the orphan is older than the newest L0
    assert deleted(gc.run_once(["compacted"]), "compacted") == [compacted_path(ROOT, orphan.id)]


def test_compacted_gc_last_compacted_l0_fallback(built: Any) -> None:
    t0 = built.clock.now_ms()
    a, b = built.sst(ts_ms=t0 + 1_000), built.sst(ts_ms=t0 + 2_000)
    built.add_l0(a)
    built.add_l0(b)
    out = built.sst(ts_ms=t0 + 4_000)
    built.compactions(Compaction(built.compaction_id(t0 + 3_000), STATUS_COMPLETED))
    built.set_runs((0, [out]))  # L0 emptied, last compacted = b
    built.clock.set(t0 + 60_000)
    r = GarbageCollector(built.store, ROOT, options(0), clock=built.clock).run_once(["compacted"])
    # a is below every bound; b is the last compacted L0 itself (not strictly older): kept
    assert deleted(r, "compacted") == [compacted_path(ROOT, a.id)]
    assert built.keys("compacted") == sorted(compacted_path(ROOT, s.id) for s in (b, out))


def test_compacted_gc_keeps_checkpointed_and_active_compaction_ssts(built: Any) -> None:
    t0 = built.clock.now_ms()
    l0s = [built.sst(ts_ms=t0 + 1_000 + i) for i in range(3)]
    for s in l0s:
        built.add_l0(s)
    cid, _ = built.checkpoint()  # pins the L0s
    run = built.sst(ts_ms=t0 + 5_000)
    built.set_runs((0, [run]))
    uncommitted = built.sst(ts_ms=t0 + 500)  # an output older than everything (clock skew)
    built.compactions(
        Compaction(built.compaction_id(t0 + 4_000), STATUS_COMPLETED),
        Compaction(
            built.compaction_id(t0 + 6_000),
            STATUS_RUNNING,
            sorted_runs=[0],
            output_ssts=[uncommitted],
        ),
    )
    built.add_l0(built.sst(ts_ms=t0 + 7_000))
    built.clock.set(t0 + 60_000)
    gc = GarbageCollector(built.store, ROOT, options(0), clock=built.clock)
    r = gc.run_once(["compacted"])
    assert deleted(r, "compacted") == []
    k = kept(r, "compacted")
    assert all(k[compacted_path(ROOT, s.id)] == KEEP_CHECKPOINT_REFERENCE for s in l0s)
    assert k[compacted_path(ROOT, uncommitted.id)] == KEEP_ACTIVE_COMPACTION
    assert k[compacted_path(ROOT, run.id)] == KEEP_REFERENCED
    built.delete_checkpoint(cid)
    r = gc.run_once(["compacted"])
    assert deleted(r, "compacted") == sorted(compacted_path(ROOT, s.id) for s in l0s)


# -- manifests and compactions files -------------------------------------------------------------


def test_manifest_gc_keeps_latest_and_pinned_and_advances_boundary(built: Any) -> None:
    built.update(replay_after_wal_id=1)  # 2
    _, pinned = built.checkpoint()  # 3, pinned
    built.update(replay_after_wal_id=2)  # 4
    built.update(replay_after_wal_id=3)  # 5
    built.advance(301)
    built.update(replay_after_wal_id=4)  # 6, young and latest
    gc = gc_for(built)
    r = gc.run_once(["manifest"])
    assert pinned == 3
    assert deleted(r, "manifest") == [manifest_path(ROOT, i) for i in (1, 2, 4, 5)]
    k = kept(r, "manifest")
    assert k[manifest_path(ROOT, 3)] == KEEP_PINNED and k[manifest_path(ROOT, 6)] == KEEP_LATEST
    assert r.kinds["manifest"].boundary == 5 == built.ms.read_boundary()
    assert built.ms.read_latest()[0] == 6  # type: ignore[index]
    assert built.ms.read(3).replay_after_wal_id == 1  # the pinned version is still readable
    # a client that still believes version 4 is the latest cannot resurrect 5
    stale = StoredManifest(ManifestStore(built.store, ROOT), 4, built.ms.read(3))
    stale.update(lambda m, _n: dataclasses.replace(m, replay_after_wal_id=9))
    assert stale.id == 7


def test_young_manifests_are_kept(built: Any) -> None:
    for i in range(3):
        built.update(replay_after_wal_id=i)
    r = gc_for(built).run_once(["manifest"])
    assert deleted(r, "manifest") == []
    assert set(kept(r, "manifest").values()) == {KEEP_LATEST, KEEP_TOO_YOUNG}
    assert built.ms.read_boundary() == 0


def test_compactions_gc(built: Any) -> None:
    for _ in range(4):
        built.compactions()
    built.advance(400)
    built.compactions()  # 5: latest
    r = gc_for(built).run_once(["compactions"])
    assert deleted(r, "compactions") == [compactions_path(ROOT, i) for i in range(1, 5)]
    assert kept(r, "compactions") == {compactions_path(ROOT, 5): KEEP_LATEST}
    assert CompactionsStore(built.store, ROOT).read_boundary() == 4
    assert built.store.get(f"{ROOT}/gc/compactions.boundary") == b"4"
    built.advance(400)
    r = gc_for(built).run_once(["compactions"])  # the latest is never deleted, however old
    assert deleted(r, "compactions") == [] and built.keys("compactions") == [
        compactions_path(ROOT, 5)
    ]


# -- rounds: expired checkpoints, ordering, dry runs ---------------------------------------------


def test_expired_checkpoints_are_removed_first(built: Any) -> None:
    for i in range(1, 9):
        built.wal(i)
    built.update(replay_after_wal_id=2)
    cid, pinned = built.checkpoint(lifetime_s=100)
    forever, _ = built.checkpoint()
    built.update(replay_after_wal_id=8)
    built.advance(50)
    gc = gc_for(built, min_age=0)
    r = gc.run_once()
    assert r.expired_checkpoints == []
    assert deleted(r, "wal") == [wal_path(ROOT, i) for i in (1, 2)]
    built.advance(51)
    before = built.ms.read_latest()[0]  # type: ignore[index]
    r = gc.run_once()
    assert r.expired_checkpoints == [cid]
    latest_id, latest = built.ms.read_latest()  # type: ignore[misc]
    assert latest_id == before + 1
    assert [c.id for c in latest.checkpoints] == [forever]
    assert latest.writer_epoch == 0 and latest.compactor_epoch == 0  # GC claims no epoch
    # the expired checkpoint's manifest went in the same round (it is old and no longer pinned)
    assert manifest_path(ROOT, pinned) in deleted(r, "manifest")
    # the remaining checkpoint pins replay_after 2: WALs 3..7 stay for it
    assert deleted(r, "wal") == []
    assert all(v == KEEP_CHECKPOINT_WAL for k, v in kept(r, "wal").items() if k < wal_path(ROOT, 8))


class Recording:
    """A store wrapper recording the keys it GETs, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gets: list[str] = []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return self.inner.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_compactions_are_read_before_the_manifest(built: Any) -> None:
    built.compactions()
    built.update(replay_after_wal_id=1)
    rec = Recording(built.store)
    GarbageCollector(rec, ROOT, options(0), clock=built.clock).run_once(["compacted"])
    comp = [i for i, k in enumerate(rec.gets) if "/compactions/" in k]
    man = [i for i, k in enumerate(rec.gets) if "/manifest/" in k]
    assert comp and man and max(comp) < min(man[1:] or man)
    # (the first manifest GET is the expired-checkpoint step that precedes every round)


def _populate(built: Any) -> None:
    t0 = built.clock.now_ms()
    for i in range(1, 10):
        built.wal(i, empty=i == 1)
    l0s = [built.sst(ts_ms=t0 + i) for i in range(4)]
    for s in l0s[:2]:
        built.add_l0(s)
    built.update(replay_after_wal_id=4)
    built.checkpoint(lifetime_s=60)
    for s in l0s[2:]:
        built.add_l0(s)
    built.update(replay_after_wal_id=7)
    built.compactions(Compaction(built.compaction_id(t0 + 100), STATUS_COMPLETED))
    built.set_runs((0, [built.sst(ts_ms=t0 + 200)]))
    built.add_l0(built.sst(ts_ms=t0 + 300))
    built.sst(ts_ms=t0 + 50)  # an orphaned upload
    built.compactions(Compaction(built.compaction_id(t0 + 150), STATUS_COMPLETED))


def _snapshot(store: Any) -> dict[str, bytes]:
    return {m.key: store.get(m.key) for m in store.list("")}


@pytest.mark.parametrize("advance", [0, 30, 120, 3600])
def test_dry_run_reports_what_a_real_run_deletes(built: Any, advance: int) -> None:
    _populate(built)
    built.advance(advance)
    before = _snapshot(built.store)
    dry = GarbageCollector(built.store, ROOT, options(20), clock=built.clock, dry_run=True)
    d = dry.run_once()
    assert d.dry_run and _snapshot(built.store) == before
    real = GarbageCollector(built.store, ROOT, options(20), clock=built.clock).run_once()
    assert sorted(o.key for o in d.deleted) == sorted(o.key for o in real.deleted)
    assert d.expired_checkpoints == real.expired_checkpoints
    assert d.bytes_freed == real.bytes_freed
    if advance == 3600:
        assert d.expired_checkpoints and real.deleted
        assert {o.kind for o in real.deleted} == {"wal", "manifest", "compacted", "compactions"}
    for o in real.deleted:
        with pytest.raises(ObjectNotFound):
            built.store.head(o.key)


# -- plugins -------------------------------------------------------------------------------------


class Veto:
    def __init__(self, keep_kind: str, answer_none_for: str = "") -> None:
        self.keep_kind = keep_kind
        self.none_for = answer_none_for
        self.seen: list[tuple[str, list[str]]] = []
        self.reports: list[GcReport] = []

    @shale.hookimpl
    def shale_gc_filter(self, candidates: list[GcObject], kind: str) -> list[GcObject] | None:
        self.seen.append((kind, [c.key for c in candidates]))
        if kind == self.none_for:
            return None
        if kind == self.keep_kind:
            return candidates[1:]  # veto the first
        return candidates

    @shale.hookimpl
    def shale_gc_finished(self, report: GcReport) -> None:
        self.reports.append(report)


class Broken:
    @shale.hookimpl
    def shale_gc_filter(self, candidates: list[GcObject], kind: str) -> list[GcObject] | None:
        raise RuntimeError("boom")

    @shale.hookimpl
    def shale_gc_finished(self, report: GcReport) -> None:
        raise RuntimeError("observer boom")


def test_filter_plugins_can_only_veto(built: Any, add_plugin: Any) -> None:
    for i in range(1, 6):
        built.wal(i)
    built.update(replay_after_wal_id=5)
    built.advance(1000)
    veto = Veto("wal", answer_none_for="manifest")
    add_plugin(veto)
    r = gc_for(built).run_once()
    assert deleted(r, "wal") == [wal_path(ROOT, i) for i in (2, 3, 4)]
    assert "kept by the shale_gc_filter plugin" in kept(r, "wal")[wal_path(ROOT, 1)]
    assert deleted(r, "manifest") == [manifest_path(ROOT, 1)]  # None = no objection
    assert ("wal", [wal_path(ROOT, i) for i in range(1, 5)]) in veto.seen
    assert veto.reports == [r]


def test_a_failing_filter_keeps_everything(
    built: Any, add_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(1, 4):
        built.wal(i)
    built.update(replay_after_wal_id=3)
    built.advance(1000)
    add_plugin(Broken())
    with caplog.at_level(logging.ERROR, logger="shale.gc"):
        r = gc_for(built).run_once()
    assert r.deleted == [] and len(built.keys("wal")) == 3
    assert "boom" in caplog.text


def test_dry_run_asks_the_filters(built: Any, add_plugin: Any) -> None:
    built.update(replay_after_wal_id=1)
    built.advance(1000)
    veto = Veto("manifest")
    add_plugin(veto)
    r = gc_for(built, dry_run=True).run_once(["manifest"])
    assert r.deleted == [] and veto.seen == [("manifest", [manifest_path(ROOT, 1)])]


# -- failures are never fatal --------------------------------------------------------------------


class FailingDeletes:
    def __init__(self, inner: Any, fail: set[str]) -> None:
        self.inner = inner
        self.fail = fail

    def delete(self, key: str) -> None:
        if key in self.fail:
            raise TransientStoreError("injected", key=key)
        self.inner.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_failed_deletes_are_reported_and_retried(built: Any) -> None:
    for i in range(1, 6):
        built.wal(i)
    built.update(replay_after_wal_id=5)
    built.advance(1000)
    store = FailingDeletes(built.store, {wal_path(ROOT, 2)})
    gc = GarbageCollector(store, ROOT, options(), clock=built.clock)
    r = gc.run_once(["wal"])
    assert deleted(r, "wal") == [wal_path(ROOT, i) for i in (1, 3, 4)]
    assert [o.key for o, _ in r.kinds["wal"].failed] == [wal_path(ROOT, 2)]
    assert not r.ok and "retried next round" in r.summary()
    store.fail.clear()
    r = gc.run_once(["wal"])
    assert deleted(r, "wal") == [wal_path(ROOT, 2)] and r.ok


def test_errors_are_reported_not_raised(built: Any) -> None:
    empty = MemoryStore()
    r = GarbageCollector(empty, ROOT, options(0)).run_once()
    assert r.errors and "no manifest" in r.errors[0] and r.kinds == {}
    # a corrupt compactions file stops only the collectors that read it
    built.store.put(compactions_path(ROOT, 1), b"\x00\x02garbage")
    for i in range(1, 3):
        built.wal(i)
    built.update(replay_after_wal_id=2)
    built.advance(1000)
    r = gc_for(built).run_once()
    assert r.kinds["compacted"].error is not None and "corrupt" in r.kinds["compacted"].error
    assert r.kinds["compactions"].error is not None
    assert deleted(r, "wal") == [wal_path(ROOT, 1)]


def test_a_missing_pinned_manifest_stops_wal_and_compacted_gc(built: Any) -> None:
    for i in range(1, 4):
        built.wal(i)
    _, pinned = built.checkpoint()
    built.update(replay_after_wal_id=3)
    built.store.delete(manifest_path(ROOT, pinned))  # someone else broke the database
    built.advance(1000)
    r = gc_for(built).run_once()
    for kind in ("wal", "compacted"):
        assert r.kinds[kind].error is not None and "cannot be read" in r.kinds[kind].error
    assert len(built.keys("wal")) == 3


def test_unknown_names_are_never_touched(built: Any) -> None:
    built.store.put(f"{ROOT}/wal/notes.txt", b"x")
    built.store.put(f"{ROOT}/wal/1.sst", b"x")  # not 20 digits
    built.store.put(f"{ROOT}/wal/sub/00000000000000000001.sst", b"x")
    built.store.put(f"{ROOT}/compacted/01hf7yatz8pzyaah2718756vda.sst", b"x")  # lower case
    built.store.put(f"{ROOT}/manifest/00000000000000000001.manifest.tmp", b"x")
    built.update(replay_after_wal_id=100)
    built.advance(10**6)
    r = gc_for(built, min_age=0).run_once()
    assert all(o.key.endswith(".manifest") for o in r.deleted)
    assert len(built.keys("wal")) == 3 and len(built.keys("compacted")) == 1


def test_disabled_directories_and_kinds_subset(built: Any) -> None:
    built.wal(1)
    built.update(replay_after_wal_id=2)
    built.advance(1000)
    opts = options(0, wal=None)
    r = GarbageCollector(built.store, ROOT, opts, clock=built.clock).run_once()
    assert list(r.kinds) == ["manifest", "compacted", "compactions"]
    r = gc_for(built, 0).run_once(["compactions", "wal"])
    assert list(r.kinds) == ["wal", "compactions"]
    assert built.keys("wal") == []


def test_progress_on_large_listings(built: Any) -> None:
    for i in range(1, 2502):
        built.store.put(wal_path(ROOT, i), b"")
    built.update(replay_after_wal_id=2501)
    built.advance(1000)
    events: list[tuple[str, str, int]] = []
    gc = gc_for(built, progress=lambda *e: events.append(e))
    r = gc.run_once(["wal"])
    assert len(r.kinds["wal"].deleted) == 2500
    assert ("wal", "listed", 1000) in events and ("wal", "listed", 2501) in events
    assert ("wal", "deleted", 2000) in events and ("wal", "deleted", 2500) in events


def test_report_to_dict_and_summary(built: Any) -> None:
    _populate(built)
    built.advance(3600)
    r = gc_for(built, 0).run_once()
    d = r.to_dict()
    assert d["deleted"] == len(r.deleted) and d["bytes_freed"] == r.bytes_freed
    assert set(d["kinds"]) == {"manifest", "wal", "compacted", "compactions"}
    assert "total: deleted" in r.summary()
    import json

    json.dumps(d)


# -- the loop ------------------------------------------------------------------------------------


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_run_loop_uses_per_directory_intervals_and_stops(built: Any) -> None:
    built.update(replay_after_wal_id=1)
    d_fast = GcDirectoryOptions(interval=0.01, min_age=0)
    opts = GarbageCollectorOptions(
        manifest=d_fast,
        wal=GcDirectoryOptions(interval=3600, min_age=0),
        compacted=GcDirectoryOptions(interval=None, min_age=0),
        compactions=None,
    )
    gc = GarbageCollector(built.store, ROOT, opts, clock=built.clock)
    reports: list[GcReport] = []
    stop = threading.Event()
    t = threading.Thread(target=gc.run, args=(stop,), kwargs={"on_report": reports.append})
    t.start()
    try:
        wait_for(lambda: len(reports) >= 4)
        built.advance(1)
        built.update(replay_after_wal_id=2)
        wait_for(lambda: manifest_path(ROOT, 1) not in built.keys("manifest"))
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    kinds = [list(r.kinds) for r in reports]
    assert kinds[0] == ["manifest", "wal"]  # both at once first
    assert all(k == ["manifest"] for k in kinds[1:])  # the WAL interval is an hour
    assert all("compacted" not in k for k in kinds)


def test_run_without_intervals_returns(built: Any) -> None:
    gc = GarbageCollector(built.store, ROOT, options(0, interval=None), clock=built.clock)
    gc.run(threading.Event())  # nothing scheduled: returns at once
    assert gc.rounds == 0
    assert len(gc.run_once().kinds) == 4  # but a one-off run collects everything


def test_permanent_store_error_stops_the_loop() -> None:
    """Access denied is not retried every interval forever (issue 9 item 14)."""
    from shale.objstore import PermanentStoreError

    class Denied(MemoryStore):
        calls = 0

        def list(self, prefix: str = "") -> Any:
            Denied.calls += 1
            raise PermanentStoreError("access denied", prefix=prefix)

        def get(self, key: str) -> bytes:
            Denied.calls += 1
            raise PermanentStoreError("access denied", key=key)

    gc = GarbageCollector(Denied(), ROOT, options(0, interval=0.01))
    stop = threading.Event()
    t = threading.Thread(target=gc.run, args=(stop,))
    t.start()
    t.join(10)
    stopped = not t.is_alive()
    stop.set()
    t.join(10)
    assert stopped, "the GC loop kept retrying a permanent error"
    assert isinstance(gc.permanent_error, PermanentStoreError)
    assert gc.rounds == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda s: GarbageCollector(s, 5),  # type: ignore[arg-type]
        lambda s: GarbageCollector(s, ROOT, "x"),  # type: ignore[arg-type]
        lambda s: GarbageCollector(s, ROOT).run_once(kinds=5),  # type: ignore[arg-type]
        lambda s: GarbageCollector(s, ROOT).run_once(kinds="wal"),
    ],
)
def test_bad_arguments_are_invalid_errors(make: Any) -> None:
    """Only shale's error kinds cross the API (issue 9 item 14)."""
    from shale.errors import InvalidError

    with pytest.raises(InvalidError):
        make(MemoryStore())


def test_a_round_sweeps_stale_staging_files_of_a_local_store(tmp_path: Any) -> None:
    """A compactor killed while streaming an output leaves a ``.tmp-*`` file beside the SSTs;
    the GC removes it once it is old (never a fresh one, and not in a dry run)."""
    import os

    from shale.objstore.local import TEMP_PREFIX, LocalStore

    store = LocalStore(tmp_path)
    with shale.Db.open("db", shale.Settings(), object_store=store) as db:
        db.put(b"k", b"v")
    stale = tmp_path / "db" / "compacted" / f"{TEMP_PREFIX}killed"
    fresh = tmp_path / "db" / "compacted" / f"{TEMP_PREFIX}streaming"
    stale.parent.mkdir(parents=True, exist_ok=True)
    for f in (stale, fresh):
        f.write_bytes(b"half an sst")
    past = time.time() - 2 * 3600
    os.utime(stale, (past, past))
    dry = GarbageCollector(store, "db", dry_run=True).run_once()
    assert dry.staging_swept == [] and stale.exists()
    report = GarbageCollector(store, "db").run_once()
    assert report.staging_swept == [f"db/compacted/{TEMP_PREFIX}killed"]
    assert not stale.exists() and fresh.exists()
    with shale.Db.open("db", shale.Settings(), object_store=store) as db:
        assert db.get(b"k") == b"v"
