"""shale_prometheus: shale's metrics for Prometheus.

:class:`ShaleCollector` is a ``prometheus_client`` collector over a shale metrics registry (by
default the process-wide one, which reports every open database handle); :func:`register` adds
it to a Prometheus registry once; :func:`start_http_server` also serves ``/metrics``. Installed
as a plugin, it registers itself with ``prometheus_client.REGISTRY`` when the first database
opens (and serves on ``SHALE_PLUGIN_PROMETHEUS_PORT`` when that variable is set).
"""

from __future__ import annotations

from shale import (
    __version__,  # the project's one version: every distribution has it
    lazy_exports,
)

# Imported on first use: every shale process loads the plugin, and prometheus_client is slow
# to import.
_LAZY = {
    "ShaleCollector": "shale_prometheus.collector",
    "register": "shale_prometheus.collector",
    "start_http_server": "shale_prometheus.collector",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["ShaleCollector", "__version__", "register", "start_http_server"]
