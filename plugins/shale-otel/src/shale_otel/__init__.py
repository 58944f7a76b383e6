"""shale_otel: OpenTelemetry for shale.

:func:`instrument` installs a tracer (spans ``shale.object_store.<op>``, ``shale.wal.flush``,
``shale.l0.flush``, ``shale.compaction``, ``shale.gc.run``) and bridges shale's metrics registry
to observable OpenTelemetry instruments. Installed as a plugin it does so with the global
providers (``opentelemetry.trace`` / ``opentelemetry.metrics``), which do nothing until the
application configures the SDK.
"""

from shale import __version__  # the project's one version: every distribution has it
from shale_otel.bridge import MetricsBridge
from shale_otel.instrument import Instrumentation, instrument
from shale_otel.tracer import OtelTracer

__all__ = ["Instrumentation", "MetricsBridge", "OtelTracer", "__version__", "instrument"]
