"""The manifest shapes a database must not be opened with (docs/compatibility.md).

:func:`check_openable` runs when a :class:`~shale.db.Db` opens, right after the latest manifest
is read and **before** anything is written (no fencing, no WAL object) or read. Each refusal
names what shale met, so that a database shale cannot read correctly fails loudly instead of
answering wrongly:

- ``initialized = false``: a clone whose creation did not finish. Its WAL SSTs may not have
  been copied yet, so its data is incomplete. ``DataError``, as the official ``DbReader``
  (``InvalidDBState``); finish it by running the clone again (``shale.Admin.clone`` or the
  official package) with the same arguments.
- ``wal_object_store_uri`` (V1 manifests) without a WAL store: the WAL lives in a separate
  object store (:func:`check_wal_store`, SlateDB's ``WalStoreReconfiguration``), so WAL replay
  would silently miss every write not yet in an L0. ``InvalidError``.
- an SST ``format_version`` other than 1 or 2, or a malformed clone source path: bytes no
  SlateDB release defines. ``DataError``.
"""

from __future__ import annotations

from shale.errors import DataError, InvalidError
from shale.fbs.manifest import Manifest
from shale.meta.locator import external_db_path, manifest_views

__all__ = ["SST_FORMAT_VERSIONS", "check_openable", "check_wal_store"]

#: SST format versions shale reads (``None``: the field is absent, which means version 1).
SST_FORMAT_VERSIONS = (None, 1, 2)


def check_openable(m: Manifest) -> None:
    """Refuse a manifest whose database shale cannot read without risking a wrong answer.

    :raises DataError: an unfinished clone, an unknown SST format version or a malformed clone
        source path.
    The WAL store is checked apart, by :func:`check_wal_store`: it needs the configuration.
    """
    if not m.initialized:
        raise DataError(
            "the database is a clone whose creation did not finish (manifest initialized=false);"
            " finish it by running the clone again (shale.Admin.clone or the official package)"
            " with the same source and path"
        )
    for ext in m.external_dbs:
        external_db_path(ext)
    for view in manifest_views(m):
        if view.sst.format_version not in SST_FORMAT_VERSIONS:
            raise DataError(
                "the manifest references an SST of an unknown format version",
                sst=str(view.sst.id),
                format_version=view.sst.format_version,
                supported="1, 2",
            )


def check_wal_store(m: Manifest, configured: str | None) -> None:
    """Refuse a WAL-store configuration the manifest contradicts (SlateDB's
    ``validate_wal_object_store_uri``; the error is its ``WalStoreReconfiguration``).

    SlateDB records a separate WAL store as ``wal_object_store_uri = ""`` -- a flag, not an
    address -- and only in V1 manifests (V2 cannot record it, so there is nothing to check).

    :param configured: ``None`` (no separate WAL store), ``""`` (a store object) or the URL the
        WAL store was opened from.
    :raises InvalidError: the manifest records a separate WAL store and none is configured, or
        records a URL and another URL is configured.
    """
    persisted = m.wal_object_store_uri
    if persisted is None:
        return
    if configured is None:
        raise InvalidError(
            "WalStoreReconfiguration: the database keeps its WAL in a separate object store;"
            " open it with wal_store= (its WAL would not be replayed otherwise)",
            wal_object_store_uri=persisted,
        )
    if persisted and configured and persisted != configured:
        raise InvalidError(
            "WalStoreReconfiguration: the database records another WAL store",
            wal_object_store_uri=persisted,
            wal_store=configured,
        )
