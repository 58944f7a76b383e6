"""pytest options of the simulation: ``python -m pytest tests/sim --seed N`` replays one seed.

The random slice's seeds are printed in the terminal summary so a CI failure can be replayed.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: Seeds the random slice ran in this session (printed in the summary).
RANDOM_SEEDS = pytest.StashKey[list[int]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shale simulation (tests/sim)")
    group.addoption(
        "--seed",
        action="append",
        type=int,
        default=[],
        help="run only these simulation seeds (repeatable); e.g. to replay a failure",
    )
    group.addoption(
        "--sim-ops", type=int, default=None, help="operations per simulation seed (default 150)"
    )
    group.addoption(
        "--sim-random",
        type=int,
        default=None,
        help="seeds in the simulation's random slice (default 16; 0 turns it off)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RANDOM_SEEDS] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    seeds = terminalreporter.config.stash.get(RANDOM_SEEDS, [])
    if seeds:
        terminalreporter.write_sep("-", "shale simulation: random slice")
        terminalreporter.write_line(
            f"seeds {seeds}; replay one with: python -m pytest tests/sim --seed N"
        )


@pytest.fixture
def random_seeds_record(request: pytest.FixtureRequest) -> list[int]:
    return request.config.stash[RANDOM_SEEDS]
