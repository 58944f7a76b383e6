"""Fixtures of the engine-over-S3 acceptance tests: a fresh ``s3://bucket/prefix`` database
location on the session's SeaweedFS server, and helpers to open it.

The SeaweedFS server itself is ``s3_server`` from ``shale_minio.testing`` (a pytest plugin
installed with shale-minio): it skips when the ``weed`` binary is missing, but **fails** when
the ``CI`` environment variable is set, so CI can never pass by skipping these tests.

:class:`S3Db` (fixture :func:`s3db`) is one database location: a new prefix in a bucket shared
by the session. It opens :class:`shale.Db` handles on ``s3://bucket/prefix`` with explicit store
options (endpoint and credentials), raw :class:`~shale_minio.S3Store` objects on the same
prefix, and lists the bucket; everything it opened is closed at teardown, so a failing test
leaves no background threads behind.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from shale.db import Db
from shale.settings import Settings
from shale_minio import S3Store
from shale_minio.testing import SeaweedServer

log = logging.getLogger(__name__)

#: Bucket shared by every database of this directory's tests (one prefix each).
BUCKET = "shale-s3-engine"
#: Fast settings: WAL flushed every 10 ms, manifest polled every 100 ms, no embedded compactor
#: or GC (the tests run them explicitly).
FAST: dict[str, Any] = {
    "flush_interval": 0.01,
    "manifest_poll_interval": 0.1,
    "compactor_options": None,
    "garbage_collector_options": None,
}
#: Store options every test adds: quick retries, so injected or real failures cost little time.
STORE_OPTIONS: dict[str, Any] = {"retry_base_delay": 0.02, "retry_max_delay": 0.2}

_prefixes = itertools.count()


def settings(**overrides: Any) -> Settings:
    """:data:`FAST` settings with ``overrides``."""
    return Settings(**{**FAST, **overrides})


def wait_until(pred: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Re-check ``pred`` every 20 ms until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not pred():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        tick.wait(0.02)


@dataclass
class S3Db:
    """A database location ``s3://<bucket>/<prefix>`` on the session's SeaweedFS server."""

    server: SeaweedServer
    bucket: str
    prefix: str
    _handles: list[Any] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``: where :meth:`open` opens the database."""
        return f"s3://{self.bucket}/{self.prefix}"

    def options(self, **extra: Any) -> dict[str, Any]:
        """Store options naming the server (endpoint, keys, region) plus quick retries."""
        return {**self.server.options(), **STORE_OPTIONS, **extra}

    #: :func:`settings` and :func:`wait_until`, reachable from the tests through the fixture
    #: (test modules cannot import this conftest under ``--import-mode=importlib``).
    settings = staticmethod(settings)
    wait_until = staticmethod(wait_until)

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables for shale (options-free ``s3://`` URLs) and official slatedb."""
        return self.server.env()

    def open(self, config: Settings | None = None, **store_options: Any) -> Db:
        """``Db.open(self.url, config, store_options=...)``; closed at teardown."""
        db = Db.open(
            self.url,
            config if config is not None else settings(),
            store_options=self.options(**store_options),
        )
        self._handles.append(db)
        return db

    def store(self, **options: Any) -> S3Store:
        """A raw :class:`S3Store` on the database's prefix; closed at teardown."""
        store = S3Store(self.bucket, self.prefix, **self.options(**options))
        self._handles.append(store)
        return store

    def track(self, handle: Any) -> Any:
        """Close ``handle`` (anything with ``close()``) at teardown; returns it."""
        self._handles.append(handle)
        return handle

    def listing(self) -> dict[str, tuple[int, str]]:
        """Every object of the database: ``key -> (size, etag)`` (keys relative to the prefix)."""
        with S3Store(self.bucket, self.prefix, **self.options()) as store:
            return {m.key: (m.size, m.etag) for m in store.list()}

    def close_all(self) -> None:
        for handle in reversed(self._handles):
            with contextlib.suppress(Exception):
                handle.close()
        self._handles.clear()


@pytest.fixture(scope="session")
def s3_bucket(s3_server: SeaweedServer) -> str:
    """The bucket holding every test database of this directory."""
    return s3_server.make_bucket(f"{BUCKET}-{secrets.token_hex(3)}")


@pytest.fixture
def s3db(s3_server: SeaweedServer, s3_bucket: str) -> Iterator[S3Db]:
    """A fresh, empty database location ``s3://<bucket>/<new prefix>``."""
    loc = S3Db(s3_server, s3_bucket, f"db{next(_prefixes):03d}-{secrets.token_hex(3)}")
    try:
        yield loc
    finally:
        loc.close_all()
