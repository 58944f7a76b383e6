"""The manifest shapes a database must not be opened with (docs/compatibility.md).

:func:`check_openable` runs when a :class:`~shale.db.Db` opens, right after the latest manifest
is read and **before** anything is written (no fencing, no WAL object) or read. Each refusal
names what shale met, so that a database shale cannot read correctly fails loudly instead of
answering wrongly:

- ``initialized = false``: a clone whose creation did not finish. Its WAL SSTs may not have
  been copied yet, so its data is incomplete. ``DataError``, as the official ``DbReader``
  (``InvalidDBState``); finish it by running the clone again (``shale.Admin.clone`` or the
  official package) with the same arguments.
- ``wal_object_store_uri`` (V1 manifests): the WAL lives in a separate object store that shale
  cannot follow, so WAL replay would silently miss every write not yet in an L0.
  ``InvalidError``.
- an SST ``format_version`` other than 1 or 2, or a malformed clone source path: bytes no
  SlateDB release defines. ``DataError``.
"""

from __future__ import annotations

from shale.errors import DataError, InvalidError
from shale.fbs.manifest import Manifest
from shale.meta.locator import external_db_path, manifest_views

__all__ = ["SST_FORMAT_VERSIONS", "check_openable"]

#: SST format versions shale reads (``None``: the field is absent, which means version 1).
SST_FORMAT_VERSIONS = (None, 1, 2)


def check_openable(m: Manifest) -> None:
    """Refuse a manifest whose database shale cannot read without risking a wrong answer.

    :raises DataError: an unfinished clone, an unknown SST format version or a malformed clone
        source path.
    :raises InvalidError: a separate WAL object store.
    """
    if not m.initialized:
        raise DataError(
            "the database is a clone whose creation did not finish (manifest initialized=false);"
            " finish it by running the clone again (shale.Admin.clone or the official package)"
            " with the same source and path"
        )
    if m.wal_object_store_uri is not None:
        raise InvalidError(
            "the database keeps its WAL in a separate object store (wal_object_store_uri),"
            " which shale does not support: its WAL would not be replayed",
            wal_object_store_uri=m.wal_object_store_uri,
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
