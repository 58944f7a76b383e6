"""Object stores: the protocol, the local-directory and in-memory stores, and URL opening."""

from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PermanentStoreError,
    TransientStoreError,
    validate_key,
)

__all__ = [
    "ObjectAlreadyExists",
    "ObjectMeta",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "PermanentStoreError",
    "TransientStoreError",
    "open_store",
    "validate_key",
]


def open_store(url: str, **options: object) -> ObjectStore:
    """Open the object store for ``url`` through the plugin host.

    Plain paths and ``file://`` URLs open a local directory, ``memory://`` an in-memory store,
    other schemes whichever installed plugin owns them (``s3://`` with ``shale-minio``).
    """
    from shale.plugins import get_host

    store: ObjectStore = get_host().open_object_store(url, dict(options))
    return store
