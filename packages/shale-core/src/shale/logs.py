"""One logger tree: every logger of shale and of its extension packages is under ``shale``.

Core modules log as their module (``shale.engine.wal_buffer``). Extension packages named
``shale_<name>`` log under ``shale.<name>`` (``shale_compactor.executor`` logs as
``shale.compactor.executor``, ``shale_gc.collector`` as ``shale.gc.collector``,
``shale_minio.store`` as ``shale.minio.store``), so configuring the ``shale`` logger (``shale
-v``, ``logging.getLogger("shale").setLevel(...)``) covers them all. These names are stable;
``docs/metrics.md`` lists them.
"""

from __future__ import annotations

import logging

__all__ = ["get_logger", "logger_name"]


def logger_name(module: str) -> str:
    """The logger name of ``module``: ``shale_<x>.<rest>`` -> ``shale.<x>.<rest>``; any other
    name is returned unchanged."""
    if module.startswith("shale_"):
        return "shale." + module[len("shale_") :]
    return module


def get_logger(module: str) -> logging.Logger:
    """The logger of ``module`` in the ``shale`` tree (call with ``__name__``)."""
    return logging.getLogger(logger_name(module))
