# cython: language_level=3
"""The block cache, compiled twin of ``_cache_py.py`` (same API, same LRU order, same stats;
:mod:`shale.cache` describes the contract).

The mutators (``put``, ``remove``, ``clear``) hold the lock, as in the pure twin. ``get`` does
not: a dict probe of the ``OrderedDict``, ``move_to_end`` and a C counter run no Python bytecode
(keys are tuples of str/int or ints, hashed in C), so under the GIL no other thread runs in the
middle of it. A mutator that is interrupted (an evicted value's finalizer may run Python code)
leaves the dict consistent at every step, and a key it removed between our probe and our
``move_to_end`` only makes the touch a no-op. The counters are C integers changed under the GIL:
exact.
"""

import threading
from collections import OrderedDict

from cpython.dict cimport PyDict_GetItemWithError
from cpython.ref cimport PyObject

from shale.errors import InvalidError

__all__ = ["BlockCache"]


cdef class BlockCache:
    """A thread-safe LRU cache whose entries are charged in bytes against ``capacity_bytes``.

    :param capacity_bytes: the byte budget; ``0`` disables caching.
    :raises InvalidError: ``capacity_bytes`` is negative or not an integer.
    """

    cdef object _capacity_obj
    cdef long long _capacity
    cdef object _lock
    cdef object _entries  # OrderedDict: key -> (value, charge); the first is the LRU
    cdef object _touch  # _entries.move_to_end
    cdef long long _size
    cdef long long _hits
    cdef long long _misses
    cdef long long _inserts
    cdef long long _evictions
    cdef object __weakref__

    def __init__(self, capacity_bytes):
        if not isinstance(capacity_bytes, int) or isinstance(capacity_bytes, bool):
            raise InvalidError("cache capacity must be an integer", capacity_bytes=capacity_bytes)
        if capacity_bytes < 0:
            raise InvalidError("cache capacity must be >= 0", capacity_bytes=capacity_bytes)
        self._capacity_obj = capacity_bytes
        # a budget beyond 2**62 bytes is unbounded in practice
        self._capacity = min(capacity_bytes, 1 << 62)
        self._lock = threading.Lock()
        self._entries = OrderedDict()
        self._touch = self._entries.move_to_end
        self._size = 0
        self._hits = 0
        self._misses = 0
        self._inserts = 0
        self._evictions = 0

    @property
    def capacity_bytes(self):
        """The byte budget given at construction."""
        return self._capacity_obj

    def get(self, key):
        """The value cached under ``key`` (now the most recently used), or ``None`` on a miss."""
        cdef PyObject* entry = PyDict_GetItemWithError(self._entries, key)
        if entry == NULL:
            self._misses += 1
            return None
        value = (<tuple>entry)[0]  # a new reference before anything else can run
        try:
            self._touch(key)
        except KeyError:  # removed by a mutator in between: still a hit on what we read
            pass
        self._hits += 1
        return value

    def put(self, key, value, charge):
        """Cache ``value`` under ``key``, accounted as ``charge`` bytes.

        Replaces any entry of ``key``, then evicts least recently used entries until the budget
        holds. A value whose charge exceeds the capacity is not cached (and any older entry of
        ``key`` is dropped); with capacity 0 the call does nothing.

        :raises InvalidError: ``charge`` is negative or not an integer, or ``value`` is ``None``.
        """
        if not isinstance(charge, int) or isinstance(charge, bool) or charge < 0:
            raise InvalidError("cache charge must be an integer >= 0", charge=charge)
        if value is None:
            raise InvalidError("None cannot be cached (get returns None for a miss)")
        if self._capacity == 0:
            return
        cdef long long c
        entries = self._entries
        with self._lock:
            old = entries.pop(key, None)
            if old is not None:
                self._size -= <long long>(<tuple>old)[1]
            if charge > self._capacity:
                return
            c = charge
            entries[key] = (value, c)
            self._size += c
            self._inserts += 1
            while self._size > self._capacity:
                _, evicted = entries.popitem(last=False)
                self._size -= <long long>(<tuple>evicted)[1]
                self._evictions += 1

    def remove(self, key):
        """Drop the entry of ``key`` if there is one (not counted as an eviction)."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= <long long>(<tuple>old)[1]

    def keys(self):
        """The cached keys, least recently used first (a snapshot)."""
        with self._lock:
            return list(self._entries)

    def clear(self):
        """Drop every entry. The hit, miss, insert and eviction counters are kept."""
        with self._lock:
            self._entries.clear()
            self._size = 0

    def stats(self):
        """A consistent snapshot of the counters (see the pure twin)."""
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "inserts": self._inserts,
                "evictions": self._evictions,
                "size_bytes": self._size,
                "entries": len(self._entries),
                "capacity_bytes": self._capacity_obj,
            }

    def __len__(self):
        """The number of cached entries."""
        return len(self._entries)

    def __repr__(self):
        s = self.stats()
        return (
            f"BlockCache(capacity_bytes={s['capacity_bytes']}, size_bytes={s['size_bytes']}, "
            f"entries={s['entries']})"
        )
