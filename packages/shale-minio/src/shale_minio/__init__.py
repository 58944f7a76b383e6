"""shale_minio: the S3-compatible object store. Under construction: see issue 6."""

__version__ = "0.1.0"
