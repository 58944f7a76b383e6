"""The typed facade over the hooks shale-compactor adds (:mod:`shale_compactor.hookspecs`).

Like :class:`shale.plugins.PluginHost` for core's hooks: one method per hook, so the compactor
never names a hook as a string nor passes ``**kwargs`` to pluggy. Each method works whether or
not the specifications are declared on the manager (with plugin autoload off and the compactor's
plugin not registered, nothing implements them: the defaults apply).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from shale.spi import call_observers

if TYPE_CHECKING:
    from shale.spi import CompactorOptions
    from shale_compactor.compactor import CompactionReport
    from shale_compactor.filters import CompactionFilter, CompactionJobContext
    from shale_compactor.scheduler import CompactionScheduler

__all__ = ["CompactorHooks"]


class CompactorHooks:
    """Calls the compactor's hooks on ``manager`` (the plugin host's ``manager``)."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager

    def _caller(self, name: str) -> pluggy.HookCaller | None:
        caller: pluggy.HookCaller | None = getattr(self.manager.hook, name, None)
        return caller

    def compaction_scheduler(self, options: CompactorOptions | None) -> CompactionScheduler | None:
        """The scheduler a plugin offers instead of the size-tiered one (first result), or
        ``None``."""
        hook = self._caller("shale_compaction_scheduler")
        found: CompactionScheduler | None = None if hook is None else hook(options=options)
        return found

    def compaction_filters(self, context: CompactionJobContext) -> list[CompactionFilter]:
        """Every filter the plugins make for one job, in hook call order (``None`` dropped).

        An exception from an implementation propagates: it aborts the job.
        """
        hook = self._caller("shale_compaction_filter")
        if hook is None:
            return []
        return [f for f in hook(context=context) if f is not None]

    def compaction_finished(self, report: CompactionReport) -> None:
        """Tell the observers of ``shale_compaction_finished`` (isolated: one failing is logged
        with its plugin's name and does not stop the others)."""
        hook = self._caller("shale_compaction_finished")
        if hook is not None:
            call_observers(hook, report=report)
