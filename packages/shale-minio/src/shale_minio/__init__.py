"""shale_minio: shale's object store for S3-compatible servers (AWS S3, SeaweedFS, MinIO, ...).

- :class:`S3Store` -- the store; ``open_store("s3://bucket/prefix")`` opens one through the
  plugin in :mod:`shale_minio.plugin`.
- :mod:`shale_minio.config` -- settings from URL, options and ``AWS_*`` environment variables.
- :mod:`shale_minio.testing` -- a pytest plugin that runs a real SeaweedFS server for tests.
"""

from __future__ import annotations

from shale_minio.config import S3Config, parse_s3_url, resolve_config
from shale_minio.store import PUT_ID_HEADER, S3Store

__version__ = "0.1.0"

__all__ = ["PUT_ID_HEADER", "S3Config", "S3Store", "parse_s3_url", "resolve_config", "__version__"]
