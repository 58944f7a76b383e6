"""Detaching a clone from the databases it was cloned from.

A clone reads the SSTs its ``external_dbs`` entries list from their sources, and each entry's
never-expiring *final* checkpoint in the source keeps them alive there (:mod:`shale.meta.clone`).
Detaching ends that dependency so the source can be collected or deleted. Three steps, each
idempotent, in an order that never leaves the clone reading a file nothing pins:

1. **Copy** (``copy=True``, :func:`detach`'s full form): every source SST the clone's latest
   manifest still lists is copied, same ULID and bytes, into the clone's own ``compacted/``.
   While the manifest lists the id as external the clone's GC never deletes the copy.
2. **Own them**: one manifest update sets each copied entry's ``sst_ids`` to ``[]`` (an entry
   whose ids changed meanwhile, e.g. by a compaction, is re-checked against what was copied).
   From then on the ids resolve to the clone's own path. The entry stays: it still names the
   final checkpoint. This is the state SlateDB's compactor leaves once it has compacted every
   source SST away, so SlateDB's detach GC can finish from here too.
3. **Release** (SlateDB's detach GC, ``detach_gc.rs``): an entry with no ``sst_ids`` left is
   released once no live checkpoint of the clone pins a manifest version in which that entry
   still lists ids (such a reader resolves them under the source): its final checkpoint is
   deleted from the source, then the entry is removed from the clone's manifest. An entry
   still pinned that way is reported as *pending*; run again once those checkpoints are gone.

A crash anywhere leaves a state a rerun completes: copies are re-checked (``head``), step 2
and the entry removal are conditional manifest updates, a final checkpoint already gone is not
an error. ``copy=False`` runs only step 3: what the shale-gc ``detach`` option does each round.

A process that has the clone open while it is detached keeps reading the source's copies until
it reopens the clone; reopen it before the source is deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import NamedTuple

from shale import ids
from shale.errors import InvalidError
from shale.fbs.manifest import Manifest
from shale.meta.locator import SstLocator
from shale.meta.manifest_store import (
    ManifestStore,
    StoredManifest,
    find_checkpoint,
    remove_checkpoint,
)
from shale.objstore.protocol import ObjectNotFound, ObjectStore

__all__ = ["DetachResult", "detach", "release_source_checkpoint"]

logger = logging.getLogger(__name__)


class DetachResult(NamedTuple):
    """What :func:`detach` did.

    :ivar copied: object keys of the SSTs copied into the clone (this run).
    :ivar owned: source paths whose SSTs the clone now reads from its own path (this run).
    :ivar detached: source paths released: final checkpoint deleted, entry removed.
    :ivar pending: source paths still pinned by a live checkpoint of the clone.
    """

    copied: list[str]
    owned: list[str]
    detached: list[str]
    pending: list[str]


def release_source_checkpoint(
    locator: SstLocator, path: str, checkpoint_id: uuid.UUID, fmt: int, timeout: float
) -> bool:
    """Delete ``checkpoint_id`` from the database at store-relative ``path`` (found through
    ``locator``). ``False`` when that database or the checkpoint is gone already."""
    found = locator.find_database(path)
    if found is None:
        return False
    stored = StoredManifest.try_load(ManifestStore(found[0], found[1], format_version=fmt))
    if stored is None:
        return False
    removed: list[bool] = [False]

    def mutate(m: Manifest, _next_id: int) -> Manifest | None:
        if find_checkpoint(m, checkpoint_id) is None:
            removed[0] = False
            return None
        removed[0] = True
        return remove_checkpoint(m, checkpoint_id)

    stored.update(mutate, timeout=timeout)
    return removed[0]


def _copy(locator: SstLocator, root: str, m: Manifest, copied: list[str]) -> set[ids.Ulid]:
    done: set[ids.Ulid] = set()
    locator.observe(m.external_dbs)
    for ext in m.external_dbs:
        for sst_id in ext.sst_ids:
            dst = ids.compacted_path(root, sst_id)
            try:
                locator.store.head(dst)
            except ObjectNotFound:
                src_store, src_key = locator.locate(sst_id)
                locator.store.put(dst, src_store.get(src_key))
                copied.append(dst)
            done.add(sst_id)
    return done


def _pinned_elsewhere(ms: ManifestStore, m: Manifest, final: uuid.UUID, now_s: int) -> bool:
    """Whether a live checkpoint of the clone pins a version whose entry with ``final`` still
    lists SST ids (SlateDB's ``find_detachable``)."""
    for cp in m.checkpoints:
        if cp.expire_time_s is not None and cp.expire_time_s < now_s:
            continue
        try:
            pinned = ms.read(cp.manifest_id)
        except ObjectNotFound:
            continue
        if any(e.final_checkpoint_id == final and e.sst_ids for e in pinned.external_dbs):
            return True
    return False


def detach(
    store: ObjectStore,
    root: str,
    *,
    now_s: int,
    copy: bool = True,
    format_version: int = 2,
    timeout: float = 300.0,
) -> DetachResult:
    """Detach the clone at ``root`` from its sources (see the module docstring).

    :param now_s: the current Unix time in seconds (which checkpoints are live).
    :param copy: copy the source SSTs still referenced first (steps 1-2); ``False`` only
        releases sources the clone no longer reads.
    :raises DataError: no database at ``root``, or a source SST missing everywhere.
    :raises InvalidError: the clone is unfinished (``initialized = false``).
    """
    ms = ManifestStore(store, root, format_version=format_version)
    stored = StoredManifest.load(ms)
    if not stored.manifest.initialized:
        raise InvalidError("cannot detach an unfinished clone; finish it (clone again) first")
    locator = SstLocator(store, root)
    result = DetachResult([], [], [], [])
    if copy and any(e.sst_ids for e in stored.manifest.external_dbs):
        _own(locator, root, stored, timeout, result)
    _release(locator, ms, stored, now_s, format_version, timeout, result)
    logger.info("detach root=%s result=%s", root, result)
    return result


def _own(
    locator: SstLocator, root: str, stored: StoredManifest, timeout: float, result: DetachResult
) -> None:
    """Steps 1 and 2. An entry whose ids are not all copied (only possible if ids were added
    meanwhile, which no writer does) keeps them; a rerun copies them."""
    done = _copy(locator, root, stored.manifest, result.copied)

    def own(m: Manifest, _next_id: int) -> Manifest | None:
        changed, new = [], []
        for e in m.external_dbs:
            if e.sst_ids and set(e.sst_ids) <= done:
                changed.append(e.path)
                e = dataclasses.replace(e, sst_ids=[])
            new.append(e)
        result.owned[:] = changed
        return dataclasses.replace(m, external_dbs=new) if changed else None

    stored.update(own, timeout=timeout)


def _release(
    locator: SstLocator,
    ms: ManifestStore,
    stored: StoredManifest,
    now_s: int,
    fmt: int,
    timeout: float,
    result: DetachResult,
) -> None:
    released: set[uuid.UUID] = set()
    for ext in stored.manifest.external_dbs:
        final = ext.final_checkpoint_id
        if ext.sst_ids or final is None:
            continue
        if _pinned_elsewhere(ms, stored.manifest, final, now_s):
            result.pending.append(ext.path)
            continue
        release_source_checkpoint(locator, ext.path, final, fmt, timeout)
        released.add(final)
        result.detached.append(ext.path)
    if not released:
        return

    def drop(m: Manifest, _next_id: int) -> Manifest | None:
        keep = [e for e in m.external_dbs if e.final_checkpoint_id not in released]
        return (
            None if len(keep) == len(m.external_dbs) else dataclasses.replace(m, external_dbs=keep)
        )

    stored.update(drop, timeout=timeout)
