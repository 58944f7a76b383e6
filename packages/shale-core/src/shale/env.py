"""Every environment variable shale reads, as a documented constant.

Keep this the only module that names ``SHALE_*`` variables so ``docs/`` can list them all.
"""

from __future__ import annotations

import os

#: Set to a non-empty value to use the pure-Python twins (and skip compiling at build time).
NO_EXTENSIONS = "SHALE_NO_EXTENSIONS"
#: Set to a non-empty value to load only built-in plugins, not the ``shale`` entry points.
DISABLE_PLUGIN_AUTOLOAD = "SHALE_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated plugin names (entry-point or built-in names) that must not be loaded.
DISABLED_PLUGINS = "SHALE_DISABLED_PLUGINS"


def flag(name: str) -> bool:
    """True when the variable is set to something other than empty, ``0`` or ``false``."""
    value = os.environ.get(name, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def csv(name: str) -> list[str]:
    """The variable split on commas, blanks dropped."""
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]
