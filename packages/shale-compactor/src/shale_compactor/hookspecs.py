"""Hook specifications added by shale-compactor (pluggy project name ``shale``).

They are registered on the shale plugin manager through the core hook ``shale_addhooks`` (see
:mod:`shale_compactor.plugin`), so any installed plugin can implement them with
``@shale.hookimpl``:

- :func:`shale_compaction_scheduler` replaces the size-tiered policy (first result wins);
- :func:`shale_compaction_filter` adds a compaction filter to every job (all results, chained in
  hook call order);
- :func:`shale_compaction_finished` observes every finished job.

Invariant: the compactor calls these hooks only from its own threads and never holds a lock of
the database while doing so; a failing observer is logged and ignored, but a failing filter
aborts the job (SlateDB: "any error aborts the compaction"), which is then marked Failed.
The compactor calls them through the typed facade :class:`shale_compactor.hooks.CompactorHooks`.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

import pluggy

from shale import hookspec

if TYPE_CHECKING:
    from shale.spi import CompactorOptions
    from shale_compactor.compactor import CompactionReport
    from shale_compactor.filters import CompactionFilter, CompactionJobContext
    from shale_compactor.scheduler import CompactionScheduler


@hookspec(firstresult=True)
def shale_compaction_scheduler(options: CompactorOptions | None) -> CompactionScheduler | None:
    """Return the compaction scheduler to use instead of the size-tiered one, or ``None``.

    :param options: the compactor's :class:`shale.settings.CompactorOptions`.
    :return: an object with ``propose(view) -> list[CompactionSpec]`` and
        ``validate(view, spec) -> None`` (raising :class:`shale.errors.InvalidError` for a spec
        it refuses), where ``view`` is a :class:`shale_compactor.state.CompactorStateView` and
        specs are :class:`shale_compactor.scheduler.CompactionSpec`. See
        :class:`shale_compactor.scheduler.SizeTieredScheduler` for the reference implementation.
        ``None`` lets the next plugin (finally the size-tiered default) decide.

    Stops at first non-None result. ``propose`` must be a pure function of the view: it is
    called on every poll and must not return sources used by active compactions.
    """


@hookspec
def shale_compaction_filter(context: CompactionJobContext) -> CompactionFilter | None:
    """Return a compaction filter for one compaction job, or ``None`` to stay out of it.

    :param context: a :class:`shale_compactor.filters.CompactionJobContext` (``destination``,
        ``is_dest_last_run``, ``compaction_clock_tick``, ``retention_min_seq``).
    :return: an object implementing :class:`shale_compactor.filters.CompactionFilter`
        (``filter(entry) -> decision`` and ``on_compaction_end()``), or ``None``.

    Called once per job. Every non-None result is used; several filters are chained in hook
    call order (an entry dropped by one is not shown to the next). An exception here, in
    ``filter`` or in ``on_compaction_end`` aborts the job, which is marked Failed.

    .. warning:: a filter that drops or rewrites entries can break the consistency of
       snapshots that are still reading older versions.
    """


@hookspec
def shale_compaction_finished(report: CompactionReport) -> None:
    """Observe a compaction job that finished (committed, or failed).

    :param report: a :class:`shale_compactor.compactor.CompactionReport`: the job id, its
        sources and destination, ``status`` (``"completed"`` or ``"failed"``), the output SSTs,
        bytes read and written, the duration and, on failure, the error text.

    Called after the manifest and the ``.compactions`` file record the outcome. An exception
    from one observer is logged and does not stop the others or the compactor. Jobs that are
    merely interrupted by :meth:`shale_compactor.Compactor.stop` are not reported: they resume
    on the next start.
    """


_HOOKS = ("shale_compaction_scheduler", "shale_compaction_filter", "shale_compaction_finished")
_lock = threading.Lock()


def ensure_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Declare the compactor's hooks on ``pluginmanager`` unless they already are (idempotent;
    hooks implemented by plugins registered earlier get their specification now)."""
    with _lock:
        callers = [getattr(pluginmanager.hook, name, None) for name in _HOOKS]
        if all(hc is not None and hc.has_spec() for hc in callers):
            return
        pluginmanager.add_hookspecs(sys.modules[__name__])
