"""Tests for shale.merge: the k-way merge iterator, both twins.

The central test drives a random script of ``next``/``peek``/``seek`` calls against a model that
recomputes "the sorted rest of every source" at each step, and checks the laziness bound (at
most one row pulled ahead per source) along the way.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import merge
from shale.errors import InvalidError
from shale.row import TOMBSTONE, VALUE, Row

Rows = list[tuple[Any, ...]]

# Short keys, keys equal but for trailing zero bytes, and long keys sharing an 8-byte prefix
# (the compiled twin compares the first 8 bytes as an integer before falling back to memcmp).
KEYS = [
    *(b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"ba", b"c", b"\xff", b"\xff\xff"),
    *(b"prefix0", b"prefix0\x00", b"prefix00", b"prefix00\x00", b"prefix00a", b"prefix00b"),
]
SEQS = [0, 1, 2, 3, 5, 8, 2**31, 2**32 + 1, 2**63 - 1, 2**63, 2**64 - 1]

# The twin fixtures only hand out module objects, so sharing them across examples is safe.
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


# -- sources ------------------------------------------------------------------------------


class CountingSource:
    """A non-seekable iterator over a list that records how far it has been pulled."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.pos = 0

    def __iter__(self) -> CountingSource:
        return self

    def __next__(self) -> tuple[Any, ...]:
        if self.pos >= len(self.rows):
            raise StopIteration
        row = self.rows[self.pos]
        self.pos += 1
        return row


class SeekableSource(CountingSource):
    """A CountingSource with ``seek``: jumps to the first row with key >= (or <=) the bound."""

    def __init__(self, rows: Rows, reverse: bool = False) -> None:
        super().__init__(rows)
        self.reverse = reverse
        self.seeks: list[bytes] = []

    def seek(self, key: bytes) -> None:
        self.seeks.append(key)
        self.pos = first_at_or_past(self.rows, key, self.reverse)


def first_at_or_past(rows: Rows, key: bytes, reverse: bool) -> int:
    """Index of the first row whose key is >= key (reverse: <= key)."""
    if reverse:
        return next((i for i, r in enumerate(rows) if r[0] <= key), len(rows))
    return bisect.bisect_left([r[0] for r in rows], key)


def sort_rows(rows: Rows, reverse: bool) -> Rows:
    """Source order: key asc (reverse: desc), then seq desc; stable otherwise."""
    by_seq = sorted(rows, key=lambda r: -r[1])
    return sorted(by_seq, key=lambda r: r[0], reverse=reverse)


# -- the model ----------------------------------------------------------------------------


class Model:
    """Reference semantics: the sorted rest of all sources, with per-source positions."""

    def __init__(self, sources: list[Rows], seekable: list[bool], reverse: bool, dedup: bool):
        self.sources = sources
        self.seekable = seekable
        self.reverse = reverse
        self.dedup = dedup
        self.pos = [0] * len(sources)
        self.last_key: bytes | None = None

    def _rest(self) -> list[tuple[tuple[Any, ...], int]]:
        tagged = [(row, i) for i, rows in enumerate(self.sources) for row in rows[self.pos[i] :]]
        # key (asc or desc), then seq desc, then source index; stable within a source.
        tagged.sort(key=lambda t: (-t[0][1], t[1]))
        tagged.sort(key=lambda t: t[0][0], reverse=self.reverse)
        return tagged

    def _skip_dups(self) -> list[tuple[tuple[Any, ...], int]]:
        rest = self._rest()
        while rest and self.last_key is not None and rest[0][0][0] == self.last_key:
            self.pos[rest[0][1]] += 1
            rest = rest[1:]
        return rest

    def peek(self) -> tuple[Any, ...] | None:
        rest = self._skip_dups()
        return rest[0][0] if rest else None

    def next(self) -> tuple[Any, ...] | None:
        rest = self._skip_dups()
        if not rest:
            return None
        row, i = rest[0]
        self.pos[i] += 1
        if self.dedup:
            self.last_key = row[0]
        return row

    def seek(self, key: bytes) -> None:
        self.last_key = None
        for i, rows in enumerate(self.sources):
            target = first_at_or_past(rows, key, self.reverse)
            if self.seekable[i]:
                self.pos[i] = target
            else:
                # A plain iterator only moves forward, skipping rows outside the bound.
                p = self.pos[i]
                while p < len(rows) and not (
                    rows[p][0] <= key if self.reverse else rows[p][0] >= key
                ):
                    p += 1
                self.pos[i] = p


def full_model(sources: list[Rows], reverse: bool, dedup: bool) -> Rows:
    """The documented model: sorted(all rows, key=(key, -seq, source index)) (+ variants)."""
    tagged = [(row, i) for i, rows in enumerate(sources) for row in rows]
    tagged.sort(key=lambda t: (-t[0][1], t[1]))
    tagged.sort(key=lambda t: t[0][0], reverse=reverse)
    out = [row for row, _ in tagged]
    if dedup:
        seen: set[bytes] = set()
        out = [r for r in out if not (r[0] in seen or seen.add(r[0]))]  # type: ignore[func-returns-value]
    return out


# -- strategies ---------------------------------------------------------------------------


@st.composite
def source_lists(draw: st.DrawFn, reverse: bool, max_sources: int = 6) -> list[Rows]:
    n = draw(st.integers(0, max_sources))
    sources = []
    for i in range(n):
        pairs = draw(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(SEQS)), max_size=12))
        rows = [
            (key, seq, draw(st.sampled_from([VALUE, TOMBSTONE])), b"%d:%d" % (i, j), None, None)
            for j, (key, seq) in enumerate(pairs)
        ]
        sources.append(sort_rows(rows, reverse))
    return sources


ops = st.lists(
    st.one_of(
        st.tuples(st.just("next"), st.integers(1, 6)),
        st.tuples(st.just("peek"), st.just(0)),
        st.tuples(st.just("seek"), st.sampled_from([*KEYS, b"aa", b"bb", b"\xff\xff\xff"])),
    ),
    max_size=8,
)


def make_sources(sources: list[Rows], seekable: list[bool], reverse: bool) -> list[Any]:
    return [
        SeekableSource(rows, reverse) if s else CountingSource(rows)
        for rows, s in zip(sources, seekable, strict=True)
    ]


# -- model tests --------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), reverse=st.booleans(), dedup=st.booleans())
def test_full_merge_matches_model(
    merge_impl: ModuleType, data: st.DataObject, reverse: bool, dedup: bool
) -> None:
    sources = data.draw(source_lists(reverse))
    as_lists = data.draw(st.booleans())
    inputs: list[Any] = [list(s) for s in sources] if as_lists else [iter(s) for s in sources]
    got = list(merge_impl.MergeIterator(inputs, reverse=reverse, dedup=dedup))
    assert got == full_model(sources, reverse, dedup)


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), reverse=st.booleans(), dedup=st.booleans(), script=ops)
def test_script_with_seeks_matches_model(
    merge_impl: ModuleType,
    data: st.DataObject,
    reverse: bool,
    dedup: bool,
    script: list[tuple[str, Any]],
) -> None:
    sources = data.draw(source_lists(reverse))
    seekable = [data.draw(st.booleans()) for _ in sources]
    srcs = make_sources(sources, seekable, reverse)
    it = merge_impl.MergeIterator(srcs, reverse=reverse, dedup=dedup)
    model = Model(sources, seekable, reverse, dedup)

    def check_lazy() -> None:
        for src, p in zip(srcs, model.pos, strict=True):
            assert src.pos - p in (0, 1), "pulled more than one row ahead"

    assert all(s.pos == 0 for s in srcs), "construction must not pull"
    for op, arg in [*script, ("next", 10_000)]:
        if op == "next":
            for _ in range(arg):
                want = model.next()
                got = next(it, None)
                assert got == want
                check_lazy()
                if want is None:
                    break
        elif op == "peek":
            assert it.peek() == model.peek()
            check_lazy()
        else:
            it.seek(arg)
            model.seek(arg)
            check_lazy()
            for s, is_seekable in zip(srcs, seekable, strict=True):
                if is_seekable:
                    assert s.seeks[-1] == arg
    assert next(it, None) is None


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), reverse=st.booleans(), dedup=st.booleans(), script=ops)
def test_differential_py_vs_c(
    both_twins: Any,
    data: st.DataObject,
    reverse: bool,
    dedup: bool,
    script: list[tuple[str, Any]],
) -> None:
    py, c = both_twins("merge")
    sources = data.draw(source_lists(reverse, max_sources=10))
    seekable = [data.draw(st.booleans()) for _ in sources]
    its = [
        impl.MergeIterator(make_sources(sources, seekable, reverse), reverse=reverse, dedup=dedup)
        for impl in (py, c)
    ]
    for op, arg in [*script, ("next", 10_000)]:
        if op == "next":
            for _ in range(arg):
                a, b = (next(it, None) for it in its)
                assert a == b
                if a is None:
                    break
        elif op == "peek":
            assert its[0].peek() == its[1].peek()
        else:
            for it in its:
                it.seek(arg)


# -- ordering and edge cases --------------------------------------------------------------


def r(key: bytes, seq: int, value: bytes = b"") -> tuple[Any, ...]:
    return (key, seq, VALUE, value, None, None)


def test_ties_on_key_and_seq_go_to_the_lower_source(merge_impl: ModuleType) -> None:
    sources = [[r(b"k", 7, b"s%d" % i)] for i in range(3)]
    out = list(merge_impl.MergeIterator(sources))
    assert [row[3] for row in out] == [b"s0", b"s1", b"s2"]
    out = list(merge_impl.MergeIterator(sources, reverse=True))
    assert [row[3] for row in out] == [b"s0", b"s1", b"s2"]
    assert list(merge_impl.MergeIterator(sources, dedup=True)) == [r(b"k", 7, b"s0")]
    # A higher seq wins over source precedence.
    sources = [[r(b"k", 1, b"old")], [r(b"k", 2, b"new")]]
    assert list(merge_impl.MergeIterator(sources, dedup=True)) == [r(b"k", 2, b"new")]


def test_key_order_is_bytewise_and_length_aware(merge_impl: ModuleType) -> None:
    keys = [b"", b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"ab", b"\x7f", b"\x80", b"\xff"]
    keys += [b"\xff" * 8, b"\xff" * 8 + b"\x00", b"\xff" * 9, b"\xff" * 9 + b"\x01", b"\xff" * 10]
    sources = [[r(k, 1)] for k in reversed(keys)]
    assert [row[0] for row in merge_impl.MergeIterator(sources)] == keys
    sources = [[r(k, 1)] for k in keys]
    assert [row[0] for row in merge_impl.MergeIterator(sources, reverse=True)] == keys[::-1]


def test_seq_compares_as_u64(merge_impl: ModuleType) -> None:
    sources = [[r(b"k", 1)], [r(b"k", 2**63)], [r(b"k", 2**64 - 1)], [r(b"k", 2**63 - 1)]]
    seqs = [row[1] for row in merge_impl.MergeIterator(sources)]
    assert seqs == [2**64 - 1, 2**63, 2**63 - 1, 1]


def test_zero_empty_and_single_sources(merge_impl: ModuleType) -> None:
    assert list(merge_impl.MergeIterator([])) == []
    assert merge_impl.MergeIterator([]).peek() is None
    assert list(merge_impl.MergeIterator([[], [], []])) == []
    rows = [r(b"a", 2), r(b"a", 1), r(b"b", 1)]
    assert list(merge_impl.MergeIterator([rows])) == rows
    assert list(merge_impl.MergeIterator([[], rows, []])) == rows
    assert list(merge_impl.MergeIterator([rows], dedup=True)) == [rows[0], rows[2]]
    it = merge_impl.MergeIterator([])
    it.seek(b"x")
    assert list(it) == []


def test_many_sources(merge_impl: ModuleType) -> None:
    sources = [
        [r(b"%04d" % k, s, b"%d" % i) for k in range(i, 200, 3) for s in (9, 4) if (k + s) % 2 == 0]
        for i in range(20)
    ]
    for reverse in (False, True):
        srcs = [sort_rows(s, reverse) for s in sources]
        for dedup in (False, True):
            got = list(merge_impl.MergeIterator(srcs, reverse=reverse, dedup=dedup))
            assert got == full_model(srcs, reverse, dedup)


def test_row_namedtuples_and_generators(merge_impl: ModuleType) -> None:
    def gen() -> Iterator[Row]:
        yield Row(b"a", 3)
        yield Row(b"c", 1, TOMBSTONE)

    out = list(merge_impl.MergeIterator([gen(), [Row(b"b", 2)]]))
    assert out == [Row(b"a", 3), Row(b"b", 2), Row(b"c", 1, TOMBSTONE)]
    assert type(out[0]) is Row


def test_iterator_protocol_and_facade() -> None:
    it = merge.MergeIterator([[r(b"a", 1)]])
    assert iter(it) is it
    assert merge.MergeIterator is merge.IMPLEMENTATION.MergeIterator
    assert "MergeIterator" in repr(it)


# -- peek, laziness, exceptions -----------------------------------------------------------


def test_peek_does_not_consume(merge_impl: ModuleType) -> None:
    rows = [r(b"a", 2), r(b"a", 1), r(b"b", 1)]
    it = merge_impl.MergeIterator([rows], dedup=True)
    assert it.peek() == rows[0]
    assert it.peek() == rows[0]
    assert next(it) == rows[0]
    assert it.peek() == rows[2]  # the older b"a" is skipped by dedup
    assert next(it) == rows[2]
    assert it.peek() is None
    assert it.peek() is None
    with pytest.raises(StopIteration):
        next(it)


def test_nothing_is_pulled_before_it_is_needed(merge_impl: ModuleType) -> None:
    a = CountingSource([r(b"a", 1), r(b"c", 1)])
    b = CountingSource([r(b"b", 1), r(b"d", 1)])
    it = merge_impl.MergeIterator([a, b])
    assert (a.pos, b.pos) == (0, 0)
    assert next(it) == r(b"a", 1)
    assert (a.pos, b.pos) == (1, 1)
    assert next(it) == r(b"b", 1)
    assert (a.pos, b.pos) == (2, 1)  # a was advanced to find the next winner, b not yet


class Boom(Exception):
    pass


def test_exceptions_from_sources_propagate_unchanged(merge_impl: ModuleType) -> None:
    err = Boom("disk on fire")

    def failing() -> Iterator[tuple[Any, ...]]:
        yield r(b"b", 1)
        raise err

    it = merge_impl.MergeIterator([[r(b"a", 1), r(b"c", 1)], failing()])
    assert next(it) == r(b"a", 1)
    assert next(it) == r(b"b", 1)
    with pytest.raises(Boom) as info:
        next(it)
    assert info.value is err
    # The failed source is asked again on the next call; a finished generator just stops.
    assert list(it) == [r(b"c", 1)]


def test_exception_from_first_pull_and_from_peek(merge_impl: ModuleType) -> None:
    class Flaky(CountingSource):
        def __init__(self, rows: Rows, fail_times: int) -> None:
            super().__init__(rows)
            self.fail_times = fail_times

        def __next__(self) -> tuple[Any, ...]:
            if self.fail_times:
                self.fail_times -= 1
                raise Boom
            return super().__next__()

    it = merge_impl.MergeIterator([[r(b"a", 1)], Flaky([r(b"b", 1)], 2)])
    with pytest.raises(Boom):
        it.peek()
    with pytest.raises(Boom):
        next(it)
    assert list(it) == [r(b"a", 1), r(b"b", 1)]


def test_exception_from_seek_propagates(merge_impl: ModuleType) -> None:
    class BadSeek(SeekableSource):
        def seek(self, key: bytes) -> None:
            raise Boom(key)

    it = merge_impl.MergeIterator([[r(b"a", 1)], BadSeek([r(b"b", 1)])])
    with pytest.raises(Boom):
        it.seek(b"b")


def test_reentrant_call_is_refused(merge_impl: ModuleType) -> None:
    holder: list[Any] = []

    def sneaky() -> Iterator[tuple[Any, ...]]:
        yield r(b"a", 1)
        next(holder[0])
        yield r(b"b", 1)

    it = merge_impl.MergeIterator([sneaky()])
    holder.append(it)
    assert next(it) == r(b"a", 1)
    with pytest.raises(RuntimeError, match="already running"):
        next(it)


# -- seek ---------------------------------------------------------------------------------


def test_seek_forward_backward_and_reverse(merge_impl: ModuleType) -> None:
    rows_a = [r(b"a", 1), r(b"c", 2), r(b"c", 1), r(b"e", 1)]
    rows_b = [r(b"b", 1), r(b"c", 3), r(b"d", 1)]
    it = merge_impl.MergeIterator([SeekableSource(rows_a), SeekableSource(rows_b)], dedup=True)
    it.seek(b"c")
    assert next(it) == r(b"c", 3)
    assert next(it) == r(b"d", 1)
    it.seek(b"b")  # backwards: seekable sources replay
    assert [row[0] for row in it] == [b"b", b"c", b"d", b"e"]
    it.seek(b"\x00")
    assert next(it) == r(b"a", 1)
    it.seek(b"z")
    assert it.peek() is None

    rev_a = sort_rows(rows_a, True)
    rev_b = sort_rows(rows_b, True)
    it = merge_impl.MergeIterator([SeekableSource(rev_a, True), rev_b], reverse=True)
    it.seek(b"cc")
    assert list(it) == [r(b"c", 3), r(b"c", 2), r(b"c", 1), r(b"b", 1), r(b"a", 1)]


def test_seek_on_plain_iterators_only_moves_forward(merge_impl: ModuleType) -> None:
    rows = [r(b"a", 1), r(b"b", 1), r(b"c", 1), r(b"d", 1)]
    it = merge_impl.MergeIterator([iter(rows)])
    it.seek(b"b")
    assert next(it) == r(b"b", 1)
    it.seek(b"a")  # cannot go back: continues where it is
    assert next(it) == r(b"c", 1)
    it.seek(b"bb")  # already past: nothing skipped
    assert list(it) == [r(b"d", 1)]


def test_seek_revives_exhausted_seekable_sources(merge_impl: ModuleType) -> None:
    src = SeekableSource([r(b"a", 1), r(b"b", 1)])
    it = merge_impl.MergeIterator([src, [r(b"c", 1)]])
    assert list(it) == [r(b"a", 1), r(b"b", 1), r(b"c", 1)]
    it.seek(b"b")
    assert list(it) == [r(b"b", 1)]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ([b"a", 1], TypeError),
        ((b"a",), TypeError),
        ("a", TypeError),
        (("a", 1), TypeError),
        ((bytearray(b"a"), 1), TypeError),
        ((b"a", 1.0), TypeError),
        ((b"a", None), TypeError),
        ((b"a", -1), InvalidError),
        ((b"a", 2**64), InvalidError),
    ],
)
def test_bad_rows_are_rejected(merge_impl: ModuleType, bad: object, error: type) -> None:
    it = merge_impl.MergeIterator([[r(b"0", 1), bad]])
    assert next(it) == r(b"0", 1)
    with pytest.raises(error, match="MergeIterator"):
        next(it)


def test_bad_rows_fail_alike_in_both_twins(both_twins: Any) -> None:
    py, c = both_twins("merge")
    for bad in ([b"a", 1], ("a", 1), (b"a", "1"), (b"a", -5)):
        messages = []
        for impl in (py, c):
            with pytest.raises((TypeError, InvalidError)) as info:
                list(impl.MergeIterator([[bad]]))
            messages.append((type(info.value), str(info.value)))
        assert messages[0] == messages[1]


def test_seek_key_must_be_bytes(merge_impl: ModuleType) -> None:
    it = merge_impl.MergeIterator([[r(b"a", 1)]])
    with pytest.raises(TypeError, match="bytes"):
        it.seek("a")
    assert list(it) == [r(b"a", 1)]
