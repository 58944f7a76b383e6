"""Tests of shale/plugins/: the plugin host, built-ins, blocking, broken plugins, observers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shale
from shale import env, plugins
from shale.errors import InvalidError
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.plugins import PluginHost, get_host, open_store, reset_host


@pytest.fixture(autouse=True)
def _fresh_host() -> Iterator[None]:
    reset_host()
    yield
    reset_host()


def test_builtin_stores_are_registered() -> None:
    host = get_host()
    names = host.plugin_names()
    assert "shale.local" in names
    assert "shale.memory" in names
    assert "shale.local" not in host.failed and "shale.memory" not in host.failed
    assert host.manager.get_plugin("shale.local") is sys.modules["shale.objstore.local"]


def test_get_host_is_a_singleton_until_reset() -> None:
    host = get_host()
    assert get_host() is host
    reset_host()
    assert get_host() is not host


def test_open_store_through_the_host(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    local = open_store(str(tmp_path / "a"))
    assert isinstance(local, LocalStore)
    by_url = open_store("file://" + str(tmp_path / "b"))
    assert isinstance(by_url, LocalStore) and by_url.root == str(tmp_path / "b")


def test_unknown_scheme_is_invalid_and_names_the_scheme() -> None:
    with pytest.raises(InvalidError) as info:
        get_host().open_object_store("zzz://bucket/x")
    assert "zzz" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_disabled_plugins_block_a_builtin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(env.DISABLED_PLUGINS, "shale.memory, some.other")
    reset_host()
    host = get_host()
    assert host.manager.is_blocked("shale.memory")
    assert host.manager.get_plugin("shale.memory") is None  # blocked names map to None
    assert host.manager.get_plugin("shale.local") is not None
    assert "shale.memory" not in host.failed
    with pytest.raises(InvalidError, match="memory"):
        open_store("memory://")
    assert isinstance(open_store(str(tmp_path)), LocalStore)


def test_disable_autoload_loads_only_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_entry_points(*, group: str) -> list[Any]:
        calls.append(group)
        return []

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    monkeypatch.setenv(env.DISABLE_PLUGIN_AUTOLOAD, "1")
    host = PluginHost()
    assert calls == []
    assert "shale.local" in host.plugin_names()
    monkeypatch.delenv(env.DISABLE_PLUGIN_AUTOLOAD)
    PluginHost()
    assert calls == [plugins.ENTRY_POINT_GROUP]


class _BrokenEntryPoint:
    name = "broken_plugin"
    value = "broken_plugin.plugin"
    group = plugins.ENTRY_POINT_GROUP

    def load(self) -> Any:
        raise ImportError("No module named 'broken_plugin'")


class _GoodEntryPoint:
    name = "good_plugin"
    value = "good_plugin"
    group = plugins.ENTRY_POINT_GROUP

    class Plugin:
        @shale.hookimpl
        def shale_open_object_store(self, url: str, options: dict[str, Any]) -> Any:
            return "good-store" if url.startswith("good://") else None

    def load(self) -> Any:
        return self.Plugin()


def test_broken_entry_point_is_logged_and_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        plugins, "entry_points", lambda *, group: [_BrokenEntryPoint(), _GoodEntryPoint()]
    )
    with caplog.at_level(logging.WARNING, logger="shale.plugins"):
        reset_host()
        host = get_host()
    assert "broken_plugin" in host.failed
    assert "ImportError" in host.failed["broken_plugin"]
    assert "broken_plugin" not in host.plugin_names()
    assert any("broken_plugin" in r.getMessage() for r in caplog.records)
    # the rest of the host still works, including the plugin after the broken one
    assert "good_plugin" in host.plugin_names()
    assert host.open_object_store("good://x") == "good-store"
    assert isinstance(host.open_object_store("memory://"), MemoryStore)


def test_blocked_entry_point_is_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [_BrokenEntryPoint()])
    monkeypatch.setenv(env.DISABLED_PLUGINS, "broken_plugin")
    host = PluginHost()
    assert "broken_plugin" not in host.failed


def test_missing_builtin_is_logged_and_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(plugins.BUILTINS, "shale.nonexistent", "shale._no_such_module")
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    host = PluginHost()
    assert "shale.nonexistent" in host.failed
    assert "shale.local" in host.plugin_names()


def test_notify_continues_after_an_observer_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    host = PluginHost()
    seen: list[tuple[str, Any]] = []

    class Failing:
        @shale.hookimpl
        def shale_db_opened(self, db: Any) -> None:
            seen.append(("failing", db))
            raise RuntimeError("observer bug")

    class Working:
        @shale.hookimpl
        def shale_db_opened(self, db: Any) -> None:
            seen.append(("working", db))

    class Closing:
        @shale.hookimpl
        def shale_db_closed(self, db: Any, reason: str) -> None:
            seen.append(("closed", reason))

    host.register(Working(), name="working")
    host.register(Failing(), name="failing")  # registered last: pluggy calls it first
    host.register(Closing(), name="closing")
    with caplog.at_level(logging.ERROR, logger="shale.plugins"):
        host.notify("shale_db_opened", db="the-db")
    assert ("failing", "the-db") in seen and ("working", "the-db") in seen
    assert any("failing" in r.getMessage() for r in caplog.records)
    host.notify("shale_db_closed", db="the-db", reason="clean")
    assert ("closed", "clean") in seen
    host.unregister(name="failing")
    assert "failing" not in host.plugin_names()


def test_unknown_hook_implementation_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    host = PluginHost()

    class Typo:
        @shale.hookimpl
        def shale_open_objectstore(self, url: str) -> None:  # misspelled hook name
            return None

    host.register(Typo(), name="typo")
    with pytest.raises(Exception, match="shale_open_objectstore"):
        host.manager.check_pending()


def test_cli_info_lists_builtin_plugins() -> None:
    environ = {k: v for k, v in os.environ.items() if k != env.DISABLED_PLUGINS}
    result = subprocess.run(
        [sys.executable, "-m", "shale", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "shale.local" in result.stdout
    assert "shale.memory" in result.stdout
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "shale.local" in lines, "shale.local should load, not fail"
    assert "shale.memory" in lines
