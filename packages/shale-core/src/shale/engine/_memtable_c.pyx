# cython: language_level=3
"""The memtable's hot loops, compiled twin of ``_memtable_py.py`` (same API, same results)."""

from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.ref cimport PyObject

cdef enum:
    MERGE = 2

__all__ = ["insert_rows", "versions_to_base"]


def insert_rows(dict versions, list new, list rows, object max_tick):
    cdef Py_ssize_t nbytes = 0
    cdef tuple row
    cdef object key, seq, ts
    cdef PyObject* found
    low = high = (<tuple>rows[0])[1]
    for row in rows:
        key = row[0]
        found = PyDict_GetItem(versions, key)
        if found == NULL:
            PyDict_SetItem(versions, key, [row])
            PyList_Append(new, key)
        else:
            PyList_Append(<list>found, row)
        nbytes += len(<bytes>key) + len(<bytes>row[3])
        seq = row[1]
        if seq < low:
            low = seq
        elif seq > high:
            high = seq
        ts = row[5]
        if ts is not None and (max_tick is None or ts > max_tick):
            max_tick = ts
    return nbytes, max_tick, low, high


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
