"""shale_otel: OpenTelemetry for shale.

:func:`instrument` installs a tracer (spans ``shale.object_store.<op>``, ``shale.wal.flush``,
``shale.l0.flush``, ``shale.compaction``, ``shale.gc.run``) and bridges shale's metrics registry
to observable OpenTelemetry instruments. Installed as a plugin it does so with the global
providers (``opentelemetry.trace`` / ``opentelemetry.metrics``), which do nothing until the
application configures the SDK.
"""

from __future__ import annotations

from shale import (
    __version__,  # the project's one version: every distribution has it
    lazy_exports,
)
from shale_otel.instrument import Instrumentation, instrument

# Imported on first use: every shale process loads the plugin, and opentelemetry is slow to
# import.
_LAZY = {
    "MetricsBridge": "shale_otel.bridge",
    "OtelTracer": "shale_otel.tracer",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["Instrumentation", "MetricsBridge", "OtelTracer", "__version__", "instrument"]
