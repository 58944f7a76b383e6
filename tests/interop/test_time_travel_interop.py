"""Interop: a database written with ``Settings.history_retention`` (time travel, issue 12) stays
readable by the official ``slatedb`` 0.17.0 package.

shale writes many versions of few keys with a count window, over several L0 flushes, a shale
compaction and a WAL tail, so L0 SSTs and the sorted run hold extra old versions and the
manifest's ``recent_snapshot_min_seq`` is the window's floor. The official reader must read
every key (``get``/``get_key_value``) and the full scan exactly as shale's current reads do, and
its ``Admin`` must decode the floor shale recorded.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shale.db import Db
from shale.settings import CompactorOptions, HistoryRetention, Settings
from shale_compactor import FULL, Compactor

pytestmark = pytest.mark.interop

KEYS = [b"tt%03d" % i for i in range(20)]


def test_official_reads_a_db_with_history(tmp_path: Path, official_reader) -> None:  # type: ignore[no-untyped-def]
    store_dir = tmp_path / "store"
    settings = Settings(
        flush_interval=0.01,
        manifest_poll_interval=0.05,
        compactor_options=None,
        garbage_collector_options=None,
        history_retention=HistoryRetention(seqs=150),
    )
    rng = random.Random(1263)
    db = Db.open(str(store_dir / "db"), settings)
    try:
        for round_ in range(4):
            for _ in range(80):
                key = rng.choice(KEYS)
                if rng.random() < 0.15:
                    db.delete(key)
                else:
                    db.put(key, b"r%d-%d" % (round_, rng.randrange(10**6)))
            db.flush(memtable=True)
            if round_ == 2:
                with Compactor.open(
                    str(store_dir / "db"),
                    settings,
                    options=CompactorOptions(poll_interval=0.05),
                ) as compactor:
                    compactor.submit(FULL)
                    (report,) = compactor.run_once(timeout=120)
                assert report.status == "completed"
                db.refresh_manifest()
        for key in KEYS[:5]:  # a WAL tail
            db.put(key, b"tail")
        db.flush()
        floor = db.manifest().recent_snapshot_min_seq
        assert floor == 320 - 150
        with db.snapshot(at_seq=floor) as snap:  # shale still reads the past
            assert snap.seq == floor
        values = {k: db.get(k) for k in KEYS}
        meta = {}
        for k in KEYS:
            kv = db.get_key_value(k)
            if kv is not None:
                meta[k] = (kv.seq, kv.create_ts, kv.expire_ts)
        scan = [(kv[0], kv[1]) for kv in db.scan()]
    finally:
        db.close()

    official = official_reader.read(store_dir, KEYS)
    assert official.values == values
    assert official.key_values == meta
    assert official.scan == scan
    assert official_reader.manifest(store_dir).recent_snapshot_min_seq == floor
