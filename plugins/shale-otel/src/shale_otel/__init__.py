"""shale_otel: OpenTelemetry for shale.

:func:`instrument` installs a tracer (spans ``shale.object_store.<op>``, ``shale.wal.flush``,
``shale.l0.flush``, ``shale.compaction``, ``shale.gc.run``) and bridges shale's metrics registry
to observable OpenTelemetry instruments. Installed as a plugin it does so with the global
providers (``opentelemetry.trace`` / ``opentelemetry.metrics``), which do nothing until the
application configures the SDK.
"""

from __future__ import annotations

from typing import Any

from shale import __version__  # the project's one version: every distribution has it
from shale_otel.instrument import Instrumentation, instrument

# Imported on first use: every shale process loads the plugin, and opentelemetry is slow to
# import.
_LAZY = {
    "MetricsBridge": "shale_otel.bridge",
    "OtelTracer": "shale_otel.tracer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module '{__name__}' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["Instrumentation", "MetricsBridge", "OtelTracer", "__version__", "instrument"]
