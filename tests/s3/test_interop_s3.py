"""Interop over S3: shale and the official ``slatedb`` 0.17.0 package on one SeaweedFS bucket.

The official package runs in a child process (``slatedb_worker.py``) configured only by the
server's ``AWS_*`` environment plus ``AWS_ALLOW_HTTP=true``, with
``ObjectStore.resolve("s3://<bucket>")`` and the database path = shale's prefix: both engines
address the same objects ``s3://<bucket>/<prefix>/{manifest,wal,compacted}/...``.

* :func:`test_official_reads_shale_db_on_s3` -- shale writes (batches, single puts,
  overwrites, deletes, binary keys, an empty and a 10 KB value, two L0 flushes and a WAL-only
  tail) and closes; the official ``DbReader`` returns exactly shale's data for every key and
  for a full scan, and writes nothing.
* :func:`test_shale_reads_and_extends_official_db_on_s3` -- the official package writes
  (batches, overwrites, deletes, two memtable flushes, a WAL-only tail) and shuts down; shale
  opens ``s3://<bucket>/<prefix>`` and reads every key and the full scan as modelled (and as
  the official reader reads them); then shale writes on top (an L0 and a WAL tail) and the
  official reader sees the old data and shale's writes.
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

from shale.batch import WriteBatch

pytestmark = pytest.mark.interop

WORKER = Path(__file__).with_name("slatedb_worker.py")
WORKER_TIMEOUT_S = 90.0

Model = dict[bytes, "bytes | None"]


@pytest.fixture(autouse=True)
def _require_slatedb() -> None:
    # find_spec only: the native library is loaded by the worker processes, never by pytest
    if importlib.util.find_spec("slatedb") is None:
        pytest.skip("the official slatedb package is not installed")


def _official(s3db: Any, request: dict[str, Any]) -> Any:
    """Run one request in ``slatedb_worker.py`` against the database of ``s3db``."""
    request = {"bucket": s3db.bucket, "db_path": s3db.prefix, **request}
    env = {**os.environ, **s3db.env(), "AWS_ALLOW_HTTP": "true", "RUST_BACKTRACE": "1"}
    with tempfile.TemporaryDirectory(prefix="slatedb-s3-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        proc = subprocess.run(
            [sys.executable, str(WORKER), str(req), str(res)],
            capture_output=True,
            env=env,
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
        assert res.exists(), (
            f"official worker died: op={request['op']} rc={proc.returncode} "
            f"{proc.stderr[-4000:].decode(errors='replace')}"
        )
        result = json.loads(res.read_text())
    assert result["ok"], f"official worker failed: op={request['op']}\n{result['error']}"
    return result["value"]


def _official_read(s3db: Any, keys: list[bytes]) -> tuple[Model, list[tuple[bytes, bytes]]]:
    value = _official(s3db, {"op": "read", "keys": [k.hex() for k in keys]})
    values = {
        bytes.fromhex(k): None if v is None else bytes.fromhex(v)
        for k, v in value["values"].items()
    }
    scan = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in value["scan"]]
    return values, scan


def _live(model: Model) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items() if v is not None)


def _check_shale(db: Any, model: Model) -> None:
    for key, want in model.items():
        assert db.get(key) == want, key
    assert list(db.scan()) == _live(model)


BINARY_KEYS = (b"\x00", b"\x00\x01", b"\xff", b"\xff\xfe", b"a\x00b", b"a\xffb")


def test_official_reads_shale_db_on_s3(s3db: Any) -> None:
    model: Model = {}
    db = s3db.open(s3db.settings(wal_block_size=65535))
    # L0 #1: 400 keys in batches of 100, binary keys, an empty and a 10 KB value
    for start in range(0, 400, 100):
        batch = WriteBatch()
        for i in range(start, start + 100):
            batch.put(b"s%05d" % i, b"v1-%d-" % i + b"y" * (i % 50))
            model[b"s%05d" % i] = b"v1-%d-" % i + b"y" * (i % 50)
        db.write(batch)
    for key in BINARY_KEYS:
        db.put(key, b"bin:" + key)
        model[key] = b"bin:" + key
    db.put(b"empty", b"")
    db.put(b"big", bytes(range(256)) * 40)
    model.update({b"empty": b"", b"big": bytes(range(256)) * 40})
    db.flush(memtable=True)
    # L0 #2: overwrites and deletes over L0 #1
    for i in range(0, 400, 7):
        db.put(b"s%05d" % i, b"v2-%d" % i)
        model[b"s%05d" % i] = b"v2-%d" % i
    for i in range(3, 400, 11):
        db.delete(b"s%05d" % i)
        model[b"s%05d" % i] = None
    db.delete(b"\xff")
    model[b"\xff"] = None
    db.flush(memtable=True)
    # WAL-only tail
    for i in range(0, 400, 29):
        db.put(b"s%05d" % i, b"wal-%d" % i)
        model[b"s%05d" % i] = b"wal-%d" % i
    db.put(b"wal-only", b"tail")
    db.delete(b"s00001")
    model.update({b"wal-only": b"tail", b"s00001": None})
    _check_shale(db, model)
    db.close()
    assert len(db.manifest().l0) == 2

    before = s3db.listing()
    keys = sorted(model)
    values, scan = _official_read(s3db, keys)
    assert values == model
    assert scan == _live(model)
    assert s3db.listing() == before, "the official reader changed the database"


def test_shale_reads_and_extends_official_db_on_s3(s3db: Any) -> None:
    model: Model = {}
    ops: list[list[Any]] = []
    for start in range(0, 300, 100):
        pairs = []
        for i in range(start, start + 100):
            value = b"o1-%d-" % i + b"z" * (i % 40)
            pairs.append([(b"o%05d" % i).hex(), value.hex()])
            model[b"o%05d" % i] = value
        ops.append(["batch", pairs])
    ops.append(["flush_memtable"])
    for i in range(0, 300, 5):
        ops.append(["put", (b"o%05d" % i).hex(), (b"o2-%d" % i).hex()])
        model[b"o%05d" % i] = b"o2-%d" % i
    for i in range(2, 300, 9):
        ops.append(["delete", (b"o%05d" % i).hex()])
        model[b"o%05d" % i] = None
    ops.append(["batch", [[b"mixed-put".hex(), b"p".hex()], [(b"o%05d" % 4).hex(), None]]])
    model.update({b"mixed-put": b"p", b"o00004": None})
    ops.append(["flush_memtable"])
    for i in range(1, 300, 31):  # WAL-only tail
        ops.append(["put", (b"o%05d" % i).hex(), (b"tail-%d" % i).hex()])
        model[b"o%05d" % i] = b"tail-%d" % i
    ops.append(["put", b"official-wal".hex(), b"w".hex()])
    model[b"official-wal"] = b"w"
    ops.append(["flush_wal"])
    _official(s3db, {"op": "write", "ops": ops})

    listing = s3db.listing()
    assert any(k.startswith("compacted/") for k in listing)
    assert any(k.startswith("manifest/") for k in listing)

    # shale reads the official database over s3://
    db = s3db.open()
    assert db.metrics()["wal_replayed_rows"] > 0
    _check_shale(db, model)

    # ... and extends it: an L0 and a WAL tail
    for i in range(0, 300, 13):
        db.put(b"o%05d" % i, b"shale-%d" % i)
        model[b"o%05d" % i] = b"shale-%d" % i
    db.delete(b"mixed-put")
    model[b"mixed-put"] = None
    db.flush(memtable=True)
    db.put(b"shale-wal", b"from-shale")
    db.delete(b"official-wal")
    model.update({b"shale-wal": b"from-shale", b"official-wal": None})
    _check_shale(db, model)
    db.close()

    values, scan = _official_read(s3db, sorted(model))
    assert values == model
    assert scan == _live(model)
