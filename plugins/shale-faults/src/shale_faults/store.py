"""FaultyStore: wraps any object store and injects failures by rule, for testing shale.

A :class:`FaultRule` names the operations it applies to, an optional key prefix, a probability,
and what happens when it fires: added latency, an error raised *instead of* the operation, or
an error raised *after* the operation really ran (``after=True``: "succeeded but reported
failure", the lost reply that conditional writes must survive).

How a call is decided:

1. The key is validated first (so invalid keys still raise
   :class:`~shale.errors.InvalidError`, never an injected fault).
2. Each rule that matches the operation and key (and has not reached its ``limit``) draws one
   number from the store's random generator; it fires when the draw is below its
   ``probability``. Every firing rule adds its latency; the first firing rule with an error
   decides the error, and later rules are not consulted.
3. Latency is slept (through the injectable ``sleep``), then the error is raised before the
   call, or the call runs and the error is raised after it, or the call just runs. When an
   ``after`` rule's call fails by itself, its own error propagates and the firing is neither
   counted nor charged to the rule's ``limit``.

Determinism: draws come from ``random.Random(seed)`` under a lock, in call order, so a
single-threaded caller sees the same faults for the same seed. With several threads the
sequence of draws is the same but which thread gets which draw depends on scheduling.

Counters: :attr:`FaultyStore.counts` counts firings as ``"<op>:<what>"`` (``put:transient``,
``put:transient:after``, ``get:latency``), :attr:`FaultyStore.calls` counts calls per
operation, and :attr:`FaultyStore.injected` is the number of injected errors.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from shale.spi import (
    InvalidError,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PermanentStoreError,
    TransientStoreError,
    validate_key,
)

__all__ = ["ERRORS", "OPS", "FaultRule", "FaultyStore"]

#: Every operation a rule can name (``"*"`` means all of them).
OPS: tuple[str, ...] = (
    "put",
    "put_if_absent",
    "put_if_match",
    "get",
    "get_range",
    "head",
    "list",
    "delete",
)
#: Error kinds a rule can name, and the exception each raises.
ERRORS: dict[str, type[ObjectStoreError]] = {
    "transient": TransientStoreError,
    "permanent": PermanentStoreError,
    "not_found": ObjectNotFound,
    "conflict": ObjectAlreadyExists,
}

ErrorSpec = str | type[BaseException] | Callable[[str], BaseException] | None


def _ops(value: str | Iterable[str]) -> frozenset[str]:
    names = value.split(",") if isinstance(value, str) else list(value)
    out: set[str] = set()
    for name in names:
        name = name.strip()
        if name == "*":
            out.update(OPS)
        elif name in OPS:
            out.add(name)
        else:
            raise InvalidError("unknown object-store operation in a fault rule", op=name, ops=OPS)
    if not out:
        raise InvalidError("a fault rule must name at least one operation")
    return frozenset(out)


@dataclass(frozen=True)
class FaultRule:
    """When and how to fail (see the module docstring).

    :param ops: operations it applies to: ``"*"``, ``"put,get"`` or an iterable of names.
    :param probability: chance in ``[0, 1]`` that it fires on a matching call.
    :param error: ``"transient"``, ``"permanent"``, ``"not_found"``, ``"conflict"``, an
        exception class, a callable ``message -> exception``, or ``None`` for latency only.
    :param latency: seconds slept when it fires (before the operation).
    :param after: raise the error after performing the operation (a lost reply).
    :param prefix: only keys (or list prefixes) starting with this.
    :param limit: fire at most this many times (``None``: no limit).
    """

    ops: frozenset[str] | str | Iterable[str] = "*"
    probability: float = 1.0
    error: ErrorSpec = "transient"
    latency: float = 0.0
    after: bool = False
    prefix: str = ""
    limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", _ops(self.ops))
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise InvalidError("fault probability must be a number in [0, 1]", probability=p)
        lat = self.latency
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not lat >= 0:
            raise InvalidError(
                "fault latency must be a non-negative number of seconds", latency=lat
            )
        if isinstance(self.error, str) and self.error not in ERRORS:
            raise InvalidError("unknown fault error kind", error=self.error, kinds=sorted(ERRORS))
        if self.error is not None and not isinstance(self.error, str) and not callable(self.error):
            raise InvalidError("fault error must be a kind name, an exception class or callable")
        if not isinstance(self.after, bool):
            raise InvalidError("fault option after must be a bool", after=self.after)
        if self.after and self.error is None:
            raise InvalidError("a fault rule with after=True needs an error to raise")
        if not isinstance(self.prefix, str):
            raise InvalidError("fault prefix must be a str", prefix=self.prefix)
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0
        ):
            raise InvalidError("fault limit must be a non-negative int or None", limit=self.limit)

    @property
    def label(self) -> str:
        """What the rule injects, for counters: ``transient``, ``MyError``, ``latency``."""
        if self.error is None:
            return "latency"
        if isinstance(self.error, str):
            return self.error
        return getattr(self.error, "__name__", type(self.error).__name__)

    def make_error(self, op: str, key: str) -> BaseException:
        """The exception this rule raises for ``op`` on ``key``."""
        message = f"injected fault: {op} {key!r}"
        error = self.error
        if isinstance(error, str):
            cls = ERRORS[error]
            return cls(message, op=op, key=key, injected=True)
        assert error is not None
        return error(message)


class FaultyStore:
    """An :class:`~shale.objstore.protocol.ObjectStore` that injects faults into ``inner``.

    :param inner: the store to wrap (closed when this one is).
    :param rules: the :class:`FaultRule` list, in priority order (empty: a transparent wrapper).
    :param seed: seed of the random generator deciding which calls fail.
    :param sleep: how latency is waited (inject a fake to keep tests fast).
    """

    def __init__(
        self,
        inner: ObjectStore,
        rules: Sequence[FaultRule] = (),
        *,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for rule in rules:
            if not isinstance(rule, FaultRule):
                raise InvalidError("FaultyStore rules must be FaultRule objects", rule=rule)
        self._inner = inner
        self._rules = tuple(rules)
        self._fired = [0] * len(self._rules)  # per rule, for its limit
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._sleep = sleep
        self.seed = seed
        #: Firings per ``"<op>:<label>[:after]"``.
        self.counts: Counter[str] = Counter()
        #: Calls per operation.
        self.calls: Counter[str] = Counter()

    @property
    def inner(self) -> ObjectStore:
        """The wrapped store."""
        return self._inner

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        """The rules, in priority order."""
        return self._rules

    @property
    def injected(self) -> int:
        """How many errors were injected (before or after the operation)."""
        return sum(n for name, n in self.counts.items() if not name.endswith(":latency"))

    def reset_counts(self) -> None:
        """Zero :attr:`counts`, :attr:`calls` and every rule's ``limit`` budget."""
        with self._lock:
            self.counts.clear()
            self.calls.clear()
            self._fired = [0] * len(self._rules)

    def __repr__(self) -> str:
        return f"FaultyStore({self._inner!r}, rules={len(self._rules)}, seed={self.seed!r})"

    def __getattr__(self, name: str) -> Any:
        # Backend extras (bucket, root, ...) stay reachable through the wrapper.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    # -- deciding -----------------------------------------------------------------------------

    def _decide(self, op: str, key: str) -> tuple[float, int | None]:
        """Latency to add and the index of the error rule that fired (or ``None``)."""
        latency = 0.0
        chosen: int | None = None
        with self._lock:
            self.calls[op] += 1
            for index, rule in enumerate(self._rules):
                if op not in rule.ops or not key.startswith(rule.prefix):
                    continue
                if rule.limit is not None and self._fired[index] >= rule.limit:
                    continue
                if self._rng.random() >= rule.probability:
                    continue
                self._fired[index] += 1
                if rule.latency:
                    latency += rule.latency
                    self.counts[f"{op}:latency"] += 1
                if rule.error is not None:
                    chosen = index
                    if not rule.after:
                        self.counts[f"{op}:{rule.label}"] += 1
                    break
        return latency, chosen

    def _run(self, op: str, key: str, call: Callable[[], Any]) -> Any:
        if not self._rules:
            return call()
        latency, index = self._decide(op, key)
        if latency:
            self._sleep(latency)
        if index is None:
            return call()
        rule = self._rules[index]
        if not rule.after:
            raise rule.make_error(op, key)
        try:
            call()
        except BaseException:
            with self._lock:  # the operation failed by itself: nothing was injected
                self._fired[index] -= 1
            raise
        with self._lock:
            self.counts[f"{op}:{rule.label}:after"] += 1
        raise rule.make_error(op, key)

    # -- the protocol -------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """:meth:`ObjectStore.put` of the inner store, with faults."""
        validate_key(key)
        self._run("put", key, lambda: self._inner.put(key, data, durable=durable))

    def put_if_absent(self, key: str, data: bytes) -> None:
        """:meth:`ObjectStore.put_if_absent` of the inner store, with faults."""
        validate_key(key)
        self._run("put_if_absent", key, lambda: self._inner.put_if_absent(key, data))

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        """:meth:`ObjectStore.put_if_match` of the inner store, with faults."""
        validate_key(key)
        self._run("put_if_match", key, lambda: self._inner.put_if_match(key, data, etag))

    def get(self, key: str) -> bytes:
        """:meth:`ObjectStore.get` of the inner store, with faults."""
        validate_key(key)
        result: bytes = self._run("get", key, lambda: self._inner.get(key))
        return result

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """:meth:`ObjectStore.get_range` of the inner store, with faults."""
        validate_key(key)
        result: bytes = self._run("get_range", key, lambda: self._inner.get_range(key, start, end))
        return result

    def head(self, key: str) -> ObjectMeta:
        """:meth:`ObjectStore.head` of the inner store, with faults."""
        validate_key(key)
        result: ObjectMeta = self._run("head", key, lambda: self._inner.head(key))
        return result

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """:meth:`ObjectStore.list` of the inner store, with faults.

        A fault with ``after=True`` reads the whole listing, then raises.
        """
        if not isinstance(prefix, str):
            raise InvalidError("list prefix must be a str", type=type(prefix).__name__)
        result: Iterator[ObjectMeta] = self._run(
            "list", prefix, lambda: iter(list(self._inner.list(prefix)))
        )
        return result

    def delete(self, key: str) -> None:
        """:meth:`ObjectStore.delete` of the inner store, with faults."""
        validate_key(key)
        self._run("delete", key, lambda: self._inner.delete(key))

    def close(self) -> None:
        """Close the inner store."""
        self._inner.close()
