"""The WAL in a separate object store (issue 15), both stores local directories: writes,
SIGKILL and recovery, readers, change streams, the GC, the manifest flag SlateDB writes, and
interop with the official ``slatedb`` 0.17.0 package (``with_wal_object_store``).

The same scenario with the SSTs on S3 (SeaweedFS) is ``tests/s3/test_wal_store_s3.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shale import Admin, Db, DbReader, InvalidError, Settings, WalReader, changes
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale.objstore.local import LocalStore
from shale.settings import GarbageCollectorOptions, GcDirectoryOptions

WORKER = Path(__file__).parent / "wal_store_worker.py"
TIMEOUT_S = 120.0
FAST = Settings(flush_interval=0.01, manifest_poll_interval=0.2, compactor_options=None)


def run_worker(req: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(req)],
        capture_output=True,
        timeout=TIMEOUT_S,
        env={**os.environ, **(env or {})},
        check=False,
    )
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, f"worker printed nothing rc={proc.returncode}: {proc.stderr[-3000:]!r}"
    out: dict[str, Any] = json.loads(lines[-1])
    assert out["ok"], out.get("error")
    return out


def write_and_kill(req: dict[str, Any], env: dict[str, str] | None = None) -> None:
    """Run a ``shale_write`` worker until its writes are durable, then SIGKILL it."""
    with subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps({**req, "op": "shale_write"})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline().decode()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(TIMEOUT_S)
        if not line:
            raise AssertionError(f"worker died: {proc.stderr.read()[-3000:]!r}")
        assert json.loads(line).get("ready"), line
    assert proc.returncode == -signal.SIGKILL


def rows(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    return [(b"k%05d" % i, b"v%05d-%s" % (i, tag.encode())) for i in range(n)]


def keys_under(root: Path, sub: str) -> list[str]:
    d = root / sub
    return sorted(p.name for p in d.glob("*") if not p.name.startswith(".")) if d.exists() else []


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "main").mkdir()
    (tmp_path / "wal").mkdir()
    return tmp_path / "main", tmp_path / "wal"


# -- writer, crash, recovery ------------------------------------------------------------------


def test_wal_in_its_own_store_survives_sigkill_and_replays(dirs: tuple[Path, Path]) -> None:
    main, wal = dirs
    write_and_kill(
        {"main": {"file": str(main)}, "wal_dir": str(wal), "db_path": "db", "n": 300, "tag": "a"}
    )
    # the WAL went to the WAL store only; manifests to the main store
    assert keys_under(wal / "db", "wal") and not keys_under(main / "db", "wal")
    assert keys_under(main / "db", "manifest") and not keys_under(wal / "db", "manifest")
    with Db.open("db", FAST, object_store=LocalStore(main), wal_store=str(wal)) as db:
        assert list(db.scan()) == rows(300, "a")  # recovered from the WAL store
        assert db.wal_store is not None
        db.put(b"z", b"after")
        db.flush(memtable=True)
    assert keys_under(main / "db", "compacted") and not keys_under(wal / "db", "compacted")
    with DbReader.open("db", FAST, object_store=LocalStore(main), wal_store=LocalStore(wal)) as r:
        assert r.get(b"z") == b"after" and r.get(b"k00299") == b"v00299-a"


def test_readers_and_change_streams_read_the_wal_store(dirs: tuple[Path, Path]) -> None:
    main, wal = dirs
    db = Db.open(main, FAST, wal_store=wal)
    try:
        for k, v in rows(20, "r"):
            db.put(k, v)
        with DbReader.open(main, FAST, mode="follow_latest", wal_store=wal) as r:
            assert list(r.scan()) == rows(20, "r")  # only in the WAL so far
        with changes(main, since_seq=0, follow=False, wal_store=wal) as stream:
            assert [(c.key, c.value) for c in stream] == rows(20, "r")
        with db.changes(since_seq=0, follow=False) as stream:
            assert len(list(stream)) == 20
        with WalReader(main, wal_store=str(wal)) as wr:
            assert [f.id for f in wr.list()] and all(
                m.location.startswith("wal/") for m in wr.list_metadata()
            )
    finally:
        db.close()


def test_v1_manifest_records_slatedbs_flag_and_refuses_a_reopen_without_it(
    dirs: tuple[Path, Path],
) -> None:
    main, wal = dirs
    v1 = dataclasses.replace(FAST, manifest_format_version=1)
    with Db.open(main, v1, wal_store=wal) as db:
        db.put(b"a", b"1")
    m = StoredManifest.load(ManifestStore(LocalStore(main), "")).manifest
    assert m.wal_object_store_uri == ""  # exactly what SlateDB writes: a flag, not a URL
    before = sorted(p.name for p in (main / "manifest").iterdir())
    for opener in (lambda: Db.open(main, v1), lambda: DbReader.open(main, v1)):
        with pytest.raises(InvalidError, match="WalStoreReconfiguration"):
            opener()
    with pytest.raises(InvalidError, match="WalStoreReconfiguration"):
        changes(main, since_seq=0, follow=False)
    assert sorted(p.name for p in (main / "manifest").iterdir()) == before  # nothing written
    with Db.open(main, v1, wal_store=wal) as db:
        assert db.get(b"a") == b"1"
    # V2 (the default, SlateDB 0.17's bytes) cannot record it: nothing to check, as SlateDB
    with Db.open(main / "v2", FAST, wal_store=wal / "v2") as db:
        db.put(b"a", b"1")
    m2 = StoredManifest.load(ManifestStore(LocalStore(main / "v2"), "")).manifest
    assert m2.wal_object_store_uri is None


def test_a_recorded_url_is_followed(dirs: tuple[Path, Path]) -> None:
    main, wal = dirs
    v1 = dataclasses.replace(FAST, manifest_format_version=1)
    with Db.open(main, v1, wal_store=wal) as db:
        db.put(b"a", b"1")  # only in the WAL store
    stored = StoredManifest.load(ManifestStore(LocalStore(main), "", format_version=1))
    stored.update(lambda m, _n: dataclasses.replace(m, wal_object_store_uri=str(wal)))
    with DbReader.open(main, v1, mode="follow_latest") as r:
        assert r.get(b"a") == b"1"
    with changes(main, since_seq=0, follow=False) as stream:
        assert [c.key for c in stream] == [b"a"]
    with Db.open(main, v1) as db:
        assert db.get(b"a") == b"1" and db.wal_store is not None
    with pytest.raises(InvalidError, match="another WAL store"):
        Db.open(main, v1, wal_store=str(wal / "elsewhere"))


def test_bad_wal_store_arguments_fail_before_anything_is_written(tmp_path: Path) -> None:
    for kwargs in (
        {"wal_store": 42},
        {"wal_store": object()},
        {"wal_store": ""},
        {"wal_store": str(tmp_path / "w"), "wal_store_options": "nope"},
    ):
        with pytest.raises(InvalidError):
            Db.open(tmp_path / "db", FAST, **kwargs)
        with pytest.raises(InvalidError):
            Admin(tmp_path / "db", **kwargs)
    assert not (tmp_path / "db").exists() and not (tmp_path / "w").exists()


def test_gc_collects_the_wal_in_the_wal_store(dirs: tuple[Path, Path]) -> None:
    main, wal = dirs
    for i in range(3):
        with Db.open(main, FAST, wal_store=wal) as db:
            db.put(b"k%d" % i, b"v")
            db.flush(memtable=True)  # replay_after_wal_id moves past the older WALs
    before = keys_under(wal, "wal")
    assert len(before) >= 4
    opts = GarbageCollectorOptions(wal=GcDirectoryOptions(min_age=0.0, interval=60.0))
    with Admin(main, wal_store=wal) as admin:
        report = admin.run_gc_once(opts)
    assert report.kinds["wal"].error is None
    after = keys_under(wal, "wal")
    assert len(after) < len(before) and set(after) <= set(before)
    with Admin(main, wal_store=wal) as admin, pytest.raises(InvalidError, match="WAL store"):
        admin.clone(str(main.parent / "clone"))
    with DbReader.open(main, FAST, wal_store=wal) as r:
        assert [k for k, _ in r.scan()] == [b"k0", b"k1", b"k2"]


# -- interop with the official package ---------------------------------------------------------


def test_official_package_reads_a_shale_database_with_the_same_wal_store(
    dirs: tuple[Path, Path],
) -> None:
    main, wal = dirs
    write_and_kill(
        {"main": {"file": str(main)}, "wal_dir": str(wal), "db_path": "db", "n": 200, "tag": "s"}
    )
    out = run_worker(
        {"op": "official_read", "main": {"file": str(main)}, "wal_dir": str(wal), "db_path": "db"}
    )
    got = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in out["scan"]]
    assert got == rows(200, "s")
    with DbReader.open(
        "db", FAST, object_store=LocalStore(main), wal_store=wal, mode="follow_latest"
    ) as r:
        assert list(r.scan()) == got


def test_shale_reads_an_official_database_with_a_wal_store(dirs: tuple[Path, Path]) -> None:
    main, wal = dirs
    run_worker(
        {
            "op": "official_write",
            "main": {"file": str(main)},
            "wal_dir": str(wal),
            "db_path": "db",
            "n": 150,
            "tag": "o",
        }
    )
    assert keys_under(wal / "db", "wal") and not keys_under(main / "db", "wal")
    assert not keys_under(main / "db", "compacted")  # the rows are only in the WAL store
    store = LocalStore(main)
    with DbReader.open("db", FAST, object_store=store, wal_store=wal, mode="follow_latest") as r:
        assert list(r.scan()) == rows(150, "o")
    with Db.open("db", FAST, object_store=store, wal_store=wal) as db:  # recovery by shale
        assert list(db.scan()) == rows(150, "o")
        db.put(b"k99999", b"shale")
    out = run_worker(
        {"op": "official_read", "main": {"file": str(main)}, "wal_dir": str(wal), "db_path": "db"}
    )
    assert [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in out["scan"]] == [
        *rows(150, "o"),
        (b"k99999", b"shale"),
    ]
