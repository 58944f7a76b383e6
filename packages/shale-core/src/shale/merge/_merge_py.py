"""The k-way merge iterator, pure-Python reference twin (see ``shale/merge/_merge_c.pyx``).

Every read path and every compaction merges several sorted row streams -- the memtable, the
immutable memtables, L0 SSTs newest first, then the sorted runs -- into one. This module does
that merge and nothing else; retention (tombstones, TTL, snapshots) and merge operators sit on
top of it.

Invariants
----------
* Each source yields row tuples (:mod:`shale.row`) ordered by key ascending then seq
  descending, or -- with ``reverse=True`` -- key descending then seq descending: within one key
  the newest version always comes first, in both directions.
* The output is in that same order. Rows equal on ``(key, seq)`` come out in source order:
  sources are given in precedence order, so the lower index wins.
* ``dedup=True`` keeps only the first row of each key: the newest version, and on a seq tie the
  one from the lower-index source.
* Laziness: nothing is pulled at construction, and at most one row per source is held. The
  source whose row was just returned is advanced only when the next row is asked for, so a
  caller that stops early never forces an extra read.
* Exceptions from a source (``next`` or ``seek``) propagate unchanged. A source whose ``next``
  raised is asked again on the following call; what it does then is up to the source.
* Rows must be tuples (``Row`` is one) whose key is ``bytes`` and whose seq is an ``int`` in
  ``[0, 2**64)``, the range of SlateDB's u64 sequence numbers; anything else raises
  :class:`TypeError` (or :class:`shale.errors.InvalidError` for a seq out of range) rather than
  merging garbage. Both twins check the same things so they fail alike.
* The iterator is not re-entrant: a source that calls back into the iterator that is pulling it
  gets :class:`RuntimeError`.

Seeking
-------
``seek(key)`` positions the iterator so that the next row is the first whose key is ``>= key``
(``<= key`` when reversed), as if a fresh merge had been started over the sources from there;
so it also forgets the key that ``dedup`` was suppressing. A source with a ``seek`` method is
told to seek (and re-read afterwards, even if it was exhausted); any other source is pulled
forward, discarding rows, until its row satisfies the bound. Seeks may therefore go backwards
only over seekable sources: a plain iterator cannot give back what it already yielded, so after
a backward seek it simply continues from where it is (its rows past the bound are still
skipped, and with ``dedup`` an older version of a key already returned can then appear).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from shale.errors import InvalidError

__all__ = ["MergeIterator"]

logger = logging.getLogger(__name__)

_U64_LIMIT = 1 << 64

#: A heap entry: (key, or _Desc(key) when reversed; -seq; source index; row).
_Entry = tuple[Any, int, int, tuple[Any, ...]]


class _Desc:
    """A bytes key that sorts in descending order, for ``reverse=True`` heap entries."""

    __slots__ = ("key",)

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.key == other.key

    def __lt__(self, other: _Desc) -> bool:
        return self.key > other.key

    __hash__ = None  # type: ignore[assignment]


def _check_row(row: object, index: int) -> tuple[Any, ...]:
    """Return ``row`` if it is a valid row tuple from source ``index``, else raise."""
    if not isinstance(row, tuple) or len(row) < 2:
        raise TypeError(
            f"MergeIterator: source {index} yielded {type(row).__name__}, "
            "expected a row tuple (key, seq, ...)"
        )
    key = row[0]
    if not isinstance(key, bytes):
        raise TypeError(
            f"MergeIterator: source {index} yielded a row whose key is "
            f"{type(key).__name__}, expected bytes"
        )
    seq = row[1]
    if not isinstance(seq, int):
        raise TypeError(
            f"MergeIterator: source {index} yielded a row whose seq is "
            f"{type(seq).__name__}, expected int"
        )
    if not 0 <= seq < _U64_LIMIT:
        raise InvalidError("MergeIterator: row seq out of the u64 range", source=index, seq=seq)
    return row


class MergeIterator:
    """Merge sorted row sources into one sorted stream (see the module docstring).

    :param sources: row iterables in precedence order (memtable first). Each is turned into an
        iterator with :func:`iter` at construction; an iterator with a ``seek(key)`` method is
        seeked natively by :meth:`seek`.
    :param reverse: the sources (and the output) are ordered by key descending, seq descending.
    :param dedup: return only the newest version of each key.
    """

    __slots__ = (
        "_busy",
        "_dedup",
        "_heap",
        "_iters",
        "_last_key",
        "_pending",
        "_reverse",
        "_seeks",
        "_stale",
    )

    def __init__(
        self,
        sources: Sequence[Iterable[tuple[Any, ...]]],
        *,
        reverse: bool = False,
        dedup: bool = False,
    ) -> None:
        self._iters: list[Iterator[tuple[Any, ...]]] = [iter(s) for s in sources]
        self._seeks: list[Callable[[bytes], object] | None] = [
            getattr(it, "seek", None) for it in self._iters
        ]
        # Every source is in exactly one place: its row is in the heap; or it is pending (must
        # be pulled before the next comparison); or it is the stale heap top; or it is done.
        #
        # Heap entries: (key or _Desc(key), -seq, source index, row). The index is unique, so
        # the row itself is never compared.
        self._heap: list[_Entry] = []
        # Indices of pending sources, ascending: all of them at first, the seekable ones after
        # a seek. They are pulled in this order, so both twins raise the same first error.
        self._pending: list[int] = list(range(len(self._iters)))
        # True when heap[0] is the row last returned (or skipped by dedup): its source is
        # advanced lazily, at the next call, with one heapreplace.
        self._stale = False
        self._reverse = bool(reverse)
        self._dedup = bool(dedup)
        self._last_key: bytes | None = None
        self._busy = False

    def __iter__(self) -> MergeIterator:
        return self

    def __next__(self) -> tuple[Any, ...]:
        """Return the next row in merge order; raise :class:`StopIteration` at the end."""
        if self._busy:
            self._reentered()
        self._busy = True
        try:
            top = self._settle()
            if top is None:
                raise StopIteration
            self._stale = True
            row = top[3]
            if self._dedup:
                self._last_key = row[0]
            return row
        finally:
            self._busy = False

    def peek(self) -> tuple[Any, ...] | None:
        """Return the row :meth:`__next__` would return, without consuming it; None at the end.

        Peeking may pull sources (at most one row ahead each), exactly as ``__next__`` would.
        """
        if self._busy:
            self._reentered()
        self._busy = True
        try:
            top = self._settle()
            return None if top is None else top[3]
        finally:
            self._busy = False

    def seek(self, key: bytes) -> None:
        """Position the iterator so the next row is the first with key ``>= key``.

        With ``reverse=True`` it is the first row with key ``<= key``. Seekable sources are
        seeked; plain ones are pulled forward (see the module docstring about going backwards).

        :param key: the bound, a ``bytes`` object.
        :raises TypeError: ``key`` is not ``bytes``.
        """
        if not isinstance(key, bytes):
            raise TypeError(f"MergeIterator.seek: key must be bytes, not {type(key).__name__}")
        if self._busy:
            self._reentered()
        self._busy = True
        try:
            self._last_key = None
            entries = self._heap
            pending = set(self._pending)
            if self._stale:
                pending.add(entries[0][2])
                entries = entries[1:]
            heads = {entry[2]: entry[3] for entry in entries}
            self._stale = False
            reverse = self._reverse
            try:
                for index, seek in enumerate(self._seeks):
                    if seek is not None:
                        seek(key)
                        heads.pop(index, None)
                        pending.add(index)
                        continue
                    # A plain iterator: pull forward until its row is within the bound.
                    while True:
                        if index in pending:
                            row = self._pull(index)
                            pending.discard(index)
                            if row is not None:
                                heads[index] = row
                        head = heads.get(index)
                        if head is None:
                            break
                        if (head[0] <= key) if reverse else (head[0] >= key):
                            break
                        del heads[index]
                        pending.add(index)
            finally:
                self._pending = sorted(pending)
                self._heap = [self._entry(index, row) for index, row in heads.items()]
                heapq.heapify(self._heap)
        finally:
            self._busy = False

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _reentered() -> None:
        raise RuntimeError("MergeIterator is already running (a source re-entered it)")

    def _entry(self, index: int, row: tuple[Any, ...]) -> _Entry:
        key = row[0]
        return (_Desc(key) if self._reverse else key, -row[1], index, row)

    def _pull(self, index: int) -> tuple[Any, ...] | None:
        """The next (validated) row of source ``index``, or None when it is exhausted."""
        try:
            row = next(self._iters[index])
        except StopIteration:
            return None
        return _check_row(row, index)

    def _settle(self) -> _Entry | None:
        """Bring the heap up to date, drop older versions of the last key; the top or None.

        A source that raises stays pending (or the stale top), so the next call asks it again.
        """
        heap = self._heap
        if self._stale:
            self._advance_top()
        pending = self._pending
        while pending:
            index = pending[0]
            row = self._pull(index)
            del pending[0]
            if row is not None:
                heapq.heappush(heap, self._entry(index, row))
        last_key = self._last_key
        while heap:
            top = heap[0]
            if last_key is None or top[3][0] != last_key:
                return top
            self._stale = True
            self._advance_top()
        return None

    def _advance_top(self) -> None:
        """Replace the stale heap top by the next row of its source."""
        heap = self._heap
        index = heap[0][2]
        row = self._pull(index)
        self._stale = False
        if row is None:
            heapq.heappop(heap)
        else:
            key = row[0]
            heapq.heapreplace(heap, (_Desc(key) if self._reverse else key, -row[1], index, row))

    def __repr__(self) -> str:
        return (
            f"<MergeIterator sources={len(self._iters)} reverse={self._reverse} "
            f"dedup={self._dedup}>"
        )
