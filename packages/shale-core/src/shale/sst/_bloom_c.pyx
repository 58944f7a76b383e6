# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""SlateDB's bloom filter: the compiled twin of :mod:`shale.sst._bloom_py` (FORMAT.md §3.9).

Same public API, results and bytes as the reference twin; read that module for the invariants.
SipHash-1-3 runs on ``uint64_t`` in C; hashing a batch of keys, setting bits and probing release
the GIL. Keys are pinned in a tuple while the GIL is released, so their buffers stay alive.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from shale.errors import DataError, InvalidError

__all__ = [
    "BloomFilter",
    "build_filter",
    "filter_may_contain",
    "hash_keys",
    "num_probes_for",
    "siphash13",
]

cdef inline uint64_t _rotl(uint64_t x, int b) noexcept nogil:
    return (x << b) | (x >> (64 - b))


cdef inline uint64_t _load_le64(const uint8_t* p) noexcept nogil:
    # Byte-wise so the result is little-endian on every host and alignment never matters;
    # compilers turn this into one load on little-endian machines.
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef uint64_t _sip13(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """SipHash-1-3 with k0 = k1 = 0."""
    cdef uint64_t v0 = 0x736F6D6570736575ULL
    cdef uint64_t v1 = 0x646F72616E646F6DULL
    cdef uint64_t v2 = 0x6C7967656E657261ULL
    cdef uint64_t v3 = 0x7465646279746573ULL
    cdef uint64_t m
    cdef Py_ssize_t i
    cdef Py_ssize_t end = n - (n & 7)
    cdef int r
    i = 0
    while i < end:
        m = _load_le64(p + i)
        v3 ^= m
        v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
        v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
        v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
        v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
        v0 ^= m
        i += 8
    m = (<uint64_t>(n & 0xFF)) << 56
    r = <int>(n & 7)
    while r > 0:
        r -= 1
        m |= (<uint64_t>p[end + r]) << (8 * r)
    v3 ^= m
    v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
    v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
    v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
    v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    v0 ^= m
    v2 ^= 0xFF
    for r in range(3):
        v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
        v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
        v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
        v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    return v0 ^ v1 ^ v2 ^ v3


cdef inline void _set_probes(uint8_t* bits, uint64_t nbits, uint16_t num_probes,
                             uint64_t h) noexcept nogil:
    cdef uint64_t h1 = (h & 0xFFFFFFFFULL) % nbits
    cdef uint64_t d = (h >> 32) % nbits
    cdef uint64_t i
    for i in range(num_probes):
        d = (d + i) % nbits
        bits[h1 >> 3] |= <uint8_t>(1 << (h1 & 7))
        h1 = (h1 + d) % nbits


cdef inline bint _probe(const uint8_t* bits, uint64_t nbits, uint16_t num_probes,
                        uint64_t h) noexcept nogil:
    if nbits == 0:
        return False
    cdef uint64_t h1 = (h & 0xFFFFFFFFULL) % nbits
    cdef uint64_t d = (h >> 32) % nbits
    cdef uint64_t i
    for i in range(num_probes):
        d = (d + i) % nbits
        if not (bits[h1 >> 3] & (1 << (h1 & 7))):
            return False
        h1 = (h1 + d) % nbits
    return True


cdef uint64_t _as_hash(object h) except? 0xFFFFFFFFFFFFFFFF:
    if type(h) is not int:
        if not isinstance(h, int) or isinstance(h, bool):
            raise InvalidError("a filter hash must be an int in [0, 2**64)", hash=h)
    try:
        return <uint64_t>h
    except OverflowError:
        raise InvalidError("a filter hash must be an int in [0, 2**64)", hash=h) from None


cdef bytes _as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(data)


def siphash13(data) -> int:
    """SipHash-1-3 of ``data`` under the all-zero key, as an unsigned 64-bit int.

    :param data: the raw bytes to hash (any bytes-like object); no length prefix is added.
    :return: the hash, ``0 <= h < 2**64``.
    """
    cdef bytes b = _as_bytes(data)
    return _sip13(<const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


def hash_keys(keys) -> list:
    """:func:`siphash13` of every key, in order (the hashing loop releases the GIL).

    :param keys: the keys (bytes-like), e.g. every row's key of an SST in SST order.
    :return: one hash per key.
    """
    cdef tuple pinned = tuple([_as_bytes(k) for k in keys])
    cdef Py_ssize_t n = len(pinned)
    cdef Py_ssize_t i
    cdef list out
    if n == 0:
        return []
    cdef const uint8_t** ptrs = <const uint8_t**>malloc(n * sizeof(uint8_t*))
    cdef Py_ssize_t* lens = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
    cdef uint64_t* hs = <uint64_t*>malloc(n * sizeof(uint64_t))
    cdef object k
    try:
        if ptrs == NULL or lens == NULL or hs == NULL:
            raise MemoryError()
        for i in range(n):
            k = pinned[i]
            ptrs[i] = <const uint8_t*>PyBytes_AS_STRING(k)
            lens[i] = PyBytes_GET_SIZE(k)
        with nogil:
            for i in range(n):
                hs[i] = _sip13(ptrs[i], lens[i])
        out = [hs[i] for i in range(n)]
    finally:
        free(ptrs)
        free(lens)
        free(hs)
    return out


cdef void _check_bits_per_key(object bits_per_key) except *:
    if (type(bits_per_key) is not int and (not isinstance(bits_per_key, int)
                                           or isinstance(bits_per_key, bool))):
        raise InvalidError("bits_per_key must be an int in [1, 2**32)", bits_per_key=bits_per_key)
    if not 1 <= bits_per_key <= 0xFFFFFFFF:
        raise InvalidError("bits_per_key must be an int in [1, 2**32)", bits_per_key=bits_per_key)


def num_probes_for(bits_per_key) -> int:
    """``trunc(f32(bits_per_key) * 0.69f32)`` saturated to u16, exactly as SlateDB computes it.

    :raises InvalidError: unless ``1 <= bits_per_key < 2**32``.
    """
    _check_bits_per_key(bits_per_key)
    cdef double bpk = float(bits_per_key)
    cdef float f = <float>bpk
    cdef float c = <float>0.69
    cdef float p = f * c
    if p >= 65535.0:
        return 65535
    return <int>p


def build_filter(hashes, bits_per_key) -> bytes:
    """Encode a bloom filter over ``hashes`` exactly as SlateDB's ``BloomFilterBuilder`` does.

    :param hashes: u64 key hashes (see :func:`hash_keys`), duplicates included.
    :param bits_per_key: bits of filter per hash, ``1 <= bits_per_key < 2**32`` (SlateDB: 10).
    :return: ``u16be num_probes ‖ bit array``.
    :raises InvalidError: on a bad ``bits_per_key``, a hash outside ``[0, 2**64)``, or a bit
        count that does not fit SlateDB's u32 arithmetic.
    """
    _check_bits_per_key(bits_per_key)
    cdef uint16_t num_probes = num_probes_for(bits_per_key)
    cdef Py_ssize_t n = len(hashes)
    total = n * bits_per_key
    nbytes_obj = (total + 7) >> 3
    if total > 0xFFFFFFFF or (nbytes_obj << 3) > 0xFFFFFFFF:
        raise InvalidError(
            "bloom filter too large for SlateDB's u32 bit count",
            num_hashes=n,
            bits_per_key=bits_per_key,
        )
    cdef Py_ssize_t nbytes = nbytes_obj
    cdef uint64_t nbits = (<uint64_t>nbytes) << 3
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 + nbytes)
    cdef uint8_t* buf = <uint8_t*>PyBytes_AS_STRING(out)
    cdef uint8_t* bits = buf + 2
    cdef uint64_t* hs
    cdef Py_ssize_t i
    buf[0] = <uint8_t>(num_probes >> 8)
    buf[1] = <uint8_t>(num_probes & 0xFF)
    memset(bits, 0, nbytes)
    if nbits == 0 or n == 0:
        return out
    hs = <uint64_t*>malloc(n * sizeof(uint64_t))
    if hs == NULL:
        raise MemoryError()
    try:
        i = 0
        for h in hashes:
            if i >= n:
                break
            hs[i] = _as_hash(h)
            i += 1
        if i != n:
            raise InvalidError("hashes changed size while building", expected=n, got=i)
        with nogil:
            for i in range(n):
                _set_probes(bits, nbits, num_probes, hs[i])
    finally:
        free(hs)
    return out


def filter_may_contain(filter_data, h) -> bool:
    """Whether the encoded filter may contain hash ``h`` (``False`` means surely absent).

    :param filter_data: ``u16be num_probes ‖ bit array`` as :func:`build_filter` writes it.
    :param h: a u64 key hash.
    :raises DataError: when ``filter_data`` is shorter than 2 bytes.
    :raises InvalidError: when ``h`` is not in ``[0, 2**64)``.
    """
    cdef bytes b = _as_bytes(filter_data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n < 2:
        raise DataError("bloom filter shorter than its 2-byte header", length=n)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(b)
    cdef uint16_t num_probes = (<uint16_t>p[0] << 8) | p[1]
    cdef uint64_t x = _as_hash(h)
    return _probe(p + 2, (<uint64_t>(n - 2)) << 3, num_probes, x)


cdef class BloomFilter:
    """A decoded bloom filter, parsed once for many probes.

    :param filter_data: ``u16be num_probes ‖ bit array`` (any bytes-like; bytes are kept as is,
        other buffers are copied).
    :raises DataError: when ``filter_data`` is shorter than 2 bytes.
    """

    cdef bytes _data
    cdef const uint8_t* _bits
    cdef uint64_t _nbits
    cdef uint16_t _num_probes

    def __init__(self, filter_data) -> None:
        cdef bytes b = _as_bytes(filter_data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
        if n < 2:
            raise DataError("bloom filter shorter than its 2-byte header", length=n)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(b)
        self._data = b
        self._num_probes = (<uint16_t>p[0] << 8) | p[1]
        self._bits = p + 2
        self._nbits = (<uint64_t>(n - 2)) << 3

    @property
    def num_probes(self) -> int:
        """Probes per hash, from the header."""
        return self._num_probes

    @property
    def num_bits(self) -> int:
        """Size of the bit array in bits (a multiple of 8; 0 for an empty filter)."""
        return self._nbits

    def may_contain_hash(self, h) -> bool:
        """Whether hash ``h`` may be present (``False`` means surely absent).

        :raises InvalidError: when ``h`` is not in ``[0, 2**64)``.
        """
        if self._data is None:
            raise InvalidError("BloomFilter was not initialised")
        cdef uint64_t x = _as_hash(h)
        return _probe(self._bits, self._nbits, self._num_probes, x)

    def __repr__(self) -> str:
        return f"BloomFilter(num_probes={self._num_probes}, num_bits={self._nbits})"
