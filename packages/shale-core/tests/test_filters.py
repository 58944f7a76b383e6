"""Tests of shale.sst.filters: policies, the composite filter block, and the plugin hook."""

from __future__ import annotations

import logging
import struct
from types import SimpleNamespace

import mmh3
import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale.errors import DataError, InvalidError
from shale.plugins import hookspecs
from shale.sst import bloom, filters
from shale.sst.filters import (
    DEFAULT_POLICY_NAMES,
    BloomFilterPolicy,
    FilterPolicy,
    FilterReader,
    Mmh3BloomFilterPolicy,
    decode_composite,
    encode_composite,
    open_readers,
    policies_by_name,
)

KEYS = [b"key%06d" % i for i in range(2000)]
ABSENT = [b"absent%06d" % i for i in range(20000)]

# --------------------------------------------------------------------------------------------
# Composite block.


def test_composite_known_bytes() -> None:
    payload = encode_composite([("_bf", b"\x00\x06\xab"), ("x", b"")])
    assert payload == (
        b"\x00\x02"
        + b"\x00\x03_bf" + b"\x00\x00\x00\x00\x00\x00\x00\x03" + b"\x00\x06\xab"
        + b"\x00\x01x" + b"\x00" * 8
    )  # fmt: skip
    assert decode_composite(payload) == [("_bf", b"\x00\x06\xab"), ("x", b"")]
    assert encode_composite([]) == b"\x00\x00"
    assert decode_composite(b"\x00\x00") == []


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=50), max_size=6))
def test_composite_round_trip(entries: dict[str, bytes]) -> None:
    pairs = list(entries.items())  # hypothesis text never contains lone surrogates
    payload = encode_composite(pairs)
    assert decode_composite(payload) == pairs
    assert decode_composite(memoryview(payload)) == pairs
    # Every strict prefix is truncated, and any extra byte is trailing garbage.
    for cut in range(len(payload)):
        with pytest.raises(DataError):
            decode_composite(payload[:cut])
    with pytest.raises(DataError):
        decode_composite(payload + b"\x00")


def test_composite_malformed() -> None:
    with pytest.raises(DataError):  # name is not UTF-8
        decode_composite(b"\x00\x01\x00\x01\xff" + b"\x00" * 8)
    with pytest.raises(DataError):  # data_len far beyond the payload
        decode_composite(b"\x00\x01\x00\x01a" + b"\xff" * 8)
    with pytest.raises(DataError):  # count says one more filter than present
        decode_composite(b"\x00\x02" + encode_composite([("a", b"1")])[2:])


@pytest.mark.parametrize("name", ["", None, b"_bf", "x" * 65536, "\ud800"])
def test_composite_bad_names(name: object) -> None:
    with pytest.raises(InvalidError):
        encode_composite([(name, b"")])  # type: ignore[list-item]


def test_composite_duplicate_names_and_count() -> None:
    with pytest.raises(InvalidError):
        encode_composite([("_bf", b""), ("_bf", b"")])
    with pytest.raises(InvalidError):
        encode_composite([(f"n{i}", b"") for i in range(65536)])
    assert len(decode_composite(encode_composite([("é" * 30000, b"z")]))[0][0]) == 30000


# --------------------------------------------------------------------------------------------
# Policies.


def test_bloom_policy_is_slatedb_bf() -> None:
    policy = BloomFilterPolicy()
    assert policy.name == "_bf" and policy.bits_per_key == 10
    assert DEFAULT_POLICY_NAMES == ("_bf",)
    data = policy.build(KEYS)
    assert data == bloom.build_filter(bloom.hash_keys(KEYS), 10)
    assert data[:2] == b"\x00\x06" and len(data) == 2 + 2000 * 10 // 8
    assert BloomFilterPolicy(8).build(KEYS)[:2] == b"\x00\x05"
    # Each row hashes, duplicates included: two copies of a key make a bigger filter.
    assert len(policy.build([b"a", b"a"])) == 2 + 3


@pytest.mark.parametrize("cls", [BloomFilterPolicy, Mmh3BloomFilterPolicy])
def test_policy_round_trip(cls: type) -> None:
    policy = cls(10)
    assert isinstance(policy, FilterPolicy)
    data = policy.build(KEYS)
    reader = policy.reader(data)
    assert isinstance(reader, FilterReader)
    assert all(reader.may_contain(k) for k in KEYS)
    fp = sum(reader.may_contain(k) for k in ABSENT) / len(ABSENT)
    assert 0.002 < fp < 0.02, fp
    # Any bits_per_key is readable by any instance of the policy.
    other = cls(10).reader(cls(4).build(KEYS))
    assert all(other.may_contain(k) for k in KEYS)
    with pytest.raises(DataError):
        policy.reader(b"\x00")


def test_mmh3_policy_hash_and_layout() -> None:
    policy = Mmh3BloomFilterPolicy()
    assert policy.name == "shale.mmh3_bloom" and not policy.name.startswith("_bf")
    for key in (b"", b"a", b"hello world", bytes(range(200))):
        expected = mmh3.hash128(key, 0, True, False) & ((1 << 64) - 1)
        assert filters.mmh3_hash(key) == expected
        assert filters.mmh3_hash(key) == mmh3.hash64(key, seed=0, signed=False)[0]
    hashes = [filters.mmh3_hash(k) for k in KEYS]
    data = policy.build(KEYS)
    assert data == bloom.build_filter(hashes, 10)
    assert data != BloomFilterPolicy().build(KEYS)
    # SlateDB's "_bf" reader cannot use it (different hash), hence the different name.
    bf_reader = BloomFilterPolicy().reader(data)
    assert not all(bf_reader.may_contain(k) for k in KEYS)


@pytest.mark.parametrize("bad", [0, -1, 1 << 32, True, 10.5, "10"])
def test_bad_bits_per_key(bad: object) -> None:
    for cls in (BloomFilterPolicy, Mmh3BloomFilterPolicy):
        with pytest.raises(InvalidError):
            cls(bad)  # type: ignore[arg-type]


def test_policy_equality_and_repr() -> None:
    assert BloomFilterPolicy(10) == BloomFilterPolicy(10) != BloomFilterPolicy(8)
    assert BloomFilterPolicy(10) != Mmh3BloomFilterPolicy(10)
    assert len({BloomFilterPolicy(), BloomFilterPolicy(), Mmh3BloomFilterPolicy()}) == 2
    assert repr(Mmh3BloomFilterPolicy(7)) == "Mmh3BloomFilterPolicy(bits_per_key=7)"


# --------------------------------------------------------------------------------------------
# Reading: policies by name, unknown names skipped.


def test_policies_by_name_first_wins(caplog: pytest.LogCaptureFixture) -> None:
    a, b, m = BloomFilterPolicy(10), BloomFilterPolicy(8), Mmh3BloomFilterPolicy()
    with caplog.at_level(logging.WARNING, logger="shale.sst.filters"):
        by_name = policies_by_name([a, m, b, BloomFilterPolicy(10)])
    assert by_name == {"_bf": a, "shale.mmh3_bloom": m}
    assert by_name["_bf"] is a
    assert len(caplog.records) == 1  # only the conflicting duplicate warns

    class Nameless:
        name = ""

    with pytest.raises(InvalidError):
        policies_by_name([Nameless()])  # type: ignore[list-item]


def test_open_readers_skips_unknown_names() -> None:
    known = policies_by_name([BloomFilterPolicy(), Mmh3BloomFilterPolicy()])
    bf = BloomFilterPolicy().build(KEYS)
    payload = encode_composite(
        [("_bf:p=fixed4", b"\x00\x06garbage"), ("_bf", bf), ("someone.else", b"?")]
    )
    readers = open_readers(decode_composite(payload), known)
    assert list(readers) == ["_bf"]
    assert all(readers["_bf"].may_contain(k) for k in KEYS)
    # A legacy SST (no filter_format): the chunk payload is one raw SlateDB bloom.
    assert list(open_readers([("_bf", bf)], known)) == ["_bf"]
    assert open_readers([("_bf:p=fixed4:wh=0", bf)], known) == {}
    with pytest.raises(DataError):
        open_readers([("_bf", b"")], known)


# --------------------------------------------------------------------------------------------
# The plugin hook.


def _manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("shale")
    pm.add_hookspecs(hookspecs)
    pm.register(filters, name="shale.filters")
    pm.check_pending()
    return pm


def test_hook_offers_both_builtins() -> None:
    pm = _manager()
    (offered,) = pm.hook.shale_filter_policy(settings=None)
    assert offered == [BloomFilterPolicy(10), Mmh3BloomFilterPolicy(10)]
    (offered,) = pm.hook.shale_filter_policy(settings=SimpleNamespace(filter_bits_per_key=8))
    assert [p.bits_per_key for p in offered] == [8, 8]
    assert [p.name for p in offered] == ["_bf", "shale.mmh3_bloom"]


def test_hook_rejects_bad_bits_per_key() -> None:
    with pytest.raises(InvalidError):
        filters.shale_filter_policy(SimpleNamespace(filter_bits_per_key=0))


def test_bloom_header_layout() -> None:
    data = BloomFilterPolicy(16).build([b"k"])
    (probes,) = struct.unpack(">H", data[:2])
    assert probes == 11 and len(data) == 2 + 2
