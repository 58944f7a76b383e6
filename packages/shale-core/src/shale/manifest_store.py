"""The manifest store: sequenced manifest versions, the update loop and epoch fencing.

This is shale's twin of SlateDB's ``manifest/store.rs`` and ``slatedb-txn-obj`` (FORMAT.md
10.1, 10.2, 10.5). Three layers:

- :class:`ManifestStore` reads and writes numbered versions ``manifest/<20-digit id>.manifest``.
- :class:`StoredManifest` is one client's view (the latest id it knows and that manifest) plus
  the reload-and-retry update loop.
- :class:`FenceableManifest` adds an epoch: the writer (``writer_epoch``) or the compactor
  (``compactor_epoch``) claims ``stored + 1`` at startup, and every later refresh and update
  checks that no newer client has claimed a higher one.

Invariants, and why they hold:

- **Versions are immutable and written with create-if-absent.** Version ``N+1`` is written
  with ``put_if_absent``; of two clients that both read version ``N``, exactly one creates
  ``N+1``, the other gets :class:`ManifestConflict`, reloads the latest version and re-applies
  its change to it. No update is lost and no version is overwritten. Only GC deletes versions.
- **Updates are mutations, not snapshots.** :meth:`StoredManifest.update` takes a callback
  ``mutate(current, next_id) -> Manifest | None`` that is re-applied to every reloaded version,
  so a writer never writes back a stale copy of state the compactor owns (and vice versa).
  ``next_id`` is the id of the version the attempt writes (a new checkpoint pins it, FORMAT.md
  8); returning ``None`` means "nothing to do" and writes nothing. The callback may run several
  times: it must be a pure function of its arguments.
- **Epochs only grow.** An update that would lower ``writer_epoch`` or ``compactor_epoch`` is a
  bug and raises :class:`~shale.errors.InternalError`; a fenceable update may not change either
  epoch at all.
- **A fenced client never writes.** :class:`FenceableManifest` checks the stored epoch before
  every attempt, including each attempt after a reload; once fenced it stays fenced and raises
  ``ClosedError(reason="fenced")`` without touching the store.
- **GC boundary** (FORMAT.md 10.5, RFC-0026). ``gc/manifest.boundary`` holds an id *B*:
  versions ``<= B`` may be deleted by GC, which advances *B* before deleting. A create of an id
  ``<= B`` could resurrect a deleted version (a stale client writing ``N+1`` after GC removed
  it), so such a write counts as a conflict, and a "latest" candidate ``<= B`` is never
  returned. A missing file means ``B = 0``. A GC that deletes manifests must call
  :meth:`ManifestStore.advance_boundary` first; the probe-forward read below relies on it.
- **Reading the latest version** LISTs, takes the maximum id and GETs it; if that object
  vanished (GC race) it LISTs again, a bounded number of times. A store that has already seen
  version ``N`` first probes ``N+1, N+2, ...`` (at most :data:`MAX_PROBES` GETs) and stops at
  the first missing id, because ids are assigned consecutively.

Object-store errors other than the conflicts above (transient I/O, permissions) propagate to
the caller unchanged. A transient error on a manifest PUT is ambiguous: the version may or may
not have been created; the next update finds out (it conflicts and reloads).

Thread safety: a :class:`ManifestStore` may be shared by threads (its cache is locked);
:class:`StoredManifest` and :class:`FenceableManifest` belong to one owner at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable

from shale.errors import (
    ClosedError,
    CloseReason,
    DataError,
    InternalError,
    InvalidError,
    ShaleError,
    UnavailableError,
)
from shale.fbs.manifest import (
    MANIFEST_VERSIONS,
    Checkpoint,
    Manifest,
    decode_manifest,
    encode_manifest,
)
from shale.ids import dir_path, format_id, manifest_path, parse_numbered
from shale.objstore import ObjectAlreadyExists, ObjectNotFound, ObjectStore

__all__ = [
    "MAX_PROBES",
    "MAX_LIST_RETRIES",
    "ROLE_COMPACTOR",
    "ROLE_WRITER",
    "FenceableManifest",
    "ManifestConflict",
    "ManifestStore",
    "Mutation",
    "StoredManifest",
    "add_checkpoint",
    "find_checkpoint",
    "refresh_checkpoint",
    "remove_checkpoint",
    "remove_expired_checkpoints",
]

logger = logging.getLogger(__name__)

#: How many successor ids a cached read probes with GET before falling back to LIST.
MAX_PROBES = 4
#: How many times :meth:`ManifestStore.read_latest` re-LISTs when the listed latest vanished.
MAX_LIST_RETRIES = 10
#: The default time budget of an update loop, seconds (SlateDB ``manifest_update_timeout``).
DEFAULT_UPDATE_TIMEOUT_S = 300.0

ROLE_WRITER = "writer"
ROLE_COMPACTOR = "compactor"
_EPOCH_FIELD = {ROLE_WRITER: "writer_epoch", ROLE_COMPACTOR: "compactor_epoch"}

_SUFFIX = ".manifest"

#: ``mutate(current, next_id)``: the new manifest to write as version ``next_id``, or ``None``
#: when there is nothing to do. Re-applied to the reloaded manifest after every conflict.
Mutation = Callable[[Manifest, int], "Manifest | None"]


class ManifestConflict(ShaleError):
    """Internal: the manifest id we tried to create exists (another client won the race), or
    lies at or below the GC boundary. The update loop reloads and retries; it never reaches
    users."""

    kind = "conflict"


class ManifestStore:
    """Reads and writes the numbered manifest versions of the database at ``root``.

    :param store: the object store holding the database.
    :param root: the database path inside the store (``""`` for the store's root).
    :param format_version: the manifest wire version written (2 = SlateDB 0.17.0's bytes,
        1 = readable by SlateDB <= 0.12.1). Both versions are always read.
    :param check_boundary: honour ``gc/manifest.boundary`` (FORMAT.md 10.5). One extra small
        GET per write and per :meth:`read_latest`; turn off only for stores no GC touches.
    :raises InvalidError: an unknown ``format_version``.
    """

    def __init__(
        self,
        store: ObjectStore,
        root: str,
        *,
        format_version: int = 2,
        check_boundary: bool = True,
    ) -> None:
        if format_version not in MANIFEST_VERSIONS:
            raise InvalidError(
                "unsupported manifest format version",
                format_version=format_version,
                supported=list(MANIFEST_VERSIONS),
            )
        self.store = store
        self.root = root
        self.format_version = format_version
        self.check_boundary = check_boundary
        self._dir = dir_path(root, "manifest")
        self._boundary_key = dir_path(root, "gc") + "manifest.boundary"
        self._lock = threading.Lock()
        # The newest (id, bytes) this store has read or written: the probe-forward start.
        self._latest: tuple[int, bytes] | None = None

    def __repr__(self) -> str:
        return f"ManifestStore(root={self.root!r}, format_version={self.format_version})"

    # -- paths and listing --------------------------------------------------------------------

    def path(self, manifest_id: int) -> str:
        """The object key of version ``manifest_id``."""
        return manifest_path(self.root, manifest_id)

    def _parse(self, key: str) -> int | None:
        """The id of a canonical manifest key directly in our directory, else ``None``."""
        name = key[len(self._dir) :]
        if "/" in name:
            return None
        n = parse_numbered(name, _SUFFIX)
        if n is None or name != format_id(n) + _SUFFIX:
            return None
        return n

    def list_ids(self) -> list[int]:
        """The ids of every manifest version present, ascending.

        Objects in ``manifest/`` whose names are not canonical ``<20 digits>.manifest`` (temp
        files, other tools' files, sub-directories) are ignored.
        """
        ids = []
        for meta in self.store.list(self._dir):
            n = self._parse(meta.key)
            if n is None:
                logger.debug("ignoring unknown object in manifest dir key=%s", meta.key)
                continue
            ids.append(n)
        ids.sort()
        return ids

    def exists(self) -> bool:
        """Whether any manifest version exists (the database has been created)."""
        return any(self._parse(meta.key) is not None for meta in self.store.list(self._dir))

    # -- reads --------------------------------------------------------------------------------

    def _try_get(self, manifest_id: int) -> bytes | None:
        try:
            return self.store.get(self.path(manifest_id))
        except ObjectNotFound:
            return None

    def _remember(self, manifest_id: int, data: bytes) -> None:
        with self._lock:
            if self._latest is None or manifest_id > self._latest[0]:
                self._latest = (manifest_id, data)

    def _forget(self, manifest_id: int | None = None) -> None:
        """Drop the cached latest (only if it is ``manifest_id``, when given)."""
        with self._lock:
            if self._latest is not None and (manifest_id is None or self._latest[0] == manifest_id):
                self._latest = None

    def _decode(self, manifest_id: int, data: bytes) -> Manifest:
        try:
            return decode_manifest(data)[1]
        except DataError as exc:
            raise DataError(
                "corrupt manifest", manifest_id=manifest_id, path=self.path(manifest_id)
            ) from exc

    def read(self, manifest_id: int) -> Manifest:
        """Version ``manifest_id``.

        :raises ObjectNotFound: it does not exist (a :class:`~shale.errors.DataError`).
        :raises DataError: its bytes are malformed.
        """
        return self._decode(manifest_id, self.store.get(self.path(manifest_id)))

    def _probe_forward(self) -> tuple[int, bytes] | None:
        """From the cached latest, GET successors until one is missing.

        ``None`` when there is no cache or :data:`MAX_PROBES` successors all existed.
        """
        with self._lock:
            cached = self._latest
        if cached is None:
            return None
        manifest_id, data = cached
        for _ in range(MAX_PROBES):
            nxt = self._try_get(manifest_id + 1)
            if nxt is None:
                return manifest_id, data
            manifest_id, data = manifest_id + 1, nxt
            self._remember(manifest_id, data)
        logger.debug("manifest probe limit reached; listing last_seen_id=%d", manifest_id)
        return None

    def _list_latest(self) -> tuple[int, bytes] | None:
        """LIST, GET the max id; LIST again if it vanished in between (GC race)."""
        for attempt in range(MAX_LIST_RETRIES):
            ids = self.list_ids()
            if not ids:
                self._forget()
                return None
            top = ids[-1]
            with self._lock:
                cached = self._latest
            data = cached[1] if cached is not None and cached[0] == top else self._try_get(top)
            if data is not None:
                self._remember(top, data)
                return top, data
            logger.warning(
                "listed manifest missing on read, listing again manifest_id=%d attempt=%d",
                top,
                attempt + 1,
            )
        raise UnavailableError(
            "the latest manifest kept vanishing between LIST and GET",
            root=self.root,
            attempts=MAX_LIST_RETRIES,
        )

    def read_latest(self) -> tuple[int, Manifest] | None:
        """The newest version as ``(id, manifest)``, or ``None`` if no manifest exists.

        Probes forward from the newest id this store has seen, otherwise LISTs (FORMAT.md
        10.1); a candidate at or below the GC boundary is discarded and the read repeated.

        :raises DataError: the newest version is malformed, or every candidate lies at or
            below the GC boundary.
        :raises UnavailableError: the listed newest version vanished on every attempt.
        """
        for _ in range(MAX_LIST_RETRIES):
            found = self._probe_forward() or self._list_latest()
            if found is None:
                return None
            manifest_id, data = found
            if manifest_id > self.read_boundary():
                return manifest_id, self._decode(manifest_id, data)
            logger.warning("latest manifest candidate behind GC boundary id=%d", manifest_id)
            self._forget(manifest_id)
        raise DataError("no manifest above the GC boundary", root=self.root)

    # -- writes -------------------------------------------------------------------------------

    def try_write(self, manifest_id: int, manifest: Manifest) -> None:
        """Create version ``manifest_id`` atomically, only if absent.

        :raises ManifestConflict: the id is taken, or is at or below the GC boundary (the
            object was created but must not be used: it may shadow a deleted version).
        :raises InvalidError: ``manifest_id`` is not a positive u64, or the manifest cannot be
            encoded in :attr:`format_version`.
        """
        if isinstance(manifest_id, bool) or not isinstance(manifest_id, int) or manifest_id < 1:
            raise InvalidError("manifest ids start at 1", manifest_id=manifest_id)
        data = encode_manifest(manifest, self.format_version)
        try:
            self.store.put_if_absent(self.path(manifest_id), data)
        except ObjectAlreadyExists:
            raise ManifestConflict("manifest version exists", manifest_id=manifest_id) from None
        boundary = self.read_boundary()
        if manifest_id <= boundary:
            logger.warning(
                "wrote a manifest at or below the GC boundary id=%d boundary=%d",
                manifest_id,
                boundary,
            )
            raise ManifestConflict(
                "manifest id is behind the GC boundary", manifest_id=manifest_id, boundary=boundary
            )
        self._remember(manifest_id, data)
        logger.debug("wrote manifest id=%d bytes=%d", manifest_id, len(data))

    # -- GC boundary --------------------------------------------------------------------------

    def _get_boundary(self) -> tuple[int, str | None]:
        """``(boundary, etag)``; ``(0, None)`` if the file is absent."""
        try:
            etag = self.store.head(self._boundary_key).etag
            data = self.store.get(self._boundary_key)
        except ObjectNotFound:
            return 0, None
        return self._parse_boundary(data), etag

    def _parse_boundary(self, data: bytes) -> int:
        try:
            text = data.decode("ascii").strip()
        except UnicodeDecodeError:
            text = ""
        if not text.isdigit():
            raise DataError("malformed GC boundary file", path=self._boundary_key)
        return int(text)

    def read_boundary(self) -> int:
        """The GC boundary *B* (versions ``<= B`` may be deleted); 0 if absent or unchecked.

        :raises DataError: the boundary file is not a decimal integer.
        """
        if not self.check_boundary:
            return 0
        try:
            data = self.store.get(self._boundary_key)
        except ObjectNotFound:
            return 0
        return self._parse_boundary(data)

    def advance_boundary(self, boundary: int) -> None:
        """Raise the GC boundary to ``boundary`` (never lowers it). GC calls this before it
        deletes versions ``<= boundary``; it must never pass the latest version.

        Conditional PUTs (create when absent, else by etag) make concurrent advances safe.
        """
        if isinstance(boundary, bool) or not isinstance(boundary, int) or boundary < 0:
            raise InvalidError("boundary must be a non-negative int", boundary=boundary)
        while True:
            current, etag = self._get_boundary()  # etag read before the value: see below
            if current >= boundary:
                return
            data = str(boundary).encode("ascii")
            try:
                # An etag taken before the GET is at most as new as the value we compared, so
                # a concurrent change makes this PUT fail instead of lowering the boundary.
                if etag is None:
                    self.store.put_if_absent(self._boundary_key, data)
                else:
                    self.store.put_if_match(self._boundary_key, data, etag)
            except ObjectAlreadyExists:
                continue
            with self._lock:
                if self._latest is not None and self._latest[0] <= boundary:
                    self._latest = None
            return


def _check_epochs_not_lowered(current: Manifest, new: Manifest) -> None:
    for name in ("writer_epoch", "compactor_epoch"):
        if getattr(new, name) < getattr(current, name):
            raise InternalError(
                "a manifest update would lower an epoch",
                field=name,
                current=getattr(current, name),
                new=getattr(new, name),
            )


class StoredManifest:
    """One client's view of the manifest: the latest version it knows and the update loop.

    :ivar id: the id of :attr:`manifest`.
    :ivar manifest: the newest version this client has read or written.
    """

    def __init__(self, ms: ManifestStore, manifest_id: int, manifest: Manifest) -> None:
        self.ms = ms
        self.id = manifest_id
        self.manifest = manifest

    def __repr__(self) -> str:
        return f"StoredManifest(id={self.id}, root={self.ms.root!r})"

    @classmethod
    def try_load(cls, ms: ManifestStore) -> StoredManifest | None:
        """The latest version, or ``None`` if the database has no manifest."""
        latest = ms.read_latest()
        return None if latest is None else cls(ms, latest[0], latest[1])

    @classmethod
    def load(cls, ms: ManifestStore) -> StoredManifest:
        """The latest version. :raises DataError: no manifest exists."""
        stored = cls.try_load(ms)
        if stored is None:
            raise DataError("no manifest found", root=ms.root)
        return stored

    @classmethod
    def create_or_load(cls, ms: ManifestStore, initial: Manifest | None = None) -> StoredManifest:
        """Load the latest version, or create version 1 (``initial``, default
        :meth:`Manifest.initial`) when none exists. Racing creators agree on one version 1.
        """
        stored = cls.try_load(ms)
        if stored is not None:
            return stored
        manifest = Manifest.initial() if initial is None else initial
        try:
            ms.try_write(1, manifest)
        except ManifestConflict:
            logger.debug("manifest 1 created concurrently; loading it root=%s", ms.root)
            return cls.load(ms)
        logger.info("created manifest 1 root=%s", ms.root)
        return cls(ms, 1, manifest)

    def refresh(self) -> Manifest:
        """Reload the latest version. :raises DataError: no manifest exists any more."""
        latest = self.ms.read_latest()
        if latest is None:
            raise DataError("manifest disappeared", root=self.ms.root)
        self.id, self.manifest = latest
        return self.manifest

    def update(
        self,
        mutate: Mutation,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> Manifest:
        """Apply ``mutate`` and write the result as the next version, retrying on conflicts.

        Each attempt calls ``mutate(self.manifest, self.id + 1)``. ``None`` ends the loop
        without writing; otherwise the result is created as version ``self.id + 1``. When that
        id is taken the latest version is reloaded and ``mutate`` re-applied to it.

        :param mutate: see :data:`Mutation`; may run several times.
        :param timeout: seconds (per ``clock``) after which a still-conflicting loop gives up.
        :returns: the manifest now current (the written one, or the unchanged current one).
        :raises UnavailableError: still conflicting after ``timeout``.
        :raises InternalError: ``mutate`` returned something else than a ``Manifest`` or
            ``None``, or lowered an epoch.
        """
        return self._update(mutate, None, timeout, clock)

    def _update(
        self,
        mutate: Mutation,
        check: Callable[[Manifest], None] | None,
        timeout: float,
        clock: Callable[[], float],
    ) -> Manifest:
        deadline = clock() + timeout
        attempts = 0
        while True:
            attempts += 1
            if check is not None:
                check(self.manifest)
            current, next_id = self.manifest, self.id + 1
            new = mutate(current, next_id)
            if new is None:
                return current
            if not isinstance(new, Manifest):
                raise InternalError(
                    "manifest mutation must return a Manifest or None", got=type(new).__name__
                )
            _check_epochs_not_lowered(current, new)
            try:
                self.ms.try_write(next_id, new)
            except ManifestConflict:
                if clock() >= deadline:
                    raise UnavailableError(
                        "manifest update timed out", timeout=timeout, attempts=attempts
                    ) from None
                logger.debug("manifest conflict; reloading id=%d attempt=%d", next_id, attempts)
                self.refresh()
                continue
            self.id, self.manifest = next_id, new
            return new


class FenceableManifest:
    """A :class:`StoredManifest` owned by one epoch of a role (FORMAT.md 10.2).

    Make one with :meth:`init_writer` or :meth:`init_compactor`. The role's epoch field in the
    stored manifest must equal :attr:`epoch`: larger means a newer client took over (this one
    is fenced), smaller is impossible (an invariant is broken).

    :ivar epoch: the epoch this client claimed.
    :ivar role: ``"writer"`` or ``"compactor"``.
    """

    def __init__(self, stored: StoredManifest, epoch: int, role: str) -> None:
        if role not in _EPOCH_FIELD:
            raise InvalidError("unknown fencing role", role=role)
        self.stored = stored
        self.epoch = epoch
        self.role = role
        self._field = _EPOCH_FIELD[role]
        self._fenced = False

    def __repr__(self) -> str:
        return f"FenceableManifest(role={self.role!r}, epoch={self.epoch}, id={self.stored.id})"

    @classmethod
    def _init(
        cls,
        stored: StoredManifest,
        role: str,
        timeout: float,
        clock: Callable[[], float],
    ) -> FenceableManifest:
        field = _EPOCH_FIELD[role]
        claimed: list[int] = []

        def bump(m: Manifest, _next_id: int) -> Manifest:
            epoch = getattr(m, field) + 1
            claimed.append(epoch)
            return dataclasses.replace(m, **{field: epoch})

        stored.update(bump, timeout=timeout, clock=clock)
        logger.info("fenced manifest role=%s epoch=%d manifest_id=%d", role, claimed[-1], stored.id)
        return cls(stored, claimed[-1], role)

    @classmethod
    def init_writer(
        cls,
        stored: StoredManifest,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> FenceableManifest:
        """Claim ``writer_epoch = stored + 1`` by writing a new version (retried on conflicts).

        Any older writer is fenced from then on. ``stored`` is taken over: use the result.

        :raises UnavailableError: still conflicting after ``timeout``.
        """
        return cls._init(stored, ROLE_WRITER, timeout, clock)

    @classmethod
    def init_compactor(
        cls,
        stored: StoredManifest,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> FenceableManifest:
        """Claim ``compactor_epoch = stored + 1``, like :meth:`init_writer`."""
        return cls._init(stored, ROLE_COMPACTOR, timeout, clock)

    @property
    def manifest(self) -> Manifest:
        """The newest version this client knows."""
        return self.stored.manifest

    @property
    def id(self) -> int:
        """The id of :attr:`manifest`."""
        return self.stored.id

    @property
    def fenced(self) -> bool:
        """Whether a newer client of this role has been seen (then every call raises)."""
        return self._fenced

    def _raise_fenced(self, stored_epoch: int | None = None) -> None:
        raise ClosedError(
            "detected newer DB client",
            reason=CloseReason.FENCED,
            role=self.role,
            local_epoch=self.epoch,
            stored_epoch=stored_epoch,
        )

    def check_epoch(self, m: Manifest) -> None:
        """Compare ``m``'s epoch for this role with :attr:`epoch`.

        :raises ClosedError: ``reason="fenced"``: ``m`` carries a newer epoch.
        :raises InternalError: ``m`` carries an older epoch (impossible unless a bug).
        """
        stored_epoch = getattr(m, self._field)
        if stored_epoch > self.epoch:
            if not self._fenced:
                logger.warning(
                    "fenced by a newer client role=%s local_epoch=%d stored_epoch=%d",
                    self.role,
                    self.epoch,
                    stored_epoch,
                )
            self._fenced = True
            self._raise_fenced(stored_epoch)
        if stored_epoch < self.epoch:
            raise InternalError(
                "stored epoch is lower than the local epoch",
                role=self.role,
                local_epoch=self.epoch,
                stored_epoch=stored_epoch,
            )

    def refresh(self) -> Manifest:
        """Reload the latest version and check the epoch.

        :raises ClosedError: ``reason="fenced"``.
        :raises InternalError: the stored epoch is lower than ours.
        """
        if self._fenced:
            self._raise_fenced()
        self.stored.refresh()
        self.check_epoch(self.stored.manifest)
        return self.stored.manifest

    def update(
        self,
        mutate: Mutation,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> Manifest:
        """:meth:`StoredManifest.update` with the epoch checked before every attempt.

        ``mutate`` must leave both epochs unchanged. A fenced client writes nothing.

        :raises ClosedError: ``reason="fenced"``: a newer client of this role exists.
        :raises UnavailableError: still conflicting after ``timeout``.
        :raises InternalError: the stored epoch is lower than ours, or ``mutate`` changed an
            epoch.
        """
        if self._fenced:
            self._raise_fenced()

        def guarded(m: Manifest, next_id: int) -> Manifest | None:
            new = mutate(m, next_id)
            if new is not None and isinstance(new, Manifest):
                for name in ("writer_epoch", "compactor_epoch"):
                    if getattr(new, name) != getattr(m, name):
                        raise InternalError(
                            "a fenced manifest update may not change an epoch",
                            field=name,
                            current=getattr(m, name),
                            new=getattr(new, name),
                        )
            return new

        return self.stored._update(guarded, self.check_epoch, timeout, clock)


# -- checkpoints (pure functions on Manifest, for use inside mutate callbacks) --------------------


def find_checkpoint(m: Manifest, checkpoint_id: uuid.UUID) -> Checkpoint | None:
    """The checkpoint with ``checkpoint_id`` in ``m``, or ``None``."""
    for cp in m.checkpoints:
        if cp.id == checkpoint_id:
            return cp
    return None


def _expire(now_s: int, lifetime_s: float) -> int:
    if lifetime_s < 0:
        raise InvalidError("checkpoint lifetime must not be negative", lifetime_s=lifetime_s)
    return int(now_s + lifetime_s)


def add_checkpoint(
    m: Manifest,
    *,
    manifest_id: int,
    now_s: int,
    lifetime_s: float | None = None,
    name: str | None = None,
    checkpoint_id: uuid.UUID | None = None,
    source: uuid.UUID | None = None,
) -> tuple[Manifest, Checkpoint]:
    """``m`` with a new checkpoint appended, and that checkpoint (FORMAT.md 8).

    :param manifest_id: the version the checkpoint pins: the id being written, i.e. the
        ``next_id`` given to the mutate callback. Ignored when ``source`` is given.
    :param now_s: the current Unix time in seconds (the create time).
    :param lifetime_s: seconds until the checkpoint expires; ``None`` never expires.
    :param name: an optional name.
    :param checkpoint_id: the checkpoint's UUID (default: a random UUIDv4).
    :param source: copy the pinned version of this existing checkpoint instead.
    :raises InvalidError: unknown ``source``, a duplicate ``checkpoint_id``, a negative
        lifetime, or a non-source checkpoint of an uninitialized database (a clone in progress).
    """
    if source is not None:
        src = find_checkpoint(m, source)
        if src is None:
            raise InvalidError("unknown checkpoint", checkpoint_id=str(source))
        manifest_id = src.manifest_id
    elif not m.initialized:
        raise InvalidError("cannot checkpoint an uninitialized database")
    cid = uuid.uuid4() if checkpoint_id is None else checkpoint_id
    if find_checkpoint(m, cid) is not None:
        raise InvalidError("checkpoint id already exists", checkpoint_id=str(cid))
    cp = Checkpoint(
        id=cid,
        manifest_id=manifest_id,
        expire_time_s=None if lifetime_s is None else _expire(now_s, lifetime_s),
        create_time_s=now_s,
        name=name,
    )
    return dataclasses.replace(m, checkpoints=[*m.checkpoints, cp]), cp


def remove_checkpoint(m: Manifest, checkpoint_id: uuid.UUID) -> Manifest:
    """``m`` without checkpoint ``checkpoint_id``. :raises InvalidError: unknown id."""
    if find_checkpoint(m, checkpoint_id) is None:
        raise InvalidError("unknown checkpoint", checkpoint_id=str(checkpoint_id))
    return dataclasses.replace(
        m, checkpoints=[cp for cp in m.checkpoints if cp.id != checkpoint_id]
    )


def refresh_checkpoint(
    m: Manifest, checkpoint_id: uuid.UUID, *, now_s: int, lifetime_s: float | None
) -> Manifest:
    """``m`` with checkpoint ``checkpoint_id`` set to expire ``lifetime_s`` after ``now_s``
    (``None``: never expires).

    :raises InvalidError: unknown id, or a negative lifetime.
    """
    cp = find_checkpoint(m, checkpoint_id)
    if cp is None:
        raise InvalidError("unknown checkpoint", checkpoint_id=str(checkpoint_id))
    expire = None if lifetime_s is None else _expire(now_s, lifetime_s)
    new = dataclasses.replace(cp, expire_time_s=expire)
    return dataclasses.replace(
        m, checkpoints=[new if c.id == checkpoint_id else c for c in m.checkpoints]
    )


def remove_expired_checkpoints(m: Manifest, now_s: int) -> Manifest:
    """``m`` without the checkpoints that expired before ``now_s`` (``expire < now``).

    Returns ``m`` itself when nothing expired, so a mutate callback can write
    ``new = remove_expired_checkpoints(m, now); return None if new is m else new``.
    """
    keep = [cp for cp in m.checkpoints if cp.expire_time_s is None or cp.expire_time_s >= now_s]
    if len(keep) == len(m.checkpoints):
        return m
    return dataclasses.replace(m, checkpoints=keep)
