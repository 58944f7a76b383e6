"""A shale database on the obstore backend (``s3+obstore://``) against a real SeaweedFS.

shale writes through obstore, closes, reopens and reads; the objects are the same as through
shale-minio (shale-minio's ``s3://`` store reads the same database), and the official
``slatedb`` package, pointed at the same bucket with ``s3://`` and the server's ``AWS_*``
environment, reads identical rows (``tests/s3/slatedb_worker.py``, in a child process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import shale
from shale.batch import WriteBatch
from shale.settings import Settings
from shale_minio.testing import SeaweedServer

WORKER = Path(__file__).resolve().parents[3] / "tests" / "s3" / "slatedb_worker.py"
FAST: dict[str, Any] = {
    "flush_interval": 0.01,
    "manifest_poll_interval": 0.1,
    "compactor_options": None,
    "garbage_collector_options": None,
}


def _write(db: shale.Db) -> dict[bytes, bytes]:
    rows: dict[bytes, bytes] = {}
    for start in range(0, 300, 100):
        batch = WriteBatch()
        for i in range(start, start + 100):
            key, value = b"k%05d" % i, b"v%05d-" % i + os.urandom(8).hex().encode()
            batch.put(key, value)
            rows[key] = value
        db.write(batch)
    db.flush(memtable=True)  # an L0 SST written through obstore
    db.put(b"tail", b"wal-only")  # and a WAL tail
    rows[b"tail"] = b"wal-only"
    db.delete(b"k00007")
    del rows[b"k00007"]
    db.flush()
    return rows


def test_db_write_reopen_read(
    s3_server: SeaweedServer, obstore_bucket: str, obstore_options: Any
) -> None:
    url = f"s3+obstore://{obstore_bucket}/db-reopen"
    options = obstore_options()
    with shale.Db.open(url, Settings(**FAST), store_options=options) as db:
        rows = _write(db)
        assert db.get(b"k00001") == rows[b"k00001"]
    with shale.Db.open(url, Settings(**FAST), store_options=options) as db:
        assert list(db.scan()) == sorted(rows.items())
        assert db.get(b"k00007") is None
        assert (
            list(db.scan(b"k00100", b"k00105", reverse=True))
            == sorted((k, rows[k]) for k in rows if b"k00100" <= k < b"k00105")[::-1]
        )
    # the same objects through shale-minio's s3:// store
    with shale.Db.open(
        f"s3://{obstore_bucket}/db-reopen", Settings(**FAST), store_options=s3_server.options()
    ) as db:
        assert list(db.scan()) == sorted(rows.items())


@pytest.mark.interop
def test_official_reads_db_written_through_obstore(
    s3_server: SeaweedServer, obstore_bucket: str, obstore_options: Any
) -> None:
    if importlib.util.find_spec("slatedb") is None or not WORKER.exists():
        pytest.skip("the official slatedb package or tests/s3/slatedb_worker.py is missing")
    with shale.Db.open(
        f"s3+obstore://{obstore_bucket}/db-official",
        Settings(**FAST),
        store_options=obstore_options(),
    ) as db:
        rows = _write(db)
    keys = [*rows, b"k00007"]
    request = {
        "op": "read",
        "bucket": obstore_bucket,
        "db_path": "db-official",
        "keys": [k.hex() for k in keys],
    }
    env = {**os.environ, **s3_server.env(), "AWS_ALLOW_HTTP": "true"}
    with tempfile.TemporaryDirectory(prefix="slatedb-obstore-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        proc = subprocess.run(
            [sys.executable, str(WORKER), str(req), str(res)],
            capture_output=True,
            env=env,
            timeout=90,
            check=False,
        )
        assert res.exists(), proc.stderr[-4000:].decode(errors="replace")
        result = json.loads(res.read_text())
    assert result["ok"], result.get("error")
    values = {bytes.fromhex(k): v for k, v in result["value"]["values"].items()}
    assert values == {k: (rows[k].hex() if k in rows else None) for k in keys}
    scan = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in result["value"]["scan"]]
    assert scan == sorted(rows.items())
