"""Settings + explicit components -> the engine's components (SlateDB's ``db/builder``).

The API layer resolves plugins (an object store for a URL, a merge operator, filter policies,
a block transformer, a prefix extractor by name) and checks them; this module takes the
resolved objects and opens: a writer (:func:`open_writer`: fence, replay, start) or the parts a
read-only view reads with (:func:`build_reader`: no writer, no thread, nothing written).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from shale import ids
from shale.cache import BlockCache
from shale.clock import Clock, MonotonicClock
from shale.engine.db_inner import DbInner
from shale.engine.db_state import DbState
from shale.engine.db_status import DbStatus
from shale.engine.manifest_keeper import ManifestKeeper
from shale.engine.oracle import DbOracle
from shale.engine.reader import Reader
from shale.engine.snapshot_manager import SnapshotManager
from shale.engine.table_store import TableStore
from shale.engine.wal_replay import fence_wal, replay_wal
from shale.fbs.manifest import Manifest
from shale.meta import segments
from shale.meta.compat import check_openable
from shale.meta.delete import check_not_deleting
from shale.meta.manifest_store import FenceableManifest, ManifestStore, StoredManifest
from shale.metrics import MetricsRegistry
from shale.objstore import ObjectStore
from shale.objstore.probe import probe_writable
from shale.settings import Settings
from shale.telemetry import EngineMetrics

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EngineParts:
    """The resolved, checked components a database is opened with."""

    store: ObjectStore
    root: str
    url: str
    settings: Settings
    merge_operator: Any
    clock: Clock
    block_cache: BlockCache
    filter_policies: list[Any]
    transformer: Any
    prefix_extractor: segments.PrefixExtractor | None
    #: a separate WAL store (``None``: the WAL lives in :attr:`store`)
    wal_store: ObjectStore | None = None
    #: the URL :attr:`wal_store` was opened from (``None`` for a store object)
    wal_store_url: str | None = None
    #: opens the WAL store a manifest's ``wal_object_store_uri`` names, when none was given
    wal_store_opener: Callable[[str], ObjectStore] | None = None
    #: :attr:`wal_store` was opened from :attr:`wal_store_url` for this database (closed with it)
    owns_wal_store: bool = False
    #: the handle's registry (``None``: metrics off) and whether the handle created it
    metrics: MetricsRegistry | None = None
    owns_metrics: bool = False

    def engine_metrics(self) -> EngineMetrics | None:
        return None if self.metrics is None else EngineMetrics(self.metrics)

    def table_store(self) -> TableStore:
        return TableStore(
            self.store,
            self.root,
            self.settings,
            filter_policies=self.filter_policies,
            transformer=self.transformer,
            block_cache=self.block_cache,
            wal_store=self.wal_store,
            wal_store_label=self.wal_store_url,
            wal_store_opener=self.wal_store_opener,
            owns_wal_store=self.owns_wal_store,
        )

    def initial_manifest(self) -> Manifest:
        """A new database's first manifest: the extractor's name, and SlateDB's flag of a
        separate WAL store (``wal_object_store_uri = ""``; V1 only, V2 cannot record it)."""
        m = segments.initial_manifest(self.prefix_extractor)
        if self.wal_store is not None and self.settings.manifest_format_version == 1:
            m = dataclasses.replace(m, wal_object_store_uri="")
        return m


def _check_writable(tables: TableStore, m: Manifest, extractor: Any) -> None:
    """Refuse a manifest this writer cannot read or write correctly (shapes shale does not
    understand, a clone whose sources are missing, segments without their extractor)."""
    check_openable(m)
    tables.check_wal_store(m)
    tables.ssts.check(m)
    segments.check_manifest(m)
    segments.check_writer(m, extractor)


def open_writer(parts: EngineParts) -> DbInner:
    """Open the database as its writer: fence older writers, replay the WAL, start the
    background threads.

    :raises InvalidError: a manifest this writer cannot write correctly (before anything is
        written).
    :raises ClosedError: fenced by a newer writer while opening.
    """
    s = parts.settings
    ext = parts.prefix_extractor
    clock = MonotonicClock(parts.clock)
    tables = parts.table_store()
    ms = ManifestStore(parts.store, parts.root, format_version=s.manifest_format_version)
    # Refuse what shale cannot read or write correctly, and find a clone's sources, before
    # anything is written (an existing database's manifest is only read here) ...
    check_not_deleting(parts.store, parts.root)  # an interrupted delete_db
    found = ms.read_latest()
    if found is not None:
        _check_writable(tables, found[1], ext)
    # ... and fence only once we know we can write: a failed open leaves the epoch untouched
    probe_writable(parts.store, [ids.dir_path(parts.root, "compacted")])
    if s.wal_enabled:
        probe_writable(tables.wal_store, [ids.dir_path(parts.root, "wal")])
    stored = StoredManifest.create_or_load(ms, parts.initial_manifest())
    _check_writable(tables, stored.manifest, ext)  # it may have changed meanwhile
    fm = FenceableManifest.init_writer(stored, timeout=s.manifest_update_timeout)
    m = fm.manifest
    tables.observe(m)
    if m.last_l0_clock_tick > -(2**63):
        clock.advance_to(m.last_l0_clock_tick)
    status = DbStatus()
    state = DbState(m, fm.id)
    oracle = DbOracle(m.last_l0_seq)
    stats: collections.Counter[str] = collections.Counter()
    keeper = ManifestKeeper(ms, tables, state, status, fm, url=parts.url)
    if s.wal_enabled:
        fence_id = fence_wal(tables, m, keeper.refresh)
        oracle.reset(replay_wal(tables, m, fence_id, state, stats))
        next_wal_id = fence_id + 1
    else:
        next_wal_id = m.wal_id_last_seen + 1
    inner = DbInner(
        url=parts.url,
        settings=s,
        clock=clock,
        tables=tables,
        state=state,
        oracle=oracle,
        status=status,
        keeper=keeper,
        stats=stats,
        merge_operator=parts.merge_operator,
        prefix_extractor=ext,
        next_wal_id=next_wal_id,
        metrics=parts.engine_metrics(),
    )
    inner.start()
    log.info(
        "opened shale database url=%s manifest=%d writer_epoch=%d next_wal=%d last_seq=%d",
        parts.url,
        state.manifest_id,
        fm.epoch,
        next_wal_id,
        oracle.committed_seq,
    )
    return inner


@dataclasses.dataclass
class ReaderParts:
    """What a read-only view reads with: no writer, no background thread."""

    tables: TableStore
    state: DbState
    oracle: DbOracle
    status: DbStatus
    keeper: ManifestKeeper
    reader: Reader
    snapshots: SnapshotManager
    clock: MonotonicClock
    stats: collections.Counter[str]


def build_reader(parts: EngineParts, initial: Manifest) -> ReaderParts:
    """The components of a read-only view, reading ``initial`` until the view installs the
    manifest it loads (through ``keeper.ms``)."""
    s = parts.settings
    clock = MonotonicClock(parts.clock)
    tables = parts.table_store()
    ms = ManifestStore(parts.store, parts.root, format_version=s.manifest_format_version)
    status = DbStatus()
    state = DbState(initial, 0)
    stats: collections.Counter[str] = collections.Counter()
    return ReaderParts(
        tables=tables,
        state=state,
        oracle=DbOracle(),
        status=status,
        keeper=ManifestKeeper(ms, tables, state, status, None, url=parts.url),
        reader=Reader(state, tables, s, stats, clock=clock, merge_operator=parts.merge_operator),
        snapshots=SnapshotManager(),
        clock=clock,
        stats=stats,
    )
