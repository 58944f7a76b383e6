"""The kernel path of the executor: one job as key ranges (subcompactions) merged in parallel.

:meth:`CompactionExecutor.execute` takes this path when the job needs nothing but the
compaction kernel (:class:`shale.spi.CompactionKernel`: merge, retention, resume skip and SST
data blocks in one compiled loop that runs without the GIL): no merge operator, no compaction
filter, plain output blocks (no compression, no block transformer) and only filter policies
that build from key hashes (the default ``_bf`` bloom filter; a prefix bloom such as
``"_bf:p=fixed4"`` needs the keys, has no ``build_hashed``, and so does not). Everything else
takes the general row pipeline of :mod:`shale_compactor.executor`, which this path writes
identically.

Subcompactions (SlateDB RFC-0028's key-range splits of one job):

* **Split.** The job's key range (from the resume key on) is cut at block boundaries of its
  sources -- the index keys of every L0 SST and of the sorted runs' SSTs (or, for runs of many
  SSTs, their first keys), weighted by the blocks' sizes -- into up to
  ``compactor_options.max_subcompactions`` ranges ``[lo, hi)`` of about equal bytes, none
  smaller than :data:`MIN_RANGE_BYTES` (``max_subcompactions`` 0: half the CPUs, at most 4).
  A key's versions are all in one range, so retention decides the same way.
* **Run.** Range 0 runs on the executing thread, the others on worker threads (the kernel
  releases the GIL, so they use other cores; threads, not processes: nothing to pickle and no
  interpreter to start). Each range reads its own windows of its sources (restricted to its
  range) and writes its own output SSTs, split at ``max_sst_size`` as usual.
* **Report in key order.** ``on_output`` sees range 0's outputs as they are written and every
  other range's once all ranges before it are complete, so the recorded outputs are always a
  prefix of the job's output in key order: a resume (``resume_outputs``) continues after the
  last one, and the outputs of later ranges that were written but not reported are orphans
  that garbage collection removes (as after a killed job). The job is committed by the caller
  in one manifest update, as before; the compactor's epoch fences as before.
* **Fail together.** A failing range stops the others (at their next window or output batch)
  and its error is the job's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shale.spi import (
    KERNEL_DONE,
    KERNEL_SPLIT,
    CompactedSst,
    CompactionKernel,
    DataError,
    SortedRun,
    SsTable,
    SstView,
)
from shale_compactor.outputs import Output
from shale_compactor.sources import (
    PROGRESS_INTERVAL_S,
    CompactionStopped,
    _estimated_size,
    _Progress,
    _ReadAhead,
    _view_bounds,
    window_bytes,
)

if TYPE_CHECKING:
    from shale_compactor.executor import CompactionExecutor, CompactionJob

__all__ = [
    "DIRECT_OUT_BYTES",
    "MIN_RANGE_BYTES",
    "OUT_BYTES",
    "kernel_applies",
    "parallelism",
    "split_points",
]

#: A job is split only into ranges of at least this many source bytes.
MIN_RANGE_BYTES = 32 * 1024 * 1024
#: Finished blocks handed to the upload thread per kernel call (bytes): each hand-off takes
#: the GIL, which beside a busy writer costs up to a switch interval (see ``window_bytes``).
OUT_BYTES = 2 << 20
#: Bytes a kernel call writes into an output file itself (stores that offer ``fileno``: the
#: local store) before it returns to report progress and check ``stop``.
DIRECT_OUT_BYTES = 16 << 20


def kernel_applies(executor: CompactionExecutor, filters: list[Any]) -> bool:
    """Whether the kernel can run ``executor``'s jobs (see the module docstring)."""
    return (
        executor.merge_operator is None
        and not filters
        and executor._codec == 0
        and executor.transformer is None
        and all(hasattr(p, "build_hashed") for p in executor.filter_policies)
    )


def parallelism(options: Any) -> int:
    """``max_subcompactions``, with 0 meaning half the CPUs, at most 4 (at least 1): the
    compaction leaves the other half to the database's writer and readers, and on a busy
    2-CPU machine a second range only competes with them (measured: docs/performance.md)."""
    n = int(getattr(options, "max_subcompactions", 0) or 0)
    if n <= 0:
        n = min((os.cpu_count() or 1) // 2, 4)
    return max(1, n)


# -- splitting --------------------------------------------------------------------------------


class _Tables:
    """The job's source SSTs, each opened (footer, info, index) once and shared by the ranges,
    which read its blocks through their own read-ahead (``SsTable.scan_windows(read=...)``)."""

    def __init__(self, executor: CompactionExecutor) -> None:
        self._executor = executor
        self._tables: dict[Any, tuple[SsTable, Any, str]] = {}
        self._lock = threading.Lock()

    def open(
        self, view: SstView, keep: bool = True, progress: _Progress | None = None
    ) -> tuple[SsTable, Any, str]:
        """``(table, store, key)`` of a view's SST; ``keep``: for the other ranges too (the
        L0 SSTs; a sorted run's SSTs are opened by each range that reads them, so a long run's
        indexes are not all held at once); ``progress`` counts the metadata read when the SST
        is opened here."""
        sid = view.sst.id
        with self._lock:
            got = self._tables.get(sid)
        if got is None:
            ex = self._executor
            store, key = ex.ssts.locate(sid)
            table = SsTable.open(store, key, policies=(), transformer=ex.transformer, remote=False)
            if table.is_wal:
                raise DataError("a WAL SST is listed as a compacted SST", sst=str(sid))
            got = (table, store, key)
            if progress is not None:
                progress.bytes += table.size - table.data_end
            if keep:
                with self._lock:
                    self._tables[sid] = got
        return got


def split_points(
    executor: CompactionExecutor,
    job: CompactionJob,
    lo: bytes | None,
    n: int,
    tables: _Tables | None = None,
) -> list[bytes]:
    """Up to ``n - 1`` increasing keys above ``lo`` cutting the job into ranges of about equal
    source bytes (none below :data:`MIN_RANGE_BYTES`)."""
    if n <= 1:
        return []
    tables = tables or _Tables(executor)
    points: list[tuple[bytes, int]] = []
    for view in job.l0:
        points += tables.open(view)[0].blocks()
    for run in job.runs:
        if len(run.ssts) >= n:
            points += [
                (v.sst.info.first_entry or b"", _estimated_size(v.sst.info)) for v in run.ssts
            ]
        else:
            for view in run.ssts:
                points += tables.open(view)[0].blocks()
    points = sorted(p for p in points if p[0] and (lo is None or p[0] > lo))
    total = sum(size for _, size in points)
    n = min(n, total // MIN_RANGE_BYTES)
    cuts: list[bytes] = []
    acc = 0
    target = 1
    for key, size in points:
        if target >= n:
            break
        if acc >= total * target / n and (not cuts or key > cuts[-1]):
            cuts.append(key)
            target += 1
        acc += size
    return cuts


# -- running ----------------------------------------------------------------------------------


class _Either:
    """``is_set`` of either of two events (the caller's stop, the job's halt)."""

    __slots__ = ("_a", "_b")

    def __init__(self, a: threading.Event | None, b: threading.Event) -> None:
        self._a = a
        self._b = b

    def is_set(self) -> bool:
        return self._b.is_set() or (self._a is not None and self._a.is_set())


def _source(windows: Iterator[Any]) -> Callable[[], Any]:
    def next_window() -> Any:
        return next(windows, None)

    return next_window


def execute(
    executor: CompactionExecutor,
    job: CompactionJob,
    resume: tuple[bytes, int] | None,
    progress: _Progress,
    fetch_pool: ThreadPoolExecutor,
    stop: threading.Event | None,
    on_output: Callable[[CompactedSst], None],
    on_progress: Callable[[int], None] | None,
) -> list[CompactedSst]:
    """Run ``job`` through the kernel, split into ranges; return the new outputs in order."""
    executor.ssts.observe(job.external_dbs)
    lo = None if resume is None else resume[0]
    tables = _Tables(executor)
    cuts = split_points(executor, job, lo, parallelism(executor.options), tables)
    bounds: list[bytes | None] = [lo, *cuts, None]
    halt = threading.Event()
    guard = _Either(stop, halt)
    if len(bounds) == 2:
        return _run_range(
            executor,
            job,
            tables,
            lo,
            None,
            resume,
            progress,
            fetch_pool,
            guard,
            on_output,
            on_progress,
        )
    futures: list[Future[list[CompactedSst]]] = []

    def halt_on_error(f: Future[list[CompactedSst]]) -> None:
        if f.cancelled() or f.exception() is not None:
            halt.set()

    with ThreadPoolExecutor(
        max_workers=len(bounds) - 2, thread_name_prefix="shale-subcompaction"
    ) as workers:
        for k in range(1, len(bounds) - 1):
            f = workers.submit(
                _run_range,
                executor,
                job,
                tables,
                bounds[k],
                bounds[k + 1],
                None,
                progress,
                fetch_pool,
                guard,
                None,
                None,
            )
            f.add_done_callback(halt_on_error)
            futures.append(f)
        try:
            outputs = _run_range(
                executor,
                job,
                tables,
                lo,
                bounds[1],
                resume,
                progress,
                fetch_pool,
                guard,
                on_output,
                on_progress,
            )
            for f in futures:
                for sst in f.result():
                    outputs.append(sst)
                    on_output(sst)
                if on_progress is not None:
                    on_progress(progress.bytes)
        except BaseException as exc:
            halt.set()
            if isinstance(exc, CompactionStopped) and not (stop is not None and stop.is_set()):
                # halted by a failing range: that failure is the job's error
                for f in futures:
                    err = f.exception()
                    if err is not None and not isinstance(err, CompactionStopped):
                        raise err from None
            raise
    return outputs


def _view_windows(
    executor: CompactionExecutor,
    tables: _Tables,
    keep: bool,
    view: SstView,
    lo: bytes | None,
    hi: bytes | None,
    resume_key: bytes | None,
    progress: _Progress,
    pool: ThreadPoolExecutor,
    stop: Any,
    readers: list[Any],
    sources: int,
) -> Iterator[Any]:
    """The windows of one view's blocks with keys in ``[lo, hi)`` and its visible range
    (``sources``: how many sources the range merges, for the window size)."""
    start, end = _view_bounds(view, lo)
    if hi is not None and (end is None or hi < end):
        end = hi
    info = view.sst.info
    if start is not None and end is not None and start >= end:
        return
    if start is not None and info.last_entry is not None and info.last_entry < start:
        if resume_key is not None and lo == resume_key:
            progress.bytes += _estimated_size(info)  # wholly before the resume point
        return
    if end is not None and info.first_entry is not None and info.first_entry >= end:
        return
    table, store, key = tables.open(view, keep, progress)
    reader = _ReadAhead(
        store,
        key,
        table.size,
        # a local store has no latency to hide: read on this thread (no GIL hand-offs)
        pool=None if getattr(store, "serves_locally", False) else pool,
        window=window_bytes(store, int(executor.settings.block_size), sources),
        depth=max(1, int(executor.options.max_fetch_tasks)),
        progress=_Progress(),  # counted per window below (some come from the table's tail)
        stop=stop,
    )
    readers.append(reader)

    def read(a: int, b: int) -> bytes:
        return reader.get_range(key, a, b)

    for w in table.scan_windows(start, end, window=reader.window, plain=True, read=read):
        progress.bytes += w[1][-1]
        yield w
    reader.close()  # free its read-ahead windows now, not at the end of the job
    readers.remove(reader)


def _run_windows(
    executor: CompactionExecutor, tables: _Tables, run: SortedRun, *args: Any
) -> Iterator[Any]:
    for view in run.ssts:
        yield from _view_windows(executor, tables, False, view, *args)


def _run_kernel(kernel: Any, out: Output, fd: int | None, writer: Any, max_size: int) -> int:
    """``kernel.run`` for output ``out``: with a direct file (``fd``) the kernel writes the
    finished blocks itself (no GIL hand-off per piece) and they are accounted to ``out``; else
    they stay in ``writer.chunks`` for :meth:`Output.feed`."""
    if fd is None:
        return int(kernel.run(writer, max_size, OUT_BYTES))
    try:
        rc = int(kernel.run(writer, max_size, DIRECT_OUT_BYTES, fd))
    except OSError as exc:
        raise out.write_error(exc) from exc
    out.wrote(writer.size - out.direct_bytes)
    return rc


def _finish_kernel_sst(kernel: Any, out: Output, fd: int | None, writer: Any) -> Any:
    """``kernel.finish_sst`` for output ``out`` (see :func:`_run_kernel`)."""
    if fd is None:
        return kernel.finish_sst(writer)
    try:
        hashes = kernel.finish_sst(writer, fd)
    except OSError as exc:
        raise out.write_error(exc) from exc
    out.wrote(writer.size - out.direct_bytes)
    return hashes


def _run_range(
    executor: CompactionExecutor,
    job: CompactionJob,
    tables: _Tables,
    lo: bytes | None,
    hi: bytes | None,
    resume: tuple[bytes, int] | None,
    progress: _Progress,
    pool: ThreadPoolExecutor,
    stop: Any,
    on_output: Callable[[CompactedSst], None] | None,
    on_progress: Callable[[int], None] | None,
) -> list[CompactedSst]:
    """One range's outputs (reported through ``on_output`` when given)."""
    resume_key = None if resume is None else resume[0]
    readers: list[Any] = []
    args = (lo, hi, resume_key, progress, pool, stop, readers, len(job.l0) + len(job.runs))
    sources = [_source(_view_windows(executor, tables, True, v, *args)) for v in job.l0]
    sources += [_source(_run_windows(executor, tables, r, *args)) for r in job.runs]
    kernel = CompactionKernel(
        sources,
        block_size=int(executor.settings.block_size),
        compaction_clock_tick=job.compaction_clock_tick,
        retention_min_seq=job.retention_min_seq,
        filter_tombstones=job.is_dest_last_run,
        resume=resume,
        hash_keys=bool(executor.filter_policies),
    )
    max_size = int(executor.options.max_sst_size)
    outputs: list[CompactedSst] = []
    monotonic = time.monotonic
    next_report = monotonic() + PROGRESS_INTERVAL_S
    upload_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shale-compaction-put")
    out: Output | None = None
    try:
        builder = executor._builder()
        out = Output(executor, upload_pool)
        fd = out.direct_fd()
        while True:
            rc = _run_kernel(kernel, out, fd, builder.writer, max_size)
            if stop.is_set():
                raise CompactionStopped("compaction stopped", compaction=str(job.id))
            if rc == KERNEL_SPLIT or (rc == KERNEL_DONE and len(builder)):
                hashes = _finish_kernel_sst(kernel, out, fd, builder.writer)
                out.feed(builder.finish_parts(key_hashes=hashes))
                out.commit(stop)
                sst = CompactedSst(out.sst_id, builder.info, 2)
                outputs.append(sst)
                if on_output is not None:
                    on_output(sst)
                if on_progress is not None:
                    on_progress(progress.bytes)
                    next_report = monotonic() + PROGRESS_INTERVAL_S
                out = None
                if rc == KERNEL_DONE:
                    break
                builder = executor._builder()
                out = Output(executor, upload_pool)
                fd = out.direct_fd()
            elif rc == KERNEL_DONE:
                break  # nothing after the last split
            else:
                out.feed(builder.take_parts())
            if on_progress is not None and monotonic() >= next_report:
                on_progress(progress.bytes)
                next_report = monotonic() + PROGRESS_INTERVAL_S
    finally:
        if out is not None:
            out.abort()
        upload_pool.shutdown(wait=True)
        for r in readers:
            r.close()
    return outputs
