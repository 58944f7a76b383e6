"""What a :class:`shale.DbReader` reads and how it moves forward (SlateDB's ``DbReaderInner``).

One :class:`ReaderView` per reader: it loads the first state at open and, on each poll
(:meth:`ReaderView.poll`, from the reader's poller thread or ``refresh()``), moves the state to
what the writer has made durable since. A state is a manifest version plus *replayed tables*:
the rows of WAL SSTs after the manifest's ``replay_after_wal_id`` that its L0 does not hold
(seq above its ``last_l0_seq``), in reader-local frozen memtables, oldest first.

The three modes (SlateDB's ``ReaderMode``):

* ``"checkpoint"``: the manifest a given checkpoint pins and the WALs it records as durable (up
  to its ``wal_id_last_seen``). Loaded once; a poll does nothing.
* ``"managed_checkpoint"`` (the default when no checkpoint is given, as in SlateDB): the view
  creates its own checkpoint (lifetime ``checkpoint_lifetime``) on the latest manifest and reads
  the manifest it pins. A poll that finds the writer's L0, compacted runs or segments changed
  *replaces* the checkpoint by one on the latest manifest (one manifest update: remove the old,
  add the new) and moves there; otherwise it tails new WALs. At half-life the checkpoint is
  refreshed; if it is gone (it expired and GC removed it) a new one is made. GC keeps every SST
  and WAL a live checkpoint's manifest reaches, so nothing is deleted under the view. While a
  snapshot taken before a move is open, the old checkpoint is kept too (*retired*, refreshed at
  half-life) and removed at the first poll after no such snapshot is left, so nothing is
  deleted under a snapshot either. :meth:`ReaderView.close` deletes them all.
* ``"follow_latest"``: no checkpoint; each poll reads the latest manifest. GC may delete an SST
  a read is using: the reader retries such a read once on a fresh state.

Invariants and why:

* **Visibility never goes back.** The visible seq is ``max(last_l0_seq, last replayed seq)``
  and a new state is installed only if it is not lower. Rows at or below the new manifest's
  ``last_l0_seq`` are in its L0; replayed tables entirely below it are dropped, tables across it
  are filtered to the rows above it (a merge operand must never be read twice).
* **No WAL is read twice or skipped.** ``last_wal_id`` is the highest WAL id whose rows the view
  holds (or its manifest's ``replay_after_wal_id``); a poll reads the ids above it. WAL ids grow
  with seqs, so a tail only ever adds newer rows.
* **follow_latest stays consistent while GC runs.** After the WAL is listed and read, the
  latest manifest is read again and used if newer: its L0 holds every WAL up to its
  ``replay_after_wal_id`` and GC never deletes a WAL above it. Only a WAL above that vanishing
  starts the poll over (a bounded number of times).
* **One load or poll at a time** (``_mutex``); reads never take it: a state is installed under
  ``DbState.lock`` in one step, the seq bound after it.
* **It writes nothing but its own checkpoint** (managed mode): every other store call is a
  ``get``, ``list``, ``head`` or ``get_range``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import uuid
from typing import Final, Literal, TypeAlias

from shale.engine.builder import ReaderParts
from shale.engine.memtable import Memtable
from shale.engine.wal_replay import read_wals
from shale.errors import DataError, InvalidError, ShaleError, UnavailableError
from shale.fbs.manifest import Checkpoint, Manifest
from shale.meta.compat import check_openable
from shale.meta.manifest_store import (
    StoredManifest,
    add_checkpoint,
    find_checkpoint,
    refresh_checkpoint,
)
from shale.objstore import ObjectNotFound
from shale.settings import ReaderOptions

__all__ = [
    "LOAD_ATTEMPTS",
    "MODES",
    "ReaderMode",
    "ReaderView",
    "parse_checkpoint_id",
]

log = logging.getLogger(__name__)

#: How a reader chooses and moves its state (SlateDB's ``ReaderMode``).
#: "no snapshot is open" for :meth:`SnapshotManager.min_pinned`
_NONE = sys.maxsize

ReaderMode: TypeAlias = Literal["managed_checkpoint", "checkpoint", "follow_latest"]
MODES: Final[tuple[ReaderMode, ...]] = ("managed_checkpoint", "checkpoint", "follow_latest")
#: How many times a load starts over because WAL SSTs it listed were gone when it read them.
LOAD_ATTEMPTS = 20
#: Seconds a missing WAL id below a listed one is waited for before the tail reads past it.
GAP_TIMEOUT_S = 30.0

Rows: TypeAlias = list[tuple]  # type: ignore[type-arg]


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


def _tree_of(m: Manifest) -> tuple[object, ...]:
    """What, when it changes, makes a managed reader move its checkpoint (SlateDB's
    ``should_reestablish_checkpoint``)."""
    return (m.last_compacted_l0_view_id, m.last_l0_seq, m.l0, m.compacted, m.segments)


class ReaderView:
    """The state of one reader and the loads and polls that move it (see the module doc)."""

    def __init__(
        self,
        engine: ReaderParts,
        *,
        url: str,
        mode: ReaderMode,
        checkpoint_id: uuid.UUID | None,
        options: ReaderOptions,
    ) -> None:
        self._engine = engine
        self._url = url
        self.mode: ReaderMode = mode
        self._checkpoint_id = checkpoint_id
        self.options = options
        self._mutex = threading.Lock()
        #: the checkpoint the view reads (fixed or managed), or None
        self.checkpoint: Checkpoint | None = None
        #: replayed tables, oldest first
        self._tables: list[Memtable] = []
        #: the highest WAL id whose rows the view holds (or its manifest's replay_after_wal_id)
        self.last_wal_id = 0
        self.seq = 0
        #: WAL ids seen missing below a listed one, and since when (monotonic seconds)
        self._gaps: dict[int, float] = {}
        self._tailed_to = 0
        #: managed mode: earlier checkpoints kept while a snapshot may still read their files,
        #: as (checkpoint id, the view's seq when it moved off it)
        self._retired: list[tuple[uuid.UUID, int]] = []

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        """Read the first state (at open). :raises DataError: no database at the URL."""
        with self._mutex:
            if self.mode == "checkpoint":
                self._load_checkpoint()
            elif self.mode == "managed_checkpoint":
                sm = self._stored()
                self._move_checkpoint(sm)
            else:
                self._follow(None)
            log.info(
                "opened shale reader url=%s mode=%s manifest=%d checkpoint=%s last_seq=%d",
                self._url,
                self.mode,
                self._engine.state.manifest_id,
                self.checkpoint.id if self.checkpoint is not None else None,
                self.seq,
            )

    def _stored(self) -> StoredManifest:
        sm = StoredManifest.try_load(self._engine.keeper.ms)
        if sm is None:
            raise DataError(f"no database at {self._url} (no manifest found)")
        return sm

    def _load_checkpoint(self) -> None:
        assert self._checkpoint_id is not None
        ms = self._engine.keeper.ms
        found = ms.read_latest()
        if found is None:
            raise DataError(f"no database at {self._url} (no manifest found)")
        cp = find_checkpoint(found[1], self._checkpoint_id)
        if cp is None:
            raise InvalidError("unknown checkpoint", checkpoint_id=str(self._checkpoint_id))
        m = ms.read(cp.manifest_id)
        wals: dict[int, Rows] = {}
        if not self.options.skip_wal_replay:
            wals, missing = read_wals(self._engine.tables, m, m.wal_id_last_seen)
            if missing:  # GC keeps a live checkpoint's WALs
                raise DataError(
                    "a WAL SST of the checkpoint is missing",
                    checkpoint_id=str(cp.id),
                    wal_id=max(missing),
                )
        self.checkpoint = cp
        self._install(cp.manifest_id, m, wals)

    # -- polling -------------------------------------------------------------------------

    def poll(self) -> None:
        """Move to what is durable now (a fixed checkpoint stays put)."""
        if self.mode == "checkpoint":
            return
        with self._mutex:
            self._engine.stats["reader_polls"] += 1
            if self.mode == "follow_latest":
                self._follow(self._engine.state.manifest_id)
            else:
                self._poll_managed()

    def _poll_managed(self) -> None:
        sm = self._stored()
        if self._retired:
            self._release_retired(sm)
        current = self._engine.state.manifest
        if _tree_of(sm.manifest) != _tree_of(current):
            self._move_checkpoint(sm)
            return
        wals = self._tail(current)
        if wals is None:  # GC keeps every WAL above a live checkpoint's replay_after_wal_id
            raise DataError("a WAL SST above the reader's checkpoint is missing")
        self._install(self._engine.state.manifest_id, current, wals)
        cp = self.checkpoint
        assert cp is not None and cp.expire_time_s is not None
        now_s = self._engine.clock.now_ms() // 1000
        if now_s <= cp.expire_time_s - self.options.checkpoint_lifetime / 2:
            return
        if find_checkpoint(sm.manifest, cp.id) is None:
            log.warning("reader checkpoint missing, re-establishing checkpoint_id=%s", cp.id)
            self._move_checkpoint(sm)
            return
        lifetime = self.options.checkpoint_lifetime
        try:
            m2 = sm.update(
                lambda mm, _n: refresh_checkpoint(
                    mm, cp.id, now_s=self._engine.clock.now_ms() // 1000, lifetime_s=lifetime
                )
            )
        except InvalidError:  # removed between our read and our update
            self._move_checkpoint(sm)
            return
        self.checkpoint = find_checkpoint(m2, cp.id)
        self._engine.stats["reader_checkpoint_refreshes"] += 1

    def _move_checkpoint(self, sm: StoredManifest) -> None:
        """Replace our checkpoint (if any) by one on the latest manifest and read that.

        The old checkpoint is kept (retired) while an open snapshot may still read the files it
        pins -- one pinned at or below the view's current seq -- so GC never deletes a file a
        snapshot of this reader can reach; :meth:`_release_retired` removes it later.
        """
        old = self.checkpoint.id if self.checkpoint is not None else None
        if old is not None and self._engine.snapshots.min_pinned(_NONE) <= self.seq:
            self._retired.append((old, self.seq))
            old = None  # keep it in the manifest
        made: list[Checkpoint] = []
        lifetime = self.options.checkpoint_lifetime

        def mutate(m: Manifest, next_id: int) -> Manifest:
            if old is not None:
                m = dataclasses.replace(m, checkpoints=[c for c in m.checkpoints if c.id != old])
            m2, cp = add_checkpoint(
                m,
                manifest_id=next_id,
                now_s=self._engine.clock.now_ms() // 1000,
                lifetime_s=lifetime,
            )
            made[:] = [cp]
            return m2

        m = sm.update(mutate)
        cp = made[0]
        self._engine.stats["reader_checkpoints_created"] += 1
        wals = self._tail(m)
        if wals is None:
            raise DataError("a WAL SST above the reader's checkpoint is missing")
        self.checkpoint = cp
        self._install(cp.manifest_id, m, wals)

    def _release_retired(self, sm: StoredManifest) -> None:
        """Remove the retired checkpoints no open snapshot can need any more, and refresh the
        others at half-life (a snapshot may outlive ``checkpoint_lifetime``); one update."""
        floor = self._engine.snapshots.min_pinned(_NONE)
        drop = {cid for cid, seq in self._retired if floor > seq}
        now_s = self._engine.clock.now_ms() // 1000
        lifetime = self.options.checkpoint_lifetime
        stale = set()
        for cid, _seq in self._retired:
            cp = find_checkpoint(sm.manifest, cid)
            if cid not in drop and cp is not None and cp.expire_time_s is not None:
                if now_s > cp.expire_time_s - lifetime / 2:
                    stale.add(cid)
        if not drop and not stale:
            return

        def mutate(m: Manifest, _next_id: int) -> Manifest | None:
            out = dataclasses.replace(m, checkpoints=[c for c in m.checkpoints if c.id not in drop])
            for cid in stale:
                if find_checkpoint(out, cid) is not None:
                    out = refresh_checkpoint(out, cid, now_s=now_s, lifetime_s=lifetime)
            return out

        sm.update(mutate)
        self._retired = [(cid, seq) for cid, seq in self._retired if cid not in drop]
        self._engine.stats["reader_checkpoints_released"] += len(drop)

    def _tail(self, m: Manifest) -> dict[int, Rows] | None:
        """The WALs after what the view holds and after ``m``'s ``replay_after_wal_id``, up to
        the first id not there yet, or ``None`` if one above that boundary was gone when read.

        The writer uploads WAL SSTs concurrently, so a listing may show ``n + 1`` before ``n``:
        the tail stops at a gap and reads on from it at the next poll. A gap that stays open for
        ``GAP_TIMEOUT_S`` while later WALs exist (a WAL that will never be written) is skipped.
        """
        if self.options.skip_wal_replay:
            return {}
        after = max(self.last_wal_id, m.replay_after_wal_id)
        listed = sorted(i for i in self._engine.tables.list_wal_ids() if i > after)
        wanted: list[int] = []
        expect = after + 1
        for i in listed:
            if i != expect:
                first = self._gaps.setdefault(expect, time.monotonic())
                if time.monotonic() - first < GAP_TIMEOUT_S:
                    break
                log.warning("WAL SST %d never appeared; reading on after it", expect)
            wanted.append(i)
            expect = i + 1
        out: dict[int, Rows] = {}
        for wal_id in wanted:
            try:
                rows = self._engine.tables.read_wal(wal_id)
            except ObjectNotFound:
                if wal_id > m.replay_after_wal_id:
                    return None
                continue
            if rows is not None:  # (an empty one is a fence object)
                out[wal_id] = rows
        self._gaps = {g: t for g, t in self._gaps.items() if g > (wanted[-1] if wanted else after)}
        if wanted:
            self._tailed_to = wanted[-1]
        return out

    def _follow(self, current_id: int | None) -> None:
        """follow_latest: the latest manifest and the WALs after it (see the module doc)."""
        ms = self._engine.keeper.ms
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            found = ms.read_latest()
            if found is None:
                raise DataError(f"no database at {self._url} (no manifest found)")
            manifest_id, m = found
            if current_id is not None and manifest_id < current_id:
                return  # (a stale listing: keep what we have)
            wals = self._tail(m)
            if not self.options.skip_wal_replay:
                again = ms.read_latest()
                if again is not None and again[0] > manifest_id:
                    manifest_id, m = again
            if wals is None:
                # retry on a newer manifest only if one covers the vanished WAL
                log.debug("WALs vanished without a newer manifest (attempt %d)", attempt)
                continue
            self._install(manifest_id, m, wals)
            return
        raise UnavailableError(
            "WAL SSTs kept disappearing while they were read; try again", attempts=LOAD_ATTEMPTS
        )

    # -- installing ----------------------------------------------------------------------

    def _install(self, manifest_id: int, m: Manifest, wals: dict[int, Rows]) -> None:
        """Make ``m`` plus the replayed tables (old ones filtered by ``m``'s L0, then ``wals``)
        the view's state, if that does not go back in time."""
        engine = self._engine
        if manifest_id != engine.state.manifest_id or not self._tables:
            # shapes shale cannot read correctly fail here, before any read
            check_openable(m)
            engine.tables.check_wal_store(m)
            engine.tables.ssts.check(m)
        floor = m.last_l0_seq
        tables: list[Memtable] = []
        for t in self._tables:
            if t.max_seq <= floor:
                continue  # L0 holds all of it
            if t.min_seq is not None and t.min_seq > floor:
                tables.append(t)
            else:
                tables.append(_filtered(t, floor))
        last_seq = max([floor, self.seq, *(t.max_seq for t in tables)])
        last_wal = max(self.last_wal_id, m.replay_after_wal_id, self._tailed_to)
        current = Memtable()
        limit = self.options.max_memtable_bytes
        for wal_id in sorted(wals):
            for row in wals[wal_id]:
                if row[1] > floor and row[1] > last_seq:
                    current.put(row)
            last_wal = max(last_wal, wal_id)
            if current.size >= limit:
                tables.append(current.freeze(wal_id))
                current = Memtable()
        if not current.is_empty():
            tables.append(current.freeze(last_wal))
        new_seq = max([floor, *(t.max_seq for t in tables)])
        if new_seq < self.seq:
            # never happens with a writer that follows the protocol; keep the newer view
            log.warning("reader state would go back in time (seq %d < %d)", new_seq, self.seq)
            self._tailed_to = self.last_wal_id  # read those WALs again next time
            return
        if m.last_l0_clock_tick > -(2**63):
            engine.clock.advance_to(m.last_l0_clock_tick)
        engine.tables.observe(m)
        with engine.state.lock:  # (the seq with the state: a snapshot takes both under it)
            engine.state.replace(m, manifest_id, Memtable())
            for t in tables:
                engine.state.push_imm(t)
            engine.oracle.reset(new_seq)
        self._tables = tables
        self.last_wal_id = last_wal
        self.seq = new_seq
        engine.stats["wal_replayed_rows"] = sum(len(t) for t in tables)

    @property
    def replayed_bytes(self) -> int:
        return sum(t.size for t in self._tables)

    @property
    def replayed_tables(self) -> int:
        return len(self._tables)

    # -- closing -------------------------------------------------------------------------

    def delete_checkpoint(self) -> None:
        """Remove the managed checkpoint (at close); a failure is logged (it expires)."""
        with self._mutex:
            cp = self.checkpoint
            if self.mode != "managed_checkpoint" or cp is None:
                return
            ours = {cp.id} | {cid for cid, _seq in self._retired}
            try:
                sm = self._stored()
                sm.update(
                    lambda m, _n: (
                        None
                        if not any(c.id in ours for c in m.checkpoints)
                        else dataclasses.replace(
                            m, checkpoints=[c for c in m.checkpoints if c.id not in ours]
                        )
                    )
                )
            except ShaleError as exc:
                log.warning("could not delete the reader's checkpoint %s: %s", cp.id, exc)
            self.checkpoint = None
            self._retired = []


def _filtered(t: Memtable, floor: int) -> Memtable:
    """A frozen copy of ``t`` with only its rows above ``floor``."""
    out = Memtable()
    rows = sorted((r for r in t.iter_rows() if r[1] > floor), key=lambda r: r[1])
    for r in rows:
        out.put(r)
    return out.freeze(t.wal_id)
