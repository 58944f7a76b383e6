"""The block cache, pure-Python twin of ``_cache_c.pyx`` (the reference; :mod:`shale.cache`
describes the contract): an ``OrderedDict`` LRU charged in bytes, one lock per call."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from shale.errors import InvalidError

__all__ = ["BlockCache"]


class BlockCache:
    """A thread-safe LRU cache whose entries are charged in bytes against ``capacity_bytes``.

    :param capacity_bytes: the byte budget; ``0`` disables caching.
    :raises InvalidError: ``capacity_bytes`` is negative or not an integer.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if not isinstance(capacity_bytes, int) or isinstance(capacity_bytes, bool):
            raise InvalidError("cache capacity must be an integer", capacity_bytes=capacity_bytes)
        if capacity_bytes < 0:
            raise InvalidError("cache capacity must be >= 0", capacity_bytes=capacity_bytes)
        self._capacity = capacity_bytes
        self._lock = threading.Lock()
        # key -> (value, charge); the first entry is the least recently used
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._size = 0
        self._hits = 0
        self._misses = 0
        self._inserts = 0
        self._evictions = 0

    @property
    def capacity_bytes(self) -> int:
        """The byte budget given at construction."""
        return self._capacity

    def get(self, key: Hashable) -> object | None:
        """The value cached under ``key`` (now the most recently used), or ``None`` on a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def put(self, key: Hashable, value: object, charge: int) -> None:
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
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            if charge > self._capacity:
                return
            self._entries[key] = (value, charge)
            self._size += charge
            self._inserts += 1
            entries = self._entries
            while self._size > self._capacity:
                _, (_, evicted_charge) = entries.popitem(last=False)
                self._size -= evicted_charge
                self._evictions += 1

    def remove(self, key: Hashable) -> None:
        """Drop the entry of ``key`` if there is one (not counted as an eviction)."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]

    def keys(self) -> list[Hashable]:
        """The cached keys, least recently used first (a snapshot)."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Drop every entry. The hit, miss, insert and eviction counters are kept."""
        with self._lock:
            self._entries.clear()
            self._size = 0

    def stats(self) -> dict[str, int]:
        """A consistent snapshot of the counters.

        :return: ``hits``, ``misses``, ``inserts`` (successful puts, replacements included),
            ``evictions`` (entries dropped to make room), ``size_bytes`` (sum of the cached
            charges), ``entries`` and ``capacity_bytes``.
        """
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "inserts": self._inserts,
                "evictions": self._evictions,
                "size_bytes": self._size,
                "entries": len(self._entries),
                "capacity_bytes": self._capacity,
            }

    def __len__(self) -> int:
        """The number of cached entries."""
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"BlockCache(capacity_bytes={s['capacity_bytes']}, size_bytes={s['size_bytes']}, "
            f"entries={s['entries']})"
        )
