"""What a garbage-collection round saw and did: :class:`GcObject`, :class:`KindReport`,
:class:`GcReport`.

Every object a collector lists ends up in exactly one of a :class:`KindReport`'s lists:

- ``deleted``: removed this round (in a dry run: *would* have been removed);
- ``kept``: not removed, with the reason (one of the ``KEEP_*`` texts in :mod:`shale_gc.rules`,
  or a plugin's veto);
- ``failed``: a candidate whose delete raised; it is retried next round.

Objects whose names are not the directory's canonical names (temporary files, other tools'
files) are never touched and not reported. Reports are plain data, safe to keep and to hand to
``shale_gc_finished`` observers; :meth:`GcReport.to_dict` gives a JSON-safe form.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shale.spi import Ulid

__all__ = [
    "KIND_COMPACTED",
    "KIND_COMPACTIONS",
    "KIND_MANIFEST",
    "KIND_WAL",
    "KINDS",
    "GcObject",
    "GcReport",
    "KindReport",
]

KIND_MANIFEST = "manifest"
KIND_WAL = "wal"
KIND_COMPACTED = "compacted"
KIND_COMPACTIONS = "compactions"
#: Every kind, in the order a round collects them (SlateDB's order).
KINDS = (KIND_MANIFEST, KIND_WAL, KIND_COMPACTED, KIND_COMPACTIONS)


@dataclass(frozen=True, slots=True)
class GcObject:
    """One object of a database directory, as listed.

    :ivar kind: ``"wal"``, ``"compacted"``, ``"manifest"`` or ``"compactions"``.
    :ivar key: the object key in the store.
    :ivar id: the WAL, manifest or compactions id (``int``), or the SST's :class:`Ulid`.
    :ivar size: bytes.
    :ivar last_modified: seconds since the Unix epoch, as the store reports it.
    """

    kind: str
    key: str
    id: int | Ulid
    size: int
    last_modified: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the id as an int or ULID text)."""
        return {
            "kind": self.kind,
            "key": self.key,
            "id": str(self.id) if isinstance(self.id, Ulid) else self.id,
            "size": self.size,
            "last_modified": self.last_modified,
        }


@dataclass
class KindReport:
    """What one collector did in one round.

    :ivar kind: the directory collected.
    :ivar min_age: the ``min_age`` used (seconds).
    :ivar deleted: objects deleted (dry run: that would be deleted).
    :ivar kept: ``(object, reason)`` for every listed object that stays.
    :ivar failed: ``(object, error text)`` for deletes that raised (retried next round).
    :ivar error: why the collector stopped early (nothing more was deleted), or ``None``.
    :ivar boundary: the GC boundary advanced to before deleting (manifests, compactions).
    """

    kind: str
    min_age: float
    deleted: list[GcObject] = field(default_factory=list)
    kept: list[tuple[GcObject, str]] = field(default_factory=list)
    failed: list[tuple[GcObject, str]] = field(default_factory=list)
    error: str | None = None
    boundary: int | None = None

    @property
    def bytes_freed(self) -> int:
        """Total size of :attr:`deleted`."""
        return sum(o.size for o in self.deleted)

    def kept_reasons(self) -> dict[str, int]:
        """How many objects were kept for each reason."""
        return dict(Counter(reason for _, reason in self.kept))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "kind": self.kind,
            "min_age": self.min_age,
            "deleted": [o.to_dict() for o in self.deleted],
            "bytes_freed": self.bytes_freed,
            "kept": [{**o.to_dict(), "reason": r} for o, r in self.kept],
            "kept_reasons": self.kept_reasons(),
            "failed": [{**o.to_dict(), "error": e} for o, e in self.failed],
            "error": self.error,
            "boundary": self.boundary,
        }


@dataclass
class GcReport:
    """One garbage-collection round over one or more directories.

    :ivar dry_run: nothing was deleted or written; ``deleted`` lists what would have been.
    :ivar started_ms: the collector's clock when the round started (ms since the epoch).
    :ivar finished_ms: ... and when it finished.
    :ivar expired_checkpoints: ids of the expired checkpoints removed from the manifest first
        (dry run: that would have been removed).
    :ivar kinds: a :class:`KindReport` per directory collected, in collection order.
    :ivar errors: round-level errors (for example: the expired-checkpoint update failed, so
        nothing was collected).
    :ivar detach: what detaching from clone sources did (``shale.spi.DetachResult``), when the
        collector's ``detach`` option is on.
    :ivar staging_swept: stale staging files a killed upload left (local stores), removed.
    """

    dry_run: bool
    started_ms: int
    finished_ms: int = 0
    expired_checkpoints: list[uuid.UUID] = field(default_factory=list)
    kinds: dict[str, KindReport] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    detach: Any = None
    staging_swept: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> list[GcObject]:
        """Every deleted (dry run: deletable) object, all kinds."""
        return [o for k in self.kinds.values() for o in k.deleted]

    @property
    def bytes_freed(self) -> int:
        """Total bytes of :attr:`deleted`."""
        return sum(k.bytes_freed for k in self.kinds.values())

    @property
    def failed(self) -> list[tuple[GcObject, str]]:
        """Every failed delete, all kinds."""
        return [f for k in self.kinds.values() for f in k.failed]

    @property
    def ok(self) -> bool:
        """No round error, no collector error and no failed delete."""
        kinds = self.kinds.values()
        return not self.errors and all(k.error is None and not k.failed for k in kinds)

    def summary(self) -> str:
        """A few human-readable lines: per directory, deleted, bytes, kept by reason, errors."""
        verb = "would delete" if self.dry_run else "deleted"
        lines = []
        if self.expired_checkpoints:
            ids = ", ".join(str(c) for c in self.expired_checkpoints)
            lines.append(f"expired checkpoints {'to remove' if self.dry_run else 'removed'}: {ids}")
        for err in self.errors:
            lines.append(f"error: {err}")
        d = self.detach
        if d is not None and (d.copied or d.detached or d.pending):
            lines.append(
                f"detach: copied {len(d.copied)} SST(s); released {d.detached or 'none'};"
                f" pending {d.pending or 'none'}"
            )
        for k in self.kinds.values():
            lines.append(
                f"{k.kind}: {verb} {len(k.deleted)} object(s), {k.bytes_freed} bytes;"
                f" kept {len(k.kept)}"
            )
            for reason, n in sorted(k.kept_reasons().items()):
                lines.append(f"  kept {n}: {reason}")
            for o, e in k.failed:
                lines.append(f"  delete failed (retried next round): {o.key}: {e}")
            if k.error is not None:
                lines.append(f"  error: {k.error}")
        total = f"total: {verb} {len(self.deleted)} object(s), {self.bytes_freed} bytes"
        lines.append(total)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "dry_run": self.dry_run,
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
            "expired_checkpoints": [str(c) for c in self.expired_checkpoints],
            "kinds": {name: k.to_dict() for name, k in self.kinds.items()},
            "deleted": len(self.deleted),
            "bytes_freed": self.bytes_freed,
            "errors": list(self.errors),
            "detach": None if self.detach is None else self.detach._asdict(),
        }
