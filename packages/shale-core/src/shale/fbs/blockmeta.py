"""SST index and stats FlatBuffers (FORMAT.md sections 3.8 and 3.10): the accelerated codecs.

This facade re-exports the compiled twin (``_blockmeta_c``) when it is built and allowed, else
the pure-Python reference (``_blockmeta_py``, whose docstring describes the byte layout); both
have the same API and write the same bytes, byte-identical to SlateDB's. The type checker always
sees ``_blockmeta_py``. Import these names from :mod:`shale.fbs.sst_meta`, which re-exports
them next to the SST footer codec.

* :class:`IndexBuilder` -- ``add_block(offset, first_key)`` per data block, then ``finish()``.
* :func:`encode_index` / :func:`decode_index` -- ``SsTableIndex`` <-> ``list[BlockMeta]``.
* :func:`encode_stats` / :func:`decode_stats` -- ``SstStats`` (with its ``BlockStats``).

The record types :class:`BlockMeta`, :class:`BlockStats` and :class:`SstStats` are defined once,
in ``_blockmeta_py``; the compiled twin uses the same classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale import _accel

__all__ = [
    "IMPLEMENTATION",
    "BlockMeta",
    "BlockStats",
    "IndexBuilder",
    "SstStats",
    "decode_index",
    "decode_stats",
    "encode_index",
    "encode_stats",
]

IMPLEMENTATION = _accel.load("blockmeta")

if TYPE_CHECKING:
    from shale.fbs._blockmeta_py import (
        BlockMeta,
        BlockStats,
        IndexBuilder,
        SstStats,
        decode_index,
        decode_stats,
        encode_index,
        encode_stats,
    )
else:
    BlockMeta = IMPLEMENTATION.BlockMeta
    BlockStats = IMPLEMENTATION.BlockStats
    IndexBuilder = IMPLEMENTATION.IndexBuilder
    SstStats = IMPLEMENTATION.SstStats
    decode_index = IMPLEMENTATION.decode_index
    decode_stats = IMPLEMENTATION.decode_stats
    encode_index = IMPLEMENTATION.encode_index
    encode_stats = IMPLEMENTATION.encode_stats
