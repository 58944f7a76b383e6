"""shale_minio: shale's object store for S3-compatible servers (AWS S3, SeaweedFS, MinIO, ...).

- :class:`S3Store` -- the store; ``open_store("s3://bucket/prefix")`` opens one through the
  plugin in :mod:`shale_minio.plugin`.
- :mod:`shale_minio.config` -- settings from URL, options and ``AWS_*`` environment variables.
- :mod:`shale_minio.testing` -- a pytest plugin that runs a real SeaweedFS server for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real types for type checkers and the docs; at run time __getattr__
    from shale_minio.config import S3Config, parse_s3_url, resolve_config
    from shale_minio.store import PUT_ID_HEADER, S3Store

from shale import (
    __version__,  # the project's one version: every distribution has it
    lazy_exports,
)

# Imported on first use: the plugin is loaded by every shale process, and the minio SDK is
# slow to import, so only processes that open an s3:// URL pay for it.
_LAZY = {
    "S3Config": "shale_minio.config",
    "parse_s3_url": "shale_minio.config",
    "resolve_config": "shale_minio.config",
    "PUT_ID_HEADER": "shale_minio.store",
    "S3Store": "shale_minio.store",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["PUT_ID_HEADER", "S3Config", "S3Store", "parse_s3_url", "resolve_config", "__version__"]
