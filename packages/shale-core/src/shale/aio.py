"""The asyncio facade: :class:`AsyncDb`, awaitable wrappers over :class:`shale.Db`.

The engine stays thread-based (ARCHITECTURE: no event loop inside the engine). Every engine call
that may touch the object store or wait -- opening, writes (a durable write waits for its WAL
upload), reads (SST blocks), flushes, checkpoints, closing -- runs on the facade's own
:class:`~concurrent.futures.ThreadPoolExecutor`, so the event loop never blocks on I/O. Only
calls that take a lock for a moment and do no I/O run inline: :meth:`AsyncDb.snapshot`,
:meth:`AsyncDb.metrics`, :meth:`AsyncDb.manifest`.

Invariants and why:

* **One executor per database**, sized by ``max_workers`` (default
  :data:`DEFAULT_MAX_WORKERS`): durable writers each hold a thread while they wait for the group
  commit, so a small shared default executor would cap concurrent writes. It is shut down by
  :meth:`AsyncDb.close` (unless you passed your own ``executor``).
* **Cancelling an awaiting task does not cancel the engine call.** Every call submitted runs to
  completion on its thread, started or not (the job is shielded): a cancelled
  ``await db.put(...)`` is still committed, exactly as if the caller had stopped waiting for it.
  Only its result (or error) is lost. Deterministic is better than "depends on scheduling".
* **Scans fetch in batches** of ``batch_size`` rows per worker call. The rows of a batch are the
  scan's rows in order, so :meth:`AsyncDbIterator.seek` to a key inside the fetched batch just
  drops buffered rows; a seek beyond it seeks the engine iterator. ``seek`` keeps the sync rules:
  the key must be inside the scan range and past the last key *returned to you*.
* **Errors are the engine's**: :class:`~shale.errors.ShaleError` subclasses, raised from the
  ``await``. After :meth:`AsyncDb.close` every call raises ``ClosedError``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import datetime
import functools
import os
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from shale.batch import WriteBatch, check_key
from shale.db import DURABILITY_MEMORY, CheckpointInfo, Db, DbIterator, KeyValue, WriteHandle
from shale.engine.components import CloseFlush, check_close_flush, check_scan_fetch
from shale.errors import ClosedError, CloseReason, InvalidError, TransactionError
from shale.keys import prefix_range, scan_bounds
from shale.transaction import IsolationLevel, Transaction, backoff_delay, check_retries

if TYPE_CHECKING:
    from shale.admin import (
        Admin,
        CloneResult,
        CompactorStateView,
        DetachResult,
        RangeEstimate,
        VersionedCompactions,
        VersionedManifest,
    )
    from shale.batch import Ttl
    from shale.change_stream import ChangeStream
    from shale.db import DbSnapshot
    from shale.fbs.compactions import Compaction
    from shale.fbs.manifest import Checkpoint, Manifest
    from shale.reader import DbReader
    from shale.settings import Durability, Settings
    from shale.wal_reader import Change
    from shale.watch import Watch

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_WORKERS",
    "AsyncAdmin",
    "AsyncChangeStream",
    "AsyncDb",
    "AsyncDbIterator",
    "AsyncDbReader",
    "AsyncDbSnapshot",
    "AsyncTransaction",
    "AsyncWriteHandle",
    "Opening",
    "changes",
]

#: Worker threads of an :class:`AsyncDb`'s own executor.
DEFAULT_MAX_WORKERS = 32
#: Rows a scan fetches per worker call.
DEFAULT_BATCH_SIZE = 256

_T = TypeVar("_T")


class _Runner:
    """Runs blocking callables on an executor and awaits them."""

    def __init__(self, executor: concurrent.futures.Executor, owned: bool) -> None:
        self.executor = executor
        self.owned = owned
        self.closed = False
        self.db: Db | None = None

    def check_open(self) -> None:
        if self.closed:
            if self.db is not None:
                raise self.db._inner.status.closed_error("database is closed")
            raise ClosedError("database is closed", reason=CloseReason.CLEAN)

    async def __call__(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        self.check_open()
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()  # as asyncio.to_thread does
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        try:
            job = self.executor.submit(call)
        except RuntimeError:  # the executor was shut down by a concurrent close()
            self.check_open()
            raise
        # shield: cancelling the awaiting task must not cancel a job that has not started yet,
        # or a cancelled write would be committed or not depending on thread scheduling
        return await asyncio.shield(asyncio.wrap_future(job, loop=loop))

    def shutdown(self) -> None:
        self.closed = True
        if self.owned:
            self.executor.shutdown(wait=False)


class AsyncWriteHandle:
    """The result of an awaited write: ``seq``, ``create_ts``, and :meth:`wait_durable`."""

    __slots__ = ("_handle", "_run")

    def __init__(self, handle: WriteHandle, run: _Runner) -> None:
        self._handle = handle
        self._run = run

    @property
    def seq(self) -> int:
        """The write's sequence number."""
        return self._handle.seq

    @property
    def create_ts(self) -> int:
        """The write's creation time (ms since the epoch)."""
        return self._handle.create_ts

    async def wait_durable(self, timeout: float | None = None) -> None:
        """Wait until the write is durable (see :meth:`shale.WriteHandle.wait_durable`)."""
        await self._run(self._handle.wait_durable, timeout)

    def __repr__(self) -> str:
        return f"AsyncWriteHandle(seq={self.seq}, create_ts={self.create_ts})"


class AsyncDbIterator:
    """An async iterator of ``(key, value)`` over a key range, with :meth:`seek`.

    Made by :meth:`AsyncDb.scan`; the engine iterator is created on the first fetch.
    """

    def __init__(
        self,
        run: _Runner,
        make: Callable[[], DbIterator],
        start: bytes | None,
        end: bytes | None,
        reverse: bool,
        batch_size: int,
    ) -> None:
        self._run = run
        self._make = make
        self._it: DbIterator | None = None
        self._start = start
        self._end = end
        self._reverse = reverse
        self._batch_size = batch_size
        self._buf: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._done = False
        self._returned: bytes | None = None  # last key handed out
        self._fetched: bytes | None = None  # last key taken from the engine iterator
        self._lock = asyncio.Lock()  # one fetch or seek at a time

    def _fetch(self) -> list[tuple[bytes, bytes]]:
        if self._it is None:
            self._it = self._make()
        out = []
        for row in self._it:
            out.append(row)
            if len(out) >= self._batch_size:
                break
        return out

    def __aiter__(self) -> AsyncDbIterator:
        return self

    async def __anext__(self) -> tuple[bytes, bytes]:
        async with self._lock:
            if not self._buf:
                if self._done:
                    raise StopAsyncIteration
                rows = await self._run(self._fetch)
                if len(rows) < self._batch_size:
                    self._done = True
                if not rows:
                    raise StopAsyncIteration
                self._fetched = rows[-1][0]
                self._buf.extend(rows)
            row = self._buf.popleft()
            self._returned = row[0]
            return row

    def _before(self, a: bytes, b: bytes) -> bool:
        """``a`` comes before ``b`` in this scan's order."""
        return a > b if self._reverse else a < b

    def _seek(self, key: bytes) -> None:
        if self._it is None:
            self._it = self._make()
        self._it.seek(key)

    async def seek(self, key: bytes) -> None:
        """Continue from the first key ``>= key`` (``<= key`` in reverse).

        :raises InvalidError: ``key`` is outside the scan range, or not past the last key
            returned.
        """
        key = check_key(key)
        if (self._start is not None and key < self._start) or (
            self._end is not None and key >= self._end
        ):
            raise InvalidError("seek key outside the scan range", key=key)
        async with self._lock:
            if self._returned is not None and not self._before(self._returned, key):
                raise InvalidError("seek key must be past the last key returned", key=key)
            if self._fetched is not None and not self._before(self._fetched, key):
                # the target lies inside the fetched rows: drop the ones before it
                while self._buf and self._before(self._buf[0][0], key):
                    self._buf.popleft()
                return
            self._buf.clear()
            self._done = False
            await self._run(self._seek, key)

    async def keys_only(self) -> AsyncIterator[bytes]:
        """The keys of the remaining rows (``async for k in db.scan().keys_only()``)."""
        async for key, _value in self:
            yield key

    async def values_only(self) -> AsyncIterator[bytes]:
        """The values of the remaining rows, in key order."""
        async for _key, value in self:
            yield value

    async def to_list(self, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """The remaining rows (at most ``limit``) as a list."""
        out: list[tuple[bytes, bytes]] = []
        async for row in self:
            out.append(row)
            if limit is not None and len(out) >= limit:
                break
        return out


class AsyncDbSnapshot:
    """A read-only view pinned at one seq. Release it with :meth:`close` or ``async with``."""

    def __init__(self, snapshot: DbSnapshot, run: _Runner, batch_size: int) -> None:
        self._snap = snapshot
        self._run = run
        self._batch_size = batch_size

    @property
    def seq(self) -> int:
        """The seq this snapshot reads at."""
        return self._snap.seq

    async def get(self, key: bytes, *, include_expired: bool | None = None) -> bytes | None:
        """The value of ``key`` at the snapshot, or ``None``."""
        return await self._run(self._snap.get, key, include_expired=include_expired)

    async def get_key_value(
        self, key: bytes, *, include_expired: bool | None = None
    ) -> KeyValue | None:
        """The value of ``key`` at the snapshot with its metadata, or ``None``."""
        return await self._run(self._snap.get_key_value, key, include_expired=include_expired)

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        include_expired: bool | None = None,
        batch_size: int | None = None,
        **fetch: Any,
    ) -> AsyncDbIterator:
        """An async iterator over ``start <= key < end`` at the snapshot (``cache_blocks``,
        ``read_ahead_bytes``, ``max_fetch_tasks`` as for :meth:`shale.Db.scan`)."""
        start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        snap = self._snap
        return AsyncDbIterator(
            self._run,
            lambda: snap.scan(
                start, end, reverse=reverse, include_expired=include_expired, **fetch
            ),
            start,
            end,
            reverse,
            _batch(batch_size, self._batch_size),
        )

    def scan_prefix(self, prefix: bytes, **options: Any) -> AsyncDbIterator:
        """Every key that starts with ``prefix``, at the snapshot."""
        return self.scan(*prefix_range(prefix), **options)

    def close(self) -> None:
        """Release the snapshot (instant; no I/O)."""
        self._snap.close()

    async def __aenter__(self) -> AsyncDbSnapshot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __enter__(self) -> AsyncDbSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _batch(value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidError("batch_size must be an int >= 1", batch_size=value)
    return value


class _Closable(Protocol):
    async def close(self) -> None: ...


_H = TypeVar("_H", bound=_Closable)


class Opening(Coroutine[Any, Any, _H], Generic[_H]):
    """What ``AsyncDb.open`` and ``AsyncDbReader.open`` return: a coroutine (``await`` it, or
    hand it to ``asyncio.run``) for the handle, that can also be entered directly --
    ``async with AsyncDb.open(path) as db:`` opens, and closes the handle when the block
    ends."""

    def __init__(self, opening: Coroutine[Any, Any, _H]) -> None:
        self._opening = opening
        self._handle: _H | None = None

    def __await__(self) -> Generator[Any, None, _H]:
        return self._opening.__await__()

    def send(self, value: Any) -> Any:
        return self._opening.send(value)

    def throw(self, *args: Any) -> Any:
        return self._opening.throw(*args)

    def close(self) -> None:
        self._opening.close()

    async def __aenter__(self) -> _H:
        self._handle = await self._opening
        return self._handle

    async def __aexit__(self, *exc: object) -> None:
        if self._handle is not None:
            await self._handle.close()


class AsyncDb:
    """An open database for asyncio code. Create it with ``await AsyncDb.open(...)``.

    Use ``async with`` or ``await db.close()``. The synchronous :class:`shale.Db` is
    :attr:`sync`; every awaitable method runs its engine call on the facade's executor.
    """

    def __init__(self, db: Db, run: _Runner, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._db = db
        self._run = run
        run.db = db
        self._batch_size = batch_size

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        settings: Settings | None = None,
        *,
        executor: concurrent.futures.Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **components: Any,
    ) -> Opening[AsyncDb]:
        """Open (creating if absent) the database at ``path`` without blocking the loop:
        ``db = await AsyncDb.open(...)``, or ``async with AsyncDb.open(...) as db:`` (closed
        when the block ends; no double ``await``).

        :param path: as for :meth:`shale.Db.open`.
        :param settings: :class:`shale.Settings`.
        :param executor: run engine calls here instead of an executor of our own (then
            :meth:`close` leaves it running).
        :param max_workers: threads of our own executor.
        :param batch_size: rows a scan fetches per worker call.
        :param components: passed to :meth:`shale.Db.open` (``object_store``,
            ``merge_operator``, ``clock``, ``block_cache``, ``filter_policies``, ``transformer``,
            ``store_options``, ``prefix_extractor``).
        :raises InvalidError: bad settings, arguments or components.
        """
        return Opening(cls._open(path, settings, executor, max_workers, batch_size, components))

    @classmethod
    async def _open(
        cls,
        path: str | os.PathLike[str],
        settings: Settings | None,
        executor: concurrent.futures.Executor | None,
        max_workers: int,
        batch_size: int,
        components: dict[str, Any],
    ) -> AsyncDb:
        batch_size = _batch(batch_size, DEFAULT_BATCH_SIZE)
        owned = executor is None
        if executor is None:
            if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
                raise InvalidError("max_workers must be an int >= 1", max_workers=max_workers)
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=max_workers, thread_name_prefix="shale-aio"
            )
        run = _Runner(executor, owned)
        try:
            db = await run(Db.open, path, settings, **components)
        except BaseException:
            run.shutdown()
            raise
        return cls(db, run, batch_size)

    @property
    def sync(self) -> Db:
        """The underlying synchronous :class:`shale.Db` (its calls block)."""
        return self._db

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"``, ``"fenced"`` or ``"failed"``."""
        return self._db.close_reason

    # -- writes ----------------------------------------------------------------------------

    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
        seqnum: int = 0,
    ) -> AsyncWriteHandle:
        """Set ``key`` to ``value``; returns once durable unless ``durable=False``."""
        h = await self._run(self._db.put, key, value, ttl=ttl, durable=durable, seqnum=seqnum)
        return AsyncWriteHandle(h, self._run)

    async def delete(
        self, key: bytes, *, durable: bool = True, seqnum: int = 0
    ) -> AsyncWriteHandle:
        """Delete ``key``."""
        h = await self._run(self._db.delete, key, durable=durable, seqnum=seqnum)
        return AsyncWriteHandle(h, self._run)

    async def merge(
        self,
        key: bytes,
        operand: bytes,
        *,
        ttl: int | Ttl | None = None,
        durable: bool = True,
        seqnum: int = 0,
    ) -> AsyncWriteHandle:
        """Add a merge operand for ``key``."""
        h = await self._run(self._db.merge, key, operand, ttl=ttl, durable=durable, seqnum=seqnum)
        return AsyncWriteHandle(h, self._run)

    async def write(
        self, batch: WriteBatch, *, durable: bool = True, seqnum: int = 0
    ) -> AsyncWriteHandle:
        """Apply ``batch`` atomically (one seq)."""
        h = await self._run(self._db.write, batch, durable=durable, seqnum=seqnum)
        return AsyncWriteHandle(h, self._run)

    # -- reads -----------------------------------------------------------------------------

    async def get(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
    ) -> bytes | None:
        """The value of ``key``, or ``None`` (see :meth:`shale.Db.get`)."""
        return await self._run(
            self._db.get, key, durability=durability, dirty=dirty, include_expired=include_expired
        )

    async def get_key_value(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        dirty: bool = False,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """The value of ``key`` with its seq and timestamps, or ``None``."""
        return await self._run(
            self._db.get_key_value,
            key,
            durability=durability,
            dirty=dirty,
            include_expired=include_expired,
        )

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
        batch_size: int | None = None,
        cache_blocks: bool = True,
        read_ahead_bytes: int | None = None,
        max_fetch_tasks: int | None = None,
    ) -> AsyncDbIterator:
        """An async iterator of ``(key, value)`` over ``start <= key < end``.

        Use ``async for key, value in db.scan(...)``. Bad bounds (and a bad
        ``read_ahead_bytes`` or ``max_fetch_tasks``, see :meth:`shale.Db.scan`) raise
        ``InvalidError`` here; the read position is fixed when the first batch is fetched.
        """
        start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        check_scan_fetch(read_ahead_bytes, max_fetch_tasks)
        if durability not in ("memory", "remote"):
            raise InvalidError("durability must be 'memory' or 'remote'", durability=durability)
        db = self._db
        self._run.check_open()
        return AsyncDbIterator(
            self._run,
            lambda: db.scan(
                start,
                end,
                reverse=reverse,
                durability=durability,
                dirty=dirty,
                include_expired=include_expired,
                cache_blocks=cache_blocks,
                read_ahead_bytes=read_ahead_bytes,
                max_fetch_tasks=max_fetch_tasks,
            ),
            start,
            end,
            reverse,
            _batch(batch_size, self._batch_size),
        )

    def scan_prefix(self, prefix: bytes, **options: Any) -> AsyncDbIterator:
        """Every key that starts with ``prefix`` (the whole keyspace for ``b""``)."""
        return self.scan(*prefix_range(prefix), **options)

    def snapshot(
        self, *, at_seq: int | None = None, at_time: datetime.datetime | None = None
    ) -> AsyncDbSnapshot:
        """A consistent read-only view at the current committed seq, or a past ``at_seq`` /
        ``at_time`` (see :meth:`shale.Db.snapshot`; no I/O, so not awaited).

        Use ``async with db.snapshot() as snap:`` or call ``snap.close()``.
        """
        snap = self._db.snapshot(at_seq=at_seq, at_time=at_time)
        return AsyncDbSnapshot(snap, self._run, self._batch_size)

    # -- transactions ----------------------------------------------------------------------

    def begin(self, isolation: IsolationLevel = "snapshot") -> AsyncTransaction:
        """Start an :class:`AsyncTransaction` (no I/O, so not awaited): ``async with
        db.begin("serializable") as txn: ...``. See :meth:`shale.Db.begin`."""
        self._run.check_open()
        return AsyncTransaction(self._db.begin(isolation), self._run, self._batch_size)

    async def transact(
        self,
        fn: Callable[[AsyncTransaction], Awaitable[_T]],
        *,
        retries: int = 10,
        isolation: IsolationLevel = "snapshot",
        durable: bool = True,
    ) -> _T:
        """Run ``await fn(txn)`` in a transaction and commit, re-running it after a conflict
        (up to ``retries`` times, exponential back-off with jitter). See
        :meth:`shale.Db.transact`.
        """
        check_retries(retries)
        attempt = 0
        while True:
            txn = self.begin(isolation)
            try:
                result = await fn(txn)
                if not txn.finished:
                    await txn.commit(durable=durable)
                return result
            except TransactionError:
                txn.rollback()
                if attempt >= retries:
                    raise
            except BaseException:
                txn.rollback()
                raise
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1

    # -- flush, checkpoints, status -----------------------------------------------------------

    async def flush(self, *, memtable: bool = False, timeout: float | None = None) -> None:
        """Make every write so far durable (see :meth:`shale.Db.flush`)."""
        await self._run(self._db.flush, memtable=memtable, timeout=timeout)

    async def create_checkpoint(
        self,
        *,
        lifetime: float | None = None,
        name: str | None = None,
        scope: str = "all",
        timeout: float | None = None,
    ) -> CheckpointInfo:
        """Pin the current state in the manifest (see :meth:`shale.Db.create_checkpoint`)."""
        return await self._run(
            self._db.create_checkpoint, lifetime=lifetime, name=name, scope=scope, timeout=timeout
        )

    async def list_checkpoints(self, name: str | None = None) -> list[Any]:
        """Checkpoints in the latest manifest."""
        return await self._run(self._db.list_checkpoints, name)

    async def refresh_checkpoint(
        self, checkpoint_id: uuid.UUID | str, *, lifetime: float | None = None
    ) -> None:
        """Set a checkpoint's expiry to now + ``lifetime``."""
        await self._run(self._db.refresh_checkpoint, checkpoint_id, lifetime=lifetime)

    async def delete_checkpoint(self, checkpoint_id: uuid.UUID | str) -> None:
        """Remove a checkpoint from the manifest."""
        await self._run(self._db.delete_checkpoint, checkpoint_id)

    async def refresh_manifest(self) -> Manifest:
        """Read the latest manifest now."""
        return await self._run(self._db.refresh_manifest)

    def manifest(self) -> Manifest:
        """The manifest the database currently reads from (no I/O)."""
        return self._db.manifest()

    def metrics(self) -> dict[str, int]:
        """Counters and gauges (no I/O; see :meth:`shale.Db.metrics`)."""
        return self._db.metrics()

    async def warm_sst(self, sst_id: Any, targets: Sequence[Any] | None = None) -> None:
        """Load parts of one SST into the caches (see :meth:`shale.Db.warm_sst`)."""
        await self._run(self.sync.warm_sst, sst_id, targets)

    def evict_cached_sst(self, sst_id: Any) -> None:
        """Drop one SST from the in-memory caches (no I/O; :meth:`shale.Db.evict_cached_sst`)."""
        self.sync.evict_cached_sst(sst_id)

    def cache_stats(self) -> dict[str, dict[str, float]]:
        """The block and disk caches' sizes, counters and hit rates (no I/O)."""
        return self.sync.cache_stats()

    def changes(self, since_seq: int | None = None, **options: Any) -> AsyncChangeStream:
        """``async for`` over :meth:`shale.Db.changes` (same arguments; reads nothing yet)."""
        self._run.check_open()
        return AsyncChangeStream(self._db.changes(since_seq, start=False, **options))

    def watch(self, prefix: bytes = b"", **options: Any) -> Watch:
        """:meth:`shale.Db.watch` (no I/O; ``queue=`` an ``asyncio.Queue`` of this loop)."""
        self._run.check_open()
        return self._db.watch(prefix, **options)

    # -- closing -----------------------------------------------------------------------------

    async def close(self, *, flush: CloseFlush = "wal") -> None:
        """Flush the WAL (``flush``: as :meth:`shale.Db.close`), stop background work and shut
        the executor down. Idempotent."""
        if self._run.closed:
            return
        check_close_flush(flush)  # the database stays open
        try:
            await self._run(self._db.close, flush=flush)
        finally:
            self._run.shutdown()

    async def __aenter__(self) -> AsyncDb:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<shale.aio.AsyncDb {self._db.url!r} {self.close_reason or 'open'}>"


# -- change streams -----------------------------------------------------------------------------


class AsyncChangeStream:
    """``async for change in stream`` over a :class:`shale.ChangeStream`: each wait (at most
    its ``poll_interval``) runs in a worker thread, so the event loop never blocks.

    Cancelling an ``async for`` loses nothing: the batch being fetched is kept and the next
    ``__anext__`` returns it. :meth:`commit` commits the last change *this* iterator returned.
    """

    def __init__(self, stream: ChangeStream) -> None:
        self._stream = stream
        self._buffer: collections.deque[Change] = collections.deque()
        self._job: asyncio.Future[list[Change]] | None = None
        #: the seq of the last change returned (or the stream's start position)
        self.position: int | None = stream.position

    @property
    def sync(self) -> ChangeStream:
        """The underlying :class:`shale.ChangeStream` (do not iterate both)."""
        return self._stream

    def __aiter__(self) -> AsyncChangeStream:
        return self

    async def __anext__(self) -> Change:
        s = self._stream
        while not self._buffer:
            if s.done:
                raise StopAsyncIteration
            if self._job is None:
                loop = asyncio.get_running_loop()
                self._job = loop.run_in_executor(None, s.read_batch, s.poll_interval)
            batch = await asyncio.shield(self._job)  # a cancelled wait keeps the batch
            self._job = None
            self._buffer.extend(batch)
        ch = self._buffer.popleft()
        self.position = ch.seq
        return ch

    async def commit(self, seq: int | None = None) -> None:
        """:meth:`shale.ChangeStream.commit` (default: the last change returned here)."""
        await asyncio.to_thread(self._stream.commit, self.position if seq is None else seq)

    async def close(self) -> None:
        """Close the stream (waits for a fetch in flight, at most one ``poll_interval``)."""
        self._stream.close()
        if self._job is not None:
            await asyncio.gather(self._job, return_exceptions=True)
            self._job = None

    async def start(self) -> None:
        """:meth:`shale.ChangeStream.start` in a worker thread (``async with`` calls it)."""
        await asyncio.to_thread(self._stream.start)
        self.position = self._stream.position

    async def __aenter__(self) -> AsyncChangeStream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def changes(url: str, since_seq: int | None = None, **options: Any) -> AsyncChangeStream:
    """``async for`` over :func:`shale.changes` (same arguments). Opening the store by URL
    happens here, synchronously; nothing is read until ``async with`` (or the first
    ``__anext__``) starts the stream in a worker thread."""
    from shale.change_stream import changes as open_changes

    return AsyncChangeStream(open_changes(url, since_seq, start=False, **options))


# -- the reader ---------------------------------------------------------------------------------


class AsyncDbReader:
    """A :class:`shale.DbReader` for asyncio code. Create it with
    ``await AsyncDbReader.open(...)``; use ``async with`` or ``await reader.close()``.

    The same rules as :class:`AsyncDb`: every call that may touch the object store runs on the
    facade's executor; :meth:`snapshot` and :meth:`metrics` run inline (no I/O). The reader's
    poller stays a thread of the synchronous reader (:attr:`sync`).
    """

    def __init__(self, reader: DbReader, run: _Runner, batch_size: int) -> None:
        self._reader = reader
        self._run = run
        self._batch_size = batch_size

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        settings: Settings | None = None,
        *,
        executor: concurrent.futures.Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **arguments: Any,
    ) -> Opening[AsyncDbReader]:
        """Open the database at ``path`` for reading without blocking the loop:
        ``reader = await AsyncDbReader.open(...)`` or ``async with AsyncDbReader.open(...) as
        reader:``.

        :param arguments: passed to :meth:`shale.DbReader.open` (``checkpoint``, ``mode``,
            ``options``, ``object_store``, ``merge_operator``, ``block_cache``, ...).
        :param executor: run calls here instead of an executor of our own.
        """
        return Opening(cls._open(path, settings, executor, max_workers, batch_size, arguments))

    @classmethod
    async def _open(
        cls,
        path: str | os.PathLike[str],
        settings: Settings | None,
        executor: concurrent.futures.Executor | None,
        max_workers: int,
        batch_size: int,
        arguments: dict[str, Any],
    ) -> AsyncDbReader:
        from shale.reader import DbReader

        batch_size = _batch(batch_size, DEFAULT_BATCH_SIZE)
        owned = executor is None
        if executor is None:
            if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
                raise InvalidError("max_workers must be an int >= 1", max_workers=max_workers)
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=max_workers, thread_name_prefix="shale-aio-reader"
            )
        run = _Runner(executor, owned)
        try:
            reader = await run(DbReader.open, path, settings, **arguments)
        except BaseException:
            run.shutdown()
            raise
        return cls(reader, run, batch_size)

    @property
    def sync(self) -> DbReader:
        """The underlying synchronous :class:`shale.DbReader` (its calls block)."""
        return self._reader

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"``."""
        return self._reader.close_reason

    async def get(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> bytes | None:
        """The value of ``key``, or ``None`` (see :meth:`shale.DbReader.get`)."""
        return await self._run(
            self._reader.get, key, durability=durability, include_expired=include_expired
        )

    async def get_key_value(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """``key``'s value with its seq and timestamps, or ``None``."""
        return await self._run(
            self._reader.get_key_value, key, durability=durability, include_expired=include_expired
        )

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
        batch_size: int | None = None,
        cache_blocks: bool = True,
        read_ahead_bytes: int | None = None,
        max_fetch_tasks: int | None = None,
    ) -> AsyncDbIterator:
        """An async iterator of ``(key, value)`` over ``start <= key < end`` (see
        :meth:`AsyncDb.scan`)."""
        start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        check_scan_fetch(read_ahead_bytes, max_fetch_tasks)
        if durability not in ("memory", "remote"):
            raise InvalidError("durability must be 'memory' or 'remote'", durability=durability)
        reader = self._reader
        self._run.check_open()

        def make() -> DbIterator:
            it = reader.scan(
                start,
                end,
                reverse=reverse,
                durability=durability,
                include_expired=include_expired,
                cache_blocks=cache_blocks,
                read_ahead_bytes=read_ahead_bytes,
                max_fetch_tasks=max_fetch_tasks,
            )
            # a ReaderIterator: DbIterator's iteration and seek, plus the follow_latest retry
            return cast(DbIterator, it)

        return AsyncDbIterator(
            self._run, make, start, end, reverse, _batch(batch_size, self._batch_size)
        )

    def scan_prefix(self, prefix: bytes, **options: Any) -> AsyncDbIterator:
        """Every key that starts with ``prefix``."""
        return self.scan(*prefix_range(prefix), **options)

    def snapshot(
        self, *, at_seq: int | None = None, at_time: datetime.datetime | None = None
    ) -> AsyncDbSnapshot:
        """A view pinned at the reader's current seq, or a past ``at_seq`` / ``at_time`` (see
        :meth:`shale.DbReader.snapshot`; no I/O, so not awaited)."""
        snap = self._reader.snapshot(at_seq=at_seq, at_time=at_time)
        return AsyncDbSnapshot(snap, self._run, self._batch_size)

    async def refresh(self) -> None:
        """Poll now (see :meth:`shale.DbReader.refresh`)."""
        await self._run(self._reader.refresh)

    def manifest(self) -> Manifest:
        """The manifest the reader reads (no I/O)."""
        return self._reader.manifest()

    def metrics(self) -> dict[str, int]:
        """Counters and gauges (no I/O; see :meth:`shale.DbReader.metrics`)."""
        return self._reader.metrics()

    async def warm_sst(self, sst_id: Any, targets: Sequence[Any] | None = None) -> None:
        """Load parts of one SST into the caches (see :meth:`shale.DbReader.warm_sst`)."""
        await self._run(self.sync.warm_sst, sst_id, targets)

    def evict_cached_sst(self, sst_id: Any) -> None:
        """Drop one SST from the in-memory caches (no I/O; see
        :meth:`shale.DbReader.evict_cached_sst`)."""
        self.sync.evict_cached_sst(sst_id)

    def cache_stats(self) -> dict[str, dict[str, float]]:
        """The block and disk caches' sizes, counters and hit rates (no I/O)."""
        return self.sync.cache_stats()

    async def close(self) -> None:
        """Stop the poller, delete a managed checkpoint, shut the executor down. Idempotent."""
        if self._run.closed:
            return
        try:
            await self._run(self._reader.close)
        finally:
            self._run.shutdown()

    async def __aenter__(self) -> AsyncDbReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<shale.aio.AsyncDbReader {self._reader.url!r} {self.close_reason or 'open'}>"


class AsyncAdmin:
    """:class:`shale.Admin` for asyncio code: every method runs the synchronous call on an
    executor (one thread of its own by default) and is awaited. Create it with
    ``AsyncAdmin(url, ...)`` (same arguments as :class:`shale.Admin`, plus ``executor``); use
    ``async with`` or ``await admin.close()``. The synchronous Admin is :attr:`sync`."""

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        executor: concurrent.futures.Executor | None = None,
        **options: Any,
    ) -> None:
        from shale.admin import Admin

        self._admin = Admin(url, **options)
        owned = executor is None
        if executor is None:
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="shale-admin"
            )
        self._run = _Runner(executor, owned)

    @property
    def sync(self) -> Admin:
        """The underlying synchronous :class:`shale.Admin`."""
        return self._admin

    async def read_manifest(self, manifest_id: int | None = None) -> VersionedManifest | None:
        """See :meth:`shale.Admin.read_manifest`."""
        return await self._run(self._admin.read_manifest, manifest_id)

    async def list_manifests(
        self, start: int | None = None, end: int | None = None
    ) -> list[VersionedManifest]:
        """See :meth:`shale.Admin.list_manifests`."""
        return await self._run(self._admin.list_manifests, start, end)

    async def read_compactions(
        self, compactions_id: int | None = None
    ) -> VersionedCompactions | None:
        """See :meth:`shale.Admin.read_compactions`."""
        return await self._run(self._admin.read_compactions, compactions_id)

    async def list_compactions(
        self, start: int | None = None, end: int | None = None
    ) -> list[VersionedCompactions]:
        """See :meth:`shale.Admin.list_compactions`."""
        return await self._run(self._admin.list_compactions, start, end)

    async def read_compaction(
        self, compaction_id: Any, compactions_id: int | None = None
    ) -> Compaction | None:
        """See :meth:`shale.Admin.read_compaction`."""
        return await self._run(self._admin.read_compaction, compaction_id, compactions_id)

    async def read_compactor_state_view(self) -> CompactorStateView:
        """See :meth:`shale.Admin.read_compactor_state_view`."""
        return await self._run(self._admin.read_compactor_state_view)

    async def create_checkpoint(self, **options: Any) -> CheckpointInfo:
        """See :meth:`shale.Admin.create_checkpoint` (``lifetime``, ``name``, ``source``)."""
        return await self._run(self._admin.create_checkpoint, **options)

    async def list_checkpoints(self, name: str | None = None) -> list[Checkpoint]:
        """See :meth:`shale.Admin.list_checkpoints`."""
        return await self._run(self._admin.list_checkpoints, name)

    async def refresh_checkpoint(
        self, checkpoint_id: Any, *, lifetime: float | None = None
    ) -> None:
        """See :meth:`shale.Admin.refresh_checkpoint`."""
        await self._run(self._admin.refresh_checkpoint, checkpoint_id, lifetime=lifetime)

    async def delete_checkpoint(self, checkpoint_id: Any) -> None:
        """See :meth:`shale.Admin.delete_checkpoint`."""
        await self._run(self._admin.delete_checkpoint, checkpoint_id)

    async def get_timestamp_for_sequence(self, seq: int, *, round_up: bool = False) -> int | None:
        """See :meth:`shale.Admin.get_timestamp_for_sequence`."""
        return await self._run(self._admin.get_timestamp_for_sequence, seq, round_up=round_up)

    async def get_sequence_for_timestamp(
        self, timestamp_s: int, *, round_up: bool = False
    ) -> int | None:
        """See :meth:`shale.Admin.get_sequence_for_timestamp`."""
        return await self._run(
            self._admin.get_sequence_for_timestamp, timestamp_s, round_up=round_up
        )

    async def estimate(
        self, start: bytes | None = None, end: bytes | None = None, **options: Any
    ) -> RangeEstimate:
        """See :meth:`shale.Admin.estimate`."""
        return await self._run(self._admin.estimate, start, end, **options)

    async def run_gc_once(self, options: Any = None) -> Any:
        """See :meth:`shale.Admin.run_gc_once`."""
        return await self._run(self._admin.run_gc_once, options)

    async def submit_compaction(self, spec: Any = "full") -> Compaction:
        """See :meth:`shale.Admin.submit_compaction`."""
        return await self._run(self._admin.submit_compaction, spec)

    async def clone(self, target: str, **options: Any) -> CloneResult:
        """See :meth:`shale.Admin.clone`."""
        return await self._run(functools.partial(self._admin.clone, target, **options))

    async def detach(self, *, copy: bool = True) -> DetachResult:
        """See :meth:`shale.Admin.detach`."""
        return await self._run(functools.partial(self._admin.detach, copy=copy))

    async def delete_db(self, confirm: bool = False, **options: Any) -> list[str]:
        """See :meth:`shale.Admin.delete_db`."""
        return await self._run(functools.partial(self._admin.delete_db, confirm, **options))

    async def close(self) -> None:
        """Close the Admin and shut its own executor down. Idempotent."""
        if self._run.closed:
            return
        try:
            await self._run(self._admin.close)
        finally:
            self._run.shutdown()

    async def __aenter__(self) -> AsyncAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<shale.aio.AsyncAdmin {self._admin.url!r}>"


# -- transactions (docs/transactions.md) ------------------------------------------------------


class AsyncTransaction:
    """A :class:`shale.Transaction` for asyncio code; make it with :meth:`AsyncDb.begin`.

    ``async with db.begin() as txn:`` commits when the block ends normally and rolls back when
    it raises. Reads and the commit run on the facade's executor; writes only buffer (no I/O)
    and run inline.
    """

    def __init__(self, txn: Transaction, run: _Runner, batch_size: int) -> None:
        self._txn = txn
        self._run = run
        self._batch_size = batch_size

    @property
    def sync(self) -> Transaction:
        """The synchronous transaction underneath."""
        return self._txn

    @property
    def id(self) -> str:
        return self._txn.id

    @property
    def seqnum(self) -> int:
        """The seq this transaction's snapshot reads at."""
        return self._txn.seqnum

    @property
    def isolation(self) -> IsolationLevel:
        return self._txn.isolation

    @property
    def finished(self) -> bool:
        return self._txn.finished

    async def get(self, key: bytes, *, include_expired: bool | None = None) -> bytes | None:
        """See :meth:`shale.Transaction.get`."""
        return await self._run(self._txn.get, key, include_expired=include_expired)

    async def get_key_value(
        self, key: bytes, *, include_expired: bool | None = None
    ) -> KeyValue | None:
        """See :meth:`shale.Transaction.get_key_value`."""
        return await self._run(self._txn.get_key_value, key, include_expired=include_expired)

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
        reverse: bool = False,
        include_expired: bool | None = None,
        batch_size: int | None = None,
        **fetch: Any,
    ) -> AsyncDbIterator:
        """See :meth:`shale.Transaction.scan` (the range counts as read at once)."""
        start, end = scan_bounds(start, end, start_inclusive, end_inclusive)
        it = self._txn.scan(start, end, reverse=reverse, include_expired=include_expired, **fetch)
        return AsyncDbIterator(
            self._run,
            lambda: cast(DbIterator, it),
            start,
            end,
            reverse,
            _batch(batch_size, self._batch_size),
        )

    def scan_prefix(self, prefix: bytes, **options: Any) -> AsyncDbIterator:
        """Every key that starts with ``prefix``, as :meth:`scan`."""
        return self.scan(*prefix_range(prefix), **options)

    def put(self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None) -> None:
        self._txn.put(key, value, ttl=ttl)

    def delete(self, key: bytes) -> None:
        self._txn.delete(key)

    def merge(self, key: bytes, operand: bytes, *, ttl: int | Ttl | None = None) -> None:
        self._txn.merge(key, operand, ttl=ttl)

    def mark_read(self, keys: Iterable[bytes]) -> None:
        self._txn.mark_read(keys)

    def unmark_write(self, keys: Iterable[bytes]) -> None:
        self._txn.unmark_write(keys)

    async def commit(self, *, durable: bool = True, seqnum: int = 0) -> AsyncWriteHandle | None:
        """See :meth:`shale.Transaction.commit`."""
        h = await self._run(self._txn.commit, durable=durable, seqnum=seqnum)
        return None if h is None else AsyncWriteHandle(h, self._run)

    def rollback(self) -> None:
        """Drop the writes (instant; no I/O)."""
        self._txn.rollback()

    async def __aenter__(self) -> AsyncTransaction:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.rollback()
        elif not self._txn.finished:
            await self.commit()

    def __repr__(self) -> str:
        return "<shale.aio.AsyncTransaction " + repr(self._txn)[1:]
