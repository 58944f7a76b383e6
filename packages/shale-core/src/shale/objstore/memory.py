"""The in-memory object store (built-in plugin ``shale.memory``): for tests and ephemeral data.

It keeps the same contract as the durable stores (see :mod:`shale.objstore.protocol`): one lock
makes every operation atomic, so objects are never partially visible and exactly one racing
``put_if_absent`` wins. Etags come from a per-store counter, so every write gets a new one.

``last_modified`` comes from an injectable ``clock`` (seconds since the epoch, default
:func:`time.time`): garbage-collection tests advance a fake clock instead of sleeping.

URLs: ``memory://`` (or ``memory:///``) opens a fresh, empty store each time;
``memory://<name>`` opens the process-wide store registered under ``<name>``, so two opens of
``memory://db1`` in one process share their objects (a writer and a reader, or a database and
its compactor). :func:`forget_named` drops registered stores. No ``open_store`` options are
accepted.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import shale
from shale.errors import InvalidError
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    object_bytes,
    validate_key,
)

__all__ = ["MemoryStore", "forget_named", "shale_open_object_store"]


class _Object(NamedTuple):
    data: bytes
    etag: str
    last_modified: float


class MemoryStore:
    """A thread-safe object store held in a dict.

    :param clock: returns the current time in seconds since the epoch; stamps
        ``last_modified`` (inject a fake clock to simulate time).
    :param name: the registry name when made by :meth:`named` (shown by ``repr``).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, name: str | None = None) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, _Object] = {}
        self._keys: list[str] = []  # sorted, for prefix listing
        self._version = 0
        self._clock = clock
        self.name = name

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process-wide store registered under ``name``, created empty on first use."""
        if not isinstance(name, str) or not name:
            raise InvalidError("memory store name must be a non-empty str", name=name)
        with _registry_lock:
            store = _registry.get(name)
            if store is None:
                store = _registry[name] = cls(name=name)
            return store

    def __repr__(self) -> str:
        label = f"name={self.name!r}, " if self.name else ""
        return f"MemoryStore({label}objects={len(self._objects)})"

    def __len__(self) -> int:
        return len(self._objects)

    def clear(self) -> None:
        """Remove every object."""
        with self._lock:
            self._objects.clear()
            self._keys.clear()

    # -- writes -----------------------------------------------------------------------------

    def _store(self, key: str, data: bytes, now: float) -> None:
        """Write under the lock (the caller holds it)."""
        if key not in self._objects:
            bisect.insort(self._keys, key)
        self._version += 1
        self._objects[key] = _Object(data, f"{self._version:x}", now)

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` at ``key``, replacing any object (``durable`` has no effect)."""
        validate_key(key)
        blob = object_bytes(key, data)
        now = self._clock()
        with self._lock:
            self._store(key, blob, now)

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Create ``key`` only if absent. :raises ObjectAlreadyExists: the key exists."""
        validate_key(key)
        blob = object_bytes(key, data)
        now = self._clock()
        with self._lock:
            if key in self._objects:
                raise ObjectAlreadyExists("object already exists", key=key)
            self._store(key, blob, now)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        """Overwrite ``key`` only if its etag is ``etag``.

        :raises ObjectAlreadyExists: the object changed since ``etag`` was read, or is gone.
        """
        validate_key(key)
        if not isinstance(etag, str):
            raise InvalidError("etag must be a str", key=key, type=type(etag).__name__)
        blob = object_bytes(key, data)
        now = self._clock()
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise ObjectAlreadyExists(
                    "object is gone; etag precondition failed", key=key, etag=etag
                )
            if current.etag != etag:
                raise ObjectAlreadyExists(
                    "object changed; etag precondition failed",
                    key=key,
                    etag=etag,
                    current=current.etag,
                )
            self._store(key, blob, now)

    def delete(self, key: str) -> None:
        """Remove ``key``; succeeds if it is already gone."""
        validate_key(key)
        with self._lock:
            if self._objects.pop(key, None) is not None:
                i = bisect.bisect_left(self._keys, key)
                del self._keys[i]

    # -- reads ------------------------------------------------------------------------------

    def _get(self, key: str) -> _Object:
        validate_key(key)
        obj = self._objects.get(key)  # a dict read is atomic; the tuple is immutable
        if obj is None:
            raise ObjectNotFound("object not found", key=key)
        return obj

    def get(self, key: str) -> bytes:
        """The whole object. :raises ObjectNotFound: the key does not exist."""
        return self._get(key).data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object, clipped to its length.

        :raises InvalidError: ``start`` or ``end`` is negative or not an int.
        :raises ObjectNotFound: the key does not exist.
        """
        obj = self._get(key)
        if (
            not isinstance(start, int)
            or not isinstance(end, int)
            or isinstance(start, bool)
            or isinstance(end, bool)
            or start < 0
            or end < 0
        ):
            raise InvalidError(
                "range bounds must be non-negative ints", key=key, start=start, end=end
            )
        if start >= end:
            return b""
        return obj.data[start:end]

    def head(self, key: str) -> ObjectMeta:
        """Size, ``last_modified`` and etag of one object.

        :raises ObjectNotFound: the key does not exist.
        """
        obj = self._get(key)
        return ObjectMeta(key, len(obj.data), obj.last_modified, obj.etag)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """Every object whose key starts with ``prefix``, in ascending key order.

        The result is a snapshot taken when the call is made.

        :raises InvalidError: ``prefix`` is not a str.
        """
        if not isinstance(prefix, str):
            raise InvalidError("list prefix must be a str", type=type(prefix).__name__)
        out = []
        with self._lock:
            keys = self._keys
            i = bisect.bisect_left(keys, prefix)
            while i < len(keys) and keys[i].startswith(prefix):
                key = keys[i]
                obj = self._objects[key]
                out.append(ObjectMeta(key, len(obj.data), obj.last_modified, obj.etag))
                i += 1
        return iter(out)

    def close(self) -> None:
        """Nothing to release; a named store keeps its objects for the next open."""


_registry: dict[str, MemoryStore] = {}
_registry_lock = threading.Lock()


def forget_named(name: str | None = None) -> None:
    """Drop the registered store ``name`` (every registered store when ``None``).

    Handles already open keep working; the next ``memory://<name>`` gets a fresh store.
    """
    with _registry_lock:
        if name is None:
            _registry.clear()
        else:
            _registry.pop(name, None)


@shale.hookimpl
def shale_open_object_store(url: str, options: dict[str, Any]) -> MemoryStore | None:
    """Open ``memory://`` (a fresh store) or ``memory://<name>`` (the shared named store).

    Returns ``None`` for any other scheme.

    :raises InvalidError: a path, query or fragment after the name, or any option.
    """
    if not isinstance(url, str) or url[:9].lower() != "memory://":
        return None
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidError("memory URLs are memory:// or memory://<name>, without a path", url=url)
    if options:
        raise InvalidError("the memory store takes no options", url=url, options=sorted(options))
    name = unquote(parts.netloc)
    return MemoryStore.named(name) if name else MemoryStore()
