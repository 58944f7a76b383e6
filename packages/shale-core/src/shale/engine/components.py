"""Checks of the components a writer is opened with, before anything is written.

Settings are plain data and check themselves (:mod:`shale.settings`); components -- the object
store, merge operator, filter policies, block transformer, clock, block cache and the codec's
library -- are objects given to ``Db.open`` (or resolved by name through the plugins) and are
only *used* later, by background threads. A component that cannot work (a missing optional
codec library, an object without the methods its protocol needs, a merge operator name no plugin
offers) would otherwise be found by the first WAL upload, L0 flush or compaction, which fails
the database after writes were acknowledged. So ``Db.open`` (and the compactor) call these
first, and a bad component is an :class:`~shale.errors.InvalidError` naming it, raised before
the store is even opened.

The checks are structural (the methods a protocol needs exist and are callable), not
behavioural: a plugin's own bugs still surface when its methods run, wrapped with its name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from shale.errors import InvalidError
from shale.ids import location
from shale.sst.compression import check_available
from shale.sst.table import DEFAULT_FETCH, ScanFetch

__all__ = [
    "CloseFlush",
    "check_clock",
    "check_close_flush",
    "check_codec",
    "check_flag",
    "check_include_expired",
    "check_filter_policies",
    "check_merge_operator",
    "check_object_store",
    "check_store_options",
    "check_timeout",
    "check_transformer",
    "check_wal_store_arg",
]

_STORE_METHODS = ("put", "put_if_absent", "put_if_match", "get", "get_range", "head", "list")


def _missing_methods(obj: object, names: Sequence[str]) -> list[str]:
    return [n for n in names if not callable(getattr(obj, n, None))]


def _describe(obj: object) -> str:
    return type(obj).__name__


def check_codec(codec: str | None) -> int:
    """The id of ``settings.compression_codec``, once its library is known to import.

    :raises InvalidError: the codec's library is missing (``compression_codec="zstd"`` without
        the ``[zstd]`` extra), naming the extra to install.
    """
    try:
        return check_available(codec)
    except InvalidError as exc:
        raise InvalidError(
            "compression_codec cannot be used: " + exc.message,
            field="compression_codec",
        ) from exc


def check_merge_operator(op: Any) -> Any:
    """``op`` if it can serve as a merge operator (``None`` too: merges are then rejected).

    It needs a callable ``merge``; ``merge_batch`` and ``validate`` are optional but must be
    callable when present; ``name``, when present, must be a ``str``.

    :raises InvalidError: anything else, naming the missing part.
    """
    if op is None:
        return None
    missing = _missing_methods(op, ("merge",))
    for optional in ("merge_batch", "validate"):
        attr = getattr(op, optional, None)
        if attr is not None and not callable(attr):
            missing.append(optional)
    if missing:
        raise InvalidError(
            "merge_operator must have a merge(key, existing, operand) method",
            type=_describe(op),
            missing=missing,
        )
    name = getattr(op, "name", None)
    if name is not None and not isinstance(name, str):
        raise InvalidError("a merge operator's name must be a str", type=_describe(op))
    return op


def check_filter_policies(policies: object) -> list[Any]:
    """``policies`` as a list, each with a non-empty ``str`` name, ``build`` and ``reader``.

    :raises InvalidError: not a sequence of filter policies.
    """
    if isinstance(policies, (str, bytes)) or not isinstance(policies, Sequence):
        raise InvalidError(
            "filter_policies must be a list of filter policy objects",
            type=_describe(policies),
        )
    out = list(policies)
    for policy in out:
        name = getattr(policy, "name", None)
        missing = _missing_methods(policy, ("build", "reader"))
        if not isinstance(name, str) or not name or missing:
            raise InvalidError(
                "a filter policy needs a non-empty str name and build() and reader() methods",
                type=_describe(policy),
                missing=missing,
            )
    return out


def check_transformer(transformer: Any) -> Any:
    """``transformer`` (or ``None``) if it has callable ``encode`` and ``decode``.

    :raises InvalidError: a transformer without them.
    """
    if transformer is None:
        return None
    missing = _missing_methods(transformer, ("encode", "decode"))
    if missing:
        raise InvalidError(
            "a block transformer needs encode(data) and decode(data) methods",
            type=_describe(transformer),
            missing=missing,
        )
    return transformer


def check_clock(clock: Any) -> Any:
    """``clock`` (or ``None``) if it has a callable ``now_ms`` that returns an i64 ``int``
    (read once here; :class:`shale.clock.MonotonicClock` checks every later reading).

    :raises InvalidError: a clock without it, or one that returns a ``float`` or an
        out-of-range value.
    """
    if clock is None:
        return None
    if _missing_methods(clock, ("now_ms",)):
        raise InvalidError("clock must have a now_ms() method", type=_describe(clock))
    from shale.clock import MonotonicClock

    MonotonicClock(clock).now_ms()
    return clock


def check_object_store(store: Any) -> Any:
    """``store`` if it has the methods of :class:`shale.objstore.ObjectStore` a writer uses.

    :raises InvalidError: an object that is not a store.
    """
    missing = _missing_methods(store, _STORE_METHODS)
    if missing:
        raise InvalidError(
            "object_store must implement shale.objstore.ObjectStore",
            type=_describe(store),
            missing=missing,
        )
    return store


def check_store_options(options: object) -> dict[str, Any]:
    """``options`` (``None`` = none) as a dict with ``str`` keys.

    Which options exist is the store plugin's business; it rejects unknown ones by name.

    :raises InvalidError: not a mapping with str keys.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise InvalidError(
            "store_options must be a dict of option names to values", type=_describe(options)
        )
    return dict(options)


def check_timeout(timeout: object) -> float | None:
    """A ``timeout=`` argument: ``None`` (no limit) or a finite number of seconds ``>= 0``.

    :raises InvalidError: anything else (a bool, a string, NaN, infinity, a negative number).
    """
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout < 0
    ):
        raise InvalidError(
            "timeout must be None or a finite number of seconds >= 0", timeout=timeout
        )
    return float(timeout)


#: What ``close()`` flushes first (SlateDB's ``CloseOptions.flush_type``): the WAL buffer,
#: every memtable to L0 as well, or nothing.
CloseFlush = Literal["wal", "memtable"] | None


def check_close_flush(flush: object) -> CloseFlush:
    """``close(flush=...)`` checked.

    :raises InvalidError: not ``"wal"``, ``"memtable"`` or ``None``.
    """
    if flush is not None and flush not in ("wal", "memtable"):
        raise InvalidError("flush must be 'wal', 'memtable' or None", flush=flush)
    return flush


def check_flag(name: str, value: object) -> bool:
    """A ``bool`` argument, strictly: ``durable="no"`` must not mean ``True``.

    :raises InvalidError: not a ``bool``.
    """
    if not isinstance(value, bool):
        raise InvalidError(f"{name} must be a bool", **{name: value})
    return value


def check_scan_fetch(read_ahead_bytes: object, max_fetch_tasks: object) -> ScanFetch | None:
    """A scan's ``read_ahead_bytes`` and ``max_fetch_tasks`` (``None``: the default, 256 KiB
    and 1) as a :class:`~shale.sst.table.ScanFetch`, or ``None`` for today's behaviour.

    :raises InvalidError: not an int, ``read_ahead_bytes`` outside ``1..2**64-1`` or
        ``max_fetch_tasks`` outside ``1..2**32-1`` (SlateDB's ``u64`` and task counts).
    """
    if read_ahead_bytes is None and max_fetch_tasks is None:
        return None

    def bounded(name: str, value: object, default: int, hi: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise InvalidError(f"{name} must be an int in 1..{hi}", **{name: value})
        return value

    fetch = ScanFetch(
        bounded("read_ahead_bytes", read_ahead_bytes, DEFAULT_FETCH.read_ahead, 2**64 - 1),
        bounded("max_fetch_tasks", max_fetch_tasks, DEFAULT_FETCH.tasks, 2**32 - 1),
    )
    return None if fetch == DEFAULT_FETCH else fetch


def check_include_expired(value: object) -> bool | None:
    """An ``include_expired=`` argument: ``None`` or a ``bool``.

    :raises InvalidError: anything else.
    """
    if value is not None and not isinstance(value, bool):
        raise InvalidError("include_expired must be None or a bool", include_expired=value)
    return value


def check_wal_store_arg(
    wal_store: Any, wal_store_options: object
) -> tuple[str | None, dict[str, Any]]:
    """Check ``wal_store=`` / ``wal_store_options=`` (before anything is opened): the WAL
    store's URL (``None`` for a store object or no WAL store) and its options.

    :raises InvalidError: ``wal_store`` is neither a URL, a path nor an object store;
        ``wal_store_options`` is not a dict.
    """
    options = check_store_options(wal_store_options)
    if wal_store is None or isinstance(wal_store, (str, os.PathLike)):
        if wal_store is None:
            return None, options
        return location(wal_store, "wal_store"), options
    check_object_store(wal_store)
    return None, options
