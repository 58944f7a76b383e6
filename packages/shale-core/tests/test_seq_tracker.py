"""Sequence tracker: RFC-0012 bytes, insert policy, lookups (FORMAT.md section 7)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale.errors import DataError, InvalidError
from shale.meta.seq_tracker import EMPTY_ENCODED, SequenceTracker, _rust_binary_search


def test_empty_encoding() -> None:
    assert SequenceTracker().encode() == EMPTY_ENCODED
    assert EMPTY_ENCODED == bytes.fromhex("01" + "00000000" * 3)
    assert len(SequenceTracker.decode(EMPTY_ENCODED)) == 0


def test_known_bytes() -> None:
    """One pair: count, then 64-bit first values, each stream byte-aligned."""
    t = SequenceTracker([5], [1000])
    enc = t.encode()
    assert enc == (
        b"\x01\x01\x00\x00\x00"
        + b"\x00\x00\x00\x01"
        + (5).to_bytes(8, "big")
        + b"\x00\x00\x00\x01"
        + (1000).to_bytes(8, "big")
    )
    # Constant steps: every delta-of-delta after the second value is 0 (a single bit).
    t = SequenceTracker([1, 2, 3], [10, 20, 30])
    assert SequenceTracker.decode(t.encode()) == t


@st.composite
def pairs(draw: st.DrawFn, wide: bool = False) -> tuple[list[int], list[int]]:
    n = draw(st.integers(0, 40))
    if wide:
        seqs = sorted(draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)))
        tss = sorted(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)))
    else:
        step = st.integers(0, draw(st.sampled_from([1, 70, 300, 3000, 2**30])))
        seqs, tss = [], []
        s, t = draw(st.integers(0, 2**40)), draw(st.integers(0, 2**33))
        for _ in range(n):
            s += draw(step)
            t += draw(step)
            seqs.append(s)
            tss.append(t)
    return seqs, tss


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_round_trip(p: tuple[list[int], list[int]]) -> None:
    t = SequenceTracker(*p)
    enc = t.encode()
    back = SequenceTracker.decode(enc)
    assert back == t
    assert back.encode() == enc


@settings(max_examples=100, deadline=None)
@given(pairs(wide=True))
def test_lossy_branch_keeps_low_32_bits(p: tuple[list[int], list[int]]) -> None:
    """Deltas-of-deltas beyond i32 are stored truncated, as SlateDB does; decoding never fails."""
    t = SequenceTracker(*p)
    back = SequenceTracker.decode(t.encode())
    assert len(back) == len(t)
    assert back.seqs[:1] == t.seqs[:1]
    assert back.timestamps[:1] == t.timestamps[:1]


def test_lossy_example() -> None:
    t = SequenceTracker([0, 2**33 + 5], [0, 1])
    assert SequenceTracker.decode(t.encode()).seqs == (0, 5)


def test_insert_interval_and_monotonic() -> None:
    t = SequenceTracker(interval_s=60)
    t.insert(100, 1000)
    t.insert(200, 1030)  # ignored: 30 s
    t.insert(300, 1060)
    assert t.seqs == (100, 300)
    t.insert(50, 1061)  # inside the interval: ignored before the monotonic check
    with pytest.raises(InvalidError):
        t.insert(50, 2000)
    t2 = SequenceTracker([5], [100], interval_s=0)
    with pytest.raises(InvalidError):
        t2.insert(6, 50)  # a timestamp going backwards


def test_downsample_keeps_even_indices() -> None:
    t = SequenceTracker(capacity=4, interval_s=1)
    for i in range(5):
        t.insert(i * 100, i * 1000)
    assert list(t.seqs) == [0, 200, 400]
    t.insert(500, 5000)
    assert t.seqs == (0, 200, 400, 500)
    assert t.timestamps == (0, 2000, 4000, 5000)


def test_default_capacity() -> None:
    t = SequenceTracker(interval_s=0)
    for i in range(8193):
        t.insert(i, i)
    assert len(t) == 4097
    assert t.seqs[:3] == (0, 2, 4)


def test_extend_from_respects_interval() -> None:
    a = SequenceTracker(interval_s=60)
    a.insert(100, 1000)
    b = SequenceTracker([200, 300, 400, 500], [1030, 1060, 1110, 1120], interval_s=1)
    a.extend_from(b)
    assert a.seqs == (100, 300, 500)


@pytest.mark.parametrize(
    ("seq", "round_up", "expected"),
    [
        (8, False, 200),
        (8, True, 200),
        (6, True, 200),
        (6, False, 100),
        (0, False, None),
        (16, True, None),
        (4, False, 100),
        (12, True, 300),
        (0, True, 100),
        (16, False, 300),
    ],
)
def test_find_ts(seq: int, round_up: bool, expected: int | None) -> None:
    t = SequenceTracker([4, 8, 12], [100, 200, 300])
    assert t.find_ts(seq, round_up) == expected


@pytest.mark.parametrize(
    ("ts", "round_up", "expected"),
    [(200, False, 8), (150, True, 8), (150, False, 4), (50, False, None), (350, True, None)],
)
def test_find_seq(ts: int, round_up: bool, expected: int | None) -> None:
    t = SequenceTracker([4, 8, 12], [100, 200, 300])
    assert t.find_seq(ts, round_up) == expected


def test_empty_lookups() -> None:
    t = SequenceTracker()
    assert t.find_ts(1, True) is None and t.find_seq(1, False) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=20).map(sorted), st.integers(-1, 7))
def test_rust_binary_search_contract(arr: list[int], x: int) -> None:
    found, idx = _rust_binary_search(arr, x)
    if found:
        assert arr[idx] == x
        # Rust's loop moves right on ties, so it lands on the last of equal keys.
        assert idx == max(i for i, v in enumerate(arr) if v == x)
    else:
        assert x not in arr
        assert idx == sum(v < x for v in arr)


def test_constructor_validation() -> None:
    with pytest.raises(InvalidError):
        SequenceTracker([1, 2], [1])
    with pytest.raises(InvalidError):
        SequenceTracker([2, 1], [1, 2])
    with pytest.raises(InvalidError):
        SequenceTracker([-1], [1])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02" + bytes(12),
        b"\x01\x00\x00",
        b"\x01\x01\x00\x00\x00" + bytes(4),  # n=1 but count 0
        b"\x01\x00\x00\x00\x00\x00\x00\x00\x05",  # count 5, no data
        b"\x01\x00\x00\x00\x00" + bytes(4),  # no timestamp stream
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(DataError):
        SequenceTracker.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_fuzz_random(data: bytes) -> None:
    try:
        SequenceTracker.decode(b"\x01" + data)
    except DataError:
        pass


def test_fuzz_mutations() -> None:
    good = SequenceTracker([1, 5, 900, 100000], [10, 70, 130, 9999]).encode()
    rnd = random.Random(3)
    for _ in range(3000):
        buf = bytearray(good)
        i = rnd.randrange(len(buf))
        if rnd.random() < 0.7:
            buf[i] ^= 1 << rnd.randrange(8)
        else:
            del buf[i:]
        try:
            SequenceTracker.decode(bytes(buf))
        except DataError:
            pass
