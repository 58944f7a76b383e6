"""Tests of shale.settings: defaults, validation, the loaders, round trips, parsing."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import tempfile
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from shale import env
from shale.errors import InvalidError
from shale.settings import (
    CODECS,
    MAX_DURATION,
    SETTINGS_FILES,
    CompactorOptions,
    GarbageCollectorOptions,
    GcDirectoryOptions,
    Settings,
    format_duration,
    parse_duration,
    parse_size,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def field_of(exc: pytest.ExceptionInfo[InvalidError]) -> object:
    return exc.value.detail.get("field")


# --------------------------------------------------------------------------------------------
# Defaults (FEATURES §1.10, §1.11, §1.17).


def test_settings_defaults_match_slatedb_0_12_1() -> None:
    s = Settings()
    assert s.flush_interval == 0.1
    assert s.wal_enabled is True
    assert s.manifest_poll_interval == 1.0
    assert s.manifest_update_timeout == 300.0
    assert s.min_filter_keys == 1000
    assert s.filter_bits_per_key == 10
    assert s.l0_sst_size_bytes == 67_108_864
    assert s.l0_max_ssts == 8
    assert s.l0_flush_parallelism == 4
    assert s.max_unflushed_bytes == 1_073_741_824
    assert s.compactor_options == CompactorOptions()
    assert s.garbage_collector_options == GarbageCollectorOptions()
    assert s.compression_codec is None
    assert s.default_ttl is None


def test_shale_only_defaults() -> None:
    s = Settings()
    assert s.max_wal_flushes_before_l0_flush == 4096
    assert s.block_size == 4096
    assert s.wal_block_size == 65535
    assert s.filter_policies == ("_bf",)
    assert s.merge_operator is None
    assert s.block_cache_bytes == 128 * MiB
    assert s.manifest_format_version == 2
    assert s.hide_expired is True
    assert s.seed is None


def test_compactor_and_gc_defaults() -> None:
    c = CompactorOptions()
    assert (c.poll_interval, c.manifest_update_timeout, c.max_sst_size) == (5.0, 300.0, 256 * MiB)
    assert (c.max_concurrent_compactions, c.max_fetch_tasks) == (4, 4)
    assert (c.min_compaction_sources, c.max_compaction_sources) == (4, 8)
    assert c.include_size_threshold == 4.0
    assert c.checkpoint_lifetime == 900.0
    d = GcDirectoryOptions()
    assert (d.interval, d.min_age) == (60.0, 300.0)
    g = GarbageCollectorOptions()
    assert g.manifest == g.wal == g.compacted == g.compactions == d
    assert not g.is_empty
    assert GarbageCollectorOptions(None, None, None, None).is_empty


def test_defaults_serialize_like_slatedb() -> None:
    d = Settings().to_dict()
    assert d["flush_interval"] == "100ms"
    assert d["manifest_poll_interval"] == "1s"
    assert d["manifest_update_timeout"] == "300s"
    assert d["compactor_options"]["poll_interval"] == "5s"
    assert d["garbage_collector_options"]["wal"] == {"interval": "60s", "min_age": "300s"}
    assert d["compression_codec"] is None
    assert d["filter_policies"] == ["_bf"]
    assert json.loads(Settings().to_json()) == d
    assert json.loads(Settings().to_json(indent=2)) == d


def test_frozen_hashable_plain_data() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.flush_interval = 1.0  # type: ignore[misc]
    assert hash(s) == hash(Settings())
    assert {s: 1}[Settings()] == 1

    def plain(v: object) -> None:  # settings hold no callables or components
        if dataclasses.is_dataclass(v):
            for f in dataclasses.fields(v):
                plain(getattr(v, f.name))
        elif isinstance(v, tuple):
            for item in v:
                plain(item)
        else:
            assert v is None or isinstance(v, (bool, int, float, str)), v

    plain(s)


def test_constructor_normalizes() -> None:
    s = Settings(flush_interval=1, filter_policies=["_bf", "shale.mmh3_bloom"])  # type: ignore[arg-type]
    assert s.flush_interval == 1.0 and isinstance(s.flush_interval, float)
    assert s.filter_policies == ("_bf", "shale.mmh3_bloom")
    assert Settings(flush_interval=1.4e-9).flush_interval == 1e-9  # rounded to the nanosecond
    assert Settings(filter_policies=()).filter_policies == ()
    assert CompactorOptions(include_size_threshold=2).include_size_threshold == 2.0


# --------------------------------------------------------------------------------------------
# Validation: every error names its field.

BAD_SETTINGS: list[tuple[str, Any]] = [
    ("flush_interval", -1.0),
    ("flush_interval", 0),
    ("flush_interval", 1e-10),  # rounds to 0 ns
    ("flush_interval", math.nan),
    ("flush_interval", math.inf),
    ("flush_interval", MAX_DURATION * 2),
    ("flush_interval", "50ms"),
    ("flush_interval", True),
    ("flush_interval", 10**400),
    ("wal_enabled", 1),
    ("wal_enabled", "true"),
    ("wal_enabled", None),
    ("manifest_poll_interval", None),
    ("manifest_poll_interval", 0.0),
    ("manifest_update_timeout", 0),
    ("min_filter_keys", -1),
    ("min_filter_keys", 2**32),
    ("min_filter_keys", 1.0),
    ("min_filter_keys", True),
    ("filter_bits_per_key", 0),
    ("l0_sst_size_bytes", 0),
    ("l0_sst_size_bytes", -1),
    ("l0_sst_size_bytes", "64MiB"),
    ("l0_sst_size_bytes", 2**63),
    ("l0_max_ssts", 0),
    ("l0_flush_parallelism", 0),
    ("l0_flush_parallelism", False),
    ("max_unflushed_bytes", 0),
    ("compactor_options", {}),
    ("compactor_options", "none"),
    ("compactor_options", GcDirectoryOptions()),
    ("garbage_collector_options", {"wal": None}),
    ("compression_codec", "gzip"),
    ("compression_codec", "ZSTD"),
    ("compression_codec", "none"),
    ("compression_codec", 1),
    ("default_ttl", 0),
    ("default_ttl", -5),
    ("default_ttl", 1.5),
    ("default_ttl", 2**63),
    ("default_ttl", True),
    ("max_wal_flushes_before_l0_flush", 0),
    ("block_size", 4000),
    ("block_size", 128 * KiB),
    ("block_size", 512),
    ("wal_block_size", 63),
    ("wal_block_size", 64 * KiB + 1),
    ("filter_policies", "_bf"),
    ("filter_policies", ("_bf", "_bf")),
    ("filter_policies", ("",)),
    ("filter_policies", (1,)),
    ("filter_policies", None),
    ("filter_policies", ("x" * 65536,)),
    ("merge_operator", ""),
    ("merge_operator", "  "),
    ("merge_operator", 5),
    ("block_cache_bytes", -1),
    ("manifest_format_version", 3),
    ("manifest_format_version", 0),
    ("hide_expired", None),
    ("hide_expired", 1),
    ("seed", -1),
    ("seed", 2**64),
    ("seed", 1.0),
    ("seed", "7"),
]


@pytest.mark.parametrize(
    ("name", "value"), BAD_SETTINGS, ids=[f"{n}={v!r}"[:60] for n, v in BAD_SETTINGS]
)
def test_bad_setting_names_field(name: str, value: object) -> None:
    kwargs: dict[str, Any] = {name: value}
    with pytest.raises(InvalidError) as exc:
        Settings(**kwargs)
    assert field_of(exc) == name
    assert f"field={name!r}" in str(exc.value)
    assert exc.value.kind == "invalid" and isinstance(exc.value, ValueError)
    # replace() and dataclasses.replace() validate the same way.
    with pytest.raises(InvalidError) as exc:
        Settings().replace(**kwargs)
    assert field_of(exc) == name
    with pytest.raises(InvalidError) as exc:
        dataclasses.replace(Settings(), **kwargs)
    assert field_of(exc) == name


BAD_GROUPS: list[tuple[type, str, Any]] = [
    (CompactorOptions, "poll_interval", 0),
    (CompactorOptions, "poll_interval", None),
    (CompactorOptions, "manifest_update_timeout", -1),
    (CompactorOptions, "max_sst_size", 0),
    (CompactorOptions, "max_concurrent_compactions", 0),
    (CompactorOptions, "max_fetch_tasks", 0),
    (CompactorOptions, "min_compaction_sources", 1),
    (CompactorOptions, "max_compaction_sources", 3),  # < min_compaction_sources (4)
    (CompactorOptions, "include_size_threshold", 0),
    (CompactorOptions, "include_size_threshold", math.nan),
    (CompactorOptions, "include_size_threshold", "4"),
    (CompactorOptions, "include_size_threshold", 10**400),
    (CompactorOptions, "checkpoint_lifetime", 0),
    (GcDirectoryOptions, "interval", 0),
    (GcDirectoryOptions, "interval", -1),
    (GcDirectoryOptions, "min_age", -1),
    (GcDirectoryOptions, "min_age", None),
    (GarbageCollectorOptions, "wal", {}),
    (GarbageCollectorOptions, "manifest", 5),
    (GarbageCollectorOptions, "compacted", CompactorOptions()),
]


@pytest.mark.parametrize(("cls", "name", "value"), BAD_GROUPS)
def test_bad_group_option_names_field(cls: type, name: str, value: object) -> None:
    with pytest.raises(InvalidError) as exc:
        cls(**{name: value})
    assert field_of(exc) == name


def test_group_edge_values_are_valid() -> None:
    assert GcDirectoryOptions(interval=None, min_age=0).min_age == 0.0
    assert CompactorOptions(min_compaction_sources=2, max_compaction_sources=2)
    assert Settings(flush_interval=None, compactor_options=None, garbage_collector_options=None)
    zeros = Settings(min_filter_keys=0, block_cache_bytes=0, seed=0)
    assert (zeros.min_filter_keys, zeros.block_cache_bytes, zeros.seed) == (0, 0, 0)
    for codec in CODECS:
        assert Settings(compression_codec=codec).compression_codec == codec
    for size in (1, 2, 4, 8, 16, 32, 64):
        assert Settings(block_size=size * KiB).block_size == size * KiB
    assert Settings(wal_block_size=64).wal_block_size == 64
    assert Settings(seed=2**64 - 1, default_ttl=2**63 - 1).seed == 2**64 - 1


def test_replace_unknown_field() -> None:
    with pytest.raises(InvalidError) as exc:
        Settings().replace(flush_intervl=1.0)
    assert field_of(exc) == "flush_intervl"
    assert "did you mean 'flush_interval'" in str(exc.value)
    with pytest.raises(InvalidError) as exc:
        CompactorOptions().replace(nope=1)
    assert field_of(exc) == "nope"
    s = Settings().replace(l0_max_ssts=16)
    assert s.l0_max_ssts == 16 and s == dataclasses.replace(Settings(), l0_max_ssts=16)


# --------------------------------------------------------------------------------------------
# Durations and sizes.


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1),
        ("1s", 1.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1s+100ms", 1.1),
        ("1s + 100ms", 1.1),
        ("1s+050ms", 1.05),
        ("3m+31", 211.0),  # a bare number is seconds (duration-str)
        ("1m 30s", 90.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("10", 10.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("10us", 1e-5),
        ("10µs", 1e-5),
        ("5ns", 5e-9),
        ("  2S ", 2.0),
        ("1MS", 0.001),
        ("1 second", 1.0),
        ("2 minutes", 120.0),
        ("1min", 60.0),
        ("1hr", 3600.0),
        ("1s+001us+500ns", 1.0000015),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "  ", "ms", "1x", "-1s", "1s+", "+1s", "1y", "1mon", "1e3", "1s,2s", "nan",
             "inf", "1s++1ms", "1..5s", "s1"],
)  # fmt: skip
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidError) as exc:
        parse_duration(text)
    assert field_of(exc) == "duration"


def test_parse_duration_type() -> None:
    with pytest.raises(InvalidError):
        parse_duration(1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.1, "100ms"),
        (0.05, "050ms"),
        (1, "1s"),
        (300, "300s"),
        (1.1, "1s+100ms"),
        (1.05, "1s+050ms"),
        (0, "0s"),
        (0.0000015, "001us+500ns"),
        (2e-9, "002ns"),
        (86400, "86400s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == GcDirectoryOptions(min_age=seconds).min_age


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1s", True, 10**400])
def test_format_duration_rejects(bad: Any) -> None:
    with pytest.raises(InvalidError):
        format_duration(bad)


@hsettings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=MAX_DURATION, allow_nan=False),
        st.integers(0, 10**15).map(lambda ns: ns / 1e9),
    )
)
def test_duration_round_trip(seconds: float) -> None:
    canonical = GcDirectoryOptions(min_age=seconds).min_age
    assert abs(canonical - seconds) <= 5e-10 + abs(seconds) * 1e-15
    assert GcDirectoryOptions(min_age=canonical).min_age == canonical  # idempotent
    assert parse_duration(format_duration(canonical)) == canonical


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("64MiB", 64 * MiB),
        ("1GiB", GiB),
        ("512KB", 512_000),
        ("512kib", 512 * KiB),
        ("1.5MiB", 3 * MiB // 2),
        ("1.5 MiB", 3 * MiB // 2),
        ("1_000", 1000),
        ("10B", 10),
        ("2 TB", 2 * 10**12),
        ("1TiB", 1024 * GiB),
        (" 0 ", 0),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "MiB", "-1", "64M", "1e3", "0x10", "1.5B", "1.0000001KiB", "12x", "1 2", "_1"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidError) as exc:
        parse_size(text)
    assert field_of(exc) == "size"
    with pytest.raises(InvalidError):
        parse_size(4096)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# from_dict.


def test_from_dict_values() -> None:
    s = Settings.from_dict(
        {
            "flush_interval": "50ms",
            "manifest_poll_interval": 2,
            "l0_sst_size_bytes": "32MiB",
            "max_unflushed_bytes": 1000,
            "l0_max_ssts": "16",
            "wal_enabled": "false",
            "hide_expired": 0,
            "compression_codec": "ZSTD",
            "default_ttl": "1h",
            "block_size": "8KiB",
            "filter_policies": "_bf, shale.mmh3_bloom",
            "merge_operator": "concat",
            "seed": 42,
            "compactor_options": {"poll_interval": "2s", "include_size_threshold": "2.5"},
            "garbage_collector_options": {"wal": {"min_age": "1h", "interval": "none"}},
        }
    )
    assert s.flush_interval == 0.05 and s.manifest_poll_interval == 2.0
    assert s.l0_sst_size_bytes == 32 * MiB and s.max_unflushed_bytes == 1000
    assert s.l0_max_ssts == 16 and s.wal_enabled is False and s.hide_expired is False
    assert s.compression_codec == "zstd" and s.default_ttl == 3_600_000
    assert s.block_size == 8192 and s.filter_policies == ("_bf", "shale.mmh3_bloom")
    assert s.merge_operator == "concat" and s.seed == 42
    assert s.compactor_options == CompactorOptions(poll_interval=2.0, include_size_threshold=2.5)
    assert s.garbage_collector_options is not None
    assert s.garbage_collector_options.wal == GcDirectoryOptions(interval=None, min_age=3600.0)
    assert s.garbage_collector_options.manifest == GcDirectoryOptions()


def test_from_dict_none_and_layering() -> None:
    assert Settings.from_dict({}) == Settings()
    off = Settings.from_dict(
        {"compactor_options": None, "garbage_collector_options": "none", "flush_interval": None,
         "compression_codec": "none", "default_ttl": "null", "merge_operator": None}
    )  # fmt: skip
    assert off.compactor_options is None and off.garbage_collector_options is None
    assert off.flush_interval is None and off.compression_codec is None
    # A nested key re-enables a disabled group from the defaults ...
    on = Settings.from_dict({"compactor_options": {"max_fetch_tasks": 2}}, base=off)
    assert on.compactor_options == CompactorOptions(max_fetch_tasks=2)
    # ... and otherwise merges into the base group key by key.
    base = Settings(compactor_options=CompactorOptions(max_sst_size=1))
    merged = Settings.from_dict({"compactor_options": {"poll_interval": 1}}, base=base)
    assert merged.compactor_options == CompactorOptions(max_sst_size=1, poll_interval=1.0)
    assert Settings.from_dict({"compactor_options": {}}, base=off).compactor_options == (
        CompactorOptions()
    )
    # Group objects are accepted as they are.
    c = CompactorOptions(max_fetch_tasks=1)
    assert Settings.from_dict({"compactor_options": c}).compactor_options is c
    gc = Settings.from_dict({"garbage_collector_options": {"wal": None, "compactions": "none"}})
    assert gc.garbage_collector_options == GarbageCollectorOptions(wal=None, compactions=None)


BAD_DICTS: list[tuple[Any, str]] = [
    ({"flush_interval": "fast"}, "flush_interval"),
    ({"flush_interval": "0s"}, "flush_interval"),
    ({"flush_interval": []}, "flush_interval"),
    ({"manifest_poll_interval": "none"}, "manifest_poll_interval"),
    ({"l0_max_ssts": 8.0}, "l0_max_ssts"),
    ({"l0_max_ssts": "8.5"}, "l0_max_ssts"),
    ({"l0_max_ssts": "-1"}, "l0_max_ssts"),
    ({"wal_enabled": "maybe"}, "wal_enabled"),
    ({"wal_enabled": 2}, "wal_enabled"),
    ({"l0_sst_size_bytes": "64M"}, "l0_sst_size_bytes"),
    ({"block_size": "4KB"}, "block_size"),  # 4000 bytes: KB is 1000
    ({"default_ttl": "1.5ms"}, "default_ttl"),
    ({"default_ttl": "soon"}, "default_ttl"),
    ({"default_ttl": "0"}, "default_ttl"),
    ({"compression_codec": "brotli"}, "compression_codec"),
    ({"filter_policies": "_bf,_bf"}, "filter_policies"),
    ({"filter_policies": {"_bf": 1}}, "filter_policies"),
    ({"compactor_options": 5}, "compactor_options"),
    ({"compactor_options": "off"}, "compactor_options"),
    ({"compactor_options": {"poll_interval": "x"}}, "compactor_options.poll_interval"),
    ({"compactor_options": {"max_compaction_sources": 3}},
     "compactor_options.max_compaction_sources"),
    ({"compactor_options": {"include_size_threshold": "big"}},
     "compactor_options.include_size_threshold"),
    ({"garbage_collector_options": {"wal": {"min_age": "-1s"}}},
     "garbage_collector_options.wal.min_age"),
    ({"garbage_collector_options": {"wal": {"interval": 0}}},
     "garbage_collector_options.wal.interval"),
    ({"garbage_collector_options": {"wal": 7}}, "garbage_collector_options.wal"),
    ({"flush_intervall": 1}, "flush_intervall"),
    ({"compactor_options": {"pol_interval": 1}}, "compactor_options.pol_interval"),
    ({"garbage_collector_options": {"wal_options": {}}}, "garbage_collector_options.wal_options"),
    ({"garbage_collector_options": {"wal": {"age": 1}}}, "garbage_collector_options.wal.age"),
    (
        {"object_store_cache_options": {"part_size_bytes": 1500}},
        "object_store_cache_options.part_size_bytes",
    ),
    (
        {"object_store_cache_options": {"preload_disk_cache_on_startup": "l0"}},
        "object_store_cache_options.preload_disk_cache_on_startup",
    ),
    (
        {"object_store_cache_options": {"max_cache_size_bytes": 0}},
        "object_store_cache_options.max_cache_size_bytes",
    ),
    (
        {"object_store_cache_options": {"scan_interval": "0s"}},
        "object_store_cache_options.scan_interval",
    ),
    ({1: 2}, "1"),
    ([("flush_interval", 1)], "settings"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "name"), BAD_DICTS, ids=[n + str(i) for i, (_, n) in enumerate(BAD_DICTS)]
)
def test_from_dict_errors_name_dotted_field(data: Any, name: str) -> None:
    with pytest.raises(InvalidError) as exc:
        Settings.from_dict(data)
    assert field_of(exc) == name


def test_unknown_key_hints() -> None:
    with pytest.raises(InvalidError, match=r"did you mean 'flush_interval'"):
        Settings.from_dict({"flush_intervall": 1})
    with pytest.raises(InvalidError, match=r"did you mean 'compactor_options.poll_interval'"):
        Settings.from_dict({"compactor_options": {"pol_interval": 1}})
    with pytest.raises(InvalidError, match="shale calls it 'wal'"):
        Settings.from_dict({"garbage_collector_options": {"wal_options": {}}})
    with pytest.raises(InvalidError, match="min_compaction_sources"):
        Settings.from_dict({"compactor_options": {"scheduler_options": {}}})
    with pytest.raises(InvalidError, match="known: flush_interval"):
        Settings.from_dict({"zzz": 1})


# --------------------------------------------------------------------------------------------
# Round trips.

pos_durations = st.one_of(
    st.floats(min_value=1e-9, max_value=MAX_DURATION, allow_nan=False),
    st.integers(1, 3 * 10**12).map(lambda ms: ms / 1000),
)
durations = st.one_of(st.just(0.0), pos_durations)
sizes = st.integers(1, 2**40)
counts = st.integers(1, 2**32 - 1)
gc_dirs = st.one_of(
    st.none(), st.builds(GcDirectoryOptions, st.one_of(st.none(), pos_durations), durations)
)
compactors = st.integers(2, 1000).flatmap(
    lambda lo: st.builds(
        CompactorOptions,
        poll_interval=pos_durations,
        manifest_update_timeout=pos_durations,
        max_sst_size=sizes,
        max_concurrent_compactions=counts,
        max_fetch_tasks=counts,
        min_compaction_sources=st.just(lo),
        max_compaction_sources=st.integers(lo, 2000),
        include_size_threshold=st.floats(min_value=1e-6, max_value=1e6),
        checkpoint_lifetime=pos_durations,
    )
)
all_settings = st.builds(
    Settings,
    flush_interval=st.one_of(st.none(), pos_durations),
    wal_enabled=st.booleans(),
    manifest_poll_interval=pos_durations,
    manifest_update_timeout=pos_durations,
    min_filter_keys=st.integers(0, 2**32 - 1),
    filter_bits_per_key=counts,
    l0_sst_size_bytes=sizes,
    l0_max_ssts=counts,
    l0_flush_parallelism=counts,
    max_unflushed_bytes=sizes,
    compactor_options=st.one_of(st.none(), compactors),
    garbage_collector_options=st.one_of(
        st.none(), st.builds(GarbageCollectorOptions, gc_dirs, gc_dirs, gc_dirs, gc_dirs)
    ),
    compression_codec=st.sampled_from((None, *CODECS)),
    default_ttl=st.one_of(st.none(), st.integers(1, 2**63 - 1)),
    max_wal_flushes_before_l0_flush=counts,
    block_size=st.sampled_from([2**i for i in range(10, 17)]),
    wal_block_size=st.integers(64, 65536),
    filter_policies=st.lists(st.text(min_size=1, max_size=10), unique=True, max_size=3).map(tuple),
    merge_operator=st.one_of(st.none(), st.sampled_from(["concat", "shale.sum", "x"])),
    block_cache_bytes=st.integers(0, 2**40),
    manifest_format_version=st.sampled_from([1, 2]),
    hide_expired=st.booleans(),
    seed=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)


@hsettings(max_examples=150, deadline=None)
@given(all_settings)
def test_round_trip_dict_and_json(s: Settings) -> None:
    assert Settings.from_dict(s.to_dict()) == s
    assert Settings.from_dict(json.loads(s.to_json())) == s
    assert Settings.from_dict({}, base=s) == s
    assert dataclasses.replace(s) == s == s.replace()


@hsettings(max_examples=25, deadline=None)
@given(all_settings)
def test_round_trip_file_and_env(s: Settings) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "s.json"
        path.write_text(s.to_json(indent=2))
        assert Settings.from_file(path) == s
    environ = {f"SHALE_{k.upper()}": json.dumps(v) for k, v in s.to_dict().items()}
    assert Settings.from_env(environ=environ) == s


# --------------------------------------------------------------------------------------------
# from_file.

TOML = """
flush_interval = "50ms"
wal_enabled = false
manifest_poll_interval = "1s"
max_unflushed_bytes = "512MiB"
compression_codec = "lz4"
filter_policies = ["_bf", "shale.mmh3_bloom"]

[compactor_options]
poll_interval = "5s"
max_sst_size = 1073741824
max_concurrent_compactions = 4

[garbage_collector_options.manifest]
interval = "300s"
min_age = "86400s"

[garbage_collector_options.wal]
interval = "none"
min_age = "60s"
"""


def test_from_file_toml(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "shale.toml"
    path.write_text(TOML)
    s = Settings.from_file(path)
    assert s.flush_interval == 0.05 and s.wal_enabled is False
    assert s.max_unflushed_bytes == 512 * MiB and s.compression_codec == "lz4"
    assert s.filter_policies == ("_bf", "shale.mmh3_bloom")
    assert s.compactor_options == CompactorOptions(max_sst_size=GiB)
    gc = s.garbage_collector_options
    assert gc is not None
    assert gc.manifest == GcDirectoryOptions(interval=300.0, min_age=86400.0)
    assert gc.wal == GcDirectoryOptions(interval=None, min_age=60.0)
    assert gc.compacted == gc.compactions == GcDirectoryOptions()
    assert Settings.from_file(str(path)) == s  # str paths too


def test_from_file_json_and_base(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.JSON"
    path.write_text('{"l0_max_ssts": 12, "compactor_options": null}')
    s = Settings.from_file(path, base=Settings(seed=3))
    assert (s.l0_max_ssts, s.compactor_options, s.seed) == (12, None, 3)


@pytest.mark.parametrize("name", ["s.ini", "settings", "s.json.bak"])
def test_from_file_unknown_format(tmp_path: pathlib.Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("{}")
    with pytest.raises(InvalidError, match="unknown settings file format") as exc:
        Settings.from_file(path)
    assert exc.value.detail["file"] == str(path)


def test_from_file_read_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidError, match="cannot read") as exc:
        Settings.from_file(tmp_path / "missing.json")
    assert exc.value.detail["file"] == str(tmp_path / "missing.json")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidError, match="cannot read"):
        Settings.from_file(tmp_path / "bin.toml")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(InvalidError, match="cannot read"):
        Settings.from_file(tmp_path / "dir.json")
    with pytest.raises(InvalidError, match="cannot read"):  # was a raw ValueError
        Settings.from_file(str(tmp_path / "nul\x00.json"))


def test_from_file_parse_errors_give_position(tmp_path: pathlib.Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{\n  "l0_max_ssts": 8,\n  "flush_interval": ,\n}')
    with pytest.raises(InvalidError, match="not valid JSON") as exc:
        Settings.from_file(bad_json)
    assert exc.value.detail["file"] == str(bad_json)
    assert (exc.value.detail["line"], exc.value.detail["column"]) == (3, 21)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("l0_max_ssts = 8\nflush_interval = \n")
    with pytest.raises(InvalidError, match="not valid TOML") as exc:
        Settings.from_file(bad_toml)
    assert exc.value.detail["file"] == str(bad_toml)
    assert exc.value.detail["line"] == 2
    assert "column" in exc.value.detail
    top = tmp_path / "list.json"
    top.write_text("[1, 2]")
    with pytest.raises(InvalidError, match="must hold a table"):
        Settings.from_file(top)


def test_from_file_bad_value_names_file_and_field(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "shale.toml"
    path.write_text("[compactor_options]\nmax_fetch_tasks = 0\n")
    with pytest.raises(InvalidError) as exc:
        Settings.from_file(path)
    assert field_of(exc) == "compactor_options.max_fetch_tasks"
    assert exc.value.detail["file"] == str(path)
    assert "max_fetch_tasks" in str(exc.value) and str(path) in str(exc.value)


# --------------------------------------------------------------------------------------------
# from_env.


def test_from_env_values() -> None:
    environ = {
        "SHALE_FLUSH_INTERVAL": "50ms",
        "SHALE_L0_MAX_SSTS": "16",
        "SHALE_WAL_ENABLED": "false",
        "SHALE_MERGE_OPERATOR": "concat",
        "SHALE_FILTER_POLICIES": '["_bf", "shale.mmh3_bloom"]',
        "SHALE_COMPACTOR_OPTIONS__POLL_INTERVAL": "2s",
        "SHALE_COMPACTOR_OPTIONS__MAX_SST_SIZE": "1GiB",
        "SHALE_GARBAGE_COLLECTOR_OPTIONS__WAL__MIN_AGE": "1h",
        "SHALE_GARBAGE_COLLECTOR_OPTIONS__COMPACTED": "none",
        "shale_seed": "7",  # names are case-insensitive
        "SHALE_DEFAULT_TTL": "60000",
        "OTHER_FLUSH_INTERVAL": "1s",  # other prefixes are not read
        "PATH": "/bin",
    }
    s = Settings.from_env(environ=environ)
    assert s.flush_interval == 0.05 and s.l0_max_ssts == 16 and s.wal_enabled is False
    assert s.merge_operator == "concat" and s.filter_policies == ("_bf", "shale.mmh3_bloom")
    assert s.compactor_options == CompactorOptions(poll_interval=2.0, max_sst_size=GiB)
    gc = s.garbage_collector_options
    assert gc is not None and gc.compacted is None
    assert gc.wal == GcDirectoryOptions(min_age=3600.0)
    assert s.seed == 7 and s.default_ttl == 60_000


def test_from_env_groups_json_dot_and_prefix() -> None:
    s = Settings.from_env(
        environ={
            "SHALE_COMPACTOR_OPTIONS": '{"poll_interval": "3s", "max_fetch_tasks": 1}',
            "SHALE_COMPACTOR_OPTIONS__MAX_FETCH_TASKS": "2",  # nested variable wins
            "SHALE_GARBAGE_COLLECTOR_OPTIONS.WAL.INTERVAL": "null",  # SlateDB's dot works too
        }
    )
    assert s.compactor_options == CompactorOptions(poll_interval=3.0, max_fetch_tasks=2)
    assert s.garbage_collector_options is not None
    assert s.garbage_collector_options.wal == GcDirectoryOptions(interval=None)
    assert Settings.from_env(environ={"SHALE_COMPACTOR_OPTIONS": "none"}).compactor_options is None
    assert Settings.from_env(environ={"SHALE_COMPACTOR_OPTIONS": "null"}).compactor_options is None
    mine = Settings.from_env("MYAPP_", environ={"MYAPP_L0_MAX_SSTS": "3", "SHALE_X": "1"})
    assert mine.l0_max_ssts == 3
    base = Settings(l0_max_ssts=5, seed=1)
    assert Settings.from_env(base=base, environ={"SHALE_SEED": "2"}) == base.replace(seed=2)
    assert Settings.from_env(environ={}) == Settings()


def test_from_env_skips_non_settings() -> None:
    assert {
        env.NO_EXTENSIONS,
        env.DISABLE_PLUGIN_AUTOLOAD,
        env.DISABLED_PLUGINS,
    } <= env.NOT_SETTINGS
    for name in env.NOT_SETTINGS:
        assert name.startswith(env.SETTINGS_PREFIX)
    environ = {name: "1" for name in env.NOT_SETTINGS}
    assert Settings.from_env(environ=environ) == Settings()
    assert Settings.from_env(environ={"shale_no_extensions": "1"}) == Settings()


def test_from_env_skips_the_plugin_namespace() -> None:
    """A plugin's variable (``SHALE_PLUGIN_<PLUGIN>_*``) is never taken for a setting: it used
    to make every ``shale`` command fail (issue 9 item 15)."""
    assert env.plugin_var("example-filter", "prefixes") == "SHALE_PLUGIN_EXAMPLE_FILTER_PREFIXES"
    environ = {
        "SHALE_PLUGIN_EXAMPLE_FILTER_PREFIXES": "tmp:,cache:",
        "shale_plugin_anything__nested": "{not json",
        "SHALE_PLUGIN_": "",
        "SHALE_L0_MAX_SSTS": "9",
    }
    assert Settings.from_env(environ=environ) == Settings(l0_max_ssts=9)
    assert Settings.load(tempfile.mkdtemp(), environ=environ) == Settings(l0_max_ssts=9)


def test_plugin_namespace_never_shadows_a_setting() -> None:
    """No field (nested ones included) can be spelt SHALE_PLUGIN_...: the namespace is safe."""
    reserved = env.PLUGIN_PREFIX[len(env.SETTINGS_PREFIX) :].lower()

    def names(cls: Any, path: str = "") -> list[str]:
        out = []
        for name, spec in cls._SPECS.items():
            out.append(path + name)
            if spec.group is not None:
                out += names(spec.group, path + name + "__")
        return out

    assert not [n for n in names(Settings) if n.startswith(reserved.rstrip("_"))]
    for bad in ("", "a b", "é", "x.y"):
        with pytest.raises(ValueError):
            env.plugin_var(bad, "x")


def test_unknown_variable_still_fails_and_hints_at_the_plugin_namespace() -> None:
    with pytest.raises(InvalidError, match="did you mean 'flush_interval'"):
        Settings.from_env(environ={"SHALE_FLUSH_INTERVALL": "1s"})
    with pytest.raises(InvalidError, match="SHALE_PLUGIN_") as exc:
        Settings.from_env(environ={"SHALE_EXAMPLE_FILTER_PREFIXES": "tmp:"})  # the old name
    assert exc.value.detail["env"] == "SHALE_EXAMPLE_FILTER_PREFIXES"


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHALE_L0_MAX_SSTS", "9")
    assert Settings.from_env().l0_max_ssts == 9


BAD_ENV: list[tuple[dict[str, str], str, str]] = [
    ({"SHALE_FLUSH_INTERVAL": "fast"}, "flush_interval", "SHALE_FLUSH_INTERVAL"),
    ({"SHALE_FLUSH_INTERVL": "1s"}, "flush_intervl", "SHALE_FLUSH_INTERVL"),
    ({"SHALE_L0_FLUSH_PARALLELISM": "0"}, "l0_flush_parallelism", "SHALE_L0_FLUSH_PARALLELISM"),
    ({"SHALE_MERGE_OPERATOR": "123"}, "merge_operator", "SHALE_MERGE_OPERATOR"),
    ({"SHALE_SEED": ""}, "SHALE_SEED", "SHALE_SEED"),
    ({"SHALE_SEED": "   "}, "SHALE_SEED", "SHALE_SEED"),
    ({"SHALE_": "1"}, "SHALE_", "SHALE_"),
    ({"SHALE_COMPACTOR_OPTIONS____X": "1"}, "compactor_options..x", "SHALE_COMPACTOR_OPTIONS____X"),
    ({"SHALE_COMPACTOR_OPTIONS__MAX_SST_SIZE": "12x"}, "compactor_options.max_sst_size",
     "SHALE_COMPACTOR_OPTIONS__MAX_SST_SIZE"),
    ({"SHALE_COMPACTOR_OPTIONS": '{"max_fetch_tasks": 0}'}, "compactor_options.max_fetch_tasks",
     "SHALE_COMPACTOR_OPTIONS"),
    ({"SHALE_COMPACTOR_OPTIONS": "none", "SHALE_COMPACTOR_OPTIONS__POLL_INTERVAL": "2s"},
     "compactor_options", "SHALE_COMPACTOR_OPTIONS__POLL_INTERVAL"),
    ({"SHALE_L0_MAX_SSTS__X": "1"}, "l0_max_ssts", "SHALE_L0_MAX_SSTS__X"),
    ({"SHALE_GARBAGE_COLLECTOR_OPTIONS__WAL__MIN_AGE": "-1"},
     "garbage_collector_options.wal.min_age", "SHALE_GARBAGE_COLLECTOR_OPTIONS__WAL__MIN_AGE"),
]  # fmt: skip


@pytest.mark.parametrize(("environ", "name", "var"), BAD_ENV, ids=[v for _, _, v in BAD_ENV])
def test_from_env_errors_name_field_and_variable(
    environ: dict[str, str], name: str, var: str
) -> None:
    with pytest.raises(InvalidError) as exc:
        Settings.from_env(environ=environ)
    assert field_of(exc) == name
    assert exc.value.detail["env"] == var


def test_from_env_bad_prefix() -> None:
    with pytest.raises(InvalidError):
        Settings.from_env("", environ={})


# --------------------------------------------------------------------------------------------
# load(): defaults <- shale.json <- shale.toml <- environment.


def test_load_precedence(tmp_path: pathlib.Path) -> None:
    assert SETTINGS_FILES == ("shale.json", "shale.toml")
    assert Settings.load(tmp_path, environ={}) == Settings()
    (tmp_path / "shale.json").write_text(
        json.dumps({"flush_interval": "200ms", "l0_max_ssts": 10, "seed": 1,
                    "compactor_options": {"max_fetch_tasks": 1, "poll_interval": "1s"}})
    )  # fmt: skip
    s = Settings.load(tmp_path, environ={})
    assert (s.flush_interval, s.l0_max_ssts, s.seed) == (0.2, 10, 1)
    (tmp_path / "shale.toml").write_text(
        'flush_interval = "300ms"\nseed = 2\n[compactor_options]\nmax_fetch_tasks = 2\n'
    )
    s = Settings.load(tmp_path, environ={})
    assert (s.flush_interval, s.l0_max_ssts, s.seed) == (0.3, 10, 2)
    assert s.compactor_options == CompactorOptions(max_fetch_tasks=2, poll_interval=1.0)
    s = Settings.load(
        tmp_path,
        environ={"SHALE_FLUSH_INTERVAL": "50ms", "SHALE_COMPACTOR_OPTIONS__POLL_INTERVAL": "2s"},
    )
    assert (s.flush_interval, s.l0_max_ssts, s.seed) == (0.05, 10, 2)
    assert s.compactor_options == CompactorOptions(max_fetch_tasks=2, poll_interval=2.0)
    s = Settings.load(str(tmp_path), environ={"SHALE_COMPACTOR_OPTIONS": "none"})
    assert s.compactor_options is None and s.l0_max_ssts == 10


def test_load_defaults_to_cwd_and_os_environ(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shale.toml").write_text("l0_max_ssts = 11\n")
    monkeypatch.setenv("SHALE_SEED", "5")
    s = Settings.load()
    assert (s.l0_max_ssts, s.seed) == (11, 5)


def test_load_errors_name_their_source(tmp_path: pathlib.Path) -> None:
    (tmp_path / "shale.json").write_text('{"l0_max_ssts": 0}')
    with pytest.raises(InvalidError) as exc:
        Settings.load(tmp_path, environ={})
    assert exc.value.detail["file"] == str(tmp_path / "shale.json")
    (tmp_path / "shale.json").unlink()
    with pytest.raises(InvalidError) as exc:
        Settings.load(tmp_path, environ={"SHALE_TYPO": "1"})
    assert (field_of(exc), exc.value.detail["env"]) == ("typo", "SHALE_TYPO")
