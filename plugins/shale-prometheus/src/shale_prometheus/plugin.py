"""The plugin: registers the collector with ``prometheus_client.REGISTRY`` when the first
database opens, and serves ``/metrics`` on ``SHALE_PLUGIN_PROMETHEUS_PORT`` when it is set."""

from __future__ import annotations

import os
import threading
from typing import Any

import shale
from shale.spi import InvalidError, get_logger, plugin_var

log = get_logger(__name__)

#: The port to serve ``/metrics`` on (unset: no server; the application exposes the registry).
PORT_VAR = plugin_var("prometheus", "port")
_started = threading.Event()
_lock = threading.Lock()


@shale.hookimpl
def shale_db_opened(db: Any) -> None:
    """Make sure shale's collector is in the default Prometheus registry (and serving, if
    asked)."""
    # Imported here, not when the plugin loads: every shale process loads the plugin (a
    # standalone compactor never opens a database), and prometheus_client is slow to import.
    from shale_prometheus.collector import register, start_http_server

    register()
    port = os.environ.get(PORT_VAR)
    if not port:
        return
    with _lock:
        if _started.is_set():
            return
        try:
            number = int(port)
        except ValueError:
            raise InvalidError(f"{PORT_VAR} must be a port number", value=port) from None
        server, _thread = start_http_server(number)
        _started.set()
        log.info("serving shale metrics on port %d", server.server_port)
