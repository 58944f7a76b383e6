"""``shale.Admin``: inspect and administer a database without opening it as its writer.

The official package's ``Admin`` surface, synchronous (``shale.aio.AsyncAdmin`` is the asyncio
facade): manifests and ``.compactions`` versions, one compaction, the compactor's state view,
checkpoints (create -- also from an existing checkpoint --, list, refresh, delete), sequence <->
timestamp lookups over the manifest's sequence tracker, one GC run and a compaction submission.
Beyond it: :meth:`Admin.estimate`, entries and bytes of a key range from the SST index and stats
blocks.

Invariants and why:

* **Reads write nothing.** Every ``read_*``/``list_*`` method, the lookups and the estimate only
  read (``get``, ``list``, ranged reads); they never create a directory, a manifest or a
  ``.compactions`` file, and never fence a writer or a compactor. So an Admin works with
  read-only credentials and next to a running writer.
* **Writes are only what the operation is for.** Creating, refreshing and deleting a checkpoint
  each write one manifest version through the manifest store's conditional update (SlateDB's
  admin does the same); they keep the writer's and compactor's epochs, so nobody is fenced.
* **No database is an error, not an empty one.** A method that needs the latest manifest raises
  :class:`~shale.errors.DataError` when there is none (``read_manifest()`` returns ``None``).
* **The compactor and the GC are plugins.** :meth:`run_gc_once` and :meth:`submit_compaction`
  are answered through the hooks ``shale_admin_run_gc_once`` / ``shale_admin_submit_compaction``
  (shale-gc and shale-compactor implement them); with neither installed they raise
  :class:`~shale.errors.InvalidError` naming the package. Core knows only the hooks.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast, overload
from urllib.parse import unquote, urlsplit

from shale import ids, telemetry
from shale.clock import Clock, SystemClock
from shale.engine.components import check_wal_store_arg
from shale.errors import DataError, InvalidError
from shale.fbs.compactions import STATUS_RUNNING, STATUS_SCHEDULED, STATUS_SUBMITTED
from shale.ids import Ulid
from shale.meta.clone import CloneResult
from shale.meta.compactions_store import CompactionsStore
from shale.meta.compat import check_wal_store
from shale.meta.delete import DEFAULT_IDLE_S
from shale.meta.detach import DetachResult
from shale.meta.estimate import RangeEstimate, estimate_range
from shale.meta.manifest_store import (
    ManifestStore,
    StoredManifest,
    add_checkpoint,
    check_checkpoint_lifetime,
    check_checkpoint_name,
    checkpoint_uuid,
    refresh_checkpoint,
    remove_checkpoint,
)
from shale.meta.seq_tracker import SequenceTracker
from shale.meta.union_clone import CloneSourceSpec, UnionCloneResult
from shale.metrics import MetricsRegistry
from shale.objstore.instrumented import handle_store
from shale.plugins import get_host
from shale.settings import Settings

if TYPE_CHECKING:
    from shale.db import CheckpointInfo
    from shale.fbs.compactions import Compaction, Compactions
    from shale.fbs.manifest import Checkpoint, Manifest
    from shale.objstore.protocol import ObjectStore

__all__ = [
    "Admin",
    "CloneResult",
    "CloneSourceSpec",
    "DetachResult",
    "CompactorStateView",
    "RangeEstimate",
    "UnionCloneResult",
    "VersionedCompactions",
    "VersionedManifest",
]


class VersionedManifest(NamedTuple):
    """A manifest and its version id (the official ``VersionedManifest``)."""

    id: int
    manifest: Manifest


class VersionedCompactions(NamedTuple):
    """A ``.compactions`` file and its version id (the official ``VersionedCompactions``)."""

    id: int
    compactions: Compactions


class CompactorStateView(NamedTuple):
    """The latest ``.compactions`` file (``None`` before the first compactor ran) and the latest
    manifest, read in that order -- as a compactor sees them (official ``CompactorStateView``)."""

    compactions: VersionedCompactions | None
    manifest: VersionedManifest


#: Statuses whose ``output_ssts`` SlateDB drops on decode (partial outputs of unfinished work).
_UNFINISHED = frozenset({STATUS_SUBMITTED, STATUS_SCHEDULED, STATUS_RUNNING})


def _as_read(compactions: Compactions) -> Compactions:
    """``compactions`` as SlateDB's readers see them: no ``output_ssts`` on unfinished ones."""
    if not any(c.status in _UNFINISHED and c.output_ssts for c in compactions.recent_compactions):
        return compactions
    return dataclasses.replace(
        compactions,
        recent_compactions=[
            dataclasses.replace(c, output_ssts=[]) if c.status in _UNFINISHED else c
            for c in compactions.recent_compactions
        ],
    )


def _id_range(start: int | None, end: int | None) -> tuple[int, int | None]:
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidError(f"{name} must be an int or None", value=value)
    return (0 if start is None else start), end


def _check_key(name: str, key: object) -> bytes | None:
    if key is None:
        return None
    if not isinstance(key, bytes | bytearray | memoryview):
        raise InvalidError(f"{name} must be bytes or None", type=type(key).__name__)
    return bytes(key)


def _path_arg(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip("/") or "\x00" in value:
        raise InvalidError(f"{name} must be a non-empty path", **{name: value})
    return value


def _local_or_url(url: str) -> tuple[str, str, list[str]]:
    parts = urlsplit(url)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:
        path = os.path.abspath(unquote(parts.path) if parts.scheme == "file" else url)
        return "file", "", [p for p in path.split(os.sep) if p]
    return parts.scheme.lower(), parts.netloc, [p for p in parts.path.split("/") if p]


def _common_base(a: str, b: str) -> tuple[str, str, str]:
    """The URL of the store enclosing both ``a`` and ``b`` and their paths inside it.

    :raises InvalidError: different schemes or hosts (buckets), or ``memory://`` stores.
    """
    a, b = _path_arg("source", a), _path_arg("target", b)
    (sa, na, pa), (sb, nb, pb) = _local_or_url(a), _local_or_url(b)
    if (sa, na) != (sb, nb) or sa == "memory":
        raise InvalidError(
            "a clone and its source must be in one object store (a clone records its source's "
            "path relative to the store root): open the Admin with object_store= for stores "
            "without paths (memory://), and keep both in one bucket or file system",
            source=a,
            target=b,
        )
    n = 0
    while n < min(len(pa), len(pb)) and pa[n] == pb[n]:
        n += 1
    common = "/".join(pa[:n])
    base = "/" + common if sa == "file" else f"{sa}://{na}/{common}"
    return base, "/".join(pa[n:]), "/".join(pb[n:])


def _common_base_many(paths: list[str]) -> tuple[str, list[str]]:
    """:func:`_common_base` for several paths: the enclosing store's URL and each path in it."""
    base, rel = "", []
    for other in paths[1:]:
        _common_base(other, paths[0])  # same store, and the same refusals, for every pair
    parsed = [_local_or_url(p) for p in paths]
    scheme, netloc = parsed[0][0], parsed[0][1]
    n = min(len(p[2]) for p in parsed)
    k = 0
    while k < n and all(p[2][k] == parsed[0][2][k] for p in parsed):
        k += 1
    common = "/".join(parsed[0][2][:k])
    base = "/" + common if scheme == "file" else f"{scheme}://{netloc}/{common}"
    rel = ["/".join(p[2][k:]) for p in parsed]
    return base, rel


class Admin:
    """Administer the database at ``url`` (a directory, ``file://``, ``memory://`` or any
    scheme a plugin owns), or at path ``url`` inside ``object_store``.

    :param url: where the database is; with ``object_store``, its path inside that store.
    :param settings: :class:`shale.Settings` (the manifest format version written by
        checkpoint operations, the GC's and compactor's settings).
    :param object_store: use this store (the caller keeps owning it; :meth:`close` leaves it
        open).
    :param store_options: options for the store plugin that opens ``url``.
    :param clock: the time source of checkpoint create/refresh times (default: the system
        clock; it must agree with the writers' clocks).
    :param wal_store: the database's separate WAL store (a URL, a directory or a store object
        the caller keeps owning; SlateDB's ``AdminBuilder.with_wal_object_store``): the GC and
        ``delete_db`` reach the WAL there. Without it, operations that touch the WAL follow
        the manifest's ``wal_object_store_uri`` when that is a URL.
    :param wal_store_options: options of the store plugin that opens a ``wal_store`` URL.
    :param metrics: as for :meth:`shale.Db.open` (a default registry is labelled
        ``role=admin``); a GC run through this handle records into it.

    Opening reads nothing: a missing database shows on the first call that needs it.
    Thread-safe: each call reads afresh.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        settings: Settings | None = None,
        object_store: ObjectStore | None = None,
        store_options: dict[str, Any] | None = None,
        clock: Clock | None = None,
        wal_store: str | os.PathLike[str] | ObjectStore | None = None,
        wal_store_options: dict[str, Any] | None = None,
        metrics: MetricsRegistry | bool | None = None,
    ) -> None:
        settings = Settings() if settings is None else settings
        if not isinstance(settings, Settings):
            raise InvalidError("settings must be a shale.Settings", type=type(settings).__name__)
        url = ids.location(url, "url", allow_empty=object_store is not None)
        if store_options is not None and not isinstance(store_options, dict):
            raise InvalidError("store_options must be a dict", type=type(store_options).__name__)
        wal_url, self._wal_store_options = check_wal_store_arg(wal_store, wal_store_options)
        registry = telemetry.handle_registry(metrics, url, "admin")  # checked before opening
        self.url = url
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._owns_store = object_store is None
        self._store_options = dict(store_options or {})
        if object_store is None:
            self.store: ObjectStore = get_host().open_object_store(url, store_options or {})
            self.root = ""
        else:
            self.store = object_store
            self.root = url.strip("/")
        #: the registry this handle's store requests (and a GC it runs) record into
        self.metrics_registry = registry
        self._owns_metrics = registry is not None and registry is not metrics
        self.store = handle_store(self.store, registry, settings.object_store_cache_options, url)
        fmt = settings.manifest_format_version
        self._manifests = ManifestStore(self.store, self.root, format_version=fmt)
        self._compactions = CompactionsStore(self.store, self.root)
        #: the separate WAL store given (``None``: the WAL lives in :attr:`store`, or where
        #: the manifest says: :meth:`wal_store_for`)
        self.wal_store: ObjectStore | None = None
        self._owns_wal_store = wal_url is not None
        if wal_url is not None:
            self.wal_store = get_host().open_object_store(wal_url, self._wal_store_options)
        elif wal_store is not None:
            self.wal_store = cast("ObjectStore", wal_store)

    def wal_store_for(self, m: Manifest) -> ObjectStore | None:
        """Where the WAL of the database whose latest manifest is ``m`` lives: the WAL store
        given, else the one ``m``'s ``wal_object_store_uri`` names (opened once, closed with
        the Admin), else ``None`` (the main store).

        :raises InvalidError: ``m`` records a separate WAL store that was not given and that
            is no URL (SlateDB records ``""``), or another URL than the one given.
        """
        uri = m.wal_object_store_uri
        if self.wal_store is None and uri:
            self.wal_store = get_host().open_object_store(uri, self._wal_store_options)
            self._owns_wal_store = True
            return self.wal_store
        check_wal_store(m, None if self.wal_store is None else "")
        return self.wal_store

    def __repr__(self) -> str:
        return f"<shale.Admin {self.url!r}>"

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the stores this Admin opened (not those passed in). Idempotent."""
        if self._owns_wal_store and self.wal_store is not None:
            self._owns_wal_store = False
            self.wal_store.close()
        """Close the store this Admin opened (not one passed in). Idempotent."""
        if self._owns_metrics and self.metrics_registry is not None:
            self.metrics_registry.detach()
        if self._owns_store:
            self._owns_store = False
            self.store.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- manifests -----------------------------------------------------------------------------

    def _no_database(self) -> DataError:
        return DataError(f"no database at {self.url} (no manifest found)")

    def _latest(self) -> VersionedManifest:
        latest = self._manifests.read_latest()
        if latest is None:
            raise self._no_database()
        return VersionedManifest(*latest)

    def read_manifest(self, manifest_id: int | None = None) -> VersionedManifest | None:
        """Manifest version ``manifest_id``, or the latest when ``None``; ``None`` when it does
        not exist (or there is no database).

        :raises DataError: its bytes are malformed.
        """
        if manifest_id is None:
            latest = self._manifests.read_latest()
            return None if latest is None else VersionedManifest(*latest)
        _id_range(manifest_id, None)
        if manifest_id not in self._manifests.list_ids():
            return None
        return VersionedManifest(manifest_id, self._manifests.read(manifest_id))

    def list_manifests(
        self, start: int | None = None, end: int | None = None
    ) -> list[VersionedManifest]:
        """Every manifest version with ``start <= id < end`` (``None``: unbounded), ascending."""
        lo, hi = _id_range(start, end)
        return [
            VersionedManifest(i, self._manifests.read(i))
            for i in self._manifests.list_ids()
            if i >= lo and (hi is None or i < hi)
        ]

    # -- compactions ---------------------------------------------------------------------------

    def read_compactions(self, compactions_id: int | None = None) -> VersionedCompactions | None:
        """``.compactions`` version ``compactions_id``, or the latest when ``None``; ``None``
        when it does not exist (no compactor has run yet).

        As SlateDB reads them: a compaction not yet finished (submitted, scheduled, running)
        shows no ``output_ssts`` -- the partial outputs a running compactor records are its own
        resume state (``shale compactor status`` uses them for progress)."""
        if compactions_id is None:
            latest = self._compactions.read_latest()
            return None if latest is None else VersionedCompactions(latest[0], _as_read(latest[1]))
        _id_range(compactions_id, None)
        if compactions_id not in self._compactions.list_ids():
            return None
        found = self._compactions.read(compactions_id)
        return VersionedCompactions(compactions_id, _as_read(found))

    def list_compactions(
        self, start: int | None = None, end: int | None = None
    ) -> list[VersionedCompactions]:
        """Every ``.compactions`` version with ``start <= id < end``, ascending."""
        lo, hi = _id_range(start, end)
        return [
            VersionedCompactions(i, _as_read(self._compactions.read(i)))
            for i in self._compactions.list_ids()
            if i >= lo and (hi is None or i < hi)
        ]

    def read_compaction(
        self, compaction_id: Ulid | str, compactions_id: int | None = None
    ) -> Compaction | None:
        """The compaction ``compaction_id`` (a :class:`~shale.ids.Ulid` or its text) in
        ``.compactions`` version ``compactions_id`` (default: the latest), or ``None``.

        :raises InvalidError: ``compaction_id`` is not a ULID.
        """
        if isinstance(compaction_id, str):
            try:
                compaction_id = Ulid.parse(compaction_id)
            except (ValueError, DataError, InvalidError):
                raise InvalidError("not a compaction id (ULID)", id=compaction_id) from None
        if not isinstance(compaction_id, Ulid):
            raise InvalidError("compaction_id must be a Ulid or str", type=type(compaction_id))
        found = self.read_compactions(compactions_id)
        if found is None:
            return None
        for c in found.compactions.recent_compactions:
            if c.id == compaction_id:
                return c
        return None

    def read_compactor_state_view(self) -> CompactorStateView:
        """The latest ``.compactions`` file, then the latest manifest (that order: a compaction
        the file lists is then never newer than the manifest read with it).

        :raises DataError: no database.
        """
        compactions = self.read_compactions()
        return CompactorStateView(compactions, self._latest())

    # -- checkpoints ---------------------------------------------------------------------------

    def _now_s(self) -> int:
        return self.clock.now_ms() // 1000

    def create_checkpoint(
        self,
        *,
        lifetime: float | None = None,
        name: str | None = None,
        source: uuid.UUID | str | None = None,
    ) -> CheckpointInfo:
        """Pin the latest manifest (or the version the checkpoint ``source`` pins) in a new
        checkpoint, writing one manifest version; nothing is flushed (SlateDB's
        ``create_detached_checkpoint``: what is only in a writer's WAL is not pinned).

        :param lifetime: seconds until it expires (``None``: never).
        :param name: an optional name.
        :param source: copy this existing checkpoint's pinned version instead of the latest.
        :raises InvalidError: a bad lifetime or name, or an unknown ``source``.
        :raises DataError: no database.
        """
        from shale.db import CheckpointInfo

        now_s = self._now_s()
        lifetime = check_checkpoint_lifetime(lifetime, now_s)
        check_checkpoint_name(name)
        source_id = None if source is None else checkpoint_uuid(source)
        stored = self._stored()
        made: list[Checkpoint] = []

        def mutate(m: Manifest, next_id: int) -> Manifest:
            m2, cp = add_checkpoint(
                m,
                manifest_id=next_id,
                now_s=now_s,
                lifetime_s=lifetime,
                name=name,
                source=source_id,
            )
            made[:] = [cp]
            return m2

        stored.update(mutate, timeout=self.settings.manifest_update_timeout)
        return CheckpointInfo(made[0].id, made[0].manifest_id)

    def list_checkpoints(self, name: str | None = None) -> list[Checkpoint]:
        """The checkpoints of the latest manifest (only those called ``name`` if given).

        :raises DataError: no database.
        """
        check_checkpoint_name(name)
        m = self._latest().manifest
        return [c for c in m.checkpoints if name is None or (c.name or "") == name]

    def refresh_checkpoint(
        self, checkpoint_id: uuid.UUID | str, *, lifetime: float | None = None
    ) -> None:
        """Set a checkpoint's expiry to now + ``lifetime`` (``None``: never expires).

        :raises InvalidError: an unknown or malformed id, or a bad ``lifetime``.
        :raises DataError: no database.
        """
        cid = checkpoint_uuid(checkpoint_id)
        now_s = self._now_s()
        lifetime = check_checkpoint_lifetime(lifetime, now_s)
        self._stored().update(
            lambda m, _n: refresh_checkpoint(m, cid, now_s=now_s, lifetime_s=lifetime),
            timeout=self.settings.manifest_update_timeout,
        )

    def delete_checkpoint(self, checkpoint_id: uuid.UUID | str) -> None:
        """Remove a checkpoint from the manifest.

        :raises InvalidError: an unknown or malformed id.
        :raises DataError: no database.
        """
        cid = checkpoint_uuid(checkpoint_id)
        self._stored().update(
            lambda m, _n: remove_checkpoint(m, cid),
            timeout=self.settings.manifest_update_timeout,
        )

    def _stored(self) -> StoredManifest:
        stored = StoredManifest.try_load(self._manifests)
        if stored is None:
            raise self._no_database()
        return stored

    # -- sequence numbers and time ------------------------------------------------------------

    def _tracker(self) -> SequenceTracker:
        return SequenceTracker.decode(self._latest().manifest.sequence_tracker)

    def get_timestamp_for_sequence(self, seq: int, *, round_up: bool = False) -> int | None:
        """The Unix time (seconds) the latest manifest's sequence tracker records for ``seq``;
        without an exact entry that of the next higher (``round_up``) or lower seq; ``None``
        when there is none.

        :raises DataError: no database.
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise InvalidError("seq must be an int >= 0", seq=seq)
        return self._tracker().find_ts(seq, bool(round_up))

    def get_sequence_for_timestamp(self, timestamp_s: int, *, round_up: bool = False) -> int | None:
        """The seq the tracker records at Unix time ``timestamp_s`` (seconds); without an exact
        entry that of the next later (``round_up``) or earlier one; ``None`` when there is none.

        :raises DataError: no database.
        """
        if isinstance(timestamp_s, bool) or not isinstance(timestamp_s, int):
            raise InvalidError("timestamp_s must be an int (Unix seconds)", value=timestamp_s)
        return self._tracker().find_seq(timestamp_s, bool(round_up))

    # -- estimates -----------------------------------------------------------------------------

    def estimate(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        checkpoint: uuid.UUID | str | None = None,
    ) -> RangeEstimate:
        """Estimate the entries and bytes of keys in ``[start, end)`` from the SST index and
        stats blocks of the latest manifest (or the one ``checkpoint`` pins); reads no data
        block. See :mod:`shale.meta.estimate` for what is counted.

        :raises DataError: no database, or malformed SST metadata.
        :raises InvalidError: bad bounds or an unknown checkpoint.
        """
        lo, hi = _check_key("start", start), _check_key("end", end)
        m = self._latest().manifest
        if checkpoint is not None:
            cid = checkpoint_uuid(checkpoint)
            cp = next((c for c in m.checkpoints if c.id == cid), None)
            if cp is None:
                raise InvalidError("no such checkpoint", id=str(cid))
            m = self._manifests.read(cp.manifest_id)
        if lo is not None and hi is not None and lo >= hi:
            return RangeEstimate()
        transformer = get_host().block_transformer(self.settings)
        return estimate_range(self.store, self.root, m, lo, hi, transformer=transformer)

    # -- clones and deletion -------------------------------------------------------------------

    @overload
    def clone(
        self,
        target: str,
        *,
        source: str | None = None,
        checkpoint: uuid.UUID | str | None = None,
        projection: tuple[bytes | None, bytes | None] | None = None,
        segment_filter: Callable[[bytes], bool] | None = None,
        segment_projection: Callable[[bytes], tuple[bytes | None, bytes | None]] | None = None,
    ) -> CloneResult: ...

    @overload
    def clone(
        self,
        target: str,
        *,
        sources: Sequence[str | CloneSourceSpec],
        projection: tuple[bytes | None, bytes | None] | None = None,
        segment_filter: Callable[[bytes], bool] | None = None,
        segment_projection: Callable[[bytes], tuple[bytes | None, bytes | None]] | None = None,
    ) -> UnionCloneResult: ...

    def clone(
        self,
        target: str,
        *,
        source: str | None = None,
        checkpoint: uuid.UUID | str | None = None,
        projection: tuple[bytes | None, bytes | None] | None = None,
        sources: Sequence[str | CloneSourceSpec] | None = None,
        segment_filter: Callable[[bytes], bool] | None = None,
        segment_projection: Callable[[bytes], tuple[bytes | None, bytes | None]] | None = None,
    ) -> CloneResult | UnionCloneResult:
        """Create a clone of ``source`` (default: this Admin's database) at ``target``: a
        writable database whose manifest references the source's SSTs instead of copying them
        (SlateDB's ``CloneBuilder``; steps, crash safety and refusals in
        :mod:`shale.meta.clone`). Run again after a crash, it finishes the clone.

        With ``sources``, the clone is the *union* of several databases (merging shards back
        together): each a path or a :class:`CloneSourceSpec` (path, checkpoint, projection);
        their projected key ranges must not overlap, and their WALs must hold no unflushed
        rows (:mod:`shale.meta.union_clone`). One source in ``sources`` is a plain clone.

        ``target`` and ``source`` are read like this Admin's ``url``: paths inside its
        ``object_store`` when it was given one, else URLs or directories, which must then lie
        in one store (one bucket, one file system): a clone records its source's path
        relative to the store root they share.

        :param checkpoint: clone what this existing checkpoint of the source pins (default: a
            new checkpoint of its latest manifest, expiring after 300 s).
        :param projection: ``(start, end)``: the clone holds only keys in ``[start, end)``
            (``None`` for an open end); with ``sources``, every source is narrowed to it too.
        :param segment_filter: ``prefix -> bool``, asked for each tree of each source (the
            unsegmented root tree with ``b""``): ``False`` drops the tree (SlateDB's
            ``CloneBuilder::with_segment_filter``).
        :param segment_projection: ``prefix -> (start, end)``: the range kept of that tree,
            ``None`` ends meaning the segment's edges ``[prefix, prefix++)``; intersected with
            ``projection`` (``with_segment_projection``). An exception a callback raises
            propagates, nothing written; the callbacks may be asked more than once per prefix.
        :raises InvalidError: identical or nested paths, stores that differ, no database at
            the source, an unknown checkpoint, a database at the target, a bad projection (or a
            ``segment_projection`` range outside its segment, or empty), or a projection of any
            kind while the source's WAL holds unflushed rows, or an Admin given a
            separate WAL store (clones of such a database are not supported, as in SlateDB);
            with ``sources``: both ``source``/``checkpoint`` and ``sources``, overlapping
            sources, or a source WAL holding unflushed rows. Nothing is written then.
        """
        from shale.meta.clone import create_clone

        if self.wal_store is not None:
            raise InvalidError(
                "cloning a database with a separate WAL store is not supported (its WAL would"
                " not be copied)"
            )
        if projection is not None and (not isinstance(projection, tuple) or len(projection) != 2):
            raise InvalidError("projection must be a (start, end) tuple", projection=projection)
        kwargs: dict[str, Any] = {
            "now_s": self._now_s(),
            "format_version": self.settings.manifest_format_version,
            "transformer": get_host().block_transformer(self.settings),
            "timeout": self.settings.manifest_update_timeout,
            "segment_filter": segment_filter,
            "segment_projection": segment_projection,
        }
        if sources is not None:
            if source is not None or checkpoint is not None:
                raise InvalidError("give either sources= or source=/checkpoint=, not both")
            return self._clone_union(target, sources, projection, kwargs)
        cp = None if checkpoint is None else checkpoint_uuid(checkpoint)
        kwargs.update(checkpoint=cp, projection=projection)
        if not self._owns_store:
            src = self.root if source is None else _path_arg("source", source)
            return create_clone(self.store, src, _path_arg("target", target), **kwargs)
        base, src, dst = _common_base(self.url if source is None else source, target)
        store = get_host().open_object_store(base, self._store_options)
        try:
            return create_clone(store, src, dst, **kwargs)
        finally:
            store.close()

    def _clone_union(
        self,
        target: str,
        sources: Sequence[str | CloneSourceSpec],
        projection: tuple[bytes | None, bytes | None] | None,
        kwargs: dict[str, Any],
    ) -> UnionCloneResult:
        from shale.meta.clone import create_clone
        from shale.meta.projection import intersect, key_range
        from shale.meta.union_clone import UnionSpec, create_union_clone

        if isinstance(sources, str | bytes) or not isinstance(sources, Sequence):
            raise InvalidError("sources must be a list of paths or CloneSourceSpec")
        specs = [CloneSourceSpec(s) if isinstance(s, str) else CloneSourceSpec(*s) for s in sources]
        for spec in specs:
            p = spec.projection
            if p is not None and (not isinstance(p, tuple) or len(p) != 2):
                raise InvalidError("projection must be a (start, end) tuple", projection=p)
        paths = [_path_arg("source", s.path) for s in specs]
        dst = _path_arg("target", target)
        store = self.store
        if self._owns_store and specs:
            base, rel = _common_base_many([dst, *paths])
            dst, paths = rel[0], rel[1:]
            store = get_host().open_object_store(base, self._store_options)
        try:
            if len(specs) == 1:  # SlateDB clones a single spec as a plain clone
                (spec,) = specs
                rng = None if projection is None else key_range(*projection)
                if spec.projection is not None:
                    own = key_range(*spec.projection)
                    rng = own if rng is None else intersect(own, rng)
                    if rng is None:
                        raise InvalidError("the source's projection misses the clone's")
                bounds = None
                if rng is not None:
                    bounds = (rng.start_bound.key, rng.end_bound.key)
                cp = None if spec.checkpoint is None else checkpoint_uuid(spec.checkpoint)
                r = create_clone(store, paths[0], dst, checkpoint=cp, projection=bounds, **kwargs)
                return UnionCloneResult(
                    r.path,
                    [r.source],
                    {r.source: r.source_checkpoint_id},
                    {} if r.final_checkpoint_id is None else {r.source: r.final_checkpoint_id},
                    r.manifest_id,
                    r.created,
                )
            union = [
                UnionSpec(
                    path,
                    None if s.checkpoint is None else checkpoint_uuid(s.checkpoint),
                    None if s.projection is None else key_range(*s.projection),
                )
                for path, s in zip(paths, specs, strict=True)
            ]
            rng = None if projection is None else key_range(*projection)
            return create_union_clone(store, union, dst, projection=rng, **kwargs)
        finally:
            if store is not self.store:
                store.close()

    def detach(self, *, copy: bool = True) -> DetachResult:
        """Detach this database (a clone) from the databases it was cloned from: copy the
        source SSTs it still reads into its own path, stop referencing them, and delete its
        final checkpoints in the sources, so they can be collected or deleted (steps and crash
        safety in :mod:`shale.meta.detach`). Rerun to finish an interrupted detach, or a
        source reported ``pending`` (pinned by a live checkpoint of this database).

        :param copy: ``False``: copy nothing, only release sources no longer read (what the
            garbage collector's ``detach`` option does).
        :raises DataError: no database.
        :raises InvalidError: an unfinished clone.
        """
        from shale.meta.detach import detach

        if not isinstance(copy, bool):
            raise InvalidError("copy must be a bool", copy=copy)
        return detach(
            self.store,
            self.root,
            now_s=self._now_s(),
            copy=copy,
            format_version=self.settings.manifest_format_version,
            timeout=self.settings.manifest_update_timeout,
        )

    def delete_db(
        self, confirm: bool = False, *, force: bool = False, idle: float = DEFAULT_IDLE_S
    ) -> list[str]:
        """Delete every object of this database (SlateDB's ``delete_db``); the steps, their
        order and what makes a rerun resume are in :mod:`shale.meta.delete`.

        :param confirm: must be ``True``: deleting is not undoable.
        :param force: delete even when a writer looks live or a live checkpoint pins the
            database (a clone's, a reader's).
        :param idle: seconds without a write under ``manifest/``, ``wal/``, ``compactions/``
            after which no writer is considered live.
        :returns: the object keys deleted.
        :raises InvalidError: no ``confirm``, a live writer or checkpoint (without ``force``),
            or objects that are not a database. Nothing is deleted then.
        """
        from shale.meta.delete import delete_db

        if confirm is not True:
            raise InvalidError("delete_db deletes the whole database: pass confirm=True")
        if not isinstance(force, bool):
            raise InvalidError("force must be a bool", force=force)
        if isinstance(idle, bool) or not isinstance(idle, int | float) or not idle >= 0:
            raise InvalidError("idle must be a number of seconds >= 0", idle=idle)
        latest = self._manifests.read_latest()
        wal = None if latest is None else self.wal_store_for(latest[1])
        deleted = delete_db(
            self.store,
            self.root,
            now_ms=self.clock.now_ms(),
            force=force,
            idle_s=float(idle),
            format_version=self.settings.manifest_format_version,
            timeout=self.settings.manifest_update_timeout,
        )
        if wal is not None:  # the WAL SSTs in the separate WAL store, last
            for meta in list(wal.list(ids.dir_path(self.root, "wal"))):
                wal.delete(meta.key)
                deleted.append(meta.key)
        return deleted

    # -- through plugins -----------------------------------------------------------------------

    def run_gc_once(self, options: Any = None) -> Any:
        """Run the garbage collector once (shale-gc's, through ``shale_admin_run_gc_once``).

        :param options: :class:`shale.settings.GarbageCollectorOptions` (``None``: the
            collector's defaults: every directory, files older than its default minimum age).
        :return: the collector's report (``shale_gc.GcReport``).
        :raises InvalidError: shale-gc is not installed (or is blocked).
        """
        report = get_host().admin_run_gc_once(self, options)
        if report is None:
            raise InvalidError(
                "run_gc_once needs the garbage collector: install the shale-gc package "
                "(pip install shale-gc) and make sure it is not in SHALE_DISABLED_PLUGINS"
            )
        return report

    def submit_compaction(self, spec: Any = "full") -> Compaction:
        """Submit a compaction for the running compactor to pick up, without fencing it
        (shale-compactor's, through ``shale_admin_submit_compaction``).

        :param spec: a ``shale_compactor.CompactionSpec``, its JSON text or dict, or ``"full"``
            (every L0 SST and sorted run of the root tree into one run).
        :return: the submitted compaction as the ``.compactions`` file now holds it.
        :raises InvalidError: shale-compactor is not installed (or is blocked), or the spec
            does not validate.
        :raises DataError: no database.
        """
        found = get_host().admin_submit_compaction(self, spec)
        if found is None:
            raise InvalidError(
                "submit_compaction needs the compactor: install the shale-compactor package "
                "(pip install shale-compactor) and make sure it is not in SHALE_DISABLED_PLUGINS"
            )
        return found  # type: ignore[return-value]
