"""Run one request in a child Python process that runs a script, and the child's side of it.

The interop tests drive the official ``slatedb`` package this way: its native library must not
load into the test process (its threads and its own logging outlive a test), so a test module
runs itself as a script, with a pickled request in and a pickled result out.

- The parent calls :func:`run_script` (``script`` is usually ``__file__``).
- The script ends with ``sys.exit(worker_main(sys.argv, dispatch))``, where ``dispatch`` is an
  ``async`` function of the request.

Invariants: the child writes its result atomically (a temporary file, then a rename), so the
parent sees a whole result or none; any exception in the child, cancellations included, comes
back as its traceback; a child past its time is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["WorkerError", "run_script", "worker_main"]


class WorkerError(Exception):
    """The child process timed out, died without a result, or raised (the message says which,
    with its stderr tail or traceback)."""


def run_script(
    script: str | os.PathLike[str],
    request: dict[str, Any],
    timeout: float,
    *,
    name: str = "worker",
) -> Any:
    """Run ``python script REQUEST RESULT`` with ``request`` pickled, and return the value the
    child's :func:`worker_main` wrote back.

    :param timeout: seconds before the child is killed.
    :param name: what the error messages call the child.
    :raises WorkerError: the child timed out, died without a result, or raised.
    """
    op = request.get("op")
    with tempfile.TemporaryDirectory(prefix="shale-script-worker-") as tmp:
        req_path = Path(tmp) / "request.pickle"
        res_path = Path(tmp) / "result.pickle"
        req_path.write_bytes(pickle.dumps(request))
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        cmd = [sys.executable, str(Path(script).resolve()), str(req_path), str(res_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired as exc:  # subprocess.run kills the child
            raise WorkerError(
                f"{name} timed out after {timeout}s: op={op}\n"
                f"stderr tail: {(exc.stderr or b'')[-4000:]!r}"
            ) from None
        if not res_path.exists():
            raise WorkerError(
                f"{name} died: op={op} rc={proc.returncode}\n"
                f"stderr tail: {proc.stderr[-4000:].decode(errors='replace')}"
            )
        result = pickle.loads(res_path.read_bytes())
    if not result["ok"]:
        raise WorkerError(f"{name} failed: op={op}\n{result['error']}")
    return result["value"]


async def _bounded(work: Awaitable[Any], timeout: float | None) -> Any:
    return await (work if timeout is None else asyncio.wait_for(work, timeout))


def worker_main(
    argv: list[str],
    dispatch: Callable[[dict[str, Any]], Awaitable[Any]],
    *,
    overall_timeout: bool = True,
) -> int:
    """The child's side of :func:`run_script`: read the request, run ``dispatch(request)`` in
    a fresh event loop (bounded by ``request["timeout"]`` when ``overall_timeout`` and the
    request has one), write the result or the traceback. Returns the exit status (0)."""
    req_path, res_path = Path(argv[1]), Path(argv[2])
    request = pickle.loads(req_path.read_bytes())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        timeout = request.get("timeout") if overall_timeout else None
        value: Any = asyncio.run(_bounded(dispatch(request), timeout))
        result: dict[str, Any] = {"ok": True, "value": value}
    except BaseException:  # report everything, including cancellations and timeouts
        result = {"ok": False, "error": traceback.format_exc()}
    tmp = res_path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(result))
    tmp.replace(res_path)
    return 0
