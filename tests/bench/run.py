"""``nox -s bench``: every benchmark of the project, printed as tables of ratios.

Run directly with ``python tests/bench/run.py``. The benchmark modules here are not collected by
pytest (no ``test_`` prefix) and never assert on timings; ``test_bench_smoke.py`` only checks
that the engine benchmark runs.

1. :mod:`micro` -- the accelerated modules, pure-Python twin vs Cython twin.
2. :mod:`engine` -- shale's ``Db`` beside the official slatedb package (about 4 minutes).
3. :mod:`compaction` -- shale's compactor beside the official one: merge throughput, and put
   throughput during an in-process compaction.
4. :mod:`changes` -- change stream rows/s while the writer writes, and catching up.

Arguments go to the engine benchmark (``--quick``, ``--scale``, ``--only``, ``--json``, ...);
the compaction benchmark gets only ``--quick``. ``--no-micro``, ``--no-engine`` and
``--no-compaction``, ``--no-changes`` skip one part.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import changes
import compaction
import engine
import micro


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    skip_micro = "--no-micro" in args
    skip_engine = "--no-engine" in args
    skip_compaction = "--no-compaction" in args
    skip_changes = "--no-changes" in args
    parts = ("--no-micro", "--no-engine", "--no-compaction", "--no-changes")
    args = [a for a in args if a not in parts]
    rc = 0
    if not skip_micro:
        micro.main()
        print(flush=True)
    if not skip_engine:
        rc = engine.main(args)
        print(flush=True)
    if not skip_compaction:
        rc = compaction.main(["--quick"] if "--quick" in args else []) or rc
        print(flush=True)
    if not skip_changes:
        rc = changes.main(["--quick"] if "--quick" in args else []) or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
