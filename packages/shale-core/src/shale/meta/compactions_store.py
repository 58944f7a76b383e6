"""The ``.compactions`` store: sequenced versions, the update loop and compactor-epoch fencing.

Metadata shared by the engine, the compactor (which fences and updates it) and the GC (which
reads it and advances its boundary), so it lives in core's metadata layer.

This is shale's twin of SlateDB's ``compactions_store.rs`` (FORMAT.md 9, 10.1, 10.4, 10.5):
the ``compactions/<20-digit id>.compactions`` specialisation of the sequenced storage protocol
in :mod:`shale.meta.versioned`, which it shares with :mod:`shale.meta.manifest_store` and
which states and implements the common invariants (create-if-absent versions, mutations
re-applied after conflicts, the GC boundary ``gc/compactions.boundary``, probe-forward and
re-LIST reads, epochs that only grow, fenced clients that never write):

- :class:`CompactionsStore` reads and writes the numbered versions (version 2 of the file
  format by default; versions 1 and 2 are read);
- :class:`StoredCompactions` is one client's view (the latest id it knows and that state) plus
  the reload-and-retry update loop;
- :class:`FenceableCompactions` binds that view to a compactor epoch.

What is specific to the compactions file:

- **Mutations, not snapshots.** ``mutate(current) -> Compactions | None`` is re-applied to the
  latest version after a conflict, so a compactor never writes back a stale copy that would
  erase a compaction submitted meanwhile by ``shale compactor submit``.
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

import logging
import time
from collections.abc import Callable

from shale.errors import ShaleError
from shale.fbs.compactions import (
    COMPACTIONS_VERSIONS,
    Compactions,
    decode_compactions,
    encode_compactions,
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

_ROLE = "compactor"
_EPOCH_FIELD = "compactor_epoch"

#: ``mutate(current)``: the state to write as the next version, or ``None`` for "nothing to do".
#: Re-applied to the reloaded state after every conflict, so it must be pure.
CompactionsMutation = Callable[[Compactions], "Compactions | None"]


class CompactionsConflict(ShaleError):
    """Internal: the id we tried to create exists, or lies at or below the GC boundary. The
    update loop reloads and retries; it never reaches users."""

    kind = "conflict"


_COMPACTIONS: SequenceKind[Compactions] = SequenceKind(
    name="compactions",
    noun="compactions file",
    directory="compactions",
    extension=".compactions",
    boundary_file="compactions.boundary",
    value_type=Compactions,
    format_versions=COMPACTIONS_VERSIONS,
    encode=encode_compactions,
    decode=decode_compactions,
    epoch_fields=(_EPOCH_FIELD,),
    conflict=CompactionsConflict,
    logger=logger,
)


class CompactionsStore(SequencedStore[Compactions]):
    """Reads and writes the numbered ``.compactions`` versions of the database at ``root``.

    :param store: the object store holding the database.
    :param root: the database path inside the store (``""`` for the store's root).
    :param format_version: the file version written (2 = SlateDB 0.17.0's bytes, 1 = readable
        by SlateDB <= 0.12.1, which cannot record the destination of an L0-only compaction).
        Both versions are always read.
    :param check_boundary: honour ``gc/compactions.boundary`` (FORMAT.md 10.5).
    :raises InvalidError: an unknown ``format_version``.
    """

    kind = _COMPACTIONS

    def path(self, compactions_id: int) -> str:
        """The object key of version ``compactions_id``."""
        return super().path(compactions_id)

    def read(self, compactions_id: int) -> Compactions:
        """Version ``compactions_id``.

        :raises ObjectNotFound: it does not exist (a :class:`~shale.errors.DataError`).
        :raises DataError: its bytes are malformed.
        """
        return super().read(compactions_id)

    def try_write(self, compactions_id: int, compactions: Compactions) -> None:
        """Create version ``compactions_id`` atomically, only if absent.

        :raises CompactionsConflict: the id is taken, or is at or below the GC boundary.
        :raises InvalidError: a bad id, or state :attr:`format_version` cannot represent.
        """
        super().try_write(compactions_id, compactions)


def _initial(compactor_epoch: int) -> Compactions:
    return Compactions(compactor_epoch=compactor_epoch, recent_compactions=[])


class StoredCompactions(Stored[Compactions]):
    """One client's view of the ``.compactions`` file: the latest version it knows and the
    update loop.

    :ivar id: the id of :attr:`compactions`.
    :ivar compactions: the newest version this client has read or written.
    """

    versions: CompactionsStore

    def __init__(self, cs: CompactionsStore, compactions_id: int, compactions: Compactions) -> None:
        super().__init__(cs, compactions_id, compactions)

    @property
    def cs(self) -> CompactionsStore:
        """The store of the compactions versions."""
        return self.versions

    @property
    def compactions(self) -> Compactions:
        """The newest version this client has read or written."""
        return self.value

    @classmethod
    def try_load(cls, cs: CompactionsStore) -> StoredCompactions | None:
        """The latest version, or ``None`` when the database has no compactions file."""
        return cls._try_load(cs)

    @classmethod
    def load(cls, cs: CompactionsStore) -> StoredCompactions:
        """The latest version. :raises DataError: no compactions file exists."""
        return cls._load(cs)

    @classmethod
    def create(cls, cs: CompactionsStore, compactor_epoch: int) -> StoredCompactions:
        """Create version 1 with ``compactor_epoch`` and no compactions.

        :raises CompactionsConflict: version 1 exists already (use :meth:`create_or_load`).
        """
        return cls._create(cs, _initial(compactor_epoch))

    @classmethod
    def create_or_load(cls, cs: CompactionsStore) -> StoredCompactions:
        """The latest version, or a new version 1 with epoch 0 when none exists (racing
        creators agree on one version 1)."""
        return cls._create_or_load(cs, lambda: _initial(0))

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
        return self._update(lambda c, _next_id: mutate(c), None, timeout, clock)


class FenceableCompactions(Fenceable[Compactions]):
    """A :class:`StoredCompactions` owned by one compactor epoch (FORMAT.md 10.4).

    Make one with :meth:`init_with_epoch`. The stored ``compactor_epoch`` must equal
    :attr:`epoch`: larger means a newer compactor took over (this one is fenced).

    :ivar epoch: the epoch this compactor claimed (the manifest's ``compactor_epoch``).
    """

    _fenced_message = "detected newer compactor"
    stored: StoredCompactions

    def __init__(self, stored: StoredCompactions, epoch: int) -> None:
        super().__init__(stored, epoch, _ROLE, _EPOCH_FIELD)

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

        cls._claim(stored, _ROLE, _EPOCH_FIELD, lambda _stored: epoch, check, timeout, clock)
        return fc

    @property
    def compactions(self) -> Compactions:
        """The newest version this client knows."""
        return self.stored.compactions

    def check_epoch(self, c: Compactions) -> None:
        """:raises ClosedError: ``c`` carries a newer epoch (fenced).
        :raises InternalError: ``c`` carries an older epoch."""
        super().check_epoch(c)

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
        return self._update(lambda c, _next_id: mutate(c), timeout, clock)
