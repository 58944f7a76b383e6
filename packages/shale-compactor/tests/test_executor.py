"""The compaction executor (shale_compactor.executor).

Ports every test of SlateDB 0.12.1's ``compactor_executor.rs`` (seed 002):

* ``test_load_iterators_resume`` -- all ten cases (``l0_only`` ... ``merge_operator_resume_skip_
  merged_operands``), checked through :meth:`CompactionExecutor.iter_rows` and through the
  outputs of :meth:`CompactionExecutor.execute`;
* ``test_execute_compaction_job_resume_matches_full`` -- the property, with hypothesis;
* ``test_compaction_job_should_retain_merges_newer_than_retention_min_seq_num``;
* ``test_compaction_job_with_filter_success`` (Keep, Drop, Modify value, Modify tombstone);
* ``test_compaction_job_aborts_on_filter_creation_error`` and
  ``test_compaction_job_aborts_on_compaction_end_error``;

plus output splitting, visible ranges, stop, progress, expiry and error cases.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale.errors import InvalidError
from shale.fbs.manifest import (
    BOUND_EXCLUDED,
    BOUND_INCLUDED,
    BOUND_UNBOUNDED,
    Bound,
    BytesRange,
    CompactedSst,
    SortedRun,
    SstView,
)
from shale.ids import Ulid, compacted_path
from shale.merge_operators import ConcatMergeOperator
from shale.objstore.memory import MemoryStore
from shale.row import MERGE, TOMBSTONE, VALUE, Row
from shale.settings import CompactorOptions, Settings
from shale.sst import SsTable, SstBuilder
from shale_compactor.executor import (
    CompactionExecutor,
    CompactionJob,
    CompactionStopped,
    last_written_key_and_seq,
)
from shale_compactor.filters import (
    DROP,
    KEEP,
    CompactionFilterError,
    CompactionJobContext,
    modify_tombstone,
    modify_value,
)

ROOT = "testdb"
_rand = random.Random(1234)


def V(
    key: bytes, value: bytes, seq: int, *, expire: int | None = None, create: int | None = None
) -> Row:
    return Row(key, seq, VALUE, value, expire, create)


def T(key: bytes, seq: int) -> Row:
    return Row(key, seq, TOMBSTONE, b"", None, None)


def M(key: bytes, value: bytes, seq: int) -> Row:
    return Row(key, seq, MERGE, value, None, None)


def make_settings(
    *, block_size: int = 4096, max_sst_size: int = 256 * 1024 * 1024, min_filter_keys: int = 1000
) -> Settings:
    s = Settings(
        compactor_options=CompactorOptions(max_sst_size=max_sst_size),
        min_filter_keys=min_filter_keys,
    )
    # SlateDB's tests use blocks below the 1 KiB Settings accept; the format allows >= 64 bytes
    object.__setattr__(s, "block_size", block_size)
    return s


class NoFilters:
    def create_compaction_filter(self, context: CompactionJobContext) -> None:
        return None


def make_executor(
    store: MemoryStore,
    *,
    block_size: int = 4096,
    max_sst_size: int = 256 * 1024 * 1024,
    merge_operator: Any = None,
    filter_supplier: Any = None,
    **kw: Any,
) -> CompactionExecutor:
    return CompactionExecutor(
        store,
        ROOT,
        settings=make_settings(block_size=block_size, max_sst_size=max_sst_size),
        merge_operator=merge_operator,
        filter_supplier=filter_supplier if filter_supplier is not None else NoFilters(),
        rand=random.Random(100),
        **kw,
    )


def upload(store: MemoryStore, builder: SstBuilder) -> CompactedSst:
    data = builder.finish()
    sid = Ulid.new(1_700_000_000_000, _rand)
    store.put(compacted_path(ROOT, sid), data)
    return CompactedSst(sid, builder.info, 2)


def write_ssts(
    store: MemoryStore, rows: list[Row], max_sst_size: float, block_size: int = 4096
) -> list[CompactedSst]:
    """SlateDB's test ``write_ssts``: split where the compactor's writer would."""
    if not rows:
        return []
    out: list[CompactedSst] = []
    builder = SstBuilder(block_size=block_size)
    for i, row in enumerate(rows):
        builder.add(row)
        if builder.finished_size > max_sst_size:
            out.append(upload(store, builder))
            if i + 1 < len(rows):
                builder = SstBuilder(block_size=block_size)
            else:
                return out
    out.append(upload(store, builder))
    return out


def identity(sst: CompactedSst, visible: BytesRange | None = None) -> SstView:
    return SstView(sst.id, sst, visible)


def read_rows(store: MemoryStore, ssts: list[CompactedSst]) -> list[Row]:
    rows: list[Row] = []
    for sst in ssts:
        rows += [Row(*r) for r in SsTable.open(store, compacted_path(ROOT, sst.id)).rows()]
    return rows


def ordered(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r[0], -r[1]))


def job(
    l0: list[SstView],
    runs: list[SortedRun],
    *,
    resume: list[CompactedSst] | None = None,
    last_run: bool = False,
    min_seq: int | None = 0,
    tick: int = 0,
    destination: int = 0,
) -> CompactionJob:
    return CompactionJob(
        id=Ulid.new(0, _rand),
        l0=l0,
        runs=runs,
        destination=destination,
        is_dest_last_run=last_run,
        retention_min_seq=min_seq,
        compaction_clock_tick=tick,
        resume_outputs=list(resume or []),
    )


def run(ex: CompactionExecutor, j: CompactionJob, **kw: Any) -> list[CompactedSst]:
    reported: list[CompactedSst] = []
    outs = ex.execute(j, on_output=reported.append, **kw)
    assert outs == list(j.resume_outputs) + reported
    return outs


# -- test_load_iterators_resume ----------------------------------------------------------------

RESUME_CASES = [
    pytest.param(
        [
            [
                V(b"k00", b"k00-100", 100),
                V(b"k01", b"k01-101", 101),
                V(b"k02", b"k02-102", 102),
                V(b"k03", b"k03-30", 30),
                V(b"k03", b"k03-20", 20),
                V(b"k04", b"k04-104", 104),
            ],
            [
                V(b"k05", b"k05-105", 105),
                V(b"k06", b"k06-106", 106),
                V(b"k07", b"k07-107", 107),
                V(b"k08", b"k08-108", 108),
                V(b"k09", b"k09-109", 109),
                V(b"k10", b"k10-110", 110),
            ],
        ],
        [],
        4096,
        67_108_864,
        3,
        None,
        [
            V(b"k03", b"k03-20", 20),
            V(b"k04", b"k04-104", 104),
            V(b"k05", b"k05-105", 105),
            V(b"k06", b"k06-106", 106),
            V(b"k07", b"k07-107", 107),
            V(b"k08", b"k08-108", 108),
            V(b"k09", b"k09-109", 109),
            V(b"k10", b"k10-110", 110),
        ],
        id="l0_only",
    ),
    pytest.param(
        [
            [
                V(b"k00", b"k00-100", 100),
                V(b"k01", b"k01-101", 101),
                V(b"k02", b"k02-102", 102),
                V(b"k03", b"k03-103", 103),
                V(b"k04", b"k04-104", 104),
                V(b"k05", b"k05-105", 105),
                V(b"k06", b"k06-106", 106),
                V(b"k07", b"k07-107", 107),
                V(b"k08", b"k08-80", 80),
                V(b"k08", b"k08-70", 70),
                V(b"k09", b"k09-109", 109),
                V(b"k10", b"k10-110", 110),
                V(b"k11", b"k11-111", 111),
                V(b"k12", b"k12-112", 112),
            ]
        ],
        [],
        128,
        1,
        9,
        None,
        [
            V(b"k09", b"k09-109", 109),
            V(b"k10", b"k10-110", 110),
            V(b"k11", b"k11-111", 111),
            V(b"k12", b"k12-112", 112),
        ],
        id="l0_only_multi_block",
    ),
    pytest.param(
        [],
        [
            [
                [
                    V(b"k00", b"k00-300", 300),
                    V(b"k01", b"k01-301", 301),
                    V(b"k02", b"k02-302", 302),
                    V(b"k03", b"k03-303", 303),
                    V(b"k03", b"k03-33", 33),
                    V(b"k04", b"k04-304", 304),
                    V(b"k05", b"k05-305", 305),
                ]
            ],
            [
                [
                    V(b"k06", b"k06-406", 406),
                    V(b"k07", b"k07-407", 407),
                    V(b"k08", b"k08-408", 408),
                    V(b"k09", b"k09-409", 409),
                    V(b"k10", b"k10-410", 410),
                    V(b"k11", b"k11-411", 411),
                ]
            ],
        ],
        4096,
        67_108_864,
        4,
        None,
        [
            V(b"k04", b"k04-304", 304),
            V(b"k05", b"k05-305", 305),
            V(b"k06", b"k06-406", 406),
            V(b"k07", b"k07-407", 407),
            V(b"k08", b"k08-408", 408),
            V(b"k09", b"k09-409", 409),
            V(b"k10", b"k10-410", 410),
            V(b"k11", b"k11-411", 411),
        ],
        id="sr_only",
    ),
    pytest.param(
        [
            [
                V(b"k00", b"k00-500", 500),
                V(b"k01", b"k01-501", 501),
                V(b"k02", b"k02-502", 502),
                V(b"k03", b"k03-503", 503),
                V(b"k04", b"k04-504", 504),
                V(b"k05", b"k05-90", 90),
                V(b"k05", b"k05-80", 80),
            ],
            [
                V(b"k06", b"k06-606", 606),
                V(b"k07", b"k07-607", 607),
                V(b"k08", b"k08-608", 608),
                V(b"k09", b"k09-609", 609),
                V(b"k10", b"k10-610", 610),
                V(b"k11", b"k11-611", 611),
            ],
        ],
        [
            [
                [
                    V(b"k12", b"k12-720", 720),
                    V(b"k13", b"k13-721", 721),
                    V(b"k14", b"k14-722", 722),
                    V(b"k15", b"k15-120", 120),
                    V(b"k15", b"k15-110", 110),
                    V(b"k16", b"k16-726", 726),
                    V(b"k17", b"k17-727", 727),
                ]
            ],
            [
                [
                    V(b"k18", b"k18-830", 830),
                    V(b"k19", b"k19-831", 831),
                    V(b"k20", b"k20-832", 832),
                    V(b"k21", b"k21-833", 833),
                    V(b"k22", b"k22-834", 834),
                    V(b"k23", b"k23-835", 835),
                ]
            ],
        ],
        4096,
        67_108_864,
        5,
        None,
        [
            V(b"k05", b"k05-80", 80),
            V(b"k06", b"k06-606", 606),
            V(b"k07", b"k07-607", 607),
            V(b"k08", b"k08-608", 608),
            V(b"k09", b"k09-609", 609),
            V(b"k10", b"k10-610", 610),
            V(b"k11", b"k11-611", 611),
            V(b"k12", b"k12-720", 720),
            V(b"k13", b"k13-721", 721),
            V(b"k14", b"k14-722", 722),
            V(b"k15", b"k15-120", 120),
            V(b"k15", b"k15-110", 110),
            V(b"k16", b"k16-726", 726),
            V(b"k17", b"k17-727", 727),
            V(b"k18", b"k18-830", 830),
            V(b"k19", b"k19-831", 831),
            V(b"k20", b"k20-832", 832),
            V(b"k21", b"k21-833", 833),
            V(b"k22", b"k22-834", 834),
            V(b"k23", b"k23-835", 835),
        ],
        id="l0_and_sr",
    ),
    pytest.param(
        [
            [
                V(b"k00", b"k00-900", 900),
                V(b"k01", b"k01-901", 901),
                V(b"k02", b"k02-902", 902),
                V(b"k03", b"k03-903", 903),
                V(b"k04", b"k04-904", 904),
                V(b"k05", b"k05-905", 905),
            ],
            [
                V(b"k02", b"k02-920", 920),
                V(b"k03", b"k03-921", 921),
                V(b"k04", b"k04-922", 922),
                V(b"k06", b"k06-923", 923),
                V(b"k07", b"k07-924", 924),
            ],
        ],
        [
            [
                [
                    V(b"k01", b"k01-800", 800),
                    V(b"k03", b"k03-801", 801),
                    V(b"k05", b"k05-802", 802),
                    V(b"k08", b"k08-803", 803),
                    V(b"k09", b"k09-804", 804),
                ]
            ],
            [
                [
                    V(b"k02", b"k02-850", 850),
                    V(b"k04", b"k04-851", 851),
                    V(b"k05", b"k05-852", 852),
                    V(b"k07", b"k07-853", 853),
                    V(b"k10", b"k10-854", 854),
                ]
            ],
        ],
        4096,
        67_108_864,
        7,
        None,
        [
            V(b"k03", b"k03-801", 801),
            V(b"k04", b"k04-922", 922),
            V(b"k04", b"k04-904", 904),
            V(b"k04", b"k04-851", 851),
            V(b"k05", b"k05-905", 905),
            V(b"k05", b"k05-852", 852),
            V(b"k05", b"k05-802", 802),
            V(b"k06", b"k06-923", 923),
            V(b"k07", b"k07-924", 924),
            V(b"k07", b"k07-853", 853),
            V(b"k08", b"k08-803", 803),
            V(b"k09", b"k09-804", 804),
            V(b"k10", b"k10-854", 854),
        ],
        id="l0_and_sr_overlap",
    ),
    pytest.param(
        [
            [
                V(b"k00", b"k00-100", 100),
                V(b"k01", b"k01-101", 101),
                T(b"k02", 105),
                V(b"k02", b"k02-103", 103),
                V(b"k03", b"k03-106", 106),
            ]
        ],
        [[[V(b"k01", b"k01-90", 90), V(b"k02", b"k02-95", 95), V(b"k04", b"k04-107", 107)]]],
        4096,
        67_108_864,
        3,
        None,
        [
            V(b"k02", b"k02-103", 103),
            V(b"k02", b"k02-95", 95),
            V(b"k03", b"k03-106", 106),
            V(b"k04", b"k04-107", 107),
        ],
        id="tombstones_resume",
    ),
    pytest.param(
        [
            [V(b"k00", b"k00-10", 10), V(b"k02", b"k02-25", 25), V(b"k02", b"k02-20", 20)],
            [V(b"k01", b"k01-30", 30), V(b"k03", b"k03-40", 40)],
        ],
        [[[V(b"k01", b"k01-15", 15), V(b"k02", b"k02-22", 22), V(b"k04", b"k04-50", 50)]]],
        4096,
        67_108_864,
        None,
        None,
        [
            V(b"k00", b"k00-10", 10),
            V(b"k01", b"k01-30", 30),
            V(b"k01", b"k01-15", 15),
            V(b"k02", b"k02-25", 25),
            V(b"k02", b"k02-22", 22),
            V(b"k02", b"k02-20", 20),
            V(b"k03", b"k03-40", 40),
            V(b"k04", b"k04-50", 50),
        ],
        id="no_output_ssts",
    ),
    pytest.param(
        [[V(b"k00", b"k00-10", 10), V(b"k01", b"k01-11", 11)]],
        [],
        4096,
        67_108_864,
        1,
        None,
        [],
        id="resume_at_end",
    ),
    pytest.param(
        [
            [
                V(b"k00", b"k00-100", 100),
                M(b"k01", b"b", 5),
                M(b"k02", b"y", 6),
                V(b"k03", b"k03-103", 103),
            ]
        ],
        [[[M(b"k01", b"a", 4), V(b"k01", b"base", 3), M(b"k02", b"x", 4), V(b"k02", b"base2", 2)]]],
        4096,
        67_108_864,
        0,
        ConcatMergeOperator(),
        [V(b"k01", b"baseab", 5), V(b"k02", b"base2xy", 6), V(b"k03", b"k03-103", 103)],
        id="merge_operator_resume",
    ),
    pytest.param(
        [[M(b"k00", b"10", 10), M(b"k00", b"4", 4), M(b"k00", b"1", 1), V(b"k01", b"k01-5", 5)]],
        [],
        4096,
        67_108_864,
        0,
        ConcatMergeOperator(),
        [V(b"k01", b"k01-5", 5)],
        id="merge_operator_resume_skip_merged_operands",
    ),
]


@pytest.mark.parametrize(
    (
        "l0_sets",
        "sr_sets",
        "block_size",
        "output_max_sst_size",
        "resume_index",
        "merge_operator",
        "expected",
    ),
    RESUME_CASES,
)
def test_load_iterators_resume(
    l0_sets: list[list[Row]],
    sr_sets: list[list[list[Row]]],
    block_size: int,
    output_max_sst_size: int,
    resume_index: int | None,
    merge_operator: Any,
    expected: list[Row],
) -> None:
    store = MemoryStore()
    all_rows: list[Row] = []
    l0: list[SstView] = []
    for rows in l0_sets:
        l0 += [identity(s) for s in write_ssts(store, rows, float("inf"), block_size)]
        all_rows += rows
    runs: list[SortedRun] = []
    for sr_id, sst_sets in enumerate(sr_sets):
        views: list[SstView] = []
        for rows in sst_sets:
            views += [identity(s) for s in write_ssts(store, rows, float("inf"), block_size)]
            all_rows += rows
        runs.append(SortedRun(sr_id, views))
    sorted_rows = ordered(all_rows)
    resume: list[CompactedSst] = []
    if resume_index is not None:
        assert resume_index < len(sorted_rows)
        resume = write_ssts(store, sorted_rows[: resume_index + 1], output_max_sst_size, block_size)
    min_seq = None if merge_operator is not None else 0
    j = job(l0, runs, resume=resume, min_seq=min_seq)
    ex = make_executor(store, block_size=block_size, merge_operator=merge_operator)
    assert list(ex.iter_rows(j)) == expected
    # and execute writes exactly those rows after the resumed outputs
    outs = run(ex, j)
    assert outs[: len(resume)] == resume
    assert read_rows(store, outs[len(resume) :]) == expected


# -- test_execute_compaction_job_resume_matches_full ----------------------------------------

KEY_SIZE = 4
VALUE_SIZE = 6
MAX_SEQ = 2000
MAX_ENTRY_SET_LEN = 64
MAX_SST_SIZE = 128
BLOCK_SIZE = 64

value_strategy = st.one_of(
    st.binary(min_size=1, max_size=VALUE_SIZE).map(lambda v: (VALUE, v)),
    st.binary(min_size=1, max_size=VALUE_SIZE).map(lambda v: (MERGE, v)),
    st.just((TOMBSTONE, b"")),
)
entry_set_strategy = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=KEY_SIZE), st.integers(0, MAX_SEQ - 1), value_strategy
    ),
    min_size=1,
    max_size=MAX_ENTRY_SET_LEN,
)


def build_row_entries(specs: list[tuple[bytes, int, tuple[int, bytes]]]) -> list[Row]:
    """SlateDB's ``build_row_entries``: sorted key asc, seq desc (one row per (key, seq))."""
    rows: dict[tuple[bytes, int], Row] = {}
    for key, seq, (kind, value) in specs:
        rows.setdefault((key, seq), Row(key, seq, kind, value, None, None))
    return ordered(list(rows.values()))


@settings(max_examples=256, deadline=None)
@given(
    l0_specs=st.lists(entry_set_strategy, min_size=1, max_size=3),
    sr_specs=st.lists(entry_set_strategy, min_size=0, max_size=3),
    resume_points=st.lists(st.integers(0, 15), min_size=1, max_size=3),
)
def test_execute_compaction_job_resume_matches_full(
    l0_specs: list[Any], sr_specs: list[Any], resume_points: list[int]
) -> None:
    store = MemoryStore()
    l0_sets = [build_row_entries(s) for s in l0_specs]
    sr_sets = [build_row_entries(s) for s in sr_specs]
    has_merge = any(r.kind == MERGE for rows in l0_sets + sr_sets for r in rows)
    merge_operator = ConcatMergeOperator() if has_merge else None
    min_seq = None if has_merge else 0
    ex = make_executor(
        store, block_size=BLOCK_SIZE, max_sst_size=MAX_SST_SIZE, merge_operator=merge_operator
    )
    l0 = [
        identity(s) for rows in l0_sets for s in write_ssts(store, rows, float("inf"), BLOCK_SIZE)
    ]
    runs = [
        SortedRun(i, [identity(s) for s in write_ssts(store, rows, float("inf"), BLOCK_SIZE)])
        for i, rows in enumerate(sr_sets)
    ]
    full = run(ex, job(l0, runs, min_seq=min_seq))
    expected = read_rows(store, full)
    assert expected
    for resume_index in sorted({p % len(expected) for p in resume_points}):
        prefix = write_ssts(store, expected[: resume_index + 1], MAX_SST_SIZE, BLOCK_SIZE)
        resumed = run(ex, job(l0, runs, resume=prefix, min_seq=min_seq))
        assert read_rows(store, resumed) == expected


@settings(max_examples=100, deadline=None)
@given(
    sets=st.lists(entry_set_strategy, min_size=1, max_size=4),
    expiries=st.lists(st.one_of(st.none(), st.integers(0, 20)), min_size=1, max_size=8),
    last_run=st.booleans(),
    min_seq=st.one_of(st.none(), st.integers(0, MAX_SEQ)),
    tick=st.integers(0, 20),
    data=st.data(),
)
def test_resume_matches_full_with_any_retention(
    sets: list[Any],
    expiries: list[int | None],
    last_run: bool,
    min_seq: int | None,
    tick: int,
    data: st.DataObject,
) -> None:
    """The resume property also holds with snapshots, expiry and tombstone dropping."""
    store = MemoryStore()
    row_sets = []
    for specs in sets:
        rows = build_row_entries(specs)
        row_sets.append(
            [
                r if r.kind == TOMBSTONE else r._replace(expire_ts=expiries[i % len(expiries)])
                for i, r in enumerate(rows)
            ]
        )
    ex = make_executor(
        store,
        block_size=BLOCK_SIZE,
        max_sst_size=MAX_SST_SIZE,
        merge_operator=ConcatMergeOperator(),
    )
    views = [
        identity(s) for rows in row_sets for s in write_ssts(store, rows, float("inf"), BLOCK_SIZE)
    ]
    split = data.draw(st.integers(0, len(views)))
    l0, runs = views[:split], [SortedRun(i, [v]) for i, v in enumerate(views[split:])]
    full = run(ex, job(l0, runs, min_seq=min_seq, tick=tick, last_run=last_run))
    expected = read_rows(store, full)
    if not expected:
        return
    i = data.draw(st.integers(0, len(expected) - 1))
    prefix = write_ssts(store, expected[: i + 1], MAX_SST_SIZE, BLOCK_SIZE)
    resumed = run(ex, job(l0, runs, resume=prefix, min_seq=min_seq, tick=tick, last_run=last_run))
    assert read_rows(store, resumed) == expected


# -- merges, filters ---------------------------------------------------------------------------


def test_compaction_job_should_retain_merges_newer_than_retention_min_seq_num() -> None:
    store = MemoryStore()
    [sst] = write_ssts(
        store,
        [M(b"foo", b"3", 4), M(b"foo", b"2", 3), M(b"foo", b"1", 2), M(b"foo", b"0", 1)],
        float("inf"),
    )
    retention_min_seq = 2
    ex = make_executor(store, merge_operator=ConcatMergeOperator())
    outs = run(ex, job([identity(sst)], [], min_seq=retention_min_seq))
    assert len(outs) == 1
    assert read_rows(store, outs) == [
        M(b"foo", b"3", retention_min_seq + 2),
        M(b"foo", b"2", retention_min_seq + 1),
        M(b"foo", b"01", retention_min_seq),
    ]


class TestFilter:
    """Keep / Drop / Modify(value) / Modify(tombstone) by key prefix."""

    __test__ = False

    def __init__(self) -> None:
        self.ended = 0
        self.seen = 0

    def filter(self, entry: Row) -> Any:
        self.seen += 1
        if entry.key.startswith(b"drop:"):
            return DROP
        if entry.key.startswith(b"modify:"):
            if entry.kind == TOMBSTONE:
                return KEEP
            return modify_value(entry.value + b"_modified")
        if entry.key.startswith(b"tombstone:"):
            return modify_tombstone()
        return KEEP

    def on_compaction_end(self) -> None:
        self.ended += 1


class Supplier:
    def __init__(self, make: Any) -> None:
        self.make = make
        self.contexts: list[CompactionJobContext] = []
        self.made: list[Any] = []

    def create_compaction_filter(self, context: CompactionJobContext) -> Any:
        self.contexts.append(context)
        f = self.make()
        self.made.append(f)
        return f


def test_compaction_job_with_filter_success() -> None:
    store = MemoryStore()
    rows = [
        V(b"drop:key1", b"value1", 1),
        V(b"drop:key2", b"value2", 2),
        V(b"keep:key3", b"value3", 3),
        V(b"keep:key4", b"value4", 4),
        V(b"modify:key5", b"value5", 5),
        V(b"modify:key6", b"value6", 6),
        V(b"tombstone:key7", b"value7", 7),
        V(b"tombstone:key8", b"value8", 8),
    ]
    [sst] = write_ssts(store, rows, float("inf"))
    supplier = Supplier(TestFilter)
    ex = make_executor(store, filter_supplier=supplier)
    outs = run(ex, job([identity(sst)], [], last_run=True, min_seq=None, destination=7, tick=42))
    assert len(outs) == 1
    assert read_rows(store, outs) == [
        V(b"keep:key3", b"value3", 3),
        V(b"keep:key4", b"value4", 4),
        V(b"modify:key5", b"value5_modified", 5),
        V(b"modify:key6", b"value6_modified", 6),
        T(b"tombstone:key7", 7),
        T(b"tombstone:key8", 8),
    ]
    assert supplier.contexts == [CompactionJobContext(7, True, 42, None)]
    assert supplier.made[0].ended == 1
    assert supplier.made[0].seen == 8


def test_compaction_job_aborts_on_filter_creation_error() -> None:
    store = MemoryStore()
    [sst] = write_ssts(store, [V(b"key1", b"value1", 1)], float("inf"))

    class FailingFilterSupplier:
        def create_compaction_filter(self, context: CompactionJobContext) -> Any:
            raise RuntimeError("intentional failure")

    ex = make_executor(store, filter_supplier=FailingFilterSupplier())
    before = set(store._objects)
    reported: list[CompactedSst] = []
    with pytest.raises(CompactionFilterError) as info:
        ex.execute(job([identity(sst)], [], last_run=True, min_seq=None), on_output=reported.append)
    assert info.value.stage == "create"
    assert reported == [] and set(store._objects) == before


def test_compaction_job_aborts_on_compaction_end_error() -> None:
    store = MemoryStore()
    [sst] = write_ssts(store, [V(b"key1", b"value1", 1)], float("inf"))

    class FailOnEndFilter:
        def filter(self, entry: Row) -> Any:
            return KEEP

        def on_compaction_end(self) -> None:
            raise RuntimeError("intentional failure on compaction end")

    ex = make_executor(store, filter_supplier=Supplier(FailOnEndFilter))
    reported: list[CompactedSst] = []
    with pytest.raises(CompactionFilterError) as info:
        ex.execute(job([identity(sst)], [], last_run=True, min_seq=None), on_output=reported.append)
    assert info.value.stage == "end"
    assert reported == []  # the last output is not uploaded


def test_filter_error_during_rows_aborts() -> None:
    store = MemoryStore()
    [sst] = write_ssts(store, [V(b"a", b"1", 1), V(b"b", b"2", 2)], float("inf"))

    class Boom:
        def filter(self, entry: Row) -> Any:
            if entry.key == b"b":
                raise KeyError("boom")
            return KEEP

        def on_compaction_end(self) -> None:  # pragma: no cover - never reached
            raise AssertionError("must not be called after an error")

    ex = make_executor(store, filter_supplier=Supplier(Boom))
    with pytest.raises(CompactionFilterError) as info:
        ex.execute(job([identity(sst)], []), on_output=lambda s: None)
    assert info.value.stage == "filter"


def test_resumed_filter_sees_only_unwritten_rows() -> None:
    store = MemoryStore()
    rows = [V(b"k%02d" % i, b"v", 100 + i) for i in range(10)]
    [sst] = write_ssts(store, rows, float("inf"))
    prefix = write_ssts(store, rows[:4], float("inf"))
    supplier = Supplier(TestFilter)
    ex = make_executor(store, filter_supplier=supplier)
    outs = run(ex, job([identity(sst)], [], resume=prefix))
    assert read_rows(store, outs) == rows
    assert supplier.made[0].seen == 6


# -- output splitting ------------------------------------------------------------------------


def test_outputs_split_like_slatedb_writer() -> None:
    store = MemoryStore()
    rows = [V(b"key%05d" % i, bytes([i % 251]) * 100, i + 1) for i in range(2000)]
    [sst] = write_ssts(store, rows, float("inf"), 1024)
    max_size = 20_000
    ex = make_executor(store, block_size=1024, max_sst_size=max_size)
    outs = run(ex, job([identity(sst)], []))
    assert len(outs) > 5
    assert read_rows(store, outs) == rows
    # the same boundaries as SlateDB's accounting (finished-block bytes > max_sst_size)
    reference = write_ssts(MemoryStore(), rows, max_size, 1024)
    assert [o.info.first_entry for o in outs] == [r.info.first_entry for r in reference]
    assert [o.info.last_entry for o in outs] == [r.info.last_entry for r in reference]
    for o in outs[:-1]:
        table = SsTable.open(store, compacted_path(ROOT, o.id))
        assert len(table.read_block(table.block_count - 1)) == 1  # the row that tipped it
        assert table.info.filter_offset > max_size
    for o in outs:  # the reported info is the file's
        assert SsTable.open(store, compacted_path(ROOT, o.id)).info == o.info


def test_outputs_get_filters_and_settings() -> None:
    store = MemoryStore()
    rows = [V(b"key%05d" % i, b"v", i + 1) for i in range(1500)]
    [sst] = write_ssts(store, rows, float("inf"))
    ex = make_executor(store)
    [out] = run(ex, job([identity(sst)], []))
    table = SsTable.open(store, compacted_path(ROOT, out.id))
    assert table.filter_names == ["_bf"]  # >= min_filter_keys rows
    assert table.may_contain(b"key00042")


def test_empty_result_writes_nothing() -> None:
    store = MemoryStore()
    [sst] = write_ssts(store, [T(b"a", 2), T(b"b", 1)], float("inf"))
    ex = make_executor(store)
    assert run(ex, job([identity(sst)], [], last_run=True, min_seq=None)) == []
    assert run(ex, job([], [])) == []


# -- sources ---------------------------------------------------------------------------------


def test_sorted_run_of_many_ssts_and_l0_precedence() -> None:
    store = MemoryStore()
    run_rows = [V(b"k%03d" % i, b"old", 10) for i in range(300)]
    run_ssts = write_ssts(store, run_rows, 500, 1024)
    assert len(run_ssts) > 3
    newer = [V(b"k%03d" % i, b"new", 20) for i in range(0, 300, 7)]
    [l0] = write_ssts(store, newer, float("inf"))
    ex = make_executor(store)
    outs = run(
        ex, job([identity(l0)], [SortedRun(1, [identity(s) for s in run_ssts])], min_seq=None)
    )
    got = read_rows(store, outs)
    assert got == [
        V(b"k%03d" % i, b"new" if i % 7 == 0 else b"old", 20 if i % 7 == 0 else 10)
        for i in range(300)
    ]
    # older runs lose ties on (key, seq) only after newer ones: L0 first, then runs in order
    assert len(got) == 300


def test_visible_ranges_are_honoured() -> None:
    store = MemoryStore()
    rows = [V(b"k%d" % i, b"v", i + 1) for i in range(10)]
    [sst] = write_ssts(store, rows, float("inf"))
    cases = [
        (BytesRange(Bound(BOUND_INCLUDED, b"k2"), Bound(BOUND_EXCLUDED, b"k5")), rows[2:5]),
        (BytesRange(Bound(BOUND_EXCLUDED, b"k2"), Bound(BOUND_INCLUDED, b"k5")), rows[3:6]),
        (BytesRange(Bound(BOUND_UNBOUNDED, None), Bound(BOUND_EXCLUDED, b"k3")), rows[:3]),
        (BytesRange(Bound(BOUND_INCLUDED, b"k7"), Bound(BOUND_UNBOUNDED, None)), rows[7:]),
        (BytesRange(Bound(BOUND_INCLUDED, b"k5"), Bound(BOUND_EXCLUDED, b"k5")), []),
        (BytesRange(Bound(BOUND_INCLUDED, b"z"), Bound(BOUND_UNBOUNDED, None)), []),
    ]
    ex = make_executor(store)
    for rng, expected in cases:
        got = list(ex.iter_rows(job([identity(sst, rng)], [])))
        assert got == expected, rng
    # views of one SST split across a sorted run
    left = identity(sst, BytesRange(Bound(BOUND_UNBOUNDED, None), Bound(BOUND_EXCLUDED, b"k4")))
    right = SstView(
        Ulid.new(1, _rand),
        sst,
        BytesRange(Bound(BOUND_INCLUDED, b"k4"), Bound(BOUND_UNBOUNDED, None)),
    )
    assert list(ex.iter_rows(job([], [SortedRun(0, [left, right])]))) == rows


def test_resume_skips_whole_ssts_and_counts_them() -> None:
    store = MemoryStore()
    rows = [V(b"k%04d" % i, b"x" * 50, i + 1) for i in range(1000)]
    ssts = write_ssts(store, rows, 4000, 1024)
    views = [identity(s) for s in ssts]
    ex = make_executor(store, block_size=1024)
    prefix = write_ssts(store, rows[:800], float("inf"), 1024)
    progress: list[int] = []
    outs = run(ex, job([], [SortedRun(0, views)], resume=prefix), on_progress=progress.append)
    assert read_rows(store, outs) == rows
    full: list[int] = []
    run(ex, job([], [SortedRun(0, views)]), on_progress=full.append)
    # the resumed job starts its count with the SSTs wholly before the resume key
    assert progress[-1] >= 0.6 * full[-1]


def test_merge_without_operator_is_invalid() -> None:
    store = MemoryStore()
    [sst] = write_ssts(store, [V(b"a", b"1", 1), M(b"b", b"x", 2)], float("inf"))
    ex = make_executor(store)
    with pytest.raises(InvalidError, match="merge operator missing"):
        ex.execute(job([identity(sst)], []), on_output=lambda s: None)


def test_merge_operator_from_settings() -> None:
    store = MemoryStore()
    [sst] = write_ssts(store, [M(b"a", b"2", 2), M(b"a", b"1", 1)], float("inf"))
    s = dataclasses.replace(make_settings(), merge_operator="concat")
    ex = CompactionExecutor(store, ROOT, settings=s, filter_supplier=NoFilters())
    outs = run(ex, job([identity(sst)], [], min_seq=None))
    assert read_rows(store, outs) == [M(b"a", b"12", 2)]
    with pytest.raises(InvalidError):
        CompactionExecutor(store, ROOT, settings=dataclasses.replace(s, merge_operator="nope"))


def test_expiry_and_tombstones() -> None:
    store = MemoryStore()
    rows = [
        V(b"a", b"x", 3, expire=100, create=1),
        V(b"b", b"y", 4, expire=101),
        T(b"c", 5),
        V(b"c", b"old", 1),
    ]
    [sst] = write_ssts(store, rows, float("inf"))
    ex = make_executor(store)
    outs = run(ex, job([identity(sst)], [], min_seq=None, tick=100))
    assert read_rows(store, outs) == [
        Row(b"a", 3, TOMBSTONE, b"", None, 1),
        V(b"b", b"y", 4, expire=101),
        T(b"c", 5),
    ]
    outs = run(ex, job([identity(sst)], [], min_seq=None, tick=100, last_run=True))
    assert read_rows(store, outs) == [V(b"b", b"y", 4, expire=101)]


def test_last_written_key_and_seq() -> None:
    store = MemoryStore()
    [sst] = write_ssts(store, [V(b"a", b"1", 5), V(b"b", b"2", 4), V(b"b", b"3", 2)], float("inf"))
    assert last_written_key_and_seq(store, ROOT, sst) == (b"b", 2)


# -- stop and progress -----------------------------------------------------------------------


def test_stop_before_start_and_mid_job_then_resume() -> None:
    store = MemoryStore()
    rows = [V(b"key%05d" % i, b"v" * 200, i + 1) for i in range(3000)]
    [sst] = write_ssts(store, rows, float("inf"), 1024)
    ex = make_executor(store, block_size=1024, max_sst_size=50_000)
    stop = threading.Event()
    stop.set()
    with pytest.raises(CompactionStopped):
        ex.execute(job([identity(sst)], []), on_output=lambda s: None, stop=stop)

    stop = threading.Event()
    reported: list[CompactedSst] = []

    def on_output(s: CompactedSst) -> None:
        reported.append(s)
        if len(reported) == 2:
            stop.set()

    with pytest.raises(CompactionStopped):
        ex.execute(job([identity(sst)], []), on_output=on_output, stop=stop)
    assert len(reported) == 2
    outs = run(ex, job([identity(sst)], [], resume=reported))
    assert read_rows(store, outs) == rows


def test_progress_reports_bytes() -> None:
    store = MemoryStore()
    rows = [V(b"key%05d" % i, b"v" * 200, i + 1) for i in range(2000)]
    ssts = write_ssts(store, rows, 100_000, 1024)
    total = sum(store.head(compacted_path(ROOT, s.id)).size for s in ssts)
    ex = make_executor(store, block_size=1024, max_sst_size=100_000)
    progress: list[int] = []
    outs = run(
        ex, job([], [SortedRun(0, [identity(s) for s in ssts])]), on_progress=progress.append
    )
    assert len(progress) >= len(outs)
    assert progress == sorted(progress)
    assert 0.9 * total <= progress[-1] <= 1.5 * total


def test_read_ahead_with_slow_store_and_small_windows() -> None:
    # many windows per SST: the read-ahead queue must stitch reads across window edges
    store = MemoryStore()
    rows = [V(b"key%05d" % i, bytes([i % 256]) * 333, i + 1) for i in range(3000)]
    [a] = write_ssts(store, rows[::2], float("inf"), 1024)
    [b] = write_ssts(store, rows[1::2], float("inf"), 1024)
    ex = make_executor(store, block_size=1024)
    import shale_compactor.executor as E

    old = E.BLOCKS_PER_FETCH
    E.BLOCKS_PER_FETCH = 3  # windows of 3 KiB: blocks straddle window boundaries
    try:
        assert list(ex.iter_rows(job([identity(a), identity(b)], []))) == rows
    finally:
        E.BLOCKS_PER_FETCH = old


class XorTransformer:
    """A reversible block transform (stands in for encryption)."""

    def encode(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    def decode(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)


@pytest.mark.parametrize("codec", [None, "zlib"])
def test_compression_and_transformer(codec: str | None) -> None:
    store = MemoryStore()
    t = XorTransformer()
    rows = [V(b"key%04d" % i, b"value" * 20, i + 1) for i in range(500)]
    builder = SstBuilder(compression=codec, transformer=t)
    builder.add_rows(rows)
    src = upload(store, builder)
    s = dataclasses.replace(make_settings(), compression_codec=codec)
    ex = CompactionExecutor(store, ROOT, settings=s, filter_supplier=NoFilters(), transformer=t)
    outs = run(ex, job([identity(src)], [], resume=[]))
    table = SsTable.open(store, compacted_path(ROOT, outs[0].id), transformer=t)
    assert [Row(*r) for r in table.rows()] == rows
    assert table.compression == outs[0].info.compression_format
    with pytest.raises(Exception):  # noqa: B017 - unreadable without the transformer
        SsTable.open(store, compacted_path(ROOT, outs[0].id)).rows()
    # resume reads the last output through the transformer too
    builder = SstBuilder(compression=codec, transformer=t)
    builder.add_rows(rows[:100])
    prefix = upload(store, builder)
    assert list(ex.iter_rows(job([identity(src)], [], resume=[prefix]))) == rows[100:]


def test_components_are_checked_when_the_executor_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing codec library or a broken merge operator fails here, not in every job."""
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)
    zstd = dataclasses.replace(make_settings(), compression_codec="zstd")
    with pytest.raises(InvalidError, match="zstd"):
        CompactionExecutor(MemoryStore(), ROOT, settings=zstd, filter_supplier=NoFilters())
    with pytest.raises(InvalidError, match="merge"):
        make_executor(MemoryStore(), merge_operator=object())


def _copy_into(src: MemoryStore, dst: Any) -> None:
    for meta in src.list(""):
        dst.put(meta.key, src.get(meta.key))


def _output_bytes(store: Any, outs: list[CompactedSst]) -> list[bytes]:
    return [store.get(compacted_path(ROOT, o.id)) for o in outs]


def test_streamed_outputs_equal_put_outputs(tmp_path: Any) -> None:
    """A store with ``open_writer`` (the local store) gets the outputs streamed while they are
    built; the files are byte for byte what a store without it gets through ``put``, split at
    the same rows, and no staging file is left behind."""
    from shale.objstore.local import LocalStore

    mem = MemoryStore()
    rows = [V(b"key%05d" % i, bytes([i % 251]) * 300, i + 1) for i in range(4000)]
    [sst] = write_ssts(mem, rows, float("inf"), 1024)
    local = LocalStore(str(tmp_path / "store"))
    _copy_into(mem, local)
    outs = {}
    for name, store in (("mem", mem), ("local", local)):
        ex = make_executor(store, block_size=1024, max_sst_size=200_000)
        outs[name] = run(ex, job([identity(sst)], []))
    assert len(outs["mem"]) > 3
    assert _output_bytes(mem, outs["mem"]) == _output_bytes(local, outs["local"])
    assert read_rows(local, outs["local"]) == rows
    staged = [p for p in (tmp_path / "store").rglob("*") if p.name.startswith(".tmp-")]
    assert staged == []


def test_stopped_streamed_output_leaves_no_file(tmp_path: Any) -> None:
    """A job stopped in the middle of a streamed output removes its staging file; the outputs
    reported before are complete and a resume finishes the job."""
    from shale.objstore.local import LocalStore

    mem = MemoryStore()
    rows = [V(b"key%05d" % i, b"v" * 200, i + 1) for i in range(3000)]
    [sst] = write_ssts(mem, rows, float("inf"), 1024)
    store = LocalStore(str(tmp_path / "store"))
    _copy_into(mem, store)
    ex = make_executor(store, block_size=1024, max_sst_size=50_000)
    stop = threading.Event()
    reported: list[CompactedSst] = []

    def on_output(s: CompactedSst) -> None:
        reported.append(s)
        if len(reported) == 2:
            stop.set()

    with pytest.raises(CompactionStopped):
        ex.execute(job([identity(sst)], []), on_output=on_output, stop=stop)
    assert not [p for p in (tmp_path / "store").rglob("*") if p.name.startswith(".tmp-")]
    outs = run(ex, job([identity(sst)], [], resume=reported))
    assert read_rows(store, outs) == rows
