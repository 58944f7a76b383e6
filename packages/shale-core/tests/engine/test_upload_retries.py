"""The engine's uploads through the one retry policy (shale.objstore.retrying): a WAL whose
reply was lost is the writer's own, L0 uploads and their manifest update ride out transient
errors, and every retry is reported to the durability waiters."""

from __future__ import annotations

from typing import Any

import pytest

from shale.db import Db
from shale.engine import db_status
from shale.errors import UnavailableError
from shale.objstore.memory import MemoryStore
from shale.settings import Settings
from shale_faults import FaultRule, FaultyStore


class Armed:
    """A store whose faults start once the database is open (open probes and fences too)."""

    def __init__(self, inner: MemoryStore, rules: list[FaultRule]) -> None:
        self.inner = inner
        self.faulty = FaultyStore(inner, rules, seed=1)
        self.armed = False

    def __getattr__(self, op: str) -> Any:
        return getattr(self.faulty if self.armed else self.inner, op)


FAST = Settings(flush_interval=0.01, compactor_options=None, garbage_collector_options=None)


def test_a_lost_wal_reply_is_the_writers_own_upload_not_a_fence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db_status, "RETRY_MIN_S", 0.001)
    inner = MemoryStore()
    # the first WAL upload lands, then its reply is lost: the retry collides with our own bytes
    rule = FaultRule("put_if_absent", error="transient", after=True, prefix="db/wal/", limit=1)
    store = Armed(inner, [rule])
    faulty = store.faulty
    db = Db.open("db", FAST, object_store=store)
    store.armed = True
    try:
        with pytest.raises(UnavailableError):  # the waiter hears of the failed attempt
            db.put(b"k", b"v")
        db.flush()  # the upload went on: its retry found our own bytes, so it is durable
        assert faulty.counts["put_if_absent:transient:after"] == 1
        db.put(b"k2", b"v2")  # the writer is not fenced
    finally:
        db.close()
    with Db.open("db", FAST, object_store=inner) as again:
        assert again.get(b"k") == b"v" and again.get(b"k2") == b"v2"


def test_l0_uploads_and_their_manifest_update_ride_out_transient_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db_status, "RETRY_MIN_S", 0.001)
    inner = MemoryStore()
    rules = [
        FaultRule("put", error="transient", prefix="db/compacted/", limit=2),
        FaultRule("put_if_absent", error="transient", prefix="db/manifest/", limit=2),
    ]
    store = Armed(inner, rules)
    faulty = store.faulty
    with Db.open("db", FAST, object_store=store) as db:
        store.armed = True
        db.put(b"a", b"1")
        for _ in range(5):  # a waiter hears of each failed attempt; the upload goes on
            try:
                db.flush(memtable=True)
                break
            except UnavailableError:
                pass
        assert faulty.counts["put:transient"] == 2
        assert faulty.counts["put_if_absent:transient"] == 2
        assert db.manifest().l0, "the flush reached the manifest"
    with Db.open("db", FAST, object_store=inner) as again:
        assert again.get(b"a") == b"1"
