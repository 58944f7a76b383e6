"""The database's lifecycle (SlateDB's ``db_status``): open, closing, closed -- why, and after
what failure -- plus the background threads, how they retry, and how waiters give up.

Invariants:

- Once ``closed`` is set it stays set; ``close_reason`` only moves from ``None`` to a reason,
  or from ``"clean"`` to ``"failed"`` when close() itself could not flush. The first failure
  (fenced or failed) wins and is the ``__cause__`` of every later :class:`ClosedError`.
- A failure or a close wakes everything that may be waiting (the *wakers*: the other
  components' conditions and the background threads' events), after ``_lock`` is released --
  the wakers take locks of their own, later in the lock order than nothing this holds.
- Background threads hold the components, never the public handle, so a handle the program
  dropped is collected (and closed by its ``__del__``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shale.engine import components
from shale.errors import ClosedError, CloseReason, UnavailableError
from shale.objstore.retrying import RetryPolicy

log = logging.getLogger(__name__)

#: Retry back-off for transient object-store errors in background uploads (SlateDB: 100 ms-1 s).
RETRY_MIN_S = 0.1
RETRY_MAX_S = 1.0
#: Upload attempts a closing database makes before it gives up on the object store.
CLOSE_RETRIES = 3
#: How long close() waits for a background thread stuck in an object-store call.
CLOSE_JOIN_TIMEOUT_S = 60.0
#: Longest a blocked waiter sleeps between re-checks; state changes wake it sooner.
WAIT_RECHECK_S = 1.0

#: What a background step waits on next: an event and a timeout (``None``: no timeout).
Wait = tuple[threading.Event, float | None]


def deadline(timeout: float | None) -> float | None:
    """``time.monotonic()`` deadline of a ``timeout=`` argument (``None``: wait for ever).

    :raises InvalidError: ``timeout`` is not ``None`` or a finite number ``>= 0``.
    """
    timeout = components.check_timeout(timeout)
    return None if timeout is None else time.monotonic() + timeout


class UploadHealth:
    """Whether one kind of background upload (WAL, or L0) is failing: the last error while it
    is, and how many attempts ever failed (a waiter gives up when the count moves).

    Plain fields, written by the one thread that uploads and read racily by waiters, which
    re-check after every wake-up.
    """

    __slots__ = ("error", "failures")

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.error = exc
        self.failures += 1

    def succeeded(self) -> None:
        self.error = None


class DbStatus:
    """Open / closing / closed, the close reason and failure, and the background threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.closed = False
        self.close_started = False  # close() was called
        self.close_done = threading.Event()  # close() finished
        self._close_notified = False  # on_closed was called
        self.reason: str | None = None
        self.failure: BaseException | None = None
        #: set when the background threads must stop
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        #: the thread running close()'s own flush (it retries a bounded number of times)
        self.final_flusher: threading.Thread | None = None
        #: called (no lock held) on every failure or close: wake waiters and threads
        self.wakers: list[Callable[[], None]] = []
        #: called once with the close reason when the database has closed or failed
        self.on_closed: Callable[[str], None] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"``, ``"fenced"`` or ``"failed"``."""
        return self.reason if self.closed else None

    def failed(self) -> bool:
        """Closed by a fence or a failure (not by a clean close)."""
        return self.closed and self.reason not in (None, CloseReason.CLEAN)

    def check_open(self) -> None:
        """:raises ClosedError: the database is closed (naming why)."""
        if self.closed:
            raise self.closed_error("database is closed")

    def closed_error(self, message: str, reason: str | None = None) -> ClosedError:
        """The ``ClosedError`` to raise now; after a fence or a failure it names the cause.

        The background failure that closed the database is the error's ``__cause__`` and is
        quoted in its message (``error=...``), so "closed (failed)" never comes without a why.
        """
        reason = reason or self.reason or CloseReason.CLEAN
        failure = self.failure if reason != CloseReason.CLEAN else None
        if failure is None:
            return ClosedError(message, reason=reason)
        err = ClosedError(message, reason=reason, error=f"{type(failure).__name__}: {failure}")
        err.__cause__ = failure
        return err

    def wake(self) -> None:
        for waker in self.wakers:
            waker()

    def fail(self, reason: str, exc: BaseException | None) -> None:
        """Close with ``reason`` because of ``exc`` (a fence, a background failure, a crash);
        the first failure wins."""
        with self._lock:
            if self.closed and self.reason not in (None, CloseReason.CLEAN):
                return
            self.closed = True
            self.reason = reason
            self.failure = exc
            # while close() runs, close() reports the close once it has stopped everything
            notify = not self._close_notified and not self.close_started
            self._close_notified = self._close_notified or notify
        self.stop.set()
        self.wake()
        if reason == CloseReason.FENCED:
            log.warning("database fenced by a newer writer; closing: %s", exc)
        if notify and self.on_closed is not None:
            self.on_closed(reason)

    def begin_close(self) -> tuple[bool, bool]:
        """Mark closed (new calls get ``Closed(clean)``) and stop the threads.

        :returns: ``(again, failed_before)``: close() was called before; the database had
            failed (or been fenced) already.
        """
        with self._lock:
            again = self.close_started
            self.close_started = True
            failed_before = self.failed()
            self.closed = True
            if self.reason is None:
                self.reason = CloseReason.CLEAN
        self.stop.set()
        self.wake()
        return again, failed_before

    def finish_close(self, error: BaseException | None) -> None:
        """close() is done; ``error`` (what it could not flush) makes the close a failure."""
        with self._lock:
            if error is not None and self.reason == CloseReason.CLEAN:
                self.reason = CloseReason.FAILED
                self.failure = error
            notify = not self._close_notified
            self._close_notified = True
            self.close_done.set()
        self.wake()
        if notify and self.on_closed is not None:
            self.on_closed(self.reason or CloseReason.CLEAN)

    # -- background threads --------------------------------------------------------------

    def spawn(self, name: str, step: Callable[[], Wait | None], first: Wait) -> None:
        """Run ``step`` on a daemon thread: wait on ``first``, then on what each step returns,
        until a step returns ``None``. A ``ClosedError`` closes the database with its reason;
        any other exception closes it as failed."""
        t = threading.Thread(target=self._run, args=(step, first), name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def _run(self, step: Callable[[], Wait | None], first: Wait) -> None:
        event, timeout = first
        while True:
            event.wait(timeout)
            try:
                nxt = step()
            except ClosedError as exc:
                self.fail(exc.reason, exc)
                return
            except BaseException as exc:  # a background failure closes the database
                log.exception("background task failed; closing the database")
                self.fail(CloseReason.FAILED, exc)
                return
            if nxt is None:
                return
            event, timeout = nxt

    def join_threads(self) -> list[str]:
        """Wait for the background threads; the names of those still running after
        ``CLOSE_JOIN_TIMEOUT_S`` (stuck in an object-store call)."""
        me = threading.current_thread()
        until = time.monotonic() + CLOSE_JOIN_TIMEOUT_S
        for t in self.threads:
            if t is not me:
                t.join(max(0.0, until - time.monotonic()))
        return [t.name for t in self.threads if t is not me and t.is_alive()]

    def retrying(self) -> tuple[RetryPolicy, threading.Event | None]:
        """The retry policy of a background upload from the calling thread, and the event that
        ends its waits.

        A background thread retries until the database stops, then gives up at once (the data
        stays queued: close() retries it). close()'s own flush makes ``CLOSE_RETRIES`` attempts
        and gives up. Back-off: ``RETRY_MIN_S`` doubling to ``RETRY_MAX_S`` with full jitter
        (SlateDB's 100 ms - 1 s). Acknowledged writes are never dropped on a retry budget: a
        writer's uploads keep retrying until close, whatever ``object_store_max_retries`` says.
        """
        if threading.current_thread() is self.final_flusher:
            policy = RetryPolicy(
                max_retries=CLOSE_RETRIES - 1, min_delay=RETRY_MIN_S, max_delay=RETRY_MAX_S
            )
            return policy, None
        return RetryPolicy(min_delay=RETRY_MIN_S, max_delay=RETRY_MAX_S), self.stop

    # -- waiting -------------------------------------------------------------------------

    def wait(
        self,
        cond: threading.Condition,
        done: Callable[[], bool],
        until: float | None,
        what: str,
        *,
        health: UploadHealth,
        kind: str,
        cause: Callable[[], str],
        **detail: object,
    ) -> None:
        """Block on ``cond`` until ``done()``; ``cond`` is notified on every change that can
        make ``done()`` true and by every failure and close, so this never polls (it re-checks
        at most every ``WAIT_RECHECK_S``).

        :param what: what ``done()`` means, for messages ("the write was durable").
        :param health: the uploads being waited for (``kind``: ``"WAL"`` or ``"L0"``).
        :param cause: why they are not making progress, for a timeout's message.
        :raises UnavailableError: an upload failed meanwhile (the data stays queued and is
            retried in the background), or ``until`` passed; the message names the cause.
        :raises ClosedError: the database closed, failed or was fenced first.
        """
        with cond:
            failures_at_start = health.failures
            while not done():
                if self.failed():
                    raise self.closed_error(f"database closed before {what}")
                if health.failures > failures_at_start:
                    raise UnavailableError(
                        f"the object store failed the {kind} upload before {what}; the data "
                        "is queued and the upload is retried in the background",
                        error=str(health.error),
                        **detail,
                    )
                if self.close_done.is_set():
                    raise ClosedError(f"database closed before {what}", reason=CloseReason.CLEAN)
                remaining = None if until is None else until - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise UnavailableError(f"timed out before {what}: {cause()}", **detail)
                cond.wait(WAIT_RECHECK_S if remaining is None else min(WAIT_RECHECK_S, remaining))
