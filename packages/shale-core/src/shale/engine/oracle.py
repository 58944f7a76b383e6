"""Sequence numbers (SlateDB's ``oracle``): the last assigned, the last committed, the last
durable, and waiting for durability on a condition of its own.

Invariants: ``durable_seq <= committed_seq <= last_seq``, each only grows. A write assigns its
seq (``last_seq``) before its rows enter the memtable and commits it (``committed_seq``) once
they all have, both under the write lock, so a read bounded by ``committed_seq`` never sees part
of a batch; ``dirty=True`` reads are bounded by ``last_seq`` and may (SlateDB's dirty read).
Replayed and L0-flushed rows are durable. Only durability has waiters; they block on
:attr:`DbOracle.cond`, notified when ``durable_seq`` moves and on every failure or close.
"""

from __future__ import annotations

import threading
from typing import Final

from shale.errors import InvalidError

DURABILITY_MEMORY: Final = "memory"
DURABILITY_REMOTE: Final = "remote"


class DbOracle:
    """The sequence numbers of one database (or of one read-only view)."""

    def __init__(self, seq: int = 0) -> None:
        self.cond = threading.Condition(threading.Lock())
        #: the last seq a write was given (its rows may still be entering the memtable)
        self.last_seq = seq
        #: the last seq whose rows are all in the memtable: what a default read sees
        self.committed_seq = seq
        #: the last seq that is stored (in a WAL SST, or in L0 with the WAL off)
        self.durable_seq = seq

    def reset(self, seq: int) -> None:
        """Every seq up to ``seq`` is committed and durable (after replay or a reload)."""
        with self.cond:
            self.last_seq = self.committed_seq = self.durable_seq = seq
            self.cond.notify_all()

    def read_seq(self, durability: str, dirty: bool) -> int:
        """The highest seq a read may see (SlateDB's ``prepare_max_seq``).

        :raises InvalidError: an unknown ``durability``.
        """
        if durability == DURABILITY_MEMORY:
            return self.last_seq if dirty else self.committed_seq
        if durability == DURABILITY_REMOTE:
            return self.durable_seq
        raise InvalidError("durability must be 'memory' or 'remote'", durability=durability)

    def advance_durable(self, seq: int) -> None:
        """Rows up to ``seq`` are stored; wake the durability waiters."""
        with self.cond:
            if seq > self.durable_seq:
                self.durable_seq = seq
            self.cond.notify_all()

    def notify(self) -> None:
        """Wake the durability waiters (a failure or close: they re-check)."""
        with self.cond:
            self.cond.notify_all()
