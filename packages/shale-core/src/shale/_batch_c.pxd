# The compiled WriteBatch, declared for the compiled commit (shale/engine/_commit_c.pyx), which
# reads a batch's ops in key order without building its items().

cdef class WriteBatch:
    cdef dict _ops
    cdef Py_ssize_t _merges

    cdef tuple columns(self)
    cdef object _sorted(self, int mode)
