"""Creating a clone: a new database whose manifest references its source's SSTs.

SlateDB's protocol (``clone.rs``), which shale follows step by step so that either package can
finish a clone the other started:

1. **Pin the source.** Use the checkpoint the caller names (it must exist in the source's
   latest manifest), or create a short-lived one (300 s, SlateDB's). Read the manifest it pins
   and, if a projection ``[start, end)`` or the per-segment ``segment_filter`` /
   ``segment_projection`` callbacks are given, narrow it (:mod:`shale.meta.projection`).
2. **Write the clone's manifest version 1** with ``initialized = false``: the source's state
   with no checkpoints, the source's epochs, and ``external_dbs`` = each clone source the
   source itself has (re-pinned through *its* final checkpoint) plus the source, listing every
   SST id the source owns. Each entry gets a fresh ``final_checkpoint_id``. Created only if
   absent: a concurrent cloner's version 1 wins and is finished instead.
3. **Create each final checkpoint** in the database the entry names: never expiring, pinning
   the entry's source checkpoint's manifest. It keeps the SSTs the clone reads alive in the
   source for as long as the clone references it (:mod:`shale.meta.detach` removes it).
4. **Copy the WAL SSTs** the pinned manifest still replays (``replay_after_wal_id + 1`` up to
   the ``wal_id_last_seen`` step 2 recorded) into the clone's ``wal/``.
5. **Set ``initialized = true``** in a new version: the clone is a database from now on.

Crash safety: each step is idempotent and the clone's manifest records where it stands. Run
again after a crash (same source), :func:`create_clone` finishes an uninitialized clone from
what its manifest recorded (already projected: a projection or callbacks given again are not
re-applied, so they cannot change what the clone holds) -- creating the final checkpoints from
the source checkpoint if step 3 had not happened (:class:`~shale.errors.DataError` if that one
expired meanwhile: delete the partial clone and clone again), copying the WALs both
checkpoints keep -- and returns an initialized clone of the same source unchanged
(``created=False``), as SlateDB's retry does. Anything else already at the target is refused.
A crash before step 2 leaves only the short-lived source checkpoint, which expires by itself.

What is refused before anything is written (:class:`~shale.errors.InvalidError`): identical or
nested paths, a missing or uninitialized source, a source whose WAL lives in a separate object
store (SlateDB refuses it too), an unknown checkpoint id, a database (or a clone of another
source) at the target, a ``segment_projection`` range outside its segment (or empty), and a
projection (a range or callbacks) while the source's WAL still holds rows no SST has (SlateDB's
``InvalidCloneSourceWithWal``: WAL files cannot be projected; flush the source first). Without
a named checkpoint, the projection is first tried on the source's latest manifest, before the
short-lived checkpoint is made (so the callbacks may be asked twice per prefix). A projection
check can only fail after that checkpoint exists when a writer changes the source between the
two checks; that checkpoint expires by itself.

Paths are object keys relative to the store root (FORMAT.md 2): source and clone must live in
one object store; a source elsewhere (another bucket) cannot be referenced.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import NamedTuple

from shale import ids
from shale.errors import DataError, InvalidError
from shale.fbs.manifest import BytesRange, ExternalDb, Manifest
from shale.meta.locator import manifest_views
from shale.meta.manifest_store import (
    ManifestConflict,
    ManifestStore,
    StoredManifest,
    add_checkpoint,
    find_checkpoint,
)
from shale.meta.projection import (
    SegmentFilter,
    SegmentProjection,
    check_segment_callbacks,
    key_range,
    project_manifest,
)
from shale.objstore.protocol import ObjectNotFound, ObjectStore
from shale.sst.table import SsTable

__all__ = [
    "SOURCE_CHECKPOINT_LIFETIME_S",
    "CloneResult",
    "check_clone_paths",
    "create_clone",
    "final_checkpoint_name",
]

logger = logging.getLogger(__name__)

#: Lifetime of the checkpoint made in the source when the caller names none (SlateDB: 300 s).
SOURCE_CHECKPOINT_LIFETIME_S = 300


class CloneResult(NamedTuple):
    """What :func:`create_clone` did.

    :ivar path: the clone's path in the store.
    :ivar source: the source's path in the store.
    :ivar source_checkpoint_id: the checkpoint of the source the clone was made from.
    :ivar final_checkpoint_id: the never-expiring checkpoint pinning it in the source.
    :ivar manifest_id: the clone's manifest version that set ``initialized``.
    :ivar created: ``False`` when the target already was a finished clone of this source.
    """

    path: str
    source: str
    source_checkpoint_id: uuid.UUID
    final_checkpoint_id: uuid.UUID | None
    manifest_id: int
    created: bool


def final_checkpoint_name(clone_path: str) -> str:
    """The name shale gives the checkpoint that pins a clone in a source (SlateDB leaves it
    unnamed; a name makes ``list_checkpoints`` say who holds it)."""
    return f"clone:{clone_path}"


def _norm(path: str, what: str) -> str:
    if not isinstance(path, str) or "\x00" in path or "\\" in path:
        raise InvalidError(f"{what} must be a str path without NUL or backslash", path=path)
    norm = path.strip("/")
    if any(p in (".", "..") for p in norm.split("/")) or "//" in norm:
        raise InvalidError(f"{what} must not contain empty, '.' or '..' segments", path=path)
    return norm


def check_clone_paths(source: str, target: str) -> tuple[str, str]:
    """The normalized ``(source, target)`` store paths.

    :raises InvalidError: identical paths (SlateDB's ``IdenticalClonePaths``), one inside the
        other (a delete or GC of the outer one would reach into the inner), or a malformed path.
    """
    src, dst = _norm(source, "clone source path"), _norm(target, "clone path")
    if src == dst:
        raise InvalidError("a clone's path must differ from its source's", path=dst)
    if not src or not dst or dst.startswith(src + "/") or src.startswith(dst + "/"):
        raise InvalidError(
            "a clone and its source must not lie one inside the other", source=src, path=dst
        )
    return src, dst


def _listed_wal_ids(store: ObjectStore, root: str) -> list[int]:
    found = (ids.parse_numbered(m.key, ".sst") for m in store.list(ids.dir_path(root, "wal")))
    return sorted(i for i in found if i is not None)


def _wal_upper(store: ObjectStore, root: str, m: Manifest) -> int:
    """The last WAL id a clone of ``m`` copies: ``wal_id_last_seen``, or the newest WAL in the
    source when that is later (the manifest records WALs only at L0 flushes)."""
    return max([m.wal_id_last_seen, *_listed_wal_ids(store, root)])


_PROJECTED_WAL = (
    "cannot project a clone of a source whose WAL holds rows not yet in an SST "
    "(a WAL file cannot be projected)"
)


def _check_no_wal_rows(
    store: ObjectStore,
    root: str,
    m: Manifest,
    upper: int,
    transformer: object,
    why: str = _PROJECTED_WAL,
) -> None:
    """SlateDB's ``validate_no_data_wal``: refuse when a WAL the clone would need holds rows
    (a fence, an empty WAL, is fine)."""
    for wal_id in range(m.replay_after_wal_id + 1, upper + 1):
        try:
            data = store.get(ids.wal_path(root, wal_id))
        except ObjectNotFound:
            continue
        if data and SsTable.from_bytes(data, transformer=transformer).rows():
            raise InvalidError(
                f"{why}; flush the source's memtable first",
                source=root,
                wal_id=wal_id,
            )


def _owned_sst_ids(m: Manifest) -> list[ids.Ulid]:
    external = {i for ext in m.external_dbs for i in ext.sst_ids}
    seen: dict[ids.Ulid, None] = {}
    for view in manifest_views(m):
        if view.sst.id not in external:
            seen.setdefault(view.sst.id)
    return list(seen)


def _clone_manifest(m: Manifest, source: str, source_cp: uuid.UUID, upper: int) -> Manifest:
    """SlateDB's ``Manifest::cloned``: ``m`` (the pinned, maybe projected, source manifest)
    as a clone's uninitialized first version."""
    external = []
    for ext in m.external_dbs:
        pin = ext.final_checkpoint_id or ext.source_checkpoint_id
        external.append(
            dataclasses.replace(ext, source_checkpoint_id=pin, final_checkpoint_id=None)
        )
    external.append(ExternalDb(source, source_cp, None, _owned_sst_ids(m)))
    return dataclasses.replace(
        m,
        initialized=False,
        checkpoints=[],
        wal_id_last_seen=upper,
        external_dbs=[dataclasses.replace(e, final_checkpoint_id=uuid.uuid4()) for e in external],
    )


def source_checkpoint(src: StoredManifest, now_s: int) -> uuid.UUID:
    """A new checkpoint of ``src``'s latest manifest for a clone to pin, expiring after
    ``SOURCE_CHECKPOINT_LIFETIME_S`` (the clone adds its own final one); its id."""
    made: list[uuid.UUID] = []

    def mutate(cur: Manifest, next_id: int) -> Manifest:
        new, cp = add_checkpoint(
            cur, manifest_id=next_id, now_s=now_s, lifetime_s=SOURCE_CHECKPOINT_LIFETIME_S
        )
        made[:] = [cp.id]
        return new

    src.update(mutate)
    return made[0]


def _load_source(store: ObjectStore, source: str, fmt: int) -> StoredManifest:
    stored = StoredManifest.try_load(ManifestStore(store, source, format_version=fmt))
    if stored is None:
        raise InvalidError("no database at the clone source (no manifest found)", source=source)
    if not stored.manifest.initialized:
        raise InvalidError("the clone source is itself an unfinished clone", source=source)
    if stored.manifest.wal_object_store_uri is not None:
        raise InvalidError(
            "cannot clone a database whose WAL is in a separate object store (as SlateDB)",
            source=source,
        )
    return stored


def _entry_for(m: Manifest, source: str) -> ExternalDb | None:
    for ext in reversed(m.external_dbs):
        if ext.path.strip("/") == source:
            return ext
    return None


def _pin_finals(
    store: ObjectStore, m: Manifest, target: str, now_s: int, fmt: int, timeout: float
) -> None:
    """Step 3: each entry's final checkpoint exists in the database it names."""
    for ext in m.external_dbs:
        final = ext.final_checkpoint_id
        if final is None:
            continue
        stored = StoredManifest.try_load(ManifestStore(store, ext.path, format_version=fmt))
        if stored is None:
            raise DataError("a database this clone references has no manifest", path=ext.path)

        def mutate(cur: Manifest, next_id: int, ext: ExternalDb = ext) -> Manifest | None:
            if find_checkpoint(cur, ext.final_checkpoint_id) is not None:  # type: ignore[arg-type]
                return None
            if find_checkpoint(cur, ext.source_checkpoint_id) is None:
                raise DataError(
                    "the checkpoint an unfinished clone was made from is gone from its source; "
                    "delete the clone (Admin.delete_db) and clone again",
                    path=ext.path,
                    checkpoint_id=str(ext.source_checkpoint_id),
                )
            new, _ = add_checkpoint(
                cur,
                manifest_id=next_id,
                now_s=now_s,
                checkpoint_id=ext.final_checkpoint_id,
                source=ext.source_checkpoint_id,
                name=final_checkpoint_name(target),
            )
            return new

        stored.update(mutate, timeout=timeout)


def _check_finals(store: ObjectStore, m: Manifest, target: str, fmt: int) -> None:
    """An existing clone is the clone asked for only while its sources still pin it."""
    for ext in m.external_dbs:
        if ext.final_checkpoint_id is None:
            continue
        found = ManifestStore(store, ext.path, format_version=fmt).read_latest()
        if found is None or find_checkpoint(found[1], ext.final_checkpoint_id) is None:
            raise InvalidError(
                "a database already exists at the clone path (a clone whose source no longer "
                "pins it)",
                path=target,
                source=ext.path,
            )


def _copy_wals(store: ObjectStore, source: str, target: str, m: Manifest) -> None:
    """Step 4: the WAL SSTs ``m`` replays, copied from the source (idempotent)."""
    for wal_id in range(m.replay_after_wal_id + 1, m.wal_id_last_seen + 1):
        try:
            data = store.get(ids.wal_path(source, wal_id))
        except ObjectNotFound:
            continue  # never written (a WAL id is claimed by create-if-absent) or a gap
        store.put(ids.wal_path(target, wal_id), data)


def create_clone(
    store: ObjectStore,
    source: str,
    target: str,
    *,
    now_s: int,
    checkpoint: uuid.UUID | None = None,
    projection: tuple[bytes | None, bytes | None] | None = None,
    segment_filter: SegmentFilter | None = None,
    segment_projection: SegmentProjection | None = None,
    format_version: int = 2,
    transformer: object = None,
    timeout: float = 300.0,
) -> CloneResult:
    """Clone the database at ``source`` to ``target`` (both paths in ``store``); see the
    module docstring for the steps and what is refused.

    :param now_s: the current Unix time in seconds (checkpoint create times).
    :param checkpoint: clone the manifest this checkpoint of the source pins (default: a new
        short-lived checkpoint of its latest manifest).
    :param projection: ``(start, end)``: only keys in ``[start, end)`` (``None``: unbounded).
    :param segment_filter: ``prefix -> bool``: ``False`` drops the tree of that segment (the
        root tree is asked with ``b""``).
    :param segment_projection: ``prefix -> (start, end)``: the range kept of that segment's
        tree, within ``[prefix, prefix++)`` (intersected with ``projection``).
    :param format_version: the manifest wire version written.
    :param transformer: the block transformer that reads the source's WAL SSTs (projection).
    :raises InvalidError: see the module docstring.
    :raises DataError: a resumed clone whose pinning checkpoints are both gone.
    """
    source, target = check_clone_paths(source, target)
    rng = None if projection is None else key_range(*projection)
    check_segment_callbacks(segment_filter, segment_projection)
    proj = _Projection(rng, segment_filter, segment_projection)
    tms = ManifestStore(store, target, format_version=format_version)
    existing = StoredManifest.try_load(tms)
    if existing is None:
        try:
            existing = _start(store, source, target, tms, checkpoint, proj, now_s, transformer)
        except ManifestConflict:
            existing = StoredManifest.load(tms)  # a concurrent cloner won: finish or check it
        else:
            return _finish(store, source, target, existing, now_s, format_version, timeout, True)
    entry = _entry_for(existing.manifest, source)
    if entry is None or (checkpoint is not None and entry.source_checkpoint_id != checkpoint):
        raise InvalidError(
            "a database already exists at the clone path"
            + ("" if entry is None else " (a clone of this source from another checkpoint)"),
            path=target,
        )
    _load_source(store, source, format_version)
    return _finish(store, source, target, existing, now_s, format_version, timeout, False)


class _Projection(NamedTuple):
    """What a clone narrows the source to: a global range and the per-segment callbacks."""

    rng: BytesRange | None
    segment_filter: SegmentFilter | None
    segment_projection: SegmentProjection | None

    def requested(self) -> bool:
        return any(x is not None for x in self)

    def apply(self, m: Manifest) -> Manifest:
        return project_manifest(
            m,
            self.rng,
            segment_filter=self.segment_filter,
            segment_projection=self.segment_projection,
        )


def _start(
    store: ObjectStore,
    source: str,
    target: str,
    tms: ManifestStore,
    checkpoint: uuid.UUID | None,
    proj: _Projection | None,
    now_s: int,
    transformer: object,
) -> StoredManifest:
    """Steps 1 and 2; raises :class:`ManifestConflict` when version 1 appeared meanwhile."""
    proj = proj or _Projection(None, None, None)
    src = _load_source(store, source, tms.format_version)
    own = checkpoint is None
    if own:
        if proj.requested():  # fail before writing anything when we can tell already
            m = src.manifest
            _check_no_wal_rows(store, source, m, _wal_upper(store, source, m), transformer)
            proj.apply(m)
        checkpoint = source_checkpoint(src, now_s)
    assert checkpoint is not None
    cp = find_checkpoint(src.manifest, checkpoint)
    if cp is None:
        raise InvalidError("no such checkpoint in the clone source", checkpoint_id=str(checkpoint))
    pinned = src.ms.read(cp.manifest_id)
    upper = _wal_upper(store, source, pinned) if own else pinned.wal_id_last_seen
    if proj.requested():
        _check_no_wal_rows(store, source, pinned, upper, transformer)
        pinned = proj.apply(pinned)
    m = _clone_manifest(pinned, source, checkpoint, upper)
    tms.try_write(1, m)
    logger.info("clone started path=%s source=%s checkpoint=%s", target, source, checkpoint)
    return StoredManifest(tms, 1, m)


def _finish(
    store: ObjectStore,
    source: str,
    target: str,
    stored: StoredManifest,
    now_s: int,
    fmt: int,
    timeout: float,
    created: bool,
) -> CloneResult:
    """Steps 3 to 5 (each skipped when already done)."""
    m = stored.manifest
    if m.initialized and not created:
        _check_finals(store, m, target, fmt)
    else:
        _pin_finals(store, m, target, now_s, fmt, timeout)
    if not m.initialized:
        _copy_wals(store, source, target, m)

        def mutate(cur: Manifest, _next_id: int) -> Manifest | None:
            return None if cur.initialized else dataclasses.replace(cur, initialized=True)

        stored.update(mutate, timeout=timeout)
        created = True
        logger.info("clone finished path=%s source=%s", target, source)
    entry = _entry_for(stored.manifest, source)
    assert entry is not None
    return CloneResult(
        target,
        source,
        entry.source_checkpoint_id,
        entry.final_checkpoint_id,
        stored.id,
        created,
    )
