"""Trace spans around store requests, flushes and compactions: a no-op until a tracer is set.

Core code wraps its slow operations in ``with tracing.span("shale.wal.flush", bytes=n):``.
While no tracer is registered, :func:`span` returns one shared do-nothing context manager (a
global read and a call). A plugin registers a tracer through the ``shale_tracer`` hook (the
plugin host installs the first one it finds) or :func:`set_tracer` directly; ``shale-otel``
bridges to OpenTelemetry.

Span names: ``shale.object_store.<op>`` (``op``: get, put, list, delete, head),
``shale.wal.flush``, ``shale.l0.flush``, ``shale.compaction``, ``shale.gc.run``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import Any, Protocol, runtime_checkable

from shale.errors import InvalidError

__all__ = ["Tracer", "get_tracer", "set_tracer", "span"]


@runtime_checkable
class Tracer(Protocol):
    """What a tracer implements: open a span around a block (ended when the block exits; an
    exception leaving the block is the span's error)."""

    def span(self, name: str, attributes: Mapping[str, Any]) -> ContextManager[Any]: ...


_NULL: ContextManager[None] = contextlib.nullcontext()
_tracer: Tracer | None = None


def set_tracer(tracer: Tracer | None) -> Tracer | None:
    """Install ``tracer`` for the whole process (``None``: tracing off); returns the previous
    one.

    :raises InvalidError: ``tracer`` has no ``span(name, attributes)`` method.
    """
    global _tracer
    if tracer is not None and not callable(getattr(tracer, "span", None)):
        raise InvalidError(
            "a tracer needs a span(name, attributes) method", type=type(tracer).__name__
        )
    previous, _tracer = _tracer, tracer
    return previous


def get_tracer() -> Tracer | None:
    """The installed tracer, or ``None``."""
    return _tracer


def span(name: str, **attributes: Any) -> ContextManager[Any]:
    """A span named ``name`` around the ``with`` block (nothing at all without a tracer)."""
    tracer = _tracer
    if tracer is None:
        return _NULL
    return tracer.span(name, attributes)
