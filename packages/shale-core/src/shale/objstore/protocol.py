"""What shale needs from object storage, and the errors a store may raise.

The protocol mirrors SlateDB's needs: put, atomic create-if-absent (the manifest, the
``.compactions`` file and WAL fencing rely on it), conditional overwrite by etag, get, ranged get,
head, list by prefix and delete. Keys are ``/``-separated relative paths such as
``db/manifest/00000000000000000001.manifest``; a store may keep them under its own root.

Error kinds (every store maps its failures to exactly these):

- :class:`ObjectNotFound` -- the key does not exist (a :class:`~shale.errors.DataError` when it
  reaches a user: persisted state is missing);
- :class:`ObjectAlreadyExists` -- a create-if-absent lost, or an etag condition failed;
- :class:`TransientStoreError` -- may succeed if retried (an
  :class:`~shale.errors.UnavailableError`);
- :class:`PermanentStoreError` -- will not succeed if retried (access denied, missing bucket,
  bad request): an :class:`~shale.errors.InvalidError` (the store's configuration or
  permissions are wrong), never an :class:`~shale.errors.UnavailableError`, so no retry loop
  ever retries it. A background task that meets one stops (a writer closes with reason
  ``"failed"``, naming it; the compactor and the GC stop their loops).

Invariants every store keeps (checked by :mod:`shale.testing.objstore_contract`):

- an object is never partially visible: readers see all of a put or none of it;
- of several racing ``put_if_absent`` calls on one key, exactly one succeeds;
- ``delete`` of a missing key succeeds (deletes are idempotent);
- ``list`` yields keys in ascending byte order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from shale.errors import DataError, InvalidError, ShaleError, UnavailableError

__all__ = [
    "ObjectMeta",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectNotFound",
    "ObjectAlreadyExists",
    "TransientStoreError",
    "PermanentStoreError",
    "check_range",
    "object_bytes",
    "plausible_prefix",
    "validate_key",
]


class ObjectStoreError(ShaleError):
    """Base of every error an object store raises."""

    kind = "unavailable"


class ObjectNotFound(ObjectStoreError, DataError):
    """The object does not exist."""

    kind = "data"


class ObjectAlreadyExists(ObjectStoreError):
    """A create-if-absent found the key taken, or an etag precondition failed."""

    kind = "conflict"


class TransientStoreError(ObjectStoreError, UnavailableError):
    """A failure that may go away if the call is retried."""

    kind = "unavailable"


class PermanentStoreError(ObjectStoreError, InvalidError):
    """A failure that retrying will not fix (permissions, missing bucket, bad request).

    Its public kind is ``"invalid"``: like a bad setting it needs a change of configuration
    (credentials, bucket, permissions), not a retry. (SlateDB reports it as ``Unavailable``
    and retries it forever.)
    """

    kind = "invalid"


@dataclass(frozen=True)
class ObjectMeta:
    """What ``head`` and ``list`` report about one object.

    :ivar key: the object's key, relative to the store's root.
    :ivar size: its length in bytes.
    :ivar last_modified: when it was written, seconds since the Unix epoch.
    :ivar etag: an opaque version tag for :meth:`ObjectStore.put_if_match`, or ``None``.
    """

    key: str
    size: int
    last_modified: float
    etag: str | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """The object-store interface every backend implements.

    Optional beyond these methods: ``enclosing_store() -> ObjectStore | None``, the store of
    the directory or key prefix that contains this store's root (``None`` at the top). A clone
    opened at its own directory uses it to find its source databases (:mod:`shale.meta.locator`).
    """

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` at ``key``, replacing any object there.

        :param durable: when true the object survives a crash of this machine once the call
            returns (the local store fsyncs); stores that are always durable ignore it.
        """
        ...

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Create ``key`` atomically, only if it does not exist.

        :raises ObjectAlreadyExists: the key exists (another writer won the race).
        """
        ...

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        """Overwrite ``key`` only if its current etag is ``etag``.

        :raises ObjectAlreadyExists: the object changed since ``etag`` was read, or is gone.
        """
        ...

    def get(self, key: str) -> bytes:
        """The whole object. :raises ObjectNotFound: the key does not exist."""
        ...

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object, clipped to its length.

        :raises ObjectNotFound: the key does not exist.
        """
        ...

    def head(self, key: str) -> ObjectMeta:
        """Metadata of one object. :raises ObjectNotFound: the key does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """Every object whose key starts with ``prefix``, in ascending key order."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; succeeds when it is already gone."""
        ...

    def close(self) -> None:
        """Release connections and files. Calls after close are undefined."""
        ...


def validate_key(key: str) -> str:
    """Check that ``key`` is a relative ``/``-separated path confined to the store.

    :raises InvalidError: empty keys, absolute paths, ``..`` or ``.`` segments, empty segments,
        backslashes, NUL bytes, or text that is not valid UTF-8 (lone surrogates): object
        stores name objects by their UTF-8 bytes.
    """
    if not isinstance(key, str):
        raise InvalidError("object key must be a str", type=type(key).__name__)
    if not key or key.startswith("/") or "\x00" in key or "\\" in key:
        raise InvalidError("object key must be a non-empty relative path", key=key)
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidError("object key is not valid UTF-8 text", key=key) from None
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidError("object key has an empty, '.' or '..' segment", key=key)
    return key


# -- argument checks every backend shares ----------------------------------------------------------


def object_bytes(key: str, data: Any) -> bytes:
    """``data`` (any bytes-like object) as ``bytes`` for a put of ``key``.

    :raises InvalidError: ``data`` is not bytes-like.
    """
    if isinstance(data, bytes):
        return data
    try:
        return bytes(memoryview(data).cast("B"))
    except TypeError:
        raise InvalidError(
            "object data must be bytes-like", key=key, type=type(data).__name__
        ) from None


def check_range(key: str, start: Any, end: Any) -> None:
    """Check the bounds of a ranged read of ``key``.

    :raises InvalidError: a bound that is not an int ``>= 0`` (a ``bool`` is not an int here).
    """
    for value in (start, end):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidError(
                "range bounds must be non-negative ints", key=key, start=start, end=end
            )


def plausible_prefix(prefix: str) -> bool:
    """Whether some valid key (:func:`validate_key`) could start with ``prefix``: a listing of
    any other prefix is empty without asking the store."""
    if not prefix:
        return True
    if prefix.startswith("/") or "\x00" in prefix or "\\" in prefix:
        return False
    dir_part, slash, _ = prefix.rpartition("/")
    return not slash or all(part not in ("", ".", "..") for part in dir_part.split("/"))
