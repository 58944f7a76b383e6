"""The simulation in CI: a fixed slice of seeds, a random slice, the pure twins, saved traces.

* ``test_fixed_slice[N]``: seeds ``0..FIXED_SEEDS-1`` with the interpreter's twins.
* ``test_random_slice``: ``--sim-random`` (default 16) fresh seeds, printed in the summary.
* ``test_pure_twins_slice``: the first ``PURE_SEEDS`` seeds again in a child process with
  ``SHALE_NO_EXTENSIONS=1`` (the pure-Python twins).
* ``test_trace[...]``: the shrunk traces in ``traces/`` (each found a defect once).
* ``test_deterministic``: a seed run twice does the same thing.

A failing seed is shrunk (first failures only, within a session budget) and reported with the
commands that replay it. A seed that only hits a known, still open defect (``shalesim/known.py``)
is marked xfail naming the issue item. ``python -m pytest tests/sim --seed N`` runs seed N only.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import subprocess
import sys
import time

import pytest
from shalesim import runner, workload
from shalesim.engine import Result

from shale import env

HERE = pathlib.Path(__file__).resolve().parent
#: The fixed slice: seeds 0..FIXED_SEEDS-1 (about 0.15 s each; the whole file runs in ~75 s).
FIXED_SEEDS = 400
#: Seeds the pure-twin child process runs.
PURE_SEEDS = 160
#: Default size of the random slice.
RANDOM_SLICE = 16
#: Seconds one session may spend shrinking failures (the first ones get shrunk).
SHRINK_BUDGET_S = 30.0
TRACES = sorted((HERE / "traces").glob("*.json"))

_shrink_left = [SHRINK_BUDGET_S]


def _n_ops(config: pytest.Config) -> int:
    n = config.getoption("sim_ops")
    return int(n) if n else runner.DEFAULT_OPS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("seed") or []
        metafunc.parametrize("sim_seed", chosen or list(range(FIXED_SEEDS)))


def _report(result: Result, n_ops: int, out: pathlib.Path) -> str:
    """The failure report, with a shrunk trace while the session's budget lasts."""
    assert result.seed is not None and result.failure is not None
    config, ops = workload.generate(result.seed, n_ops)
    shrunk = saved = None
    if _shrink_left[0] > 1:
        started = time.monotonic()
        shrunk = runner.shrink(config, ops, result, min(_shrink_left[0], 20.0))
        _shrink_left[0] -= time.monotonic() - started
        saved = out / f"seed-{result.seed}.json"
        runner.save_trace(saved, result.seed, config, shrunk.ops, result.failure.kind)
    return runner.failure_report(result, ops, shrunk=shrunk, saved=saved, n_ops=n_ops)


def _known(results: list[Result]) -> str:
    return "; ".join(
        f"seed {r.seed}: {h.issue.item}: {h.message}" for r in results for h in r.known_hits
    )


def test_fixed_slice(
    sim_seed: int, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    n_ops = _n_ops(request.config)
    result = runner.run_seed(sim_seed, n_ops)
    if result.failure is not None:
        pytest.fail(_report(result, n_ops, tmp_path_factory.mktemp("sim")), pytrace=False)
    if result.known_hits:
        pytest.xfail("known open defect: " + _known([result]))


def test_random_slice(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    random_seeds_record: list[int],
) -> None:
    size = request.config.getoption("sim_random")
    size = RANDOM_SLICE if size is None else int(size)
    if request.config.getoption("seed") or size <= 0:
        pytest.skip("random slice off")
    n_ops = _n_ops(request.config)
    seeds = [random.SystemRandom().randrange(FIXED_SEEDS, 2**32) for _ in range(size)]
    random_seeds_record.extend(seeds)
    print(f"shale simulation random slice seeds: {seeds}")
    failures, results = [], []
    for seed in seeds:
        result = runner.run_seed(seed, n_ops)
        results.append(result)
        if result.failure is not None:
            failures.append(_report(result, n_ops, tmp_path_factory.mktemp("sim")))
    if failures:
        pytest.fail(f"random slice seeds {seeds}:\n" + "\n\n".join(failures), pytrace=False)
    if any(r.known_hits for r in results):
        pytest.xfail("known open defect: " + _known(results))


def test_pure_twins_slice(request: pytest.FixtureRequest) -> None:
    if env.flag(env.NO_EXTENSIONS):
        pytest.skip("already running with the pure twins (the fixed slice covers them)")
    if request.config.getoption("seed"):
        pytest.skip("--seed given")
    child_env = dict(os.environ, **{env.NO_EXTENSIONS: "1"})
    cmd = [
        sys.executable,
        str(HERE / "run.py"),
        "--seeds",
        str(PURE_SEEDS),
        "--ops",
        str(_n_ops(request.config)),
        "--shrink-budget",
        "0",
        "--max-failures",
        "3",
    ]
    proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"pure-twin simulation slice failed:\n{tail}"


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_trace(path: pathlib.Path) -> None:
    """Shrunk traces that found a defect. ``expect``: ``pass``, or ``known:<kind>`` while the
    defect is open (then the test is xfail; once it no longer reproduces, update known.py)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    result = runner.run_ops(data["config"], data["ops"], data.get("seed"))
    if result.failure is not None:
        pytest.fail(f"{data['note']}\n" + runner.failure_report(result, data["ops"]), pytrace=False)
    expect = data.get("expect", "pass")
    if expect.startswith("known:"):
        kind = expect.split(":", 1)[1]
        hits = [h for h in result.known_hits if h.kind == kind]
        if hits:
            pytest.xfail(f"known open defect {hits[0].issue.item}: {hits[0].message}")
        pytest.fail(
            f"{path.name} no longer reproduces {kind!r}: if it is fixed, remove it from "
            "tests/sim/shalesim/known.py and set this trace's expect to 'pass'",
            pytrace=False,
        )
    if result.known_hits:
        pytest.xfail("known open defect: " + _known([result]))


def test_deterministic() -> None:
    """One seed, two runs, the same events (background work is made explicit).

    Fault windows are left out: there a waiter may see an upload fail or its retry succeed
    first, depending on thread timing inside the engine (both outcomes are checked).
    """
    for seed in (3, 11, 17):
        config, ops = workload.generate(seed, 100)
        ops = [op for op in ops if op["op"] not in ("faults", "full")]
        a, b = runner.run_ops(config, ops, seed), runner.run_ops(config, ops, seed)
        assert a.events == b.events, f"seed {seed} ran differently twice"
