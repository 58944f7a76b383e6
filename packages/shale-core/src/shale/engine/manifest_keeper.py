"""The fenceable manifest of a writer (SlateDB's ``manifest/store``'s ``FenceableManifest``
as the database uses it): update it, refresh it, poll it.

Invariants: one manifest update or refresh at a time (``_mutex``, taken before the write lock);
each new version is installed into :class:`DbState` and the table store (clone sources, SST
eviction) before the mutex is released, so the engine never reads an older manifest than the
last one it wrote. A read-only keeper (no writer epoch) refuses updates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from shale.engine.db_state import DbState
from shale.engine.db_status import DbStatus, Wait
from shale.engine.memtable import Memtable
from shale.engine.table_store import TableStore
from shale.errors import ClosedError, InvalidError, ShaleError
from shale.fbs.manifest import Manifest
from shale.meta.manifest_store import FenceableManifest, ManifestStore
from shale.objstore.protocol import PermanentStoreError

log = logging.getLogger(__name__)

READ_ONLY = "this database handle is read-only"


class ManifestKeeper:
    """Keeps :class:`DbState`'s manifest current; a writer's also writes new versions."""

    def __init__(
        self,
        ms: ManifestStore,
        tables: TableStore,
        state: DbState,
        status: DbStatus,
        fm: FenceableManifest | None = None,
        url: str = "",
    ) -> None:
        self.ms = ms
        self.url = url
        self.fm = fm
        self._tables = tables
        self._state = state
        self._status = status
        self._mutex = threading.Lock()
        #: called after each poll (no lock held): a compaction may have made room in L0
        self.on_polled: Callable[[], None] = _nothing

    def _writer(self) -> FenceableManifest:
        if self.fm is None:
            raise InvalidError(READ_ONLY, url=self.url)
        return self.fm

    def install(self, m: Manifest, manifest_id: int, flushed: Memtable | None = None) -> None:
        """Read ``m`` from now on (the table store learns it first); ``flushed``: see
        :meth:`DbState.install`."""
        self._tables.observe(m)
        self._state.install(m, manifest_id, flushed)

    def update(
        self,
        mutate: Callable[[Manifest, int], Manifest | None],
        flushed: Memtable | None = None,
    ) -> Manifest:
        """Write a new manifest version made by ``mutate(current, next_id)`` (``None``: no
        change) and read from it. ``flushed``: the frozen memtable whose L0 SST the version
        publishes (reads stop seeing it as they start seeing the SST).

        :raises InvalidError: a read-only keeper.
        :raises ClosedError: a newer writer fenced this one.
        """
        fm = self._writer()
        with self._mutex:
            m = fm.update(mutate, timeout=self._tables.settings.manifest_update_timeout)
            self.install(m, fm.id, flushed)
            return m

    def refresh(self) -> Manifest:
        """Read the latest manifest version and read from it.

        :raises ClosedError: a newer writer fenced this one.
        """
        fm = self._writer()
        with self._mutex:
            m = fm.refresh()
            self.install(m, fm.id)
            return m

    def poll_step(self) -> Wait | None:
        """One round of the manifest poller thread."""
        stop = self._status.stop
        if stop.is_set():
            return None
        try:
            self.refresh()
        except (ClosedError, PermanentStoreError):
            raise  # fenced, or the store refuses for good: polling again will not help
        except ShaleError as exc:
            log.warning("manifest poll failed: %s", exc)
        self.on_polled()
        return stop, self._tables.settings.manifest_poll_interval


def _nothing() -> None:
    pass
