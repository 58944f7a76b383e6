"""``WalReader.iterator``: the rows of consecutive WAL files, fetched ahead in the background
(SlateDB's ``SlateDbWalIterator`` with ``SlateDbWalReaderOptions``).

Each :meth:`WalIterator.next` returns the rows of one whole WAL file and its id as
:class:`WalRows` (``last_consumed_wal_file_id``): a consumer that stores that id resumes with
``iterator(id + 1)``. A fence (a zero-length file) is a batch without rows. Files come in id
order, each once; their seqs must rise from file to file (else :class:`~shale.errors.DataError`,
as SlateDB's replay check).

Read-ahead, and why it stays bounded:

* **Fetch threads.** Up to ``max_fetch_tasks`` threads, started on demand, each reading one
  WAL file at a time, the lowest id not yet taken first: a HEAD (its size), then ranged reads.
* **Ranged reads.** A file is read in its metadata (one read of its tail, as
  :meth:`~shale.sst.table.SsTable.open`) and data reads of the fewest whole blocks that make
  at least ``read_ahead_bytes`` or reach the end of the file (SlateDB's ``read_ahead_bytes``).
* **Buffer.** A file's stored size is reserved before its body is read, in id order, and
  released when :meth:`WalIterator.next` returns it; a reservation is admitted only while the
  reserved total stays within ``max_buffered_bytes`` -- or when nothing is reserved, so a file
  larger than the bound is still read, alone. :attr:`WalIterator.peak_buffered_bytes` records
  the largest total seen.
* **End.** With ``end_wal_file_id`` the iterator ends there, and a missing file before it was
  garbage-collected (``DataError``). Without it the iterator is live, as SlateDB's: a missing
  file below the manifest's ``next_wal_sst_id`` was collected (``DataError``), one at or above
  it is not written yet and is looked for again every ``poll_interval`` seconds (one thread
  polls; the others wait).
* **Closing.** :meth:`WalIterator.close` (from any thread, or :meth:`WalReader.close`) wakes a
  blocked :meth:`~WalIterator.next` and stops and joins the fetch threads (a request in flight
  finishes first). An error ends the iterator the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from shale import ids
from shale.engine.components import check_timeout
from shale.errors import ClosedError, DataError
from shale.meta.manifest_store import ManifestStore
from shale.objstore.protocol import ObjectNotFound
from shale.sst import SsTable
from shale.sst.table import TAIL_READ

if TYPE_CHECKING:
    from shale.wal_reader import Change, WalReader

__all__ = ["WalIterator", "WalRows", "truncated"]

#: Seconds an idle fetch thread waits for work before it ends (one starts again on demand).
IDLE_EXIT_S = 5.0

#: Row tuples of one WAL file as :class:`~shale.wal_reader.Change` records.
Decode = Callable[[int, list[Any]], "list[Change]"]


class WalRows(NamedTuple):
    """The rows of one fully consumed WAL file (SlateDB's ``WalRows``): ``rows`` in seq order
    (empty for a fence) and ``last_consumed_wal_file_id``, that file's id."""

    rows: list[Change]
    last_consumed_wal_file_id: int


def truncated(wal_id: int, cause: BaseException | None = None) -> DataError:
    """SlateDB's ``WalTruncated``: WAL file ``wal_id`` was garbage-collected."""
    err = DataError(f"WAL was truncated at file {wal_id} (garbage-collected)", wal_id=wal_id)
    err.__cause__ = cause
    return err


class _Fetched(NamedTuple):
    size: int  # bytes reserved in the buffer
    result: WalRows | BaseException


class WalIterator:
    """Batches of WAL rows from ``start`` on; made by :meth:`shale.WalReader.iterator` (see the
    module docstring). Iterating blocks; a context manager. One consumer at a time; :meth:`close`
    may come from any thread."""

    def __init__(
        self, reader: WalReader, start: int, end: int | None, poll_interval: float, decode: Decode
    ) -> None:
        self._reader = reader
        self._decode = decode
        self._end = end
        self._poll = poll_interval
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._next_claim = start  # the next id a fetch thread takes
        self._next_admit = start  # the next id allowed to reserve buffer space
        self._next_out = start  # the next id next() returns
        self._frontier: int | None = None  # lowest id found not written yet (live)
        self._ready: dict[int, _Fetched] = {}
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._last_seq: int | None = None
        #: bytes reserved now: files being read or read and not yet returned
        self.buffered_bytes = 0
        #: the largest :attr:`buffered_bytes` seen
        self.peak_buffered_bytes = 0

    def __repr__(self) -> str:
        return f"<shale.WalIterator next={self._next_out} buffered={self.buffered_bytes}>"

    # -- consuming ------------------------------------------------------------------------

    def next(self, timeout: float | None = None) -> WalRows | None:
        """The next WAL file's rows; waits for it (at most ``timeout`` seconds, ``None``: as
        long as it takes). ``None`` when none came in time or the iterator ended
        (:attr:`done`).

        :raises DataError: the file was garbage-collected (also while it was being read) or
            is corrupt; the iterator is closed and raises it again.
        """
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._closed or self._at_end():
                    return None
                got = self._ready.pop(self._next_out, None)
                if got is not None:
                    break
                self._spawn()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            self._next_out += 1
            self.buffered_bytes -= got.size
            self._cond.notify_all()
            result = got.result
            if isinstance(result, BaseException):
                self._error = result
            else:
                try:
                    self._check_order(result)
                except DataError as exc:
                    self._error = exc
            if self._error is None:
                self._spawn()
                assert isinstance(result, WalRows)
                return result
        self.close()
        raise self._error

    def _check_order(self, batch: WalRows) -> None:
        if not batch.rows:
            return
        lo = min(r.seq for r in batch.rows)
        if self._last_seq is not None and lo <= self._last_seq:
            raise DataError(
                "WAL files out of seq order",
                wal_id=batch.last_consumed_wal_file_id,
                min_seq=lo,
                last_seq=self._last_seq,
            )
        self._last_seq = max(r.seq for r in batch.rows)

    def __iter__(self) -> Iterator[WalRows]:
        return self

    def __next__(self) -> WalRows:
        batch = self.next()
        if batch is None:
            raise StopIteration
        return batch

    def _at_end(self) -> bool:
        return self._end is not None and self._next_out >= self._end

    @property
    def done(self) -> bool:
        """Closed, failed, or past ``end_wal_file_id``."""
        return self._closed or self._error is not None or self._at_end()

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop: wake a blocked :meth:`next`, stop and join the fetch threads, drop what they
        buffered. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join()
        with self._cond:
            self._ready.clear()
            self.buffered_bytes = 0
        self._reader._forget(self)

    @property
    def threads(self) -> int:
        """Fetch threads running now."""
        with self._cond:
            return sum(t.is_alive() for t in self._threads)

    def __enter__(self) -> WalIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fetch threads (the condition's lock held where noted) ----------------------------

    def _claimable(self) -> bool:
        """Whether a thread may take the next id now (lock held)."""
        if self._closed or self._error is not None or self._frontier is not None:
            return False
        if self._end is not None and self._next_claim >= self._end:
            return False
        # no file ahead while the buffer is full: only HEADs would run, then wait
        return self.buffered_bytes < self._reader.max_buffered_bytes or self.buffered_bytes == 0

    def _spawn(self) -> None:
        """Start one more thread when there is work and none is idle (lock held)."""
        if self._idle or not self._claimable():
            return
        if len(self._threads) >= self._reader.max_fetch_tasks:
            return
        t = threading.Thread(target=self._work, name="shale-wal-fetch", daemon=True)
        self._threads.append(t)
        t.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._claimable() and not self._finished():
                    if not self._cond.wait(IDLE_EXIT_S) and not self._claimable():
                        break  # idle (at the tail, or the buffer full): end this thread
                self._idle -= 1
                if self._finished() or not self._claimable():
                    me = threading.current_thread()
                    if me in self._threads:
                        self._threads.remove(me)
                    return
                wal_id = self._next_claim
                self._next_claim += 1
            try:
                fetched = self._fetch(wal_id)
            except BaseException as exc:  # delivered in order; ends the iterator there
                fetched = _Fetched(0, exc)
            if fetched is None:
                return  # closed meanwhile
            with self._cond:
                if self._closed:
                    return
                self._ready[wal_id] = fetched
                if self._next_admit == wal_id:  # an error reserved nothing
                    self._next_admit += 1
                self._cond.notify_all()

    def _finished(self) -> bool:
        return (
            self._closed
            or self._error is not None
            or (self._end is not None and self._next_claim >= self._end)
        )

    def _fetch(self, wal_id: int) -> _Fetched | None:
        """Read WAL file ``wal_id`` (``None``: closed first)."""
        reader = self._reader
        key = ids.wal_path(reader.root, wal_id)
        while True:
            try:
                size = reader.store.head(key).size
                break
            except ObjectNotFound as exc:
                if self._end is not None or self._collected(wal_id):
                    self._found(wal_id, there=False)
                    return _Fetched(0, truncated(wal_id, exc))
                if not self._wait_written(wal_id):
                    return None
        self._found(wal_id, there=True)
        if not self._reserve(wal_id, size):
            return None
        try:
            rows = self._read(key, size) if size else []
        except ObjectNotFound as exc:
            return _Fetched(size, truncated(wal_id, exc))
        except BaseException as exc:
            return _Fetched(size, exc)
        return _Fetched(size, WalRows(self._decode(wal_id, rows), wal_id))

    def _collected(self, wal_id: int) -> bool:
        """A missing file below the manifest's ``next_wal_sst_id`` was written, so collected."""
        found = ManifestStore(*self._reader.manifest_location()).read_latest()
        if found is None:
            raise DataError(f"no database at {self._reader.url!r} (no manifest found)")
        return wal_id < found[1].next_wal_sst_id

    def _wait_written(self, wal_id: int) -> bool:
        """Wait before looking for not yet written file ``wal_id`` again; ``False``: closed.
        The lowest such file (the frontier) is polled every ``poll_interval``; a thread with
        a later one waits until the frontier's file is found."""
        with self._cond:
            if self._frontier is None or wal_id < self._frontier:
                self._frontier = wal_id
                self._cond.notify_all()
            if self._frontier == wal_id:
                deadline = time.monotonic() + self._poll
                while not self._closed and self._frontier == wal_id:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            else:
                while not self._closed and self._frontier is not None and self._frontier < wal_id:
                    self._cond.wait()
            return not self._closed

    def _found(self, wal_id: int, *, there: bool) -> None:
        """File ``wal_id`` is ``there`` (or gone for good): no longer the frontier. A file
        found is when one more thread may start on the next (so threads never pile up on
        files not written yet)."""
        with self._cond:
            if self._frontier == wal_id:
                self._frontier = None
                self._cond.notify_all()
            if there:
                self._spawn()

    def _reserve(self, wal_id: int, size: int) -> bool:
        """Wait for ``size`` bytes of buffer, in id order; ``False``: closed."""
        limit = self._reader.max_buffered_bytes
        with self._cond:
            while not self._closed and not (
                self._next_admit == wal_id
                and (self.buffered_bytes == 0 or self.buffered_bytes + size <= limit)
            ):
                self._cond.wait()
            if self._closed:
                return False
            self._next_admit += 1
            self.buffered_bytes += size
            self.peak_buffered_bytes = max(self.peak_buffered_bytes, self.buffered_bytes)
            self._cond.notify_all()
            return True

    def _read(self, key: str, size: int) -> list[Any]:
        """The rows of the SST at ``key``: its tail, then data reads of whole blocks of at
        least ``read_ahead_bytes`` below the tail, then decoded in one pass."""
        store = self._reader.store
        read_ahead = self._reader.read_ahead_bytes
        head = bytearray()  # bytes [0, len(head)) of the object, read ahead

        def read(start: int, end: int) -> bytes:
            if end <= len(head):
                return bytes(head[start:end])
            data = store.get_range(key, start, end)
            if len(data) != end - start:
                raise DataError("WAL SST object is shorter than its metadata says", key=key)
            return data

        table = SsTable(read, size)  # reads the tail: metadata (and a small file whole)
        tail_start = max(0, size - TAIL_READ)
        end = 0
        for _, length in table.blocks():
            if len(head) >= tail_start:
                break
            end += length
            if end - len(head) >= read_ahead or end >= tail_start:
                if self._closed:
                    raise ClosedError("the WAL iterator is closed")
                head += read(len(head), end)
        if len(head) < end:
            head += read(len(head), end)
        return [r for block in table.block_rows() for r in block]
