"""The compaction kernel: merge -> retention -> SST data blocks for one compaction (sub)range.

This facade re-exports the compiled twin (``_compact_c``, which runs with the GIL released)
when it is built and allowed, else the pure-Python reference (``_compact_py``, read its
docstring); both have the same API and produce identical bytes. The type checker always sees
``_compact_py``. The compaction executor (``shale_compactor.executor``) is its user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale import _accel

__all__ = ["IMPLEMENTATION", "RUN_DONE", "RUN_MORE", "RUN_SPLIT", "Kernel"]

IMPLEMENTATION = _accel.load("compact")

if TYPE_CHECKING:
    from shale.sst._compact_py import RUN_DONE, RUN_MORE, RUN_SPLIT, Kernel
else:
    Kernel = IMPLEMENTATION.Kernel
    RUN_MORE = IMPLEMENTATION.RUN_MORE
    RUN_SPLIT = IMPLEMENTATION.RUN_SPLIT
    RUN_DONE = IMPLEMENTATION.RUN_DONE
