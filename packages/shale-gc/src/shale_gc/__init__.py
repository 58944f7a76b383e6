"""shale_gc: the garbage collector of shale databases -- it never deletes what can still be read.

It deletes WAL SSTs, compacted SSTs, manifests and ``.compactions`` files that no manifest,
live checkpoint or active compaction can reach any more, with SlateDB 0.12.1's rules
(:mod:`shale_gc.rules`). Run it

- in-process: install this package and open a :class:`shale.Db` whose
  ``settings.garbage_collector_options`` is set (the default); the plugin starts a GC thread;
- standalone: ``shale gc run URL`` (``--once``, ``--dry-run``, ``--min-age``), or
  :class:`GarbageCollector` from Python.

Plugins can veto deletions (``shale_gc_filter``) and observe rounds (``shale_gc_finished``),
see :mod:`shale_gc.hookspecs`. Documentation: ``docs/gc.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale import (
    __version__,  # the project's one version: every distribution has it
    lazy_exports,
)

if TYPE_CHECKING:  # the real names for type checkers and the docs; at run time __getattr__
    from shale_gc.collector import (  # imports them on first use
        DETACH_COPY,
        DETACH_RELEASE,
        GarbageCollector,
        ProgressCallback,
    )
    from shale_gc.report import (
        KIND_COMPACTED,
        KIND_COMPACTIONS,
        KIND_MANIFEST,
        KIND_WAL,
        KINDS,
        GcObject,
        GcReport,
        KindReport,
    )
    from shale_gc.rules import GcStateView, Selection

# Imported on first use: every shale process loads the plugin (shale_gc.plugin), which needs
# none of these until a database with a garbage collector opens.
_LAZY = {
    **dict.fromkeys(
        ("DETACH_COPY", "DETACH_RELEASE", "GarbageCollector", "ProgressCallback"),
        "shale_gc.collector",
    ),
    **dict.fromkeys(
        (
            "KIND_COMPACTED",
            "KIND_COMPACTIONS",
            "KIND_MANIFEST",
            "KIND_WAL",
            "KINDS",
            "GcObject",
            "GcReport",
            "KindReport",
        ),
        "shale_gc.report",
    ),
    **dict.fromkeys(("GcStateView", "Selection"), "shale_gc.rules"),
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DETACH_COPY",
    "DETACH_RELEASE",
    "KIND_COMPACTED",
    "KIND_COMPACTIONS",
    "KIND_MANIFEST",
    "KIND_WAL",
    "KINDS",
    "GarbageCollector",
    "GcObject",
    "GcReport",
    "GcStateView",
    "KindReport",
    "ProgressCallback",
    "Selection",
    "__version__",
]
