"""The read side of one writer and many readers: :class:`DbReader` (SlateDB's ``DbReader``).

A reader opens a database that a writer (in another process, on another host) may be writing,
and reads what that writer has made durable: the manifest's SSTs plus the WAL SSTs written
since the last L0 flush, which it replays into reader-local tables. It never fences the writer
and writes nothing -- no manifest version, epoch, WAL or L0 SST -- except, in the default
``"managed_checkpoint"`` mode, the checkpoint that keeps GC from deleting what it reads.

Modes (``mode=``, SlateDB's ``ReaderMode``), options (:class:`shale.ReaderOptions`), and how a
state moves forward are in :mod:`shale._reader_view`; docs/reader.md is the user's guide.

Invariants and why:

* **Reads are the writer's reads.** The reader is built by the engine's ``build_reader`` from a
  table store, a ``DbState``, an oracle, a ``Reader`` and a snapshot manager, with no writer,
  WAL or flusher. ``get``, ``scan`` and snapshots run the same code as a writer's, so they
  answer the same at the same seq.
* **It sees durable data only**, so ``durability="remote"`` and ``"memory"`` answer the same.
* **A poller thread** (modes other than ``"checkpoint"``) calls the view's poll every
  ``manifest_poll_interval``; it waits on ``DbStatus.stop``, so ``close()`` ends it at once. A
  failed poll is logged and tried again next interval; the reader keeps its last state.
  :meth:`DbReader.refresh` polls now, in the calling thread.
* **A snapshot keeps its state** across polls (a frozen copy of ``DbState``). In
  ``"follow_latest"`` mode GC may delete what an old snapshot reads; a ``get`` or ``scan`` of
  the reader itself that finds an SST gone polls and retries once.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from shale import telemetry
from shale._reader_view import LOAD_ATTEMPTS, MODES, ReaderMode, ReaderView, parse_checkpoint_id
from shale.batch import check_key
from shale.cache import BlockCache
from shale.clock import Clock
from shale.db import flat_metrics_of, handle_snapshot, preload_disk_cache, resolve_parts
from shale.engine.builder import EngineParts, ReaderParts, build_reader
from shale.engine.components import check_scan_fetch
from shale.engine.db_inner import metrics
from shale.engine.db_iter import DbIterator
from shale.engine.db_snapshot import DbSnapshot
from shale.engine.db_status import Wait
from shale.engine.oracle import DURABILITY_MEMORY
from shale.engine.reader import KeyValue
from shale.errors import ClosedError, InvalidError, ShaleError
from shale.fbs.manifest import Checkpoint, Manifest
from shale.keys import KeysValues, check_scan_range, prefix_range, scan_bounds
from shale.mapping import ReadOnlyDbMapping
from shale.meta import segments
from shale.metrics import MetricsRegistry, MetricsSnapshot
from shale.namespace import ReadOnlyNamespace
from shale.objstore import ObjectNotFound, ObjectStore
from shale.objstore.cached import CachedObjectStore
from shale.objstore.protocol import PermanentStoreError
from shale.settings import Durability, ReaderOptions, Settings

__all__ = [
    "LOAD_ATTEMPTS",
    "MODES",
    "DbReader",
    "ReaderIterator",
    "ReaderMode",
    "ReaderOptions",
    "parse_checkpoint_id",
]

log = logging.getLogger(__name__)


class DbReader:
    """A read-only handle on a database another process may be writing.

    Open it with :meth:`open`; use it as a context manager or call :meth:`close`. Thread-safe.
    See the module docstring and docs/reader.md.
    """

    def __init__(
        self, parts: EngineParts, engine: ReaderParts, view: ReaderView, *, owns_store: bool
    ) -> None:
        self._parts = parts
        self._engine = engine
        self._view = view
        self._owns_store = owns_store
        #: the registry this handle records into (``None``: metrics off); docs/metrics.md
        self.metrics_registry: MetricsRegistry | None = parts.metrics
        m = parts.engine_metrics()
        self._m_get = None if m is None else m.get
        self._m_scan = None if m is None else m.scan
        self._get_calls = None if m is None else m.get.calls
        if parts.metrics is not None:
            parts.metrics.add_collector(
                telemetry.legacy_collector(flat_metrics_of(weakref.ref(self)))
            )

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        settings: Settings | None = None,
        *,
        checkpoint: uuid.UUID | str | None = None,
        mode: ReaderMode | None = None,
        options: ReaderOptions | None = None,
        object_store: ObjectStore | None = None,
        merge_operator: Any = None,
        clock: Clock | None = None,
        block_cache: BlockCache | None = None,
        filter_policies: Sequence[Any] | None = None,
        transformer: Any = None,
        store_options: dict[str, Any] | None = None,
        prefix_extractor: Any = None,
        wal_store: str | os.PathLike[str] | ObjectStore | None = None,
        wal_store_options: dict[str, Any] | None = None,
        metrics: MetricsRegistry | bool | None = None,
    ) -> DbReader:
        """Open the database at ``path`` for reading; it must exist.

        The component arguments are :meth:`shale.Db.open`'s, plus:

        :param checkpoint: read the state this checkpoint pins (a UUID or its text); implies
            ``mode="checkpoint"``.
        :param mode: ``"checkpoint"`` (needs ``checkpoint``), ``"managed_checkpoint"`` (the
            default without ``checkpoint``: the reader keeps a checkpoint of its own) or
            ``"follow_latest"`` (no checkpoint; reads the latest manifest).
        :param options: :class:`shale.ReaderOptions` (poll interval, checkpoint lifetime,
            replay table size, ``skip_wal_replay``).
        :param wal_store: the database's separate WAL store (URL, directory or store object),
            as :meth:`shale.Db.open`; without it the reader follows the manifest's
            ``wal_object_store_uri`` when that is a URL.
        :param wal_store_options: options of the store plugin that opens a ``wal_store`` URL.
        :raises DataError: no database at ``path`` (no manifest), or persisted state is
            missing or corrupt.
        :param metrics: as for :meth:`shale.Db.open` (a default registry is labelled
            ``role=reader``).
        :raises InvalidError: bad settings, options or arguments, or an unknown checkpoint.
        :raises UnavailableError: the object store failed, or the writer kept moving the
            manifest on while the WAL was read.
        """
        checkpoint_id = None if checkpoint is None else parse_checkpoint_id(checkpoint)
        if mode is None:
            mode = "managed_checkpoint" if checkpoint_id is None else "checkpoint"
        if mode not in MODES:
            raise InvalidError(f"mode must be one of {', '.join(MODES)}", mode=mode)
        if (mode == "checkpoint") != (checkpoint_id is not None):
            raise InvalidError(
                "mode='checkpoint' and a checkpoint id go together",
                mode=mode,
                checkpoint=checkpoint,
            )
        options = ReaderOptions() if options is None else options
        if not isinstance(options, ReaderOptions):
            raise InvalidError("options must be a shale.ReaderOptions", type=type(options).__name__)
        parts = resolve_parts(
            path,
            settings,
            object_store=object_store,
            merge_operator=merge_operator,
            clock=clock,
            block_cache=block_cache,
            filter_policies=filter_policies,
            transformer=transformer,
            store_options=store_options,
            prefix_extractor=prefix_extractor,
            wal_store=wal_store,
            wal_store_options=wal_store_options,
            metrics=metrics,
            role="reader",
        )
        engine = build_reader(parts, segments.initial_manifest(None))
        view = ReaderView(
            engine, url=parts.url, mode=mode, checkpoint_id=checkpoint_id, options=options
        )
        db = cls(parts, engine, view, owns_store=object_store is None)
        try:
            latest = engine.keeper.ms.read_latest()
            if latest is not None:  # refuse a WAL-store mismatch before any checkpoint is made
                engine.tables.check_wal_store(latest[1])
            view.load()
            preload_disk_cache(parts, engine.tables, engine.state.manifest)
            if mode != "checkpoint":
                status = engine.status
                status.spawn("shale-reader-poll", db._poll_step, db._next_poll())
        except BaseException:
            db.close()
            raise
        return db

    # -- polling -------------------------------------------------------------------------------

    def _next_poll(self) -> Wait:
        return self._engine.status.stop, self._view.options.manifest_poll_interval

    def _poll_step(self) -> Wait | None:
        """One round of the poller thread."""
        if self._engine.status.stop.is_set():
            return None
        try:
            self._view.poll()
        except (ClosedError, PermanentStoreError):
            raise  # the store refuses for good: polling again will not help
        except ShaleError as exc:
            self._engine.stats["reader_poll_failures"] += 1
            log.warning("reader poll failed (keeping the last state): %s", exc)
        return self._next_poll()

    def refresh(self) -> None:
        """Poll now: move to the latest durable state (a ``"checkpoint"`` reader stays put)."""
        self._engine.status.check_open()
        self._view.poll()

    def _retry(self, exc: ObjectNotFound) -> None:
        """A read found an SST gone: in follow_latest mode poll once (else re-raise)."""
        if self._view.mode != "follow_latest":
            raise exc
        self._engine.stats["reader_read_retries"] += 1
        log.info("a read found an SST gone (%s); retrying on a fresh manifest", exc)
        self._view.poll()

    # -- reads (the same code as a writer's) ---------------------------------------------------

    def get(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> bytes | None:
        """The value of ``key``, or ``None`` (see :meth:`shale.Db.get`). Every row a reader
        sees is durable, so ``durability="remote"`` answers the same."""
        kv = self.get_key_value(key, durability=durability, include_expired=include_expired)
        return None if kv is None else kv.value

    def get_key_value(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """``key``'s value with its seq and timestamps, or ``None``."""
        calls = self._get_calls
        timed = calls is not None and not next(calls) & (telemetry.SAMPLE_EVERY - 1)
        t0 = time.perf_counter_ns() if timed else 0
        key = check_key(key)
        engine = self._engine
        engine.status.check_open()
        max_seq = engine.oracle.read_seq(durability, False)
        try:
            kv = engine.reader.get(key, max_seq, include_expired)
        except ObjectNotFound as exc:
            self._retry(exc)
            kv = engine.reader.get(key, max_seq, include_expired)
        if timed:
            self._m_get.record_ns(time.perf_counter_ns() - t0)  # type: ignore[union-attr]
        return kv

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
        cache_blocks: bool = True,
        read_ahead_bytes: int | None = None,
        max_fetch_tasks: int | None = None,
    ) -> ReaderIterator:
        """``(key, value)`` over ``start <= key < end`` (see :meth:`shale.Db.scan`, also for
        ``start_inclusive``/``end_inclusive``, ``cache_blocks``, ``read_ahead_bytes`` and
        ``max_fetch_tasks``), with ``seek``; in
        ``"follow_latest"`` mode it survives GC deleting an SST it reads."""
        t0 = time.perf_counter_ns()
        engine = self._engine
        engine.status.check_open()
        if not start_inclusive or end_inclusive:
            start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        max_seq = engine.oracle.read_seq(durability, False)
        fetch = (read_ahead_bytes, max_fetch_tasks)
        it = ReaderIterator(
            self, start, end, reverse, max_seq, include_expired, cache_blocks, fetch
        )
        if self._m_scan is not None:
            self._m_scan.record_ns(time.perf_counter_ns() - t0)
        return it

    def scan_prefix(self, prefix: bytes, **options: Any) -> ReaderIterator:
        """Every key that starts with ``prefix``."""
        return self.scan(*prefix_range(prefix), **options)

    def snapshot(
        self, *, at_seq: int | None = None, at_time: datetime.datetime | None = None
    ) -> DbSnapshot:
        """A view pinned at the current seq that keeps its state across polls, or as of a
        past ``at_seq`` / timezone-aware ``at_time`` no older than the retained history of the
        manifest it reads (``docs/time-travel.md``).

        :raises InvalidError: both given, a point in the future, or one older than retained.
        """
        engine = self._engine
        engine.status.check_open()
        with engine.state.lock:  # the state and its seq together (a poll installs both)
            state = engine.state.frozen_copy()
            seq = engine.oracle.committed_seq
        return DbSnapshot.at_point(
            engine.reader.with_state(state),
            engine.snapshots,
            engine.status,
            seq,
            at_seq=at_seq,
            at_time=at_time,
            now_ms=engine.clock.now_ms(),
            manifest=state.manifest,
        )

    def mapping(self) -> ReadOnlyDbMapping:
        """A read-only dict-like view (see :meth:`shale.Db.mapping`)."""
        return ReadOnlyDbMapping(self)

    def namespace(self, prefix: bytes) -> ReadOnlyNamespace:
        """The keys under ``prefix``, read without it (see :meth:`shale.Db.namespace`)."""
        return ReadOnlyNamespace(self, prefix)

    # -- state ---------------------------------------------------------------------------------

    @property
    def mode(self) -> ReaderMode:
        """``"managed_checkpoint"``, ``"checkpoint"`` or ``"follow_latest"``."""
        return self._view.mode

    @property
    def options(self) -> ReaderOptions:
        """The :class:`shale.ReaderOptions` it was opened with."""
        return self._view.options

    def manifest(self) -> Manifest:
        """The manifest version this reader reads."""
        return self._engine.state.manifest

    @property
    def manifest_id(self) -> int:
        """The id of :meth:`manifest`."""
        return self._engine.state.manifest_id

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint this reader reads (given, or its own in managed mode), or ``None``."""
        return self._view.checkpoint

    @property
    def url(self) -> str:
        """The path or URL it was opened with."""
        return self._parts.url

    @property
    def settings(self) -> Settings:
        """The settings it was opened with."""
        return self._parts.settings

    @property
    def merge_operator(self) -> Any:
        """The merge operator reads fold operands with, or ``None``."""
        return self._parts.merge_operator

    def warm_sst(self, sst_id: Any, targets: Sequence[Any] | None = None) -> None:
        """As :meth:`shale.Db.warm_sst`, on the reader's current manifest."""
        e = self._engine
        e.status.check_open()
        e.tables.warm(e.state.manifest, sst_id, targets)

    def evict_cached_sst(self, sst_id: Any) -> None:
        """As :meth:`shale.Db.evict_cached_sst`."""
        e = self._engine
        e.status.check_open()
        e.tables.evict(e.state.manifest, sst_id)

    def cache_stats(self) -> dict[str, dict[str, float]]:
        """As :meth:`shale.Db.cache_stats`."""
        return self._engine.tables.cache_stats()

    def metrics(self) -> dict[str, int]:
        """Counters and gauges, as :meth:`shale.Db.metrics` (``last_seq``, ``manifest_id``,
        ``l0_sst_count``, ``get_count``, ``wal_replayed_rows``, cache counters, ...) plus the
        reader's: ``reader_polls``, ``reader_poll_failures``, ``reader_read_retries``,
        ``reader_checkpoints_created``, ``reader_checkpoint_refreshes``,
        ``reader_checkpoints_released`` (old checkpoints kept for open snapshots, then removed),
        ``reader_replayed_tables``, ``reader_replayed_bytes``, ``reader_last_wal_id``."""
        e = self._engine
        out = metrics(e.stats, e.state, e.oracle, e.tables)
        for name in (
            "reader_polls",
            "reader_poll_failures",
            "reader_read_retries",
            "reader_checkpoints_created",
            "reader_checkpoint_refreshes",
            "reader_checkpoints_released",
        ):
            out[name] = e.stats[name]
        out["reader_replayed_tables"] = self._view.replayed_tables
        out["reader_replayed_bytes"] = self._view.replayed_bytes
        out["reader_last_wal_id"] = self._view.last_wal_id
        return out

    def metrics_snapshot(self) -> MetricsSnapshot:
        """As :meth:`shale.Db.metrics_snapshot`: this reader's histograms, store requests and
        :meth:`metrics` (docs/metrics.md)."""
        return handle_snapshot(self.metrics_registry, self.metrics)

    # -- closing -------------------------------------------------------------------------------

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"`` (``"failed"`` if the poller failed for good)."""
        return self._engine.status.close_reason

    def close(self) -> None:
        """Stop the poller, delete the managed checkpoint, release the handle (and its
        snapshots). Closing twice is harmless."""
        status = self._engine.status
        again, _failed = status.begin_close()
        if again:
            return
        stuck = status.join_threads()
        if stuck:
            log.warning("reader threads still running at close: %s", ", ".join(stuck))
        self._view.delete_checkpoint()
        status.finish_close(None)
        self._engine.tables.close_wal_store()
        if self._owns_store:
            self._parts.store.close()
        elif isinstance(self._parts.store, CachedObjectStore):
            self._parts.store.stop()  # the disk cache's rescans; the wrapped store is the caller's
        if self._parts.owns_metrics and self.metrics_registry is not None:
            self.metrics_registry.detach()

    def __enter__(self) -> DbReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.close_reason is None else f"closed:{self.close_reason}"
        where = f" checkpoint={self.checkpoint.id}" if self.checkpoint is not None else ""
        return f"<shale DbReader {self.url!r} mode={self.mode}{where} {state}>"


class ReaderIterator(KeysValues):
    """A reader's scan: a :class:`shale.DbIterator` that, in ``"follow_latest"`` mode, finds
    an SST gone, polls once and goes on from the last key it returned, at the same seq."""

    def __init__(
        self,
        db: DbReader,
        start: bytes | None,
        end: bytes | None,
        reverse: bool,
        max_seq: int,
        include_expired: bool | None,
        cache_blocks: bool = True,
        fetch: tuple[int | None, int | None] = (None, None),
    ) -> None:
        self._db = db
        self._cache_blocks = cache_blocks
        check_scan_fetch(*fetch)  # bad values fail here, before any read
        self._fetch = fetch
        self._start, self._end = check_scan_range(start, end)
        self._reverse = reverse
        self._max_seq = max_seq
        self._include_expired = include_expired
        self._last: bytes | None = None
        try:
            self._it: Iterator[tuple[bytes, bytes]] = self._make(self._start, self._end)
        except ObjectNotFound as exc:
            db._retry(exc)
            self._it = self._make(self._start, self._end)

    def _make(self, start: bytes | None, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        if start is not None and end is not None and start >= end:
            return iter(())
        reader = self._db._engine.reader
        return DbIterator(
            reader,
            start,
            end,
            self._reverse,
            self._max_seq,
            self._include_expired,
            self._cache_blocks,
            *self._fetch,
        )

    def _resume(self, exc: ObjectNotFound) -> None:
        self._db._retry(exc)
        start, end = self._start, self._end
        if self._last is not None:
            if self._reverse:
                end = self._last
            else:
                start = self._last + b"\x00"
        self._it = self._make(start, end)

    def __iter__(self) -> ReaderIterator:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        try:
            kv = next(self._it)
        except ObjectNotFound as exc:
            self._resume(exc)
            kv = next(self._it)
        self._last = kv[0]
        return kv

    def seek(self, key: bytes) -> None:
        """Continue from the first key ``>= key`` (``<= key`` in reverse); see
        :meth:`shale.DbIterator.seek`."""
        it = self._it
        if not isinstance(it, DbIterator):
            check_key(key)
            return  # an empty range: nothing to seek
        try:
            it.seek(key)
        except ObjectNotFound as exc:
            self._resume(exc)
            if isinstance(self._it, DbIterator):
                self._it.seek(key)
