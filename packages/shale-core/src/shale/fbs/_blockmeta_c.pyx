# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""SST index and stats FlatBuffers, compiled twin of :mod:`shale.fbs._blockmeta_py`.

Same public API, same bytes and the same errors as the reference twin; read its docstring for
the layout and for what ``flatbuffers.Builder`` does that this reproduces. The record types
(:class:`BlockMeta`, :class:`BlockStats`, :class:`SstStats`) are the reference twin's classes.
How this one is fast:

* The encoders write into a C buffer filled back to front (:class:`_Back`), as the Builder
  does: one reservation and a few little-endian stores per block, no Python call. Each block's
  vtable is looked up in a small array indexed by its layout instead of a dict: a BlockMeta has
  3 possible layouts, a BlockStats 16, and distinct layouts never have equal vtables. The root
  tables' vtables cannot equal a block's (they have more slots), so they are always new.
* The decoders check each vector element's table and vtable with C loads (no cache needed)
  and create only the resulting ``bytes`` keys, ints and tuples.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

from shale.fbs._blockmeta_py import (
    MAX_SIZE,
    BlockMeta,
    BlockStats,
    SstStats,
    _check_uint,
    _fail,
)
from shale.errors import DataError, InvalidError

__all__ = [
    "MAX_SIZE",
    "BlockMeta",
    "BlockStats",
    "IndexBuilder",
    "SstStats",
    "decode_index",
    "decode_stats",
    "encode_index",
    "encode_stats",
]

cdef int64_t C_MAX_SIZE = 0x7FFFFFFF
cdef object _tuple_new = tuple.__new__


# ---------------------------------------------------------------------------------------------
# little-endian loads and stores (byte-wise: any host, any alignment; compilers make them one
# instruction on little-endian machines)


cdef inline void _st16(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)


cdef inline void _st32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)


cdef inline void _st64(uint8_t* p, uint64_t v) noexcept nogil:
    _st32(p, <uint32_t>v)
    _st32(p + 4, <uint32_t>(v >> 32))


cdef inline uint32_t _ld16(const uint8_t* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8)


cdef inline uint32_t _ld32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


cdef inline uint64_t _ld64(const uint8_t* p) noexcept nogil:
    return <uint64_t>_ld32(p) | (<uint64_t>_ld32(p + 4) << 32)


# ---------------------------------------------------------------------------------------------
# the back-to-front buffer


cdef class _Back:
    """Bytes written back to front: ``off`` bytes end at ``buf + cap``."""

    cdef uint8_t* buf
    cdef int64_t cap
    cdef int64_t off

    def __cinit__(self, int64_t initial=1024):
        self.cap = initial if initial > 64 else 64
        self.off = 0
        self.buf = <uint8_t*>malloc(<size_t>self.cap)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.buf)

    cdef uint8_t* reserve(self, int64_t n) except NULL:
        """Prepend ``n`` bytes; returns where they start (to be filled in memory order)."""
        cdef int64_t need = self.off + n
        cdef int64_t cap
        cdef uint8_t* nb
        if need > self.cap:
            if need > C_MAX_SIZE:
                raise InvalidError("FlatBuffer exceeds the size limit", size=need)
            cap = self.cap * 2
            while cap < need:
                cap *= 2
            nb = <uint8_t*>malloc(<size_t>cap)
            if nb == NULL:
                raise MemoryError()
            memcpy(nb + cap - self.off, self.buf + self.cap - self.off, <size_t>self.off)
            free(self.buf)
            self.buf = nb
            self.cap = cap
        self.off = need
        return self.buf + self.cap - need

    cdef bytes tobytes(self):
        return PyBytes_FromStringAndSize(<char*>(self.buf + self.cap - self.off), self.off)


cdef inline uint64_t _as_u64(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t v
    if type(value) is not int:
        _check_uint(name, value, 64)  # raises unless an int subclass in range
    try:
        v = value
    except OverflowError:
        _check_uint(name, value, 64)  # raises
        raise
    return v


cdef inline uint32_t _as_u16(object value, str name) except? 0xFFFFFFFF:
    cdef long v
    if type(value) is not int:
        _check_uint(name, value, 16)
    try:
        v = value
    except OverflowError:
        v = -1
    if v < 0 or v > 0xFFFF:
        _check_uint(name, value, 16)  # raises
    return <uint32_t>v


# ---------------------------------------------------------------------------------------------
# index


cdef class IndexBuilder:
    """Builds an ``SsTableIndex`` incrementally, one :meth:`add_block` per data block.

    Call :meth:`add_block` in file order; :meth:`finish` returns the FlatBuffer (the chunk
    payload, before compression and CRC).
    """

    cdef _Back _out
    cdef uint32_t* _metas      # offset of each BlockMeta table (from the buffer's end)
    cdef Py_ssize_t _n
    cdef Py_ssize_t _mcap
    cdef int64_t _vt[3]        # vtable offset per table size 8, 16, 20 (-1: none yet)
    cdef bint _finished

    def __cinit__(self):
        self._out = _Back(4096)
        self._mcap = 256
        self._metas = <uint32_t*>malloc(<size_t>self._mcap * sizeof(uint32_t))
        if self._metas == NULL:
            raise MemoryError()
        self._n = 0
        self._vt[0] = -1
        self._vt[1] = -1
        self._vt[2] = -1
        self._finished = False

    def __dealloc__(self):
        free(self._metas)

    def __len__(self):
        return self._n

    def add_block(self, offset, first_key):
        """Record a block: creates its ``first_key`` vector, then its ``BlockMeta`` table.

        :param offset: the block's absolute file offset (u64).
        :param first_key: its index key (``bytes``-like).
        :raises InvalidError: ``offset`` is not a u64, or the builder is finished.
        """
        if self._finished:
            raise InvalidError("IndexBuilder already finished")
        cdef uint64_t o = _as_u64(offset, "block offset")
        self._add(o, first_key if type(first_key) is bytes else bytes(first_key))

    def add_packed(self, data):
        """:meth:`add_block` for each entry of ``data`` (see the py twin)."""
        if self._finished:
            raise InvalidError("IndexBuilder already finished")
        cdef bytes buf = data if type(data) is bytes else bytes(data)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(buf)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0
        cdef uint64_t o
        cdef Py_ssize_t n
        cdef int k
        while pos < size:
            if pos + 12 > size:
                raise InvalidError("truncated packed index entry", offset=pos)
            o = 0
            for k in range(8):
                o |= (<uint64_t>p[pos + k]) << (8 * k)
            n = (<Py_ssize_t>p[pos + 8] | (<Py_ssize_t>p[pos + 9] << 8)
                 | (<Py_ssize_t>p[pos + 10] << 16) | (<Py_ssize_t>p[pos + 11] << 24))
            if pos + 12 + n > size:
                raise InvalidError("truncated packed index entry", offset=pos)
            self._add_raw(o, p + pos + 12, n)
            pos += 12 + n

    cdef int _add(self, uint64_t o, bytes key) except -1:
        return self._add_raw(o, <const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))

    cdef int _add_raw(self, uint64_t o, const uint8_t* kp, Py_ssize_t n) except -1:
        cdef int64_t off0 = self._out.off
        cdef int64_t pad = -(off0 + n) & 3
        cdef int64_t voff = off0 + pad + n + 4      # the key vector's offset
        cdef int64_t size
        cdef int which
        if o:
            if voff & 4:
                size = 20
                which = 2
            else:
                size = 16
                which = 1
        else:
            size = 8
            which = 0
        cdef int64_t tab = voff + size               # the table's offset
        cdef int64_t vt = self._vt[which]
        cdef int64_t vtbytes = 8 if vt < 0 else 0
        cdef uint8_t* p
        cdef uint32_t* nm
        if self._n == self._mcap:
            nm = <uint32_t*>realloc(self._metas, <size_t>(self._mcap * 2) * sizeof(uint32_t))
            if nm == NULL:
                raise MemoryError()
            self._metas = nm
            self._mcap *= 2
        p = self._out.reserve(vtbytes + size + 4 + n + pad)
        if vtbytes:
            # vtable: its length, the table size, entries of offset (slot 0) and first_key.
            _st16(p, 8)
            _st16(p + 2, <uint32_t>size)
            _st16(p + 4, 8 if o else 0)
            _st16(p + 6, 4)
            p += 8
            self._vt[which] = tab + 8
            _st32(p, 8)
        else:
            _st32(p, <uint32_t><int32_t>(vt - tab))
        _st32(p + 4, <uint32_t>(size - 4))           # first_key's uoffset: the vector follows
        if o:
            _st64(p + 8, o)
            if size == 20:
                memset(p + 16, 0, 4)
        p += size
        _st32(p, <uint32_t>n)
        memcpy(p + 4, kp, <size_t>n)
        if pad:
            memset(p + 4 + n, 0, <size_t>pad)
        self._metas[self._n] = <uint32_t>tab
        self._n += 1
        return 0

    def finish(self):
        """The encoded index; the builder cannot be used afterwards."""
        if self._finished:
            raise InvalidError("IndexBuilder already finished")
        self._finished = True
        cdef _Back out = self._out
        cdef Py_ssize_t n = self._n
        cdef Py_ssize_t j
        cdef int64_t base = out.off + 4 * n
        cdef uint8_t* p = out.reserve(4 * n + 4)
        _st32(p, <uint32_t>n)
        for j in range(n):
            _st32(p + 4 + 4 * j, <uint32_t>(base - 4 * j - self._metas[j]))
        # The root: vtable (6 bytes, table size 8, block_meta at 4), soffset 6, uoffset 4.
        p = out.reserve(14)
        _st16(p, 6)
        _st16(p + 2, 8)
        _st16(p + 4, 4)
        _st32(p + 6, 6)
        _st32(p + 10, 4)
        # Finish: minalign is 8 once a u64 was written (a block offset > 0), else 4.
        cdef int64_t pad = -(out.off + 4) & (7 if (self._vt[1] >= 0 or self._vt[2] >= 0) else 3)
        p = out.reserve(pad + 4)
        _st32(p, <uint32_t>(pad + 10))
        memset(p + 4, 0, <size_t>pad)
        result = out.tobytes()
        self._out = _Back(64)
        return result


def encode_index(metas):
    """The ``SsTableIndex`` FlatBuffer for ``metas`` (in file order).

    :raises InvalidError: an offset is not a u64.
    """
    cdef IndexBuilder ib = IndexBuilder()
    cdef uint64_t o
    for m in metas:
        o = _as_u64(m.offset, "block offset")
        key = m.first_key
        ib._add(o, key if type(key) is bytes else bytes(key))
    return ib.finish()


# ---------------------------------------------------------------------------------------------
# decoding helpers: each returns -1 after setting a DataError


cdef int _root_table(const uint8_t* b, int64_t size, str what, int64_t* pos, int64_t* vt,
                     int64_t* vt_len, int64_t* obj_len) except -1:
    if size < 4:
        raise _fail(what, "buffer shorter than the root offset", size=size)
    pos[0] = _ld32(b)
    if pos[0] + 4 > size:
        raise _fail(what, "table out of bounds", pos=pos[0], size=size)
    vt[0] = pos[0] - <int32_t>_ld32(b + pos[0])
    if vt[0] < 0 or vt[0] + 4 > size:
        raise _fail(what, "vtable out of bounds", pos=vt[0], size=size)
    vt_len[0] = _ld16(b + vt[0])
    obj_len[0] = _ld16(b + vt[0] + 2)
    if vt_len[0] < 4 or vt_len[0] & 1 or vt[0] + vt_len[0] > size:
        raise _fail(what, "bad vtable", pos=vt[0], vtable_len=vt_len[0])
    if obj_len[0] < 4 or pos[0] + obj_len[0] > size:
        raise _fail(what, "bad table size", pos=pos[0], table_len=obj_len[0])
    return 0


cdef int64_t _entry(const uint8_t* b, int64_t vt, int64_t vt_len, int64_t obj_len, int slot,
                    int width, str what) except -1:
    """The vtable entry of ``slot`` (0 when absent), checked to lie inside the table."""
    cdef int64_t vo = 4 + 2 * slot
    if vo + 2 > vt_len:
        return 0
    cdef int64_t e = _ld16(b + vt + vo)
    if e and (e < 4 or e + width > obj_len):
        raise _fail(what, "field outside its table", slot=slot, offset=e)
    return e


cdef int _vector(const uint8_t* b, int64_t size, int64_t ref, int64_t elem_size, str what,
                 int64_t* start, int64_t* count) except -1:
    """Follow the uoffset at ``ref`` to a vector: first element position and count."""
    cdef int64_t s = ref + _ld32(b + ref)
    if s + 4 > size:
        raise _fail(what, "vector out of bounds", pos=s, size=size)
    count[0] = _ld32(b + s)
    if s + 4 + count[0] * elem_size > size:
        raise _fail(what, "vector overruns buffer", pos=s, count=count[0], size=size)
    start[0] = s + 4
    return 0


cdef int _child(const uint8_t* b, int64_t size, int64_t ref, str what, int64_t* t,
                int64_t* vt, int64_t* vt_len, int64_t* obj_len) except -1:
    """The vector element table whose uoffset is at ``ref``: position and checked vtable."""
    t[0] = ref + _ld32(b + ref)
    if t[0] + 4 > size:
        raise _fail(what, "table out of bounds", pos=t[0], size=size)
    vt[0] = t[0] - <int32_t>_ld32(b + t[0])
    if vt[0] < 0 or vt[0] + 4 > size:
        raise _fail(what, "vtable out of bounds", pos=vt[0], size=size)
    vt_len[0] = _ld16(b + vt[0])
    obj_len[0] = _ld16(b + vt[0] + 2)
    if vt_len[0] < 4 or vt_len[0] & 1 or vt[0] + vt_len[0] > size:
        raise _fail(what, "bad vtable", pos=vt[0], vtable_len=vt_len[0])
    if obj_len[0] < 4:
        raise _fail(what, "bad table size", pos=vt[0], table_len=obj_len[0])
    return 0


def decode_index(buf):
    """Decode an ``SsTableIndex`` (the chunk payload after CRC check and decompression).

    :raises DataError: the buffer is not a valid index.
    """
    cdef str what = "SsTableIndex"
    cdef bytes data = buf if type(buf) is bytes else bytes(buf)
    cdef const uint8_t* b = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef int64_t size = PyBytes_GET_SIZE(data)
    cdef int64_t pos, vt, vt_len, obj_len, start, count, i, t, fo, fk, s, n
    cdef uint64_t o
    _root_table(b, size, what, &pos, &vt, &vt_len, &obj_len)
    cdef int64_t e = _entry(b, vt, vt_len, obj_len, 0, 4, what)
    if not e:
        raise _fail(what, "required field missing", field="block_meta", slot=0)
    _vector(b, size, pos + e, 4, what, &start, &count)
    cdef list out = []
    for i in range(count):
        _child(b, size, start + 4 * i, what, &t, &vt, &vt_len, &obj_len)
        fo = _entry(b, vt, vt_len, obj_len, 0, 8, what)
        fk = _entry(b, vt, vt_len, obj_len, 1, 4, what)
        if not fk:
            raise _fail(what, "required field missing", field="first_key", slot=1)
        if t + obj_len > size:
            raise _fail(what, "bad table size", pos=t, table_len=obj_len)
        s = t + fk
        s = s + _ld32(b + s) + 4
        if s > size:
            raise _fail(what, "vector out of bounds", pos=s - 4, size=size)
        n = _ld32(b + s - 4)
        if s + n > size:
            raise _fail(what, "vector overruns buffer", pos=s - 4, size=size)
        o = _ld64(b + t + fo) if fo else 0
        out.append(_tuple_new(BlockMeta, (o, PyBytes_FromStringAndSize(<char*>(b + s), n))))
    return out


# ---------------------------------------------------------------------------------------------
# stats


def encode_stats(stats):
    """The ``SstStats`` FlatBuffer (the stats chunk payload).

    :raises InvalidError: a counter is out of range (block counters are u16).
    """
    cdef list blocks = list(stats.block_stats)
    cdef Py_ssize_t nb = len(blocks)
    cdef Py_ssize_t j
    cdef uint32_t v[3]          # num_puts, num_deletes, num_merges of one block
    cdef int64_t vt_at[16]      # vtable offset per layout (mask * 2 + parity), -1: none yet
    cdef uint32_t* tables = NULL
    cdef _Back out = _Back(64 + 24 * nb)
    cdef int64_t off, k, pad, size, vt, vtn, last, f, tab, base
    cdef int mask, idx
    cdef uint8_t* p
    cdef uint64_t tot[5]        # slots 0-4: num_puts ... raw_val_size
    for idx in range(16):
        vt_at[idx] = -1
    if nb:
        tables = <uint32_t*>malloc(<size_t>nb * sizeof(uint32_t))
        if tables == NULL:
            raise MemoryError()
    try:
        for j in range(nb):
            bs = blocks[j]
            if type(bs) is BlockStats:
                v[2] = _as_u16(<object>PyTuple_GET_ITEM(bs, 2), "block num_merges")
                v[1] = _as_u16(<object>PyTuple_GET_ITEM(bs, 1), "block num_deletes")
                v[0] = _as_u16(<object>PyTuple_GET_ITEM(bs, 0), "block num_puts")
            else:
                v[2] = _as_u16(bs.num_merges, "block num_merges")
                v[1] = _as_u16(bs.num_deletes, "block num_deletes")
                v[0] = _as_u16(bs.num_puts, "block num_puts")
            off = out.off                       # always even
            mask = (v[0] != 0) << 2 | (v[1] != 0) << 1 | (v[2] != 0)
            k = (v[0] != 0) + (v[1] != 0) + (v[2] != 0)
            pad = (off + 2 * k) & 2             # the soffset's alignment
            size = 4 + pad + 2 * k
            idx = mask * 2 + ((off >> 1) & 1)
            vt = vt_at[idx]
            last = 0 if v[2] else (1 if v[1] else (2 if v[0] else 3))
            vtn = (4 + 2 * (3 - last)) if vt < 0 else 0   # slots 0 .. highest present
            tab = off + size
            p = out.reserve(vtn + size)
            if vtn:
                _st16(p, <uint32_t>vtn)
                _st16(p + 2, <uint32_t>size)
                f = 4 + pad                     # fields in memory order: puts, deletes, merges
                for k in range(3 - last):
                    if v[k]:
                        _st16(p + 4 + 2 * k, <uint32_t>f)
                        f += 2
                    else:
                        _st16(p + 4 + 2 * k, 0)
                p += vtn
                vt_at[idx] = tab + vtn
                _st32(p, <uint32_t>vtn)
            else:
                _st32(p, <uint32_t><int32_t>(vt - tab))
            if pad:
                _st16(p + 4, 0)
            f = 4 + pad
            for k in range(3):
                if v[k]:
                    _st16(p + f, v[k])
                    f += 2
            tables[j] = <uint32_t>tab
        # The vector of BlockStats uoffsets (4-aligned).
        vtn = 0
        if nb:
            pad = -out.off & 3
            base = out.off + pad + 4 * nb
            p = out.reserve(4 * nb + 4 + pad)
            _st32(p, <uint32_t>nb)
            for j in range(nb):
                _st32(p + 4 + 4 * j, <uint32_t>(base - 4 * j - tables[j]))
            if pad:
                memset(p + 4 + 4 * nb, 0, <size_t>pad)
            vtn = out.off                       # the vector's offset
    finally:
        free(tables)
    # The SstStats table, add order raw_val_size .. num_puts (u64, zeros skipped), then the
    # block_stats uoffset. Memory order: soffset, [uoffset], u64s by slot, alignment padding.
    tot[4] = _as_u64(stats.raw_val_size, "raw_val_size")
    tot[3] = _as_u64(stats.raw_key_size, "raw_key_size")
    tot[2] = _as_u64(stats.num_merges, "num_merges")
    tot[1] = _as_u64(stats.num_deletes, "num_deletes")
    tot[0] = _as_u64(stats.num_puts, "num_puts")
    off = out.off                               # 0, or the vector's offset (4-aligned)
    k = 0
    last = -1
    for idx in range(5):
        if tot[idx]:
            k += 1
            last = idx
    if nb:
        last = 5
    pad = (-off & 7) if k else 0
    size = 4 + (4 if nb else 0) + 8 * k + pad
    tab = off + size
    vt = 4 + 2 * (last + 1)                     # vtable length (always a new vtable)
    p = out.reserve(vt + size)
    _st16(p, <uint32_t>vt)
    _st16(p + 2, <uint32_t>size)
    f = 4 + (4 if nb else 0)
    for idx in range(5):
        if idx <= last:
            if tot[idx]:
                _st16(p + 4 + 2 * idx, <uint32_t>f)
                _st64(p + vt + f, tot[idx])
                f += 8
            else:
                _st16(p + 4 + 2 * idx, 0)
    if nb:
        _st16(p + 4 + 10, 4)
        _st32(p + vt + 4, <uint32_t>(tab - 4 - vtn))
    _st32(p + vt, <uint32_t>vt)
    if pad:
        memset(p + vt + f, 0, <size_t>pad)
    # Finish: minalign is 8 when a u64 was written, else 4.
    pad = -(out.off + 4) & (7 if k else 3)
    p = out.reserve(pad + 4)
    _st32(p, <uint32_t>(vt + pad + 4))
    memset(p + 4, 0, <size_t>pad)
    return out.tobytes()


def decode_stats(buf):
    """Decode an ``SstStats`` FlatBuffer.

    :raises DataError: the buffer is not a valid stats table.
    """
    cdef str what = "SstStats"
    cdef bytes data = buf if type(buf) is bytes else bytes(buf)
    cdef const uint8_t* b = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef int64_t size = PyBytes_GET_SIZE(data)
    cdef int64_t pos, vt, vt_len, obj_len, start, count, i, t, e, ep, ed, em
    cdef int slot
    _root_table(b, size, what, &pos, &vt, &vt_len, &obj_len)
    totals = []
    for slot in range(5):
        e = _entry(b, vt, vt_len, obj_len, slot, 8, what)
        totals.append(_ld64(b + pos + e) if e else 0)
    cdef list blocks = []
    e = _entry(b, vt, vt_len, obj_len, 5, 4, what)
    if e:
        _vector(b, size, pos + e, 4, what, &start, &count)
        for i in range(count):
            _child(b, size, start + 4 * i, what, &t, &vt, &vt_len, &obj_len)
            ep = _entry(b, vt, vt_len, obj_len, 0, 2, what)
            ed = _entry(b, vt, vt_len, obj_len, 1, 2, what)
            em = _entry(b, vt, vt_len, obj_len, 2, 2, what)
            if t + obj_len > size:
                raise _fail(what, "bad table size", pos=t, table_len=obj_len)
            blocks.append(_tuple_new(BlockStats, (
                _ld16(b + t + ep) if ep else 0,
                _ld16(b + t + ed) if ed else 0,
                _ld16(b + t + em) if em else 0,
            )))
    return SstStats(totals[0], totals[1], totals[2], totals[3], totals[4], blocks)
