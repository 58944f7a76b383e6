"""Write batches, pure-Python twin (the reference; ``_batch_c.pyx`` is the compiled one, same
API, same errors, same results). :mod:`shale.batch` is the facade.

A batch holds, per key, its ops oldest first as ``(kind, value, ttl)``: a ``put`` or ``delete``
replaces every earlier op on its key, ``merge`` operands accumulate (SlateDB's rules).
:meth:`WriteBatch.items` hands them to the commit grouped by key, keys sorted bytewise (the
order rows take in the WAL).
"""

from __future__ import annotations

import operator

from shale.row import MAX_KEY_LEN, MAX_VALUE_LEN, MERGE, TOMBSTONE, VALUE
from shale.write_args import Ttl, check_key, check_value, to_ttl

__all__ = ["WriteBatch"]

_by_key = operator.itemgetter(0)


class WriteBatch:
    """Operations to apply atomically with :meth:`shale.Db.write`."""

    def __init__(self) -> None:
        # key -> list of (kind, value, ttl)
        self._ops: dict[bytes, list[tuple[int, bytes, Ttl | None]]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._ops.values())

    def is_empty(self) -> bool:
        return not self._ops

    def put(self, key: bytes, value: bytes, *, ttl: int | Ttl | None = None) -> WriteBatch:
        """Set ``key`` to ``value`` (replaces earlier ops on the key in this batch)."""
        # check_key / check_value / to_ttl, their common case inlined (the batch hot path)
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_LEN:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_LEN:
            value = check_value(value)
        self._ops[key] = [(VALUE, value, None if ttl is None else to_ttl(ttl))]
        return self

    def delete(self, key: bytes) -> WriteBatch:
        """Delete ``key`` (replaces earlier ops on the key in this batch)."""
        self._ops[check_key(key)] = [(TOMBSTONE, b"", None)]
        return self

    def merge(self, key: bytes, operand: bytes, *, ttl: int | Ttl | None = None) -> WriteBatch:
        """Add a merge operand for ``key`` (operands in one batch accumulate)."""
        k = check_key(key)
        op = (MERGE, check_value(operand), to_ttl(ttl))
        self._ops.setdefault(k, []).append(op)
        return self

    def ops(self, key: bytes) -> list[tuple[int, bytes, Ttl | None]] | None:
        """The ops on ``key`` so far (``None``: none), oldest first."""
        return self._ops.get(key)

    def keys(self) -> list[bytes]:
        """The keys written so far, sorted."""
        return sorted(self._ops)

    def items(self) -> list[tuple[bytes, list[tuple[int, bytes, Ttl | None]]]]:
        """The ops grouped by key, keys sorted (the order rows take in the WAL)."""
        return sorted(self._ops.items(), key=_by_key)  # keys are unique: compare only them
