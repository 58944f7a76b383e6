"""Time travel: the retained floor and time -> seq (``docs/time-travel.md``).

The *floor* is the oldest seq a snapshot may read at. Every SST keeps every version above the
floor it was written with and the newest version at or below it, so a read at ``s >= floor``
sees exactly what it saw when ``s`` was current. The writer's L0 flush computes it (from the
open snapshots and :class:`~shale.settings.HistoryRetention`) and records it in the manifest's
``recent_snapshot_min_seq``, never lowering it; the compactor keeps what that recorded value
keeps (``retention_min_seq``), so the two agree by construction and a database's retained
floor is readable from its manifest alone.

Time -> seq goes through the manifest's :class:`~shale.meta.seq_tracker.SequenceTracker`, which
holds one ``(seq, second)`` pair per L0 flush: the flushed memtable's newest seq and the second
of its newest write. Lookups round *down*: the newest recorded seq whose write second ended at
or before the asked time, i.e. a state the database is known to have had by then.
"""

from __future__ import annotations

from shale.meta.seq_tracker import SequenceTracker
from shale.settings import HistoryRetention

__all__ = ["history_floor", "seq_at_time"]


def seq_at_time(tracker: SequenceTracker, at_ms: int) -> int | None:
    """The newest recorded seq whose writes all happened at or before ``at_ms``.

    A pair ``(seq, t)`` means the newest write up to ``seq`` happened during second ``t``
    (``[t s, t s + 1 s)``), so it qualifies only when that whole second ended by ``at_ms``;
    ``None`` when no pair does.
    """
    return tracker.find_seq((at_ms + 1) // 1000 - 1, False)


def history_floor(
    retention: HistoryRetention | None,
    *,
    newest_seq: int,
    tracker: SequenceTracker,
    now_ms: int,
) -> int | None:
    """The oldest seq ``retention`` keeps readable, or ``None`` when it keeps nothing extra.

    ``seqs``: ``newest_seq - seqs``. ``duration``: the seq the tracker rounds ``now - duration``
    down to (:func:`seq_at_time`), 0 when the tracker records nothing that old. With both, the
    lower one (a version inside either window is kept).
    """
    if retention is None:
        return None
    floors = []
    if retention.seqs is not None:
        floors.append(max(0, newest_seq - retention.seqs))
    if retention.duration is not None:
        at = seq_at_time(tracker, now_ms - round(retention.duration * 1000))
        floors.append(0 if at is None else at)
    return min(floors, default=None)
