"""Crash-test worker: a standalone shale compactor that the parent SIGKILLs at random moments.

Run as ``python compactor_worker.py <db_dir> <max_sst_size>``. It opens a
:class:`shale_compactor.Compactor` on the database (which fences any previous compactor, and
turns a Running job left by a killed predecessor back into a Submitted one that keeps its
recorded outputs), then

* if no compaction is active, submits one full compaction (``FULL``) and prints
  ``SUBMITTED <id>``; otherwise prints ``RESUME <id> <recorded outputs>`` for the active one;
* runs one round (``run_once``: start the job, wait for it, commit) and prints
  ``REPORT <id> <status> <outputs> <seconds>`` per finished job, then ``DONE``, and exits 0.

Lines go to stdout with single ``os.write`` calls (atomic below ``PIPE_BUF``). Before anything
else it prints ``READY <epoch>`` once the compactor has fenced and loaded its state. Any
unexpected error prints ``ERROR`` and a traceback on stderr and exits with :data:`EXIT_ERROR`,
so the parent can tell a worker failure from its own kill.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

EXIT_ERROR = 3
#: The database's settings (the compactor needs its merge operator).
SETTINGS = {
    "compactor_options": None,
    "garbage_collector_options": None,
    "merge_operator": "concat",
}


def _say(line: str) -> None:
    os.write(1, line.encode() + b"\n")


def main(argv: list[str]) -> int:
    from shale.settings import CompactorOptions, Settings
    from shale_compactor import FULL, Compactor

    db_dir, max_sst_size = argv[1], int(argv[2])
    options = CompactorOptions(
        poll_interval=0.05, max_sst_size=max_sst_size, max_concurrent_compactions=1
    )
    compactor = Compactor.open(db_dir, Settings(**SETTINGS), options=options)
    try:
        compactor.start()
        _say(f"READY {compactor.epoch}")
        active = compactor.view().active_compactions()
        if active:
            for c in active:
                _say(f"RESUME {c.id} {len(c.output_ssts)}")
        else:
            _say(f"SUBMITTED {compactor.submit(FULL)}")
        t0 = time.monotonic()
        for r in compactor.run_once():
            _say(f"REPORT {r.id} {r.status} {len(r.output_ssts)} {time.monotonic() - t0:.3f}")
            if r.status != "completed":
                sys.stderr.write(f"ERROR: compaction {r.id} {r.status}: {r.error}\n")
                return EXIT_ERROR
    finally:
        compactor.close()
    _say("DONE")
    return 0


if __name__ == "__main__":
    try:
        rc = main(sys.argv)
    except BaseException:
        sys.stderr.write(f"ERROR:\n{traceback.format_exc()}\n")
        sys.stderr.flush()
        os._exit(EXIT_ERROR)
    sys.exit(rc)
