"""One retry policy for object-store calls, and the store wrapper that applies it.

shale's twin of SlateDB's ``retrying_object_store.rs``. Two pieces:

- :class:`RetryPolicy` -- *how* a failed call is retried: which errors (only
  :class:`~shale.objstore.TransientStoreError`), how long to wait (exponential backoff from
  :attr:`~RetryPolicy.min_delay` doubling up to :attr:`~RetryPolicy.max_delay`, with jitter) and
  for how long (the budget: :attr:`~RetryPolicy.max_retries` retries and/or
  :attr:`~RetryPolicy.max_elapsed` seconds; neither set means "until stopped", as SlateDB).
  :meth:`RetryPolicy.call` runs one callable under it. Code that must retry a *step* made of
  several store calls (the compactor's commit) and backends that retry single requests
  (shale-minio) use the policy directly.
- :class:`RetryingStore` -- any :class:`~shale.objstore.ObjectStore` whose every call is run
  under a policy. It is the one obvious way to give a component retries::

      store = RetryingStore(store, RetryPolicy.from_settings(settings), stop=stop_event)

Rules, and why:

- **Only transient errors are retried.** ``ObjectNotFound``, ``ObjectAlreadyExists``,
  ``PermanentStoreError``, ``InvalidError`` and every other exception propagate at once: a
  retry cannot change their answer (SlateDB: ``AlreadyExists``, ``Precondition``,
  ``NotFound``, ``NotImplemented``, ``NotSupported`` are not retried).
- **Full jitter** by default: the wait before retry ``n`` (0-based) is uniform in
  ``[0, min(max_delay, min_delay * 2**n)]``, so many clients hit by one outage do not retry in
  step. ``"equal"`` jitter (the upper half of that range) and ``"none"`` exist for callers that
  keep an older schedule.
- **The budget ends with the last transient error**, unchanged, so callers see the error kind
  they always saw (``UnavailableError``). A ``stop`` event ends the wait early the same way.
- **"Did my put land?"** A ``put_if_absent`` whose attempt failed transiently may have created
  the object anyway (the reply was lost). If a later attempt then finds the key taken, the
  wrapper reads the object back: equal bytes are our own write, and the put is reported as
  done; other bytes are a real conflict (``ObjectAlreadyExists``). When the budget runs out
  after such an attempt, one last read-back decides the same way. Equal bytes prove ownership
  only when contents are unique to their writer (WAL SSTs carry sequence numbers and times;
  versions carry the id they were written as); a backend that can tell writers apart does it
  itself (shale-minio tags every put with a random id), and this rule then never triggers for it.
  ``put_if_match`` is not resolved this way (an etag changed by our own lost write is
  indistinguishable from a concurrent writer's): its conflict propagates, and its callers
  re-read and compare, as they always do.
- ``list`` is materialised inside the retry, so a transient error mid-listing restarts it.

Thread safety: a policy is immutable; a :class:`RetryingStore` may be shared by threads (its
random generator is locked).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from shale.errors import InvalidError
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    TransientStoreError,
)

if TYPE_CHECKING:
    from shale.settings import Settings

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MIN_DELAY",
    "Jitter",
    "RetryPolicy",
    "RetryingStore",
]

log = logging.getLogger(__name__)

#: SlateDB's backoff bounds (``retrying_object_store.rs``): 100 ms doubling up to 1 s.
DEFAULT_MIN_DELAY = 0.1
DEFAULT_MAX_DELAY = 1.0

T = TypeVar("T")

Jitter = Literal["full", "equal", "none"]
_JITTERS = ("full", "equal", "none")


def _seconds(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidError(f"retry {name} must be a finite number of seconds >= 0", value=value)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient object-store errors are retried (see the module docstring).

    :param max_retries: retries after the first attempt; ``None``: no limit (the
        ``Settings.object_store_max_retries`` default, as SlateDB's); 0: never retry.
    :param min_delay: the backoff cap before the first retry, seconds.
    :param max_delay: the largest backoff cap, seconds.
    :param max_elapsed: total seconds an operation may spend (its attempts and waits); a wait
        that would end past it is not started. ``None``: no time limit.
    :param jitter: ``"full"`` (uniform in ``[0, cap]``), ``"equal"`` (``[cap/2, cap]``) or
        ``"none"`` (exactly ``cap``).
    :raises InvalidError: a bad value.
    """

    max_retries: int | None = None
    min_delay: float = DEFAULT_MIN_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    max_elapsed: float | None = None
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        n = self.max_retries
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise InvalidError("max_retries must be None or an int >= 0", max_retries=n)
        _seconds("min_delay", self.min_delay)
        _seconds("max_delay", self.max_delay)
        _seconds("max_elapsed", self.max_elapsed, optional=True)
        if self.max_delay < self.min_delay:
            raise InvalidError(
                "retry max_delay must be >= min_delay",
                min_delay=self.min_delay,
                max_delay=self.max_delay,
            )
        if self.jitter not in _JITTERS:
            raise InvalidError("retry jitter must be full, equal or none", jitter=self.jitter)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """SlateDB's policy with the budget of ``settings.object_store_max_retries``."""
        return cls(max_retries=settings.object_store_max_retries)

    def cap(self, retry: int) -> float:
        """The backoff cap before retry ``retry`` (0-based): ``min_delay * 2**retry``, at most
        ``max_delay``."""
        return min(self.max_delay, self.min_delay * 2.0 ** min(retry, 64))

    def delay(self, retry: int, draw: Callable[[], float] = random.random) -> float:
        """The wait before retry ``retry`` (0-based), per :attr:`jitter`; ``draw()`` returns
        a uniform float in ``[0, 1)``."""
        cap = self.cap(retry)
        if self.jitter == "none":
            return cap
        u = draw()
        if self.jitter == "equal":
            return cap / 2 + u * cap / 2
        return u * cap

    def call(
        self,
        fn: Callable[[], T],
        *,
        what: str = "object-store call",
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        log_level: int = logging.WARNING,
        retry_on: tuple[type[BaseException], ...] = (TransientStoreError,),
    ) -> T:
        """``fn()``, retried under this policy while it raises
        :class:`~shale.objstore.TransientStoreError`.

        :param what: names the operation in log records.
        :param stop: when set, waiting ends and the last error is raised.
        :param sleep: how a wait is spent when there is no ``stop`` event.
        :param clock: monotonic seconds, for :attr:`max_elapsed`.
        :param draw: the jitter's uniform ``[0, 1)`` draws (e.g. ``random.Random(7).random``).
        :param on_retry: ``on_retry(retry, error, delay)`` before each wait (``retry`` is
            0-based).
        :param log_level: level of the record logged before each retry.
        :param retry_on: the errors retried (default transient store errors; the engine also
            retries an :class:`~shale.errors.UnavailableError` such as a manifest update that
            timed out on conflicts).
        :returns: what ``fn`` returned.
        :raises TransientStoreError: the last one, when the budget is spent or ``stop`` is set.
        :raises Exception: any other error of ``fn``, at once.
        """
        start = clock()
        retry = 0
        while True:
            try:
                return fn()
            except retry_on as exc:
                if self.max_retries is not None and retry >= self.max_retries:
                    if self.max_retries:
                        log.warning("%s failed after %d retries: %s", what, retry, exc)
                    raise
                delay = self.delay(retry, draw)
                if self.max_elapsed is not None and clock() + delay - start > self.max_elapsed:
                    log.warning(
                        "%s failed; its %.1fs retry budget is spent: %s",
                        what,
                        self.max_elapsed,
                        exc,
                    )
                    raise
                if stop is not None and stop.is_set():
                    raise
                if on_retry is not None:
                    on_retry(retry, exc, delay)
                log.log(
                    log_level,
                    "%s failed (retry %d%s), retrying in %.3fs: %s",
                    what,
                    retry + 1,
                    "" if self.max_retries is None else f"/{self.max_retries}",
                    delay,
                    exc,
                )
                if stop is not None:
                    if stop.wait(delay):
                        raise
                else:
                    sleep(delay)
                retry += 1


class RetryingStore:
    """An :class:`~shale.objstore.ObjectStore` that runs every call of ``inner`` under
    ``policy`` (see the module docstring).

    :param inner: the store to wrap (closed when this one is).
    :param policy: the retry policy; default :class:`RetryPolicy()` (SlateDB's: unbounded).
    :param stop: an event that ends every wait early (the last error is raised).
    :param sleep: how waits are spent when there is no ``stop`` (inject one in tests).
    :param clock: monotonic seconds, for the policy's time budget.
    :param seed: seed of the jitter's random generator (``None``: random).
    :param on_retry: ``on_retry(retry, error, delay)`` before each wait of any call (e.g. to
        report the store's health while the call keeps retrying).
    """

    def __init__(
        self,
        inner: ObjectStore,
        policy: RetryPolicy | None = None,
        *,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> None:
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise InvalidError("policy must be a RetryPolicy", type=type(policy).__name__)
        self._inner = inner
        self.policy = policy if policy is not None else RetryPolicy()
        self._stop = stop
        self._sleep = sleep
        self._clock = clock
        self._seed = seed
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._on_retry = on_retry

    @property
    def inner(self) -> ObjectStore:
        """The wrapped store."""
        return self._inner

    def __repr__(self) -> str:
        return f"RetryingStore({self._inner!r}, {self.policy!r})"

    def _draw(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def _call(
        self,
        op: str,
        key: str,
        fn: Callable[[], T],
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> T:
        observer = self._on_retry
        if observer is not None and on_retry is not None:
            inner_note = on_retry

            def on_retry(retry: int, exc: BaseException, delay: float) -> None:
                inner_note(retry, exc, delay)
                observer(retry, exc, delay)

        elif on_retry is None:
            on_retry = observer
        return self.policy.call(
            fn,
            what=f"{op} of {key!r}",
            stop=self._stop,
            sleep=self._sleep,
            clock=self._clock,
            draw=self._draw,
            on_retry=on_retry,
        )

    # -- writes -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """:meth:`ObjectStore.put`, retried (an unconditional put is idempotent)."""
        self._call("put", key, lambda: self._inner.put(key, data, durable=durable))

    def put_if_absent(self, key: str, data: bytes, *, maybe_landed: bool = False) -> None:
        """:meth:`ObjectStore.put_if_absent`, retried, resolving lost replies by the bytes.

        :param maybe_landed: an earlier call with these bytes failed and may have created the
            object (e.g. a WAL upload retried by ``close()`` after its thread gave up), so an
            existing object is compared from the first attempt on.
        :raises ObjectAlreadyExists: the key holds an object that is not this write.
        """
        uncertain = maybe_landed  # an earlier attempt may have created the object

        def note(_retry: int, _exc: BaseException, _delay: float) -> None:
            nonlocal uncertain
            uncertain = True

        try:
            self._call(
                "put_if_absent", key, lambda: self._inner.put_if_absent(key, data), on_retry=note
            )
        except ObjectAlreadyExists:
            if uncertain and self._landed(key, data, retry=True):
                return
            raise
        except TransientStoreError:
            # out of budget: one last look (one request); the last attempt may have landed
            try:
                if self._landed(key, data, retry=False):
                    return
            except ObjectStoreError:
                pass
            raise

    def _landed(self, key: str, data: bytes, *, retry: bool) -> bool:
        """Whether the object at ``key`` holds ``data`` (our write whose reply was lost)."""
        try:
            stored = self.get(key) if retry else self._inner.get(key)
        except ObjectNotFound:
            return False
        if stored == data:
            log.info("put_if_absent of %r: the reply was lost but the write landed", key)
            return True
        return False

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        """:meth:`ObjectStore.put_if_match`, retried; a conflict propagates (see the module
        docstring)."""
        self._call("put_if_match", key, lambda: self._inner.put_if_match(key, data, etag))

    def delete(self, key: str) -> None:
        """:meth:`ObjectStore.delete`, retried (deletes are idempotent)."""
        self._call("delete", key, lambda: self._inner.delete(key))

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """:meth:`ObjectStore.get`, retried."""
        return self._call("get", key, lambda: self._inner.get(key))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """:meth:`ObjectStore.get_range`, retried."""
        return self._call("get_range", key, lambda: self._inner.get_range(key, start, end))

    def head(self, key: str) -> ObjectMeta:
        """:meth:`ObjectStore.head`, retried."""
        return self._call("head", key, lambda: self._inner.head(key))

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """:meth:`ObjectStore.list`, fetched whole inside the retry (a failure mid-listing
        restarts it)."""
        return iter(self._call("list", prefix, lambda: [*self._inner.list(prefix)]))

    # -- the rest -----------------------------------------------------------------------------

    def enclosing_store(self) -> RetryingStore | None:
        """The inner store's enclosing store (see :class:`ObjectStore`), wrapped alike."""
        enclosing = getattr(self._inner, "enclosing_store", None)
        outer = enclosing() if enclosing is not None else None
        if outer is None:
            return None
        return RetryingStore(
            outer,
            self.policy,
            stop=self._stop,
            sleep=self._sleep,
            clock=self._clock,
            on_retry=self._on_retry,
        )

    def close(self) -> None:
        """Close the inner store."""
        self._inner.close()
