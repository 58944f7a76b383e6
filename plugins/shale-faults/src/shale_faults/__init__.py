"""shale_faults: a fault-injecting object-store wrapper for testing shale.

- :class:`FaultyStore` wraps any object store and injects errors, latency and lost replies
  ("succeeded but reported failure") per :class:`FaultRule`, deterministically for a seed.
- :mod:`shale_faults.plugin` wraps stores opened through ``open_store`` when the option
  ``faults=...`` or the environment variable ``SHALE_PLUGIN_FAULTS_SPEC`` gives a spec
  (:mod:`shale_faults.spec`).
"""

from __future__ import annotations

from shale import (
    __version__,  # the project's one version: every distribution has it
    lazy_exports,
)
from shale_faults.plugin import FAULTS_ENV, FAULTS_OPTION

# Imported on first use: every shale process loads the plugin, few inject faults.
_LAZY = {
    **dict.fromkeys(("FaultSpec", "parse_spec"), "shale_faults.spec"),
    **dict.fromkeys(("ERRORS", "OPS", "FaultRule", "FaultyStore"), "shale_faults.store"),
}


__getattr__ = lazy_exports(__name__, _LAZY)


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
