"""Check that a store lets us write, before doing anything that cannot be undone.

A writer's open fences the previous writer (a new ``writer_epoch`` in the manifest, then an
empty WAL object). If this process then finds it cannot write its WAL or its L0 SSTs, the old
writer is fenced for nothing and the database has no writer. :func:`probe_writable` writes and
deletes a small object under each directory the writer will write to, so that an open fails
before it changes anything.

The probe's name (``<dir>/.shale-write-probe-<random hex>``) is no WAL id and no SST id:
shale's and SlateDB's listings of ``wal/`` and ``compacted/`` skip it, and GC ignores it, so
one left behind by a crash between the put and the delete is harmless.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

from shale.errors import ShaleError
from shale.objstore.protocol import ObjectStore
from shale.objstore.retrying import RetryingStore, RetryPolicy

__all__ = ["PROBE_PREFIX", "probe_writable"]

log = logging.getLogger(__name__)

#: Name prefix of probe objects.
PROBE_PREFIX = ".shale-write-probe-"
#: How a probe put is retried: four quick retries (0.05 s doubling), so that an open fails
#: fast on a store that keeps failing, instead of fencing the previous writer for nothing.
PROBE_POLICY = RetryPolicy(max_retries=4, min_delay=0.05, max_delay=0.4, jitter="none")


def probe_writable(store: ObjectStore, directories: Iterable[str]) -> None:
    """Put and delete a probe object in each of ``directories`` (``"db/wal"``, ...).

    A failed delete only logs a warning: a writer needs no delete permission.

    :raises ShaleError: a put failed (permission denied, read-only file system, outage):
        whatever the store raised.
    """
    retrying = RetryingStore(store, PROBE_POLICY)
    for directory in directories:
        key = f"{directory.rstrip('/')}/{PROBE_PREFIX}{secrets.token_hex(8)}"
        retrying.put(key, b"", durable=False)
        try:
            store.delete(key)
        except ShaleError as exc:
            log.warning("could not delete the write probe %s: %s", key, exc)
