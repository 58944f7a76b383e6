"""The plugin: offers an OpenTelemetry tracer through ``shale_tracer`` and bridges the metrics
to the global meter provider when the first database opens (both do nothing until the
application configures the OpenTelemetry SDK)."""

from __future__ import annotations

import threading
from typing import Any

import shale
from shale_otel.bridge import MetricsBridge
from shale_otel.tracer import OtelTracer

_bridge: MetricsBridge | None = None
_lock = threading.Lock()


@shale.hookimpl
def shale_tracer() -> OtelTracer:
    """A tracer over the global tracer provider."""
    return OtelTracer()


@shale.hookimpl
def shale_db_opened(db: Any) -> None:
    """Bridge shale's metrics to the global meter provider, once per process."""
    global _bridge
    with _lock:
        if _bridge is None:
            _bridge = MetricsBridge()
        bridge = _bridge
    bridge.refresh()  # the new handle's metrics
