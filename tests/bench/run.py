"""``nox -s bench``: every benchmark of the project, printed as tables of ratios.

Run directly with ``python tests/bench/run.py``. The benchmark modules here are not collected by
pytest (no ``test_`` prefix) and never assert on timings; ``test_bench_smoke.py`` only checks
that the engine benchmark runs.

1. :mod:`micro` -- the accelerated modules, pure-Python twin vs Cython twin.
2. :mod:`engine` -- shale's ``Db`` beside the official slatedb package (about 4 minutes).
3. :mod:`compaction` -- shale's compactor beside the official one: merge throughput, and put
   throughput during an in-process compaction.
4. :mod:`tails` -- durable put p50/p99 beside the official package, 1 and 64 writers, 1 and
   100 ms flush intervals, quiet and under a mixed CPU + fsync load.
5. :mod:`changes` -- change stream rows/s while the writer writes, and catching up.
6. :mod:`disk_cache` -- cold gets and scans over S3 (a private SeaweedFS) with and without the
   object-store disk cache.

Arguments go to the engine benchmark (``--quick``, ``--scale``, ``--only``, ``--json``, ...);
the other parts get only ``--quick``. ``--no-micro``, ``--no-engine``, ``--no-compaction``,
``--no-tails``, ``--no-changes`` and ``--no-disk-cache`` skip one part.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import changes
import compaction
import disk_cache
import engine
import micro
import tails

PARTS = (
    "--no-micro",
    "--no-engine",
    "--no-compaction",
    "--no-tails",
    "--no-changes",
    "--no-disk-cache",
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    skip = {a for a in args if a in PARTS}
    args = [a for a in args if a not in PARTS]
    quick = ["--quick"] if "--quick" in args else []
    rc = 0
    if "--no-micro" not in skip:
        micro.main()
        print(flush=True)
    if "--no-engine" not in skip:
        rc = engine.main(args)
        print(flush=True)
    if "--no-compaction" not in skip:
        rc = compaction.main(quick) or rc
        print(flush=True)
    if "--no-tails" not in skip:
        rc = tails.main(quick) or rc
        print(flush=True)
    if "--no-changes" not in skip:
        rc = changes.main(quick) or rc
        print(flush=True)
    if "--no-disk-cache" not in skip:
        rc = disk_cache.main(quick) or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
