"""Tests of shale/objstore/retrying.py that need no fault plugin: the contract through the
wrapper, the policy's validation and the setting (the fault-injection tests are in
plugins/shale-faults/tests/test_retrying_store.py)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from shale.errors import InvalidError
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.objstore.retrying import RetryingStore, RetryPolicy
from shale.settings import Settings
from shale.testing.objstore_contract import ObjectStoreContract


class TestRetryingMemoryStoreContract(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RetryingStore]:
        store = RetryingStore(MemoryStore(), RetryPolicy(max_retries=3))
        yield store
        store.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": True},
        {"min_delay": -0.1},
        {"max_delay": float("inf")},
        {"min_delay": 2.0, "max_delay": 1.0},
        {"max_elapsed": -1},
        {"jitter": "some"},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_setting_is_slatedbs_unbounded_by_default_and_validated() -> None:
    assert Settings().object_store_max_retries is None
    assert RetryPolicy.from_settings(Settings()) == RetryPolicy()
    assert RetryPolicy.from_settings(Settings(object_store_max_retries=3)).max_retries == 3
    loaded = Settings.from_dict({"object_store_max_retries": 7})
    assert loaded.to_dict()["object_store_max_retries"] == 7
    for bad in (-1, 1.5, "3"):
        with pytest.raises(InvalidError, match="object_store_max_retries"):
            Settings(object_store_max_retries=bad)  # type: ignore[arg-type]


def test_the_policy_is_slatedbs_backoff() -> None:
    policy = RetryPolicy(jitter="none")
    assert [policy.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.cap(10_000) == 1.0  # no overflow


def test_enclosing_store_is_wrapped_alike(tmp_path: pathlib.Path) -> None:
    assert RetryingStore(MemoryStore()).enclosing_store() is None  # the memory store has none
    policy = RetryPolicy(max_retries=2)
    (tmp_path / "a" / "b").mkdir(parents=True)
    outer = RetryingStore(LocalStore(str(tmp_path / "a" / "b")), policy).enclosing_store()
    assert isinstance(outer, RetryingStore) and outer.policy is policy
    outer.put("b/k", b"v")
    assert outer.inner.get("b/k") == b"v"
