"""The WAL on a local directory, SSTs and manifests on S3 (a real SeaweedFS server), issue 15:
a shale writer SIGKILLed with rows only in the WAL, recovery, readers, the GC, and the official
package opening the same database with the same WAL store (``with_wal_object_store``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from shale import Admin, Db, DbReader
from shale.settings import GarbageCollectorOptions, GcDirectoryOptions
from shale_minio.store import S3Store

_spec = importlib.util.spec_from_file_location(
    "wal_store_helpers", Path(__file__).parent.parent / "test_wal_store.py"
)
assert _spec is not None and _spec.loader is not None
helpers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("wal_store_helpers", helpers)
_spec.loader.exec_module(helpers)


def test_wal_on_local_disk_ssts_on_s3(s3db: Any, tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    wal.mkdir()
    main = {"s3": {"bucket": s3db.bucket, "options": s3db.options()}}
    req = {"main": main, "wal_dir": str(wal), "db_path": s3db.prefix, "n": 250, "tag": "s3"}
    helpers.write_and_kill(req)
    expected = helpers.rows(250, "s3")

    # the WAL is on the local disk only; the bucket has manifests and no WAL
    assert list((wal / s3db.prefix / "wal").glob("*.sst"))
    listing = s3db.listing()
    assert any(k.startswith("manifest/") for k in listing)
    assert not any(k.startswith("wal/") for k in listing)

    # the official package opens the same database with the same WAL store
    out = helpers.run_worker(
        {"op": "official_read", "main": main, "wal_dir": str(wal), "db_path": s3db.prefix},
        env=s3db.env(),
    )
    assert [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in out["scan"]] == expected

    store = s3db.track(S3Store(s3db.bucket, "", **s3db.options()))
    settings = s3db.settings()
    with DbReader.open(
        s3db.prefix, settings, object_store=store, wal_store=wal, mode="follow_latest"
    ) as r:
        assert list(r.scan()) == expected
    # recovery: replay from the local WAL, flush to an L0 on S3; twice, so old WALs are garbage
    for round_ in range(2):
        with Db.open(s3db.prefix, settings, object_store=store, wal_store=str(wal)) as db:
            assert list(db.scan())[: len(expected)] == expected
            db.put(b"z%d" % round_, b"after")
            db.flush(memtable=True)
    assert any(k.startswith("compacted/") for k in s3db.listing())
    assert not any(k.startswith("wal/") for k in s3db.listing())
    wal_files = sorted(p.name for p in (wal / s3db.prefix / "wal").glob("*.sst"))
    opts = GarbageCollectorOptions(wal=GcDirectoryOptions(min_age=0.0, interval=60.0))
    with Admin(s3db.prefix, object_store=store, wal_store=wal) as admin:
        report = admin.run_gc_once(opts)
    assert report.kinds["wal"].error is None and report.kinds["wal"].deleted
    left = sorted(p.name for p in (wal / s3db.prefix / "wal").glob("*.sst"))
    assert len(left) < len(wal_files)
    out = helpers.run_worker(
        {"op": "official_read", "main": main, "wal_dir": str(wal), "db_path": s3db.prefix},
        env=s3db.env(),
    )
    assert [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in out["scan"]] == [
        *expected,
        (b"z0", b"after"),
        (b"z1", b"after"),
    ]
