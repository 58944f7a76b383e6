"""Running seeds, shrinking failing traces, and reporting them so they can be replayed."""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Any

from shale import env
from shalesim import workload
from shalesim.engine import Result, Simulation
from shalesim.workload import Config, Op, describe

#: Operations per seed (the CI slices and ``run.py`` default).
DEFAULT_OPS = 150
#: Wall-clock budget of one shrink.
DEFAULT_SHRINK_S = 60.0


def twin() -> str:
    return "pure" if env.flag(env.NO_EXTENSIONS) else "compiled"


def run_ops(config: Config, ops: list[Op], seed: int | None = None) -> Result:
    return Simulation(config, ops, seed=seed).run()


def run_seed(seed: int, n_ops: int = DEFAULT_OPS, *, all_shapes: bool = False) -> Result:
    config, ops = workload.generate(seed, n_ops, all_shapes=all_shapes)
    return run_ops(config, ops, seed)


@dataclass
class Shrunk:
    ops: list[Op]
    result: Result
    attempts: int
    seconds: float


def shrink(
    config: Config,
    ops: list[Op],
    first: Result,
    budget_s: float = DEFAULT_SHRINK_S,
    *,
    kind: str | None = None,
) -> Shrunk:
    """Delta debugging: drop chunks of operations while the run still fails the same check
    (``kind``: the first failure's, or the kind of a known-defect hit to reproduce).

    Bounded by ``budget_s``; the result is always a trace that was seen failing.
    """
    if kind is None:
        assert first.failure is not None
        kind = first.failure.kind
    started = time.monotonic()
    deadline = started + budget_s
    attempts = 0

    def where(result: Result) -> int | None:
        if result.failure is not None and result.failure.kind == kind:
            return result.failed_at
        hits = [h.op_index for h in result.known_hits if h.kind == kind]
        return hits[0] if hits else None

    def cut(trace: list[Op], result: Result) -> list[Op]:
        at = where(result)
        return trace if at is None or at >= len(trace) else trace[: at + 1]

    best, best_result = cut(ops, first), first

    def fails(candidate: list[Op]) -> Result | None:
        nonlocal attempts
        attempts += 1
        r = run_ops(config, candidate, first.seed)
        hit = (r.failure is not None and r.failure.kind == kind) or any(
            h.kind == kind for h in r.known_hits
        )
        return r if hit else None

    n = 2
    while len(best) >= 2 and time.monotonic() < deadline:
        chunk = math.ceil(len(best) / n)
        reduced = False
        for i in range(n):
            if time.monotonic() >= deadline:
                break
            candidate = best[: i * chunk] + best[(i + 1) * chunk :]
            if not candidate:
                continue
            r = fails(candidate)
            if r is not None:
                best, best_result = cut(candidate, r), r
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if n >= len(best):
                break
            n = min(len(best), 2 * n)
    return Shrunk(best, best_result, attempts, time.monotonic() - started)


def save_trace(
    path: pathlib.Path, seed: int | None, config: Config, ops: list[Op], kind: str
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"seed": seed, "failure": kind, "config": config, "ops": ops}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load_trace(path: str | os.PathLike[str]) -> tuple[int | None, Config, list[Op]]:
    data: dict[str, Any] = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    return data.get("seed"), data["config"], data["ops"]


def failure_report(
    result: Result,
    ops: list[Op],
    *,
    shrunk: Shrunk | None = None,
    saved: pathlib.Path | None = None,
    n_ops: int = DEFAULT_OPS,
) -> str:
    """Everything a developer needs: the check, where, how to replay, the shrunk trace."""
    f = result.failure
    assert f is not None
    lines = [
        f"SIMULATION FAILURE seed={result.seed} ({twin()} twins, {len(ops)} ops)",
        f"  {f}",
    ]
    at = result.failed_at
    if at is not None:
        lines.append(f"  at op #{at}: " + (describe(ops[at]) if at < len(ops) else "final checks"))
    if result.seed is not None:
        extra = "" if n_ops == DEFAULT_OPS else f" --ops {n_ops}"
        pure = "SHALE_NO_EXTENSIONS=1 " if twin() == "pure" else ""
        lines.append(f"  replay: {pure}python tests/sim/run.py --seed {result.seed}{extra}")
        lines.append(
            f"      or: {pure}python -m pytest tests/sim --seed {result.seed}"
            + extra.replace("--ops", "--sim-ops")
        )
    if shrunk is not None:
        s = shrunk
        lines.append(
            f"  shrunk to {len(s.ops)} ops in {s.attempts} runs ({s.seconds:.1f}s): "
            f"{s.result.failure}"
        )
        if saved is not None:
            lines.append(f"  replay the shrunk trace: python tests/sim/run.py --replay {saved}")
        lines.extend(f"    {i:3d} {describe(op)}" for i, op in enumerate(s.ops))
        shown = s.result
    else:
        shown = result
    lines.append("  last events:")
    lines.extend(f"    {e}" for e in shown.events[-12:])
    if shown.logs:
        lines.append("  last log records:")
        lines.extend(f"    {r}"[:400] for r in shown.logs[-8:])
    return "\n".join(lines)
