"""Hook specifications added by shale-gc (through ``shale_addhooks`` in :mod:`shale_gc.plugin`).

Two hooks:

- :func:`shale_gc_filter` lets a plugin veto deletions (legal holds, backups in progress, an
  external replica still copying files). Vetoes can only *keep* objects: the garbage collector
  deletes an object only when every answer allows it, so a plugin can never make GC delete
  something its own rules would keep.
- :func:`shale_gc_finished` observes each finished round (metrics, audit logs).

Both are called by every :class:`shale_gc.GarbageCollector`, in-process or standalone, and in
dry runs too (so a dry run reports exactly what a real run would delete), through the typed
facade :class:`shale_gc.hooks.GcHooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale.spi import hookspec

if TYPE_CHECKING:
    from shale_gc.report import GcObject, GcReport


@hookspec
def shale_gc_filter(candidates: list[GcObject], kind: str) -> list[GcObject] | None:
    """Return the subset of ``candidates`` this plugin allows the garbage collector to delete.

    :param candidates: the objects of one directory that passed every GC rule this round
        (a fresh list per plugin: modifying it has no effect).
    :param kind: ``"wal"``, ``"compacted"``, ``"manifest"`` or ``"compactions"``.
    :return: the allowed objects (a subset, compared by ``key``), or ``None`` for no objection.

    All implementations are called; an object is deleted only if every non-``None`` answer
    contains it. An implementation that raises objects to every candidate of that call (the
    error is logged): failing safe means keeping files.
    """


@hookspec
def shale_gc_finished(report: GcReport) -> None:
    """Observe a finished garbage-collection round.

    :param report: what was deleted (or, in a dry run, would have been), bytes freed, what was
        kept and why, failures and errors.

    An exception from one observer is logged and does not stop the others.
    """
