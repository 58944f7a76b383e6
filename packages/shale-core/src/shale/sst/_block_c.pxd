# The C-level interface of _block_c's BlockBuilder, cimported by _datawriter_c (which adds rows
# and closes blocks without Python calls). The attributes are declared here only.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy


cdef inline Py_ssize_t _prefix(const uint8_t* a, Py_ssize_t na,
                               const uint8_t* b, Py_ssize_t nb) noexcept nogil:
    """The length of the common prefix of two byte runs (8 bytes at a time); shared by the
    block encoder and the compaction kernel."""
    cdef Py_ssize_t n = na if na < nb else nb
    cdef Py_ssize_t i = 0
    cdef uint64_t x, y
    while i + 8 <= n:
        memcpy(&x, a + i, 8)
        memcpy(&y, b + i, 8)
        if x != y:
            break
        i += 8
    while i < n and a[i] == b[i]:
        i += 1
    return i


cdef class BlockBuilder:
    cdef uint8_t* _buf
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef uint16_t* _offs
    cdef Py_ssize_t _noffs
    cdef Py_ssize_t _offcap
    cdef Py_ssize_t _count
    cdef Py_ssize_t _block_size
    cdef int _version
    cdef object _first_key
    cdef object _first_seq
    cdef object _last_key
    cdef Py_ssize_t _num_puts
    cdef Py_ssize_t _num_deletes
    cdef Py_ssize_t _num_merges
    cdef Py_ssize_t _raw_key_size
    cdef Py_ssize_t _raw_value_size

    cdef void _reset(self) noexcept
    cdef int _reserve(self, Py_ssize_t extra) except -1
    cdef int _add(self, object row) except -1
    cdef bytes _finish(self)


# The validating block scans (nogil) and their error, cimported by the compaction kernel.
cdef struct Err:
    int code
    int field
    Py_ssize_t a
    Py_ssize_t b
    Py_ssize_t c
    Py_ssize_t d


cdef struct Entry:
    Py_ssize_t key_off      # start of the key suffix
    Py_ssize_t shared       # V2 shared bytes / V1 prefix length
    Py_ssize_t unshared
    Py_ssize_t val_off
    Py_ssize_t val_len
    uint64_t seq
    int64_t expire_ts
    int64_t create_ts
    uint8_t flags


cdef int _scan_v2(const uint8_t* p, Py_ssize_t data_end, Py_ssize_t n_restarts,
                  Entry* ents, Py_ssize_t cap, Py_ssize_t* n_out, Err* err) noexcept nogil
cdef int _scan_v1(const uint8_t* p, Py_ssize_t data_end, Py_ssize_t n,
                  Entry* ents, Err* err) noexcept nogil
cdef object _error(const Err* e)
