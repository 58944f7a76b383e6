"""Reading a compaction's sources: read-ahead windows, progress, stopping, view bounds.

Shared by the executor's row pipeline (:mod:`shale_compactor.executor`) and its kernel path
(:mod:`shale_compactor.subcompactions`); see the executor's docstring for the invariants
("Uncached reads with read-ahead", "Stoppable", "Progress").
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from shale.spi import BOUND_INCLUDED, BytesRange, DataError, ShaleError, SsTableInfo, SstView

__all__ = [
    "BLOCKS_PER_FETCH",
    "LOCAL_WINDOW_BUDGET",
    "LOCAL_WINDOW_MAX",
    "PROGRESS_INTERVAL_S",
    "CompactionStopped",
    "window_bytes",
]

#: SlateDB's ``blocks_to_fetch``: a read-ahead window is this many blocks.
BLOCKS_PER_FETCH = 256
#: Sources in a store that serves locally (a local directory) are read in windows of up to
#: this many bytes ...
LOCAL_WINDOW_MAX = 4 * 1024 * 1024
#: ... as long as the windows of all sources of one merge stay within this many bytes.
LOCAL_WINDOW_BUDGET = 32 * 1024 * 1024
#: Seconds between two progress reports (SlateDB: 1 s).
PROGRESS_INTERVAL_S = 1.0


def window_bytes(store: Any, block_size: int, sources: int) -> int:
    """Bytes per read-ahead window of one source among ``sources`` merged together.

    A remote store gets SlateDB's ``blocks_to_fetch`` blocks, read ahead on fetch threads. A
    local store is read on the merging thread, which needs the GIL for each window: beside a
    writer busy in Python every GIL hand-off waits up to the interpreter's switch interval
    (5 ms), so larger windows (up to :data:`LOCAL_WINDOW_MAX`, all sources together within
    :data:`LOCAL_WINDOW_BUDGET`) keep an embedded compaction short (docs/performance.md,
    "Writer throughput during a compaction").
    """
    base = BLOCKS_PER_FETCH * block_size
    if not getattr(store, "serves_locally", False):
        return base
    return max(base, min(LOCAL_WINDOW_MAX, LOCAL_WINDOW_BUDGET // max(1, sources)))


class CompactionStopped(ShaleError):
    """The executor was asked to stop (``stop`` was set) before the job finished.

    Outputs already reported through ``on_output`` are complete and valid for a resume.
    """

    kind = "closed"


class _Progress:
    """Bytes of source SSTs consumed so far (updated on the executing thread only)."""

    __slots__ = ("bytes",)

    def __init__(self, start: int = 0) -> None:
        self.bytes = start


class _ReadAhead:
    """An object-store facade for one SST object: sequential read-ahead, counting, stopping.

    ``SsTable`` reads through ``head`` and ``get_range``. Reads that end at the object's end
    (the footer/metadata tail) go straight to the store. Every other read is served from a
    queue of consecutive windows starting where the sequential reading began; up to ``depth``
    windows beyond the one being read are fetched on ``pool``'s threads. A read outside the
    queue restarts it there.
    """

    def __init__(
        self,
        store: Any,
        key: str,
        size: int,
        *,
        pool: ThreadPoolExecutor | None,
        window: int,
        depth: int,
        progress: _Progress,
        stop: threading.Event | None,
    ) -> None:
        self._store = store
        self._key = key
        self._size = size
        self._pool = pool
        self._window = max(1, window)
        #: bytes per read-ahead window
        self.window = self._window
        self._depth = max(0, depth)
        self._progress = progress
        self._stop = stop
        # (start, end, bytes | Future[bytes]) for consecutive windows
        self._windows: deque[list[Any]] = deque()
        # (start, end, bytes) of the last window read from, or an empty range
        self._hit: tuple[int, int, bytes] = (0, 0, b"")

    def head(self, key: str) -> Any:
        return self._store.head(key)

    def _fetch(self, start: int, end: int) -> bytes:
        data: bytes = self._store.get_range(self._key, start, end)
        return data

    def _schedule(self, start: int) -> None:
        end = min(self._size, start + self._window)
        if self._pool is None:
            self._windows.append([start, end, None])  # fetched on first use
        else:
            self._windows.append([start, end, self._pool.submit(self._fetch, start, end)])

    def _data(self, w: list[Any]) -> bytes:
        data = w[2]
        if data is None:
            data = self._fetch(w[0], w[1])
        elif isinstance(data, Future):
            data = data.result()
        w[2] = data
        if len(data) != w[1] - w[0]:
            raise DataError("SST object is shorter than its metadata says", key=self._key)
        return data  # type: ignore[no-any-return]

    def get_range(self, key: str, start: int, end: int) -> bytes:
        stop = self._stop
        if stop is not None and stop.is_set():
            raise CompactionStopped("compaction stopped")
        self._progress.bytes += end - start
        hit = self._hit
        if hit[0] <= start and end <= hit[1]:  # fast path: inside the window read last
            base = hit[0]
            return hit[2][start - base : end - base]
        if end <= start:
            return b""
        if self._pool is None or end >= self._size or end - start >= self._window:
            # no read-ahead threads (a local store), the metadata tail, or a huge read
            return self._fetch(start, end)
        windows = self._windows
        while windows and windows[0][1] <= start:
            w = windows.popleft()
            if isinstance(w[2], Future):
                w[2].cancel()
        if not windows or start < windows[0][0]:
            self.close()
            self._schedule(start)
        pieces: list[bytes] = []
        pos = start
        i = 0
        while pos < end:
            if i == len(windows):
                self._schedule(windows[-1][1])
            w = windows[i]
            data = self._data(w)
            lo = pos - w[0]
            hi = min(end, w[1]) - w[0]
            pieces.append(data[lo:hi] if (lo or hi != len(data)) else data)
            pos = w[0] + hi
            i += 1
        self._hit = (w[0], w[1], data)
        # keep `depth` windows in flight beyond the last one touched
        while len(windows) < i + self._depth and windows[-1][1] < self._size:
            self._schedule(windows[-1][1])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        """Drop every window, cancelling pending fetches."""
        self._hit = (0, 0, b"")
        while self._windows:
            w = self._windows.popleft()
            if isinstance(w[2], Future):
                w[2].cancel()


def _successor(key: bytes) -> bytes:
    """The smallest key greater than ``key``."""
    return key + b"\x00"


def _view_bounds(view: SstView, resume_key: bytes | None) -> tuple[bytes | None, bytes | None]:
    """``[start, end)`` of the rows a source view contributes (``None``: unbounded)."""
    start: bytes | None = None
    end: bytes | None = None
    rng: BytesRange | None = view.visible_range
    if rng is not None:
        kind, key = rng.start_bound
        if key is not None:
            start = key if kind == BOUND_INCLUDED else _successor(key)
        kind, key = rng.end_bound
        if key is not None:
            end = _successor(key) if kind == BOUND_INCLUDED else key
    if resume_key is not None and (start is None or resume_key > start):
        start = resume_key
    return start, end


def _estimated_size(info: SsTableInfo) -> int:
    """The size of an SST as far as its info tells (everything but the info and footer)."""
    return max(
        info.index_offset + info.index_len,
        info.filter_offset + info.filter_len,
        info.stats_offset + info.stats_len,
    )
