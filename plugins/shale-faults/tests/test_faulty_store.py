"""FaultyStore: transparent without faults, faults at the configured rate, lost replies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shale.errors import InvalidError
from shale.objstore.memory import MemoryStore
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectNotFound,
    ObjectStore,
    PermanentStoreError,
    TransientStoreError,
)
from shale.testing.objstore_contract import ObjectStoreContract
from shale_faults import FaultRule, FaultyStore


class TestNoFaultsContract(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[ObjectStore]:
        store = FaultyStore(MemoryStore())
        yield store
        store.close()


class TestInactiveRulesContract(ObjectStoreContract):
    """Rules that never fire still go through the deciding path."""

    @pytest.fixture
    def store(self) -> Iterator[ObjectStore]:
        store = FaultyStore(
            MemoryStore(),
            [FaultRule("*", probability=0.0), FaultRule("*", error=None, latency=0.0)],
            seed=1,
        )
        yield store
        store.close()


def _store(*rules: FaultRule, seed: int | None = 7) -> tuple[FaultyStore, MemoryStore, list[float]]:
    inner = MemoryStore()
    sleeps: list[float] = []
    return FaultyStore(inner, rules, seed=seed, sleep=sleeps.append), inner, sleeps


def _failures(store: FaultyStore, n: int) -> list[int]:
    failed = []
    for i in range(n):
        try:
            store.get("k")
        except TransientStoreError:
            failed.append(i)
    return failed


def test_faults_fire_at_the_configured_rate() -> None:
    store, inner, _ = _store(FaultRule("get", probability=0.25))
    inner.put("k", b"v")
    n = 4000
    failed = _failures(store, n)
    assert 0.22 * n <= len(failed) <= 0.28 * n
    assert store.counts["get:transient"] == len(failed) == store.injected
    assert store.calls["get"] == n


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    runs = []
    for seed in (3, 3, 4):
        store, inner, _ = _store(FaultRule("get", probability=0.5), seed=seed)
        inner.put("k", b"v")
        runs.append(_failures(store, 200))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_ops_prefix_and_limit_select_calls() -> None:
    store, inner, _ = _store(FaultRule("put", prefix="wal/", limit=2))
    store.put("manifest/1", b"m")  # other prefix: untouched
    store.get("manifest/1")  # other op: untouched
    for _ in range(2):
        with pytest.raises(TransientStoreError):
            store.put("wal/1", b"w")
    store.put("wal/1", b"w")  # limit reached
    assert inner.get("wal/1") == b"w"
    assert store.counts == {"put:transient": 2}
    store.reset_counts()
    with pytest.raises(TransientStoreError):
        store.put("wal/2", b"w")  # budget renewed


@pytest.mark.parametrize(
    ("kind", "exc"),
    [
        ("transient", TransientStoreError),
        ("permanent", PermanentStoreError),
        ("not_found", ObjectNotFound),
        ("conflict", ObjectAlreadyExists),
    ],
)
def test_error_kinds(kind: str, exc: type[Exception]) -> None:
    store, _, _ = _store(FaultRule("head", error=kind))
    with pytest.raises(exc) as info:
        store.head("k")
    assert "injected fault" in str(info.value)
    assert store.counts == {f"head:{kind}": 1}


def test_custom_error_class_and_factory() -> None:
    class Boom(RuntimeError):
        pass

    store, _, _ = _store(
        FaultRule("delete", error=Boom), FaultRule("get", error=lambda m: OSError(m))
    )
    with pytest.raises(Boom):
        store.delete("k")
    with pytest.raises(OSError, match="injected fault: get"):
        store.get("k")
    assert store.counts == {"delete:Boom": 1, "get:<lambda>": 1}


def test_latency_is_added_and_the_call_runs() -> None:
    store, inner, sleeps = _store(
        FaultRule("put", error=None, latency=0.25), FaultRule("*", error=None, latency=0.5)
    )
    store.put("k", b"v")
    store.get("k")
    assert sleeps == [0.75, 0.5]
    assert inner.get("k") == b"v"
    assert store.counts == {"put:latency": 2, "get:latency": 1}
    assert store.injected == 0


def test_real_sleep_by_default() -> None:
    store = FaultyStore(MemoryStore(), [FaultRule("put", error=None, latency=0.02)])
    import time

    start = time.monotonic()
    store.put("k", b"v")
    assert time.monotonic() - start >= 0.02


def test_succeeded_but_reported_failure_really_wrote() -> None:
    store, inner, _ = _store(FaultRule("put,put_if_absent,delete", after=True, limit=3))
    with pytest.raises(TransientStoreError):
        store.put("a", b"1")
    assert inner.get("a") == b"1"
    with pytest.raises(TransientStoreError):
        store.put_if_absent("b", b"2")
    assert inner.get("b") == b"2"
    with pytest.raises(ObjectAlreadyExists):
        store.put_if_absent("b", b"2")  # the naive retry now "loses" to its own write
    with pytest.raises(TransientStoreError):
        store.delete("a")
    with pytest.raises(ObjectNotFound):
        inner.get("a")
    assert store.counts == {
        "put:transient:after": 1,
        "put_if_absent:transient:after": 1,
        "delete:transient:after": 1,
    }


def test_list_faults() -> None:
    store, inner, _ = _store(FaultRule("list", after=True, limit=1))
    inner.put("x/1", b"1")
    with pytest.raises(TransientStoreError):
        store.list("x/")
    assert [m.key for m in store.list("x/")] == ["x/1"]


def test_first_firing_error_rule_wins() -> None:
    store, _, _ = _store(FaultRule("get", error="not_found"), FaultRule("get", error="permanent"))
    with pytest.raises(ObjectNotFound):
        store.get("k")
    assert store.counts == {"get:not_found": 1}


def test_invalid_keys_are_not_masked_by_faults() -> None:
    store, _, _ = _store(FaultRule("*"))
    with pytest.raises(InvalidError):
        store.put("../x", b"v")
    assert store.injected == 0


def test_extras_are_delegated_and_repr() -> None:
    inner = MemoryStore(name="faults-delegation")
    store = FaultyStore(inner, seed=5)
    assert store.name == "faults-delegation"
    assert store.inner is inner
    assert "FaultyStore(MemoryStore(" in repr(store)
    with pytest.raises(AttributeError):
        _ = store._missing


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ops": "bogus"},
        {"ops": []},
        {"probability": 1.5},
        {"probability": "0.5"},
        {"latency": -1},
        {"error": "nope"},
        {"error": 42},
        {"error": None, "after": True},
        {"limit": -1},
        {"prefix": 3},
    ],
)
def test_bad_rules(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidError):
        FaultRule(**kwargs)  # type: ignore[arg-type]


def test_rules_must_be_rules() -> None:
    with pytest.raises(InvalidError):
        FaultyStore(MemoryStore(), [{"ops": "put"}])  # type: ignore[list-item]
