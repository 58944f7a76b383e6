"""Where the compacted SSTs of a manifest live (FORMAT.md section 2): :class:`SstLocator`.

An SST of a database is ``<root>/compacted/<ULID>.sst`` in the database's own store -- unless
the manifest lists its id in an ``ExternalDb`` entry: a clone references the SSTs of the
database it was cloned from instead of copying them, and "only the ids listed in
``ExternalDb.sst_ids`` resolve" to ``<ExternalDb.path>/compacted/<ULID>.sst``.

``ExternalDb.path`` is relative to the **store root** the official package was given
(``DbBuilder(path, store)``, ``CloneBuilder``), e.g. ``dbs/parent`` next to ``dbs/clone`` in one
bucket or directory. shale may see that store differently: ``Db.open("dbs/clone",
object_store=store)`` opens it as the official package does, but ``Db.open("/data/dbs/clone")``
or ``Db.open("s3://bucket/dbs/clone")`` open a store whose root *is* the clone's directory,
and the parent lies outside it. So a source path ``P`` is looked up, first hit wins, in

1. the database's own store at ``P`` -- the official rule, right whenever shale was given the
   store the official package used;
2. the directories that enclose the database inside its store, deepest first
   (``root = "tenant/dbs/clone"``: ``tenant/dbs/P``, ``tenant/P``);
3. the stores that enclose the database's store, nearest first: a store that can name the
   directory (or key prefix) above its root implements ``enclosing_store()`` -- local
   directories and ``s3://`` prefixes do.

A candidate is accepted when it holds the SST being looked up (one ``head``); the answer is
then cached for that source path. An SST found nowhere raises
:class:`~shale.objstore.ObjectNotFound` naming the source and every place tried.

SSTs found outside the database's own directory belong to the source database: shale only ever
reads them. Compaction outputs go to the database's own ``compacted/`` and the garbage collector
lists only the database's own directories.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from shale import ids
from shale.errors import DataError
from shale.fbs.manifest import ExternalDb, Manifest, SstView
from shale.ids import Ulid
from shale.objstore.protocol import ObjectNotFound, ObjectStore

__all__ = [
    "MAX_ENCLOSING",
    "SstLocator",
    "external_db_path",
    "manifest_views",
    "prune_external_ssts",
]

_NIL = uuid.UUID(int=0)

#: How many enclosing stores (directory levels above the database's store) are searched.
MAX_ENCLOSING = 64


def external_db_path(ext: ExternalDb) -> str:
    """The normalized store-relative path of a clone source (no leading or trailing ``/``).

    :raises DataError: an empty path or one with empty, ``.`` or ``..`` segments.
    """
    path = ext.path.strip("/")
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "\\" in path or "\x00" in path:
        raise DataError("malformed clone source path in the manifest (external_dbs)", path=ext.path)
    return path


def manifest_views(m: Manifest) -> Iterator[SstView]:
    """Every SST view of a manifest: L0, sorted runs, then each segment's."""
    yield from m.l0
    for run in m.compacted:
        yield from run.ssts
    for seg in m.segments:
        yield from seg.l0
        for run in seg.compacted:
            yield from run.ssts


def prune_external_ssts(m: Manifest) -> Manifest:
    """``m`` with each clone source's ``sst_ids`` cut to the ids its tree still references.

    What SlateDB's compactor does when it commits (0.17.0, observed): once a clone compacted a
    source's SSTs away it no longer reads them. Entries are kept, even when empty -- their
    checkpoint ids say what the clone pinned in the source. Returns ``m`` when nothing changes.
    """
    if not m.external_dbs:
        return m
    live = {v.sst.id for v in manifest_views(m)}
    pruned = [
        dataclasses.replace(ext, sst_ids=[i for i in ext.sst_ids if i in live])
        for ext in m.external_dbs
    ]
    if pruned == m.external_dbs:
        return m
    return dataclasses.replace(m, external_dbs=pruned)


class SstLocator:
    """Maps SST ids of a database's manifests to ``(store, key)``.

    :param store: the database's object store.
    :param root: the database's path inside ``store`` (``""`` for the store's root).

    Feed it every manifest version the database reads from with :meth:`observe`; ids listed
    as external by any of them stay external (an id never changes owner). Thread-safe.
    """

    def __init__(self, store: ObjectStore, root: str = "") -> None:
        self.store = store
        self.root = root.strip("/")
        self._external: dict[Ulid, str] = {}  # sst id -> normalized source path (copy on write)
        self._bases: dict[str, tuple[ObjectStore, str]] = {}  # source path -> (store, prefix)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SstLocator(root={self.root!r}, external={len(self._external)})"

    @property
    def has_external(self) -> bool:
        """Whether any observed manifest referenced another database's SSTs."""
        return bool(self._external)

    def observe(self, external_dbs: Iterable[ExternalDb]) -> None:
        """Learn which SST ids live under a clone source's path (``Manifest.external_dbs``).

        :raises DataError: a malformed source path.
        """
        new = {sst_id: external_db_path(ext) for ext in external_dbs for sst_id in ext.sst_ids}
        if not new or all(self._external.get(k) == v for k, v in new.items()):
            return
        with self._lock:
            merged = dict(self._external)
            merged.update(new)
            self._external = merged

    def locate(self, sst_id: Ulid) -> tuple[ObjectStore, str]:
        """The store and object key of compacted SST ``sst_id``.

        :raises ObjectNotFound: an external SST that none of the candidate places holds.
        """
        source = self._external.get(sst_id)
        if source is None:
            return self.store, ids.compacted_path(self.root, sst_id)
        base = self._bases.get(source)
        if base is not None:
            store, prefix = base
            return store, ids.compacted_path(ids.join(prefix, source), sst_id)
        return self._resolve(source, sst_id)

    def check(self, m: Manifest) -> None:
        """Locate one SST of every clone source ``m`` still reads from, so that a missing
        source fails now (at open) rather than on the first read that needs it.

        :raises ObjectNotFound: a source found nowhere (see :meth:`locate`).
        """
        self.observe(m.external_dbs)
        done: set[str] = set()
        for view in manifest_views(m):
            source = self._external.get(view.sst.id)
            if source is not None and source not in done:
                done.add(source)
                self.locate(view.sst.id)

    def is_external(self, sst_id: Ulid) -> bool:
        """Whether ``sst_id`` belongs to a clone source (never written or deleted by us)."""
        return sst_id in self._external

    def find_database(self, path: str) -> tuple[ObjectStore, str] | None:
        """Where the database at store-relative ``path`` (a clone source) lives: the first
        candidate place (see the module docstring) holding a manifest, as ``(store, root)``;
        ``None`` when none does. Used to reach a source's manifest (its checkpoints).

        :raises DataError: a malformed path.
        """
        source = external_db_path(ExternalDb(path, _NIL, None))
        base = self._bases.get(source)
        candidates = [base] if base is not None else list(self._candidates())
        for store, prefix in candidates:
            root = ids.join(prefix, source)
            if next(iter(store.list(ids.dir_path(root, "manifest"))), None) is not None:
                return store, root
        return None

    # -- resolution ------------------------------------------------------------------------

    def _candidates(self) -> Iterator[tuple[ObjectStore, str]]:
        yield self.store, ""
        parts = self.root.split("/") if self.root else []
        for i in range(len(parts), 0, -1):
            yield self.store, "/".join(parts[:i])
        store: Any = self.store
        for _ in range(MAX_ENCLOSING):
            enclosing = getattr(store, "enclosing_store", None)
            store = enclosing() if enclosing is not None else None
            if store is None:
                return
            yield store, ""

    def _resolve(self, source: str, sst_id: Ulid) -> tuple[ObjectStore, str]:
        tried = []
        for store, prefix in self._candidates():
            key = ids.compacted_path(ids.join(prefix, source), sst_id)
            try:
                store.head(key)
            except ObjectNotFound:
                tried.append(f"{store!r}:{key}")
                continue
            with self._lock:
                self._bases.setdefault(source, (store, prefix))
            return store, key
        raise ObjectNotFound(
            "an SST of the database this clone was made from is missing (external_dbs)",
            source=source,
            sst=str(sst_id),
            tried=tried,
        )
