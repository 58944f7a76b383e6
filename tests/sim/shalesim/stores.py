"""The simulated object store, in layers (outermost first)::

    Handle (one per client: writer, compactor, GC)   cut() = the client's process died
      -> Gate (shared)                               arm(FaultyStore) for a fault window
        -> FaultyStore (shale_faults, per window)    errors, lost replies
          -> FullStore (shared)                      a byte budget: a full store/disk
            -> MemoryStore (shale.objstore.memory)   the objects

Every layer keeps the :class:`shale.objstore.protocol.ObjectStore` protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from shale.errors import ClosedError, CloseReason
from shale.objstore.memory import MemoryStore
from shale.objstore.protocol import ObjectMeta, TransientStoreError
from shale_faults import FaultyStore

__all__ = ["FullStore", "Gate", "Handle", "SimulatedCrash", "make_memory_store"]


class SimulatedCrash(ClosedError):
    """What a cut :class:`Handle` raises: the client's process is gone.

    A :class:`~shale.errors.ClosedError` so no retry loop of shale catches it: background
    threads of the abandoned client stop at their next store call, without touching the store.
    """

    def __init__(self, owner: str) -> None:
        super().__init__("simulated crash: this client is dead", reason=CloseReason.FAILED)
        self.owner = owner


def make_memory_store(now_s: Callable[[], float]) -> MemoryStore:
    """A private memory store whose ``last_modified`` follows the simulated clock."""
    return MemoryStore(clock=now_s)


class FullStore:
    """Writes fail with a transient "no space left" while the stored bytes exceed a budget.

    ``capacity`` ``None``: unlimited. Deletes always work and free space.
    """

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.capacity: int | None = None
        self.rejected = 0

    def used_bytes(self) -> int:
        return sum(m.size for m in self.inner.list(""))

    def _check(self, key: str, data: bytes) -> None:
        if self.capacity is None:
            return
        if self.used_bytes() + len(data) > self.capacity:
            self.rejected += 1
            raise TransientStoreError(
                "no space left on device (simulated full store)", key=key, injected=True
            )

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._check(key, data)
        self.inner.put(key, data, durable=durable)

    def put_if_absent(self, key: str, data: bytes) -> None:
        self._check(key, data)
        self.inner.put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self._check(key, data)
        self.inner.put_if_match(key, data, etag)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self.inner.get_range(key, start, end)

    def head(self, key: str) -> ObjectMeta:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        pass


class Gate:
    """Routes every call to the armed :class:`FaultyStore`, or straight to the store below."""

    def __init__(self, below: FullStore) -> None:
        self.below = below
        self._armed: FaultyStore | None = None
        self._lock = threading.Lock()

    def arm(self, faulty: FaultyStore) -> None:
        with self._lock:
            self._armed = faulty

    def disarm(self) -> FaultyStore | None:
        with self._lock:
            armed, self._armed = self._armed, None
            return armed

    @property
    def armed(self) -> FaultyStore | None:
        return self._armed

    def _target(self) -> Any:
        armed = self._armed
        return armed if armed is not None else self.below

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._target().put(key, data, durable=durable)

    def put_if_absent(self, key: str, data: bytes) -> None:
        self._target().put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self._target().put_if_match(key, data, etag)

    def get(self, key: str) -> bytes:
        data: bytes = self._target().get(key)
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        data: bytes = self._target().get_range(key, start, end)
        return data

    def head(self, key: str) -> ObjectMeta:
        meta: ObjectMeta = self._target().head(key)
        return meta

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        found: Iterator[ObjectMeta] = self._target().list(prefix)
        return found

    def delete(self, key: str) -> None:
        self._target().delete(key)

    def close(self) -> None:
        pass


class Handle:
    """One client's connection to the shared store; :meth:`cut` kills it for good.

    After the cut every call raises :class:`SimulatedCrash` and nothing reaches the store, so
    an abandoned client (a "crashed process") can never write again. ``writes_after_cut``
    counts write attempts it made anyway (harmless, but shows background work still running).
    """

    _WRITES = frozenset({"put", "put_if_absent", "put_if_match", "delete"})

    def __init__(self, gate: Gate, owner: str) -> None:
        self.gate = gate
        self.owner = owner
        self.cut_done = False
        self.calls_after_cut = 0
        self.writes_after_cut = 0
        #: Writes (put, put_if_absent, put_if_match, delete) that reached the store.
        self.writes_ok = 0

    def cut(self) -> None:
        self.cut_done = True

    def _check(self, op: str) -> None:
        if self.cut_done:
            self.calls_after_cut += 1
            if op in self._WRITES:
                self.writes_after_cut += 1
            raise SimulatedCrash(self.owner)

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._check("put")
        self.gate.put(key, data, durable=durable)
        self.writes_ok += 1

    def put_if_absent(self, key: str, data: bytes) -> None:
        self._check("put_if_absent")
        self.gate.put_if_absent(key, data)
        self.writes_ok += 1

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self._check("put_if_match")
        self.gate.put_if_match(key, data, etag)
        self.writes_ok += 1

    def get(self, key: str) -> bytes:
        self._check("get")
        return self.gate.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self._check("get_range")
        return self.gate.get_range(key, start, end)

    def head(self, key: str) -> ObjectMeta:
        self._check("head")
        return self.gate.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        self._check("list")
        return self.gate.list(prefix)

    def delete(self, key: str) -> None:
        self._check("delete")
        self.gate.delete(key)
        self.writes_ok += 1

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<sim store handle {self.owner}{' (cut)' if self.cut_done else ''}>"
