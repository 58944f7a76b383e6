"""The pluggy plugin of shale_faults (entry point ``shale_faults`` in the ``shale`` group).

A hook *wrapper* around ``shale_open_object_store``: whichever backend opens the store, the
result is wrapped in a :class:`~shale_faults.FaultyStore` when

- the caller passes the option ``faults=<spec>`` (removed from the options before the backends
  see them, so they never reject it), or
- the environment variable :data:`FAULTS_ENV` (``SHALE_PLUGIN_FAULTS_SPEC``) holds a spec (JSON
  text or ``@path/to/spec.json``; see :mod:`shale_faults.spec`). The option wins over the variable.

``open_store("memory://", faults={"ops": "put", "probability": 0.1})`` gives a memory store
whose puts fail one time in ten. A spec's ``match`` limits wrapping to URLs with that prefix.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import shale
from shale.spi import get_logger, plugin_var

__all__ = ["FAULTS_ENV", "FAULTS_OPTION", "shale_open_object_store"]

log = get_logger(__name__)

#: Environment variable holding a fault spec applied to every store opened through the hook.
FAULTS_ENV = plugin_var("faults", "spec")
#: The ``open_store`` option holding a fault spec.
FAULTS_OPTION = "faults"


@shale.hookimpl(wrapper=True)
def shale_open_object_store(url: str, options: dict[str, Any]) -> Generator[None, Any, Any]:
    """Wrap the opened store in a :class:`FaultyStore` when a fault spec is configured.

    :raises InvalidError: the spec (option or environment) is malformed.
    """
    raw = options.pop(FAULTS_OPTION, None)
    source = "option"
    if raw is None and os.environ.get(FAULTS_ENV):
        raw, source = os.environ[FAULTS_ENV], FAULTS_ENV
    spec = None
    if raw is not None:  # the spec's modules are imported only when a spec is configured
        from shale_faults.spec import parse_spec

        spec = parse_spec(raw)  # fail before opening anything
    store = yield
    if store is None or spec is None or not spec.matches(url):
        return store
    from shale_faults.store import FaultyStore

    log.warning(
        "fault injection active for %s (%s): %d rule(s), seed %r",
        url,
        source,
        len(spec.rules),
        spec.seed,
    )
    return FaultyStore(store, spec.rules, seed=spec.seed)
