"""SSTs in the object store (SlateDB's ``tablestore``): opening them through the metadata
cache, building and writing them, listing and reading WAL SSTs.

Invariants: an open :class:`SsTable` (its index and filters) is cached by SST id in a
byte-bounded cache of its own (``settings.meta_cache_bytes``; data blocks go to the shared
block cache), and an SST no manifest view references any more is evicted when a new manifest is
installed (:meth:`TableStore.forget`). Where an SST lives -- this database's ``compacted/`` or,
for a clone, a source database's -- is the :class:`SstLocator`'s business. Both caches have
locks of their own, leaves of the lock order.
"""

from __future__ import annotations

from typing import Any

from shale import ids
from shale.cache import BlockCache
from shale.fbs.manifest import Manifest, SstView
from shale.meta import segments
from shale.meta.locator import SstLocator
from shale.objstore import ObjectStore
from shale.settings import Settings
from shale.sst import SsTable, SstBuilder
from shale.sst.compression import codec_id


class TableStore:
    """The SSTs of one database."""

    def __init__(
        self,
        store: ObjectStore,
        root: str,
        settings: Settings,
        *,
        filter_policies: list[Any],
        transformer: Any,
        block_cache: BlockCache,
    ) -> None:
        self.store = store
        self.root = root
        self.settings = settings
        self.filter_policies = filter_policies
        self.transformer = transformer
        self.block_cache = block_cache
        self.codec = codec_id(settings.compression_codec)  # its library: checked at open
        #: where each SST lives (clones: the source's path)
        self.ssts = SstLocator(store, root)
        self._tables = BlockCache(settings.meta_cache_bytes)  # open SSTs by id

    # -- reading -------------------------------------------------------------------------

    def open(self, view: SstView) -> SsTable:
        """The open SST of a view, from the byte-bounded metadata cache (index and filter)."""
        sid = view.sst.id.value
        t = self._tables.get(sid)
        assert t is None or isinstance(t, SsTable)
        if t is None:
            store, key = self.ssts.locate(view.sst.id)
            t = SsTable.open(
                store,
                key,
                policies=self.filter_policies or None,
                transformer=self.transformer,
                block_cache=self.block_cache,
            )
            self._tables.put(sid, t, t.meta_bytes())
        return t

    def observe(self, m: Manifest) -> None:
        """``m`` is the manifest from now on: learn its clone sources, evict SSTs it dropped."""
        self.ssts.observe(m.external_dbs)
        live = {v.sst.id.value for v in segments.all_views(m)}
        for sid in [s for s in self._tables.keys() if s not in live]:
            self._tables.remove(sid)

    def meta_cache_stats(self) -> dict[str, int]:
        return self._tables.stats()

    # -- writing -------------------------------------------------------------------------

    def table_builder(self) -> SstBuilder:
        """A builder of an L0 (or compacted) SST with this database's format settings."""
        s = self.settings
        return SstBuilder(
            block_size=s.block_size,
            compression=self.codec,
            filter_policies=self.filter_policies,
            min_filter_keys=s.min_filter_keys,
            transformer=self.transformer,
        )

    # -- the WAL -------------------------------------------------------------------------

    def list_wal_ids(self) -> list[int]:
        """The ids of the WAL SSTs in the store, ascending."""
        out = []
        for meta in self.store.list(ids.dir_path(self.root, "wal")):
            n = ids.parse_numbered(meta.key, ".sst")
            if n is not None:
                out.append(n)
        out.sort()
        return out

    def read_wal(self, wal_id: int) -> list[tuple] | None:  # type: ignore[type-arg]
        """The rows of WAL SST ``wal_id`` in seq order; ``None`` for a fence object (empty).

        :raises ObjectNotFound: it is gone.
        """
        data = self.store.get(ids.wal_path(self.root, wal_id))
        if not data:
            return None
        return SsTable.from_bytes(data, transformer=self.transformer).rows()
