"""The pluggy plugin of shale_minio (entry point ``shale_minio`` in the ``shale`` group).

It owns the ``s3://`` scheme: ``open_store("s3://bucket/prefix", endpoint=..., ...)`` returns an
:class:`~shale_minio.S3Store`. Options are the keyword arguments of :class:`S3Store` (see
:data:`shale_minio.config.OPTIONS`); anything else is an :class:`~shale.errors.InvalidError`.
Settings not given as options come from the ``AWS_*`` environment variables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import shale

if TYPE_CHECKING:
    from shale_minio.store import S3Store

__all__ = ["shale_open_object_store"]


@shale.hookimpl
def shale_open_object_store(url: str, options: dict[str, Any]) -> S3Store | None:
    """Open an :class:`~shale_minio.S3Store` for an ``s3://bucket/optional/prefix`` URL.

    Returns ``None`` for every other scheme (and for plain paths).

    :raises InvalidError: a malformed ``s3://`` URL, or an unknown or ill-typed option.
    """
    if isinstance(url, str) and "://" not in url:  # a plain path: not ours, no config import
        return None
    from shale_minio.config import parse_s3_url, resolve_config

    parsed = parse_s3_url(url)
    if parsed is None:
        return None
    from shale_minio.store import S3Store

    bucket, prefix = parsed
    return S3Store.from_config(resolve_config(bucket, prefix, **options))
