"""SSTs in the object store (SlateDB's ``tablestore``): opening them through the metadata
cache, building and writing them, listing and reading WAL SSTs.

Invariants: an open :class:`SsTable` (its index and filters) is cached by SST id in a
byte-bounded cache of its own (``settings.meta_cache_bytes``; data blocks go to the shared
block cache), and an SST no manifest view references any more is evicted when a new manifest is
installed (:meth:`TableStore.forget`). Where an SST lives -- this database's ``compacted/`` or,
for a clone, a source database's -- is the :class:`SstLocator`'s business. Both caches have
locks of their own, leaves of the lock order.

The WAL may live in a store of its own (SlateDB's ``with_wal_object_store``): WAL SSTs are then
read, written and listed at the same ``<root>/wal/`` keys in :attr:`TableStore.wal_store`; SSTs
and manifests stay in :attr:`TableStore.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shale import ids
from shale.cache import BlockCache
from shale.errors import InvalidError, ShaleError
from shale.fbs.manifest import Manifest, SstView
from shale.ids import Ulid
from shale.meta import segments
from shale.meta.compat import check_wal_store
from shale.meta.locator import SstLocator
from shale.objstore import ObjectStore
from shale.objstore.cached import CachedObjectStore
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
        wal_store: ObjectStore | None = None,
        wal_store_label: str | None = None,
        wal_store_opener: Callable[[str], ObjectStore] | None = None,
        owns_wal_store: bool = False,
    ) -> None:
        self.store = store
        #: where WAL SSTs live (``store`` unless the database has a separate WAL store)
        self.wal_store: ObjectStore = store if wal_store is None else wal_store
        #: ``None``: no separate WAL store; else its URL, or ``""`` for a store object
        self.wal_store_label: str | None = None if wal_store is None else (wal_store_label or "")
        self._wal_store_opener = wal_store_opener
        self._owns_wal_store = owns_wal_store and wal_store is not None
        self.root = root
        self.settings = settings
        self.filter_policies = filter_policies
        self.transformer = transformer
        self.block_cache = block_cache
        self.codec = codec_id(settings.compression_codec)  # its library: checked at open
        #: where each SST lives (clones: the source's path)
        self.ssts = SstLocator(store, root)
        self._tables = BlockCache(settings.meta_cache_bytes)  # open SSTs by id
        #: the metadata cache: open SSTs by id (point lookups probe it, then :meth:`load`)
        self.meta_cache = self._tables

    # -- reading -------------------------------------------------------------------------

    def open(self, view: SstView) -> SsTable:
        """The open SST of a view, from the byte-bounded metadata cache (index and filter)."""
        t = self._tables.get(view.sst.id.value)
        assert t is None or isinstance(t, SsTable)
        return self.load(view) if t is None else t

    def load(self, view: SstView) -> SsTable:
        """Open the SST of a view and put it in the metadata cache (after a miss there)."""
        store, key = self.ssts.locate(view.sst.id)
        t = SsTable.open(
            store,
            key,
            policies=self.filter_policies or None,
            transformer=self.transformer,
            block_cache=self.block_cache,
        )
        self._tables.put(view.sst.id.value, t, t.meta_bytes())
        return t

    def observe(self, m: Manifest) -> None:
        """``m`` is the manifest from now on: learn its clone sources, evict SSTs it dropped."""
        self.ssts.observe(m.external_dbs)
        live = {v.sst.id.value for v in segments.all_views(m)}
        for sid in [s for s in self._tables.keys() if s not in live]:
            self._tables.remove(sid)

    def meta_cache_stats(self) -> dict[str, int]:
        return self._tables.stats()

    # -- cache controls (warm_sst / evict_cached_sst / cache_stats) ---------------------------

    @staticmethod
    def _view_of(m: Manifest, sst_id: object) -> SstView | None:
        if isinstance(sst_id, str):
            try:
                sst_id = Ulid.parse(sst_id)
            except ShaleError:
                raise InvalidError("sst_id is not a ULID", sst_id=sst_id) from None
        if not isinstance(sst_id, Ulid):
            raise InvalidError("sst_id must be a ULID (str or shale.ids.Ulid)", sst_id=sst_id)
        for view in segments.all_views(m):
            if view.sst.id == sst_id:
                return view
        return None

    def warm(self, m: Manifest, sst_id: object, targets: Sequence[object] | None) -> bool:
        """Load parts of SST ``sst_id`` into the caches (SlateDB's ``warm_sst``): targets
        ``"index"`` (open it into the metadata cache), ``"filters"``, ``"stats"``, ``"data"``
        (every data block into the block cache) or ``("data", start, end)`` (the blocks
        overlapping ``[start, end)``; ``None`` bounds are open). ``None``: all of them.

        :return: False when ``m`` does not reference the SST (a no-op, as in SlateDB).
        :raises InvalidError: an unknown target or a malformed id.
        """
        wanted: list[tuple[str, bytes | None, bytes | None]] = []
        for target in ("index", "filters", "stats", "data") if targets is None else targets:
            if target in ("index", "filters", "stats", "data"):
                wanted.append((str(target), None, None))
            elif (
                isinstance(target, tuple)
                and len(target) == 3
                and target[0] == "data"
                and all(b is None or isinstance(b, bytes) for b in target[1:])
            ):
                wanted.append(("data", target[1], target[2]))
            else:
                raise InvalidError(
                    "a cache target is 'index', 'filters', 'stats', 'data' or ('data', start, end)",
                    target=target,
                )
        view = self._view_of(m, sst_id)
        if view is None:
            return False
        table = self.open(view)
        for kind, start, end in wanted:
            if kind == "filters":
                table.may_contain(b"")
            elif kind == "stats":
                _ = table.stats
            elif kind == "data":
                for _row in table.iter_rows(start, end):  # reads (and caches) those blocks
                    pass
        return True

    def evict(self, m: Manifest, sst_id: object) -> bool:
        """Drop SST ``sst_id``'s data blocks from the block cache and its index and filter
        from the metadata cache (SlateDB's ``evict_cached_sst``; best effort).

        :return: False when ``m`` does not reference the SST (a no-op).
        """
        view = self._view_of(m, sst_id)
        if view is None:
            return False
        _store, key = self.ssts.locate(view.sst.id)
        for k in self.block_cache.keys():
            if isinstance(k, tuple) and len(k) == 2 and k[0] == key:
                self.block_cache.remove(k)
        self._tables.remove(view.sst.id.value)
        return True

    def cache_stats(self) -> dict[str, dict[str, float]]:
        """The block cache's two parts, ``"data"`` (decoded blocks) and ``"metadata"`` (open
        SSTs' index and filters): each :meth:`BlockCache.stats` plus ``hit_rate`` (hits /
        lookups, 0.0 before any lookup); and ``"disk"``, the object-store disk cache's
        counters when there is one."""
        out: dict[str, dict[str, float]] = {}
        for name, cache in (("data", self.block_cache), ("metadata", self._tables)):
            st: dict[str, float] = dict(cache.stats())
            lookups = st["hits"] + st["misses"]
            st["hit_rate"] = st["hits"] / lookups if lookups else 0.0
            out[name] = st
        if isinstance(self.store, CachedObjectStore):
            out["disk"] = dict(self.store.cache_metrics())
        return out

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

    def check_wal_store(self, m: Manifest) -> None:
        """Follow ``m``'s ``wal_object_store_uri`` when no WAL store was given and the URI is
        a URL (one shale can open); then refuse a WAL-store configuration ``m`` contradicts
        (SlateDB's ``WalStoreReconfiguration``).

        :raises InvalidError: ``m`` records a separate WAL store and none was given (or another
            URL was given); a recorded URL no plugin can open.
        """
        uri = m.wal_object_store_uri
        if uri and self.wal_store_label is None and self._wal_store_opener is not None:
            self.wal_store = self._wal_store_opener(uri)
            self.wal_store_label = uri
            self._owns_wal_store = True
        check_wal_store(m, self.wal_store_label)

    def close_wal_store(self) -> None:
        """Close the WAL store if it was opened for this database (from a URL)."""
        if self._owns_wal_store:
            self._owns_wal_store = False
            self.wal_store.close()

    def list_wal_ids(self) -> list[int]:
        """The ids of the WAL SSTs in the store, ascending."""
        out = []
        for meta in self.wal_store.list(ids.dir_path(self.root, "wal")):
            n = ids.parse_numbered(meta.key, ".sst")
            if n is not None:
                out.append(n)
        out.sort()
        return out

    def fetch_wal(self, wal_id: int) -> bytes:
        """The stored bytes of WAL SST ``wal_id`` (empty for a fence object).

        :raises ObjectNotFound: it is gone.
        """
        return self.wal_store.get(ids.wal_path(self.root, wal_id))

    def decode_wal(self, data: bytes) -> list[list[tuple]] | None:  # type: ignore[type-arg]
        """The rows of WAL SST bytes (:meth:`fetch_wal`) one list per data block, in stored
        order; ``None`` for a fence object (empty)."""
        if not data:
            return None
        return SsTable.from_bytes(data, transformer=self.transformer).block_rows()

    def read_wal(self, wal_id: int) -> list[tuple] | None:  # type: ignore[type-arg]
        """The rows of WAL SST ``wal_id`` in stored order; ``None`` for a fence object (empty).

        :raises ObjectNotFound: it is gone.
        """
        blocks = self.decode_wal(self.fetch_wal(wal_id))
        return None if blocks is None else [row for rows in blocks for row in rows]
