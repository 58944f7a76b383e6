"""SST builder and reader: round trips, iteration, filters, and corruption handling."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import DataError, InvalidError
from shale.objstore.memory import MemoryStore
from shale.row import MERGE, TOMBSTONE, VALUE
from shale.sst import SsTable, SstBuilder, build_sst, shortest_separator
from shale.sst.compression import CODEC_NAMES, check_available


def _codec_param(codec: str) -> object:
    """A codec whose optional library is missing (shale-core without its extras) is skipped."""
    try:
        check_available(codec)
    except InvalidError as exc:
        return pytest.param(codec, marks=pytest.mark.skip(reason=str(exc)))
    return codec


CODECS = [_codec_param(c) for c in CODEC_NAMES.values()]


def make_rows(n: int, *, seed: int = 1, versions: int = 1, value_size: int = 40) -> list[tuple]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        key = b"key-%08d" % i
        for v in range(versions):
            seq = 10_000 - v
            kind = rnd.choice([VALUE, VALUE, VALUE, TOMBSTONE, MERGE])
            value = b"" if kind == TOMBSTONE else rnd.randbytes(rnd.randrange(value_size))
            expire = rnd.choice([None, 1_800_000_000_000])
            rows.append(
                (
                    key,
                    seq,
                    kind,
                    value,
                    expire if kind != TOMBSTONE else None,
                    1_700_000_000_000 + i,
                )
            )
    return rows


def wal_rows(n: int) -> list[tuple]:
    return [
        (b"w%05d" % (n - i), i // 3 + 1, VALUE, b"v" * (i % 50), None, 1_700_000_000_000)
        for i in range(n)
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_compacted_round_trip(codec: str) -> None:
    rows = make_rows(1500, versions=2)
    data = build_sst(rows, compression=codec)
    t = SsTable.from_bytes(data)
    assert not t.is_wal
    assert t.rows() == rows
    assert t.block_count > 10
    assert t.first_key == rows[0][0] and t.last_key == rows[-1][0]
    assert t.filter_names == ["_bf"]
    stats = t.stats
    assert stats is not None
    assert stats.num_puts + stats.num_deletes + stats.num_merges == len(rows)
    assert sum(b.num_puts + b.num_deletes + b.num_merges for b in stats.block_stats) == len(rows)
    assert stats.raw_key_size == sum(len(r[0]) for r in rows)


@pytest.mark.parametrize("codec", CODECS)
def test_wal_round_trip(codec: str) -> None:
    rows = wal_rows(3000)
    data = build_sst(rows, wal=True, block_size=65535, compression=codec)
    t = SsTable.from_bytes(data)
    assert t.is_wal
    assert t.rows() == rows
    assert list(t.iter_rows()) == rows
    assert t.info.first_entry == struct.pack(">Q", 1)
    assert t.info.last_entry is None and t.stats is None and t.filter_names == []


def test_no_filter_below_min_keys_and_when_disabled() -> None:
    assert SsTable.from_bytes(build_sst(make_rows(999))).filter_names == []
    assert SsTable.from_bytes(build_sst(make_rows(1000))).filter_names == ["_bf"]
    assert SsTable.from_bytes(build_sst(make_rows(1000), filter_policies=[])).filter_names == []


def test_filter_answers_and_get_rows() -> None:
    rows = make_rows(2000, versions=3)
    t = SsTable.from_bytes(build_sst(rows))
    by_key: dict[bytes, list[tuple]] = {}
    for r in rows:
        by_key.setdefault(r[0], []).append(r)
    for key, versions in list(by_key.items())[::37]:
        assert t.may_contain(key)
        assert t.get_rows(key) == versions
    assert t.get_rows(b"absent") == []
    assert t.get_rows(b"zzz") == []
    misses = sum(t.may_contain(b"nope-%d" % i) for i in range(5000))
    assert misses < 5000 * 0.03  # about 0.8 % at 10 bits per key


def test_mmh3_policy_is_read_back() -> None:
    from shale.sst.filters import Mmh3BloomFilterPolicy

    rows = make_rows(1200)
    t = SsTable.from_bytes(build_sst(rows, filter_policies=[Mmh3BloomFilterPolicy(10)]))
    assert t.filter_names == ["shale.mmh3_bloom"]
    assert all(t.may_contain(r[0]) for r in rows)


def test_unknown_filter_names_are_ignored() -> None:
    class Odd:
        name = "_bf:p=fixed4"

        def build(self, keys):  # type: ignore[no-untyped-def]
            return b"\x00\x01garbage"

    rows = make_rows(1200)
    t = SsTable.from_bytes(build_sst(rows, filter_policies=[Odd()]))
    assert t.filter_names == ["_bf:p=fixed4"]
    assert t.may_contain(b"anything")  # no known filter: cannot rule out
    assert t.get_rows(rows[5][0]) == [rows[5]]


keys_st = st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=300, unique=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=keys_st,
    versions=st.integers(1, 3),
    block_size=st.sampled_from([64, 128, 1024]),
    bounds=st.tuples(st.binary(max_size=4), st.binary(max_size=4)),
    use_start=st.booleans(),
    use_end=st.booleans(),
)
def test_iteration_matches_slicing(keys, versions, block_size, bounds, use_start, use_end) -> None:  # type: ignore[no-untyped-def]
    rows = [
        (k, 100 - v, VALUE, b"x" * (len(k) % 7), None, 5)
        for k in sorted(keys)
        for v in range(versions)
    ]
    t = SsTable.from_bytes(build_sst(rows, block_size=block_size, min_filter_keys=10))
    start = bounds[0] if use_start else None
    end = bounds[1] if use_end else None
    want = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] < end)]
    assert list(t.iter_rows(start, end)) == want
    # reverse: keys descending, versions of one key still newest first
    want_rev = sorted(want, key=lambda r: (r[0], -r[1]), reverse=True)
    want_rev = [r for k in sorted({r[0] for r in want}, reverse=True) for r in want if r[0] == k]
    assert list(t.iter_rows(start, end, reverse=True)) == want_rev
    for k in keys[:5]:
        assert t.get_rows(k) == [r for r in rows if r[0] == k]


def test_one_key_spanning_blocks() -> None:
    rows = [(b"same", 1000 - i, VALUE, b"v" * 30, None, 1) for i in range(100)]
    rows = [(b"a", 5, VALUE, b"", None, 1), *rows, (b"z", 5, VALUE, b"", None, 1)]
    t = SsTable.from_bytes(build_sst(rows, block_size=256))
    assert t.block_count > 5
    assert t.get_rows(b"same") == rows[1:-1]
    assert list(t.iter_rows(b"same", b"same\x00")) == rows[1:-1]
    assert list(t.iter_rows(b"same", b"same\x00", reverse=True)) == rows[1:-1]


def test_separator() -> None:
    assert shortest_separator(b"abc", b"abd") == b"abd"
    assert shortest_separator(b"abc", b"abzzz") == b"abz"
    assert shortest_separator(b"ab", b"abc") == b"abc"
    assert shortest_separator(b"ab", b"abcd") == b"abc"
    assert shortest_separator(b"same", b"same") == b"same"


def test_builder_rejects_bad_order_and_empty() -> None:
    b = SstBuilder()
    b.add((b"b", 1, VALUE, b"", None, None))
    with pytest.raises(InvalidError):
        b.add((b"a", 1, VALUE, b"", None, None))
    with pytest.raises(InvalidError):
        b.add((b"b", 1, VALUE, b"", None, None))  # same key must have a lower seq
    with pytest.raises(InvalidError):
        SstBuilder().finish()
    w = SstBuilder(wal=True)
    w.add((b"z", 5, VALUE, b"", None, None))
    with pytest.raises(InvalidError):
        w.add((b"a", 4, VALUE, b"", None, None))
    with pytest.raises(InvalidError):
        SstBuilder(compression="brotli")


def test_open_from_store_uses_ranged_reads() -> None:
    store = MemoryStore()
    rows = make_rows(5000, value_size=200)
    data = build_sst(rows, compression="lz4")
    assert len(data) > 3 * 64 * 1024
    store.put("db/compacted/x.sst", data)
    t = SsTable.open(store, "db/compacted/x.sst")
    assert t.rows() == rows
    assert t.get_rows(rows[4321][0]) == [rows[4321]]


def test_version1_sst_round_trip() -> None:
    rows = make_rows(300)
    t = SsTable.from_bytes(build_sst(rows, version=1, min_filter_keys=10))
    assert t.version == 1
    assert t.rows() == [
        (r[0], r[1], r[2], r[3], None if r[2] == TOMBSTONE else r[4], r[5]) for r in rows
    ]


# -- corruption: a data error, never a crash, a hang or wrong rows ----------------------------

_GOOD = build_sst(make_rows(120, value_size=20), block_size=256, min_filter_keys=10)
_GOOD_ROWS = SsTable.from_bytes(_GOOD).rows()
_GOOD_WAL = build_sst(wal_rows(200), wal=True, block_size=512, compression="lz4")
_GOOD_WAL_ROWS = SsTable.from_bytes(_GOOD_WAL).rows()


def _read_all(data: bytes) -> list[tuple]:
    t = SsTable.from_bytes(data)
    rows = t.rows()
    t.stats  # noqa: B018  (decodes the stats block)
    t.filter_names  # noqa: B018
    return rows


@pytest.mark.parametrize("good,good_rows", [(_GOOD, _GOOD_ROWS), (_GOOD_WAL, _GOOD_WAL_ROWS)])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_bit_flips_raise_data_error(good: bytes, good_rows: list, data) -> None:  # type: ignore[no-untyped-def]
    pos = data.draw(st.integers(0, len(good) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(good)
    bad[pos] ^= 1 << bit
    try:
        rows = _read_all(bytes(bad))
    except DataError:
        return
    # a flip that still decodes must not change any row (it hit bytes no row depends on)
    assert rows == good_rows


@pytest.mark.parametrize("good", [_GOOD, _GOOD_WAL])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_truncation_raises_data_error(good: bytes, data) -> None:  # type: ignore[no-untyped-def]
    cut = data.draw(st.integers(0, len(good) - 1))
    with pytest.raises(DataError):
        _read_all(good[:cut])


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=200))
def test_garbage_raises_data_error(junk: bytes) -> None:
    with pytest.raises(DataError):
        _read_all(junk)


class CountingStore(MemoryStore):
    """A memory store that counts ranged reads."""

    def __init__(self) -> None:
        super().__init__()
        self.range_reads = 0

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.range_reads += 1
        return super().get_range(key, start, end)


def test_scans_of_stored_ssts_read_ahead() -> None:
    store = CountingStore()
    rows = make_rows(6000, value_size=200)
    store.put("t.sst", build_sst(rows))
    t = SsTable.open(store, "t.sst")
    before = store.range_reads
    assert list(t.iter_rows()) == rows
    forward_reads = store.range_reads - before
    assert t.block_count > 100 and forward_reads < t.block_count // 10
    t2 = SsTable.open(store, "t.sst")
    before = store.range_reads
    assert list(t2.iter_rows(reverse=True)) == [
        r for k in sorted({r[0] for r in rows}, reverse=True) for r in rows if r[0] == k
    ]
    assert store.range_reads - before < t2.block_count // 10
    # point lookups still read one block
    t3 = SsTable.open(store, "t.sst")
    before = store.range_reads
    assert t3.get_rows(rows[3000][0]) == [rows[3000]]
    assert store.range_reads - before == 1
