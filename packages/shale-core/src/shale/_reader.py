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
* **Reads are the writer's reads.** It is built from the engine's read components -- table
  store, db state, oracle, reader, a read-only manifest keeper -- with no writer, WAL or
  flusher and no background thread. ``get``, ``scan`` and snapshots run the same code as a
  writer's, so they answer the same.
* **It is a view as of its open** (or of its last :meth:`ReadOnlyDb.refresh`); writes made
  later are not visible until ``refresh()``. A snapshot keeps the view it was taken in, also
  across ``refresh()``.

Not yet (the later ``DbReader``): reader modes with a managed checkpoint, a poller that follows
the writer, tailing the WAL incrementally, memory bounds on replayed rows, asyncio.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from shale.batch import check_key
from shale.cache import BlockCache
from shale.clock import Clock
from shale.db import resolve_parts
from shale.engine.builder import EngineParts, ReaderParts, build_reader
from shale.engine.db_inner import metrics
from shale.engine.db_iter import DbIterator
from shale.engine.db_snapshot import DbSnapshot
from shale.engine.memtable import Memtable
from shale.engine.oracle import DURABILITY_MEMORY
from shale.engine.reader import KeyValue
from shale.engine.wal_replay import read_wals
from shale.errors import DataError, InvalidError, UnavailableError
from shale.fbs.manifest import Checkpoint, Manifest
from shale.keys import prefix_range
from shale.meta import segments
from shale.objstore import ObjectStore
from shale.settings import Durability, Settings

__all__ = ["LOAD_ATTEMPTS", "ReadOnlyDb", "parse_checkpoint_id"]

log = logging.getLogger(__name__)

#: How many times an open starts over because WAL SSTs it listed were gone when it read them.
LOAD_ATTEMPTS = 20


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


class ReadOnlyDb:
    """A read-only view of a database: reads like :class:`shale.Db`, writes nothing.

    Open it with :meth:`open`; use it as a context manager or call :meth:`close`. Thread-safe.
    See the module docstring for what it sees and what it guarantees.
    """

    def __init__(
        self,
        parts: EngineParts,
        engine: ReaderParts,
        *,
        checkpoint_id: uuid.UUID | None,
        skip_wal_replay: bool,
        owns_store: bool,
    ) -> None:
        self._parts = parts
        self._engine = engine
        self._checkpoint_id = checkpoint_id
        self._checkpoint: Checkpoint | None = None
        self._skip_wal_replay = skip_wal_replay
        self._owns_store = owns_store

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
        parts = resolve_parts(
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
        db = cls(
            parts,
            build_reader(parts, segments.initial_manifest(None)),
            checkpoint_id=checkpoint_id,
            skip_wal_replay=bool(skip_wal_replay),
            owns_store=object_store is None,
        )
        try:
            db._load()
        except BaseException:
            db.close()
            raise
        return db

    # -- loading -------------------------------------------------------------------------------

    def _load(self) -> None:
        """Read the manifest (latest or the checkpoint's) and the WAL after it; install them."""
        from shale.meta.compat import check_openable
        from shale.meta.manifest_store import find_checkpoint

        engine = self._engine
        ms = engine.keeper.ms
        tables = engine.tables
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
                wals, missing = read_wals(tables, m, upper)
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
            tables.ssts.check(m)
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
                engine.oracle.committed_seq,
            )
            return
        raise UnavailableError(
            "WAL SSTs kept disappearing while they were read; try again", attempts=LOAD_ATTEMPTS
        )

    def _install(
        self, manifest_id: int, m: Manifest, mt: Memtable, checkpoint: Checkpoint | None
    ) -> None:
        engine = self._engine
        if m.last_l0_clock_tick > -(2**63):
            engine.clock.advance_to(m.last_l0_clock_tick)
        engine.tables.observe(m)
        engine.state.replace(m, manifest_id, mt)
        engine.oracle.reset(max(m.last_l0_seq, mt.max_seq))
        self._checkpoint = checkpoint
        engine.stats["wal_replayed_rows"] = len(mt)

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
        kv = self.get_key_value(key, durability=durability, include_expired=include_expired)
        return None if kv is None else kv.value

    def get_key_value(
        self,
        key: bytes,
        *,
        durability: Durability = DURABILITY_MEMORY,
        include_expired: bool | None = None,
    ) -> KeyValue | None:
        """``key``'s value with its seq and timestamps, or ``None``."""
        key = check_key(key)
        engine = self._engine
        engine.status.check_open()
        max_seq = engine.oracle.read_seq(durability, False)
        return engine.reader.get(key, max_seq, include_expired)

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
        engine = self._engine
        engine.status.check_open()
        max_seq = engine.oracle.read_seq(durability, False)
        return DbIterator(engine.reader, start, end, reverse, max_seq, include_expired)

    def scan_prefix(self, prefix: bytes, **options: Any) -> DbIterator:
        """Every key that starts with ``prefix``."""
        return self.scan(*prefix_range(prefix), **options)

    def snapshot(self) -> DbSnapshot:
        """A view pinned at the current seq that keeps its state across :meth:`refresh`."""
        engine = self._engine
        engine.status.check_open()
        reader = engine.reader.with_state(engine.state.frozen_copy())
        return DbSnapshot(reader, engine.snapshots, engine.status, engine.oracle.committed_seq)

    # -- state ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the latest manifest and the WAL after it (a checkpoint view stays put)."""
        self._engine.status.check_open()
        if self._checkpoint_id is None:
            self._load()

    def manifest(self) -> Manifest:
        """The manifest version this view reads."""
        return self._engine.state.manifest

    @property
    def manifest_id(self) -> int:
        """The id of :meth:`manifest`."""
        return self._engine.state.manifest_id

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint this view reads, or ``None`` for the latest state."""
        return self._checkpoint

    @property
    def url(self) -> str:
        """The path or URL it was opened with."""
        return self._parts.url

    @property
    def settings(self) -> Settings:
        """The settings it was opened with."""
        return self._parts.settings

    @property
    def merge_operator(self) -> Any:
        """The merge operator reads fold operands with, or ``None``."""
        return self._parts.merge_operator

    def metrics(self) -> dict[str, int]:
        """Counters and gauges, as :meth:`shale.Db.metrics` (``last_seq``, ``manifest_id``,
        ``l0_sst_count``, ``get_count``, ``wal_replayed_rows``, cache counters, ...)."""
        e = self._engine
        return metrics(e.stats, e.state, e.oracle, e.tables)

    # -- closing -------------------------------------------------------------------------------

    @property
    def close_reason(self) -> str | None:
        """``None`` while open, then ``"clean"``."""
        return self._engine.status.close_reason

    def close(self) -> None:
        """Release the handle (and its snapshots). Closing twice is harmless."""
        again, _failed = self._engine.status.begin_close()
        if not again:
            self._engine.status.finish_close(None)
            if self._owns_store:
                self._parts.store.close()

    def __enter__(self) -> ReadOnlyDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.close_reason is None else f"closed:{self.close_reason}"
        where = f" checkpoint={self.checkpoint.id}" if self.checkpoint is not None else ""
        return f"<shale ReadOnlyDb {self.url!r}{where} {state}>"
