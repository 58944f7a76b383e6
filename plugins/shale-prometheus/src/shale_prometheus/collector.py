"""The ``prometheus_client`` collector over a shale metrics registry.

Counters are published with the ``_total`` suffix, gauges as they are, histograms as
``_bucket{le=...}`` (cumulative, seconds, ending with ``+Inf``), ``_count`` and ``_sum``. Every
sample keeps its labels, including each handle's constant ``db`` and ``role``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from shale.spi import HistogramSample, InvalidError, MetricsRegistry, default_registry

__all__ = ["ShaleCollector", "register", "start_http_server"]


def _go_float(bound: float) -> str:
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


class ShaleCollector:
    """Publishes every metric of ``registry`` (default: the process-wide registry and all its
    children, i.e. every open database handle) at each scrape."""

    def __init__(self, registry: MetricsRegistry | None = None) -> None:
        if registry is not None and not isinstance(registry, MetricsRegistry):
            raise InvalidError(
                "registry must be a shale MetricsRegistry", type=type(registry).__name__
            )
        self._registry = registry

    def describe(self) -> list[Metric]:
        # names change as handles open and close: no up-front description (and no collect at
        # registration time)
        return []

    def collect(self) -> Iterator[Metric]:
        registry = self._registry if self._registry is not None else default_registry()
        for fam in registry.collect():
            if fam.type == "counter":
                base = fam.name[: -len("_total")] if fam.name.endswith("_total") else fam.name
                metric = Metric(base, fam.help, "counter")
                for s in fam.samples:
                    if not isinstance(s, HistogramSample):
                        metric.add_sample(base + "_total", dict(s.labels), s.value)
            elif fam.type == "gauge":
                metric = Metric(fam.name, fam.help, "gauge")
                for s in fam.samples:
                    if not isinstance(s, HistogramSample):
                        metric.add_sample(fam.name, dict(s.labels), s.value)
            else:
                metric = Metric(fam.name, fam.help, "histogram")
                for s in fam.samples:
                    if not isinstance(s, HistogramSample):
                        continue
                    labels = dict(s.labels)
                    for bound, cumulative in s.buckets:
                        metric.add_sample(
                            fam.name + "_bucket",
                            {**labels, "le": _go_float(bound)},
                            cumulative,
                        )
                    metric.add_sample(fam.name + "_count", labels, s.count)
                    metric.add_sample(fam.name + "_sum", labels, s.sum)
            yield metric


_registered: dict[int, ShaleCollector] = {}
_lock = threading.Lock()


def register(registry: CollectorRegistry | None = None) -> ShaleCollector:
    """Add a :class:`ShaleCollector` over the process-wide shale registry to ``registry``
    (default ``prometheus_client.REGISTRY``), once: later calls return the same collector."""
    target = REGISTRY if registry is None else registry
    with _lock:
        found = _registered.get(id(target))
        if found is None:
            found = ShaleCollector()
            target.register(found)
            _registered[id(target)] = found
        return found


def start_http_server(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None
) -> tuple[Any, threading.Thread]:
    """Register the collector (:func:`register`) and serve ``registry`` on
    ``http://addr:port/metrics`` from a daemon thread (``port=0``: an ephemeral port, read it
    from ``server.server_port``). Returns ``(server, thread)``; ``server.shutdown()`` stops it.

    :raises InvalidError: ``port`` is not an int in 0..65535.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidError("port must be an int in 0..65535", port=port)
    target = REGISTRY if registry is None else registry
    register(target)
    server, thread = _start_http_server(port, addr=addr, registry=target)
    return server, thread
