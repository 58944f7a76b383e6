"""The plain model the simulation checks the database against.

Each key holds its versions as ``(seq, idx, kind, value, expire_ts)``; ``idx`` orders several
ops of one batch on one key (they share the batch's seq) as if written one by one, which is
what a reader must see. Resolution follows FORMAT.md 11.3 with the concat merge operator,
written independently of shale's code: newest first, collect merge operands until a value or
tombstone; an expired value acts as a tombstone and an expired operand is skipped.

Durability: ``committed`` is the last seq the current writer has committed (visible in
memory); ``acked`` the last seq acknowledged durable (a durable write or ``flush()``
returned). A crash or fencing may lose any seq above ``acked`` and none at or below it;
whatever survives is a prefix of seqs, so after a reopen the database's ``last_seq`` is where
the model is cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PUT, DELETE, MERGE = "put", "delete", "merge"


@dataclass
class Resolved:
    value: bytes
    seq: int
    expire_ts: int | None  # only for a plain value (merged results are not compared)
    merged: bool


@dataclass
class Model:
    versions: dict[bytes, list[tuple[int, int, str, bytes, int | None]]] = field(
        default_factory=dict
    )
    committed: int = 0
    acked: int = 0

    def apply(self, seq: int, ops: list[tuple[str, bytes, bytes, int | None]]) -> None:
        """Record one write (a single op or a batch) committed at ``seq``.

        :param ops: ``(kind, key, value, expire_ts)`` in the order the user issued them.
        """
        for idx, (kind, key, value, expire) in enumerate(ops):
            if kind == DELETE:
                value, expire = b"", None
            self.versions.setdefault(key, []).append((seq, idx, kind, value, expire))
        self.committed = max(self.committed, seq)

    def truncate(self, last_seq: int) -> int:
        """Forget every version above ``last_seq`` (lost in a crash); returns how many."""
        lost = 0
        for key in list(self.versions):
            kept = [v for v in self.versions[key] if v[0] <= last_seq]
            lost += len(self.versions[key]) - len(kept)
            if kept:
                self.versions[key] = kept
            else:
                del self.versions[key]
        self.committed = last_seq
        self.acked = last_seq
        return lost

    def resolve(self, key: bytes, seq: int, now: int) -> Resolved | None:
        """What a read at ``seq`` (snapshot or committed) and time ``now`` must see."""
        rows = [v for v in self.versions.get(key, ()) if v[0] <= seq]
        rows.sort(key=lambda v: (v[0], v[1]), reverse=True)
        operands: list[tuple[int, bytes]] = []
        base: bytes | None = None
        for vseq, _idx, kind, value, expire in rows:
            expired = expire is not None and expire <= now
            if kind == MERGE:
                if not expired:
                    operands.append((vseq, value))
                continue
            if kind == PUT and not expired:
                if not operands:
                    return Resolved(value, vseq, expire, False)
                base = value
            break
        if not operands:
            return None
        joined = (base or b"") + b"".join(v for _s, v in reversed(operands))
        return Resolved(joined, operands[0][0], None, True)

    def keys(self) -> list[bytes]:
        return sorted(self.versions)

    def scan(
        self, start: bytes | None, end: bytes | None, seq: int, now: int, reverse: bool
    ) -> list[tuple[bytes, bytes]]:
        out = []
        for key in self.keys():
            if start is not None and key < start:
                continue
            if end is not None and key >= end:
                continue
            r = self.resolve(key, seq, now)
            if r is not None:
                out.append((key, r.value))
        if reverse:
            out.reverse()
        return out
