# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Data-block codec, compiled twin of :mod:`shale.sst._block_py` (FORMAT.md sections 3.4-3.7).

Same public API, same rows, same bytes and the same error messages as the reference twin; read
that module's docstring for the format and the invariants. How this one is fast:

* Decoding is two passes. The first walks the entry area with C pointers, validating every
  field and recording each row's offsets, lengths, seq, flags and timestamps in a C array; it
  touches no Python object, so for large blocks (WAL blocks are up to 64 KiB) it runs with the
  GIL released. The second pass builds the key/value ``bytes`` and the row tuples. Keys that
  share a prefix with the previous key are assembled with two ``memcpy`` into a fresh bytes
  object; a key equal to the previous one reuses that object.
* The builder keeps the entry area and the offsets in growing C buffers, computes shared
  prefixes with word compares, and writes every field directly; ``add`` makes no Python call
  per row beyond reading the tuple. ``finish`` copies the buffers into one new ``bytes`` and
  resets the builder (the buffers are kept for the next block).
"""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE

cdef extern from "_crc32_simd.h" nogil:
    # zlib's CRC-32, folded with PCLMULQDQ where the CPU has it (~20x zlib 1.2's tables)
    uint32_t shale_crc32(uint32_t crc, const unsigned char* buf, size_t len)

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)

from shale.errors import DataError, InvalidError

__all__ = [
    "RESTART_INTERVAL",
    "BlockBuilder",
    "decode_block",
    "decode_chunks",
    "encoded_row_size",
]

#: A V2 block has a restart point every this many rows.
RESTART_INTERVAL = 16
#: Largest block size accepted by :class:`BlockBuilder`.
MAX_BLOCK_SIZE = 65536

cdef enum: C_RESTART = 16
cdef enum: C_MAX_KEY = 65535
cdef uint64_t C_MAX_VALUE = 4294967295
cdef enum: F_TOMB = 0x01
cdef enum: F_EXP = 0x02
cdef enum: F_CRE = 0x04
cdef enum: F_MERGE = 0x08
cdef enum: F_KNOWN = 0x0F
# Blocks at least this large are scanned with the GIL released; below it the scan takes about a
# microsecond and releasing the GIL would cost more than it gives.
cdef enum: NOGIL_MIN = 8192

# ---------------------------------------------------------------------------------------------
# shared helpers


cdef inline Py_ssize_t _varint_len(uint64_t n) noexcept nogil:
    if n < 0x80:
        return 1
    if n < 0x4000:
        return 2
    if n < 0x200000:
        return 3
    if n < 0x10000000:
        return 4
    return 5


cdef inline uint8_t* _put_varint(uint8_t* p, uint32_t n) noexcept nogil:
    while n >= 0x80:
        p[0] = <uint8_t>((n & 0x7F) | 0x80)
        p += 1
        n >>= 7
    p[0] = <uint8_t>n
    return p + 1


cdef inline uint8_t* _put_u64(uint8_t* p, uint64_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 56)
    p[1] = <uint8_t>(v >> 48)
    p[2] = <uint8_t>(v >> 40)
    p[3] = <uint8_t>(v >> 32)
    p[4] = <uint8_t>(v >> 24)
    p[5] = <uint8_t>(v >> 16)
    p[6] = <uint8_t>(v >> 8)
    p[7] = <uint8_t>v
    return p + 8


cdef inline uint64_t _get_u64(const uint8_t* p) noexcept nogil:
    return ((<uint64_t>p[0] << 56) | (<uint64_t>p[1] << 48) | (<uint64_t>p[2] << 40)
            | (<uint64_t>p[3] << 32) | (<uint64_t>p[4] << 24) | (<uint64_t>p[5] << 16)
            | (<uint64_t>p[6] << 8) | <uint64_t>p[7])


cdef inline uint32_t _get_u32(const uint8_t* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8)
            | <uint32_t>p[3])


cdef inline Py_ssize_t _get_u16(const uint8_t* p) noexcept nogil:
    return (<Py_ssize_t>p[0] << 8) | <Py_ssize_t>p[1]


# A validated row, borrowed from its tuple (which keeps the key and value alive).
cdef struct CRow:
    const uint8_t* key
    Py_ssize_t key_len
    const uint8_t* value
    Py_ssize_t value_len
    uint64_t seq
    int kind
    uint8_t flags
    int64_t expire_ts
    int64_t create_ts


cdef int _check_row(object row, CRow* out) except -1:
    """Validate ``row`` exactly like ``_block_py._check_row`` and fill ``out``."""
    cdef tuple t
    if not isinstance(row, tuple) or PyTuple_GET_SIZE(row) != 6:
        raise InvalidError("row must be a 6-tuple", row_type=type(row).__name__)
    t = <tuple>row
    key = t[0]
    seq = t[1]
    kind = t[2]
    value = t[3]
    expire_ts = t[4]
    create_ts = t[5]
    cdef Py_ssize_t klen
    if not isinstance(key, bytes):
        raise InvalidError("key must be bytes", key_type=type(key).__name__)
    klen = PyBytes_GET_SIZE(key)
    if klen == 0 or klen > C_MAX_KEY:
        raise InvalidError("key length out of range", key_len=klen, max=C_MAX_KEY)
    out.key = <const uint8_t*>PyBytes_AS_STRING(key)
    out.key_len = klen
    if not isinstance(seq, int):
        raise InvalidError("seq must be an int in [0, 2**64)", seq=seq)
    try:
        out.seq = seq
    except OverflowError:
        raise InvalidError("seq must be an int in [0, 2**64)", seq=seq) from None
    cdef long ckind = -1
    if isinstance(kind, int):
        try:
            ckind = kind
        except OverflowError:
            ckind = -1
    if ckind < 0 or ckind > 2:
        raise InvalidError("bad row kind", kind=kind)
    out.kind = <int>ckind
    if not isinstance(value, bytes):
        raise InvalidError("value must be bytes", value_type=type(value).__name__)
    if ckind == 1:
        out.value = NULL
        out.value_len = 0
        out.flags = F_TOMB
    else:
        out.value = <const uint8_t*>PyBytes_AS_STRING(value)
        out.value_len = PyBytes_GET_SIZE(value)
        if <uint64_t>out.value_len > C_MAX_VALUE:
            raise InvalidError("value too long", value_len=out.value_len, max=C_MAX_VALUE)
        out.flags = F_MERGE if ckind == 2 else 0
    if expire_ts is not None:
        if not isinstance(expire_ts, int):
            raise InvalidError("expire_ts must be None or an i64", expire_ts=expire_ts)
        try:
            out.expire_ts = expire_ts
        except OverflowError:
            raise InvalidError("expire_ts must be None or an i64", expire_ts=expire_ts) from None
        out.flags |= F_EXP
    if create_ts is not None:
        if not isinstance(create_ts, int):
            raise InvalidError("create_ts must be None or an i64", create_ts=create_ts)
        try:
            out.create_ts = create_ts
        except OverflowError:
            raise InvalidError("create_ts must be None or an i64", create_ts=create_ts) from None
        out.flags |= F_CRE
    return 0


cdef inline Py_ssize_t _v2_size(Py_ssize_t shared, const CRow* r) noexcept nogil:
    cdef Py_ssize_t unshared = r.key_len - shared
    cdef Py_ssize_t size = (_varint_len(<uint64_t>shared) + _varint_len(<uint64_t>unshared)
                            + _varint_len(<uint64_t>r.value_len) + unshared + r.value_len + 9)
    if r.flags & F_EXP:
        size += 8
    if r.flags & F_CRE:
        size += 8
    return size


cdef inline Py_ssize_t _v1_size(Py_ssize_t prefix, const CRow* r) noexcept nogil:
    cdef Py_ssize_t size = 4 + (r.key_len - prefix) + 9
    if r.flags & F_EXP:
        size += 8
    if r.flags & F_CRE:
        size += 8
    if not (r.flags & F_TOMB):
        size += 4 + r.value_len
    return size


def encoded_row_size(row, prev_key=None):
    """V2 encoded size of ``row`` in bytes (the entry only, not its restart offset).

    ``prev_key`` is the previous key in the block (``shared`` is computed against it);
    ``None`` means a restart point (``shared = 0``). Raises ``InvalidError`` for a bad row.
    """
    cdef CRow r
    _check_row(row, &r)
    cdef Py_ssize_t shared = 0
    if prev_key is not None:
        if not isinstance(prev_key, bytes):
            raise InvalidError("prev_key must be bytes or None",
                               prev_type=type(prev_key).__name__)
        shared = _prefix(<const uint8_t*>PyBytes_AS_STRING(prev_key), PyBytes_GET_SIZE(prev_key),
                         r.key, r.key_len)
    return _v2_size(shared, &r)


# ---------------------------------------------------------------------------------------------
# builder


cdef class BlockBuilder:
    """Accumulates rows into one data block, closing it exactly where SlateDB would.

    See ``shale.sst._block_py.BlockBuilder`` for the contract. ``finish()`` returns the payload
    and resets the builder to empty (the C buffers are kept for the next block).
    """

    # attributes and C methods are declared in _block_c.pxd (the data writer calls them)

    def __cinit__(self, *args, **kwargs):
        self._buf = NULL
        self._offs = NULL

    def __init__(self, block_size, version=2):
        if not isinstance(block_size, int) or not 1 <= block_size <= MAX_BLOCK_SIZE:
            raise InvalidError("block_size out of range", block_size=block_size)
        if version not in (1, 2) or not isinstance(version, int):
            raise InvalidError("unknown block version", version=version)
        self._block_size = block_size
        self._version = version
        self._cap = max(256, block_size)
        self._offcap = 64
        free(self._buf)
        free(self._offs)
        self._buf = <uint8_t*>malloc(self._cap)
        self._offs = <uint16_t*>malloc(self._offcap * sizeof(uint16_t))
        if self._buf == NULL or self._offs == NULL:
            raise MemoryError()
        self._reset()

    def __dealloc__(self):
        free(self._buf)
        free(self._offs)

    cdef void _reset(self) noexcept:
        self._len = 0
        self._noffs = 0
        self._count = 0
        self._first_key = None
        self._first_seq = None
        self._last_key = None
        self._num_puts = 0
        self._num_deletes = 0
        self._num_merges = 0
        self._raw_key_size = 0
        self._raw_value_size = 0

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self._len + extra
        cdef Py_ssize_t cap
        cdef uint8_t* nb
        if need > self._cap:
            cap = self._cap * 2
            if cap < need:
                cap = need
            nb = <uint8_t*>realloc(self._buf, cap)
            if nb == NULL:
                raise MemoryError()
            self._buf = nb
            self._cap = cap
        if self._noffs >= self._offcap:
            cap = self._offcap * 2
            nb = <uint8_t*>realloc(self._offs, cap * sizeof(uint16_t))
            if nb == NULL:
                raise MemoryError()
            self._offs = <uint16_t*>nb
            self._offcap = cap
        return 0

    def add(self, row):
        """Append ``row`` if it fits; return whether it was added (see the py twin)."""
        return self._add(row) == 1

    cdef int _add(self, object row) except -1:
        """``add`` for C callers: 1 added, 0 did not fit."""
        cdef CRow r
        cdef Py_ssize_t shared, size, entry
        cdef bint restart
        cdef uint8_t* p
        cdef bytes last
        if self._buf == NULL or self._offs == NULL:
            raise InvalidError("BlockBuilder.__init__ was not called")
        _check_row(row, &r)
        if self._version == 2:
            restart = self._count % C_RESTART == 0
            if restart or self._last_key is None:
                shared = 0
            else:
                last = <bytes>self._last_key
                shared = _prefix(<const uint8_t*>PyBytes_AS_STRING(last),
                                 PyBytes_GET_SIZE(last), r.key, r.key_len)
            entry = _v2_size(shared, &r)
            if self._count:
                size = self._len + 2 * self._noffs + 2 + entry
                if restart:
                    size += 2
                if size > self._block_size:
                    return 0
            self._reserve(entry)
            if restart:
                self._offs[self._noffs] = <uint16_t>self._len
                self._noffs += 1
            p = self._buf + self._len
            p = _put_varint(p, <uint32_t>shared)
            p = _put_varint(p, <uint32_t>(r.key_len - shared))
            p = _put_varint(p, <uint32_t>r.value_len)
            memcpy(p, r.key + shared, r.key_len - shared)
            p += r.key_len - shared
            if r.value_len:
                memcpy(p, r.value, r.value_len)
                p += r.value_len
            p = _put_u64(p, r.seq)
            p[0] = r.flags
            p += 1
            if r.flags & F_EXP:
                p = _put_u64(p, <uint64_t>r.expire_ts)
            if r.flags & F_CRE:
                p = _put_u64(p, <uint64_t>r.create_ts)
        else:
            if self._first_key is None:
                shared = 0
            else:
                last = <bytes>self._first_key
                shared = _prefix(<const uint8_t*>PyBytes_AS_STRING(last),
                                 PyBytes_GET_SIZE(last), r.key, r.key_len)
            entry = _v1_size(shared, &r)
            if self._count:
                size = self._len + 2 * self._noffs + 2 + entry
                if size > self._block_size:
                    return 0
            self._reserve(entry)
            self._offs[self._noffs] = <uint16_t>self._len
            self._noffs += 1
            p = self._buf + self._len
            p[0] = <uint8_t>(shared >> 8)
            p[1] = <uint8_t>shared
            p[2] = <uint8_t>((r.key_len - shared) >> 8)
            p[3] = <uint8_t>(r.key_len - shared)
            p += 4
            memcpy(p, r.key + shared, r.key_len - shared)
            p += r.key_len - shared
            p = _put_u64(p, r.seq)
            p[0] = r.flags
            p += 1
            if r.flags & F_EXP:
                p = _put_u64(p, <uint64_t>r.expire_ts)
            if r.flags & F_CRE:
                p = _put_u64(p, <uint64_t>r.create_ts)
            if not (r.flags & F_TOMB):
                p[0] = <uint8_t>(r.value_len >> 24)
                p[1] = <uint8_t>(r.value_len >> 16)
                p[2] = <uint8_t>(r.value_len >> 8)
                p[3] = <uint8_t>r.value_len
                p += 4
                if r.value_len:
                    memcpy(p, r.value, r.value_len)
                    p += r.value_len
        self._len = p - self._buf
        key = (<tuple>row)[0]
        if self._count == 0:
            self._first_key = key
            self._first_seq = (<tuple>row)[1]
        self._last_key = key
        self._count += 1
        if r.kind == 0:
            self._num_puts += 1
        elif r.kind == 1:
            self._num_deletes += 1
        else:
            self._num_merges += 1
        self._raw_key_size += r.key_len
        self._raw_value_size += r.value_len
        return 1

    def is_empty(self):
        """Whether no row has been added since construction or the last ``finish``."""
        return self._count == 0

    def __len__(self):
        return self._count

    @property
    def block_size(self):
        """The target block size given to the constructor."""
        return self._block_size

    @property
    def version(self):
        """The block version (1 or 2)."""
        return self._version

    @property
    def first_key(self):
        """Key of the first row, or ``None`` when empty."""
        return self._first_key

    @property
    def first_seq(self):
        """Seq of the first row, or ``None`` when empty."""
        return self._first_seq

    @property
    def last_key(self):
        """Key of the last row, or ``None`` when empty."""
        return self._last_key

    @property
    def num_puts(self):
        """Number of VALUE rows."""
        return self._num_puts

    @property
    def num_deletes(self):
        """Number of TOMBSTONE rows."""
        return self._num_deletes

    @property
    def num_merges(self):
        """Number of MERGE rows."""
        return self._num_merges

    @property
    def raw_key_size(self):
        """Sum of the full key lengths."""
        return self._raw_key_size

    @property
    def raw_value_size(self):
        """Sum of the value lengths (a tombstone counts 0)."""
        return self._raw_value_size

    def estimated_size(self):
        """Exact length of the payload ``finish`` would return now (2 when empty)."""
        return self._len + 2 * self._noffs + 2

    def finish(self):
        """Return the block payload and reset the builder to empty.

        Raises ``InvalidError`` if the block is empty.
        """
        return self._finish()

    cdef bytes _finish(self):
        if self._count == 0:
            raise InvalidError("cannot finish an empty block")
        cdef Py_ssize_t total = self._len + 2 * self._noffs + 2
        cdef Py_ssize_t i
        out = PyBytes_FromStringAndSize(NULL, total)
        cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
        memcpy(p, self._buf, self._len)
        p += self._len
        for i in range(self._noffs):
            p[0] = <uint8_t>(self._offs[i] >> 8)
            p[1] = <uint8_t>self._offs[i]
            p += 2
        p[0] = <uint8_t>(self._noffs >> 8)
        p[1] = <uint8_t>self._noffs
        if self._cap > 4 * max(256, self._block_size):
            # an oversized entry grew the buffer: give the memory back
            free(self._buf)
            self._cap = max(256, self._block_size)
            self._buf = <uint8_t*>malloc(self._cap)
            if self._buf == NULL:
                self._cap = 0
                raise MemoryError()
        self._reset()
        return out


# ---------------------------------------------------------------------------------------------
# decoder

# error codes of the nogil scan (messages and detail identical to the py twin)
cdef enum: E_OK = 0
cdef enum: E_NOMEM = 1
cdef enum: E_TOO_MANY = 2
cdef enum: E_RESTART_MISMATCH = 3
cdef enum: E_TRUNC = 4
cdef enum: E_VARINT = 5
cdef enum: E_SHARED_GT_PREV = 6
cdef enum: E_RESTART_SHARED = 7
cdef enum: E_KEYLEN = 8
cdef enum: E_FLAGS_UNKNOWN = 9
cdef enum: E_FLAGS_BOTH = 10
cdef enum: E_RESTART_COUNT = 11
cdef enum: E_ROW_OFFSET = 12
cdef enum: E_PREFIX_GT_FIRST = 13
cdef enum: E_TRAILING = 14

_FIELDS = ("shared", "unshared", "value_len", "key/value/seq/flags", "expire_ts", "create_ts",
           "key lengths", "key/seq/flags", "value_len", "value")
cdef enum: FD_SHARED = 0
cdef enum: FD_UNSHARED = 1
cdef enum: FD_VALUE_LEN_V = 2
cdef enum: FD_KVSF = 3
cdef enum: FD_EXPIRE = 4
cdef enum: FD_CREATE = 5
cdef enum: FD_KEYLENS = 6
cdef enum: FD_KSF = 7
cdef enum: FD_VALUE_LEN = 8
cdef enum: FD_VALUE = 9


# Err and Entry (the scan's error and per-row record) are declared in _block_c.pxd, so the
# compaction kernel (_compact_c) can run the same validating scans.


cdef object _error(const Err* e):
    """The DataError for a failed scan, worded exactly like the py twin's."""
    c = e.code
    if c == E_NOMEM:
        return MemoryError()
    if c == E_TOO_MANY:
        return DataError("more entries than restart offsets allow", entry=e.a, offset=e.b,
                         restarts=e.c)
    if c == E_RESTART_MISMATCH:
        return DataError("restart offset does not match entry boundary", entry=e.a, restart=e.b,
                         stored=e.c, actual=e.d)
    if c == E_TRUNC:
        return DataError("truncated block entry", field=_FIELDS[e.field], entry=e.a, offset=e.b)
    if c == E_VARINT:
        return DataError("varint overflows u32", field=_FIELDS[e.field], entry=e.a, offset=e.b)
    if c == E_SHARED_GT_PREV:
        return DataError("shared prefix longer than previous key", entry=e.a, offset=e.b,
                         shared=e.c, prev_key_len=e.d)
    if c == E_RESTART_SHARED:
        return DataError("restart entry has shared > 0", entry=e.a, offset=e.b, shared=e.c)
    if c == E_KEYLEN:
        return DataError("key length out of range", entry=e.a, offset=e.b, key_len=e.c)
    if c == E_FLAGS_UNKNOWN:
        return DataError("unknown row flag bits", flags=e.c, entry=e.a, offset=e.b)
    if c == E_FLAGS_BOTH:
        return DataError("row is both tombstone and merge operand", flags=e.c, entry=e.a,
                         offset=e.b)
    if c == E_RESTART_COUNT:
        return DataError("restart count does not match entry count", entries=e.a,
                         restarts=e.b, expected=e.c)
    if c == E_ROW_OFFSET:
        return DataError("row offset does not match entry boundary", entry=e.a, stored=e.b,
                         actual=e.c)
    if c == E_PREFIX_GT_FIRST:
        return DataError("key prefix longer than the block's first key", entry=e.a, offset=e.b,
                         prefix=e.c, first_key_len=e.d)
    if c == E_TRAILING:
        return DataError("trailing bytes between entries and offsets", entries=e.a, end=e.b,
                         data_end=e.c)
    return DataError("block decode failed", code=c)


cdef inline int _fail(Err* err, int code, int field, Py_ssize_t a, Py_ssize_t b,
                      Py_ssize_t c, Py_ssize_t d) noexcept nogil:
    err.code = code
    err.field = field
    err.a = a
    err.b = b
    err.c = c
    err.d = d
    return -1


cdef inline int _varint(const uint8_t* p, Py_ssize_t* pos, Py_ssize_t end, Py_ssize_t* out,
                        int field, Py_ssize_t entry, Err* err) noexcept nogil:
    cdef Py_ssize_t start = pos[0]
    cdef Py_ssize_t q = start
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef uint8_t b
    while True:
        if q >= end:
            return _fail(err, E_TRUNC, field, entry, start, 0, 0)
        b = p[q]
        q += 1
        if shift == 28 and b > 0x0F:
            return _fail(err, E_VARINT, field, entry, start, 0, 0)
        result |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            break
        shift += 7
    pos[0] = q
    out[0] = <Py_ssize_t>result
    return 0


cdef inline int _flags_ok(uint8_t flags, Py_ssize_t entry, Py_ssize_t start,
                          Err* err) noexcept nogil:
    if flags & ~F_KNOWN:
        return _fail(err, E_FLAGS_UNKNOWN, 0, entry, start, flags, 0)
    if (flags & F_TOMB) and (flags & F_MERGE):
        return _fail(err, E_FLAGS_BOTH, 0, entry, start, flags, 0)
    return 0


cdef int _scan_v2(const uint8_t* p, Py_ssize_t data_end, Py_ssize_t n_restarts,
                  Entry* ents, Py_ssize_t cap, Py_ssize_t* n_out, Err* err) noexcept nogil:
    """Validate a V2 entry area and record every row; mirror of ``_block_py._decode_v2``."""
    cdef const uint8_t* trailer = p + data_end
    cdef Py_ssize_t pos = 0, i = 0, start, r, stored
    cdef Py_ssize_t shared, unshared, value_len, key_len
    cdef Py_ssize_t prev_len = 0
    cdef Py_ssize_t expected
    cdef Entry* e
    cdef uint8_t flags
    while pos < data_end:
        start = pos
        if i % C_RESTART == 0:
            r = i // C_RESTART
            if r >= n_restarts:
                return _fail(err, E_TOO_MANY, 0, i, pos, n_restarts, 0)
            stored = _get_u16(trailer + 2 * r)
            if stored != pos:
                return _fail(err, E_RESTART_MISMATCH, 0, i, r, stored, pos)
        if p[pos] < 0x80:
            shared = p[pos]
            pos += 1
        elif _varint(p, &pos, data_end, &shared, FD_SHARED, i, err):
            return -1
        if pos < data_end and p[pos] < 0x80:
            unshared = p[pos]
            pos += 1
        elif _varint(p, &pos, data_end, &unshared, FD_UNSHARED, i, err):
            return -1
        if pos < data_end and p[pos] < 0x80:
            value_len = p[pos]
            pos += 1
        elif _varint(p, &pos, data_end, &value_len, FD_VALUE_LEN_V, i, err):
            return -1
        if shared > prev_len:
            return _fail(err, E_SHARED_GT_PREV, 0, i, start, shared, prev_len)
        if shared and i % C_RESTART == 0:
            return _fail(err, E_RESTART_SHARED, 0, i, start, shared, 0)
        key_len = shared + unshared
        if key_len == 0 or key_len > C_MAX_KEY:
            return _fail(err, E_KEYLEN, 0, i, start, key_len, 0)
        if pos + unshared + value_len + 9 > data_end:
            return _fail(err, E_TRUNC, FD_KVSF, i, start, 0, 0)
        if i >= cap:  # cannot happen: see the capacity comment in decode_block
            return _fail(err, E_NOMEM, 0, 0, 0, 0, 0)
        e = &ents[i]
        e.key_off = pos
        e.shared = shared
        e.unshared = unshared
        pos += unshared
        e.val_off = pos
        e.val_len = value_len
        pos += value_len
        e.seq = _get_u64(p + pos)
        flags = p[pos + 8]
        pos += 9
        if _flags_ok(flags, i, start, err):
            return -1
        e.flags = flags
        if flags & F_EXP:
            if pos + 8 > data_end:
                return _fail(err, E_TRUNC, FD_EXPIRE, i, start, 0, 0)
            e.expire_ts = <int64_t>_get_u64(p + pos)
            pos += 8
        if flags & F_CRE:
            if pos + 8 > data_end:
                return _fail(err, E_TRUNC, FD_CREATE, i, start, 0, 0)
            e.create_ts = <int64_t>_get_u64(p + pos)
            pos += 8
        prev_len = key_len
        i += 1
    expected = (i + C_RESTART - 1) // C_RESTART
    if expected != n_restarts:
        return _fail(err, E_RESTART_COUNT, 0, i, n_restarts, expected, 0)
    n_out[0] = i
    return 0


cdef int _scan_v1(const uint8_t* p, Py_ssize_t data_end, Py_ssize_t n,
                  Entry* ents, Err* err) noexcept nogil:
    """Validate a V1 entry area and record every row; mirror of ``_block_py._decode_v1``."""
    cdef const uint8_t* trailer = p + data_end
    cdef Py_ssize_t pos = 0, i, start, stored, prefix, suffix, key_len
    cdef Py_ssize_t first_len = 0
    cdef Entry* e
    cdef uint8_t flags
    for i in range(n):
        stored = _get_u16(trailer + 2 * i)
        if stored != pos:
            return _fail(err, E_ROW_OFFSET, 0, i, stored, pos, 0)
        start = pos
        if pos + 4 > data_end:
            return _fail(err, E_TRUNC, FD_KEYLENS, i, start, 0, 0)
        prefix = _get_u16(p + pos)
        suffix = _get_u16(p + pos + 2)
        pos += 4
        if prefix > first_len:
            return _fail(err, E_PREFIX_GT_FIRST, 0, i, start, prefix, first_len)
        key_len = prefix + suffix
        if key_len == 0 or key_len > C_MAX_KEY:
            return _fail(err, E_KEYLEN, 0, i, start, key_len, 0)
        if pos + suffix + 9 > data_end:
            return _fail(err, E_TRUNC, FD_KSF, i, start, 0, 0)
        e = &ents[i]
        e.key_off = pos
        e.shared = prefix
        e.unshared = suffix
        pos += suffix
        e.seq = _get_u64(p + pos)
        flags = p[pos + 8]
        pos += 9
        if _flags_ok(flags, i, start, err):
            return -1
        e.flags = flags
        if flags & F_EXP:
            if pos + 8 > data_end:
                return _fail(err, E_TRUNC, FD_EXPIRE, i, start, 0, 0)
            e.expire_ts = <int64_t>_get_u64(p + pos)
            pos += 8
        if flags & F_CRE:
            if pos + 8 > data_end:
                return _fail(err, E_TRUNC, FD_CREATE, i, start, 0, 0)
            e.create_ts = <int64_t>_get_u64(p + pos)
            pos += 8
        if flags & F_TOMB:
            e.val_off = pos
            e.val_len = 0
        else:
            if pos + 4 > data_end:
                return _fail(err, E_TRUNC, FD_VALUE_LEN, i, start, 0, 0)
            e.val_len = <Py_ssize_t>_get_u32(p + pos)
            pos += 4
            if pos + e.val_len > data_end:
                return _fail(err, E_TRUNC, FD_VALUE, i, start, 0, 0)
            e.val_off = pos
            pos += e.val_len
        if i == 0:
            first_len = key_len
    if pos != data_end:
        return _fail(err, E_TRAILING, 0, n, pos, data_end, 0)
    return 0


cdef list _build_rows(const uint8_t* p, const Entry* ents, Py_ssize_t n, bint v2):
    """Second pass: make the key/value bytes and the row tuples (needs the GIL)."""
    cdef list rows = []
    cdef Py_ssize_t i, klen, base_len = 0
    cdef const Entry* e
    cdef bytes key
    cdef bytes base = b""      # V2: previous key; V1: the block's first key
    cdef char* kp
    cdef tuple row
    cdef object seq_obj = None, cts_obj = None, cts
    cdef uint64_t seq_c = 0
    cdef int64_t cts_c = 0
    for i in range(n):
        e = &ents[i]
        klen = e.shared + e.unshared
        if e.shared == 0:
            key = PyBytes_FromStringAndSize(<char*>p + e.key_off, e.unshared)
        elif e.unshared == 0 and e.shared == base_len:
            key = base
        else:
            key = PyBytes_FromStringAndSize(NULL, klen)
            kp = PyBytes_AS_STRING(key)
            memcpy(kp, PyBytes_AS_STRING(base), e.shared)
            memcpy(kp + e.shared, p + e.key_off, e.unshared)
        # the rows of one batch share their seq and create_ts: share the int objects too
        if seq_obj is None or e.seq != seq_c:
            seq_c = e.seq
            seq_obj = e.seq
        if e.flags & F_CRE:
            if cts_obj is None or e.create_ts != cts_c:
                cts_c = e.create_ts
                cts_obj = e.create_ts
            cts = cts_obj
        else:
            cts = None
        if e.flags & F_TOMB:
            row = (key, seq_obj, 1, b"",
                   e.expire_ts if (v2 and e.flags & F_EXP) else None, cts)
        else:
            row = (key, seq_obj, 2 if e.flags & F_MERGE else 0,
                   PyBytes_FromStringAndSize(<char*>p + e.val_off, e.val_len),
                   e.expire_ts if e.flags & F_EXP else None, cts)
        # bytes, ints and None only: no cycle can go through it (the collector would untrack
        # it at its first pass; doing it now spares a replay or a scan those passes)
        PyObject_GC_UnTrack(<void*>row)
        rows.append(row)
        if v2 or i == 0:
            base = key
            base_len = klen
    return rows


def decode_block(data, version=2):
    """Decode every row of a block payload, in stored order (see the py twin).

    Raises ``DataError`` for any malformation, ``InvalidError`` for a bad ``version`` or a
    ``data`` that is not bytes-like.
    """
    cdef bytes buf
    if isinstance(data, bytes):
        buf = <bytes>data
    elif isinstance(data, (bytearray, memoryview)):
        buf = bytes(data)
    else:
        raise InvalidError("block data must be bytes-like", data_type=type(data).__name__)
    if version != 2 and version != 1:
        raise InvalidError("unknown block version", version=version)
    cdef int ver = 2 if version == 2 else 1
    return _decode(<const uint8_t*>PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf), ver)


cdef list _decode(const uint8_t* p, Py_ssize_t size, int ver):
    """Decode the block payload ``p[:size]`` (the caller keeps its buffer alive)."""
    if size < 2:
        raise DataError("block too short", size=size, version=ver)
    cdef Py_ssize_t count = _get_u16(p + size - 2)
    if count == 0:
        raise DataError("block has no offsets", size=size, version=ver)
    cdef Py_ssize_t data_end = size - 2 - 2 * count
    if data_end <= 0:
        raise DataError("block offset count out of range", count=count, size=size, version=ver)
    # V2: an entry is at least 12 bytes, and there are at most 16 entries per restart offset
    # (the scan fails before writing entry 16 * count); V1: exactly one entry per offset.
    cdef Py_ssize_t cap = count
    if ver == 2:
        cap = min(data_end // 12 + 1, 16 * count)
    cdef Entry* ents = <Entry*>malloc(cap * sizeof(Entry))
    if ents == NULL:
        raise MemoryError()
    cdef Err err
    cdef int rc
    cdef Py_ssize_t n = count
    try:
        if ver == 2:
            if data_end >= NOGIL_MIN:
                with nogil:
                    rc = _scan_v2(p, data_end, count, ents, cap, &n, &err)
            else:
                rc = _scan_v2(p, data_end, count, ents, cap, &n, &err)
        else:
            if data_end >= NOGIL_MIN:
                with nogil:
                    rc = _scan_v1(p, data_end, count, ents, &err)
            else:
                rc = _scan_v1(p, data_end, count, ents, &err)
        if rc:
            raise _error(&err)
        return _build_rows(p, ents, n, ver == 2)
    finally:
        free(ents)


def decode_chunks(data, offsets, version=2, codec=0, transformer=None, first_block=0):
    """Decode consecutive stored data blocks read in one piece (see the py twin).

    Uncompressed, untransformed chunks are checked (CRC in place, ``shale_crc32``) and decoded
    here with no Python-level call but the CRC and the decoder; others go through
    ``compression.unframe_chunk``.
    """
    from shale.errors import ShaleError
    from shale.sst.compression import unframe_chunk

    cdef bytes buf
    if isinstance(data, bytes):
        buf = <bytes>data
    else:
        buf = bytes(data)
    cdef list offs = list(offsets)
    cdef Py_ssize_t n = len(offs) - 1
    cdef Py_ssize_t k, a, b
    cdef uint32_t want, got
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(buf)
    cdef bint plain = codec == 0 and transformer is None
    out = []
    for k in range(n):
        a = offs[k]
        b = offs[k + 1]
        if plain:
            if b - a < 4 or a < 0 or b > PyBytes_GET_SIZE(buf):
                payload = unframe_chunk(buf[a:b], codec, transformer, what="data block")
            else:
                want = _get_u32(p + b - 4)
                got = shale_crc32(0, p + a, <size_t>(b - 4 - a))
                if got != want:
                    raise DataError(
                        "SST data block checksum mismatch",
                        stored=f"{want:08x}",
                        computed=f"{got:08x}",
                    )
                payload = None  # decoded in place, no copy
        else:
            payload = unframe_chunk(buf[a:b], codec, transformer, what="data block")
        try:
            if payload is None and (version == 1 or version == 2):
                rows = _decode(p + a, b - 4 - a, 2 if version == 2 else 1)
            else:
                if payload is None:
                    payload = PyBytes_FromStringAndSize(<const char*>(p + a), b - 4 - a)
                rows = decode_block(payload, version)
        except ShaleError:
            raise
        except Exception as exc:
            raise DataError(
                "malformed SST data block", block=first_block + k, error=str(exc)
            ) from exc
        if not rows:
            raise DataError("empty SST data block", block=first_block + k)
        out.append(rows)
    return out
