"""Every environment variable shale reads, as a documented constant, and the namespaces.

Keep this the only module of shale-core that names ``SHALE_*`` variables so ``docs/`` can list
them all (``docs/settings.md``, "Environment variables", is the one list, plugins included).
It names shale-core's own variables only: a plugin's variable is a constant of the plugin's
package, built with :func:`plugin_var`.

The ``SHALE_`` namespace is split three ways, so that a plugin's variable can never break the
settings loader and a typo in a setting is still an error:

* ``SHALE_<FIELD>`` -- a :class:`~shale.settings.Settings` field (:data:`SETTINGS_PREFIX`);
  an unknown name is an error with a "did you mean" hint;
* ``SHALE_PLUGIN_<PLUGIN>_<NAME>`` -- reserved for plugins (:data:`PLUGIN_PREFIX`, build names
  with :func:`plugin_var`); never a setting (no ``Settings`` field starts with ``plugin``), so
  the settings loader skips every one of them;
* the few variables of shale itself that are not settings, listed in :data:`NOT_SETTINGS`.
"""

from __future__ import annotations

import os

#: Set to a non-empty value to use the pure-Python twins (and skip compiling at build time).
NO_EXTENSIONS = "SHALE_NO_EXTENSIONS"
#: Set to a non-empty value to load only built-in plugins, not the ``shale`` entry points.
DISABLE_PLUGIN_AUTOLOAD = "SHALE_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated plugin names (entry-point or built-in names) that must not be loaded.
DISABLED_PLUGINS = "SHALE_DISABLED_PLUGINS"

#: Prefix of the variables that override :class:`shale.settings.Settings` fields: every
#: ``SHALE_<FIELD>`` variable is a setting, e.g. ``SHALE_FLUSH_INTERVAL=50ms``, except the names
#: in :data:`NOT_SETTINGS`. An unknown ``SHALE_*`` name is an error in ``Settings.from_env`` and
#: ``Settings.load`` (a typo must not be silently ignored), so a new ``SHALE_*`` variable that is
#: not a setting must be added to :data:`NOT_SETTINGS`.
SETTINGS_PREFIX = "SHALE_"
#: Separator of nested setting names: ``SHALE_COMPACTOR_OPTIONS__POLL_INTERVAL=2s``,
#: ``SHALE_GARBAGE_COLLECTOR_OPTIONS__WAL__MIN_AGE=1h``. (A ``.``, as SlateDB uses, also works.)
SETTINGS_NESTED_SEPARATOR = "__"
#: ``SHALE_*`` variables of shale-core that are not settings; ``Settings.from_env`` skips them.
#: Plugins' variables are never listed here (core names no plugin): they use
#: :func:`plugin_var`.
NOT_SETTINGS: frozenset[str] = frozenset({NO_EXTENSIONS, DISABLE_PLUGIN_AUTOLOAD, DISABLED_PLUGINS})
#: Prefix reserved for plugins' own variables, ``SHALE_PLUGIN_<PLUGIN>_<NAME>``: never a
#: setting, skipped by ``Settings.from_env`` and ``Settings.load`` whatever follows it.
PLUGIN_PREFIX = "SHALE_PLUGIN_"


def plugin_var(plugin: str, name: str) -> str:
    """The name of a plugin's variable: ``plugin_var("example_filter", "prefixes")`` is
    ``SHALE_PLUGIN_EXAMPLE_FILTER_PREFIXES``.

    :param plugin: the plugin's short name (letters, digits, ``_``; ``-`` becomes ``_``).
    :param name: the variable's own name.
    :raises ValueError: an empty part or one with other characters (a plugin's bug, at import).
    """
    parts = [plugin.replace("-", "_"), name]
    for part in parts:
        if not part or not part.replace("_", "").isalnum() or not part.isascii():
            raise ValueError(f"bad plugin variable part {part!r}")
    return PLUGIN_PREFIX + "_".join(p.upper() for p in parts)


def flag(name: str) -> bool:
    """True when the variable is set to something other than empty, ``0`` or ``false``."""
    value = os.environ.get(name, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def csv(name: str) -> list[str]:
    """The variable split on commas, blanks dropped."""
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]
