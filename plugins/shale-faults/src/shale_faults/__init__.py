"""shale_faults: a fault-injecting object-store wrapper for testing shale.

- :class:`FaultyStore` wraps any object store and injects errors, latency and lost replies
  ("succeeded but reported failure") per :class:`FaultRule`, deterministically for a seed.
- :mod:`shale_faults.plugin` wraps stores opened through ``open_store`` when the option
  ``faults=...`` or the environment variable ``SHALE_PLUGIN_FAULTS_SPEC`` gives a spec
  (:mod:`shale_faults.spec`).
"""

from __future__ import annotations

from typing import Any

from shale import __version__  # the project's one version: every distribution has it
from shale_faults.plugin import FAULTS_ENV, FAULTS_OPTION

# Imported on first use: every shale process loads the plugin, few inject faults.
_LAZY = {
    **dict.fromkeys(("FaultSpec", "parse_spec"), "shale_faults.spec"),
    **dict.fromkeys(("ERRORS", "OPS", "FaultRule", "FaultyStore"), "shale_faults.store"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shale_faults' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ERRORS",
    "FAULTS_ENV",
    "FAULTS_OPTION",
    "OPS",
    "FaultRule",
    "FaultSpec",
    "FaultyStore",
    "parse_spec",
    "__version__",
]
