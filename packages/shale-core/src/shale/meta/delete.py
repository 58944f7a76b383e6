"""Deleting a whole database: every object under its path (SlateDB main's ``Admin::delete_db``).

The order makes an interrupted delete resumable and visible:

1. **Checks** (skipped by ``force``; skipped when resuming): the database must look idle --
   no object under ``manifest/``, ``wal/`` or ``compactions/`` modified within the last
   ``idle_s`` seconds (``0`` turns this check off) -- and no live (unexpired) checkpoint may
   pin it: a clone's final checkpoint, a reader's, or one made by hand. "Idle" is what the
   store can show: an open writer that has written nothing for ``idle_s`` seconds looks
   closed, and is broken by the delete (its next manifest read fails).
2. **The marker** ``<root>/.deleting`` is written (SlateDB's name): from here on a rerun
   resumes without the checks, even once the manifest is gone.
3. **Release the sources**: if the database is a clone, the final checkpoint each
   ``external_dbs`` entry holds in its source is deleted (a source already gone is skipped).
4. **Delete** every object under the path but the manifests and the marker, then the manifest
   versions, oldest first -- the latest last, so a rerun still sees what the database
   referenced -- then the marker.

While the marker exists a writer refuses to open the database (:func:`check_not_deleting`):
an interrupted delete never passes for a whole database to a writer. A path with objects but
neither a manifest nor the marker is refused (it is not a database).
A path with nothing under it is already deleted: the call returns ``[]``.
"""

from __future__ import annotations

import logging

from shale import ids
from shale.errors import DataError, InvalidError
from shale.meta.detach import release_source_checkpoint
from shale.meta.locator import SstLocator
from shale.meta.manifest_store import ManifestStore
from shale.objstore.protocol import ObjectNotFound, ObjectStore

__all__ = ["DEFAULT_IDLE_S", "DELETING_MARKER", "check_not_deleting", "delete_db"]

logger = logging.getLogger(__name__)

#: The marker object of a delete in progress, relative to the database's path.
DELETING_MARKER = ".deleting"
#: Seconds without a write under manifest/, wal/ or compactions/ before a database is idle.
DEFAULT_IDLE_S = 60.0


def check_not_deleting(store: ObjectStore, root: str) -> None:
    """Refuse to open a database a delete has started on (its marker exists): its manifest
    may still be there while its SSTs are gone. One ``head``; the writer calls it at open.

    :raises DataError: the marker exists.
    """
    if _exists(store, ids.join(root, DELETING_MARKER)):
        raise DataError(
            "the database is being deleted (an interrupted delete_db left its marker); "
            "finish it with Admin.delete_db(confirm=True)",
            root=root,
        )


def _exists(store: ObjectStore, key: str) -> bool:
    try:
        store.head(key)
    except ObjectNotFound:
        return False
    return True


def delete_db(
    store: ObjectStore,
    root: str,
    *,
    now_ms: int,
    force: bool = False,
    idle_s: float = DEFAULT_IDLE_S,
    format_version: int = 2,
    timeout: float = 300.0,
) -> list[str]:
    """Delete the database at ``root`` in ``store`` (see the module docstring).

    :param now_ms: the current time, Unix milliseconds (idleness and checkpoint expiry).
    :param force: skip the idleness and checkpoint checks.
    :param idle_s: seconds without writes that make the database idle.
    :returns: the keys deleted, in deletion order.
    :raises InvalidError: a live writer or checkpoint (without ``force``), or objects at
        ``root`` that are not a database; nothing is written then.
    """
    root = root.strip("/")
    prefix = root + "/" if root else ""
    marker = ids.join(root, DELETING_MARKER)
    resuming = _exists(store, marker)
    ms = ManifestStore(store, root, format_version=format_version)
    latest = ms.read_latest()
    if latest is None and not resuming:
        if next(iter(store.list(prefix)), None) is not None:
            raise InvalidError(
                "not a database (objects but no manifest); nothing deleted", root=root
            )
        return []
    if latest is not None and not resuming and not force:
        _check_idle(store, root, now_ms, idle_s)
        live = [
            cp
            for cp in latest[1].checkpoints
            if cp.expire_time_s is None or cp.expire_time_s * 1000 >= now_ms
        ]
        if live:
            raise InvalidError(
                "live checkpoints pin this database (a clone, a reader or a user holds them); "
                "detach or delete the clones, delete the checkpoints, or use force=True",
                root=root,
                checkpoints=[f"{cp.id}" + (f" ({cp.name})" if cp.name else "") for cp in live],
            )
    if not resuming:
        store.put(marker, b"")
    if latest is not None:
        locator = SstLocator(store, root)
        for ext in latest[1].external_dbs:
            if ext.final_checkpoint_id is not None:
                release_source_checkpoint(
                    locator, ext.path, ext.final_checkpoint_id, format_version, timeout
                )
    keys = [m.key for m in store.list(prefix) if m.key != marker]
    numbered = {k: _manifest_id(ms, k) for k in keys}
    manifests = sorted((n, k) for k, n in numbered.items() if n is not None)
    deleted = []
    for key in [*(k for k, n in numbered.items() if n is None), *(k for _, k in manifests)]:
        store.delete(key)
        deleted.append(key)
    store.delete(marker)
    deleted.append(marker)
    logger.info("deleted database root=%s objects=%d", root, len(deleted))
    return deleted


def _manifest_id(ms: ManifestStore, key: str) -> int | None:
    n = ids.parse_numbered(key, ".manifest")
    return n if n is not None and ms.path(n) == key else None


def _check_idle(store: ObjectStore, root: str, now_ms: int, idle_s: float) -> None:
    if idle_s <= 0:
        return
    for name in ("manifest", "wal", "compactions"):
        for meta in store.list(ids.dir_path(root, name)):
            age = now_ms / 1000 - meta.last_modified
            if age < idle_s:
                raise InvalidError(
                    "the database is not idle: a writer or compactor may be running "
                    f"({meta.key} was written {max(age, 0):.1f}s ago, under idle_s={idle_s}); "
                    "close it, wait, or use force=True",
                    root=root,
                )
