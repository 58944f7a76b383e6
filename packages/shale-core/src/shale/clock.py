"""Clocks. Every timestamp in shale is milliseconds since the Unix epoch.

The database reads time through a clock object with ``now_ms()`` so tests can inject one.
:class:`MonotonicClock` wraps any clock and never goes backwards: a wall clock that steps back
yields the last value again (SlateDB sleeps and re-reads; shale clamps and logs), and after a
restart the clock resumes at least from the manifest's ``last_l0_clock_tick``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from shale.errors import InvalidError

log = logging.getLogger(__name__)

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told (for tests and simulations)."""

    def __init__(self, now_ms: int = 0) -> None:
        self._now = now_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        with self._lock:
            self._now = now_ms

    def advance(self, ms: int) -> int:
        with self._lock:
            self._now += ms
            return self._now


class MonotonicClock:
    """Wraps a clock so successive readings never decrease."""

    def __init__(self, inner: Clock, floor_ms: int | None = None) -> None:
        self.inner = inner
        self._last = floor_ms if floor_ms is not None else -(2**63)
        self._lock = threading.Lock()
        # the wall clock needs no checking: read it directly (the write path's hot call)
        self._system = type(inner) is SystemClock

    def advance_to(self, ms: int) -> None:
        with self._lock:
            if ms > self._last:
                self._last = ms

    def now_ms(self) -> int:
        """The inner clock's reading, never below an earlier one.

        :raises InvalidError: the inner clock returned something else than an ``int`` in the
            i64 range (a ``float``, say): timestamps are stored as i64 milliseconds, and a
            write must fail before anything is written rather than in the WAL upload.
        """
        if self._system:
            now = time.time_ns() // 1_000_000
            with self._lock:
                if now >= self._last:
                    self._last = now
                    return now
            return self._checked(now)
        return self._checked(self.inner.now_ms())

    def _checked(self, now: int) -> int:
        """:meth:`now_ms` for a reading ``now`` of the inner clock: checked, held monotonic."""
        if type(now) is not int and (not isinstance(now, int) or isinstance(now, bool)):
            raise InvalidError(
                "clock.now_ms() must return an int of epoch milliseconds",
                type=type(now).__name__,
            )
        if not _I64_MIN <= now <= _I64_MAX:
            raise InvalidError("clock.now_ms() is outside the i64 range", now_ms=now)
        with self._lock:
            if now < self._last:
                if self._last - now > 10_000:
                    log.warning("clock went backwards by %d ms; holding it", self._last - now)
                return self._last
            self._last = now
            return now
