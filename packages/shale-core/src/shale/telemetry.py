"""shale's metric catalogue: the names every package records under, and the bundles of
instruments each component resolves once (so its hot path only calls ``record_ns``/``inc``).

The names (see ``docs/metrics.md``), close to SlateDB's (``slatedb.db.request_count{op}``,
``slatedb.object_store.request_duration_seconds``, ``slatedb.gc.deleted_count{resource}``,
``slatedb.compactor.bytes_compacted``) in Prometheus form:

==========================================  =========  ======================================
name                                        type       labels
==========================================  =========  ======================================
``shale_db_request_seconds``                histogram  ``op``: put, delete, merge, write,
                                                       get, scan
``shale_wal_flush_seconds``                 histogram  --
``shale_l0_flush_seconds``                  histogram  --
``shale_object_store_request_seconds``      histogram  ``op``: get, put, list, delete, head
``shale_object_store_errors_total``         counter    ``op``
``shale_object_store_bytes_total``          counter    ``op``: get, put
``shale_compactor_compactions_total``       counter    ``status``: completed, failed
``shale_compactor_compaction_seconds``      histogram  --
``shale_compactor_bytes_compacted_total``   counter    --
``shale_compactor_bytes_read_total``        counter    --
``shale_gc_runs_total``                     counter    --
``shale_gc_run_seconds``                    histogram  --
``shale_gc_deleted_total``                  counter    ``resource``: wal, compacted,
                                                       manifest, compactions
``shale_gc_deleted_bytes_total``            counter    --
``shale_db_<name>[_total]``                 gauge /    the ``db.metrics()`` dict (counters
                                            counter    get ``_total``)
==========================================  =========  ======================================

Every database handle's registry also carries the constant labels ``db`` (its URL) and
``role`` (``writer``, ``reader``, ``admin``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shale.errors import InvalidError
from shale.metrics import Histogram, MetricFamily, MetricsRegistry, Sample

__all__ = [
    "DB_OPS",
    "LEGACY_GAUGES",
    "STORE_OPS",
    "CompactorMetrics",
    "EngineMetrics",
    "GcMetrics",
    "StoreMetrics",
    "catalogue",
    "handle_registry",
    "legacy_collector",
    "registry_for",
]

#: ``Db.put`` and ``get`` time one call in this many (counts stay exact).
SAMPLE_EVERY = 16
DB_OPS = ("put", "delete", "merge", "write", "get", "scan")
STORE_OPS = ("get", "put", "list", "delete", "head")
GC_RESOURCES = ("wal", "compacted", "manifest", "compactions")

#: Keys of ``db.metrics()`` that are gauges (exported as ``shale_db_<key>``); every other key
#: is a counter (exported as ``shale_db_<key>_total``).
LEGACY_GAUGES = frozenset(
    {
        "last_seq",
        "durable_seq",
        "immutable_memtables",
        "memtable_bytes",
        "wal_buffer_estimated_bytes",
        "l0_sst_count",
        "sorted_run_count",
        "segment_count",
        "manifest_id",
        "l0_flush_blocked_ms",
        "meta_cache_bytes",
        "meta_cache_entries",
        "cache_bytes",
        "cache_entries",
        "disk_cache_bytes",
        "disk_cache_files",
        "wal_replayed_rows",
        "reader_replayed_tables",
        "reader_replayed_bytes",
        "reader_last_wal_id",
    }
)


def handle_registry(metrics: Any, url: str, role: str) -> MetricsRegistry | None:
    """The registry a database handle records into: a new child of the default registry
    labelled ``db=url, role=role`` for ``None``/``True``, the given registry, or ``None`` (no
    metrics, no store instrumentation) for ``False``.

    :raises InvalidError: ``metrics`` is none of these.
    """
    if metrics is None or metrics is True:
        return MetricsRegistry({"db": url, "role": role})
    if metrics is False:
        return None
    if isinstance(metrics, MetricsRegistry):
        return metrics
    raise InvalidError(
        "metrics must be a shale.metrics.MetricsRegistry, True or False",
        type=type(metrics).__name__,
    )


def registry_for(store: Any) -> MetricsRegistry:
    """The registry of the handle that opened ``store`` (found on an instrumented store,
    through wrappers' ``inner``), else the process-wide default registry: where a compactor or
    GC working on that store records."""
    from shale.metrics import default_registry

    for _ in range(8):
        found = getattr(store, "metrics_registry", None)
        if isinstance(found, MetricsRegistry):
            return found
        store = getattr(store, "inner", None)
        if store is None:
            break
    return default_registry()


def legacy_collector(
    read: Callable[[], Mapping[str, int] | None],
) -> Callable[[], list[MetricFamily]]:
    """A registry collector exporting the flat ``metrics()`` dict ``read()`` returns (``None``:
    the handle is gone) as ``shale_db_*`` gauges and counters."""

    def collect() -> list[MetricFamily]:
        flat = read()
        if not flat:
            return []
        out = []
        for key, value in sorted(flat.items()):
            if key in LEGACY_GAUGES:
                out.append(
                    MetricFamily(
                        f"shale_db_{key}", "gauge", f"db.metrics()[{key!r}]", (Sample((), value),)
                    )
                )
            else:
                out.append(
                    MetricFamily(
                        f"shale_db_{key}_total",
                        "counter",
                        f"db.metrics()[{key!r}]",
                        (Sample((), value),),
                    )
                )
        return out

    return collect


def catalogue() -> list[MetricFamily]:
    """Every metric shale's components register (empty samples aside from label sets made up
    front), without the ``shale_db_*`` view of ``metrics()``: what an exporter that must
    declare instruments up front (OpenTelemetry) creates first."""
    scratch = MetricsRegistry(parent=None)
    EngineMetrics(scratch)
    StoreMetrics(scratch)
    CompactorMetrics(scratch)
    GcMetrics(scratch)
    return scratch.collect()


class EngineMetrics:
    """What a database handle records: request latencies by op, WAL and L0 flush latencies."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self.registry = registry
        fam = registry.histogram_family(
            "shale_db_request_seconds", "latency of database calls, by op", ("op",)
        )
        self.requests: dict[str, Histogram] = {op: fam.labels(op=op) for op in DB_OPS}
        # the hot calls: counted exactly, one in SAMPLE_EVERY timed (docs/metrics.md)
        for op in ("put", "get"):
            self.requests[op].sampled(SAMPLE_EVERY)
        self.put = self.requests["put"]
        self.get = self.requests["get"]
        self.scan = self.requests["scan"]
        self.wal_flush = registry.histogram(
            "shale_wal_flush_seconds", "latency of one WAL SST upload (retries included)"
        )
        self.l0_flush = registry.histogram(
            "shale_l0_flush_seconds", "latency of one memtable flush to L0 (SSTs and manifest)"
        )


class StoreMetrics:
    """What an instrumented object store records, by op."""

    def __init__(self, registry: MetricsRegistry) -> None:
        seconds = registry.histogram_family(
            "shale_object_store_request_seconds", "latency of object-store requests, by op", ("op",)
        )
        errors = registry.counter_family(
            "shale_object_store_errors_total",
            "object-store requests that failed (not-found and already-exists answers excluded)",
            ("op",),
        )
        nbytes = registry.counter_family(
            "shale_object_store_bytes_total", "bytes read (get) and written (put)", ("op",)
        )
        self.seconds = {op: seconds.labels(op=op) for op in STORE_OPS}
        self.errors = {op: errors.labels(op=op) for op in STORE_OPS}
        self.bytes_get = nbytes.labels(op="get")
        self.bytes_put = nbytes.labels(op="put")


class CompactorMetrics:
    """What a compactor records per finished compaction."""

    def __init__(self, registry: MetricsRegistry) -> None:
        jobs = registry.counter_family(
            "shale_compactor_compactions_total", "finished compactions, by status", ("status",)
        )
        self.completed = jobs.labels(status="completed")
        self.failed = jobs.labels(status="failed")
        self.seconds = registry.histogram(
            "shale_compactor_compaction_seconds", "duration of completed compactions"
        )
        self.bytes_compacted = registry.counter(
            "shale_compactor_bytes_compacted_total", "bytes of the SSTs compactions wrote"
        )
        self.bytes_read = registry.counter(
            "shale_compactor_bytes_read_total", "estimated source bytes of completed compactions"
        )

    def finished(self, status: str, duration_s: float, bytes_in: int, bytes_out: int) -> None:
        """Record one finished compaction (``status``: ``"completed"`` or ``"failed"``)."""
        if status == "completed":
            self.completed.inc()
            self.seconds.observe(max(duration_s, 0.0))
            self.bytes_compacted.inc(bytes_out)
            self.bytes_read.inc(bytes_in)
        else:
            self.failed.inc()


class GcMetrics:
    """What a garbage collector records per round."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self.runs = registry.counter("shale_gc_runs_total", "garbage-collection rounds")
        self.seconds = registry.histogram("shale_gc_run_seconds", "duration of GC rounds")
        self.deleted = registry.counter_family(
            "shale_gc_deleted_total", "objects deleted by the GC, by resource", ("resource",)
        )
        for resource in GC_RESOURCES:
            self.deleted.labels(resource=resource)
        self.deleted_bytes = registry.counter(
            "shale_gc_deleted_bytes_total", "bytes of the objects the GC deleted"
        )

    def round(self, duration_s: float, deleted: Mapping[str, tuple[int, int]]) -> None:
        """Record one round: ``deleted`` maps a resource to (objects, bytes)."""
        self.runs.inc()
        self.seconds.observe(max(duration_s, 0.0))
        for resource, (count, nbytes) in deleted.items():
            self.deleted.labels(resource=resource).inc(count)
            self.deleted_bytes.inc(nbytes)
