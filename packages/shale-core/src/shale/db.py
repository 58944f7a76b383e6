"""The database: :class:`Db`, an embedded LSM-tree key-value store on object storage.

This module is the public handle and the composition root: :meth:`Db.open` resolves plugins
(the object store for a URL, a merge operator, filter policies, a block transformer, a prefix
extractor by name), checks every component, hands them to :mod:`shale.engine.builder` and
tells the observers; every other method delegates to an engine component. How the engine
works -- WAL and group commit, memtable freezes, L0 flushes, fencing, replay, reads, the lock
order -- is documented in :mod:`shale.engine` and its modules.

Lifetime: a database the program dropped without closing it is collected (no background
thread holds the handle) and then closed (flushed) with a ``ResourceWarning``, as are
databases still open at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import logging
import os
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from shale import ids, telemetry
from shale import transaction as atomic
from shale.batch import PendingWriteBatch, Ttl, WriteBatch, check_key
from shale.cache import BlockCache
from shale.clock import Clock, SystemClock
from shale.engine import components
from shale.engine.batch_write import WriteHandle
from shale.engine.builder import EngineParts, open_writer
from shale.engine.components import CloseFlush, check_close_flush
from shale.engine.db_inner import DbInner
from shale.engine.db_iter import DbIterator
from shale.engine.db_snapshot import DbSnapshot
from shale.engine.oracle import DURABILITY_MEMORY, DURABILITY_REMOTE
from shale.engine.reader import KeyValue
from shale.engine.table_store import TableStore
from shale.errors import ClosedError, InvalidError, ShaleError
from shale.fbs.manifest import Manifest
from shale.keys import prefix_range, scan_bounds
from shale.mapping import DbMapping
from shale.meta import segments
from shale.metrics import Histogram, MetricsRegistry, MetricsSnapshot
from shale.namespace import Namespace
from shale.objstore import ObjectStore
from shale.objstore.cached import CachedObjectStore
from shale.objstore.instrumented import handle_store
from shale.objstore.protocol import validate_key
from shale.row import MAX_KEY_LEN, MERGE, TOMBSTONE, VALUE
from shale.settings import Durability, Settings
from shale.transaction import IsolationLevel, Transaction, transact
from shale.watch import DEFAULT_MAX_PENDING, Watch, WatchHub, check_watch

if TYPE_CHECKING:
    from shale.change_stream import ChangeStream
    from shale.wal_reader import Change

_T = TypeVar("_T")
_hub_lock = threading.Lock()  # creates a Db's watch hub once

__all__ = [
    "DURABILITY_MEMORY",
    "DURABILITY_REMOTE",
    "CheckpointInfo",
    "Db",
    "DbIterator",
    "DbSnapshot",
    "KeyValue",
    "Transaction",
    "WriteHandle",
    "preload_disk_cache",
    "resolve_parts",
]

log = logging.getLogger(__name__)
_now = time.perf_counter_ns
_SAMPLE_MASK = telemetry.SAMPLE_EVERY - 1


class CheckpointInfo(NamedTuple):
    """What :meth:`Db.create_checkpoint` returns."""

    id: uuid.UUID
    manifest_id: int


def resolve_parts(
    path: str | os.PathLike[str],
    settings: Settings | None,
    *,
    object_store: ObjectStore | None,
    merge_operator: Any,
    clock: Clock | None,
    block_cache: BlockCache | None,
    filter_policies: Sequence[Any] | None,
    transformer: Any,
    store_options: dict[str, Any] | None,
    prefix_extractor: Any,
    wal_store: Any = None,
    wal_store_options: dict[str, Any] | None = None,
    metrics: Any = None,
    role: str = "writer",
) -> EngineParts:
    """Settings + explicit components + plugins -> the checked components of an engine
    (:meth:`Db.open`'s arguments; the read-only open resolves its components here too)."""
    from shale.plugins import get_host

    settings = settings if settings is not None else Settings()
    if not isinstance(settings, Settings):
        raise InvalidError("settings must be a shale.Settings", type=type(settings).__name__)
    path = ids.location(path, "path", allow_empty=object_store is not None)
    if metrics is not None and metrics is not True and metrics is not False:
        if not isinstance(metrics, MetricsRegistry):
            raise InvalidError(
                "metrics must be a shale.metrics.MetricsRegistry, True or False",
                type=type(metrics).__name__,
            )
    # Every component is checked before the store is opened: a bad one must fail here, not
    # in the first background upload after writes were acknowledged.
    host = get_host()
    components.check_codec(settings.compression_codec)
    options = components.check_store_options(store_options)
    wal_url, wal_options = components.check_wal_store_arg(wal_store, wal_store_options)
    if merge_operator is None and settings.merge_operator:
        merge_operator = host.merge_operator(settings.merge_operator)
        if merge_operator is None:
            raise InvalidError(
                "no plugin provides that merge operator", merge_operator=settings.merge_operator
            )
    components.check_merge_operator(merge_operator)
    if filter_policies is None:
        filter_policies = host.configured_filter_policies(settings)
    filter_policies = components.check_filter_policies(filter_policies)
    if transformer is None:
        transformer = host.block_transformer(settings)
    if prefix_extractor is None and settings.prefix_extractor:
        prefix_extractor = host.prefix_extractor(settings.prefix_extractor)
        if prefix_extractor is None:
            raise InvalidError(
                "no plugin provides that prefix extractor",
                prefix_extractor=settings.prefix_extractor,
            )
    if prefix_extractor is not None:
        prefix_extractor = segments.check_extractor(prefix_extractor)
        if settings.manifest_format_version == 1:
            raise InvalidError(
                "a segment extractor needs manifest format 2 (V1 cannot record segments)",
                manifest_format_version=1,
            )
    components.check_transformer(transformer)
    components.check_clock(clock)
    if block_cache is not None and not isinstance(block_cache, BlockCache):
        raise InvalidError(
            "block_cache must be a shale.cache.BlockCache", type=type(block_cache).__name__
        )
    if object_store is None:
        object_store = host.open_object_store(path, options)
        root = ""
    else:
        components.check_object_store(object_store)
        root = path.strip("/")
        if root:
            validate_key(root)
    registry = telemetry.handle_registry(metrics, path, role)
    object_store = handle_store(object_store, registry, settings.object_store_cache_options, path)
    if wal_url is not None:
        wal_store = host.open_object_store(wal_url, wal_options)
    return EngineParts(
        store=object_store,
        root=root,
        url=path,
        settings=settings,
        merge_operator=merge_operator,
        clock=clock or SystemClock(),
        block_cache=block_cache
        if block_cache is not None
        else BlockCache(settings.block_cache_bytes),
        filter_policies=list(filter_policies),
        transformer=transformer,
        prefix_extractor=prefix_extractor,
        wal_store=wal_store,
        wal_store_url=wal_url,
        wal_store_opener=lambda uri: host.open_object_store(uri, wal_options),
        owns_wal_store=wal_url is not None,
        metrics=registry,
        owns_metrics=registry is not None and registry is not metrics,
    )


def flat_metrics_of(ref: weakref.ref[Any]) -> Callable[[], dict[str, int] | None]:
    """A reader of the ``metrics()`` dict of the handle behind ``ref`` (``None`` once it is
    gone): the registry's collector must not keep the handle alive."""

    def read() -> dict[str, int] | None:
        handle = ref()
        return None if handle is None else handle.metrics()

    return read


def handle_snapshot(
    registry: MetricsRegistry | None, flat: Callable[[], dict[str, int]]
) -> MetricsSnapshot:
    """A handle's :class:`MetricsSnapshot` (with metrics off: only its flat counters)."""
    if registry is None:
        return MetricsSnapshot(telemetry.legacy_collector(flat)())
    return registry.snapshot()


def preload_disk_cache(parts: EngineParts, tables: TableStore, manifest: Manifest) -> int:
    """Fill the disk cache with the SSTs of ``manifest`` that
    ``object_store_cache_options.preload_disk_cache_on_startup`` names (``"L0Sst"``: L0 SSTs,
    newest first; ``"AllSst"``: those, then every sorted run's), up to the size bound, as
    SlateDB does when a database or reader opens. SSTs of clone sources are not preloaded.

    :return: the number of SSTs loaded (0 without a disk cache or a preload level).
    """
    store = parts.store
    options = parts.settings.object_store_cache_options
    if not isinstance(store, CachedObjectStore) or options is None:
        return 0
    level = options.preload_disk_cache_on_startup
    if level is None:
        return 0
    trees = segments.trees(manifest)
    views = [v for t in trees for v in t.l0]
    if level == "AllSst":
        views += [v for t in trees for run in t.compacted for v in run.ssts]
    keys = []
    for view in views:
        try:
            owner, key = tables.ssts.locate(view.sst.id)
        except ShaleError:
            continue
        if owner is store:
            keys.append(key)
    return store.preload(keys)


#: Open databases, closed at interpreter exit if the program did not close them.
_open_dbs: weakref.WeakSet[Db] = weakref.WeakSet()


def _warn_unclosed(db: Db, when: str) -> None:
    warnings.warn(
        f"unclosed shale database {db.url!r} {when}: closing it now (flushing its unflushed "
        "writes); use 'with Db.open(...)' or call close()",
        ResourceWarning,
        stacklevel=2,
        source=db,
    )


def _close_open_dbs() -> None:
    """At interpreter exit: close (and so flush) every database the program left open."""
    for db in list(_open_dbs):
        if db._inner.status.close_started or db._pid != os.getpid():
            continue  # closed, or a copy inherited by a forked child: the parent owns it
        try:
            _warn_unclosed(db, "at interpreter exit")
        except Warning:  # -W error: still close it
            log.warning("unclosed shale database %r at interpreter exit; closing it", db.url)
        try:
            db.close()
        except Exception as exc:
            log.error("closing %r at interpreter exit failed: %s", db.url, exc)


atexit.register(_close_open_dbs)


def _notify_l0_flushed(ref: weakref.ref[Db]) -> Any:
    """The flusher's ``on_l0_flushed``: tell the plugins (an in-process compactor wakes up)."""

    def on_l0_flushed(manifest: Any) -> None:
        db = ref()
        if db is not None:
            from shale.plugins import get_host

            get_host().l0_flushed(db, manifest)

    return on_l0_flushed


def _notify_closed(ref: weakref.ref[Db]) -> Any:
    def on_closed(reason: str) -> None:
        db = ref()
        if db is not None:
            from shale.plugins import get_host

            get_host().db_closed(db, reason)

    return on_closed


class Db:
    """An open database. Create it with :meth:`Db.open`; it is thread-safe.

    Use it as a context manager, or call :meth:`close`.
    """

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        settings: Settings | None = None,
        *,
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
    ) -> Db:
        """Open (creating if absent) the database at ``path``.

        :param path: a directory, ``file://`` URL, ``memory://name`` or any URL a plugin owns
            (``s3://bucket/prefix``). With ``object_store`` given, ``path`` is the database's
            prefix inside that store.
        :param settings: :class:`shale.Settings`; defaults to ``Settings()``.
        :param object_store: a store object; beats any plugin.
        :param merge_operator: a merge operator object; beats ``settings.merge_operator``.
        :param clock: an object with ``now_ms()``; the system clock by default.
        :param block_cache: a :class:`shale.cache.BlockCache` (shared between databases if you
            like); by default one of ``settings.block_cache_bytes``.
        :param prefix_extractor: a segment extractor object
            (:class:`shale.meta.segments.PrefixExtractor`); beats ``settings.prefix_extractor``.
            A database created with one keeps one LSM tree per key prefix and must always be
            written with an extractor of the same name (see docs/segments.md).
        :param wal_store: keep the WAL in this object store (a URL, a directory or a store
            object; SlateDB's ``with_wal_object_store``) at the same ``<path>/wal/`` keys; SSTs
            and manifests stay in the main store. A database must always be opened with the
            WAL store it was written with (see docs/wal-store.md).
        :param wal_store_options: options of the store plugin that opens a ``wal_store`` URL.
        :param metrics: where this handle records metrics (docs/metrics.md): by default a new
            :class:`shale.metrics.MetricsRegistry` labelled with the URL, reported by the
            process-wide default registry; a registry of yours; or ``False``: no metrics and
            no object-store instrumentation (nor store trace spans).
        :raises InvalidError: bad settings or arguments, or a component that cannot work (a
            codec whose optional library is missing, a merge operator, filter policy,
            transformer, clock or store without the methods it needs, bad ``store_options``),
            all checked before the store is opened; a segmented database opened without its
            extractor (or with another one), before anything is written.
        :raises ClosedError: fenced by a newer writer while opening.
        """
        from shale.plugins import get_host

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
        )
        try:
            inner = open_writer(parts)
        except BaseException:
            if parts.owns_wal_store and parts.wal_store is not None:
                parts.wal_store.close()
            if object_store is None:
                parts.store.close()  # opened here from the URL: nobody else holds it
            raise
        db = cls(parts, inner)
        db._owns_store = object_store is None
        preload_disk_cache(parts, db._inner.tables, db._inner.state.manifest)
        get_host().db_opened(db)
        return db

    def __init__(self, parts: EngineParts, inner: DbInner) -> None:
        self._inner = inner
        self._pid = os.getpid()  # a forked child must not flush (or close) its parent's Db
        self.store = parts.store
        #: the store was opened from the URL by :meth:`open` (closed with the handle)
        self._owns_store = False
        self.root = parts.root
        self.url = parts.url
        self.settings = parts.settings
        self.merge_operator = parts.merge_operator
        self.clock = inner.clock
        self.block_cache = parts.block_cache
        self.filter_policies = parts.filter_policies
        self.transformer = parts.transformer
        #: the segment extractor (``None``: every key goes to the root tree)
        self.prefix_extractor: segments.PrefixExtractor | None = parts.prefix_extractor
        self.stats = inner.stats
        self._hub: WatchHub | None = None
        #: the registry this handle records into (``None``: metrics off); docs/metrics.md
        self.metrics_registry: MetricsRegistry | None = parts.metrics
        self._owns_metrics = parts.owns_metrics
        m = inner.engine_metrics
        hists: tuple[Histogram | None, ...] = (
            (None,) * 6 if m is None else tuple(m.requests[op] for op in telemetry.DB_OPS)
        )
        self._m_put, self._m_delete, self._m_merge, self._m_write, self._m_get, self._m_scan = hists
        self._put_calls = None if self._m_put is None else self._m_put.calls
        self._get_calls = None if self._m_get is None else self._m_get.calls
        #: the commit of one op (checks key, value and ttl; compiled when built)
        self._write_one = inner.writer.write_one
        if parts.metrics is not None:
            parts.metrics.add_collector(
                telemetry.legacy_collector(flat_metrics_of(weakref.ref(self)))
            )
        inner.status.on_closed = _notify_closed(weakref.ref(self))
        inner.flusher.on_l0_flushed = _notify_l0_flushed(weakref.ref(self))
        _open_dbs.add(self)

    def __del__(self) -> None:
        # Dropped without close(): flush and stop like close() does, and say so. (A database
        # that was fenced or failed has stopped and has nothing to flush.)
        inner = getattr(self, "_inner", None)
        if inner is None or inner.status.close_started or inner.status.closed:
            return
        if self._pid != os.getpid():
            return  # a copy inherited by a forked child: the parent owns it
        try:
            _warn_unclosed(self, "was garbage collected")
        finally:
            try:
                self.close()
            except Exception as exc:
                log.error("closing the unclosed database %r failed: %s", self.url, exc)

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"``, ``"fenced"`` or ``"failed"``."""
        return self._inner.status.close_reason

    # -- writes ------------------------------------------------------------------------------

    def put(
        self,
        key: bytes,
        value: bytes,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
        seqnum: int = 0,
    ) -> WriteHandle:
        """Set ``key`` to ``value``. Returns once durable unless ``durable=False``.

        :param ttl: milliseconds until expiry, a :class:`shale.Ttl`, or ``None`` for
            ``settings.default_ttl``.
        :param seqnum: the write's seq, chosen by the caller (SlateDB's ``WriteOptions.seqnum``):
            ``0`` lets the database assign the next one; otherwise an int greater than every
            seq so far, at most ``2**63 - 1`` (docs/database.md "Choosing the seq").
        :raises InvalidError: ``seqnum`` is not greater than the last seq; nothing is written.
        """
        calls = self._put_calls
        if calls is None or next(calls) & _SAMPLE_MASK:  # not timed (docs/metrics.md)
            return self._write_one(key, VALUE, value, ttl, durable, seqnum)  # it checks them
        t0 = _now()
        handle = self._write_one(key, VALUE, value, ttl, durable, seqnum)
        self._m_put.record_ns(_now() - t0)  # type: ignore[union-attr]
        return handle

    def delete(self, key: bytes, *, durable: bool = True, seqnum: int = 0) -> WriteHandle:
        """Delete ``key`` (writes a tombstone). ``seqnum`` as for :meth:`put`."""
        t0 = _now()
        handle = self._write_one(key, TOMBSTONE, b"", None, durable, seqnum)
        if self._m_delete is not None:
            self._m_delete.record_ns(_now() - t0)
        return handle

    def merge(
        self,
        key: bytes,
        operand: bytes,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
        seqnum: int = 0,
    ) -> WriteHandle:
        """Add a merge operand for ``key``; reads fold operands with the merge operator.
        ``seqnum`` as for :meth:`put`."""
        t0 = _now()
        handle = self._write_one(key, MERGE, operand, ttl, durable, seqnum)
        if self._m_merge is not None:
            self._m_merge.record_ns(_now() - t0)
        return handle

    def write(self, batch: WriteBatch, *, durable: bool = True, seqnum: int = 0) -> WriteHandle:
        """Apply ``batch`` atomically: one seq, one create_ts, all or nothing.

        :param seqnum: the batch's seq, chosen by the caller (as for :meth:`put`).
        :raises InvalidError: an empty batch; a ``seqnum`` not greater than the last seq.
        :raises ClosedError: the database is closed or fenced.
        :raises UnavailableError: a durable write whose WAL upload failed (it stays queued).
        """
        if not isinstance(batch, WriteBatch):
            raise InvalidError("write() takes a shale.WriteBatch", type=type(batch).__name__)
        if batch.is_empty():
            raise InvalidError("empty write batch")
        t0 = _now()
        handle = self._inner.writer.write_batch(batch, durable, seqnum)
        if self._m_write is not None:
            self._m_write.record_ns(_now() - t0)
        return handle

    def write_batch(self, *, durable: bool = True) -> PendingWriteBatch:
        """A batch written atomically when its ``with`` block ends normally::

            with db.write_batch() as wb:
                wb.put(b"a", b"1").delete(b"b")

        Nothing is written if the block raises or the batch stays empty; ``wb.handle`` is the
        write's handle afterwards. ``durable`` as for :meth:`write`.

        :raises InvalidError: ``durable`` is not a bool.
        """
        return PendingWriteBatch(lambda batch, d: self.write(batch, durable=d), durable)

    # -- transactions (docs/transactions.md) ------------------------------------------------

    def begin(self, isolation: IsolationLevel = "snapshot") -> Transaction:
        """Start a :class:`shale.Transaction` reading the current committed state.

        :param isolation: ``"snapshot"`` (write-write conflicts abort) or ``"serializable"``
            (read-write conflicts too, including keys appearing in a scanned range).
        :raises InvalidError: another ``isolation``.
        :raises ClosedError: the database is closed.
        """
        return Transaction(self._inner, isolation)

    def transact(
        self,
        fn: Callable[[Transaction], _T],
        *,
        retries: int = 10,
        isolation: IsolationLevel = "snapshot",
        durable: bool = True,
    ) -> _T:
        """Run ``fn(txn)`` in a transaction and commit it, re-running it in a new transaction
        after a conflict (up to ``retries`` times, with exponential back-off and jitter).

        :returns: what ``fn`` returned in the attempt that committed.
        :raises TransactionError: every attempt conflicted.
        """
        from shale.transaction import check_isolation

        check_isolation(isolation)
        return transact(lambda: self.begin(isolation), fn, retries=retries, durable=durable)

    def put_if_absent(
        self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None, durable: bool = True
    ) -> bool:
        """Set ``key`` to ``value`` only if it has no value; whether it did. Atomic against
        every other write (a transaction, retried on conflict)."""
        return atomic.put_if_absent(self.begin, key, value, ttl=ttl, durable=durable)

    def compare_and_set(
        self,
        key: bytes,
        expected: bytes | None,
        new: bytes | None,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
    ) -> bool:
        """Set ``key`` to ``new`` (delete it for ``None``) only if its value is ``expected``
        (``None``: absent); whether it did. Atomic against every other write."""
        return atomic.compare_and_set(self.begin, key, expected, new, ttl=ttl, durable=durable)

    def update(
        self,
        key: bytes,
        fn: Callable[[bytes | None], bytes | None],
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
    ) -> bytes | None:
        """Set ``key`` to ``fn(current value or None)`` (``None`` deletes it) atomically
        against every other write; ``fn`` may run more than once (after a conflict). Returns
        the value written."""
        return atomic.update(self.begin, key, fn, ttl=ttl, durable=durable)

    # -- manifest ----------------------------------------------------------------------------

    def refresh_manifest(self) -> Manifest:
        """Read the latest manifest now (it is also polled every ``manifest_poll_interval``)."""
        self._inner.status.check_open()
        return self._inner.keeper.refresh()

    def manifest(self) -> Manifest:
        """The manifest this database currently reads from."""
        return self._inner.state.manifest

    # -- flush and close ----------------------------------------------------------------------

    def flush(self, *, memtable: bool = False, timeout: float | None = None) -> None:
        """Make every write so far durable.

        With the WAL on this uploads the WAL buffer (SlateDB's default flush). With
        ``memtable=True`` (or with the WAL off) it also freezes the memtable and waits until
        every frozen memtable is an L0 SST in the manifest -- which cannot happen while L0
        holds ``l0_max_ssts`` SSTs and no compactor makes room (a warning is logged).

        :param timeout: seconds to wait at most (``None``: no limit).
        :raises UnavailableError: the object store failed an upload while waiting (it is
            retried in the background), or ``timeout`` passed; the message names the cause
            (e.g. "L0 is full ... is a compactor running?").
        :raises ClosedError: the database closed first.
        """
        self._inner.flush(memtable, timeout)

    def close(self, *, flush: CloseFlush = "wal") -> None:
        """Flush the WAL (or, with the WAL off, every memtable to L0) and stop background work.

        :param flush: what to flush first (SlateDB's ``CloseOptions.flush_type``): ``"wal"``
            (the default), ``"memtable"`` -- the WAL, then every memtable to L0, so the next
            open replays nothing (SlateDB's default) -- or ``None``: nothing, and writes not
            durable yet (``durable=False``) are dropped (a warning says how many). With the
            WAL off, ``"wal"`` and ``"memtable"`` both flush every memtable to L0.

        Background threads are stopped first; close() then flushes what is left itself,
        retrying a failing upload ``CLOSE_RETRIES`` times. With the WAL off, memtables go to L0
        even when that takes L0 past ``l0_max_ssts`` (the limit throttles writers, and there
        are none left); so do they with ``flush="memtable"``. Once close() returns -- or
        raises -- no thread of this database touches the object store again.

        After a fence or a failure nothing is flushed. Closing twice is harmless. Open
        :meth:`watch` handles end after delivering what they queued.

        :raises UnavailableError: writes could not be flushed (the object store kept failing);
            the message says how many and which seqs: they are lost. ``close_reason`` is then
            ``"failed"`` and the store's error is the ``__cause__``. (A cause of another kind,
            e.g. a ``DataError``, is reported with that kind.)
        :raises ClosedError: ``reason="fenced"``: a newer writer fenced this one while it
            flushed; the writes not flushed are lost.
        :raises ClosedError: ``reason="failed"``: the database had failed before close();
            writes that were not durable yet may be lost. The failure is the ``__cause__``.
        :raises UnavailableError: ``flush="memtable"`` could not write L0 (the message says
            nothing is lost: every write is in the WAL). Raised as :class:`ClosedError` when a
            newer writer fenced this one meanwhile.
        :raises InvalidError: ``flush`` is not ``"wal"``, ``"memtable"`` or ``None``; the
            database stays open.
        """
        flush = check_close_flush(flush)  # before anything is stopped
        _open_dbs.discard(self)
        try:
            self._inner.close(flush)
        finally:
            if self._hub is not None:
                self._hub.close_all()  # the final flush's rows are delivered first
            if self._owns_store:
                self.store.close()  # opened from the URL by Db.open: this handle's to close
            elif isinstance(self.store, CachedObjectStore):
                self.store.stop()  # the disk cache's rescans (the store is the caller's)
            self._inner.tables.close_wal_store()
            if self._owns_metrics and self.metrics_registry is not None:
                self.metrics_registry.detach()  # exporters stop reporting a closed handle

    @property
    def wal_store(self) -> ObjectStore | None:
        """The separate WAL store (``wal_store=`` or the one the manifest names), or ``None``
        when the WAL lives in :attr:`store`."""
        tables = self._inner.tables
        return None if tables.wal_store_label is None else tables.wal_store

    def _crash(self) -> None:
        """Stop the way a killed process would (for tests and simulations; see
        :func:`shale.testing.crash`)."""
        _open_dbs.discard(self)
        self._inner.crash()

    def __enter__(self) -> Db:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.close()
        except ClosedError:
            if exc_type is None:
                raise  # else the error already propagating says more (and chains the cause)

    def __repr__(self) -> str:
        reason = self.close_reason
        state = "open" if reason is None else f"closed:{reason}"
        return f"<shale.Db {self.url!r} {state}>"

    # -- reads -------------------------------------------------------------------------------

    def _read_seq(self, durability: Durability, dirty: bool) -> int:
        if type(dirty) is not bool:
            components.check_flag("dirty", dirty)
        return self._inner.oracle.read_seq(durability, dirty)

    def get_key_value(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """The value of ``key`` with its seq and timestamps, or ``None`` when absent."""
        calls = self._get_calls
        if calls is None or next(calls) & _SAMPLE_MASK:
            return self._get_kv(key, durability, dirty, include_expired)
        t0 = _now()
        kv = self._get_kv(key, durability, dirty, include_expired)
        self._m_get.record_ns(_now() - t0)  # type: ignore[union-attr]
        return kv

    def get(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
    ) -> bytes | None:
        """The value of ``key``, or ``None`` when it is absent, deleted or expired.

        :param durability: ``"memory"`` sees every committed write; ``"remote"`` only durable
            ones.
        :param dirty: with ``durability="memory"``, also see rows whose seq is assigned but
            whose batch is not committed yet (SlateDB's dirty read: part of a batch may show).
        :param include_expired: return rows past their TTL too (SlateDB's behaviour); by default
            ``not settings.hide_expired``.
        """
        calls = self._get_calls
        if calls is not None and not next(calls) & _SAMPLE_MASK:  # timed (docs/metrics.md)
            t0 = _now()
            kv = self._get_kv(key, durability, dirty, include_expired)
            self._m_get.record_ns(_now() - t0)  # type: ignore[union-attr]
            return None if kv is None else kv.value
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_LEN:
            key = check_key(key)
        inner = self._inner
        if inner.status.closed:
            inner.status.check_open()
        if durability is DURABILITY_MEMORY and dirty is False:  # the default: no checks due
            max_seq = inner.oracle.committed_seq
        else:
            max_seq = self._read_seq(durability, dirty)
        res = inner.reader.lookup(key, max_seq, include_expired)
        return None if res is None else res[0]

    def _get_kv(
        self, key: bytes, durability: Durability, dirty: bool, include_expired: bool | None
    ) -> KeyValue | None:
        key = check_key(key)
        self._inner.status.check_open()
        return self._inner.reader.get(key, self._read_seq(durability, dirty), include_expired)

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        durability: Durability = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
        cache_blocks: bool = True,
        read_ahead_bytes: int | None = None,
        max_fetch_tasks: int | None = None,
    ) -> DbIterator:
        """Iterate ``(key, value)`` over ``start <= key < end`` (``None`` = unbounded).

        :param start_inclusive: and ``end_inclusive``: whether each bound is in the range
            (SlateDB's ``KeyRange``); by default ``[start, end)``. ``scan(b"a", b"c",
            end_inclusive=True)`` includes ``b"c"``; ``start_inclusive=False`` starts after
            ``start``. A range that holds no key is empty, not an error
            (:func:`shale.keys.scan_bounds`).
        :param reverse: keys descending (correct across the SSTs of a sorted run, unlike
            SlateDB 0.12.1).
        :param durability: and ``dirty``: the read's visibility, as for :meth:`get`.
        :param cache_blocks: ``False``: blocks this scan reads are not inserted into the block
            cache (a big scan does not evict the working set; SlateDB's
            ``ScanOptions.cache_blocks``). Cached blocks are still used.
        :param read_ahead_bytes: bytes of following SST blocks one ranged read fetches when the
            scan misses the block cache (whole blocks, at least one; default 256 KiB); SlateDB's
            ``ScanOptions.read_ahead_bytes``. Applies to SSTs in an object store.
        :param max_fetch_tasks: ranged reads of read-ahead in flight at once per SST (default
            1; SlateDB's ``ScanOptions.max_fetch_tasks``).
        :raises InvalidError: ``start > end``, a bad ``read_ahead_bytes`` or
            ``max_fetch_tasks``, or an inclusive flag that is not a ``bool``.
        """
        t0 = _now()
        self._inner.status.check_open()
        if not start_inclusive or end_inclusive:
            start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        max_seq = self._read_seq(durability, dirty)
        it = DbIterator(
            self._inner.reader,
            start,
            end,
            reverse,
            max_seq,
            include_expired,
            cache_blocks,
            read_ahead_bytes,
            max_fetch_tasks,
        )
        if self._m_scan is not None:
            self._m_scan.record_ns(_now() - t0)
        return it

    def scan_prefix(self, prefix: bytes, **options: Any) -> DbIterator:
        """Every key that starts with ``prefix`` (the whole keyspace for ``b""``)."""
        return self.scan(*prefix_range(prefix), **options)

    def snapshot(
        self, *, at_seq: int | None = None, at_time: datetime.datetime | None = None
    ) -> DbSnapshot:
        """A consistent read-only view at the current committed seq (in-process only), or as
        of a past ``at_seq`` or timezone-aware ``at_time`` (time travel: as far back as
        ``Settings.history_retention`` keeps versions; ``docs/time-travel.md``).

        :raises InvalidError: both given, a point in the future, or one older than the
            retained history.
        """
        inner = self._inner
        inner.status.check_open()
        return DbSnapshot.at_point(
            inner.reader,
            inner.snapshots,
            inner.status,
            inner.oracle.committed_seq,
            at_seq=at_seq,
            at_time=at_time,
            now_ms=inner.clock.now_ms(),
            manifest=inner.state.manifest,
        )

    # -- views (shale.mapping, shale.namespace; docs/views.md) --------------------------------

    def mapping(self, *, durable: bool = True) -> DbMapping:
        """A dict-like view: ``m[k]``, ``m[k] = v`` (one write per assignment, durable before
        it returns unless ``durable=False``), ``del m[k]``, ``k in m``, ``keys(prefix=)``...;
        no ``len`` (``count()`` scans). See :mod:`shale.mapping`."""
        return DbMapping(self, durable=durable)

    def namespace(self, prefix: bytes) -> Namespace:
        """The keys under ``prefix``, read and written without it; scans never leave it.
        See :mod:`shale.namespace`.

        :raises InvalidError: ``prefix`` is empty or not bytes.
        """
        return Namespace(self, prefix)

    # -- checkpoints -------------------------------------------------------------------------

    def _watch_hub(self) -> WatchHub:
        with _hub_lock:
            if self._hub is None:
                self._hub = WatchHub(self._inner.writer, self._inner.wal)
            return self._hub

    def changes(self, since_seq: int | None = None, **options: Any) -> ChangeStream:
        """A change stream of this database (:func:`shale.changes`'s options but the store):
        every durable change with seq > ``since_seq``, in seq order, woken by this writer's
        own WAL uploads as well as by polling. Close it before the database (docs/changes.md).
        """
        from shale.change_stream import ChangeStream

        for bad in ("object_store", "store_options", "url", "wal_store", "wal_store_options"):
            if bad in options:
                raise InvalidError(f"db.changes() reads this database's store: no {bad}=")
        start = options.pop("start", True)
        if type(start) is not bool:
            raise InvalidError("start must be a bool", value=start)
        wake = threading.Event()
        stream = ChangeStream(
            self.store,
            self.root,
            since_seq=since_seq,
            wake=wake,
            url=self.url,
            wal_store=self.wal_store,
            **options,
        )
        self._inner.status.check_open()
        if start:
            stream.start()
        self._watch_hub().add_waker(wake)
        return stream

    def watch(
        self,
        prefix: bytes = b"",
        callback: Callable[[Change], object] | None = None,
        *,
        queue: asyncio.Queue[Change | None] | None = None,
        durable: bool = True,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> Watch:
        """Deliver this writer's committed changes under ``prefix`` to ``callback`` (on a
        delivery thread of the watch) or to ``queue`` (an ``asyncio.Queue`` of the running
        loop; ``None`` marks the end), in seq order. ``durable``: once uploaded (default), else
        at commit. See :mod:`shale.watch` for overflow (``max_pending``) and errors.

        :returns: a :class:`shale.watch.Watch`; ``close()`` it.
        :raises InvalidError: bad arguments (neither or both of callback and queue, ...).
        """
        key, loop = check_watch(
            prefix, callback, queue, durable, max_pending, self._inner.wal is not None
        )
        self._inner.status.check_open()
        hub = self._watch_hub()
        w = Watch(
            hub,
            key,
            callback=callback,
            queue=queue,
            loop=loop,
            durable=durable,
            max_pending=max_pending,
        )
        hub.add(w)
        return w

    def create_checkpoint(
        self,
        *,
        lifetime: float | None = None,
        name: str | None = None,
        scope: str = "all",
        timeout: float | None = None,
    ) -> CheckpointInfo:
        """Pin the current state in the manifest so GC keeps it.

        :param lifetime: seconds until the checkpoint expires (``None``: never).
        :param name: an optional name (a ``str``).
        :param scope: ``"all"`` flushes the WAL and memtable first; ``"durable"`` pins only
            what is already in the manifest.
        :param timeout: seconds the ``"all"`` flush may wait (see :meth:`flush`).
        :raises UnavailableError: the flush timed out or failed; the message names the cause.
        :raises InvalidError: a bad ``lifetime`` (not a finite number ``>= 0``, or expiring
            after 2106), ``name`` or ``scope``, before anything is flushed.
        """
        from shale.meta.manifest_store import (
            add_checkpoint,
            check_checkpoint_lifetime,
            check_checkpoint_name,
        )

        self._inner.status.check_open()
        if scope not in ("all", "durable"):
            raise InvalidError("scope must be 'all' or 'durable'", scope=scope)
        check_checkpoint_lifetime(lifetime, self.clock.now_ms() // 1000)
        check_checkpoint_name(name)
        if scope == "all":
            self.flush(memtable=True, timeout=timeout)
        result: list[Any] = []

        def mutate(m: Manifest, next_id: int) -> Manifest:
            m2, cp = add_checkpoint(
                m,
                manifest_id=next_id,
                now_s=self.clock.now_ms() // 1000,
                lifetime_s=lifetime,
                name=name,
            )
            result[:] = [cp]
            return m2

        self._inner.keeper.update(mutate)
        cp = result[0]
        return CheckpointInfo(cp.id, cp.manifest_id)

    def list_checkpoints(self, name: str | None = None) -> list[Any]:
        """Checkpoints in the latest manifest (only those called ``name`` if given)."""
        from shale.meta.manifest_store import check_checkpoint_name

        check_checkpoint_name(name)
        m = self.refresh_manifest()
        return [c for c in m.checkpoints if name is None or (c.name or "") == name]

    def refresh_checkpoint(
        self, checkpoint_id: uuid.UUID | str, *, lifetime: float | None = None
    ) -> None:
        """Set a checkpoint's expiry to now + ``lifetime`` (``None``: never expires).

        :param checkpoint_id: the checkpoint's id, a :class:`uuid.UUID` or its ``str`` form.
        :raises InvalidError: an unknown id, or a bad id or ``lifetime``.
        """
        from shale.meta.manifest_store import (
            check_checkpoint_lifetime,
            checkpoint_uuid,
            refresh_checkpoint,
        )

        checkpoint_id = checkpoint_uuid(checkpoint_id)
        check_checkpoint_lifetime(lifetime, self.clock.now_ms() // 1000)
        self._inner.status.check_open()
        self._inner.keeper.update(
            lambda m, _n: refresh_checkpoint(
                m, checkpoint_id, now_s=self.clock.now_ms() // 1000, lifetime_s=lifetime
            )
        )

    def delete_checkpoint(self, checkpoint_id: uuid.UUID | str) -> None:
        """Remove a checkpoint from the manifest.

        :param checkpoint_id: the checkpoint's id, a :class:`uuid.UUID` or its ``str`` form.
        :raises InvalidError: an unknown or malformed id.
        """
        from shale.meta.manifest_store import checkpoint_uuid, remove_checkpoint

        checkpoint_id = checkpoint_uuid(checkpoint_id)
        self._inner.status.check_open()
        self._inner.keeper.update(lambda m, _n: remove_checkpoint(m, checkpoint_id))

    # -- status ------------------------------------------------------------------------------

    def metrics(self) -> dict[str, int]:
        """Counters (names close to SlateDB's) and gauges, as a plain dict."""
        return self._inner.metrics()

    def metrics_snapshot(self) -> MetricsSnapshot:
        """Every metric of this handle (docs/metrics.md): the latency histograms of its calls,
        flushes and object-store requests, an in-process compactor's and GC's metrics, and
        :meth:`metrics` as ``shale_db_*`` gauges and counters, at one moment."""
        return handle_snapshot(self.metrics_registry, self.metrics)

    # -- caches ------------------------------------------------------------------------------

    def warm_sst(self, sst_id: Any, targets: Sequence[Any] | None = None) -> None:
        """Load parts of one SST into the block and metadata caches (the official package's
        ``warm_sst``): ``targets`` among ``"index"``, ``"filters"``, ``"stats"``, ``"data"``
        and ``("data", start, end)``; ``None``: all. A no-op for an SST the current manifest
        does not reference. See ``docs/caching.md``.

        :param sst_id: the SST's ULID (text or :class:`shale.ids.Ulid`).
        :raises InvalidError: an unknown target or a malformed id.
        """
        self._inner.status.check_open()
        self._inner.tables.warm(self._inner.state.manifest, sst_id, targets)

    def evict_cached_sst(self, sst_id: Any) -> None:
        """Drop one SST's blocks, index and filters from the in-memory caches (the official
        package's ``evict_cached_sst``, best effort; the disk cache keeps its parts)."""
        self._inner.status.check_open()
        self._inner.tables.evict(self._inner.state.manifest, sst_id)

    def cache_stats(self) -> dict[str, dict[str, float]]:
        """Sizes, counters and hit rates of the block cache's ``"data"`` and ``"metadata"``
        parts, and the disk cache's counters (``"disk"``) when one is configured."""
        return self._inner.tables.cache_stats()
