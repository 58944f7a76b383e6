"""The manifest store: sequenced manifest versions, the update loop and epoch fencing.

This is shale's twin of SlateDB's ``manifest/store.rs`` and ``slatedb-txn-obj`` (FORMAT.md
10.1, 10.2, 10.5): the manifest specialisation of the sequenced storage protocol in
:mod:`shale.meta.versioned`, which states and implements the invariants (create-if-absent versions,
mutations re-applied after conflicts, the GC boundary ``gc/manifest.boundary``, probe-forward
and re-LIST reads, epochs that only grow, fenced clients that never write). Three layers:

- :class:`ManifestStore` reads and writes numbered versions ``manifest/<20-digit id>.manifest``.
- :class:`StoredManifest` is one client's view (the latest id it knows and that manifest) plus
  the reload-and-retry update loop.
- :class:`FenceableManifest` adds an epoch: the writer (``writer_epoch``) or the compactor
  (``compactor_epoch``) claims ``stored + 1`` at startup, and every later refresh and update
  checks that no newer client has claimed a higher one.

What is specific to the manifest:

- **Two epochs.** An update may lower neither ``writer_epoch`` nor ``compactor_epoch``; a
  fenceable update, of either role, may change neither.
- **Mutations see the id they write.** ``mutate(current, next_id) -> Manifest | None``: a new
  checkpoint pins ``next_id`` (FORMAT.md 8).
- **GC** must call :meth:`ManifestStore.advance_boundary` before it deletes manifests; the
  probe-forward read relies on it.
- The checkpoint helpers at the end are pure functions on :class:`Manifest`, for use inside
  mutate callbacks.

Thread safety: a :class:`ManifestStore` may be shared by threads (its cache is locked);
:class:`StoredManifest` and :class:`FenceableManifest` belong to one owner at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable

from shale.errors import InvalidError, ShaleError
from shale.fbs.manifest import (
    MANIFEST_VERSIONS,
    Checkpoint,
    Manifest,
    decode_manifest,
    encode_manifest,
)
from shale.meta.versioned import (
    DEFAULT_UPDATE_TIMEOUT_S,
    MAX_LIST_RETRIES,
    MAX_PROBES,
    Fenceable,
    SequencedStore,
    SequenceKind,
    Stored,
)

__all__ = [
    "MAX_CHECKPOINT_EXPIRE_S",
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
    "check_checkpoint_lifetime",
    "check_checkpoint_name",
    "checkpoint_uuid",
    "find_checkpoint",
    "refresh_checkpoint",
    "remove_checkpoint",
    "remove_expired_checkpoints",
]

logger = logging.getLogger(__name__)

ROLE_WRITER = "writer"
ROLE_COMPACTOR = "compactor"
_EPOCH_FIELD = {ROLE_WRITER: "writer_epoch", ROLE_COMPACTOR: "compactor_epoch"}

#: ``mutate(current, next_id)``: the new manifest to write as version ``next_id``, or ``None``
#: when there is nothing to do. Re-applied to the reloaded manifest after every conflict.
Mutation = Callable[[Manifest, int], "Manifest | None"]


class ManifestConflict(ShaleError):
    """Internal: the manifest id we tried to create exists (another client won the race), or
    lies at or below the GC boundary. The update loop reloads and retries; it never reaches
    users."""

    kind = "conflict"


def _encode_stored(m: Manifest, version: int = 2) -> bytes:
    """:func:`encode_manifest`, dropping ``wal_object_store_uri`` in V2 as SlateDB does (V2
    cannot record it: a V1 database with a separate WAL store, written on as V2, loses it)."""
    if version == 2 and m.wal_object_store_uri is not None:
        m = dataclasses.replace(m, wal_object_store_uri=None)
    return encode_manifest(m, version)


_MANIFEST: SequenceKind[Manifest] = SequenceKind(
    name="manifest",
    noun="manifest",
    directory="manifest",
    extension=".manifest",
    boundary_file="manifest.boundary",
    value_type=Manifest,
    format_versions=MANIFEST_VERSIONS,
    encode=_encode_stored,
    decode=decode_manifest,
    epoch_fields=("writer_epoch", "compactor_epoch"),
    conflict=ManifestConflict,
    logger=logger,
)


class ManifestStore(SequencedStore[Manifest]):
    """Reads and writes the numbered manifest versions of the database at ``root``.

    :param store: the object store holding the database.
    :param root: the database path inside the store (``""`` for the store's root).
    :param format_version: the manifest wire version written (2 = SlateDB 0.17.0's bytes,
        1 = readable by SlateDB <= 0.12.1). Both versions are always read.
    :param check_boundary: honour ``gc/manifest.boundary`` (FORMAT.md 10.5). One extra small
        GET per write and per :meth:`read_latest`; turn off only for stores no GC touches.
    :raises InvalidError: an unknown ``format_version``.
    """

    kind = _MANIFEST

    def path(self, manifest_id: int) -> str:
        """The object key of version ``manifest_id``."""
        return super().path(manifest_id)

    def read(self, manifest_id: int) -> Manifest:
        """Version ``manifest_id``.

        :raises ObjectNotFound: it does not exist (a :class:`~shale.errors.DataError`).
        :raises DataError: its bytes are malformed.
        """
        return super().read(manifest_id)

    def try_write(self, manifest_id: int, manifest: Manifest) -> None:
        """Create version ``manifest_id`` atomically, only if absent.

        :raises ManifestConflict: the id is taken, or is at or below the GC boundary (the
            object was created but must not be used: it may shadow a deleted version).
        :raises InvalidError: ``manifest_id`` is not a positive u64, or the manifest cannot be
            encoded in :attr:`format_version`.
        """
        super().try_write(manifest_id, manifest)


class StoredManifest(Stored[Manifest]):
    """One client's view of the manifest: the latest version it knows and the update loop.

    :ivar id: the id of :attr:`manifest`.
    :ivar manifest: the newest version this client has read or written.
    """

    versions: ManifestStore

    def __init__(self, ms: ManifestStore, manifest_id: int, manifest: Manifest) -> None:
        super().__init__(ms, manifest_id, manifest)

    @property
    def ms(self) -> ManifestStore:
        """The store of the manifest versions."""
        return self.versions

    @property
    def manifest(self) -> Manifest:
        """The newest version this client has read or written."""
        return self.value

    @classmethod
    def try_load(cls, ms: ManifestStore) -> StoredManifest | None:
        """The latest version, or ``None`` if the database has no manifest."""
        return cls._try_load(ms)

    @classmethod
    def load(cls, ms: ManifestStore) -> StoredManifest:
        """The latest version. :raises DataError: no manifest exists."""
        return cls._load(ms)

    @classmethod
    def create_or_load(cls, ms: ManifestStore, initial: Manifest | None = None) -> StoredManifest:
        """Load the latest version, or create version 1 (``initial``, default
        :meth:`Manifest.initial`) when none exists. Racing creators agree on one version 1.
        """
        return cls._create_or_load(ms, lambda: Manifest.initial() if initial is None else initial)

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


class FenceableManifest(Fenceable[Manifest]):
    """A :class:`StoredManifest` owned by one epoch of a role (FORMAT.md 10.2).

    Make one with :meth:`init_writer` or :meth:`init_compactor`. The role's epoch field in the
    stored manifest must equal :attr:`epoch`: larger means a newer client took over (this one
    is fenced), smaller is impossible (an invariant is broken).

    :ivar epoch: the epoch this client claimed.
    :ivar role: ``"writer"`` or ``"compactor"``.
    """

    stored: StoredManifest

    def __init__(self, stored: StoredManifest, epoch: int, role: str) -> None:
        if role not in _EPOCH_FIELD:
            raise InvalidError("unknown fencing role", role=role)
        super().__init__(stored, epoch, role, _EPOCH_FIELD[role])

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
        epoch = cls._claim(stored, role, field, lambda e: e + 1, None, timeout, clock)
        return cls(stored, epoch, role)

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

    def check_epoch(self, m: Manifest) -> None:
        """Compare ``m``'s epoch for this role with :attr:`epoch`.

        :raises ClosedError: ``reason="fenced"``: ``m`` carries a newer epoch.
        :raises InternalError: ``m`` carries an older epoch (impossible unless a bug).
        """
        super().check_epoch(m)

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
        return self._update(mutate, timeout, clock)


# -- checkpoints (pure functions on Manifest, for use inside mutate callbacks) --------------------


def find_checkpoint(m: Manifest, checkpoint_id: uuid.UUID) -> Checkpoint | None:
    """The checkpoint with ``checkpoint_id`` in ``m``, or ``None``."""
    for cp in m.checkpoints:
        if cp.id == checkpoint_id:
            return cp
    return None


#: The latest checkpoint expiry a manifest can store (``expire_time`` is a u32 of seconds).
MAX_CHECKPOINT_EXPIRE_S = 2**32 - 1


def check_checkpoint_lifetime(lifetime_s: object, now_s: int) -> float | None:
    """``lifetime_s`` if it is ``None`` or a finite number of seconds ``>= 0`` whose expiry,
    ``now_s + lifetime_s``, a manifest can store (a u32 of seconds, i.e. before 2106).

    :raises InvalidError: a non-number (``"x"``, a ``bool``), NaN, infinity, a negative
        lifetime, or one that expires too late.
    """
    if lifetime_s is None:
        return None
    if isinstance(lifetime_s, bool) or not isinstance(lifetime_s, (int, float)):
        raise InvalidError(
            "checkpoint lifetime must be None or a number of seconds", lifetime=lifetime_s
        )
    if not math.isfinite(lifetime_s) or lifetime_s < 0:
        raise InvalidError(
            "checkpoint lifetime must be a finite number of seconds >= 0", lifetime=lifetime_s
        )
    if now_s + lifetime_s > MAX_CHECKPOINT_EXPIRE_S:
        raise InvalidError(
            "checkpoint lifetime expires too late (a manifest stores the expiry as a u32 of "
            "seconds); use None for a checkpoint that never expires",
            lifetime=lifetime_s,
        )
    return lifetime_s


def check_checkpoint_name(name: object) -> str | None:
    """``name`` if it is ``None`` or a ``str`` a manifest can store (valid UTF-8, < 64 KiB).

    :raises InvalidError: anything else.
    """
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidError("checkpoint name must be None or a str", type=type(name).__name__)
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidError("checkpoint name is not valid UTF-8 text", name=name) from None
    if size > 0xFFFF:
        raise InvalidError("checkpoint name is longer than 65535 UTF-8 bytes", length=size)
    return name


def checkpoint_uuid(checkpoint_id: object) -> uuid.UUID:
    """A checkpoint id given as a :class:`uuid.UUID` or its string form.

    :raises InvalidError: anything else, or a string that is not a UUID.
    """
    if isinstance(checkpoint_id, uuid.UUID):
        return checkpoint_id
    if isinstance(checkpoint_id, str):
        try:
            return uuid.UUID(checkpoint_id)
        except ValueError:
            raise InvalidError("checkpoint id is not a UUID", checkpoint_id=checkpoint_id) from None
    raise InvalidError(
        "checkpoint id must be a uuid.UUID or its str form", type=type(checkpoint_id).__name__
    )


def _expire(now_s: int, lifetime_s: float) -> int:
    check_checkpoint_lifetime(lifetime_s, now_s)
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
    :raises InvalidError: unknown ``source``, a duplicate ``checkpoint_id``, a bad lifetime
        (see :func:`check_checkpoint_lifetime`) or name, or a non-source checkpoint of an
        uninitialized database (a clone in progress).
    """
    check_checkpoint_name(name)
    check_checkpoint_lifetime(lifetime_s, now_s)
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


def remove_checkpoint(m: Manifest, checkpoint_id: uuid.UUID | str) -> Manifest:
    """``m`` without checkpoint ``checkpoint_id`` (a UUID or its str form).

    :raises InvalidError: unknown id.
    """
    checkpoint_id = checkpoint_uuid(checkpoint_id)
    if find_checkpoint(m, checkpoint_id) is None:
        raise InvalidError("unknown checkpoint", checkpoint_id=str(checkpoint_id))
    return dataclasses.replace(
        m, checkpoints=[cp for cp in m.checkpoints if cp.id != checkpoint_id]
    )


def refresh_checkpoint(
    m: Manifest, checkpoint_id: uuid.UUID | str, *, now_s: int, lifetime_s: float | None
) -> Manifest:
    """``m`` with checkpoint ``checkpoint_id`` (a UUID or its str form) set to expire
    ``lifetime_s`` after ``now_s`` (``None``: never expires).

    :raises InvalidError: unknown id, or a bad lifetime (see
        :func:`check_checkpoint_lifetime`).
    """
    checkpoint_id = checkpoint_uuid(checkpoint_id)
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
