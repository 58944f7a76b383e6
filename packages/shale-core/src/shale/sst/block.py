"""Data-block codec: build and decode SlateDB data blocks (FORMAT.md sections 3.4, 3.5, 3.7).

This facade re-exports the compiled twin (``_block_c``) when it is built and allowed, else the
pure-Python reference (``_block_py``); both have the same API and produce identical rows and
bytes. The type checker always sees ``_block_py``.

* :class:`BlockBuilder` -- accumulate rows into one block payload, closing it exactly where
  SlateDB would; ``finish()`` returns ``entries || offsets || count`` and resets the builder.
* :func:`decode_block` -- every row of a payload (after CRC check and decompression); raises
  :class:`~shale.errors.DataError` on any malformation.
* :func:`decode_chunks` -- CRC-check, unframe and decode consecutive stored blocks read in one
  piece (scans and compactions read windows of blocks).
* :func:`encoded_row_size` -- the V2 encoded size of a row, for size estimates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale import _accel

__all__ = [
    "IMPLEMENTATION",
    "RESTART_INTERVAL",
    "BlockBuilder",
    "decode_block",
    "decode_chunks",
    "encoded_row_size",
]

IMPLEMENTATION = _accel.load("block")

if TYPE_CHECKING:
    from shale.sst._block_py import (
        RESTART_INTERVAL,
        BlockBuilder,
        decode_block,
        decode_chunks,
        encoded_row_size,
    )
else:
    RESTART_INTERVAL = IMPLEMENTATION.RESTART_INTERVAL
    BlockBuilder = IMPLEMENTATION.BlockBuilder
    decode_block = IMPLEMENTATION.decode_block
    decode_chunks = IMPLEMENTATION.decode_chunks
    encoded_row_size = IMPLEMENTATION.encoded_row_size
