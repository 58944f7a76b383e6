"""Multi-step workflows: ``nox -s demo``, ``nox -s bench``, ``nox -s interop``, ``nox -s sim``,
``nox -s wheels``.

The test matrix itself is in tox.ini; ``nox -s tests`` is the same as the README's test command.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
PY = "3.11"


def _install_all(session: nox.Session) -> None:
    session.install("-r", "requirements-dev.txt")


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The whole suite, both twins (the pure twin runs inside it as a sub-suite)."""
    _install_all(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PY)
def demo(session: nox.Session) -> None:
    """Install the umbrella ``shale`` distribution alone (core, compactor, gc: the README's
    one-line install) and run ``shale demo`` in a temporary directory."""
    session.install("./packages/shale")
    session.run("shale", "demo", *session.posargs)


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Micro-benchmarks of both twins, and shale beside the official slatedb package."""
    _install_all(session)
    session.run("python", "tests/bench/run.py", *session.posargs)


@nox.session(python=PY)
def interop(session: nox.Session) -> None:
    """Only the tests that run the official slatedb package as an oracle."""
    _install_all(session)
    session.run("python", "-m", "pytest", "-m", "interop", *session.posargs)


@nox.session(python=PY)
def sim(session: nox.Session) -> None:
    """The deterministic simulation over many seeds: ``nox -s sim -- --seeds 1000 --jobs 2``.

    Arguments go to ``tests/sim/run.py`` (``--seeds N``, ``--start S``, ``--random``,
    ``--seed N``, ``--replay FILE``, ``--ops K``, ``--jobs J``); without any it runs 200 seeds.
    The same runner works without nox: ``python tests/sim/run.py --seeds N``; ``nox -s sim
    --no-venv -- ...`` runs it in the current (project) environment.
    """
    if session.venv_backend != "none":
        _install_all(session)
    session.run("python", "tests/sim/run.py", *(session.posargs or ["--seeds", "200"]))


@nox.session(python=PY)
def wheels(session: nox.Session) -> None:
    """Build a wheel of every distribution into dist/."""
    session.install("build")
    for path in (
        "packages/shale-core",
        "packages/shale-compactor",
        "packages/shale-gc",
        "packages/shale-minio",
        "packages/shale",
        "plugins/_template",
    ):
        session.run("python", "-m", "build", "--wheel", "--outdir", "dist", path)


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check), mypy --strict and the import contracts (import-linter).

    ``nox -s lint --no-venv`` runs it in the current (project) environment, as ``.ci/run`` does.
    """
    if session.venv_backend != "none":
        _install_all(session)
    session.run("ruff", "check", "packages", "plugins")
    session.run("ruff", "format", "--check", "packages", "plugins", "tests", "noxfile.py")
    session.run(
        "mypy",
        "--strict",
        "packages/shale-core/src/shale",
        "packages/shale-compactor/src/shale_compactor",
        "packages/shale-gc/src/shale_gc",
        "packages/shale-minio/src/shale_minio",
        "packages/shale/src/shale_demo",
        "plugins/shale-faults/src/shale_faults",
        "plugins/shale-prometheus/src/shale_prometheus",
        "plugins/shale-otel/src/shale_otel",
    )
    session.run("lint-imports")
