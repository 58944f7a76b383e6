"""Multi-step workflows: ``nox -s demo``, ``nox -s bench``, ``nox -s interop``, ``nox -s sim``,
``nox -s docs``, ``nox -s wheels``, ``nox -s sdist_no_compiler``.

The test matrix itself is in tox.ini; ``nox -s tests`` is the same as the README's test command.
"""

from __future__ import annotations

import pathlib

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
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml): ``mkdocs build --strict`` (warnings are errors) into
    site/, then a check that every public name and every ``shale`` option is on it.

    ``nox -s docs --no-venv`` builds it in the current (project) environment, as ``.ci/run``
    does; ``nox -s docs -- --dirty`` and other arguments go to ``mkdocs build``. Preview with
    ``mkdocs serve``.
    """
    if session.venv_backend != "none":
        _install_all(session)
    env = {"NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner, not a build warning
    session.run("mkdocs", "build", "--strict", *session.posargs, env=env)
    session.run("python", "tools/docs/check_site.py", "site")


#: Every distribution of the monorepo (each folder has a pyproject.toml).
DISTRIBUTIONS = (
    "packages/shale-core",
    "packages/shale-compactor",
    "packages/shale-gc",
    "packages/shale-minio",
    "packages/shale",
    "plugins/_template",
    "plugins/shale-faults",
    "plugins/shale-example-filter",
    "plugins/shale-obstore",
    "plugins/shale-prometheus",
    "plugins/shale-otel",
)


@nox.session(python=PY)
def wheels(session: nox.Session) -> None:
    """An sdist and a wheel of every distribution into dist/, then ``tools/check_dist.py``.

    Each wheel is built from its sdist, as pip builds one from an index, so a file missing from
    an sdist fails here. shale-core's wheel is a platform wheel with the compiled twins (no
    generated ``.c``); other platforms: ``cibuildwheel packages/shale-core`` (its
    ``[tool.cibuildwheel]``). The umbrella's wheel names its siblings by version, not by folder.
    """
    session.install("build")
    for path in DISTRIBUTIONS:
        session.run("python", "-m", "build", "--outdir", "dist", path)
    session.run("python", "tools/check_dist.py", "dist")


@nox.session(python=PY)
def sdist_no_compiler(session: nox.Session) -> None:
    """shale-core from its sdist where no C compiler works (``CC=/bin/false``): it installs with
    the pure-Python twins and a warning, then passes a smoke test and its own test suite on
    those twins.

    Arguments go to pytest (``nox -s sdist_no_compiler -- -x``). The source tree is kept off
    ``PYTHONPATH``: the tests import the installed copy.
    """
    session.install("build")
    tmp = pathlib.Path(session.create_tmp())
    for old in tmp.glob("shale_core-*.tar.gz"):
        old.unlink()
    session.run("python", "-m", "build", "--sdist", "--outdir", str(tmp), "packages/shale-core")
    (sdist,) = tmp.glob("shale_core-*.tar.gz")
    env = {"CC": "/bin/false", "PYTHONPATH": None}
    out = session.run(
        "python",
        "-m",
        "pip",
        "install",
        "-v",
        "--no-cache-dir",
        "--force-reinstall",
        str(sdist),
        env=env,
        silent=True,
    )
    if "WARNING: shale-core: the Cython accelerators could not be built" not in str(out):
        session.error("pip install printed no warning about the pure-Python twins")
    session.run("python", "-c", NO_COMPILER_SMOKE, env={"PYTHONPATH": None})
    session.install("pytest>=8", "hypothesis>=6.100", "./plugins/shale-faults")
    # The smoke test saw the pure twins chosen without being asked. The tests then run as the
    # pure tox environment does (SHALE_NO_EXTENSIONS=1): without it they insist on the compiled
    # twins, so that a broken build fails loudly.
    pytest_args = session.posargs or ["-q", "-p", "no:cacheprovider"]
    pure = {"PYTHONPATH": None, "SHALE_NO_EXTENSIONS": "1"}
    session.run("python", "-m", "pytest", "packages/shale-core", *pytest_args, env=pure)


#: Run by ``nox -s sdist_no_compiler`` in the venv where shale-core was installed without a
#: compiler: the installed copy, every twin pure, and a database that works.
NO_COMPILER_SMOKE = """
import pathlib, tempfile
import shale, shale._accel as accel
assert "site-packages" in shale.__file__, shale.__file__
compiled = [name for name in accel.ACCELERATED if accel.is_compiled(name)]
assert not compiled, compiled
with shale.Db.open(tempfile.mkdtemp()) as db:
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"
print("shale", shale.__version__, "from the sdist: pure-Python twins, smoke test passed")
"""


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check), mypy --strict and the import contracts (import-linter).

    ``nox -s lint --no-venv`` runs it in the current (project) environment, as ``.ci/run`` does.
    """
    if session.venv_backend != "none":
        _install_all(session)
    session.run("ruff", "check", "packages", "plugins", "tests", "tools", "noxfile.py")
    session.run("ruff", "format", "--check", "packages", "plugins", "tests", "tools", "noxfile.py")
    session.run(
        "mypy",
        "--strict",
        "packages/shale-core/src/shale",
        "packages/shale-compactor/src/shale_compactor",
        "packages/shale-gc/src/shale_gc",
        "packages/shale-minio/src/shale_minio",
        "packages/shale/src/shale_demo",
        "plugins/shale-faults/src/shale_faults",
        "plugins/shale-obstore/src/shale_obstore",
        "plugins/shale-prometheus/src/shale_prometheus",
        "plugins/shale-otel/src/shale_otel",
    )
    session.run("lint-imports")
