# cython: language_level=3
"""A point lookup's walk over its sources, compiled twin of ``_point_py.py`` (same API, same
results; :mod:`shale.engine.point` describes the contract).

One call does what the pure twin does with a Python frame per step: the memtable probes, the
key-range checks of the SSTs, the bloom probe, the searches of the block index and of the block
(``memcmp`` on the keys, no tuple comparisons) and the collection of versions. The metadata
cache, the block cache, a block's load (read, CRC check, decode) and clone ``visible_range``
checks are Python-level calls into their owners, as in the pure twin.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItemWithError
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLong, PyLong_AsUnsignedLongLong
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.string cimport memcmp

cdef enum:
    MERGE = 2

__all__ = ["point_versions"]

cdef object _U64_LIMIT = 1 << 64


cdef inline int _cmp(bytes a, bytes b) noexcept:
    """memcmp order of two byte strings: < 0, 0 or > 0."""
    cdef Py_ssize_t la = PyBytes_GET_SIZE(a)
    cdef Py_ssize_t lb = PyBytes_GET_SIZE(b)
    cdef int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la if la < lb else lb)
    if c != 0:
        return c
    return (la > lb) - (la < lb)


cdef inline Py_ssize_t _bisect_keys(list keys, bytes key) noexcept:
    """``bisect_left(keys, key)`` for a list of bytes."""
    cdef Py_ssize_t lo = 0
    cdef Py_ssize_t hi = PyList_GET_SIZE(keys)
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _cmp(<bytes>PyList_GET_ITEM(keys, mid), key) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t _bisect_rows(list rows, bytes key) noexcept:
    """``bisect_left(rows, (key,))``: the first row whose key is ``>= key``."""
    cdef Py_ssize_t lo = 0
    cdef Py_ssize_t hi = PyList_GET_SIZE(rows)
    cdef Py_ssize_t mid
    cdef PyObject* row
    while lo < hi:
        mid = (lo + hi) >> 1
        row = PyList_GET_ITEM(rows, mid)
        if _cmp(<bytes>PyTuple_GET_ITEM(<tuple>row, 0), key) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline int _take(tuple r, unsigned long long limit, list out) except -1:
    """Append ``r`` to ``out`` if visible under ``limit``: 1 when it is a base (not a merge
    operand), else 0."""
    if PyLong_AsUnsignedLongLong(<object>PyTuple_GET_ITEM(r, 1)) <= limit:
        out.append(r)
        if PyLong_AsLong(<object>PyTuple_GET_ITEM(r, 2)) != MERGE:
            return 1
    return 0


def point_versions(memtables, tuple plan, key, max_seq, tables):
    """``key``'s versions with ``seq <= max_seq``, newest first, down to the first that is not
    a merge operand: from ``memtables`` (newest first), then the plan's L0 SSTs and sorted
    runs."""
    cdef list out = []
    cdef unsigned long long limit
    cdef bytes k
    cdef PyObject* found
    cdef list lst
    cdef Py_ssize_t i, n
    cdef tuple entry
    cdef list firsts, entries
    if max_seq < 0:
        return out
    limit = max_seq if max_seq < _U64_LIMIT else 0xFFFFFFFFFFFFFFFF
    k = key if type(key) is bytes else bytes(key)
    for mt in memtables:
        found = PyDict_GetItemWithError(mt._versions, k)
        if found != NULL:
            if type(<object>found) is tuple:  # one version: the row itself
                if _take(<tuple>found, limit, out):
                    return out
                continue
            lst = <list>found  # only grows at its end: read below the length seen
            for i in range(PyList_GET_SIZE(lst) - 1, -1, -1):
                if _take(<tuple>PyList_GET_ITEM(lst, i), limit, out):
                    return out
    meta = tables.meta_cache
    for entry in <tuple>plan[0]:
        first = entry[0]
        last = entry[1]
        if first is not None and _cmp(k, <bytes>first) < 0:
            continue
        if last is not None and _cmp(k, <bytes>last) > 0:
            continue
        vrange = entry[2]
        if vrange is not None and not vrange.contains(k):
            continue
        if _sst_versions(tables, meta, entry, k, limit, out):
            return out
    for run in <tuple>plan[1]:
        firsts = <list>(<tuple>run)[0]
        entries = <list>(<tuple>run)[1]
        # a key's versions may continue over several SSTs of a run: start at the last SST
        # starting below the key
        i = _bisect_keys(firsts, k) - 1
        if i < 0:
            i = 0
        n = PyList_GET_SIZE(entries)
        while i < n:
            entry = <tuple>PyList_GET_ITEM(entries, i)
            first = entry[0]
            last = entry[1]
            if first is not None and _cmp(k, <bytes>first) < 0:
                break
            if last is None or _cmp(k, <bytes>last) <= 0:
                vrange = entry[2]
                if vrange is None or vrange.contains(k):
                    if _sst_versions(tables, meta, entry, k, limit, out):
                        return out
            if last is not None and _cmp(k, <bytes>last) < 0:
                break
            i += 1
    return out


cdef int _sst_versions(
    object tables, object meta, tuple entry, bytes key, unsigned long long limit, list out
) except -1:
    """Append ``key``'s visible versions in one SST to ``out``; 1 once a base was found."""
    cdef tuple probe
    cdef list index_keys, rows
    cdef Py_ssize_t i, n, j, m
    cdef tuple r
    table = meta.get(entry[3])
    if table is None:
        table = tables.load(entry[4])
    got = table._probe  # built once per open SST
    probe = <tuple>(table.point_probe() if got is None else got)
    bloom = probe[0]
    if bloom is not None:
        if not bloom.may_contain_hash(probe[1](key)):
            return 0
    elif probe[2] is not None and not probe[2].may_contain(key):
        return 0
    index_keys = <list>probe[3]
    cache = probe[4]
    cache_id = probe[5]
    # the last block whose separator is strictly below the key (shale.sst.table's docstring)
    i = _bisect_keys(index_keys, key) - 1
    if i < 0:
        i = 0
    n = PyList_GET_SIZE(index_keys)
    while i < n:
        got = None if cache is None else cache.get((cache_id, i))
        if got is None:
            got = table._load_block(i)
        rows = <list>got
        m = PyList_GET_SIZE(rows)
        j = _bisect_rows(rows, key)
        while j < m:
            r = <tuple>PyList_GET_ITEM(rows, j)
            if _cmp(<bytes>PyTuple_GET_ITEM(r, 0), key) != 0:
                return 0  # a larger key: no more versions
            if _take(r, limit, out):
                return 1
            j += 1
        i += 1  # the key's versions may continue in the next block
    return 0
