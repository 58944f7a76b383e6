"""The k-way merge iterator: one sorted row stream out of many (facade).

Reads and compactions merge the memtable, the immutable memtables, L0 SSTs (newest first) and
the sorted runs -- each already ordered by key then seq descending -- into a single stream in
the same order, the lower-index source winning ties on ``(key, seq)``. See
``shale/merge/_merge_py.py`` for the full contract (dedup, seek, laziness, validation).

This facade picks the compiled twin (``_merge_c``) unless ``SHALE_NO_EXTENSIONS`` is set or it
was not built; both twins have the same API and give identical results. Type checkers always
see the pure-Python twin.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from shale import _accel

__all__ = ["IMPLEMENTATION", "MergeIterator"]

#: The twin in use: ``shale.merge._merge_c`` or ``shale.merge._merge_py``.
IMPLEMENTATION: ModuleType = _accel.load("merge")

if TYPE_CHECKING:
    from shale.merge._merge_py import MergeIterator
else:
    MergeIterator = IMPLEMENTATION.MergeIterator
