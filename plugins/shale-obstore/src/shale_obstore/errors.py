"""How obstore's exceptions become shale's four object-store error kinds.

======================================================  =========================================
obstore raises                                          shale error
======================================================  =========================================
``FileNotFoundError`` (object not found)                :class:`ObjectNotFound`
``FileNotFoundError`` naming ``NoSuchBucket`` /         :class:`PermanentStoreError`
``ContainerNotFound`` / "bucket does not exist"
``AlreadyExistsError``, ``PreconditionError``           :class:`ObjectAlreadyExists`
``PermissionDeniedError``, ``UnauthenticatedError``,    :class:`PermanentStoreError`
``NotSupportedError``, ``InvalidPathError``,
``NotModifiedError``
other errors with an HTTP status: 5xx, 408, 429         :class:`TransientStoreError`
other errors with another HTTP status (4xx)             :class:`PermanentStoreError`
errors without a status that name credentials           :class:`PermanentStoreError`
(no credentials found, a token file that cannot be
read)
every other obstore error (connection refused or        :class:`TransientStoreError`
reset, timeouts, a truncated body), ``OSError``,
``TimeoutError``
======================================================  =========================================

obstore (Rust ``object_store``) reports only a message for most HTTP failures, so the status is
read from its text (``... status code: 503 ...``). Messages are cut to their first line (the
rest is a Rust debug dump) and never carry credentials: obstore signs requests in headers,
which it does not print.
"""

from __future__ import annotations

import re

from obstore import exceptions as E

from shale.spi import (
    InvalidError,
    ObjectAlreadyExists,
    ObjectNotFound,
    ObjectStoreError,
    PermanentStoreError,
    TransientStoreError,
)

__all__ = ["MISSING_BUCKET_MARKERS", "map_error", "message_of", "status_of"]

#: Text in a not-found error meaning the bucket (container), not the object, is missing.
MISSING_BUCKET_MARKERS = (
    "NoSuchBucket",
    "ContainerNotFound",
    "bucket does not exist",
    "The specified container does not exist",
)
_STATUS = re.compile(r"status code: (\d{3})")
_TRANSIENT_STATUS = frozenset({408, 429})
_CREDENTIAL_WORDS = ("credential", "Credential", "token file", "Unauthenticated")
_PERMANENT = (
    E.PermissionDeniedError,
    E.UnauthenticatedError,
    E.NotSupportedError,
    E.InvalidPathError,
    E.NotModifiedError,
    E.UnknownConfigurationKeyError,
)


def message_of(exc: BaseException, limit: int = 400) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"


def status_of(exc: BaseException) -> int | None:
    """The HTTP status named in an obstore error's message, if any."""
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


def map_error(exc: BaseException, op: str, key: str, bucket: str) -> BaseException:
    """The shale error for ``exc`` raised by ``op`` on ``key`` (callers ``raise ... from exc``).

    Exceptions that are not I/O failures (programming errors) are returned unchanged.
    """
    if isinstance(exc, ObjectStoreError | InvalidError):
        return exc
    status = status_of(exc)
    detail: dict[str, object] = {"key": key, "bucket": bucket, "status": status}
    text = f"obstore {op} failed: {message_of(exc)}"
    if isinstance(exc, FileNotFoundError) or (isinstance(exc, E.BaseError) and status == 404):
        full = str(exc)
        if any(marker in full for marker in MISSING_BUCKET_MARKERS):
            return PermanentStoreError(f"obstore {op} failed: the bucket does not exist", **detail)
        return ObjectNotFound("object not found", **detail)
    if isinstance(exc, E.AlreadyExistsError | E.PreconditionError) or status == 412:
        return ObjectAlreadyExists("precondition failed: the object exists or changed", **detail)
    if isinstance(exc, _PERMANENT):
        return PermanentStoreError(text, **detail)
    if isinstance(exc, E.BaseError):
        if status is not None:
            if status >= 500 or status in _TRANSIENT_STATUS:
                return TransientStoreError(text, **detail)
            return PermanentStoreError(text, **detail)
        if any(word in str(exc) for word in _CREDENTIAL_WORDS):
            return PermanentStoreError(text, **detail)
        return TransientStoreError(text, **detail)
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return TransientStoreError(text, **detail)
    return exc
