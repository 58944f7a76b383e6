"""The tracer shale's core calls (:class:`shale.spi.Tracer`), backed by an OpenTelemetry
tracer: each span becomes an OTel span, a current one while the block runs, with the error
recorded when the block raises."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace

__all__ = ["OtelTracer"]

_SCALARS = (str, bool, int, float)


class OtelTracer:
    """A shale tracer over ``tracer_provider`` (default: the global one)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("shale", tracer_provider=tracer_provider)

    def span(self, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
        attrs = {
            k: (v if isinstance(v, _SCALARS) else str(v))
            for k, v in attributes.items()
            if v is not None
        }
        return self._tracer.start_as_current_span(name, attributes=attrs)
