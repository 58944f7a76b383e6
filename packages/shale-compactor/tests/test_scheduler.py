"""The size-tiered scheduler: SlateDB's scheduler cases, validation, specs, and properties."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale.errors import InvalidError
from shale.fbs.compactions import STATUS_COMPLETED, STATUS_RUNNING, STATUS_SUBMITTED, Compactions
from shale.fbs.manifest import CompactedSst, Manifest, SortedRun, SstView
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import Ulid
from shale.settings import CompactorOptions
from shale_compactor.scheduler import (
    FULL,
    CompactionSpec,
    SchedulerOptions,
    SizeTieredScheduler,
    check_conflicts,
    generate_full,
    parse_spec,
    propose,
    run_size,
    spec_size,
    validate,
)
from shale_compactor.state import CompactorStateView

_ids = itertools.count(1)
DEFAULT = SchedulerOptions()


def sst(size: int) -> SstView:
    u = Ulid.from_parts(next(_ids), 0)
    info = SsTableInfo(
        first_entry=b"a", index_offset=size, index_len=0, filter_offset=size, filter_len=0
    )
    return SstView(u, CompactedSst(u, info))


def sr(run_id: int, size: int, n: int = 2) -> SortedRun:
    return SortedRun(run_id, [sst(size // n) for _ in range(n)])


def view(
    l0: list[SstView], runs: list[SortedRun], active: list[CompactionSpec] = ()
) -> CompactorStateView:  # type: ignore[assignment]
    m = dataclasses.replace(Manifest.initial(), l0=list(l0), compacted=list(runs))
    comps = [
        s.to_compaction(Ulid.from_parts(10_000 + i, 0), STATUS_RUNNING)
        for i, s in enumerate(active)
    ]
    return CompactorStateView(Compactions(1, comps), m)


def l0_spec(l0: list[SstView], dst: int) -> CompactionSpec:
    return CompactionSpec(tuple(v.id for v in l0), (), dst)


def sr_spec(ids: list[int]) -> CompactionSpec:
    return CompactionSpec((), tuple(ids), ids[-1])


# -- SlateDB's size_tiered_compaction.rs cases ----------------------------------------------------


def test_should_compact_l0s_to_first_sr() -> None:
    l0 = [sst(1) for _ in range(4)]
    (spec,) = propose(view(l0, []), DEFAULT)
    assert spec == l0_spec(l0, 0)


def test_options_from_compactor_options() -> None:
    o = CompactorOptions(min_compaction_sources=2, max_compaction_sources=2)
    sched = SizeTieredScheduler(o)
    l0 = [sst(1), sst(1)]
    (spec,) = sched.propose(view(l0, []))
    assert spec == l0_spec(l0, 0)
    assert SizeTieredScheduler().options == DEFAULT


def test_should_compact_l0s_to_new_sr() -> None:
    l0 = [sst(1) for _ in range(4)]
    (spec,) = propose(view(l0, [sr(10, 2), sr(0, 2)]), DEFAULT)
    assert spec.destination == 11


def test_should_not_compact_l0s_if_fewer_than_min_threshold() -> None:
    assert propose(view([sst(1) for _ in range(3)], []), DEFAULT) == []


def test_should_compact_srs_if_enough_with_similar_size() -> None:
    runs = [sr(i, 2) for i in (4, 3, 2, 1, 0)]
    assert propose(view([], runs), DEFAULT) == [sr_spec([4, 3, 2, 1, 0])]


def test_should_only_include_srs_if_with_similar_size() -> None:
    runs = [sr(4, 2), sr(3, 2), sr(2, 2), sr(1, 2), sr(0, 10)]
    assert propose(view([], runs), DEFAULT) == [sr_spec([4, 3, 2, 1])]


def test_should_not_schedule_compaction_for_source_that_is_already_compacting() -> None:
    runs = [sr(i, 2) for i in (4, 3, 2, 1, 0)]
    assert propose(view([], runs, [sr_spec([3, 2, 1, 0])]), DEFAULT) == []


def test_should_not_compact_srs_if_fewer_than_min_threshold() -> None:
    runs = [sr(2, 2), sr(1, 2), sr(0, 2, 4)]
    assert propose(view([], runs), DEFAULT) == []


def _twelve() -> list[SortedRun]:
    return [sr(i, 2) for i in range(11, 0, -1)] + [sr(0, 2, 4)]


def test_should_clamp_compaction_size() -> None:
    assert propose(view([], _twelve()), DEFAULT) == [sr_spec([7, 6, 5, 4, 3, 2, 1, 0])]


def test_should_apply_backpressure() -> None:
    assert propose(view([], _twelve(), [sr_spec([7, 6, 5, 4, 3, 2, 1, 0])]), DEFAULT) == []


def test_should_apply_backpressure_for_l0s() -> None:
    l0 = [sst(1) for _ in range(4)]
    runs = [sr(i, 2) for i in range(7, 0, -1)] + [sr(0, 2, 4)]
    assert propose(view(l0, runs, [sr_spec([7, 6, 5, 4, 3, 2, 1, 0])]), DEFAULT) == []


def test_should_return_multiple_compactions() -> None:
    l0 = [sst(1) for _ in range(4)]
    runs = [
        sr(10, 2),
        sr(9, 2),
        sr(8, 2),
        sr(7, 2),
        sr(3, 16, 4),
        sr(2, 16, 4),
        sr(1, 16, 4),
        sr(0, 16, 4),
    ]
    assert propose(view(l0, runs), DEFAULT) == [
        l0_spec(l0, 11),
        sr_spec([10, 9, 8, 7]),
        sr_spec([3, 2, 1, 0]),
    ]


def test_should_respect_max_concurrent_compactions() -> None:
    l0 = [sst(1) for _ in range(4)]
    runs = [
        sr(10, 2),
        sr(9, 2),
        sr(8, 2),
        sr(7, 2),
        sr(3, 16, 4),
        sr(2, 16, 4),
        sr(1, 16, 4),
        sr(0, 16, 4),
    ]
    two = dataclasses.replace(DEFAULT, max_concurrent_compactions=2)
    assert len(propose(view(l0, runs), two)) == 2
    busy = view(l0, runs, [CompactionSpec((), (), 99)])
    assert len(propose(busy, two)) == 1


def test_only_one_l0_compaction_at_a_time() -> None:
    l0 = [sst(1) for _ in range(12)]
    running = l0_spec(l0[-8:], 0)
    assert propose(view(l0, [], [running]), DEFAULT) == []


def test_should_submit_invalid_compaction_wrong_order() -> None:
    l0 = [sst(1) for _ in range(3)]
    v = view(l0, [])
    with pytest.raises(InvalidError, match="consecutive"):
        validate(v, l0_spec([l0[2], l0[0], l0[1]], 0))


def test_should_submit_invalid_compaction_skipped_sst() -> None:
    l0 = [sst(1) for _ in range(3)]
    with pytest.raises(InvalidError, match="consecutive"):
        validate(view(l0, []), l0_spec([l0[2], l0[0]], 0))


def test_should_submit_invalid_compaction_with_sr() -> None:
    v = view([], [sr(0, 2)])
    with pytest.raises(InvalidError):
        validate(v, CompactionSpec((), (5,), 0))


def test_should_submit_invalid_compaction_with_srs_out_of_order() -> None:
    # SlateDB's test_should_submit_valid_compaction_with_srs (which expects an error)
    v = view([], [sr(0, 2), sr(1, 2)])
    with pytest.raises(InvalidError, match="lowest"):
        validate(v, sr_spec([0, 1]))


# -- validation beyond SlateDB -----------------------------------------------------------------


def test_valid_specs() -> None:
    l0 = [sst(1) for _ in range(3)]
    runs = [sr(4, 2), sr(2, 2), sr(0, 2)]
    v = view(l0, runs)
    validate(v, l0_spec(l0[1:], 5))
    validate(v, CompactionSpec(tuple(x.id for x in l0), (4, 2), 2))
    validate(v, sr_spec([2, 0]))
    validate(v, sr_spec([4]))  # rewriting one run (drops tombstones/expired rows) is allowed


@pytest.mark.parametrize(
    "case", ["empty", "newer_l0_only", "l0_low_dest", "l0_dest_taken", "dup", "wrong_dest"]
)
def test_invalid_specs(case: str) -> None:
    l0 = [sst(1) for _ in range(3)]
    runs = [sr(4, 2), sr(2, 2)]
    v = view(l0, runs)
    spec = {
        "empty": CompactionSpec(),
        # leaving an older L0 behind would let it shadow the compacted newer values
        "newer_l0_only": l0_spec(l0[:2], 5),
        "l0_low_dest": l0_spec(l0, 3),
        "l0_dest_taken": l0_spec(l0, 4),
        "dup": CompactionSpec((), (4, 4), 4),
        "wrong_dest": CompactionSpec((), (4, 2), 4),
    }[case]
    with pytest.raises(InvalidError):
        validate(v, spec)


def test_check_conflicts() -> None:
    l0 = [sst(1) for _ in range(4)]
    runs = [sr(3, 2), sr(2, 2), sr(1, 2)]
    running = sr_spec([2, 1])
    v = view(l0, runs, [running])
    assert not check_conflicts(v, sr_spec([3, 2]))
    assert check_conflicts(v, sr_spec([3]))
    assert not check_conflicts(v, CompactionSpec((), (), 1))  # destination in use
    mine = v.active_compactions()[0].id
    assert check_conflicts(v, running, ignore=mine)


def test_generate_full() -> None:
    l0 = [sst(1), sst(1)]
    assert generate_full(view(l0, [])) == l0_spec(l0, 0)
    runs = [sr(5, 2), sr(3, 2)]
    full = generate_full(view(l0, runs))
    assert full == CompactionSpec(tuple(x.id for x in l0), (5, 3), 3)
    validate(view(l0, runs), full)
    with pytest.raises(InvalidError, match="nothing"):
        generate_full(view([], []))


def test_sizes() -> None:
    run = sr(1, 10)
    assert run_size(run) == 10
    m = dataclasses.replace(Manifest.initial(), l0=[sst(3)], compacted=[run])
    assert spec_size(m, CompactionSpec((m.l0[0].id,), (1,), 1)) == 13


# -- specs -------------------------------------------------------------------------------------


def test_spec_round_trips() -> None:
    spec = CompactionSpec((Ulid.from_parts(7, 1),), (3, 2), 2)
    assert parse_spec(json.dumps(spec.to_json())) == spec
    assert CompactionSpec.from_compaction(spec.to_compaction(Ulid.from_parts(1, 0))) == spec
    assert spec.to_compaction(Ulid.from_parts(1, 0)).status == STATUS_SUBMITTED
    slate = {
        "Spec": {
            "sources": [
                {"SstView": str(Ulid.from_parts(7, 1))},
                {"SortedRun": 3},
                {"SortedRun": 2},
            ],
            "destination": 2,
        }
    }
    assert parse_spec(json.dumps(slate)) == spec
    assert parse_spec('"Full"') is FULL and parse_spec("full") is FULL


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1]",
        '{"l0": [], "sorted_runs": [1]}',
        '{"l0": ["nope"], "destination": 0}',
        '{"sorted_runs": [-1], "destination": 0}',
        '{"sorted_runs": [1], "destination": true}',
        '{"sources": [{"Blob": 1}], "destination": 0}',
        '{"bogus": 1, "destination": 0}',
        '{"Spec": 3}',
    ],
)
def test_malformed_specs(text: str) -> None:
    with pytest.raises(InvalidError):
        parse_spec(text)


def test_spec_field_checks() -> None:
    with pytest.raises(InvalidError):
        CompactionSpec(("x",), (), 0)  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        CompactionSpec((), (2**32,), 0)
    with pytest.raises(InvalidError):
        SchedulerOptions(min_compaction_sources=4, max_compaction_sources=3)


# -- properties --------------------------------------------------------------------------------


@st.composite
def states(draw: st.DrawFn) -> tuple[CompactorStateView, SchedulerOptions]:
    n_l0 = draw(st.integers(0, 12))
    l0 = [sst(draw(st.integers(1, 64))) for _ in range(n_l0)]
    run_ids = sorted(draw(st.sets(st.integers(0, 30), max_size=14)), reverse=True)
    runs = [sr(i, draw(st.integers(2, 400)), draw(st.integers(1, 3))) for i in run_ids]
    lo = draw(st.integers(2, 5))
    options = SchedulerOptions(
        min_compaction_sources=lo,
        max_compaction_sources=draw(st.integers(lo, 9)),
        include_size_threshold=draw(st.sampled_from([1.0, 1.5, 4.0, 10.0])),
        max_concurrent_compactions=draw(st.integers(1, 5)),
    )
    v = view(l0, runs)
    # some compactions already running: take earlier proposals, as the compactor would
    for _ in range(draw(st.integers(0, 2))):
        proposed = propose(v, options)
        if not proposed:
            break
        keep = proposed[: draw(st.integers(0, len(proposed)))]
        active = [CompactionSpec.from_compaction(c) for c in v.active_compactions()] + keep
        v = view(l0, runs, active)
    return v, options


@settings(max_examples=300, deadline=None)
@given(states())
def test_proposals_are_valid_disjoint_and_bounded(
    case: tuple[CompactorStateView, SchedulerOptions],
) -> None:
    v, o = case
    m = v.manifest
    active = [CompactionSpec.from_compaction(c) for c in v.active_compactions()]
    proposals = propose(v, o)
    assert len(active) + len(proposals) <= max(o.max_concurrent_compactions, len(active))
    used: set[object] = set()
    for spec in active:
        used.update(spec.sources)
        used.add(("sr", spec.destination))
    l0_jobs = sum(1 for s in active if s.l0)
    top = m.compacted[0].id if m.compacted else -1
    for spec in proposals:
        validate(v, spec)  # every proposal is a valid spec
        assert o.min_compaction_sources <= len(spec.sources) <= o.max_compaction_sources
        assert not (set(spec.sources) & used), "a source is used twice"
        assert ("sr", spec.destination) not in used, "a destination is used twice"
        used.update(spec.sources)
        used.add(("sr", spec.destination))
        assert check_conflicts(v, spec)
        if spec.l0:
            l0_jobs += 1
            assert not spec.sorted_runs
            assert spec.destination == top + 1
            assert list(spec.l0) == [x.id for x in m.l0[-len(spec.l0) :]]  # the oldest
        else:
            assert spec.destination == min(spec.sorted_runs)
            sizes = [next(run_size(r) for r in m.compacted if r.id == i) for i in spec.sorted_runs]
            for k in range(1, len(sizes)):
                assert sizes[k] <= int(min(sizes[:k]) * o.include_size_threshold)
    assert l0_jobs <= 1
    # proposing again with the proposals running proposes nothing that overlaps them
    again = propose(view(m.l0, m.compacted, active + proposals), o)
    for spec in again:
        assert not (set(spec.sources) & used)


@settings(max_examples=150, deadline=None)
@given(states(), st.data())
def test_l0_proposed_iff_enough_and_free(
    case: tuple[CompactorStateView, SchedulerOptions], data: st.DataObject
) -> None:
    v, o = case
    m = v.manifest
    active = [CompactionSpec.from_compaction(c) for c in v.active_compactions()]
    proposals = propose(v, o)
    if len(m.l0) < o.min_compaction_sources:
        assert not any(s.l0 for s in proposals)
    if any(s.l0 for s in active):
        assert not any(s.l0 for s in proposals)
    # a random consecutive window validates iff it follows the rules
    order = [("l0", x.id) for x in m.l0] + [("sr", r.id) for r in m.compacted]
    if order:
        i = data.draw(st.integers(0, len(order) - 1))
        j = data.draw(st.integers(i + 1, len(order)))
        window = order[i:j]
        l0 = tuple(k for kind, k in window if kind == "l0")
        runs = tuple(k for kind, k in window if kind == "sr")
        dest = min(runs) if runs else (m.compacted[0].id + 1 if m.compacted else 0)
        spec = CompactionSpec(l0, runs, dest)  # type: ignore[arg-type]
        if l0 and l0[-1] != m.l0[-1].id:
            with pytest.raises(InvalidError):
                validate(v, spec)
        else:
            validate(v, spec)


def test_view_helpers() -> None:
    v = view([], [sr(0, 2)], [sr_spec([0])])
    done = dataclasses.replace(
        v.active_compactions()[0], id=Ulid.from_parts(1, 0), status=STATUS_COMPLETED
    )
    v2 = CompactorStateView(Compactions(1, [*v.recent_compactions(), done]), v.manifest)
    assert v2.low_watermark() == Ulid.from_parts(1, 0)
    assert len(v2.active_compactions()) == 1
