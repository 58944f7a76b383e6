"""``l0_max_ssts_per_key`` (SlateDB 0.17): L0 flushes wait while that many L0 SSTs cover one
key, also when L0 holds fewer than ``l0_max_ssts``; ``segments.max_overlap`` measures it."""

from __future__ import annotations

import pytest

from shale import Db, Settings
from shale.errors import UnavailableError
from shale.fbs.manifest import (
    BOUND_EXCLUDED,
    BOUND_INCLUDED,
    BOUND_UNBOUNDED,
    Bound,
    BytesRange,
    CompactedSst,
    SstView,
)
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import Ulid
from shale.meta import segments
from shale.objstore.memory import MemoryStore

_OPEN = Bound(BOUND_UNBOUNDED, None)


def view(first: bytes | None, last: bytes | None, visible: BytesRange | None = None) -> SstView:
    info = SsTableInfo(first, 0, 0, 0, 0, last_entry=last)
    return SstView(Ulid.new(1), CompactedSst(Ulid.new(1), info), visible)


def test_max_overlap() -> None:
    assert segments.max_overlap([]) == 0
    assert segments.max_overlap([view(b"a", b"c"), view(b"d", b"f"), view(b"g", b"h")]) == 1
    assert segments.max_overlap([view(b"a", b"z")] * 4) == 4
    assert segments.max_overlap([view(b"a", b"d"), view(b"d", b"f")]) == 2  # both hold "d"
    assert segments.max_overlap([view(b"a", b"m"), view(b"c", b"e"), view(b"k", b"z")]) == 2
    assert segments.max_overlap([view(b"a", None), view(b"x", b"z")]) == 2  # no last key
    # visible ranges: [a, m) and [m, z] do not share a key; [a, m] and [m, z] share "m"
    left = view(b"a", b"z", BytesRange(_OPEN, Bound(BOUND_EXCLUDED, b"m")))
    right = view(b"a", b"z", BytesRange(Bound(BOUND_INCLUDED, b"m"), _OPEN))
    touching = view(b"a", b"z", BytesRange(_OPEN, Bound(BOUND_INCLUDED, b"m")))
    assert segments.max_overlap([left, right]) == 1
    assert segments.max_overlap([touching, right]) == 2


SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    l0_max_ssts=100,
    l0_max_ssts_per_key=2,
)


def flush_keys(db: Db, keys: range, timeout: float | None = None) -> None:
    for i in keys:
        db.put(b"key%05d" % i, b"v", durable=False)
    db.flush(memtable=True, timeout=timeout)


def test_overlapping_flushes_wait_at_the_per_key_bound() -> None:
    store = MemoryStore()
    with Db.open("db", SETTINGS, object_store=store) as db:
        flush_keys(db, range(0, 100))
        flush_keys(db, range(50, 150))  # two L0 SSTs hold keys 50..99
        assert len(db.manifest().l0) == 2
        with pytest.raises(UnavailableError, match="l0_max_ssts_per_key=2"):
            flush_keys(db, range(60, 70), timeout=0.5)
        assert len(db.manifest().l0) == 2, "the third flush waits, far below l0_max_ssts"
        assert db.get(b"key00065") == b"v"  # the waiting memtable is still read


def test_disjoint_flushes_pass_the_per_key_bound() -> None:
    store = MemoryStore()
    with Db.open("db", SETTINGS, object_store=store) as db:
        for part in range(5):
            flush_keys(db, range(part * 100, part * 100 + 100), timeout=30)
        assert len(db.manifest().l0) == 5
        assert segments.max_l0_overlap(db.manifest()) == 1


def test_the_bound_is_off_by_default() -> None:
    assert Settings().l0_max_ssts_per_key is None
    assert Settings.from_dict({"l0_max_ssts_per_key": 8}).l0_max_ssts_per_key == 8
    store = MemoryStore()
    with Db.open("db", SETTINGS.replace(l0_max_ssts_per_key=None), object_store=store) as db:
        for _ in range(4):
            flush_keys(db, range(0, 50), timeout=30)
        assert len(db.manifest().l0) == 4
