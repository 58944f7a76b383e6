"""FlatBuffers codecs for SlateDB's metadata, byte-identical to SlateDB 0.17.0.

- :mod:`shale.fbs.sst_meta` -- the SST footer (``SsTableInfo``), index and stats blocks;
- :mod:`shale.fbs.manifest` -- manifest files, versions 1 and 2;
- :mod:`shale.fbs.compactions` -- ``.compactions`` files, versions 1 and 2.

Every decoder turns malformed input into :class:`shale.errors.DataError` and nothing else
(:mod:`shale.fbs._table` is the bounds-checked reader). Every encoder follows FORMAT.md
section 4's field-add and child-creation orders, so its output equals SlateDB's byte for byte.
"""

from __future__ import annotations

from shale.fbs.compactions import (
    Compaction,
    CompactionContext,
    Compactions,
    Subcompaction,
    decode_compactions,
    encode_compactions,
)
from shale.fbs.manifest import (
    Bound,
    BytesRange,
    Checkpoint,
    CompactedSst,
    ExternalDb,
    Manifest,
    Segment,
    SortedRun,
    SstView,
    decode_manifest,
    encode_manifest,
)
from shale.fbs.sst_meta import (
    BlockMeta,
    BlockStats,
    IndexBuilder,
    SsTableInfo,
    SstStats,
    decode_index,
    decode_sst_info,
    decode_stats,
    encode_index,
    encode_sst_info,
    encode_stats,
)

__all__ = [
    "BlockMeta",
    "BlockStats",
    "Bound",
    "BytesRange",
    "Checkpoint",
    "CompactedSst",
    "Compaction",
    "CompactionContext",
    "Compactions",
    "ExternalDb",
    "IndexBuilder",
    "Manifest",
    "Segment",
    "SortedRun",
    "SsTableInfo",
    "SstStats",
    "SstView",
    "Subcompaction",
    "decode_compactions",
    "decode_index",
    "decode_manifest",
    "decode_sst_info",
    "decode_stats",
    "encode_compactions",
    "encode_index",
    "encode_manifest",
    "encode_sst_info",
    "encode_stats",
]
