"""What a compaction keeps: merge-operand folding, retention, expiry, tombstones, resume skipping.

These are pure generators over row tuples (:mod:`shale.row` layout
``(key, seq, kind, value, expire_ts, create_ts)``) in compacted order (key ascending, seq
descending). The executor chains them::

    MergeIterator(sources) -> merge_operands (or the "no operator" check) -> retain
        -> skip_written (resume) -> compaction filters -> SST writer

They port SlateDB 0.12.1's ``MergeOperatorIterator`` (compaction mode),
``MergeOperatorRequiredIterator``, ``RetentionIterator`` and the executor's
``ResumingIterator``. Rules and why:

* **Boundary version** (:func:`apply_retention`): a key's versions are kept newest first while
  they are newer than ``retention_min_seq`` (or inside the time window, or merge operands); the
  first version at or below ``retention_min_seq`` is kept too, as the *boundary* a snapshot at
  that seq reads, and every older version is dropped. With ``retention_min_seq`` ``None`` only
  the newest version (plus the operands above the first value or tombstone) is kept.
* **Expiry**: a value (or tombstone) with ``expire_ts <= compaction_clock_tick`` becomes a
  tombstone without ``expire_ts`` (keeping ``create_ts``): dropping it instead could revive an
  older version with a longer TTL further down the tree. An expired merge operand is dropped,
  since older operands may not have expired.
* **Tombstones** are dropped only when the destination is the last (oldest) sorted run
  (``filter_tombstones``), and only from the tail of a key's kept versions: a tombstone that
  still hides an older kept version must stay.
* **Merge operands** (:func:`merge_operands`) newer than the snapshot barrier
  (``retention_min_seq``) stay as they are; older ones are folded with the merge operator, but
  only runs of operands with the *same* ``expire_ts`` (so each keeps its TTL), stopping at the
  first value or tombstone of that ``expire_ts`` (the base, folded in: the result is then a
  value). Operands are handed to the operator in batches of :data:`MERGE_BATCH_SIZE`, oldest
  first, exactly as SlateDB does, so a non-associative slip shows the same bytes.
* **Duplicate (key, seq)** rows (which a healthy database never has) resolve as in SlateDB's
  ``BTreeMap``: the later row of the merged stream (the lower-precedence source) replaces the
  earlier.
* **Operands the operator cannot merge** (:func:`merge_operands`) are passed through unmerged
  and logged, so one poisoned key does not stop the compaction of every other key; reads of
  that key raise :class:`~shale.errors.DataError`.
* **Merges without an operator** raise :class:`~shale.errors.InvalidError` ("merge operator
  missing") when such a row is reached, like SlateDB's ``MergeOperatorMissing``.

Speed: :func:`retain` is the per-row hot loop of every compaction. A key with a single version
(the common case) is handled inline without building a list or calling a function; only keys
with several versions go through :func:`apply_retention`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from shale.spi import (
    MERGE,
    TOMBSTONE,
    DataError,
    InvalidError,
    MergeOperator,
    get_logger,
    merge_all,
)

__all__ = [
    "MERGE_BATCH_SIZE",
    "apply_retention",
    "compaction_rows",
    "merge_operands",
    "retain",
    "skip_written",
]

log = get_logger(__name__)

#: Operands folded per ``merge_batch`` call (SlateDB's ``MERGE_BATCH_SIZE``).
MERGE_BATCH_SIZE = 100

#: Below every i64 clock tick: "nothing has expired".
_NO_TICK = -(2**63) - 1

Row = tuple[Any, ...]


def _key_detail(key: bytes) -> bytes:
    return key if len(key) <= 64 else key[:64] + b"..."


def _missing_operator(row: Row) -> InvalidError:
    return InvalidError("merge operator missing", key=_key_detail(row[0]), seq=row[1])


def _retained_by_time(seq: int, retention_timeout_ms: int, now_ms: int, seq_tracker: Any) -> bool:
    """SlateDB's time window: the seq's creation time (rounded up) + timeout is after now."""
    ts_s = seq_tracker.find_ts(seq, True) if seq_tracker is not None else None
    created_ms = now_ms if ts_s is None else ts_s * 1000
    return bool(created_ms + retention_timeout_ms > now_ms)


def apply_retention(
    versions: Sequence[Row],
    *,
    compaction_clock_tick: int | None,
    retention_min_seq: int | None,
    filter_tombstones: bool,
    retention_timeout_ms: int | None = None,
    now_ms: int | None = None,
    seq_tracker: Any = None,
) -> list[Row]:
    """The versions of one key that a compaction keeps (SlateDB's ``apply_retention_filter``).

    :param versions: one key's rows, newest first (distinct seqs).
    :param compaction_clock_tick: rows with ``expire_ts <=`` this have expired (``None``: none).
    :param retention_min_seq: the oldest seq a snapshot may read at; ``None``: no snapshots.
    :param filter_tombstones: drop tombstones at the tail (destination is the last run).
    :param retention_timeout_ms: also keep versions created less than this long before
        ``now_ms`` (seq creation times come from ``seq_tracker``, a
        :class:`shale.meta.seq_tracker.SequenceTracker`; seqs it does not know count as "now").
        The executor does not use it (SlateDB 0.12.1 passes ``None``).
    :param now_ms: the current time, for ``retention_timeout_ms``.
    :return: the kept rows, newest first.
    """
    tick = _NO_TICK if compaction_clock_tick is None else compaction_clock_tick
    by_time = retention_timeout_ms is not None
    if by_time and now_ms is None:
        raise InvalidError("retention_timeout_ms needs now_ms")
    out: list[Row] = []
    for row in versions:
        kind = row[2]
        expire = row[4]
        if expire is not None and expire <= tick:
            if kind == MERGE:
                continue  # an expired operand: older operands may still be live
            row = (row[0], row[1], TOMBSTONE, b"", None, row[5])
        out.append(row)
        if kind == MERGE:
            continue
        if retention_min_seq is not None and row[1] > retention_min_seq:
            continue
        if by_time and _retained_by_time(row[1], retention_timeout_ms, now_ms, seq_tracker):  # type: ignore[arg-type]
            continue
        break  # the boundary version: everything older is invisible to every reader
    if filter_tombstones:
        while out and out[-1][2] == TOMBSTONE:
            out.pop()
    return out


def retain(
    rows: Iterable[Row],
    *,
    compaction_clock_tick: int | None,
    retention_min_seq: int | None,
    filter_tombstones: bool,
    forbid_merges: bool = False,
    retention_timeout_ms: int | None = None,
    now_ms: int | None = None,
    seq_tracker: Any = None,
) -> Iterator[Row]:
    """Apply :func:`apply_retention` to each key of a compacted-order row stream.

    :param rows: rows in compacted order (key ascending, seq descending).
    :param forbid_merges: raise ``InvalidError("merge operator missing")`` on the first merge
        operand (no merge operator is configured).
    :return: the kept rows, in the same order.

    Other parameters as for :func:`apply_retention`.
    """
    tick = _NO_TICK if compaction_clock_tick is None else compaction_clock_tick
    options = {
        "compaction_clock_tick": compaction_clock_tick,
        "retention_min_seq": retention_min_seq,
        "filter_tombstones": filter_tombstones,
        "retention_timeout_ms": retention_timeout_ms,
        "now_ms": now_ms,
        "seq_tracker": seq_tracker,
    }
    it = iter(rows)
    cur = next(it, None)
    if cur is None:
        return
    ckey = cur[0]
    group: list[Row] | None = None
    for row in it:
        key = row[0]
        if key == ckey:
            if group is None:
                group = [cur]
            if row[1] == group[-1][1]:
                group[-1] = row  # duplicate (key, seq): the later row wins, as in SlateDB
            else:
                group.append(row)
            continue
        # `cur` (or `group`) holds every version of the previous key.
        if group is None:
            if cur[2] == 0 and cur[4] is None:  # a plain value, the common case
                yield cur
            else:
                yield from _single(cur, tick, filter_tombstones, forbid_merges)
        else:
            if forbid_merges:
                _check_no_merges(group)
            yield from apply_retention(group, **options)
            group = None
        cur = row
        ckey = key
    if group is None:
        yield from _single(cur, tick, filter_tombstones, forbid_merges)
    else:
        if forbid_merges:
            _check_no_merges(group)
        yield from apply_retention(group, **options)


def _single(row: Row, tick: int, filter_tombstones: bool, forbid_merges: bool) -> list[Row]:
    """:func:`apply_retention` for a key with one version (the newest is always kept)."""
    kind = row[2]
    if kind == MERGE and forbid_merges:
        raise _missing_operator(row)
    expire = row[4]
    if expire is not None and expire <= tick:
        if kind == MERGE or filter_tombstones:
            return []
        return [(row[0], row[1], TOMBSTONE, b"", None, row[5])]
    if kind == TOMBSTONE and filter_tombstones:
        return []
    return [row]


def _check_no_merges(group: list[Row]) -> None:
    for row in group:
        if row[2] == MERGE:
            raise _missing_operator(row)


def _opt_max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _opt_min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


class _Tracker:
    """SlateDB's ``MergeTracker``: max create_ts, min expire_ts, the (checked) seq."""

    __slots__ = ("create_ts", "expire_ts", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.create_ts: int | None = None
        self.expire_ts: int | None = None

    def update(self, row: Row) -> None:
        self.create_ts = _opt_max(self.create_ts, row[5])
        self.expire_ts = _opt_min(self.expire_ts, row[4])
        if self.seq < row[1]:
            raise DataError(
                "rows out of sequence order while merging operands",
                key=_key_detail(row[0]),
                current_seq=self.seq,
                next_seq=row[1],
            )


def _fold_run(op: MergeOperator, key: bytes, run: list[Row], base_value: bytes | None) -> bytes:
    """Fold a run of operands (given newest first) over ``base_value``, SlateDB's way: batches
    of :data:`MERGE_BATCH_SIZE` operands from the newest, each folded oldest first into one
    partial operand, then the partial results oldest first over the base.

    :raises DataError: the operator cannot merge these operands.
    """
    results = [
        merge_all(op, key, None, [row[3] for row in reversed(run[i : i + MERGE_BATCH_SIZE])])
        for i in range(0, len(run), MERGE_BATCH_SIZE)
    ]
    results.reverse()
    return merge_all(op, key, base_value, results)


def merge_operands(
    rows: Iterable[Row],
    merge_operator: MergeOperator,
    *,
    snapshot_barrier_seq: int | None,
    merge_different_expire_ts: bool = False,
) -> Iterator[Row]:
    """Fold runs of merge operands into one row each (SlateDB's ``MergeOperatorIterator``).

    :param rows: rows in compacted order.
    :param merge_operator: the operator (see :mod:`shale.merge_operators`).
    :param snapshot_barrier_seq: operands with a higher seq are passed through unmerged (a
        snapshot may need them); ``None``: merge everything. Compaction passes
        ``retention_min_seq``.
    :param merge_different_expire_ts: also merge operands whose ``expire_ts`` differ (reads do;
        compaction and flush do not).
    :return: the rows, with each run of operands replaced by one row carrying the newest
        operand's seq, the maximum ``create_ts`` and minimum ``expire_ts``; it is a value when a
        base value or tombstone was folded in, else a merge operand.
    :raises DataError: the operands of a key are not in descending seq order.

    A run the operator cannot merge (it raises: operands another tool stored, or an operator
    that changed) is passed through unmerged and logged: pre-merging is only an optimisation,
    so the compaction goes on for every other key, and reads of that key raise
    :class:`~shale.errors.DataError`. To allow that, a run's rows are kept until it is folded
    (as many as a read of the key holds).
    """
    op = merge_operator
    barrier = snapshot_barrier_seq
    it = iter(rows)
    pending: Row | None = None
    while True:
        if pending is None:
            for row in it:
                if row[2] != MERGE or (barrier is not None and row[1] > barrier):
                    yield row
                    continue
                pending = row
                break
            else:
                return
        first = pending
        pending = None
        if first[2] != MERGE or (barrier is not None and first[1] > barrier):
            yield first
            continue
        key = first[0]
        first_expire = first[4]
        tracker = _Tracker(first[1])
        run: list[Row] = []  # the run's operands, newest first
        base: Row | None = None
        nxt: Row | None = first
        while nxt is not None:
            if nxt[0] != key or (not merge_different_expire_ts and nxt[4] != first_expire):
                pending = nxt
                break
            if nxt[2] != MERGE:
                base = nxt
                break
            run.append(nxt)
            tracker.update(nxt)
            nxt = next(it, None)
        base_value = None
        if base is not None:
            tracker.update(base)
            if base[2] != TOMBSTONE:
                base_value = base[3]
        try:
            value = _fold_run(op, key, run, base_value)
        except DataError as exc:
            log.warning(
                "compaction keeps %d merge operands of key %r unmerged: %s",
                len(run),
                _key_detail(key),
                exc,
            )
            yield from run
            if base is not None:
                yield base
            continue
        kind = MERGE if base is None else 0
        yield (key, tracker.seq, kind, value, tracker.expire_ts, tracker.create_ts)


def skip_written(rows: Iterable[Row], key: bytes, seq: int) -> Iterator[Row]:
    """Skip the rows an interrupted compaction already wrote (SlateDB's ``ResumingIterator``).

    ``rows`` must start at ``key`` (sources seeked there). Rows of ``key`` with seq ``>= seq``
    were written (the last written row is ``(key, seq)``) and are skipped; everything from the
    first other row on is passed through.
    """
    it = iter(rows)
    for row in it:
        if row[0] == key and row[1] >= seq:
            continue
        yield row
        break
    yield from it


def compaction_rows(
    rows: Iterable[Row],
    *,
    merge_operator: MergeOperator | None,
    retention_min_seq: int | None,
    filter_tombstones: bool,
    compaction_clock_tick: int | None,
) -> Iterator[Row]:
    """The full row pipeline of a compaction before resume skipping and filters.

    ``merge_operands`` (when an operator is configured, with ``retention_min_seq`` as the
    snapshot barrier) followed by :func:`retain`; without an operator a merge operand raises
    ``InvalidError("merge operator missing")``.
    """
    if merge_operator is not None:
        rows = merge_operands(rows, merge_operator, snapshot_barrier_seq=retention_min_seq)
    return retain(
        rows,
        compaction_clock_tick=compaction_clock_tick,
        retention_min_seq=retention_min_seq,
        filter_tombstones=filter_tombstones,
        forbid_merges=merge_operator is None,
    )
