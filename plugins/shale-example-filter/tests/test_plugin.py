"""The example compaction filter plugin: configuration, decisions, and a real compaction."""

from __future__ import annotations

import logging
import random
from importlib.metadata import entry_points
from typing import Any

import pytest

from shale.fbs.manifest import CompactedSst, SstView
from shale.ids import Ulid, compacted_path
from shale.objstore.memory import MemoryStore
from shale.plugins import PluginHost
from shale.row import TOMBSTONE, VALUE, Row
from shale.settings import Settings
from shale.sst import SsTable, SstBuilder
from shale_compactor import plugin as compactor_plugin
from shale_compactor.executor import CompactionExecutor, CompactionJob
from shale_compactor.filters import (
    DROP,
    KEEP,
    CompactionJobContext,
    PluginFilterSupplier,
    modify_tombstone,
)
from shale_example_filter import PREFIXES_ENV, DropPrefixFilter, parse_prefixes
from shale_example_filter import plugin as example_plugin


def context(last_run: bool = False) -> CompactionJobContext:
    return CompactionJobContext(
        destination=1, is_dest_last_run=last_run, compaction_clock_tick=0, retention_min_seq=None
    )


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(autoload=False)
    host.register(compactor_plugin, name="shale_compactor")  # declares the hook
    host.register(example_plugin, name="shale_example_filter")
    return host


def test_parse_prefixes() -> None:
    assert parse_prefixes(None) == ()
    assert parse_prefixes("") == ()
    assert parse_prefixes("tmp:,cache:") == (b"tmp:", b"cache:")
    assert parse_prefixes(" tmp: , ,tmp:,é") == (b"tmp:", "é".encode())


def test_no_filter_when_unconfigured(monkeypatch: pytest.MonkeyPatch, host: PluginHost) -> None:
    monkeypatch.delenv(PREFIXES_ENV, raising=False)
    assert example_plugin.shale_compaction_filter(context()) is None
    assert PluginFilterSupplier(host).create_compaction_filter(context()) == []
    monkeypatch.setenv(PREFIXES_ENV, " , ")
    assert example_plugin.shale_compaction_filter(context()) is None


def test_hook_returns_filter(monkeypatch: pytest.MonkeyPatch, host: PluginHost) -> None:
    monkeypatch.setenv(PREFIXES_ENV, "tmp:,cache:")
    [flt] = PluginFilterSupplier(host).create_compaction_filter(context())
    assert isinstance(flt, DropPrefixFilter)
    assert flt.prefixes == (b"tmp:", b"cache:")


def test_loads_without_the_compactor_hook() -> None:
    host = PluginHost(autoload=False)
    host.register(example_plugin, name="shale_example_filter")  # optionalhook: no error
    host.manager.check_pending()


def test_entry_point_is_registered() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="shale")}
    assert names.get("shale_example_filter") == "shale_example_filter.plugin"


def test_decisions() -> None:
    value = Row(b"tmp:a", 3, VALUE, b"v", 99, None)
    tomb = Row(b"tmp:b", 2, TOMBSTONE, b"", None, None)
    other = Row(b"user:1", 1, VALUE, b"v", None, None)
    flt = DropPrefixFilter((b"tmp:",), context(last_run=False))
    assert flt.filter(value) == modify_tombstone()
    assert flt.filter(tomb) is KEEP
    assert flt.filter(other) is KEEP
    last = DropPrefixFilter((b"tmp:",), context(last_run=True))
    assert last.filter(value) is DROP
    assert last.filter(tomb) is DROP
    assert last.filter(other) is KEEP
    with pytest.raises(ValueError):
        DropPrefixFilter((), context())


def test_on_compaction_end_logs(caplog: pytest.LogCaptureFixture) -> None:
    flt = DropPrefixFilter((b"tmp:",), context())
    flt.filter(Row(b"tmp:a", 1, VALUE, b"v", None, None))
    flt.filter(Row(b"keep", 1, VALUE, b"v", None, None))
    with caplog.at_level(logging.INFO, logger="shale.example_filter.plugin"):
        flt.on_compaction_end()
    assert "removed 1 of 2 rows" in caplog.text


@pytest.mark.parametrize("last_run", [False, True])
def test_compaction_removes_prefixed_keys(
    monkeypatch: pytest.MonkeyPatch, host: PluginHost, last_run: bool
) -> None:
    monkeypatch.setenv(PREFIXES_ENV, "tmp:,cache:")
    store = MemoryStore()
    rows = [
        Row(b"cache:x", 5, VALUE, b"c", 1000, None),
        Row(b"tmp:1", 4, VALUE, b"t", None, None),
        Row(b"user:1", 3, VALUE, b"u", None, None),
    ]
    builder = SstBuilder()
    builder.add_rows(rows)
    data = builder.finish()
    sid = Ulid.new(1, random.Random(1))
    store.put(compacted_path("db", sid), data)
    view = SstView(sid, CompactedSst(sid, builder.info, 2))
    ex = CompactionExecutor(
        store, "db", settings=Settings(), filter_supplier=PluginFilterSupplier(host)
    )
    job = CompactionJob(
        Ulid.new(2, random.Random(2)),
        [view],
        [],
        destination=1,
        is_dest_last_run=last_run,
        retention_min_seq=None,
        compaction_clock_tick=0,
    )
    outs = ex.execute(job, on_output=lambda s: None)
    got = [r for o in outs for r in SsTable.open(store, compacted_path("db", o.id)).rows()]
    if last_run:
        assert got == [rows[2]]
    else:
        assert got == [
            (b"cache:x", 5, TOMBSTONE, b"", None, None),
            (b"tmp:1", 4, TOMBSTONE, b"", None, None),
            rows[2],
        ]


def test_the_documented_variable_does_not_break_shale_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Setting the plugin's variable made Settings.from_env fail, so every ``shale`` command
    failed (issue 9 item 15)."""
    from shale import cli

    monkeypatch.setenv(PREFIXES_ENV, "tmp:,cache:")
    url = str(tmp_path / "db")
    assert cli.main(["put", url, "k", "v", "--store-option", "fsync=false"]) == 0, (
        capsys.readouterr().err
    )
    assert cli.main(["get", url, "k"]) == 0
    assert capsys.readouterr().out.strip().endswith("v")
    assert Settings.from_env() == Settings.from_env(environ={})
    assert PREFIXES_ENV.startswith("SHALE_PLUGIN_")
