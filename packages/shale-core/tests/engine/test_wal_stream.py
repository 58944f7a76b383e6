"""A large WAL SST is streamed into a store that can (the local store): encoded block by block
and published with create-if-absent, never held whole. It is byte for byte the SST the whole
put would store (so a retry's "did my put land?" comparison holds), a collision on it is a
fence, and a publish that fails after the link falls back to the whole put, which finds its
own bytes."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from shale import ids
from shale.db import Db
from shale.engine import db_status, wal_buffer
from shale.errors import ClosedError, CloseReason, UnavailableError
from shale.metrics import MetricsRegistry
from shale.objstore import ObjectAlreadyExists
from shale.objstore.instrumented import InstrumentedStore
from shale.objstore.local import LocalStore
from shale.objstore.protocol import TransientStoreError
from shale.settings import Settings

SETTINGS = Settings(flush_interval=None, compactor_options=None, garbage_collector_options=None)


def test_commit_if_absent_publishes_once(tmp_path: pathlib.Path) -> None:
    store = InstrumentedStore(LocalStore(tmp_path), MetricsRegistry())
    w = store.open_writer("a/obj")
    w.write_parts([b"one", b"two"])
    w.commit_if_absent()
    assert store.get("a/obj") == b"onetwo"
    again = store.open_writer("a/obj")
    again.write_parts([b"other"])
    with pytest.raises(ObjectAlreadyExists):
        again.commit_if_absent()
    assert store.get("a/obj") == b"onetwo"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["obj"]  # no staging file left


def _load(db: Db, n: int) -> dict[bytes, bytes]:
    rows = {b"k%06d" % i: b"v%d" % i * 40 for i in range(n)}
    for k, v in rows.items():
        db.put(k, v, durable=False)
    return rows


def test_streamed_wal_is_the_put_wal(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_buffer, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(wal_buffer, "STREAM_ROWS", 64)  # several writes per SST
    streamed: list[tuple[Any, int | None]] = []
    stream = wal_buffer.WalBuffer._stream

    def spy(self: wal_buffer.WalBuffer, pending: wal_buffer.PendingWal) -> int | None:
        size = stream(self, pending)
        streamed.append((pending, size))
        # the whole encode of the same rows: the bytes a retried put would compare with
        assert self._tables.fetch_wal(pending.wal_id) == self._encode(pending)
        return size

    monkeypatch.setattr(wal_buffer.WalBuffer, "_stream", spy)
    store = LocalStore(tmp_path)
    with Db.open("db", SETTINGS, object_store=store) as db:
        rows = _load(db, 3000)
        db.flush()
        assert streamed and all(size for _, size in streamed)
        assert db.metrics()["l0_sst_count"] == 0
    with Db.open("db", SETTINGS, object_store=store) as db:
        assert db.metrics()["wal_replayed_rows"] == len(rows)
        assert dict(db.scan()) == rows
    assert not [m.key for m in store.list("db/wal/") if ".tmp" in m.key]


def test_a_collision_on_a_streamed_wal_is_a_fence(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_buffer, "STREAM_MIN_BYTES", 0)
    store = LocalStore(tmp_path)
    db = Db.open("db", SETTINGS, object_store=store)
    try:
        wal = db._inner.wal
        assert wal is not None
        tables = db._inner.tables
        # a newer writer's fence at the id the next upload takes
        tables.wal_store.put_if_absent(ids.wal_path(tables.root, wal.next_wal_id), b"")
        _load(db, 100)
        with pytest.raises(ClosedError) as info:
            db.flush()
        assert info.value.reason == CloseReason.FENCED
    finally:
        db.close()


def test_a_failed_publish_falls_back_to_the_put_which_finds_its_own_bytes(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_buffer, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(db_status, "RETRY_MIN_S", 0.001)
    store = LocalStore(tmp_path)
    fsync_dir = store._fsync_and_map
    failures = []

    def fail_once(dirpath: str, key: str) -> None:
        if "/wal/" in key and not failures:
            failures.append(key)  # linked already: the object is there, the reply is lost
            raise TransientStoreError("lost reply", key=key)
        fsync_dir(dirpath, key)

    with Db.open("db", SETTINGS, object_store=store) as db:
        monkeypatch.setattr(store, "_fsync_and_map", fail_once)
        rows = _load(db, 500)
        try:
            db.flush()
        except UnavailableError:  # the waiter may hear of the failed attempt
            db.flush()
        assert failures
        db.put(b"after", b"x")  # not fenced
        rows[b"after"] = b"x"
    with Db.open("db", SETTINGS, object_store=store) as db:
        assert dict(db.scan()) == rows
