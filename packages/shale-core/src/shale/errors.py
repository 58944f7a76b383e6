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
  :class:`ChangesGoneError` (a ``DataError``) -- the WAL a change stream needs was
  garbage-collected; it names the seq the stream can resume from.
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
    "ChangesGoneError",
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


class ChangesGoneError(DataError):
    """Changes a stream needs are gone: the WAL SSTs holding them were garbage-collected.

    Never a silent gap: the stream stops here. :attr:`resume_seq` is the ``since_seq`` from
    which a new stream can start (it yields the changes with seq > ``resume_seq``); the changes
    with seq in ``(since_seq, resume_seq]`` cannot be read from the WAL any more (read the
    database itself, or a checkpoint, to rebuild). A named consumer's pin prevents this
    (docs/changes.md).

    :ivar since_seq: the position the stream needed to continue from.
    :ivar resume_seq: the earliest position a stream can continue from.
    """

    def __init__(self, message: str, *, since_seq: int, resume_seq: int, **detail: object) -> None:
        super().__init__(message, since_seq=since_seq, resume_seq=resume_seq, **detail)
        self.since_seq = since_seq
        self.resume_seq = resume_seq


class InternalError(ShaleError):
    """A bug: an invariant of shale or of a plugin was broken."""

    kind = "internal"
