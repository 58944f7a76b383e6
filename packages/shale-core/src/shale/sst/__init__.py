"""SlateDB-compatible SST files: building, reading, compression (FORMAT.md section 3)."""

from shale.sst.builder import (
    BLOCK_SIZES,
    DEFAULT_BLOCK_SIZE,
    WAL_BLOCK_SIZE,
    SstBuilder,
    build_sst,
    shortest_separator,
)
from shale.sst.table import SsTable

__all__ = [
    "BLOCK_SIZES",
    "DEFAULT_BLOCK_SIZE",
    "WAL_BLOCK_SIZE",
    "SsTable",
    "SstBuilder",
    "build_sst",
    "shortest_separator",
]
