"""Run shale-core's whole suite again with the pure-Python twins behind every facade.

The twin fixtures already test each accelerated module both ways; this re-runs everything above
them (SST files, stores, the engine) with ``SHALE_NO_EXTENSIONS=1`` in a child pytest, so the
README's one test command covers both twins.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from shale import env

HERE = pathlib.Path(__file__).parent


@pytest.mark.slow
def test_core_suite_with_pure_twins() -> None:
    if env.flag(env.NO_EXTENSIONS):
        pytest.skip("already running with the pure twins")
    child_env = dict(os.environ, **{env.NO_EXTENSIONS: "1"})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(HERE),
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "--no-c-extensions",
            "-m",
            "not interop",
        ],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"pure-twin suite failed:\n{tail}"
