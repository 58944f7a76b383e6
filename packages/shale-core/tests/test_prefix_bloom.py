"""Prefix bloom filters (SlateDB's ``BloomFilterPolicy`` with a prefix extractor, FORMAT.md §3.9):
names, the exact hash list and bytes, readers, the SST layer, the settings, and scans skipping
SSTs (L0 here; sorted runs and compaction outputs in shale-compactor's tests).

The filter bytes are checked against values worked out by hand from the spec: with
``bits_per_key=2`` one probe per hash sets bit ``low32(h) mod nbits`` (the SipHash-1-3 values
are printed next to each case; test_bloom.py checks the hash against the reference vectors),
and against a from-the-spec bloom written here for bigger inputs, on both bloom twins.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale import Db, Settings
from shale.errors import InvalidError
from shale.ids import compacted_path
from shale.keys import prefix_range
from shale.meta.segments import FixedPrefixExtractor
from shale.objstore.memory import MemoryStore
from shale.row import Row
from shale.sst import SsTable, build_sst, prefix_bloom
from shale.sst.filters import BloomFilterPolicy, decode_composite
from shale.sst.prefix_bloom import hash_inputs, parse_policy_name, range_prefix

F2 = FixedPrefixExtractor(2)
F3 = FixedPrefixExtractor(3)
F4 = FixedPrefixExtractor(4)
# rows in SST order: a key without a prefix, two versions of one key, a shared prefix, a new one
KEYS = [b"a", b"ab1", b"ab1", b"ab2", b"ac"]
# SipHash-1-3 (zero key) of each hashed string, and low32 mod 16 / mod 8:
#   a   0x407448d2b89b1813  3 3      ab  0x555508cbc6add439  9 1
#   ab1 0x1dd5b9f2a7d8c3a0  0 0      ab2 0x70f8c71c0adc95d7  7 7
#   ac  0x2219238a014317b0  0 0


# -- names ----------------------------------------------------------------------------------


def test_names_are_slatedbs() -> None:
    assert BloomFilterPolicy(10).name == "_bf"
    assert BloomFilterPolicy(10, prefix_extractor=F4).name == "_bf:p=fixed4"
    p = BloomFilterPolicy(8, prefix_extractor=F4, whole_key_filtering=False)
    assert p.name == "_bf:p=fixed4:wh=0"
    for name, parsed in [
        ("_bf", (None, True)),
        ("_bf:p=fixed4", ("fixed4", True)),
        ("_bf:p=fixed4:wh=0", ("fixed4", False)),
        ("_bf:p=a:b", ("a:b", True)),
        ("_bf:wh=0", (None, False)),
        ("_bf:p=", None),
        ("_bfx", None),
        ("shale.mmh3_bloom", None),
    ]:
        assert parse_policy_name(name) == parsed, name


def test_policy_equality_repr_and_build_hashed() -> None:
    a = BloomFilterPolicy(10, prefix_extractor=F4)
    assert a == BloomFilterPolicy(10, prefix_extractor=FixedPrefixExtractor(4))
    assert hash(a) == hash(BloomFilterPolicy(10, prefix_extractor=FixedPrefixExtractor(4)))
    assert a != BloomFilterPolicy(10) and a != BloomFilterPolicy(10, prefix_extractor=F3)
    assert a != BloomFilterPolicy(10, prefix_extractor=F4, whole_key_filtering=False)
    assert "FixedPrefixExtractor(4)" in repr(a)
    # only the whole-key bloom can be built from whole-key hashes (the compaction kernel's)
    assert hasattr(BloomFilterPolicy(10), "build_hashed")
    assert not hasattr(a, "build_hashed")


class _MethodName:
    def name(self) -> str:
        return "x"

    def prefix_len(self, key: bytes, *, scan_prefix: bool = False) -> int | None:
        return None


class _Named:
    def __init__(self, name: object, fn: Any = None) -> None:
        self.name = name
        self.fn = fn

    def prefix_len(self, key: bytes, *, scan_prefix: bool = False) -> Any:
        return self.fn(key, scan_prefix) if self.fn else None


@pytest.mark.parametrize(
    "kw",
    [
        {"whole_key_filtering": False},
        {"prefix_extractor": F4, "whole_key_filtering": 0},
        {"prefix_extractor": _MethodName()},
        {"prefix_extractor": _Named("")},
        {"prefix_extractor": _Named("x:wh=0")},
        {"prefix_extractor": object()},
    ],
)
def test_bad_policy_options(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidError):
        BloomFilterPolicy(10, **kw)


# -- the hash list and the bytes --------------------------------------------------------------


def test_hash_list_by_hand() -> None:
    assert hash_inputs(KEYS, F2, True) == [b"a", b"ab", b"ab1", b"ab1", b"ab2", b"ac", b"ac"]
    assert hash_inputs(KEYS, F2, False) == [b"ab", b"ac"]
    # the prefix is hashed again once another prefix came between
    assert hash_inputs([b"aa1", b"ab1", b"ab2"], F2, False) == [b"aa", b"ab"]


def test_filter_bytes_by_hand() -> None:
    # bits_per_key 2: 1 probe (trunc(2 * 0.69)), so each hash sets bit low32(h) mod nbits
    # whole keys on: 7 hashes -> ceil(14 / 8) = 2 bytes; bits 3 9 0 0 7 0 0 -> 89 02
    p = BloomFilterPolicy(2, prefix_extractor=F2)
    assert p.build(KEYS) == bytes.fromhex("00018902")
    # whole keys off: ab, ac -> 1 byte; bits 1 0 -> 03
    p = BloomFilterPolicy(2, prefix_extractor=F2, whole_key_filtering=False)
    assert p.build(KEYS) == bytes.fromhex("000103")
    # the plain "_bf" for comparison: a ab1 ab1 ab2 ac -> bits 3 0 0 7 0 -> 89 00
    assert BloomFilterPolicy(2).build(KEYS) == bytes.fromhex("00018900")


def _spec_bloom(bloom_impl: ModuleType, items: Sequence[bytes], bits_per_key: int) -> bytes:
    """FORMAT.md §3.9 written out: sizing, f32 probe count, enhanced double hashing, LSB-first."""
    (f,) = struct.unpack("<f", struct.pack("<f", float(bits_per_key)))
    (c,) = struct.unpack("<f", struct.pack("<f", 0.69))
    (probes,) = struct.unpack("<f", struct.pack("<f", f * c))
    num_probes = int(probes)
    nbytes = (len(items) * bits_per_key + 7) // 8
    nbits = nbytes * 8
    bits = bytearray(nbytes)
    for item in items:
        h = bloom_impl.siphash13(item)
        h1, d = (h & 0xFFFFFFFF) % nbits, (h >> 32) % nbits
        for i in range(num_probes):
            d = (d + i) % nbits
            bits[h1 >> 3] |= 1 << (h1 & 7)
            h1 = (h1 + d) % nbits
    return struct.pack(">H", num_probes) + bytes(bits)


def _spec_items(keys: Sequence[bytes], n: int, whole: bool) -> list[bytes]:
    """The hash list of the spec, with a fixed-``n`` extractor."""
    out: list[bytes] = []
    last = None
    for k in keys:
        if len(k) >= n and k[:n] != last:
            out.append(k[:n])
            last = k[:n]
        if whole:
            out.append(k)
    return out


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.binary(max_size=6), max_size=60).map(sorted),
    dup=st.integers(0, 3),
    n=st.integers(1, 4),
    whole=st.booleans(),
    bits=st.sampled_from([1, 3, 8, 10, 16]),
)
def test_filter_bytes_match_the_spec(
    keys: list[bytes], dup: int, n: int, whole: bool, bits: int
) -> None:
    from shale.sst import _bloom_py

    rows = [k for k in keys for _ in range(1 + (len(k) % (dup + 1)))]  # repeated versions
    policy = BloomFilterPolicy(
        bits, prefix_extractor=FixedPrefixExtractor(n), whole_key_filtering=whole
    )
    items = _spec_items(rows, n, whole)
    assert hash_inputs(rows, FixedPrefixExtractor(n), whole) == items
    assert policy.build(rows) == _spec_bloom(_bloom_py, items, bits)


def test_both_bloom_twins_build_the_same_bytes(bloom_impl: ModuleType) -> None:
    rows = sorted(b"%s%03d" % (p, i) for p in (b"aaa", b"ab", b"zzzz") for i in range(50))
    for whole in (True, False):
        items = hash_inputs(rows, F3, whole)
        built = bloom_impl.build_filter(bloom_impl.hash_keys(items), 10)
        assert built == _spec_bloom(bloom_impl, items, 10)
        assert (
            BloomFilterPolicy(10, prefix_extractor=F3, whole_key_filtering=whole).build(rows)
            == built
        )


def test_a_row_without_prefix_keeps_the_last_prefix() -> None:
    """SlateDB's builder compares with the last prefix it *hashed* (filter.rs ``last_prefix``):
    a row without a prefix in between does not make the next row hash it again. (A contract-
    keeping extractor never puts such a row there; this one does, to pin the rule down.)"""
    odd = _Named("odd", lambda k, _scan: 2 if len(k) % 2 else None)  # prefix for odd lengths
    assert hash_inputs([b"aa1", b"aa22", b"aa3"], odd, False) == [b"aa"]
    assert hash_inputs([b"aa1", b"aa22", b"aa3"], odd, True) == [b"aa", b"aa1", b"aa22", b"aa3"]


@pytest.mark.parametrize("bad", [5, -1, 1.0, True, "2"])
def test_an_extractor_returning_a_bad_length_is_refused(bad: object) -> None:
    policy = BloomFilterPolicy(10, prefix_extractor=_Named("bad", lambda _k, _s: bad))
    with pytest.raises(InvalidError, match="invalid prefix length"):
        policy.build([b"abc"])


# -- readers --------------------------------------------------------------------------------

PRESENT = [b"aaa%03d" % i for i in range(100)] + [b"ccc%03d" % i for i in range(100)] + [b"z"]


def test_reader_with_whole_keys() -> None:
    reader: Any = BloomFilterPolicy(10, prefix_extractor=F3).reader(
        BloomFilterPolicy(10, prefix_extractor=F3).build(PRESENT)
    )
    assert all(reader.may_contain(k) for k in PRESENT)
    bloom, hash_fn = reader.bloom_probe()
    assert all(bloom.may_contain_hash(hash_fn(k)) for k in PRESENT)
    assert reader.may_contain_prefix(b"aaa") and reader.may_contain_prefix(b"ccc0")
    assert not reader.may_contain_prefix(b"bbb") and not reader.may_contain_prefix(b"bbb12")
    assert reader.may_contain_prefix(b"bb")  # shorter than the extractor's prefix: maybe
    assert reader.may_contain_prefix(b"")
    # whole keys answer point lookups: a missing key under a present prefix is (likely) absent
    assert sum(reader.may_contain(b"aaa%03d" % i) for i in range(100, 600)) < 25


def test_reader_without_whole_keys() -> None:
    policy = BloomFilterPolicy(10, prefix_extractor=F3, whole_key_filtering=False)
    reader: Any = policy.reader(policy.build(PRESENT))
    assert not hasattr(reader, "bloom_probe")
    assert all(reader.may_contain(k) for k in PRESENT)
    assert reader.may_contain(b"aaa999")  # its prefix is there: maybe
    assert not reader.may_contain(b"bbb000")
    assert reader.may_contain(b"q")  # no prefix: maybe
    assert not reader.may_contain_prefix(b"bbb") and reader.may_contain_prefix(b"aaa")


def test_empty_prefix_filter() -> None:
    """Only keys without a prefix: zero hashes, an empty bit array; prefixed lookups are
    surely absent (no key with a prefix was stored), the rest are "maybe"."""
    policy = BloomFilterPolicy(10, prefix_extractor=F3, whole_key_filtering=False)
    data = policy.build([b"a", b"b", b"zz"])
    assert data == b"\x00\x06"
    reader: Any = policy.reader(data)
    assert not reader.may_contain(b"abc") and reader.may_contain(b"a")
    assert not reader.may_contain_prefix(b"abcd") and reader.may_contain_prefix(b"ab")


# -- range_prefix ---------------------------------------------------------------------------


def test_range_prefix_cases() -> None:
    for p in (b"a", b"abcd", b"a\xff", b"\xff\xff", b"ab\xff\x00"):
        assert range_prefix(*prefix_range(p)) == p
    assert range_prefix(b"abc1", b"abc9") == b"abc"
    assert range_prefix(b"abc", b"abd") == b"abc"
    assert range_prefix(b"abc", b"abc\x00") == b"abc"
    assert range_prefix(b"abc", b"b") == b"a"
    assert range_prefix(b"abc", b"b\x00") is None
    assert range_prefix(b"abc", None) is None
    assert range_prefix(b"\xff\xffa", None) == b"\xff\xff"
    assert range_prefix(None, b"abc") is None
    assert range_prefix(b"b", b"a") is None and range_prefix(b"a", b"a") is None


@settings(max_examples=300, deadline=None)
@given(
    start=st.binary(min_size=1, max_size=5),
    end=st.one_of(st.none(), st.binary(max_size=5)),
    probes=st.lists(st.binary(max_size=6), max_size=30),
)
def test_range_prefix_is_the_longest_common_prefix(
    start: bytes, end: bytes | None, probes: list[bytes]
) -> None:
    p = range_prefix(start, end)
    if end is not None and end <= start:
        assert p is None
        return
    p = p or b""
    inside = [start, *(k for k in probes if start <= k and (end is None or k < end))]
    assert all(k.startswith(p) for k in inside)
    if len(p) < len(start):  # one byte longer would not hold for some key of the range
        longer = start[: len(p) + 1]
        after = prefix_range(longer)[1]
        assert after is not None and (end is None or end > after)


# -- the SST layer --------------------------------------------------------------------------


def _table(policies: list[Any], read: list[Any] | None) -> SsTable:
    rows = [Row(k, 1, 0, b"v", None, None) for k in PRESENT]
    data = build_sst(rows, filter_policies=policies, min_filter_keys=10)
    return SsTable.from_bytes(data, policies=read)


def test_table_trusts_only_the_exact_name() -> None:
    wh0 = BloomFilterPolicy(10, prefix_extractor=F3, whole_key_filtering=False)
    whole = BloomFilterPolicy(10, prefix_extractor=F3)
    t = _table([wh0], [whole, BloomFilterPolicy(10)])
    assert t.filter_names == ["_bf:p=fixed3:wh=0"]
    assert t.may_contain_prefix(b"bbb")  # a filter of another name: not consulted
    assert t.may_contain(b"bbb000")
    t = _table([wh0], [wh0])
    assert not t.may_contain_prefix(b"bbb") and t.may_contain_prefix(b"aaa")
    assert not t.may_contain(b"bbb000") and t.get_rows(b"bbb000") == []
    assert [r[0] for r in t.get_rows(b"aaa007")] == [b"aaa007"]
    # another extractor of another length never reads a fixed3 filter
    t = _table([wh0], [BloomFilterPolicy(10, prefix_extractor=F4, whole_key_filtering=False)])
    assert t.may_contain_prefix(b"bbbb")


def test_table_with_whole_and_prefix_filters() -> None:
    whole = BloomFilterPolicy(10, prefix_extractor=F3)
    plain = BloomFilterPolicy(10)
    t = _table([whole, plain], [plain, whole])
    assert t.filter_names == ["_bf:p=fixed3", "_bf"]
    assert not t.may_contain_prefix(b"bbb")
    bloom, hash_fn, reader, *_ = t.point_probe()
    assert bloom is not None and hash_fn is not None and reader is not None
    raw = dict(decode_composite(t._chunk(t.info.filter_offset, t.info.filter_len, "filter")))
    assert raw["_bf:p=fixed3"] == whole.build(PRESENT) and raw["_bf"] == plain.build(PRESENT)
    # only the whole-key bloom known: prefix queries are "maybe"
    assert _table([whole, plain], None).may_contain_prefix(b"bbb")


# -- settings and the database ----------------------------------------------------------------


def _settings(*names: str, **kw: Any) -> Settings:
    return Settings(
        filter_policies=names,
        min_filter_keys=10,
        compactor_options=None,
        garbage_collector_options=None,
        **kw,
    )


def test_settings_resolve_prefix_blooms() -> None:
    settings = _settings("_bf:p=fixed4:wh=0", "_bf", filter_bits_per_key=8)
    with Db.open("db", settings, object_store=MemoryStore()) as db:
        assert db.filter_policies == [
            BloomFilterPolicy(8, prefix_extractor=F4, whole_key_filtering=False),
            BloomFilterPolicy(8),
        ]


@pytest.mark.parametrize(
    "name,match",
    [
        ("_bf:p=nope", "no plugin provides the prefix extractor"),
        ("_bf:wh=0", "unknown filter policy"),
        ("_bf:p=fixed0", "no plugin provides the prefix extractor"),
        ("bloom", "unknown filter policy"),
    ],
)
def test_bad_names_fail_at_open_before_anything_is_written(name: str, match: str) -> None:
    store = MemoryStore()
    with pytest.raises(InvalidError, match=match):
        Db.open("db", _settings(name), object_store=store)
    assert list(store.list("")) == []


def _fill_l0s(db: Db) -> None:
    for r in range(3):
        for i in range(150):
            db.put(b"aaaa%04d" % i, b"a%d" % r)
            db.put(b"cccc%04d" % i, b"c%d" % r)
        db.flush(memtable=True)


@pytest.mark.parametrize(
    "names", [("_bf:p=fixed4",), ("_bf:p=fixed4:wh=0",), ("_bf", "_bf:p=fixed4:wh=0")]
)
def test_scans_inside_an_absent_prefix_skip_l0_ssts(names: tuple[str, ...]) -> None:
    store = MemoryStore()
    with Db.open("db", _settings(*names), object_store=store) as db:
        _fill_l0s(db)
    with Db.open("db", _settings(*names), object_store=store) as db:
        assert db.metrics()["l0_sst_count"] == 3
        m0 = db.metrics()
        assert list(db.scan_prefix(b"bbbb")) == []
        assert list(db.scan(b"bbbb0001", b"bbbb0100", reverse=True)) == []
        m1 = db.metrics()
        assert m1["sst_filter_prefix_negatives"] - m0.get("sst_filter_prefix_negatives", 0) == 6
        # not one data block was looked at
        assert (m1["cache_hits"] + m1["cache_misses"]) == (m0["cache_hits"] + m0["cache_misses"])
        # present prefixes are read as always
        assert len(list(db.scan_prefix(b"aaaa"))) == 150
        assert list(db.scan(b"cccc0010", b"cccc0012")) == [
            (b"cccc0010", b"c2"),
            (b"cccc0011", b"c2"),
        ]
        assert db.get(b"aaaa0149") == b"a2" and db.get(b"bbbb0000") is None
        # a range across prefixes, or one shorter than the extractor's: no prefix to test
        assert len(list(db.scan(b"aaaa0100", b"cccc0050"))) == 100
        assert len(list(db.scan_prefix(b"bbb"))) == 0
        assert db.metrics()["sst_filter_prefix_negatives"] == m1["sst_filter_prefix_negatives"]


def test_without_a_prefix_policy_scans_read_blocks() -> None:
    store = MemoryStore()
    with Db.open("db", _settings("_bf"), object_store=store) as db:
        _fill_l0s(db)
    with Db.open("db", _settings("_bf:p=fixed4"), object_store=store) as db:
        m0 = db.metrics()
        assert list(db.scan_prefix(b"bbbb")) == []  # the SSTs carry only "_bf"
        m1 = db.metrics()
        assert "sst_filter_prefix_negatives" not in m1
        assert (m1["cache_hits"] + m1["cache_misses"]) > (m0["cache_hits"] + m0["cache_misses"])


def test_policy_objects_can_be_passed() -> None:
    store = MemoryStore()
    policy = BloomFilterPolicy(10, prefix_extractor=F4, whole_key_filtering=False)
    with Db.open("db", _settings("_bf"), object_store=store, filter_policies=[policy]) as db:
        _fill_l0s(db)
        m = db.manifest()
        for view in m.l0:
            table = SsTable.open(store, compacted_path("db", view.sst.id))
            assert table.filter_names == ["_bf:p=fixed4:wh=0"]
        assert list(db.scan_prefix(b"bbbb")) == []
        assert db.metrics()["sst_filter_prefix_negatives"] == 3


def test_prefix_bloom_module_exports() -> None:
    assert set(prefix_bloom.__all__) <= set(dir(prefix_bloom))
