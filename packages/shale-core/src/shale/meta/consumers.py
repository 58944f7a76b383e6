"""Change-stream consumer cursors: one small object per named consumer, under a shale-only
directory of the database (``<root>/shale-consumers/<name>.json``).

A cursor is the consumer's *committed* position: every change with ``seq <= seq`` has been
processed, the next one it needs is in WAL ``wal_id`` or later. The garbage collector
(shale-gc) reads these cursors and keeps every WAL SST with ``id >= wal_id`` of each live
cursor, so a consumer never loses data it has not read. A cursor is *live* while
``updated_ms + lifetime_s * 1000 >= now``: a consumer that stopped for good stops pinning the WAL
after its lifetime (a stale pin), like an expired checkpoint.

The official ``slatedb`` package never lists this directory (it reads ``manifest/``, ``wal/``,
``compacted/``, ``compactions/`` and ``gc/`` by name), so the database stays byte-compatible;
shale's own tools ignore it too. One writer per name: two streams committing under one name
overwrite each other (the last commit wins); nothing stops that but the name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shale import ids
from shale.errors import DataError, InvalidError
from shale.objstore.protocol import ObjectNotFound, ObjectStore

__all__ = [
    "CONSUMERS_DIR",
    "DEFAULT_PIN_LIFETIME_S",
    "ConsumerCursor",
    "check_consumer_name",
    "consumer_path",
    "delete_cursor",
    "list_cursors",
    "read_cursor",
    "write_cursor",
]

#: The shale-only directory of consumer cursors (never read by the official package).
CONSUMERS_DIR = "shale-consumers"
#: How long a cursor keeps pinning the WAL after its last commit: 7 days.
DEFAULT_PIN_LIFETIME_S = 7 * 24 * 3600.0
_SUFFIX = ".json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class ConsumerCursor:
    """A named consumer's committed position in the change stream.

    :ivar name: the consumer's name.
    :ivar seq: every change with a seq up to this one has been processed (``None``: nothing yet;
        the consumer starts at the oldest retained change).
    :ivar wal_id: the WAL SST holding the next change it needs (or an older one): GC keeps this
        id and every later one while the cursor is live.
    :ivar updated_ms: when the cursor was last written (the writer's clock, Unix ms).
    :ivar lifetime_s: the cursor stops pinning the WAL this long after ``updated_ms``.
    """

    name: str
    seq: int | None
    wal_id: int
    updated_ms: int
    lifetime_s: float = DEFAULT_PIN_LIFETIME_S

    def live(self, now_ms: int) -> bool:
        """Does this cursor still pin the WAL at ``now_ms``?"""
        return now_ms <= self.updated_ms + int(self.lifetime_s * 1000)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "seq": self.seq,
                "wal_id": self.wal_id,
                "updated_ms": self.updated_ms,
                "lifetime_s": self.lifetime_s,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, key: str = "") -> ConsumerCursor:
        try:
            d = json.loads(data)
            seq = d["seq"]
            cur = cls(
                name=str(d["name"]),
                seq=None if seq is None else int(seq),
                wal_id=int(d["wal_id"]),
                updated_ms=int(d["updated_ms"]),
                lifetime_s=float(d["lifetime_s"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError("malformed consumer cursor", key=key, error=str(exc)) from None
        return cur


def check_consumer_name(name: object) -> str:
    """``name`` if it is a valid consumer name (1-128 of ``[A-Za-z0-9._-]``, not starting with
    a dot, dash or underscore), else :class:`InvalidError`."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidError(
            "a consumer name is 1-128 characters of A-Z a-z 0-9 . _ -, starting alphanumeric",
            name=name,
        )
    return name


def consumer_path(root: str, name: str) -> str:
    """The key of consumer ``name``'s cursor object."""
    return ids.dir_path(root, CONSUMERS_DIR) + check_consumer_name(name) + _SUFFIX


def read_cursor(store: ObjectStore, root: str, name: str) -> ConsumerCursor | None:
    """Consumer ``name``'s cursor, or ``None`` if it has none."""
    key = consumer_path(root, name)
    try:
        data = store.get(key)
    except ObjectNotFound:
        return None
    return ConsumerCursor.from_bytes(data, key)


def write_cursor(store: ObjectStore, root: str, cursor: ConsumerCursor) -> None:
    """Store ``cursor`` (a whole-object put: readers see the old or the new one)."""
    store.put(consumer_path(root, cursor.name), cursor.to_bytes())


def delete_cursor(store: ObjectStore, root: str, name: str) -> None:
    """Forget consumer ``name`` (its pin ends now). Idempotent."""
    store.delete(consumer_path(root, name))


def list_cursors(store: ObjectStore, root: str) -> list[ConsumerCursor]:
    """Every consumer cursor of the database, by name. A malformed one raises
    :class:`DataError` (the GC then keeps every WAL: it cannot know what that consumer needs).
    A cursor deleted between the listing and the read is skipped."""
    prefix = ids.dir_path(root, CONSUMERS_DIR)
    out = []
    for meta in store.list(prefix):
        name = meta.key[len(prefix) :]
        if "/" in name or not name.endswith(_SUFFIX):
            continue
        try:
            data = store.get(meta.key)
        except ObjectNotFound:
            continue
        out.append(ConsumerCursor.from_bytes(data, meta.key))
    return sorted(out, key=lambda c: c.name)
