# The compiled MemtableBase, declared for the compiled commit (shale/engine/_commit_c.pyx), which
# inserts through its C methods and reads its counters as C fields.

cdef class MemtableBase:
    cdef public dict _versions
    cdef public list _new
    cdef public Py_ssize_t size, mem_bytes, num_rows
    cdef public object min_seq, max_seq, last_tick

    cdef Py_ssize_t add(self, tuple row) except -1
    cdef Py_ssize_t add_rows(self, list rows, object floor=*) except -1
