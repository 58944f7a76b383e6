"""The engine end to end over ``s3://`` against a real SeaweedFS server (issue 6).

* :func:`test_write_read_scan_flush_close_reopen_replays_the_wal` -- a database opened by URL
  with store options (endpoint, keys): durable puts, batches, deletes, point reads, forward,
  reverse, bounded and prefix scans, ``flush(memtable=True)`` (an L0 SST in ``compacted/``,
  published in the manifest), a tail written after the last L0 flush (so it lives **only** in
  WAL SSTs), ``close``; then a reopen through the ``AWS_*`` environment alone (no options)
  replays exactly that tail from the WAL and reads everything back.
* :func:`test_compaction_gc_and_checkpoints_over_s3` -- several L0s with overwrites and
  deletes, a named checkpoint, a full compaction by a standalone
  :class:`shale_compactor.Compactor` on the same URL (the open writer picks the sorted run up),
  garbage collection with ``min_age=0`` on every directory (it deletes WAL SSTs and manifests,
  never anything a manifest or the live checkpoint reaches), then reads from the open writer
  and from a fresh handle (cold cache, every block from S3) match the model.
* :func:`test_writer_in_another_process_fences_this_one` -- writer A (this process) writes
  durable puts in a loop; writer B, a separate Python process configured only through the
  ``AWS_*`` environment, opens the same database: it sees every write A acknowledged, writes its
  own. A's next write raises ``ClosedError(reason="fenced")``; afterwards A fails every
  operation with that reason and changes nothing in the bucket; a fresh writer sees all of A's
  acknowledged writes and all of B's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shale.batch import WriteBatch
from shale.db import Db
from shale.errors import ClosedError
from shale.ids import compacted_path, manifest_path
from shale.plugins import open_store
from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions
from shale_compactor import FULL, Compactor
from shale_gc import GarbageCollector

WORKER = Path(__file__).with_name("shale_worker.py")
WORKER_TIMEOUT_S = 60.0
#: Settings of writer B (JSON for the worker process).
WORKER_SETTINGS = {
    "flush_interval": 0.01,
    "manifest_poll_interval": 0.1,
    "compactor_options": None,
    "garbage_collector_options": None,
}


def _value(tag: str, i: int) -> bytes:
    return f"{tag}-{i}-".encode() + b"x" * (i % 37)


def _assert_reads(db: Db, model: dict[bytes, bytes | None]) -> None:
    """Every key of ``model`` reads as modelled and the full scan is exactly the live keys."""
    for key, want in model.items():
        assert db.get(key) == want, key
    live = sorted((k, v) for k, v in model.items() if v is not None)
    assert list(db.scan()) == live


def _referenced(m: Any) -> set[str]:
    """The ``compacted/`` objects a manifest reaches (L0s and sorted-run SSTs)."""
    views = list(m.l0) + [v for run in m.compacted for v in run.ssts]
    return {compacted_path("", v.sst.id) for v in views}


# --------------------------------------------------------------------------------------------
# write, read, scan, flush, close, reopen, WAL replay
# --------------------------------------------------------------------------------------------


def test_write_read_scan_flush_close_reopen_replays_the_wal(
    s3db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model: dict[bytes, bytes | None] = {}
    db = s3db.open()
    assert db.store.bucket == s3db.bucket and db.store.endpoint == s3db.server.endpoint

    # durable writes: one batch of 200, single puts, overwrites, deletes
    batch = WriteBatch()
    for i in range(200):
        batch.put(b"k%04d" % i, _value("a", i))
        model[b"k%04d" % i] = _value("a", i)
    handle = db.write(batch)
    assert handle.seq >= 1
    for i in range(200, 240):
        db.put(b"k%04d" % i, _value("b", i))
        model[b"k%04d" % i] = _value("b", i)
    for i in range(0, 240, 9):
        db.put(b"k%04d" % i, _value("over", i))
        model[b"k%04d" % i] = _value("over", i)
    for i in range(5, 240, 13):
        db.delete(b"k%04d" % i)
        model[b"k%04d" % i] = None
    db.put(b"p/1", b"one")
    db.put(b"p/2", b"two")
    model.update({b"p/1": b"one", b"p/2": b"two"})

    # reads: memory and durable views agree (every write was durable)
    assert db.get(b"k0009") == _value("over", 9)
    assert db.get(b"k0005") is None
    assert db.get(b"k0201", durability="remote") == _value("b", 201)
    _assert_reads(db, model)
    live = sorted((k, v) for k, v in model.items() if v is not None)
    assert list(db.scan(reverse=True)) == live[::-1]
    assert list(db.scan(b"k0100", b"k0120")) == [kv for kv in live if b"k0100" <= kv[0] < b"k0120"]
    assert list(db.scan_prefix(b"p/")) == [(b"p/1", b"one"), (b"p/2", b"two")]

    # flush the memtable: an L0 SST appears in compacted/ and in the manifest
    db.flush(memtable=True)
    m = db.refresh_manifest()
    assert len(m.l0) == 1
    l0_keys = _referenced(m)
    listing = s3db.listing()
    assert l0_keys <= set(listing), (l0_keys, sorted(listing))
    assert listing[next(iter(l0_keys))][0] > 0
    flushed_seq = m.last_l0_seq
    _assert_reads(db, model)  # now from the L0 SST

    # the tail: written after the last L0 flush, so only WAL SSTs hold it
    tail_rows = 0
    for i in range(240, 270):
        db.put(b"k%04d" % i, _value("wal", i))
        model[b"k%04d" % i] = _value("wal", i)
        tail_rows += 1
    for i in (1, 2, 3):
        db.put(b"k%04d" % i, _value("wal-over", i))
        model[b"k%04d" % i] = _value("wal-over", i)
        tail_rows += 1
    db.delete(b"p/1")
    model[b"p/1"] = None
    tail_rows += 1
    assert db.metrics()["durable_seq"] > flushed_seq
    db.close()
    assert db.close_reason == "clean"

    listing = s3db.listing()
    assert any(k.startswith("wal/") and size > 0 for k, (size, _) in listing.items())
    # the closed database's manifest: the tail is in no L0 (read before reopening, because the
    # reopened writer flushes its replayed rows to L0 in the background straight away)
    from shale.meta.manifest_store import ManifestStore

    latest = ManifestStore(s3db.store(), "").read_latest()
    assert latest is not None and latest[1].last_l0_seq == flushed_seq

    # reopen configured only by the AWS_* environment (no store options)
    for name, value in s3db.env().items():
        monkeypatch.setenv(name, value)
    db2 = s3db.track(Db.open(s3db.url, s3db.settings()))
    m2 = db2.manifest()
    assert db2.metrics()["wal_replayed_rows"] == tail_rows  # the tail came back from the WAL
    assert m2.writer_epoch == m.writer_epoch + 1
    _assert_reads(db2, model)
    db2.close()


# --------------------------------------------------------------------------------------------
# compaction, GC, checkpoints
# --------------------------------------------------------------------------------------------


def test_compaction_gc_and_checkpoints_over_s3(s3db: Any) -> None:
    model: dict[bytes, bytes | None] = {}
    config = s3db.settings(manifest_poll_interval=0.05)
    db = s3db.open(config)
    for r in range(4):  # four L0s over the same keys: overwrites and deletes between them
        batch = WriteBatch()
        for i in range(r * 50, r * 50 + 300):
            key = b"c%05d" % i
            if (i + r) % 7 == 0:
                batch.delete(key)
                model[key] = None
            else:
                batch.put(key, _value(f"r{r}", i))
                model[key] = _value(f"r{r}", i)
        db.write(batch)
        db.flush(memtable=True)
    assert len(db.refresh_manifest().l0) == 4

    # a named checkpoint of this state
    cp = db.create_checkpoint(name="before-compaction")
    (listed,) = db.list_checkpoints("before-compaction")
    assert listed.id == cp.id and listed.manifest_id == cp.manifest_id
    pinned = db.manifest()
    assert manifest_path("", cp.manifest_id) in s3db.listing()

    # a full compaction by a standalone compactor on the same URL
    compactor = s3db.track(
        Compactor.open(
            s3db.url,
            config,
            store_options=s3db.options(),
            options=CompactorOptions(poll_interval=0.05),
        )
    )
    compactor.submit(FULL)
    reports = compactor.run_once(timeout=60)
    assert [r.status for r in reports] == ["completed"], reports
    assert reports[0].output_ssts and reports[0].bytes_out > 0
    compactor.close()

    s3db.wait_until(
        lambda: not db.manifest().l0 and db.manifest().compacted,
        what="the writer seeing the sorted run",
    )
    m = db.manifest()
    run_ssts = _referenced(m)
    assert run_ssts and run_ssts.isdisjoint(_referenced(pinned))
    _assert_reads(db, model)

    # more writes after the compaction (WAL, then one more L0)
    for i in range(0, 400, 11):
        db.put(b"c%05d" % i, _value("post", i))
        model[b"c%05d" % i] = _value("post", i)
    db.flush(memtable=True)
    db.put(b"c-tail", b"tail")
    model[b"c-tail"] = b"tail"

    # GC with min_age 0 everywhere
    now = GcDirectoryOptions(interval=None, min_age=0)
    options = GarbageCollectorOptions(manifest=now, wal=now, compacted=now, compactions=now)
    gc_store = s3db.track(open_store(s3db.url, **s3db.options()))
    report = GarbageCollector(gc_store, "", options).run_once()
    assert not report.errors, report.errors
    for kind in report.kinds.values():
        assert kind.error is None and not kind.failed, kind
    deleted = {o.key for o in report.deleted}
    assert report.kinds["wal"].deleted, "GC deleted no WAL SST"
    assert report.kinds["manifest"].deleted, "GC deleted no manifest"

    # nothing reachable was deleted: the current manifest, the checkpoint's manifest and
    # every SST either reaches, and every WAL SST still to be replayed
    listing = s3db.listing()
    current = db.refresh_manifest()
    must_exist = _referenced(current) | _referenced(pinned) | {manifest_path("", cp.manifest_id)}
    missing = must_exist - set(listing)
    assert not missing, (missing, deleted)
    wal_ids = {int(k[len("wal/") : -len(".sst")]) for k in listing if k.startswith("wal/")}
    to_replay = set(range(current.replay_after_wal_id + 1, max(wal_ids) + 1))
    assert to_replay <= wal_ids, sorted(to_replay - wal_ids)
    assert all(o.id <= pinned.replay_after_wal_id for o in report.kinds["wal"].deleted)
    _assert_reads(db, model)

    # the checkpoint is still listed; deleting it works
    assert [c.id for c in db.list_checkpoints("before-compaction")] == [cp.id]
    db.delete_checkpoint(cp.id)
    assert db.list_checkpoints("before-compaction") == []
    db.close()

    # a fresh handle (cold block cache: every block read from S3) reads the same
    db2 = s3db.open(config)
    assert db2.manifest().compacted
    _assert_reads(db2, model)
    assert db2.metrics()["cache_misses"] > 0
    db2.close()


# --------------------------------------------------------------------------------------------
# fencing by a writer in another process
# --------------------------------------------------------------------------------------------


def _run_worker(s3db: Any, request: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, **s3db.env()}
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(request)],
        capture_output=True,
        env=env,
        timeout=WORKER_TIMEOUT_S,
        check=False,
    )
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, f"worker printed nothing rc={proc.returncode}: {proc.stderr[-3000:]!r}"
    out: dict[str, Any] = json.loads(lines[-1])
    assert out["ok"], out.get("error")
    return out


def test_writer_in_another_process_fences_this_one(s3db: Any) -> None:
    a = s3db.open()
    acked: dict[bytes, bytes] = {}
    outcome: dict[str, Any] = {}
    enough = threading.Event()

    def write_until_fenced() -> None:
        n = 0
        try:
            while n < 100_000:
                key, value = b"a-%06d" % n, _value("a", n)
                a.put(key, value)
                acked[key] = value
                n += 1
                if n == 30:
                    enough.set()
        except ClosedError as exc:
            outcome["error"] = exc
        except BaseException as exc:  # reported below
            outcome["unexpected"] = exc
        finally:
            enough.set()

    writer = threading.Thread(target=write_until_fenced, name="writer-a")
    writer.start()
    try:
        assert enough.wait(30)
        assert "unexpected" not in outcome and "error" not in outcome, outcome
        seen_before_b = dict(acked)
        b_writes = {b"b-%03d" % i: _value("b", i) for i in range(20)}
        out = _run_worker(
            s3db,
            {
                "url": s3db.url,  # no options: endpoint and keys from AWS_* only
                "settings": WORKER_SETTINGS,
                "read": [k.hex() for k in seen_before_b],
                "write": [[k.hex(), v.hex()] for k, v in b_writes.items()],
            },
        )
        # B saw every write A had acknowledged before B started
        for key, value in seen_before_b.items():
            assert out["values"][key.hex()] == value.hex(), key
        assert out["writer_epoch"] > a.manifest().writer_epoch
        assert out["replayed"] >= len(seen_before_b)  # A flushed no L0: all from A's WAL
    finally:
        writer.join(30)
    assert not writer.is_alive(), "writer A neither wrote nor noticed the fence"
    assert "unexpected" not in outcome, repr(outcome.get("unexpected"))
    assert outcome["error"].reason == "fenced", outcome["error"]
    assert a.close_reason == "fenced"

    # A is dead for good and changes nothing in the bucket
    before = s3db.listing()
    attempts: list[Callable[[], object]] = [
        lambda: a.put(b"after-fence", b"x"),
        lambda: a.put(b"after-fence-2", b"x", durable=False),
        lambda: a.delete(b"a-000000"),
        lambda: a.write(WriteBatch().put(b"after-fence-3", b"x")),
        lambda: a.flush(),
        lambda: a.flush(memtable=True),
        lambda: a.create_checkpoint(),
    ]
    for attempt in attempts:
        with pytest.raises(ClosedError) as info:
            attempt()
        assert info.value.reason == "fenced"
    time.sleep(0.3)  # a few flush and poll intervals for A's background threads
    a.close()
    assert s3db.listing() == before

    # a fresh writer sees everything A acknowledged and everything B wrote
    c = s3db.open()
    for key, value in acked.items():
        assert c.get(key) == value, key
    for key, value in b_writes.items():
        assert c.get(key) == value, key
    for key in (b"after-fence", b"after-fence-2", b"after-fence-3"):
        assert c.get(key) is None
    assert c.get(b"a-000000") == acked[b"a-000000"]
    c.close()


def test_a_db_closes_the_store_it_opened_and_not_one_it_was_given(s3db: Any) -> None:
    """``Db.open(url)`` opened the S3 store (its connection pool): ``close()`` releases it. A
    store passed in stays the caller's, open."""
    db = s3db.open()
    db.put(b"k", b"v")
    db.close()
    assert db.store._closed  # the pooled connections are released
    given = s3db.store()
    with Db.open("", s3db.settings(), object_store=given) as db2:
        assert db2.get(b"k") == b"v"
    assert not given._closed
    assert given.get("manifest/00000000000000000001.manifest")


def test_store_from_env_opens_the_bucket(
    s3db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CLOUD_PROVIDER=aws`` (SlateDB's environment loader): the bucket from ``AWS_BUCKET``,
    the server and keys from the ``AWS_*`` variables, here given in an env file."""
    from shale import store_from_env

    lines = {**s3db.env(), "CLOUD_PROVIDER": "aws", "AWS_BUCKET": s3db.bucket}
    for name in lines:  # unset now, and as they were after the test (the file sets them)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    env_file = tmp_path / "s3.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    store = s3db.track(store_from_env(env_file))
    assert os.environ["AWS_BUCKET"] == s3db.bucket
    with Db.open(s3db.prefix, s3db.settings(), object_store=store) as db:
        db.put(b"k", b"v")
    assert any(k.startswith("wal/") for k in s3db.listing())
