"""Interop: shale's garbage collector on databases the official ``slatedb`` 0.17.0 package wrote.

For each shape, on a copy of the official database (everything closed): shale's GC runs with
``min_age = 0`` -- once at the current time, then once with its clock an hour ahead, when the
official compactor's 15-minute safety checkpoint has expired, so GC removes that checkpoint
(writing a manifest version) and deletes the L0 SSTs it was pinning. The official package must
then read exactly what it read before GC: every key (``get`` and ``get_key_value``) and the full
scan. shale must read the same too.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from shale.clock import ManualClock
from shale.objstore.local import LocalStore
from shale.reader import DbReader
from shale.settings import GarbageCollectorOptions, GcDirectoryOptions, Settings
from shale_gc import GarbageCollector

pytestmark = pytest.mark.interop

SHAPES = ("mixed", "compacted", "walbig", "block1k")


def _options() -> GarbageCollectorOptions:
    d = GcDirectoryOptions(interval=None, min_age=0)
    return GarbageCollectorOptions(manifest=d, wal=d, compacted=d, compactions=d)


def _files(root: Path, directory: str) -> set[str]:
    return {p.name for p in (root / directory).glob("*") if p.is_file()}


@pytest.mark.parametrize("shape", SHAPES)
def test_official_reads_identical_data_after_shale_gc(
    shape: str, official_dbs: dict[str, Any], official_reader: Any, tmp_path: Path
) -> None:
    src = official_dbs[shape]
    store_dir = tmp_path / shape
    shutil.copytree(src.store_dir, store_dir)
    root = store_dir / src.db_path
    manifests_before = _files(root, "manifest")
    store = LocalStore(store_dir, fsync=False)

    now = GarbageCollector(store, src.db_path, _options()).run_once()
    assert now.ok, now.summary()
    assert now.expired_checkpoints == []
    # the official writer's manifests: only the latest (and checkpoint-pinned ones) remain
    assert now.kinds["manifest"].deleted
    latest = max(manifests_before)
    assert latest in _files(root, "manifest")
    wal_deleted = {o.id for o in now.kinds["wal"].deleted}
    assert all(w < src.manifest.replay_after_wal_id for w in wal_deleted)  # type: ignore[operator]
    if src.manifest.replay_after_wal_id > 1:
        assert wal_deleted  # at least the writer's zero-length fence WAL 1

    later = ManualClock(time.time_ns() // 1_000_000 + 3_600_000)
    hour = GarbageCollector(store, src.db_path, _options(), clock=later).run_once()
    assert hour.ok, hour.summary()
    if shape == "compacted":
        assert hour.expired_checkpoints, "the official compactor's checkpoint should expire"
        assert any(o.kind == "compacted" for o in hour.deleted), hour.summary()
        assert not (root / "compactions").exists() or len(_files(root, "compactions")) == 1

    read = official_reader.read(store_dir, list(src.expected), merge_operator=src.merge_operator)
    assert read.values == src.expected
    assert read.key_values == src.key_values
    assert read.scan == src.scan

    settings = Settings(
        compactor_options=None, garbage_collector_options=None, merge_operator=src.merge_operator
    )
    # read-only: a writer would replay the WAL and flush it to L0 in the background, dropping
    # expired merge operands while this reads them with include_expired=True
    with DbReader.open(
        src.db_path, settings, object_store=LocalStore(store_dir), mode="follow_latest"
    ) as db:
        for key, value in src.expected.items():
            assert db.get(key, include_expired=True) == value, key
