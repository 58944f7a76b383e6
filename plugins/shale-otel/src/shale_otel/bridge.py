"""shale's metrics as observable OpenTelemetry instruments.

Each shale metric becomes one observable instrument of the same name, read from the registry
when the meter provider collects: counters as observable counters, gauges as observable
gauges, and -- OpenTelemetry has no observable histogram -- each histogram as three
observable counters, ``<name>_count``, ``<name>_sum`` (seconds) and ``<name>_bucket``
(cumulative, with the bucket's upper bound as attribute ``le``). Attributes are the samples'
labels (``db``, ``role``, ``op``, ...). Metrics that appear later (a compactor starting, a new
handle) get their instruments when a collection first sees them (created on a helper thread
once it is over) and report from then on; :meth:`MetricsBridge.refresh` creates them at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from shale.spi import HistogramSample, MetricFamily, MetricsRegistry, catalogue, default_registry

__all__ = ["MetricsBridge"]

_FRESH_S = 0.2  # one registry read serves every instrument of a collection


class MetricsBridge:
    """Observable instruments on ``meter_provider`` (default: the global one) for every
    metric of ``registry`` (default: the process-wide registry and its children)."""

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        registry: MetricsRegistry | None = None,
    ) -> None:
        self._meter = metrics.get_meter("shale", meter_provider=meter_provider)
        self._registry = registry
        self._lock = threading.Lock()  # the cached registry read
        self._create_lock = threading.Lock()
        self._instruments: dict[str, Any] = {}
        self._cache: tuple[float, dict[str, MetricFamily]] = (-math.inf, {})
        # shale's own metrics exist from the start; the rest (the ``shale_db_*`` view of each
        # handle's metrics()) are found by the sentinel's callback at each collection
        self._sync({f.name: f for f in catalogue()})
        self._sentinel = self._meter.create_observable_gauge(
            "shale_registries",
            [self._discover],
            description="live shale metrics registries (database handles) reported",
        )

    def refresh(self) -> None:
        """Create the instruments of every metric the registry has now (the plugin calls it
        when a database opens)."""
        registry = self._registry if self._registry is not None else default_registry()
        self._sync({f.name: f for f in registry.collect()})

    def _discover(self, _options: CallbackOptions) -> Iterable[Observation]:
        fams = self._families()
        if any(name not in self._instruments for name in fams):
            # instruments cannot be created while the provider collects (it holds its lock):
            # a helper thread creates them once this collection is over
            threading.Thread(
                target=self._sync, args=(fams,), name="shale-otel-discover", daemon=True
            ).start()
        registry = self._registry if self._registry is not None else default_registry()
        return [Observation(1 + len(registry.children()))]

    def _families(self) -> dict[str, MetricFamily]:
        with self._lock:
            at, fams = self._cache
            now = time.monotonic()
            if now - at > _FRESH_S:
                registry = self._registry if self._registry is not None else default_registry()
                fams = {f.name: f for f in registry.collect()}
                self._cache = (now, fams)
        return fams

    def _sync(self, fams: dict[str, MetricFamily]) -> None:
        """Create the instruments of metrics seen for the first time."""
        for name, fam in fams.items():
            if name in self._instruments:
                continue
            # never under self._lock: a collection's callbacks take it while the provider
            # holds its own lock, which creating an instrument waits for
            with self._create_lock:
                if name in self._instruments:
                    continue
                self._instruments[name] = self._create(fam)

    def _create(self, fam: MetricFamily) -> Any:
        meter = self._meter
        name, help = fam.name, fam.help
        if fam.type == "counter":
            return meter.create_observable_counter(name, [self._values(name)], description=help)
        if fam.type == "gauge":
            return meter.create_observable_gauge(name, [self._values(name)], description=help)
        return (
            meter.create_observable_counter(
                name + "_count", [self._hist(name, "count")], description=help
            ),
            meter.create_observable_counter(
                name + "_sum", [self._hist(name, "sum")], unit="s", description=help
            ),
            meter.create_observable_counter(
                name + "_bucket", [self._hist(name, "bucket")], description=help
            ),
        )

    def _values(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            fam = self._families().get(name)
            if fam is None:
                return []
            return [
                Observation(s.value, dict(s.labels))
                for s in fam.samples
                if not isinstance(s, HistogramSample)
            ]

        return callback

    def _hist(self, name: str, part: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            fam = self._families().get(name)
            out: list[Observation] = []
            for s in () if fam is None else fam.samples:
                if not isinstance(s, HistogramSample):
                    continue
                attrs = dict(s.labels)
                if part == "count":
                    out.append(Observation(s.count, attrs))
                elif part == "sum":
                    out.append(Observation(s.sum, attrs))
                else:
                    for bound, cumulative in s.buckets:
                        le = "+Inf" if bound == math.inf else repr(bound)
                        out.append(Observation(cumulative, {**attrs, "le": le}))
            return out

        return callback
