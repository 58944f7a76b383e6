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
#: Reserved for the fault-injection test harness (which faults to inject); not a setting.
FAULTS = "SHALE_FAULTS"
#: Path of the SeaweedFS ``weed`` binary used by shale-minio's test kit
#: (``shale_minio.testing.WEED_ENV``); not a setting.
WEED = "SHALE_WEED"

#: Prefix of the variables that override :class:`shale.settings.Settings` fields: every
#: ``SHALE_<FIELD>`` variable is a setting, e.g. ``SHALE_FLUSH_INTERVAL=50ms``, except the names
#: in :data:`NOT_SETTINGS`. An unknown ``SHALE_*`` name is an error in ``Settings.from_env`` and
#: ``Settings.load`` (a typo must not be silently ignored), so a new ``SHALE_*`` variable that is
#: not a setting must be added to :data:`NOT_SETTINGS`.
SETTINGS_PREFIX = "SHALE_"
#: Separator of nested setting names: ``SHALE_COMPACTOR_OPTIONS__POLL_INTERVAL=2s``,
#: ``SHALE_GARBAGE_COLLECTOR_OPTIONS__WAL__MIN_AGE=1h``. (A ``.``, as SlateDB uses, also works.)
SETTINGS_NESTED_SEPARATOR = "__"
#: ``SHALE_*`` variables that are not settings; ``Settings.from_env`` skips them.
NOT_SETTINGS: frozenset[str] = frozenset(
    {NO_EXTENSIONS, DISABLE_PLUGIN_AUTOLOAD, DISABLED_PLUGINS, FAULTS, WEED}
)


def flag(name: str) -> bool:
    """True when the variable is set to something other than empty, ``0`` or ``false``."""
    value = os.environ.get(name, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def csv(name: str) -> list[str]:
    """The variable split on commas, blanks dropped."""
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]
