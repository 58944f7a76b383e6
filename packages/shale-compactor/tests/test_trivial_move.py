"""Trivial moves (SlateDB's ``enable_trivial_move``): a compaction whose sources' key ranges do
not overlap is committed by moving the source SSTs into the destination run unchanged.

* ``trivial_move_output``: disjoint views (also made disjoint by visible ranges) give the run in
  key order; overlapping ones, drains and SSTs of unknown extent give ``None``.
* A compactor with the option moves disjoint L0s into a run without writing an SST (the run
  lists the L0 SSTs themselves), leaves every row readable, and still merges overlapping
  sources; without the option it always merges.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shale import Db, Settings
from shale.batch import WriteBatch
from shale.fbs.compactions import SPEC_DRAIN_SEGMENT, Compaction
from shale.fbs.manifest import (
    BOUND_EXCLUDED,
    BOUND_INCLUDED,
    BOUND_UNBOUNDED,
    Bound,
    BytesRange,
    CompactedSst,
    Manifest,
    SstView,
)
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import Ulid
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions
from shale_compactor import FULL, Compactor
from shale_compactor.state import read_view, trivial_move_output

ROOT = "db"
FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
MOVE = CompactorOptions(poll_interval=0.05, enable_trivial_move=True)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def db(store: MemoryStore) -> Iterator[Db]:
    d = Db.open(ROOT, FAST, object_store=store)
    yield d
    d.close()


def write_l0(db: Db, keys: range, tag: bytes = b"v") -> dict[bytes, bytes]:
    """One L0 SST holding ``key%05d`` for ``keys``."""
    batch = WriteBatch()
    rows = {b"key%05d" % i: tag + b"%d" % i for i in keys}
    for k, v in rows.items():
        batch.put(k, v)
    db.write(batch)
    db.flush(memtable=True)
    return rows


def _job(store: MemoryStore, cid: Ulid) -> Compaction:
    """Compaction ``cid`` as the ``.compactions`` file holds it."""
    view = read_view(store, ROOT)
    assert view.compactions is not None
    (job,) = [x for x in view.compactions.recent_compactions if x.id == cid]
    return job


def compact_full(store: MemoryStore, options: CompactorOptions) -> Any:
    """Submit a full compaction to a standalone compactor and run it; its report."""
    c = Compactor(store, ROOT, FAST, options=options)
    c.submit(FULL)
    (report,) = c.run_once()
    c.stop()
    assert report.status == "completed"
    return report


def compacted_files(store: MemoryStore) -> set[str]:
    return {m.key for m in store.list(f"{ROOT}/compacted/")}


def test_disjoint_l0s_are_moved_without_writing_an_sst(store: MemoryStore, db: Db) -> None:
    expected: dict[bytes, bytes] = {}
    for lo in (200, 0, 100):  # L0 order is not key order
        expected |= write_l0(db, range(lo, lo + 100))
    m = db.refresh_manifest()
    l0_ssts = [v.sst.id for v in m.l0]
    files = compacted_files(store)
    report = compact_full(store, MOVE)
    assert compacted_files(store) == files, "a trivial move writes no SST"
    m = db.refresh_manifest()
    assert m.l0 == []
    (run,) = m.compacted
    # the run is the L0 SSTs themselves (L0 is newest first: keys 100.., 0.., 200..), in
    # key order
    assert [v.sst.id for v in run.ssts] == [l0_ssts[1], l0_ssts[0], l0_ssts[2]]
    assert [s.id for s in report.output_ssts] == [v.sst.id for v in run.ssts]
    assert report.bytes_out > 0
    assert dict(db.scan()) == expected
    assert db.get(b"key00150") == b"v150"
    # a later compaction over the moved run merges as usual (overlapping with new L0s)
    expected |= write_l0(db, range(50, 250), b"w")
    compact_full(store, MOVE)
    m = db.refresh_manifest()
    (run,) = m.compacted
    assert not {v.sst.id for v in run.ssts} & set(l0_ssts), "overlapping sources are merged"
    assert dict(db.scan()) == expected


def test_garbage_collection_keeps_the_moved_ssts(store: MemoryStore, db: Db) -> None:
    """A GC round that deletes every unreferenced file at once keeps the moved SSTs: they are
    the run's now."""
    shale_gc = pytest.importorskip("shale_gc")
    from shale.settings import GarbageCollectorOptions, GcDirectoryOptions

    expected = write_l0(db, range(0, 100))
    expected |= write_l0(db, range(100, 200))
    compact_full(store, MOVE)
    files = compacted_files(store)
    d = GcDirectoryOptions(interval=None, min_age=0)
    gc = shale_gc.GarbageCollector(store, ROOT, GarbageCollectorOptions(d, d, d, d))
    gc.run_once()
    assert compacted_files(store) == files
    assert dict(db.scan()) == expected


def test_overlapping_l0s_are_merged(store: MemoryStore, db: Db) -> None:
    expected = write_l0(db, range(0, 100))
    expected |= write_l0(db, range(99, 200), b"w")  # key 99 in both
    files = compacted_files(store)
    compact_full(store, MOVE)
    assert compacted_files(store) - files, "the merge wrote a new SST"
    assert dict(db.scan()) == expected


def test_without_the_option_disjoint_l0s_are_merged(store: MemoryStore, db: Db) -> None:
    expected = write_l0(db, range(0, 100))
    expected |= write_l0(db, range(100, 200))
    l0_ssts = {v.sst.id for v in db.refresh_manifest().l0}
    compact_full(store, CompactorOptions(poll_interval=0.05))
    (run,) = db.refresh_manifest().compacted
    assert not {v.sst.id for v in run.ssts} & l0_ssts
    assert dict(db.scan()) == expected


def test_the_embedded_compactor_moves_trivially(store: MemoryStore) -> None:
    """The option read from settings, as a user sets it, by the compactor inside a ``Db``."""
    settings = Settings.from_dict(
        {
            "flush_interval": "10ms",
            "garbage_collector_options": None,
            "compactor_options": {
                "poll_interval": "50ms",
                "min_compaction_sources": 2,
                "enable_trivial_move": True,
            },
        }
    )
    assert settings.compactor_options is not None
    assert settings.compactor_options.enable_trivial_move
    with Db.open(ROOT, settings, object_store=store) as db:
        expected = write_l0(db, range(0, 100))
        expected |= write_l0(db, range(100, 200))
        deadline = time.monotonic() + 30
        while db.refresh_manifest().l0 or not db.manifest().compacted:
            assert time.monotonic() < deadline, "the embedded compactor never compacted"
            time.sleep(0.02)
        (run,) = db.manifest().compacted
        # the compactor may run as soon as the second L0 lands, so the L0 SSTs are read from
        # the store: a trivial move wrote no SST, so the run holds exactly the two flushed
        written = [m.key for m in store.list(f"{ROOT}/compacted/") if m.key.endswith(".sst")]
        assert len(written) == 2
        assert {f"{ROOT}/compacted/{v.sst.id}.sst" for v in run.ssts} == set(written)
        assert dict(db.scan()) == expected


# -- trivial_move_output on hand-made manifests ---------------------------------------------------


def _view(first: bytes | None, last: bytes | None, visible: BytesRange | None = None) -> SstView:
    info = SsTableInfo(first, 0, 0, 0, 0, last_entry=last)
    return SstView(Ulid.new(1), CompactedSst(Ulid.new(1), info), visible)


class _C:
    """The fields of a ``Compaction`` that ``trivial_move_output`` reads."""

    def __init__(self, l0: list[SstView], spec_type: int = 0) -> None:
        self.id = Ulid.new(1)
        self.l0_view_ids = [v.id for v in l0]
        self.sorted_runs: list[int] = []
        self.destination = 0
        self.segment = b""
        self.spec_type = spec_type


def _output(l0: list[SstView], spec_type: int = 0) -> list[SstView] | None:
    m = dataclasses.replace(Manifest.initial(), l0=l0)
    run = trivial_move_output(m, _C(l0, spec_type))  # type: ignore[arg-type]
    return None if run is None else run.ssts


def test_trivial_move_output_orders_disjoint_views() -> None:
    a, b, c = _view(b"a", b"c"), _view(b"d", b"f"), _view(b"g", b"g")
    assert _output([c, a, b]) == [a, b, c]


def test_trivial_move_output_refuses_overlaps() -> None:
    assert _output([_view(b"a", b"d"), _view(b"d", b"f")]) is None  # share key d
    assert _output([_view(b"a", None), _view(b"x", b"z")]) is None  # unknown last entry
    assert _output([_view(b"a", b"c"), _view(b"d", b"f")], SPEC_DRAIN_SEGMENT) is None
    assert _output([]) is None


def test_trivial_move_output_uses_visible_ranges() -> None:
    """Two SSTs spanning the same keys, each visible only in its half, do not overlap."""
    left = _view(b"a", b"z", BytesRange(Bound(BOUND_UNBOUNDED, None), Bound(BOUND_EXCLUDED, b"m")))
    right = _view(b"a", b"z", BytesRange(Bound(BOUND_INCLUDED, b"m"), Bound(BOUND_UNBOUNDED, None)))
    assert _output([right, left]) == [left, right]
    touching = _view(
        b"a", b"z", BytesRange(Bound(BOUND_UNBOUNDED, None), Bound(BOUND_INCLUDED, b"m"))
    )
    assert _output([right, touching]) is None  # both see "m"


def test_a_coordinator_moves_trivially_without_a_worker(store: MemoryStore, db: Db) -> None:
    """With remote workers (``worker=None``) the coordinator itself completes a trivial move
    (as SlateDB's does): the job is never Scheduled for a worker."""
    from shale.fbs.compactions import STATUS_COMPLETED

    expected = write_l0(db, range(0, 100))
    expected |= write_l0(db, range(100, 200))
    l0_ssts = {v.sst.id for v in db.refresh_manifest().l0}
    c = Compactor(store, ROOT, FAST, options=MOVE.replace(worker=None))
    cid = c.submit(FULL)
    reports = c.run_once()
    c.stop()
    assert [(r.id, r.status) for r in reports] == [(cid, "completed")]
    job = _job(store, cid)
    assert job.status == STATUS_COMPLETED
    (run,) = db.refresh_manifest().compacted
    assert {v.sst.id for v in run.ssts} == l0_ssts
    assert dict(db.scan()) == expected


def test_a_move_whose_compactions_write_was_lost_completes_on_restart(
    store: MemoryStore, db: Db
) -> None:
    """The manifest of a trivial move landed but the ``.compactions`` update did not (the
    compactor died in between): the next compactor sees the move in the manifest and reports
    the job completed, not failed."""
    from shale.fbs.compactions import STATUS_COMPLETED
    from shale.meta.manifest_store import ManifestStore, StoredManifest
    from shale_compactor.state import apply_trivial_move

    expected = write_l0(db, range(0, 100))
    expected |= write_l0(db, range(100, 200))
    c = Compactor(store, ROOT, FAST, options=MOVE)
    cid = c.submit(FULL)
    c.stop()
    job = _job(store, cid)
    stored = StoredManifest.load(ManifestStore(store, ROOT))  # the move's manifest write, alone
    run = trivial_move_output(stored.manifest, job)
    assert run is not None
    stored.update(lambda m, _n: apply_trivial_move(m, job, run))
    again = Compactor(store, ROOT, FAST, options=MOVE)
    reports = again.run_once()
    again.stop()
    assert [(r.id, r.status) for r in reports] == [(cid, "completed")]
    job = _job(store, cid)
    assert job.status == STATUS_COMPLETED
    assert dict(db.scan()) == expected
