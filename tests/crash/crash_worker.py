"""Crash-test worker: writes to a shale database until it is SIGKILLed.

Run as ``python crash_worker.py <db_dir> <cycle> <seed>``. It opens the database, prints
``READY``, then runs

* 3 threads of single durable puts and 1 thread of durable 5-key write batches, every key unique
  (``c<cycle>-t<thread>-<n>``) with a pseudo-random value derived from the key
  (:func:`value_for`, so the parent can recompute it without being told);
* 1 thread calling ``flush(memtable=True)`` every 0.1-0.5 s, so L0 flushes and manifest updates
  are in flight when the kill lands.

After a write returns it prints an acknowledgement line on stdout with a single ``os.write``
(atomic for lines shorter than ``PIPE_BUF``): ``A <key>`` for a put, ``B <key> <key> ...`` for a
batch. Only acknowledged writes are promised to survive. Any unexpected error prints ``ERROR``
on stderr and exits with :data:`EXIT_ERROR`, so the parent can tell a worker failure from its own
kill.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
import time
import traceback

EXIT_ERROR = 3
#: Settings small enough that memtables freeze and L0s are written during a ~1 s run.
SETTINGS = {
    "flush_interval": 0.01,
    "l0_sst_size_bytes": 256 * 1024,
    "l0_max_ssts": 1024,
    "manifest_poll_interval": 0.1,
    "compactor_options": None,
    "garbage_collector_options": None,
}
BATCH_SIZE = 5


def value_for(key: bytes) -> bytes:
    """The value written for ``key``: 1 B to ~2 KiB of pseudo-random bytes, fixed by the key."""
    h = hashlib.sha256(key).digest()
    n = 1 + (h[0] << 3 | h[1] & 7)
    return random.Random(h).randbytes(n)


def key_for(cycle: int, thread: int, n: int) -> bytes:
    return b"c%03d-t%d-%07d" % (cycle, thread, n)


def _die(what: str) -> None:
    sys.stderr.write(f"ERROR in {what}:\n{traceback.format_exc()}\n")
    sys.stderr.flush()
    os._exit(EXIT_ERROR)


def main(argv: list[str]) -> int:
    from shale.batch import WriteBatch
    from shale.db import Db
    from shale.settings import Settings

    db_dir, cycle, seed = argv[1], int(argv[2]), int(argv[3])
    db = Db.open(db_dir, Settings(**SETTINGS))
    os.write(1, b"READY\n")

    def putter(t: int) -> None:
        try:
            n = 0
            while True:
                key = key_for(cycle, t, n)
                db.put(key, value_for(key))
                os.write(1, b"A " + key + b"\n")
                n += 1
        except BaseException:
            _die(f"putter {t}")

    def batcher(t: int) -> None:
        try:
            n = 0
            while True:
                keys = [key_for(cycle, t, n + i) for i in range(BATCH_SIZE)]
                wb = WriteBatch()
                for key in keys:
                    wb.put(key, value_for(key))
                db.write(wb)
                os.write(1, b"B " + b" ".join(keys) + b"\n")
                n += BATCH_SIZE
        except BaseException:
            _die(f"batcher {t}")

    def flusher() -> None:
        rng = random.Random(seed)
        try:
            while True:
                time.sleep(rng.uniform(0.1, 0.5))
                db.flush(memtable=True)
        except BaseException:
            _die("flusher")

    threads = [threading.Thread(target=putter, args=(t,), daemon=True) for t in range(3)]
    threads.append(threading.Thread(target=batcher, args=(3,), daemon=True))
    threads.append(threading.Thread(target=flusher, daemon=True))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
