"""What a write batch's ops become: each op's ``expire_ts``, the check of a merge operand, and
the pre-combining of one key's ops in a batch into one row (they share one seq), and a
caller-supplied seq (SlateDB's ``WriteOptions.seqnum``).

Used by the commit (:mod:`shale.engine.commit`) and by transactions; nothing here holds state.
"""

from __future__ import annotations

from typing import Any

from shale.batch import Ttl, expire_after
from shale.errors import InvalidError
from shale.merge_operators import merge_all, validate_operand
from shale.row import MERGE, TOMBSTONE, VALUE

__all__ = [
    "MAX_USER_SEQNUM",
    "check_operand",
    "check_seqnum",
    "combine",
    "expire_ts",
    "key_detail",
    "user_seq",
]

#: Largest caller-supplied seq: an i64, so that the database's own seqs after it stay in a u64.
MAX_USER_SEQNUM = 2**63 - 1


def check_seqnum(seqnum: object) -> int:
    """A write's ``seqnum`` argument checked: ``0`` or ``None`` (the database assigns the seq,
    returned as ``0``) or an int in ``[1, MAX_USER_SEQNUM]``.

    :raises InvalidError: anything else (a bool, a float, a negative or too large int).
    """
    if seqnum is None:
        return 0
    if type(seqnum) is not int or not 0 <= seqnum <= MAX_USER_SEQNUM:
        raise InvalidError(
            f"seqnum must be an int in [0, {MAX_USER_SEQNUM}] (0: assigned by the database)",
            seqnum=seqnum,
        )
    return seqnum


def user_seq(seqnum: int, last_seq: int) -> int:
    """The seq of a write given ``seqnum`` (checked by :func:`check_seqnum`), under the write
    lock: it must be above every seq assigned so far (SlateDB's ``InvalidSequenceNumber``).

    :raises InvalidError: ``seqnum <= last_seq``; nothing is written.
    """
    if seqnum <= last_seq:
        raise InvalidError(
            "invalid sequence number: it must be greater than the current maximum",
            provided=seqnum,
            current=last_seq,
        )
    return seqnum


def key_detail(key: bytes) -> bytes:
    """``key`` shortened for an error's detail."""
    return key if len(key) <= 64 else key[:64] + b"..."


def expire_ts(kind: int, ttl: Ttl | None, now: int, default_ttl: int | None) -> int | None:
    """The ``expire_ts`` of one op written at ``now`` (tombstones carry none)."""
    if kind == TOMBSTONE:
        return None
    if ttl is None:
        return None if default_ttl is None else expire_after(now, default_ttl)
    return ttl.expire_ts(now)


def check_operand(key: bytes, operand: bytes, op: Any) -> None:
    """Reject a merge operand before anything is written (SlateDB writes it and fails later).

    :raises InvalidError: no merge operator is configured, or the operator's optional
        ``validate`` rejects the operand.
    """
    if op is None:
        raise InvalidError(
            "merge operator missing: merge() needs a database opened with a merge operator "
            "(settings.merge_operator, Db.open(merge_operator=...) or --merge-operator)",
            key=key_detail(key),
        )
    validate_operand(op, key, operand)


def combine(
    key: bytes, ops: list[tuple[int, bytes, int | None]], op: Any
) -> list[tuple[int, bytes, int | None]]:
    """Pre-combine one key's ops in a batch into one row (they share one seq).

    Merges on top of a put become a value; merges on top of a delete a value of their own;
    merges alone one merge operand. The row reads exactly as the ops written one by one only
    when the rows that combine (the put's value and every operand) share one ``expire_ts``,
    so any other batch is rejected, as SlateDB 0.17 does ("only one merge TTL per-key
    allowed in a batch"). A delete carries no TTL and takes no part in the comparison.

    :raises InvalidError: different ``expire_ts`` on one key, or the operator failed.
    """
    if len(ops) == 1:
        return ops
    if op is None:  # unreachable: the commit rejects merges without an operator
        raise InvalidError("merge operator missing", key=key_detail(key))
    timed = ops if ops[0][0] != TOMBSTONE else ops[1:]
    expires = {o[2] for o in timed}
    if len(expires) > 1:
        raise InvalidError(
            "the ops of one key in a write batch must share one TTL (they are combined "
            "into one row); write them in separate batches",
            key=key_detail(key),
            expire_ts=sorted(expires, key=lambda e: -1 if e is None else e),
        )
    expire = ops[-1][2]
    if ops[0][0] in (VALUE, TOMBSTONE):
        # merges on top of a put or a delete in the same batch resolve to a plain value
        base: bytes | None = ops[0][1] if ops[0][0] == VALUE else None
        operands = [o[1] for o in ops[1:]]
        kind = VALUE
    else:
        base = None
        operands = [o[1] for o in ops]
        kind = MERGE
    return [(kind, merge_all(op, key, base, operands, error=InvalidError), expire)]
