"""The in-memory row: one version of one key.

Rows travel through the block codec, SST iterators, memtables and the merge iterator as plain
tuples, because tuples are the cheapest object both twins can build and compare::

    (key: bytes, seq: int, kind: int, value: bytes, expire_ts: int | None, create_ts: int | None)

``kind`` is one of :data:`VALUE`, :data:`TOMBSTONE`, :data:`MERGE`. A tombstone's value is
``b""``. Timestamps are milliseconds since the Unix epoch. The sort order of rows in a compacted
SST (and of the merge iterator) is key ascending, then seq descending.

:class:`Row` is a ``NamedTuple`` with the same layout, for readable construction in tests and
public APIs; plain tuples and ``Row`` instances compare equal.
"""

from __future__ import annotations

from typing import NamedTuple

VALUE = 0
TOMBSTONE = 1
MERGE = 2

KIND_NAMES = {VALUE: "value", TOMBSTONE: "tombstone", MERGE: "merge"}

# Tuple indices
KEY = 0
SEQ = 1
KIND = 2
VAL = 3
EXPIRE_TS = 4
CREATE_TS = 5

# Row flag bits in the on-disk codec (FORMAT.md section 3.5)
FLAG_TOMBSTONE = 0x01
FLAG_HAS_EXPIRE_TS = 0x02
FLAG_HAS_CREATE_TS = 0x04
FLAG_MERGE_OPERAND = 0x08

#: Largest key SlateDB accepts (u16 length in the V1 codec).
MAX_KEY_LEN = 65535
#: Largest value SlateDB accepts (u32 length).
MAX_VALUE_LEN = 2**32 - 1

RowTuple = tuple[bytes, int, int, bytes, "int | None", "int | None"]


class Row(NamedTuple):
    """One version of one key (see the module docstring for the tuple layout)."""

    key: bytes
    seq: int
    kind: int = VALUE
    value: bytes = b""
    expire_ts: int | None = None
    create_ts: int | None = None


def sort_key(row: tuple) -> tuple[bytes, int]:  # type: ignore[type-arg]
    """The order of rows in a compacted SST: key ascending, seq descending."""
    return (row[KEY], -row[SEQ])
