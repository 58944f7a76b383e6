"""Prometheus text exposition of a running database: generate_latest and an HTTP scrape."""

from __future__ import annotations

import itertools
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shale import Db, Settings
from shale.errors import InvalidError
from shale.objstore.memory import MemoryStore
from shale_prometheus import ShaleCollector, register, start_http_server

FAST = Settings(flush_interval=0.01, compactor_options=None, garbage_collector_options=None)


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **want: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if want.items() <= labels.items())


def _work(db: Db) -> None:
    for i in range(40):
        db.put(b"k%03d" % i, b"v" * 10, durable=False)
    db.put(b"last", b"v")
    for i in range(25):
        assert db.get(b"k%03d" % i) == b"v" * 10
    db.flush(memtable=True)


def test_generate_latest_shows_histograms_and_store_requests() -> None:
    with Db.open("prom-db", FAST, object_store=MemoryStore()) as db:
        _work(db)
        registry = CollectorRegistry()
        registry.register(ShaleCollector())
        text = generate_latest(registry).decode()
    s = _samples(text)
    mine = {"db": "prom-db", "role": "writer"}
    assert "# TYPE shale_db_request_seconds histogram" in text
    assert _value(s, "shale_db_request_seconds_count", op="put", **mine) == 41
    assert _value(s, "shale_db_request_seconds_count", op="get", **mine) == 25
    inf = _value(s, "shale_db_request_seconds_bucket", op="put", le="+Inf", **mine)
    assert inf == 41
    buckets = [
        (float(labels["le"]), v)
        for labels, v in s["shale_db_request_seconds_bucket"]
        if labels.get("op") == "get" and labels.get("db") == "prom-db"
    ]
    assert len(buckets) == 29 and all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert 0 < _value(s, "shale_db_request_seconds_sum", op="put", **mine) < 60
    assert _value(s, "shale_object_store_request_seconds_count", op="put", **mine) >= 3
    assert _value(s, "shale_object_store_errors_total", **mine) == 0
    assert _value(s, "shale_l0_flush_seconds_count", **mine) == 1
    assert _value(s, "shale_db_write_ops_total", **mine) == 41
    assert "# TYPE shale_db_l0_sst_count gauge" in text


def test_http_scrape_on_an_ephemeral_port() -> None:
    target = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=target)
    try:
        assert register(target) is register(target)  # registered once
        with Db.open("http-db", FAST, object_store=MemoryStore()) as db:
            _work(db)
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode()
        s = _samples(text)
        assert _value(s, "shale_db_request_seconds_count", op="put", db="http-db") == 41
        assert _value(s, "shale_object_store_request_seconds_count", db="http-db") >= 4
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_bad_arguments() -> None:
    for bad in (-1, 70000, "80", True):
        with pytest.raises(InvalidError):
            start_http_server(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        ShaleCollector(registry="x")  # type: ignore[arg-type]
