"""Creating a clone of several sources at once (a *union*, SlateDB's ``CloneBuilder`` given
several ``CloneSourceSpec``): merging shards back into one database.

The steps are those of a one-source clone (:mod:`shale.meta.clone`), with the manifest of
:func:`shale.meta.union.cloned_from_union`:

1. **Pin every source** at the checkpoint its spec names, or at a new short-lived one (300 s),
   and narrow what it pins to the spec's projection (intersected with the projection given for
   all sources) and by the ``segment_filter`` / ``segment_projection`` callbacks, asked for
   every source's trees (:mod:`shale.meta.projection`).
2. **Write the clone's manifest version 1** (``initialized = false``): the union of the pinned
   manifests, one ``external_dbs`` entry per source holding SSTs (plus what the sources
   inherited), each with a fresh ``final_checkpoint_id``. Created only if absent.
3. **Create each final checkpoint** (never expiring) in the database its entry names.
4. **No WAL is copied**: a union starts with an empty WAL, so a source whose WAL still holds
   rows no SST has is refused (SlateDB's ``InvalidCloneSourceWithWal``; flush it first).
   A fence (an empty WAL) is fine.
5. **Set ``initialized = true``.**

Refused before anything is written (:class:`~shale.errors.InvalidError`): no sources, a
source given twice, a source equal to or nested with the target, a missing, uninitialized or
separate-WAL source, an unknown checkpoint, a bad projection (or a ``segment_projection``
range outside its segment), a source WAL holding rows, and
sources whose (projected) key ranges overlap or whose segment layouts disagree. Step 1 checks
all this on the manifests it is about to pin before creating any checkpoint; only a writer
racing the clone can make the checks fail after the short-lived checkpoints exist (they expire
by themselves).

Crash safety as for one source: run again with the same sources, an uninitialized clone is
finished from what its manifest recorded; an initialized one still pinned by its sources is
returned unchanged (``created=False``). On a retry every spec must name a source the clone
references (and its checkpoint, when the spec gives one) -- as in SlateDB, a source that held
no SST got no entry and must then be left out.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from shale.errors import InvalidError
from shale.fbs.manifest import BytesRange, Manifest
from shale.meta.clone import (
    _check_finals,
    _check_no_wal_rows,
    _load_source,
    _pin_finals,
    _wal_upper,
    check_clone_paths,
    source_checkpoint,
)
from shale.meta.manifest_store import (
    ManifestConflict,
    ManifestStore,
    StoredManifest,
    find_checkpoint,
)
from shale.meta.projection import (
    SegmentFilter,
    SegmentProjection,
    check_segment_callbacks,
    intersect,
    project_manifest,
)
from shale.meta.union import UnionSource, cloned_from_union
from shale.objstore.protocol import ObjectStore

__all__ = ["CloneSourceSpec", "UnionCloneResult", "UnionSpec", "create_union_clone"]

logger = logging.getLogger(__name__)

_WAL_ROWS = (
    "cannot clone a union of sources while a source's WAL holds rows not yet in an SST "
    "(a union copies no WAL)"
)


class CloneSourceSpec(NamedTuple):
    """One source of ``Admin.clone(target, sources=[...])`` (SlateDB's ``CloneSourceSpec``).

    :ivar path: the source database (read like ``Admin.clone``'s ``source``).
    :ivar checkpoint: clone what this existing checkpoint of the source pins (default: a new
        checkpoint of its latest manifest, expiring after 300 s).
    :ivar projection: ``(start, end)``: keep only the source's keys in ``[start, end)``
        (``None`` for an open end).
    """

    path: str
    checkpoint: uuid.UUID | str | None = None
    projection: tuple[bytes | None, bytes | None] | None = None


class UnionSpec(NamedTuple):
    """One source of :func:`create_union_clone`: its store path, the checkpoint to clone
    (``None``: a new short-lived one) and the key range kept (``None``: all)."""

    path: str
    checkpoint: uuid.UUID | None = None
    projection: BytesRange | None = None


class UnionCloneResult(NamedTuple):
    """What :func:`create_union_clone` (``Admin.clone(target, sources=...)``) did.

    :ivar path: the clone's path in the store.
    :ivar sources: the sources' paths, in the order given.
    :ivar source_checkpoint_ids: per source path, the checkpoint the clone was made from
        (sources that held no SST are absent).
    :ivar final_checkpoint_ids: per source path, the never-expiring checkpoint pinning it.
    :ivar manifest_id: the clone's manifest version that set ``initialized``.
    :ivar created: ``False`` when the target already was a finished clone of these sources.
    """

    path: str
    sources: list[str]
    source_checkpoint_ids: dict[str, uuid.UUID]
    final_checkpoint_ids: dict[str, uuid.UUID]
    manifest_id: int
    created: bool


def _check_specs(specs: Sequence[UnionSpec], target: str) -> tuple[list[UnionSpec], str]:
    if not specs:
        raise InvalidError("a union clone needs at least one source")
    out: list[UnionSpec] = []
    dst = target
    for spec in specs:
        src, dst = check_clone_paths(spec.path, target)
        if any(src == o.path or src.startswith(o.path + "/") for o in out) or any(
            o.path.startswith(src + "/") for o in out
        ):
            raise InvalidError("a clone source is given twice (or nested in another)", source=src)
        out.append(spec._replace(path=src))
    return out, dst


class _Callbacks(NamedTuple):
    segment_filter: SegmentFilter | None = None
    segment_projection: SegmentProjection | None = None


def _pinned(
    store: ObjectStore,
    src: StoredManifest,
    spec: UnionSpec,
    checkpoint: uuid.UUID | None,
    transformer: object,
    callbacks: _Callbacks,
) -> Manifest:
    """The (projected) manifest ``checkpoint`` pins in the source (``None``: the source's latest
    manifest, what a new checkpoint would pin), after the WAL check."""
    if checkpoint is None:
        pinned = src.manifest
        upper = _wal_upper(store, spec.path, pinned)
    else:
        cp = find_checkpoint(src.manifest, checkpoint)
        if cp is None:
            raise InvalidError(
                "no such checkpoint in the clone source",
                source=spec.path,
                checkpoint_id=str(checkpoint),
            )
        pinned = src.ms.read(cp.manifest_id)
        upper = (
            pinned.wal_id_last_seen
            if spec.checkpoint is not None
            else _wal_upper(store, spec.path, pinned)
        )
    _check_no_wal_rows(store, spec.path, pinned, upper, transformer, _WAL_ROWS)
    return project_manifest(
        pinned,
        spec.projection,
        segment_filter=callbacks.segment_filter,
        segment_projection=callbacks.segment_projection,
    )


def _start(
    store: ObjectStore,
    specs: list[UnionSpec],
    target: str,
    tms: ManifestStore,
    now_s: int,
    transformer: object,
    callbacks: _Callbacks | None = None,
) -> StoredManifest:
    """Steps 1 and 2; raises :class:`ManifestConflict` when version 1 appeared meanwhile."""
    callbacks = callbacks or _Callbacks()
    srcs = [_load_source(store, s.path, tms.format_version) for s in specs]
    preview = [
        UnionSource(
            s.path,
            s.checkpoint or uuid.UUID(int=0),
            _pinned(store, src, s, s.checkpoint, transformer, callbacks),
        )
        for s, src in zip(specs, srcs, strict=True)
    ]
    cloned_from_union(preview)  # refuse overlaps before any checkpoint is made
    sources = []
    for spec, src in zip(specs, srcs, strict=True):
        checkpoint = spec.checkpoint
        if checkpoint is None:
            checkpoint = source_checkpoint(src, now_s)
        pinned = _pinned(store, src, spec, checkpoint, transformer, callbacks)
        sources.append(UnionSource(spec.path, checkpoint, pinned))
    m = cloned_from_union(sources)
    tms.try_write(1, m)
    logger.info("union clone started path=%s sources=%s", target, [s.path for s in specs])
    return StoredManifest(tms, 1, m)


def _check_attached(m: Manifest, specs: list[UnionSpec], target: str) -> None:
    """SlateDB's ``validate_attached_to_external_db``, for every spec."""
    for spec in specs:
        if not any(
            ext.path.strip("/") == spec.path
            and (spec.checkpoint is None or ext.source_checkpoint_id == spec.checkpoint)
            for ext in m.external_dbs
        ):
            raise InvalidError(
                "a database already exists at the clone path (not a clone of these sources"
                + ("" if spec.checkpoint is None else " at these checkpoints")
                + ")",
                path=target,
                source=spec.path,
            )


def create_union_clone(
    store: ObjectStore,
    sources: Sequence[UnionSpec],
    target: str,
    *,
    now_s: int,
    projection: BytesRange | None = None,
    segment_filter: SegmentFilter | None = None,
    segment_projection: SegmentProjection | None = None,
    format_version: int = 2,
    transformer: object = None,
    timeout: float = 300.0,
) -> UnionCloneResult:
    """Clone the union of ``sources`` (paths in ``store``) to ``target``; see the module
    docstring for the steps and what is refused.

    :param now_s: the current Unix time in seconds (checkpoint create times).
    :param projection: a key range every source is narrowed to as well (SlateDB's
        ``CloneBuilder.with_projection_range``), intersected with each spec's.
    :param segment_filter: ``prefix -> bool``, asked for every source's trees: ``False``
        drops that tree (SlateDB's ``CloneBuilder.with_segment_filter``).
    :param segment_projection: ``prefix -> (start, end)``, the range kept of every source's
        tree of that segment (``with_segment_projection``).
    :param format_version: the manifest wire version written.
    :param transformer: the block transformer that reads the sources' WAL SSTs.
    :raises InvalidError: see the module docstring.
    :raises DataError: a resumed clone whose pinning checkpoints are gone.
    """
    specs, target = _check_specs(sources, target)
    check_segment_callbacks(segment_filter, segment_projection)
    callbacks = _Callbacks(segment_filter, segment_projection)
    if projection is not None:
        narrowed = []
        for spec in specs:
            rng = projection if spec.projection is None else intersect(spec.projection, projection)
            if rng is None:
                raise InvalidError("a source's projection misses the clone's", source=spec.path)
            narrowed.append(spec._replace(projection=rng))
        specs = narrowed
    tms = ManifestStore(store, target, format_version=format_version)
    existing = StoredManifest.try_load(tms)
    created = existing is None
    if existing is None:
        try:
            existing = _start(store, specs, target, tms, now_s, transformer, callbacks)
        except ManifestConflict:
            existing, created = StoredManifest.load(tms), False
    if not created:
        _check_attached(existing.manifest, specs, target)
        for spec in specs:
            _load_source(store, spec.path, format_version)
    m = existing.manifest
    if m.initialized and not created:
        _check_finals(store, m, target, format_version)
    else:
        _pin_finals(store, m, target, now_s, format_version, timeout)
    if not m.initialized:

        def finish(cur: Manifest, _next_id: int) -> Manifest | None:
            return None if cur.initialized else dataclasses.replace(cur, initialized=True)

        existing.update(finish, timeout=timeout)
        created = True
        logger.info("union clone finished path=%s", target)
    paths = [s.path for s in specs]
    entries = [e for e in existing.manifest.external_dbs if e.path.strip("/") in paths]
    return UnionCloneResult(
        target,
        paths,
        {e.path.strip("/"): e.source_checkpoint_id for e in entries},
        {
            e.path.strip("/"): e.final_checkpoint_id
            for e in entries
            if e.final_checkpoint_id is not None
        },
        existing.id,
        created,
    )
