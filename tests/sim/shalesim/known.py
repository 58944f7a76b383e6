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


KNOWN: tuple[KnownIssue, ...] = ()


def open_shapes() -> frozenset[str]:
    return frozenset(k.shape for k in KNOWN if k.shape)


def known_kind(kind: str) -> KnownIssue | None:
    for k in KNOWN:
        if k.kind == kind:
            return k
    return None
