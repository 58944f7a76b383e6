"""Smoke test of the engine benchmark: it runs end to end at tiny sizes and prints its table.

No timing is asserted (the machines are shared); this only guards the benchmark against API
drift in shale or the official package. The benchmark runs in a child process, as ``nox -s
bench`` runs it, so the official package's native library never loads into pytest.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).with_name("engine.py")
TAILS = Path(__file__).with_name("tails.py")


@pytest.mark.slow
@pytest.mark.interop
def test_engine_benchmark_quick_runs_and_prints_a_table() -> None:
    if importlib.util.find_spec("slatedb") is None:
        pytest.skip("the official slatedb package is not installed")
    proc = subprocess.run(
        [sys.executable, str(ENGINE), "--quick", "--scale", "0.05"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "shale/off" in out and "official" in out
    for label in (
        "put, not waiting for durability",
        "durable put, 64 writers",
        "get, L0 SST warm",
        "full scan, L0 SST",
        "bulk load peak RSS",
        "reopen, WAL replay",
    ):
        line = next((ln for ln in out.splitlines() if ln.startswith(label)), None)
        assert line is not None, f"no row {label!r} in:\n{out}"
        assert " - " not in line.replace("shale/off", ""), f"a value is missing: {line}"


@pytest.mark.slow
@pytest.mark.interop
def test_tails_benchmark_runs_under_the_mixed_load() -> None:
    if importlib.util.find_spec("slatedb") is None:
        pytest.skip("the official slatedb package is not installed")
    proc = subprocess.run(
        [sys.executable, str(TAILS), "--quick", "--cap", "0.2", "--loads", "mixed"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("mixed, ")]
    assert len(rows) == 4, proc.stdout
    for line in rows:
        assert " - " not in line, f"a value is missing: {line}"
