# The C-level interface of _bloom_c, cimported by the compaction kernel (_compact_c), which
# hashes each output key while it writes the block.
from libc.stdint cimport uint8_t, uint64_t


cdef uint64_t _sip13(const uint8_t* p, Py_ssize_t n) noexcept nogil
