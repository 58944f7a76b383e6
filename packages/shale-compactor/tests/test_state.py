"""Compactor state and its protocol: seed 000's cases plus the compactions store.

Seed 000 (SlateDB's ``compactor_state_protocols.rs``) cases are ported one-to-one and named
after the Rust tests; the rest cover the ``.compactions`` store (create-if-absent versions, v1
and v2, the GC boundary, fencing) and the pure helpers of :mod:`shale_compactor.state`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shale.errors import ClosedError, DataError, InternalError, InvalidError
from shale.fbs.compactions import (
    STATUS_COMPACTED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SUBMITTED,
    Compaction,
    Compactions,
    encode_compactions,
)
from shale.fbs.manifest import CompactedSst, Manifest, SortedRun, SstView
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import Ulid
from shale.meta.compactions_store import (
    CompactionsConflict,
    CompactionsStore,
    FenceableCompactions,
    StoredCompactions,
)
from shale.meta.manifest_store import ManifestStore, StoredManifest, add_checkpoint
from shale.objstore.memory import MemoryStore
from shale_compactor.state import (
    CompactorState,
    CompactorStateView,
    CompactorStateWriter,
    apply_compaction,
    is_dest_last_run,
    merge_remote_compactions,
    read_view,
    reset_running,
    resolve_sources,
    retain_active_and_last_finished,
)

ROOT = "compactor-state"


class RecordingStore(MemoryStore):
    """A memory store that records ``(operation, key)`` of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, str]] = []

    def get(self, key: str) -> bytes:
        self.ops.append(("get", key))
        return super().get(key)

    def list(self, prefix: str = "") -> Iterator[Any]:
        self.ops.append(("list", prefix))
        return super().list(prefix)

    def put_if_absent(self, key: str, data: bytes) -> None:
        self.ops.append(("put_if_absent", key))
        super().put_if_absent(key, data)


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore()


@pytest.fixture
def ms(store: RecordingStore) -> ManifestStore:
    m = ManifestStore(store, ROOT)
    StoredManifest.create_or_load(m)  # SlateDB's create_new_db
    return m


@pytest.fixture
def cs(store: RecordingStore) -> CompactionsStore:
    return CompactionsStore(store, ROOT)


def _writer(ms: ManifestStore, cs: CompactionsStore) -> CompactorStateWriter:
    return CompactorStateWriter.open(ms, cs)


def _c(n: int, status: int = STATUS_SUBMITTED, **kw: Any) -> Compaction:
    return Compaction(id=Ulid.from_parts(n, 0), status=status, **kw)


def _sst(n: int, first: bytes = b"a", size: int = 100) -> CompactedSst:
    info = SsTableInfo(
        first_entry=first, index_offset=size, index_len=0, filter_offset=size, filter_len=0
    )
    return CompactedSst(Ulid.from_parts(n, 0), info)


def _view(n: int, size: int = 100) -> SstView:
    s = _sst(n, size=size)
    return SstView(s.id, s)


def _add(cs: CompactionsStore, *compactions: Compaction) -> None:
    stored = StoredCompactions.load(cs)
    stored.update(
        lambda c: dataclasses.replace(c, recent_compactions=[*c.recent_compactions, *compactions])
    )


# -- seed 000 ------------------------------------------------------------------------------------


def test_new_fences_manifest_and_compactions(ms: ManifestStore, cs: CompactionsStore) -> None:
    first = _writer(ms, cs)
    _second = _writer(ms, cs)
    with pytest.raises(ClosedError) as e1:
        first.manifest.refresh()
    assert e1.value.reason == "fenced"
    with pytest.raises(ClosedError) as e2:
        first.compactions.refresh()
    assert e2.value.reason == "fenced"
    assert first.fenced


def test_compactor_state_to_view() -> None:
    manifest = dataclasses.replace(
        Manifest.initial(), compactor_epoch=11, last_compacted_l0_view_id=Ulid.from_parts(5, 0)
    )
    compaction = Compaction(id=Ulid.from_parts(10, 0), status=STATUS_RUNNING, destination=7)
    compactions = Compactions(manifest.compactor_epoch, [compaction])
    state = CompactorState(3, manifest, 8, compactions)

    view = state.view()

    assert view.manifest_id == 3
    assert view.manifest == manifest
    assert view.compactions_id == 8
    assert view.compactions is not None
    assert view.compactions.compactor_epoch == compactions.compactor_epoch
    got = view.get(compaction.id)
    assert got is not None and got.status == STATUS_RUNNING and got.destination == 7
    # unpacks as (compactions, manifest), the shape GC uses
    c, m = view
    assert c is view.compactions and m is manifest


def test_fence_syncs_compactor_epochs(ms: ManifestStore, cs: CompactionsStore) -> None:
    stored = StoredManifest.load(ms)
    stored.update(lambda m, _n: dataclasses.replace(m, compactor_epoch=8))
    StoredCompactions.create(cs, 7)

    _writer(ms, cs)

    _, manifest = ms.read_latest()  # type: ignore[misc]
    _, compactions = cs.read_latest()  # type: ignore[misc]
    assert manifest.compactor_epoch == 9
    assert compactions.compactor_epoch == manifest.compactor_epoch


def test_new_resets_running_to_submitted_and_preserves_submitted(
    ms: ManifestStore, cs: CompactionsStore
) -> None:
    StoredCompactions.create(cs, 0)
    submitted, failed_old, completed_old, running = (
        _c(1),
        _c(2, STATUS_FAILED),
        _c(3, STATUS_COMPLETED),
        _c(4, STATUS_RUNNING),
    )
    _add(cs, submitted, failed_old, completed_old, running)

    writer = _writer(ms, cs)

    state = writer.state
    assert state.get(submitted.id).status == STATUS_SUBMITTED  # type: ignore[union-attr]
    assert state.get(running.id).status == STATUS_SUBMITTED  # type: ignore[union-attr]
    assert state.get(failed_old.id) is None
    assert state.get(completed_old.id) is not None
    # and the recovery state was persisted
    _, on_disk = cs.read_latest()  # type: ignore[misc]
    assert [c.status for c in on_disk.recent_compactions] == [
        STATUS_SUBMITTED,
        STATUS_COMPLETED,
        STATUS_SUBMITTED,
    ]


def test_new_resets_running_to_submitted_and_preserves_output_ssts(
    ms: ManifestStore, cs: CompactionsStore
) -> None:
    outputs = [_sst(10, b"a"), _sst(11, b"m")]
    StoredCompactions.create(cs, 0)
    running = _c(4, STATUS_RUNNING, output_ssts=outputs)
    _add(cs, running)

    writer = _writer(ms, cs)

    c = writer.state.get(running.id)
    assert c is not None
    assert c.status == STATUS_SUBMITTED
    assert c.output_ssts == outputs


def test_load_compactions_merges_external_submitted(
    ms: ManifestStore, cs: CompactionsStore
) -> None:
    writer = _writer(ms, cs)
    submitted = _c(10)
    _add(cs, submitted)  # an external submitter (e.g. `shale compactor submit`)

    writer.load_compactions()

    c = writer.state.get(submitted.id)
    assert c is not None and c.status == STATUS_SUBMITTED


def test_write_compactions_safely_retries_on_version_conflict(
    ms: ManifestStore, cs: CompactionsStore
) -> None:
    writer = _writer(ms, cs)
    start_id, _ = cs.read_latest()  # type: ignore[misc]

    external = StoredCompactions.load(CompactionsStore(cs.store, ROOT))
    external.update(lambda c: dataclasses.replace(c))
    conflicting_id, _ = cs.read_latest()  # type: ignore[misc]
    assert conflicting_id == start_id + 1

    writer.write_compactions_safely()

    final_id, _ = cs.read_latest()  # type: ignore[misc]
    assert final_id == start_id + 2


def test_write_manifest_safely_retries_on_version_conflict(
    ms: ManifestStore, cs: CompactionsStore
) -> None:
    writer = _writer(ms, cs)
    start_id, _ = ms.read_latest()  # type: ignore[misc]

    # an external client creates a detached checkpoint
    external = StoredManifest.load(ManifestStore(ms.store, ROOT))
    external.update(lambda m, n: add_checkpoint(m, manifest_id=n, now_s=1)[0])
    conflicting_id, _ = ms.read_latest()  # type: ignore[misc]
    assert conflicting_id == start_id + 1

    writer.write_manifest_safely(lambda m, _n: dataclasses.replace(m))

    final_id, _ = ms.read_latest()  # type: ignore[misc]
    # +1 for the external update, +2 for the checkpoint and the update itself
    assert final_id == start_id + 3


# -- ordering rules ------------------------------------------------------------------------------


def _first(ops: list[tuple[str, str]], part: str) -> int:
    return next(i for i, (_, key) in enumerate(ops) if f"/{part}/" in key)


def test_read_view_reads_compactions_before_manifest(
    store: RecordingStore, ms: ManifestStore, cs: CompactionsStore
) -> None:
    _writer(ms, cs)
    store.ops.clear()
    view = read_view(store, ROOT)
    assert _first(store.ops, "compactions") < _first(store.ops, "manifest")
    assert view.compactions is not None and view.manifest_id >= 1


def test_refresh_reads_compactions_before_manifest(
    store: RecordingStore, ms: ManifestStore, cs: CompactionsStore
) -> None:
    writer = _writer(ms, cs)
    store.ops.clear()
    writer.refresh()
    assert _first(store.ops, "compactions") < _first(store.ops, "manifest")


def test_read_view_creates_nothing(store: RecordingStore, ms: ManifestStore) -> None:
    store.ops.clear()
    view = read_view(store, ROOT)
    assert view.compactions is None and view.compactions_id is None
    assert not [k for op, k in store.ops if op.startswith("put")]
    assert view.low_watermark() is None


def test_read_view_without_database_is_a_data_error() -> None:
    with pytest.raises(DataError):
        read_view(MemoryStore(), "nothing")


def test_write_state_writes_checkpoint_then_manifest_then_compactions(
    store: RecordingStore, ms: ManifestStore, cs: CompactionsStore
) -> None:
    l0 = [_view(3), _view(2)]
    StoredManifest.load(ms).update(lambda m, _n: dataclasses.replace(m, l0=l0))
    writer = _writer(ms, cs)
    c = Compaction(
        Ulid.from_parts(9, 0), STATUS_RUNNING, l0_view_ids=[v.id for v in l0], destination=0
    )
    writer.state.add(dataclasses.replace(c, status=STATUS_SUBMITTED))
    writer.write_compactions_safely()
    before_id = writer.state.manifest_id
    store.ops.clear()
    out = [_sst(20)]

    writer.write_state_safely(lambda m, _n: apply_compaction(m, c, out), checkpoint_lifetime=900)
    writer.state.finish(c.id, STATUS_COMPLETED, out)

    puts = [k for op, k in store.ops if op == "put_if_absent"]
    assert ["manifest" in k for k in puts] == [True, True, False]
    # the checkpoint pins the version that still lists the compacted L0s
    latest_id, latest = ms.read_latest()  # type: ignore[misc]
    assert latest_id == before_id + 2 and latest.l0 == []
    (cp,) = latest.checkpoints
    assert cp.manifest_id == before_id + 1 and cp.expire_time_s is not None
    assert ms.read(cp.manifest_id).l0 == l0
    assert latest.compacted == [SortedRun(0, [SstView(out[0].id, out[0])])]


def test_fenced_writer_writes_nothing(
    store: RecordingStore, ms: ManifestStore, cs: CompactionsStore
) -> None:
    first = _writer(ms, cs)
    _writer(ms, cs)
    before = {m.key: m.etag for m in store.list("")}
    with pytest.raises(ClosedError):
        first.write_manifest_safely(lambda m, _n: dataclasses.replace(m))
    with pytest.raises(ClosedError):
        first.write_compactions_safely()
    with pytest.raises(ClosedError):  # and it stays fenced without asking the store again
        first.load_compactions()
    # create-if-absent attempts at ids the newer compactor took fail; nothing is created
    assert {m.key: m.etag for m in store.list("")} == before


def test_submission_racing_with_compactor_write_survives(
    ms: ManifestStore, cs: CompactionsStore
) -> None:
    writer = _writer(ms, cs)
    writer.state.add(_c(5))
    _add(cs, _c(6))  # external submission lands first
    writer.write_compactions_safely()
    _, on_disk = cs.read_latest()  # type: ignore[misc]
    assert [c.id.high for c in on_disk.recent_compactions] == [5, 6]


def test_write_keeps_only_active_and_last_finished(ms: ManifestStore, cs: CompactionsStore) -> None:
    writer = _writer(ms, cs)
    for n in (1, 2, 3):
        writer.state.add(_c(n))
    writer.state.finish(Ulid.from_parts(1, 0), STATUS_COMPLETED)
    writer.state.finish(Ulid.from_parts(2, 0), STATUS_FAILED)
    writer.write_compactions_safely()
    _, on_disk = cs.read_latest()  # type: ignore[misc]
    assert [(c.id.high, c.status) for c in on_disk.recent_compactions] == [
        (2, STATUS_FAILED),
        (3, STATUS_SUBMITTED),
    ]


def test_open_without_manifest_is_a_data_error() -> None:
    store = MemoryStore()
    with pytest.raises(DataError):
        CompactorStateWriter.open(ManifestStore(store, "x"), CompactionsStore(store, "x"))


# -- the compactions store -----------------------------------------------------------------------


def test_compactions_store_versions_are_create_if_absent(cs: CompactionsStore) -> None:
    assert cs.read_latest() is None
    stored = StoredCompactions.create(cs, 3)
    assert stored.id == 1
    with pytest.raises(CompactionsConflict):
        StoredCompactions.create(cs, 4)
    assert StoredCompactions.create_or_load(cs).compactions.compactor_epoch == 3
    stored.update(lambda c: dataclasses.replace(c, recent_compactions=[_c(1)]))
    assert cs.list_ids() == [1, 2]
    assert cs.read(2).recent_compactions == [_c(1)]
    assert cs.path(2) == f"{ROOT}/compactions/00000000000000000002.compactions"


def test_compactions_store_writes_v2_reads_v1_and_v2(store: MemoryStore) -> None:
    cs2 = CompactionsStore(store, ROOT)
    StoredCompactions.create(cs2, 1)
    assert store.get(cs2.path(1))[:2] == b"\x00\x02"
    c = Compactions(
        1, [Compaction(Ulid.from_parts(1, 0), STATUS_SUBMITTED, sorted_runs=[3, 2], destination=2)]
    )
    store.put(cs2.path(2), encode_compactions(c, version=1))
    assert cs2.read_latest() == (2, c)
    cs1 = CompactionsStore(store, ROOT, format_version=1)
    StoredCompactions.load(cs1).update(lambda x: x)
    assert store.get(cs1.path(3))[:2] == b"\x00\x01"
    with pytest.raises(InvalidError):
        CompactionsStore(store, ROOT, format_version=3)


def test_compactions_store_ignores_foreign_names_and_reports_corruption(
    store: MemoryStore, cs: CompactionsStore
) -> None:
    StoredCompactions.create(cs, 0)
    store.put(f"{ROOT}/compactions/junk.tmp", b"x")
    store.put(f"{ROOT}/compactions/7.compactions", b"x")
    assert cs.list_ids() == [1]
    store.put(cs.path(2), b"\x00\x02garbage")
    with pytest.raises(DataError):
        CompactionsStore(store, ROOT).read_latest()


def test_compactions_store_gc_boundary(store: MemoryStore, cs: CompactionsStore) -> None:
    stored = StoredCompactions.create(cs, 0)
    stored.update(lambda c: dataclasses.replace(c))
    cs.advance_boundary(1)
    cs.advance_boundary(0)  # never lowers
    assert cs.read_boundary() == 1
    store.delete(cs.path(1))
    # a stale client that believes 0 is latest must not recreate id 1
    stale = StoredCompactions(CompactionsStore(store, ROOT), 0, Compactions(0))
    stale.update(lambda c: dataclasses.replace(c, recent_compactions=[_c(9)]))
    assert stale.id == 3
    store.put(f"{ROOT}/gc/compactions.boundary", b"nope")
    with pytest.raises(DataError):
        cs.read_boundary()


def test_fenceable_compactions_refuses_lower_epochs(cs: CompactionsStore) -> None:
    StoredCompactions.create(cs, 5)
    with pytest.raises(ClosedError):
        FenceableCompactions.init_with_epoch(StoredCompactions.load(cs), 4)
    fc = FenceableCompactions.init_with_epoch(StoredCompactions.load(cs), 6)
    with pytest.raises(InternalError):
        fc.update(lambda c: dataclasses.replace(c, compactor_epoch=7))
    # a submitter may not lower the epoch either
    with pytest.raises(InternalError):
        StoredCompactions.load(cs).update(lambda c: dataclasses.replace(c, compactor_epoch=1))


# -- pure helpers ----------------------------------------------------------------------------


def test_retain_active_and_last_finished() -> None:
    c = Compactions(
        0,
        [
            _c(1, STATUS_COMPLETED),
            _c(2),
            _c(3, STATUS_FAILED),
            _c(4, STATUS_RUNNING),
            _c(5, STATUS_COMPACTED),
        ],
    )
    kept = retain_active_and_last_finished(c)
    assert [x.id.high for x in kept.recent_compactions] == [2, 3, 4, 5]
    assert retain_active_and_last_finished(kept) is kept


def test_reset_running_keeps_outputs_and_clears_worker() -> None:
    run = _c(1, STATUS_RUNNING, output_ssts=[_sst(7)], worker_id="w", last_heartbeat_ms=5)
    out = reset_running(
        Compactions(0, [run, _c(2, STATUS_COMPLETED), _c(3, STATUS_COMPACTED)])
    ).recent_compactions
    assert out[0].status == STATUS_SUBMITTED and out[0].output_ssts == [_sst(7)]
    assert out[0].worker_id is None and out[1].status == STATUS_COMPLETED
    assert out[2].status == STATUS_SUBMITTED
    unchanged = Compactions(0, [_c(4)])
    assert reset_running(unchanged) is unchanged


def test_merge_remote_takes_only_unknown_submitted() -> None:
    local = Compactions(1, [_c(1, STATUS_RUNNING)])
    remote = Compactions(1, [_c(1, STATUS_SUBMITTED), _c(2), _c(3, STATUS_COMPLETED)])
    merged = merge_remote_compactions(local, remote)
    assert [(x.id.high, x.status) for x in merged.recent_compactions] == [
        (1, STATUS_RUNNING),
        (2, STATUS_SUBMITTED),
    ]


def test_state_bookkeeping_errors() -> None:
    state = CompactorState(1, Manifest.initial(), 1, Compactions(0))
    state.add(_c(1))
    with pytest.raises(InvalidError):
        state.add(_c(1))
    with pytest.raises(InvalidError):
        state.add(_c(2, STATUS_COMPLETED))
    with pytest.raises(InternalError):
        state.set_status(Ulid.from_parts(9, 0), STATUS_RUNNING)
    with pytest.raises(InvalidError):
        state.finish(Ulid.from_parts(1, 0), STATUS_RUNNING)
    state.record_output(Ulid.from_parts(1, 0), _sst(5))
    assert state.get(Ulid.from_parts(1, 0)).output_ssts == [_sst(5)]  # type: ignore[union-attr]
    assert isinstance(state.view(), CompactorStateView)


def _manifest(l0: list[SstView], runs: list[SortedRun]) -> Manifest:
    return dataclasses.replace(Manifest.initial(), l0=l0, compacted=runs)


def test_apply_compaction_keeps_newer_l0_and_other_runs() -> None:
    l0 = [_view(5), _view(4), _view(3)]
    runs = [SortedRun(2, [_view(20)]), SortedRun(1, [_view(10)]), SortedRun(0, [_view(1)])]
    m = _manifest(l0, runs)
    c = Compaction(
        Ulid.from_parts(99, 0), STATUS_RUNNING, l0_view_ids=[l0[1].id, l0[2].id], destination=3
    )
    out = [_sst(30), _sst(31)]
    new = apply_compaction(m, c, out)
    assert new.l0 == [l0[0]]
    assert [r.id for r in new.compacted] == [3, 2, 1, 0]
    assert [v.sst for v in new.compacted[0].ssts] == out
    assert new.last_compacted_l0_view_id == l0[1].id

    c2 = Compaction(Ulid.from_parts(98, 0), STATUS_RUNNING, sorted_runs=[2, 1], destination=1)
    new2 = apply_compaction(new, c2, [_sst(40)])
    assert [r.id for r in new2.compacted] == [3, 1, 0]
    assert new2.last_compacted_l0_view_id == l0[1].id
    # everything dropped: no empty run is left behind
    assert [r.id for r in apply_compaction(new, c2, []).compacted] == [3, 0]
    # a vanished source or a taken destination is a bug, not data
    with pytest.raises(InternalError):
        apply_compaction(new2, c2, [_sst(41)])
    bad = Compaction(Ulid.from_parts(97, 0), STATUS_RUNNING, l0_view_ids=[l0[0].id], destination=0)
    with pytest.raises(InternalError):
        apply_compaction(new, bad, [_sst(42)])


def test_resolve_sources_and_is_dest_last_run() -> None:
    l0 = [_view(5), _view(4)]
    runs = [SortedRun(2, [_view(20)]), SortedRun(0, [_view(1)])]
    m = _manifest(l0, runs)
    l0_job = Compaction(Ulid.from_parts(1, 0), 0, l0_view_ids=[v.id for v in l0], destination=3)
    assert resolve_sources(m, l0_job) == (l0, [])
    assert not is_dest_last_run(m, l0_job)
    sr_job = Compaction(Ulid.from_parts(1, 0), 0, sorted_runs=[2, 0], destination=0)
    assert resolve_sources(m, sr_job) == ([], runs)
    assert is_dest_last_run(m, sr_job)
    only_l0 = _manifest(l0, [])
    assert is_dest_last_run(only_l0, l0_job)
    newest_only = Compaction(Ulid.from_parts(1, 0), 0, l0_view_ids=[l0[0].id], destination=0)
    assert not is_dest_last_run(only_l0, newest_only)
    assert not is_dest_last_run(Manifest.initial(), newest_only)
    with pytest.raises(InvalidError):
        resolve_sources(m, dataclasses.replace(sr_job, sorted_runs=[7]))
    with pytest.raises(InvalidError):
        resolve_sources(m, dataclasses.replace(sr_job, sorted_runs=[2, 2]))


def test_writer_checkpoint_ids_are_uuid4(ms: ManifestStore, cs: CompactionsStore) -> None:
    import random

    writer = CompactorStateWriter.open(ms, cs, rand=random.Random(1))
    cid = writer.write_checkpoint(60)
    assert isinstance(cid, uuid.UUID) and cid.version == 4
    assert any(cp.id == cid for cp in writer.state.manifest.checkpoints)
