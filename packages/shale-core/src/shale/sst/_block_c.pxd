# The C-level interface of _block_c's BlockBuilder, cimported by _datawriter_c (which adds rows
# and closes blocks without Python calls). The attributes are declared here only.
from libc.stdint cimport uint8_t, uint16_t


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
