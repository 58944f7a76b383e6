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
empty WAL object is created at the next free WAL id. An old writer's next WAL or manifest write
fails; it closes itself with reason ``"fenced"`` and writes nothing more. WAL SSTs after
``replay_after_wal_id`` are replayed into memtables on open.

Reads see, newest first: the memtable, frozen memtables, L0 SSTs, then sorted runs, bounded by
a seq (committed writes by default, durable ones with ``durability="remote"``, or a snapshot's).

Threads: the WAL flusher, the L0 flusher and the manifest poller run in the background; locks are
taken in the order ``_wal_mutex`` -> ``_manifest_mutex`` -> ``_lock``.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from shale import ids, segments
from shale.batch import Ttl, WriteBatch, check_key, check_value, to_ttl
from shale.cache import BlockCache
from shale.clock import Clock, MonotonicClock, SystemClock
from shale.errors import (
    ClosedError,
    CloseReason,
    InvalidError,
    ShaleError,
    UnavailableError,
)
from shale.fbs.manifest import CompactedSst, Manifest, SstView
from shale.memtable import Memtable
from shale.merge import MergeIterator
from shale.merge_operators import merge_all, resolve_versions
from shale.objstore import ObjectAlreadyExists, ObjectStore
from shale.objstore.protocol import TransientStoreError
from shale.row import MERGE, TOMBSTONE, VALUE
from shale.settings import Settings
from shale.sst import SsTable, SstBuilder
from shale.sst.compression import codec_id

log = logging.getLogger(__name__)

DURABILITY_MEMORY = "memory"
DURABILITY_REMOTE = "remote"
#: How often a blocked writer re-checks backpressure and logs (SlateDB: 30 s).
BACKPRESSURE_RECHECK_S = 30.0
#: Retry back-off for transient object-store errors in background uploads (SlateDB: 100 ms-1 s).
RETRY_MIN_S = 0.1
RETRY_MAX_S = 1.0
#: Upload attempts a closing database makes before it gives up on the object store.
CLOSE_RETRIES = 3


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
            and is retried) or ``timeout`` elapsed.
        :raises ClosedError: the database closed or was fenced first.
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
            (:class:`shale.segments.PrefixExtractor`); beats ``settings.prefix_extractor``.
            A database created with one keeps one LSM tree per key prefix and must always be
            written with an extractor of the same name (see docs/segments.md).
        :raises InvalidError: bad settings or arguments; a segmented database opened without
            its extractor (or with another one), before anything is written.
        :raises ClosedError: fenced by a newer writer while opening.
        """
        from shale.plugins import get_host

        settings = settings if settings is not None else Settings()
        if not isinstance(settings, Settings):
            raise InvalidError("settings must be a shale.Settings", type=type(settings).__name__)
        host = get_host()
        if object_store is None:
            if not isinstance(path, str) or not path:
                raise InvalidError("path must be a non-empty string", path=path)
            object_store = host.open_object_store(path, store_options or {})
            root = ""
        else:
            root = path.strip("/")
        if merge_operator is None and settings.merge_operator:
            merge_operator = host.merge_operator(settings.merge_operator)
            if merge_operator is None:
                raise InvalidError(
                    "no plugin provides that merge operator", merge_operator=settings.merge_operator
                )
        if filter_policies is None:
            offered = {p.name: p for p in host.filter_policies(settings)}
            missing = [n for n in settings.filter_policies if n not in offered]
            if missing:
                raise InvalidError("unknown filter policy", names=missing)
            filter_policies = [offered[n] for n in settings.filter_policies]
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
        db = cls(
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
        db._start()
        host.notify("shale_db_opened", db=db)
        return db

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
        self._codec = codec_id(settings.compression_codec)
        self._rand = random.Random(settings.seed)

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._wal_mutex = threading.Lock()
        self._manifest_mutex = threading.Lock()
        self._stop = threading.Event()
        self._wal_wakeup = threading.Event()
        self._l0_wakeup = threading.Event()
        self._threads: list[threading.Thread] = []

        self._closed = False
        self._closing = False
        self._close_reason: str | None = None
        self._failure: BaseException | None = None

        self._memtable = Memtable()
        self._imms: collections.deque[Memtable] = collections.deque()  # oldest first
        self._imm_bytes = 0  # sum of the frozen memtables' sizes
        self._wal_buf: list[tuple] = []  # type: ignore[type-arg]
        self._wal_buf_bytes = 0
        self._wal_flushes_since_freeze = 0
        self._wal_error: BaseException | None = None  # set while WAL uploads are failing
        self._wal_error_seq = 0
        self._wal_failures = 0  # failed WAL upload attempts, ever
        self._last_seq = 0
        self._durable_seq = 0
        self._next_wal_id = 1
        self._snapshots: dict[int, int] = {}
        self._snapshot_ids = itertools.count(1)
        self._tables = BlockCache(settings.meta_cache_bytes)  # open SSTs by id
        self.stats: dict[str, int] = collections.Counter()

    def _start(self) -> None:
        from shale.manifest_store import FenceableManifest, ManifestStore, StoredManifest

        s = self.settings
        self._ms = ManifestStore(self.store, self.root, format_version=s.manifest_format_version)
        stored = StoredManifest.create_or_load(
            self._ms, segments.initial_manifest(self.prefix_extractor)
        )
        # refuse what cannot be read or written correctly before fencing writes anything
        segments.check_manifest(stored.manifest)
        segments.check_writer(stored.manifest, self.prefix_extractor)
        self._segment_prefixes = [seg.prefix for seg in stored.manifest.segments]
        self._fm = FenceableManifest.init_writer(stored, timeout=s.manifest_update_timeout)
        m = self._fm.manifest
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
        self._spawn("shale-wal-flusher", self._wal_loop)
        self._spawn("shale-l0-flusher", self._l0_loop)
        self._spawn("shale-manifest-poller", self._poll_loop)
        log.info(
            "opened shale database url=%s manifest=%d writer_epoch=%d next_wal=%d last_seq=%d",
            self.url,
            self._manifest_id,
            self._fm.epoch,
            self._next_wal_id,
            self._last_seq,
        )

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=self._guard(target), name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except ClosedError as exc:
                self._fail(exc.reason, exc)
            except BaseException as exc:  # a background failure closes the database
                log.exception("background task failed; closing the database")
                self._fail(CloseReason.FAILED, exc)

        return run

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
            reason = self._close_reason or CloseReason.CLEAN
            raise ClosedError("database is closed", reason=reason)

    def _fail(self, reason: str, exc: BaseException | None) -> None:
        with self._lock:
            if self._closed and self._close_reason not in (None, CloseReason.CLEAN):
                return
            already = self._closed
            self._closed = True
            self._close_reason = reason
            self._failure = exc
            self._cond.notify_all()
        self._stop.set()
        self._wal_wakeup.set()
        self._l0_wakeup.set()
        if reason == CloseReason.FENCED:
            log.warning("database fenced by a newer writer; closing: %s", exc)
        if not already:
            from shale.plugins import get_host

            get_host().notify("shale_db_closed", db=self, reason=reason)

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
        if self._closed:
            self._check_open()
        if self._wal_buf_bytes + self._imm_bytes > self.settings.max_unflushed_bytes:
            self._backpressure()
        if self.prefix_extractor is not None:
            self._check_segments(items)
        op = self.merge_operator
        default_ttl = self.settings.default_ttl
        settings = self.settings
        with self._lock:
            self._check_open()
            seq = self._last_seq + 1
            now = self.clock.now_ms()
            rows = []
            nbytes = 0
            for key, ops in items:
                if len(ops) > 1:
                    ops = self._combine(key, ops, op)
                for kind, value, ttl in ops:
                    if kind == TOMBSTONE:
                        expire = None
                    elif ttl is None:
                        expire = now + default_ttl if default_ttl else None
                    else:
                        expire = ttl.expire_ts(now)
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
    def _combine(
        key: bytes, ops: list[tuple[int, bytes, Ttl | None]], op: Any
    ) -> list[tuple[int, bytes, Ttl | None]]:
        """Pre-combine one key's ops in a batch (merges on top of a put become a value)."""
        if len(ops) == 1 or op is None:
            return ops
        if ops[0][0] in (VALUE, TOMBSTONE):
            # merges on top of a put or a delete in the same batch resolve to a plain value
            base: bytes | None = ops[0][1] if ops[0][0] == VALUE else None
            operands = [o[1] for o in ops[1:]]
            kind = VALUE
        else:
            base = None
            operands = [o[1] for o in ops]
            kind = MERGE
        ttl = ops[-1][2]
        return [(kind, merge_all(op, key, base, operands), ttl)]

    def _backpressure(self) -> None:
        limit = self.settings.max_unflushed_bytes
        with self._lock:
            waited = 0.0
            while not self._closed and self._unflushed_bytes_locked() > limit:
                if waited == 0.0:
                    self.stats["backpressure_count"] += 1
                    self._wal_wakeup.set()
                    self._l0_wakeup.set()
                if self._wal_error is not None:
                    raise UnavailableError(
                        "writes are blocked: unflushed data is over "
                        "max_unflushed_bytes and the object store is failing",
                        error=str(self._wal_error),
                    )
                self._cond.wait(1.0)
                waited += 1.0
                if waited % BACKPRESSURE_RECHECK_S == 0:
                    log.warning(
                        "writes blocked %.0f s by backpressure (unflushed bytes over %d)",
                        waited,
                        limit,
                    )

    def _unflushed_bytes_locked(self) -> int:
        return self._wal_buf_bytes + self._imm_bytes

    def _wait_durable(self, seq: int, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
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
            failures_at_start = self._wal_failures
            while self._durable_seq < seq:
                if self._closed and self._close_reason != CloseReason.CLEAN:
                    raise ClosedError(
                        "database closed before the write was durable",
                        reason=self._close_reason or CloseReason.FAILED,
                    )
                if self._wal_failures > failures_at_start:  # an upload failed while we waited
                    raise UnavailableError(
                        "the object store failed the WAL upload; the write is queued and will "
                        "be retried, but it is not durable yet",
                        seq=seq,
                        error=str(self._wal_error),
                    )
                if self._closed and not self._threads_alive():
                    raise ClosedError(
                        "database closed before the write was durable", reason=CloseReason.CLEAN
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise UnavailableError("timed out waiting for durability", seq=seq)
                self._cond.wait(0.5 if remaining is None else min(0.5, remaining))

    def _threads_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- WAL flushing ------------------------------------------------------------------------

    def _wal_loop(self) -> None:
        interval = self.settings.flush_interval
        while not self._stop.is_set():
            self._wal_wakeup.wait(interval)
            self._wal_wakeup.clear()
            if self._stop.is_set():
                break
            if self.settings.wal_enabled:
                self._flush_wal()

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

    def _acquire_wal_mutex(self) -> None:
        """Take the WAL mutex, but fail instead of waiting out an object-store outage."""
        failures_at_start = self._wal_failures
        while not self._wal_mutex.acquire(timeout=0.1):
            if self._wal_failures > failures_at_start:  # an upload failed while we waited
                raise UnavailableError(
                    "the object store is failing WAL uploads", error=str(self._wal_error)
                )
            if self._closed and self._close_reason != CloseReason.CLEAN:
                raise ClosedError("database closed", reason=self._close_reason or "failed")

    def _flush_wal(self, *, freeze: bool = False, wait: bool = True) -> None:
        """Upload the WAL buffer as the next WAL SST (one flush at a time, in id order).

        :param wait: block on a flush already under way (the flusher thread); callers that
            must not hang during an outage pass ``False`` and get ``UnavailableError``.
        """
        if wait:
            self._wal_mutex.acquire()
        else:
            self._acquire_wal_mutex()
        try:
            self._flush_wal_locked(freeze)
        finally:
            self._wal_mutex.release()

    def _flush_wal_locked(self, freeze: bool) -> None:
        with self._lock:
            if self._closed and self._close_reason != CloseReason.CLEAN:
                return
            rows = self._wal_buf
            if rows:
                self._wal_buf = []
                self._wal_buf_bytes = 0
                wal_id = self._next_wal_id
                self._next_wal_id += 1
                self._wal_flushes_since_freeze += 1
            else:
                wal_id = self._next_wal_id - 1
            if freeze or self._should_freeze_locked():
                self._freeze_locked(wal_id)
        if not rows:
            return
        data = SstBuilder(
            wal=True,
            block_size=self.settings.wal_block_size,
            compression=self._codec,
            transformer=self.transformer,
        )
        data.add_rows(rows)
        payload = data.finish()
        if not self._upload_wal(wal_id, payload, rows[-1][1]):
            log.error(
                "gave up uploading WAL %d while closing: %d rows were not made durable",
                wal_id,
                len(rows),
            )
            return
        with self._lock:
            if rows[-1][1] > self._durable_seq:
                self._durable_seq = rows[-1][1]
            self._wal_error = None
            self._cond.notify_all()
        self.stats["wal_buffer_flushes"] += 1
        self.stats["wal_bytes"] += len(payload)

    def _upload_wal(self, wal_id: int, payload: bytes, max_seq: int) -> bool:
        """Store one WAL SST with create-if-absent, retrying transient failures.

        Returns False only when it gave up because the database is closing or failed: the
        caller must then not count those rows as durable.

        :raises ClosedError: the WAL id holds another writer's object (this writer is fenced).
        """
        key = ids.wal_path(self.root, wal_id)
        delay = RETRY_MIN_S
        attempts = 0
        while True:
            attempts += 1
            try:
                self.store.put_if_absent(key, payload)
                return True
            except ObjectAlreadyExists:
                # After a failed attempt the object may be our own upload that landed anyway:
                # WAL contents are unique (seqs, timestamps) and a fence object is empty, so
                # equal bytes prove it is ours. Only bytes read and found different fence us.
                if attempts == 1:
                    raise ClosedError(
                        "a newer writer took the next WAL id: this writer is fenced",
                        reason=CloseReason.FENCED,
                        wal_id=wal_id,
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
                        wal_id=wal_id,
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
            log.warning("WAL upload of %s failed, retrying in %.1fs: %s", key, delay, error)
            if self._closing and attempts >= CLOSE_RETRIES:
                return False
            if self._stop.wait(delay) and (
                self._close_reason != CloseReason.CLEAN or self._closing
            ):
                if attempts >= CLOSE_RETRIES or self._close_reason != CloseReason.CLEAN:
                    return False
            delay = min(delay * 2, RETRY_MAX_S)

    # -- L0 flushing -------------------------------------------------------------------------

    def _l0_loop(self) -> None:
        while True:
            with self._lock:
                imm = self._imms[0] if self._imms else None
            if self._stop.is_set() and (
                imm is None or self.settings.wal_enabled or not self._l0_flush_on_close
            ):
                return  # with the WAL on, frozen memtables are durable in the WAL already
            if imm is None:
                self._l0_wakeup.wait(self.settings.manifest_poll_interval)
                self._l0_wakeup.clear()
                continue
            if self._closed and self._close_reason != CloseReason.CLEAN:
                return
            if self.settings.wal_enabled and self._durable_seq < imm.max_seq:
                # its WAL is not stored yet; the WAL flusher will get there
                self._wal_wakeup.set()
                with self._lock:
                    self._cond.wait(0.05)
                continue
            if segments.max_l0_ssts(self._manifest) >= self.settings.l0_max_ssts:
                self.stats["l0_backpressure_waits"] += 1
                self._l0_wakeup.wait(self.settings.manifest_poll_interval)
                self._l0_wakeup.clear()
                self._refresh_manifest()
                continue
            self._flush_imm(imm)

    _l0_flush_on_close = False

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

    def _flush_imm(self, imm: Memtable) -> None:
        boundary = self._retention_boundary(imm)
        views: list[tuple[bytes, SstView]] = []
        for prefix, builder in self._l0_builders(imm, boundary):
            if not len(builder):
                continue
            sst_id = ids.Ulid.new(self.clock.now_ms(), self._rand)
            data = builder.finish()
            self._put_with_retry(ids.compacted_path(self.root, sst_id), data)
            views.append((prefix, SstView(sst_id, CompactedSst(sst_id, builder.info, 2), None)))
            self.stats["l0_flush_bytes"] += len(data)
        from shale.seq_tracker import SequenceTracker

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
        while True:
            try:
                self._update_manifest(mutate)
                break
            except (TransientStoreError, UnavailableError) as exc:
                if isinstance(exc, ClosedError):
                    raise
                log.warning(
                    "manifest update for an L0 flush failed, retrying in %.1fs: %s", delay, exc
                )
                if self._stop.wait(delay) and (
                    self._closing or self._close_reason != CloseReason.CLEAN
                ):
                    return  # the rows stay in the WAL (or, WAL off, were never acknowledged)
                delay = min(delay * 2, RETRY_MAX_S)
        with self._lock:
            if self._imms and self._imms[0] is imm:
                self._imms.popleft()
                self._imm_bytes -= imm.size
            if not self.settings.wal_enabled and imm.max_seq > self._durable_seq:
                self._durable_seq = imm.max_seq
            self._cond.notify_all()
        self.stats["immutable_memtable_flushes"] += 1

    def _put_with_retry(self, key: str, data: bytes) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                self.store.put(key, data)
                return
            except TransientStoreError as exc:
                log.warning("upload of %s failed, retrying in %.1fs: %s", key, delay, exc)
                if self._stop.wait(delay) and self._close_reason != CloseReason.CLEAN:
                    raise
                delay = min(delay * 2, RETRY_MAX_S)

    # -- manifest ----------------------------------------------------------------------------

    def _update_manifest(self, mutate: Callable[[Manifest, int], Manifest | None]) -> Manifest:
        with self._manifest_mutex:
            m = self._fm.update(mutate, timeout=self.settings.manifest_update_timeout)
            with self._lock:
                self._manifest = m
                self._manifest_id = self._fm.id
            self._forget_tables(m)
            return m

    def _refresh_manifest(self) -> Manifest:
        with self._manifest_mutex:
            m = self._fm.refresh()
            with self._lock:
                self._manifest = m
                self._manifest_id = self._fm.id
                self._cond.notify_all()
            self._forget_tables(m)
            return m

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.settings.manifest_poll_interval):
            try:
                self._refresh_manifest()
            except ClosedError:
                raise
            except ShaleError as exc:
                log.warning("manifest poll failed: %s", exc)

    def refresh_manifest(self) -> Manifest:
        """Read the latest manifest now (it is also polled every ``manifest_poll_interval``)."""
        self._check_open()
        return self._refresh_manifest()

    def manifest(self) -> Manifest:
        """The manifest this database currently reads from."""
        return self._manifest

    # -- flush and close ----------------------------------------------------------------------

    def flush(self, *, memtable: bool = False) -> None:
        """Make every write so far durable.

        With the WAL on this uploads the WAL buffer (SlateDB's default flush). With
        ``memtable=True`` (or with the WAL off) it also freezes the memtable and waits until
        every frozen memtable is an L0 SST in the manifest.
        """
        self._check_open()
        if self.settings.wal_enabled:
            self._flush_wal(freeze=memtable, wait=False)
            self._raise_wal_error()
        if memtable or not self.settings.wal_enabled:
            with self._lock:
                if not self.settings.wal_enabled:
                    self._freeze_locked(None)
                target = self._last_seq
                self._l0_wakeup.set()
                while (
                    self._imms
                    and self._imms[0].min_seq is not None
                    and self._imms[0].min_seq <= target
                ):
                    self._check_open()
                    self._l0_wakeup.set()
                    self._cond.wait(0.1)
        self.stats["flushes"] += 1

    def _raise_wal_error(self) -> None:
        with self._lock:
            if self._closed and self._close_reason != CloseReason.CLEAN:
                raise ClosedError(
                    "database closed", reason=self._close_reason or CloseReason.FAILED
                )
            if self._wal_error is not None:
                raise UnavailableError("WAL upload failed", error=str(self._wal_error))

    def close(self) -> None:
        """Flush the WAL (or, with the WAL off, the memtable) and stop background work.

        After a fence or a failure nothing is flushed. Closing twice is harmless.
        """
        with self._lock:
            if self._closed:
                failed = self._close_reason != CloseReason.CLEAN
            else:
                failed = False
            first = not self._closed
            self._closed = True
            if self._close_reason is None:
                self._close_reason = CloseReason.CLEAN
        self._closing = True
        if first and not failed:
            try:
                if self.settings.wal_enabled:
                    self._flush_wal(wait=False)
                else:
                    with self._lock:
                        self._freeze_locked(None)
                    self._l0_flush_on_close = True
            except ShaleError as exc:
                log.warning("flush on close failed: %s", exc)
        self._stop.set()
        self._wal_wakeup.set()
        self._l0_wakeup.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=60)
        with self._lock:
            self._cond.notify_all()
        if first:
            from shale.plugins import get_host

            log.info(
                "closed shale database url=%s reason=%s metrics=%s",
                self.url,
                self._close_reason,
                self.metrics(),
            )
            get_host().notify("shale_db_closed", db=self, reason=self._close_reason or "clean")

    def __enter__(self) -> Db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if not self._closed else f"closed:{self._close_reason}"
        return f"<shale.Db {self.url!r} {state}>"

    # -- reads -------------------------------------------------------------------------------

    def _read_seq(self, durability: str, dirty: bool) -> int:
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
            t = SsTable.open(
                self.store,
                ids.compacted_path(self.root, view.sst.id),
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
        durability: str = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """The value of ``key`` with its seq and timestamps, or ``None`` when absent."""
        key = check_key(key)
        self._check_open()
        return self._get(key, self._read_seq(durability, dirty), include_expired)

    def _get(self, key: bytes, max_seq: int, include_expired: bool | None) -> KeyValue | None:
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
        durability: str = DURABILITY_MEMORY,
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
        durability: str = DURABILITY_MEMORY,
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
        self, *, lifetime: float | None = None, name: str | None = None, scope: str = "all"
    ) -> CheckpointInfo:
        """Pin the current state in the manifest so GC keeps it.

        :param lifetime: seconds until the checkpoint expires (``None``: never).
        :param scope: ``"all"`` flushes the WAL and memtable first; ``"durable"`` pins only
            what is already in the manifest.
        """
        from shale.manifest_store import add_checkpoint

        self._check_open()
        if scope not in ("all", "durable"):
            raise InvalidError("scope must be 'all' or 'durable'", scope=scope)
        if scope == "all":
            self.flush(memtable=True)
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
        m = self.refresh_manifest()
        return [c for c in m.checkpoints if name is None or (c.name or "") == name]

    def refresh_checkpoint(
        self, checkpoint_id: uuid.UUID, *, lifetime: float | None = None
    ) -> None:
        """Set a checkpoint's expiry to now + ``lifetime`` (``None``: never expires)."""
        from shale.manifest_store import refresh_checkpoint

        self._check_open()
        self._update_manifest(
            lambda m, _n: refresh_checkpoint(
                m, checkpoint_id, now_s=self.clock.now_ms() // 1000, lifetime_s=lifetime
            )
        )

    def delete_checkpoint(self, checkpoint_id: uuid.UUID) -> None:
        """Remove a checkpoint from the manifest."""
        from shale.manifest_store import remove_checkpoint

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
        return self.scan(bytes(prefix) or None, _prefix_end(bytes(prefix)), **options)

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
