"""``nox -s bench``: every benchmark of the project, printed as tables of ratios.

Run directly with ``python tests/bench/run.py``. The files here are not collected by pytest
(no ``test_`` prefix): benchmarks never assert on timings.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import micro  # noqa: E402


def main() -> int:
    micro.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
