"""Which objects garbage collection may delete: pure functions over an immutable state view.

Durability is the product: a garbage collector that deletes one file a reader can still reach
loses data, while one that keeps a file too long only costs storage. Every rule below is
therefore "keep unless *proven* unreachable", and each bound exists because some other process
(the writer, a compactor, a reader pinned to a checkpoint) may still reach the file through
state the collector cannot see yet. The rules are SlateDB 0.12.1's (``garbage_collector/*.rs``),
with the one deviation noted under WAL SSTs.

Nothing here does I/O: :class:`GcStateView` is read by :mod:`shale_gc.collector` (compactions
*before* the manifest, see below) and the ``select_*`` functions decide, so the rules can be
simulated and property-tested without storage. Each returns a :class:`Selection`: the objects to
delete and, for every other object, why it stays (a ``KEEP_*`` text). "Older than ``min_age``"
is strict, as in SlateDB: ``now - last_modified > min_age``.

**WAL SSTs** (``wal/<id>.sst``, zero-length fence objects included). Delete ``id`` only if

- ``id < replay_after_wal_id`` of the latest manifest: WALs from ``replay_after_wal_id + 1``
  on are replayed when the writer reopens, so they hold data that is in no SST yet; the id equal
  to ``replay_after_wal_id`` is kept too, as SlateDB does;
- ``id <= replay_after_wal_id`` of every live checkpoint's manifest: opening or cloning the
  database at a checkpoint replays the WALs after *its* ``replay_after_wal_id``. SlateDB bounds
  this range above by the checkpoint's ``wal_id_last_seen``; shale keeps every WAL after it,
  because ``wal_id_last_seen`` is only advanced by L0 flushes and can lag the WALs that were
  durable when the checkpoint was taken (a ``scope="durable"`` checkpoint). The cost is that a
  long-lived checkpoint holds on to later WALs until it expires or is deleted;
- ``id < wal_id`` of every live change-stream consumer cursor (``shale-consumers/``, shale
  only, :mod:`shale.meta.consumers`): a named consumer of ``shale.changes`` has not read the
  changes from that file on. A cursor is live for its ``lifetime_s`` after its last commit
  (default 7 days); a stale one pins nothing, and its consumer gets ``ChangesGoneError`` when
  it comes back too late. These WALs are all below ``replay_after_wal_id``, so a pin never
  holds the writer back -- it only costs storage;
- it is older than ``min_age`` (belt and braces against clock-free races, as SlateDB).

WAL ids only grow, and a WAL becomes garbage only when a manifest advances
``replay_after_wal_id`` past it, so a WAL written after the state was read is always kept.
A manifest that records a separate WAL store (``wal_object_store_uri``) disables WAL GC: the
WALs it needs are not in this store.

**Compacted SSTs** (``compacted/<ULID>.sst``: L0 flushes and sorted-run members). Delete only
if the SST is referenced by none of: the latest manifest (L0, sorted runs, segments), any live
checkpoint's manifest, any active compaction in the ``.compactions`` file (its recorded
outputs and its sources); is not listed as another database's SST by a clone source
(``external_dbs``) of those manifests -- such ids live under the source's path and belong to
it, so one met here is never ours to delete; **and** its ULID timestamp is below all of

- ``now - min_age``: files younger than that may belong to an operation in flight;
- the *compaction low-watermark*, the earliest ULID of any compaction in the latest
  ``.compactions`` file: a compactor uploads its outputs *before* the manifest that references
  them, and every output's ULID is newer than its compaction's id, so nothing at or above the
  watermark can be proven to be a finished (committed or abandoned) compaction's leftover. The
  compactions file is read **before** the manifest: read the other way round, a compaction
  could commit and leave the file in between, and the collector would see neither the outputs
  in the manifest nor the compaction that protects them. When no compaction is recorded at all
  (no file, or an empty one) the watermark is the Unix epoch and no compacted SST is deleted --
  SlateDB's conservative choice: the only garbage such a database can have is an upload orphaned
  by a crash, which is cheap to keep;
- the *newest L0* of the latest manifest, over every tree (root and segments), per tree its
  newest L0 or else its ``last_compacted_l0_view_id`` (else the Unix epoch): the writer uploads
  an L0 SST *before* publishing it in a manifest, and L0 ids grow, so an SST at least as new as
  the newest published L0 may be the upload in flight.

**Manifests**. Never the latest version (nor anything newer that appeared meanwhile); never a
version a live checkpoint pins (its readers and clones read it by id); otherwise delete once
older than ``min_age``. The GC boundary file is advanced past the deleted ids first (see
:meth:`shale.meta.manifest_store.ManifestStore.advance_boundary`), so a stale writer can never
re-create a deleted id and have it mistaken for the latest.

**.compactions files**. Never the latest version; otherwise delete once older than ``min_age``.
Only the latest record matters to compactors (epoch, active jobs) and to the watermark above.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from shale.spi import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    Checkpoint,
    Compaction,
    Compactions,
    ConsumerCursor,
    Manifest,
    SstView,
    Ulid,
    segments,
)
from shale_gc.report import GcObject

__all__ = [
    "KEEP_ACTIVE_COMPACTION",
    "KEEP_CHECKPOINT_REFERENCE",
    "KEEP_CHECKPOINT_WAL",
    "KEEP_CONSUMER",
    "KEEP_EXTERNAL",
    "KEEP_LATEST",
    "KEEP_LOW_WATERMARK",
    "KEEP_NEWEST_L0",
    "KEEP_PINNED",
    "KEEP_REFERENCED",
    "KEEP_TOO_YOUNG",
    "KEEP_UNREPLAYED",
    "GcStateView",
    "Selection",
    "compaction_low_watermark_ms",
    "newest_l0_ms",
    "referenced_ssts",
    "select_compacted",
    "select_compactions",
    "select_manifests",
    "select_wal",
]

KEEP_LATEST = "latest version"
KEEP_PINNED = "pinned by a live checkpoint"
KEEP_TOO_YOUNG = "younger than min_age"
KEEP_UNREPLAYED = "not yet covered by an L0 (id >= replay_after_wal_id of the latest manifest)"
KEEP_CHECKPOINT_WAL = "replayed from a live checkpoint (id > its manifest's replay_after_wal_id)"
KEEP_CONSUMER = "pinned by a change-stream consumer (id >= its cursor's wal_id)"
KEEP_REFERENCED = "referenced by the latest manifest"
KEEP_CHECKPOINT_REFERENCE = "referenced by a live checkpoint's manifest"
KEEP_ACTIVE_COMPACTION = "source or output of an active compaction"
KEEP_LOW_WATERMARK = "not older than the compaction low-watermark (may be an uncommitted output)"
KEEP_NEWEST_L0 = "not older than the newest L0 (may be an unpublished flush)"
KEEP_EXTERNAL = "owned by the database this one was cloned from (external_dbs)"

#: Statuses after which a compaction no longer writes or reads anything.
_FINISHED = frozenset((STATUS_COMPLETED, STATUS_FAILED))


class Selection(NamedTuple):
    """The decision for one directory: objects to delete, and every other object with why."""

    delete: list[GcObject]
    keep: list[tuple[GcObject, str]]


@dataclass(frozen=True)
class GcStateView:
    """The database state a collection round decides on (read compactions first).

    :ivar manifest_id: id of the latest manifest.
    :ivar manifest: the latest manifest (expired checkpoints already removed).
    :ivar checkpoint_manifests: for each manifest id a live checkpoint of :attr:`manifest` pins,
        that manifest (the latest itself when a checkpoint pins it).
    :ivar compactions_id: id of the latest ``.compactions`` file, ``None`` when there is none.
    :ivar compactions: its contents, ``None`` when there is none.
    :ivar consumers: the change-stream consumer cursors (live or not: the rule decides).
    """

    manifest_id: int
    manifest: Manifest
    checkpoint_manifests: Mapping[int, Manifest] = field(default_factory=dict)
    compactions_id: int | None = None
    compactions: Compactions | None = None
    consumers: tuple[ConsumerCursor, ...] = ()

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """The live checkpoints (those of the latest manifest)."""
        return list(self.manifest.checkpoints)


# -- helpers -------------------------------------------------------------------------------


def _older(obj: GcObject, now_s: float, min_age_s: float) -> bool:
    return now_s - obj.last_modified > min_age_s


def _views(m: Manifest) -> Iterable[SstView]:
    return segments.all_views(m)


def referenced_ssts(m: Manifest) -> set[Ulid]:
    """Ids of every SST file a manifest reaches: L0, sorted runs, segments (view and SST ids)."""
    out: set[Ulid] = set()
    for v in _views(m):
        out.add(v.sst.id)
        out.add(v.id)
    return out


def _active(c: Compactions | None) -> list[Compaction]:
    if c is None:
        return []
    return [x for x in c.recent_compactions if x.status not in _FINISHED]


def _compaction_ssts(c: Compaction, manifests: Iterable[Manifest]) -> set[Ulid]:
    """SSTs an active compaction reads or has written: outputs, L0 sources, source runs."""
    out = {s.id for s in c.output_ssts}
    if c.ctx is not None:
        for sub in c.ctx.subcompactions:
            out.update(s.id for s in sub.output_ssts)
    out.update(c.l0_view_ids)
    runs = set(c.sorted_runs)
    for m in manifests:
        views_by_id = {v.id: v for v in _views(m)}
        for vid in c.l0_view_ids:
            v = views_by_id.get(vid)
            if v is not None:
                out.add(v.sst.id)
        tree = segments.tree(m, c.segment)
        if tree is not None:
            for run in tree.compacted:
                if run.id in runs:
                    out.update(v.sst.id for v in run.ssts)
                    out.update(v.id for v in run.ssts)
    return out


def compaction_low_watermark_ms(c: Compactions | None) -> int:
    """The earliest ULID timestamp (ms) of any compaction in the file (active or the retained
    finished one); 0 (the Unix epoch: delete nothing) when there is no file or no compaction."""
    if c is None or not c.recent_compactions:
        return 0
    return min(x.id.timestamp_ms for x in c.recent_compactions)


def newest_l0_ms(m: Manifest) -> int:
    """The newest published L0's ULID timestamp (ms) over every tree (root and segments): per
    tree its newest L0 SST, or, with no L0 left, its last compacted L0 view; 0 when no tree has
    either. SlateDB's ``newest_l0_dt``: each of these ids was published, and an L0 upload not
    yet published is newer than all of them."""
    stamps = []
    for t in segments.trees(m):
        if t.l0:
            stamps.append(max(v.sst.id.timestamp_ms for v in t.l0))
        elif t.last_compacted_l0_view_id is not None:
            stamps.append(t.last_compacted_l0_view_id.timestamp_ms)
    return max(stamps, default=0)


# -- selections ----------------------------------------------------------------------------


def select_wal(
    objects: Sequence[GcObject], view: GcStateView, *, now_s: float, min_age_s: float
) -> Selection:
    """Decide the WAL SSTs (see the module docstring).

    :param objects: the listed ``wal/`` objects (``id`` = WAL id).
    :param now_s: the collector's clock, seconds since the epoch.
    :param min_age_s: only objects older than this are deleted.
    """
    latest_floor = view.manifest.replay_after_wal_id
    cp_floors = [m.replay_after_wal_id for m in view.checkpoint_manifests.values()]
    cp_floor = min(cp_floors) if cp_floors else None
    now_ms = int(now_s * 1000)
    pins = [c.wal_id for c in view.consumers if c.live(now_ms)]
    pin_floor = min(pins) if pins else None
    delete: list[GcObject] = []
    keep: list[tuple[GcObject, str]] = []
    for obj in objects:
        wal_id = obj.id
        assert isinstance(wal_id, int)
        if wal_id >= latest_floor:
            keep.append((obj, KEEP_UNREPLAYED))
        elif cp_floor is not None and wal_id > cp_floor:
            keep.append((obj, KEEP_CHECKPOINT_WAL))
        elif pin_floor is not None and wal_id >= pin_floor:
            keep.append((obj, KEEP_CONSUMER))
        elif not _older(obj, now_s, min_age_s):
            keep.append((obj, KEEP_TOO_YOUNG))
        else:
            delete.append(obj)
    return Selection(delete, keep)


def select_compacted(
    objects: Sequence[GcObject], view: GcStateView, *, now_s: float, min_age_s: float
) -> Selection:
    """Decide the compacted SSTs (see the module docstring).

    :param objects: the listed ``compacted/`` objects (``id`` = the SST's :class:`Ulid`).
    """
    latest_refs = referenced_ssts(view.manifest)
    cp_refs: set[Ulid] = set()
    for m in view.checkpoint_manifests.values():
        cp_refs |= referenced_ssts(m)
    manifests = [view.manifest, *view.checkpoint_manifests.values()]
    external = {i for m in manifests for ext in m.external_dbs for i in ext.sst_ids}
    compaction_refs: set[Ulid] = set()
    for c in _active(view.compactions):
        compaction_refs |= _compaction_ssts(c, manifests)
    age_cutoff_ms = int(now_s * 1000) - int(min_age_s * 1000)
    watermark_ms = compaction_low_watermark_ms(view.compactions)
    l0_ms = newest_l0_ms(view.manifest)
    delete: list[GcObject] = []
    keep: list[tuple[GcObject, str]] = []
    for obj in objects:
        sst_id = obj.id
        assert isinstance(sst_id, Ulid)
        ts = sst_id.timestamp_ms
        if sst_id in latest_refs:
            keep.append((obj, KEEP_REFERENCED))
        elif sst_id in cp_refs:
            keep.append((obj, KEEP_CHECKPOINT_REFERENCE))
        elif sst_id in compaction_refs:
            keep.append((obj, KEEP_ACTIVE_COMPACTION))
        elif sst_id in external:
            keep.append((obj, KEEP_EXTERNAL))
        elif ts >= age_cutoff_ms:
            keep.append((obj, KEEP_TOO_YOUNG))
        elif ts >= watermark_ms:
            keep.append((obj, KEEP_LOW_WATERMARK))
        elif ts >= l0_ms:
            keep.append((obj, KEEP_NEWEST_L0))
        else:
            delete.append(obj)
    return Selection(delete, keep)


def _select_versions(
    objects: Sequence[GcObject],
    latest_id: int | None,
    pinned: Mapping[int, uuid.UUID],
    now_s: float,
    min_age_s: float,
) -> Selection:
    top = max((o.id for o in objects if isinstance(o.id, int)), default=None)
    delete: list[GcObject] = []
    keep: list[tuple[GcObject, str]] = []
    for obj in objects:
        oid = obj.id
        assert isinstance(oid, int)
        if (oid >= latest_id) if latest_id is not None else (oid == top):
            keep.append((obj, KEEP_LATEST))
        elif oid in pinned:
            keep.append((obj, KEEP_PINNED))
        elif not _older(obj, now_s, min_age_s):
            keep.append((obj, KEEP_TOO_YOUNG))
        else:
            delete.append(obj)
    return Selection(delete, keep)


def select_manifests(
    objects: Sequence[GcObject], view: GcStateView, *, now_s: float, min_age_s: float
) -> Selection:
    """Decide the manifest versions: keep the latest (and the newest listed), those pinned by
    live checkpoints, and those not older than ``min_age``.

    :param objects: the listed ``manifest/`` objects (``id`` = manifest id).
    """
    pinned = {cp.manifest_id: cp.id for cp in view.manifest.checkpoints}
    return _select_versions(objects, view.manifest_id, pinned, now_s, min_age_s)


def select_compactions(
    objects: Sequence[GcObject], view: GcStateView, *, now_s: float, min_age_s: float
) -> Selection:
    """Decide the ``.compactions`` versions: keep the latest (and the newest listed) and those
    not older than ``min_age``.

    :param objects: the listed ``compactions/`` objects (``id`` = compactions id).
    """
    return _select_versions(objects, view.compactions_id, {}, now_s, min_age_s)
