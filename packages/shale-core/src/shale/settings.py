"""Settings: the plain-data configuration of a shale database (SlateDB 0.12.1's ``Settings``).

:class:`Settings`, :class:`CompactorOptions`, :class:`GarbageCollectorOptions` and
:class:`GcDirectoryOptions` are frozen dataclasses holding only plain data (numbers, strings,
tuples, nested option groups). Components -- object stores, merge-operator objects, clocks,
caches -- are never settings: they are passed to ``Db.open`` separately, as SlateDB passes them to
its ``DbBuilder``. A merge operator or a filter policy appears here only by *name*, resolved later
through the plugins.

Invariants and why:

* **Every instance is valid.** ``__post_init__`` checks every field (type and range) and raises
  :class:`~shale.errors.InvalidError` whose detail names the field (``field='...'``; nested fields
  are dotted, e.g. ``compactor_options.poll_interval``, when they come through a loader). So the
  engine never re-checks a setting, and a bad value fails at load time, not in a background task.
* **Python values are Python types.** In Python a duration is a ``float`` of seconds and a byte
  size an ``int``; the constructor does not parse strings. Files, dicts and environment variables
  go through the loaders (:meth:`Settings.from_dict`, :meth:`~Settings.from_file`,
  :meth:`~Settings.from_env`, :meth:`~Settings.load`), which also accept SlateDB-style strings:
  durations ``"100ms"``, ``"1s+100ms"``, ``"2m"``, ``"1h"`` (a bare number is seconds), sizes
  ``"64MiB"``, ``"512KB"`` (``KB`` = 1000, ``KiB`` = 1024), and ``"none"``/``null`` for anything
  optional.
* **Durations are canonical to the nanosecond.** The constructor rounds every duration to a whole
  number of nanoseconds, so ``from_dict(to_dict(s)) == s`` holds exactly: :func:`format_duration`
  writes the nanoseconds out (``"1s+100ms"``, ``"050ms"``, as SlateDB's serializer does for
  whole milliseconds), and :func:`parse_duration` reads them back to the same float.
* **Unknown keys are errors** in every loader (SlateDB ignores them), with a "did you mean" hint,
  because a misspelt setting silently running with its default is the worst outcome.
* **Loaders merge layers.** Each layer (a dict, a file, the environment) overrides only the keys it
  names; option groups merge key by key; a group set to ``None``/``"none"`` is disabled, and
  naming a key inside a disabled group re-enables it from the defaults.

Differences from SlateDB 0.12.1 worth knowing (see also ``docs/settings.md``):

* ``hide_expired`` (default ``True``): shale's reads hide rows whose ``expire_ts <= now``;
  SlateDB 0.12.1 returns expired rows until compaction drops them (FEATURES §0.2). Set it to
  ``False`` for SlateDB's behaviour.
* Files are ``shale.json``/``shale.toml`` (``.yaml`` too where PyYAML is installed), the
  environment prefix is ``SHALE_`` with ``__`` between nested names, GC directories are called
  ``manifest``/``wal``/``compacted``/``compactions`` (not ``*_options``), and the size-tiered
  scheduler options are plain fields of :class:`CompactorOptions` (not a string map).
  SlateDB's own documents (``SlateDb.json``/``.toml``/``.yaml``, ``SLATEDB_*``,
  ``to_json_string``) load through :meth:`Settings.from_slatedb`, ``dialect="slatedb"`` and
  :meth:`Settings.load_slatedb` (:mod:`shale.slatedb_settings` translates the names).
* shale-only fields: ``max_wal_flushes_before_l0_flush`` (hard-coded 4096 in SlateDB),
  ``block_size`` (``DbBuilder.with_sst_block_size``), ``wal_block_size``, ``filter_policies``,
  ``merge_operator``, ``prefix_extractor`` (``with_segment_extractor``, by name),
  ``block_cache_bytes``, ``manifest_format_version``, ``hide_expired``,
  ``seed`` (``DbBuilder.with_seed``) and ``CompactorOptions.checkpoint_lifetime`` (the 15-minute
  safety checkpoint, hard-coded in SlateDB). ``object_store_cache_options`` also takes SlateDB
  0.12's ``cache_puts``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import logging
import math
import os
import pathlib
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Final, Literal, NoReturn, TypeAlias, TypeVar, cast

from shale import env, slatedb_settings
from shale.errors import InvalidError

__all__ = [
    "CODECS",
    "CompressionCodec",
    "Dialect",
    "Durability",
    "ManifestFormatVersion",
    "MAX_DURATION",
    "ReaderOptions",
    "SETTINGS_FILES",
    "CompactionWorkerOptions",
    "CompactorOptions",
    "GarbageCollectorOptions",
    "GcDirectoryOptions",
    "HistoryRetention",
    "ObjectStoreCacheOptions",
    "PRELOAD_LEVELS",
    "Settings",
    "format_duration",
    "parse_duration",
    "parse_size",
]

log = logging.getLogger(__name__)

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

#: The name of a compression codec (``Settings.compression_codec``; ``None`` = uncompressed).
CompressionCodec: TypeAlias = Literal["snappy", "zlib", "lz4", "zstd"]
#: Compression codecs a ``compression_codec`` may name (``None`` = uncompressed).
CODECS: Final[tuple[CompressionCodec, ...]] = ("snappy", "zlib", "lz4", "zstd")
#: What a read sees (``durability=`` of ``get``/``scan``): ``"memory"`` every committed write,
#: ``"remote"`` only writes that are durable in the object store.
Durability: TypeAlias = Literal["memory", "remote"]
#: Manifest format versions a database may be written with (``Settings.manifest_format_version``).
ManifestFormatVersion: TypeAlias = Literal[1, 2]
#: The longest duration any setting accepts: 100 years, in seconds.
MAX_DURATION: Final = 100 * 365 * 86400.0
#: Which names a settings file or the environment uses: shale's, SlateDB's, or by the file's
#: name / the prefix (``"auto"``).
Dialect: TypeAlias = Literal["auto", "shale", "slatedb"]
#: Files :meth:`Settings.load` reads, in this order (later ones override earlier ones).
SETTINGS_FILES: Final[tuple[str, ...]] = ("shale.json", "shale.toml")

_NS_PER_S: Final = 1_000_000_000
_U32_MAX: Final = 2**32 - 1
_I64_MAX: Final = 2**63 - 1
_U64_MAX: Final = 2**64 - 1
_FLOAT_MAX: Final = sys.float_info.max
_BLOCK_SIZES: Final = (1 * KiB, 2 * KiB, 4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB)
_NONE_WORDS: Final = frozenset({"none", "null"})
_TRUE_WORDS: Final = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS: Final = frozenset({"false", "no", "off", "0"})

# ---------------------------------------------------------------------------------------------
# Errors.


def _error(field_path: str, reason: str, **detail: object) -> InvalidError:
    """An InvalidError naming ``field_path``; ``reason`` is kept for re-raising with a prefix."""
    err = InvalidError(f"invalid setting: {reason}", field=field_path, **detail)
    err.reason = reason  # type: ignore[attr-defined]
    return err


def _fail(field_path: str, reason: str, **detail: object) -> NoReturn:
    raise _error(field_path, reason, **detail)


def _rebuild(exc: InvalidError, prefix: str = "", **extra: object) -> InvalidError:
    """The same setting error with ``prefix`` added to its field and ``extra`` detail."""
    detail = dict(exc.detail)
    name = f"{prefix}{detail.pop('field', '')}"
    for key, value in extra.items():
        detail.setdefault(key, value)
    return _error(name, getattr(exc, "reason", exc.message), **detail)


# ---------------------------------------------------------------------------------------------
# Durations and sizes.

_DURATION_UNITS_NS: Final[dict[str, int]] = {
    "": _NS_PER_S,  # a bare number is seconds, as in SlateDB's duration-str
    "ns": 1,
    "nanosecond": 1,
    "nanoseconds": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "microsecond": 1_000,
    "microseconds": 1_000,
    "ms": 1_000_000,
    "msec": 1_000_000,
    "millisecond": 1_000_000,
    "milliseconds": 1_000_000,
    "s": _NS_PER_S,
    "sec": _NS_PER_S,
    "second": _NS_PER_S,
    "seconds": _NS_PER_S,
    "m": 60 * _NS_PER_S,
    "min": 60 * _NS_PER_S,
    "minute": 60 * _NS_PER_S,
    "minutes": 60 * _NS_PER_S,
    "h": 3600 * _NS_PER_S,
    "hr": 3600 * _NS_PER_S,
    "hour": 3600 * _NS_PER_S,
    "hours": 3600 * _NS_PER_S,
    "d": 86400 * _NS_PER_S,
    "day": 86400 * _NS_PER_S,
    "days": 86400 * _NS_PER_S,
    "w": 7 * 86400 * _NS_PER_S,
    "week": 7 * 86400 * _NS_PER_S,
    "weeks": 7 * 86400 * _NS_PER_S,
}
_DURATION_TERM = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([^\W\d_]*)\s*(\+?)")
_DURATION_HELP: Final = "a duration such as '100ms', '1s+100ms', '2m', '1h' or a number of seconds"

_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": 1024 * GiB,
}
_SIZE = re.compile(r"\s*(\d+(?:_\d+)*(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
_SIZE_HELP: Final = "a byte size such as 4096, '64MiB', '1GiB' or '512KB' (KB = 1000, KiB = 1024)"


def _parse_duration_ns(text: str) -> int:
    """Nanoseconds in a SlateDB-style duration string; ValueError if it is not one."""
    pos, total, expect_more = 0, Fraction(0), True
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    while pos < len(text):
        m = _DURATION_TERM.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected {text[pos:]!r}")
        unit = m.group(2).lower()
        if unit not in _DURATION_UNITS_NS:
            raise ValueError(f"unknown unit {m.group(2)!r}")
        total += Fraction(m.group(1)) * _DURATION_UNITS_NS[unit]
        pos = m.end()
        expect_more = bool(m.group(3))
    if expect_more:
        raise ValueError("dangling '+'")
    return round(total)


def parse_duration(text: str) -> float:
    """Parse a SlateDB-style duration string into seconds.

    Terms are a number and a unit (``ns``, ``us``/``µs``, ``ms``, ``s``, ``m``/``min``, ``h``,
    ``d``, ``w``, or their long names, in any case), joined by ``+`` or blanks: ``"100ms"``,
    ``"1s+100ms"``, ``"1m 30s"``, ``"1.5h"``. A bare number is seconds. The result is rounded
    to the nanosecond.

    :param text: the duration.
    :return: the duration in seconds.
    :raises InvalidError: if ``text`` is not a duration (``field='duration'``).
    """
    if not isinstance(text, str):
        _fail("duration", f"must be {_DURATION_HELP}", value=text)
    try:
        return _ns_to_seconds(_parse_duration_ns(text))
    except ValueError as exc:
        raise _error("duration", f"must be {_DURATION_HELP} ({exc})", value=text) from None


def _seconds_to_ns(seconds: float) -> int:
    return round(Fraction(seconds) * _NS_PER_S)


def _ns_to_seconds(ns: int) -> float:
    return ns / _NS_PER_S  # int / int is correctly rounded


def format_duration(seconds: float) -> str:
    """Format a duration as SlateDB serializes one: ``"1s"``, ``"100ms"``, ``"1s+050ms"``.

    Parts finer than a millisecond, which SlateDB drops, are kept as ``"+NNNus"``/``"+NNNns"``
    so that :func:`parse_duration` gives back the same float.

    :param seconds: a finite, non-negative number of seconds.
    :return: the duration string.
    :raises InvalidError: for a negative or non-finite duration.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        _fail("duration", "must be a number of seconds", value=seconds)
    if seconds < 0 or seconds > _FLOAT_MAX or not math.isfinite(seconds):
        _fail("duration", "must be finite and >= 0", value=seconds)
    whole, rest = divmod(_seconds_to_ns(seconds), _NS_PER_S)
    ms, rest = divmod(rest, 1_000_000)
    us, ns = divmod(rest, 1_000)
    parts = [f"{whole}s"] if whole else []
    parts += [f"{v:03d}{u}" for v, u in ((ms, "ms"), (us, "us"), (ns, "ns")) if v]
    return "+".join(parts) or "0s"


def parse_size(text: str) -> int:
    """Parse a byte size: ``"4096"``, ``"64MiB"``, ``"1GiB"``, ``"512KB"``, ``"1.5 MiB"``.

    Units are case-insensitive: ``B``, ``KB``/``MB``/``GB``/``TB`` (powers of 1000) and
    ``KiB``/``MiB``/``GiB``/``TiB`` (powers of 1024). The result must be a whole number of bytes.

    :param text: the size.
    :return: the size in bytes.
    :raises InvalidError: if ``text`` is not a size (``field='size'``).
    """
    if not isinstance(text, str):
        _fail("size", f"must be {_SIZE_HELP}", value=text)
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _SIZE_UNITS:
        _fail("size", f"must be {_SIZE_HELP}", value=text)
    value = Fraction(m.group(1).replace("_", "")) * _SIZE_UNITS[unit]
    if value.denominator != 1:
        _fail("size", "must be a whole number of bytes", value=text)
    return int(value)


# ---------------------------------------------------------------------------------------------
# Field specifications: one table per class drives validation, loading and to_dict().


@dataclass(frozen=True)
class _Spec:
    """How one field is checked (constructor), coerced (loaders) and written (``to_dict``)."""

    kind: str  # duration, int, size, float, bool, codec, ttl, names, name, group
    optional: bool = False
    positive: bool = False  # durations: > 0 rather than >= 0
    lo: int = 0  # ints and sizes: inclusive bounds; floats: exclusive lower bound
    hi: int = _I64_MAX
    choices: tuple[int, ...] = ()
    group: type | None = None


def _check(spec: _Spec, name: str, value: Any) -> Any:
    """The canonical value of field ``name``, or InvalidError naming it."""
    if value is None:
        if spec.optional:
            return None
        _fail(name, "must not be None", value=value)
    kind = spec.kind
    if kind == "duration":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = " (parse strings with parse_duration or Settings.from_dict)"
            _fail(
                name,
                "must be a number of seconds" + (hint if isinstance(value, str) else ""),
                value=value,
            )
        if value < 0 or value > MAX_DURATION or not math.isfinite(value):  # big ints first
            _fail(
                name, f"must be a finite number of seconds in [0, {MAX_DURATION:.0f}]", value=value
            )
        seconds = _ns_to_seconds(_seconds_to_ns(value))
        if spec.positive and seconds == 0:
            _fail(name, "must be > 0 (at least 1ns)", value=value)
        return seconds
    if kind in ("int", "size", "ttl"):
        if isinstance(value, bool) or not isinstance(value, int):
            what = "a number of bytes (int)" if kind == "size" else "an int"
            hint = (
                " (parse strings with parse_size or Settings.from_dict)"
                if (kind == "size" and isinstance(value, str))
                else ""
            )
            _fail(name, f"must be {what}{hint}", value=value)
        if spec.choices and value not in spec.choices:
            _fail(name, f"must be one of {', '.join(map(str, spec.choices))}", value=value)
        if value < spec.lo:
            _fail(name, f"must be >= {spec.lo}", value=value)
        if value > spec.hi:
            _fail(name, f"must be <= {spec.hi}", value=value)
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(name, "must be a number", value=value)
        if value <= spec.lo or value > _FLOAT_MAX or not math.isfinite(value):
            _fail(name, f"must be a finite number > {spec.lo}", value=value)
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            _fail(name, "must be a bool", value=value)
        return value
    if kind == "codec":
        if value not in CODECS:
            _fail(name, f"must be None or one of {', '.join(CODECS)}", value=value)
        return value
    if kind == "name":
        if not isinstance(value, str) or not value.strip():
            _fail(name, "must be None or a non-empty str", value=value)
        return value
    if kind == "names":
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            _fail(name, "must be a tuple of names (str)", value=value)
        names = tuple(value)
        for item in names:
            if not isinstance(item, str) or not item:
                _fail(name, "names must be non-empty str", value=value)
            if len(item.encode("utf-8", "surrogatepass")) > 0xFFFF:
                _fail(name, "names must be at most 65535 UTF-8 bytes", value=value)
        if len(set(names)) != len(names):
            _fail(name, "names must be unique", value=value)
        return names
    if kind == "group":
        assert spec.group is not None
        if not isinstance(value, spec.group):
            hint = " (use Settings.from_dict for dicts)" if isinstance(value, Mapping) else ""
            _fail(name, f"must be a {spec.group.__name__} or None{hint}", value=value)
        return value
    raise AssertionError(kind)  # pragma: no cover


def _is_none_word(raw: object) -> bool:
    return isinstance(raw, str) and raw.strip().lower() in _NONE_WORDS


def _coerce(spec: _Spec, name: str, raw: Any) -> Any:
    """Turn a value read from a file, a dict or the environment into the field's Python type.

    Values that cannot be coerced are returned unchanged for :func:`_check` to reject with the
    field named; strings that look like the right kind but do not parse fail here.
    """
    if raw is None or (spec.optional and _is_none_word(raw)):
        return None
    kind = spec.kind
    if isinstance(raw, str):
        text = raw.strip()
        if kind == "duration":
            try:
                return _ns_to_seconds(_parse_duration_ns(text))
            except ValueError as exc:
                raise _error(name, f"must be {_DURATION_HELP} ({exc})", value=raw) from None
        if kind == "size":
            try:
                return parse_size(text)
            except InvalidError:
                raise _error(name, f"must be {_SIZE_HELP}", value=raw) from None
        if kind == "int":
            if re.fullmatch(r"[+-]?\d+(?:_\d+)*", text):
                return int(text)
            return raw
        if kind == "ttl":  # milliseconds; a string with a unit is a duration
            if re.fullmatch(r"\d+(?:_\d+)*", text):
                return int(text)
            try:
                ns = _parse_duration_ns(text)
            except ValueError as exc:
                raise _error(
                    name, f"must be milliseconds or {_DURATION_HELP} ({exc})", value=raw
                ) from None
            if ns % 1_000_000:
                _fail(name, "must be a whole number of milliseconds", value=raw)
            return ns // 1_000_000
        if kind == "float":
            try:
                return float(text)
            except ValueError:
                return raw
        if kind == "bool":
            word = text.lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
            return raw
        if kind == "codec":
            return text.lower()
        if kind == "names":
            return tuple(p.strip() for p in text.split(",") if p.strip())
        return raw
    if kind == "bool" and not isinstance(raw, bool) and raw in (0, 1):
        return bool(raw)
    if kind == "names" and isinstance(raw, list):
        return tuple(raw)
    return raw


def _to_plain(spec: _Spec, value: Any) -> Any:
    """The JSON-safe form of a field value."""
    if value is None:
        return None
    if spec.kind == "duration":
        return format_duration(value)
    if spec.kind == "names":
        return list(value)
    if spec.kind == "group":
        return value.to_dict()
    return value


def _validate(obj: Any, specs: Mapping[str, _Spec]) -> None:
    for name, spec in specs.items():
        object.__setattr__(obj, name, _check(spec, name, getattr(obj, name)))


def _unknown_key(path: str, key: object, known: Mapping[str, _Spec]) -> NoReturn:
    name = f"{path}{key}"
    if not isinstance(key, str):
        _fail(name, "setting names must be str", value=key)
    reason = "unknown setting"
    renamed = _SLATEDB_NAMES.get(key)
    if renamed is not None:
        reason += f" ({renamed}; Settings.from_slatedb and dialect='slatedb' read SlateDB's names)"
    else:
        close = difflib.get_close_matches(key.lower(), list(known), n=1, cutoff=0.6)
        if close:
            reason += f" (did you mean {path + close[0]!r}?)"
        else:
            reason += f"; known: {', '.join(known)}"
    _fail(name, reason)


#: SlateDB spellings that shale names differently, for the unknown-key message.
_SLATEDB_NAMES: Final[dict[str, str]] = {
    "manifest_options": "shale calls it 'manifest'",
    "wal_options": "shale calls it 'wal'",
    "compacted_options": "shale calls it 'compacted'",
    "compactions_options": "shale calls it 'compactions'",
    "scheduler_options": "shale has min_compaction_sources, max_compaction_sources and "
    "include_size_threshold as plain compactor_options fields",
    "default_ttl_millis": "shale calls it 'default_ttl'",
    "metric_level": "shale has no metric levels",
    "wal_fence_options": "shale has no separate WAL-fence collection",
    "detach_options": "shale's GarbageCollector takes detach=",
}

_O = TypeVar("_O", bound="_Options")


def _apply(base: _O, changes: Mapping[Any, Any], path: str = "") -> _O:
    """``base`` with the keys of ``changes`` (file/env/dict values) coerced and applied."""
    specs: Mapping[str, _Spec] = type(base)._SPECS
    if not isinstance(changes, Mapping):
        _fail(path.rstrip(".") or "settings", "must be a table/dict", value=changes)
    updates: dict[str, Any] = {}
    for key, raw in changes.items():
        spec = specs.get(key) if isinstance(key, str) else None
        if spec is None:
            _unknown_key(path, key, specs)
        name = f"{path}{key}"
        if spec.kind != "group":
            updates[key] = _coerce(spec, name, raw)
        elif raw is None or _is_none_word(raw):
            if not spec.optional:  # pragma: no cover - every group is optional today
                _fail(name, "cannot be disabled", value=raw)
            updates[key] = None
        elif isinstance(raw, Mapping):
            current = getattr(base, key)
            assert spec.group is not None
            updates[key] = _apply(spec.group() if current is None else current, raw, name + ".")
        elif spec.group is not None and isinstance(raw, spec.group):
            updates[key] = raw
        else:
            _fail(name, "must be a table/dict of options, or none to disable it", value=raw)
    try:
        return dataclasses.replace(cast(Any, base), **updates)  # type: ignore[no-any-return]
    except InvalidError as exc:
        if path and "field" in exc.detail:
            raise _rebuild(exc, path) from None
        raise


class _Options:
    """Shared behaviour of the option dataclasses: validation, ``replace``, ``to_dict``."""

    _SPECS: ClassVar[Mapping[str, _Spec]] = {}

    def __post_init__(self) -> None:
        _validate(self, self._SPECS)
        self._check_fields()

    def _check_fields(self) -> None:
        """Cross-field checks (after every field is valid)."""

    def replace(self: _O, **changes: Any) -> _O:
        """A validated copy with ``changes`` (Python values, as for the constructor).

        :raises InvalidError: on an unknown field name or a bad value.
        """
        for key in changes:
            if key not in self._SPECS:
                _unknown_key("", key, self._SPECS)
        return dataclasses.replace(cast(Any, self), **changes)  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field: durations as strings (``"100ms"``), sizes as ints,
        tuples as lists, disabled groups as ``None``. ``from_dict`` reads it back unchanged."""
        return {name: _to_plain(spec, getattr(self, name)) for name, spec in self._SPECS.items()}

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string (SlateDB's ``to_json_string``)."""
        return json.dumps(self.to_dict(), indent=indent)


# ---------------------------------------------------------------------------------------------
# Option groups.


@dataclass(frozen=True)
class CompactionWorkerOptions(_Options):
    """Options of a compaction worker (SlateDB's ``CompactionWorkerOptions``, RFC-0025): a
    process that claims Scheduled compactions from the ``.compactions`` file, runs them and
    reports them Compacted for the coordinator to commit. Durations are seconds.

    ``CompactorOptions.worker`` holds the embedded worker's options (``None``: the compactor is
    a coordinator only and remote workers run the jobs); a standalone
    :class:`shale_compactor.CompactionWorker` takes its own.
    """

    #: Jobs one worker holds at once.
    max_concurrent_compactions: int = 4
    #: Mean seconds between two polls of ``.compactions`` (each wait is jittered by +-50 %).
    compactions_poll_interval: float = 5.0
    #: Seconds between two heartbeats of the jobs a worker holds; keep it well below the
    #: coordinator's ``worker_heartbeat_timeout``.
    heartbeat_interval: float = 10.0
    #: Largest output SST of a job (bytes).
    max_sst_size: int = 256 * MiB
    #: Concurrent block fetches per job.
    max_fetch_tasks: int = 4
    #: Key ranges (subcompactions) one job is split into (see ``CompactorOptions``).
    max_subcompactions: int = 0

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        "max_concurrent_compactions": _Spec("int", lo=1, hi=_U32_MAX),
        "compactions_poll_interval": _Spec("duration", positive=True),
        "heartbeat_interval": _Spec("duration", positive=True),
        "max_sst_size": _Spec("size", lo=1),
        "max_fetch_tasks": _Spec("int", lo=1, hi=_U32_MAX),
        "max_subcompactions": _Spec("int", lo=0, hi=_U32_MAX),
    }


@dataclass(frozen=True)
class CompactorOptions(_Options):
    """Options of the compactor (SlateDB's ``CompactorOptions`` plus the size-tiered scheduler's
    options, FEATURES §1.10). Durations are seconds."""

    #: How often the compactor polls the manifest and schedules compactions.
    poll_interval: float = 5.0
    #: How long manifest updates are retried before giving up.
    manifest_update_timeout: float = 300.0
    #: Largest compacted SST; a sorted run's output is split at this size (bytes).
    max_sst_size: int = 256 * MiB
    #: Compactions running at once.
    max_concurrent_compactions: int = 4
    #: Concurrent block fetches per compaction.
    max_fetch_tasks: int = 4
    #: Key ranges (subcompactions) one compaction is split into, merged in parallel threads
    #: (shale's compaction kernel runs without the GIL); ``0``: half the CPUs, at most 4 (at
    #: least 1); ``1``: one range on the compaction's own thread.
    max_subcompactions: int = 0
    #: Size-tiered scheduler: fewest sources (L0 SSTs or sorted runs) worth a compaction (>= 2).
    min_compaction_sources: int = 4
    #: Size-tiered scheduler: most sources in one compaction (>= ``min_compaction_sources``).
    max_compaction_sources: int = 8
    #: Size-tiered scheduler: a run joins a group if its size <= this x the group's smallest.
    include_size_threshold: float = 4.0
    #: Lifetime of the safety checkpoint written before a manifest that drops SSTs (seconds;
    #: SlateDB hard-codes 15 minutes).
    checkpoint_lifetime: float = 900.0
    #: The embedded compaction worker (SlateDB's ``CompactorOptions.worker``). Set (the
    #: default), this compactor runs the jobs it schedules itself, in-process, as it always
    #: did. ``None`` makes it a *coordinator* only (RFC-0025): it schedules, marks jobs
    #: Scheduled for remote ``shale compactor worker`` processes, reclaims the jobs of workers
    #: whose heartbeat is older than ``worker_heartbeat_timeout`` and commits the jobs they
    #: report Compacted. The embedded path keeps reading ``max_sst_size``/``max_fetch_tasks``
    #: above; the group's own values configure a standalone worker started from these settings.
    worker: CompactionWorkerOptions | None = field(default_factory=CompactionWorkerOptions)
    #: Coordinator: a Running job whose worker has not heartbeated for this long (seconds) is
    #: handed back to Scheduled (its recorded outputs kept) for another worker.
    worker_heartbeat_timeout: float = 30.0
    #: Coordinator: seconds between two looks for Compacted jobs to commit to the manifest.
    commit_compacted_interval: float = 1.0
    #: SlateDB's ``enable_trivial_move``: a compaction whose sources' key ranges do not overlap
    #: is committed by moving its SSTs into the destination run as they are, without reading
    #: or rewriting them -- so it drops no tombstone or old version, runs no compaction filter
    #: and merges no operand, and the run keeps the sources' SST sizes.
    enable_trivial_move: bool = False

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        "poll_interval": _Spec("duration", positive=True),
        "manifest_update_timeout": _Spec("duration", positive=True),
        "max_sst_size": _Spec("size", lo=1),
        "max_concurrent_compactions": _Spec("int", lo=1, hi=_U32_MAX),
        "max_fetch_tasks": _Spec("int", lo=1, hi=_U32_MAX),
        "max_subcompactions": _Spec("int", lo=0, hi=_U32_MAX),
        "min_compaction_sources": _Spec("int", lo=2, hi=_U32_MAX),
        "max_compaction_sources": _Spec("int", lo=2, hi=_U32_MAX),
        "include_size_threshold": _Spec("float", lo=0),
        "checkpoint_lifetime": _Spec("duration", positive=True),
        "worker": _Spec("group", optional=True, group=CompactionWorkerOptions),
        "worker_heartbeat_timeout": _Spec("duration", positive=True),
        "commit_compacted_interval": _Spec("duration", positive=True),
        "enable_trivial_move": _Spec("bool"),
    }

    def _check_fields(self) -> None:
        if self.max_compaction_sources < self.min_compaction_sources:
            _fail(
                "max_compaction_sources",
                "must be >= min_compaction_sources",
                value=self.max_compaction_sources,
                min_compaction_sources=self.min_compaction_sources,
            )


@dataclass(frozen=True)
class GcDirectoryOptions(_Options):
    """Garbage collection of one directory (SlateDB's ``GarbageCollectorDirectoryOptions``)."""

    #: Seconds between background GC runs; ``None`` turns the periodic run off (a one-off run
    #: can still be started by hand).
    interval: float | None = 60.0
    #: Only files at least this old (seconds) are deleted.
    min_age: float = 300.0

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        "interval": _Spec("duration", optional=True, positive=True),
        "min_age": _Spec("duration"),
    }


@dataclass(frozen=True)
class GarbageCollectorOptions(_Options):
    """Garbage collection per directory (SlateDB's ``GarbageCollectorOptions``); a directory set
    to ``None`` is never collected. Defaults: all four, every 60 s, files older than 300 s."""

    #: The ``manifest/`` directory.
    manifest: GcDirectoryOptions | None = field(default_factory=GcDirectoryOptions)
    #: The ``wal/`` directory.
    wal: GcDirectoryOptions | None = field(default_factory=GcDirectoryOptions)
    #: The ``compacted/`` directory (L0 and sorted-run SSTs).
    compacted: GcDirectoryOptions | None = field(default_factory=GcDirectoryOptions)
    #: The ``compactions/`` directory (``.compactions`` files).
    compactions: GcDirectoryOptions | None = field(default_factory=GcDirectoryOptions)

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        name: _Spec("group", optional=True, group=GcDirectoryOptions)
        for name in ("manifest", "wal", "compacted", "compactions")
    }

    @property
    def is_empty(self) -> bool:
        """True when no directory is collected (then no GC runs at all)."""
        return all(getattr(self, name) is None for name in self._SPECS)


@dataclass(frozen=True)
class ReaderOptions(_Options):
    """Options of a :class:`shale.DbReader` (SlateDB's ``DbReaderOptions``). Durations are
    seconds."""

    #: How often the reader's poller re-reads the manifest and tails the WAL.
    manifest_poll_interval: float = 10.0
    #: Lifetime of a managed checkpoint; refreshed at half-life. ``>= 1 s`` and
    #: ``>= 2 x manifest_poll_interval``.
    checkpoint_lifetime: float = 600.0
    #: Size at which replayed WAL rows start a new reader-local table (bytes); tables whose
    #: rows the writer's L0 holds are dropped on the next poll.
    max_memtable_bytes: int = 64 * MiB
    #: Read only what the manifest holds (no WAL replay).
    skip_wal_replay: bool = False

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        "manifest_poll_interval": _Spec("duration", positive=True),
        "checkpoint_lifetime": _Spec("duration", positive=True),
        "max_memtable_bytes": _Spec("size", lo=1),
        "skip_wal_replay": _Spec("bool"),
    }

    def _check_fields(self) -> None:
        if self.checkpoint_lifetime < 1.0:
            _fail("checkpoint_lifetime", "must be >= 1s", value=self.checkpoint_lifetime)
        if self.checkpoint_lifetime < 2 * self.manifest_poll_interval:
            _fail(
                "checkpoint_lifetime",
                "must be >= 2 x manifest_poll_interval",
                value=self.checkpoint_lifetime,
                manifest_poll_interval=self.manifest_poll_interval,
            )


@dataclass(frozen=True)
class HistoryRetention(_Options):
    """How long old versions stay readable by ``snapshot(at_seq=...)`` / ``snapshot(at_time=...)``
    (time travel, ``docs/time-travel.md``). A version is kept while it is inside *either*
    window; with both ``None`` nothing is kept beyond today's rules (the same as no group).

    The writer's L0 flush turns it into a sequence-number floor, records it in the manifest's
    ``recent_snapshot_min_seq`` (never lowering it), and the compactor keeps what that floor
    keeps: every version above it and the newest one at or below it."""

    #: Keep versions written less than this long ago (seconds, judged through the manifest's
    #: sequence tracker); ``None``: no time window.
    duration: float | None = None
    #: Keep versions within this many sequence numbers of the newest flushed one; ``None``: no
    #: count window.
    seqs: int | None = None

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        "duration": _Spec("duration", optional=True),
        "seqs": _Spec("int", optional=True, hi=_U64_MAX),
    }


#: What ``preload_disk_cache_on_startup`` may name (SlateDB's ``PreloadLevel``).
PRELOAD_LEVELS: Final[tuple[str, ...]] = ("L0Sst", "AllSst")


@dataclass(frozen=True)
class ObjectStoreCacheOptions(_Options):
    """The object-store disk cache (SlateDB's ``ObjectStoreCacheOptions``;
    :class:`shale.objstore.cached.CachedObjectStore`, ``docs/caching.md``). Disabled while
    ``root_folder`` is ``None``."""

    #: The folder holding the cache files; ``None`` disables the cache.
    root_folder: str | None = None
    #: The bound on the cache's bytes on disk; ``None``: unbounded.
    max_cache_size_bytes: int | None = 16 * GiB
    #: The size of one cached part (a multiple of 1 KiB); ranged reads are aligned to it.
    part_size_bytes: int = 4 * MiB
    #: Cache the L0 SSTs the writer uploads when it flushes a memtable.
    cache_on_flush: bool = False
    #: Cache the SSTs the (embedded) compactor uploads.
    cache_on_compaction: bool = False
    #: SlateDB 0.12's switch: both of the above.
    cache_puts: bool = False
    #: Fill the cache when a database or reader opens: ``None``, ``"L0Sst"`` (L0 SSTs) or
    #: ``"AllSst"`` (every SST), up to the size bound.
    preload_disk_cache_on_startup: str | None = None
    #: How often the folder is rescanned to re-synchronise the index (seconds); ``None``:
    #: only when the store opens.
    scan_interval: float | None = 3600.0
    #: SlateDB's open-file-handle cache size (>= 1): accepted for compatibility; shale opens a
    #: cache file per read.
    max_open_file_handles: int = 1000

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        "root_folder": _Spec("name", optional=True),
        "max_cache_size_bytes": _Spec("size", optional=True, lo=1),
        "part_size_bytes": _Spec("size", lo=KiB, hi=_U32_MAX),
        "cache_on_flush": _Spec("bool"),
        "cache_on_compaction": _Spec("bool"),
        "cache_puts": _Spec("bool"),
        "preload_disk_cache_on_startup": _Spec("name", optional=True),
        "scan_interval": _Spec("duration", optional=True, positive=True),
        "max_open_file_handles": _Spec("int", lo=1, hi=_U32_MAX),
    }

    def _check_fields(self) -> None:
        if self.part_size_bytes % KiB:
            _fail("part_size_bytes", "must be a multiple of 1 KiB", value=self.part_size_bytes)
        level = self.preload_disk_cache_on_startup
        if level is not None and level not in PRELOAD_LEVELS:
            _fail(
                "preload_disk_cache_on_startup",
                f"must be None or one of {', '.join(PRELOAD_LEVELS)}",
                value=level,
            )
        if "\x00" in (self.root_folder or ""):
            _fail("root_folder", "must not contain NUL", value=self.root_folder)

    @property
    def enabled(self) -> bool:
        """True when a ``root_folder`` is set."""
        return self.root_folder is not None


# ---------------------------------------------------------------------------------------------
# Settings.


@dataclass(frozen=True)
class Settings(_Options):
    """The configuration of a database: SlateDB 0.12.1's ``Settings`` plus shale's own fields.

    Durations are seconds (``float``), sizes bytes (``int``). Construct it directly, or load it
    with :meth:`from_dict`, :meth:`from_file`, :meth:`from_env` or :meth:`load`. Every field is
    documented in ``docs/settings.md``.

    :raises InvalidError: (from the constructor) on any bad value, naming the field.
    """

    #: How often the WAL is flushed to object storage (seconds); ``None``: only on ``flush()``
    #: and close.
    flush_interval: float | None = 0.1
    #: ``False`` writes straight to the memtable, with no WAL.
    wal_enabled: bool = True
    #: How often the manifest is re-read (detects fencing and new compactions).
    manifest_poll_interval: float = 1.0
    #: How long manifest updates are retried before giving up (seconds).
    manifest_update_timeout: float = 300.0
    #: Retries of a transient object-store error per operation
    #: (:class:`shale.objstore.retrying.RetryPolicy`); ``None``: retry until stopped.
    object_store_max_retries: int | None = None
    #: New SSTs with fewer rows than this get no filter.
    min_filter_keys: int = 1000
    #: Bloom filter bits per key (10 ≈ 0.82 % false positives).
    filter_bits_per_key: int = 10
    #: The memtable is frozen and flushed to L0 when its size reaches this (bytes).
    l0_sst_size_bytes: int = 64 * MiB
    #: L0 flushes stop while L0 holds this many SSTs (backpressure on the compactor).
    l0_max_ssts: int = 8
    #: L0 flushes also stop while this many L0 SSTs cover one key (SlateDB 0.17's per-key
    #: bound on read amplification, which binds before ``l0_max_ssts`` when L0 SSTs do not
    #: all overlap). ``None`` (shale's default; SlateDB 0.17's is 8): no per-key bound, so
    #: raising ``l0_max_ssts`` keeps its meaning.
    l0_max_ssts_per_key: int | None = None
    #: SlateDB's parallel L0 uploads (>= 1): accepted and validated for compatibility, but
    #: unused; shale flushes immutable memtables to L0 one at a time.
    l0_flush_parallelism: int = 4
    #: Writers block when unflushed WAL + immutable memtable bytes reach this.
    max_unflushed_bytes: int = 1 * GiB
    #: The embedded compactor's options; ``None`` runs no compactor in the ``Db``.
    compactor_options: CompactorOptions | None = field(default_factory=CompactorOptions)
    #: The embedded garbage collector's options; ``None`` runs no GC in the ``Db``.
    garbage_collector_options: GarbageCollectorOptions | None = field(
        default_factory=GarbageCollectorOptions
    )
    #: SST block compression: ``None``, ``"snappy"``, ``"zlib"``, ``"lz4"`` or ``"zstd"``.
    compression_codec: CompressionCodec | None = None
    #: TTL of writes that give none, in **milliseconds**; ``None``: no expiry.
    default_ttl: int | None = None
    #: The memtable is also frozen after this many WAL flushes (bounds WAL replay).
    max_wal_flushes_before_l0_flush: int = 4096
    #: Data-block size of compacted SSTs: 1, 2, 4, 8, 16, 32 or 64 KiB.
    block_size: int = 4 * KiB
    #: Fill limit of WAL SST blocks (64..65536; 65535 matches the 0.17 package's WAL files).
    wal_block_size: int = 65535
    #: Names of the filter policies written into new SSTs (resolved through the plugins).
    filter_policies: tuple[str, ...] = ("_bf",)
    #: Name of the merge operator (resolved through the plugins), e.g. ``"concat"``.
    merge_operator: str | None = None
    #: Name of the segment prefix extractor (resolved through the plugins), e.g. ``"fixed3"``;
    #: ``None``: an unsegmented database.
    prefix_extractor: str | None = None
    #: Bytes of the in-memory block cache; 0 disables it.
    block_cache_bytes: int = 128 * MiB
    #: Bytes of open-SST metadata (index, filter) kept in memory; least recently used SSTs are
    #: closed beyond it and reopened on demand.
    meta_cache_bytes: int = 128 * MiB
    #: Manifest format written: 2 (current) or 1 (older readers).
    manifest_format_version: ManifestFormatVersion = 2
    #: Reads hide rows whose ``expire_ts <= now``. SlateDB 0.12.1 returns them (``False``).
    hide_expired: bool = True
    #: Seed making ids and random choices deterministic (an int in [0, 2**64)); ``None``: random.
    seed: int | None = None
    #: Old versions kept for time travel (:class:`HistoryRetention`); ``None``: only what open
    #: snapshots and checkpoints need, as before.
    history_retention: HistoryRetention | None = None
    #: The object-store disk cache (:class:`ObjectStoreCacheOptions`); off unless its
    #: ``root_folder`` is set (``None`` disables it too).
    object_store_cache_options: ObjectStoreCacheOptions | None = field(
        default_factory=ObjectStoreCacheOptions
    )

    _SPECS: ClassVar[Mapping[str, _Spec]] = {
        "flush_interval": _Spec("duration", optional=True, positive=True),
        "wal_enabled": _Spec("bool"),
        "manifest_poll_interval": _Spec("duration", positive=True),
        "manifest_update_timeout": _Spec("duration", positive=True),
        "object_store_max_retries": _Spec("int", optional=True, hi=_U32_MAX),
        "min_filter_keys": _Spec("int", hi=_U32_MAX),
        "filter_bits_per_key": _Spec("int", lo=1, hi=_U32_MAX),
        "l0_sst_size_bytes": _Spec("size", lo=1),
        "l0_max_ssts": _Spec("int", lo=1, hi=_U32_MAX),
        "l0_max_ssts_per_key": _Spec("int", optional=True, lo=1, hi=_U32_MAX),
        "l0_flush_parallelism": _Spec("int", lo=1, hi=_U32_MAX),
        "max_unflushed_bytes": _Spec("size", lo=1),
        "compactor_options": _Spec("group", optional=True, group=CompactorOptions),
        "garbage_collector_options": _Spec("group", optional=True, group=GarbageCollectorOptions),
        "compression_codec": _Spec("codec", optional=True),
        "default_ttl": _Spec("ttl", optional=True, lo=1),
        "max_wal_flushes_before_l0_flush": _Spec("int", lo=1, hi=_U32_MAX),
        "block_size": _Spec("size", choices=_BLOCK_SIZES),
        "wal_block_size": _Spec("size", lo=64, hi=64 * KiB),
        "filter_policies": _Spec("names"),
        "merge_operator": _Spec("name", optional=True),
        "prefix_extractor": _Spec("name", optional=True),
        "block_cache_bytes": _Spec("size"),
        "meta_cache_bytes": _Spec("size"),
        "manifest_format_version": _Spec("int", choices=(1, 2)),
        "hide_expired": _Spec("bool"),
        "seed": _Spec("int", optional=True, hi=_U64_MAX),
        "history_retention": _Spec("group", optional=True, group=HistoryRetention),
        "object_store_cache_options": _Spec("group", optional=True, group=ObjectStoreCacheOptions),
    }

    # -- loaders ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Settings | None = None) -> Settings:
        """Settings from a (nested) dict, as read from JSON or TOML.

        Keys are field names; option groups are nested dicts that override the base group key by
        key, and ``None`` (or ``"none"``) disables a group or clears an optional field.
        Durations may be numbers (seconds) or strings (``"100ms"``), sizes ints or strings
        (``"64MiB"``), ``default_ttl`` milliseconds or a duration string, ``filter_policies`` a
        list or a comma-separated string.

        :param data: the settings to change.
        :param base: the settings ``data`` overrides (default: ``Settings()``).
        :return: validated settings.
        :raises InvalidError: on an unknown key or a bad value, naming the (dotted) field.
        """
        return _apply(cls() if base is None else base, data)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        base: Settings | None = None,
        *,
        dialect: Dialect = "auto",
    ) -> Settings:
        """Settings from a ``.json``, ``.toml`` or ``.yaml``/``.yml`` file (see :meth:`from_dict`
        for the values; YAML needs PyYAML installed).

        :param path: the file; its extension picks the format.
        :param base: the settings the file overrides (default: ``Settings()``).
        :param dialect: ``"shale"`` (shale's names), ``"slatedb"`` (SlateDB's settings file, as
            :meth:`from_slatedb` reads it) or ``"auto"``: SlateDB's for a file named
            ``SlateDb.*`` (any case), shale's otherwise.
        :raises InvalidError: for another extension, a file that cannot be read, a parse error
            (with ``file``, ``line`` and ``column``), or a bad setting (with ``file``).
        """
        p = pathlib.Path(path)
        slatedb = _check_dialect(dialect) == "slatedb" or (
            dialect == "auto" and p.name.lower().startswith("slatedb.")
        )
        data = _read_settings_file(p)
        try:
            settings = cls.from_slatedb(data, base) if slatedb else cls.from_dict(data, base)
        except InvalidError as exc:
            raise _rebuild(exc, file=str(p)) from None
        log.debug("settings loaded from %s", p)
        return settings

    @classmethod
    def from_slatedb(cls, data: Mapping[str, Any] | str, base: Settings | None = None) -> Settings:
        """Settings from SlateDB's settings document: a dict as read from ``SlateDb.json``/
        ``.toml``/``.yaml``, or the JSON text SlateDB's ``Settings::to_json_string`` (and the
        official package's ``Settings.to_json_string()``) writes.

        SlateDB's names are translated (``default_ttl_millis``, the GC's ``*_options``, the
        compactor's ``scheduler_options`` map, the 0.17 ``worker`` group); settings shale has
        no use for (``metric_level``, ``bytes_to_fetch``, ``wal_fence_options``, ...) are
        checked and left out, and logged. See :mod:`shale.slatedb_settings` and
        ``docs/settings.md``. Keys the document does not name keep ``base``'s values.

        :raises InvalidError: an unknown key (with a "did you mean" hint) or a bad value,
            naming the dotted SlateDB field.
        """
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise InvalidError(
                    "SlateDB settings text is not valid JSON",
                    line=exc.lineno,
                    column=exc.colno,
                    error=exc.msg,
                ) from exc
        if not isinstance(data, Mapping):
            raise InvalidError("SlateDB settings must be a table/object", value=data)
        translated, ignored = slatedb_settings.translate(data)
        if ignored:
            log.info("SlateDB settings with no shale equivalent left out: %s", ", ".join(ignored))
        return cls.from_dict(translated, base)

    @classmethod
    def from_env(
        cls,
        prefix: str = env.SETTINGS_PREFIX,
        base: Settings | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        dialect: Dialect = "auto",
    ) -> Settings:
        """Settings from environment variables named ``<prefix><FIELD>``.

        ``SHALE_FLUSH_INTERVAL=50ms``; nested fields join names with ``__`` (or ``.``):
        ``SHALE_COMPACTOR_OPTIONS__POLL_INTERVAL=2s``,
        ``SHALE_GARBAGE_COLLECTOR_OPTIONS__WAL__MIN_AGE=1h``; ``SHALE_COMPACTOR_OPTIONS=none``
        disables a group. Names are case-insensitive. A value is parsed as JSON when it is valid
        JSON (``8``, ``true``, ``null``, ``{"poll_interval": "2s"}``, ``["_bf"]``), otherwise taken
        as a string. Variables listed in :data:`shale.env.NOT_SETTINGS` and the plugins'
        namespace ``SHALE_PLUGIN_*`` (:data:`shale.env.PLUGIN_PREFIX`) are skipped; any other
        variable with the prefix must be a setting.

        :param prefix: the variable-name prefix (non-empty).
        :param base: the settings the environment overrides (default: ``Settings()``).
        :param environ: the environment to read (default: ``os.environ``).
        :param dialect: ``"slatedb"`` reads SlateDB's names (``SLATEDB_DEFAULT_TTL_MILLIS``,
            ``SLATEDB_GARBAGE_COLLECTOR_OPTIONS.WAL_OPTIONS.MIN_AGE``; as
            :meth:`from_slatedb`), ``"shale"`` shale's; ``"auto"``: SlateDB's when ``prefix``
            is ``"SLATEDB_"``.
        :raises InvalidError: on an unknown or malformed name, conflicting variables, or a bad
            value (with ``env`` naming the variable).
        """
        if not isinstance(prefix, str) or not prefix:
            raise InvalidError("the environment prefix must be a non-empty str", prefix=prefix)
        slatedb = _check_dialect(dialect) == "slatedb" or (
            dialect == "auto" and prefix.upper() == slatedb_settings.PREFIX
        )
        environ = os.environ if environ is None else environ
        tree: dict[str, Any] = {}
        origin: dict[str, str] = {}  # dotted field path -> variable name
        skip = set() if slatedb else {name.upper() for name in env.NOT_SETTINGS}
        plugins = "\x00" if slatedb else env.PLUGIN_PREFIX.upper()
        for var in sorted(environ):
            upper = var.upper()
            if not upper.startswith(prefix.upper()) or upper in skip or upper.startswith(plugins):
                continue
            parts = _NESTED.split(var[len(prefix) :].lower())
            dotted = ".".join(parts)
            if not all(parts):
                _fail(dotted or var, "malformed setting variable name", env=var)
            node = tree
            for i, part in enumerate(parts[:-1]):
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    _fail(
                        ".".join(parts[: i + 1]),
                        "conflicting setting variables",
                        env=var,
                        conflicts_with=origin[".".join(parts[: i + 1])],
                    )
                node = child
            value = _env_value(var, environ[var])
            if isinstance(node.get(parts[-1]), dict) and isinstance(value, dict):
                node[parts[-1]] = {**node[parts[-1]], **value}
            else:
                node[parts[-1]] = value
            origin[dotted] = var
        try:
            return cls.from_slatedb(tree, base) if slatedb else cls.from_dict(tree, base)
        except InvalidError as exc:
            wanted = dotted = str(exc.detail.get("field", ""))
            while dotted and dotted not in origin:  # the variable that set it or a parent
                dotted = dotted.rpartition(".")[0]
            below = [v for k, v in origin.items() if k.startswith(wanted + ".")]
            var = origin.get(dotted) or (below[0] if below else prefix + "*")
            if not slatedb and str(getattr(exc, "reason", "")).startswith("unknown setting"):
                hint = f"variables of plugins start with {env.PLUGIN_PREFIX}"
                raise _rebuild(exc, env=var, hint=hint) from None
            raise _rebuild(exc, env=var) from None

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str] = ".",
        *,
        prefix: str = env.SETTINGS_PREFIX,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Defaults ← ``shale.json`` ← ``shale.toml`` ← ``SHALE_*`` environment variables.

        Missing files are skipped; each layer overrides only what it names.

        :param directory: where to look for the files.
        :param prefix: the environment prefix (see :meth:`from_env`).
        :param environ: the environment to read (default: ``os.environ``).
        :raises InvalidError: as :meth:`from_file` and :meth:`from_env` do.
        """
        settings = cls()
        for name in SETTINGS_FILES:
            path = pathlib.Path(directory) / name
            if path.is_file():
                settings = cls.from_file(path, settings)
        return cls.from_env(prefix, settings, environ=environ)

    @classmethod
    def load_slatedb(
        cls,
        directory: str | os.PathLike[str] = ".",
        *,
        environ: Mapping[str, str] | None = None,
        base: Settings | None = None,
    ) -> Settings:
        """SlateDB's ``Settings::load``: defaults ← ``SlateDb.json`` ← ``SlateDb.toml`` ←
        ``SlateDb.yaml`` ← ``SlateDb.yml`` ← ``SLATEDB_*`` variables (nested names joined
        with ``.``), all in SlateDB's names (:meth:`from_slatedb`).

        :param directory: where to look for the files (SlateDB looks in the working directory).
        :param environ: the environment to read (default: ``os.environ``).
        :param base: the defaults the layers override (default: ``Settings()``).
        :raises InvalidError: as :meth:`from_file` and :meth:`from_env` do.
        """
        settings = cls() if base is None else base
        for name in slatedb_settings.FILES:
            path = pathlib.Path(directory) / name
            if path.is_file():
                settings = cls.from_file(path, settings, dialect="slatedb")
        return cls.from_env(slatedb_settings.PREFIX, settings, environ=environ, dialect="slatedb")


_NESTED: Final = re.compile(re.escape(env.SETTINGS_NESTED_SEPARATOR) + r"|\.")


def _env_value(var: str, text: str) -> Any:
    """An environment value: JSON when it parses as JSON, else the (stripped) string."""
    stripped = text.strip()
    if not stripped:
        _fail(var, "empty value (unset the variable instead)", env=var)
    try:
        return json.loads(stripped)
    except ValueError:
        return stripped


def _check_dialect(dialect: object) -> str:
    if dialect not in ("auto", "shale", "slatedb"):
        raise InvalidError("dialect must be 'auto', 'shale' or 'slatedb'", dialect=dialect)
    return str(dialect)


def _read_settings_file(p: pathlib.Path) -> dict[str, Any]:
    """The table a ``.json``, ``.toml`` or ``.yaml``/``.yml`` settings file holds."""
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml", ".yaml", ".yml"):
        raise InvalidError("unknown settings file format; use .json, .toml or .yaml", file=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path; bad UTF-8
        raise InvalidError("cannot read settings file", file=str(p), error=str(exc)) from exc
    data: Any
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidError(
                "settings file is not valid JSON",
                file=str(p),
                line=exc.lineno,
                column=exc.colno,
                error=exc.msg,
            ) from exc
    elif suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"at line (\d+), column (\d+)", str(exc))
            pos: dict[str, object] = (
                {"line": int(m.group(1)), "column": int(m.group(2))} if m else {}
            )
            raise InvalidError(
                "settings file is not valid TOML", file=str(p), **pos, error=str(exc)
            ) from exc
    else:
        data = _load_yaml(p, text)
    if not isinstance(data, dict):
        raise InvalidError("settings file must hold a table/object", file=str(p))
    return data


def _load_yaml(p: pathlib.Path, text: str) -> Any:
    try:  # PyYAML: optional, only for YAML settings files
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise InvalidError(
            "YAML settings files need PyYAML (pip install pyyaml), or use .json or .toml",
            file=str(p),
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos: dict[str, object] = (
            {"line": mark.line + 1, "column": mark.column + 1} if mark is not None else {}
        )
        raise InvalidError(
            "settings file is not valid YAML", file=str(p), **pos, error=str(exc)
        ) from exc
