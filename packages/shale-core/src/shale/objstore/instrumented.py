"""The object-store wrapper that records request metrics and trace spans (SlateDB's
``InstrumentedObjectStore``), and :func:`handle_store`, the one place a database handle's store
gets its layers.

Every request is timed into ``shale_object_store_request_seconds{op}`` (``op``: get -- also
ranged gets --, put -- also conditional puts --, list, delete, head); a request that raises
anything but the expected answers :class:`ObjectNotFound` / :class:`ObjectAlreadyExists` counts
in ``shale_object_store_errors_total{op}``; bytes read and written go to
``shale_object_store_bytes_total{op}``. With a tracer installed (:mod:`shale.tracing`) each
request is a span ``shale.object_store.<op>`` with the key as ``shale.key``.

Layering, inside out: the backend (with its own retries), this wrapper (so it counts the
requests that reach object storage), then the disk cache (:mod:`shale.objstore.cached`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from shale import tracing
from shale.metrics import MetricsRegistry
from shale.objstore.cached import CachedObjectStore, wrap_store
from shale.objstore.protocol import ObjectAlreadyExists, ObjectMeta, ObjectNotFound, ObjectStore
from shale.settings import ObjectStoreCacheOptions
from shale.telemetry import StoreMetrics

__all__ = ["InstrumentedStore", "handle_store", "streams"]

T = TypeVar("T")
_now = time.perf_counter_ns
_EXPECTED = (ObjectNotFound, ObjectAlreadyExists)


def streams(store: Any) -> bool:
    """Whether ``store.open_writer`` streams an object into ``store`` itself: its class
    defines it (a wrapper that merely forwards unknown attributes -- a fault injector -- does
    not count, so its ``put`` stays the only way in) and, for a wrapper that does define it,
    the store it wraps streams too."""
    return getattr(type(store), "open_writer", None) is not None and bool(
        getattr(store, "streams", True)
    )


#: A streamed object's optional API for producers that write its bytes themselves.
_DIRECT_WRITE = frozenset({"fileno", "sync_due", "sync", "error"})


class _CountedWriter:
    """A streamed object's writer (``LocalObjectWriter``'s API) that counts its bytes."""

    def __init__(self, store: InstrumentedStore, key: str, inner: Any) -> None:
        self._store = store
        self._key = key
        self._inner = inner

    def write_parts(self, parts: list[bytes]) -> None:
        self._inner.write_parts(parts)
        self._store._m.bytes_put.inc(sum(map(len, parts)))

    def __getattr__(self, name: str) -> Any:
        # the optional direct-write API (``fileno``, ``sync_due``, ``sync``, ``error``)
        if name.startswith("__") or name not in _DIRECT_WRITE:
            raise AttributeError(name)
        return getattr(self._inner, name)

    def wrote(self, n: int) -> None:
        self._inner.wrote(n)
        self._store._m.bytes_put.inc(n)

    def commit(self, *, durable: bool = True) -> None:
        self._store._call("put", self._key, lambda: self._inner.commit(durable=durable))

    def commit_if_absent(self) -> None:
        self._store._call("put", self._key, self._inner.commit_if_absent)

    def abort(self) -> None:
        self._inner.abort()


class InstrumentedStore:
    """An :class:`ObjectStore` recording every call of ``inner`` into ``registry``."""

    def __init__(self, inner: ObjectStore, registry: MetricsRegistry) -> None:
        self._inner = inner
        #: the registry requests are recorded in (``shale.telemetry.registry_for`` finds it)
        self.metrics_registry = registry
        self._m = StoreMetrics(registry)

    @property
    def inner(self) -> ObjectStore:
        """The wrapped store."""
        return self._inner

    def __repr__(self) -> str:
        return f"InstrumentedStore({self._inner!r})"

    def __getattr__(self, name: str) -> Any:
        # optional extras of the wrapped store (enclosing_store, a backend's own helpers)
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        t0 = _now()
        try:
            if tracing.get_tracer() is None:
                return fn()
            with tracing.span(f"shale.object_store.{op}", **{"shale.key": key}):
                return fn()
        except _EXPECTED:
            raise
        except BaseException:
            self._m.errors[op].inc()
            raise
        finally:
            self._m.seconds[op].record_ns(_now() - t0)

    @property
    def streams(self) -> bool:
        """Whether :meth:`open_writer` works: the wrapped store streams (:func:`streams`)."""
        return streams(self._inner)

    def open_writer(self, key: str, *, sync_every: int = 0) -> _CountedWriter:
        """The wrapped store's ``open_writer``, its bytes counted as put and its commit timed
        as one put request (only when :attr:`streams`)."""
        if not streams(self._inner):
            raise AttributeError("open_writer")
        writer = self._inner.open_writer(key, sync_every=sync_every)  # type: ignore[attr-defined]
        return _CountedWriter(self, key, writer)

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._call("put", key, lambda: self._inner.put(key, data, durable=durable))
        self._m.bytes_put.inc(len(data))

    def put_if_absent(self, key: str, data: bytes, **kwargs: Any) -> None:
        self._call("put", key, lambda: self._inner.put_if_absent(key, data, **kwargs))
        self._m.bytes_put.inc(len(data))

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self._call("put", key, lambda: self._inner.put_if_match(key, data, etag))
        self._m.bytes_put.inc(len(data))

    def get(self, key: str) -> bytes:
        data = self._call("get", key, lambda: self._inner.get(key))
        self._m.bytes_get.inc(len(data))
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        data = self._call("get", key, lambda: self._inner.get_range(key, start, end))
        self._m.bytes_get.inc(len(data))
        return data

    def head(self, key: str) -> ObjectMeta:
        return self._call("head", key, lambda: self._inner.head(key))

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """The listing, timed from the first item asked for until it is exhausted."""
        t0 = _now()
        ok = False
        try:
            with tracing.span("shale.object_store.list", **{"shale.key": prefix}):
                yield from self._inner.list(prefix)
            ok = True
        except (*_EXPECTED, GeneratorExit):  # an answer, or the caller stopped reading
            ok = True
            raise
        finally:
            if not ok:
                self._m.errors["list"].inc()
            self._m.seconds["list"].record_ns(_now() - t0)

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self._inner.delete(key))

    def close(self) -> None:
        self._inner.close()


def handle_store(
    store: ObjectStore,
    registry: MetricsRegistry | None,
    cache_options: ObjectStoreCacheOptions | None,
    namespace: str,
) -> ObjectStore:
    """``store`` as a database handle uses it (the one place ``Db``, ``DbReader`` and ``Admin``
    layer their store): instrumented into ``registry`` (unless ``None``: metrics off), then
    wrapped in the disk cache when ``cache_options`` enable it.

    A store that is already a handle's (``DbReader.open(..., object_store=db.store)``) is used
    as it is: layering a second disk cache over the same folder, or counting every request
    twice, would be wrong."""
    if isinstance(store, (InstrumentedStore, CachedObjectStore)):
        return store
    if registry is not None:
        store = InstrumentedStore(store, registry)
    return wrap_store(store, cache_options, namespace)
