"""The hook wrapper: ``faults=`` option and ``SHALE_PLUGIN_FAULTS_SPEC`` wrap any opened store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shale.errors import InvalidError
from shale.objstore.memory import MemoryStore
from shale.objstore.protocol import TransientStoreError
from shale.plugins import PluginHost
from shale_faults import FAULTS_ENV, FaultRule, FaultSpec, FaultyStore, parse_spec
from shale_faults import plugin as faults_plugin


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    host = PluginHost(autoload=False)
    host.register(faults_plugin, name="shale_faults")
    return host


def test_no_spec_no_wrapper(host: PluginHost) -> None:
    store = host.open_object_store("memory://")
    assert isinstance(store, MemoryStore)


def test_option_wraps_and_is_not_seen_by_the_backend(host: PluginHost) -> None:
    # The memory backend rejects every option: it would raise if "faults" reached it.
    store = host.open_object_store(
        "memory://", {"faults": {"ops": "put", "probability": 1.0, "error": "transient"}}
    )
    assert isinstance(store, FaultyStore)
    assert isinstance(store.inner, MemoryStore)
    with pytest.raises(TransientStoreError):
        store.put("k", b"v")
    assert store.counts == {"put:transient": 1}


def test_env_wraps(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"seed": 9, "rules": [{"ops": "get", "error": "permanent", "probability": 0.5}]}
    monkeypatch.setenv(FAULTS_ENV, json.dumps(spec))
    store = host.open_object_store("memory://")
    assert isinstance(store, FaultyStore)
    assert store.seed == 9
    assert store.rules == (FaultRule("get", probability=0.5, error="permanent"),)


def test_option_wins_over_env(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULTS_ENV, '{"ops": "get"}')
    store = host.open_object_store("memory://", {"faults": '{"ops": "delete"}'})
    assert isinstance(store, FaultyStore)
    assert store.rules[0].ops == frozenset({"delete"})


def test_match_limits_wrapping(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec_file = tmp_path / "faults.json"
    spec_file.write_text(json.dumps({"match": "memory://", "rules": [{"ops": "*"}]}))
    monkeypatch.setenv(FAULTS_ENV, f"@{spec_file}")
    assert isinstance(host.open_object_store("memory://"), FaultyStore)
    local = host.open_object_store(str(tmp_path / "local"), {"fsync": False})
    assert not isinstance(local, FaultyStore)


def test_bad_spec_fails_before_opening(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULTS_ENV, "{not json")
    with pytest.raises(InvalidError):
        host.open_object_store("memory://")


def test_unknown_scheme_still_unknown(host: PluginHost) -> None:
    with pytest.raises(InvalidError, match="no object-store plugin"):
        host.open_object_store("nosuch://x", {"faults": []})


def test_entry_point_is_registered() -> None:
    assert "shale_faults" in PluginHost(autoload=True).plugin_names()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ('{"ops": "put"}', FaultSpec((FaultRule("put"),))),
        (
            [{"ops": ["get", "head"], "error": None, "latency": 0.1}],
            FaultSpec((FaultRule("get,head", error=None, latency=0.1),)),
        ),
        ({"seed": 1, "rules": []}, FaultSpec((), 1)),
        (FaultRule("list"), FaultSpec((FaultRule("list"),))),
    ],
)
def test_parse_spec_forms(spec: object, expected: FaultSpec) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        '{"rules": [], "extra": 1}',
        '{"ops": "put", "bogus": 1}',
        '{"rules": {}}',
        '{"rules": [], "seed": "x"}',
        '{"rules": [], "match": 1}',
        "42",
        '["not a rule"]',
        "@/nonexistent/spec.json",
    ],
)
def test_parse_spec_rejects(spec: str) -> None:
    with pytest.raises(InvalidError):
        parse_spec(spec)


def test_the_variable_is_in_the_plugin_namespace() -> None:
    from shale import Settings, env

    assert FAULTS_ENV == "SHALE_PLUGIN_FAULTS_SPEC" and FAULTS_ENV.startswith(env.PLUGIN_PREFIX)
    assert FAULTS_ENV not in env.NOT_SETTINGS  # core names no plugin's variable
    assert Settings.from_env(environ={FAULTS_ENV: '{"ops": "get"}'}) == Settings()
