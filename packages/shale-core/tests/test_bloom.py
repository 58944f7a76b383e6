"""Tests of shale.sst.bloom and both of its twins (FORMAT.md §3.9).

Evidence that the bytes are SlateDB's:

* SipHash: an independent, round-count-generic SipHash written here is checked against the
  published SipHash-2-4 and SipHash-1-3 reference vectors (key 00..0f); the twins must agree with
  its 1-3 variant under the zero key, and with CPython's own ``hash()`` of bytes, which is
  SipHash-1-3 with a zero key when ``PYTHONHASHSEED=0``.
* Probing: SlateDB's own unit-test vector for ``probes_for_key``.
* The ``interop`` test builds an SST with the official ``slatedb`` package and requires the
  ``_bf`` filter it wrote to be reproduced byte for byte from the SST's keys.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import _accel
from shale.errors import DataError, InvalidError
from shale.sst import bloom

M64 = (1 << 64) - 1
# Differential tests take the function-scoped ``both_twins`` getter; it holds no per-example state.
DIFFERENTIAL = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --------------------------------------------------------------------------------------------
# An independent SipHash-c-d (reference construction, any round counts, any key).


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def siphash_ref(msg: bytes, k0: int, k1: int, c: int, d: int) -> int:
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & M64
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & M64
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & M64
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & M64
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    padded = msg + b"\x00" * (7 - len(msg) % 8) + bytes([len(msg) & 0xFF])
    for i in range(0, len(padded), 8):
        m = int.from_bytes(padded[i : i + 8], "little")
        v[3] ^= m
        rounds(c)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(d)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


# Published outputs for key 00 01 .. 0f and messages 00 01 .. (len-1), len = 0..63, as u64
# (the reference vectors' little-endian output bytes read as one integer).
SIPHASH24_VECTORS = [
    0x726FDB47DD0E0E31, 0x74F839C593DC67FD, 0x0D6C8009D9A94F5A, 0x85676696D7FB7E2D,
    0xCF2794E0277187B7, 0x18765564CD99A68D, 0xCBC9466E58FEE3CE, 0xAB0200F58B01D137,
    0x93F5F5799A932462, 0x9E0082DF0BA9E4B0, 0x7A5DBBC594DDB9F3, 0xF4B32F46226BADA7,
    0x751E8FBC860EE5FB, 0x14EA5627C0843D90, 0xF723CA908E7AF2EE, 0xA129CA6149BE45E5,
    0x3F2ACC7F57C29BDB, 0x699AE9F52CBE4794, 0x4BC1B3F0968DD39C, 0xBB6DC91DA77961BD,
    0xBED65CF21AA2EE98, 0xD0F2CBB02E3B67C7, 0x93536795E3A33E88, 0xA80C038CCD5CCEC8,
    0xB8AD50C6F649AF94, 0xBCE192DE8A85B8EA, 0x17D835B85BBB15F3, 0x2F2E6163076BCFAD,
    0xDE4DAAACA71DC9A5, 0xA6A2506687956571, 0xAD87A3535C49EF28, 0x32D892FAD841C342,
    0x7127512F72F27CCE, 0xA7F32346F95978E3, 0x12E0B01ABB051238, 0x15E034D40FA197AE,
    0x314DFFBE0815A3B4, 0x027990F029623981, 0xCADCD4E59EF40C4D, 0x9ABFD8766A33735C,
    0x0E3EA96B5304A7D0, 0xAD0C42D6FC585992, 0x187306C89BC215A9, 0xD4A60ABCF3792B95,
    0xF935451DE4F21DF2, 0xA9538F0419755787, 0xDB9ACDDFF56CA510, 0xD06C98CD5C0975EB,
    0xE612A3CB9ECBA951, 0xC766E62CFCADAF96, 0xEE64435A9752FE72, 0xA192D576B245165A,
    0x0A8787BF8ECB74B2, 0x81B3E73D20B49B6F, 0x7FA8220BA3B2ECEA, 0x245731C13CA42499,
    0xB78DBFAF3A8D83BD, 0xEA1AD565322A1A0B, 0x60E61C23A3795013, 0x6606D7E446282B93,
    0x6CA4ECB15C5F91E1, 0x9F626DA15C9625F3, 0xE51B38608EF25F57, 0x958A324CEB064572,
]  # fmt: skip
SIPHASH13_VECTORS = [
    0xABAC0158050FC4DC, 0xC9F49BF37D57CA93, 0x82CB9B024DC7D44D, 0x8BF80AB8E7DDF7FB,
    0xCF75576088D38328, 0xDEF9D52F49533B67, 0xC50D2B50C59F22A7, 0xD3927D989BB11140,
    0x369095118D299A8E, 0x25A48EB36C063DE4, 0x79DE85EE92FF097F, 0x70C118C1F94DC352,
    0x78A384B157B4D9A2, 0x306F760C1229FFA7, 0x605AA111C0F95D34, 0xD320D86D2A519956,
    0xCC4FDD1A7D908B66, 0x9CF2689063DBD80C, 0x8FFC389CB473E63E, 0xF21F9DE58D297D1C,
    0xC0DC2F46A6CCE040, 0xB992ABFE2B45F844, 0x7FFE7B9BA320872E, 0x525A0E7FDAE6C123,
    0xF464AEB267349C8C, 0x45CD5928705B0979, 0x3A3E35E3CA9913A5, 0xA91DC74E4ADE3B35,
    0xFB0BED02EF6CD00D, 0x88D93CB44AB1E1F4, 0x540F11D643C5E663, 0x2370DD1F8C21D1BC,
    0x81157B6C16A7B60D, 0x4D54B9E57A8FF9BF, 0x759F12781F2A753E, 0xCEA1A3BEBF186B91,
    0x2CF508D3ADA26206, 0xB6101C2DA3C33057, 0xB3F47496AE3A36A1, 0x626B57547B108392,
    0xC1D2363299E41531, 0x667CC1923F1AD944, 0x65704FFEC8138825, 0x24F280D1C28949A6,
    0xC2CA1CEDFAF8876B, 0xC2164BFC9F042196, 0xA16E9C9368B1D623, 0x49FB169C8B5114FD,
    0x9F3143F8DF074C46, 0xC6FDAF2412CC86B3, 0x7EAF49D10A52098F, 0x1CF313559D292F9A,
    0xC44A30DDA2F41F12, 0x36FAE98943A71ED0, 0x318FB34C73F0BCE6, 0xA27ABF3670A7E980,
    0xB4BCC0DB243C6D75, 0x23F8D852FDB71513, 0x8F035F4DA67D8A08, 0xD89CD0E5B7E8F148,
    0xF6F4E6BCF7A644EE, 0xAEC59AD80F1837F2, 0xC3B2F6154B6694E0, 0x9D199062B7BBB3A8,
]  # fmt: skip
K0 = int.from_bytes(bytes(range(8)), "little")
K1 = int.from_bytes(bytes(range(8, 16)), "little")


def test_reference_siphash_matches_published_vectors() -> None:
    for n in range(64):
        msg = bytes(range(n))
        assert siphash_ref(msg, K0, K1, 2, 4) == SIPHASH24_VECTORS[n], n
        assert siphash_ref(msg, K0, K1, 1, 3) == SIPHASH13_VECTORS[n], n


def test_siphash13_zero_key_against_reference(bloom_impl: ModuleType) -> None:
    for n in range(80):
        for msg in (bytes(range(n)), bytes([0xFF]) * n, os.urandom(n)):
            assert bloom_impl.siphash13(msg) == siphash_ref(msg, 0, 0, 1, 3), msg


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_siphash13_property(msg: bytes) -> None:
    expected = siphash_ref(msg, 0, 0, 1, 3)
    for impl in _accel.twins("bloom").values():
        assert impl.siphash13(msg) == expected
        assert impl.siphash13(bytearray(msg)) == expected
        assert impl.siphash13(memoryview(msg)) == expected


@pytest.mark.skipif(sys.hash_info.algorithm != "siphash13", reason="CPython hash is not SipHash13")
def test_siphash13_matches_cpython_hash_with_zero_seed(bloom_impl: ModuleType) -> None:
    # With PYTHONHASHSEED=0 CPython's hash secret is all zeros, so hash(bytes) is SipHash-1-3
    # under the zero key (as a signed Py_hash_t; 0 for b"" and -1 mapped to -2).
    msgs = [b"a", b"abc", b"siphash", bytes(range(7)), bytes(range(8)), bytes(range(33))]
    code = "import sys; print([hash(m) for m in eval(sys.stdin.read())])"
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(
        [sys.executable, "-c", code], input=repr(msgs), capture_output=True, text=True, env=env,
        check=True,
    ).stdout  # fmt: skip
    for msg, h in zip(msgs, eval(out), strict=True):
        assert h not in (0, -2)
        assert bloom_impl.siphash13(msg) == h & M64


def test_hash_keys(bloom_impl: ModuleType) -> None:
    keys = [b"", b"k", b"k", bytes(range(100)), bytearray(b"ba"), memoryview(b"mv")]
    assert bloom_impl.hash_keys(keys) == [bloom_impl.siphash13(bytes(k)) for k in keys]
    assert bloom_impl.hash_keys([]) == []
    assert bloom_impl.hash_keys(iter([b"x"])) == [bloom_impl.siphash13(b"x")]


# --------------------------------------------------------------------------------------------
# Encoding and probing.


def probes_ref(h: int, num_probes: int, nbits: int) -> list[int]:
    h1, d = (h & 0xFFFFFFFF) % nbits, (h >> 32) % nbits
    out = []
    for i in range(num_probes):
        d = (d + i) % nbits
        out.append(h1)
        h1 = (h1 + d) % nbits
    return out


def test_probe_sequence_matches_slatedb_unit_vector() -> None:
    expected = [928559, 107781, 287004, 466229, 645457, 824689, 3926]
    assert probes_ref(0xDF77EF56DEADBEEF, 7, 1_000_000) == expected


def test_probe_uses_slatedb_positions_and_lsb_first_bits(bloom_impl: ModuleType) -> None:
    h = 0xDF77EF56DEADBEEF
    positions = [928559, 107781, 287004, 466229, 645457, 824689, 3926]
    bits = bytearray(1_000_000 // 8)
    for p in positions:
        bits[p >> 3] |= 1 << (p & 7)
    data = b"\x00\x07" + bytes(bits)
    bf = bloom_impl.BloomFilter(data)
    assert (bf.num_probes, bf.num_bits) == (7, 1_000_000)
    assert bf.may_contain_hash(h)
    assert bloom_impl.filter_may_contain(data, h)
    for p in positions:
        cleared = bytearray(bits)
        cleared[p >> 3] &= ~(1 << (p & 7)) & 0xFF
        assert not bloom_impl.filter_may_contain(b"\x00\x07" + bytes(cleared), h)
        flipped = bytearray(bits)  # the MSB-first reading of the same bit must not count
        flipped[p >> 3] = (flipped[p >> 3] & ~(1 << (p & 7))) | (0x80 >> (p & 7))
        if flipped != bits:
            assert not bloom_impl.filter_may_contain(b"\x00\x07" + bytes(flipped), h)


@pytest.mark.parametrize("bpk", [1, 3, 8, 10, 16])
def test_single_hash_sets_exactly_its_probes(bloom_impl: ModuleType, bpk: int) -> None:
    rng = random.Random(bpk)
    for _ in range(50):
        h = rng.getrandbits(64)
        data = bloom_impl.build_filter([h], bpk)
        nbytes = (bpk + 7) // 8
        assert len(data) == 2 + nbytes
        probes = struct.unpack(">H", data[:2])[0]
        assert probes == bloom_impl.num_probes_for(bpk)
        expected = set(probes_ref(h, probes, nbytes * 8))
        got = {b for b in range(nbytes * 8) if data[2 + (b >> 3)] >> (b & 7) & 1}
        assert got == expected


def test_num_probes_is_single_precision(bloom_impl: ModuleType) -> None:
    f = bloom_impl.num_probes_for
    assert (f(10), f(8), f(1), f(2), f(20)) == (6, 5, 0, 1, 13)
    assert f(300) == 207  # f64 arithmetic would give 206
    assert f(1100) == 759  # f64: 758
    assert f(2**32 - 1) == 65535  # Rust's `as u16` saturates


def test_num_probes_twins_agree(both_twins: Any) -> None:
    py, c = both_twins("bloom")
    for bpk in [*range(1, 3000), 94980, 94990, 2**24 + 1, 2**32 - 1]:
        assert py.num_probes_for(bpk) == c.num_probes_for(bpk), bpk


@pytest.mark.parametrize(
    "n,bpk,nbytes",
    [(0, 10, 0), (1, 10, 2), (3, 10, 4), (4, 10, 5), (8, 1, 1), (9, 1, 2), (1000, 10, 1250)],
)
def test_sizes(bloom_impl: ModuleType, n: int, bpk: int, nbytes: int) -> None:
    data = bloom_impl.build_filter(list(range(n)), bpk)
    assert len(data) == 2 + nbytes
    assert data[:2] == struct.pack(">H", bloom_impl.num_probes_for(bpk))


def test_empty_filter_holds_nothing(bloom_impl: ModuleType) -> None:
    assert bloom_impl.build_filter([], 10) == b"\x00\x06"
    for data in (b"\x00\x06", b"\x00\x00", b"\xff\xff"):
        bf = bloom_impl.BloomFilter(data)
        assert bf.num_bits == 0
        for h in (0, 1, M64):
            assert not bf.may_contain_hash(h)
            assert not bloom_impl.filter_may_contain(data, h)


def test_zero_probes_means_maybe(bloom_impl: ModuleType) -> None:
    data = bloom_impl.build_filter([1, 2, 3], 1)
    assert data[:2] == b"\x00\x00"
    assert bloom_impl.BloomFilter(data).may_contain_hash(12345)


@pytest.mark.parametrize("data", [b"", b"\x00", bytearray(b"\x06"), memoryview(b"")])
def test_malformed_filter_is_data_error(bloom_impl: ModuleType, data: Any) -> None:
    with pytest.raises(DataError):
        bloom_impl.BloomFilter(data)
    with pytest.raises(DataError):
        bloom_impl.filter_may_contain(data, 1)


def test_bytes_like_filter_data(bloom_impl: ModuleType) -> None:
    data = bloom_impl.build_filter(bloom_impl.hash_keys([b"a", b"b"]), 10)
    h = bloom_impl.siphash13(b"a")
    for view in (bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
        assert bloom_impl.BloomFilter(view).may_contain_hash(h)
        assert bloom_impl.filter_may_contain(view, h)


@pytest.mark.parametrize("bad", [-1, 1 << 64, True, 1.0, "1", None])
def test_bad_hash_is_invalid(bloom_impl: ModuleType, bad: Any) -> None:
    with pytest.raises(InvalidError):
        bloom_impl.build_filter([1, bad], 10)
    with pytest.raises(InvalidError):
        bloom_impl.BloomFilter(b"\x00\x06\xff").may_contain_hash(bad)
    with pytest.raises(InvalidError):
        bloom_impl.filter_may_contain(b"\x00\x06\xff", bad)


@pytest.mark.parametrize("bad", [0, -1, 1 << 32, True, 10.0, "10", None])
def test_bad_bits_per_key_is_invalid(bloom_impl: ModuleType, bad: Any) -> None:
    with pytest.raises(InvalidError):
        bloom_impl.build_filter([1], bad)
    with pytest.raises(InvalidError):
        bloom_impl.num_probes_for(bad)


class _HugeSequence(Sequence[int]):
    def __len__(self) -> int:
        return 1 << 29

    def __getitem__(self, i: Any) -> Any:
        raise AssertionError("must not be iterated")


def test_filter_too_large_for_u32_is_invalid(bloom_impl: ModuleType) -> None:
    with pytest.raises(InvalidError):
        bloom_impl.build_filter(_HugeSequence(), 10)


# --------------------------------------------------------------------------------------------
# Behaviour: no false negatives, false-positive rate, twins identical.


def test_no_false_negatives_and_fp_rate(bloom_impl: ModuleType) -> None:
    n = 20_000
    keys = [b"key-%08d" % i for i in range(n)]
    others = [b"other-%08d" % i for i in range(n)]
    data = bloom_impl.build_filter(bloom_impl.hash_keys(keys), 10)
    assert len(data) == 2 + n * 10 // 8
    bf = bloom_impl.BloomFilter(data)
    assert all(bf.may_contain_hash(h) for h in bloom_impl.hash_keys(keys))
    fp = sum(bf.may_contain_hash(h) for h in bloom_impl.hash_keys(others)) / n
    assert 0.004 < fp < 0.014, fp  # theory for 10 bits/key and 6 probes: about 0.84 %


@DIFFERENTIAL
@given(
    keys=st.lists(st.binary(max_size=24), max_size=120),
    bpk=st.integers(min_value=1, max_value=40),
    probes=st.lists(st.integers(min_value=0, max_value=M64), max_size=30),
)
def test_twins_identical(both_twins: Any, keys: list[bytes], bpk: int, probes: list[int]) -> None:
    py, c = both_twins("bloom")
    hashes = py.hash_keys(keys)
    assert c.hash_keys(keys) == hashes
    data = py.build_filter(hashes, bpk)
    assert c.build_filter(hashes, bpk) == data
    fpy, fc = py.BloomFilter(data), c.BloomFilter(data)
    for h in hashes + probes:
        expected = fpy.may_contain_hash(h)
        assert fc.may_contain_hash(h) == expected
        assert py.filter_may_contain(data, h) == c.filter_may_contain(data, h) == expected
    assert all(fc.may_contain_hash(h) for h in hashes)


@DIFFERENTIAL
@given(data=st.binary(min_size=2, max_size=64), probes=st.lists(st.integers(0, M64), max_size=20))
def test_twins_identical_on_arbitrary_filter_bytes(
    both_twins: Any, data: bytes, probes: list[int]
) -> None:
    py, c = both_twins("bloom")
    fpy, fc = py.BloomFilter(data), c.BloomFilter(data)
    assert (fpy.num_probes, fpy.num_bits) == (fc.num_probes, fc.num_bits)
    for h in probes:
        assert fpy.may_contain_hash(h) == fc.may_contain_hash(h)


def test_facade() -> None:
    assert bloom.IMPLEMENTATION.__name__ in ("shale.sst._bloom_c", "shale.sst._bloom_py")
    assert _accel.is_compiled("bloom") == bloom.IMPLEMENTATION.__name__.endswith("_c")
    for name in bloom.__all__:
        if name != "IMPLEMENTATION":
            assert getattr(bloom, name) is getattr(bloom.IMPLEMENTATION, name)


def test_twins_have_the_same_public_api() -> None:
    twins = _accel.twins("bloom")
    names = {tuple(sorted(m.__all__)) for m in twins.values()}
    assert len(names) == 1


# --------------------------------------------------------------------------------------------
# Interop: the filter of a real SST written by the official slatedb package.


def _fb_table(buf: bytes, pos: int | None = None) -> Any:
    from flatbuffers.table import Table

    b = bytearray(buf)
    return Table(b, struct.unpack_from("<I", b, 0)[0] if pos is None else pos)


def _fb_u64(tab: Any, slot: int) -> int:
    from flatbuffers import number_types

    o = tab.Offset(4 + 2 * slot)
    return int(tab.Get(number_types.Uint64Flags, o + tab.Pos)) if o else 0


def _fb_i8(tab: Any, slot: int) -> int:
    from flatbuffers import number_types

    o = tab.Offset(4 + 2 * slot)
    return int(tab.Get(number_types.Int8Flags, o + tab.Pos)) if o else 0


def _chunk(sst: bytes, offset: int, length: int) -> bytes:
    payload, crc = sst[offset : offset + length - 4], sst[offset + length - 4 : offset + length]
    assert zlib.crc32(payload) == struct.unpack(">I", crc)[0]
    return payload


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, pos


def _v2_block_keys(block: bytes) -> list[bytes]:
    (count,) = struct.unpack_from(">H", block, len(block) - 2)
    end = len(block) - 2 - 2 * count
    pos, prev, keys = 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = prev[:shared] + block[pos : pos + unshared]
        pos += unshared + value_len + 8
        flags = block[pos]
        pos += 1 + 8 * bool(flags & 0x02) + 8 * bool(flags & 0x04)
        keys.append(key)
        prev = key
    assert pos == end
    return keys


def _read_sst(sst: bytes) -> tuple[list[bytes], bytes, int]:
    """(keys of every row in SST order, filter chunk payload, rows counted by the stats)."""
    m, version = struct.unpack(">QH", sst[-10:])
    assert version == 2
    info = _chunk(sst, m, len(sst) - 10 - m)
    t = _fb_table(info)
    index_off, index_len = _fb_u64(t, 1), _fb_u64(t, 2)
    filter_off, filter_len = _fb_u64(t, 3), _fb_u64(t, 4)
    stats_off, stats_len = _fb_u64(t, 8), _fb_u64(t, 9)
    assert _fb_i8(t, 5) == 0, "expected no compression"
    assert _fb_i8(t, 10) == 1, "expected the composite filter format"
    assert filter_len > 0
    # Data block offsets from the index (SsTableIndex.block_meta[i].offset).
    index = _fb_table(_chunk(sst, index_off, index_len))
    vec = index.Offset(4)
    base, n = index.Vector(vec), index.VectorLen(vec)
    offsets = [_fb_u64(_fb_table(index.Bytes, index.Indirect(base + 4 * i)), 0) for i in range(n)]
    offsets.append(filter_off)
    keys: list[bytes] = []
    for start, stop in itertools.pairwise(offsets):
        keys += _v2_block_keys(_chunk(sst, start, stop - start))
    stats = _fb_table(_chunk(sst, stats_off, stats_len))
    rows = _fb_u64(stats, 0) + _fb_u64(stats, 1) + _fb_u64(stats, 2)
    return keys, _chunk(sst, filter_off, filter_len), rows


def _composite(payload: bytes) -> dict[str, bytes]:
    (count,) = struct.unpack_from(">H", payload, 0)
    pos, out = 2, {}
    for _ in range(count):
        (nl,) = struct.unpack_from(">H", payload, pos)
        name = payload[pos + 2 : pos + 2 + nl].decode()
        (dl,) = struct.unpack_from(">Q", payload, pos + 2 + nl)
        pos += 2 + nl + 8
        out[name] = payload[pos : pos + dl]
        pos += dl
    assert pos == len(payload)
    return out


async def _write_db(root: Path) -> None:
    import slatedb.uniffi as sdb

    store = sdb.ObjectStore.resolve("file:///")  # paths are given to the builder
    db = await sdb.DbBuilder(str(root / "db").lstrip("/"), store).build()
    for i in range(1500):
        await db.put(b"key%06d" % i, b"value-%d" % i)
    snapshot = await db.snapshot()  # keeps older versions alive, so the SST has duplicate keys
    for i in range(0, 300, 3):
        await db.put(b"key%06d" % i, b"second")
    for i in range(1, 300, 3):
        await db.delete(b"key%06d" % i)
    await db.put(b"zz-added-later", b"x")
    await db.flush_with_options(sdb.FlushOptions(flush_type=sdb.FlushType.MEM_TABLE))
    await db.shutdown()
    del snapshot


@pytest.fixture(scope="module")
def official_sst(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], bytes, int]:
    """(keys in SST order, filter payload, row count) of an L0 SST the official slatedb wrote."""
    pytest.importorskip("slatedb.uniffi")
    pytest.importorskip("flatbuffers")
    root = tmp_path_factory.mktemp("slatedb")
    asyncio.run(_write_db(root))
    ssts = sorted((root / "db" / "compacted").glob("*.sst"))
    assert len(ssts) == 1
    return _read_sst(ssts[0].read_bytes())


@pytest.mark.interop
def test_filter_matches_official_slatedb_sst(
    official_sst: tuple[list[bytes], bytes, int], bloom_impl: ModuleType
) -> None:
    keys, payload, rows = official_sst
    assert len(keys) == rows >= 1500
    assert keys == sorted(keys)
    assert len(set(keys)) < len(keys), "expected several versions of some keys"
    filters = _composite(payload)
    assert list(filters) == ["_bf"]
    stored = filters["_bf"]
    assert bloom_impl.build_filter(bloom_impl.hash_keys(keys), 10) == stored
    # Deduplicated keys give a different (smaller) filter: every row is hashed.
    assert bloom_impl.build_filter(bloom_impl.hash_keys(sorted(set(keys))), 10) != stored
    bf = bloom_impl.BloomFilter(stored)
    assert all(bf.may_contain_hash(bloom_impl.siphash13(k)) for k in keys)

    from shale.sst import filters as shale_filters

    assert shale_filters.decode_composite(payload) == [("_bf", stored)]
    assert shale_filters.BloomFilterPolicy(10).build(keys) == stored
    assert shale_filters.encode_composite([("_bf", stored)]) == payload
