"""SlateDB's settings documents in shale: what ``Settings::to_json_string`` writes and what
``SlateDb.json``/``.toml``/``.yaml`` and ``SLATEDB_*`` variables hold, turned into shale's
settings dict (:meth:`shale.Settings.from_slatedb` reads it).

SlateDB 0.17 and shale name most settings alike; this module holds the differences:

* renamed: ``default_ttl_millis`` -> ``default_ttl``; the garbage collector's
  ``manifest_options``/``wal_options``/``compacted_options``/``compactions_options`` ->
  ``manifest``/``wal``/``compacted``/``compactions``; the compactor's ``scheduler_options``
  string map (``min_compaction_sources``, ``max_compaction_sources``,
  ``include_size_threshold``) -> plain ``compactor_options`` fields; codec names
  (``"Lz4"``) -> lower case.
* moved: 0.17 keeps ``max_sst_size``, ``max_fetch_tasks`` and ``max_subcompactions`` in
  ``compactor_options.worker``; shale's embedded compactor reads them from
  ``compactor_options`` too, so a worker value is copied there unless the file sets one.
* meaning: a GC directory's ``interval: null`` is SlateDB's default interval (600 s), not
  "never"; a directory with ``dry_run: true`` deletes nothing in SlateDB, so it is not
  collected in shale (``None``).
* no equivalent in shale, accepted and checked for their type, then left out (reported by
  :func:`translate`, logged by the loader): ``metric_level`` (every level), the worker's
  ``bytes_to_fetch``/``min_filter_keys``/``compression_codec``, the GC's ``wal_fence_options``,
  ``detach_options`` and ``boundary_files_enabled``, and the per-component
  ``object_store_max_retries`` of the compactor and the GC.

Unknown keys are errors with a "did you mean" hint, as in shale's own files. A key the file
does not name keeps the base settings' value (shale's defaults unless a base is given).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Final

from shale.errors import InvalidError

__all__ = ["FILES", "GC_DEFAULT_INTERVAL", "PREFIX", "translate"]

#: The files SlateDB's ``Settings::load`` reads, in order (later ones override earlier ones).
FILES: Final[tuple[str, ...]] = ("SlateDb.json", "SlateDb.toml", "SlateDb.yaml", "SlateDb.yml")
#: The environment prefix of SlateDB's ``Settings::load``.
PREFIX: Final = "SLATEDB_"
#: SlateDB's GC interval where a directory's ``interval`` is null.
GC_DEFAULT_INTERVAL: Final = "600s"
_METRIC_LEVELS: Final = ("Debug", "Info")

# Settings shale reads under the same name.
_TOP_SAME: Final = frozenset(
    {
        "flush_interval",
        "wal_enabled",
        "manifest_poll_interval",
        "manifest_update_timeout",
        "min_filter_keys",
        "l0_sst_size_bytes",
        "max_wal_flushes_before_l0_flush",
        "l0_max_ssts",
        "l0_max_ssts_per_key",
        "l0_flush_parallelism",
        "max_unflushed_bytes",
        "object_store_max_retries",
        "default_ttl",  # SlateDB 0.12's name, milliseconds as in shale
        "object_store_cache_options",  # the same fields (shale also takes 0.12's cache_puts)
    }
)
_TOP_KNOWN: Final = _TOP_SAME | {
    "compression_codec",
    "default_ttl_millis",
    "compactor_options",
    "garbage_collector_options",
    "metric_level",
}
_COMPACTOR_SAME: Final = frozenset(
    {
        "poll_interval",
        "manifest_update_timeout",
        "max_concurrent_compactions",
        "enable_trivial_move",
        "checkpoint_lifetime",
        "worker_heartbeat_timeout",
        "commit_compacted_interval",
        "max_sst_size",  # before 0.17
        "max_fetch_tasks",
        "max_subcompactions",
    }
)
_COMPACTOR_KNOWN: Final = _COMPACTOR_SAME | {
    "scheduler_options",
    "worker",
    "metric_level",
    "object_store_max_retries",
}
_SCHEDULER: Final = ("min_compaction_sources", "max_compaction_sources", "include_size_threshold")
_WORKER_SAME: Final = frozenset(
    {
        "max_concurrent_compactions",
        "compactions_poll_interval",
        "heartbeat_interval",
        "max_sst_size",
        "max_fetch_tasks",
        "max_subcompactions",
    }
)
#: worker fields the embedded compactor reads from ``compactor_options`` in shale
_WORKER_TO_COMPACTOR: Final = ("max_sst_size", "max_fetch_tasks", "max_subcompactions")
_WORKER_KNOWN: Final = _WORKER_SAME | {
    "bytes_to_fetch",
    "min_filter_keys",
    "compression_codec",
    "metric_level",
}
_GC_DIRS: Final = {
    "manifest_options": "manifest",
    "wal_options": "wal",
    "compacted_options": "compacted",
    "compactions_options": "compactions",
}
_GC_KNOWN: Final = frozenset(_GC_DIRS) | {
    "wal_fence_options",
    "detach_options",
    "metric_level",
    "boundary_files_enabled",
    "object_store_max_retries",
}
_GC_DIR_KNOWN: Final = frozenset({"interval", "min_age", "dry_run"})


def _fail(path: str, reason: str, **detail: object) -> InvalidError:
    return InvalidError(f"{reason}: {path}", field=path, **detail)


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, "must be a table/dict of options, or null", value=value)
    return value


def _check_keys(table: Mapping[str, Any], known: frozenset[str], path: str) -> None:
    for key in table:
        if not isinstance(key, str):
            raise _fail(f"{path}{key}", "setting names must be str", value=key)
        if key not in known:
            close = difflib.get_close_matches(key.lower(), sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {path + close[0]!r}?)" if close else ""
            raise _fail(f"{path}{key}", f"unknown SlateDB setting{hint}")


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))


def _checked_ignored(path: str, key: str, value: object, ignored: list[str]) -> None:
    """A setting shale has no use for: its type checked, then recorded as ignored."""
    name = path + key
    if key == "metric_level":
        if not _is_null(value) and value not in _METRIC_LEVELS:
            raise _fail(name, f"must be one of {', '.join(_METRIC_LEVELS)} or null", value=value)
    elif key in ("boundary_files_enabled",):
        if not isinstance(value, bool):
            raise _fail(name, "must be a bool", value=value)
    elif key in ("wal_fence_options", "detach_options"):
        if not _is_null(value):
            _table(value, name)
    elif key == "compression_codec":
        if not _is_null(value) and not isinstance(value, str):
            raise _fail(name, "must be a codec name or null", value=value)
    elif not _is_null(value) and (isinstance(value, bool) or not isinstance(value, (int, str))):
        raise _fail(name, "must be a number or null", value=value)
    ignored.append(name)


def _codec(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _compactor(table: Mapping[str, Any], ignored: list[str]) -> dict[str, Any]:
    path = "compactor_options."
    _check_keys(table, _COMPACTOR_KNOWN, path)
    out: dict[str, Any] = {k: v for k, v in table.items() if k in _COMPACTOR_SAME}
    for key in ("metric_level", "object_store_max_retries"):
        if key in table:
            _checked_ignored(path, key, table[key], ignored)
    scheduler = table.get("scheduler_options")
    if not _is_null(scheduler):
        sched = _table(scheduler, path + "scheduler_options")
        _check_keys(sched, frozenset(_SCHEDULER), path + "scheduler_options.")
        for key, raw in sched.items():  # SlateDB's map holds strings: "4", "4.0"
            try:
                out[key] = float(raw) if key == "include_size_threshold" else int(raw)
            except (TypeError, ValueError):
                raise _fail(
                    f"{path}scheduler_options.{key}", "must be a number (as a string)", value=raw
                ) from None
    if "worker" in table:
        worker = table["worker"]
        if _is_null(worker):
            out["worker"] = None
        else:
            w = _table(worker, path + "worker")
            _check_keys(w, _WORKER_KNOWN, path + "worker.")
            out["worker"] = {k: v for k, v in w.items() if k in _WORKER_SAME}
            for key in sorted(_WORKER_KNOWN - _WORKER_SAME):
                if key in w:
                    _checked_ignored(path + "worker.", key, w[key], ignored)
            for key in _WORKER_TO_COMPACTOR:
                if key in w and key not in table:
                    out[key] = w[key]
    return out


def _gc(table: Mapping[str, Any], ignored: list[str]) -> dict[str, Any]:
    path = "garbage_collector_options."
    _check_keys(table, _GC_KNOWN, path)
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _GC_DIRS:
            _checked_ignored(path, key, value, ignored)
            continue
        name = _GC_DIRS[key]
        if _is_null(value):
            out[name] = None
            continue
        d = _table(value, path + key)
        _check_keys(d, _GC_DIR_KNOWN, f"{path}{key}.")
        dry_run = d.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise _fail(f"{path}{key}.dry_run", "must be a bool", value=dry_run)
        if dry_run:  # SlateDB deletes nothing there; shale does not collect it
            out[name] = None
            continue
        one: dict[str, Any] = {}
        if "interval" in d:
            one["interval"] = GC_DEFAULT_INTERVAL if _is_null(d["interval"]) else d["interval"]
        if "min_age" in d:
            one["min_age"] = d["min_age"]
        out[name] = one
    return out


def translate(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """SlateDB's settings document ``data`` as shale's settings dict (for
    :meth:`shale.Settings.from_dict`), and the dotted names of the SlateDB settings that have
    no shale equivalent and were left out.

    :raises InvalidError: an unknown key (with a "did you mean" hint), or a value of the wrong
        shape; ``field`` names the dotted SlateDB setting. Values shale reads are checked by
        :meth:`shale.Settings.from_dict` afterwards.
    """
    table = _table(data, "settings")
    _check_keys(table, _TOP_KNOWN, "")
    ignored: list[str] = []
    out: dict[str, Any] = {k: v for k, v in table.items() if k in _TOP_SAME}
    if "compression_codec" in table:
        out["compression_codec"] = _codec(table["compression_codec"])
    if "default_ttl_millis" in table:
        if "default_ttl" in table:
            raise _fail("default_ttl_millis", "set only one of default_ttl and default_ttl_millis")
        out["default_ttl"] = table["default_ttl_millis"]
    if "metric_level" in table:
        _checked_ignored("", "metric_level", table["metric_level"], ignored)
    for key, convert in (("compactor_options", _compactor), ("garbage_collector_options", _gc)):
        if key in table:
            value = table[key]
            out[key] = None if _is_null(value) else convert(_table(value, key), ignored)
    return out, ignored
