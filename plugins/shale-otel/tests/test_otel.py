"""OpenTelemetry: spans for store requests, flushes and compactions (in-memory span exporter)
and shale's metrics through the observable bridge (in-memory metric reader)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from shale import Db, Settings, tracing
from shale.objstore.instrumented import InstrumentedStore
from shale.objstore.memory import MemoryStore
from shale_otel import MetricsBridge, instrument
from shale_otel.plugin import shale_tracer

FAST = Settings(flush_interval=0.01, compactor_options=None, garbage_collector_options=None)


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, MetricsBridge]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    handle = instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        assert handle.bridge is not None
        yield spans, reader, handle.bridge
    finally:
        handle.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    out: dict[str, list[tuple[dict[str, Any], float]]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    out.setdefault(metric.name, []).append((dict(p.attributes), p.value))
    return out


def _sum(points: dict[str, list[tuple[dict[str, Any], float]]], name: str, **want: Any) -> float:
    return sum(v for a, v in points.get(name, []) if want.items() <= a.items())


def test_spans_for_store_requests_and_flushes(otel: Any) -> None:
    spans, _reader, _bridge = otel
    with Db.open("otel-db", FAST, object_store=MemoryStore()) as db:
        db.put(b"k", b"v")
        db.flush(memtable=True)
    finished = spans.get_finished_spans()
    names = {s.name for s in finished}
    assert {"shale.object_store.put", "shale.object_store.get", "shale.wal.flush"} <= names
    assert "shale.l0.flush" in names
    l0 = next(s for s in finished if s.name == "shale.l0.flush")
    children = [
        s for s in finished if s.parent is not None and s.parent.span_id == l0.context.span_id
    ]
    assert any(s.name == "shale.object_store.put" for s in children)  # the SST upload, nested
    put = next(s for s in finished if s.name == "shale.object_store.put")
    assert "shale.key" in (put.attributes or {})


def test_a_failed_request_is_an_error_span(otel: Any) -> None:
    spans, _reader, _bridge = otel

    class Failing(MemoryStore):
        def delete(self, key: str) -> None:
            raise OSError("no")

    from shale.metrics import MetricsRegistry

    store = InstrumentedStore(Failing(), MetricsRegistry(parent=None))
    with pytest.raises(OSError):
        store.delete("x")
    (span,) = [s for s in spans.get_finished_spans() if s.name == "shale.object_store.delete"]
    assert span.status.status_code == StatusCode.ERROR


def test_compaction_span_and_metrics(otel: Any) -> None:
    compactor = pytest.importorskip("shale_compactor")
    from shale.settings import CompactorOptions

    spans, reader, _bridge = otel
    with Db.open("otel-c", FAST, object_store=MemoryStore()) as db:
        for r in range(4):
            for i in range(40):
                db.put(b"k%03d" % i, b"v%d" % r, durable=False)
            db.flush(memtable=True)
        for i in range(10):
            db.get(b"k%03d" % i)
        c = compactor.Compactor(
            db.store, db.root, FAST, options=CompactorOptions(poll_interval=0.05)
        )
        try:
            (report,) = c.run_once()
        finally:
            c.stop()
        assert report.status == "completed"
        otel[2].refresh()  # instruments for the shale_db_* view of metrics() (else: next round)
        points = _points(reader)
        mine = {"db": "otel-c", "role": "writer"}
        assert _sum(points, "shale_db_request_seconds_count", op="put", **mine) == 160
        assert _sum(points, "shale_db_request_seconds_count", op="get", **mine) == 10
        assert _sum(points, "shale_db_request_seconds_bucket", op="get", le="+Inf", **mine) == 10
        assert _sum(points, "shale_object_store_request_seconds_count", op="put", **mine) >= 5
        assert _sum(points, "shale_compactor_compactions_total", status="completed", **mine) == 1
        assert _sum(points, "shale_compactor_bytes_compacted_total", **mine) == report.bytes_out
        assert _sum(points, "shale_db_l0_sst_count", **mine) == 4  # a gauge (not polled yet)
    assert any(s.name == "shale.compaction" for s in spans.get_finished_spans())


def test_the_plugin_offers_a_tracer_once_the_sdk_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace

    # OpenTelemetry's default provider is a no-op: no tracer (no wasted span per request)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert shale_tracer() is None
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    # as if the application had called trace.set_tracer_provider(provider) (one-shot per process)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    tracer = shale_tracer()
    assert tracer is not None and callable(tracer.span)
    previous = tracing.set_tracer(tracer)
    try:
        with tracing.span("shale.test", key="k"):
            pass
    finally:
        tracing.set_tracer(previous)
        provider.shutdown()
    assert [s.name for s in spans.get_finished_spans()] == ["shale.test"]


def test_new_metrics_are_discovered_at_collection(otel: Any) -> None:
    _spans, reader, _bridge = otel
    with Db.open("otel-late", FAST, object_store=MemoryStore()) as db:
        db.put(b"k", b"v")
        _points(reader)  # finds the shale_db_* names; a helper thread creates them
        for _ in range(100):
            points = _points(reader)
            if _sum(points, "shale_db_write_ops_total", db="otel-late"):
                break
            time.sleep(0.05)
        assert _sum(points, "shale_db_write_ops_total", db="otel-late") == 1
