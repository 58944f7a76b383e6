"""A template shale plugin: copy the ``plugins/_template`` folder to start your own.

Rename the distribution in ``pyproject.toml`` and the package folder, keep the entry point in the
``shale`` group, and implement any hook of :mod:`shale.plugins.hookspecs` with ``@shale.hookimpl``.
This template implements one observer so you can see it run: it logs every database open.

Configuration from the environment goes in the namespace shale reserves for plugins, named with
``shale.env.plugin_var("template", "level")`` (``SHALE_PLUGIN_TEMPLATE_LEVEL``): any other unknown
``SHALE_*`` variable is rejected by the settings loader as a misspelt setting.
"""

from __future__ import annotations

from typing import Any

import shale
from shale.spi import get_logger

log = get_logger(__name__)


@shale.hookimpl
def shale_db_opened(db: Any) -> None:
    """Log each database that opens (replace with your plugin's behaviour)."""
    log.info("shale-template saw a database open: %r", db)
