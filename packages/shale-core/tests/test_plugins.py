"""Tests of shale/plugins/: the plugin host, built-ins, blocking, broken plugins, observers."""

from __future__ import annotations

import json
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


def test_observers_continue_after_one_raises(
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
        host.db_opened("the-db")  # type: ignore[arg-type]
    assert ("failing", "the-db") in seen and ("working", "the-db") in seen
    assert any("failing" in r.getMessage() for r in caplog.records)
    host.db_closed("the-db", "clean")  # type: ignore[arg-type]
    assert ("closed", "clean") in seen
    host.unregister(name="failing")
    assert "failing" not in host.plugin_names()


def test_a_failing_observer_is_logged_with_its_plugin_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    host = PluginHost()
    seen: list[str] = []

    class Before:
        @shale.hookimpl
        def shale_db_closed(self, db: Any, reason: str) -> None:
            seen.append("before")

    class Failing:
        @shale.hookimpl
        def shale_db_closed(self, db: Any, reason: str) -> None:
            raise ValueError("closing observer bug")

    class After:
        @shale.hookimpl(trylast=True)
        def shale_db_closed(self, db: Any, reason: str) -> None:
            seen.append("after")

    host.register(After(), name="after-plugin")
    host.register(Before(), name="before-plugin")
    host.register(Failing(), name="my-broken-plugin")
    with caplog.at_level(logging.ERROR, logger="shale.plugins"):
        host.db_closed("the-db", "failed")  # type: ignore[arg-type]
        host.db_closed("the-db", "failed")  # type: ignore[arg-type]  (guarded once, twice ok)
    assert seen == ["before", "after", "before", "after"]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    for record in failures:
        assert record.getMessage() == "plugin my-broken-plugin failed in shale_db_closed"
        assert record.exc_info is not None and "closing observer bug" in str(record.exc_info[1])


def test_wrapper_observer_runs_around_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    host = PluginHost()
    events: list[str] = []

    class Wrapper:
        @shale.hookimpl(wrapper=True)
        def shale_db_opened(self, db: Any) -> Iterator[None]:
            events.append(f"enter {db}")
            results = yield
            events.append(f"exit {db} results={results!r}")
            return results

    class Plain:
        @shale.hookimpl
        def shale_db_opened(self, db: Any) -> None:
            events.append("plain")

    class Failing:
        @shale.hookimpl
        def shale_db_opened(self, db: Any) -> None:
            events.append("failing")
            raise RuntimeError("boom")

    host.register(Plain(), name="plain")
    host.register(Failing(), name="failing")
    host.register(Wrapper(), name="wrapper")
    with caplog.at_level(logging.ERROR, logger="shale.plugins"):
        host.db_opened("db1")  # type: ignore[arg-type]
    # the failure did not cut the call short: the next observer ran, then the wrapper's exit
    # got the (empty: observers return None) results, not the exception
    assert events == ["enter db1", "failing", "plain", "exit db1 results=[]"]
    assert "plugin failing failed in shale_db_opened" in caplog.text


def test_a_failing_wrapper_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    host = PluginHost()
    seen: list[str] = []

    class BadWrapper:
        @shale.hookimpl(wrapper=True)
        def shale_db_opened(self, db: Any) -> Iterator[None]:
            yield
            raise RuntimeError("wrapper bug")

    class Plain:
        @shale.hookimpl
        def shale_db_opened(self, db: Any) -> None:
            seen.append(db)

    host.register(Plain(), name="plain")
    host.register(BadWrapper(), name="bad-wrapper")
    with caplog.at_level(logging.ERROR, logger="shale.plugins"):
        host.db_opened("db2")  # type: ignore[arg-type]
    assert seen == ["db2"]
    assert "wrapper failed in shale_db_opened" in caplog.text


def test_typed_facade_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    host = PluginHost()
    calls: list[tuple[str, object]] = []

    class Transformer:
        def encode(self, data: bytes) -> bytes:
            return data[::-1]

        def decode(self, data: bytes) -> bytes:
            return data[::-1]

    transformer = Transformer()

    class Plugin:
        @shale.hookimpl
        def shale_block_transformer(self, settings: Any) -> Any:
            calls.append(("transformer", settings))
            return transformer

        @shale.hookimpl
        def shale_merge_operator(self, name: str) -> Any:
            calls.append(("merge", name))
            return None

        @shale.hookimpl
        def shale_cli(self, subparsers: Any) -> None:
            subparsers.add_parser("facade-test")

    host.register(Plugin(), name="facade")
    settings = shale.Settings()
    assert host.block_transformer(settings) is transformer
    assert host.merge_operator("no-such-operator") is None
    counter = host.merge_operator("counter")  # the built-in plugin still answers
    assert counter is not None and counter.merge(b"k", None, (1).to_bytes(8, "little"))
    assert [p.name for p in host.filter_policies(settings)] == ["_bf", "shale.mmh3_bloom"]
    assert host.prefix_extractor("no-such-extractor") is None
    import argparse

    parser = argparse.ArgumentParser()
    host.add_cli(parser.add_subparsers())
    assert parser.parse_args(["facade-test"]) is not None
    assert calls == [
        ("transformer", settings),
        ("merge", "no-such-operator"),
        ("merge", "counter"),
    ]
    # the markers are the same objects everywhere
    from shale import markers
    from shale.plugins import hookspecs

    assert shale.hookimpl is markers.hookimpl and shale.hookspec is markers.hookspec
    assert hookspecs.hookspec is markers.hookspec


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


def test_l0_flushes_are_observed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shale_l0_flushed`` is called with the writer's Db and the manifest listing the new L0
    SSTs, once per memtable flush that wrote some (how an in-process compactor is woken)."""
    from shale.db import Db
    from shale.settings import Settings

    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [])
    seen: list[tuple[Any, int]] = []

    class Observer:
        @shale.hookimpl
        def shale_l0_flushed(self, db: Any, manifest: Any) -> None:
            seen.append((db, len(manifest.l0)))

    get_host().register(Observer(), name="l0-observer")
    settings = Settings(compactor_options=None, garbage_collector_options=None)
    with Db.open("db", settings, object_store=MemoryStore()) as db:
        for n in range(1, 3):
            db.put(b"k%d" % n, b"v")
            db.flush(memtable=True)
            assert seen[-1] == (db, n)
        db.flush(memtable=True)  # nothing to flush: no L0, no call
        assert len(seen) == 2


#: Modules the installed plugins need only once they act (a database opens, a URL of theirs, a
#: CLI command, a fault spec): loading the plugins -- which every shale process does, a
#: standalone compactor included -- must not import them.
_HEAVY = (
    "prometheus_client",
    "opentelemetry",
    "shale.cli",
    "shale_gc.collector",
    "shale_faults.store",
    "shale_minio.config",
    "shale_obstore.config",
)


def test_loading_the_plugins_defers_their_heavy_imports(tmp_path: Path) -> None:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in (env.DISABLED_PLUGINS, env.DISABLE_PLUGIN_AUTOLOAD)
        and not k.startswith("OTEL_")
    }
    code = (
        "import json, sys\n"
        "from importlib.metadata import entry_points\n"
        "from shale.plugins import ENTRY_POINT_GROUP, get_host, open_store\n"
        f"open_store({str(tmp_path)!r}).close()\n"
        "host = get_host()\n"
        "print(json.dumps({'names': host.plugin_names(), 'failed': host.failed,\n"
        "    'eps': [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)],\n"
        f"    'heavy': [m for m in {_HEAVY!r} if m in sys.modules]}}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["failed"] == {}
    assert set(found["eps"]) <= set(found["names"]), "every entry point is still registered"
    assert found["heavy"] == []


@pytest.mark.parametrize(
    "package",
    [
        "shale",
        "shale_gc",
        "shale_minio",
        "shale_faults",
        "shale_obstore",
        "shale_otel",
        "shale_prometheus",
    ],
)
def test_every_lazily_exported_name_resolves(package: str) -> None:
    """Each name of ``__all__`` of a package using ``shale.lazy_exports`` imports (the table
    and the defining modules agree), and an unknown name is an ``AttributeError``."""
    module = pytest.importorskip(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018
