"""The S3 object store: shale's ``ObjectStore`` over any S3-compatible server, via the minio SDK.

Key ``k`` is the object ``<prefix>k`` in the bucket. How each protocol invariant is kept:

- **No partial objects.** S3 publishes an object only when its PUT (or its multipart
  CompleteMultipartUpload) finishes; readers see the old object or the new one.
- **Create-if-absent and compare-and-swap are atomic on the server.** ``put_if_absent`` sends a
  real ``If-None-Match: *`` header and ``put_if_match`` an ``If-Match: "<etag>"`` header; the
  server decides (412 ``PreconditionFailed`` when the condition fails, which SeaweedFS also
  answers for ``If-Match`` on a missing key). The minio SDK's public ``put_object`` would send
  these as ``x-amz-meta-*`` metadata, which no server evaluates, so writes go through the SDK's
  lower-level ``Minio._put_object`` / ``_create_multipart_upload`` / ``_upload_part`` /
  ``_execute``. Those are internal: every private call is in :mod:`shale_minio._sdk` (whose test
  fails loudly on an SDK change), the dependency is pinned to ``minio>=7.2,<7.3`` and the
  tests exercise every one of them against a real server.
- **Only transient failures are retried**, by this store, with exponential backoff and jitter,
  at most ``max_retries`` times; 404, 412, 403 and other 4xx are never retried. The schedule
  and the budget are shale's one retry policy (:class:`shale.objstore.retrying.RetryPolicy`,
  "equal" jitter), applied per request; what is S3-specific stays here: which requests may be
  repeated, and the put id below. The SDK's own
  retries (urllib3 ``Retry(total=5)`` on connection errors and 5xx) are switched off by giving
  it a pool with ``retries=False``, so no request is ever repeated behind this store's back.
- **A conditional write whose reply was lost is resolved exactly.** Every put carries a fresh
  random 128-bit id in ``x-amz-meta-shale-put-id``. When a conditional PUT fails in a way that
  may have reached the server (connection reset, timeout, 5xx) it is retried, and if the retry
  (or the last attempt) sees 412, the store reads the object's metadata back: the put succeeded
  iff the stored object carries *our* id. Body and id are stored by one atomic PUT, so a match
  proves our bytes are what is stored, and no other writer can produce our id -- not even one
  writing identical bytes (two SlateDB writers bumping the same epoch would, and comparing
  bytes would let both think they won). If the object carries no id at all (a writer that is
  not shale, or a server that drops user metadata) the store cannot prove the write was its
  own and reports :class:`ObjectAlreadyExists`: a writer that wrongly believes it lost fails
  safe (it reloads or stops as fenced), one that wrongly believes it won would not.
  A lost reply followed by another writer's overwrite before the read-back is reported as a
  conflict too; callers treat a conflict as "reload and re-check", as SlateDB does.
- **Large objects go up in parts.** Unconditional puts above ``multipart_threshold`` (16 MiB)
  use a multipart upload of ``part_size`` parts, up to four in flight, each part retried on its
  own; a failed Complete retries the whole upload. Conditional puts use one PUT up to S3's
  5 GiB single-PUT limit, because every server that honours ``If-None-Match`` on PUT honours it
  there, while support on CompleteMultipartUpload is newer (AWS 2024; SeaweedFS 4.48 has it);
  above 5 GiB they go multipart with the condition on the Complete request.
- **list is sorted client-side.** Pages of ListObjectsV2 are collected, then sorted by key:
  SeaweedFS lists ``a/b`` before ``a-c``. Names a shale key cannot have (``a//b``, directory
  markers ending in ``/``) are skipped. A transient failure mid-listing restarts the listing.
- **Etags are the server's.** For single-part objects that is the MD5 of the body, so an
  overwrite with identical bytes keeps the etag and a ``put_if_match`` with the old etag still
  succeeds (AWS S3 behaves the same; the content is indeed unchanged).

Secrets never appear in ``repr``, logs or error messages (see :mod:`shale_minio.config` and
:mod:`shale_minio.error_map`).
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error

from shale.spi import (
    InvalidError,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStoreError,
    RetryPolicy,
    TransientStoreError,
    check_range,
    get_logger,
    object_bytes,
    plausible_prefix,
    validate_key,
)
from shale_minio import _sdk
from shale_minio.config import S3Config, resolve_config
from shale_minio.error_map import map_error

__all__ = ["PUT_ID_HEADER", "SINGLE_PUT_LIMIT", "S3Store"]

log = get_logger(__name__)

#: User-metadata header carrying each put's random id (how a lost reply is resolved).
PUT_ID_HEADER = "x-amz-meta-shale-put-id"
#: S3's largest single PUT; conditional puts up to this size use one request.
SINGLE_PUT_LIMIT = 5 << 30
#: Parts of one multipart upload sent concurrently.
PART_CONCURRENCY = 4
_MAX_PARTS = 10_000
_CONTENT_TYPE = "application/octet-stream"

T = TypeVar("T")

#: Request headers as the minio SDK's internal calls type them.
_Headers = dict[str, str | list[str] | tuple[str]]


class S3Store:
    """An object store in a bucket of an S3-compatible server (see the module docstring).

    :param bucket: the bucket name.
    :param prefix: keys live under this prefix (``"db1"`` and ``"db1/"`` are the same).
    :param endpoint: ``http://host:port``, ``https://host`` or ``host:port``; default
        ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT``, else AWS S3.
    :param access_key: default ``AWS_ACCESS_KEY_ID``; no credentials means anonymous.
    :param secret_key: default ``AWS_SECRET_ACCESS_KEY``.
    :param session_token: default ``AWS_SESSION_TOKEN``.
    :param region: default ``AWS_REGION``, ``AWS_DEFAULT_REGION``, else ``us-east-1``.
    :param secure: https when true; default from the endpoint's scheme, else ``AWS_ALLOW_HTTP``.
    :param ca_bundle: PEM file of CA certificates (default ``AWS_CA_BUNDLE``, else certifi's).
    :param timeout: seconds for connecting and for each socket read (connect capped at 10 s).
    :param max_retries: retries of a transient failure (0 disables retrying).
    :param pool_size: connections kept open to the server; size it to the I/O threads.
    :param create_bucket: create the bucket now if it does not exist.
    :param multipart_threshold: unconditional puts larger than this go up in parts.
    :param part_size: bytes per part (at least 5 MiB).
    :param retry_base_delay: first backoff delay in seconds; doubles per retry.
    :param retry_max_delay: cap of the backoff delay in seconds.
    :param list_page_size: keys per ListObjectsV2 request (1..1000).
    :param env: the environment to read ``AWS_*`` variables from (default ``os.environ``).
    :raises InvalidError: a bad option, bucket name, prefix or endpoint.
    :raises PermanentStoreError: ``create_bucket`` failed for a reason retrying cannot fix.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        region: str | None = None,
        secure: bool | None = None,
        ca_bundle: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        pool_size: int | None = None,
        create_bucket: bool = False,
        multipart_threshold: int | None = None,
        part_size: int | None = None,
        retry_base_delay: float | None = None,
        retry_max_delay: float | None = None,
        list_page_size: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        config = resolve_config(
            bucket,
            prefix,
            env=env,
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            session_token=session_token,
            region=region,
            secure=secure,
            ca_bundle=ca_bundle,
            timeout=timeout,
            max_retries=max_retries,
            pool_size=pool_size,
            create_bucket=create_bucket,
            multipart_threshold=multipart_threshold,
            part_size=part_size,
            retry_base_delay=retry_base_delay,
            retry_max_delay=retry_max_delay,
            list_page_size=list_page_size,
        )
        self._init(config)

    @classmethod
    def from_config(cls, config: S3Config) -> S3Store:
        """A store for an already resolved :class:`~shale_minio.config.S3Config`."""
        store = cls.__new__(cls)
        store._init(config)
        return store

    @classmethod
    def from_url(cls, url: str, *, env: Mapping[str, str] | None = None, **options: Any) -> S3Store:
        """A store for ``s3://bucket/optional/prefix`` with keyword ``options``.

        :raises InvalidError: not an ``s3://`` URL, a malformed one, or an unknown option.
        """
        from shale_minio.config import parse_s3_url

        parsed = parse_s3_url(url)
        if parsed is None:
            raise InvalidError("not an s3:// URL", scheme=str(url).partition("://")[0])
        bucket, prefix = parsed
        return cls.from_config(resolve_config(bucket, prefix, env=env, **options))

    def _init(self, config: S3Config) -> None:
        self._config = config
        self._bucket = config.bucket
        self._prefix = config.prefix
        self._retry = RetryPolicy(
            max_retries=config.max_retries,
            min_delay=min(config.retry_base_delay, config.retry_max_delay),
            max_delay=config.retry_max_delay,
            jitter="equal",
        )
        ca_certs = config.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where()
        if config.secure and config.ca_bundle and not os.path.isfile(config.ca_bundle):
            raise InvalidError("s3 CA bundle file does not exist", ca_bundle=config.ca_bundle)
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=config.pool_size,
            block=False,
            timeout=urllib3.Timeout(connect=min(config.timeout, 10.0), read=config.timeout),
            retries=False,  # this store retries, knowing which requests are safe to repeat
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
        )
        self._client = Minio(
            config.host,
            access_key=config.access_key,
            secret_key=config.secret_key,
            session_token=config.session_token,
            secure=config.secure,
            region=config.region,  # a fixed region: no GetBucketLocation round trips
            http_client=self._http,
        )
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep
        self._new_put_id: Callable[[], str] = lambda: secrets.token_hex(16)
        self._single_put_limit = SINGLE_PUT_LIMIT
        self._closed = False
        if config.create_bucket:
            self._call("create_bucket", "", self._ensure_bucket)
        log.debug("opened %r", self)

    # -- introspection ---------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix, ``""`` or ending with ``/``."""
        return self._prefix

    @property
    def endpoint(self) -> str:
        """The server's URL, ``http(s)://host[:port]``."""
        return self._config.endpoint

    @property
    def config(self) -> S3Config:
        """The resolved settings (its ``repr`` hides the secrets)."""
        return self._config

    def __repr__(self) -> str:
        return (
            f"S3Store(bucket={self._bucket!r}, prefix={self._prefix!r}, endpoint={self.endpoint!r})"
        )

    def enclosing_store(self) -> S3Store | None:
        """The store one prefix level up in the same bucket (``None`` at the bucket's root).

        Optional in the store protocol: it lets a clone opened at ``s3://bucket/dbs/clone`` find
        the database it was cloned from at ``dbs/parent`` (:mod:`shale.meta.locator`). Same settings
        and credentials; it never creates the bucket.
        """
        if not self._prefix:
            return None
        parent = self._prefix.rstrip("/").rpartition("/")[0]
        config = dataclasses.replace(
            self._config, prefix=parent + "/" if parent else "", create_bucket=False
        )
        return S3Store.from_config(config)

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- retrying ----------------------------------------------------------------------------

    def _draw(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def _delay(self, attempt: int) -> float:
        """Backoff before retry ``attempt`` (0-based): exponential, capped, "equal jitter"."""
        return self._retry.delay(attempt, self._draw)

    def _mapped(self, op: str, key: str, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn`` raising shale's error kinds (:func:`~shale_minio.error_map.map_error`)."""

        def call() -> T:
            try:
                return fn()
            except Exception as exc:
                err = map_error(exc, op, key, self._bucket)
                if err is exc:
                    raise
                raise err from exc

        return call

    def _call(
        self,
        op: str,
        key: str,
        fn: Callable[[], T],
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> T:
        """Run the idempotent request ``fn``, retrying transient failures under the policy."""
        return self._retry.call(
            self._mapped(op, key, fn),
            what=f"s3 {op} of {key!r}",
            sleep=lambda delay: self._sleep(delay),  # looked up late: tests replace it
            draw=self._draw,
            on_retry=on_retry,
            log_level=logging.DEBUG,
        )

    # -- names -------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)

    # -- writes ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` at ``key``, replacing any object there (always durable on S3).

        :raises InvalidError: bad key or data that is not bytes-like.
        :raises TransientStoreError: still failing after ``max_retries`` retries.
        :raises PermanentStoreError: access denied, missing bucket, bad request.
        """
        name = self._name(key)
        self._write("put", key, name, object_bytes(key, data), {})

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Create ``key`` only if it does not exist (``If-None-Match: *``).

        :raises ObjectAlreadyExists: the key exists (another writer won the race).
        :raises TransientStoreError: still failing after the retries; the outcome is unknown
            only if the final read-back failed too.
        """
        name = self._name(key)
        self._write("put_if_absent", key, name, object_bytes(key, data), {"If-None-Match": "*"})

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        """Overwrite ``key`` only if its etag is still ``etag`` (``If-Match``).

        :raises ObjectAlreadyExists: the object changed since ``etag`` was read, or is gone.
        """
        name = self._name(key)
        if not isinstance(etag, str):
            raise InvalidError("etag must be a str", key=key, type=type(etag).__name__)
        body = object_bytes(key, data)
        bare = etag.strip('"')
        if not bare or not bare.isascii() or not bare.isprintable() or '"' in bare:
            raise ObjectAlreadyExists(
                "etag precondition failed: no object can have this etag", key=key, etag=etag
            )
        self._write("put_if_match", key, name, body, {"If-Match": f'"{bare}"'})

    def _write(self, op: str, key: str, name: str, data: bytes, condition: dict[str, str]) -> None:
        """Upload ``data`` under ``name``, retrying; resolve lost replies of conditional puts."""
        put_id = self._new_put_id()
        limit = self._single_put_limit if condition else self._config.multipart_threshold
        uncertain = False  # an earlier attempt may have reached the server

        def attempt() -> None:
            if len(data) > limit:
                self._multipart_upload(op, key, name, data, put_id, condition)
            else:
                headers: _Headers = {
                    "Content-Type": _CONTENT_TYPE,
                    PUT_ID_HEADER: put_id,
                    **condition,
                }
                _sdk.put_object(self._client, self._bucket, name, data, headers)

        def note(_retry: int, _exc: BaseException, _delay: float) -> None:
            nonlocal uncertain
            uncertain = True

        try:
            self._call(op, key, attempt, on_retry=note)
        except ObjectAlreadyExists:
            if condition and uncertain and self._landed(op, key, name, put_id):
                return
            raise
        except TransientStoreError:
            if condition:
                try:  # out of retries: one last look (one request), it may have landed
                    if self._landed(op, key, name, put_id, retry=False):
                        return
                except ObjectStoreError:
                    pass
            raise

    def _landed(self, op: str, key: str, name: str, put_id: str, *, retry: bool = True) -> bool:
        """Whether the object at ``name`` is the one our put ``put_id`` wrote."""

        def stat_object() -> Any:
            return self._client.stat_object(self._bucket, name)

        try:
            if retry:
                stat = self._call(op, key, stat_object)
            else:
                try:
                    stat = stat_object()
                except Exception as exc:
                    err = map_error(exc, op, key, self._bucket)
                    if err is exc:
                        raise
                    raise err from exc
        except ObjectNotFound:
            return False
        stored = stat.metadata.get(PUT_ID_HEADER) if stat.metadata is not None else None
        if stored == put_id:
            log.info("s3 %s of %r: the reply was lost but the write landed", op, key)
            return True
        if stored is None:
            log.warning(
                "s3 %s of %r: after a lost reply the object carries no shale put id "
                "(written by another tool, or the server drops user metadata); reporting a "
                "conflict",
                op,
                key,
            )
        return False

    def _multipart_upload(
        self, op: str, key: str, name: str, data: bytes, put_id: str, condition: dict[str, str]
    ) -> None:
        """One multipart upload of ``data``; the condition (if any) goes on the Complete."""
        size = len(data)
        part_size = max(self._config.part_size, -(-size // _MAX_PARTS))
        bounds = [(i, min(i + part_size, size)) for i in range(0, size, part_size)]
        upload_id = self._call(
            op,
            key,
            lambda: _sdk.create_multipart_upload(
                self._client,
                self._bucket,
                name,
                {"Content-Type": _CONTENT_TYPE, PUT_ID_HEADER: put_id},
            ),
        )
        completed = False
        try:

            def upload(number: int) -> tuple[int, str]:
                start, end = bounds[number - 1]
                chunk = data[start:end]
                etag = self._call(
                    op,
                    key,
                    lambda: _sdk.upload_part(
                        self._client, self._bucket, name, chunk, upload_id, number
                    ),
                )
                return number, etag

            numbers = range(1, len(bounds) + 1)
            workers = min(PART_CONCURRENCY, len(bounds))
            with ThreadPoolExecutor(workers, thread_name_prefix="shale-s3-part") as pool:
                parts = sorted(pool.map(upload, numbers))
            _sdk.complete_multipart_upload(
                self._client, self._bucket, name, upload_id, parts, condition
            )
            completed = True
        finally:
            if not completed:
                self._abort(name, upload_id)

    def _abort(self, name: str, upload_id: str) -> None:
        try:
            _sdk.abort_multipart_upload(self._client, self._bucket, name, upload_id)
        except Exception as exc:  # best effort: lifecycle rules clean up stray uploads
            log.debug("s3 abort of upload %s for %r failed: %s", upload_id, name, exc)

    def _ensure_bucket(self) -> None:
        if self._client.bucket_exists(self._bucket):
            return
        try:
            try:
                self._client.make_bucket(self._bucket)
            except ValueError as exc:  # stricter naming rules for new buckets
                raise InvalidError(
                    "cannot create a bucket with this name", bucket=self._bucket, reason=str(exc)
                ) from None
            log.info("created bucket %r at %s", self._bucket, self.endpoint)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
            if not self._client.bucket_exists(self._bucket):
                raise

    def delete(self, key: str) -> None:
        """Remove ``key``; succeeds when it is already gone."""
        name = self._name(key)
        try:
            self._call("delete", key, lambda: self._client.remove_object(self._bucket, name))
        except ObjectNotFound:
            pass

    # -- reads -------------------------------------------------------------------------------

    def _read(self, name: str, offset: int, length: int) -> bytes:
        response = self._client.get_object(self._bucket, name, offset=offset, length=length)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def get(self, key: str) -> bytes:
        """The whole object. :raises ObjectNotFound: the key does not exist."""
        name = self._name(key)
        return self._call("get", key, lambda: self._read(name, 0, 0))

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
                return self._read(name, start, end - start)
            except S3Error as exc:
                if exc.code == "InvalidRange":  # 416: start is at or past the end
                    return b""
                raise

        return self._call("get_range", key, read)

    def head(self, key: str) -> ObjectMeta:
        """Size, modification time (epoch seconds) and etag of one object.

        :raises ObjectNotFound: the key does not exist.
        """
        name = self._name(key)
        stat = self._call("head", key, lambda: self._client.stat_object(self._bucket, name))
        modified = stat.last_modified.timestamp() if stat.last_modified else 0.0
        return ObjectMeta(key, int(stat.size or 0), modified, stat.etag or None)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """Every object whose key starts with ``prefix``, in ascending key order.

        The whole listing is fetched (every page) before the first item is returned, then
        sorted client-side.

        :raises InvalidError: ``prefix`` is not a str.
        """
        if not isinstance(prefix, str):
            raise InvalidError("list prefix must be a str", type=type(prefix).__name__)
        if not plausible_prefix(prefix):
            return iter(())
        return iter(self._call("list", prefix, lambda: self._list_all(self._prefix + prefix)))

    def _list_all(self, name_prefix: str) -> builtins.list[ObjectMeta]:
        skip = len(self._prefix)
        out: list[ObjectMeta] = []
        for obj in _sdk.list_objects(
            self._client, self._bucket, name_prefix, self._config.list_page_size
        ):
            name = obj.object_name
            if name is None or obj.is_dir or not name.startswith(self._prefix):
                continue
            key = name[skip:]
            try:
                validate_key(key)
            except InvalidError:
                log.debug("s3 list skips %r: not a valid shale key", name)
                continue
            modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
            out.append(ObjectMeta(key, int(obj.size or 0), modified, obj.etag or None))
        out.sort(key=lambda m: m.key)
        return out

    def close(self) -> None:
        """Close the pooled connections."""
        if not self._closed:
            self._closed = True
            self._http.clear()
