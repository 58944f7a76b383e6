"""The database: :class:`Db`, an embedded LSM-tree key-value store on object storage.

Write path (SlateDB's): every write is a batch that gets one seq and one ``create_ts`` under the
write lock, is appended to the WAL buffer and inserted into the memtable, and is then visible to
readers. A durable write (the default) returns only once the WAL SST holding it is stored; the
WAL flusher uploads the buffer as ``wal/<id>.sst`` with create-if-absent on ``flush_interval``,
when the buffer is large, or as soon as a durable writer asks -- writers that arrive during an
upload share the next one (group commit).

Memtables are frozen at ``l0_sst_size_bytes`` (or after ``max_wal_flushes_before_l0_flush`` WAL
flushes) inside a WAL flush, so a frozen memtable knows the last WAL id holding its rows. The L0
flusher writes it as ``compacted/<ULID>.sst`` once those WALs are durable, then publishes it in
the manifest with ``replay_after_wal_id`` advanced: the WALs it covers are never replayed again.

Opening fences older writers: ``writer_epoch`` is bumped in a new manifest version, then an
empty WAL object is created at the next free WAL id. It first checks that it can write (a probe
object put and deleted in ``wal/`` and ``compacted/``), so an open that cannot write fails
without fencing anyone. An old writer's next WAL or manifest write
fails; it closes itself with reason ``"fenced"`` and writes nothing more. WAL SSTs after
``replay_after_wal_id`` are replayed into memtables on open.

Reads see, newest first: the memtable, frozen memtables, L0 SSTs, then sorted runs, bounded by
a seq (committed writes by default, durable ones with ``durability="remote"``, or a snapshot's).

Threads: the WAL flusher, the L0 flusher and the manifest poller run in the background; locks are
taken in the order ``_wal_mutex`` -> ``_manifest_mutex`` -> ``_lock``. They hold the ``Db`` only
weakly between steps, so a database the program dropped without closing it is collected: it is
then closed (flushed) with a ``ResourceWarning``, as are databases still open at interpreter exit.
Waits block on ``_cond`` (notified on every state change) or an event, never in a polling loop.

Closing: ``close()`` stops the background threads (an upload being retried is abandoned and
picked up again by close), joins them, then flushes what is left on its own thread with a bounded
number of retries -- with the WAL off every frozen memtable goes to L0 even past ``l0_max_ssts``.
What could not be flushed is reported by raising (``close_reason`` becomes ``"failed"``); once
``close()`` returns no thread of the database touches the object store again.
"""

from __future__ import annotations

import atexit
import bisect
import collections
import dataclasses
import itertools
import logging
import os
import random
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, NamedTuple, Self

from shale import ids
from shale.batch import Ttl, WriteBatch, check_key, check_value, expire_after, to_ttl
from shale.cache import BlockCache
from shale.clock import Clock, MonotonicClock, SystemClock
from shale.engine import components
from shale.engine.memtable import Memtable
from shale.errors import (
    ClosedError,
    CloseReason,
    DataError,
    InternalError,
    InvalidError,
    ShaleError,
    UnavailableError,
)
from shale.fbs.manifest import CompactedSst, Manifest, SstView
from shale.merge import MergeIterator
from shale.merge_operators import merge_all, resolve_versions, validate_operand
from shale.meta import segments
from shale.meta.compat import check_openable
from shale.meta.locator import SstLocator
from shale.objstore import ObjectAlreadyExists, ObjectStore
from shale.objstore.protocol import PermanentStoreError, TransientStoreError, validate_key
from shale.row import MERGE, TOMBSTONE, VALUE
from shale.settings import Durability, Settings
from shale.sst import SsTable, SstBuilder
from shale.sst.compression import codec_id

log = logging.getLogger(__name__)

DURABILITY_MEMORY: Final = "memory"
DURABILITY_REMOTE: Final = "remote"
#: How often a blocked writer re-checks backpressure and logs (SlateDB: 30 s).
BACKPRESSURE_RECHECK_S = 30.0
#: Retry back-off for transient object-store errors in background uploads (SlateDB: 100 ms-1 s).
RETRY_MIN_S = 0.1
RETRY_MAX_S = 1.0
#: Upload attempts a closing database makes before it gives up on the object store.
CLOSE_RETRIES = 3
#: How long close() waits for a background thread stuck in an object-store call.
CLOSE_JOIN_TIMEOUT_S = 60.0
#: Seconds L0 may stay full (with frozen memtables waiting) before a warning, then between them.
L0_FULL_WARN_S = 30.0
#: Longest a blocked waiter sleeps between re-checks; state changes wake it sooner.
WAIT_RECHECK_S = 1.0


class KeyValue(NamedTuple):
    """A key's resolved value and its metadata."""

    key: bytes
    value: bytes
    seq: int
    create_ts: int | None
    expire_ts: int | None


class CheckpointInfo(NamedTuple):
    """What :meth:`Db.create_checkpoint` returns."""

    id: uuid.UUID
    manifest_id: int


class WriteHandle:
    """The result of a write: its ``seq``, its ``create_ts``, and a way to wait for durability."""

    __slots__ = ("_db", "create_ts", "seq")

    def __init__(self, db: Db, seq: int, create_ts: int) -> None:
        self._db = db
        self.seq = seq
        self.create_ts = create_ts

    def wait_durable(self, timeout: float | None = None) -> None:
        """Block until this write is durable.

        :raises UnavailableError: the object store failed the upload (the write stays queued
            and is retried) or ``timeout`` elapsed; the message names the cause (e.g. L0 full,
            with the WAL off).
        :raises ClosedError: the database closed or was fenced first.
        :raises InvalidError: ``timeout`` is not ``None`` or a finite number ``>= 0``.
        """
        self._db._wait_durable(self.seq, timeout)

    def __repr__(self) -> str:
        return f"WriteHandle(seq={self.seq}, create_ts={self.create_ts})"


@dataclasses.dataclass
class _View:
    """What a read sees: memtables newest first, then the manifest's SSTs."""

    memtables: list[Memtable]
    manifest: Manifest
    max_seq: int


def _has_base(rows: Sequence[tuple]) -> bool:  # type: ignore[type-arg]
    return any(r[2] != MERGE for r in rows)


def _in_range(view: SstView, key: bytes) -> bool:
    vr = view.visible_range
    return vr is None or vr.contains(key)


def _expire_ts(kind: int, ttl: Ttl | None, now: int, default_ttl: int | None) -> int | None:
    """The ``expire_ts`` of one op written at ``now`` (tombstones carry none)."""
    if kind == TOMBSTONE:
        return None
    if ttl is None:
        return None if default_ttl is None else expire_after(now, default_ttl)
    return ttl.expire_ts(now)


def _check_flag(name: str, value: object) -> bool:
    """A ``bool`` argument, strictly: ``durable="no"`` must not mean ``True``."""
    if not isinstance(value, bool):
        raise InvalidError(f"{name} must be a bool", **{name: value})
    return value


def _check_include_expired(value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise InvalidError("include_expired must be None or a bool", include_expired=value)
    return value


def _key_detail(key: bytes) -> bytes:
    return key if len(key) <= 64 else key[:64] + b"..."


@dataclasses.dataclass
class _PendingWal:
    """A WAL SST taken from the buffer whose upload has not succeeded yet."""

    wal_id: int
    rows: list[tuple]  # type: ignore[type-arg]
    payload: bytes | None = None
    attempts: int = 0  # upload attempts so far (after the first, the object may be ours)


#: What a background step waits on next: an event and a timeout (``None``: no timeout).
_Wait = tuple[threading.Event, float | None]


def _run_background(ref: weakref.ref[Db], step: Callable[[Db], _Wait | None], first: _Wait) -> None:
    """Drive one background loop of a database: wait, then run ``step`` until it returns None.

    The database is held only while a step runs, never while waiting, so a database dropped
    without ``close()`` can be collected (its ``__del__`` closes it). A ``ClosedError`` closes
    the database with its reason; any other exception closes it as failed.
    """
    event, timeout = first
    while True:
        event.wait(timeout)
        db = ref()
        if db is None:
            return
        try:
            nxt = step(db)
        except ClosedError as exc:
            db._fail(exc.reason, exc)
            return
        except BaseException as exc:  # a background failure closes the database
            log.exception("background task failed; closing the database")
            db._fail(CloseReason.FAILED, exc)
            return
        del db
        if nxt is None:
            return
        event, timeout = nxt


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
        if db._close_started or db._pid != os.getpid():
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


def _deadline(timeout: float | None) -> float | None:
    """``time.monotonic()`` deadline of a ``timeout=`` argument (``None``: wait for ever)."""
    timeout = components.check_timeout(timeout)
    return None if timeout is None else time.monotonic() + timeout


class Db:
    """An open database. Create it with :meth:`Db.open`; it is thread-safe.

    Use it as a context manager, or call :meth:`close`.
    """

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str,
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
        :raises InvalidError: bad settings or arguments, or a component that cannot work (a
            codec whose optional library is missing, a merge operator, filter policy,
            transformer, clock or store without the methods it needs, bad ``store_options``),
            all checked before the store is opened; a segmented database opened without its
            extractor (or with another one), before anything is written.
        :raises ClosedError: fenced by a newer writer while opening.
        """
        from shale.plugins import get_host

        db = cls._build(
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
        )
        db._start()
        get_host().db_opened(db)
        return db

    @classmethod
    def _build(
        cls,
        path: str,
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
    ) -> Self:
        """Settings + explicit components + plugins -> a database object, not started yet
        (:meth:`open`'s arguments; the read-only open builds its engine here too)."""
        from shale.plugins import get_host

        settings = settings if settings is not None else Settings()
        if not isinstance(settings, Settings):
            raise InvalidError("settings must be a shale.Settings", type=type(settings).__name__)
        if not isinstance(path, str) or (object_store is None and not path) or "\x00" in path:
            raise InvalidError("path must be a non-empty string without NUL", path=path)
        # Every component is checked before the store is opened: a bad one must fail here, not
        # in the first background upload after writes were acknowledged.
        host = get_host()
        components.check_codec(settings.compression_codec)
        options = components.check_store_options(store_options)
        if merge_operator is None and settings.merge_operator:
            merge_operator = host.merge_operator(settings.merge_operator)
            if merge_operator is None:
                raise InvalidError(
                    "no plugin provides that merge operator", merge_operator=settings.merge_operator
                )
        components.check_merge_operator(merge_operator)
        if filter_policies is None:
            offered = {p.name: p for p in host.filter_policies(settings)}
            missing = [n for n in settings.filter_policies if n not in offered]
            if missing:
                raise InvalidError("unknown filter policy", names=missing)
            filter_policies = [offered[n] for n in settings.filter_policies]
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
        return cls(
            object_store,
            root,
            settings,
            merge_operator=merge_operator,
            clock=clock or SystemClock(),
            block_cache=block_cache
            if block_cache is not None
            else BlockCache(settings.block_cache_bytes),
            filter_policies=list(filter_policies),
            transformer=transformer,
            url=path,
            prefix_extractor=prefix_extractor,
        )

    def __init__(
        self,
        store: ObjectStore,
        root: str,
        settings: Settings,
        *,
        merge_operator: Any,
        clock: Clock,
        block_cache: BlockCache,
        filter_policies: list[Any],
        transformer: Any,
        url: str,
        prefix_extractor: Any = None,
    ) -> None:
        self.store = store
        self.root = root
        self.url = url
        self.settings = settings
        self.merge_operator = merge_operator
        self.clock = MonotonicClock(clock)
        self.block_cache = block_cache
        self.filter_policies = filter_policies
        self.transformer = transformer
        #: the segment extractor (``None``: every key goes to the root tree)
        self.prefix_extractor: segments.PrefixExtractor | None = prefix_extractor
        self._segment_prefixes: list[bytes] = []  # sorted prefixes accepted so far
        self._codec = codec_id(settings.compression_codec)  # its library: checked in open()
        self._rand = random.Random(settings.seed)

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._wal_mutex = threading.Lock()
        self._manifest_mutex = threading.Lock()
        self._stop = threading.Event()
        self._wal_wakeup = threading.Event()
        self._l0_wakeup = threading.Event()
        self._threads: list[threading.Thread] = []

        self._started = False  # background threads running: __del__ must close it
        self._pid = os.getpid()  # a forked child must not flush (or close) its parent's Db
        self._closed = False
        self._close_started = False  # close() was called
        self._close_done = threading.Event()  # close() finished
        self._close_notified = False  # shale_db_closed was sent
        self._final_flusher: threading.Thread | None = None  # the thread running close's flush
        self._close_reason: str | None = None
        self._failure: BaseException | None = None

        self._memtable = Memtable()
        self._imms: collections.deque[Memtable] = collections.deque()  # oldest first
        self._imm_bytes = 0  # sum of the frozen memtables' sizes
        self._wal_buf: list[tuple] = []  # type: ignore[type-arg]
        self._wal_buf_bytes = 0
        self._wal_flushes_since_freeze = 0
        self._wal_queue: collections.deque[_PendingWal] = collections.deque()  # in id order
        self._freeze_wanted = 0  # flush(memtable=True) requests, counted
        self._freeze_done = 0  # requests the WAL flusher has frozen the memtable for
        self._wal_error: BaseException | None = None  # set while WAL uploads are failing
        self._wal_error_seq = 0
        self._wal_failures = 0  # failed WAL upload attempts, ever
        self._l0_error: BaseException | None = None  # set while L0 uploads are failing
        self._l0_failures = 0  # failed L0 upload or manifest attempts, ever
        self._l0_full_since: float | None = None  # monotonic time L0 became full (work waiting)
        self._l0_warned_at = 0.0
        self._last_seq = 0
        self._durable_seq = 0
        self._next_wal_id = 1
        self._snapshots: dict[int, int] = {}
        self._snapshot_ids = itertools.count(1)
        self._tables = BlockCache(settings.meta_cache_bytes)  # open SSTs by id
        self._ssts = SstLocator(store, root)  # where each SST lives (clones: the source's path)
        self.stats: dict[str, int] = collections.Counter()

    def _start(self) -> None:
        from shale.meta.manifest_store import FenceableManifest, ManifestStore, StoredManifest
        from shale.objstore.probe import probe_writable

        s = self.settings
        self._ms = ManifestStore(self.store, self.root, format_version=s.manifest_format_version)
        # Refuse what shale cannot read or write correctly, and find a clone's sources, before
        # anything is written (an existing database's manifest is only read here) ...
        found = self._ms.read_latest()
        if found is not None:
            self._check_writable_manifest(found[1])
        # ... and fence only once we know we can write: a failed open leaves the epoch untouched
        probe_dirs = ["wal", "compacted"] if s.wal_enabled else ["compacted"]
        probe_writable(self.store, [ids.dir_path(self.root, d) for d in probe_dirs])
        stored = StoredManifest.create_or_load(
            self._ms, segments.initial_manifest(self.prefix_extractor)
        )
        self._check_writable_manifest(stored.manifest)  # it may have changed meanwhile
        self._segment_prefixes = [seg.prefix for seg in stored.manifest.segments]
        self._fm = FenceableManifest.init_writer(stored, timeout=s.manifest_update_timeout)
        m = self._fm.manifest
        self._ssts.observe(m.external_dbs)
        if m.last_l0_clock_tick > -(2**63):
            self.clock.advance_to(m.last_l0_clock_tick)
        self._manifest = m
        self._manifest_id = self._fm.id
        self._last_seq = self._durable_seq = m.last_l0_seq
        if s.wal_enabled:
            fence_id = self._fence_wal(m)
            self._replay_wal(m, fence_id)
            self._next_wal_id = fence_id + 1
        else:
            self._next_wal_id = m.wal_id_last_seen + 1
        poll = s.manifest_poll_interval
        if s.wal_enabled:
            self._spawn("shale-wal-flusher", Db._wal_step, (self._wal_wakeup, s.flush_interval))
        self._spawn("shale-l0-flusher", Db._l0_step, (self._l0_wakeup, 0.0))
        self._spawn("shale-manifest-poller", Db._poll_step, (self._stop, poll))
        self._started = True
        _open_dbs.add(self)
        log.info(
            "opened shale database url=%s manifest=%d writer_epoch=%d next_wal=%d last_seq=%d",
            self.url,
            self._manifest_id,
            self._fm.epoch,
            self._next_wal_id,
            self._last_seq,
        )

    def _check_writable_manifest(self, m: Manifest) -> None:
        """Refuse a manifest this writer cannot read or write correctly (shapes shale does not
        understand, a clone whose sources are missing, segments without their extractor)."""
        check_openable(m)
        self._ssts.check(m)
        segments.check_manifest(m)
        segments.check_writer(m, self.prefix_extractor)

    def _spawn(self, name: str, step: Callable[[Db], _Wait | None], first: _Wait) -> None:
        t = threading.Thread(
            target=_run_background, args=(weakref.ref(self), step, first), name=name, daemon=True
        )
        self._threads.append(t)
        t.start()

    def __del__(self) -> None:
        # Dropped without close(): flush and stop like close() does, and say so. (A database
        # that was fenced or failed has stopped and has nothing to flush.)
        if not getattr(self, "_started", False) or self._close_started or self._closed:
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

    # -- WAL fencing and replay ------------------------------------------------------------

    def _wal_ids(self) -> list[int]:
        out = []
        for meta in self.store.list(ids.dir_path(self.root, "wal")):
            n = ids.parse_numbered(meta.key, ".sst")
            if n is not None:
                out.append(n)
        out.sort()
        return out

    def _fence_wal(self, m: Manifest) -> int:
        """Create the empty fence object at the next free WAL id; return that id."""
        listed = [i for i in self._wal_ids() if i > m.replay_after_wal_id]
        candidate = max([m.replay_after_wal_id, m.wal_id_last_seen, *listed]) + 1
        while True:
            try:
                self.store.put_if_absent(ids.wal_path(self.root, candidate), b"")
                return candidate
            except ObjectAlreadyExists:
                with self._manifest_mutex:
                    self._fm.refresh()  # raises if a newer writer fenced us meanwhile
                candidate += 1

    def _replay_wal(self, m: Manifest, fence_id: int) -> None:
        replay = [i for i in self._wal_ids() if m.replay_after_wal_id < i < fence_id]
        last_seq = m.last_l0_seq
        mt = self._memtable
        replayed = 0
        for wal_id in replay:
            data = self.store.get(ids.wal_path(self.root, wal_id))
            if not data:
                continue  # a fence object
            table = SsTable.from_bytes(data, transformer=self.transformer)
            for row in table.rows():
                if row[1] <= m.last_l0_seq:
                    continue
                mt.put(row)
                replayed += 1
                if row[1] > last_seq:
                    last_seq = row[1]
            if mt.size >= self.settings.l0_sst_size_bytes:
                self._imms.append(mt.freeze(wal_id))
                self._imm_bytes += mt.size
                mt = self._memtable = Memtable()
        if not mt.is_empty():
            # replayed rows are durable already: queue them for L0 like any frozen memtable
            self._imms.append(mt.freeze(replay[-1] if replay else None))
            self._imm_bytes += mt.size
            self._memtable = Memtable()
        self._last_seq = self._durable_seq = last_seq
        if replayed:
            log.info("replayed %d rows from %d WAL SSTs", replayed, len(replay))
            self.stats["wal_replayed_rows"] += replayed

    # -- state checks ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error("database is closed")

    def _closed_error(self, message: str, reason: str | None = None) -> ClosedError:
        """The ``ClosedError`` to raise now; after a fence or a failure it names the cause.

        The background failure that closed the database is the error's ``__cause__`` and is
        quoted in its message (``error=...``), so "closed (failed)" never comes without a why.
        """
        reason = reason or self._close_reason or CloseReason.CLEAN
        failure = self._failure if reason != CloseReason.CLEAN else None
        if failure is None:
            return ClosedError(message, reason=reason)
        err = ClosedError(message, reason=reason, error=f"{type(failure).__name__}: {failure}")
        err.__cause__ = failure
        return err

    def _fail(self, reason: str, exc: BaseException | None) -> None:
        with self._lock:
            if self._closed and self._close_reason not in (None, CloseReason.CLEAN):
                return
            self._closed = True
            self._close_reason = reason
            self._failure = exc
            # while close() runs, close() sends shale_db_closed once it has stopped everything
            notify = not self._close_notified and not self._close_started
            self._close_notified = self._close_notified or notify
            self._cond.notify_all()
        self._stop.set()
        self._wal_wakeup.set()
        self._l0_wakeup.set()
        if reason == CloseReason.FENCED:
            log.warning("database fenced by a newer writer; closing: %s", exc)
        if notify:
            from shale.plugins import get_host

            get_host().db_closed(self, reason)

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"``, ``"fenced"`` or ``"failed"``."""
        return self._close_reason if self._closed else None

    # -- writes ------------------------------------------------------------------------------

    def put(
        self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None, durable: bool = True
    ) -> WriteHandle:
        """Set ``key`` to ``value``. Returns once durable unless ``durable=False``.

        :param ttl: milliseconds until expiry, a :class:`shale.Ttl`, or ``None`` for
            ``settings.default_ttl``.
        """
        item = (check_key(key), [(VALUE, check_value(value), None if ttl is None else to_ttl(ttl))])
        return self._write_items([item], durable)

    def delete(self, key: bytes, *, durable: bool = True) -> WriteHandle:
        """Delete ``key`` (writes a tombstone)."""
        return self._write_items([(check_key(key), [(TOMBSTONE, b"", None)])], durable)

    def merge(
        self, key: bytes, operand: bytes, *, ttl: int | Ttl | None = None, durable: bool = True
    ) -> WriteHandle:
        """Add a merge operand for ``key``; reads fold operands with the merge operator."""
        item = (
            check_key(key),
            [(MERGE, check_value(operand), None if ttl is None else to_ttl(ttl))],
        )
        return self._write_items([item], durable)

    def write(self, batch: WriteBatch, *, durable: bool = True) -> WriteHandle:
        """Apply ``batch`` atomically: one seq, one create_ts, all or nothing.

        :raises InvalidError: an empty batch.
        :raises ClosedError: the database is closed or fenced.
        :raises UnavailableError: a durable write whose WAL upload failed (it stays queued).
        """
        if not isinstance(batch, WriteBatch):
            raise InvalidError("write() takes a shale.WriteBatch", type=type(batch).__name__)
        if batch.is_empty():
            raise InvalidError("empty write batch")
        return self._write_items(batch.items(), durable)

    def _write_items(
        self, items: list[tuple[bytes, list[tuple[int, bytes, Ttl | None]]]], durable: bool
    ) -> WriteHandle:
        if type(durable) is not bool:  # hot path: the call only when it is wrong
            _check_flag("durable", durable)
        if self._closed:
            self._check_open()
        op = self.merge_operator
        for key, ops in items:
            for kind, value, _ttl in ops:
                if kind == MERGE:
                    self._check_operand(key, value, op)
        if self.prefix_extractor is not None:
            self._check_segments(items)
        if self._wal_buf_bytes + self._imm_bytes > self.settings.max_unflushed_bytes:
            self._backpressure()
        default_ttl = self.settings.default_ttl
        settings = self.settings
        with self._lock:
            self._check_open()
            seq = self._last_seq + 1
            now = self.clock.now_ms()
            rows = []
            nbytes = 0
            for key, ops in items:
                timed = [
                    (kind, value, _expire_ts(kind, ttl, now, default_ttl))
                    for kind, value, ttl in ops
                ]
                if len(timed) > 1:
                    timed = self._combine(key, timed, op)
                for kind, value, expire in timed:
                    rows.append((key, seq, kind, value, expire, now))
                    nbytes += len(key) + len(value) + 24
            mt = self._memtable
            for row in rows:
                mt.put(row)
            self._last_seq = seq
            if settings.wal_enabled:
                self._wal_buf.extend(rows)
                self._wal_buf_bytes += nbytes
                if (
                    self._wal_buf_bytes >= settings.l0_sst_size_bytes
                    or mt.size >= settings.l0_sst_size_bytes
                ):
                    self._wal_wakeup.set()
            elif mt.size >= settings.l0_sst_size_bytes:
                self._freeze_locked(None)
        stats = self.stats
        stats["write_batch_count"] += 1
        stats["write_ops"] += len(rows)
        handle = WriteHandle(self, seq, now)
        if durable:
            self._wait_durable(seq, None)
        return handle

    def _check_segments(self, items: list[tuple[bytes, Any]]) -> None:
        """Route every key of a write to its segment before anything is written.

        :raises InvalidError: a key without a segment prefix, or a prefix that would nest with
            one already in use (RFC-0024's route-consistency check).
        """
        ext = self.prefix_extractor
        assert ext is not None
        known = self._segment_prefixes
        new = []
        for key, _ops in items:  # every key first: a batch is refused as a whole
            prefix = segments.segment_prefix(ext, key)
            i = segments.owning_prefix(known, key)
            if i is None or known[i] != prefix:
                new.append(prefix)
        for prefix in new:
            with self._lock:
                known = self._segment_prefixes
                i = bisect.bisect_left(known, prefix)
                if i < len(known) and known[i] == prefix:
                    continue
                for other in known[max(0, i - 1) : i + 1]:
                    if prefix.startswith(other) or other.startswith(prefix):
                        raise InvalidError(
                            "segment prefix would nest with a segment prefix in use",
                            prefix=prefix,
                            conflict=other,
                            extractor=ext.name,
                        )
                self._segment_prefixes = [*known[:i], prefix, *known[i:]]
                known = self._segment_prefixes

    @staticmethod
    def _check_operand(key: bytes, operand: bytes, op: Any) -> None:
        """Reject a merge operand before anything is written (SlateDB writes it and fails later).

        :raises InvalidError: no merge operator is configured, or the operator's optional
            ``validate`` rejects the operand.
        """
        if op is None:
            raise InvalidError(
                "merge operator missing: merge() needs a database opened with a merge operator "
                "(settings.merge_operator, Db.open(merge_operator=...) or --merge-operator)",
                key=_key_detail(key),
            )
        validate_operand(op, key, operand)

    @staticmethod
    def _combine(
        key: bytes, ops: list[tuple[int, bytes, int | None]], op: Any
    ) -> list[tuple[int, bytes, int | None]]:
        """Pre-combine one key's ops in a batch into one row (they share one seq).

        Merges on top of a put become a value; merges on top of a delete a value of their own;
        merges alone one merge operand. The row reads exactly as the ops written one by one only
        when the rows that combine (the put's value and every operand) share one ``expire_ts``,
        so any other batch is rejected, as SlateDB 0.17 does ("only one merge TTL per-key
        allowed in a batch"). A delete carries no TTL and takes no part in the comparison.

        :raises InvalidError: different ``expire_ts`` on one key, or the operator failed.
        """
        if len(ops) == 1:
            return ops
        if op is None:  # unreachable: _write_items rejects merges without an operator
            raise InvalidError("merge operator missing", key=_key_detail(key))
        timed = ops if ops[0][0] != TOMBSTONE else ops[1:]
        expires = {o[2] for o in timed}
        if len(expires) > 1:
            raise InvalidError(
                "the ops of one key in a write batch must share one TTL (they are combined "
                "into one row); write them in separate batches",
                key=_key_detail(key),
                expire_ts=sorted(expires, key=lambda e: -1 if e is None else e),
            )
        expire = ops[-1][2]
        if ops[0][0] in (VALUE, TOMBSTONE):
            # merges on top of a put or a delete in the same batch resolve to a plain value
            base: bytes | None = ops[0][1] if ops[0][0] == VALUE else None
            operands = [o[1] for o in ops[1:]]
            kind = VALUE
        else:
            base = None
            operands = [o[1] for o in ops]
            kind = MERGE
        return [(kind, merge_all(op, key, base, operands, error=InvalidError), expire)]

    def _backpressure(self) -> None:
        limit = self.settings.max_unflushed_bytes
        with self._lock:
            start = warned = 0.0
            while not self._closed and self._unflushed_bytes_locked() > limit:
                now = time.monotonic()
                if not start:
                    start = warned = now
                    self.stats["backpressure_count"] += 1
                    self._wal_wakeup.set()
                    self._l0_wakeup.set()
                if self._wal_error is not None:
                    raise UnavailableError(
                        "writes are blocked: unflushed data is over "
                        "max_unflushed_bytes and the object store is failing",
                        error=str(self._wal_error),
                    )
                if now - warned >= BACKPRESSURE_RECHECK_S:
                    warned = now
                    log.warning(
                        "writes blocked %.0f s by backpressure (unflushed bytes over %d): %s",
                        now - start,
                        limit,
                        self._blocked_cause_locked(),
                    )
                self._cond.wait(WAIT_RECHECK_S)

    def _unflushed_bytes_locked(self) -> int:
        return self._wal_buf_bytes + self._imm_bytes

    def _wait_durable(self, seq: int, timeout: float | None) -> None:
        deadline = _deadline(timeout)
        if self.settings.wal_enabled:
            self._wal_wakeup.set()
        else:
            # durable means "in L0": freeze now (concurrent writers share the flush), unlike
            # SlateDB 0.12.1, where such a write waits for some other flush (its issue #928)
            with self._lock:
                mt = self._memtable
                if mt.min_seq is not None and mt.min_seq <= seq:
                    self._freeze_locked(None)
            self._l0_wakeup.set()
        with self._lock:
            self._wait_locked(
                lambda: self._durable_seq >= seq,
                deadline,
                "the write was durable",
                wal=self.settings.wal_enabled,
                seq=seq,
            )

    def _upload_failures_locked(self, wal: bool) -> int:
        return self._wal_failures if wal else self._l0_failures

    def _wait_locked(
        self,
        done: Callable[[], bool],
        deadline: float | None,
        what: str,
        *,
        wal: bool,
        **detail: object,
    ) -> None:
        """Block, holding ``_lock``, until ``done()``; the condition is notified on every change
        of state, so this never polls (it re-checks at most every ``WAIT_RECHECK_S``).

        :param what: what ``done()`` means, for messages ("the write was durable").
        :param wal: waiting for WAL uploads (else for L0 flushes): which failures count.
        :raises UnavailableError: an upload failed meanwhile (the data stays queued and is
            retried in the background), or ``deadline`` passed; the message names the cause.
        :raises ClosedError: the database closed, failed or was fenced first.
        """
        failures_at_start = self._upload_failures_locked(wal)
        while not done():
            if self._closed and self._close_reason != CloseReason.CLEAN:
                raise self._closed_error(f"database closed before {what}")
            if self._upload_failures_locked(wal) > failures_at_start:
                raise UnavailableError(
                    f"the object store failed the {'WAL' if wal else 'L0'} upload before {what}; "
                    "the data is queued and the upload is retried in the background",
                    error=str(self._wal_error if wal else self._l0_error),
                    **detail,
                )
            if self._close_done.is_set():
                raise ClosedError(f"database closed before {what}", reason=CloseReason.CLEAN)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise UnavailableError(
                    f"timed out before {what}: {self._blocked_cause_locked(wal)}", **detail
                )
            self._cond.wait(WAIT_RECHECK_S if remaining is None else min(WAIT_RECHECK_S, remaining))

    def _blocked_cause_locked(self, wal: bool | None = None) -> str:
        """Why flushes are not making progress, for error messages and warnings: of WAL
        uploads (``wal=True``), of L0 flushes (``False``), or of either (``None``)."""
        l0 = segments.max_l0_ssts(self._manifest)
        if wal is not True and self._imms and l0 >= self.settings.l0_max_ssts:
            since = self._l0_full_since
            waited = 0.0 if since is None else time.monotonic() - since
            return (
                f"L0 is full ({l0} SSTs, l0_max_ssts={self.settings.l0_max_ssts}) and no "
                f"compaction has made room for {waited:.0f} s, so frozen memtables cannot be "
                "flushed -- is a compactor running?"
            )
        if wal is not False and self._wal_error is not None:
            return f"the object store is failing WAL uploads: {self._wal_error}"
        if wal is not True and self._l0_error is not None:
            return f"the object store is failing L0 uploads: {self._l0_error}"
        return "the background flush has not finished yet"

    # -- WAL flushing ------------------------------------------------------------------------

    def _wal_step(self) -> _Wait | None:
        """One round of the WAL flusher thread (see :func:`_run_background`)."""
        self._wal_wakeup.clear()
        if self._stop.is_set():
            return None
        self._flush_wal()
        return self._wal_wakeup, self.settings.flush_interval

    def _should_freeze_locked(self) -> bool:
        mt = self._memtable
        if mt.is_empty():
            return False
        return (
            mt.size >= self.settings.l0_sst_size_bytes
            or self._wal_flushes_since_freeze >= self.settings.max_wal_flushes_before_l0_flush
        )

    def _freeze_locked(self, wal_id: int | None) -> None:
        if self._memtable.is_empty():
            return
        self._imms.append(self._memtable.freeze(wal_id))
        self._imm_bytes += self._memtable.size
        self._memtable = Memtable()
        self._wal_flushes_since_freeze = 0
        self._l0_wakeup.set()

    def _flush_wal(self) -> bool:
        """Upload the WAL buffer as the next WAL SST, after any earlier upload still queued
        (one flush at a time, in id order). Runs on the WAL flusher thread, and on the closing
        thread once that one has stopped.

        :returns: False when an upload was abandoned because the database is stopping; it
            stays queued (close() retries it).
        """
        with self._wal_mutex:
            return self._flush_wal_locked()

    def _flush_wal_locked(self) -> bool:
        with self._lock:
            if self._closed and self._close_reason != CloseReason.CLEAN:
                return False
            rows = self._wal_buf
            if rows:
                self._wal_buf = []
                self._wal_buf_bytes = 0
                wal_id = self._next_wal_id
                self._next_wal_id += 1
                self._wal_flushes_since_freeze += 1
                self._wal_queue.append(_PendingWal(wal_id, rows))
            else:
                wal_id = self._next_wal_id - 1
            if self._freeze_done < self._freeze_wanted or self._should_freeze_locked():
                self._freeze_locked(wal_id)
            if self._freeze_done < self._freeze_wanted:
                self._freeze_done = self._freeze_wanted
                self._cond.notify_all()
            queue = list(self._wal_queue)
        # Upload in id order; a WAL whose upload is abandoned keeps the later ones back, so the
        # durable seq never passes a row that is not stored.
        for pending in queue:
            if pending.payload is None:
                pending.payload = self._encode_wal(pending)
            try:
                uploaded = self._upload_wal(pending)
            except BaseException as exc:
                # The rows left the buffer: whatever stopped the upload (a fence, a permanent
                # store error, an interrupt), the database must not go on acknowledging writes
                # after them.
                reason = exc.reason if isinstance(exc, ClosedError) else CloseReason.FAILED
                self._fail(reason, exc)
                if isinstance(exc, ClosedError) or not isinstance(exc, Exception):
                    raise
                raise self._closed_error("database failed") from exc
            if not uploaded:
                return False
            with self._lock:
                self._wal_queue.popleft()
                if pending.rows[-1][1] > self._durable_seq:
                    self._durable_seq = pending.rows[-1][1]
                self._wal_error = None
                self._cond.notify_all()
                if self._imms:
                    self._l0_wakeup.set()
            self.stats["wal_buffer_flushes"] += 1
            self.stats["wal_bytes"] += len(pending.payload)
        return True

    def _encode_wal(self, pending: _PendingWal) -> bytes:
        """The WAL SST bytes of ``pending``; a buffer that cannot be encoded fails the database.

        Never skip a buffer: its rows were acknowledged (and are visible), and a later write
        reported durable on top of the gap would be a lie.
        """
        rows = pending.rows
        try:
            data = SstBuilder(
                wal=True,
                block_size=self.settings.wal_block_size,
                compression=self._codec,
                transformer=self.transformer,
            )
            data.add_rows(rows)
            return data.finish()
        except Exception as exc:
            error = InternalError(
                "the WAL buffer cannot be encoded; the database stops so that no later write "
                "is acknowledged on top of the lost rows",
                wal_id=pending.wal_id,
                rows=len(rows),
                first_seq=rows[0][1],
                last_seq=rows[-1][1],
                error=f"{type(exc).__name__}: {exc}",
            )
            error.__cause__ = exc
            log.error("%s", error.message)
            self._fail(CloseReason.FAILED, error)
            raise self._closed_error("database failed") from error

    def _upload_wal(self, pending: _PendingWal) -> bool:
        """Store one WAL SST with create-if-absent, retrying transient failures.

        Returns False only when it gave up because the database is stopping (see
        :meth:`_retry_after`): the caller must then not count those rows as durable.

        :raises ClosedError: the WAL id holds another writer's object (this writer is fenced).
        """
        key = ids.wal_path(self.root, pending.wal_id)
        payload = pending.payload
        assert payload is not None
        max_seq = pending.rows[-1][1]
        delay = RETRY_MIN_S
        tries = 0
        while True:
            tries += 1
            pending.attempts += 1
            try:
                self.store.put_if_absent(key, payload)
                return True
            except ObjectAlreadyExists:
                # After a failed attempt the object may be our own upload that landed anyway:
                # WAL contents are unique (seqs, timestamps) and a fence object is empty, so
                # equal bytes prove it is ours. Only bytes read and found different fence us.
                if pending.attempts == 1:
                    raise ClosedError(
                        "a newer writer took the next WAL id: this writer is fenced",
                        reason=CloseReason.FENCED,
                        wal_id=pending.wal_id,
                    ) from None
                try:
                    stored = self.store.get(key)
                except (TransientStoreError, UnavailableError) as exc:
                    if isinstance(exc, ClosedError):
                        raise
                    error: BaseException = exc
                else:
                    if stored == payload:
                        return True
                    raise ClosedError(
                        "a newer writer took the next WAL id: this writer is fenced",
                        reason=CloseReason.FENCED,
                        wal_id=pending.wal_id,
                    ) from None
            except (TransientStoreError, UnavailableError) as exc:
                if isinstance(exc, ClosedError):
                    raise
                error = exc
            with self._lock:
                self._wal_error = error
                self._wal_error_seq = max(self._wal_error_seq, max_seq)
                self._wal_failures += 1
                self._cond.notify_all()
            if not self._retry_after(tries, delay, f"WAL upload of {key}", error):
                return False
            delay = min(delay * 2, RETRY_MAX_S)

    def _retry_after(self, tries: int, delay: float, what: str, error: BaseException) -> bool:
        """Back off ``delay`` seconds before retrying a failed upload; False: give up.

        A background thread retries until the database stops, then gives up at once (the data
        stays queued: close() retries it). close()'s own flush gives up after
        ``CLOSE_RETRIES`` attempts.
        """
        if threading.current_thread() is self._final_flusher:
            if tries >= CLOSE_RETRIES:
                log.warning("%s failed %d times while closing; giving up: %s", what, tries, error)
                return False
            log.warning("%s failed while closing, retrying in %.1fs: %s", what, delay, error)
            time.sleep(delay)
            return True
        if self._stop.is_set():
            return False
        log.warning("%s failed, retrying in %.1fs: %s", what, delay, error)
        return not self._stop.wait(delay)

    # -- L0 flushing -------------------------------------------------------------------------

    def _l0_step(self) -> _Wait | None:
        """One round of the L0 flusher thread (see :func:`_run_background`): flush the oldest
        frozen memtable to L0 if it may be, else wait to be woken (by a freeze, a durable WAL,
        or the manifest poller seeing L0 change) -- never poll."""
        self._l0_wakeup.clear()
        if self._stop.is_set():
            return None  # close() flushes what is left (with the WAL on, it is in the WAL)
        poll = self.settings.manifest_poll_interval
        with self._lock:
            imm = self._imms[0] if self._imms else None
            l0 = segments.max_l0_ssts(self._manifest)
        if imm is None:
            self._l0_full_since = None
            return self._l0_wakeup, poll
        if self.settings.wal_enabled and self._durable_seq < imm.max_seq:
            # its WAL is not stored yet; the WAL flusher wakes us once it is
            self._wal_wakeup.set()
            return self._l0_wakeup, poll
        if l0 >= self.settings.l0_max_ssts:
            self._note_l0_full(l0)
            return self._l0_wakeup, poll
        self._l0_full_since = None
        if not self._flush_imm(imm):
            return None  # stopping
        return self._l0_wakeup, 0.0

    def _note_l0_full(self, l0: int) -> None:
        """L0 is full and frozen memtables wait: count it, and warn now and then."""
        self.stats["l0_backpressure_waits"] += 1
        now = time.monotonic()
        if self._l0_full_since is None:
            self._l0_full_since = self._l0_warned_at = now
            return
        if now - self._l0_warned_at >= L0_FULL_WARN_S:
            self._l0_warned_at = now
            with self._lock:
                imms, imm_bytes = len(self._imms), self._imm_bytes
            log.warning(
                "L0 full (%d SSTs), no compaction progress for %.0f s -- is a compactor "
                "running? %d frozen memtables (%d bytes) wait to be flushed; writers block at "
                "max_unflushed_bytes",
                l0,
                now - self._l0_full_since,
                imms,
                imm_bytes,
            )

    def _retention_boundary(self, imm: Memtable) -> int:
        with self._lock:
            return min(self._snapshots.values(), default=imm.max_seq)

    def _l0_rows(self, imm: Memtable, boundary: int) -> Iterator[tuple]:  # type: ignore[type-arg]
        """The rows an L0 SST keeps: retention, expiry and tombstone rules of a flush."""
        tick = imm.last_tick
        prev_key = None
        below_done = False
        for row in imm.iter_rows():
            key, seq, kind, _value, expire, create = row
            if key != prev_key:
                prev_key = key
                below_done = False
            elif below_done:
                continue
            if expire is not None and tick is not None and expire <= tick:
                if kind == MERGE:
                    continue  # an expired operand is dropped
                if kind == VALUE:
                    row = (key, seq, TOMBSTONE, b"", None, create)
                    kind = TOMBSTONE
            if seq <= boundary and kind != MERGE:
                below_done = True  # older versions are hidden from every reader
            yield row

    def _new_l0_builder(self) -> SstBuilder:
        s = self.settings
        return SstBuilder(
            block_size=s.block_size,
            compression=self._codec,
            filter_policies=self.filter_policies,
            min_filter_keys=s.min_filter_keys,
            transformer=self.transformer,
        )

    def _l0_builders(self, imm: Memtable, boundary: int) -> list[tuple[bytes, SstBuilder]]:
        """The L0 SSTs of one flush: one per tree its rows touch, ``(prefix, builder)``.

        A row goes to the segment that owns its key in the manifest, else to its extractor's
        prefix, else (an unsegmented database) to the root tree ``b""``.
        """
        rows = self._l0_rows(imm, boundary)
        m = self._manifest
        ext = self.prefix_extractor
        if ext is None and not m.segments:
            builder = self._new_l0_builder()
            builder.add_rows(rows)
            return [(b"", builder)]
        persisted = [seg.prefix for seg in m.segments]
        out: dict[bytes, SstBuilder] = {}
        for prefix, group in itertools.groupby(
            rows, key=lambda r: self._flush_prefix(persisted, r[0])
        ):
            if prefix not in out:
                out[prefix] = self._new_l0_builder()
            out[prefix].add_rows(group)
        return sorted(out.items())

    def _flush_prefix(self, persisted: list[bytes], key: bytes) -> bytes:
        i = segments.owning_prefix(persisted, key)
        if i is not None:
            return persisted[i]
        ext = self.prefix_extractor
        if ext is None:
            return b""
        try:
            return segments.segment_prefix(ext, key)
        except InvalidError:
            # only a row replayed from a WAL written under another extractor gets here
            log.warning("key %r has no segment prefix; flushing it to the root tree", key[:64])
            return b""

    def _flush_imm(self, imm: Memtable) -> bool:
        """Write ``imm`` as L0 SSTs (one per tree it touches) and publish them in one manifest
        update; False when it gave up because the database is stopping (``imm`` stays queued)."""
        boundary = self._retention_boundary(imm)
        views: list[tuple[bytes, SstView]] = []
        for prefix, builder in self._l0_builders(imm, boundary):
            if not len(builder):
                continue
            sst_id = ids.Ulid.new(self.clock.now_ms(), self._rand)
            data = builder.finish()
            if not self._put_with_retry(ids.compacted_path(self.root, sst_id), data):
                return False
            views.append((prefix, SstView(sst_id, CompactedSst(sst_id, builder.info, 2), None)))
            self.stats["l0_flush_bytes"] += len(data)
        from shale.meta.seq_tracker import SequenceTracker

        def mutate(m: Manifest, next_id: int) -> Manifest | None:
            if imm.max_seq and m.last_l0_seq >= imm.max_seq:
                return None  # already published (a retry after a lost reply)
            tracker = SequenceTracker.decode(m.sequence_tracker)
            if imm.last_tick is not None:
                tracker.insert(imm.max_seq, imm.last_tick // 1000)
            for prefix, view in views:  # one manifest update publishes every tree's L0
                m = segments.add_l0(m, prefix, view)
            return dataclasses.replace(
                m,
                replay_after_wal_id=max(m.replay_after_wal_id, imm.wal_id or 0),
                wal_id_last_seen=max(m.wal_id_last_seen, self._next_wal_id - 1),
                last_l0_seq=max(m.last_l0_seq, imm.max_seq),
                last_l0_clock_tick=max(m.last_l0_clock_tick, imm.last_tick or m.last_l0_clock_tick),
                recent_snapshot_min_seq=boundary,
                sequence_tracker=tracker.encode(),
            )

        delay = RETRY_MIN_S
        tries = 0
        while True:
            tries += 1
            try:
                self._update_manifest(mutate)
                break
            except (TransientStoreError, UnavailableError) as exc:
                if isinstance(exc, ClosedError):
                    raise
                self._note_l0_failure(exc)
                if not self._retry_after(tries, delay, "manifest update for an L0 flush", exc):
                    return False  # imm stays queued (its rows in the WAL, if any)
                delay = min(delay * 2, RETRY_MAX_S)
        with self._lock:
            if self._imms and self._imms[0] is imm:
                self._imms.popleft()
                self._imm_bytes -= imm.size
            if not self.settings.wal_enabled and imm.max_seq > self._durable_seq:
                self._durable_seq = imm.max_seq
            self._l0_error = None
            self._cond.notify_all()
        self.stats["immutable_memtable_flushes"] += 1
        return True

    def _note_l0_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._l0_error = exc
            self._l0_failures += 1
            self._cond.notify_all()

    def _put_with_retry(self, key: str, data: bytes) -> bool:
        """``store.put`` retried on transient errors; False when it gave up (stopping)."""
        delay = RETRY_MIN_S
        tries = 0
        while True:
            tries += 1
            try:
                self.store.put(key, data)
                return True
            except TransientStoreError as exc:
                self._note_l0_failure(exc)
                if not self._retry_after(tries, delay, f"upload of {key}", exc):
                    return False
                delay = min(delay * 2, RETRY_MAX_S)

    # -- manifest ----------------------------------------------------------------------------

    def _update_manifest(self, mutate: Callable[[Manifest, int], Manifest | None]) -> Manifest:
        with self._manifest_mutex:
            m = self._fm.update(mutate, timeout=self.settings.manifest_update_timeout)
            self._ssts.observe(m.external_dbs)
            with self._lock:
                self._manifest = m
                self._manifest_id = self._fm.id
            self._forget_tables(m)
            return m

    def _refresh_manifest(self) -> Manifest:
        with self._manifest_mutex:
            m = self._fm.refresh()
            self._ssts.observe(m.external_dbs)
            with self._lock:
                self._manifest = m
                self._manifest_id = self._fm.id
                self._cond.notify_all()
            self._forget_tables(m)
            return m

    def _poll_step(self) -> _Wait | None:
        """One round of the manifest poller thread (see :func:`_run_background`)."""
        if self._stop.is_set():
            return None
        try:
            self._refresh_manifest()
        except (ClosedError, PermanentStoreError):
            raise  # fenced, or the store refuses for good: polling again will not help
        except ShaleError as exc:
            log.warning("manifest poll failed: %s", exc)
        if self._imms:
            self._l0_wakeup.set()  # a compaction may have made room in L0
        return self._stop, self.settings.manifest_poll_interval

    def refresh_manifest(self) -> Manifest:
        """Read the latest manifest now (it is also polled every ``manifest_poll_interval``)."""
        self._check_open()
        return self._refresh_manifest()

    def manifest(self) -> Manifest:
        """The manifest this database currently reads from."""
        return self._manifest

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
        _check_flag("memtable", memtable)
        self._check_open()
        deadline = _deadline(timeout)
        wal = self.settings.wal_enabled
        ticket = 0
        with self._lock:
            target = self._last_seq
            if not wal:
                self._freeze_locked(None)
            elif memtable:
                self._freeze_wanted += 1
                ticket = self._freeze_wanted
        if wal:
            self._wal_wakeup.set()
            with self._lock:
                self._wait_locked(
                    lambda: (
                        self._durable_seq >= target
                        and (not memtable or self._freeze_done >= ticket)
                    ),
                    deadline,
                    "the WAL was flushed",
                    wal=True,
                )
        if memtable or not wal:
            self._l0_wakeup.set()
            with self._lock:
                self._wait_locked(
                    lambda: (
                        not self._imms
                        or self._imms[0].min_seq is None
                        or self._imms[0].min_seq > target
                    ),
                    deadline,
                    "the memtable was flushed to L0",
                    wal=False,
                )
        self.stats["flushes"] += 1

    def close(self) -> None:
        """Flush the WAL (or, with the WAL off, every memtable to L0) and stop background work.

        Background threads are stopped first; close() then flushes what is left itself,
        retrying a failing upload ``CLOSE_RETRIES`` times. With the WAL off, memtables go to L0
        even when that takes L0 past ``l0_max_ssts`` (the limit throttles writers, and there
        are none left). Once close() returns -- or raises -- no thread of this database
        touches the object store again.

        After a fence or a failure nothing is flushed. Closing twice is harmless.

        :raises UnavailableError: writes could not be flushed (the object store kept failing);
            the message says how many and which seqs: they are lost. ``close_reason`` is then
            ``"failed"`` and the store's error is the ``__cause__``. (A cause of another kind,
            e.g. a ``DataError``, is reported with that kind.)
        :raises ClosedError: ``reason="fenced"``: a newer writer fenced this one while it
            flushed; the writes not flushed are lost.
        :raises ClosedError: ``reason="failed"``: the database had failed before close();
            writes that were not durable yet may be lost. The failure is the ``__cause__``.
        """
        with self._lock:
            again = self._close_started
            self._close_started = True
            failed_before = self._closed and self._close_reason != CloseReason.CLEAN
            self._closed = True
            if self._close_reason is None:
                self._close_reason = CloseReason.CLEAN
            self._cond.notify_all()
        if again:
            if threading.current_thread() not in self._threads:
                self._close_done.wait()
            return
        _open_dbs.discard(self)
        error: ShaleError | None = None
        try:
            self._stop.set()
            self._wal_wakeup.set()
            self._l0_wakeup.set()
            stuck = self._join_threads()
            if stuck:
                error = UnavailableError(
                    "close: background threads are stuck in an object-store call; nothing "
                    "more was flushed",
                    threads=stuck,
                    timeout=CLOSE_JOIN_TIMEOUT_S,
                )
            elif not failed_before:
                error = self._flush_on_close()
        finally:
            with self._lock:
                if error is not None and self._close_reason == CloseReason.CLEAN:
                    self._close_reason = CloseReason.FAILED
                    self._failure = error
                notify = not self._close_notified
                self._close_notified = True
                self._close_done.set()
                self._cond.notify_all()
            log.info(
                "closed shale database url=%s reason=%s metrics=%s",
                self.url,
                self._close_reason,
                self.metrics(),
            )
            if notify:
                from shale.plugins import get_host

                get_host().db_closed(self, self._close_reason or CloseReason.CLEAN)
        if error is not None:
            raise error
        if failed_before and self._close_reason == CloseReason.FAILED:
            raise self._closed_error("database failed; writes not yet durable may be lost")

    def _crash(self) -> None:
        """Stop the way a killed process would (for tests and simulations; see
        :func:`shale.testing.crash`): nothing more is flushed or written, the background
        threads are joined, and the handle reports ``close_reason == "failed"``."""
        self._fail(CloseReason.FAILED, InternalError("simulated crash"))
        _open_dbs.discard(self)
        self._join_threads()

    def _join_threads(self) -> list[str]:
        """Wait for the background threads; the names of those still running after
        ``CLOSE_JOIN_TIMEOUT_S`` (stuck in an object-store call)."""
        me = threading.current_thread()
        deadline = time.monotonic() + CLOSE_JOIN_TIMEOUT_S
        for t in self._threads:
            if t is not me:
                t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t is not me and t.is_alive()]

    def _flush_on_close(self) -> ShaleError | None:
        """close()'s flush, on the closing thread once the background threads have stopped.

        Returns the error close() raises when writes are left unflushed, else ``None``.
        """
        cause: BaseException | None = None
        self._final_flusher = threading.current_thread()
        try:
            if self.settings.wal_enabled:
                self._flush_wal()
            else:
                with self._lock:
                    self._freeze_locked(None)
                while True:
                    with self._lock:
                        imm = self._imms[0] if self._imms else None
                    if imm is None or not self._flush_imm(imm):
                        break
        except ClosedError as exc:  # fenced while flushing
            self._fail(exc.reason, exc)
            cause = exc
        except ShaleError as exc:  # e.g. a permanent store error
            cause = exc
        finally:
            self._final_flusher = None
        with self._lock:
            if self.settings.wal_enabled:
                rows = [r for p in self._wal_queue for r in p.rows] + self._wal_buf
            else:
                rows = [r for mt in [*self._imms, self._memtable] for r in mt.iter_rows()]
            if cause is None:
                cause = self._wal_error if self.settings.wal_enabled else self._l0_error
        if not rows:
            return None
        seqs = {r[1] for r in rows}
        detail = {"writes": len(seqs), "first_seq": min(seqs), "last_seq": max(seqs)}
        what = (
            f"{len(seqs)} writes (seq {min(seqs)}..{max(seqs)}) were not flushed to the "
            f"{'WAL' if self.settings.wal_enabled else 'L0'} and are lost"
        )
        error: ShaleError
        if isinstance(cause, ClosedError):
            error = ClosedError(
                f"fenced by a newer writer while closing: {what}", reason=cause.reason, **detail
            )
        else:
            # the public kind of the cause: unavailable for a store outage or a full disk
            kind: type[ShaleError] = UnavailableError
            if cause is not None and not isinstance(cause, UnavailableError):
                kinds = (DataError, InvalidError, InternalError, ShaleError)
                kind = next((k for k in kinds if isinstance(cause, k)), UnavailableError)
            error = kind(f"close could not flush: {what}", error=str(cause), **detail)
        error.__cause__ = cause
        log.error("%s", error)
        return error

    def __enter__(self) -> Db:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.close()
        except ClosedError:
            if exc_type is None:
                raise  # else the error already propagating says more (and chains the cause)

    def __repr__(self) -> str:
        state = "open" if not self._closed else f"closed:{self._close_reason}"
        return f"<shale.Db {self.url!r} {state}>"

    # -- reads -------------------------------------------------------------------------------

    def _read_seq(self, durability: str, dirty: bool) -> int:
        if type(dirty) is not bool:
            _check_flag("dirty", dirty)
        if durability == DURABILITY_MEMORY:
            return self._last_seq
        if durability == DURABILITY_REMOTE:
            return self._durable_seq
        raise InvalidError("durability must be 'memory' or 'remote'", durability=durability)

    def _view(self, max_seq: int) -> _View:
        with self._lock:
            mts = [self._memtable, *reversed(self._imms)]
            return _View(mts, self._manifest, max_seq)

    def _table(self, view: SstView) -> SsTable:
        """The open SST of a view, from the byte-bounded metadata cache (index and filter)."""
        sid = view.sst.id.value
        t = self._tables.get(sid)
        assert t is None or isinstance(t, SsTable)
        if t is None:
            store, key = self._ssts.locate(view.sst.id)
            t = SsTable.open(
                store,
                key,
                policies=self.filter_policies or None,
                transformer=self.transformer,
                block_cache=self.block_cache,
            )
            self._tables.put(sid, t, t.meta_bytes())
        return t

    def _forget_tables(self, m: Manifest) -> None:
        live = {v.sst.id.value for v in segments.all_views(m)}
        for sid in [s for s in self._tables.keys() if s not in live]:
            self._tables.remove(sid)

    def _point_versions(self, v: _View, key: bytes) -> list[tuple]:  # type: ignore[type-arg]
        max_seq = v.max_seq
        out: list[tuple] = []  # type: ignore[type-arg]
        for mt in v.memtables:
            rows = mt.get(key, max_seq)
            if rows:
                out.extend(rows)
                if _has_base(rows):
                    return out
        tree = segments.tree_for_key(v.manifest, key)  # the root's, or the owning segment's
        for view in tree.l0:
            info = view.sst.info
            if (info.first_entry is not None and key < info.first_entry) or (
                info.last_entry is not None and key > info.last_entry
            ):
                continue
            if not _in_range(view, key):
                continue
            rows = [r for r in self._table(view).get_rows(key) if r[1] <= max_seq]
            if rows:
                out.extend(rows)
                if _has_base(rows):
                    return out
        for run in tree.compacted:
            ssts = run.ssts
            firsts = [s.sst.info.first_entry or b"" for s in ssts]
            # The compactor splits its output anywhere, also between two versions of one key:
            # the SST before the first one starting at ``key`` may hold its newest versions, and
            # they can continue over several SSTs. Start at the last SST starting below ``key``.
            i = max(0, bisect.bisect_left(firsts, key) - 1)
            while i < len(ssts):
                view = ssts[i]
                info = view.sst.info
                if info.first_entry is not None and key < info.first_entry:
                    break
                if info.last_entry is None or key <= info.last_entry:
                    if _in_range(view, key):
                        rows = [r for r in self._table(view).get_rows(key) if r[1] <= max_seq]
                        out.extend(rows)
                        if rows and _has_base(rows):
                            return out
                if info.last_entry is not None and key < info.last_entry:
                    break
                i += 1
        return out

    def get_key_value(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """The value of ``key`` with its seq and timestamps, or ``None`` when absent."""
        key = check_key(key)
        self._check_open()
        return self._get(key, self._read_seq(durability, dirty), include_expired)

    def _get(self, key: bytes, max_seq: int, include_expired: bool | None) -> KeyValue | None:
        if include_expired is not None and type(include_expired) is not bool:
            _check_include_expired(include_expired)
        hide = self.settings.hide_expired if include_expired is None else not include_expired
        # Fast path: the active memtable holds the newest data; if its newest version of the key
        # is visible and a live plain value, nothing older matters.
        lst = self._memtable._versions.get(key)
        if lst:
            r = lst[-1]
            if (
                r[1] <= max_seq
                and r[2] == VALUE
                and (r[4] is None or not hide or r[4] > self.clock.now_ms())
            ):
                self.stats["get_count"] += 1
                return KeyValue(key, r[3], r[1], r[5], r[4])
        v = self._view(max_seq)
        versions = self._point_versions(v, key)
        self.stats["get_count"] += 1
        if not versions:
            return None
        res = resolve_versions(
            versions, self.merge_operator, now_ms=self.clock.now_ms(), hide_expired=hide
        )
        if res is None:
            return None
        value, seq, create_ts, expire_ts = res
        return KeyValue(key, value, seq, create_ts, expire_ts)

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
        :param include_expired: return rows past their TTL too (SlateDB's behaviour); by default
            ``not settings.hide_expired``.
        """
        kv = self.get_key_value(
            key, durability=durability, dirty=dirty, include_expired=include_expired
        )
        return None if kv is None else kv.value

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        durability: Durability = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
    ) -> DbIterator:
        """Iterate ``(key, value)`` over ``start <= key < end`` (``None`` = unbounded).

        :param reverse: keys descending (correct across the SSTs of a sorted run, unlike
            SlateDB 0.12.1).
        :raises InvalidError: ``start > end``.
        """
        self._check_open()
        return DbIterator(
            self, start, end, reverse, self._read_seq(durability, dirty), include_expired
        )

    def scan_prefix(self, prefix: bytes, **options: Any) -> DbIterator:
        """Every key that starts with ``prefix`` (the whole keyspace for ``b""``)."""
        if not isinstance(prefix, (bytes, bytearray)):
            raise InvalidError("prefix must be bytes", type=type(prefix).__name__)
        prefix = bytes(prefix)
        return self.scan(prefix or None, _prefix_end(prefix), **options)

    def snapshot(self) -> DbSnapshot:
        """A consistent read-only view at the current committed seq (in-process only)."""
        self._check_open()
        with self._lock:
            sid = next(self._snapshot_ids)
            self._snapshots[sid] = self._last_seq
            return DbSnapshot(self, sid, self._last_seq)

    # -- checkpoints -------------------------------------------------------------------------

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

        self._check_open()
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

        self._update_manifest(mutate)
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
        self._check_open()
        self._update_manifest(
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
        self._check_open()
        self._update_manifest(lambda m, _n: remove_checkpoint(m, checkpoint_id))

    # -- status ------------------------------------------------------------------------------

    def metrics(self) -> dict[str, int]:
        """Counters (names close to SlateDB's) and gauges, as a plain dict."""
        out = dict(self.stats)
        with self._lock:
            out["last_seq"] = self._last_seq
            out["durable_seq"] = self._durable_seq
            out["immutable_memtables"] = len(self._imms)
            out["memtable_bytes"] = self._memtable.size
            out["wal_buffer_estimated_bytes"] = self._wal_buf_bytes
            trees = segments.trees(self._manifest)
            out["l0_sst_count"] = sum(len(t.l0) for t in trees)
            out["sorted_run_count"] = sum(len(t.compacted) for t in trees)
            out["segment_count"] = len(self._manifest.segments)
            out["manifest_id"] = self._manifest_id
            since = self._l0_full_since
            out["l0_flush_blocked_ms"] = (
                0 if since is None else int((time.monotonic() - since) * 1000)
            )
        cache = self.block_cache.stats()
        out["cache_hits"] = cache.get("hits", 0)
        out["cache_misses"] = cache.get("misses", 0)
        meta = self._tables.stats()
        out["meta_cache_hits"] = meta.get("hits", 0)
        out["meta_cache_misses"] = meta.get("misses", 0)
        out["meta_cache_bytes"] = meta.get("size_bytes", 0)
        return out


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (``None``: no such key)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


def _newest_first_per_key(rows: Iterator[tuple]) -> Iterator[tuple]:  # type: ignore[type-arg]
    """Re-order each run of equal keys by seq descending (rows otherwise pass through)."""
    held: list[tuple] = []  # type: ignore[type-arg]
    for r in rows:
        if held and r[0] != held[0][0]:
            if len(held) > 1:
                held.sort(key=_neg_seq)
            yield from held
            held = []
        held.append(r)
    if len(held) > 1:
        held.sort(key=_neg_seq)
    yield from held


def _neg_seq(row: tuple) -> int:  # type: ignore[type-arg]
    return -int(row[1])


class DbIterator:
    """An iterator of ``(key, value)`` over a key range, with :meth:`seek`."""

    def __init__(
        self,
        db: Db,
        start: bytes | None,
        end: bytes | None,
        reverse: bool,
        max_seq: int,
        include_expired: bool | None,
    ) -> None:
        _check_flag("reverse", reverse)
        _check_include_expired(include_expired)
        if start is not None:
            start = check_key(start)
        if end is not None:
            end = check_key(end)
        if start is not None and end is not None and start > end:
            raise InvalidError("scan range is inverted", start=start, end=end)
        self._db = db
        self._start = start
        self._end = end
        self._reverse = reverse
        self._max_seq = max_seq
        self._hide = db.settings.hide_expired if include_expired is None else not include_expired
        self._now = db.clock.now_ms()
        self._last: bytes | None = None
        self._view = db._view(max_seq)
        self._merge = self._build(start, end)
        db.stats["scan_count"] += 1

    def _sources(self, start: bytes | None, end: bytes | None) -> list[Any]:
        v = self._view
        rev = self._reverse
        srcs: list[Any] = [
            mt.iter_rows(start, end, max_seq=v.max_seq, reverse=rev) for mt in v.memtables
        ]
        # segments own disjoint key intervals: every tree overlapping the range is one more
        # group of sources for the same merge
        for tree in segments.trees_for_range(v.manifest, start, end):
            for view in tree.l0:
                srcs.append(self._sst_rows([view], start, end))
            for run in tree.compacted:
                srcs.append(self._sst_rows(run.ssts, start, end))
        return srcs

    def _sst_rows(
        self, views: Sequence[SstView], start: bytes | None, end: bytes | None
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        if self._reverse and len(views) > 1:
            # a key's versions may span adjacent SSTs; reversed SST by SST they would come
            # oldest part first, so put each key's versions back in newest-first order
            return _newest_first_per_key(self._views_rows(views, start, end))
        return self._views_rows(views, start, end)

    def _views_rows(
        self, views: Sequence[SstView], start: bytes | None, end: bytes | None
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        db = self._db
        max_seq = self._max_seq
        order = reversed(views) if self._reverse else views
        for view in order:
            info = view.sst.info
            if end is not None and info.first_entry is not None and info.first_entry >= end:
                continue
            if start is not None and info.last_entry is not None and info.last_entry < start:
                continue
            rows = db._table(view).iter_rows(start, end, reverse=self._reverse)
            if view.visible_range is None and max_seq >= self._view.manifest.last_l0_seq:
                yield from rows  # every SST row is visible: no per-row filter
                continue
            check = view.visible_range is not None
            for r in rows:
                if r[1] <= max_seq and (not check or view.visible_range.contains(r[0])):  # type: ignore[union-attr]
                    yield r

    def _build(self, start: bytes | None, end: bytes | None) -> MergeIterator:
        return MergeIterator(self._sources(start, end), reverse=self._reverse)

    def __iter__(self) -> DbIterator:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        merge = self._merge
        op = self._db.merge_operator
        while True:
            first = next(merge)  # StopIteration ends the scan
            key = first[0]
            versions = [first]
            while True:
                nxt = merge.peek()
                if nxt is None or nxt[0] != key:
                    break
                versions.append(next(merge))
            if first[2] == VALUE and (not self._hide or first[4] is None or first[4] > self._now):
                self._last = key
                return key, first[3]
            res = resolve_versions(versions, op, now_ms=self._now, hide_expired=self._hide)
            if res is not None:
                self._last = key
                return key, res[0]

    def seek(self, key: bytes) -> None:
        """Continue from the first key ``>= key`` (``<= key`` in reverse).

        :raises InvalidError: ``key`` is outside the scan range, or not past the last key
            returned.
        """
        key = check_key(key)
        if (self._start is not None and key < self._start) or (
            self._end is not None and key >= self._end
        ):
            raise InvalidError("seek key outside the scan range", key=key)
        if self._last is not None and (
            key <= self._last if not self._reverse else key >= self._last
        ):
            raise InvalidError("seek key must be past the last key returned", key=key)
        if self._reverse:
            self._merge = self._build(self._start, key + b"\x00")
        else:
            self._merge = self._build(key, self._end)


class DbSnapshot:
    """A read-only view pinned at one seq; close it (or use ``with``) to release it."""

    def __init__(self, db: Db, sid: int, seq: int) -> None:
        self._db = db
        self._sid = sid
        self.seq = seq

    def get(self, key: bytes, *, include_expired: bool | None = None) -> bytes | None:
        kv = self.get_key_value(key, include_expired=include_expired)
        return None if kv is None else kv.value

    def get_key_value(self, key: bytes, *, include_expired: bool | None = None) -> KeyValue | None:
        self._db._check_open()
        return self._db._get(check_key(key), self.seq, include_expired)

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        include_expired: bool | None = None,
    ) -> DbIterator:
        self._db._check_open()
        return DbIterator(self._db, start, end, reverse, self.seq, include_expired)

    def scan_prefix(self, prefix: bytes, **options: Any) -> DbIterator:
        if not isinstance(prefix, (bytes, bytearray)):
            raise InvalidError("prefix must be bytes", type=type(prefix).__name__)
        prefix = bytes(prefix)
        return self.scan(prefix or None, _prefix_end(prefix), **options)

    def close(self) -> None:
        with self._db._lock:
            self._db._snapshots.pop(self._sid, None)

    def __enter__(self) -> DbSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
