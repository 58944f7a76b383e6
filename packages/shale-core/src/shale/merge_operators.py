"""Merge operators, and how one key's versions resolve to a value (FORMAT.md §11.3).

A *merge operand* (row kind :data:`~shale.row.MERGE`) records a change to a key's value without
reading it first; a *merge operator* later folds the operands into the value: on reads, on
memtable flush and in compaction. This module holds the operator interface
(:class:`MergeOperator`), the call wrapper every caller uses (:func:`merge_all`), the built-in
operators, and :func:`resolve_versions`, the read-side rule that turns one key's versions into
the visible value. It is SlateDB's ``merge_operator.rs`` (FEATURES.md §1.8).

Invariants and why:

* **Operators must be associative**: ``merge(merge(a, b), c) == merge(a, merge(b, c))`` for
  every ``a``, ``b``, ``c``, where merging ``None`` with an operand gives the operand's value as
  a first value. Flush and compaction merge *runs* of operands (only operands with the same
  ``expire_ts``, and never across a snapshot's retention boundary) into one partial operand,
  and reads later merge those partial results with other operands and the base; the visible
  value must not depend on which runs were pre-merged. Operands are always given oldest to
  newest, so operators need not be commutative.
* **Bad operands are rejected at write time.** An operator may define ``validate(operand)``
  (see :class:`MergeOperator`); ``Db.merge`` and ``Db.write`` call it through
  :func:`validate_operand` before anything is written, so an operand the operator cannot
  interpret never reaches the store (``"merge operand rejected"``, an
  :class:`~shale.errors.InvalidError`). A merge on a database without an operator is rejected
  the same way (SlateDB accepts both and fails on every later read and compaction of the key).
* **A merge never fails silently.** Any exception raised by an operator, built-in or a plugin's,
  becomes ``"merge operator failed"`` carrying the operator's ``name`` and the ``key``, chained
  from the original. A result that is not bytes is an error too. The kind depends on where the
  operands came from: operands read back from storage that the operator cannot merge are
  persisted state gone bad (written by another tool or an older operator), a
  :class:`~shale.errors.DataError` for that key only (:func:`resolve_versions`, and
  :func:`merge_all` by default); operands of the write being made are bad input, an
  :class:`~shale.errors.InvalidError` (``merge_all(..., error=InvalidError)``; SlateDB reports
  every ``MergeOperatorError`` as ``Invalid``). Compaction never fails on such a key: it
  passes the operands through unmerged (``shale_compactor.retention``).
* **Merging nothing is an error** (SlateDB's ``EmptyBatch``): :func:`merge_all` needs at least
  one operand.
* **Operands without an operator are an error** (SlateDB's ``MergeOperatorMissing``, also
  ``Invalid``): :func:`resolve_versions` raises rather than guess at a value.
* **Resolution** (:func:`resolve_versions`): walk one key's versions from the newest, collecting
  operands until a value or tombstone (the *base*); the result is the operands folded over the
  base value (or over ``None``), oldest first. A tombstone discards every operand older than it.
  With expiry applied, an expired value acts as a tombstone and an expired operand is skipped,
  which is exactly what flush and compaction later make of them (an expired value is rewritten
  as a tombstone without ``expire_ts``; an expired operand is dropped), so a key reads the same
  before and after compaction.

The built-in operators are offered by name through the ``shale_merge_operator`` hook; this module
is registered by :mod:`shale.plugins` as the built-in plugin ``"shale.merge_operators"``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import shale
from shale.errors import DataError, InvalidError, ShaleError
from shale.row import CREATE_TS as _CREATE_TS
from shale.row import EXPIRE_TS, KIND, MERGE, SEQ, TOMBSTONE, VAL, VALUE
from shale.row import KEY as _KEY

__all__ = [
    "BUILTIN_OPERATORS",
    "BatchMergeOperator",
    "ConcatMergeOperator",
    "CounterMergeOperator",
    "MergeOperator",
    "Resolved",
    "merge_all",
    "resolve_versions",
    "shale_merge_operator",
    "validate_operand",
]

log = logging.getLogger(__name__)

#: What :func:`resolve_versions` returns: ``(value, seq, create_ts, expire_ts)``.
Resolved = tuple[bytes, int, "int | None", "int | None"]

#: Keys longer than this are shortened in error messages.
_KEY_DETAIL_LEN = 64


@runtime_checkable
class MergeOperator(Protocol):
    """User-supplied merge logic: folds merge operands into a key's value.

    Implementations must be **associative** (see the module docstring) and deterministic, must
    not keep per-call state (one instance serves every key, possibly from several threads), and
    should raise an exception, never return garbage, on an operand they cannot interpret.

    An implementation may also define ``merge_batch`` (see :class:`BatchMergeOperator`) to fold
    many operands in one call; :func:`merge_all` prefers it when present.

    It may also define ``validate(operand: bytes) -> None``, which raises (any exception) when
    ``operand`` is not one this operator can merge -- for example a ``counter`` operand that is
    not 8 bytes. Writes call it for every merge operand before anything is written (see
    :func:`validate_operand`) and reject the whole write with
    :class:`~shale.errors.InvalidError`. It must accept every operand :meth:`merge` can merge,
    must not depend on the key's current value, and must be cheap (it runs on the write path).
    Without it, an operand the operator cannot merge is stored and every later read of the key
    raises :class:`~shale.errors.DataError`.
    """

    #: The operator's name: the settings refer to it, and errors carry it.
    name: str

    def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
        """Merge one operand into the value so far.

        :param key: the key being merged.
        :param existing: the value so far, or ``None`` when there is no base value yet (the key
            was absent or deleted, or only older operands are being pre-merged).
        :param operand: the newer operand.
        :return: the merged value.
        """
        ...


@runtime_checkable
class BatchMergeOperator(MergeOperator, Protocol):
    """A :class:`MergeOperator` that also folds many operands at once.

    ``merge_batch(key, existing, operands)`` must return what folding :meth:`merge` over
    ``operands`` from ``existing`` would; it exists to be faster (a counter sums all at once).
    """

    def merge_batch(self, key: bytes, existing: bytes | None, operands: list[bytes]) -> bytes:
        """Merge ``operands`` (oldest first, at least one) into ``existing``.

        :param key: the key being merged.
        :param existing: the value so far, or ``None``.
        :param operands: the operands, oldest to newest; never empty.
        :return: the merged value.
        """
        ...


def _op_name(op: object) -> str:
    name = getattr(op, "name", None)
    return name if isinstance(name, str) else type(op).__name__


def _key_detail(key: bytes) -> bytes:
    return key if len(key) <= _KEY_DETAIL_LEN else key[:_KEY_DETAIL_LEN] + b"..."


def _as_bytes(result: object, name: str, key: bytes) -> bytes:
    if type(result) is bytes:
        return result
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    raise InvalidError(
        "merge operator returned a non-bytes value",
        name=name,
        key=_key_detail(key),
        type=type(result).__name__,
    )


def validate_operand(op: MergeOperator, key: bytes, operand: bytes) -> None:
    """Check a merge operand with the operator's optional ``validate`` before it is written.

    :param op: the merge operator (without a ``validate`` every operand is accepted).
    :param key: the key being written (quoted in the error).
    :param operand: the operand.
    :raises InvalidError: ``"merge operand rejected"`` naming the operator and the key, chained
        from the exception ``validate`` raised.
    """
    validate = getattr(op, "validate", None)
    if validate is None:
        return
    try:
        validate(operand)
    except Exception as exc:
        raise InvalidError(
            "merge operand rejected",
            name=_op_name(op),
            key=_key_detail(key),
            error=f"{type(exc).__name__}: {exc}",
        ) from exc


def merge_all(
    op: MergeOperator | None,
    key: bytes,
    existing: bytes | None,
    operands_oldest_first: Sequence[bytes],
    *,
    error: type[ShaleError] = DataError,
) -> bytes:
    """Fold ``operands_oldest_first`` into ``existing`` with ``op``.

    Uses ``op.merge_batch`` when the operator defines it, else calls ``op.merge`` once per
    operand, oldest first.

    :param op: the merge operator.
    :param key: the key being merged (passed to the operator; quoted in errors).
    :param existing: the base value, or ``None`` when there is none.
    :param operands_oldest_first: the operands, oldest to newest.
    :param error: the kind raised when the operator fails: :class:`~shale.errors.DataError`
        (the default) for operands read from storage, :class:`~shale.errors.InvalidError` for
        the operands of a write being made.
    :return: the merged value.
    :raises InvalidError: ``op`` is ``None`` (``"merge operator missing"``) or there are no
        operands (``"merge batch is empty"``, SlateDB's ``EmptyBatch``).
    :raises DataError: (or ``error``) the operator raised or returned a non-bytes value
        (``"merge operator failed"``, chained from the operator's exception).
    """
    if op is None:
        raise InvalidError("merge operator missing", key=_key_detail(key))
    name = _op_name(op)
    if not operands_oldest_first:
        raise InvalidError("merge batch is empty", name=name, key=_key_detail(key))
    batch = getattr(op, "merge_batch", None)
    try:
        if callable(batch):
            return _as_bytes(batch(key, existing, list(operands_oldest_first)), name, key)
        merge = op.merge
        value = existing
        for operand in operands_oldest_first:
            value = _as_bytes(merge(key, value, operand), name, key)
        assert value is not None  # at least one operand was merged
        return value
    except Exception as exc:
        raise error(
            "merge operator failed",
            name=name,
            key=_key_detail(key),
            error=f"{type(exc).__name__}: {exc}",
        ) from exc


def resolve_versions(
    versions_newest_first: Sequence[tuple],  # type: ignore[type-arg]
    op: MergeOperator | None,
    *,
    now_ms: int | None = None,
    hide_expired: bool = True,
) -> Resolved | None:
    """The visible value of one key, from its versions (FORMAT.md §11.3).

    :param versions_newest_first: the key's row tuples (:mod:`shale.row`), seq descending,
        already filtered to the versions the reader may see (snapshot, durability). Only rows
        down to the first value or tombstone are examined.
    :param op: the merge operator, or ``None`` when none is configured.
    :param now_ms: the current time in ms since the Unix epoch; ``None`` applies no expiry.
    :param hide_expired: with ``now_ms`` given, treat a row whose ``expire_ts <= now_ms`` as
        expired: an expired value or tombstone is a tombstone base (it adds its ``create_ts`` but
        not its ``expire_ts``), an expired merge operand is skipped. ``False`` keeps expired rows
        as they are (SlateDB 0.12.1 reads do not compare ``expire_ts`` with the clock).
    :return: ``(value, seq, create_ts, expire_ts)``, or ``None`` when the key is absent. For a
        plain value these are the row's own. For a merged result, ``seq`` is the newest
        operand's, ``create_ts`` the maximum and ``expire_ts`` the minimum over the merged
        operands and the base (``None`` when no merged row has one).
    :raises InvalidError: operands must be merged but ``op`` is ``None``
        (``"merge operator missing"``).
    :raises DataError: the operator failed on the stored operands (see :func:`merge_all`), or
        a row has an unknown kind.
    """
    check_expiry = hide_expired and now_ms is not None
    operands: list[bytes] = []  # newest first
    seq = 0
    create_ts: int | None = None
    expire_ts: int | None = None
    base: bytes | None = None
    key = b""
    for row in versions_newest_first:
        kind = row[KIND]
        row_expire = row[EXPIRE_TS]
        expired = check_expiry and row_expire is not None and row_expire <= now_ms
        if kind == MERGE:
            if expired:
                continue
            if not operands:
                seq = row[SEQ]
                key = row[_KEY]
            operands.append(row[VAL])
        elif kind == VALUE or kind == TOMBSTONE:
            if not operands:
                if kind == TOMBSTONE or expired:
                    return None
                return (row[VAL], row[SEQ], row[_CREATE_TS], row_expire)
            if kind == VALUE and not expired:
                base = row[VAL]
            if expired:
                row_expire = None  # what compaction leaves of an expired base: a tombstone
        else:
            raise DataError("unknown row kind", kind=kind, seq=row[SEQ])
        row_create = row[_CREATE_TS]
        if row_create is not None and (create_ts is None or row_create > create_ts):
            create_ts = row_create
        if row_expire is not None and (expire_ts is None or row_expire < expire_ts):
            expire_ts = row_expire
        if kind != MERGE:
            break
    if not operands:
        return None
    if op is None:
        raise InvalidError("merge operator missing", key=_key_detail(key))
    operands.reverse()
    return (merge_all(op, key, base, operands), seq, create_ts, expire_ts)


# ----------------------------------------------------------------------------------------------
# Built-in operators.


class ConcatMergeOperator:
    """``"concat"``: appends each operand to the value (a missing value is ``b""``).

    Byte-string concatenation is associative, so any pre-merging gives the same value.
    """

    name = "concat"

    def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
        """``existing + operand`` (``existing`` ``None`` counts as ``b""``)."""
        return operand if existing is None else existing + operand

    def merge_batch(self, key: bytes, existing: bytes | None, operands: list[bytes]) -> bytes:
        """``existing`` followed by every operand, joined once."""
        if existing is None:
            return b"".join(operands)
        return b"".join([existing, *operands])

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return "ConcatMergeOperator()"


_I64 = struct.Struct("<q")
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


class CounterMergeOperator:
    """``"counter"``: values and operands are signed 64-bit little-endian integers, added.

    A missing value counts as 0. An operand that is not exactly 8 bytes is rejected when it is
    written (:meth:`validate`); one found in storage (written by another tool) makes reads of
    that key raise :class:`~shale.errors.DataError`. Sums **wrap around** in two's complement
    like Rust's ``i64::wrapping_add``: that keeps the operator associative for every grouping of
    operands, which flushes and compactions rely on when they pre-merge runs of operands.

    Use :meth:`encode` and :meth:`decode` to convert between ``int`` and the stored bytes.
    """

    name = "counter"

    @staticmethod
    def encode(n: int) -> bytes:
        """The 8-byte little-endian two's-complement form of ``n``.

        :raises InvalidError: ``n`` is outside the signed 64-bit range.
        """
        if not _I64_MIN <= n <= _I64_MAX:
            raise InvalidError("counter value out of the signed 64-bit range", value=n)
        return _I64.pack(n)

    @staticmethod
    def decode(data: bytes) -> int:
        """The integer stored in ``data`` (exactly 8 bytes, signed little-endian).

        :raises InvalidError: ``data`` is not 8 bytes long.
        """
        if len(data) != 8:
            raise InvalidError(
                "counter values must be 8 bytes (signed 64-bit little-endian)", length=len(data)
            )
        n: int = _I64.unpack(data)[0]
        return n

    def validate(self, operand: bytes) -> None:
        """Accept only 8-byte operands (what :meth:`encode` makes).

        :raises InvalidError: ``operand`` is not 8 bytes long.
        """
        self.decode(operand)

    def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
        """``existing + operand`` as signed 64-bit integers (``existing`` ``None`` is 0)."""
        total = 0 if existing is None else self.decode(existing)
        return self._encode_sum(total + self.decode(operand))

    def merge_batch(self, key: bytes, existing: bytes | None, operands: list[bytes]) -> bytes:
        """The sum of ``existing`` and every operand, wrapped to 64 bits."""
        decode = self.decode
        total = 0 if existing is None else decode(existing)
        for operand in operands:
            total += decode(operand)
        return CounterMergeOperator._encode_sum(total)

    @staticmethod
    def _encode_sum(total: int) -> bytes:
        wrapped = (total + 2**63) % 2**64 - 2**63  # two's-complement wrap-around
        return _I64.pack(wrapped)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return "CounterMergeOperator()"


#: The built-in operators by name.
BUILTIN_OPERATORS: dict[str, type[MergeOperator]] = {
    ConcatMergeOperator.name: ConcatMergeOperator,
    CounterMergeOperator.name: CounterMergeOperator,
}


@shale.hookimpl
def shale_merge_operator(name: str) -> MergeOperator | None:
    """Offer the built-in operators: ``"concat"`` and ``"counter"``.

    :param name: the operator name from the settings.
    :return: a new instance of the built-in of that name, or ``None`` for any other name.
    """
    cls = BUILTIN_OPERATORS.get(name)
    return None if cls is None else cls()
