"""shale_prometheus: shale's metrics for Prometheus.

:class:`ShaleCollector` is a ``prometheus_client`` collector over a shale metrics registry (by
default the process-wide one, which reports every open database handle); :func:`register` adds
it to a Prometheus registry once; :func:`start_http_server` also serves ``/metrics``. Installed
as a plugin, it registers itself with ``prometheus_client.REGISTRY`` when the first database
opens (and serves on ``SHALE_PLUGIN_PROMETHEUS_PORT`` when that variable is set).
"""

from shale import __version__  # the project's one version: every distribution has it
from shale_prometheus.collector import ShaleCollector, register, start_http_server

__all__ = ["ShaleCollector", "__version__", "register", "start_http_server"]
