"""The object-store disk cache over the real S3 server (SeaweedFS): a second cold reader reads
the database from disk, and a small bound holds while a reader sweeps a bigger database."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from shale import DbReader, Settings

N = 8000


def _fill(s3db: Any) -> None:
    db = s3db.open(s3db.settings(l0_sst_size_bytes=256 * 1024, l0_max_ssts=1000))
    for i in range(N):
        db.put(b"k%06d" % i, b"value-%06d-" % i + b"x" * 100, durable=False)
        if i % 2000 == 1999:
            db.flush(memtable=True)
    db.flush(memtable=True)
    db.close()


def _cached(folder: Path, **opts: Any) -> Settings:
    return Settings.from_dict(
        {
            "block_cache_bytes": 0,
            "object_store_cache_options": {
                "root_folder": str(folder),
                "part_size_bytes": "16KiB",
                "scan_interval": None,
                **opts,
            },
        },
        Settings(compactor_options=None, garbage_collector_options=None),
    )


def _read(s3db: Any, settings: Settings) -> dict[str, int]:
    with DbReader.open(s3db.url, settings=settings, store_options=s3db.options()) as reader:
        assert sum(1 for _ in reader.scan()) == N
        rng = random.Random(3)
        for _ in range(200):
            i = rng.randrange(N)
            assert reader.get(b"k%06d" % i) == b"value-%06d-" % i + b"x" * 100
        return reader.metrics()


def test_second_reader_reads_from_the_disk_cache(s3db: Any, tmp_path: Path) -> None:
    _fill(s3db)
    settings = _cached(tmp_path / "cache")
    cold = _read(s3db, settings)
    warm = _read(s3db, settings)
    assert cold["disk_cache_inner_gets"] > 0
    assert warm["disk_cache_reads"] > 0
    assert warm["disk_cache_reads_local"] >= 0.9 * warm["disk_cache_reads"]
    assert warm["disk_cache_inner_gets"] == 0


def test_size_bound_holds_on_s3(s3db: Any, tmp_path: Path) -> None:
    _fill(s3db)
    bound = 256 * 1024  # well below the database's ~1 MiB of SSTs
    m = _read(s3db, _cached(tmp_path / "cache", max_cache_size_bytes=bound))
    on_disk = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert 0 < on_disk <= bound
    assert m["disk_cache_evictions"] > 0
