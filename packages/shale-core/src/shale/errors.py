"""The public error kinds of shale.

SlateDB exposes a few coarse, stable error kinds and so do we. Only these classes cross the
public API; each message carries ``key=value`` detail so logs stay greppable.

- :class:`TransactionError` -- a transaction conflicted; retry the whole transaction.
- :class:`ClosedError` -- the handle is finished; ``reason`` is ``"clean"``, ``"fenced"`` or
  ``"failed"``. After a fence or a failure its ``__cause__`` is what closed the handle.
- :class:`UnavailableError` -- may succeed if retried (I/O, object-store outages, timeouts).
  Only transient conditions: shale retries these, and nothing else, in the background.
  Also an ``OSError`` (``errno`` ``None``), for callers' existing I/O handlers.
- :class:`InvalidError` -- bad argument, configuration or call. Also a ``ValueError``. This
  includes an object store that refuses for good (access denied, missing bucket:
  :class:`shale.objstore.PermanentStoreError`): retrying cannot help, the configuration must
  change.
- :class:`DataError` -- persisted state is corrupt or missing (checksum, bad FlatBuffer,
  unknown version, missing object).
- :class:`InternalError` -- a bug in shale or in a plugin.
"""

from __future__ import annotations

__all__ = [
    "ShaleError",
    "TransactionError",
    "ClosedError",
    "UnavailableError",
    "InvalidError",
    "DataError",
    "InternalError",
    "CloseReason",
]


class CloseReason:
    """Why a handle was closed (string constants, like SlateDB's ``CloseReason``)."""

    CLEAN = "clean"
    FENCED = "fenced"
    FAILED = "failed"


class ShaleError(Exception):
    """Base class of every error shale raises on purpose."""

    kind: str = "internal"

    def __init__(self, message: str, **detail: object) -> None:
        if detail:
            message = message + " (" + ", ".join(f"{k}={v!r}" for k, v in detail.items()) + ")"
        super().__init__(message)
        self.message = message
        self.detail = detail


class TransactionError(ShaleError):
    """A transaction conflicted with a concurrent write; retry the whole transaction."""

    kind = "transaction"


class ClosedError(ShaleError):
    """The handle has been closed, cleanly or because it was fenced or failed."""

    kind = "closed"

    def __init__(self, message: str, reason: str = CloseReason.CLEAN, **detail: object) -> None:
        super().__init__(message, reason=reason, **detail)
        self.reason = reason


class UnavailableError(ShaleError, OSError):
    """A transient condition (I/O, network, timeout); the call may succeed if retried.

    Also an ``OSError``, so handlers written for I/O failures (``except OSError``) catch it;
    its ``errno`` is ``None``."""

    kind = "unavailable"


class InvalidError(ShaleError, ValueError):
    """A bad argument, configuration or call."""

    kind = "invalid"


class DataError(ShaleError):
    """Persisted state is corrupt, of an unknown version, or missing."""

    kind = "data"


class InternalError(ShaleError):
    """A bug: an invariant of shale or of a plugin was broken."""

    kind = "internal"
