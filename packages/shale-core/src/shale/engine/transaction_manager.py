"""Conflict tracking for transactions (SlateDB's ``transaction_manager``).

What it keeps: the *live* transactions (id -> the seq their snapshot reads at, ``started``) and
the write sets of *recent commits* (``(commit seq, keys)``, oldest first) -- those of
transactions and of plain writes (``put``, ``delete``, ``merge``, ``write``) alike, as SlateDB
models a plain write as a one-batch transaction.

The rules (SlateDB's, ``check_has_conflict``): a transaction that started at ``s`` conflicts
with a commit at ``c > s`` (a commit its snapshot does not see) when

- *snapshot isolation*: the commit wrote a key the transaction writes (write-write);
- *serializable snapshot isolation*: that, or the commit wrote a key the transaction read, or
  a key inside a range it scanned (read-write, including phantoms).

Forgetting: a commit at ``c`` can conflict only with live transactions that started below
``c``; once every live transaction started at or after ``c`` it is dropped, and with no live
transaction nothing is recorded at all (:attr:`TransactionManager.has_live` is checked by the
writer before it pays for recording).

Atomicity: :meth:`check` and :meth:`record` run under the write lock (``DbState.lock``), the
first before a transaction's seq is assigned, the second after its rows are in the memtable,
so no commit can slip between a transaction's check and its commit. :meth:`begin` also runs
under the write lock, so a transaction's start seq and its registration are one step for the
writer: every commit above the start seq is recorded. The manager's own lock is a leaf.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shale.errors import TransactionError

#: a scanned key range: ``(start, end)``, ``None`` = unbounded, ``end`` exclusive
KeyRange = tuple[bytes | None, bytes | None]


def _in_range(key: bytes, r: KeyRange) -> bool:
    start, end = r
    return (start is None or key >= start) and (end is None or key < end)


@dataclass
class TxnConflictSet:
    """What a committing transaction hands the writer: who it is and what it touched."""

    id: str
    started_seq: int
    serializable: bool
    write_keys: frozenset[bytes]
    read_keys: frozenset[bytes] = frozenset()
    read_ranges: Sequence[KeyRange] = field(default_factory=list)


class TransactionManager:
    """Live transactions and the write sets they may conflict with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, int] = {}
        self._recent: collections.deque[tuple[int, frozenset[bytes]]] = collections.deque()

    @property
    def has_live(self) -> bool:
        """Whether any transaction is live (read without the lock: a stale ``True`` only
        records a write set that is dropped later; ``False`` is exact under the write lock,
        where :meth:`begin` runs)."""
        return bool(self._live)

    def begin(self, txn_id: str, started_seq: int) -> None:
        """Register a transaction reading at ``started_seq`` (caller holds the write lock)."""
        with self._lock:
            self._live[txn_id] = started_seq

    def end(self, txn_id: str) -> None:
        """The transaction committed or rolled back: forget it, and every recorded commit no
        live transaction can conflict with any more (ending twice is harmless)."""
        with self._lock:
            self._live.pop(txn_id, None)
            self._forget()

    def _forget(self) -> None:
        recent = self._recent
        if not self._live:
            recent.clear()
            return
        oldest = min(self._live.values())
        while recent and recent[0][0] <= oldest:
            recent.popleft()

    def record(self, keys: Iterable[bytes], seq: int) -> None:
        """A commit at ``seq`` wrote ``keys`` (caller holds the write lock, in seq order)."""
        with self._lock:
            if self._live:
                self._recent.append((seq, frozenset(keys)))

    def check(self, txn: TxnConflictSet) -> None:
        """Refuse ``txn``'s commit if a commit it cannot see conflicts with it (caller holds
        the write lock).

        :raises TransactionError: the conflict, naming its kind and key.
        """
        with self._lock:
            if txn.id not in self._live:
                raise TransactionError("the transaction is not live", id=txn.id)
            for seq, keys in reversed(self._recent):
                if seq <= txn.started_seq:
                    break
                both = keys & txn.write_keys
                if both:
                    raise TransactionError(
                        "write-write conflict: a key this transaction writes was written "
                        "since it started; retry the transaction",
                        key=min(both),
                        started_seq=txn.started_seq,
                        conflicting_seq=seq,
                    )
                if not txn.serializable:
                    continue
                both = keys & txn.read_keys
                if both:
                    raise TransactionError(
                        "read-write conflict: a key this transaction read was written since "
                        "it started; retry the transaction",
                        key=min(both),
                        started_seq=txn.started_seq,
                        conflicting_seq=seq,
                    )
                for r in txn.read_ranges:
                    hit = [k for k in keys if _in_range(k, r)]
                    if hit:
                        raise TransactionError(
                            "read-write conflict: a key inside a range this transaction "
                            "scanned was written since it started; retry the transaction",
                            key=min(hit),
                            range=r,
                            started_seq=txn.started_seq,
                            conflicting_seq=seq,
                        )

    def counts(self) -> tuple[int, int]:
        """``(live transactions, recorded commits)`` (for metrics and tests)."""
        with self._lock:
            return len(self._live), len(self._recent)
