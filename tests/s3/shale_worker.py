"""A second shale writer in another process, for the cross-process tests over ``s3://``.

Run as ``python shale_worker.py '<json request>'`` with the ``AWS_*`` variables of the server in
the environment (the URL carries no options: endpoint and credentials come from the
environment, as a user's deployment would). The request::

    {"url": "s3://bucket/prefix", "settings": {...Settings fields...},
     "read": ["<hex key>", ...], "write": [["<hex key>", "<hex value>"], ...]}

The worker opens the database (which fences every older writer), reads ``read``, writes
``write`` with durable puts, closes, and prints one JSON line::

    {"ok": true, "values": {"<hex key>": "<hex value>" | null}, "replayed": int,
     "writer_epoch": int}

On any error it prints ``{"ok": false, "error": "<traceback>"}`` and exits 1.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        request = json.loads(argv[1])
        from shale.db import Db
        from shale.settings import Settings

        db = Db.open(request["url"], Settings(**request.get("settings", {})))
        try:
            epoch = db.manifest().writer_epoch
            values: dict[str, Any] = {}
            for hexkey in request.get("read", []):
                got = db.get(bytes.fromhex(hexkey))
                values[hexkey] = None if got is None else got.hex()
            for hexkey, hexvalue in request.get("write", []):
                db.put(bytes.fromhex(hexkey), bytes.fromhex(hexvalue))
            replayed = int(db.metrics().get("wal_replayed_rows", 0))
        finally:
            db.close()
        out: dict[str, Any] = {
            "ok": True,
            "values": values,
            "replayed": replayed,
            "writer_epoch": epoch,
        }
        code = 0
    except BaseException:
        out = {"ok": False, "error": traceback.format_exc()}
        code = 1
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
