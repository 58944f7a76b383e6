"""A compaction's output SSTs on their way to the store (streamed or put whole).

Shared by the executor's row pipeline (:mod:`shale_compactor.executor`) and its kernel path
(:mod:`shale_compactor.subcompactions`); see the executor's docstring ("Streamed outputs").
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shale.spi import Ulid, compacted_path, streams
from shale_compactor.sources import CompactionStopped

if TYPE_CHECKING:
    from shale_compactor.executor import CompactionExecutor

__all__ = ["MAX_QUEUED_BYTES", "SYNC_EVERY_BYTES"]

#: A streamed output is flushed to disk (``fdatasync``, on the upload thread) every this many
#: bytes, so the fsync that publishes it does not wait for the whole SST.
SYNC_EVERY_BYTES = 16 * 1024 * 1024
#: At most this many bytes of a streamed output wait for the upload thread: when the disk is
#: slower than the merge, :meth:`Output.feed` waits (GIL released) instead of piling up pieces.
MAX_QUEUED_BYTES = 16 * 1024 * 1024


class Output:
    """One output SST on its way to the store.

    Stores with ``open_writer`` (the local store) get the SST streamed: :meth:`feed` hands the
    pieces finished so far to the executor's upload thread, which writes them (GIL released)
    while the next rows are merged, so writing overlaps building, the SST is never joined into
    one buffer and written pieces are freed at once. :meth:`commit` waits for the writes and
    publishes the object (fsync, rename). A failed stream fails the job with its error (the
    compactor retries the job, which resumes after the last reported output); other stores get
    the whole SST through the executor's retried ``put``.
    """

    def __init__(self, executor: CompactionExecutor, pool: ThreadPoolExecutor) -> None:
        self._executor = executor
        self.sst_id = Ulid.new(executor.clock.now_ms(), executor.rand)
        self.key = compacted_path(executor.root, self.sst_id)
        self._pool = pool
        self._parts: list[bytes] = []  # stores that cannot stream: the whole SST
        self._pending: deque[tuple[Future[None], int]] = deque()  # oldest first
        #: bytes a producer wrote to :meth:`direct_fd` so far
        self.direct_bytes = 0
        self._queued = 0
        self._error: BaseException | None = None
        self._writer: Any = None
        # streams(), not getattr: a wrapper (instrumented, fault-injecting) may forward
        # open_writer to a store that cannot stream, or past its own put
        if streams(executor.store):
            self._writer = executor.store.open_writer(self.key, sync_every=SYNC_EVERY_BYTES)

    def direct_fd(self) -> int | None:
        """The file a producer may write the SST's next bytes to itself (the compaction
        kernel, without the GIL), reporting them with :meth:`wrote`; ``None`` when the store
        does not offer it (then :meth:`feed` is the way in)."""
        if self._writer is None or self._error is not None:
            return None
        fileno = getattr(self._writer, "fileno", None)
        return None if fileno is None else int(fileno())

    def wrote(self, n: int) -> None:
        """Account ``n`` bytes written to :meth:`direct_fd`; when the periodic ``fdatasync`` is
        due, the upload thread runs it (in order with the queued pieces).

        :raises TransientStoreError: an earlier write or sync of the stream failed.
        """
        if self._error is not None:
            raise self._error
        if n <= 0:
            return
        writer = self._writer
        writer.wrote(n)
        self.direct_bytes += n
        if writer.sync_due():
            self._pending.append((self._pool.submit(self._sync, self.direct_bytes), 0))

    def _sync(self, upto: int) -> None:
        if self._error is None:
            try:
                self._writer.sync(upto)
            except BaseException as exc:  # raised by the next feed, wrote or commit
                self._error = exc

    def write_error(self, exc: OSError) -> BaseException:
        """The store's error for a failed write to :meth:`direct_fd`."""
        return self._writer.error(exc)  # type: ignore[no-any-return]

    def _write(self, parts: list[bytes]) -> None:
        if self._error is None:
            try:
                self._writer.write_parts(parts)
            except BaseException as exc:  # raised by the next feed or by commit
                self._error = exc

    def feed(self, parts: list[bytes]) -> None:
        """Queue the next pieces of the SST (in order).

        :raises TransientStoreError: an earlier write of the stream failed.
        """
        if not parts:
            return
        if self._writer is None:
            self._parts += parts
            return
        if self._error is not None:
            raise self._error
        size = sum(len(p) for p in parts)
        self._pending.append((self._pool.submit(self._write, parts), size))
        self._queued += size
        while self._queued > MAX_QUEUED_BYTES and len(self._pending) > 1:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, size = self._pending.popleft()
        future.result()  # _write keeps its error for the next feed or commit
        self._queued -= size

    def _drain(self) -> None:
        while self._pending:  # one upload thread: the writes finish in order
            self._wait_oldest()

    def commit(self, stop: threading.Event | None) -> None:
        """Publish the SST at :attr:`key` (durably)."""
        writer = self._writer
        if writer is None:
            self._executor._put(self.key, self._parts, stop)
            self._parts = []
            return
        self._drain()
        if self._error is not None:
            writer.abort()
            if stop is not None and stop.is_set():
                raise CompactionStopped("compaction stopped") from self._error
            raise self._error
        writer.commit()

    def abort(self) -> None:
        """Drop the SST (the job failed or stopped before it was complete)."""
        self._drain()
        if self._writer is not None:
            self._writer.abort()
        self._parts = []
