"""SlateDB's bloom filter: the readable reference twin (FORMAT.md §3.9).

The compiled twin ``shale.sst._bloom_c`` must return identical results and bytes; import the facade
:mod:`shale.sst.bloom` rather than this module.

Invariants (all required for byte-for-byte compatibility with SlateDB's ``_bf`` filters):

* **Hash.** ``siphash13(key)`` is SipHash-1-3 with the all-zero 128-bit key over the raw key
  bytes, as a u64: Rust ``siphasher::sip::SipHasher13::new().hash(bytes)``. That inherent
  ``hash`` method does *not* go through ``std::hash::Hash`` and therefore adds no length prefix.
* **Encoding.** ``u16be num_probes ‖ bit array``. ``nbytes = ceil(n · bits_per_key / 8)``, computed
  in u32 by SlateDB (so we refuse inputs whose bit count does not fit); ``nbits = 8 · nbytes``.
* **num_probes** ``= trunc(f32(bits_per_key) · 0.69f32)``, saturated to u16 as Rust's ``as u16``
  does. Single precision matters: 10 → 6, 8 → 5.
* **Probes** (enhanced double hashing): ``h1 = (h & 0xffffffff) % nbits``,
  ``d = (h >> 32) % nbits``; for ``i`` in ``0..num_probes``: ``d = (d + i) % nbits``, probe ``h1``,
  ``h1 = (h1 + d) % nbits``. Every value stays below ``2**33``, so u64 never overflows.
* **Bits** are LSB-first: bit ``b`` is ``byte[b >> 3] & (1 << (b & 7))``.
* An empty bit array holds no key: every probe answers "absent" (SlateDB never writes one for
  real data; it writes filters only for SSTs with at least ``min_filter_keys`` rows).

Hashes are plain Python ints in ``[0, 2**64)``; anything else is an :class:`InvalidError`.
Filter data shorter than the 2-byte header is a :class:`DataError`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from shale.errors import DataError, InvalidError

__all__ = [
    "BloomFilter",
    "build_filter",
    "filter_may_contain",
    "hash_keys",
    "num_probes_for",
    "siphash13",
]

_M64 = 0xFFFF_FFFF_FFFF_FFFF
_U32_MAX = 0xFFFF_FFFF
_U16_MAX = 0xFFFF
_HEADER = struct.Struct(">H")

# "somepseudorandomlygeneratedbytes" as four little-endian u64, xor-ed with the zero key.
_IV0 = 0x736F6D6570736575
_IV1 = 0x646F72616E646F6D
_IV2 = 0x6C7967656E657261
_IV3 = 0x7465646279746573


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    """One SipRound over the four u64 state words (ARX with rotations 13, 16, 21, 17, 32)."""
    v0 = (v0 + v1) & _M64
    v1 = ((v1 << 13) | (v1 >> 51)) & _M64
    v1 ^= v0
    v0 = ((v0 << 32) | (v0 >> 32)) & _M64
    v2 = (v2 + v3) & _M64
    v3 = ((v3 << 16) | (v3 >> 48)) & _M64
    v3 ^= v2
    v0 = (v0 + v3) & _M64
    v3 = ((v3 << 21) | (v3 >> 43)) & _M64
    v3 ^= v0
    v2 = (v2 + v1) & _M64
    v1 = ((v1 << 17) | (v1 >> 47)) & _M64
    v1 ^= v2
    v2 = ((v2 << 32) | (v2 >> 32)) & _M64
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 of ``data`` under the all-zero key, as an unsigned 64-bit int.

    :param data: the raw bytes to hash (any bytes-like object); no length prefix is added.
    :return: the hash, ``0 <= h < 2**64``.
    """
    v0, v1, v2, v3 = _IV0, _IV1, _IV2, _IV3
    n = len(data)
    whole = n >> 3
    if whole:
        for (m,) in struct.iter_unpack("<Q", memoryview(data)[: whole << 3]):
            v3 ^= m
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)  # c = 1 compression round
            v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[whole << 3 :], "little")
    v3 ^= last
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):  # d = 3 finalization rounds
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def hash_keys(keys: list[bytes]) -> list[int]:
    """:func:`siphash13` of every key, in order.

    :param keys: the keys (bytes-like), e.g. every row's key of an SST in SST order.
    :return: one hash per key.
    """
    return [siphash13(k) for k in keys]


def num_probes_for(bits_per_key: int) -> int:
    """``trunc(f32(bits_per_key) * 0.69f32)`` saturated to u16, exactly as SlateDB computes it.

    :raises InvalidError: unless ``1 <= bits_per_key < 2**32``.
    """
    _check_bits_per_key(bits_per_key)
    (f,) = struct.unpack("<f", struct.pack("<f", float(bits_per_key)))
    (c,) = struct.unpack("<f", struct.pack("<f", 0.69))
    # The exact product of two f32 fits a double; packing rounds it to f32 (round-half-even),
    # which is precisely IEEE single-precision multiplication.
    (p,) = struct.unpack("<f", struct.pack("<f", f * c))
    return min(int(p), _U16_MAX)


def _check_bits_per_key(bits_per_key: int) -> None:
    if (
        not isinstance(bits_per_key, int)
        or isinstance(bits_per_key, bool)
        or not 1 <= bits_per_key <= _U32_MAX
    ):
        raise InvalidError("bits_per_key must be an int in [1, 2**32)", bits_per_key=bits_per_key)


def _check_hash(h: int) -> int:
    if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h <= _M64:
        raise InvalidError("a filter hash must be an int in [0, 2**64)", hash=h)
    return h


def build_filter(hashes: Sequence[int], bits_per_key: int) -> bytes:
    """Encode a bloom filter over ``hashes`` exactly as SlateDB's ``BloomFilterBuilder`` does.

    :param hashes: u64 key hashes (see :func:`hash_keys`), duplicates included.
    :param bits_per_key: bits of filter per hash, ``1 <= bits_per_key < 2**32`` (SlateDB: 10).
    :return: ``u16be num_probes ‖ bit array``.
    :raises InvalidError: on a bad ``bits_per_key``, a hash outside ``[0, 2**64)``, or a bit
        count that does not fit SlateDB's u32 arithmetic.
    """
    _check_bits_per_key(bits_per_key)
    num_probes = num_probes_for(bits_per_key)
    total_bits = len(hashes) * bits_per_key
    nbytes = (total_bits + 7) >> 3
    nbits = nbytes << 3
    if total_bits > _U32_MAX or nbits > _U32_MAX:
        raise InvalidError(
            "bloom filter too large for SlateDB's u32 bit count",
            num_hashes=len(hashes),
            bits_per_key=bits_per_key,
        )
    bits = bytearray(nbytes)
    if nbits:
        for h in hashes:
            _check_hash(h)
            h1 = (h & _U32_MAX) % nbits
            d = (h >> 32) % nbits
            for i in range(num_probes):
                d = (d + i) % nbits
                bits[h1 >> 3] |= 1 << (h1 & 7)
                h1 = (h1 + d) % nbits
    return _HEADER.pack(num_probes) + bytes(bits)


def _probe(bits: bytes, nbits: int, num_probes: int, h: int) -> bool:
    if nbits == 0:
        return False
    h1 = (h & _U32_MAX) % nbits
    d = (h >> 32) % nbits
    for i in range(num_probes):
        d = (d + i) % nbits
        if not bits[h1 >> 3] & (1 << (h1 & 7)):
            return False
        h1 = (h1 + d) % nbits
    return True


def _parse(filter_data: bytes) -> tuple[int, bytes]:
    if len(filter_data) < 2:
        raise DataError("bloom filter shorter than its 2-byte header", length=len(filter_data))
    (num_probes,) = _HEADER.unpack_from(filter_data, 0)
    return num_probes, bytes(filter_data[2:])


def filter_may_contain(filter_data: bytes, h: int) -> bool:
    """Whether the encoded filter may contain hash ``h`` (``False`` means surely absent).

    :param filter_data: ``u16be num_probes ‖ bit array`` as :func:`build_filter` writes it.
    :param h: a u64 key hash.
    :raises DataError: when ``filter_data`` is shorter than 2 bytes.
    :raises InvalidError: when ``h`` is not in ``[0, 2**64)``.
    """
    num_probes, bits = _parse(filter_data)
    return _probe(bits, len(bits) << 3, num_probes, _check_hash(h))


class BloomFilter:
    """A decoded bloom filter, parsed once for many probes.

    :param filter_data: ``u16be num_probes ‖ bit array`` (any bytes-like; it is copied).
    :raises DataError: when ``filter_data`` is shorter than 2 bytes.
    """

    __slots__ = ("_bits", "_nbits", "_num_probes")

    def __init__(self, filter_data: bytes) -> None:
        self._num_probes, self._bits = _parse(filter_data)
        self._nbits = len(self._bits) << 3

    @property
    def num_probes(self) -> int:
        """Probes per hash, from the header."""
        return self._num_probes

    @property
    def num_bits(self) -> int:
        """Size of the bit array in bits (a multiple of 8; 0 for an empty filter)."""
        return self._nbits

    def may_contain_hash(self, h: int) -> bool:
        """Whether hash ``h`` may be present (``False`` means surely absent).

        :raises InvalidError: when ``h`` is not in ``[0, 2**64)``.
        """
        return _probe(self._bits, self._nbits, self._num_probes, _check_hash(h))

    def __repr__(self) -> str:
        return f"BloomFilter(num_probes={self._num_probes}, num_bits={self._nbits})"
