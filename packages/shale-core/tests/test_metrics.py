"""The metrics registry (counters, gauges, histograms, snapshots), the instrumented store, the
handles' metrics and the tracing hook (docs/metrics.md)."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from shale import Admin, Db, DbReader, Settings, tracing
from shale.errors import InvalidError
from shale.logs import logger_name
from shale.metrics import (
    BUCKET_BOUNDS_NS,
    FOLD_AT,
    Histogram,
    MetricsRegistry,
    bucket_index,
    default_registry,
)
from shale.objstore import ObjectNotFound
from shale.objstore.instrumented import InstrumentedStore
from shale.objstore.memory import MemoryStore
from shale.telemetry import registry_for

FAST = Settings(flush_interval=0.01, compactor_options=None, garbage_collector_options=None)


# -- the registry ---------------------------------------------------------------------------------


def _hammer(threads: int, fn: Any) -> None:
    start = threading.Barrier(threads)

    def run() -> None:
        start.wait()
        fn()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_counters_are_thread_safe() -> None:
    r = MetricsRegistry(parent=None)
    c = r.counter("x_total", "help")
    _hammer(8, lambda: [c.inc() for _ in range(20_000)])
    assert c.value == 160_000


def test_histograms_lose_no_record_across_threads() -> None:
    h = Histogram()
    _hammer(8, lambda: [h.record_ns(i) for i in range(1, 10_001)])
    s = h.sample()
    assert s.count == 80_000 == s.buckets[-1][1]
    assert s.sum == pytest.approx(8 * sum(range(1, 10_001)) / 1e9)


def test_bucket_math() -> None:
    # the smallest bound >= the duration; bounds are powers of two from 2**10 ns
    assert BUCKET_BOUNDS_NS[0] == 1024 and BUCKET_BOUNDS_NS[-1] == 2**37
    assert bucket_index(0) == bucket_index(1) == bucket_index(1024) == 0
    assert bucket_index(1025) == bucket_index(2048) == 1
    assert bucket_index(2**37) == len(BUCKET_BOUNDS_NS) - 1
    assert bucket_index(2**37 + 1) == len(BUCKET_BOUNDS_NS)  # +Inf
    h = Histogram()
    values = [0, 1024, 1025, 2048, 3000, 2**37, 2**40]
    for v in values:
        h.record_ns(v)
    s = h.sample()
    counts = [s.buckets[0][1]] + [
        b[1] - a[1] for a, b in zip(s.buckets, s.buckets[1:], strict=False)
    ]
    expected = [0] * (len(BUCKET_BOUNDS_NS) + 1)
    for v in values:
        expected[bucket_index(v)] += 1
    assert counts == expected
    assert s.buckets[-1][0] == math.inf and s.count == len(values)
    # le is inclusive: exactly 1024 ns is in the first bucket
    assert s.buckets[0] == (1.024e-06, 2)
    assert s.quantile(0.5) == BUCKET_BOUNDS_NS[1] / 1e9
    with pytest.raises(InvalidError):
        s.quantile(1.5)
    with pytest.raises(InvalidError):
        h.observe(-1.0)


def test_folding_keeps_counts_exact() -> None:
    h = Histogram()
    for _ in range(FOLD_AT * 3 + 7):
        h.observe(0.001)
    assert h.sample().count == FOLD_AT * 3 + 7


def test_snapshots_are_consistent_while_recording() -> None:
    r = MetricsRegistry(parent=None)
    h = r.histogram("lat_seconds", "h")
    c = r.counter("n_total", "c")
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            h.record_ns(5000)
            c.inc()

    ts = [threading.Thread(target=record) for _ in range(3)]
    for t in ts:
        t.start()
    try:
        last_count, last_c = 0, 0.0
        for _ in range(200):
            snap = r.snapshot()
            hs = snap.histogram("lat_seconds")
            assert hs.count == hs.buckets[-1][1]
            assert all(a[1] <= b[1] for a, b in zip(hs.buckets, hs.buckets[1:], strict=False))
            assert hs.count >= last_count and snap.value("n_total") >= last_c
            last_count, last_c = hs.count, snap.value("n_total")
    finally:
        stop.set()
        for t in ts:
            t.join()


def test_registration_rules() -> None:
    r = MetricsRegistry({"db": "x"}, parent=None)
    assert r.counter("a_total", "a") is r.counter("a_total", "a")
    with pytest.raises(InvalidError):
        r.gauge("a_total", "a")
    for bad in ("", "1x", "a-b", None):
        with pytest.raises(InvalidError):
            r.counter(bad, "bad")  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        MetricsRegistry({"bad-label": "x"}, parent=None)
    fam = r.counter_family("req_total", "r", ("op",))
    with pytest.raises(InvalidError):
        fam.labels(kind="get")
    with pytest.raises(InvalidError):
        r.counter("c_total", "c").inc(-1)
    with pytest.raises(InvalidError):
        r.add_collector(42)  # type: ignore[arg-type]
    fam.labels(op="get").inc(2)
    g = r.gauge("g", "g", lambda: 7)
    assert g.value == 7
    snap = r.snapshot()
    assert snap.value("req_total", op="get") == 2 and snap.value("g") == 7
    assert dict(snap.families["req_total"].samples[0].labels) == {"db": "x", "op": "get"}
    assert snap.to_dict()["req_total"] == {
        "type": "counter",
        "help": "r",
        "samples": [{"labels": {"db": "x", "op": "get"}, "value": 2}],
    }


def test_children_are_reported_and_detach() -> None:
    parent = MetricsRegistry(parent=None)
    a = MetricsRegistry({"db": "a"}, parent=parent)
    b = MetricsRegistry({"db": "a"}, parent=parent)  # the same labels: added up
    a.counter("n_total", "n").inc(2)
    b.counter("n_total", "n").inc(3)
    (fam,) = parent.collect()
    assert [s.value for s in fam.samples] == [5]  # type: ignore[union-attr]
    b.detach()
    assert parent.snapshot(children=True).value("n_total") == 2
    assert MetricsRegistry() in default_registry().children()


# -- the handles ----------------------------------------------------------------------------------


def test_db_records_calls_flushes_and_store_requests() -> None:
    store = MemoryStore()
    with Db.open("db", FAST, object_store=store) as db:
        flat_keys = set(db.metrics())
        for i in range(50):
            db.put(b"k%03d" % i, b"v", durable=False)
        db.delete(b"k000")
        db.put(b"durable", b"v")
        for i in range(30):
            db.get(b"k%03d" % i)
        assert len(list(db.scan())) == 50
        db.flush(memtable=True)
        snap = db.metrics_snapshot()
        assert isinstance(db.metrics(), dict) and flat_keys <= set(db.metrics())  # as before
        assert snap.value("shale_db_request_seconds", op="put") == 51
        assert snap.value("shale_db_request_seconds", op="delete") == 1
        assert snap.value("shale_db_request_seconds", op="get") == 30
        assert snap.value("shale_db_request_seconds", op="scan") == 1
        put = snap.histogram("shale_db_request_seconds", op="put")
        assert 0 < put.sum < 60 and put.count == put.buckets[-1][1]
        assert snap.value("shale_wal_flush_seconds") >= 1
        assert snap.value("shale_l0_flush_seconds") == 1
        assert snap.value("shale_object_store_request_seconds", op="put") >= 3
        assert snap.value("shale_object_store_bytes_total", op="put") > 0
        assert snap.value("shale_object_store_errors_total") == 0
        assert snap.value("shale_db_write_ops_total") == 52  # the flat counters, exported
        assert snap.value("shale_db_l0_sst_count") == 1
        labels = dict(snap.families["shale_wal_flush_seconds"].samples[0].labels)
        assert labels == {"db": "db", "role": "writer"}
        assert db.metrics_registry in default_registry().children()
        assert registry_for(db.store) is db.metrics_registry
    assert db.metrics_registry not in default_registry().children()  # closed: not exported


def test_reader_and_admin_have_their_registries() -> None:
    store = MemoryStore()
    with Db.open("db", FAST, object_store=store) as db:
        db.put(b"k", b"v")
        db.flush(memtable=True)
    with DbReader.open("db", FAST, object_store=store) as reader:
        assert reader.get(b"k") == b"v"
        snap = reader.metrics_snapshot()
        assert snap.value("shale_db_request_seconds", op="get", role="reader") == 1
        assert snap.value("shale_object_store_request_seconds", op="get") >= 1
        assert snap.value("shale_db_reader_polls_total") >= 0
    admin = Admin("db", object_store=store)
    assert admin.read_manifest() is not None
    assert isinstance(admin.store, InstrumentedStore)
    # a handle's store given to another handle is used as it is (no second layer)
    with DbReader.open("db", FAST, object_store=admin.store) as again:
        assert again._parts.store is admin.store
    snap = admin.metrics_registry.snapshot()  # type: ignore[union-attr]
    assert snap.value("shale_object_store_request_seconds", role="admin") >= 1
    admin.close()


def test_metrics_off_and_bad_arguments() -> None:
    store = MemoryStore()
    with Db.open("db", FAST, object_store=store, metrics=False) as db:
        db.put(b"k", b"v")
        assert db.store is store and db.metrics_registry is None
        snap = db.metrics_snapshot()
        assert (
            "shale_db_request_seconds" not in snap and snap.value("shale_db_write_ops_total") == 1
        )
    mine = MetricsRegistry(parent=None)
    with Db.open("db", FAST, object_store=store, metrics=mine) as db:
        db.put(b"k", b"v")
    assert mine.snapshot().value("shale_db_request_seconds", op="put") == 1
    for bad in ("yes", 1, object()):
        with pytest.raises(InvalidError):
            Db.open("db", FAST, object_store=store, metrics=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidError):
            Admin("db", object_store=store, metrics=bad)  # type: ignore[arg-type]


def test_store_errors_are_counted() -> None:
    class Failing(MemoryStore):
        def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
            raise OSError("disk on fire")

    r = MetricsRegistry(parent=None)
    store = InstrumentedStore(Failing(), r)
    with pytest.raises(OSError):
        store.put("a", b"x")
    with pytest.raises(ObjectNotFound):
        store.get("missing")  # not found: an answer, not an error
    assert list(store.list("")) == []
    snap = r.snapshot()
    assert snap.value("shale_object_store_errors_total", op="put") == 1
    assert snap.value("shale_object_store_errors_total", op="get") == 0
    assert snap.value("shale_object_store_request_seconds", op="list") == 1


# -- tracing --------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.spans: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
        with self.lock:
            self.spans.append((name, dict(attributes)))
        yield


def test_spans_reach_a_registered_tracer() -> None:
    rec = Recorder()
    previous = tracing.set_tracer(rec)
    try:
        with Db.open("db", FAST, object_store=MemoryStore()) as db:
            db.put(b"k", b"v")
            db.flush(memtable=True)
    finally:
        tracing.set_tracer(previous)
    names = {n for n, _ in rec.spans}
    assert {"shale.object_store.put", "shale.wal.flush", "shale.l0.flush"} <= names
    assert any(a.get("shale.key", "").endswith(".manifest") for _, a in rec.spans)
    with pytest.raises(InvalidError):
        tracing.set_tracer(object())  # type: ignore[arg-type]
    previous = tracing.set_tracer(None)  # (an installed exporter plugin may have set one)
    try:
        assert tracing.span("x").__enter__() is None  # no tracer: a no-op
    finally:
        tracing.set_tracer(previous)


def test_logger_tree_names() -> None:
    assert logger_name("shale_compactor.executor") == "shale.compactor.executor"
    assert logger_name("shale_gc.collector") == "shale.gc.collector"
    assert logger_name("shale_minio.store") == "shale.minio.store"
    assert logger_name("shale.engine.db_inner") == "shale.engine.db_inner"


def test_sampled_histograms_scale_to_the_exact_count() -> None:
    h = Histogram().sampled(4)
    assert h.calls is not None
    for _ in range(100):
        if not next(h.calls) & (h.every - 1):  # what Db.put does: time one call in `every`
            h.record_ns(5000)
    s = h.sample()
    assert s.count == 100 == s.buckets[-1][1]
    assert s.buckets[2][1] == 0 and s.buckets[3][1] == 100  # 4096 < 5000 <= 8192 ns (x4)
    assert s.sum == pytest.approx(100 * 5e-6)
    for bad in (0, 3, -4, True, 2.0):
        with pytest.raises(InvalidError):
            Histogram().sampled(bad)  # type: ignore[arg-type]
