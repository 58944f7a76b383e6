"""Reads of keys whose versions span two or more SSTs of one sorted run (issue 9, item 1).

The compactor splits its output at ``max_sst_size`` wherever it is, also between two versions of
one key that snapshots keep (SlateDB's executor does the same). Each read path must then still
see the newest version first: point lookups (plain, snapshot, after reopen), forward and reverse
scans, seeks and prefix scans.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shale import Db, Settings
from shale.objstore.memory import MemoryStore
from shale.settings import CompactorOptions
from shale_compactor import FULL, Compactor

ROOT = "db"
SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    l0_max_ssts=64,
)
HOT = b"k05"
VERSIONS = 40


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def _write_and_compact(store: MemoryStore, max_sst_size: int) -> tuple[Db, list[object], bytes]:
    """Many versions of HOT kept by snapshots, compacted into a run of tiny SSTs."""
    db = Db.open(ROOT, SETTINGS, object_store=store)
    snaps = []
    for k in range(10):
        db.put(b"k%02d" % k, b"base-%d" % k)
    for v in range(VERSIONS):
        db.put(HOT, b"v%03d-" % v + b"x" * 400)
        snaps.append(db.snapshot())
        if v % 10 == 9:
            db.flush(memtable=True)
    db.flush(memtable=True)
    c = Compactor(
        store,
        ROOT,
        SETTINGS,
        options=CompactorOptions(poll_interval=0.05, max_sst_size=max_sst_size),
    )
    c.submit(FULL)
    (report,) = c.run_once()
    c.stop()
    assert report.status == "completed"
    m = db.refresh_manifest()
    assert m.l0 == [] and len(m.compacted) == 1
    return db, snaps, b"v%03d-" % (VERSIONS - 1) + b"x" * 400


def _spans(db: Db) -> int:
    """How many SSTs of the run hold HOT."""
    (run,) = db.manifest().compacted
    return sum(
        1
        for v in run.ssts
        if v.sst.info.first_entry is not None
        and v.sst.info.first_entry <= HOT
        and (v.sst.info.last_entry is None or HOT <= v.sst.info.last_entry)
    )


@pytest.mark.parametrize("max_sst_size", [300, 6000])
def test_versions_spanning_run_ssts_read_newest(store: MemoryStore, max_sst_size: int) -> None:
    db, snaps, newest = _write_and_compact(store, max_sst_size)
    try:
        assert _spans(db) >= 2, "the fixture must split HOT's versions across SSTs"
        assert db.get(HOT) == newest
        assert db.get_key_value(HOT).seq == db.metrics()["last_seq"]  # type: ignore[union-attr]
        # every snapshot still reads its own version
        for v, snap in enumerate(snaps):
            assert snap.get(HOT) == b"v%03d-" % v + b"x" * 400, v  # type: ignore[attr-defined]
        expected = {b"k%02d" % k: b"base-%d" % k for k in range(10)}
        expected[HOT] = newest
        assert dict(db.scan()) == expected
        assert list(db.scan(reverse=True)) == sorted(expected.items(), reverse=True)
        assert list(db.scan(HOT, b"k06", reverse=True)) == [(HOT, newest)]
        assert list(db.scan(b"k04", b"k07", reverse=True)) == [
            (b"k06", b"base-6"),
            (HOT, newest),
            (b"k04", b"base-4"),
        ]
        assert list(db.scan_prefix(HOT)) == [(HOT, newest)]
        assert list(db.scan_prefix(HOT, reverse=True)) == [(HOT, newest)]
        it = db.scan()
        it.seek(HOT)
        assert next(it) == (HOT, newest)
        rit = db.scan(reverse=True)
        rit.seek(HOT)
        assert next(rit) == (HOT, newest)
        # an older snapshot's reverse scan sees its own version
        old = snaps[3]
        assert dict(old.scan(reverse=True))[HOT] == b"v003-" + b"x" * 400  # type: ignore[attr-defined]
        for s in snaps:
            s.close()  # type: ignore[attr-defined]
    finally:
        db.close()
    with Db.open(ROOT, SETTINGS, object_store=store) as again:
        assert again.get(HOT) == newest
        assert list(again.scan(reverse=True))[-6] == (HOT, newest)


def _rows_of_run(db: Db) -> Iterator[tuple[bytes, int]]:
    (run,) = db.manifest().compacted
    for v in run.ssts:
        for r in db._inner.tables.open(v).iter_rows():
            yield r[0], r[1]


def test_run_rows_are_ordered_across_ssts(store: MemoryStore) -> None:
    """The run itself is well formed: key ascending, seq descending, across its SSTs."""
    db, snaps, _ = _write_and_compact(store, 300)
    try:
        rows = list(_rows_of_run(db))
        assert rows == sorted(rows, key=lambda r: (r[0], -r[1]))
    finally:
        for s in snaps:
            s.close()  # type: ignore[attr-defined]
        db.close()
