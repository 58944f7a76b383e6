# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The data section of an SST being built, compiled twin of :mod:`shale.sst._datawriter_py`.

Same API, same bytes, same errors as the reference twin; read its docstring for the
invariants. How this one is fast: the per-row path (order check, block add, counters) and the
per-block path (separator, index entry, stats, framing) run as C code calling the block
builder's C methods (``_block_c.pxd``) and the index builder directly, with no Python bytecode per row; key order is
checked with ``memcmp`` when both keys are ``bytes`` (else with Python's comparison, as the
reference does); :meth:`DataWriter.add_rows` pulls rows from the iterator in the same C loop.
"""

import struct
import zlib

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.string cimport memcmp

cdef extern from "_crc32_simd.h" nogil:
    # zlib's CRC-32, folded with PCLMULQDQ where the CPU has it (~20x zlib 1.2's tables)
    uint32_t shale_crc32(uint32_t crc, const unsigned char* buf, size_t len)

from shale.errors import InvalidError
from shale.fbs.blockmeta import BlockStats, IndexBuilder
from shale.sst import compression as C
from shale.sst._block_c cimport BlockBuilder

__all__ = ["DataWriter", "shortest_separator"]

_U64 = struct.Struct(">Q")
_CRC = struct.Struct(">I")
_crc32 = zlib.crc32
_compress = C.compress
cdef int _NONE = C.NONE


cdef inline int _cmp_bytes(bytes a, bytes b) noexcept:
    """memcmp order of two bytes objects: <0, 0, >0."""
    cdef Py_ssize_t na = PyBytes_GET_SIZE(a)
    cdef Py_ssize_t nb = PyBytes_GET_SIZE(b)
    cdef int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), na if na < nb else nb)
    if c != 0:
        return c
    return (na > nb) - (na < nb)


def shortest_separator(prev_last, first):
    """The index key SlateDB stores for a block that starts with ``first`` after ``prev_last``
    (see the reference twin)."""
    if type(prev_last) is not bytes or type(first) is not bytes:
        prev_last = bytes(prev_last)
        first = bytes(first)
    return _separator(<bytes>prev_last, <bytes>first)


cdef bytes _separator(bytes prev_last, bytes first):
    cdef Py_ssize_t na = PyBytes_GET_SIZE(prev_last)
    cdef Py_ssize_t nb = PyBytes_GET_SIZE(first)
    cdef Py_ssize_t n = na if na < nb else nb
    cdef const unsigned char* a = <const unsigned char*>PyBytes_AS_STRING(prev_last)
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(first)
    cdef Py_ssize_t i = 0
    while i < n and a[i] == b[i]:
        i += 1
    if i < n:
        return first[: i + 1]
    if na < nb:
        return first[: na + 1]
    return first


cdef class DataWriter:
    """Rows in, framed data blocks out (see the reference twin)."""

    cdef public object block_size
    cdef public object version
    cdef public object codec
    cdef public object transformer
    cdef public bint wal
    cdef public bint keep_keys
    cdef public list chunks
    cdef public Py_ssize_t size
    cdef public object index
    cdef public list block_stats
    cdef public list keys
    cdef public object first_entry
    cdef public object last_key
    cdef public object last_seq
    cdef public Py_ssize_t num_rows
    cdef public Py_ssize_t puts
    cdef public Py_ssize_t deletes
    cdef public Py_ssize_t merges
    cdef public Py_ssize_t raw_key
    cdef public Py_ssize_t raw_val
    cdef BlockBuilder _block
    cdef object _index_add
    cdef object _prev_block_last
    cdef int _codec

    def __init__(self, block_size, version, codec, transformer, wal, keep_keys):
        self.block_size = block_size
        self.version = version
        self.codec = codec
        self._codec = codec
        self.transformer = transformer
        self.wal = wal
        self.keep_keys = keep_keys
        self.chunks = []
        self.size = 0
        self.index = IndexBuilder()
        self._index_add = self.index.add_block
        self.block_stats = []
        self.keys = []
        self.first_entry = None
        self.last_key = None
        self.last_seq = None
        self.num_rows = 0
        self.puts = self.deletes = self.merges = 0
        self.raw_key = self.raw_val = 0
        self._block = BlockBuilder(block_size, version)
        self._prev_block_last = None

    def open_block_size(self):
        """Estimated encoded size of the open block."""
        return self._block.estimated_size()

    def add(self, row):
        """Append one row tuple (see the reference twin)."""
        self._add(row)

    cdef int _add(self, object row) except -1:
        cdef int c
        key = row[0]
        seq = row[1]
        last_key = self.last_key
        if last_key is not None:
            last_seq = self.last_seq
            if self.wal:
                if last_seq is not None and seq < last_seq:
                    raise InvalidError("WAL rows must be in seq order", seq=seq, prev=last_seq)
            else:
                if type(key) is bytes and type(last_key) is bytes:
                    c = _cmp_bytes(<bytes>key, <bytes>last_key)
                    bad = c < 0 or (c == 0 and last_seq is not None and seq >= last_seq)
                else:
                    bad = key < last_key or (
                        key == last_key and last_seq is not None and seq >= last_seq
                    )
                if bad:
                    raise InvalidError(
                        "compacted SST rows must be sorted by key, then seq descending",
                        key=key,
                        seq=seq,
                    )
        if not self._block._add(row):
            self._close_block()
            if not self._block._add(row):  # an empty block always accepts
                raise InvalidError("row rejected by an empty block", key=key)
        if self.num_rows == 0:
            self.first_entry = _U64.pack(seq) if self.wal else key
        self.num_rows += 1
        self.last_key = key
        self.last_seq = seq
        if self.keep_keys:
            self.keys.append(key)
        return 0

    def add_rows(self, rows, Py_ssize_t max_rows, Py_ssize_t max_size):
        """Add rows until exhausted, ``max_rows`` added, or ``size > max_size`` after a row
        (see the reference twin); return the number added."""
        cdef Py_ssize_t n = 0
        for row in rows:
            self._add(row)
            n += 1
            if n >= max_rows or self.size > max_size:
                break
        return n

    def close_block(self):
        """Close the open block (if it has rows): frame it into ``chunks``, index it."""
        self._close_block()

    cdef int _close_block(self) except -1:
        cdef BlockBuilder blk = self._block
        if blk._count == 0:
            return 0
        if self.wal:
            index_key = _U64.pack(blk._first_seq)
        elif self._prev_block_last is None:
            index_key = b""
        else:
            first_key = blk._first_key
            if type(first_key) is bytes and type(self._prev_block_last) is bytes:
                index_key = _separator(<bytes>self._prev_block_last, <bytes>first_key)
            else:
                index_key = shortest_separator(self._prev_block_last, first_key)
        self._index_add(self.size, index_key)
        cdef Py_ssize_t puts = blk._num_puts
        cdef Py_ssize_t deletes = blk._num_deletes
        cdef Py_ssize_t merges = blk._num_merges
        self.block_stats.append(tuple.__new__(BlockStats, (puts, deletes, merges)))
        self.puts += puts
        self.deletes += deletes
        self.merges += merges
        self.raw_key += blk._raw_key_size
        self.raw_val += blk._raw_value_size
        self._prev_block_last = blk._last_key
        stored = blk._finish()
        if self._codec != _NONE:
            stored = _compress(self._codec, stored)
        if self.transformer is not None:
            stored = self.transformer.encode(stored)
        self.chunks.append(stored)
        if type(stored) is bytes:
            crc = shale_crc32(0, <const unsigned char*>PyBytes_AS_STRING(stored),
                              <size_t>PyBytes_GET_SIZE(stored))
        else:
            crc = _crc32(stored)
        self.chunks.append(_CRC.pack(crc))
        self.size += len(stored) + 4
        return 0
