"""The pluggy plugin of shale_obstore (entry point ``shale_obstore`` in the ``shale`` group).

It owns ``gs://``, ``az://``, ``azure://``, ``abfs://``, ``abfss://`` and ``s3+obstore://``
(plain ``s3://`` stays shale-minio's): ``open_store("gs://bucket/prefix", ...)`` returns an
:class:`~shale_obstore.ObstoreStore`. Options: see :mod:`shale_obstore.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import shale

if TYPE_CHECKING:
    from shale_obstore.store import ObstoreStore

__all__ = ["shale_open_object_store"]


@shale.hookimpl
def shale_open_object_store(url: str, options: dict[str, Any]) -> ObstoreStore | None:
    """Open an :class:`~shale_obstore.ObstoreStore` for a URL of one of its schemes.

    Returns ``None`` for every other scheme (and for plain paths).

    :raises InvalidError: a malformed URL of these schemes, or an option obstore rejects.
    """
    if isinstance(url, str) and "://" not in url:  # a plain path: not ours, no config import
        return None
    from shale_obstore.config import parse_url

    if parse_url(url) is None:
        return None
    from shale_obstore.store import ObstoreStore

    return ObstoreStore(url, **options)
