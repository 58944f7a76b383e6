"""Retention, merge-operand folding and resume skipping (shale_compactor.retention).

Ports SlateDB 0.12.1's ``retention_iterator.rs`` tests (``test_retention_iterator_table_driven``,
``test_retention_uses_sequence_tracker_timestamp``, and the ``RetentionBuffer`` grouping cases
as stream tests of :func:`retain`) and ``merge_operator.rs``'s ``MergeOperatorIterator`` tests.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale.errors import DataError, InvalidError
from shale.merge_operators import ConcatMergeOperator
from shale.meta.seq_tracker import SequenceTracker
from shale.row import MERGE, TOMBSTONE, VALUE, Row
from shale_compactor.retention import (
    MERGE_BATCH_SIZE,
    apply_retention,
    compaction_rows,
    merge_operands,
    retain,
    skip_written,
)


def V(
    key: bytes, value: bytes, seq: int, *, create: int | None = None, expire: int | None = None
) -> Row:
    return Row(key, seq, VALUE, value, expire, create)


def T(key: bytes, seq: int, *, create: int | None = None, expire: int | None = None) -> Row:
    return Row(key, seq, TOMBSTONE, b"", expire, create)


def M(
    key: bytes, value: bytes, seq: int, *, create: int | None = None, expire: int | None = None
) -> Row:
    return Row(key, seq, MERGE, value, expire, create)


def ordered(rows: list[Row]) -> list[Row]:
    """Compacted order: key ascending, seq descending."""
    return sorted(rows, key=lambda r: (r[0], -r[1]))


# -- apply_retention: SlateDB's test_retention_iterator_table_driven ---------------------------

HOUR_MS = 3_600_000

RETENTION_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "empty_iterator",
        dict(input=[], timeout=HOUR_MS, min_seq=None, expected=[], filter_tombstone=False),
    ),
    (
        "single_entry_within_retention",
        dict(
            input=[V(b"key1", b"value1", 1, create=950)],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[V(b"key1", b"value1", 1, create=950)],
            filter_tombstone=False,
        ),
    ),
    (
        "single_entry_outside_retention",
        dict(
            input=[V(b"key1", b"value1", 1, create=500)],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[V(b"key1", b"value1", 1, create=500)],
            filter_tombstone=False,
        ),
    ),
    (
        "multiple_versions_same_key_within_retention",
        dict(
            input=[
                V(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=900),
                V(b"key1", b"value1", 1, create=850),
            ],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[
                V(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=900),
                V(b"key1", b"value1", 1, create=850),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "multiple_versions_same_key_mixed_retention",
        dict(
            input=[
                V(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=500),
                V(b"key1", b"value1", 1, create=850),
            ],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[
                V(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=500),
                V(b"key1", b"value1", 1, create=850),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "tombstone_entries",
        dict(
            input=[
                T(b"key1", 3, create=950),
                V(b"key1", b"value2", 2, create=500),
                V(b"key1", b"value1", 1, create=850),
            ],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[
                T(b"key1", 3, create=950),
                V(b"key1", b"value2", 2, create=500),
                V(b"key1", b"value1", 1, create=850),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "merge_entries",
        dict(
            input=[
                M(b"key1", b"merge3", 3, create=950),
                M(b"key1", b"merge2", 2, create=500),
                V(b"key1", b"value1", 1, create=850),
            ],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[
                M(b"key1", b"merge3", 3, create=950),
                M(b"key1", b"merge2", 2, create=500),
                V(b"key1", b"value1", 1, create=850),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "zero_retention_time",
        dict(
            input=[
                V(b"key1", b"value3", 3, create=1000),
                V(b"key1", b"value2", 2, create=999),
                V(b"key1", b"value1", 1, create=998),
            ],
            timeout=0,
            min_seq=None,
            expected=[V(b"key1", b"value3", 3, create=1000)],
            filter_tombstone=False,
        ),
    ),
    (
        "very_long_retention_time",
        dict(
            input=[
                V(b"key1", b"value3", 3, create=100),
                V(b"key1", b"value2", 2, create=50),
                V(b"key1", b"value1", 1, create=10),
            ],
            timeout=1_000_000,
            min_seq=None,
            expected=[
                V(b"key1", b"value3", 3, create=100),
                V(b"key1", b"value2", 2, create=50),
                V(b"key1", b"value1", 1, create=10),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "expired_entry_converted_to_tombstone",
        dict(
            input=[V(b"key1", b"value1", 1, create=950, expire=900)],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[T(b"key1", 1, create=950)],
            filter_tombstone=False,
        ),
    ),
    (
        "mixed_expired_and_not_expired_entries",
        dict(
            input=[
                V(b"key1", b"value3", 3, create=950, expire=1100),
                V(b"key1", b"value2", 2, create=900, expire=950),
                V(b"key1", b"value1", 1, create=850, expire=1200),
            ],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[
                V(b"key1", b"value3", 3, create=950, expire=1100),
                T(b"key1", 2, create=900),
                V(b"key1", b"value1", 1, create=850, expire=1200),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "expire_ts_equals_compaction_start_ts",
        dict(
            input=[V(b"key1", b"value1", 1, create=950, expire=1000)],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[T(b"key1", 1, create=950)],
            filter_tombstone=False,
        ),
    ),
    (
        "retention_min_seq_basic",
        dict(
            input=[
                V(b"key1", b"value3", 30, create=950),
                V(b"key1", b"value2", 20, create=900),
                V(b"key1", b"value1", 10, create=850),
            ],
            timeout=None,
            min_seq=25,
            expected=[V(b"key1", b"value3", 30, create=950), V(b"key1", b"value2", 20, create=900)],
            filter_tombstone=False,
        ),
    ),
    (
        "retention_min_seq_with_timeout",
        dict(
            input=[
                V(b"key1", b"value3", 30, create=950),
                V(b"key1", b"value2", 20, create=900),
                V(b"key1", b"value1", 10, create=850),
            ],
            timeout=HOUR_MS,
            min_seq=25,
            expected=[
                V(b"key1", b"value3", 30, create=950),
                V(b"key1", b"value2", 20, create=900),
                V(b"key1", b"value1", 10, create=850),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "expired_entry_converted_to_tombstone_filter_tombstone_true",
        dict(
            input=[V(b"key1", b"value1", 1, create=950, expire=900)],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[],
            filter_tombstone=True,
        ),
    ),
    (
        "tombstone_tail_filtered_out",
        dict(
            input=[
                V(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=900),
                T(b"key1", 1, create=850),
            ],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[V(b"key1", b"value3", 3, create=950), V(b"key1", b"value2", 2, create=900)],
            filter_tombstone=True,
        ),
    ),
    (
        "all_tombstones_filtered_out",
        dict(
            input=[T(b"key1", 3, create=950), T(b"key1", 2, create=900), T(b"key1", 1, create=850)],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[],
            filter_tombstone=True,
        ),
    ),
    (
        "mixed_expired_and_not_expired_entries_filter_tombstone_true",
        dict(
            input=[
                V(b"key1", b"value3", 3, create=950, expire=1100),
                V(b"key1", b"value2", 2, create=900, expire=950),
                V(b"key1", b"value1", 1, create=850, expire=1200),
            ],
            timeout=HOUR_MS,
            min_seq=None,
            expected=[
                V(b"key1", b"value3", 3, create=950, expire=1100),
                T(b"key1", 2, create=900),
                V(b"key1", b"value1", 1, create=850, expire=1200),
            ],
            filter_tombstone=True,
        ),
    ),
    (
        "filter_out_expired_merge_entries",
        dict(
            input=[
                M(b"key1", b"value3", 3, create=950, expire=1100),
                M(b"key1", b"value2", 2, create=900, expire=950),
                M(b"key1", b"value1", 1, create=850, expire=1200),
            ],
            timeout=0,
            min_seq=None,
            expected=[
                M(b"key1", b"value3", 3, create=950, expire=1100),
                M(b"key1", b"value1", 1, create=850, expire=1200),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "retain_up_to_first_non_merge_entry",
        dict(
            input=[
                M(b"key1", b"value5", 5, create=1050),
                M(b"key1", b"value4", 4, create=1000),
                M(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=900),
                V(b"key1", b"value1", 1, create=850),
            ],
            timeout=0,
            min_seq=None,
            expected=[
                M(b"key1", b"value5", 5, create=1050),
                M(b"key1", b"value4", 4, create=1000),
                M(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=900),
            ],
            filter_tombstone=False,
        ),
    ),
    (
        "retain_up_to_first_non_merge_entry_when_seq_num_provided",
        dict(
            input=[
                V(b"key1", b"value5", 5, create=1050),
                M(b"key1", b"value4", 4, create=1000),
                M(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=900),
                V(b"key1", b"value1", 1, create=850),
            ],
            timeout=0,
            min_seq=4,
            expected=[
                V(b"key1", b"value5", 5, create=1050),
                M(b"key1", b"value4", 4, create=1000),
                M(b"key1", b"value3", 3, create=950),
                V(b"key1", b"value2", 2, create=900),
            ],
            filter_tombstone=False,
        ),
    ),
]


@pytest.mark.parametrize(
    "case", [c for _, c in RETENTION_CASES], ids=[name for name, _ in RETENTION_CASES]
)
def test_retention_table_driven(case: dict[str, Any]) -> None:
    # system clock 1000 ms, compaction start 1000 ms; no tracked seqs (every seq counts as "now")
    kept = apply_retention(
        case["input"],
        compaction_clock_tick=1000,
        retention_min_seq=case["min_seq"],
        filter_tombstones=case["filter_tombstone"],
        retention_timeout_ms=case["timeout"],
        now_ms=1000,
        seq_tracker=SequenceTracker(),
    )
    assert kept == case["expected"]
    # the streaming form gives the same rows
    assert (
        list(
            retain(
                case["input"],
                compaction_clock_tick=1000,
                retention_min_seq=case["min_seq"],
                filter_tombstones=case["filter_tombstone"],
                retention_timeout_ms=case["timeout"],
                now_ms=1000,
                seq_tracker=SequenceTracker(),
            )
        )
        == case["expected"]
    )


@pytest.mark.parametrize(
    ("tracker_points", "entry_seq", "clock_now", "timeout_ms"),
    [
        pytest.param([(5, 1_000)], 5, 1_500, 700, id="exact_match"),
        pytest.param([(10, 2_000)], 7, 2_100, 400, id="before_first_rounds_up"),
        pytest.param([(5, 1_000), (15, 2_000)], 11, 2_400, 500, id="between_entries_rounds_up"),
        pytest.param([(5, 1_000)], 20, 1_500, 100, id="after_last_defaults_to_now"),
        pytest.param([], 8, 2_000, 0, id="no_tracker_defaults_to_now"),
    ],
)
def test_retention_uses_sequence_tracker_timestamp(
    tracker_points: list[tuple[int, int]], entry_seq: int, clock_now: int, timeout_ms: int
) -> None:
    points = sorted(tracker_points)
    # the tracker stores seconds; every point here is a whole second
    tracker = SequenceTracker([s for s, _ in points], [ms // 1000 for _, ms in points])
    latest_seq = entry_seq + 10
    versions = [V(b"k", b"new", latest_seq, create=clock_now), V(b"k", b"old", entry_seq)]
    kept = apply_retention(
        versions,
        compaction_clock_tick=0,
        retention_min_seq=None,
        filter_tombstones=False,
        retention_timeout_ms=timeout_ms,
        now_ms=clock_now,
        seq_tracker=tracker,
    )
    derived = next((ts for s, ts in points if s >= entry_seq), clock_now)
    expected_keep = derived + timeout_ms > clock_now
    assert any(r[1] == entry_seq for r in kept) == expected_keep


def test_timeout_needs_now() -> None:
    with pytest.raises(InvalidError):
        apply_retention(
            [V(b"k", b"v", 1)],
            compaction_clock_tick=0,
            retention_min_seq=None,
            filter_tombstones=False,
            retention_timeout_ms=10,
        )


# -- snapshot boundary and tombstones, as described in retention_iterator.rs -------------------


def test_boundary_value_for_snapshot() -> None:
    # set a=v0 (1); set a=v1 (2); set b=v2 (3); snapshot at 3; delete a (4); compact at min 3
    rows = [T(b"a", 4), V(b"a", b"v1", 2), V(b"a", b"v0", 1), V(b"b", b"v2", 3)]
    out = list(retain(rows, compaction_clock_tick=0, retention_min_seq=3, filter_tombstones=False))
    assert out == [T(b"a", 4), V(b"a", b"v1", 2), V(b"b", b"v2", 3)]
    # even into the last run the tombstone stays: it hides the boundary from newer readers
    out = list(retain(rows, compaction_clock_tick=0, retention_min_seq=3, filter_tombstones=True))
    assert out == [T(b"a", 4), V(b"a", b"v1", 2), V(b"b", b"v2", 3)]


def test_without_snapshots_only_newest_survives() -> None:
    rows = [V(b"a", b"3", 3), V(b"a", b"2", 2), T(b"b", 5), V(b"b", b"1", 1), V(b"c", b"c", 4)]
    out = list(
        retain(rows, compaction_clock_tick=0, retention_min_seq=None, filter_tombstones=False)
    )
    assert out == [V(b"a", b"3", 3), T(b"b", 5), V(b"c", b"c", 4)]
    out = list(
        retain(rows, compaction_clock_tick=0, retention_min_seq=None, filter_tombstones=True)
    )
    assert out == [V(b"a", b"3", 3), V(b"c", b"c", 4)]


def test_retention_min_seq_zero_keeps_everything_above() -> None:
    rows = [V(b"a", b"3", 3), V(b"a", b"2", 2), V(b"a", b"1", 1), V(b"a", b"0", 0)]
    out = list(retain(rows, compaction_clock_tick=0, retention_min_seq=0, filter_tombstones=False))
    assert out == rows


def test_expired_single_versions() -> None:
    rows = [
        V(b"a", b"x", 1, expire=10, create=3),
        M(b"b", b"m", 2, expire=10),
        T(b"c", 3, expire=10),
        V(b"d", b"y", 4, expire=11),
    ]
    out = list(
        retain(rows, compaction_clock_tick=10, retention_min_seq=None, filter_tombstones=False)
    )
    assert out == [T(b"a", 1, create=3), T(b"c", 3), V(b"d", b"y", 4, expire=11)]
    out = list(
        retain(rows, compaction_clock_tick=10, retention_min_seq=None, filter_tombstones=True)
    )
    assert out == [V(b"d", b"y", 4, expire=11)]
    # no clock tick: nothing has expired
    out = list(
        retain(rows, compaction_clock_tick=None, retention_min_seq=None, filter_tombstones=False)
    )
    assert out == rows


# -- grouping (SlateDB's RetentionBuffer cases, as stream behaviour) ---------------------------


def test_grouping_key_transitions() -> None:
    rows = [V(b"key1", b"value1", 1), V(b"key2", b"value2", 2)]
    assert (
        list(retain(rows, compaction_clock_tick=0, retention_min_seq=0, filter_tombstones=False))
        == rows
    )
    assert (
        list(retain([], compaction_clock_tick=0, retention_min_seq=0, filter_tombstones=False))
        == []
    )
    single = [V(b"key1", b"value1", 1)]
    assert (
        list(retain(single, compaction_clock_tick=0, retention_min_seq=0, filter_tombstones=False))
        == single
    )


def test_grouping_multiple_versions_and_kinds() -> None:
    rows = [T(b"key1", 3), M(b"key1", b"merge1", 2), V(b"key1", b"value1", 1), V(b"key2", b"v", 1)]
    out = list(retain(rows, compaction_clock_tick=0, retention_min_seq=0, filter_tombstones=False))
    assert out == rows


def test_duplicate_seq_later_row_wins() -> None:
    # SlateDB's BTreeMap keyed by seq: the later row of the stream replaces the earlier
    rows = [V(b"k", b"first", 5), V(b"k", b"second", 5), V(b"k", b"old", 1)]
    out = list(retain(rows, compaction_clock_tick=0, retention_min_seq=0, filter_tombstones=False))
    assert out == [V(b"k", b"second", 5), V(b"k", b"old", 1)]


def test_forbid_merges_raises() -> None:
    rows = [V(b"a", b"1", 1), M(b"b", b"m", 2)]
    with pytest.raises(InvalidError, match="merge operator missing"):
        list(
            retain(
                rows,
                compaction_clock_tick=0,
                retention_min_seq=None,
                filter_tombstones=False,
                forbid_merges=True,
            )
        )
    rows = [M(b"b", b"m", 3), V(b"b", b"v", 2), V(b"c", b"1", 1)]
    with pytest.raises(InvalidError, match="merge operator missing"):
        list(
            retain(
                rows,
                compaction_clock_tick=0,
                retention_min_seq=None,
                filter_tombstones=False,
                forbid_merges=True,
            )
        )
    # an older operand that retention would drop still raises (SlateDB checks every row)
    rows = [V(b"b", b"v", 3), M(b"b", b"m", 2)]
    with pytest.raises(InvalidError, match="merge operator missing"):
        list(
            retain(
                rows,
                compaction_clock_tick=0,
                retention_min_seq=None,
                filter_tombstones=False,
                forbid_merges=True,
            )
        )


def _reference_retain(rows: list[Row], **kw: Any) -> list[Any]:
    """Group by key, then apply_retention: the obvious (slow) definition of retain."""
    out: list[Any] = []
    group: list[Any] = []
    for r in rows:
        if group and group[0][0] != r[0]:
            out += apply_retention(group, **kw)
            group = []
        if group and group[-1][1] == r[1]:
            group[-1] = r
        else:
            group.append(r)
    if group:
        out += apply_retention(group, **kw)
    return out


row_strategy = st.tuples(
    st.sampled_from([b"a", b"b", b"c", b"d"]),
    st.integers(0, 30),
    st.sampled_from([VALUE, TOMBSTONE, MERGE]),
    st.binary(max_size=3),
    st.one_of(st.none(), st.integers(0, 20)),
    st.one_of(st.none(), st.integers(0, 20)),
).map(lambda t: Row(t[0], t[1], t[2], b"" if t[2] == TOMBSTONE else t[3], t[4], t[5]))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(row_strategy, max_size=30),
    tick=st.one_of(st.none(), st.integers(0, 20)),
    min_seq=st.one_of(st.none(), st.integers(0, 30)),
    filter_tombstones=st.booleans(),
)
def test_retain_matches_grouped_definition(
    rows: list[Row], tick: int | None, min_seq: int | None, filter_tombstones: bool
) -> None:
    rows = ordered(rows)
    kw: dict[str, Any] = dict(
        compaction_clock_tick=tick, retention_min_seq=min_seq, filter_tombstones=filter_tombstones
    )
    assert list(retain(rows, **kw)) == _reference_retain(rows, **kw)


# -- merge_operands: SlateDB's MergeOperatorIterator tests ------------------------------------


class MockMergeOperator:
    """Concatenation with only ``merge`` (SlateDB's MockMergeOperator)."""

    name = "mock"

    def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
        return operand if existing is None else existing + operand


class MockBatchedMergeOperator(MockMergeOperator):
    """Counts ``merge_batch`` calls."""

    def __init__(self) -> None:
        self.calls = 0

    def merge_batch(self, key: bytes, existing: bytes | None, operands: list[bytes]) -> bytes:
        self.calls += 1
        return b"".join([existing or b"", *operands])


def run_merge(
    rows: list[Row], *, different_expire: bool = True, barrier: int | None = None, op: Any = None
) -> list[Any]:
    return list(
        merge_operands(
            ordered(rows),
            op or MockMergeOperator(),
            snapshot_barrier_seq=barrier,
            merge_different_expire_ts=different_expire,
        )
    )


def test_merge_operator_iterator() -> None:
    data = [
        M(b"key1", b"1", 1),
        M(b"key1", b"2", 2),
        M(b"key1", b"3", 3),
        M(b"key1", b"4", 4),
        V(b"key2", b"1", 5),
        V(b"key3", b"1", 6),
        M(b"key3", b"2", 7),
        M(b"key3", b"3", 8),
    ]
    assert run_merge(data) == [M(b"key1", b"1234", 4), V(b"key2", b"1", 5), V(b"key3", b"123", 8)]


MERGE_CASES = [
    pytest.param(
        [
            M(b"key1", b"1", 1, expire=1),
            M(b"key1", b"2", 2, expire=2),
            M(b"key1", b"3", 3, expire=3),
            V(b"key2", b"1", 4),
            M(b"key3", b"1", 5, expire=1),
            M(b"key3", b"2", 6, expire=1),
            M(b"key3", b"3", 7, expire=2),
        ],
        [M(b"key1", b"123", 3, expire=1), V(b"key2", b"1", 4), M(b"key3", b"123", 7, expire=1)],
        True,
        None,
        id="different_expire_ts_read_path",
    ),
    pytest.param(
        [
            M(b"key1", b"1", 1, expire=1),
            M(b"key1", b"2", 2, expire=2),
            M(b"key1", b"3", 3, expire=3),
            V(b"key2", b"1", 4),
            M(b"key3", b"1", 5, expire=1),
            M(b"key3", b"2", 6, expire=1),
            M(b"key3", b"3", 7, expire=2),
        ],
        [
            M(b"key1", b"3", 3, expire=3),
            M(b"key1", b"2", 2, expire=2),
            M(b"key1", b"1", 1, expire=1),
            V(b"key2", b"1", 4),
            M(b"key3", b"3", 7, expire=2),
            M(b"key3", b"12", 6, expire=1),
        ],
        False,
        None,
        id="different_expire_ts_write_path",
    ),
    pytest.param(
        [
            M(b"key1", b"1", 1),
            M(b"key1", b"2", 2),
            T(b"key1", 3),
            M(b"key1", b"3", 4),
            V(b"key2", b"1", 5),
        ],
        # merge + tombstone becomes a value that hides older rows
        [V(b"key1", b"3", 4), M(b"key1", b"12", 2), V(b"key2", b"1", 5)],
        True,
        None,
        id="merge_with_tombstone",
    ),
    pytest.param(
        [V(b"key1", b"1", 1), V(b"key1", b"2", 2)],
        [V(b"key1", b"2", 2), V(b"key1", b"1", 1)],
        True,
        None,
        id="multiple_values",
    ),
    pytest.param(
        [
            M(b"key1", b"1", 1),
            M(b"key1", b"2", 2),
            M(b"key1", b"3", 3),
            M(b"key1", b"4", 4),
            V(b"key1", b"5", 5),
        ],
        [V(b"key1", b"5", 5), M(b"key1", b"4", 4), M(b"key1", b"123", 3)],
        True,
        3,
        id="merge_with_snapshot_barrier",
    ),
]


@pytest.mark.parametrize(("data", "expected", "different_expire", "barrier"), MERGE_CASES)
def test_merge_table(
    data: list[Row], expected: list[Row], different_expire: bool, barrier: int | None
) -> None:
    assert run_merge(data, different_expire=different_expire, barrier=barrier) == expected


def test_should_route_merge_based_on_key_prefix() -> None:
    class KeyPrefixMergeOperator:
        name = "prefix"

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            if existing is None:
                return operand
            a, b = int.from_bytes(existing, "little"), int.from_bytes(operand, "little")
            if key.startswith(b"sum:"):
                return (a + b).to_bytes(8, "little")
            if key.startswith(b"max:"):
                return max(a, b).to_bytes(8, "little")
            return existing + operand

    def u(n: int) -> bytes:
        return n.to_bytes(8, "little")

    data = [
        M(b"sum:counter", u(5), 1),
        M(b"sum:counter", u(3), 2),
        M(b"sum:counter", u(7), 3),
        M(b"max:score", u(5), 4),
        M(b"max:score", u(10), 5),
        M(b"max:score", u(3), 6),
    ]
    assert run_merge(data, op=KeyPrefixMergeOperator()) == [
        M(b"max:score", u(10), 6),
        M(b"sum:counter", u(15), 3),
    ]


def test_batched_merge_with_many_operands() -> None:
    data = [M(b"key1", bytes([i]), i) for i in range(1, 251)]
    assert run_merge(data) == [M(b"key1", bytes(range(1, 251)), 250)]


def test_batched_merge_with_base_value() -> None:
    data = [V(b"key1", b"BASE", 0)] + [M(b"key1", bytes([i]), i) for i in range(1, 151)]
    assert run_merge(data) == [V(b"key1", b"BASE" + bytes(range(1, 151)), 150)]


def test_merge_batch_is_actually_called() -> None:
    op = MockBatchedMergeOperator()
    data = [M(b"key1", bytes([i]), i) for i in range(1, 251)]
    assert run_merge(data, op=op) == [M(b"key1", bytes(range(1, 251)), 250)]
    assert op.calls == 4  # 3 batches of <= MERGE_BATCH_SIZE + 1 final merge
    assert MERGE_BATCH_SIZE == 100


def test_merge_batch_with_base_value_call_count() -> None:
    op = MockBatchedMergeOperator()
    data = [V(b"key1", b"BASE", 0)] + [M(b"key1", bytes([i]), i) for i in range(1, 151)]
    assert run_merge(data, op=op) == [V(b"key1", b"BASE" + bytes(range(1, 151)), 150)]
    assert op.calls == 3


def test_merge_operator_merges_entries_with_mixed_expire_ts() -> None:
    data = [
        M(b"key1", b"4", 4, expire=300),
        M(b"key1", b"2", 2, expire=150),
        M(b"key1", b"1", 1, expire=200),
        M(b"key1", b"5", 5, expire=100),
        M(b"key1", b"3", 3, expire=50),
    ]
    assert run_merge(data) == [M(b"key1", b"12345", 5, expire=50)]


def test_merge_operator_merges_entries_with_base_value_and_mixed_expire_ts() -> None:
    data = [
        M(b"key1", b"4", 4, expire=300),
        M(b"key1", b"2", 2, expire=250),
        M(b"key1", b"1", 1, expire=150),
        M(b"key1", b"3", 3, expire=50),
        V(b"key1", b"BASE", 0, expire=200),
    ]
    assert run_merge(data) == [V(b"key1", b"BASE1234", 4, expire=50)]


def test_merge_operator_merges_all_entries_with_expire_ts() -> None:
    data = [
        M(b"key1", b"1", 1, expire=50),
        M(b"key1", b"2", 2, expire=80),
        M(b"key1", b"3", 3, expire=90),
    ]
    assert run_merge(data) == [M(b"key1", b"123", 3, expire=50)]


def test_should_use_base_expire_ts_when_it_is_the_earliest() -> None:
    data = [
        M(b"key1", b"2", 2, expire=300),
        M(b"key1", b"1", 1, expire=200),
        V(b"key1", b"BASE", 0, expire=50),
    ]
    assert run_merge(data) == [V(b"key1", b"BASE12", 2, expire=50)]


def test_merge_keeps_max_create_ts() -> None:
    data = [M(b"k", b"b", 3, create=7), M(b"k", b"a", 2, create=9), V(b"k", b"x", 1, create=1)]
    assert run_merge(data, different_expire=False) == [V(b"k", b"xab", 3, create=9)]


def test_merge_out_of_order_seq_is_data_error() -> None:
    rows = [M(b"k", b"a", 1), M(b"k", b"b", 2)]  # not seq-descending
    with pytest.raises(DataError):
        list(merge_operands(rows, MockMergeOperator(), snapshot_barrier_seq=None))


def test_operands_the_operator_cannot_merge_pass_through_unmerged() -> None:
    """A poisoned key must not stop the compaction of every other key (issue 9 item 12)."""

    class Broken:
        name = "broken"

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            if b"!" in operand:
                raise RuntimeError("boom")
            return (existing or b"") + operand

    rows = [
        M(b"a", b"2", 6),
        M(b"a", b"1", 5),
        M(b"bad", b"y", 4),
        M(b"bad", b"!", 3),
        V(b"bad", b"base", 2),
        M(b"c", b"z", 1),
    ]
    out = list(merge_operands(rows, Broken(), snapshot_barrier_seq=None))
    assert out == [
        M(b"a", b"12", 6),
        M(b"bad", b"y", 4),
        M(b"bad", b"!", 3),
        V(b"bad", b"base", 2),
        M(b"c", b"z", 1),
    ]
    many = [M(b"k", b"x", 300 - i) for i in range(250)] + [M(b"k", b"!", 1)]
    assert list(merge_operands(many, Broken(), snapshot_barrier_seq=None)) == many


# -- compaction_rows: the two stages together --------------------------------------------------


def test_compaction_rows_merges_then_retains() -> None:
    # seed 002: test_compaction_job_should_retain_merges_newer_than_retention_min_seq_num
    rows = [M(b"foo", b"3", 4), M(b"foo", b"2", 3), M(b"foo", b"1", 2), M(b"foo", b"0", 1)]
    out = list(
        compaction_rows(
            rows,
            merge_operator=ConcatMergeOperator(),
            retention_min_seq=2,
            filter_tombstones=False,
            compaction_clock_tick=0,
        )
    )
    assert out == [M(b"foo", b"3", 4), M(b"foo", b"2", 3), M(b"foo", b"01", 2)]


def test_compaction_rows_without_operator_raises_on_merge() -> None:
    rows = [V(b"a", b"1", 1), M(b"b", b"x", 2)]
    it = compaction_rows(
        rows,
        merge_operator=None,
        retention_min_seq=None,
        filter_tombstones=False,
        compaction_clock_tick=0,
    )
    with pytest.raises(InvalidError, match="merge operator missing"):
        list(it)


def test_expired_operands_of_same_ttl_merge_then_drop() -> None:
    rows = [
        M(b"k", b"n", 5, expire=100),
        M(b"k", b"b", 4, expire=10),
        M(b"k", b"a", 3, expire=10),
        V(b"k", b"base", 2),
    ]
    out = list(
        compaction_rows(
            rows,
            merge_operator=ConcatMergeOperator(),
            retention_min_seq=None,
            filter_tombstones=False,
            compaction_clock_tick=50,
        )
    )
    # the live operand stays, the expired run (merged) is dropped, the base is the boundary
    assert out == [M(b"k", b"n", 5, expire=100), V(b"k", b"base", 2)]


# -- skip_written: SlateDB's ResumingIterator --------------------------------------------------


def test_skip_written() -> None:
    rows = [V(b"a", b"3", 3), V(b"a", b"2", 2), V(b"a", b"1", 1), V(b"b", b"9", 9)]
    assert list(skip_written(rows, b"a", 2)) == [V(b"a", b"1", 1), V(b"b", b"9", 9)]
    assert list(skip_written(rows, b"a", 1)) == [V(b"b", b"9", 9)]
    assert list(skip_written(rows[3:], b"a", 1)) == [V(b"b", b"9", 9)]
    assert list(skip_written([], b"a", 1)) == []
    # only the leading rows of the resume key are skipped
    rows = [V(b"b", b"9", 9), V(b"b", b"8", 8)]
    assert list(skip_written(rows, b"a", 1)) == rows


@settings(max_examples=100, deadline=None)
@given(st.lists(row_strategy, min_size=1, max_size=30), st.data())
def test_resume_after_any_row_equals_suffix(rows: list[Row], data: st.DataObject) -> None:
    kw: dict[str, Any] = dict(
        merge_operator=ConcatMergeOperator(),
        retention_min_seq=None,
        filter_tombstones=False,
        compaction_clock_tick=5,
    )
    rows = ordered(rows)
    # make (key, seq) unique, as in a real database
    seen: set[tuple[bytes, int]] = set()
    rows = [r for r in rows if not ((r[0], r[1]) in seen or seen.add((r[0], r[1])))]  # type: ignore[func-returns-value]
    full = list(compaction_rows(rows, **kw))
    if not full:
        return
    i = data.draw(st.integers(0, len(full) - 1))
    key, seq = full[i][0], full[i][1]
    resumed = list(skip_written(compaction_rows([r for r in rows if r[0] >= key], **kw), key, seq))
    assert resumed == full[i + 1 :]


def test_random_streams_smoke() -> None:
    rnd = random.Random(7)
    rows = ordered(
        [
            Row(bytes([rnd.randrange(97, 100)]), s, rnd.choice([0, 1]), b"x", None, None)
            for s in rnd.sample(range(1000), 200)
        ]
    )
    rows = [r if r[2] == VALUE else Row(r[0], r[1], TOMBSTONE, b"", None, None) for r in rows]
    out = list(retain(rows, compaction_clock_tick=0, retention_min_seq=500, filter_tombstones=True))
    assert out == _reference_retain(
        rows, compaction_clock_tick=0, retention_min_seq=500, filter_tombstones=True
    )
