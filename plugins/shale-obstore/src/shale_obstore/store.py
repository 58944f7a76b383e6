"""The obstore object store: shale's ``ObjectStore`` over obstore (Rust ``object_store``).

Key ``k`` is the object ``<prefix>k`` in the bucket (container); the obstore client itself is
opened at the bucket's root, so :meth:`ObstoreStore.enclosing_store` shares it. How each
protocol invariant is kept:

- **No partial objects.** Every provider publishes an object when its PUT (or the completion
  of a multipart upload, which obstore uses above 5 MiB for unconditional puts) finishes.
- **Create-if-absent and compare-and-swap are decided by the server.** ``put_if_absent`` is
  obstore's ``mode="create"`` (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``, Azure
  ``If-None-Match: *``) and ``put_if_match`` its ``mode={"e_tag": ...}`` (``If-Match``; on GCS
  the object's generation). Both fail with :class:`~shale.spi.ObjectAlreadyExists`.
- **A conditional write whose reply was lost is resolved exactly**, as in shale-minio: every
  conditional put carries a fresh random id in user metadata (``shale-put-id``), is sent through
  a second obstore client with obstore's retries off, and is retried here under shale's
  :class:`~shale.spi.RetryPolicy`. When a retry (or the last attempt) meets a failed condition,
  the object's metadata is read back: the put succeeded iff the stored object carries our id.
- **Other requests are retried by obstore** (5xx, connection errors, timeouts: its
  ``RetryConfig`` from ``max_retries``, ``retry_base_delay``, ``retry_max_delay`` and
  ``retry_timeout``); what still fails is mapped by :func:`shale_obstore.errors.map_error`.
- **list is by key prefix, sorted client-side.** obstore lists whole path segments (``a``
  matches ``a/x``, not ``ab``), so the store lists the prefix's directory and keeps the keys that
  start with the prefix, then sorts them (S3 servers list ``a/b`` after ``a-c`` or before it,
  depending on the server). Names a shale key cannot have are skipped.
- **Etags are the server's.** On GCS the etag shale sees also carries the object's generation
  (``<etag>|v:<generation>``), which is what GCS preconditions compare.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import obstore
from obstore import exceptions as obs_errors

from shale.spi import (
    InvalidError,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStoreError,
    RetryPolicy,
    TransientStoreError,
    check_range,
    object_bytes,
    plausible_prefix,
    validate_key,
)
from shale_obstore.config import ObstoreConfig, resolve_config
from shale_obstore.errors import map_error, status_of

__all__ = ["PUT_ID_ATTRIBUTE", "ObstoreStore"]

log = logging.getLogger(__name__)

#: User-metadata name of each conditional put's random id (Azure allows no ``-`` in names).
PUT_ID_ATTRIBUTE = {"s3": "shale-put-id", "gcs": "shale-put-id", "azure": "shaleputid"}
_VERSION_MARK = "|v:"
_CONTENT_TYPE = "application/octet-stream"

T = TypeVar("T")


def _build(config: ObstoreConfig, *, retries: bool) -> Any:
    """An obstore store at the bucket's root; ``retries=False``: obstore never retries."""
    from obstore.store import from_url

    if retries:
        retry: dict[str, Any] = {
            "max_retries": config.max_retries,
            "backoff": {
                "init_backoff": _dt.timedelta(seconds=config.retry_base_delay),
                "max_backoff": _dt.timedelta(seconds=config.retry_max_delay),
                "base": 2,
            },
            "retry_timeout": _dt.timedelta(seconds=config.retry_timeout),
        }
    else:
        retry = {"max_retries": 0}
    kwargs: dict[str, Any] = dict(config.config)
    if config.credential_provider is not None:
        kwargs["credential_provider"] = config.credential_provider
    try:
        opener: Any = from_url  # its overloads type each provider's keys; ours are checked by it
        return opener(
            config.url.root_url,
            client_options=dict(config.client_options) or None,
            retry_config=retry,
            **kwargs,
        )
    except (obs_errors.BaseError, ValueError, TypeError) as exc:
        # the message names keys, never values; the config itself is never printed
        first = str(exc).strip().splitlines()
        raise InvalidError(
            "obstore rejected the store's configuration",
            url=f"{config.url.scheme}://{config.url.bucket}",
            reason=first[0][:300] if first else type(exc).__name__,
        ) from None


class ObstoreStore:
    """An object store on GCS, Azure Blob Storage or S3, through obstore.

    :param url: ``gs://``, ``az://``, ``azure://``, ``abfs[s]://`` or ``s3+obstore://``
        ``bucket/optional/prefix`` (see :mod:`shale_obstore.config`).
    :param options: shale's options and obstore's configuration keys.
    :raises InvalidError: a URL of another scheme, a malformed one, or an option obstore or
        shale rejects (no request has been made).
    """

    def __init__(self, url: str, **options: Any) -> None:
        self._init(resolve_config(url, **options), None)

    @classmethod
    def from_config(cls, config: ObstoreConfig) -> ObstoreStore:
        """A store for already checked settings."""
        store = cls.__new__(cls)
        store._init(config, None)
        return store

    def _init(self, config: ObstoreConfig, clients: tuple[Any, Any] | None) -> None:
        self._config = config
        self._bucket = config.url.bucket
        self._prefix = config.url.prefix
        self._provider = config.url.provider
        self._put_id_attr = PUT_ID_ATTRIBUTE[self._provider]
        if clients is None:
            clients = (_build(config, retries=True), _build(config, retries=False))
        self._store, self._cond = clients
        self._retry = RetryPolicy(
            max_retries=config.max_retries,
            min_delay=min(config.retry_base_delay, config.retry_max_delay),
            max_delay=config.retry_max_delay,
            jitter="equal",
        )
        self._sleep: Callable[[float], None] = time.sleep
        self._new_put_id: Callable[[], str] = lambda: secrets.token_hex(16)
        self._closed = False

    # -- introspection ---------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        """The bucket (container) name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix, ``""`` or ending with ``/``."""
        return self._prefix

    @property
    def provider(self) -> str:
        """``"s3"``, ``"gcs"`` or ``"azure"``."""
        return self._provider

    @property
    def config(self) -> ObstoreConfig:
        """The checked settings (their ``repr`` hides obstore's configuration)."""
        return self._config

    @property
    def client(self) -> Any:
        """The underlying obstore store (at the bucket's root, retrying)."""
        return self._store

    def __repr__(self) -> str:
        return (
            f"ObstoreStore(url={self._config.url.scheme + '://' + self._bucket!r}, "
            f"prefix={self._prefix!r})"
        )

    def enclosing_store(self) -> ObstoreStore | None:
        """The store one prefix level up in the same bucket (``None`` at the bucket's root),
        sharing this store's clients (see ``ObjectStore``: clones find their sources with it)."""
        if not self._prefix:
            return None
        parent = self._prefix.rstrip("/").rpartition("/")[0]
        store = ObstoreStore.__new__(ObstoreStore)
        store._init(
            self._config.with_prefix(parent + "/" if parent else ""), (self._store, self._cond)
        )
        return store

    def __enter__(self) -> ObstoreStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- calling obstore -------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            err = map_error(exc, op, key, self._bucket)
            if err is exc:
                raise
            raise err from exc

    # -- writes ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` at ``key``, replacing any object there (always durable).

        :raises InvalidError: bad key or data that is not bytes-like.
        :raises TransientStoreError: still failing after obstore's retries.
        :raises PermanentStoreError: access denied, missing bucket, bad request.
        """
        name = self._name(key)
        body = object_bytes(key, data)
        self._call(
            "put",
            key,
            lambda: obstore.put(
                self._store, name, body, attributes={"Content-Type": _CONTENT_TYPE}
            ),
        )

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Create ``key`` only if it does not exist.

        :raises ObjectAlreadyExists: the key exists (another writer won the race).
        """
        name = self._name(key)
        self._conditional("put_if_absent", key, name, object_bytes(key, data), "create")

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        """Overwrite ``key`` only if its etag is still ``etag``.

        :raises ObjectAlreadyExists: the object changed since ``etag`` was read, or is gone.
        """
        name = self._name(key)
        if not isinstance(etag, str):
            raise InvalidError("etag must be a str", key=key, type=type(etag).__name__)
        body = object_bytes(key, data)
        e_tag, mark, version = etag.partition(_VERSION_MARK)
        bare = e_tag.strip('"')
        if not bare or not bare.isascii() or not bare.isprintable() or '"' in bare:
            raise ObjectAlreadyExists(
                "etag precondition failed: no object can have this etag", key=key, etag=etag
            )
        mode: dict[str, str] = {"e_tag": e_tag}
        if self._provider == "gcs":
            if not mark:  # GCS compares generations: find the one of this etag
                current = self.head(key).etag or ""
                current_tag, _, version = current.partition(_VERSION_MARK)
                if current_tag.strip('"') != bare or not version:
                    raise ObjectAlreadyExists("etag precondition failed", key=key, etag=etag)
            mode["version"] = version
        self._conditional("put_if_match", key, name, body, mode)

    def _conditional(
        self, op: str, key: str, name: str, data: bytes | memoryview, mode: Any
    ) -> None:
        """One conditional put, retried here; a lost reply is resolved by the put's id."""
        put_id = self._new_put_id()
        attributes = {"Content-Type": _CONTENT_TYPE, self._put_id_attr: put_id}
        uncertain = False  # an earlier attempt may have reached the server

        def attempt() -> None:
            self._call(
                op,
                key,
                lambda: obstore.put(
                    self._cond, name, data, mode=mode, attributes=attributes, use_multipart=False
                ),
            )

        def note(_retry: int, _exc: BaseException, _delay: float) -> None:
            nonlocal uncertain
            uncertain = True

        try:
            self._retry.call(
                attempt,
                what=f"obstore {op} of {key!r}",
                sleep=lambda delay: self._sleep(delay),
                on_retry=note,
                log_level=logging.DEBUG,
            )
        except ObjectAlreadyExists:
            if uncertain and self._landed(op, key, name, put_id):
                return
            raise
        except TransientStoreError:
            try:  # out of retries: one last look, it may have landed
                if self._landed(op, key, name, put_id):
                    return
            except ObjectStoreError:
                pass
            raise

    def _landed(self, op: str, key: str, name: str, put_id: str) -> bool:
        """Whether the object at ``name`` is the one our put ``put_id`` wrote."""
        try:
            result = self._call(
                op, key, lambda: obstore.get(self._store, name, options={"head": True})
            )
        except ObjectNotFound:
            return False
        stored = result.attributes.get(self._put_id_attr)
        if stored == put_id:
            log.info("obstore %s of %r: the reply was lost but the write landed", op, key)
            return True
        return False

    def delete(self, key: str) -> None:
        """Remove ``key``; succeeds when it is already gone."""
        name = self._name(key)
        try:
            self._call("delete", key, lambda: obstore.delete(self._store, name))
        except ObjectNotFound:
            pass

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The whole object. :raises ObjectNotFound: the key does not exist."""
        name = self._name(key)
        return self._call("get", key, lambda: bytes(obstore.get(self._store, name).bytes()))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object, clipped to its length (``b""`` if empty).

        :raises InvalidError: ``start`` or ``end`` is negative or not an int.
        :raises ObjectNotFound: the key does not exist.
        """
        name = self._name(key)
        check_range(key, start, end)
        if end <= start:
            self.head(key)  # an empty range still requires the object to exist
            return b""

        def read() -> bytes:
            try:
                return bytes(obstore.get_range(self._store, name, start=start, end=end))
            except obs_errors.BaseError as exc:
                if status_of(exc) == 416:  # start is at or past the end (or the object is empty)
                    return b""
                raise

        return self._call("get_range", key, read)

    def _meta(self, key: str, meta: Any) -> ObjectMeta:
        modified = meta.get("last_modified")
        e_tag = meta.get("e_tag") or None
        version = meta.get("version")
        if e_tag is not None and version and self._provider == "gcs":
            e_tag = f"{e_tag}{_VERSION_MARK}{version}"
        stamp = modified.timestamp() if modified is not None else 0.0
        return ObjectMeta(key, int(meta.get("size") or 0), stamp, e_tag)

    def head(self, key: str) -> ObjectMeta:
        """Size, modification time (epoch seconds) and etag of one object.

        :raises ObjectNotFound: the key does not exist.
        """
        name = self._name(key)
        return self._meta(key, self._call("head", key, lambda: obstore.head(self._store, name)))

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """Every object whose key starts with ``prefix``, in ascending key order.

        The whole listing is fetched before the first item is returned.

        :raises InvalidError: ``prefix`` is not a str.
        """
        if not isinstance(prefix, str):
            raise InvalidError("list prefix must be a str", type=type(prefix).__name__)
        if not plausible_prefix(prefix):
            return iter(())
        full = self._prefix + prefix
        return iter(self._call("list", prefix, lambda: self._list_all(full)))

    def _list_all(self, full: str) -> builtins.list[ObjectMeta]:
        directory = full.rpartition("/")[0]
        skip = len(self._prefix)
        out: list[ObjectMeta] = []
        for chunk in obstore.list(self._store, prefix=directory or None):
            for meta in chunk:
                path = meta["path"]
                if not path.startswith(full):
                    continue
                key = path[skip:]
                try:
                    validate_key(key)
                except InvalidError:
                    log.debug("obstore list skips %r: not a valid shale key", path)
                    continue
                out.append(self._meta(key, meta))
        out.sort(key=lambda m: m.key)
        return out

    def close(self) -> None:
        """Mark the store closed (obstore releases its connections when dropped)."""
        self._closed = True
