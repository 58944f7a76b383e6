"""Turning OpenTelemetry on for shale: :func:`instrument`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from shale.spi import MetricsRegistry, Tracer, get_tracer, set_tracer

if TYPE_CHECKING:  # imported by instrument(): opentelemetry is slow to import
    from shale_otel.bridge import MetricsBridge
    from shale_otel.tracer import OtelTracer

__all__ = ["Instrumentation", "instrument"]


@dataclasses.dataclass
class Instrumentation:
    """What :func:`instrument` installed; :meth:`uninstrument` puts the previous tracer back
    (the observable instruments stay with their meter provider)."""

    tracer: OtelTracer | None
    bridge: MetricsBridge | None
    previous_tracer: Tracer | None

    def uninstrument(self) -> None:
        if self.tracer is not None and get_tracer() is self.tracer:
            set_tracer(self.previous_tracer)


def instrument(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    registry: MetricsRegistry | None = None,
    traces: bool = True,
    metrics: bool = True,
) -> Instrumentation:
    """Send shale's spans to ``tracer_provider`` and its metrics to ``meter_provider`` (each
    default: OpenTelemetry's global provider).

    :param registry: the shale registry to bridge (default: the process-wide one, which
        reports every open handle).
    :param traces: and ``metrics``: turn either part off.
    """
    from shale_otel.bridge import MetricsBridge
    from shale_otel.tracer import OtelTracer

    tracer = OtelTracer(tracer_provider) if traces else None
    previous = set_tracer(tracer) if tracer is not None else get_tracer()
    bridge = MetricsBridge(meter_provider, registry) if metrics else None
    return Instrumentation(tracer, bridge, previous)
