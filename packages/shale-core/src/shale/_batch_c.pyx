# cython: language_level=3
"""Write batches, compiled twin of ``_batch_py.py`` (same API, same errors, same results).

The ops are held as in the reference (a dict: key -> list of ``(kind, value, ttl)``, oldest
first); :meth:`WriteBatch.put` checks its common case (``bytes`` key and value within their
limits, no TTL) in C and calls the reference checks otherwise, so every error is theirs.
:meth:`WriteBatch.items` sorts the keys with ``memcmp`` (the bytewise order of ``bytes``) in
one C sort instead of comparing Python objects.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next, PyDict_SetItem
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcmp

from shale.row import MAX_KEY_LEN, MAX_VALUE_LEN, MERGE, TOMBSTONE, VALUE
from shale.write_args import check_key, check_value, to_ttl

__all__ = ["WriteBatch"]

cdef Py_ssize_t _MAX_KEY_LEN = MAX_KEY_LEN
cdef Py_ssize_t _MAX_VALUE_LEN = MAX_VALUE_LEN
cdef object _VALUE = VALUE
cdef object _MERGE = MERGE
cdef tuple _DELETE = (TOMBSTONE, b"", None)


cdef struct _Entry:
    const char* data
    Py_ssize_t size
    PyObject* key
    PyObject* ops


cdef int _by_key(const void* a, const void* b) noexcept nogil:
    """Bytewise order of two entries' keys (``bytes.__lt__``: ``memcmp``, then length)."""
    cdef const _Entry* x = <const _Entry*>a
    cdef const _Entry* y = <const _Entry*>b
    cdef Py_ssize_t n = x.size if x.size < y.size else y.size
    cdef int c = memcmp(x.data, y.data, <size_t>n)
    if c != 0:
        return c
    return (x.size > y.size) - (x.size < y.size)


cdef class WriteBatch:
    """Operations to apply atomically with :meth:`shale.Db.write`."""

    cdef dict _ops

    def __cinit__(self, *args, **kwargs):
        # here, not in __init__, so a subclass that takes arguments gets its dict too
        self._ops = {}

    def __init__(self):
        pass

    def __len__(self):
        cdef Py_ssize_t n = 0
        for ops in self._ops.values():
            n += len(<list>ops)
        return n

    def __reduce__(self):
        # pickles as the reference does: the class, the ops, any instance attributes
        return _restore, (type(self), self._ops), getattr(self, "__dict__", None)

    def is_empty(self):
        return not self._ops

    def put(self, key, value, *, ttl=None):
        """Set ``key`` to ``value`` (replaces earlier ops on the key in this batch)."""
        if type(key) is not bytes or not 0 < PyBytes_GET_SIZE(key) <= _MAX_KEY_LEN:
            key = check_key(key)
        if type(value) is not bytes or PyBytes_GET_SIZE(value) > _MAX_VALUE_LEN:
            value = check_value(value)
        if ttl is not None:
            ttl = to_ttl(ttl)
        PyDict_SetItem(self._ops, key, [(_VALUE, value, ttl)])
        return self

    def delete(self, key):
        """Delete ``key`` (replaces earlier ops on the key in this batch)."""
        PyDict_SetItem(self._ops, check_key(key), [_DELETE])
        return self

    def merge(self, key, operand, *, ttl=None):
        """Add a merge operand for ``key`` (operands in one batch accumulate)."""
        k = check_key(key)
        op = (_MERGE, check_value(operand), to_ttl(ttl))
        ops = self._ops.get(k)
        if ops is None:
            PyDict_SetItem(self._ops, k, [op])
        else:
            (<list>ops).append(op)
        return self

    def ops(self, key):
        """The ops on ``key`` so far (``None``: none), oldest first."""
        return self._ops.get(key)

    def keys(self):
        """The keys written so far, sorted."""
        return self._sorted(False)

    def items(self):
        """The ops grouped by key, keys sorted (the order rows take in the WAL)."""
        return self._sorted(True)

    cdef list _sorted(self, bint pairs):
        """The keys (``pairs``: ``(key, ops)`` tuples), keys sorted bytewise in C."""
        cdef dict d = self._ops
        cdef Py_ssize_t n = len(d), i = 0, pos = 0
        cdef PyObject* k
        cdef PyObject* v
        cdef list out
        cdef object item
        cdef _Entry* entries
        if n == 0:
            return []
        entries = <_Entry*>malloc(n * sizeof(_Entry))
        if entries == NULL:
            raise MemoryError()
        try:
            while PyDict_Next(d, &pos, &k, &v):
                entries[i].data = PyBytes_AS_STRING(<object>k)
                entries[i].size = PyBytes_GET_SIZE(<object>k)
                entries[i].key = k
                entries[i].ops = v
                i += 1
            qsort(entries, <size_t>n, sizeof(_Entry), _by_key)
            out = PyList_New(n)
            for i in range(n):
                if pairs:
                    item = (<object>entries[i].key, <object>entries[i].ops)
                else:
                    item = <object>entries[i].key
                Py_INCREF(item)
                PyList_SET_ITEM(out, i, item)
        finally:
            free(entries)
        return out


def _restore(cls, dict ops):
    """A :class:`WriteBatch` (or subclass) holding ``ops``: :meth:`WriteBatch.__reduce__`."""
    cdef WriteBatch batch = cls.__new__(cls)
    batch._ops = ops
    return batch
