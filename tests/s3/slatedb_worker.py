"""The official ``slatedb`` 0.17.0 package on the S3 server, in a child process.

Run as ``python slatedb_worker.py <request.json> <result.json>`` with the server's ``AWS_*``
variables (and ``AWS_ALLOW_HTTP=true``) in the environment. The object store is
``ObjectStore.resolve("s3://<bucket>")`` and the database lives at ``db_path`` inside it -- the
same objects shale reaches as ``s3://<bucket>/<db_path>``.

Requests (bytes travel as hex strings):

* ``{"op": "read", "bucket", "db_path", "keys": [...]}`` -- a ``DbReader`` in ``FOLLOW_LATEST``
  mode (replays the WAL, writes nothing): ``get`` of every key and a full scan. Result:
  ``{"values": {key: value | null}, "scan": [[key, value], ...]}``.
* ``{"op": "write", "bucket", "db_path", "ops": [...]}`` -- a writable ``Db`` (no embedded
  compactor or GC) applying ``["put", k, v]``, ``["delete", k]``, ``["batch", [[k, v|null],
  ...]]`` (null deletes), ``["flush_memtable"]`` and ``["flush_wal"]`` in order, then a WAL-only
  shutdown (whatever is still in the memtable stays in the WAL). Result: ``{}``.

The result file holds ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": traceback}``.
Running the native library in its own process keeps a crash or a hang from taking pytest with
it, and keeps its asyncio loop away from pytest's ``filterwarnings = error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

STEP_TIMEOUT_S = 30.0


def _store(s: Any, bucket: str) -> Any:
    return s.ObjectStore.resolve(f"s3://{bucket}")


async def _read(s: Any, request: dict[str, Any]) -> dict[str, Any]:
    builder = s.DbReaderBuilder(request["db_path"], _store(s, request["bucket"]))
    builder.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
    reader = await asyncio.wait_for(builder.build(), STEP_TIMEOUT_S)
    try:
        values: dict[str, str | None] = {}
        for hexkey in request["keys"]:
            got = await reader.get(bytes.fromhex(hexkey))
            values[hexkey] = None if got is None else bytes(got).hex()
        scan: list[list[str]] = []
        it = await reader.scan(
            s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
        )
        while True:
            batch = await it.next_batch(1024)
            if not batch:
                break
            scan.extend([bytes(kv.key).hex(), bytes(kv.value).hex()] for kv in batch)
        return {"values": values, "scan": scan}
    finally:
        await asyncio.wait_for(reader.shutdown(), STEP_TIMEOUT_S)


async def _write(s: Any, request: dict[str, Any]) -> dict[str, Any]:
    settings = s.Settings.default()
    settings.set("garbage_collector_options", "null")
    settings.set("compactor_options", "null")
    builder = s.DbBuilder(request["db_path"], _store(s, request["bucket"]))
    builder.with_settings(settings)
    db = await asyncio.wait_for(builder.build(), STEP_TIMEOUT_S)
    try:
        for op in request["ops"]:
            name = op[0]
            if name == "put":
                await db.put(bytes.fromhex(op[1]), bytes.fromhex(op[2]))
            elif name == "delete":
                await db.delete(bytes.fromhex(op[1]))
            elif name == "batch":
                wb = s.WriteBatch()
                for hexkey, hexvalue in op[1]:
                    if hexvalue is None:
                        wb.delete(bytes.fromhex(hexkey))
                    else:
                        wb.put(bytes.fromhex(hexkey), bytes.fromhex(hexvalue))
                await db.write(wb)
            elif name == "flush_memtable":
                await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.MEM_TABLE))
            elif name == "flush_wal":
                await db.flush_with_options(s.FlushOptions(flush_type=s.FlushType.WAL))
            else:
                raise ValueError(f"unknown op {name!r}")
    finally:
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), STEP_TIMEOUT_S
        )
    return {}


async def _dispatch(request: dict[str, Any]) -> Any:
    import slatedb.uniffi as s  # only this process loads the native library

    if request["op"] == "read":
        return await _read(s, request)
    if request["op"] == "write":
        return await _write(s, request)
    raise ValueError(f"unknown op {request['op']!r}")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    request = json.loads(Path(argv[1]).read_text())
    try:
        result: dict[str, Any] = {"ok": True, "value": asyncio.run(_dispatch(request))}
    except BaseException:
        result = {"ok": False, "error": traceback.format_exc()}
    out = Path(argv[2])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
