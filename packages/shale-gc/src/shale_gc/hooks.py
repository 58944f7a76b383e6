"""The typed facade over the hooks shale-gc adds (:mod:`shale_gc.hookspecs`).

Like :class:`shale.plugins.PluginHost` for core's hooks: one method per hook, so the collector
never names a hook as a string nor passes ``**kwargs`` to pluggy. Both methods work whether or
not the specifications are declared (nothing implements them then).

``shale_gc_filter`` is a vote, not an observer: each plugin's answer is needed with its name
(to report which plugin kept a file), so its implementations are asked one by one and hook
wrappers are not applied to it. ``shale_gc_finished`` is an observer, called through pluggy
(``wrapper=True`` works) with each implementation isolated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from shale.spi import call_observers, get_logger

if TYPE_CHECKING:
    from shale_gc.report import GcObject, GcReport

__all__ = ["GcHooks"]

logger = get_logger(__name__)


class GcHooks:
    """Calls the garbage collector's hooks on ``manager`` (the plugin host's ``manager``)."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager

    def _caller(self, name: str) -> pluggy.HookCaller | None:
        caller: pluggy.HookCaller | None = getattr(self.manager.hook, name, None)
        return caller

    def gc_filter(
        self, candidates: list[GcObject], kind: str
    ) -> list[tuple[str, list[GcObject] | None]]:
        """Each ``shale_gc_filter`` implementation's answer, first-called first, as
        ``(plugin name, allowed objects or None)``.

        Each implementation gets a fresh copy of ``candidates``. One that raises is logged with
        its plugin's name and answers ``[]`` (it objects to every candidate: failing safe means
        keeping files).
        """
        hook = self._caller("shale_gc_filter")
        if hook is None:
            return []
        impls = [i for i in hook.get_hookimpls() if not (i.hookwrapper or i.wrapper)]
        answers: list[tuple[str, list[GcObject] | None]] = []
        for impl in reversed(impls):
            kwargs = {"candidates": list(candidates), "kind": kind}
            answer: list[GcObject] | None
            try:
                answer = impl.function(*[kwargs[a] for a in impl.argnames])  # type: ignore[assignment]
            except Exception:
                logger.exception(
                    "gc filter plugin %s failed; keeping every %s candidate",
                    impl.plugin_name,
                    kind,
                )
                answer = []
            answers.append((impl.plugin_name, answer))
        return answers

    def gc_finished(self, report: GcReport) -> None:
        """Tell the observers of ``shale_gc_finished`` (isolated: one failing is logged with its
        plugin's name and does not stop the others)."""
        hook = self._caller("shale_gc_finished")
        if hook is not None:
            call_observers(hook, report=report)
