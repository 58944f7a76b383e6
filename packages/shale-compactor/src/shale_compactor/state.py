"""Compactor state (manifest + ``.compactions``) and the protocol for reading and writing it.

This is shale's twin of SlateDB's ``compactor_state.rs`` and ``compactor_state_protocols.rs``
(seed 000). The ordering rules live here, in one place, so GC safety and fencing cannot regress
elsewhere:

- **Reads fetch the compactions file before the manifest** (:func:`read_view`,
  :meth:`CompactorStateWriter.refresh`). A compaction's outputs are written to ``compacted/``
  while it runs and recorded in ``.compactions``; when it finishes the manifest references them
  and the compaction is trimmed from the file. Reading compactions first means an SST that is in
  neither (because the manifest commit happened between two reads taken in the other order)
  cannot be observed: GC sees every live output either in the manifest or in the compactions
  file (or protected by the ``.compactions`` low watermark).
- **Writes persist the manifest before the compactions file**
  (:meth:`CompactorStateWriter.write_state_safely`): the new sorted run is visible before the
  compaction that produced it is marked finished and trimmed.
- **A checkpoint comes first** when a manifest update drops SSTs
  (:meth:`CompactorStateWriter.write_manifest_safely`): a separate manifest version adds a
  checkpoint (lifetime ``checkpoint_lifetime``, 15 minutes by default) pinning the version that
  still lists the inputs, so GC keeps them while in-flight readers finish.
- **Fencing.** :meth:`CompactorStateWriter.open` bumps ``compactor_epoch`` in the manifest, then
  claims the same epoch in the compactions file (creating version 1 with epoch 0 if absent).
  Every later write checks both epochs; a fenced compactor writes nothing more.
- **Recovery.** On open, Running (and 0.17.0's Scheduled and Compacted) compactions go back to
  Submitted *keeping their recorded output SSTs*, so they resume after the last written
  (key, seq); only active compactions and the most recently finished one (largest ULID) are
  kept (SlateDB #1044: GC needs the last finished one as its low-watermark). This recovery
  state is persisted before any refresh could overwrite it.
- **Distributed mode** (RFC-0025, a coordinator whose jobs remote workers run; ``open(...,
  distributed=True)``): recovery leaves Scheduled, Running and Compacted jobs alone (a live
  worker keeps its job; a dead one is reclaimed by heartbeat; Compacted jobs are committed), only
  a Running job without a worker (left by an in-process compactor) goes back to Scheduled. The
  compactions file is then written and read with :func:`merge_worker_compactions`: a worker's
  transitions (claim, heartbeat, progress, release, Compacted) are adopted over the
  coordinator's older copy, never the reverse.
- **Conflicts.** Both files are updated with create-if-absent versions; a lost race reloads and
  re-applies a *mutation*. The compactions file is written as "our compactions, plus any
  compaction someone else submitted meanwhile" (:func:`merge_remote_compactions`), so a
  ``shale compactor submit`` racing with the compactor is never lost.

:class:`CompactorState` itself is plain data plus bookkeeping; it does no I/O.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shale.spi import (
    BOUND_INCLUDED,
    DEFAULT_UPDATE_TIMEOUT_S,
    SPEC_DRAIN_SEGMENT,
    STATUS_COMPACTED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    STATUS_SUBMITTED,
    Clock,
    CompactedSst,
    Compaction,
    Compactions,
    CompactionsStore,
    DataError,
    FenceableCompactions,
    FenceableManifest,
    InternalError,
    InvalidError,
    Manifest,
    ManifestStore,
    Mutation,
    ObjectStore,
    SortedRun,
    SstView,
    StoredCompactions,
    StoredManifest,
    SystemClock,
    Ulid,
    add_checkpoint,
    get_logger,
    segments,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FINISHED_STATUSES",
    "STATUS_NAMES",
    "CompactorState",
    "CompactorStateReader",
    "CompactorStateView",
    "CompactorStateWriter",
    "apply_compaction",
    "apply_drain",
    "apply_trivial_move",
    "build_job",
    "is_active",
    "is_dest_last_run",
    "merge_remote_compactions",
    "merge_worker_compactions",
    "reclaim_stale_workers",
    "read_view",
    "reset_running",
    "resolve_sources",
    "retain_active_and_last_finished",
    "trivial_move_output",
]

logger = get_logger(__name__)

#: Statuses of compactions that are not finished (their sources are in use).
ACTIVE_STATUSES = frozenset({STATUS_SUBMITTED, STATUS_SCHEDULED, STATUS_RUNNING, STATUS_COMPACTED})
#: Statuses of finished compactions.
FINISHED_STATUSES = frozenset({STATUS_COMPLETED, STATUS_FAILED})
#: Printable status names.
STATUS_NAMES = {
    STATUS_SUBMITTED: "submitted",
    STATUS_RUNNING: "running",
    STATUS_COMPLETED: "completed",
    STATUS_FAILED: "failed",
    STATUS_COMPACTED: "compacted",
    STATUS_SCHEDULED: "scheduled",
}


# -- pure helpers on Compactions -------------------------------------------------------------------


def is_active(c: Compaction) -> bool:
    """Whether ``c`` is not finished yet (Submitted, Scheduled, Running or Compacted)."""
    return c.status in ACTIVE_STATUSES


def _sorted(compactions: Iterable[Compaction]) -> list[Compaction]:
    return sorted(compactions, key=lambda c: c.id)


def retain_active_and_last_finished(c: Compactions) -> Compactions:
    """``c`` with only its active compactions and the finished one with the largest id."""
    finished = [x for x in c.recent_compactions if not is_active(x)]
    last = max(finished, key=lambda x: x.id) if finished else None
    keep = [x for x in c.recent_compactions if is_active(x) or x is last]
    if len(keep) == len(c.recent_compactions):
        return c
    return dataclasses.replace(c, recent_compactions=keep)


def reset_running(c: Compactions) -> Compactions:
    """``c`` with Running compactions set back to Submitted (outputs kept, worker cleared):
    what a restarted compactor resumes. 0.17.0's Scheduled and Compacted (outputs written,
    manifest not yet committed) are reset the same way."""
    out = []
    changed = False
    for x in c.recent_compactions:
        if x.status in (STATUS_RUNNING, STATUS_SCHEDULED, STATUS_COMPACTED):
            x = dataclasses.replace(
                x, status=STATUS_SUBMITTED, worker_id=None, last_heartbeat_ms=None
            )
            changed = True
        out.append(x)
    return dataclasses.replace(c, recent_compactions=out) if changed else c


def merge_remote_compactions(local: Compactions, remote: Compactions) -> Compactions:
    """The compactions to write over ``remote``: every local compaction, plus each remote one
    the local state does not know that is still Submitted (submitted by someone else, e.g. the
    CLI). The epoch is the remote one (fencing is checked separately)."""
    known = {x.id for x in local.recent_compactions}
    extra = [
        x for x in remote.recent_compactions if x.id not in known and x.status == STATUS_SUBMITTED
    ]
    return Compactions(
        compactor_epoch=remote.compactor_epoch,
        recent_compactions=_sorted([*local.recent_compactions, *extra]),
    )


#: Remote transitions a coordinator adopts over its own copy of a job (SlateDB's
#: ``should_adopt_state_transition``): only what a worker may do to a job.
_ADOPT: dict[int, frozenset[int]] = {
    STATUS_SUBMITTED: frozenset({STATUS_COMPACTED}),
    STATUS_SCHEDULED: frozenset({STATUS_RUNNING, STATUS_COMPACTED}),
    STATUS_RUNNING: frozenset({STATUS_SCHEDULED, STATUS_RUNNING, STATUS_COMPACTED}),
    STATUS_COMPACTED: frozenset({STATUS_COMPACTED}),
    STATUS_COMPLETED: frozenset(),
    STATUS_FAILED: frozenset(),
}


def merge_worker_compactions(local: Compactions, remote: Compactions) -> Compactions:
    """A distributed coordinator's merge of the latest file into its state (SlateDB's
    ``merge_remote_compactions``): local jobs, with the remote copy adopted where it is a
    worker's transition (Scheduled -> Running claim, Running heartbeat/progress/release,
    -> Compacted); remote jobs it does not know are added when Submitted (someone submitted
    them) or finished/Compacted, never when Scheduled or Running (only the coordinator
    schedules)."""
    merged = {x.id: x for x in local.recent_compactions}
    for x in remote.recent_compactions:
        mine = merged.get(x.id)
        if mine is None:
            if x.status in (STATUS_SUBMITTED, STATUS_COMPACTED, STATUS_COMPLETED, STATUS_FAILED):
                merged[x.id] = x
            else:
                logger.error("ignoring remote %s compaction %s unknown here", x.status, x.id)
        elif x != mine and x.status in _ADOPT.get(mine.status, frozenset()):
            merged[x.id] = x
    return Compactions(
        compactor_epoch=remote.compactor_epoch, recent_compactions=_sorted(merged.values())
    )


def reclaim_stale_workers(
    c: Compactions, now_ms: int, timeout_ms: int
) -> tuple[Compactions, list[Compaction]]:
    """``c`` with every Running job whose worker's last heartbeat is more than ``timeout_ms``
    before ``now_ms`` (or that has no worker) handed back: Scheduled, worker cleared, recorded
    ``output_ssts`` kept so the next worker resumes after them. Returns the reclaimed jobs."""
    out: list[Compaction] = []
    reclaimed: list[Compaction] = []
    for x in c.recent_compactions:
        if x.status == STATUS_RUNNING and (
            x.worker_id is None or now_ms - (x.last_heartbeat_ms or 0) > timeout_ms
        ):
            reclaimed.append(x)
            x = dataclasses.replace(
                x, status=STATUS_SCHEDULED, worker_id=None, last_heartbeat_ms=None
            )
        out.append(x)
    if not reclaimed:
        return c, []
    return dataclasses.replace(c, recent_compactions=out), reclaimed


# -- pure helpers on the manifest ----------------------------------------------------------------


def _tree(m: Manifest, c: Compaction) -> segments.Tree:
    tree = segments.tree(m, c.segment)
    if tree is None:
        raise InvalidError(
            "the compaction's segment is not in the manifest", id=str(c.id), segment=c.segment
        )
    return tree


def resolve_sources(m: Manifest, c: Compaction) -> tuple[list[SstView], list[SortedRun]]:
    """The L0 views (newest first) and sorted runs (highest id first) ``c`` compacts, as
    listed in the tree of ``c.segment`` in ``m``.

    :raises InvalidError: a source (or the segment) is not in ``m`` (already compacted, or
        never existed).
    """
    l0_ids = set(c.l0_view_ids)
    run_ids = set(c.sorted_runs)
    if len(l0_ids) != len(c.l0_view_ids) or len(run_ids) != len(c.sorted_runs):
        raise InvalidError("a compaction names a source twice", id=str(c.id))
    tree = _tree(m, c)
    views = [v for v in tree.l0 if v.id in l0_ids]
    runs = [r for r in tree.compacted if r.id in run_ids]
    if len(views) != len(l0_ids) or len(runs) != len(run_ids):
        missing = sorted(str(u) for u in l0_ids - {v.id for v in views})
        missing_runs = sorted(run_ids - {r.id for r in runs})
        raise InvalidError(
            "compaction sources are not in the manifest",
            id=str(c.id),
            l0=missing,
            sorted_runs=missing_runs,
        )
    return views, runs


def is_dest_last_run(m: Manifest, c: Compaction) -> bool:
    """Whether the output of ``c`` will be the oldest data of the tree (tombstones may go).

    Sources form a window of the logical order ``[L0 newest..oldest, runs highest..lowest]``;
    the destination is the last run exactly when that window reaches the end: it contains the
    lowest sorted run, or, with no sorted runs at all, the oldest L0. (SlateDB only checks
    "no sorted runs, or the destination is the lowest run", which would drop tombstones of a
    hand-submitted L0 window that leaves older L0s out.) Judged within the tree of
    ``c.segment``: segments own disjoint keys, so only that tree can hold older versions.
    """
    tree = segments.tree(m, c.segment)
    if tree is None:
        return False
    if tree.compacted:
        return tree.compacted[-1].id in c.sorted_runs
    return bool(tree.l0) and tree.l0[-1].id in c.l0_view_ids


def build_job(m: Manifest, c: Compaction) -> Any:
    """The executor's :class:`~shale_compactor.executor.CompactionJob` for ``c`` against
    manifest ``m``, resuming after ``c.output_ssts``.

    :raises InvalidError: a source of ``c`` is not in ``m``.
    """
    from shale_compactor.executor import CompactionJob

    views, runs = resolve_sources(m, c)
    return CompactionJob(
        id=c.id,
        l0=views,
        runs=runs,
        destination=c.destination,
        is_dest_last_run=is_dest_last_run(m, c),
        retention_min_seq=m.recent_snapshot_min_seq,
        compaction_clock_tick=m.last_l0_clock_tick,
        resume_outputs=list(c.output_ssts),
        external_dbs=list(m.external_dbs),
    )


def apply_compaction(m: Manifest, c: Compaction, outputs: list[CompactedSst]) -> Manifest:
    """``m`` with compaction ``c`` committed (FORMAT.md 10.4) to the tree of ``c.segment``: its
    L0 views removed, its source runs replaced by run ``c.destination`` holding ``outputs`` (no
    run when there are none), and the tree's ``last_compacted_l0_view_id`` set to its newest L0
    view. A pure function for a manifest mutation; everything else in ``m`` (the writer's newer
    L0s, other trees, checkpoints) is kept.

    :raises InternalError: a source vanished or the destination is taken by another run (the
        compactor owns sorted runs, so either means a second compactor or a bug).
    """
    try:
        resolve_sources(m, c)
    except InvalidError as exc:
        raise InternalError("compaction sources vanished before commit", id=str(c.id)) from exc
    tree = _tree(m, c)
    run_ids = set(c.sorted_runs)
    if any(
        r.id == c.destination and not (t.prefix == c.segment and r.id in run_ids)
        for t in segments.trees(m)
        for r in t.compacted
    ):
        raise InternalError(
            "compaction destination is an existing run that is not a source",
            id=str(c.id),
            destination=c.destination,
        )
    l0_ids = set(c.l0_view_ids)
    runs = [r for r in tree.compacted if r.id not in run_ids]
    if outputs:
        runs.append(SortedRun(c.destination, [SstView(s.id, s, None) for s in outputs]))
    runs.sort(key=lambda r: r.id, reverse=True)
    last = tree.last_compacted_l0_view_id
    if c.l0_view_ids:
        newest = next(v.id for v in tree.l0 if v.id in l0_ids)
        last = newest
    return segments.replace_tree(
        m,
        c.segment,
        l0=[v for v in tree.l0 if v.id not in l0_ids],
        compacted=runs,
        last_compacted_l0_view_id=last,
    )


def apply_drain(m: Manifest, c: Compaction) -> Manifest:
    """``m`` with drain ``c`` committed (SlateDB's ``finish_drain_compaction``): the drained
    L0 views and runs leave the segment's tree, whose ``last_compacted_l0_view_id`` advances to
    the newest drained L0. The segment entry itself stays (possibly empty), as in SlateDB.

    :raises InternalError: a source or the segment vanished before the commit.
    """
    try:
        resolve_sources(m, c)
    except InvalidError as exc:
        raise InternalError("drain sources vanished before commit", id=str(c.id)) from exc
    tree = _tree(m, c)
    l0_ids = set(c.l0_view_ids)
    run_ids = set(c.sorted_runs)
    last = next((v.id for v in tree.l0 if v.id in l0_ids), tree.last_compacted_l0_view_id)
    return segments.replace_tree(
        m,
        c.segment,
        l0=[v for v in tree.l0 if v.id not in l0_ids],
        compacted=[r for r in tree.compacted if r.id not in run_ids],
        last_compacted_l0_view_id=last,
    )


def trivial_move_output(m: Manifest, c: Compaction) -> SortedRun | None:
    """Run ``c.destination`` made of ``c``'s source views as they are, in key order, when
    their key ranges are pairwise disjoint (SlateDB's ``trivial_move_output``); ``None`` when
    two overlap (or ``c`` is a drain or has no sources), so its rows must be merged.

    A view's range is its SST's ``[first_entry, last_entry]`` within its visible range; an
    SST without a recorded last entry counts as reaching to the end of the key space.

    :raises InvalidError: a source is not in ``m``.
    """
    if c.spec_type == SPEC_DRAIN_SEGMENT:
        return None
    views, runs = resolve_sources(m, c)
    views = views + [v for r in runs for v in r.ssts]
    if not views or segments.max_overlap(views) > 1:
        return None
    return SortedRun(c.destination, sorted(views, key=_start_key))


def _start_key(view: SstView) -> bytes:
    """Where ``view``'s keys start, for ordering disjoint views (one that can show no key
    sorts first)."""
    eff = segments.effective_range(view)
    kind, key = (BOUND_INCLUDED, None) if eff is None else eff.start_bound
    if key is None:
        return b""
    return bytes(key) if kind == BOUND_INCLUDED else bytes(key) + b"\x00"


def apply_trivial_move(m: Manifest, c: Compaction, run: SortedRun) -> Manifest:
    """``m`` with compaction ``c`` committed as a trivial move: :func:`apply_compaction`'s
    manifest change, with ``run`` (from :func:`trivial_move_output`) as the destination run.

    :raises InternalError: as :func:`apply_compaction`.
    """
    committed = apply_compaction(m, c, [])
    tree = _tree(committed, c)
    runs = sorted([*tree.compacted, run], key=lambda r: r.id, reverse=True)
    return segments.replace_tree(
        committed,
        c.segment,
        l0=list(tree.l0),
        compacted=runs,
        last_compacted_l0_view_id=tree.last_compacted_l0_view_id,
    )


# -- the read-only view ------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactorStateView:
    """A read-only snapshot of compactor state, for schedulers and GC.

    ``compactions`` is ``None`` when the database has no ``.compactions`` file yet (reads never
    create one). Unpacks as ``compactions, manifest = view``.
    """

    compactions: Compactions | None
    manifest: Manifest
    compactions_id: int | None = None
    manifest_id: int = 0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.compactions, self.manifest))

    def recent_compactions(self) -> list[Compaction]:
        """Every compaction in the file (active and the last finished)."""
        return [] if self.compactions is None else list(self.compactions.recent_compactions)

    def active_compactions(self) -> list[Compaction]:
        """The compactions whose sources are in use."""
        return [c for c in self.recent_compactions() if is_active(c)]

    def get(self, compaction_id: Ulid) -> Compaction | None:
        """The compaction with ``compaction_id``, or ``None``."""
        for c in self.recent_compactions():
            if c.id == compaction_id:
                return c
        return None

    def low_watermark(self) -> Ulid | None:
        """The smallest compaction id in the file: a running compaction's outputs are newer
        (GC must not delete unreferenced SSTs at or above it); ``None`` without compactions."""
        ids = [c.id for c in self.recent_compactions()]
        return min(ids) if ids else None


# -- the mutable state ---------------------------------------------------------------------------


class CompactorState:
    """The compactor's in-memory state: the latest manifest it knows and its compactions.

    The compactions held here are authoritative for this compactor (it is their only writer
    apart from submitters, whose new Submitted entries are merged in by
    :meth:`merge_remote_compactions`). No I/O happens here.
    """

    def __init__(
        self,
        manifest_id: int,
        manifest: Manifest,
        compactions_id: int,
        compactions: Compactions,
    ) -> None:
        self.manifest_id = manifest_id
        self.manifest = manifest
        self.compactions_id = compactions_id
        self.compactions = compactions

    def __repr__(self) -> str:
        return (
            f"CompactorState(manifest_id={self.manifest_id}, compactions_id="
            f"{self.compactions_id}, compactions={len(self.compactions.recent_compactions)})"
        )

    def view(self) -> CompactorStateView:
        """A read-only snapshot (SlateDB's ``CompactorStateView::from(&state)``)."""
        return CompactorStateView(
            self.compactions, self.manifest, self.compactions_id, self.manifest_id
        )

    # -- queries --

    def get(self, compaction_id: Ulid) -> Compaction | None:
        """The compaction with ``compaction_id``, or ``None``."""
        for c in self.compactions.recent_compactions:
            if c.id == compaction_id:
                return c
        return None

    def active(self) -> list[Compaction]:
        """The active compactions, by id."""
        return [c for c in self.compactions.recent_compactions if is_active(c)]

    def with_status(self, status: int) -> list[Compaction]:
        """The compactions with ``status``, by id (oldest submission first)."""
        return [c for c in self.compactions.recent_compactions if c.status == status]

    # -- changes --

    def set_manifest(self, manifest_id: int, manifest: Manifest) -> None:
        """Adopt a newer manifest (read or written)."""
        self.manifest_id, self.manifest = manifest_id, manifest

    def set_compactions(self, compactions_id: int, compactions: Compactions) -> None:
        """Adopt the compactions just written (they are ours)."""
        self.compactions_id, self.compactions = compactions_id, compactions

    def merge_remote_compactions(self, compactions_id: int, remote: Compactions) -> None:
        """Take in compactions submitted by others (see :func:`merge_remote_compactions`)."""
        self.compactions_id = compactions_id
        self.compactions = merge_remote_compactions(self.compactions, remote)

    def add(self, compaction: Compaction) -> None:
        """Add a new compaction (SlateDB's ``add_compaction``/``submit``).

        :raises InvalidError: its id is already known, or it is not active.
        """
        if self.get(compaction.id) is not None:
            raise InvalidError("compaction id already exists", id=str(compaction.id))
        if not is_active(compaction):
            raise InvalidError("a new compaction must be active", id=str(compaction.id))
        self.compactions = dataclasses.replace(
            self.compactions,
            recent_compactions=_sorted([*self.compactions.recent_compactions, compaction]),
        )

    def replace(self, compaction: Compaction) -> None:
        """Replace the known compaction with the same id.

        :raises InternalError: unknown id.
        """
        found = False
        out = []
        for c in self.compactions.recent_compactions:
            if c.id == compaction.id:
                c = compaction
                found = True
            out.append(c)
        if not found:
            raise InternalError("unknown compaction", id=str(compaction.id))
        self.compactions = dataclasses.replace(self.compactions, recent_compactions=out)

    def _require(self, compaction_id: Ulid) -> Compaction:
        c = self.get(compaction_id)
        if c is None:
            raise InternalError("unknown compaction", id=str(compaction_id))
        return c

    def set_status(self, compaction_id: Ulid, status: int) -> Compaction:
        """Set a compaction's status; returns the updated compaction."""
        c = dataclasses.replace(self._require(compaction_id), status=status)
        self.replace(c)
        return c

    def record_output(self, compaction_id: Ulid, sst: CompactedSst) -> Compaction:
        """Append one output SST (progress that survives a crash)."""
        c = self._require(compaction_id)
        c = dataclasses.replace(c, output_ssts=[*c.output_ssts, sst])
        self.replace(c)
        return c

    def finish(
        self, compaction_id: Ulid, status: int, outputs: list[CompactedSst] | None = None
    ) -> Compaction:
        """Mark a compaction Completed or Failed (with its final outputs), then keep only the
        active compactions and the last finished one.

        :raises InvalidError: ``status`` is not a finished status.
        """
        if status not in FINISHED_STATUSES:
            raise InvalidError("finish needs Completed or Failed", status=status)
        c = self._require(compaction_id)
        c = dataclasses.replace(
            c, status=status, output_ssts=list(c.output_ssts if outputs is None else outputs)
        )
        self.replace(c)
        self.retain_active_and_last_finished()
        return c

    def retain_active_and_last_finished(self) -> None:
        """Drop finished compactions except the most recent one."""
        self.compactions = retain_active_and_last_finished(self.compactions)


# -- protocols -----------------------------------------------------------------------------------


class CompactorStateReader:
    """Reads views with the compactions-before-manifest ordering."""

    def __init__(self, manifest_store: ManifestStore, compactions_store: CompactionsStore) -> None:
        self.manifest_store = manifest_store
        self.compactions_store = compactions_store

    def read_view(self) -> CompactorStateView:
        """The latest compactions (if any), then the latest manifest.

        :raises DataError: no manifest exists (there is no database).
        """
        latest_c = self.compactions_store.read_latest()
        latest_m = self.manifest_store.read_latest()
        if latest_m is None:
            raise DataError("no manifest found", root=self.manifest_store.root)
        return CompactorStateView(
            compactions=None if latest_c is None else latest_c[1],
            manifest=latest_m[1],
            compactions_id=None if latest_c is None else latest_c[0],
            manifest_id=latest_m[0],
        )


def read_view(
    store: ObjectStore,
    root: str = "",
    *,
    manifest_store: ManifestStore | None = None,
    compactions_store: CompactionsStore | None = None,
) -> CompactorStateView:
    """A consistent read-only view for GC and tools: ``compactions, manifest = read_view(...)``.

    Reads the latest ``.compactions`` file *before* the latest manifest and never creates
    either.

    :raises DataError: no manifest exists.
    """
    ms = manifest_store if manifest_store is not None else ManifestStore(store, root)
    cs = compactions_store if compactions_store is not None else CompactionsStore(store, root)
    return CompactorStateReader(ms, cs).read_view()


class CompactorStateWriter:
    """The fenced writer of compactor state: manifest first, then compactions.

    Make one with :meth:`open`. :attr:`state` is the in-memory state; :attr:`manifest` and
    :attr:`compactions` are the fenceable handles (their ``refresh`` raises
    ``ClosedError(reason="fenced")`` once a newer compactor exists).
    """

    def __init__(
        self,
        state: CompactorState,
        manifest: FenceableManifest,
        compactions: FenceableCompactions,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        wall_clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Any = None,
        distributed: bool = False,
    ) -> None:
        self.state = state
        #: RFC-0025 coordinator: merge with :func:`merge_worker_compactions`.
        self.distributed = distributed
        self.manifest = manifest
        self.compactions = compactions
        self.timeout = timeout
        self.wall_clock = wall_clock if wall_clock is not None else SystemClock()
        self.monotonic = monotonic
        self.rand = rand

    def __repr__(self) -> str:
        return f"CompactorStateWriter(epoch={self.epoch}, state={self.state!r})"

    @property
    def epoch(self) -> int:
        """The compactor epoch this writer claimed."""
        return self.manifest.epoch

    @property
    def fenced(self) -> bool:
        """Whether a newer compactor has been detected."""
        return self.manifest.fenced or self.compactions.fenced

    @classmethod
    def open(
        cls,
        manifest_store: ManifestStore,
        compactions_store: CompactionsStore,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        wall_clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Any = None,
        distributed: bool = False,
    ) -> CompactorStateWriter:
        """Fence (manifest, then compactions), reset Running to Submitted, trim, persist.

        ``distributed=True`` (a coordinator of remote workers) recovers as RFC-0025 says
        instead: workers' jobs are left to them; a Running job without a worker is Scheduled.

        :raises DataError: the database has no manifest (a compactor never creates one).
        :raises ClosedError: ``reason="fenced"``: a newer compactor won the race.
        """
        stored_m = StoredManifest.load(manifest_store)
        fm = FenceableManifest.init_compactor(stored_m, timeout=timeout, clock=monotonic)
        stored_c = StoredCompactions.try_load(compactions_store)
        if stored_c is None:
            logger.info("creating new compactions file compactor_epoch=0")
            stored_c = StoredCompactions.create_or_load(compactions_store)
        fc = FenceableCompactions.init_with_epoch(
            stored_c, fm.epoch, timeout=timeout, clock=monotonic
        )

        def recover(c: Compactions) -> Compactions:
            if distributed:
                out = [
                    dataclasses.replace(
                        x, status=STATUS_SCHEDULED, worker_id=None, last_heartbeat_ms=None
                    )
                    if x.status == STATUS_RUNNING and not x.worker_id
                    else x
                    for x in c.recent_compactions
                ]
                return retain_active_and_last_finished(
                    dataclasses.replace(c, recent_compactions=out)
                )
            return retain_active_and_last_finished(reset_running(c))

        # Persist recovery state before any refresh() can overwrite it.
        written = fc.update(recover, timeout=timeout, clock=monotonic)
        state = CompactorState(fm.id, fm.manifest, fc.id, written)
        return cls(
            state,
            fm,
            fc,
            timeout=timeout,
            wall_clock=wall_clock,
            monotonic=monotonic,
            rand=rand,
            distributed=distributed,
        )

    # -- reads --

    def load_manifest(self) -> Manifest:
        """Refresh the manifest (checking the epoch) into :attr:`state`."""
        m = self.manifest.refresh()
        self.state.set_manifest(self.manifest.id, m)
        return m

    def load_compactions(self) -> Compactions:
        """Refresh the compactions file (checking the epoch) and merge in compactions that
        others submitted."""
        remote = self.compactions.refresh()
        if self.distributed:
            self.state.set_compactions(
                self.compactions.id, merge_worker_compactions(self.state.compactions, remote)
            )
        else:
            self.state.merge_remote_compactions(self.compactions.id, remote)
        return self.state.compactions

    def refresh(self) -> None:
        """Compactions first, then the manifest (the read ordering rule)."""
        self.load_compactions()
        self.load_manifest()

    # -- writes --

    def write_checkpoint(self, lifetime_s: float | None) -> uuid.UUID:
        """Add a checkpoint pinning the version written now (as its own manifest version).

        :returns: the checkpoint id.
        """
        now_s = self.wall_clock.now_ms() // 1000
        cid = uuid.UUID(int=self.rand.getrandbits(128), version=4) if self.rand else uuid.uuid4()

        def mutate(m: Manifest, next_id: int) -> Manifest:
            return add_checkpoint(
                m, manifest_id=next_id, now_s=now_s, lifetime_s=lifetime_s, checkpoint_id=cid
            )[0]

        m = self.manifest.update(mutate, timeout=self.timeout, clock=self.monotonic)
        self.state.set_manifest(self.manifest.id, m)
        return cid

    def write_manifest_safely(
        self, mutate: Mutation, *, checkpoint_lifetime: float | None = 900.0
    ) -> Manifest:
        """Refresh, write a checkpoint living ``checkpoint_lifetime`` seconds, then apply
        ``mutate``, retrying conflicts by reloading and re-applying it.

        ``checkpoint_lifetime=None`` writes no checkpoint: only for updates that drop no SST.

        :raises ClosedError: ``reason="fenced"``.
        """
        self.load_manifest()
        if checkpoint_lifetime is not None:
            self.write_checkpoint(checkpoint_lifetime)
        m = self.manifest.update(mutate, timeout=self.timeout, clock=self.monotonic)
        self.state.set_manifest(self.manifest.id, m)
        return m

    def write_compactions_safely(self) -> Compactions:
        """Persist :attr:`state`'s compactions (trimmed to active + last finished) as a new
        version, merged over the latest one so others' submissions survive; retried on
        conflicts (a refresh on conflict surfaces fencing).

        :raises ClosedError: ``reason="fenced"``.
        """
        self.state.retain_active_and_last_finished()
        local = self.state.compactions
        base_id = self.state.compactions_id

        def mutate(remote: Compactions) -> Compactions:
            if not self.distributed:
                return merge_remote_compactions(local, remote)
            if self.compactions.id == base_id:
                return local  # nobody wrote since we read: our transitions stand
            # a worker wrote meanwhile: adopt its transitions (a reclaim of a job that just
            # heartbeated is undone, a Compacted report is kept)
            return retain_active_and_last_finished(merge_worker_compactions(local, remote))

        written = self.compactions.update(mutate, timeout=self.timeout, clock=self.monotonic)
        self.state.set_compactions(self.compactions.id, written)
        return written

    def write_state_safely(
        self, mutate: Mutation, *, checkpoint_lifetime: float | None = 900.0
    ) -> None:
        """Manifest first (with its checkpoint), then compactions."""
        self.write_manifest_safely(mutate, checkpoint_lifetime=checkpoint_lifetime)
        self.write_compactions_safely()
