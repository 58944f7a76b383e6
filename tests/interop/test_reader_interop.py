"""DbReader interop: shale's reader on official-written databases, and the official ``DbReader``
on a shale database while a shale writer is writing it.

* Every official shape (``conftest.official_dbs``), every official clone
  (``conftest.official_clones``) and the official segmented database reads through
  :class:`shale.DbReader` exactly as the official reader read it (values, seqs, timestamps,
  scans). A ``follow_latest`` reader writes nothing (the store's bytes are hashed before and
  after); a ``managed_checkpoint`` reader, on a copy, leaves no checkpoint behind.
* The official ``DbReader`` (``FOLLOW_LATEST``, in a child process) reads a shale database that
  a shale writer keeps writing to, sees every write acknowledged before it opened, and the
  writer is never disturbed (it closes cleanly and its reads agree).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from shale import Db, DbReader, Settings
from shale.objstore.local import LocalStore
from tests.interop import test_segments_interop as _segments
from tests.interop.test_clones_interop import CLONE_NAMES, _assert_reads_like
from tests.interop.test_clones_interop import SETTINGS as CLONE_SETTINGS
from tests.interop.test_db_interop import OFFICIAL_SHAPES, _official_settings, _shale_reads
from tests.interop.test_segments_interop import DB_PATH as SEG_DB_PATH
from tests.interop.test_segments_interop import _assert_same as _assert_same_segmented
from tests.interop.test_segments_interop import _settings as _segment_settings
from tests.interop.test_segments_interop import _shale_read as _shale_read_segmented

pytestmark = pytest.mark.interop

#: the official segmented databases (a module-scoped fixture of the segments interop tests)
official_segmented = _segments.official_segmented


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("shape", OFFICIAL_SHAPES)
def test_shale_reader_reads_official_db(tmp_path: Path, official_dbs: Any, shape: str) -> None:
    d = official_dbs[shape]
    keys = sorted(d.expected)
    settings = _official_settings(d)
    want = (d.expected, d.key_values, d.scan)
    store = tmp_path / "store"
    shutil.copytree(d.store_dir, store)
    before = _digest(store)
    with DbReader.open(str(store / d.db_path), settings, mode="follow_latest") as r:
        assert _shale_reads(r, keys) == want  # type: ignore[arg-type]
        r.refresh()
        assert _shale_reads(r, keys) == want  # type: ignore[arg-type]
    assert _digest(store) == before  # it wrote nothing
    with DbReader.open(d.db_path, settings, object_store=LocalStore(str(store))) as r:
        assert r.mode == "managed_checkpoint" and r.checkpoint is not None
        assert _shale_reads(r, keys) == want  # type: ignore[arg-type]
    with DbReader.open(str(store / d.db_path), settings, mode="follow_latest") as r:
        assert len(r.manifest().checkpoints) == d.manifest.checkpoints  # ours was removed


@pytest.mark.parametrize("name", ("parent", *CLONE_NAMES))
def test_shale_reader_reads_official_clone(official_clones: Any, tmp_path: Path, name: str) -> None:
    store = tmp_path / "store"
    shutil.copytree(official_clones.store_dir, store)
    d = official_clones.dbs[name]
    before = _digest(store)
    with DbReader.open(str(store / d.db_path), CLONE_SETTINGS, mode="follow_latest") as r:
        _assert_reads_like(r, d)  # type: ignore[arg-type]
    assert _digest(store) == before
    with DbReader.open(d.db_path, CLONE_SETTINGS, object_store=LocalStore(str(store))) as r:
        _assert_reads_like(r, d)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["follow_latest", "managed_checkpoint"])
def test_shale_reader_reads_official_segmented_db(
    official_segmented: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    d = official_segmented["segmented"]
    store = tmp_path / "store"
    shutil.copytree(d["store_dir"], store)
    official = d["read"]
    keys = list(official["values"])
    before = _digest(store)
    with DbReader.open(str(store / SEG_DB_PATH), _segment_settings(), mode=mode) as r:  # type: ignore[arg-type]
        _assert_same_segmented(_shale_read_segmented(r, keys), official)
    if mode == "follow_latest":
        assert _digest(store) == before


def test_official_reader_reads_shale_db_while_shale_writes(
    tmp_path: Path, official_reader: Any
) -> None:
    settings = Settings(
        flush_interval=0.01,
        l0_sst_size_bytes=8 * 1024,
        compactor_options=None,
        garbage_collector_options=None,
    )
    store = tmp_path / "store"
    db = Db.open("db", settings, object_store=LocalStore(str(store)))
    for i in range(300):
        db.put(b"k%05d" % i, b"v%d" % i)
        if i == 150:
            db.flush(memtable=True)  # some in L0, the rest only in the WAL
    stop = threading.Event()
    written = [300]

    def keep_writing() -> None:
        i = written[0]
        while not stop.is_set():
            db.put(b"k%05d" % i, b"v%d" % i)
            i += 1
            written[0] = i
            if i % 200 == 0:
                db.flush(memtable=True)

    t = threading.Thread(target=keep_writing)
    t.start()
    try:
        keys = [b"k%05d" % i for i in range(300)]
        for _ in range(2):
            got = official_reader.read(store, keys)
            assert got.values == {k: b"v%d" % int(k[1:]) for k in keys}
            for k, v in got.scan:  # what it saw of the running writer is what was written
                assert v == b"v%d" % int(k[1:])
            assert len(got.scan) >= 300
    finally:
        stop.set()
        t.join()
    n = written[0]
    assert n > 300  # the writer kept writing meanwhile
    assert db.get(b"k%05d" % (n - 1)) == b"v%d" % (n - 1)
    db.close()
    assert db.close_reason == "clean"
    with DbReader.open("db", settings, object_store=LocalStore(str(store))) as r:
        assert len(list(r.scan())) == n
