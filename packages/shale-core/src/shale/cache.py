"""An in-memory LRU cache bounded by a byte budget, for decoded SST blocks and metadata.

SST readers (:class:`shale.sst.SsTable`) keep decoded data blocks here, and the table store keeps
index, filter and stats objects, so a hot block is decoded once. This is shale's counterpart of
SlateDB's in-memory ``DbCache`` (FEATURES.md §1.6); the caller chooses the keys, and SlateDB's
rule that keys are scoped per database instance is the caller's job (``SsTable`` keys blocks by
``(cache_id, block_index)``).

Invariants and why:

* **The budget is in bytes the caller declares.** Python cannot cheaply measure the memory of a
  decoded object, so :meth:`BlockCache.put` takes a ``charge``: the caller's estimate (the SST
  reader charges ``len(payload) + 64 * len(rows)``). After every call, ``size_bytes`` (the sum of
  the charges of the cached entries) is ``<= capacity_bytes``.
* **Least recently used goes first.** A hit and a put both make an entry the most recently used;
  eviction removes least recently used entries until the new entry fits.
* **An item larger than the whole capacity is not cached**, and it does not flush the cache to
  make room. If its key was cached, the old entry is dropped, so a later ``get`` never returns a
  value older than the last ``put`` of that key.
* **Capacity 0 disables the cache**: every ``get`` misses (and is counted), every ``put`` is
  ignored.
* ``None`` cannot be cached, because ``get`` returns ``None`` for a miss.

Thread safety: the cache may be shared by any number of threads; each call is atomic and the
stats are exact. The pure twin (``_cache_py``) takes one internal lock in every method; the
compiled twin (``_cache_c``) takes it in the mutators only: its ``get`` (a dict probe, an
``OrderedDict.move_to_end`` and a counter) runs no Python bytecode, so under the GIL it is atomic
without the lock, and a point lookup's two probes (metadata, data block) stay cheap. Values are
returned as stored, not copied: cache only objects nobody mutates (decoded rows are lists the
readers treat as read-only).

One lock rather than shards: under the GIL the lock is held only for one ``OrderedDict``
operation, and in a micro-benchmark (2 cores, 1-4 threads doing get-then-put-on-miss) eight
shards were not consistently faster (both 0.4-1.5 M ops/s, within run-to-run noise), while
sharding would make the LRU order and the byte budget per-shard approximations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale import _accel

__all__ = ["IMPLEMENTATION", "BlockCache"]

#: The twin in use: ``shale._cache_c`` or ``shale._cache_py`` (same API, same results).
IMPLEMENTATION = _accel.load("cache")

if TYPE_CHECKING:
    from shale._cache_py import BlockCache
else:
    BlockCache = IMPLEMENTATION.BlockCache
