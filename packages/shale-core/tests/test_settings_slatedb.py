"""SlateDB's settings documents in shale: ``Settings.from_slatedb``, ``from_file`` /
``from_env`` with ``dialect``, ``Settings.load_slatedb`` (SlateDB's ``Settings::load``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shale import Settings
from shale.errors import InvalidError
from shale.slatedb_settings import translate

#: What the official 0.17 package's ``Settings.default().to_json_string()`` writes.
SLATEDB_DEFAULTS = {
    "flush_interval": "100ms",
    "wal_enabled": True,
    "manifest_poll_interval": "1s",
    "manifest_update_timeout": "300s",
    "min_filter_keys": 1000,
    "l0_sst_size_bytes": 67108864,
    "max_wal_flushes_before_l0_flush": 4096,
    "l0_max_ssts": 8,
    "l0_max_ssts_per_key": 8,
    "l0_flush_parallelism": 4,
    "max_unflushed_bytes": 1073741824,
    "compactor_options": {
        "poll_interval": "5s",
        "manifest_update_timeout": "300s",
        "max_concurrent_compactions": 4,
        "enable_trivial_move": False,
        "scheduler_options": {},
        "worker": {
            "max_concurrent_compactions": 4,
            "compactions_poll_interval": "5s",
            "heartbeat_interval": "10s",
            "max_sst_size": 268435456,
            "max_fetch_tasks": 4,
            "bytes_to_fetch": 2097152,
            "max_subcompactions": 4,
            "min_filter_keys": 1000,
            "compression_codec": None,
            "metric_level": None,
        },
        "metric_level": None,
        "commit_compacted_interval": "1s",
        "checkpoint_lifetime": "900s",
        "worker_heartbeat_timeout": "30s",
        "object_store_max_retries": None,
    },
    "compression_codec": None,
    "object_store_cache_options": {
        "root_folder": None,
        "max_cache_size_bytes": 17179869184,
        "part_size_bytes": 4194304,
        "cache_on_flush": False,
        "cache_on_compaction": False,
        "preload_disk_cache_on_startup": None,
        "scan_interval": "3600s",
        "max_open_file_handles": 1000,
    },
    "garbage_collector_options": {
        "manifest_options": {"interval": "600s", "min_age": "300s", "dry_run": False},
        "wal_options": {"interval": "600s", "min_age": "300s", "dry_run": False},
        "wal_fence_options": {"interval": "600s", "min_age": "300s", "dry_run": True},
        "compacted_options": {"interval": "600s", "min_age": "300s", "dry_run": False},
        "compactions_options": {"interval": "600s", "min_age": "300s", "dry_run": False},
        "detach_options": {"interval": "600s"},
        "metric_level": None,
        "boundary_files_enabled": True,
        "object_store_max_retries": None,
    },
    "metric_level": "Info",
    "default_ttl_millis": None,
    "object_store_max_retries": None,
}


def test_the_official_defaults_load() -> None:
    s = Settings.from_slatedb(json.dumps(SLATEDB_DEFAULTS))
    assert s == Settings.from_slatedb(SLATEDB_DEFAULTS)
    assert s.flush_interval == 0.1 and s.l0_max_ssts_per_key == 8  # SlateDB's, not shale's None
    assert s.compactor_options is not None and s.compactor_options.worker is not None
    assert s.compactor_options.max_subcompactions == 4  # copied from the 0.17 worker group
    assert s.compactor_options.worker.max_subcompactions == 4
    gc = s.garbage_collector_options
    assert gc is not None and gc.wal is not None and gc.wal.interval == 600.0
    assert (
        s.default_ttl is None
        and s.object_store_cache_options == Settings().object_store_cache_options
    )


def test_ignored_settings_are_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    _out, ignored = translate(SLATEDB_DEFAULTS)
    assert "metric_level" in ignored
    assert "compactor_options.worker.bytes_to_fetch" in ignored
    assert "garbage_collector_options.wal_fence_options" in ignored
    assert "garbage_collector_options.boundary_files_enabled" in ignored
    with caplog.at_level(logging.INFO, logger="shale.settings"):
        Settings.from_slatedb({"metric_level": "Debug"})
    assert "metric_level" in caplog.text


def test_renamed_and_moved_settings() -> None:
    s = Settings.from_slatedb(
        {
            "default_ttl_millis": 60000,
            "compression_codec": "Lz4",
            "compactor_options": {
                "scheduler_options": {
                    "min_compaction_sources": "2",
                    "max_compaction_sources": "16",
                    "include_size_threshold": "2.5",
                },
                "worker": {"max_sst_size": 1048576, "max_fetch_tasks": 2},
            },
            "garbage_collector_options": {
                "wal_options": {"interval": None, "min_age": "1h"},
                "manifest_options": None,
                "compacted_options": {"interval": "30s", "min_age": "10m", "dry_run": True},
            },
        }
    )
    assert s.default_ttl == 60000 and s.compression_codec == "lz4"
    c = s.compactor_options
    assert c is not None and c.worker is not None
    assert (c.min_compaction_sources, c.max_compaction_sources) == (2, 16)
    assert c.include_size_threshold == 2.5
    assert c.max_sst_size == 1048576 == c.worker.max_sst_size and c.max_fetch_tasks == 2
    gc = s.garbage_collector_options
    assert gc is not None and gc.wal is not None
    assert gc.wal.interval == 600.0 and gc.wal.min_age == 3600.0  # null interval: SlateDB's default
    assert gc.manifest is None  # disabled
    assert gc.compacted is None  # a dry run deletes nothing: not collected
    assert gc.compactions == Settings().garbage_collector_options.compactions  # type: ignore[union-attr]
    assert Settings.from_slatedb({"compactor_options": None}).compactor_options is None
    assert (
        Settings.from_slatedb({"compactor_options": {"worker": None}}).compactor_options.worker
        is None
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"flush_intervall": "1s"}, "flush_intervall"),
        (
            {"compactor_options": {"scheduler_options": {"min_sources": "2"}}},
            "compactor_options.scheduler_options.min_sources",
        ),
        (
            {"compactor_options": {"scheduler_options": {"min_compaction_sources": "two"}}},
            "compactor_options.scheduler_options.min_compaction_sources",
        ),
        (
            {"garbage_collector_options": {"wal_options": {"dry_run": "yes"}}},
            "garbage_collector_options.wal_options.dry_run",
        ),
        ({"garbage_collector_options": {"wal": {}}}, "garbage_collector_options.wal"),
        ({"metric_level": "Loud"}, "metric_level"),
        (
            {"compactor_options": {"worker": {"bytes_to_fetch": [1]}}},
            "compactor_options.worker.bytes_to_fetch",
        ),
        ({"default_ttl_millis": 1, "default_ttl": 1}, "default_ttl_millis"),
        ({"flush_interval": "soon"}, "flush_interval"),
        ({"compactor_options": 5}, "compactor_options"),
    ],
)
def test_bad_documents_name_the_field(data: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidError) as info:
        Settings.from_slatedb(data)
    assert info.value.detail["field"] == field


def test_did_you_mean() -> None:
    with pytest.raises(InvalidError, match=r"did you mean 'compactor_options\.poll_interval'"):
        Settings.from_slatedb({"compactor_options": {"poll_intervall": "1s"}})
    with pytest.raises(InvalidError, match="not valid JSON"):
        Settings.from_slatedb("{")
    with pytest.raises(InvalidError):
        Settings.from_slatedb("[1]")


def test_shale_names_hint_at_the_slatedb_dialect() -> None:
    with pytest.raises(InvalidError, match="from_slatedb"):
        Settings.from_dict({"default_ttl_millis": 5})


def test_files_by_name_and_dialect(tmp_path: Path) -> None:
    toml = 'flush_interval = "50ms"\n[garbage_collector_options.wal_options]\nmin_age = "2h"\n'
    (tmp_path / "SlateDb.toml").write_text(toml)
    s = Settings.from_file(tmp_path / "SlateDb.toml")  # auto: SlateDB's names by the file name
    assert s.flush_interval == 0.05
    assert s.garbage_collector_options.wal.min_age == 7200.0  # type: ignore[union-attr]
    (tmp_path / "other.toml").write_text(toml)
    with pytest.raises(InvalidError, match="wal_options"):
        Settings.from_file(tmp_path / "other.toml")  # shale's names
    assert Settings.from_file(tmp_path / "other.toml", dialect="slatedb") == s
    with pytest.raises(InvalidError, match="dialect"):
        Settings.from_file(tmp_path / "other.toml", dialect="rust")  # type: ignore[arg-type]
    (tmp_path / "bad.json").write_text('{"default_ttl_millis": -1}')
    with pytest.raises(InvalidError) as info:
        Settings.from_file(tmp_path / "bad.json", dialect="slatedb")
    assert info.value.detail["file"] == str(tmp_path / "bad.json")


def test_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    (tmp_path / "SlateDb.yaml").write_text(
        "l0_max_ssts: 16\ncompactor_options:\n  poll_interval: 2s\n"
    )
    s = Settings.from_file(tmp_path / "SlateDb.yaml")
    assert s.l0_max_ssts == 16 and s.compactor_options.poll_interval == 2.0  # type: ignore[union-attr]
    (tmp_path / "shale.yml").write_text("block_size: 8KiB\n")
    assert Settings.from_file(tmp_path / "shale.yml").block_size == 8192
    (tmp_path / "broken.yaml").write_text("a: [1\n")
    with pytest.raises(InvalidError, match="not valid YAML"):
        Settings.from_file(tmp_path / "broken.yaml")


def test_env() -> None:
    environ = {
        "SLATEDB_FLUSH_INTERVAL": "1s",
        "SLATEDB_OBJECT_STORE_CACHE_OPTIONS.ROOT_FOLDER": "/tmp/cache",
        "SLATEDB_GARBAGE_COLLECTOR_OPTIONS.WAL_OPTIONS.MIN_AGE": "1h",
        "SLATEDB_DEFAULT_TTL_MILLIS": "5000",
        "SLATEDB_METRIC_LEVEL": "Debug",
        "SHALE_FLUSH_INTERVAL": "7s",  # another prefix: not read
    }
    s = Settings.from_env("SLATEDB_", environ=environ)  # auto: SlateDB's names by the prefix
    assert s.flush_interval == 1.0 and s.default_ttl == 5000
    assert s.object_store_cache_options.root_folder == "/tmp/cache"  # type: ignore[union-attr]
    assert s.garbage_collector_options.wal.min_age == 3600.0  # type: ignore[union-attr]
    with pytest.raises(InvalidError) as info:
        Settings.from_env("SLATEDB_", environ={"SLATEDB_L0_MAX_SST": "4"})
    assert info.value.detail["env"] == "SLATEDB_L0_MAX_SST"


def test_load_slatedb_layers(tmp_path: Path) -> None:
    (tmp_path / "SlateDb.json").write_text('{"flush_interval": "10ms", "l0_max_ssts": 4}')
    (tmp_path / "SlateDb.toml").write_text("l0_max_ssts = 5\nmin_filter_keys = 7\n")
    environ = {"SLATEDB_MIN_FILTER_KEYS": "9"}
    s = Settings.load_slatedb(tmp_path, environ=environ)
    assert (s.flush_interval, s.l0_max_ssts, s.min_filter_keys) == (0.01, 5, 9)
    assert Settings.load_slatedb(tmp_path / "nothing-here", environ={}) == Settings()
