# cython: language_level=3
"""The memtable's insert path and hot loops, compiled twin of ``_memtable_py.py`` (same API,
same results). ``_memtable_c.pxd`` declares :class:`MemtableBase` for the compiled commit."""

from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.ref cimport PyObject

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL
    Py_ssize_t PyDict_GET_SIZE(object d)

cdef enum:
    MERGE = 2

from shale.engine._memtable_py import ROW_MEMORY_OVERHEAD, ROW_OVERHEAD

__all__ = [
    "ROW_MEMORY_OVERHEAD",
    "ROW_OVERHEAD",
    "MemtableBase",
    "insert_rows",
    "versions_to_base",
]

cdef Py_ssize_t _ROW_OVERHEAD = ROW_OVERHEAD
cdef Py_ssize_t _ROW_MEMORY_OVERHEAD = ROW_MEMORY_OVERHEAD


cdef inline Py_ssize_t _insert(dict versions, list new, tuple row) except -1:
    """One row into ``versions`` (a new key also into ``new``); its key and value bytes."""
    key = row[0]
    cdef list lst
    cdef Py_ssize_t before = PyDict_GET_SIZE(versions)
    # one lookup: a new key gets the row itself (its one version)
    cdef PyObject* found = PyDict_SetDefault(versions, key, row)
    if PyDict_GET_SIZE(versions) != before:
        PyList_Append(new, key)
    elif type(<object>found) is tuple:
        lst = [<object>found, row]
        # it only ever holds row tuples (bytes, ints, None): never part of a cycle, so the
        # collector need not track it (a replay inserts ~100k of them per second)
        PyObject_GC_UnTrack(<void*>lst)
        PyDict_SetItem(versions, key, lst)
    else:
        PyList_Append(<list>found, row)
    return len(<bytes>key) + len(<bytes>row[3])


cdef class MemtableBase:
    """A memtable's rows and counters, and the inserts (see ``_memtable_py.MemtableBase``)."""

    def __cinit__(self):
        self._versions = {}
        self._new = []
        self.size = 0
        self.mem_bytes = 0
        self.num_rows = 0
        self.min_seq = None
        self.max_seq = 0
        self.last_tick = None

    def __init__(self):
        pass

    cdef Py_ssize_t add(self, tuple row) except -1:
        """:meth:`put`; returns the row's key and value bytes."""
        cdef Py_ssize_t nbytes = _insert(self._versions, self._new, row)
        self.size += nbytes + _ROW_OVERHEAD
        self.mem_bytes += nbytes + _ROW_MEMORY_OVERHEAD
        self.num_rows += 1
        seq = row[1]
        if self.min_seq is None:
            self.min_seq = seq
        if seq > self.max_seq:
            self.max_seq = seq
        ts = row[5]
        if ts is not None and (self.last_tick is None or ts > self.last_tick):
            self.last_tick = ts
        return nbytes

    cdef Py_ssize_t add_rows(self, list rows, object floor=None) except -1:
        """:meth:`put_rows`; returns the rows' key and value bytes."""
        if not rows:
            return 0
        count, nbytes, self.last_tick, low, high = insert_rows(
            self._versions, self._new, rows, self.last_tick, floor
        )
        cdef Py_ssize_t n = count
        if n == 0:
            return 0
        self.size += nbytes + n * _ROW_OVERHEAD
        self.mem_bytes += nbytes + n * _ROW_MEMORY_OVERHEAD
        self.num_rows += n
        if self.min_seq is None or low < self.min_seq:
            self.min_seq = low
        if high > self.max_seq:
            self.max_seq = high
        return nbytes

    def put(self, tuple row):
        """Insert one row. The caller serialises writers and inserts seqs in increasing order."""
        self.add(row)

    def put_rows(self, list rows, object floor=None):
        """Insert ``rows`` in order (any seq order: a WAL SST's rows come by key): :meth:`put`
        for many rows, the sizes and bounds updated once; with a ``floor``, rows with
        ``seq <= floor`` are skipped. Returns the number inserted."""
        if not rows:
            return 0
        cdef Py_ssize_t before = self.num_rows
        self.add_rows(rows, floor)
        return self.num_rows - before


def insert_rows(dict versions, list new, list rows, object max_tick, object floor=None):
    cdef Py_ssize_t count = 0, nbytes = 0
    cdef tuple row
    cdef object seq, ts
    cdef object low = None, high = None
    cdef bint check = floor is not None
    # The rows of one batch share their seq and create_ts objects (the WAL decoder gives them
    # one int each): a row whose seq (ts) is the object just seen skips the comparisons.
    cdef object last_seq = None, last_ts = None
    for row in rows:
        seq = row[1]
        if seq is not last_seq:
            if check and seq <= floor:
                continue
            last_seq = seq
            if low is None or seq < low:
                low = seq
            if high is None or seq > high:
                high = seq
        nbytes += _insert(versions, new, row)
        count += 1
        ts = row[5]
        if ts is not last_ts:
            last_ts = ts
            if ts is not None and (max_tick is None or ts > max_tick):
                max_tick = ts
    return count, nbytes, max_tick, low, high


def versions_to_base(list lst, object max_seq):
    cdef list out = []
    cdef Py_ssize_t i
    cdef tuple r
    for i in range(len(lst) - 1, -1, -1):
        r = <tuple>lst[i]
        if r[1] <= max_seq:
            out.append(r)
            if r[2] != MERGE:
                break
    return out
