"""Object stores: the protocol, the local-directory and in-memory stores.

Opening a store by URL goes through the plugin host: :func:`shale.plugins.open_store`.
"""

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
    "validate_key",
]
