"""The typed facade over the compactor's hooks (:mod:`shale_compactor.hooks`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import shale
from shale.plugins import PluginHost
from shale_compactor.hooks import CompactorHooks
from shale_compactor.hookspecs import ensure_hookspecs


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(autoload=False)
    ensure_hookspecs(host.manager)
    return host


def test_without_specs_the_defaults_apply() -> None:
    hooks = CompactorHooks(PluginHost(autoload=False).manager)
    assert hooks.compaction_scheduler(None) is None
    assert hooks.compaction_filters(object()) == []  # type: ignore[arg-type]
    hooks.compaction_finished(object())  # type: ignore[arg-type]  (no observer: no error)


def test_scheduler_is_the_first_result(host: PluginHost) -> None:
    class First:
        @shale.hookimpl
        def shale_compaction_scheduler(self, options: Any) -> Any:
            return "first"

    class Second:
        @shale.hookimpl(tryfirst=True)
        def shale_compaction_scheduler(self, options: Any) -> Any:
            return None

    host.register(First(), name="first")
    host.register(Second(), name="second")
    assert CompactorHooks(host.manager).compaction_scheduler(None) == "first"


def test_a_failing_filter_hook_propagates(host: PluginHost) -> None:
    class Broken:
        @shale.hookimpl
        def shale_compaction_filter(self, context: Any) -> Any:
            raise ValueError("bad filter config")

    host.register(Broken(), name="broken")
    with pytest.raises(ValueError, match="bad filter config"):
        CompactorHooks(host.manager).compaction_filters(object())  # type: ignore[arg-type]


def test_finished_observers_are_isolated_and_wrapped(
    host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    class Wrapper:
        @shale.hookimpl(wrapper=True)
        def shale_compaction_finished(self, report: Any) -> Iterator[None]:
            events.append("enter")
            result = yield
            events.append("exit")
            return result

    class Failing:
        @shale.hookimpl
        def shale_compaction_finished(self, report: Any) -> None:
            raise RuntimeError("observer boom")

    class Working:
        @shale.hookimpl
        def shale_compaction_finished(self, report: Any) -> None:
            events.append(f"report {report}")

    host.register(Working(), name="working")
    host.register(Failing(), name="failing-observer")
    host.register(Wrapper(), name="wrapper")
    with caplog.at_level(logging.ERROR, logger="shale.plugins"):
        CompactorHooks(host.manager).compaction_finished("r1")  # type: ignore[arg-type]
    assert events == ["enter", "report r1", "exit"]
    assert "plugin failing-observer failed in shale_compaction_finished" in caplog.text
