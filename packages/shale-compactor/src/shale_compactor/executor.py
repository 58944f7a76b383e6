"""The compaction executor: merges source SSTs into the SSTs of one destination sorted run.

A :class:`CompactionJob` names its sources -- L0 SST views (newest first; each its own sorted
source) and sorted runs (newest first; each run is its views concatenated in key order) -- and
:meth:`CompactionExecutor.execute` streams them through::

    MergeIterator (shale.merge, Cython)          every version of every key, newest first
    -> merge operands / "operator missing"       shale_compactor.retention
    -> retention (snapshots, expiry, tombstones)
    -> resume skip (job.resume_outputs)
    -> compaction filters                        shale_compactor.filters
    -> SstBuilder, split at max_sst_size         uploaded to compacted/<ULID>.sst

This is SlateDB 0.12.1's ``compactor_executor.rs``. Invariants and why:

* **Resumable.** Each output is uploaded and reported through ``on_output`` before the next is
  started, so the caller can record it (the ``.compactions`` file). A job restarted with those
  outputs in ``resume_outputs`` reads the last row ``(key, seq)`` of the last one, starts every
  source at ``key`` and skips that key's rows with seq ``>= seq`` *after* retention (which must
  see all of a key's versions to decide the same way); the resumed outputs then continue
  exactly where the interrupted run stopped, and ``resume_outputs + new outputs`` hold the
  same rows as an uninterrupted run. Compaction filters run after the skip, so a resumed job's
  filter sees only rows not yet written (SlateDB's documented contract; its code filters the
  skipped rows of the resume key too, which only a stateful filter could notice).
* **Same split points as SlateDB.** An output is closed right after the row whose block
  closing pushed the finished-block bytes above ``max_sst_size`` (that row opens the SST's
  last block), as SlateDB's writer does; an output is never empty.
* **Visible ranges** of SST views are honoured (rows outside are not sources).
* **Uncached reads with read-ahead.** Blocks are not put in any block cache (a compaction
  would evict the readers' working set). Each SST is read sequentially in windows of
  ``256 x block_size`` bytes (SlateDB's ``blocks_to_fetch``), each window decoded in one call
  (``SsTable.scan_rows``), with up to ``max_fetch_tasks`` windows fetched ahead on background
  threads, so object-store latency overlaps merging -- except from stores that serve reads
  locally (``serves_locally``, the local store), read on the executing thread (the kernel path
  reads those in larger windows, :func:`~shale_compactor.sources.window_bytes`).
* **Streamed outputs.** The rows go to the SST data writer 1024 at a time
  (``SstBuilder.add_until``); stores with ``open_writer`` get each output's finished blocks
  written on an upload thread while the next rows are merged (``fdatasync`` every
  :data:`SYNC_EVERY_BYTES`; at most :data:`~shale_compactor.outputs.MAX_QUEUED_BYTES` wait
  for it, then the merge waits), then published by fsync + rename; other stores get one
  retried ``put`` of the whole SST. On the kernel path, a store whose stream offers its file
  (``fileno``: the local store) gets the data blocks written by the kernel itself, without the
  GIL, the periodic ``fdatasync`` still on the upload thread
  (:data:`~shale_compactor.subcompactions.DIRECT_OUT_BYTES`).
* **Stoppable.** ``stop`` is checked before every read (a window of blocks) and every 1024
  written rows; a stop raises :class:`CompactionStopped` and leaves the outputs reported so far
  valid for a resume (an unreported, partially built output is never published; a streamed
  one's staging file is removed).
* **Progress** is the number of source bytes consumed (plus, on resume, the size of the SSTs
  wholly before the resume key), reported through ``on_progress`` at most once a second and
  after each output.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shale.spi import (
    CompactedSst,
    DataError,
    ExternalDb,
    InvalidError,
    MergeIterator,
    RetryPolicy,
    SortedRun,
    SsTable,
    SstBuilder,
    SstLocator,
    SstView,
    TransientStoreError,
    Ulid,
    compacted_path,
    get_logger,
)
from shale_compactor import subcompactions
from shale_compactor.filters import (
    CompactionJobContext,
    PluginFilterSupplier,
    apply_filters,
    create_filters,
)
from shale_compactor.outputs import SYNC_EVERY_BYTES, Output
from shale_compactor.retention import compaction_rows, skip_written
from shale_compactor.sources import (
    BLOCKS_PER_FETCH,
    PROGRESS_INTERVAL_S,
    CompactionStopped,
    _estimated_size,
    _Progress,
    _ReadAhead,
    _view_bounds,
)

__all__ = [
    "SYNC_EVERY_BYTES",
    "CompactionExecutor",
    "CompactionJob",
    "CompactionStopped",
    "last_written_key_and_seq",
]

log = get_logger(__name__)

#: Rows written between two checks of ``stop`` and of the progress clock.
CHECK_EVERY_ROWS = 1024

#: Retries of an output upload when ``object_store_max_retries`` is unset.
UPLOAD_RETRIES = 7


@dataclass(frozen=True)
class CompactionJob:
    """One compaction job: sources, destination and the retention parameters.

    :ivar id: the compaction id (a ULID), for logs.
    :ivar l0: L0 source views, newest first.
    :ivar runs: sorted-run sources, newest (highest id) first.
    :ivar destination: the output sorted run's id.
    :ivar is_dest_last_run: the destination is the oldest run after this compaction, so
        tombstones can be dropped.
    :ivar retention_min_seq: versions needed by snapshots at or above this seq are kept
        (``manifest.recent_snapshot_min_seq``); ``None``: no snapshot protection (only the
        newest version of each key survives).
    :ivar compaction_clock_tick: expiry is judged against this time in ms
        (``manifest.last_l0_clock_tick``).
    :ivar resume_outputs: outputs already written by an interrupted run of this job, in order.
    :ivar external_dbs: the manifest's clone sources: sources listed there are read under the
        source database's path (:class:`shale.meta.locator.SstLocator`); outputs always go to this
        database's own ``compacted/``.
    """

    id: Ulid
    l0: list[SstView]
    runs: list[SortedRun]
    destination: int
    is_dest_last_run: bool
    retention_min_seq: int | None
    compaction_clock_tick: int
    resume_outputs: list[CompactedSst] = field(default_factory=list)
    external_dbs: list[ExternalDb] = field(default_factory=list)


# -- reading ----------------------------------------------------------------------------------


def last_written_key_and_seq(
    store: Any, root: str, sst: CompactedSst, *, transformer: Any = None
) -> tuple[bytes, int] | None:
    """The last row's ``(key, seq)`` of an output SST (SlateDB's ``last_written_key_and_seq``).

    :raises DataError: the SST is missing or corrupt.
    """
    table = SsTable.open(store, compacted_path(root, sst.id), policies=(), transformer=transformer)
    if table.block_count == 0:
        return None
    rows = table.read_block(table.block_count - 1)
    if not rows:
        return None
    last = rows[-1]
    return (last[0], last[1])


# -- the executor -----------------------------------------------------------------------------


class CompactionExecutor:
    """Runs compaction jobs against one database's object store.

    :param store: the object store (:class:`shale.objstore.ObjectStore`).
    :param root: the database's path inside the store.
    :param settings: the database's :class:`shale.settings.Settings` (block size, compression,
        ``min_filter_keys``, filter policy names, merge operator name, and
        ``compactor_options.max_sst_size`` / ``max_fetch_tasks``).
    :param merge_operator: the merge operator; ``None``: the one ``settings.merge_operator``
        names, resolved through the plugins (none if unnamed).
    :param filter_supplier: a :class:`shale_compactor.filters.CompactionFilterSupplier`;
        ``None``: :class:`~shale_compactor.filters.PluginFilterSupplier` (every plugin's
        ``shale_compaction_filter`` hook; plugins that are not configured return no filter).
    :param filter_policies: filter policies for new SSTs; ``None``: those of
        ``settings.filter_policies``, resolved through the plugins.
    :param transformer: the block transformer; ``None``: the plugins' (usually none).
    :param clock: an object with ``now_ms()`` (ULID timestamps); the system clock by default.
    :param rand: a :class:`random.Random` for ULIDs; ``None``: OS randomness.
    """

    def __init__(
        self,
        store: Any,
        root: str,
        *,
        settings: Any,
        merge_operator: Any = None,
        filter_supplier: Any = None,
        filter_policies: Sequence[Any] | None = None,
        transformer: Any = None,
        clock: Any = None,
        rand: random.Random | None = None,
    ) -> None:
        from shale.spi import (
            CompactorOptions,
            check_codec,
            check_filter_policies,
            check_merge_operator,
            check_transformer,
        )

        # components are checked up front: a missing codec library must not fail every job
        self._codec = check_codec(settings.compression_codec)
        self.store = store
        self.root = root
        self.ssts = SstLocator(store, root)
        self.settings = settings
        self.options = getattr(settings, "compactor_options", None) or CompactorOptions()
        #: How output uploads are retried: ``settings.object_store_max_retries``; unset, an
        #: upload gives up after UPLOAD_RETRIES so the job fails (and is retried by the
        #: compactor's back-off) rather than retrying forever.
        budget = getattr(settings, "object_store_max_retries", None)
        self.retry = RetryPolicy(max_retries=UPLOAD_RETRIES if budget is None else budget)
        host = None
        if merge_operator is None and getattr(settings, "merge_operator", None):
            host = self._host()
            merge_operator = host.merge_operator(settings.merge_operator)
            if merge_operator is None:
                raise InvalidError(
                    "no plugin offers the configured merge operator",
                    merge_operator=settings.merge_operator,
                )
        self.merge_operator = check_merge_operator(merge_operator)
        self.filter_supplier = (
            filter_supplier if filter_supplier is not None else PluginFilterSupplier()
        )
        if filter_policies is None:
            host = host or self._host()
            filter_policies = host.configured_filter_policies(settings)
        self.filter_policies = check_filter_policies(filter_policies)
        if transformer is None:
            transformer = (host or self._host()).block_transformer(settings)
        self.transformer = check_transformer(transformer)
        if clock is None:
            from shale.spi import SystemClock

            clock = SystemClock()
        self.clock = clock
        self.rand = rand
        #: Run jobs that need nothing else through the compaction kernel, in key ranges
        #: (:mod:`shale_compactor.subcompactions`); ``False``: always the row pipeline.
        self.use_kernel = True

    @staticmethod
    def _host() -> Any:
        from shale.spi import get_host

        return get_host()

    # -- public -------------------------------------------------------------------------------

    def execute(
        self,
        job: CompactionJob,
        *,
        on_output: Callable[[CompactedSst], None],
        on_progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> list[CompactedSst]:
        """Run ``job``: write the destination run's SSTs; return them in key order.

        :param on_output: called with each new output right after its upload (record it for
            a resume before returning).
        :param on_progress: called with the source bytes processed so far, at most once a
            second and after each output.
        :param stop: when set, the job stops at the next block or 1024 rows.
        :return: ``job.resume_outputs`` followed by the new outputs.
        :raises CompactionStopped: ``stop`` was set.
        :raises CompactionFilterError: a compaction filter failed (the job is aborted).
        :raises InvalidError: merge operands without a merge operator, or a failing operator.
        :raises DataError: a source or resume output is corrupt or missing.
        """
        started = time.monotonic()
        log.debug(
            "executing compaction %s -> SR %d (%d L0, %d runs, %d resume outputs)",
            job.id,
            job.destination,
            len(job.l0),
            len(job.runs),
            len(job.resume_outputs),
        )
        if stop is not None and stop.is_set():
            raise CompactionStopped("compaction stopped", compaction=str(job.id))
        resume, filters = self._prepare(job)
        progress = _Progress()
        pool = self._fetch_pool()
        readers: list[_ReadAhead] = []
        try:
            if self.use_kernel and subcompactions.kernel_applies(self, filters):
                outputs = subcompactions.execute(
                    self, job, resume, progress, pool, stop, on_output, on_progress
                )
            else:
                rows = self._rows(job, resume, filters, progress, pool, stop, readers)
                outputs = self._write(job, rows, progress, on_output, on_progress, stop)
        finally:
            for r in readers:
                r.close()
            pool.shutdown(wait=False, cancel_futures=True)
        elapsed = time.monotonic() - started
        log.info(
            "compaction %s -> SR %d wrote %d SSTs; %d source bytes in %.2fs (%.1f MB/s)",
            job.id,
            job.destination,
            len(outputs) - len(job.resume_outputs),
            progress.bytes,
            elapsed,
            progress.bytes / max(elapsed, 1e-9) / 1e6,
        )
        return list(job.resume_outputs) + outputs

    def iter_rows(
        self, job: CompactionJob, *, stop: threading.Event | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """The rows :meth:`execute` would write for ``job``, without writing anything.

        After retention, resume skipping (``job.resume_outputs``) and compaction filters (whose
        ``on_compaction_end`` runs when the rows are exhausted). For inspection and tests; close
        the generator when stopping early.
        """
        resume, filters = self._prepare(job)
        pool = self._fetch_pool()
        readers: list[_ReadAhead] = []
        try:
            yield from self._rows(job, resume, filters, _Progress(), pool, stop, readers)
        finally:
            for r in readers:
                r.close()
            pool.shutdown(wait=False, cancel_futures=True)

    def _prepare(self, job: CompactionJob) -> tuple[tuple[bytes, int] | None, list[Any]]:
        """The resume cursor (last written ``(key, seq)``) and the job's filters."""
        resume = None
        if job.resume_outputs:
            resume = last_written_key_and_seq(
                self.store, self.root, job.resume_outputs[-1], transformer=self.transformer
            )
        context = CompactionJobContext(
            destination=job.destination,
            is_dest_last_run=job.is_dest_last_run,
            compaction_clock_tick=job.compaction_clock_tick,
            retention_min_seq=job.retention_min_seq,
        )
        return resume, create_filters(self.filter_supplier, context)

    def _fetch_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=max(1, int(self.options.max_fetch_tasks)),
            thread_name_prefix="shale-compaction-fetch",
        )

    # -- sources ------------------------------------------------------------------------------

    def _open(
        self,
        view: SstView,
        progress: _Progress,
        pool: ThreadPoolExecutor,
        stop: threading.Event | None,
        readers: list[_ReadAhead],
    ) -> tuple[SsTable, _ReadAhead]:
        store, key = self.ssts.locate(view.sst.id)
        size = store.head(key).size
        reader = _ReadAhead(
            store,
            key,
            size,
            # a local store has no latency to hide: read on this thread (no GIL hand-offs)
            pool=None if getattr(store, "serves_locally", False) else pool,
            window=BLOCKS_PER_FETCH * int(self.settings.block_size),
            depth=max(1, int(self.options.max_fetch_tasks)),
            progress=progress,
            stop=stop,
        )
        readers.append(reader)
        # the executor reads ahead itself (_ReadAhead): no second prefetch in the table
        table = SsTable.open(
            reader, key, size=size, policies=(), transformer=self.transformer, remote=False
        )
        return table, reader

    def _view_blocks(
        self,
        view: SstView,
        resume_key: bytes | None,
        progress: _Progress,
        pool: ThreadPoolExecutor,
        stop: threading.Event | None,
        readers: list[_ReadAhead],
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of one view, from ``resume_key`` on, within its visible range, one list per
        block (the source iterates them with ``itertools.chain.from_iterable``: no Python
        frame per row)."""
        start, end = _view_bounds(view, resume_key)
        info = view.sst.info
        if start is not None and end is not None and start >= end:
            return
        if start is not None and info.last_entry is not None and info.last_entry < start:
            if resume_key is not None:
                progress.bytes += _estimated_size(info)  # wholly before the resume point
            return
        if end is not None and info.first_entry is not None and info.first_entry >= end:
            return
        table, reader = self._open(view, progress, pool, stop, readers)
        if table.is_wal:
            raise DataError("a WAL SST is listed as a compacted SST", sst=str(view.sst.id))
        # windows of blocks, each read and decoded in one call (no block cache)
        yield from table.scan_blocks(start, end, window=reader.window)
        reader.close()  # free its read-ahead windows now, not at the end of the job
        readers.remove(reader)

    def _run_blocks(
        self,
        run: SortedRun,
        resume_key: bytes | None,
        progress: _Progress,
        pool: ThreadPoolExecutor,
        stop: threading.Event | None,
        readers: list[_ReadAhead],
    ) -> Iterator[list[tuple[Any, ...]]]:
        """A sorted run's rows: its views in key order, each opened when reached."""
        for view in run.ssts:
            yield from self._view_blocks(view, resume_key, progress, pool, stop, readers)

    def _rows(
        self,
        job: CompactionJob,
        resume: tuple[bytes, int] | None,
        filters: list[Any],
        progress: _Progress,
        pool: ThreadPoolExecutor,
        stop: threading.Event | None,
        readers: list[_ReadAhead],
    ) -> Iterable[tuple[Any, ...]]:
        resume_key = None if resume is None else resume[0]
        self.ssts.observe(job.external_dbs)
        chain = itertools.chain.from_iterable
        sources: list[Iterable[tuple[Any, ...]]] = [
            chain(self._view_blocks(v, resume_key, progress, pool, stop, readers)) for v in job.l0
        ]
        sources += [
            chain(self._run_blocks(r, resume_key, progress, pool, stop, readers)) for r in job.runs
        ]
        rows: Iterable[tuple[Any, ...]] = compaction_rows(
            MergeIterator(sources),
            merge_operator=self.merge_operator,
            retention_min_seq=job.retention_min_seq,
            filter_tombstones=job.is_dest_last_run,
            compaction_clock_tick=job.compaction_clock_tick,
        )
        if resume is not None:
            rows = skip_written(rows, resume[0], resume[1])
        if filters:
            rows = apply_filters(rows, filters)
        return rows

    # -- writing ------------------------------------------------------------------------------

    def _builder(self) -> SstBuilder:
        s = self.settings
        return SstBuilder(
            block_size=s.block_size,
            compression=self._codec,
            filter_policies=self.filter_policies,
            min_filter_keys=s.min_filter_keys,
            transformer=self.transformer,
        )

    def _put(self, key: str, parts: list[bytes], stop: threading.Event | None) -> None:
        """Upload a whole output with ``put``, retried (stores that cannot stream, or a stream
        that failed)."""
        data = b"".join(parts)
        try:
            self.retry.call(lambda: self.store.put(key, data), what=f"upload of {key}", stop=stop)
        except TransientStoreError as exc:
            if stop is not None and stop.is_set():
                raise CompactionStopped("compaction stopped") from exc
            raise

    def _write(
        self,
        job: CompactionJob,
        rows: Iterable[tuple[Any, ...]],
        progress: _Progress,
        on_output: Callable[[CompactedSst], None],
        on_progress: Callable[[int], None] | None,
        stop: threading.Event | None,
    ) -> list[CompactedSst]:
        max_size = int(self.options.max_sst_size)
        outputs: list[CompactedSst] = []
        monotonic = time.monotonic
        next_report = monotonic() + PROGRESS_INTERVAL_S

        upload_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shale-compaction-put")
        out: Output | None = None

        def finish(b: SstBuilder, o: Output) -> None:
            o.feed(b.finish_parts())
            o.commit(stop)
            sst = CompactedSst(o.sst_id, b.info, 2)
            outputs.append(sst)
            on_output(sst)
            if on_progress is not None:
                on_progress(progress.bytes)

        try:
            builder = self._builder()
            out = Output(self, upload_pool)
            it = iter(rows)
            while True:
                # up to CHECK_EVERY_ROWS rows per call (the per-row loop runs in the data
                # writer); the blocks they finished go to the store on the upload thread
                n = builder.add_until(it, CHECK_EVERY_ROWS, max_size)
                if builder.finished_size > max_size:
                    finish(builder, out)
                    builder = self._builder()
                    out = Output(self, upload_pool)
                    next_report = monotonic() + PROGRESS_INTERVAL_S
                elif n < CHECK_EVERY_ROWS:
                    break  # the rows are exhausted
                else:
                    out.feed(builder.take_parts())
                if stop is not None and stop.is_set():
                    raise CompactionStopped("compaction stopped", compaction=str(job.id))
                if on_progress is not None and monotonic() >= next_report:
                    on_progress(progress.bytes)
                    next_report = monotonic() + PROGRESS_INTERVAL_S
            if len(builder):
                if stop is not None and stop.is_set():
                    raise CompactionStopped("compaction stopped", compaction=str(job.id))
                finish(builder, out)
            out = None
        finally:
            if out is not None:
                out.abort()
            upload_pool.shutdown(wait=True)
        return outputs
