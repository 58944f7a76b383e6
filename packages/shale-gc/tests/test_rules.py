"""Tests for shale_gc.rules: the pure selection functions, without storage."""

from __future__ import annotations

import dataclasses
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from shale.fbs.compactions import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SUBMITTED,
    Compaction,
    Compactions,
)
from shale.fbs.manifest import (
    Checkpoint,
    CompactedSst,
    ExternalDb,
    Manifest,
    Segment,
    SortedRun,
    SstView,
)
from shale.ids import Ulid
from shale_gc.report import GcObject
from shale_gc.rules import (
    KEEP_ACTIVE_COMPACTION,
    KEEP_CHECKPOINT_REFERENCE,
    KEEP_CHECKPOINT_WAL,
    KEEP_EXTERNAL,
    KEEP_LATEST,
    KEEP_LOW_WATERMARK,
    KEEP_NEWEST_L0,
    KEEP_PINNED,
    KEEP_REFERENCED,
    KEEP_TOO_YOUNG,
    KEEP_UNREPLAYED,
    GcStateView,
    compaction_low_watermark_ms,
    newest_l0_ms,
    select_compacted,
    select_compactions,
    select_manifests,
    select_wal,
)

NOW_S = 10_000.0


def ulid(ts_ms: int, n: int = 0) -> Ulid:
    return Ulid((ts_ms << 80) | n)


def sst(ts_ms: int, n: int = 0) -> CompactedSst:
    """An SST handle with a ULID at ``ts_ms`` (the rules never look at ``info``)."""
    return CompactedSst(ulid(ts_ms, n), None)  # type: ignore[arg-type]


def view(s: CompactedSst) -> SstView:
    return SstView(s.id, s)


def manifest(**changes: object) -> Manifest:
    return dataclasses.replace(Manifest.initial(), **changes)  # type: ignore[arg-type]


def obj(kind: str, oid: int | Ulid, age_s: float) -> GcObject:
    return GcObject(kind, f"db/{kind}/{oid}", oid, 10, NOW_S - age_s)


def deleted_ids(sel: object) -> list[object]:
    return [o.id for o in sel.delete]  # type: ignore[attr-defined]


def reasons(sel: object) -> dict[object, str]:
    return {o.id: r for o, r in sel.keep}  # type: ignore[attr-defined]


def checkpoint(manifest_id: int) -> Checkpoint:
    return Checkpoint(uuid.uuid4(), manifest_id, None, 1)


# -- WAL ---------------------------------------------------------------------------------------


def test_wal_keeps_unreplayed_and_young() -> None:
    v = GcStateView(9, manifest(replay_after_wal_id=5))
    objs = [obj("wal", i, 400) for i in range(1, 8)] + [obj("wal", 8, 100)]
    sel = select_wal(objs, v, now_s=NOW_S, min_age_s=300)
    assert deleted_ids(sel) == [1, 2, 3, 4]
    r = reasons(sel)
    assert r[5] == r[6] == r[7] == r[8] == KEEP_UNREPLAYED  # >= replay_after_wal_id wins
    sel = select_wal([obj("wal", 1, 300), obj("wal", 2, 300.001)], v, now_s=NOW_S, min_age_s=300)
    assert deleted_ids(sel) == [2]  # strictly older than min_age
    assert reasons(sel)[1] == KEEP_TOO_YOUNG


def test_wal_checkpoint_floor_protects_everything_after_it() -> None:
    latest = manifest(replay_after_wal_id=10, checkpoints=[checkpoint(3)])
    pinned = manifest(replay_after_wal_id=4, wal_id_last_seen=5)
    v = GcStateView(9, latest, {3: pinned})
    sel = select_wal([obj("wal", i, 1000) for i in range(1, 12)], v, now_s=NOW_S, min_age_s=0)
    assert deleted_ids(sel) == [1, 2, 3, 4]
    r = reasons(sel)
    assert all(r[i] == KEEP_CHECKPOINT_WAL for i in range(5, 10))  # beyond wal_id_last_seen too
    assert r[10] == r[11] == KEEP_UNREPLAYED


# -- compacted ---------------------------------------------------------------------------------


def test_compacted_references_come_first() -> None:
    a, b, c, d = sst(1000, 1), sst(1000, 2), sst(1000, 3), sst(1000, 4)
    latest = manifest(l0=[view(a)], compacted=[SortedRun(1, [view(b)])])
    pinned = manifest(compacted=[SortedRun(0, [view(c)])])
    v = GcStateView(5, dataclasses.replace(latest, checkpoints=[checkpoint(2)]), {2: pinned})
    sel = select_compacted(
        [obj("compacted", s.id, 1e6) for s in (a, b, c, d)], v, now_s=NOW_S, min_age_s=0
    )
    r = reasons(sel)
    assert r[a.id] == r[b.id] == KEEP_REFERENCED
    assert r[c.id] == KEEP_CHECKPOINT_REFERENCE
    # d is unreferenced but not older than the newest L0 (same ms) and no compaction recorded
    assert r[d.id] == KEEP_LOW_WATERMARK
    assert sel.delete == []


def test_compacted_never_deletes_a_clone_sources_ssts() -> None:
    """Ids listed in ``external_dbs`` (latest or pinned manifest) belong to the database this
    one was cloned from; met in our own listing they are kept, referenced or not."""
    ext, pinned_ext, own = sst(1000, 1), sst(1000, 2), sst(1000, 3)
    comps = Compactions(1, [Compaction(ulid(9_000_000), STATUS_COMPLETED)])
    latest = manifest(
        l0=[view(sst(5_000))],
        external_dbs=[ExternalDb("dbs/parent", uuid.uuid4(), uuid.uuid4(), [ext.id])],
        checkpoints=[checkpoint(2)],
    )
    pinned = manifest(external_dbs=[ExternalDb("dbs/parent", uuid.uuid4(), None, [pinned_ext.id])])
    v = GcStateView(5, latest, {2: pinned}, compactions_id=1, compactions=comps)
    objs = [obj("compacted", s.id, 1e6) for s in (ext, pinned_ext, own)]
    sel = select_compacted(objs, v, now_s=NOW_S, min_age_s=0)
    assert deleted_ids(sel) == [own.id]
    assert reasons(sel)[ext.id] == reasons(sel)[pinned_ext.id] == KEEP_EXTERNAL


def test_compacted_bounds() -> None:
    old, mid, young = sst(1_000), sst(5_000), sst(9_500_000)
    m = manifest(l0=[view(sst(6_000))])  # newest L0 at 6000 ms
    objs = [obj("compacted", s.id, 0) for s in (old, mid, young)]

    def run(watermark_ms: int) -> object:
        comps = Compactions(1, [Compaction(ulid(watermark_ms), STATUS_COMPLETED)])
        v = GcStateView(3, m, compactions_id=1, compactions=comps)
        return select_compacted(objs, v, now_s=NOW_S, min_age_s=600)  # cutoff 9_400_000 ms

    sel = run(4_000)
    assert deleted_ids(sel) == [old.id]
    assert reasons(sel)[mid.id] == KEEP_LOW_WATERMARK
    assert reasons(sel)[young.id] == KEEP_TOO_YOUNG
    sel = run(9_000)  # watermark above mid: now mid is below every bound
    assert deleted_ids(sel) == [old.id, mid.id]
    sel = select_compacted(
        objs,
        GcStateView(
            3,
            dataclasses.replace(m, l0=[view(sst(3_000))]),
            compactions_id=1,
            compactions=Compactions(1, [Compaction(ulid(9_000), STATUS_COMPLETED)]),
        ),
        now_s=NOW_S,
        min_age_s=600,
    )
    assert deleted_ids(sel) == [old.id] and reasons(sel)[mid.id] == KEEP_NEWEST_L0


def test_newest_l0_bound_and_fallbacks() -> None:
    assert newest_l0_ms(manifest()) == 0
    a, b = sst(3_000), sst(7_000)
    assert newest_l0_ms(manifest(l0=[view(b), view(a)])) == 7_000
    assert newest_l0_ms(manifest(last_compacted_l0_view_id=ulid(4_000))) == 4_000
    seg = Segment(b"p", None, [view(sst(9_000))], [])
    assert newest_l0_ms(manifest(l0=[view(a)], segments=[seg])) == 9_000
    # per tree (SlateDB's newest_l0_dt): a drained/compacted segment counts by its marker,
    # even while another tree still has older L0s
    drained = Segment(b"q", ulid(8_000), [], [])
    assert newest_l0_ms(manifest(l0=[view(a)], segments=[drained])) == 8_000
    assert newest_l0_ms(manifest(segments=[drained])) == 8_000
    # an unpublished upload newer than the newest L0 is kept
    orphan = sst(8_000)
    comps = Compactions(1, [Compaction(ulid(50_000), STATUS_COMPLETED)])
    v = GcStateView(2, manifest(l0=[view(b)]), compactions_id=1, compactions=comps)
    sel = select_compacted(
        [obj("compacted", orphan.id, 0), obj("compacted", a.id, 0)], v, now_s=NOW_S, min_age_s=0
    )
    assert reasons(sel)[orphan.id] == KEEP_NEWEST_L0
    assert deleted_ids(sel) == [a.id]


def test_low_watermark() -> None:
    assert compaction_low_watermark_ms(None) == 0
    assert compaction_low_watermark_ms(Compactions(0, [])) == 0
    c = Compactions(0, [Compaction(ulid(9), STATUS_RUNNING), Compaction(ulid(5), STATUS_FAILED)])
    assert compaction_low_watermark_ms(c) == 5  # finished jobs kept in the file count too


def test_active_compaction_outputs_and_sources_are_kept() -> None:
    src_l0, src_run, out1, out2, failed_out, garbage = (sst(100, i) for i in range(6))
    latest = manifest(l0=[view(src_l0)], compacted=[SortedRun(3, [view(src_run)])])
    comps = Compactions(
        1,
        [
            Compaction(
                ulid(50),
                STATUS_RUNNING,
                l0_view_ids=[src_l0.id],
                sorted_runs=[3],
                destination=3,
                output_ssts=[out1],
            ),
            Compaction(ulid(60), STATUS_SUBMITTED, output_ssts=[out2]),
            Compaction(ulid(40), STATUS_FAILED, output_ssts=[failed_out]),
        ],
    )
    # the L0 source is gone from the manifest read after the compactions file: the job still
    # protects it through the view id it recorded
    moved = manifest(
        l0=[], compacted=[SortedRun(3, [view(src_run)])], last_compacted_l0_view_id=ulid(10_000)
    )
    v = GcStateView(4, moved, compactions_id=2, compactions=comps)
    objs = [obj("compacted", s.id, 0) for s in (src_l0, src_run, out1, out2, failed_out, garbage)]
    sel = select_compacted(objs, v, now_s=NOW_S, min_age_s=0)
    r = reasons(sel)
    assert r[src_l0.id] == KEEP_ACTIVE_COMPACTION  # by its view id
    assert r[src_run.id] == KEEP_REFERENCED
    assert r[out1.id] == r[out2.id] == KEEP_ACTIVE_COMPACTION
    # a failed job's outputs and true garbage: both at ts 100 >= low watermark 40 -> kept
    assert r[failed_out.id] == r[garbage.id] == KEEP_LOW_WATERMARK
    v = GcStateView(4, latest, compactions_id=2, compactions=comps)
    r = reasons(select_compacted(objs, v, now_s=NOW_S, min_age_s=0))
    assert r[src_l0.id] == KEEP_REFERENCED


def test_segment_trees_are_reachable_and_protected() -> None:
    """Every tree's SSTs are referenced; an active compaction of a segment protects the SSTs of
    that segment's source runs through the checkpoint manifest that still lists them."""
    seg_l0, seg_run, root_l0, gone_run, garbage = (sst(100, i) for i in range(5))
    latest = manifest(
        l0=[view(root_l0)],
        segments=[Segment(b"aaa", None, [view(seg_l0)], [SortedRun(7, [view(seg_run)])])],
    )
    older = manifest(segments=[Segment(b"bbb", None, [], [SortedRun(8, [view(gone_run)])])])
    comps = Compactions(
        1,
        [Compaction(ulid(10), STATUS_RUNNING, sorted_runs=[8], destination=8, segment=b"bbb")],
    )
    v = GcStateView(4, latest, compactions_id=2, compactions=comps)
    objs = [obj("compacted", s.id, 0) for s in (seg_l0, seg_run, root_l0, gone_run, garbage)]
    r = reasons(select_compacted(objs, v, now_s=NOW_S, min_age_s=0))
    assert r[seg_l0.id] == r[seg_run.id] == r[root_l0.id] == KEEP_REFERENCED
    v = dataclasses.replace(v, checkpoint_manifests={3: older})
    r = reasons(select_compacted(objs, v, now_s=NOW_S, min_age_s=0))
    assert r[gone_run.id] == KEEP_CHECKPOINT_REFERENCE
    # the run of another segment with the same id is not this compaction's source
    wrong = Compactions(
        1,
        [Compaction(ulid(10), STATUS_RUNNING, sorted_runs=[8], destination=8, segment=b"aaa")],
    )
    v = GcStateView(4, latest, compactions_id=2, compactions=wrong)
    assert reasons(select_compacted(objs, v, now_s=NOW_S, min_age_s=0))[gone_run.id] != (
        KEEP_ACTIVE_COMPACTION
    )


# -- manifests and compactions -----------------------------------------------------------------


def test_manifest_versions() -> None:
    m = manifest(checkpoints=[checkpoint(2)])
    v = GcStateView(5, m)
    objs = [obj("manifest", i, 1000) for i in range(1, 6)] + [obj("manifest", 6, 0)]
    sel = select_manifests(objs, v, now_s=NOW_S, min_age_s=300)
    assert deleted_ids(sel) == [1, 3, 4]
    r = reasons(sel)
    assert r[2] == KEEP_PINNED and r[5] == KEEP_LATEST and r[6] == KEEP_LATEST
    sel = select_manifests(
        [obj("manifest", 1, 100), obj("manifest", 5, 1000)], v, now_s=NOW_S, min_age_s=300
    )
    assert reasons(sel)[1] == KEEP_TOO_YOUNG and sel.delete == []


def test_compactions_versions() -> None:
    v = GcStateView(1, manifest(), compactions_id=4)
    objs = [obj("compactions", i, 1000) for i in range(1, 5)]
    sel = select_compactions(objs, v, now_s=NOW_S, min_age_s=0)
    assert deleted_ids(sel) == [1, 2, 3] and reasons(sel)[4] == KEEP_LATEST
    # no file read (a race with its creation): the newest listed is kept
    sel = select_compactions(objs, GcStateView(1, manifest()), now_s=NOW_S, min_age_s=0)
    assert deleted_ids(sel) == [1, 2, 3]


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    replay=st.integers(0, 30),
    cp_floors=st.lists(st.integers(0, 30), max_size=3),
    ages=st.lists(st.floats(0, 1000), min_size=1, max_size=30),
    min_age=st.sampled_from([0.0, 300.0]),
)
def test_wal_selection_is_a_safe_partition(
    replay: int, cp_floors: list[int], ages: list[float], min_age: float
) -> None:
    cps = {i + 100: manifest(replay_after_wal_id=f) for i, f in enumerate(cp_floors)}
    latest = manifest(replay_after_wal_id=replay, checkpoints=[checkpoint(i) for i in cps])
    objs = [obj("wal", i + 1, a) for i, a in enumerate(ages)]
    sel = select_wal(objs, GcStateView(200, latest, cps), now_s=NOW_S, min_age_s=min_age)
    assert {o.key for o in sel.delete}.isdisjoint(o.key for o, _ in sel.keep)
    assert len(sel.delete) + len(sel.keep) == len(objs)
    for o in sel.delete:
        assert isinstance(o.id, int)
        assert o.id < replay and all(o.id <= f for f in cp_floors)
        assert NOW_S - o.last_modified > min_age


@settings(max_examples=60, deadline=None)
@given(
    stamps=st.lists(st.integers(1, 20_000), min_size=1, max_size=25),
    refs=st.data(),
    watermark=st.one_of(st.none(), st.integers(1, 20_000)),
)
def test_compacted_selection_never_deletes_reachable(
    stamps: list[int], refs: st.DataObject, watermark: int | None
) -> None:
    ssts = [sst(t, i) for i, t in enumerate(stamps)]
    in_l0 = refs.draw(st.lists(st.sampled_from(ssts), max_size=5, unique_by=lambda s: s.id))
    in_cp = refs.draw(st.lists(st.sampled_from(ssts), max_size=5, unique_by=lambda s: s.id))
    outputs = refs.draw(st.lists(st.sampled_from(ssts), max_size=3, unique_by=lambda s: s.id))
    comps = None
    if watermark is not None:
        comps = Compactions(1, [Compaction(ulid(watermark), STATUS_RUNNING, output_ssts=outputs)])
    latest = manifest(
        l0=[view(s) for s in sorted(in_l0, key=lambda s: s.id, reverse=True)],
        checkpoints=[checkpoint(1)],
    )
    v = GcStateView(
        2,
        latest,
        {1: manifest(l0=[view(s) for s in in_cp])},
        compactions_id=None if comps is None else 1,
        compactions=comps,
    )
    objs = [obj("compacted", s.id, 0) for s in ssts]
    sel = select_compacted(objs, v, now_s=NOW_S, min_age_s=0)
    reachable = {s.id for s in in_l0} | {s.id for s in in_cp}
    if comps is not None:
        reachable |= {s.id for s in outputs}
    newest = max((s.id.timestamp_ms for s in in_l0), default=0)
    for o in sel.delete:
        assert o.id not in reachable
        assert isinstance(o.id, Ulid)
        assert watermark is not None and o.id.timestamp_ms < watermark
        assert o.id.timestamp_ms < newest
    assert len(sel.delete) + len(sel.keep) == len(objs)
