"""Write batches (facade): several operations applied atomically with one seq and one
create_ts.

Rules (SlateDB's): within a batch a ``put`` or ``delete`` of a key replaces every earlier op on
that key; ``merge`` operands on a key accumulate. Keys must be non-empty bytes of at most 65,535
bytes; values at most 4 GiB - 1. Bad input raises :class:`~shale.errors.InvalidError` at once,
before anything is written.

:class:`WriteBatch` is ``shale._batch_c``'s (compiled) or ``_batch_py``'s (the reference); the
checks of keys, values and TTLs are :mod:`shale.write_args`' (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from shale import _accel
from shale.errors import InvalidError
from shale.write_args import (
    MAX_EXPIRE_TS,
    MAX_TTL_MS,
    Ttl,
    check_key,
    check_value,
    expire_after,
    to_ttl,
)

__all__ = [
    "IMPLEMENTATION",
    "MAX_EXPIRE_TS",
    "MAX_TTL_MS",
    "PendingWriteBatch",
    "Ttl",
    "WriteBatch",
    "check_key",
    "check_value",
    "expire_after",
    "to_ttl",
]

#: The twin in use: ``shale._batch_c`` or ``shale._batch_py``.
IMPLEMENTATION: ModuleType = _accel.load("batch")
if TYPE_CHECKING:
    from shale._batch_py import WriteBatch as _ReferenceWriteBatch

    class WriteBatch(_ReferenceWriteBatch):
        """Operations to apply atomically with :meth:`shale.Db.write` (the twin's class;
        named here so that type checkers call it ``shale.batch.WriteBatch``)."""

else:
    WriteBatch = IMPLEMENTATION.WriteBatch


class PendingWriteBatch(WriteBatch):
    """A :class:`WriteBatch` that writes itself when its ``with`` block ends normally:
    ``with db.write_batch() as wb: wb.put(...)`` (one atomic batch, one seq). Nothing is
    written when the block raises or when the batch is empty. :attr:`handle` is the write's
    :class:`~shale.WriteHandle` after the block (``None`` when nothing was written)."""

    def __init__(self, write: Callable[[WriteBatch, bool], Any], durable: bool) -> None:
        super().__init__()
        if type(durable) is not bool:
            raise InvalidError("durable must be a bool", type=type(durable).__name__)
        self._write = write
        self._durable = durable
        self._done = False
        #: the write's handle once the block ended (``None``: nothing was written)
        self.handle: Any = None

    def __enter__(self) -> PendingWriteBatch:
        if self._done:
            raise InvalidError("this write batch was written already; make a new one")
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._done = True
        if exc_type is None and not self.is_empty():
            self.handle = self._write(self, self._durable)
