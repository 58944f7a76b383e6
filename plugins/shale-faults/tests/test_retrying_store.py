"""shale.objstore.retrying against injected faults: backoff bounds, jitter, budgets, what is
never retried, and the lost-reply rule of put_if_absent. Real stores (memory + FaultyStore)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from shale.objstore.memory import MemoryStore
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectNotFound,
    ObjectStore,
    PermanentStoreError,
    TransientStoreError,
)
from shale.objstore.retrying import RetryingStore, RetryPolicy
from shale.testing.objstore_contract import ObjectStoreContract
from shale_faults import FaultRule, FaultyStore


class _Clock:
    """A fake monotonic clock that sleeping advances (so budgets in seconds are exact)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _wrapped(
    rules: list[FaultRule], policy: RetryPolicy, *, seed: int = 1
) -> tuple[RetryingStore, FaultyStore, _Clock]:
    clock = _Clock()
    faulty = FaultyStore(MemoryStore(), rules, seed=seed)
    return RetryingStore(faulty, policy, sleep=clock.sleep, clock=clock, seed=seed), faulty, clock


class TestRetryingFaultyStoreContract(ObjectStoreContract):
    """Every third call or so fails transiently, before it runs; the wrapper hides it."""

    @pytest.fixture
    def store(self) -> Iterator[ObjectStore]:
        faulty = FaultyStore(
            MemoryStore(), [FaultRule(probability=0.3, error="transient")], seed=11
        )
        store = RetryingStore(faulty, RetryPolicy(min_delay=0.0, max_delay=0.0))
        yield store
        store.close()


def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    store, faulty, clock = _wrapped(
        [FaultRule("put,get,list", limit=3, error="transient")], RetryPolicy(max_retries=5)
    )
    store.put("a/k", b"v")
    assert store.get("a/k") == b"v"
    assert [m.key for m in store.list("a/")] == ["a/k"]
    assert faulty.counts["put:transient"] == 3 and faulty.calls["put"] == 4
    assert len(clock.sleeps) == 3


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    policy = RetryPolicy(min_delay=0.1, max_delay=1.0)
    rng = random.Random(5)
    for retry, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (30, 1.0)]:
        delays = [policy.delay(retry, rng.random) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert len(set(delays)) > 100  # jittered, not a fixed schedule
        assert min(delays) < cap / 4 and max(delays) > 3 * cap / 4  # the full range is used
    equal = RetryPolicy(min_delay=0.1, max_delay=1.0, jitter="equal")
    assert all(0.2 <= equal.delay(2, rng.random) <= 0.4 for _ in range(100))


def test_the_waits_a_store_sleeps_follow_the_policy() -> None:
    store, _, clock = _wrapped(
        [FaultRule("get", limit=6, error="transient")], RetryPolicy(min_delay=0.1, max_delay=0.5)
    )
    store.put("k", b"v")
    assert store.get("k") == b"v"
    caps = [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert len(clock.sleeps) == 6
    assert all(0.0 <= s <= cap for s, cap in zip(clock.sleeps, caps, strict=True))


def test_an_exhausted_attempt_budget_raises_the_last_transient_error() -> None:
    store, faulty, clock = _wrapped(
        [FaultRule("get", error="transient")], RetryPolicy(max_retries=2)
    )
    store.put("k", b"v")
    with pytest.raises(TransientStoreError) as info:
        store.get("k")
    assert info.value.detail.get("injected") is True
    assert faulty.calls["get"] == 3 and len(clock.sleeps) == 2


def test_an_exhausted_time_budget_raises_without_sleeping_past_it() -> None:
    policy = RetryPolicy(min_delay=1.0, max_delay=1.0, max_elapsed=3.5, jitter="none")
    store, faulty, clock = _wrapped([FaultRule("head", error="transient")], policy)
    store.put("k", b"v")
    with pytest.raises(TransientStoreError):
        store.head("k")
    assert clock.sleeps == [1.0, 1.0, 1.0] and faulty.calls["head"] == 4
    assert clock.now <= 3.5


def test_max_retries_zero_never_retries() -> None:
    store, faulty, clock = _wrapped(
        [FaultRule("put", error="transient")], RetryPolicy(max_retries=0)
    )
    with pytest.raises(TransientStoreError):
        store.put("k", b"v")
    assert faulty.calls["put"] == 1 and clock.sleeps == []


@pytest.mark.parametrize("kind", ["permanent", "not_found", "conflict"])
def test_permanent_not_found_and_conflict_errors_are_not_retried(kind: str) -> None:
    store, faulty, clock = _wrapped([FaultRule("*", error=kind)], RetryPolicy(max_retries=5))
    expected = {
        "permanent": PermanentStoreError,
        "not_found": ObjectNotFound,
        "conflict": ObjectAlreadyExists,
    }[kind]
    for call in (lambda: store.put("k", b"v"), lambda: store.get("k"), lambda: store.delete("k")):
        with pytest.raises(expected):
            call()
    assert sum(faulty.calls.values()) == 3 and clock.sleeps == []


def test_a_real_conflict_is_not_retried_and_not_mistaken_for_ours() -> None:
    store, faulty, clock = _wrapped([FaultRule(probability=0.0)], RetryPolicy(max_retries=5))
    store.put_if_absent("k", b"theirs")
    with pytest.raises(ObjectAlreadyExists):
        store.put_if_absent("k", b"ours")
    assert faulty.calls["put_if_absent"] == 2 and clock.sleeps == []


def test_a_lost_reply_of_a_conditional_put_is_our_write() -> None:
    # the first attempt creates the object, then its reply is lost
    rule = FaultRule("put_if_absent", error="transient", after=True, limit=1)
    store, faulty, _ = _wrapped([rule], RetryPolicy(max_retries=3))
    store.put_if_absent("wal/1.sst", b"our bytes")  # the retry conflicts with our own object
    assert faulty.counts["put_if_absent:transient:after"] == 1
    assert faulty.calls["put_if_absent"] == 2
    assert faulty.inner.get("wal/1.sst") == b"our bytes"


def test_after_a_lost_reply_other_bytes_are_a_conflict() -> None:
    rule = FaultRule("put_if_absent", error="transient", limit=1)
    store, faulty, _ = _wrapped([rule], RetryPolicy(max_retries=3))
    faulty.inner.put_if_absent("k", b"another writer's")  # wins while we back off
    with pytest.raises(ObjectAlreadyExists):
        store.put_if_absent("k", b"ours")


def test_a_lost_reply_on_the_last_attempt_is_resolved_by_one_last_look() -> None:
    rule = FaultRule("put_if_absent", error="transient", after=True)  # every reply is lost
    store, faulty, _ = _wrapped([rule], RetryPolicy(max_retries=0))
    store.put_if_absent("k", b"ours")  # no retry left: the read-back finds our bytes
    assert faulty.calls["put_if_absent"] == 1 and faulty.calls["get"] == 1
    store2, faulty2, _ = _wrapped(
        [FaultRule("put_if_absent", error="transient")], RetryPolicy(max_retries=1)
    )
    with pytest.raises(TransientStoreError):  # nothing landed: the transient error stays
        store2.put_if_absent("k", b"ours")
    with pytest.raises(ObjectNotFound):
        faulty2.inner.get("k")


def test_a_stop_event_ends_the_wait_with_the_last_error() -> None:
    stop = threading.Event()
    faulty = FaultyStore(MemoryStore(), [FaultRule("get", error="transient")])
    store = RetryingStore(faulty, RetryPolicy(min_delay=30.0, max_delay=30.0), stop=stop)
    threading.Timer(0.05, stop.set).start()
    with pytest.raises(TransientStoreError):
        store.get("k")  # would wait 30 s per retry, forever, without the stop
    assert faulty.calls["get"] == 1


def test_policy_call_retries_a_step_of_several_calls() -> None:
    faulty = FaultyStore(MemoryStore(), [FaultRule("put", error="transient", limit=2)])
    steps: list[str] = []

    def step() -> str:
        steps.append("try")
        faulty.put("a", b"1")
        return "done"

    sleeps: list[float] = []
    assert RetryPolicy(max_retries=2).call(step, sleep=sleeps.append) == "done"
    assert steps == ["try"] * 3 and len(sleeps) == 2


def test_maybe_landed_compares_bytes_from_the_first_attempt() -> None:
    # an earlier call's reply was lost after the object landed; this call sees the collision at
    # once and must recognise its own bytes (the WAL re-upload by close())
    store, faulty, clock = _wrapped([FaultRule(probability=0.0)], RetryPolicy(max_retries=0))
    faulty.inner.put_if_absent("wal/7.sst", b"ours")
    store.put_if_absent("wal/7.sst", b"ours", maybe_landed=True)
    with pytest.raises(ObjectAlreadyExists):  # without the hint a collision is a conflict
        store.put_if_absent("wal/7.sst", b"ours")
    with pytest.raises(ObjectAlreadyExists):  # and other bytes are a conflict either way
        store.put_if_absent("wal/7.sst", b"a fence", maybe_landed=True)
    assert clock.sleeps == []


def test_the_store_reports_every_retry_to_its_observer() -> None:
    seen: list[tuple[int, str]] = []
    clock = _Clock()
    faulty = FaultyStore(MemoryStore(), [FaultRule("put", error="transient", limit=3)])
    store = RetryingStore(
        faulty,
        RetryPolicy(max_retries=5),
        sleep=clock.sleep,
        clock=clock,
        on_retry=lambda retry, exc, _delay: seen.append((retry, type(exc).__name__)),
    )
    store.put("k", b"v")
    assert seen == [
        (0, "TransientStoreError"),
        (1, "TransientStoreError"),
        (2, "TransientStoreError"),
    ]
    assert len(clock.sleeps) == 3


def test_policy_call_retries_only_what_it_is_told() -> None:
    from shale.errors import UnavailableError

    calls: list[int] = []

    def timed_out() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise UnavailableError("manifest update timed out")

    sleeps: list[float] = []
    with pytest.raises(UnavailableError):  # by default only transient store errors are retried
        RetryPolicy(max_retries=5).call(timed_out, sleep=sleeps.append)
    assert len(calls) == 1 and sleeps == []
    calls.clear()
    RetryPolicy(max_retries=5).call(
        timed_out, sleep=sleeps.append, retry_on=(TransientStoreError, UnavailableError)
    )
    assert len(calls) == 3 and len(sleeps) == 2
