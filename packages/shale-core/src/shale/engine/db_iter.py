"""The user's iterator (SlateDB's ``db_iter``): the merge of a reader's sources over a key
range, with merge operands folded, tombstones hidden, and :meth:`DbIterator.seek`.

Invariants: the view (memtables, manifest, seq bound) is fixed when the iterator is made and
never changes, so an iterator is a consistent snapshot of its range; ``seek`` only moves
forward (backward in reverse) past the last key returned, by rebuilding the merge from the
same view.
"""

from __future__ import annotations

from shale.batch import check_key
from shale.engine import components
from shale.engine.reader import Reader
from shale.errors import InvalidError
from shale.keys import KeysValues, check_scan_range
from shale.merge import MergeIterator
from shale.merge_operators import resolve_versions
from shale.row import VALUE


class DbIterator(KeysValues):
    """An iterator of ``(key, value)`` over a key range, with :meth:`seek`."""

    def __init__(
        self,
        reader: Reader,
        start: bytes | None,
        end: bytes | None,
        reverse: bool,
        max_seq: int,
        include_expired: bool | None,
        cache_blocks: bool = True,
        read_ahead_bytes: int | None = None,
        max_fetch_tasks: int | None = None,
    ) -> None:
        components.check_flag("reverse", reverse)
        components.check_flag("cache_blocks", cache_blocks)
        self._cache_blocks = cache_blocks
        self._fetch = components.check_scan_fetch(read_ahead_bytes, max_fetch_tasks)
        components.check_include_expired(include_expired)
        start, end = check_scan_range(start, end)
        self._reader = reader
        self._start = start
        self._end = end
        self._reverse = reverse
        self._hide = reader.hide_expired(include_expired)
        self._now = reader.clock.now_ms()
        self._last: bytes | None = None
        self._view = reader.state.view(max_seq)
        self._merge = self._build(start, end)
        reader.stats["scan_count"] += 1

    def _build(self, start: bytes | None, end: bytes | None) -> MergeIterator:
        sources = self._reader.sources(
            self._view, start, end, self._reverse, self._cache_blocks, self._fetch
        )
        return MergeIterator(sources, reverse=self._reverse)

    def __iter__(self) -> DbIterator:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        merge = self._merge
        op = self._reader.merge_operator
        while True:
            first = next(merge)  # StopIteration ends the scan
            key = first[0]
            versions = [first]
            while True:
                nxt = merge.peek()
                if nxt is None or nxt[0] != key:
                    break
                versions.append(next(merge))
            if first[2] == VALUE and (not self._hide or first[4] is None or first[4] > self._now):
                self._last = key
                return key, first[3]
            res = resolve_versions(versions, op, now_ms=self._now, hide_expired=self._hide)
            if res is not None:
                self._last = key
                return key, res[0]

    def seek(self, key: bytes) -> None:
        """Continue from the first key ``>= key`` (``<= key`` in reverse).

        :raises InvalidError: ``key`` is outside the scan range, or not past the last key
            returned.
        """
        key = check_key(key)
        if (self._start is not None and key < self._start) or (
            self._end is not None and key >= self._end
        ):
            raise InvalidError("seek key outside the scan range", key=key)
        if self._last is not None and (
            key <= self._last if not self._reverse else key >= self._last
        ):
            raise InvalidError("seek key must be past the last key returned", key=key)
        if self._reverse:
            self._merge = self._build(self._start, key + b"\x00")
        else:
            self._merge = self._build(key, self._end)
