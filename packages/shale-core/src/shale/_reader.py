"""The internal read-only open: :class:`ReadOnlyDb`, a view of a database that writes nothing.

The ``shale`` command's read-only subcommands (``get``, ``scan``) use it; the public
``DbReader`` (SlateDB's reader, with its modes and a manifest poller) will grow out of it.

What a read-only open does, and why:

* **It writes nothing, ever.** No manifest version, no writer epoch, no WAL fence, no L0 SST,
  no directory (the local store creates its root on the first write only). A writer of the
  same database keeps running unfenced, and a user who may only read the bucket can read.
  Only ``get``, ``list``, ``head`` and ``get_range`` reach the store.
* **It sees what is durable.** It reads the latest manifest and replays the WAL SSTs after the
  manifest's ``replay_after_wal_id`` into an in-memory table, like a writer's open does, so
  writes that are durable in the WAL but not yet flushed to L0 are visible. Rows at or below
  the manifest's ``last_l0_seq`` are skipped (L0 has them). ``skip_wal_replay=True`` reads the
  manifest's SSTs only.
* **It is consistent although the writer moves on.** The writer's L0 flush advances
  ``replay_after_wal_id`` and GC may then delete the WALs below it, also ones the reader has
  not listed yet. So once the WAL is read, the reader reads the latest manifest again and
  uses that one: its L0 holds every WAL at or below its ``replay_after_wal_id``, and no WAL
  above it is ever deleted, so it plus the WALs read above it is exactly what a new writer
  would recover. Only a WAL above that boundary vanishing (which GC never does) makes the
  open start over, a bounded number of times.
* **A checkpoint is a frozen view.** With ``checkpoint=<uuid>`` it reads the manifest version
  that checkpoint pins and the WALs that manifest records as durable (ids up to its
  ``wal_id_last_seen``), as SlateDB's reader in checkpoint mode does. GC keeps all of those
  while the checkpoint lives. :meth:`ReadOnlyDb.refresh` does not move it.
* **Reads are the writer's reads.** The engine is a :class:`~shale.db.Db` that is never
  started: no background thread, and every write path raises :class:`InvalidError`. ``get``,
  ``scan`` and snapshots run the same code as a writer's, so they answer the same.
* **It is a view as of its open** (or of its last :meth:`ReadOnlyDb.refresh`); writes made
  later are not visible until ``refresh()``. A snapshot keeps the view it was taken in, also
  across ``refresh()``.

Not yet (the later ``DbReader``): reader modes with a managed checkpoint, a poller that follows
the writer, tailing the WAL incrementally, memory bounds on replayed rows, asyncio.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import uuid
import weakref
from collections.abc import Sequence
from typing import Any

from shale import ids
from shale.cache import BlockCache
from shale.clock import Clock
from shale.db import (
    DURABILITY_MEMORY,
    Db,
    DbIterator,
    DbSnapshot,
    KeyValue,
)
from shale.engine.memtable import Memtable
from shale.errors import CloseReason, DataError, InvalidError, UnavailableError
from shale.fbs.manifest import Checkpoint, Manifest
from shale.objstore import ObjectNotFound, ObjectStore
from shale.settings import Durability, Settings
from shale.sst import SsTable

__all__ = ["LOAD_ATTEMPTS", "ReadOnlyDb", "parse_checkpoint_id"]

log = logging.getLogger(__name__)

#: How many times an open starts over because WAL SSTs it listed were gone when it read them.
LOAD_ATTEMPTS = 20

_READ_ONLY = "this database handle is read-only"


def parse_checkpoint_id(value: uuid.UUID | str) -> uuid.UUID:
    """``value`` as a checkpoint id. :raises InvalidError: not a UUID."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidError("not a checkpoint id (UUID)", checkpoint=value)


class _ReadOnlyEngine(Db):
    """A :class:`Db` that is loaded instead of started: it reads and never writes."""

    _checkpoint_id: uuid.UUID | None = None
    _checkpoint: Checkpoint | None = None
    _skip_wal_replay = False
    _owns_store = False

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        """Read the manifest (latest or the checkpoint's) and the WAL after it; install them."""
        from shale.meta.compat import check_openable
        from shale.meta.manifest_store import ManifestStore, find_checkpoint

        ms = ManifestStore(
            self.store, self.root, format_version=self.settings.manifest_format_version
        )
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            found = ms.read_latest()
            if found is None:
                raise DataError(f"no database at {self.url} (no manifest found)")
            checkpoint = None
            if self._checkpoint_id is None:
                manifest_id, m = found
                upper = None
            else:
                checkpoint = find_checkpoint(found[1], self._checkpoint_id)
                if checkpoint is None:
                    raise InvalidError("unknown checkpoint", checkpoint_id=str(self._checkpoint_id))
                manifest_id, m = checkpoint.manifest_id, ms.read(checkpoint.manifest_id)
                upper = m.wal_id_last_seen
            wals: dict[int, list[tuple]] = {}  # type: ignore[type-arg]
            if not self._skip_wal_replay:
                wals, missing = self._read_wal(m, upper)
                if checkpoint is None:
                    # The writer may have flushed L0 meanwhile, and GC deleted WALs below its
                    # new replay_after_wal_id, some perhaps before we listed them. The newer
                    # manifest's L0 holds all of those, and WALs above its replay_after_wal_id
                    # are never deleted: it plus the WALs we read above it is consistent.
                    again = ms.read_latest()
                    if again is not None and again[0] > manifest_id:
                        manifest_id, m = again
                if missing and max(missing) > m.replay_after_wal_id:
                    if checkpoint is not None:  # GC keeps a live checkpoint's WALs
                        raise DataError(
                            "a WAL SST of the checkpoint is missing",
                            checkpoint_id=str(checkpoint.id),
                            wal_id=max(missing),
                        )
                    log.debug("WALs vanished without a newer manifest (attempt %d)", attempt)
                    continue
            # shapes shale cannot read correctly fail here, before any read (as a writer open)
            check_openable(m)
            self._ssts.check(m)
            self._ssts.observe(m.external_dbs)
            mt = Memtable()
            floor = m.last_l0_seq
            replayed = [i for i in sorted(wals) if i > m.replay_after_wal_id]
            for wal_id in replayed:
                for row in wals[wal_id]:
                    if row[1] > floor:
                        mt.put(row)
            mt.freeze(replayed[-1] if replayed else None)
            self._install(manifest_id, m, mt, checkpoint)
            log.info(
                "opened shale database read-only url=%s manifest=%d checkpoint=%s "
                "wal_replayed=%d last_seq=%d",
                self.url,
                manifest_id,
                checkpoint.id if checkpoint is not None else None,
                len(replayed),
                self._last_seq,
            )
            return
        raise UnavailableError(
            "WAL SSTs kept disappearing while they were read; try again", attempts=LOAD_ATTEMPTS
        )

    def _read_wal(self, m: Manifest, upper: int | None) -> tuple[dict[int, list[tuple]], list[int]]:  # type: ignore[type-arg]
        """The rows of each WAL SST after ``m``'s ``replay_after_wal_id`` (up to ``upper``),
        and the ids listed but gone by the time they were read."""
        wal_ids = [
            i
            for i in self._wal_ids()
            if i > m.replay_after_wal_id and (upper is None or i <= upper)
        ]
        out: dict[int, list[tuple]] = {}  # type: ignore[type-arg]
        missing = []
        for wal_id in wal_ids:
            try:
                data = self.store.get(ids.wal_path(self.root, wal_id))
            except ObjectNotFound:
                missing.append(wal_id)
                continue
            if data:  # (an empty one is a fence object)
                out[wal_id] = list(SsTable.from_bytes(data, transformer=self.transformer).rows())
        return out, missing

    def _install(
        self, manifest_id: int, m: Manifest, mt: Memtable, checkpoint: Checkpoint | None
    ) -> None:
        if m.last_l0_clock_tick > -(2**63):
            self.clock.advance_to(m.last_l0_clock_tick)
        last_seq = max(m.last_l0_seq, mt.max_seq)
        with self._lock:
            self._manifest = m
            self._manifest_id = manifest_id
            self._checkpoint = checkpoint
            self._memtable = mt
            self._imms = collections.deque()
            self._imm_bytes = 0
            self._last_seq = self._durable_seq = last_seq
        self._forget_tables(m)
        self.stats["wal_replayed_rows"] = len(mt)

    def _frozen_copy(self) -> _ReadOnlyEngine:
        """An engine sharing this one's current state (never mutated, only replaced) and
        caches, with its own lock: what a snapshot reads, unchanged by a later refresh."""
        other = copy.copy(self)
        other._lock = threading.RLock()
        other._cond = threading.Condition(other._lock)
        other._snapshots = {}
        other._imms = collections.deque(self._imms)
        other._owns_store = False
        return other

    # -- what a writer would do, refused -------------------------------------------------------

    def _write_items(self, items: Any, durable: bool) -> Any:
        raise InvalidError(_READ_ONLY, url=self.url)

    def _update_manifest(self, mutate: Any) -> Manifest:
        raise InvalidError(_READ_ONLY, url=self.url)

    def flush(self, *, memtable: bool = False, timeout: float | None = None) -> None:
        raise InvalidError(_READ_ONLY, url=self.url)

    def _refresh_manifest(self) -> Manifest:
        self._load()
        return self._manifest

    def close(self) -> None:
        with self._lock:
            first = not self._closed
            self._closed = True
            if self._close_reason is None:
                self._close_reason = CloseReason.CLEAN
            self._cond.notify_all()
        if first and self._owns_store:
            self.store.close()

    def __repr__(self) -> str:
        state = "open" if not self._closed else f"closed:{self._close_reason}"
        return f"<shale read-only engine {self.url!r} {state}>"


class ReadOnlyDb:
    """A read-only view of a database: reads like :class:`shale.Db`, writes nothing.

    Open it with :meth:`open`; use it as a context manager or call :meth:`close`. Thread-safe.
    See the module docstring for what it sees and what it guarantees.
    """

    def __init__(self, engine: _ReadOnlyEngine) -> None:
        self._engine = engine
        self._snapshot_engines: weakref.WeakSet[_ReadOnlyEngine] = weakref.WeakSet()

    @classmethod
    def open(
        cls,
        path: str,
        settings: Settings | None = None,
        *,
        checkpoint: uuid.UUID | str | None = None,
        skip_wal_replay: bool = False,
        object_store: ObjectStore | None = None,
        merge_operator: Any = None,
        clock: Clock | None = None,
        block_cache: BlockCache | None = None,
        filter_policies: Sequence[Any] | None = None,
        transformer: Any = None,
        store_options: dict[str, Any] | None = None,
        prefix_extractor: Any = None,
    ) -> ReadOnlyDb:
        """Open the database at ``path`` for reading; it must exist.

        The arguments are :meth:`shale.Db.open`'s, plus:

        :param checkpoint: read the state this checkpoint pins (a UUID or its text) instead
            of the latest.
        :param skip_wal_replay: read only what the manifest holds (no WAL replay).
        :raises DataError: no database at ``path`` (no manifest), or persisted state is
            missing or corrupt.
        :raises InvalidError: bad settings or arguments, or an unknown checkpoint.
        :raises UnavailableError: the object store failed, or the writer kept moving the
            manifest on while the WAL was read.
        """
        checkpoint_id = None if checkpoint is None else parse_checkpoint_id(checkpoint)
        engine = _ReadOnlyEngine._build(
            path,
            settings,
            object_store=object_store,
            merge_operator=merge_operator,
            clock=clock,
            block_cache=block_cache,
            filter_policies=filter_policies,
            transformer=transformer,
            store_options=store_options,
            prefix_extractor=prefix_extractor,
        )
        owns_store = object_store is None
        engine._checkpoint_id = checkpoint_id
        engine._skip_wal_replay = bool(skip_wal_replay)
        engine._owns_store = owns_store
        try:
            engine._load()
        except BaseException:
            engine.close()
            raise
        return cls(engine)

    # -- reads (the same code as a writer's) ---------------------------------------------------

    def get(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> bytes | None:
        """The value of ``key``, or ``None`` (see :meth:`shale.Db.get`). Every row a reader
        sees is durable, so ``durability="remote"`` answers the same."""
        return self._engine.get(key, durability=durability, include_expired=include_expired)

    def get_key_value(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """``key``'s value with its seq and timestamps, or ``None``."""
        return self._engine.get_key_value(
            key, durability=durability, include_expired=include_expired
        )

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> DbIterator:
        """``(key, value)`` over ``start <= key < end`` (see :meth:`shale.Db.scan`)."""
        return self._engine.scan(
            start, end, reverse=reverse, durability=durability, include_expired=include_expired
        )

    def scan_prefix(self, prefix: bytes, **options: Any) -> DbIterator:
        """Every key that starts with ``prefix``."""
        return self._engine.scan_prefix(prefix, **options)

    def snapshot(self) -> DbSnapshot:
        """A view pinned at the current seq that keeps its state across :meth:`refresh`."""
        self._engine._check_open()
        frozen = self._engine._frozen_copy()
        self._snapshot_engines.add(frozen)
        return frozen.snapshot()

    # -- state ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the latest manifest and the WAL after it (a checkpoint view stays put)."""
        self._engine._check_open()
        if self._engine._checkpoint_id is None:
            self._engine._load()

    def manifest(self) -> Manifest:
        """The manifest version this view reads."""
        return self._engine._manifest

    @property
    def manifest_id(self) -> int:
        """The id of :meth:`manifest`."""
        return self._engine._manifest_id

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint this view reads, or ``None`` for the latest state."""
        return self._engine._checkpoint

    @property
    def url(self) -> str:
        """The path or URL it was opened with."""
        return self._engine.url

    @property
    def settings(self) -> Settings:
        """The settings it was opened with."""
        return self._engine.settings

    @property
    def merge_operator(self) -> Any:
        """The merge operator reads fold operands with, or ``None``."""
        return self._engine.merge_operator

    def metrics(self) -> dict[str, int]:
        """Counters and gauges, as :meth:`shale.Db.metrics` (``last_seq``, ``manifest_id``,
        ``l0_sst_count``, ``get_count``, ``wal_replayed_rows``, cache counters, ...)."""
        return self._engine.metrics()

    # -- closing -------------------------------------------------------------------------------

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"``."""
        return self._engine.close_reason

    def close(self) -> None:
        """Release the handle (and its snapshots). Closing twice is harmless."""
        for snap in list(self._snapshot_engines):
            snap._owns_store = False
            snap.close()
        self._engine.close()

    def __enter__(self) -> ReadOnlyDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.close_reason is None else f"closed:{self.close_reason}"
        where = f" checkpoint={self.checkpoint.id}" if self.checkpoint is not None else ""
        return f"<shale ReadOnlyDb {self.url!r}{where} {state}>"
