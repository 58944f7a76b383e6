"""Child processes of the separate-WAL-store tests: shale writers to kill, and the official
``slatedb`` 0.17.0 package writing or reading a database whose WAL is in its own store.

Run as ``python wal_store_worker.py '<request json>'``; the last stdout line is the JSON result
(``{"ok": true, ...}`` or ``{"ok": false, "error": traceback}``). Bytes travel as hex.

The main store is ``{"file": "/dir"}`` or ``{"s3": {"bucket": ..., "options": {...}}}`` (the
official package reads the ``AWS_*`` environment instead of the options); the WAL store is
always a local directory, ``wal_dir``. The database lives at ``db_path`` in both stores.

Operations:

* ``shale_write``: open a shale ``Db`` with ``wal_store=wal_dir``, write ``n`` durable puts
  ``k%05d -> v%05d-<tag>``, print ``{"ok": true, "ready": true}`` and sleep (the parent kills
  it with SIGKILL: the rows are only in the WAL store).
* ``official_write``: the same with the official package (``with_wal_object_store``); then
  ``os._exit(0)`` without shutdown -- the process dies as if killed, its rows only in the WAL.
* ``official_read``: an official ``DbReader`` (``FOLLOW_LATEST``, ``with_wal_object_store``):
  a full scan, ``{"ok": true, "scan": [[key, value], ...]}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any

STEP_TIMEOUT_S = 30.0


def _emit(out: dict[str, Any]) -> None:
    print(json.dumps(out), flush=True)


def _official_stores(s: Any, req: dict[str, Any]) -> tuple[Any, Any]:
    main = req["main"]
    if "file" in main:
        store = s.ObjectStoreBuilder.from_url("file://" + main["file"]).build()
    else:
        store = s.ObjectStore.resolve(f"s3://{main['s3']['bucket']}")
    wal = s.ObjectStoreBuilder.from_url("file://" + req["wal_dir"]).build()
    return store, wal


async def _official_write(req: dict[str, Any]) -> None:
    import slatedb.uniffi as s

    store, wal = _official_stores(s, req)
    builder = s.DbBuilder(req["db_path"], store)
    builder.with_wal_object_store(wal)
    db = await asyncio.wait_for(builder.build(), STEP_TIMEOUT_S)
    for i in range(req["n"]):
        await db.put(b"k%05d" % i, b"v%05d-%s" % (i, req["tag"].encode()))
    await asyncio.wait_for(db.flush(), STEP_TIMEOUT_S)  # the WAL (FlushType default: WAL)
    _emit({"ok": True})
    os._exit(0)  # no shutdown: like a killed process, the rows stay only in the WAL


async def _official_read(req: dict[str, Any]) -> None:
    import slatedb.uniffi as s

    store, wal = _official_stores(s, req)
    builder = s.DbReaderBuilder(req["db_path"], store)
    builder.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
    builder.with_wal_object_store(wal)
    reader = await asyncio.wait_for(builder.build(), STEP_TIMEOUT_S)
    try:
        scan: list[list[str]] = []
        it = await reader.scan(
            s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
        )
        while True:
            batch = await it.next_batch(1024)
            if not batch:
                break
            scan.extend([bytes(kv.key).hex(), bytes(kv.value).hex()] for kv in batch)
    finally:
        await asyncio.wait_for(reader.shutdown(), STEP_TIMEOUT_S)
    _emit({"ok": True, "scan": scan})


def _shale_write(req: dict[str, Any]) -> None:
    from shale import Db, Settings
    from shale.objstore.local import LocalStore

    main = req["main"]
    if "file" in main:
        store: Any = LocalStore(main["file"])
    else:
        from shale_minio.store import S3Store

        store = S3Store(main["s3"]["bucket"], "", **main["s3"]["options"])
    settings = Settings(**req.get("settings", {}))
    db = Db.open(req["db_path"], settings, object_store=store, wal_store=req["wal_dir"])
    for i in range(req["n"]):
        db.put(b"k%05d" % i, b"v%05d-%s" % (i, req["tag"].encode()))
    _emit({"ok": True, "ready": True})
    while True:
        time.sleep(60)  # killed by the parent


def main() -> None:
    req = json.loads(sys.argv[1])
    try:
        if req["op"] == "shale_write":
            _shale_write(req)
        elif req["op"] == "official_write":
            asyncio.run(_official_write(req))
        elif req["op"] == "official_read":
            asyncio.run(_official_read(req))
        else:
            raise ValueError(f"unknown op {req['op']!r}")
    except BaseException:
        _emit({"ok": False, "error": traceback.format_exc()})
        sys.exit(1)


if __name__ == "__main__":
    main()
