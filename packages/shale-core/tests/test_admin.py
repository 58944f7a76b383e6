"""``shale.Admin``: each operation, and that reads write nothing."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import uuid
from typing import Any

import pytest

import shale
from shale import env
from shale.admin import Admin, RangeEstimate
from shale.aio import AsyncAdmin
from shale.clock import ManualClock
from shale.db import Db
from shale.errors import DataError, InvalidError
from shale.meta.seq_tracker import SequenceTracker
from shale.objstore.memory import MemoryStore
from shale.plugins import reset_host
from shale.settings import Settings

T0_MS = 1_700_000_000_000


def _settings() -> Settings:
    return Settings(compactor_options=None, garbage_collector_options=None)


def _write(db: Db, keys: range, *, value: bytes = b"v" * 50) -> None:
    for i in keys:
        db.put(b"k%05d" % i, value)
    db.flush(memtable=True)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def filled(store: MemoryStore) -> MemoryStore:
    """A database at ``db`` in ``store``: two L0 SSTs of 500 keys each, then 10 deletes."""
    db = Db.open("db", _settings(), object_store=store)
    try:
        _write(db, range(500))
        _write(db, range(500, 1000))
        for i in range(10):
            db.delete(b"k%05d" % i)
        db.flush(memtable=True)
    finally:
        db.close()
    return store


def _digest(store: MemoryStore) -> dict[str, str]:
    return {m.key: hashlib.sha256(store.get(m.key)).hexdigest() for m in store.list("")}


def test_shale_admin_is_public() -> None:
    assert shale.Admin is Admin
    assert "Admin" in shale.__all__


def test_read_and_list_manifests(filled: MemoryStore) -> None:
    admin = Admin("db", object_store=filled)
    latest = admin.read_manifest()
    assert latest is not None
    ids = [v.id for v in admin.list_manifests()]
    assert ids == sorted(ids) and ids[-1] == latest.id
    assert [v.id for v in admin.list_manifests(2, 4)] == [i for i in ids if 2 <= i < 4]
    assert [v.id for v in admin.list_manifests(start=latest.id)] == [latest.id]
    assert admin.list_manifests(latest.id + 1) == []
    one = admin.read_manifest(2)
    assert one is not None and one.id == 2
    assert one.manifest == dict(admin.list_manifests())[2]
    assert admin.read_manifest(latest.id + 5) is None
    assert len(latest.manifest.l0) == 3
    with pytest.raises(InvalidError):
        admin.list_manifests("1")  # type: ignore[arg-type]


def test_missing_database(store: MemoryStore) -> None:
    admin = Admin("nothing", object_store=store)
    assert admin.read_manifest() is None
    assert admin.list_manifests() == []
    assert admin.read_compactions() is None
    for call in (
        admin.list_checkpoints,
        admin.create_checkpoint,
        admin.read_compactor_state_view,
        admin.estimate,
        lambda: admin.get_timestamp_for_sequence(1),
    ):
        with pytest.raises(DataError, match="no database"):
            call()
    assert list(store.list("")) == []  # nothing was created


def test_compactions_reads(filled: MemoryStore) -> None:
    admin = Admin("db", object_store=filled)
    assert admin.read_compactions() is None  # no compactor ran
    view = admin.read_compactor_state_view()
    assert view.compactions is None
    latest = admin.read_manifest()
    assert latest is not None and view.manifest.id == latest.id


def test_compactions_through_the_compactor_hook(filled: MemoryStore) -> None:
    pytest.importorskip("shale_compactor")
    admin = Admin("db", object_store=filled)
    submitted = admin.submit_compaction("full")
    latest = admin.read_compactions()
    assert latest is not None
    assert [c.id for c in latest.compactions.recent_compactions] == [submitted.id]
    assert admin.read_compaction(submitted.id) == submitted
    assert admin.read_compaction(str(submitted.id)) == submitted
    assert admin.read_compaction(str(submitted.id), latest.id) == submitted
    assert len(submitted.l0_view_ids) == 3
    ids = [v.id for v in admin.list_compactions()]
    assert ids == sorted(ids) and ids[-1] == latest.id
    assert admin.list_compactions(latest.id) == [latest]
    assert [v.id for v in admin.list_compactions(None, latest.id)] == ids[:-1]
    assert admin.list_compactions(latest.id + 1) == []
    view = admin.read_compactor_state_view()
    assert view.compactions == latest
    with pytest.raises(InvalidError, match="ULID"):
        admin.read_compaction("not-a-ulid")


def test_gc_through_the_gc_hook(filled: MemoryStore) -> None:
    pytest.importorskip("shale_gc")
    admin = Admin("db", object_store=filled)
    report = admin.run_gc_once()
    assert type(report).__name__ == "GcReport"
    assert admin.read_manifest() is not None


@pytest.mark.parametrize(
    ("blocked", "call", "package"),
    [
        ("shale_gc", lambda a: a.run_gc_once(), "shale-gc"),
        ("shale_compactor", lambda a: a.submit_compaction("full"), "shale-compactor"),
    ],
)
def test_plugin_operations_name_the_package_when_blocked(
    filled: MemoryStore, monkeypatch: pytest.MonkeyPatch, blocked: str, call: Any, package: str
) -> None:
    monkeypatch.setenv(env.DISABLED_PLUGINS, blocked)
    reset_host()
    try:
        before = _digest(filled)
        with pytest.raises(InvalidError, match=f"install the {package} package"):
            call(Admin("db", object_store=filled))
        assert _digest(filled) == before
    finally:
        monkeypatch.delenv(env.DISABLED_PLUGINS)
        reset_host()


def test_hooks_reach_a_registered_plugin(filled: MemoryStore) -> None:
    seen: list[tuple[str, Any]] = []

    class Fake:
        @shale.hookimpl(tryfirst=True)
        def shale_admin_run_gc_once(self, admin: Admin, options: Any) -> object:
            seen.append(("gc", options))
            return "report"

        @shale.hookimpl(tryfirst=True)
        def shale_admin_submit_compaction(self, admin: Admin, spec: Any) -> object:
            seen.append(("compact", spec))
            return "compaction"

    host = shale.plugins.get_host()
    plugin = Fake()
    host.register(plugin, name="fake-admin")
    try:
        admin = Admin("db", object_store=filled)
        assert admin.run_gc_once("opts") == "report"
        assert admin.submit_compaction({"l0": []}) == "compaction"
    finally:
        host.unregister(plugin)
    assert seen == [("gc", "opts"), ("compact", {"l0": []})]


def test_checkpoints(filled: MemoryStore) -> None:
    clock = ManualClock(T0_MS)
    admin = Admin("db", object_store=filled, clock=clock)
    before = admin.read_manifest()
    assert before is not None
    cp = admin.create_checkpoint(name="nightly", lifetime=60)
    assert cp.manifest_id == before.id + 1
    (listed,) = admin.list_checkpoints()
    assert listed.id == cp.id and listed.name == "nightly"
    assert listed.create_time_s == T0_MS // 1000
    assert listed.expire_time_s == T0_MS // 1000 + 60
    # the writer's and the compactor's epochs are kept: nobody is fenced
    after = admin.read_manifest()
    assert after is not None
    assert after.manifest.writer_epoch == before.manifest.writer_epoch
    assert after.manifest.compactor_epoch == before.manifest.compactor_epoch

    clock.advance(10_000)
    admin.refresh_checkpoint(cp.id, lifetime=120)
    (listed,) = admin.list_checkpoints()
    assert listed.expire_time_s == T0_MS // 1000 + 10 + 120
    admin.refresh_checkpoint(str(cp.id))
    assert admin.list_checkpoints()[0].expire_time_s is None

    other = admin.create_checkpoint()
    assert admin.list_checkpoints("nightly") == [admin.list_checkpoints()[0]]
    assert {c.id for c in admin.list_checkpoints()} == {cp.id, other.id}
    admin.delete_checkpoint(str(cp.id))
    assert [c.id for c in admin.list_checkpoints()] == [other.id]
    with pytest.raises(InvalidError):
        admin.delete_checkpoint(uuid.uuid4())
    with pytest.raises(InvalidError):
        admin.refresh_checkpoint("not-a-uuid")
    with pytest.raises(InvalidError):
        admin.create_checkpoint(lifetime=-1)


def test_checkpoint_from_a_source_pins_the_sources_version(filled: MemoryStore) -> None:
    admin = Admin("db", object_store=filled)
    first = admin.create_checkpoint(name="first")
    admin.create_checkpoint(name="second")  # moves the latest version on
    copy = admin.create_checkpoint(source=first.id, name="copy")
    assert copy.manifest_id == first.manifest_id
    latest = admin.read_manifest()
    assert latest is not None and latest.id > first.manifest_id + 1
    by_name = {c.name: c for c in admin.list_checkpoints()}
    assert by_name["copy"].manifest_id == by_name["first"].manifest_id
    assert by_name["second"].manifest_id == first.manifest_id + 1
    with pytest.raises(InvalidError):
        admin.create_checkpoint(source=uuid.uuid4())


def test_sequence_timestamp_lookups(store: MemoryStore) -> None:
    clock = ManualClock(T0_MS)
    db = Db.open("db", _settings(), object_store=store, clock=clock)
    try:
        seqs = []
        for i in range(3):
            seqs.append(db.put(b"k%d" % i, b"v").seq)
            db.flush(memtable=True)
            clock.advance(120_000)  # past the tracker's interval: one entry per flush
    finally:
        db.close()
    admin = Admin("db", object_store=store)
    latest = admin.read_manifest()
    assert latest is not None
    tracker = SequenceTracker.decode(latest.manifest.sequence_tracker)
    assert len(tracker) >= 2
    for s, t in zip(tracker.seqs, tracker.timestamps, strict=True):
        assert admin.get_timestamp_for_sequence(s) == t
        assert admin.get_sequence_for_timestamp(t) == s
    s0, t0 = tracker.seqs[0], tracker.timestamps[0]
    s1, t1 = tracker.seqs[1], tracker.timestamps[1]
    assert admin.get_sequence_for_timestamp(t0 + 1) == s0
    assert admin.get_sequence_for_timestamp(t0 + 1, round_up=True) == s1
    assert admin.get_sequence_for_timestamp(t0 - 1) is None
    if s1 > s0 + 1:
        assert admin.get_timestamp_for_sequence(s0 + 1, round_up=True) == t1
        assert admin.get_timestamp_for_sequence(s0 + 1) == t0
    assert admin.get_timestamp_for_sequence(tracker.seqs[-1] + 1, round_up=True) is None
    with pytest.raises(InvalidError):
        admin.get_timestamp_for_sequence(-1)


def test_estimates_against_known_data(filled: MemoryStore) -> None:
    admin = Admin("db", object_store=filled)
    whole = admin.estimate()
    # 1000 puts in two SSTs, 10 tombstones in a third: every entry, exactly
    assert (whole.entries, whole.puts, whole.deletes, whole.merges) == (1010, 1000, 10, 0)
    assert whole.ssts == 3 and whole.bytes > 1000 * 50 // 4 and whole.raw_bytes >= 1000 * 56
    first_half = admin.estimate(None, b"k00500")
    second_half = admin.estimate(b"k00500")
    assert second_half.deletes == 0 and second_half.ssts == 1
    assert first_half.deletes == 10
    # block granularity: never fewer than the true count, over by at most one block each end
    assert 500 <= second_half.puts <= 500 + 2 * 64
    assert 500 <= first_half.puts <= 500 + 2 * 64
    narrow = admin.estimate(b"k00100", b"k00110")
    assert 10 <= narrow.puts and narrow.blocks <= 2 and narrow.ssts == 1
    assert admin.estimate(b"z", None) == RangeEstimate()
    assert admin.estimate(b"k2", b"k1") == RangeEstimate()
    with pytest.raises(InvalidError):
        admin.estimate("k")  # type: ignore[arg-type]


def test_estimate_at_a_checkpoint(filled: MemoryStore) -> None:
    admin = Admin("db", object_store=filled)
    cp = admin.create_checkpoint()
    db = Db.open("db", _settings(), object_store=filled)
    try:
        _write(db, range(2000, 2100))
    finally:
        db.close()
    assert admin.estimate().puts == 1100
    assert admin.estimate(checkpoint=cp.id).puts == 1000
    with pytest.raises(InvalidError):
        admin.estimate(checkpoint=uuid.uuid4())


def test_reads_leave_the_bucket_byte_identical(filled: MemoryStore) -> None:
    admin = Admin("db", object_store=filled)
    before = _digest(filled)
    admin.read_manifest()
    admin.list_manifests()
    admin.read_compactions()
    admin.list_compactions()
    admin.read_compactor_state_view()
    admin.list_checkpoints()
    admin.get_sequence_for_timestamp(0)
    admin.estimate()
    assert _digest(filled) == before


def test_admin_on_a_directory(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "db")
    with Db.open(path, _settings()) as db:
        _write(db, range(10))
    with Admin(path) as admin:
        assert admin.estimate().puts == 10
        assert admin.root == ""
    missing = tmp_path / "missing"
    with Admin(str(missing)) as admin:
        assert admin.read_manifest() is None
    assert not missing.exists()


def test_bad_arguments() -> None:
    with pytest.raises(InvalidError):
        Admin("")
    with pytest.raises(InvalidError):
        Admin("x", settings={})  # type: ignore[arg-type]


def test_async_admin(filled: MemoryStore) -> None:
    async def main() -> None:
        async with AsyncAdmin("db", object_store=filled) as admin:
            latest = await admin.read_manifest()
            assert latest is not None
            assert [v.id for v in await admin.list_manifests()][-1] == latest.id
            cp = await admin.create_checkpoint(name="a")
            assert [c.id for c in await admin.list_checkpoints()] == [cp.id]
            await admin.refresh_checkpoint(cp.id, lifetime=5)
            await admin.delete_checkpoint(cp.id)
            assert await admin.list_checkpoints() == []
            assert (await admin.estimate()).entries == 1010
            assert await admin.read_compactions() is None
            assert admin.sync.url == "db"
        with pytest.raises(shale.ClosedError):
            await admin.read_manifest()

    asyncio.run(main())


def test_unfinished_compactions_show_no_outputs(filled: MemoryStore) -> None:
    """As SlateDB decodes them: partial outputs of unfinished compactions are not shown."""
    from shale.fbs.compactions import STATUS_COMPLETED, STATUS_RUNNING, Compaction, Compactions
    from shale.ids import Ulid
    from shale.meta.compactions_store import CompactionsStore

    admin = Admin("db", object_store=filled)
    latest = admin.read_manifest()
    assert latest is not None
    sst = latest.manifest.l0[0].sst
    running = Compaction(id=Ulid.new(T0_MS), status=STATUS_RUNNING, output_ssts=[sst])
    done = Compaction(id=Ulid.new(T0_MS + 1), status=STATUS_COMPLETED, output_ssts=[sst])
    CompactionsStore(filled, "db").try_write(1, Compactions(1, [running, done]))
    (version,) = admin.list_compactions()
    shown = {c.id: c.output_ssts for c in version.compactions.recent_compactions}
    assert shown == {running.id: [], done.id: [sst]}
    assert admin.read_compaction(running.id).output_ssts == []  # type: ignore[union-attr]
    assert CompactionsStore(filled, "db").read(1).recent_compactions[0].output_ssts == [sst]
