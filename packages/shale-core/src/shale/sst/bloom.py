"""SlateDB-compatible bloom filters (FORMAT.md §3.9): SipHash-1-3 key hashes, build and probe.

This facade picks the compiled twin ``shale.sst._bloom_c`` when it is built and allowed, else the
pure-Python reference ``shale.sst._bloom_py`` (see :mod:`shale._accel`). Both give identical results
and bytes; the reference module documents the exact algorithm. The type checker sees the
reference twin.

Filter *policies* (names, the composite filter block, plugins) live in :mod:`shale.sst.filters`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale import _accel

#: The twin in use: ``shale.sst._bloom_c`` or ``shale.sst._bloom_py``.
IMPLEMENTATION = _accel.load("bloom")

if TYPE_CHECKING:
    from shale.sst._bloom_py import (
        BloomFilter,
        build_filter,
        filter_may_contain,
        hash_keys,
        num_probes_for,
        siphash13,
    )
else:
    BloomFilter = IMPLEMENTATION.BloomFilter
    build_filter = IMPLEMENTATION.build_filter
    filter_may_contain = IMPLEMENTATION.filter_may_contain
    hash_keys = IMPLEMENTATION.hash_keys
    num_probes_for = IMPLEMENTATION.num_probes_for
    siphash13 = IMPLEMENTATION.siphash13

__all__ = [
    "IMPLEMENTATION",
    "BloomFilter",
    "build_filter",
    "filter_may_contain",
    "hash_keys",
    "num_probes_for",
    "siphash13",
]
