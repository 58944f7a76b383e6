"""The data section of an SST being built (rows -> framed data blocks, index entries, stats).

This facade re-exports the compiled twin (``_datawriter_c``) when it is built and allowed, else
the pure-Python reference (``_datawriter_py``); both have the same API and produce identical
bytes. The type checker always sees ``_datawriter_py``. :class:`shale.sst.builder.SstBuilder`
is its user; the compaction executor feeds it through :meth:`DataWriter.add_rows`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale import _accel

__all__ = ["IMPLEMENTATION", "DataWriter", "shortest_separator"]

IMPLEMENTATION = _accel.load("datawriter")

if TYPE_CHECKING:
    from shale.sst._datawriter_py import DataWriter, shortest_separator
else:
    DataWriter = IMPLEMENTATION.DataWriter
    shortest_separator = IMPLEMENTATION.shortest_separator
