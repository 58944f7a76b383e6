# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compaction kernel, compiled twin of :mod:`shale.sst._compact_py`.

Same API, same output bytes, same errors as the reference twin; read its docstring for what the
kernel does and its invariants. How this one is fast: nothing per row or per block is a Python
object. Each source's window (one ``bytes`` of consecutive stored blocks) is CRC-checked and
scanned block by block with the block codec's validating scans (``_block_c.pxd``); the current
row of a source is a C record whose key is rebuilt in a small buffer and whose value points into
the window; the sources are merged by a binary heap of C records (``memcmp`` on keys); retention
runs on those records; kept rows are encoded straight into the output buffer (SlateDB's V2 block
layout, restarts every 16 rows), each closed block is CRC'd with zlib's ``crc32`` and its index
key, stats and key hashes (SipHash-1-3 for the ``_bf`` bloom filter) are recorded in C arrays.
:meth:`Kernel.run` does all of that with the GIL released; it takes the GIL only to fetch a
source's next window (a Python callable) and, on return, to hand the finished blocks and the
recorded metadata to the SST's data writer. Given a file descriptor (``fd``), it writes the
finished blocks to that file itself, still without the GIL, and hands the writer only the
metadata.
"""

from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

from shale.sst._block_c cimport Entry, Err, _error, _prefix, _scan_v1, _scan_v2
from shale.sst._bloom_c cimport _sip13

from shale.errors import DataError, InvalidError
from shale.fbs.blockmeta import BlockStats

__all__ = ["RUN_DONE", "RUN_MORE", "RUN_SPLIT", "Kernel", "crc32", "crc32_simd"]

cdef extern from "unistd.h" nogil:
    ssize_t write(int fd, const void* buf, size_t count)

cdef extern from "_crc32_simd.h" nogil:
    # zlib's crc32, folded with PCLMULQDQ where the CPU has it (see the header)
    uint32_t shale_crc32(uint32_t crc, const unsigned char* buf, size_t len)
    int shale_crc32_simd_available()

#: :meth:`Kernel.run` results: more rows to come, the SST must be finished now, all rows done.
RUN_MORE = 0
RUN_SPLIT = 1
RUN_DONE = 2
cdef enum: C_MORE = 0
#: With a file descriptor, finished blocks are written once this many bytes are ready.
cdef enum: C_WRITE_BYTES = 1 << 20
cdef enum: C_SPLIT = 1
cdef enum: C_DONE = 2

cdef enum: F_TOMB = 0x01
cdef enum: F_EXP = 0x02
cdef enum: F_CRE = 0x04
cdef enum: F_MERGE = 0x08
cdef enum: C_RESTART = 16


# ---------------------------------------------------------------------------------------------
# growing byte buffers and helpers


cdef struct Buf:
    uint8_t* p
    Py_ssize_t len
    Py_ssize_t cap


cdef int _reserve(Buf* b, Py_ssize_t extra) noexcept nogil:
    cdef Py_ssize_t need = b.len + extra
    cdef Py_ssize_t cap
    cdef uint8_t* q
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 64
    while cap < need:
        cap *= 2
    q = <uint8_t*>realloc(b.p, cap)
    if q == NULL:
        return -1
    b.p = q
    b.cap = cap
    return 0


cdef inline int _put(Buf* b, const void* src, Py_ssize_t n) noexcept nogil:
    if _reserve(b, n):
        return -1
    if n:
        memcpy(b.p + b.len, src, n)
        b.len += n
    return 0


cdef inline int _set(Buf* b, const uint8_t* src, Py_ssize_t n) noexcept nogil:
    b.len = 0
    return _put(b, src, n)


cdef inline int _cmp(const uint8_t* a, Py_ssize_t na, const uint8_t* b,
                     Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t n = na if na < nb else nb
    cdef int c = memcmp(a, b, n) if n else 0
    if c:
        return c
    return (na > nb) - (na < nb)


cdef inline Py_ssize_t _varint_len(uint64_t n) noexcept nogil:
    cdef Py_ssize_t k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


cdef inline Py_ssize_t _entry_size(Py_ssize_t shared, Py_ssize_t klen, Py_ssize_t vlen,
                                   uint8_t flags) noexcept nogil:
    """Bytes of one V2 block entry (the block codec's ``_v2_size``)."""
    cdef Py_ssize_t size = (_varint_len(<uint64_t>shared) + _varint_len(<uint64_t>(klen - shared))
                            + _varint_len(<uint64_t>vlen) + klen - shared + vlen + 9)
    if flags & F_EXP:
        size += 8
    if flags & F_CRE:
        size += 8
    return size


cdef inline uint8_t* _put_varint(uint8_t* p, uint64_t n) noexcept nogil:
    while n >= 0x80:
        p[0] = <uint8_t>((n & 0x7F) | 0x80)
        p += 1
        n >>= 7
    p[0] = <uint8_t>n
    return p + 1


cdef inline uint8_t* _put_u64(uint8_t* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = <uint8_t>(v >> (56 - 8 * i))
    return p + 8


cdef inline uint32_t _get_u32(const uint8_t* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8)
            | <uint32_t>p[3])


cdef inline uint32_t _crc(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """zlib's CRC-32 (the SST chunk checksum)."""
    return shale_crc32(0, p, <size_t>n)


def crc32(data, value=0):
    """``zlib.crc32(data, value)`` computed as the kernel does (for its tests)."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    cdef size_t n = view.shape[0]
    if n == 0:
        return value
    return shale_crc32(<uint32_t>value, &view[0], n)


cdef str _strerror(int err):
    import os
    return os.strerror(err)


def crc32_simd():
    """Whether the kernel's CRC-32 folds with PCLMULQDQ on this machine."""
    return bool(shale_crc32_simd_available())


cdef object _key_detail(const uint8_t* p, Py_ssize_t n):
    if n <= 64:
        return PyBytes_FromStringAndSize(<const char*>p, n)
    return PyBytes_FromStringAndSize(<const char*>p, 64) + b"..."


# ---------------------------------------------------------------------------------------------
# records


cdef struct Src:
    const uint8_t* data      # the current window (kept alive by Kernel._windows)
    Py_ssize_t* offs         # its block offsets, nblocks + 1
    Py_ssize_t offs_cap
    Py_ssize_t nblocks
    Py_ssize_t blk           # next block to scan
    Py_ssize_t first_block   # the window's first block number in its SST (errors)
    int version
    Buf start
    bint has_start
    Buf end
    bint has_end
    const uint8_t* bp        # the scanned block
    Entry* ents
    Py_ssize_t ents_cap
    Py_ssize_t nents
    Py_ssize_t ei            # next entry to decode
    Buf dec                  # the last decoded key (V2: the next entry's prefix base)
    Buf first                # V1: the block's first key
    Buf cur[2]               # the current row's key, double-buffered (the popped row's survives)
    int c
    const uint8_t* val
    Py_ssize_t val_len
    uint64_t seq
    uint8_t flags
    int64_t expire
    int64_t create
    bint live
    bint exhausted


cdef struct Row:
    const uint8_t* key
    Py_ssize_t klen
    const uint8_t* val
    Py_ssize_t vlen
    uint64_t seq
    uint8_t flags
    int64_t expire
    int64_t create


cdef struct GRow:            # one version of a key with several (values copied to an arena)
    Py_ssize_t voff
    Py_ssize_t vlen
    uint64_t seq
    uint8_t flags
    int64_t expire
    int64_t create


cdef inline bint _before(Src* a, int ia, Src* b, int ib) noexcept nogil:
    cdef int c = _cmp(a.cur[a.c].p, a.cur[a.c].len, b.cur[b.c].p, b.cur[b.c].len)
    if c:
        return c < 0
    if a.seq != b.seq:
        return a.seq > b.seq
    return ia < ib


cdef class Kernel:
    """Merge -> retention -> SST data blocks for one compaction (see the reference twin)."""

    cdef Src* _srcs
    cdef int _n
    cdef list _next
    cdef list _windows
    cdef list _retired
    cdef Py_ssize_t _nretired
    cdef Py_ssize_t _nsafe   # leading _retired windows no row points into any more
    cdef int* _heap
    cdef int _h
    cdef bint _started
    # retention
    cdef bint _has_tick
    cdef int64_t _tick
    cdef bint _has_min
    cdef uint64_t _min_seq
    cdef bint _filter_tombstones
    cdef bint _skipping
    cdef Buf _skip_key
    cdef uint64_t _skip_seq
    # the group of one key's versions
    cdef Buf _gkey
    cdef Buf _garena
    cdef GRow* _grows
    cdef Py_ssize_t _gcap
    cdef Py_ssize_t _gn
    cdef Py_ssize_t _kn
    cdef Py_ssize_t _kpos
    # output
    cdef Py_ssize_t _block_size
    cdef Py_ssize_t _max_size
    cdef bint _hash_keys
    cdef bint _split
    cdef Buf _out            # finished blocks [0, _bstart), the open block's entries after
    cdef Py_ssize_t _bstart
    cdef Buf _res            # the open block's restart offsets (u16)
    cdef Py_ssize_t _bcount
    cdef Py_ssize_t _bputs, _bdels, _bmerges, _braw_key, _braw_val
    cdef Buf _bfirst
    cdef Buf _last
    cdef uint64_t _last_seq
    cdef bint _any
    cdef Buf _prev_last
    # the SST being written
    cdef Py_ssize_t _size
    cdef Py_ssize_t _nblocks
    cdef Py_ssize_t _rows, _puts, _dels, _merges, _raw_key, _raw_val
    cdef Buf _first
    cdef bint _first_synced
    cdef Buf _idx            # index entries not yet handed to the writer, in the packed
                             # form of IndexBuilder.add_packed: u64le offset, u32le len, key
    cdef object _last_stats  # the BlockStats handed over last (equal ones are shared)
    cdef Buf _stats          # (puts, deletes, merges) as int64 triples, not yet handed over
    cdef Buf _hashes         # uint64 per row of the SST
    cdef int _fd             # >= 0: finished blocks are written to this file, not handed over
    cdef Py_ssize_t _written # bytes written to _fd by the current call

    def __cinit__(self, *args, **kwargs):
        self._fd = -1
        self._srcs = NULL
        self._heap = NULL
        self._grows = NULL

    def __init__(self, sources, *, block_size, compaction_clock_tick=None,
                 retention_min_seq=None, filter_tombstones=False, resume=None,
                 hash_keys=False):
        cdef int i
        self._next = list(sources)
        self._n = len(self._next)
        self._windows = [None] * self._n
        self._retired = []
        self._srcs = <Src*>malloc(max(1, self._n) * sizeof(Src))
        self._heap = <int*>malloc(max(1, self._n) * sizeof(int))
        if self._srcs == NULL or self._heap == NULL:
            raise MemoryError()
        memset(self._srcs, 0, max(1, self._n) * sizeof(Src))
        self._h = 0
        self._started = False
        self._has_tick = compaction_clock_tick is not None
        self._tick = compaction_clock_tick if self._has_tick else 0
        self._has_min = retention_min_seq is not None
        self._min_seq = retention_min_seq if self._has_min else 0
        self._filter_tombstones = bool(filter_tombstones)
        self._skipping = resume is not None
        if resume is not None:
            key = bytes(resume[0])
            if _set(&self._skip_key, <const uint8_t*>PyBytes_AS_STRING(key),
                    PyBytes_GET_SIZE(key)):
                raise MemoryError()
            self._skip_seq = resume[1]
        self._block_size = block_size
        self._hash_keys = bool(hash_keys)

    def __dealloc__(self):
        cdef int i
        cdef Src* s
        if self._srcs != NULL:
            for i in range(self._n):
                s = &self._srcs[i]
                free(s.offs)
                free(s.start.p)
                free(s.end.p)
                free(s.ents)
                free(s.dec.p)
                free(s.first.p)
                free(s.cur[0].p)
                free(s.cur[1].p)
            free(self._srcs)
        free(self._heap)
        free(self._grows)
        free(self._skip_key.p)
        free(self._gkey.p)
        free(self._garena.p)
        free(self._out.p)
        free(self._res.p)
        free(self._bfirst.p)
        free(self._last.p)
        free(self._prev_last.p)
        free(self._first.p)
        free(self._idx.p)
        free(self._stats.p)
        free(self._hashes.p)

    # -- sources (GIL held) ---------------------------------------------------------------

    cdef int _load(self, int i) except -1:
        """Fetch source ``i``'s next window; 0 when the source is exhausted."""
        cdef Src* s = &self._srcs[i]
        cdef Py_ssize_t k, n, a, b, size
        old = self._windows[i]
        if self._nsafe:  # retired in an earlier step of the merge: free them now (GIL held)
            del self._retired[:self._nsafe]
            self._nretired -= self._nsafe
            self._nsafe = 0
        if old is not None:
            self._retired.append(old)  # the row popped in this step may still point into it
            self._nretired += 1
            self._windows[i] = None
        s.data = NULL
        s.nblocks = s.blk = s.nents = s.ei = 0
        w = self._next[i]()
        if w is None:
            s.exhausted = 1
            return 0
        data, offsets, version, start, end, first_block = w
        if type(data) is not bytes:
            data = bytes(data)
        if version != 1 and version != 2:
            raise InvalidError("unknown block version", version=version)
        offs = list(offsets)
        n = len(offs) - 1
        size = PyBytes_GET_SIZE(data)
        if n < 1:
            raise DataError("malformed SST data block", block=first_block,
                            error="a window holds no block")
        if n + 1 > s.offs_cap:
            free(s.offs)
            s.offs = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
            if s.offs == NULL:
                s.offs_cap = 0
                raise MemoryError()
            s.offs_cap = n + 1
        for k in range(n + 1):
            s.offs[k] = offs[k]
        for k in range(n):
            a = s.offs[k]
            b = s.offs[k + 1]
            if a < 0 or b > size or b - a < 4:
                raise DataError("malformed SST data block", block=first_block + k,
                                error="chunk shorter than its checksum or out of the window")
        s.has_start = start is not None
        if start is not None:
            start = bytes(start)
            if _set(&s.start, <const uint8_t*>PyBytes_AS_STRING(start),
                    PyBytes_GET_SIZE(start)):
                raise MemoryError()
        s.has_end = end is not None
        if end is not None:
            end = bytes(end)
            if _set(&s.end, <const uint8_t*>PyBytes_AS_STRING(end), PyBytes_GET_SIZE(end)):
                raise MemoryError()
        self._windows[i] = data
        s.data = <const uint8_t*>PyBytes_AS_STRING(data)
        s.nblocks = n
        s.first_block = first_block
        s.version = version
        return 1

    # -- sources (GIL released) -------------------------------------------------------------

    cdef int _scan_block(self, Src* s) except -1 nogil:
        """CRC-check and scan block ``s.blk`` of the window (the block codec's checks)."""
        cdef Py_ssize_t a = s.offs[s.blk]
        cdef Py_ssize_t n = s.offs[s.blk + 1] - a - 4
        cdef const uint8_t* p = s.data + a
        cdef uint32_t want = _get_u32(p + n)
        cdef uint32_t got = _crc(p, n)
        cdef Py_ssize_t count, data_end, cap, nents
        cdef Err err
        cdef int rc
        if want != got:
            with gil:
                raise DataError("SST data block checksum mismatch", stored=f"{want:08x}",
                                computed=f"{got:08x}")
        if n < 2:
            with gil:
                raise DataError("block too short", size=n, version=s.version)
        count = (<Py_ssize_t>p[n - 2] << 8) | p[n - 1]
        if count == 0:
            with gil:
                raise DataError("block has no offsets", size=n, version=s.version)
        data_end = n - 2 - 2 * count
        if data_end <= 0:
            with gil:
                raise DataError("block offset count out of range", count=count, size=n,
                                version=s.version)
        cap = count
        if s.version == 2:
            cap = min(data_end // 12 + 1, 16 * count)
        if cap > s.ents_cap:
            free(s.ents)
            s.ents = <Entry*>malloc(cap * sizeof(Entry))
            if s.ents == NULL:
                s.ents_cap = 0
                with gil:
                    raise MemoryError()
            s.ents_cap = cap
        nents = count
        if s.version == 2:
            rc = _scan_v2(p, data_end, count, s.ents, cap, &nents, &err)
        else:
            rc = _scan_v1(p, data_end, count, s.ents, &err)
        if rc:
            with gil:
                raise _error(&err)
        if nents == 0:
            with gil:
                raise DataError("empty SST data block", block=s.first_block + s.blk)
        s.bp = p
        s.nents = nents
        s.ei = 0
        s.blk += 1
        return 0

    cdef int _advance(self, int i) except -1 nogil:
        """Move source ``i`` to its next row within its bounds (``live`` 0: none left)."""
        cdef Src* s = &self._srcs[i]
        cdef Entry* e
        cdef Buf* k = &s.dec
        s.live = 0
        while True:
            if s.ei < s.nents:
                e = &s.ents[s.ei]
                if s.version == 2:
                    k.len = e.shared  # the scan checked shared <= the previous key's length
                    if _put(k, s.bp + e.key_off, e.unshared):
                        with gil:
                            raise MemoryError()
                else:
                    k.len = 0
                    if _put(k, s.first.p, e.shared) or _put(k, s.bp + e.key_off, e.unshared):
                        with gil:
                            raise MemoryError()
                    if s.ei == 0 and _set(&s.first, k.p, k.len):
                        with gil:
                            raise MemoryError()
                s.ei += 1
                if s.has_start:
                    if _cmp(k.p, k.len, s.start.p, s.start.len) < 0:
                        continue
                    s.has_start = 0  # the rows that follow are above it
                if s.has_end and _cmp(k.p, k.len, s.end.p, s.end.len) >= 0:
                    s.nents = s.ei = 0
                    s.blk = s.nblocks  # nothing else in this window is in range
                    continue
                s.c ^= 1
                if _set(&s.cur[s.c], k.p, k.len):
                    with gil:
                        raise MemoryError()
                s.seq = e.seq
                s.flags = e.flags
                if e.flags & F_TOMB:
                    s.val = s.bp
                    s.val_len = 0
                    if s.version == 1:
                        s.flags &= ~F_EXP  # V1 tombstones carry no expiry (the block codec)
                else:
                    s.val = s.bp + e.val_off
                    s.val_len = e.val_len
                s.expire = e.expire_ts
                s.create = e.create_ts
                s.live = 1
                return 0
            if s.blk < s.nblocks:
                self._scan_block(s)
                continue
            if s.exhausted:
                return 0
            with gil:
                self._load(i)

    cdef void _sift(self, int pos) noexcept nogil:
        cdef int* heap = self._heap
        cdef int h = self._h
        cdef int x = heap[pos]
        cdef int child
        cdef Src* srcs = self._srcs
        while True:
            child = 2 * pos + 1
            if child >= h:
                break
            if child + 1 < h and _before(&srcs[heap[child + 1]], heap[child + 1],
                                         &srcs[heap[child]], heap[child]):
                child += 1
            if not _before(&srcs[heap[child]], heap[child], &srcs[x], x):
                break
            heap[pos] = heap[child]
            pos = child
        heap[pos] = x

    # -- retention (GIL released) ----------------------------------------------------------

    cdef int _missing(self, const uint8_t* key, Py_ssize_t klen, uint64_t seq) except -1 nogil:
        with gil:
            raise InvalidError("merge operator missing", key=_key_detail(key, klen), seq=seq)

    cdef int _single(self, Row* r) except -1 nogil:
        """Retention for a key with one version."""
        cdef uint8_t flags = r.flags
        if flags & F_MERGE:
            return self._missing(r.key, r.klen, r.seq)
        if self._has_tick and (flags & F_EXP) and r.expire <= self._tick:
            if self._filter_tombstones:
                return 0
            return self._emit(r.key, r.klen, r.val, 0, r.seq, F_TOMB | (flags & F_CRE), 0,
                              r.create)
        if (flags & F_TOMB) and self._filter_tombstones:
            return 0
        return self._emit(r.key, r.klen, r.val, r.vlen, r.seq, flags, r.expire, r.create)

    cdef int _group_add(self, Row* r) except -1 nogil:
        cdef GRow* g
        cdef GRow* grown
        cdef Py_ssize_t cap
        if self._gn == 0:
            self._garena.len = 0
            if _set(&self._gkey, r.key, r.klen):
                with gil:
                    raise MemoryError()
        elif self._grows[self._gn - 1].seq == r.seq:
            self._gn -= 1  # a duplicate (key, seq): the later row wins, as in SlateDB
        if self._gn == self._gcap:
            cap = self._gcap * 2 if self._gcap else 16
            grown = <GRow*>realloc(self._grows, cap * sizeof(GRow))
            if grown == NULL:
                with gil:
                    raise MemoryError()
            self._grows = grown
            self._gcap = cap
        g = &self._grows[self._gn]
        g.voff = self._garena.len
        g.vlen = r.vlen
        g.seq = r.seq
        g.flags = r.flags
        g.expire = r.expire
        g.create = r.create
        if _put(&self._garena, r.val, r.vlen):
            with gil:
                raise MemoryError()
        self._gn += 1
        return 0

    cdef int _retain_group(self) except -1 nogil:
        """Retention for a key with several versions (``apply_retention``): the kept versions
        are the group's first ``_kn``."""
        cdef Py_ssize_t j, n = self._gn
        cdef GRow* g
        for j in range(n):
            if self._grows[j].flags & F_MERGE:
                return self._missing(self._gkey.p, self._gkey.len, self._grows[j].seq)
        self._kn = 0
        self._kpos = 0
        for j in range(n):
            g = &self._grows[j]
            if self._has_tick and (g.flags & F_EXP) and g.expire <= self._tick:
                g.flags = F_TOMB | (g.flags & F_CRE)
                g.vlen = 0
            self._kn += 1
            if self._has_min and g.seq > self._min_seq:
                continue
            break  # the boundary version
        if self._filter_tombstones:
            while self._kn and self._grows[self._kn - 1].flags & F_TOMB:
                self._kn -= 1
        self._gn = 0
        return 0

    cdef int _emit_kept(self) except -1 nogil:
        """Emit the group's kept versions from ``_kpos``; 1 when a split interrupted."""
        cdef GRow* g
        while self._kpos < self._kn:
            g = &self._grows[self._kpos]
            self._kpos += 1
            self._emit(self._gkey.p, self._gkey.len, self._garena.p + g.voff, g.vlen, g.seq,
                       g.flags, g.expire, g.create)
            if self._split:
                return 1
        return 0

    # -- output (GIL released) -------------------------------------------------------------

    cdef int _emit(self, const uint8_t* key, Py_ssize_t klen, const uint8_t* val,
                   Py_ssize_t vlen, uint64_t seq, uint8_t flags, int64_t expire,
                   int64_t create) except -1 nogil:
        """Append one kept row to the open block (closing it first when it does not fit)."""
        cdef int c
        cdef bint restart
        cdef Py_ssize_t shared, entry, blen
        cdef uint8_t* p
        cdef uint16_t off
        cdef uint64_t h
        if self._skipping:
            if _cmp(key, klen, self._skip_key.p, self._skip_key.len) == 0 and seq >= self._skip_seq:
                return 0  # written by the interrupted run of this job
            self._skipping = 0
        if self._any:
            c = _cmp(key, klen, self._last.p, self._last.len)
            if c < 0 or (c == 0 and seq >= self._last_seq):
                with gil:
                    raise InvalidError(
                        "compacted SST rows must be sorted by key, then seq descending",
                        key=PyBytes_FromStringAndSize(<const char*>key, klen), seq=seq)
        restart = self._bcount % C_RESTART == 0
        shared = 0 if restart else _prefix(self._last.p, self._last.len, key, klen)
        entry = _entry_size(shared, klen, vlen, flags)
        if self._bcount:
            blen = self._out.len - self._bstart
            if blen + self._res.len + 2 + entry + (2 if restart else 0) > self._block_size:
                self._close_block()  # SlateDB's rule: the row opens the next block
                restart = 1
                shared = 0
                entry = _entry_size(0, klen, vlen, flags)
        if restart:
            off = <uint16_t>(self._out.len - self._bstart)
            if _put(&self._res, &off, 2):
                with gil:
                    raise MemoryError()
        if _reserve(&self._out, entry):
            with gil:
                raise MemoryError()
        p = self._out.p + self._out.len
        p = _put_varint(p, <uint64_t>shared)
        p = _put_varint(p, <uint64_t>(klen - shared))
        p = _put_varint(p, <uint64_t>vlen)
        memcpy(p, key + shared, klen - shared)
        p += klen - shared
        if vlen:
            memcpy(p, val, vlen)
            p += vlen
        p = _put_u64(p, seq)
        p[0] = flags
        p += 1
        if flags & F_EXP:
            p = _put_u64(p, <uint64_t>expire)
        if flags & F_CRE:
            p = _put_u64(p, <uint64_t>create)
        self._out.len = p - self._out.p
        if self._bcount == 0 and _set(&self._bfirst, key, klen):
            with gil:
                raise MemoryError()
        self._bcount += 1
        if flags & F_TOMB:
            self._bdels += 1
        elif flags & F_MERGE:
            self._bmerges += 1
        else:
            self._bputs += 1
        self._braw_key += klen
        self._braw_val += vlen
        if self._rows == 0 and _set(&self._first, key, klen):
            with gil:
                raise MemoryError()
        self._rows += 1
        if _set(&self._last, key, klen):
            with gil:
                raise MemoryError()
        self._last_seq = seq
        self._any = 1
        if self._hash_keys:
            h = _sip13(key, klen)
            if _put(&self._hashes, &h, 8):
                with gil:
                    raise MemoryError()
        if self._size > self._max_size:
            self._split = 1  # SlateDB's split point: right after this row
        return 0

    cdef int _close_block(self) except -1 nogil:
        """Finish the open block: restart offsets, count, CRC; record index key and stats."""
        cdef Py_ssize_t nres, j, blen, sep
        cdef uint16_t* res
        cdef uint8_t* p
        cdef uint32_t crc
        cdef uint8_t head[12]
        cdef int64_t st[3]
        cdef int k
        if self._bcount == 0:
            return 0
        # the index key: b"" for an SST's first block, else the shortest separator
        if self._nblocks == 0:
            sep = 0
        else:
            sep = _prefix(self._prev_last.p, self._prev_last.len, self._bfirst.p,
                          self._bfirst.len)
            if sep < self._prev_last.len and sep < self._bfirst.len:
                sep += 1
            elif self._prev_last.len < self._bfirst.len:
                sep = self._prev_last.len + 1
            else:
                sep = self._bfirst.len
        for k in range(8):
            head[k] = <uint8_t>((<uint64_t>self._size) >> (8 * k))
        for k in range(4):
            head[8 + k] = <uint8_t>((<uint64_t>sep) >> (8 * k))
        if _put(&self._idx, head, 12) or _put(&self._idx, self._bfirst.p, sep):
            with gil:
                raise MemoryError()
        st[0] = self._bputs
        st[1] = self._bdels
        st[2] = self._bmerges
        if _put(&self._stats, st, sizeof(st)):
            with gil:
                raise MemoryError()
        self._puts += self._bputs
        self._dels += self._bdels
        self._merges += self._bmerges
        self._raw_key += self._braw_key
        self._raw_val += self._braw_val
        nres = self._res.len // 2
        if _reserve(&self._out, 2 * nres + 6):
            with gil:
                raise MemoryError()
        res = <uint16_t*>self._res.p
        p = self._out.p + self._out.len
        for j in range(nres):
            p[0] = <uint8_t>(res[j] >> 8)
            p[1] = <uint8_t>res[j]
            p += 2
        p[0] = <uint8_t>(nres >> 8)
        p[1] = <uint8_t>nres
        p += 2
        blen = (p - self._out.p) - self._bstart
        crc = _crc(self._out.p + self._bstart, blen)
        p[0] = <uint8_t>(crc >> 24)
        p[1] = <uint8_t>(crc >> 16)
        p[2] = <uint8_t>(crc >> 8)
        p[3] = <uint8_t>crc
        p += 4
        self._out.len = p - self._out.p
        self._bstart = self._out.len
        self._size += blen + 4
        self._nblocks += 1
        if _set(&self._prev_last, self._last.p, self._last.len):
            with gil:
                raise MemoryError()
        self._res.len = 0
        self._bcount = 0
        self._bputs = self._bdels = self._bmerges = 0
        self._braw_key = self._braw_val = 0
        return 0

    # -- the loop ---------------------------------------------------------------------------

    cdef int _start(self) except -1 nogil:
        cdef int i
        for i in range(self._n):
            self._advance(i)
            if self._srcs[i].live:
                self._heap[self._h] = i
                self._h += 1
        i = self._h // 2 - 1
        while i >= 0:
            self._sift(i)
            i -= 1
        self._started = 1
        return 0

    cdef int _write_out(self) except -1 nogil:
        """Write the finished blocks ``[0, _bstart)`` to ``_fd`` and keep only the open
        block's entries in the buffer (restart offsets are relative to the block)."""
        cdef Py_ssize_t done = 0
        cdef Py_ssize_t n
        cdef ssize_t w
        cdef int err
        while done < self._bstart:
            w = write(self._fd, self._out.p + done, <size_t>(self._bstart - done))
            if w < 0:
                err = errno
                if err == EINTR:
                    continue
                with gil:
                    raise OSError(err, _strerror(err))
            done += w
        n = self._out.len - self._bstart
        if n:
            memmove(self._out.p, self._out.p + self._bstart, n)
        self._out.len = n
        self._written += self._bstart
        self._bstart = 0
        return 0

    cdef int _run(self, Py_ssize_t out_bytes) except -1 nogil:
        cdef int i
        cdef Src* s
        cdef Src* t
        cdef Row r
        cdef bint same
        if not self._started:
            self._start()
        if self._emit_kept():
            self._split = 0
            return C_SPLIT
        while True:
            # no row points into the windows retired so far: the next _load frees them (it
            # holds the GIL anyway; taking it here for that cost a GIL hand-off per window)
            self._nsafe = self._nretired
            if self._fd >= 0:
                if self._bstart >= C_WRITE_BYTES:
                    self._write_out()
                if self._written >= out_bytes:
                    return C_MORE
            elif self._bstart >= out_bytes:
                return C_MORE
            if self._h == 0:
                return C_DONE
            i = self._heap[0]
            s = &self._srcs[i]
            r.key = s.cur[s.c].p
            r.klen = s.cur[s.c].len
            r.val = s.val
            r.vlen = s.val_len
            r.seq = s.seq
            r.flags = s.flags
            r.expire = s.expire
            r.create = s.create
            self._advance(i)  # r stays valid: the other key buffer, the window retired
            if not s.live:
                self._h -= 1
                self._heap[0] = self._heap[self._h]
            if self._h:
                self._sift(0)
            same = 0
            if self._h:
                t = &self._srcs[self._heap[0]]
                same = _cmp(t.cur[t.c].p, t.cur[t.c].len, r.key, r.klen) == 0
            if self._gn == 0 and not same:
                self._single(&r)
            else:
                self._group_add(&r)
                if not same:
                    self._retain_group()
                    if self._emit_kept():
                        self._split = 0
                        return C_SPLIT
            if self._split:
                self._split = 0
                return C_SPLIT

    # -- Python API -------------------------------------------------------------------------

    def run(self, writer, Py_ssize_t max_size, Py_ssize_t out_bytes, int fd=-1):
        """Merge until about ``out_bytes`` of finished blocks are ready (``RUN_MORE``), the SST
        must be finished (``RUN_SPLIT``: the row that opened its last block was added) or the
        sources are exhausted (``RUN_DONE``); hand what was written to ``writer`` -- with
        ``fd`` >= 0, write the finished blocks to that file instead (see the reference twin).

        :raises OSError: writing to ``fd`` failed.
        """
        cdef int rc
        self._max_size = max_size
        self._fd = fd
        self._written = 0
        try:
            with nogil:
                rc = self._run(out_bytes)
        finally:
            del self._retired[:]
            self._nretired = 0
            self._nsafe = 0
        self._sync(writer)
        return rc

    def finish_sst(self, writer, int fd=-1):
        """Close the open block, hand everything to ``writer`` (the blocks to ``fd`` when it is
        >= 0) and start a new SST; return the SST's key hashes (one per row) when
        ``hash_keys``, else ``None``.

        :raises OSError: writing to ``fd`` failed.
        """
        self._fd = fd
        self._written = 0
        with nogil:
            self._close_block()
        self._sync(writer)
        hashes = None
        if self._hash_keys:
            hashes = [(<uint64_t*>self._hashes.p)[j] for j in range(self._hashes.len // 8)]
        self._hashes.len = 0
        self._size = 0
        self._nblocks = 0
        self._rows = self._puts = self._dels = self._merges = 0
        self._raw_key = self._raw_val = 0
        self._first_synced = 0
        return hashes

    cdef int _sync(self, writer) except -1:
        """Hand the finished blocks, index entries, stats and totals to the data writer."""
        cdef Py_ssize_t j, n
        cdef int64_t* st
        if self._bstart and self._fd >= 0:
            with nogil:
                self._write_out()
        elif self._bstart:
            writer.chunks.append(PyBytes_FromStringAndSize(<const char*>self._out.p,
                                                           self._bstart))
            n = self._out.len - self._bstart
            if n:
                memmove(self._out.p, self._out.p + self._bstart, n)
            self._out.len = n
            # restart offsets are relative to the block: unchanged
            self._bstart = 0
        if self._idx.len:
            writer.index.add_packed(PyBytes_FromStringAndSize(<const char*>self._idx.p,
                                                              self._idx.len))
            self._idx.len = 0
        if self._stats.len:
            stats = writer.block_stats
            st = <int64_t*>self._stats.p
            last = self._last_stats
            for j in range(self._stats.len // sizeof(int64_t) // 3):
                if (last is None or (<tuple>last)[0] != st[3 * j]
                        or (<tuple>last)[1] != st[3 * j + 1] or (<tuple>last)[2] != st[3 * j + 2]):
                    last = tuple.__new__(BlockStats, (st[3 * j], st[3 * j + 1], st[3 * j + 2]))
                stats.append(last)  # immutable: equal stats share one tuple
            self._last_stats = last
            self._stats.len = 0
        writer.size = self._size
        writer.num_rows = self._rows
        writer.puts = self._puts
        writer.deletes = self._dels
        writer.merges = self._merges
        writer.raw_key = self._raw_key
        writer.raw_val = self._raw_val
        if self._rows:
            if not self._first_synced:
                writer.first_entry = PyBytes_FromStringAndSize(<const char*>self._first.p,
                                                               self._first.len)
                self._first_synced = 1
            writer.last_key = PyBytes_FromStringAndSize(<const char*>self._last.p,
                                                        self._last.len)
            writer.last_seq = self._last_seq
        return 0


