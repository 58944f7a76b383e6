# cython: language_level=3
"""The memtable's hot loops, compiled twin of ``_memtable_py.py`` (same API, same results)."""

from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.ref cimport PyObject

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)

cdef enum:
    MERGE = 2

__all__ = ["insert_rows", "versions_to_base"]


def insert_rows(dict versions, list new, list rows, object max_tick, object floor=None):
    cdef Py_ssize_t count = 0, nbytes = 0
    cdef tuple row
    cdef list lst
    cdef object key, seq, ts
    cdef object low = None, high = None
    cdef PyObject* found
    cdef bint check = floor is not None
    for row in rows:
        seq = row[1]
        if check and seq <= floor:
            continue
        key = row[0]
        found = PyDict_GetItem(versions, key)
        if found == NULL:
            lst = [row]
            # it only ever holds row tuples (bytes, ints, None): never part of a cycle, so the
            # collector need not track it (a replay inserts ~100k of them per second)
            PyObject_GC_UnTrack(<void*>lst)
            PyDict_SetItem(versions, key, lst)
            PyList_Append(new, key)
        else:
            PyList_Append(<list>found, row)
        count += 1
        nbytes += len(<bytes>key) + len(<bytes>row[3])
        if low is None or seq < low:
            low = seq
        if high is None or seq > high:
            high = seq
        ts = row[5]
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
