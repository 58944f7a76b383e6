"""Known, not yet fixed defects the simulation can run into, and how it treats them.

Two mechanisms, both keyed by the issue item:

* ``shape``: the workload generator leaves a shape out while the defect is open (so it cannot
  hide other failures in every seed). ``--all-shapes`` puts it back, to check a fix.
* ``kind``: a failure of this check kind is a known defect; the pytest slice marks the seed
  ``xfail`` with the issue item as the reason (non-strict), the runner reports it separately.

When an item is fixed, delete its entry: the shape comes back / the check becomes fatal.
Defect 1 ("a key whose versions span two adjacent SSTs of a sorted run reads stale") is
deliberately *not* listed: the simulation must fail on it until the read path is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownIssue:
    item: str  # e.g. "issue 9 item 2"
    title: str
    shape: str | None = None  # generator shape left out while open
    kind: str | None = None  # failure kind reported as known
    stops_run: bool = False  # the rest of a run that hit it is meaningless (the run ends there)


KNOWN: tuple[KnownIssue, ...] = (
    KnownIssue(
        item="issue 9 item 2",
        title="a batch with several ops on one key and different TTLs is folded into one row "
        "carrying the last op's TTL",
        shape="batch-mixed-ttl",
    ),
    KnownIssue(
        item="issue 9, hangs (sibling of items 9 and 10, found by tests/sim)",
        title="flush() and flush(memtable=True) retry a failing WAL upload in the caller's "
        "thread for as long as the store fails (full store, outage) and never return; a "
        "durable put in the same state raises UnavailableError",
        shape="flush-during-outage",
    ),
    KnownIssue(
        item="issue 9 items 9 and 10 (WAL off)",
        title="with wal_enabled=False a durable write, flush() and close() wait for an L0 "
        "upload that the store keeps rejecting (full store, outage): they block until it "
        "recovers (close: 60 s, then 'clean')",
        shape="wal-off-outage",
    ),
    KnownIssue(
        item="issue 9 item 7",
        title="with wal_enabled=False and L0 full, close() blocks 60 s and returns 'clean'",
        shape="wal-off-close-l0-full",
    ),
    KnownIssue(
        item="issue 9, silent loss (found by tests/sim)",
        title="a compactor commit whose manifest write fails transiently is retried without "
        "the manifest update (`before` is set before the write): the compaction is reported "
        "completed, stays Running in .compactions and never reaches the manifest; every later "
        "compaction of its sources waits for it (the compactor is wedged until restarted); "
        "after a restart the stale job may resume after another compaction replaced its "
        "source run and commit its old outputs over it: acknowledged writes are lost "
        "(seed 1425 before this entry stopped runs at the first hit)",
        kind="compaction-not-committed",
        stops_run=True,
    ),
    KnownIssue(
        item="issue 9 item 10",
        title="close() returns 'clean' although uploads failed and committed writes were not "
        "flushed",
        kind="close-unflushed",
    ),
)


def open_shapes() -> frozenset[str]:
    return frozenset(k.shape for k in KNOWN if k.shape)


def known_kind(kind: str) -> KnownIssue | None:
    for k in KNOWN:
        if k.kind == kind:
            return k
    return None
