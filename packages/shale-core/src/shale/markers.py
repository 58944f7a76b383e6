"""The hook markers of the pluggy project ``shale``: the one pair every package uses.

``@shale.hookimpl`` marks a hook implementation, ``@shale.hookspec`` a hook specification
(core's in :mod:`shale.plugins.hookspecs`; shale-compactor and shale-gc add theirs through
``shale_addhooks``). Both are re-exported from :mod:`shale`.

Why a module of its own: the markers are plain data every layer may need (built-in plugins live
in the format and storage layers), so they sit in the base layer and import nothing of shale.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec"]

#: The pluggy project name (and the entry-point group plugins register under).
PROJECT = "shale"
#: Marker for hook implementations: ``@shale.hookimpl`` (options: ``tryfirst``, ``trylast``,
#: ``wrapper``, ``optionalhook``, ``specname``).
hookimpl = pluggy.HookimplMarker(PROJECT)
#: Marker for hook specifications: ``@shale.hookspec`` (options: ``firstresult``, ``historic``).
hookspec = pluggy.HookspecMarker(PROJECT)
