"""How failures of the minio SDK and urllib3 become shale's four object-store error kinds.

======================================================  =========================================
what happened                                           error
======================================================  =========================================
404 / ``NoSuchKey``                                     :class:`ObjectNotFound`
412 / ``PreconditionFailed`` (also SeaweedFS's 412 for  :class:`ObjectAlreadyExists`
``If-Match`` on a missing key, where AWS answers 404)
5xx, 408, 429, throttling codes (``SlowDown``, ...),    :class:`TransientStoreError`
``RequestTimeout``, ``ConditionalRequestConflict``,
connection errors, timeouts, truncated or garbled
responses
403, 400 and every other 4xx, ``NoSuchBucket``,         :class:`PermanentStoreError`
TLS certificate failures
======================================================  =========================================

Only transient errors are retried by the store. Messages carry the operation, key, bucket, S3
error code and HTTP status, never credentials: the SDK's own messages name resources and request
ids only, and no request header is ever copied into a message.
"""

from __future__ import annotations

import http.client
import socket
from xml.etree.ElementTree import ParseError

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

from shale.spi import (
    InvalidError,
    ObjectAlreadyExists,
    ObjectNotFound,
    ObjectStoreError,
    PermanentStoreError,
    TransientStoreError,
)

__all__ = ["NOT_FOUND_CODES", "TRANSIENT_CODES", "map_error", "status_of"]

#: Codes meaning "this object does not exist".
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "ResourceNotFound"})
#: Codes worth retrying whatever their HTTP status.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "SlowDownRead",
        "SlowDownWrite",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "ConditionalRequestConflict",
        "XMinioServerNotInitialized",
    }
)
_TRANSIENT_STATUS = frozenset({408, 429})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error, if it carries one."""
    if isinstance(exc, S3Error):
        response = getattr(exc, "response", None)
        status = getattr(response, "status", None)
        return status if isinstance(status, int) else None
    if isinstance(exc, ServerError):
        code = exc.status_code
        return code if isinstance(code, int) else None
    if isinstance(exc, InvalidResponseError):
        raw = getattr(exc, "_code", None)
        return raw if isinstance(raw, int) else None
    return None


def _by_status(status: int | None, message: str, detail: dict[str, object]) -> ObjectStoreError:
    if status is not None and (status >= 500 or status in _TRANSIENT_STATUS):
        return TransientStoreError(message, **detail)
    return PermanentStoreError(message, **detail)


def map_error(exc: BaseException, op: str, key: str, bucket: str) -> BaseException:
    """The shale error for ``exc`` raised by ``op`` on ``key`` (callers ``raise ... from exc``).

    Exceptions that are not I/O failures (programming errors) are returned unchanged.
    """
    detail: dict[str, object] = {"key": key, "bucket": bucket}
    if isinstance(exc, ObjectStoreError | InvalidError):
        return exc
    if isinstance(exc, S3Error):
        code = exc.code or "unknown"
        status = status_of(exc)
        detail.update(code=code, status=status)
        text = f"s3 {op} failed: {exc.message or code}"
        if code in NOT_FOUND_CODES or (
            status == 404 and code not in ("NoSuchBucket", "NoSuchUpload")
        ):
            return ObjectNotFound("object not found", **detail)
        if code == "PreconditionFailed" or status == 412:
            return ObjectAlreadyExists(
                "precondition failed: the object exists or changed", **detail
            )
        if code == "NoSuchBucket":
            return PermanentStoreError(f"s3 {op} failed: the bucket does not exist", **detail)
        if code in TRANSIENT_CODES:
            return TransientStoreError(text, **detail)
        return _by_status(status, text, detail)
    if isinstance(exc, ServerError | InvalidResponseError):
        status = status_of(exc)
        detail.update(status=status)
        if status == 404:
            return ObjectNotFound("object not found", **detail)
        if status == 412:
            return ObjectAlreadyExists(
                "precondition failed: the object exists or changed", **detail
            )
        return _by_status(status, f"s3 {op} failed: unexpected HTTP {status} response", detail)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return PermanentStoreError(f"s3 {op} failed: TLS error: {exc}", **detail)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(
        exc.reason, urllib3.exceptions.SSLError
    ):
        return PermanentStoreError(f"s3 {op} failed: TLS error: {exc.reason}", **detail)
    if isinstance(
        exc,
        urllib3.exceptions.HTTPError
        | http.client.HTTPException
        | ConnectionError
        | socket.timeout
        | TimeoutError
        | OSError
        | ParseError,
    ):
        return TransientStoreError(f"s3 {op} failed: {type(exc).__name__}: {exc}", **detail)
    return exc
