"""Change data capture: ``shale.changes(url)`` / ``db.changes()``, a resumable stream of every
committed change, read from the WAL SSTs and tailing new ones as the writer uploads them.

Semantics (docs/changes.md has the long version):

* **Order and completeness.** Changes come in seq order, one :class:`~shale.wal_reader.Change`
  per row (the rows of one write batch share its seq, in key order); each durable row exactly
  once. Only uploaded WALs are read, so a write that was never durable (a fenced writer's
  buffered rows) never appears; a new writer's WAL continues the ids after its empty fence
  object, which has no rows.
* **The cursor is exclusive.** ``since_seq=N`` yields exactly the changes with seq > N: pass the
  seq of the last change you processed. ``None`` starts at the oldest change still retained
  (or, for a named consumer, at its committed cursor).
* **No silent gaps.** WAL ids are consecutive from 1 and the garbage collector deletes only WALs
  the writer flushed to L0, whose rows have seqs <= the manifest's ``last_l0_seq`` and below
  the first seq of every retained WAL. When the changes after the cursor may be among the
  deleted ones the stream raises :class:`~shale.errors.ChangesGoneError` naming the seq it can
  resume from. (Seqs that were never written -- a database written with the WAL disabled --
  cannot be told from deleted ones: that also raises.)
* **Retention.** A named ``consumer`` stores its cursor (:mod:`shale.meta.consumers`) and the
  garbage collector of shale-gc keeps every WAL from the cursor's file on while the cursor is
  live. The cursor moves only on :meth:`ChangeStream.commit` (at-least-once processing: commit
  after the side effects are done); an idle following stream re-writes it at half its
  lifetime so it does not go stale while waiting.
* **Polling.** A following stream reads ``wal/<next id>.sst``; when it is not there yet it lists
  the directory (to tell "not written yet" from "deleted") and waits ``poll_interval`` seconds,
  or less when woken (``db.changes()`` is woken by the writer's own WAL uploads).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shale import ids
from shale.clock import Clock, SystemClock
from shale.engine.components import check_wal_store_arg
from shale.errors import ChangesGoneError, ClosedError, DataError, InvalidError
from shale.meta.compat import check_wal_store
from shale.meta.consumers import (
    DEFAULT_PIN_LIFETIME_S,
    ConsumerCursor,
    check_consumer_name,
    read_cursor,
    write_cursor,
)
from shale.meta.manifest_store import ManifestStore
from shale.objstore.protocol import ObjectNotFound
from shale.plugins import get_host
from shale.sst import SsTable
from shale.wal_reader import Change, WalFileMetadata, WalReader, rows_to_changes

if TYPE_CHECKING:
    from shale.objstore.protocol import ObjectStore

__all__ = ["DEFAULT_POLL_INTERVAL_S", "Change", "ChangeStream", "changes"]

#: Seconds a following stream waits between looks for the next WAL SST.
DEFAULT_POLL_INTERVAL_S = 1.0


def _check_seq(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ids.U64_MAX:
        raise InvalidError(f"{name} must be a seq (an int >= 0) or None", value=value)
    return value


def _check_seconds(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value == value:
        raise InvalidError(f"{name} must be a number of seconds", value=value)
    if value <= 0 if positive else value < 0:
        raise InvalidError(f"{name} must be > 0", value=value)
    return float(value)


def _contiguous_tail(metas: list[WalFileMetadata]) -> list[WalFileMetadata]:
    """The listed WAL files above the highest id missing below them (ids are consecutive from
    1, so a hole is a deletion). Below a hole only files a collector kept can remain -- SlateDB's
    GC keeps empty fence objects by default -- and nothing after them can be read in order."""
    for i in range(len(metas) - 1, 0, -1):
        if metas[i].id != metas[i - 1].id + 1:
            return metas[i:]
    return metas


def _check_options(
    since_seq: object,
    follow: object,
    poll_interval: object,
    stop_at_seq: object,
    consumer: object,
    pin_lifetime: object,
) -> None:
    _check_seq("since_seq", since_seq)
    _check_seq("stop_at_seq", stop_at_seq)
    if type(follow) is not bool:
        raise InvalidError("follow must be a bool", value=follow)
    _check_seconds("poll_interval", poll_interval)
    _check_seconds("pin_lifetime", pin_lifetime)
    if consumer is not None:
        check_consumer_name(consumer)


class ChangeStream:
    """An iterator of :class:`~shale.wal_reader.Change` records in seq order (see the module
    docstring). Made by :func:`changes` or :meth:`shale.Db.changes`.

    Iterating blocks while following (``follow=True``) until a change arrives or
    :meth:`close` is called (from any thread); :meth:`read_batch` waits at most ``timeout``.
    A context manager. Not for use by several threads at once (but :meth:`close` and
    :meth:`commit` may run beside an iteration).

    :ivar position: the seq of the last change yielded (or the start ``since_seq``; ``None``
        before the first change of a stream started at the oldest retained change).
    """

    def __init__(
        self,
        store: ObjectStore,
        root: str,
        *,
        since_seq: int | None = None,
        follow: bool = True,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        stop_at_seq: int | None = None,
        consumer: str | None = None,
        pin_lifetime: float = DEFAULT_PIN_LIFETIME_S,
        wake: threading.Event | None = None,
        owns_store: bool = False,
        clock: Clock | None = None,
        url: str = "",
        wal_store: ObjectStore | None = None,
        owns_wal_store: bool = False,
    ) -> None:
        _check_options(since_seq, follow, poll_interval, stop_at_seq, consumer, pin_lifetime)
        self._since = since_seq
        self._stop_at = stop_at_seq
        self.poll_interval = float(poll_interval)
        self.pin_lifetime = float(pin_lifetime)
        self.consumer = consumer
        self.follow = follow
        self.url = url
        self._store = store
        self._root = root
        self._owns_store = owns_store
        #: where the WAL SSTs are (a separate WAL store, or the database's store)
        self._wal_store = store if wal_store is None else wal_store
        self._owns_wal_store = owns_wal_store and wal_store is not None
        self._reader = WalReader(root, object_store=self._wal_store)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._wake = wake if wake is not None else threading.Event()
        self._closed = False
        self._done = False
        self._buffer: collections.deque[Change] = collections.deque()
        self._next_id: int | None = None  # the next WAL id to read (None: not started)
        self._start_id = 1
        self.position: int | None = self._since
        #: (last yielded seq of a file, its wal id), oldest first: what a commit pins
        self._marks: collections.deque[tuple[int, int]] = collections.deque()
        self._marks_lock = threading.Lock()  # commit() may run beside a read (shale.aio)
        self._committed: ConsumerCursor | None = None
        self.rows_read = 0

    def __repr__(self) -> str:
        return f"<shale.ChangeStream {self.url!r} position={self.position}>"

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the stream (a blocked iteration returns). Idempotent; does not commit."""
        self._closed = True
        self._wake.set()
        if self._owns_wal_store:
            self._owns_wal_store = False
            self._wal_store.close()
        if self._owns_store:
            self._owns_store = False
            self._store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Change]:
        return self

    def __next__(self) -> Change:
        while True:
            if self._buffer:
                return self._take()
            if self._done or self._closed:
                raise StopIteration
            self._fill(self.poll_interval)

    def read_batch(self, timeout: float | None = None, max_rows: int = 1000) -> list[Change]:
        """The next changes available within ``timeout`` seconds (``None``: until there is one
        or the stream ends), at most ``max_rows``; ``[]`` when none came in time or the stream
        ended (:attr:`done`)."""
        if timeout is not None:
            timeout = _check_seconds("timeout", timeout, positive=False)
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise InvalidError("max_rows must be an int >= 1", value=max_rows)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._buffer and not self._done and not self._closed:
            left = self.poll_interval if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            self._fill(min(left, self.poll_interval))
        out: list[Change] = []
        while self._buffer and len(out) < max_rows:
            out.append(self._take())
        return out

    @property
    def done(self) -> bool:
        """The stream ended: ``stop_at_seq`` reached, the end of the WAL without ``follow``, or
        closed."""
        return self._closed or (self._done and not self._buffer)

    def start(self) -> None:
        """Fix the start position now: read a named consumer's cursor, check nothing it needs
        is gone, and (with a consumer) write its cursor -- the pin. Idempotent; the first
        iteration does it otherwise. :func:`changes` and :meth:`shale.Db.changes` call it.

        :raises ChangesGoneError: the changes after the cursor were garbage-collected.
        :raises DataError: there is no database.
        """
        if self._next_id is None and not self._closed:
            self._start()

    # -- committing -----------------------------------------------------------------------

    def commit(self, seq: int | None = None) -> None:
        """Store the consumer's cursor: every change up to ``seq`` (default: the last one
        yielded) is processed. The garbage collector keeps the WAL from the file holding
        ``seq`` on; a stream reopened with this ``consumer`` name resumes after ``seq``.

        :raises InvalidError: no ``consumer`` name, or ``seq`` is beyond the last change yielded.
        """
        if self.consumer is None:
            raise InvalidError("commit needs a stream opened with consumer=NAME")
        if self._closed:
            raise ClosedError("the change stream is closed")
        seq = _check_seq("seq", seq)
        if seq is None:
            seq = self.position
        elif self.position is None or seq > self.position:
            raise InvalidError(
                "cannot commit past the last change yielded", seq=seq, position=self.position
            )
        with self._marks_lock:
            marks = self._marks
            while len(marks) > 1 and seq is not None and marks[0][0] < seq:
                marks.popleft()  # files wholly processed: no longer pinned
            if marks and seq is not None and marks[0][0] >= seq:
                wal_id = marks[0][1]
            else:
                wal_id = self._next_id if self._next_id is not None else self._start_id
        self._write_cursor(seq, wal_id)

    def _write_cursor(self, seq: int | None, wal_id: int) -> None:
        assert self.consumer is not None
        cur = ConsumerCursor(self.consumer, seq, wal_id, self._clock.now_ms(), self.pin_lifetime)
        write_cursor(self._store, self._root, cur)
        self._committed = cur

    def _refresh_pin(self) -> None:
        cur = self._committed
        if cur is not None and self._clock.now_ms() - cur.updated_ms > cur.lifetime_s * 500:
            self._write_cursor(cur.seq, cur.wal_id)

    # -- reading --------------------------------------------------------------------------

    def _take(self) -> Change:
        ch = self._buffer.popleft()
        self.position = ch.seq
        wal_id = ch.wal_id
        assert wal_id is not None  # read from a WAL file
        with self._marks_lock:
            marks = self._marks
            if marks and marks[-1][1] == wal_id:
                marks[-1] = (ch.seq, wal_id)
            else:
                marks.append((ch.seq, wal_id))
        self.rows_read += 1
        return ch

    def _fill(self, wait: float) -> None:
        """Read the next WAL file(s) into the buffer, or wait up to ``wait`` for one."""
        if self._next_id is None:
            self._start()
        while not self._buffer and not self._done and not self._closed:
            if not self._read_next():
                if not self.follow:
                    self._done = True
                    return
                if self.consumer is not None:
                    self._refresh_pin()
                self._wake.wait(wait)
                self._wake.clear()
                return

    def _read_next(self) -> bool:
        """Read WAL ``_next_id`` into the buffer; False if it does not exist yet."""
        wal_id = self._next_id
        assert wal_id is not None
        key = ids.wal_path(self._root, wal_id)
        try:
            data = self._wal_store.get(key)
        except ObjectNotFound:
            metas = self._reader.list_metadata()
            if not any(m.id > wal_id for m in metas):
                return False  # not written yet
            try:  # written (with later ones) since the GET?
                data = self._wal_store.get(key)
            except ObjectNotFound:
                # deleted by GC: can the stream go on without it?
                self._check_gap([m for m in metas if m.id > wal_id], lost_from=wal_id)
                self._next_id = min(m.id for m in metas if m.id > wal_id)
                return True
        self._next_id = wal_id + 1
        if not data:
            return True  # a fence object
        after = self.position
        stop = self._stop_at
        for ch in rows_to_changes(wal_id, SsTable.from_bytes(data).rows()):
            if after is not None and ch.seq <= after:
                continue
            if stop is not None and ch.seq > stop:
                self._done = True
                break
            self._buffer.append(ch)
        if stop is not None and self._buffer and self._buffer[-1].seq >= stop:
            self._done = True  # batches never span WAL files: nothing <= stop is left
        return True

    def _first_seq(self, metas: list[WalFileMetadata]) -> int | None:
        """The first seq of the first non-empty file among ``metas`` (ascending)."""
        for m in metas:
            if m.size == 0:
                continue
            try:
                rows = self._reader.get(m.id).rows()
            except DataError:
                if self._store_has(m.id):
                    raise
                continue  # deleted meanwhile: look at the next one
            if rows:
                return rows[0].seq
        return None

    def _store_has(self, wal_id: int) -> bool:
        try:
            self._wal_store.head(ids.wal_path(self._root, wal_id))
        except ObjectNotFound:
            return False
        return True

    def _check_gap(self, retained: list[WalFileMetadata], *, lost_from: int) -> None:
        """WALs below ``retained`` (from ``lost_from`` on) were deleted: raise
        :class:`ChangesGoneError` unless every change after :attr:`position` is retained."""
        m = ManifestStore(self._store, self._root).read_latest()
        last_l0 = m[1].last_l0_seq if m is not None else 0
        first = self._first_seq(retained)
        # deleted rows were flushed to L0 (seq <= last_l0_seq) and precede every retained row
        bound = last_l0 if first is None else min(first - 1, last_l0)
        after = -1 if self.position is None else self.position
        if after >= bound:
            return
        raise ChangesGoneError(
            "the WAL holding the next changes was garbage-collected; "
            "resume from resume_seq (or rebuild from the database)",
            since_seq=after,
            resume_seq=bound,
            missing_wal_id=lost_from,
        )

    def _start(self) -> None:
        """Find the first WAL file to read; check nothing the cursor needs is gone."""
        hint: int | None = None
        if self.consumer is not None and self._since is None:
            cur = read_cursor(self._store, self._root, self.consumer)
            if cur is not None:
                hint = cur.wal_id
                self._since = self.position = cur.seq
        metas = self._reader.list_metadata()
        if not metas and ManifestStore(self._store, self._root).read_latest() is None:
            raise DataError(f"no database at {self.url or self._root!r} (no manifest found)")
        metas = _contiguous_tail(metas)
        lowest = metas[0].id if metas else 1
        if hint is not None and hint >= lowest:
            start = hint  # the cursor's file is retained: so is everything after it
        else:
            if lowest > 1 and (self.position is not None or hint is not None):
                self._check_gap(metas, lost_from=lowest - 1 if hint is None else hint)
            start = lowest
            if self.position is not None:
                start = self._locate(metas, self.position)
        self._start_id = self._next_id = start
        stop = self._stop_at
        if stop is not None and self.position is not None and self.position >= stop:
            self._done = True
        if self.consumer is not None:
            self._write_cursor(self.position, start)

    def _locate(self, metas: list[WalFileMetadata], after: int) -> int:
        """The id of the last non-empty WAL file whose first seq is <= ``after`` (binary
        search; its later rows or the next file's are the first ones > ``after``)."""
        files = [m for m in metas if m.size > 0]
        lo, hi = 0, len(files) - 1
        best = files[0].id if files else (metas[0].id if metas else 1)
        while lo <= hi:
            mid = (lo + hi) // 2
            first = self._first_seq(files[mid : mid + 1])
            if first is None:  # gone meanwhile: be conservative
                hi = mid - 1
                continue
            if first <= after:
                best = files[mid].id
                lo = mid + 1
            else:
                hi = mid - 1
        return best


def changes(
    url: str | os.PathLike[str],
    since_seq: int | None = None,
    *,
    follow: bool = True,
    poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    stop_at_seq: int | None = None,
    consumer: str | None = None,
    pin_lifetime: float = DEFAULT_PIN_LIFETIME_S,
    object_store: ObjectStore | None = None,
    store_options: dict[str, Any] | None = None,
    start: bool = True,
    wal_store: str | os.PathLike[str] | ObjectStore | None = None,
    wal_store_options: dict[str, Any] | None = None,
) -> ChangeStream:
    """A :class:`ChangeStream` of the database at ``url`` (or at path ``url`` in
    ``object_store``): every committed change with seq > ``since_seq``, in seq order.

    :param since_seq: exclusive cursor: the seq of the last change already processed;
        ``None``: the consumer's committed cursor, else the oldest change retained.
    :param follow: keep waiting for new WAL SSTs (default); ``False`` ends at the last one.
    :param poll_interval: seconds between looks for the next WAL SST while following.
    :param stop_at_seq: end after the changes with this seq (inclusive).
    :param consumer: a name: the stream's cursor is stored in the database's
        ``shale-consumers/`` directory on :meth:`ChangeStream.commit`, resumed from on the next
        open, and pins the WAL it needs against garbage collection.
    :param pin_lifetime: seconds a committed cursor pins the WAL after its last commit
        (default 7 days); a consumer gone longer loses its pin (and gets
        :class:`~shale.errors.ChangesGoneError` if it comes back too late).
    :param object_store: read through this store (the caller keeps owning it).
    :param store_options: options for the store plugin that opens ``url``.
    :param wal_store: the database's separate WAL store (a URL, a directory or a store object
        the caller keeps owning); without it the stream follows the manifest's
        ``wal_object_store_uri`` when that is a URL, and refuses a database whose manifest
        records a separate WAL store it cannot find (``InvalidError``).
    :param wal_store_options: options of the store plugin that opens a ``wal_store`` URL.
    :param start: fix the start position (and write a consumer's cursor, its pin) now
        (:meth:`ChangeStream.start`); ``False`` leaves it to the first iteration.
    :raises InvalidError: a bad argument (before anything is read).
    :raises ChangesGoneError: the changes after the cursor were collected (at the start or
        while iterating).
    """
    url = ids.location(url, "url", allow_empty=object_store is not None)
    if store_options is not None and not isinstance(store_options, dict):
        raise InvalidError("store_options must be a dict", type=type(store_options).__name__)
    _check_options(since_seq, follow, poll_interval, stop_at_seq, consumer, pin_lifetime)
    options: dict[str, Any] = dict(
        since_seq=since_seq,
        follow=follow,
        poll_interval=poll_interval,
        stop_at_seq=stop_at_seq,
        consumer=consumer,
        pin_lifetime=pin_lifetime,
        url=url,
    )
    if type(start) is not bool:
        raise InvalidError("start must be a bool", value=start)
    wal_url, wal_options = check_wal_store_arg(wal_store, wal_store_options)
    if object_store is not None:
        store, root, owns = object_store, url.strip("/"), False
    else:
        store, root, owns = get_host().open_object_store(url, store_options or {}), "", True
    try:
        wal, owns_wal = _wal_store_of(store, root, wal_store, wal_url, wal_options)
    except BaseException:
        if owns:
            store.close()
        raise
    stream = ChangeStream(
        store, root, owns_store=owns, wal_store=wal, owns_wal_store=owns_wal, **options
    )
    if start:
        try:
            stream.start()
        except BaseException:
            stream.close()
            raise
    return stream


def _wal_store_of(
    store: ObjectStore, root: str, given: Any, url: str | None, options: dict[str, Any]
) -> tuple[ObjectStore | None, bool]:
    """The WAL store a change stream reads (``None``: ``store``) and whether it opened it: the
    one given, else the one the latest manifest names (checked like a reader's)."""
    if url is not None:
        return get_host().open_object_store(url, options), True
    if given is not None:
        return given, False
    found = ManifestStore(store, root).read_latest()
    uri = None if found is None else found[1].wal_object_store_uri
    if uri:
        return get_host().open_object_store(uri, options), True
    if found is not None:
        check_wal_store(found[1], None)
    return None, False
