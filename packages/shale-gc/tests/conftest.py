"""Fixtures for shale-gc's tests: a hand-built database in a MemoryStore on a manual clock.

:class:`Built` writes real files -- SSTs from :class:`shale.sst.SstBuilder`, manifests through
:mod:`shale.meta.manifest_store`, ``.compactions`` files through :mod:`shale.fbs.compactions` --
with ``last_modified`` and ULIDs taken from one manual clock, so tests age files by advancing
the clock instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shale.clock import ManualClock
from shale.fbs.compactions import Compaction, Compactions, encode_compactions
from shale.fbs.manifest import CompactedSst, Manifest, SortedRun, SstView
from shale.ids import Ulid, compacted_path, compactions_path, wal_path
from shale.meta.manifest_store import ManifestStore, StoredManifest, add_checkpoint
from shale.objstore.memory import MemoryStore
from shale.sst import SstBuilder

#: The manual clock's start: 2023-11-14T22:13:20Z, in ms.
T0_MS = 1_700_000_000_000
ROOT = "db"


class Built:
    """A database assembled file by file. ``clock`` drives both ``last_modified`` and ULIDs."""

    def __init__(self, store: MemoryStore, clock: ManualClock, root: str = ROOT) -> None:
        self.store = store
        self.clock = clock
        self.root = root
        self.ms = ManifestStore(store, root)
        self.stored = StoredManifest.create_or_load(self.ms)
        self.rand = random.Random(7)
        self._compactions_id = 0

    # -- time -------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.clock.advance(int(seconds * 1000))

    @property
    def now_s(self) -> float:
        return self.clock.now_ms() / 1000

    # -- files ------------------------------------------------------------------------------

    def sst(self, *, ts_ms: int | None = None, key: bytes = b"k") -> CompactedSst:
        """Upload a real one-row SST at ``compacted/<ULID>.sst``; not referenced by anything."""
        sst_id = Ulid.new(self.clock.now_ms() if ts_ms is None else ts_ms, self.rand)
        b = SstBuilder(filter_policies=[])
        b.add_rows([(key, 1, 0, b"v-" + key, None, 1)])
        self.store.put(compacted_path(self.root, sst_id), b.finish())
        return CompactedSst(sst_id, b.info)

    @staticmethod
    def view(sst: CompactedSst) -> SstView:
        return SstView(sst.id, sst)

    def wal(self, wal_id: int, *, empty: bool = False) -> str:
        """Upload ``wal/<id>.sst`` (a zero-length fence object when ``empty``)."""
        key = wal_path(self.root, wal_id)
        if empty:
            self.store.put(key, b"")
        else:
            b = SstBuilder(wal=True)
            b.add_rows([(b"w%d" % wal_id, wal_id, 0, b"x", None, 1)])
            self.store.put(key, b.finish())
        return key

    def update(self, **changes: Any) -> int:
        """Write the next manifest version with ``changes``; return its id."""
        self.stored.update(lambda m, _n: dataclasses.replace(m, **changes))
        return self.stored.id

    def add_l0(self, *ssts: CompactedSst) -> int:
        """Publish ``ssts`` as the newest L0s (newest first in the list)."""
        views = [self.view(s) for s in ssts]
        self.stored.update(lambda m, _n: dataclasses.replace(m, l0=views + list(m.l0)))
        return self.stored.id

    def set_runs(self, *runs: tuple[int, list[CompactedSst]], drop_l0: bool = True) -> int:
        """Replace the sorted runs (and, with ``drop_l0``, clear L0 recording the newest L0
        view as last compacted)."""

        def mutate(m: Manifest, _n: int) -> Manifest:
            sr = [SortedRun(rid, [self.view(s) for s in ssts]) for rid, ssts in runs]
            changes: dict[str, Any] = {"compacted": sr}
            if drop_l0 and m.l0:
                changes["l0"] = []
                changes["last_compacted_l0_view_id"] = m.l0[0].id
            return dataclasses.replace(m, **changes)

        self.stored.update(mutate)
        return self.stored.id

    def checkpoint(
        self, *, lifetime_s: float | None = None, source: uuid.UUID | None = None
    ) -> tuple[uuid.UUID, int]:
        """Add a checkpoint pinning the version being written (or ``source``'s)."""
        made: list[Any] = []

        def mutate(m: Manifest, next_id: int) -> Manifest:
            m2, cp = add_checkpoint(
                m,
                manifest_id=next_id,
                now_s=int(self.now_s),
                lifetime_s=lifetime_s,
                source=source,
            )
            made[:] = [cp]
            return m2

        self.stored.update(mutate)
        return made[0].id, made[0].manifest_id

    def delete_checkpoint(self, cid: uuid.UUID) -> int:
        self.stored.update(
            lambda m, _n: dataclasses.replace(
                m, checkpoints=[c for c in m.checkpoints if c.id != cid]
            )
        )
        return self.stored.id

    def compactions(self, *jobs: Compaction, epoch: int = 0) -> int:
        """Write the next ``.compactions`` version holding ``jobs``; return its id."""
        self._compactions_id += 1
        data = encode_compactions(Compactions(epoch, list(jobs)))
        self.store.put_if_absent(compactions_path(self.root, self._compactions_id), data)
        return self._compactions_id

    def compaction_id(self, ts_ms: int | None = None) -> Ulid:
        return Ulid.new(self.clock.now_ms() if ts_ms is None else ts_ms, self.rand)

    def keys(self, directory: str) -> list[str]:
        return sorted(m.key for m in self.store.list(f"{self.root}/{directory}/"))

    def refresh(self) -> Manifest:
        return self.stored.refresh()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0_MS)


@pytest.fixture
def built(clock: ManualClock) -> Built:
    store = MemoryStore(clock=lambda: clock.now_ms() / 1000)
    return Built(store, clock)


@pytest.fixture
def host_plugins() -> Iterator[list[object]]:
    """Register test plugins on the process-wide host; unregistered afterwards."""
    from shale.plugins import get_host

    host = get_host()
    added: list[object] = []
    yield added
    for p in added:
        host.unregister(p)


def register(host_plugins: list[object], plugin: object) -> None:
    from shale.plugins import get_host

    get_host().register(plugin)
    host_plugins.append(plugin)


@pytest.fixture
def add_plugin(host_plugins: list[object]) -> Any:
    """``add_plugin(obj)`` registers ``obj`` (with ``@shale.hookimpl`` methods) for the test."""
    return lambda plugin: register(host_plugins, plugin)
