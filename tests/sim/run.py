"""Run the shale simulation over many seeds, or replay one seed or a saved trace.

    python tests/sim/run.py --seeds 200                # seeds 0..199
    python tests/sim/run.py --seeds 200 --random       # 200 random seeds (printed)
    python tests/sim/run.py --seed 17                  # one seed, with its events
    python tests/sim/run.py --replay /tmp/shale-sim/seed-17.json
    SHALE_NO_EXTENSIONS=1 python tests/sim/run.py ...  # the pure-Python twins

A failing seed is shrunk (``--shrink-budget`` seconds), saved as a JSON trace and printed
with the commands that replay it. Exit status 1 when a seed failed a check (known defects
listed in ``shalesim/known.py`` are reported but do not fail). ``nox -s sim -- --seeds N``.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from shalesim import runner, workload  # noqa: E402
from shalesim.engine import Result  # noqa: E402


def _init_worker(path: str) -> None:
    if path not in sys.path:
        sys.path.insert(0, path)


def _run_one(seed: int, n_ops: int, all_shapes: bool) -> Result:
    return runner.run_seed(seed, n_ops, all_shapes=all_shapes)


def _out_dir(arg: str | None) -> pathlib.Path:
    if arg:
        return pathlib.Path(arg)
    return pathlib.Path(tempfile.gettempdir()) / "shale-sim"


def report_failure(
    result: Result, args: argparse.Namespace, config: workload.Config, ops: list[workload.Op]
) -> None:
    assert result.failure is not None
    shrunk = None
    saved = None
    if args.shrink_budget > 0:
        shrunk = runner.shrink(config, ops, result, args.shrink_budget)
        name = f"seed-{result.seed}.json" if result.seed is not None else "replay-shrunk.json"
        saved = _out_dir(args.out) / name
        runner.save_trace(saved, result.seed, config, shrunk.ops, result.failure.kind)
    print(runner.failure_report(result, ops, shrunk=shrunk, saved=saved, n_ops=args.ops))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=0, help="how many seeds to run")
    p.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--random", action="store_true", help="random seeds instead of a range")
    p.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    p.add_argument("--replay", help="replay a saved JSON trace")
    p.add_argument("--ops", type=int, default=runner.DEFAULT_OPS, help="operations per seed")
    p.add_argument("--jobs", type=int, default=1, help="processes running seeds in parallel")
    p.add_argument(
        "--shrink-budget",
        type=float,
        default=runner.DEFAULT_SHRINK_S,
        help="seconds spent shrinking each failure (0: do not shrink)",
    )
    p.add_argument(
        "--all-shapes",
        action="store_true",
        help="also generate the shapes of known open defects (shalesim/known.py)",
    )
    p.add_argument("--out", help="where shrunk traces are saved (default: $TMPDIR/shale-sim)")
    p.add_argument("--max-failures", type=int, default=5, help="stop after this many failures")
    p.add_argument("-v", "--verbose", action="store_true", help="print every seed's events")
    args = p.parse_args(argv)

    if args.replay:
        seed, config, ops = runner.load_trace(args.replay)
        result = runner.run_ops(config, ops, seed)
        for e in result.events if args.verbose else []:
            print("   ", e)
        for hit in result.known_hits:
            print(f"known defect ({hit.issue.item}) at op #{hit.op_index}: {hit.message}")
        if result.failure is None:
            print(f"replay passed ({len(ops)} ops, {result.seconds:.2f}s)")
            return 0
        args.shrink_budget = 0
        print(runner.failure_report(result, ops, n_ops=args.ops))
        return 1

    if args.seed:
        seeds = list(args.seed)
    elif args.random:
        seeds = [random.SystemRandom().randrange(2**32) for _ in range(args.seeds)]
    else:
        seeds = list(range(args.start, args.start + args.seeds))
    if not seeds:
        p.error("nothing to run: give --seeds N, --seed N or --replay FILE")
    print(
        f"shale simulation: {len(seeds)} seeds x {args.ops} ops, {runner.twin()} twins"
        + (f", seeds {seeds}" if args.random or len(seeds) <= 10 else f", seeds {seeds[0]}..")
    )
    sys.stdout.flush()

    started = time.monotonic()
    failures: list[Result] = []
    known_hits = 0
    done = 0

    def handle(result: Result) -> bool:
        nonlocal done, known_hits
        done += 1
        if args.verbose or len(seeds) == 1:
            for e in result.events:
                print("   ", e)
        for hit in result.known_hits:
            known_hits += 1
            print(f"seed {result.seed}: known defect ({hit.issue.item}): {hit.message}")
        if result.failure is not None:
            failures.append(result)
            config, ops = workload.generate(result.seed or 0, args.ops, all_shapes=args.all_shapes)
            report_failure(result, args, config, ops)
        elif len(seeds) <= 20 or args.verbose:
            print(f"seed {result.seed}: ok ({result.seconds:.2f}s)")
        elif done % 50 == 0:
            rate = done / (time.monotonic() - started) * 60
            print(f"  {done}/{len(seeds)} seeds, {len(failures)} failed, {rate:.0f} seeds/min")
        sys.stdout.flush()
        return len(failures) >= args.max_failures

    if args.jobs <= 1:
        for seed in seeds:
            if handle(_run_one(seed, args.ops, args.all_shapes)):
                break
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(
            args.jobs, mp_context=ctx, initializer=_init_worker, initargs=(str(HERE),)
        ) as pool:
            futures = [pool.submit(_run_one, s, args.ops, args.all_shapes) for s in seeds]
            for fut in futures:
                if handle(fut.result()):
                    for f in futures:
                        f.cancel()
                    break

    elapsed = time.monotonic() - started
    per_seed = elapsed / max(done, 1)
    print(
        f"{done} seeds in {elapsed:.1f}s ({per_seed:.2f}s/seed, {60 / per_seed:.0f} seeds/min, "
        f"~{per_seed * 1000 / 60:.1f} min per 1,000 seeds with "
        f"{args.jobs} job(s)); {len(failures)} failed"
        + (f": seeds {[r.seed for r in failures]}" if failures else "")
        + (f"; {known_hits} known-defect hits" if known_hits else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
