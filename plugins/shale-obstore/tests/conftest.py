"""Fixtures of shale-obstore's tests: the plugin registered, and stores on a real SeaweedFS.

The ``s3_server`` fixture (a real SeaweedFS ``weed mini``) comes from shale-minio's pytest
plugin. Installed, shale-obstore registers itself through its entry point; in a source checkout
(``PYTHONPATH``) the ``obstore_plugin`` fixture registers the same module on the plugin host.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from shale.spi import get_host
from shale_minio.testing import SeaweedServer
from shale_obstore import ObstoreStore
from shale_obstore import plugin as obstore_plugin_module

_counter = itertools.count()


@pytest.fixture(autouse=True)
def obstore_plugin() -> Iterator[None]:
    """The shale_obstore plugin, registered on the process's plugin host."""
    host = get_host()
    if host.manager.get_plugin("shale_obstore") is None:
        host.register(obstore_plugin_module, name="shale_obstore")
    yield


@pytest.fixture(scope="session")
def obstore_bucket(s3_server: SeaweedServer) -> str:
    """A bucket of the session's SeaweedFS server for these tests."""
    return s3_server.make_bucket()


def seaweed_options(server: SeaweedServer, **extra: Any) -> dict[str, Any]:
    """Options pointing the obstore S3 client at ``server`` (shale-minio's option names)."""
    return {**server.options(), "retry_base_delay": 0.02, **extra}


@pytest.fixture
def obstore_s3_store(s3_server: SeaweedServer, obstore_bucket: str) -> Iterator[ObstoreStore]:
    """A fresh, empty :class:`ObstoreStore` (``s3+obstore://``): a new prefix in one bucket."""
    prefix = f"t{next(_counter):05d}-{secrets.token_hex(4)}"
    store = ObstoreStore(f"s3+obstore://{obstore_bucket}/{prefix}", **seaweed_options(s3_server))
    yield store
    store.close()


@pytest.fixture
def obstore_options(s3_server: SeaweedServer) -> Any:
    """``obstore_options(**extra)``: :func:`seaweed_options` for the session's server (test
    modules cannot import this conftest: the suite runs with ``--import-mode=importlib``)."""

    def make(**extra: Any) -> dict[str, Any]:
        return seaweed_options(s3_server, **extra)

    return make
