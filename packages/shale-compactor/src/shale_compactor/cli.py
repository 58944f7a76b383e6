"""``shale compactor run|submit|status``: the standalone compactor's command line.

- ``run URL`` fences any other compactor of the database and compacts until Ctrl-C or SIGTERM
  (then running jobs are interrupted; they resume on the next start). ``--once`` runs one
  round and prints its reports as JSON lines.
- ``submit URL --full | --spec JSON`` adds a Submitted compaction to the ``.compactions`` file
  without fencing anyone; the running compactor starts it on its next poll. Prints its id.
- ``worker URL`` runs a compaction worker (RFC-0025 distributed compaction): it claims the jobs
  a coordinator (a compactor whose ``compactor_options.worker`` is none) scheduled, runs them
  and reports them for the coordinator to commit, until Ctrl-C or SIGTERM (then its jobs are
  released for another worker). Any number may run, on any host. Options default to the
  settings' ``compactor_options.worker``.
- ``status URL [--json]`` prints the compactions in the file with estimated progress.

URLs are opened through the plugins; the database is at the store's root (as ``shale.Db.open``
does with a path). The options every command shares (``URL``, ``--settings``,
``--store-option``), the settings layering and the argument types are
:mod:`shale.cli.options`'s, like every ``shale`` command's; compactor options default to
:class:`shale.settings.CompactorOptions` when the settings leave them unset.
Errors are :class:`~shale.errors.ShaleError` s, printed by ``shale``'s main as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from shale.cli.options import (
    EXIT_ERROR,
    EXIT_OK,
    database_options,
    opened_store,
    positive_duration,
    require_database,
    settings_from_args,
)

__all__ = ["add_commands", "format_status"]


def _settings(args: argparse.Namespace) -> Any:
    from shale.spi import CompactorOptions

    settings = settings_from_args(args)
    options = settings.compactor_options or CompactorOptions()
    if getattr(args, "poll_interval", None) is not None:
        options = options.replace(poll_interval=args.poll_interval)
    return settings.replace(compactor_options=options)


# -- run --------------------------------------------------------------------------------------


def _report_json(r: Any) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "status": r.status,
        "l0": len(r.l0_view_ids),
        "sorted_runs": list(r.sorted_runs),
        "destination": r.destination,
        "outputs": len(r.output_ssts),
        "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "duration_s": round(r.duration_s, 3),
        "error": r.error,
    }


@contextlib.contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """Call ``stop()`` on SIGINT/SIGTERM while inside (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        print(f"stopping ({signal.Signals(signum).name})", file=sys.stderr, flush=True)
        # not inline: the interrupted frame may hold a lock stop() needs (e.g. an Event's)
        threading.Thread(target=stop, name="shale-compactor-stop", daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _cmd_run(args: argparse.Namespace) -> int:
    from shale_compactor.compactor import Compactor

    settings = _settings(args)
    with opened_store(args) as store:
        require_database(store, args.url)
        compactor = Compactor(store, "", settings)
        if args.once:
            try:
                reports = compactor.run_once()
            finally:
                compactor.stop()
            for r in reports:
                print(json.dumps(_report_json(r)))
            return EXIT_OK
        with _stop_on_signals(lambda: compactor.stop(timeout=0)):
            print(f"compactor running on {args.url}; Ctrl-C to stop", file=sys.stderr, flush=True)
            compactor.run()
        compactor.stop()
        if compactor.fenced:
            print("error: closed: fenced by a newer compactor", file=sys.stderr)
            return EXIT_ERROR
        print("compactor stopped", file=sys.stderr)
        return EXIT_OK


# -- worker ---------------------------------------------------------------------------------------


def _cmd_worker(args: argparse.Namespace) -> int:
    from shale.spi import CompactionWorkerOptions
    from shale_compactor.worker import CompactionWorker

    settings = settings_from_args(args)
    options = (settings.compactor_options and settings.compactor_options.worker) or (
        CompactionWorkerOptions()
    )
    changes = {
        "max_concurrent_compactions": args.max_concurrent,
        "compactions_poll_interval": args.poll_interval,
        "heartbeat_interval": args.heartbeat_interval,
    }
    options = options.replace(**{k: v for k, v in changes.items() if v is not None})
    with opened_store(args) as store:
        require_database(store, args.url)
        worker = CompactionWorker(store, "", settings, options=options)
        with _stop_on_signals(lambda: worker.stop(timeout=0)):
            print(
                f"compaction worker {worker.worker_id} running on {args.url}; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            worker.run()
        worker.stop()
        print(f"compaction worker {worker.worker_id} stopped", file=sys.stderr)
        return EXIT_OK


# -- submit -----------------------------------------------------------------------------------


def _cmd_submit(args: argparse.Namespace) -> int:
    from shale_compactor.compactor import submit_compaction
    from shale_compactor.scheduler import FULL, parse_spec

    spec = FULL if args.full else parse_spec(args.spec)
    settings = _settings(args)
    fmt = 1 if settings.manifest_format_version == 1 else 2
    with opened_store(args) as store:
        require_database(store, args.url)
        cid = submit_compaction(store, "", spec, segment=args.segment.encode(), format_version=fmt)
    print(cid)
    return EXIT_OK


# -- status -----------------------------------------------------------------------------------


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _bar(pct: float, width: int = 20) -> str:
    filled = round(pct / 100 * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def format_status(view: Any, jobs: list[Any]) -> str:
    """The text ``shale compactor status`` prints."""
    m = view.manifest
    epoch = "none" if view.compactions is None else view.compactions.compactor_epoch
    runs = ",".join(str(r.id) for r in m.compacted) or "-"
    lines = [
        f"compactor epoch: {epoch} (manifest {view.manifest_id}, "
        f"compactions file {view.compactions_id or '-'})",
        f"L0 SSTs: {len(m.l0)}; sorted runs: {len(m.compacted)} (ids {runs})",
    ]
    for seg in m.segments:
        seg_runs = ",".join(str(r.id) for r in seg.compacted) or "-"
        lines.append(
            f"segment {seg.prefix!r}: L0 SSTs: {len(seg.l0)}; sorted runs: "
            f"{len(seg.compacted)} (ids {seg_runs})"
        )
    if not jobs:
        lines.append("no compactions")
        return "\n".join(lines)
    lines.append(f"{'ID':<26}  {'STATUS':<9}  {'SOURCES':<18}  {'DEST':>4}  {'OUT':>3}  PROGRESS")
    for j in jobs:
        parts = []
        if j.l0:
            parts.append(f"{j.l0} L0")
        if j.sorted_runs:
            parts.append("SR " + ",".join(str(r) for r in j.sorted_runs))
        sources = " + ".join(parts) or "-"
        if j.status in ("running", "submitted"):
            progress = (
                f"{_bar(j.percentage)} {j.percentage:5.1f}% "
                f"({_human(j.bytes_processed)} / {_human(j.total_bytes)})"
            )
        else:
            progress = ""
        lines.append(
            f"{j.id!s:<26}  {j.status:<9}  {sources:<18}  {j.destination:>4}  "
            f"{j.outputs:>3}  {progress}".rstrip()
        )
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    from shale_compactor.compactor import read_status

    with opened_store(args) as store:
        require_database(store, args.url)
        view, jobs = read_status(store, "")
    if args.json:
        out = {
            "compactor_epoch": None
            if view.compactions is None
            else view.compactions.compactor_epoch,
            "manifest_id": view.manifest_id,
            "compactions_id": view.compactions_id,
            "l0": len(view.manifest.l0),
            "sorted_runs": [r.id for r in view.manifest.compacted],
            "segments": [
                {
                    "prefix_hex": seg.prefix.hex(),
                    "l0": len(seg.l0),
                    "sorted_runs": [r.id for r in seg.compacted],
                }
                for seg in view.manifest.segments
            ],
            "compactions": [j.to_json() for j in jobs],
        }
        print(json.dumps(out, indent=2))
    else:
        print(format_status(view, jobs))
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``compactor run|worker|submit|status`` to the ``shale`` sub-parsers."""
    common = database_options()
    comp = subparsers.add_parser("compactor", help="run, feed and watch the compactor")
    sub = comp.add_subparsers(dest="compactor_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="compact the database until Ctrl-C/SIGTERM (fences other compactors)",
    )
    p.add_argument(
        "--merge-operator",
        metavar="NAME",
        help="the writer's merge operator (e.g. concat, counter)",
    )
    p.add_argument(
        "--poll-interval",
        type=positive_duration,
        metavar="SECONDS",
        help="seconds (or a duration such as 500ms) between polls (default: the settings', 5)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="run one round, wait for its compactions, print JSON reports, exit",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "submit",
        parents=[common],
        help="submit a compaction for the running compactor (fences nobody)",
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--full", action="store_true", help="compact every L0 SST and every sorted run into one run"
    )
    g.add_argument(
        "--spec",
        metavar="JSON",
        help='{"l0": [ULID...], "sorted_runs": [N...], "destination": N}, or '
        'SlateDB\'s {"sources": [{"SstView": ULID}, {"SortedRun": N}], '
        '"destination": N}; add "segment": PREFIX for a segment\'s tree',
    )
    p.add_argument(
        "--segment",
        default="",
        metavar="PREFIX",
        help="with --full: compact this segment's tree (default: the root tree)",
    )
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser(
        "worker",
        parents=[common],
        help="run a compaction worker for a coordinator until Ctrl-C/SIGTERM (fences nobody)",
    )
    p.add_argument(
        "--merge-operator",
        metavar="NAME",
        help="the writer's merge operator (e.g. concat, counter)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="jobs held at once (default: the settings', 4)",
    )
    p.add_argument(
        "--poll-interval",
        type=positive_duration,
        metavar="SECONDS",
        help="mean seconds between polls of .compactions, jittered +-50%% (default: 5)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=positive_duration,
        metavar="SECONDS",
        help="seconds between heartbeats of the jobs held (default: 10)",
    )
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser(
        "status",
        parents=[common],
        help="show the compactions in the .compactions file and their progress",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_status)
