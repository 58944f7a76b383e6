# cython: language_level=3
"""Write batches, compiled twin of ``_batch_py.py`` (same API, same errors, same results).

A key's ops are held compactly (the reference holds a list of ``(kind, value, ttl)`` per key):

* a ``put`` without a TTL: its value (``bytes``) alone -- no tuple, no list, nothing the cyclic
  GC tracks;
* one other ``put`` or a ``delete``: its ``(kind, value, ttl)`` tuple;
* ops that include a ``merge``: the list of their tuples, oldest first.

:meth:`WriteBatch.ops`, :meth:`WriteBatch.items` and :meth:`WriteBatch.keys` give the
reference's shapes; the compiled commit reads the compact form through :meth:`columns`
(``_batch_c.pxd``). Keys are sorted with ``memcmp`` (the bytewise order of ``bytes``) in one C
sort. :meth:`WriteBatch.put` checks its common case (``bytes`` key and value within their
limits) in C and calls the reference checks otherwise, so every error is theirs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
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

cdef enum:
    _KEYS = 0  # what _sorted returns: the keys
    _ITEMS = 1  # (key, ops) tuples, ops as lists
    _COLUMNS = 2  # (keys, held forms)


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


cdef inline list _as_list(object held):
    """A key's ops in the reference's shape (a new list but for merges)."""
    if type(held) is bytes:
        return [(_VALUE, held, None)]
    if type(held) is tuple:
        return [held]
    return <list>held


cdef class WriteBatch:
    """Operations to apply atomically with :meth:`shale.Db.write`."""

    def __cinit__(self, *args, **kwargs):
        # here, not in __init__, so a subclass that takes arguments gets its dict too
        self._ops = {}
        self._merges = 0

    def __init__(self):
        pass

    def __reduce__(self):
        # pickles as the reference does: the class, the ops, any instance attributes
        return _restore, (type(self), self._ops, self._merges), getattr(self, "__dict__", None)

    def __len__(self):
        cdef Py_ssize_t n = 0
        for held in self._ops.values():
            n += len(<list>held) if type(held) is list else 1
        return n

    def is_empty(self):
        return not self._ops

    def put(self, key, value, *, ttl=None):
        """Set ``key`` to ``value`` (replaces earlier ops on the key in this batch)."""
        if type(key) is not bytes or not 0 < PyBytes_GET_SIZE(key) <= _MAX_KEY_LEN:
            key = check_key(key)
        if type(value) is not bytes or PyBytes_GET_SIZE(value) > _MAX_VALUE_LEN:
            value = check_value(value)
        if ttl is None:
            PyDict_SetItem(self._ops, key, value)
        else:
            PyDict_SetItem(self._ops, key, (_VALUE, value, to_ttl(ttl)))
        return self

    def delete(self, key):
        """Delete ``key`` (replaces earlier ops on the key in this batch)."""
        PyDict_SetItem(self._ops, check_key(key), _DELETE)
        return self

    def merge(self, key, operand, *, ttl=None):
        """Add a merge operand for ``key`` (operands in one batch accumulate)."""
        k = check_key(key)
        op = (_MERGE, check_value(operand), to_ttl(ttl))
        cdef PyObject* held = PyDict_GetItem(self._ops, k)
        if held == NULL:
            PyDict_SetItem(self._ops, k, [op])
        elif type(<object>held) is list:
            (<list>held).append(op)
        else:
            PyDict_SetItem(self._ops, k, _as_list(<object>held) + [op])
        self._merges += 1
        return self

    def ops(self, key):
        """The ops on ``key`` so far (``None``: none), oldest first."""
        held = self._ops.get(key)
        return None if held is None else _as_list(held)

    def keys(self):
        """The keys written so far, sorted."""
        return self._sorted(_KEYS)

    def items(self):
        """The ops grouped by key, keys sorted (the order rows take in the WAL)."""
        return self._sorted(_ITEMS)

    cdef tuple columns(self):
        """``(keys, held)``: the keys sorted and, in the same order, each key's ops as held
        (a value, an op tuple or a list of op tuples; see the module docstring)."""
        return self._sorted(_COLUMNS)

    cdef object _sorted(self, int mode):
        """The keys sorted bytewise in C, shaped as ``mode`` asks."""
        cdef dict d = self._ops
        cdef Py_ssize_t n = len(d), i = 0, pos = 0
        cdef PyObject* k
        cdef PyObject* v
        cdef list out, held
        cdef object item
        cdef _Entry* entries
        if n == 0:
            return ([], []) if mode == _COLUMNS else []
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
            if mode == _COLUMNS:
                held = PyList_New(n)
            for i in range(n):
                key = <object>entries[i].key
                item = (key, _as_list(<object>entries[i].ops)) if mode == _ITEMS else key
                Py_INCREF(item)
                PyList_SET_ITEM(out, i, item)
                if mode == _COLUMNS:
                    item = <object>entries[i].ops
                    Py_INCREF(item)
                    PyList_SET_ITEM(held, i, item)
        finally:
            free(entries)
        return (out, held) if mode == _COLUMNS else out


def _restore(cls, dict ops, Py_ssize_t merges):
    """A :class:`WriteBatch` (or subclass) holding ``ops``: :meth:`WriteBatch.__reduce__`."""
    cdef WriteBatch batch = cls.__new__(cls)
    batch._ops = ops
    batch._merges = merges
    return batch
