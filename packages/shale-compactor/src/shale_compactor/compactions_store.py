"""The ``.compactions`` store: sequenced versions, the update loop and compactor-epoch fencing.

This is shale's twin of SlateDB's ``compactions_store.rs`` (FORMAT.md 9, 10.1, 10.4, 10.5),
built exactly like :mod:`shale.manifest_store` but for ``compactions/<20-digit id>.compactions``:

- :class:`CompactionsStore` reads and writes the numbered versions (version 2 of the file
  format by default; versions 1 and 2 are read);
- :class:`StoredCompactions` is one client's view (the latest id it knows and that state) plus
  the reload-and-retry update loop;
- :class:`FenceableCompactions` binds that view to a compactor epoch.

Invariants, and why they hold:

- **Versions are immutable and written with create-if-absent.** Of two clients that both read
  version ``N`` exactly one creates ``N+1``; the other gets :class:`CompactionsConflict`,
  reloads and re-applies its *mutation* (``mutate(current) -> Compactions | None``) to the new
  latest version, so a compactor never writes back a stale copy that would erase a compaction
  submitted meanwhile by ``shale compactor submit``. Only GC deletes versions.
- **GC boundary.** ``gc/compactions.boundary`` holds an id *B*; a create at or below *B* counts
  as a conflict and a "latest" candidate at or below *B* is skipped (FORMAT.md 10.5).
- **Epoch fencing (FORMAT.md 10.4).** The compactor first fences the *manifest*
  (``compactor_epoch + 1``), then loads (or creates, with epoch 0) the compactions file and
  claims exactly the manifest's new epoch there by writing a new version
  (:meth:`FenceableCompactions.init_with_epoch`). Before every later attempt to write, and
  after every refresh, the stored epoch is compared with ours: larger means a newer compactor
  exists and this one is fenced (``ClosedError(reason="fenced")``, nothing is written, and it
  stays fenced); smaller is impossible and raises :class:`~shale.errors.InternalError`.
- **Submitters do not fence.** A :class:`StoredCompactions` update (no epoch) may add
  compactions but must leave ``compactor_epoch`` unchanged; :meth:`StoredCompactions.update`
  refuses to lower it.

Thread safety: a :class:`CompactionsStore` may be shared by threads (its cache is locked);
:class:`StoredCompactions` and :class:`FenceableCompactions` belong to one owner at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
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
from shale.fbs.compactions import (
    COMPACTIONS_VERSIONS,
    Compactions,
    decode_compactions,
    encode_compactions,
)
from shale.ids import compactions_path, dir_path, format_id, parse_numbered
from shale.objstore import ObjectAlreadyExists, ObjectNotFound, ObjectStore

__all__ = [
    "DEFAULT_UPDATE_TIMEOUT_S",
    "MAX_LIST_RETRIES",
    "MAX_PROBES",
    "CompactionsConflict",
    "CompactionsMutation",
    "CompactionsStore",
    "FenceableCompactions",
    "StoredCompactions",
]

logger = logging.getLogger(__name__)

#: How many successor ids a cached read probes with GET before falling back to LIST.
MAX_PROBES = 4
#: How many times :meth:`CompactionsStore.read_latest` re-LISTs when the latest vanished.
MAX_LIST_RETRIES = 10
#: The default time budget of an update loop, seconds (SlateDB ``manifest_update_timeout``).
DEFAULT_UPDATE_TIMEOUT_S = 300.0

_SUFFIX = ".compactions"

#: ``mutate(current)``: the state to write as the next version, or ``None`` for "nothing to do".
#: Re-applied to the reloaded state after every conflict, so it must be pure.
CompactionsMutation = Callable[[Compactions], "Compactions | None"]


class CompactionsConflict(ShaleError):
    """Internal: the id we tried to create exists, or lies at or below the GC boundary. The
    update loop reloads and retries; it never reaches users."""

    kind = "conflict"


class CompactionsStore:
    """Reads and writes the numbered ``.compactions`` versions of the database at ``root``.

    :param store: the object store holding the database.
    :param root: the database path inside the store (``""`` for the store's root).
    :param format_version: the file version written (2 = SlateDB 0.17.0's bytes, 1 = readable
        by SlateDB <= 0.12.1, which cannot record the destination of an L0-only compaction).
        Both versions are always read.
    :param check_boundary: honour ``gc/compactions.boundary`` (FORMAT.md 10.5).
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
        if format_version not in COMPACTIONS_VERSIONS:
            raise InvalidError(
                "unsupported compactions format version",
                format_version=format_version,
                supported=list(COMPACTIONS_VERSIONS),
            )
        self.store = store
        self.root = root
        self.format_version = format_version
        self.check_boundary = check_boundary
        self._dir = dir_path(root, "compactions")
        self._boundary_key = dir_path(root, "gc") + "compactions.boundary"
        self._lock = threading.Lock()
        self._latest: tuple[int, bytes] | None = None

    def __repr__(self) -> str:
        return f"CompactionsStore(root={self.root!r}, format_version={self.format_version})"

    # -- paths and listing --------------------------------------------------------------------

    def path(self, compactions_id: int) -> str:
        """The object key of version ``compactions_id``."""
        return compactions_path(self.root, compactions_id)

    def _parse(self, key: str) -> int | None:
        name = key[len(self._dir) :]
        if "/" in name:
            return None
        n = parse_numbered(name, _SUFFIX)
        if n is None or name != format_id(n) + _SUFFIX:
            return None
        return n

    def list_ids(self) -> list[int]:
        """The ids of every version present, ascending (non-canonical names are ignored)."""
        ids = []
        for meta in self.store.list(self._dir):
            n = self._parse(meta.key)
            if n is None:
                logger.debug("ignoring unknown object in compactions dir key=%s", meta.key)
                continue
            ids.append(n)
        ids.sort()
        return ids

    # -- reads --------------------------------------------------------------------------------

    def _try_get(self, compactions_id: int) -> bytes | None:
        try:
            return self.store.get(self.path(compactions_id))
        except ObjectNotFound:
            return None

    def _remember(self, compactions_id: int, data: bytes) -> None:
        with self._lock:
            if self._latest is None or compactions_id > self._latest[0]:
                self._latest = (compactions_id, data)

    def _forget(self, compactions_id: int | None = None) -> None:
        with self._lock:
            if self._latest is not None and (
                compactions_id is None or self._latest[0] == compactions_id
            ):
                self._latest = None

    def _decode(self, compactions_id: int, data: bytes) -> Compactions:
        try:
            return decode_compactions(data)[1]
        except DataError as exc:
            raise DataError(
                "corrupt compactions file",
                compactions_id=compactions_id,
                path=self.path(compactions_id),
            ) from exc

    def read(self, compactions_id: int) -> Compactions:
        """Version ``compactions_id``.

        :raises ObjectNotFound: it does not exist (a :class:`~shale.errors.DataError`).
        :raises DataError: its bytes are malformed.
        """
        return self._decode(compactions_id, self.store.get(self.path(compactions_id)))

    def _probe_forward(self) -> tuple[int, bytes] | None:
        with self._lock:
            cached = self._latest
        if cached is None:
            return None
        cid, data = cached
        for _ in range(MAX_PROBES):
            nxt = self._try_get(cid + 1)
            if nxt is None:
                return cid, data
            cid, data = cid + 1, nxt
            self._remember(cid, data)
        return None

    def _list_latest(self) -> tuple[int, bytes] | None:
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
                "listed compactions file missing on read, listing again id=%d attempt=%d",
                top,
                attempt + 1,
            )
        raise UnavailableError(
            "the latest compactions file kept vanishing between LIST and GET",
            root=self.root,
            attempts=MAX_LIST_RETRIES,
        )

    def read_latest(self) -> tuple[int, Compactions] | None:
        """The newest version as ``(id, compactions)``, or ``None`` if there is none (SlateDB's
        ``try_read_latest_compactions``).

        :raises DataError: the newest version is malformed, or every candidate lies at or below
            the GC boundary.
        :raises UnavailableError: the listed newest version vanished on every attempt.
        """
        for _ in range(MAX_LIST_RETRIES):
            found = self._probe_forward() or self._list_latest()
            if found is None:
                return None
            cid, data = found
            if cid > self.read_boundary():
                return cid, self._decode(cid, data)
            logger.warning("latest compactions candidate behind GC boundary id=%d", cid)
            self._forget(cid)
        raise DataError("no compactions file above the GC boundary", root=self.root)

    # -- writes -------------------------------------------------------------------------------

    def try_write(self, compactions_id: int, compactions: Compactions) -> None:
        """Create version ``compactions_id`` atomically, only if absent.

        :raises CompactionsConflict: the id is taken, or is at or below the GC boundary.
        :raises InvalidError: a bad id, or state :attr:`format_version` cannot represent.
        """
        if (
            isinstance(compactions_id, bool)
            or not isinstance(compactions_id, int)
            or compactions_id < 1
        ):
            raise InvalidError("compactions ids start at 1", compactions_id=compactions_id)
        data = encode_compactions(compactions, self.format_version)
        try:
            self.store.put_if_absent(self.path(compactions_id), data)
        except ObjectAlreadyExists:
            raise CompactionsConflict(
                "compactions version exists", compactions_id=compactions_id
            ) from None
        boundary = self.read_boundary()
        if compactions_id <= boundary:
            logger.warning(
                "wrote a compactions file at or below the GC boundary id=%d boundary=%d",
                compactions_id,
                boundary,
            )
            raise CompactionsConflict(
                "compactions id is behind the GC boundary",
                compactions_id=compactions_id,
                boundary=boundary,
            )
        self._remember(compactions_id, data)
        logger.debug("wrote compactions id=%d bytes=%d", compactions_id, len(data))

    # -- GC boundary --------------------------------------------------------------------------

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

    def _parse_boundary(self, data: bytes) -> int:
        try:
            text = data.decode("ascii").strip()
        except UnicodeDecodeError:
            text = ""
        if not text.isdigit():
            raise DataError("malformed GC boundary file", path=self._boundary_key)
        return int(text)

    def advance_boundary(self, boundary: int) -> None:
        """Raise the GC boundary to ``boundary`` (never lowers it); GC calls this before it
        deletes versions ``<= boundary``. Conditional PUTs make concurrent advances safe."""
        if isinstance(boundary, bool) or not isinstance(boundary, int) or boundary < 0:
            raise InvalidError("boundary must be a non-negative int", boundary=boundary)
        while True:
            try:
                etag: str | None = self.store.head(self._boundary_key).etag
                current = self._parse_boundary(self.store.get(self._boundary_key))
            except ObjectNotFound:
                etag, current = None, 0
            if current >= boundary:
                return
            data = str(boundary).encode("ascii")
            try:
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


class StoredCompactions:
    """One client's view of the ``.compactions`` file: the latest version it knows and the
    update loop.

    :ivar id: the id of :attr:`compactions`.
    :ivar compactions: the newest version this client has read or written.
    """

    def __init__(self, cs: CompactionsStore, compactions_id: int, compactions: Compactions) -> None:
        self.cs = cs
        self.id = compactions_id
        self.compactions = compactions

    def __repr__(self) -> str:
        return f"StoredCompactions(id={self.id}, root={self.cs.root!r})"

    @classmethod
    def try_load(cls, cs: CompactionsStore) -> StoredCompactions | None:
        """The latest version, or ``None`` when the database has no compactions file."""
        latest = cs.read_latest()
        return None if latest is None else cls(cs, latest[0], latest[1])

    @classmethod
    def load(cls, cs: CompactionsStore) -> StoredCompactions:
        """The latest version. :raises DataError: no compactions file exists."""
        stored = cls.try_load(cs)
        if stored is None:
            raise DataError("no compactions file found", root=cs.root)
        return stored

    @classmethod
    def create(cls, cs: CompactionsStore, compactor_epoch: int) -> StoredCompactions:
        """Create version 1 with ``compactor_epoch`` and no compactions.

        :raises CompactionsConflict: version 1 exists already (use :meth:`create_or_load`).
        """
        initial = Compactions(compactor_epoch=compactor_epoch, recent_compactions=[])
        cs.try_write(1, initial)
        logger.info("created compactions file 1 root=%s epoch=%d", cs.root, compactor_epoch)
        return cls(cs, 1, initial)

    @classmethod
    def create_or_load(cls, cs: CompactionsStore) -> StoredCompactions:
        """The latest version, or a new version 1 with epoch 0 when none exists (racing
        creators agree on one version 1)."""
        stored = cls.try_load(cs)
        if stored is not None:
            return stored
        try:
            return cls.create(cs, 0)
        except CompactionsConflict:
            return cls.load(cs)

    def refresh(self) -> Compactions:
        """Reload the latest version. :raises DataError: the file disappeared."""
        latest = self.cs.read_latest()
        if latest is None:
            raise DataError("compactions file disappeared", root=self.cs.root)
        self.id, self.compactions = latest
        return self.compactions

    def update(
        self,
        mutate: CompactionsMutation,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> Compactions:
        """Apply ``mutate`` and write the result as the next version, retrying on conflicts.

        Each attempt calls ``mutate(self.compactions)``; ``None`` ends the loop without
        writing. When the next id is taken, the latest version is reloaded and ``mutate``
        re-applied to it.

        :returns: the state now current (the written one, or the unchanged current one).
        :raises UnavailableError: still conflicting after ``timeout`` seconds.
        :raises InternalError: ``mutate`` returned something else, or lowered the epoch.
        """
        return self._update(mutate, None, timeout, clock)

    def _update(
        self,
        mutate: CompactionsMutation,
        check: Callable[[Compactions], None] | None,
        timeout: float,
        clock: Callable[[], float],
    ) -> Compactions:
        deadline = clock() + timeout
        attempts = 0
        while True:
            attempts += 1
            if check is not None:
                check(self.compactions)
            current, next_id = self.compactions, self.id + 1
            new = mutate(current)
            if new is None:
                return current
            if not isinstance(new, Compactions):
                raise InternalError(
                    "compactions mutation must return Compactions or None",
                    got=type(new).__name__,
                )
            if new.compactor_epoch < current.compactor_epoch:
                raise InternalError(
                    "a compactions update would lower the compactor epoch",
                    current=current.compactor_epoch,
                    new=new.compactor_epoch,
                )
            try:
                self.cs.try_write(next_id, new)
            except CompactionsConflict:
                if clock() >= deadline:
                    raise UnavailableError(
                        "compactions update timed out", timeout=timeout, attempts=attempts
                    ) from None
                logger.debug("compactions conflict; reloading id=%d attempt=%d", next_id, attempts)
                self.refresh()
                continue
            self.id, self.compactions = next_id, new
            return new


class FenceableCompactions:
    """A :class:`StoredCompactions` owned by one compactor epoch (FORMAT.md 10.4).

    Make one with :meth:`init_with_epoch`. The stored ``compactor_epoch`` must equal
    :attr:`epoch`: larger means a newer compactor took over (this one is fenced).

    :ivar epoch: the epoch this compactor claimed (the manifest's ``compactor_epoch``).
    """

    def __init__(self, stored: StoredCompactions, epoch: int) -> None:
        self.stored = stored
        self.epoch = epoch
        self._fenced = False

    def __repr__(self) -> str:
        return f"FenceableCompactions(epoch={self.epoch}, id={self.stored.id})"

    @classmethod
    def init_with_epoch(
        cls,
        stored: StoredCompactions,
        epoch: int,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> FenceableCompactions:
        """Claim ``epoch`` (taken from the freshly fenced manifest) by writing a new version.

        :raises ClosedError: ``reason="fenced"``: the file already carries a larger epoch.
        :raises UnavailableError: still conflicting after ``timeout``.
        """
        fc = cls(stored, epoch)

        def check(c: Compactions) -> None:
            if c.compactor_epoch > epoch:
                fc._fenced = True
                fc._raise_fenced(c.compactor_epoch)

        def claim(c: Compactions) -> Compactions:
            return dataclasses.replace(c, compactor_epoch=epoch)

        stored._update(claim, check, timeout, clock)
        logger.info("fenced compactions epoch=%d compactions_id=%d", epoch, stored.id)
        return fc

    @property
    def compactions(self) -> Compactions:
        """The newest version this client knows."""
        return self.stored.compactions

    @property
    def id(self) -> int:
        """The id of :attr:`compactions`."""
        return self.stored.id

    @property
    def fenced(self) -> bool:
        """Whether a newer compactor has been seen (then every call raises)."""
        return self._fenced

    def _raise_fenced(self, stored_epoch: int | None = None) -> None:
        raise ClosedError(
            "detected newer compactor",
            reason=CloseReason.FENCED,
            role="compactor",
            local_epoch=self.epoch,
            stored_epoch=stored_epoch,
        )

    def check_epoch(self, c: Compactions) -> None:
        """:raises ClosedError: ``c`` carries a newer epoch (fenced).
        :raises InternalError: ``c`` carries an older epoch."""
        if c.compactor_epoch > self.epoch:
            if not self._fenced:
                logger.warning(
                    "compactor fenced by a newer one local_epoch=%d stored_epoch=%d",
                    self.epoch,
                    c.compactor_epoch,
                )
            self._fenced = True
            self._raise_fenced(c.compactor_epoch)
        if c.compactor_epoch < self.epoch:
            raise InternalError(
                "stored compactor epoch is lower than the local epoch",
                local_epoch=self.epoch,
                stored_epoch=c.compactor_epoch,
            )

    def refresh(self) -> Compactions:
        """Reload the latest version and check the epoch (see :meth:`check_epoch`)."""
        if self._fenced:
            self._raise_fenced()
        self.stored.refresh()
        self.check_epoch(self.stored.compactions)
        return self.stored.compactions

    def update(
        self,
        mutate: CompactionsMutation,
        *,
        timeout: float = DEFAULT_UPDATE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> Compactions:
        """:meth:`StoredCompactions.update` with the epoch checked before every attempt; the
        mutation must leave ``compactor_epoch`` unchanged. A fenced client writes nothing.

        :raises ClosedError: ``reason="fenced"``.
        :raises InternalError: the stored epoch is lower than ours, or ``mutate`` changed it.
        """
        if self._fenced:
            self._raise_fenced()

        def guarded(c: Compactions) -> Compactions | None:
            new = mutate(c)
            if isinstance(new, Compactions) and new.compactor_epoch != c.compactor_epoch:
                raise InternalError(
                    "a fenced compactions update may not change the epoch",
                    current=c.compactor_epoch,
                    new=new.compactor_epoch,
                )
            return new

        return self.stored._update(guarded, self.check_epoch, timeout, clock)
