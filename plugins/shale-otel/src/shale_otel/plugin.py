"""The plugin: offers an OpenTelemetry tracer through ``shale_tracer`` and bridges the metrics
to the global meter provider when the first database opens (both do nothing until the
application configures the OpenTelemetry SDK)."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import shale

if TYPE_CHECKING:  # imported on first use: every shale process loads the plugin, and
    # opentelemetry is slow to import
    from shale_otel.bridge import MetricsBridge
    from shale_otel.tracer import OtelTracer

_bridge: MetricsBridge | None = None
_lock = threading.Lock()


@shale.hookimpl
def shale_tracer() -> OtelTracer | None:
    """A tracer over the global tracer provider -- only once the application has configured
    one (an SDK ``TracerProvider``): with OpenTelemetry's default no-op provider every span
    would be a wasted object on the hot paths. An application that configures the SDK later
    calls :func:`shale_otel.instrument`."""
    if not _provider_configured():
        return None
    from shale_otel.tracer import OtelTracer

    return OtelTracer()


def _provider_configured() -> bool:
    # An application configures a provider through opentelemetry.trace (imported then) or
    # names one in OTEL_PYTHON_TRACER_PROVIDER (which get_tracer_provider loads); with
    # neither, the provider is the default proxy and opentelemetry need not be imported.
    if "opentelemetry.trace" not in sys.modules and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ:
        return False
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


@shale.hookimpl
def shale_db_opened(db: Any) -> None:
    """Bridge shale's metrics to the global meter provider, once per process."""
    global _bridge
    with _lock:
        if _bridge is None:
            from shale_otel.bridge import MetricsBridge

            _bridge = MetricsBridge()
        bridge = _bridge
    bridge.refresh()  # the new handle's metrics
