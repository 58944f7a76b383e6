"""``db.watch(prefix, ...)``: in-process delivery of a writer's committed changes under a key
prefix, to a callback or an ``asyncio.Queue``.

How it works: the first ``watch`` (or ``db.changes``) installs a :class:`WatchHub` on the
writer's engine -- ``BatchWriter.on_commit`` (every commit, under the write lock) and
``WalBuffer.on_durable`` (every uploaded WAL SST, under the WAL flush mutex). The hub only
appends the matching rows to each watch's bounded queue (its lock is a leaf of the engine's
lock order); each watch has its own delivery thread that calls the callback, or hands the
change to the event loop with ``loop.call_soon_threadsafe``. So a slow or failing callback
never blocks or breaks a write, and a database nobody watches pays one attribute check per
commit.

* ``durable=True`` (default): a change is delivered once its WAL SST is uploaded -- what
  :func:`shale.changes` would stream, with its ``wal_id``. ``durable=False``: at commit, before
  the upload (``wal_id`` ``None``); a change a crash loses may have been delivered.
* **Order:** changes come in seq order, once each, to each watch.
* **Overflow:** a watch queues at most ``max_pending`` undelivered changes. One more and the
  watch *overflows*: it stops (``overflowed`` is set, a warning is logged, the changes still
  queued are delivered, then nothing more; a queue receives ``None`` as its end marker). It
  never drops changes silently: a consumer that must not miss any resumes with
  ``db.changes(since_seq=last seen)``. A bounded ``asyncio.Queue`` that is full overflows
  the watch the same way.
* **Callback errors** are logged and counted (``errors``); delivery goes on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from shale.errors import InvalidError
from shale.wal_reader import Change, rows_to_changes

__all__ = ["DEFAULT_MAX_PENDING", "Watch", "WatchHub"]

log = logging.getLogger(__name__)

#: Undelivered changes a watch may queue before it overflows.
DEFAULT_MAX_PENDING = 100_000
#: Seconds ``Watch.close`` waits for its delivery thread.
CLOSE_JOIN_S = 5.0


class Watch:
    """A handle on one ``db.watch``: :meth:`close` stops it (idempotent).

    :ivar delivered: changes delivered so far.
    :ivar errors: callback calls that raised.
    :ivar overflowed: the watch stopped because ``max_pending`` changes were waiting.
    """

    def __init__(
        self,
        hub: WatchHub,
        prefix: bytes,
        *,
        callback: Callable[[Change], object] | None,
        queue: asyncio.Queue[Change | None] | None,
        loop: asyncio.AbstractEventLoop | None,
        durable: bool,
        max_pending: int,
    ) -> None:
        self._hub = hub
        self.prefix = prefix
        self.durable = durable
        self.max_pending = max_pending
        self._callback = callback
        self._queue = queue
        self._loop = loop
        self._cond = threading.Condition(threading.Lock())
        self._pending: collections.deque[Change] = collections.deque()
        self._stopping = False
        self.closed = False
        self.overflowed = False
        self.delivered = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="shale-watch", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<shale.Watch prefix={self.prefix!r} {state} delivered={self.delivered}>"

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine side (a leaf lock; never user code) ------------------------------------

    def offer(self, wal_id: int | None, rows: list[Any]) -> None:
        p = self.prefix
        picked = [r for r in rows if r[0].startswith(p)] if p else rows
        if not picked:
            return
        with self._cond:
            if self._stopping:
                return
            if len(self._pending) + len(picked) > self.max_pending:
                self.overflowed = True
                self._stopping = True
                log.warning("db.watch overflowed (%d changes pending); it stops", self.max_pending)
            else:
                self._pending.extend(rows_to_changes(wal_id, picked))
            self._cond.notify()

    # -- the delivery thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                batch = list(self._pending)
                self._pending.clear()
                stop = self._stopping
            for ch in batch:
                if self.closed:
                    break
                self._deliver(ch)
            if stop:
                break
        if self._queue is not None and self._loop is not None:
            self._to_loop(None)
        self._hub.remove(self)

    def _deliver(self, ch: Change) -> None:
        if self._callback is not None:
            try:
                self._callback(ch)
            except Exception:
                self.errors += 1
                log.exception("db.watch callback failed (delivery goes on)")
        else:
            self._to_loop(ch)
        self.delivered += 1

    def _to_loop(self, item: Change | None) -> None:
        queue, loop = self._queue, self._loop
        assert queue is not None and loop is not None

        def put() -> None:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                if item is not None:
                    self.overflowed = True
                    self._stop()

        try:
            loop.call_soon_threadsafe(put)
        except RuntimeError:  # the loop is closed: nobody to deliver to
            self._stop()

    def _stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def finish(self) -> None:
        """End after delivering what is queued (the database closed); waits briefly."""
        self._stop()
        if threading.current_thread() is not self._thread:
            self._thread.join(CLOSE_JOIN_S)
        self.closed = True

    def close(self) -> None:
        """Stop delivering (changes still queued are dropped); waits briefly for the delivery
        thread unless called from a callback. A queue receives ``None``."""
        self.closed = True
        self._stop()
        if threading.current_thread() is not self._thread:
            self._thread.join(CLOSE_JOIN_S)


class WatchHub:
    """The watches of one writer, and the events of its ``db.changes`` streams.

    It sets the engine's hooks only while they have something to do: ``on_commit`` while a
    non-durable watch is open, ``on_durable`` while a durable watch or a stream is.
    """

    def __init__(self, writer: Any, wal: Any) -> None:
        self._writer = writer  # BatchWriter
        self._wal = wal  # WalBuffer or None
        self._lock = threading.Lock()
        self._commit: tuple[Watch, ...] = ()
        self._durable: tuple[Watch, ...] = ()
        self._wakers: weakref.WeakSet[threading.Event] = weakref.WeakSet()

    def add(self, w: Watch) -> None:
        with self._lock:
            if w.durable:
                self._durable = (*self._durable, w)
            else:
                self._commit = (*self._commit, w)
            self._sync()

    def remove(self, w: Watch) -> None:
        with self._lock:
            self._durable = tuple(x for x in self._durable if x is not w)
            self._commit = tuple(x for x in self._commit if x is not w)
            self._sync()

    def close_all(self) -> None:
        """The database closed: every watch delivers what it queued, then ends."""
        with self._lock:
            watches = (*self._commit, *self._durable)
            for e in self._wakers:
                e.set()
        for w in watches:
            w.finish()

    def add_waker(self, event: threading.Event) -> None:
        """Set ``event`` after each WAL upload (held weakly)."""
        with self._lock:
            self._wakers.add(event)
            self._sync()

    def _sync(self) -> None:
        self._writer.on_commit = self.on_commit if self._commit else None
        if self._wal is not None:
            self._wal.on_durable = self.on_durable if self._durable or self._wakers else None

    def on_commit(self, rows: list[Any]) -> None:
        for w in self._commit:
            w.offer(None, rows)

    def on_durable(self, wal_id: int, rows: list[Any]) -> None:
        for w in self._durable:
            w.offer(wal_id, rows)
        with self._lock:
            wakers = list(self._wakers)
        for e in wakers:
            e.set()


def check_watch(
    prefix: object,
    callback: object,
    queue: object,
    durable: object,
    max_pending: object,
    wal_enabled: bool,
) -> tuple[bytes, asyncio.AbstractEventLoop | None]:
    """Check ``db.watch``'s arguments; the prefix as bytes and the running loop for a queue."""
    if not isinstance(prefix, bytes | bytearray | memoryview):
        raise InvalidError("prefix must be bytes", type=type(prefix).__name__)
    if (callback is None) == (queue is None):
        raise InvalidError("pass exactly one of callback= and queue=")
    if callback is not None and not callable(callback):
        raise InvalidError("callback must be callable", type=type(callback).__name__)
    if type(durable) is not bool:
        raise InvalidError("durable must be a bool", value=durable)
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        raise InvalidError("max_pending must be an int >= 1", value=max_pending)
    if durable and not wal_enabled:
        raise InvalidError("durable=True watches need the WAL (settings.wal_enabled)")
    loop = None
    if queue is not None:
        if not isinstance(queue, asyncio.Queue):
            raise InvalidError("queue must be an asyncio.Queue", type=type(queue).__name__)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidError(
                "watch(queue=...) must be called from a running event loop"
            ) from None
    return bytes(prefix), loop
