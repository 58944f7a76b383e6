"""Repository-wide pytest options.

``--no-c-extensions`` limits the twin fixtures to the pure-Python implementations (the same as
running with ``SHALE_NO_EXTENSIONS=1``, which also switches the facades).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="test only the pure-Python twins of the accelerated modules",
    )
