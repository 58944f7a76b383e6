"""Sequenced storage: numbered immutable versions of one object, the update loop, epoch fencing.

SlateDB keeps two pieces of shared state as a sequence of numbered, immutable versions in the
object store: the manifest (``manifest/<20-digit id>.manifest``) and the compactor's
``compactions/<20-digit id>.compactions``. Both follow one "sequenced storage protocol"
(FORMAT.md 10.1, 10.2, 10.4, 10.5; SlateDB's ``slatedb-txn-obj``), implemented once here and
specialised by :mod:`shale.meta.manifest_store` and :mod:`shale.meta.compactions_store`:

- :class:`SequenceKind` is what differs between the two: directory, file extension, GC
  boundary file, codec, epoch fields, conflict error, the words of messages, the logger.
- :class:`SequencedStore` reads and writes the numbered versions of one kind (a subclass sets
  :attr:`SequencedStore.kind`).
- :class:`Stored` is one client's view (the latest id it knows and that value) plus the
  reload-and-retry update loop.
- :class:`Fenceable` binds a :class:`Stored` to one epoch of one role: every refresh and every
  write attempt checks that no newer client has claimed a higher epoch.

Invariants, and why they hold:

- **Versions are immutable and written with create-if-absent.** Version ``N+1`` is written
  with ``put_if_absent``; of two clients that both read version ``N``, exactly one creates
  ``N+1``, the other gets the kind's conflict error, reloads the latest version and re-applies
  its change to it. No update is lost and no version is overwritten. Only GC deletes versions.
  Ids are assigned consecutively from 1.
- **Updates are mutations, not snapshots.** The update loop takes a callback
  ``mutate(current, next_id) -> T | None`` that is re-applied to every reloaded version, so a
  client never writes back a stale copy of state another client changed meanwhile. ``next_id``
  is the id the attempt writes; ``None`` means "nothing to do" and writes nothing. The callback
  may run several times: it must be a pure function of its arguments.
- **Epochs only grow.** Values are frozen dataclasses carrying the integer fields named by
  :attr:`SequenceKind.epoch_fields`. An update that would lower one is a bug and raises
  :class:`~shale.errors.InternalError`; a fenceable update may not change any of them.
- **A fenced client never writes.** :class:`Fenceable` checks the stored epoch before every
  attempt, including each attempt after a reload; once fenced it stays fenced and raises
  ``ClosedError(reason="fenced")`` without touching the store.
- **GC boundary** (FORMAT.md 10.5, RFC-0026). ``gc/<kind>.boundary`` holds an id *B*:
  versions ``<= B`` may be deleted by GC, which advances *B* (with conditional PUTs, so it never
  goes down) before deleting. A create of an id ``<= B`` could resurrect a deleted version (a
  stale client writing ``N+1`` after GC removed it), so such a write counts as a conflict, and
  a "latest" candidate ``<= B`` is never returned. A missing file means ``B = 0``.
- **Reading the latest version** LISTs, takes the maximum id and GETs it; if that object
  vanished (GC race) it LISTs again, at most :data:`MAX_LIST_RETRIES` times. A store that has
  already seen version ``N`` first probes ``N+1, N+2, ...`` (at most :data:`MAX_PROBES` GETs)
  and stops at the first missing id, which is sound because ids are consecutive and GC only
  deletes below the boundary.

Object-store errors other than the conflicts above (transient I/O, permissions) propagate to
the caller unchanged. A transient error on a PUT is ambiguous: the version may or may not have
been created; the next update finds out (it conflicts and reloads).

Log records go to the kind's logger (the specialising module's), so operators keep filtering
by ``shale.meta.manifest_store`` or ``shale.meta.compactions_store``.

Thread safety: a :class:`SequencedStore` may be shared by threads (its cache is locked);
:class:`Stored` and :class:`Fenceable` belong to one owner at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from shale.errors import (
    ClosedError,
    CloseReason,
    DataError,
    InternalError,
    InvalidError,
    ShaleError,
    UnavailableError,
)
from shale.ids import dir_path, format_id, parse_numbered
from shale.objstore import ObjectAlreadyExists, ObjectNotFound, ObjectStore

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "DEFAULT_UPDATE_TIMEOUT_S",
    "MAX_LIST_RETRIES",
    "MAX_PROBES",
    "Fenceable",
    "SequenceKind",
    "SequencedStore",
    "Stored",
    "VersionMutation",
]

#: How many successor ids a cached read probes with GET before falling back to LIST.
MAX_PROBES = 4
#: How many times :meth:`SequencedStore.read_latest` re-LISTs when the listed latest vanished.
MAX_LIST_RETRIES = 10
#: The default time budget of an update loop, seconds (SlateDB ``manifest_update_timeout``).
DEFAULT_UPDATE_TIMEOUT_S = 300.0

T = TypeVar("T", bound="DataclassInstance")

#: ``mutate(current, next_id)``: the value to write as version ``next_id``, or ``None`` when
#: there is nothing to do. Re-applied to the reloaded value after every conflict.
VersionMutation = Callable[[T, int], "T | None"]


@dataclasses.dataclass(frozen=True)
class SequenceKind(Generic[T]):
    """What distinguishes one sequenced object from another.

    :ivar name: short name: prefix of messages (``"<name> version exists"``) and of the id's
        detail key (``<name>_id``).
    :ivar noun: the object in messages about a version (``"corrupt <noun>"``).
    :ivar directory: the directory of the versions under the database root.
    :ivar extension: the file extension of a version, with its dot.
    :ivar boundary_file: the GC boundary file's name under ``gc/``.
    :ivar value_type: the dataclass one version decodes to.
    :ivar format_versions: the file format versions read and writable.
    :ivar encode: ``encode(value, format_version) -> bytes``.
    :ivar decode: ``decode(bytes) -> (format_version, value)``; raises DataError.
    :ivar epoch_fields: the value's epoch fields, which an update may never lower.
    :ivar conflict: raised by :meth:`SequencedStore.try_write` when the id is taken or at or
        below the GC boundary.
    :ivar logger: where log records go.
    """

    name: str
    noun: str
    directory: str
    extension: str
    boundary_file: str
    value_type: type[T]
    format_versions: tuple[int, ...]
    encode: Callable[[T, int], bytes]
    decode: Callable[[bytes], tuple[int, T]]
    epoch_fields: tuple[str, ...]
    conflict: type[ShaleError]
    logger: logging.Logger


class SequencedStore(Generic[T]):
    """Reads and writes the numbered versions of one kind of object of the database at ``root``.

    Subclasses set :attr:`kind`.

    :param store: the object store holding the database.
    :param root: the database path inside the store (``""`` for the store's root).
    :param format_version: the file format version written; every one of
        :attr:`SequenceKind.format_versions` is read.
    :param check_boundary: honour the GC boundary file (FORMAT.md 10.5). One extra small GET
        per write and per :meth:`read_latest`; turn off only for stores no GC touches.
    :raises InvalidError: an unknown ``format_version``.
    """

    kind: SequenceKind[T]

    def __init__(
        self,
        store: ObjectStore,
        root: str,
        *,
        format_version: int = 2,
        check_boundary: bool = True,
    ) -> None:
        kind = self.kind
        if format_version not in kind.format_versions:
            raise InvalidError(
                f"unsupported {kind.name} format version",
                format_version=format_version,
                supported=list(kind.format_versions),
            )
        self.store = store
        self.root = root
        self.format_version = format_version
        self.check_boundary = check_boundary
        self._log = kind.logger
        self._dir = dir_path(root, kind.directory)
        self._boundary_key = dir_path(root, "gc") + kind.boundary_file
        self._lock = threading.Lock()
        # The newest (id, bytes) this store has read or written: the probe-forward start.
        self._latest: tuple[int, bytes] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={self.root!r}, format_version={self.format_version})"

    # -- paths and listing --------------------------------------------------------------------

    def path(self, version_id: int) -> str:
        """The object key of version ``version_id``."""
        return self._dir + format_id(version_id) + self.kind.extension

    def _parse(self, key: str) -> int | None:
        """The id of a canonical version key directly in our directory, else ``None``."""
        name = key[len(self._dir) :]
        if "/" in name:
            return None
        n = parse_numbered(name, self.kind.extension)
        if n is None or name != format_id(n) + self.kind.extension:
            return None
        return n

    def list_ids(self) -> list[int]:
        """The ids of every version present, ascending.

        Objects in the directory whose names are not canonical ``<20 digits><extension>``
        (temp files, other tools' files, sub-directories) are ignored.
        """
        ids = []
        for meta in self.store.list(self._dir):
            n = self._parse(meta.key)
            if n is None:
                self._log.debug(
                    "ignoring unknown object in %s dir key=%s", self.kind.directory, meta.key
                )
                continue
            ids.append(n)
        ids.sort()
        return ids

    def exists(self) -> bool:
        """Whether any version exists."""
        return any(self._parse(meta.key) is not None for meta in self.store.list(self._dir))

    # -- reads --------------------------------------------------------------------------------

    def _try_get(self, version_id: int) -> bytes | None:
        try:
            return self.store.get(self.path(version_id))
        except ObjectNotFound:
            return None

    def _remember(self, version_id: int, data: bytes) -> None:
        with self._lock:
            if self._latest is None or version_id > self._latest[0]:
                self._latest = (version_id, data)

    def _forget(self, version_id: int | None = None) -> None:
        """Drop the cached latest (only if it is ``version_id``, when given)."""
        with self._lock:
            if self._latest is not None and (version_id is None or self._latest[0] == version_id):
                self._latest = None

    def _decode(self, version_id: int, data: bytes) -> T:
        try:
            return self.kind.decode(data)[1]
        except DataError as exc:
            raise DataError(  # the cause names what could not be decoded
                f"corrupt {self.kind.noun}: {exc.message}",
                **{f"{self.kind.name}_id": version_id},
                path=self.path(version_id),
            ) from exc

    def read(self, version_id: int) -> T:
        """Version ``version_id``.

        :raises ObjectNotFound: it does not exist (a :class:`~shale.errors.DataError`).
        :raises DataError: its bytes are malformed.
        """
        return self._decode(version_id, self.store.get(self.path(version_id)))

    def _probe_forward(self) -> tuple[int, bytes] | None:
        """From the cached latest, GET successors until one is missing.

        ``None`` when there is no cache or :data:`MAX_PROBES` successors all existed.
        """
        with self._lock:
            cached = self._latest
        if cached is None:
            return None
        version_id, data = cached
        for _ in range(MAX_PROBES):
            nxt = self._try_get(version_id + 1)
            if nxt is None:
                return version_id, data
            version_id, data = version_id + 1, nxt
            self._remember(version_id, data)
        self._log.debug(
            "%s probe limit reached; listing last_seen_id=%d", self.kind.name, version_id
        )
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
            self._log.warning(
                "listed %s missing on read, listing again id=%d attempt=%d",
                self.kind.noun,
                top,
                attempt + 1,
            )
        raise UnavailableError(
            f"the latest {self.kind.noun} kept vanishing between LIST and GET",
            root=self.root,
            attempts=MAX_LIST_RETRIES,
        )

    def read_latest(self) -> tuple[int, T] | None:
        """The newest version as ``(id, value)``, or ``None`` if no version exists.

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
            version_id, data = found
            if version_id > self.read_boundary():
                return version_id, self._decode(version_id, data)
            self._log.warning(
                "latest %s candidate behind GC boundary id=%d", self.kind.noun, version_id
            )
            self._forget(version_id)
        raise DataError(f"no {self.kind.noun} above the GC boundary", root=self.root)

    # -- writes -------------------------------------------------------------------------------

    def try_write(self, version_id: int, value: T) -> None:
        """Create version ``version_id`` atomically, only if absent.

        :raises ShaleError: the kind's conflict error: the id is taken, or is at or below the
            GC boundary (the object was created but must not be used: it may shadow a deleted
            version).
        :raises InvalidError: ``version_id`` is not a positive u64, or ``value`` cannot be
            encoded in :attr:`format_version`.
        """
        kind = self.kind
        id_key = f"{kind.name}_id"
        if isinstance(version_id, bool) or not isinstance(version_id, int) or version_id < 1:
            raise InvalidError(f"{kind.name} ids start at 1", **{id_key: version_id})
        data = kind.encode(value, self.format_version)
        try:
            self.store.put_if_absent(self.path(version_id), data)
        except ObjectAlreadyExists:
            raise kind.conflict(f"{kind.name} version exists", **{id_key: version_id}) from None
        boundary = self.read_boundary()
        if version_id <= boundary:
            self._log.warning(
                "wrote a %s at or below the GC boundary id=%d boundary=%d",
                kind.noun,
                version_id,
                boundary,
            )
            raise kind.conflict(
                f"{kind.name} id is behind the GC boundary",
                **{id_key: version_id},
                boundary=boundary,
            )
        self._remember(version_id, data)
        self._log.debug("wrote %s id=%d bytes=%d", kind.name, version_id, len(data))

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

        :raises InvalidError: ``boundary`` is not a non-negative int.
        :raises DataError: the boundary file is not a decimal integer.
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


class Stored(Generic[T]):
    """One client's view of a sequenced object: the latest version it knows and the update
    loop.

    :ivar versions: the store of the versions.
    :ivar id: the id of :attr:`value`.
    :ivar value: the newest version this client has read or written.
    """

    def __init__(self, versions: SequencedStore[T], version_id: int, value: T) -> None:
        self.versions = versions
        self.id = version_id
        self.value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, root={self.versions.root!r})"

    # The constructors are protected: a specialisation exposes them typed with its own store.

    @classmethod
    def _try_load(cls, versions: SequencedStore[T]) -> Self | None:
        """The latest version, or ``None`` if there is none."""
        latest = versions.read_latest()
        return None if latest is None else cls(versions, latest[0], latest[1])

    @classmethod
    def _load(cls, versions: SequencedStore[T]) -> Self:
        """The latest version. :raises DataError: there is none."""
        stored = cls._try_load(versions)
        if stored is None:
            raise DataError(f"no {versions.kind.noun} found", root=versions.root)
        return stored

    @classmethod
    def _create(cls, versions: SequencedStore[T], initial: T) -> Self:
        """Create version 1 as ``initial``. :raises ShaleError: the kind's conflict error."""
        versions.try_write(1, initial)
        versions.kind.logger.info("created %s 1 root=%s", versions.kind.noun, versions.root)
        return cls(versions, 1, initial)

    @classmethod
    def _create_or_load(cls, versions: SequencedStore[T], initial: Callable[[], T]) -> Self:
        """The latest version, or a new version 1 ``initial()`` when there is none. Racing
        creators agree on one version 1."""
        stored = cls._try_load(versions)
        if stored is not None:
            return stored
        try:
            return cls._create(versions, initial())
        except versions.kind.conflict:
            versions.kind.logger.debug(
                "%s 1 created concurrently; loading it root=%s", versions.kind.noun, versions.root
            )
            return cls._load(versions)

    def refresh(self) -> T:
        """Reload the latest version. :raises DataError: there is none any more."""
        latest = self.versions.read_latest()
        if latest is None:
            raise DataError(f"{self.versions.kind.noun} disappeared", root=self.versions.root)
        self.id, self.value = latest
        return self.value

    def _update(
        self,
        mutate: VersionMutation[T],
        check: Callable[[T], None] | None,
        timeout: float,
        clock: Callable[[], float],
    ) -> T:
        """The update loop: ``check`` then ``mutate`` the current version and create the
        result as the next id; on a conflict reload and repeat, until ``timeout``.

        :returns: the value now current (the written one, or the unchanged current one).
        :raises UnavailableError: still conflicting after ``timeout`` seconds (per ``clock``).
        :raises InternalError: ``mutate`` returned something else than a value or ``None``, or
            lowered an epoch.
        """
        kind = self.versions.kind
        deadline = clock() + timeout
        attempts = 0
        while True:
            attempts += 1
            if check is not None:
                check(self.value)
            current, next_id = self.value, self.id + 1
            new = mutate(current, next_id)
            if new is None:
                return current
            if not isinstance(new, kind.value_type):
                raise InternalError(
                    f"{kind.name} mutation must return {kind.value_type.__name__} or None",
                    got=type(new).__name__,
                )
            for name in kind.epoch_fields:
                if getattr(new, name) < getattr(current, name):
                    raise InternalError(
                        f"a {kind.name} update would lower an epoch",
                        field=name,
                        current=getattr(current, name),
                        new=getattr(new, name),
                    )
            try:
                self.versions.try_write(next_id, new)
            except kind.conflict:
                if clock() >= deadline:
                    raise UnavailableError(
                        f"{kind.name} update timed out", timeout=timeout, attempts=attempts
                    ) from None
                kind.logger.debug(
                    "%s conflict; reloading id=%d attempt=%d", kind.name, next_id, attempts
                )
                self.refresh()
                continue
            self.id, self.value = next_id, new
            return new


class Fenceable(Generic[T]):
    """A :class:`Stored` owned by one epoch of a role (FORMAT.md 10.2, 10.4).

    The value's ``field`` in the stored version must equal :attr:`epoch`: larger means a newer
    client took over (this one is fenced), smaller is impossible (an invariant is broken).

    :ivar stored: the view this client updates.
    :ivar epoch: the epoch this client claimed.
    :ivar role: who claimed it (``"writer"`` or ``"compactor"``), for messages.
    """

    #: The message of the ``ClosedError`` a fenced client raises (subclasses may change it).
    _fenced_message = "detected newer DB client"

    def __init__(self, stored: Stored[T], epoch: int, role: str, field: str) -> None:
        self.stored = stored
        self.epoch = epoch
        self.role = role
        self._field = field
        self._fenced = False

    @staticmethod
    def _claim(
        stored: Stored[T],
        role: str,
        field: str,
        choose: Callable[[int], int],
        check: Callable[[T], None] | None,
        timeout: float,
        clock: Callable[[], float],
    ) -> int:
        """Write a new version whose ``field`` is ``choose(stored epoch)`` (retried on
        conflicts); the epoch claimed. ``check`` runs before every attempt (it raises to give
        up).

        :raises UnavailableError: still conflicting after ``timeout``.
        """
        claimed: list[int] = []

        def claim(value: T, _next_id: int) -> T:
            epoch = choose(getattr(value, field))
            claimed.append(epoch)
            return dataclasses.replace(value, **{field: epoch})

        stored._update(claim, check, timeout, clock)
        stored.versions.kind.logger.info(
            "fenced %s role=%s epoch=%d id=%d",
            stored.versions.kind.name,
            role,
            claimed[-1],
            stored.id,
        )
        return claimed[-1]

    @property
    def value(self) -> T:
        """The newest version this client knows."""
        return self.stored.value

    @property
    def id(self) -> int:
        """The id of :attr:`value`."""
        return self.stored.id

    @property
    def fenced(self) -> bool:
        """Whether a newer client of this role has been seen (then every call raises)."""
        return self._fenced

    def _raise_fenced(self, stored_epoch: int | None = None) -> None:
        raise ClosedError(
            self._fenced_message,
            reason=CloseReason.FENCED,
            role=self.role,
            local_epoch=self.epoch,
            stored_epoch=stored_epoch,
        )

    def check_epoch(self, value: T) -> None:
        """Compare ``value``'s epoch with :attr:`epoch`.

        :raises ClosedError: ``reason="fenced"``: ``value`` carries a newer epoch.
        :raises InternalError: ``value`` carries an older epoch (impossible unless a bug).
        """
        stored_epoch = getattr(value, self._field)
        if stored_epoch > self.epoch:
            if not self._fenced:
                self.stored.versions.kind.logger.warning(
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

    def refresh(self) -> T:
        """Reload the latest version and check the epoch.

        :raises ClosedError: ``reason="fenced"``.
        :raises InternalError: the stored epoch is lower than ours.
        """
        if self._fenced:
            self._raise_fenced()
        self.stored.refresh()
        self.check_epoch(self.stored.value)
        return self.stored.value

    def _update(self, mutate: VersionMutation[T], timeout: float, clock: Callable[[], float]) -> T:
        """:meth:`Stored._update` with the epoch checked before every attempt; ``mutate``
        must leave every epoch unchanged. A fenced client writes nothing.

        :raises ClosedError: ``reason="fenced"``: a newer client of this role exists.
        :raises UnavailableError: still conflicting after ``timeout``.
        :raises InternalError: the stored epoch is lower than ours, or ``mutate`` changed an
            epoch.
        """
        if self._fenced:
            self._raise_fenced()
        kind = self.stored.versions.kind

        def guarded(value: T, next_id: int) -> T | None:
            new = mutate(value, next_id)
            if isinstance(new, kind.value_type):
                for name in kind.epoch_fields:
                    if getattr(new, name) != getattr(value, name):
                        raise InternalError(
                            f"a fenced {kind.name} update may not change an epoch",
                            field=name,
                            current=getattr(value, name),
                            new=getattr(new, name),
                        )
            return new

        return self.stored._update(guarded, self.check_epoch, timeout, clock)
