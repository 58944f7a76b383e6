"""The declared surface of shale-core for extension packages (compactor, GC, stores, plugins).

An extension package imports core only through ``shale`` (the user API), this module and, in
its test kits, ``shale.testing``; an import-linter contract (``extensions-use-the-spi`` in the
root ``pyproject.toml``) forbids every other ``shale.*`` module. (The ``cli`` modules of the
compactor and the GC are subcommands of the ``shale`` tool and may also import ``shale.cli``.)
Everything core may move inside itself without breaking an extension, as long as this list
keeps its names.

What is here, by layer:

- base: errors, clocks, ids, rows, settings, the plugin environment variables, the logger
  tree, metrics (the registry, the compactor's and GC's instruments) and trace spans;
- format: the manifest and ``.compactions`` records, SST reading and writing, merging;
- storage: the object-store protocol and its errors, the one retry policy and its wrapper;
- metadata: the manifest store, the ``.compactions`` store (both the versioned-object protocol
  of :mod:`shale.meta.versioned`), segment trees, the SST locator;
- engine: the component checks an extension reuses to validate what it is given;
- plugins: the hook markers and the plugin host.
"""

from __future__ import annotations

from shale import hookimpl, hookspec
from shale.clock import Clock, SystemClock
from shale.engine.components import (
    check_codec,
    check_filter_policies,
    check_merge_operator,
    check_timeout,
    check_transformer,
)
from shale.env import plugin_var
from shale.errors import (
    ClosedError,
    CloseReason,
    DataError,
    InternalError,
    InvalidError,
    ShaleError,
    UnavailableError,
)
from shale.fbs.compactions import (
    SPEC_DRAIN_SEGMENT,
    SPEC_TIERED,
    STATUS_COMPACTED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    STATUS_SUBMITTED,
    Compaction,
    Compactions,
)
from shale.fbs.manifest import (
    BOUND_INCLUDED,
    BytesRange,
    Checkpoint,
    CompactedSst,
    ExternalDb,
    Manifest,
    SortedRun,
    SstView,
)
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import (
    Ulid,
    compacted_path,
    dir_path,
    format_id,
    parse_compacted,
    parse_numbered,
)
from shale.logs import get_logger, logger_name
from shale.merge import MergeIterator
from shale.merge_operators import MergeOperator, merge_all
from shale.meta import segments
from shale.meta.compactions_store import (
    CompactionsStore,
    FenceableCompactions,
    StoredCompactions,
)
from shale.meta.consumers import ConsumerCursor, list_cursors
from shale.meta.detach import DetachResult, detach
from shale.meta.locator import SstLocator, prune_external_ssts
from shale.meta.manifest_store import (
    FenceableManifest,
    ManifestStore,
    Mutation,
    StoredManifest,
    add_checkpoint,
    remove_expired_checkpoints,
)
from shale.meta.versioned import DEFAULT_UPDATE_TIMEOUT_S
from shale.metrics import (
    HistogramSample,
    MetricFamily,
    MetricsRegistry,
    Sample,
    default_registry,
)
from shale.objstore.instrumented import streams
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PermanentStoreError,
    TransientStoreError,
    check_range,
    object_bytes,
    plausible_prefix,
    validate_key,
)
from shale.objstore.retrying import RetryingStore, RetryPolicy
from shale.plugins import PluginHost, call_observers, get_host, open_store
from shale.row import KIND_NAMES, MERGE, TOMBSTONE, VALUE, Row
from shale.settings import (
    CompactionWorkerOptions,
    CompactorOptions,
    GarbageCollectorOptions,
    GcDirectoryOptions,
    Settings,
    parse_duration,
)
from shale.sst import SsTable, SstBuilder
from shale.sst.compact import RUN_DONE as KERNEL_DONE
from shale.sst.compact import RUN_MORE as KERNEL_MORE
from shale.sst.compact import RUN_SPLIT as KERNEL_SPLIT
from shale.sst.compact import Kernel as CompactionKernel
from shale.telemetry import CompactorMetrics, GcMetrics, catalogue, registry_for
from shale.tracing import Tracer, get_tracer, set_tracer
from shale.tracing import span as trace_span

__all__ = [
    # base
    "CompactorMetrics",
    "GcMetrics",
    "HistogramSample",
    "MetricFamily",
    "MetricsRegistry",
    "Sample",
    "Tracer",
    "catalogue",
    "get_tracer",
    "set_tracer",
    "default_registry",
    "get_logger",
    "logger_name",
    "registry_for",
    "trace_span",
    "CloseReason",
    "ClosedError",
    "Clock",
    "CompactionWorkerOptions",
    "CompactorOptions",
    "DataError",
    "GarbageCollectorOptions",
    "GcDirectoryOptions",
    "InternalError",
    "InvalidError",
    "KIND_NAMES",
    "MERGE",
    "Row",
    "Settings",
    "ShaleError",
    "SystemClock",
    "TOMBSTONE",
    "Ulid",
    "UnavailableError",
    "VALUE",
    "compacted_path",
    "dir_path",
    "format_id",
    "parse_compacted",
    "parse_duration",
    "parse_numbered",
    "plugin_var",
    # format
    "BOUND_INCLUDED",
    "BytesRange",
    "Checkpoint",
    "CompactedSst",
    "Compaction",
    "Compactions",
    "ExternalDb",
    "Manifest",
    "MergeIterator",
    "MergeOperator",
    "SPEC_DRAIN_SEGMENT",
    "SPEC_TIERED",
    "STATUS_COMPACTED",
    "STATUS_COMPLETED",
    "STATUS_FAILED",
    "STATUS_RUNNING",
    "STATUS_SCHEDULED",
    "STATUS_SUBMITTED",
    "SortedRun",
    "SsTable",
    "SsTableInfo",
    "SstBuilder",
    "CompactionKernel",
    "KERNEL_DONE",
    "KERNEL_MORE",
    "KERNEL_SPLIT",
    "SstView",
    "merge_all",
    # storage
    "ObjectAlreadyExists",
    "ObjectMeta",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "PermanentStoreError",
    "RetryPolicy",
    "RetryingStore",
    "streams",
    "TransientStoreError",
    "validate_key",
    "check_range",
    "object_bytes",
    "plausible_prefix",
    # metadata
    "CompactionsStore",
    "ConsumerCursor",
    "DEFAULT_UPDATE_TIMEOUT_S",
    "FenceableCompactions",
    "FenceableManifest",
    "ManifestStore",
    "Mutation",
    "SstLocator",
    "DetachResult",
    "detach",
    "StoredCompactions",
    "StoredManifest",
    "add_checkpoint",
    "list_cursors",
    "prune_external_ssts",
    "remove_expired_checkpoints",
    "segments",
    # engine
    "check_codec",
    "check_filter_policies",
    "check_merge_operator",
    "check_timeout",
    "check_transformer",
    # plugins
    "PluginHost",
    "call_observers",
    "get_host",
    "hookimpl",
    "hookspec",
    "open_store",
]
