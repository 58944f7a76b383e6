"""The typed facade over the GC's hooks (:mod:`shale_gc.hooks`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import shale
from shale.plugins import PluginHost
from shale_gc import hookspecs
from shale_gc.hooks import GcHooks


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(autoload=False)
    host.manager.add_hookspecs(hookspecs)
    return host


def test_filter_answers_carry_plugin_names(
    host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    class KeepFirst:
        @shale.hookimpl
        def shale_gc_filter(self, candidates: list[Any], kind: str) -> list[Any] | None:
            candidates.append("ignored: a fresh list per plugin")
            return candidates[1:]

    class Broken:
        @shale.hookimpl
        def shale_gc_filter(self, candidates: list[Any], kind: str) -> list[Any] | None:
            raise RuntimeError("veto bug")

    class Neutral:
        @shale.hookimpl
        def shale_gc_filter(self, candidates: list[Any], kind: str) -> list[Any] | None:
            return None

    host.register(Neutral(), name="neutral")
    host.register(Broken(), name="broken-veto")
    host.register(KeepFirst(), name="keep-first")
    with caplog.at_level(logging.ERROR, logger="shale.gc"):
        answers = GcHooks(host.manager).gc_filter(["a", "b"], "wal")  # type: ignore[list-item]
    assert answers == [
        ("keep-first", ["b", "ignored: a fresh list per plugin"]),
        ("broken-veto", []),
        ("neutral", None),
    ]
    assert "gc filter plugin broken-veto failed; keeping every wal candidate" in caplog.text


def test_finished_observers_are_isolated_and_wrapped(
    host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    class Wrapper:
        @shale.hookimpl(wrapper=True)
        def shale_gc_finished(self, report: Any) -> Iterator[None]:
            events.append("enter")
            result = yield
            events.append("exit")
            return result

    class Failing:
        @shale.hookimpl
        def shale_gc_finished(self, report: Any) -> None:
            raise RuntimeError("observer boom")

    class Working:
        @shale.hookimpl
        def shale_gc_finished(self, report: Any) -> None:
            events.append(f"report {report}")

    host.register(Working(), name="working")
    host.register(Failing(), name="failing-observer")
    host.register(Wrapper(), name="wrapper")
    with caplog.at_level(logging.ERROR, logger="shale.plugins"):
        GcHooks(host.manager).gc_finished("r1")  # type: ignore[arg-type]
    assert events == ["enter", "report r1", "exit"]
    assert "plugin failing-observer failed in shale_gc_finished" in caplog.text


def test_without_specs_nothing_is_called() -> None:
    hooks = GcHooks(PluginHost(autoload=False).manager)
    assert hooks.gc_filter(["a"], "wal") == []  # type: ignore[list-item]
    hooks.gc_finished(object())  # type: ignore[arg-type]
