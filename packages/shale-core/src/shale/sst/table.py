"""Reading SlateDB SST files (format versions 1 and 2).

:class:`SsTable` reads the footer, the ``SsTableInfo``, the index and (lazily) the filter and
stats of one SST, from bytes in memory or by ranged reads from an object store, and iterates its
rows. Every structural check that can fail raises :class:`~shale.errors.DataError`: a corrupt
SST never yields wrong rows, because every section's CRC is checked before it is decoded.

Row iteration of compacted SSTs locates blocks through the index's separator keys. A separator is
``<=`` its block's first key and ``>`` the previous block's last key, except when one key's
versions span a block boundary, in which case it *equals* that key: so the search for a key
starts at the last block whose separator is strictly below it.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shale.errors import DataError, InvalidError, ShaleError
from shale.fbs import sst_meta as M
from shale.sst import block as _block
from shale.sst import compression as C

_FOOTER = struct.Struct(">QH")
_CRC = struct.Struct(">I")
FOOTER_LEN = 10
#: How much of an SST's tail :meth:`SsTable.open` fetches in its first ranged read.
TAIL_READ = 64 * 1024
#: How many bytes of neighbouring blocks a scan of a stored SST fetches per ranged read.
READ_AHEAD = 256 * 1024
#: Ranged reads of scans' read-ahead running at once in one process (all scans together).
FETCH_THREADS = 64

ReadFn = Callable[[int, int], bytes]


@dataclass(frozen=True)
class ScanFetch:
    """How a scan reads the data blocks of an SST in an object store (SlateDB's
    ``ScanOptions.read_ahead_bytes`` and ``max_fetch_tasks``).

    :ivar read_ahead: bytes of consecutive blocks (in the scan's direction) fetched by one
        ranged read; at least one whole block, never past the scan's range.
    :ivar tasks: ranged reads in flight at once for one SST of the scan: while the scan decodes
        one window, the next ``tasks - 1`` are being fetched.
    """

    read_ahead: int = READ_AHEAD
    tasks: int = 1


#: Today's behaviour: one window of :data:`READ_AHEAD` bytes at a time.
DEFAULT_FETCH = ScanFetch()

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _fetch_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="shale-fetch")
        return _executor


class _Fetcher:
    """One scan's read-ahead over one SST: windows of whole blocks, up to ``tasks`` in flight.

    Blocks are asked for in scan order (``step`` 1 or -1) between ``lo`` and ``hi`` (block
    indices, inclusive); a block served from the block cache is never asked for, and a window
    whose blocks all were is dropped unread (its fetch may still finish in the background).
    """

    def __init__(
        self, read: ReadFn, offsets: list[int], fetch: ScanFetch, step: int, lo: int, hi: int
    ) -> None:
        self._read = read
        self._offs = offsets
        self._fetch = fetch
        self._step = step
        self._lo, self._hi = lo, hi
        self._next: int | None = None  # first block not yet in a window
        self._pending: collections.deque[tuple[int, int, Future[bytes]]] = collections.deque()
        self._window: tuple[int, bytes] | None = None

    def _plan(self) -> None:
        offs, budget, step = self._offs, self._fetch.read_ahead, self._step
        while len(self._pending) < self._fetch.tasks and self._next is not None:
            first = last = self._next
            nxt: int | None = first + step
            while nxt is not None and self._lo <= nxt <= self._hi:
                a, b = min(first, nxt), max(first, nxt)
                if offs[b + 1] - offs[a] > budget:
                    break
                last, nxt = nxt, nxt + step
            self._next = nxt if nxt is not None and self._lo <= nxt <= self._hi else None
            a, b = min(first, last), max(first, last)
            start, end = offs[a], offs[b + 1]
            self._pending.append((start, end, _fetch_executor().submit(self._read, start, end)))

    def block(self, i: int) -> bytes:
        """The stored bytes of block ``i``."""
        start, end = self._offs[i], self._offs[i + 1]
        window = self._window
        if window is None or not (window[0] <= start and end <= window[0] + len(window[1])):
            while True:
                if not self._pending:
                    self._next = i  # nothing planned covers i (the first miss): start here
                    self._plan()
                lo, hi, future = self._pending.popleft()
                if lo <= start and end <= hi:
                    window = self._window = (lo, future.result())
                    self._plan()
                    break
        return window[1][start - window[0] : end - window[0]]


def _known_policies(policies: Sequence[Any] | None) -> dict[str, Any]:
    if policies is None:
        from shale.sst.filters import BloomFilterPolicy, Mmh3BloomFilterPolicy

        policies = [BloomFilterPolicy(10), Mmh3BloomFilterPolicy(10)]
    return {p.name: p for p in policies}


def _filters_prefixes(policies: dict[str, Any]) -> bool:
    """Whether a known policy's filters answer prefix queries (a prefix bloom's)."""
    return any(getattr(p, "prefix_extractor", None) is not None for p in policies.values())


class SsTable:
    """One SST: its metadata, and its rows on demand.

    Build it with :meth:`from_bytes` or :meth:`open`. Blocks are read on demand through the
    read function; an optional ``block_cache`` (any object with ``get(key)`` and
    ``put(key, value)``) keeps decoded blocks keyed by ``(cache_id, block_index)``.
    """

    def __init__(
        self,
        read: ReadFn,
        size: int,
        *,
        tail: bytes | None = None,
        policies: Sequence[Any] | None = None,
        transformer: C.BlockTransformer | None = None,
        block_cache: Any = None,
        cache_id: object = None,
        remote: bool = False,
    ) -> None:
        self._read = read
        self.size = size
        self.transformer = transformer
        self._policies = _known_policies(policies)
        self._prefix_policies = _filters_prefixes(self._policies)
        self._cache = block_cache
        self._cache_id = cache_id if cache_id is not None else id(self)
        self._remote = remote
        self._window: tuple[int, bytes] | None = None
        try:
            self._load_meta(tail)
        except ShaleError:
            raise
        except Exception as exc:  # any decoder slip on corrupt bytes is still a data error
            raise DataError("malformed SST", error=f"{type(exc).__name__}: {exc}") from exc
        self._filter: Any = None
        self._prefix_filters: list[Any] = []
        self._filter_loaded = False
        #: the SST's bytes when held in memory whole (:meth:`from_bytes`): read in place
        self._whole: bytes | None = None
        self._probe: tuple[Any, Any, Any, list[bytes], Any, object] | None = None
        self._stats: M.SstStats | None = None

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, **options: Any) -> SsTable:
        """An SST held in memory. ``options`` as for the constructor."""
        view = memoryview(data)

        def read(start: int, end: int) -> bytes:
            return bytes(view[start:end])

        tail = bytes(data) if len(data) <= TAIL_READ else None
        table = cls(read, len(data), tail=tail, **options)
        if type(data) is bytes:
            table._whole = data
        return table

    @classmethod
    def open(cls, store: Any, key: str, *, size: int | None = None, **options: Any) -> SsTable:
        """An SST in an object store, read with ranged gets.

        :param size: the object's size if known (saves a ``head`` request).
        :raises ObjectNotFound: the object does not exist.
        """
        if size is None:
            size = store.head(key).size

        def read(start: int, end: int) -> bytes:
            data: bytes = store.get_range(key, start, end)
            if len(data) != end - start:
                raise DataError("SST object is shorter than its metadata says", key=key)
            return data

        options.setdefault("cache_id", key)
        options.setdefault("remote", True)
        return cls(read, size, **options)

    # -- metadata ---------------------------------------------------------------------------

    def _load_meta(self, tail: bytes | None) -> None:
        size = self.size
        if size <= FOOTER_LEN:
            raise DataError("SST is too short to hold a footer", size=size)
        if tail is None:
            tail_start = max(0, size - TAIL_READ)
            tail = self._read(tail_start, size)
        else:
            tail_start = size - len(tail)
        self._tail = tail
        self._tail_start = tail_start

        meta_offset, version = _FOOTER.unpack_from(tail, len(tail) - FOOTER_LEN)
        if version not in (1, 2):
            raise DataError("unsupported SST format version", version=version)
        self.version = version
        info_end = size - FOOTER_LEN
        if meta_offset >= info_end or info_end - meta_offset <= 4:
            raise DataError("SST metadata offset out of range", offset=meta_offset, size=size)
        raw = self._range(meta_offset, info_end)
        info_bytes = raw[:-4]
        (want,) = _CRC.unpack_from(raw, len(raw) - 4)
        if zlib.crc32(info_bytes) != want:
            raise DataError("SST info checksum mismatch")
        info = M.decode_sst_info(info_bytes)
        self.info = info
        self.is_wal = info.sst_type == M.SST_TYPE_WAL
        self.compression = info.compression_format
        if self.compression not in C.CODEC_NAMES:
            raise DataError("unknown compression codec in SST", codec=self.compression)

        def check(off: int, length: int, what: str) -> None:
            if off < 0 or length < 0 or off + length > meta_offset:
                raise DataError(f"SST {what} section out of range", offset=off, length=length)

        check(info.index_offset, info.index_len, "index")
        check(info.filter_offset, info.filter_len, "filter")
        check(info.stats_offset, info.stats_len, "stats")
        if info.filter_len > 0:
            self.data_end = info.filter_offset
        else:
            self.data_end = info.index_offset
        if self.data_end > info.index_offset:
            raise DataError("SST data section overlaps the index")

        index_payload = self._chunk(info.index_offset, info.index_len, "index")
        metas = M.decode_index(index_payload)
        if not metas:
            raise DataError("SST index has no blocks")
        offsets = [m.offset for m in metas]
        if offsets[0] != 0:
            raise DataError("first SST block does not start at offset 0", offset=offsets[0])
        for a, b in itertools.pairwise(offsets):
            if b <= a:
                raise DataError("SST block offsets are not increasing")
        if offsets[-1] >= self.data_end:
            raise DataError("SST block offset beyond the data section")
        self._offsets = [*offsets, self.data_end]
        self._index_keys = [m.first_key for m in metas]
        self.meta_offset = meta_offset

    def _range(self, start: int, end: int) -> bytes:
        if start >= self._tail_start:
            return self._tail[start - self._tail_start : end - self._tail_start]
        window = self._window
        if window is not None and window[0] <= start and end <= window[0] + len(window[1]):
            return window[1][start - window[0] : end - window[0]]
        return self._read(start, end)

    def _in_window(self, start: int, end: int) -> bool:
        window = self._window
        return window is not None and window[0] <= start and end <= window[0] + len(window[1])

    def _prefetch(self, i: int, direction: int) -> None:
        """Read blocks next to ``i`` (in the scan's direction) with one ranged read."""
        offs = self._offsets
        n = len(offs) - 1
        if direction > 0:
            j = i + 1
            while j < n and offs[j + 1] - offs[i] <= READ_AHEAD:
                j += 1
            lo, hi = offs[i], offs[j]
        else:
            j = i
            while j > 0 and offs[i + 1] - offs[j - 1] <= READ_AHEAD:
                j -= 1
            lo, hi = offs[j], offs[i + 1]
        self._window = (lo, self._read(lo, hi))  # replaced whole: safe for concurrent readers

    def _chunk(self, offset: int, length: int, what: str) -> bytes:
        return C.unframe_chunk(
            self._range(offset, offset + length), self.compression, self.transformer, what=what
        )

    def meta_bytes(self) -> int:
        """Estimated memory held by this open SST: the tail read, the index, the filter."""
        keys = sum(len(k) for k in self._index_keys)
        return len(self._tail) + keys + 80 * len(self._index_keys) + self.info.filter_len + 512

    @property
    def block_count(self) -> int:
        return len(self._index_keys)

    def blocks(self) -> list[tuple[bytes, int]]:
        """Each data block's first key (from the index) and stored size in bytes, in order."""
        offs = self._offsets
        return [(k, offs[i + 1] - offs[i]) for i, k in enumerate(self._index_keys)]

    @property
    def first_key(self) -> bytes | None:
        """The first key (compacted SSTs; ``None`` for WAL SSTs)."""
        return None if self.is_wal else self.info.first_entry

    @property
    def last_key(self) -> bytes | None:
        """The last key (compacted SSTs; ``None`` for WAL SSTs)."""
        return self.info.last_entry

    @property
    def stats(self) -> M.SstStats | None:
        """The stats block of a compacted SST (``None`` when absent)."""
        if self._stats is None and self.info.stats_len > 0:
            self._stats = M.decode_stats(
                self._chunk(self.info.stats_offset, self.info.stats_len, "stats")
            )
        return self._stats

    def _filters(self) -> dict[str, bytes]:
        info = self.info
        if info.filter_len == 0:
            return {}
        payload = self._chunk(info.filter_offset, info.filter_len, "filter")
        if info.filter_format == M.FILTER_FORMAT_COMPOSITE:
            from shale.sst.filters import decode_composite

            return dict(decode_composite(payload))
        return {"_bf": payload}  # legacy: one raw SlateDB bloom

    @property
    def filter_names(self) -> list[str]:
        """Names of the filters stored in this SST (known to shale or not)."""
        return list(self._filters())

    def _filter_reader(self) -> Any:
        """The reader point lookups use: of the known filters (unknown ones are skipped), the
        first that tests whole keys (has ``bloom_probe``), else the first; ``None``: none.
        Loads the known filters' readers once, the prefix-capable ones included."""
        if not self._filter_loaded:
            readers = [
                policy.reader(data)
                for name, data in self._filters().items()
                if (policy := self._policies.get(name)) is not None
            ]
            whole = [r for r in readers if getattr(r, "bloom_probe", None) is not None]
            self._filter = (whole or readers or [None])[0]
            self._prefix_filters = [r for r in readers if hasattr(r, "may_contain_prefix")]
            self._filter_loaded = True
        return self._filter

    def may_contain(self, key: bytes) -> bool:
        """False only when a filter proves ``key`` is absent."""
        reader = self._filter_reader()
        return True if reader is None else bool(reader.may_contain(key))

    def may_contain_prefix(self, prefix: bytes) -> bool:
        """False only when a known prefix filter proves that no key starting with ``prefix``
        is in this SST. Without a configured prefix policy the filter block is not even read."""
        if not self._prefix_policies or not prefix:
            return True
        self._filter_reader()
        return all(r.may_contain_prefix(prefix) for r in self._prefix_filters)

    def point_probe(self) -> tuple[Any, Any, Any, list[bytes], Any, object]:
        """What a point lookup (:mod:`shale.engine.point`) needs of this SST, built once:
        ``(bloom, hash_fn, filter_reader, index_keys, block_cache, cache_id)``. ``bloom`` and
        ``hash_fn`` are set for the built-in bloom filters (``bloom.may_contain_hash(hash_fn(key))``
        answers without a Python frame); else ``filter_reader`` (or ``None``: no known filter)."""
        probe = self._probe
        if probe is None:
            reader = self._filter_reader()
            bloom = hash_fn = None
            bloom_probe = getattr(reader, "bloom_probe", None)
            if bloom_probe is not None:
                bloom, hash_fn = bloom_probe()
            probe = self._probe = (
                bloom,
                hash_fn,
                reader,
                self._index_keys,
                self._cache,
                self._cache_id,
            )
        return probe

    # -- rows -------------------------------------------------------------------------------

    def read_block(
        self, i: int, direction: int = 0, fill: bool = True, fetcher: _Fetcher | None = None
    ) -> list[tuple]:  # type: ignore[type-arg]
        """The decoded rows of block ``i``.

        :param direction: ``1`` or ``-1`` when a scan will go on to the next or the previous
            blocks: on a miss, an SST in an object store then fetches a window of up to
            :data:`READ_AHEAD` bytes of neighbouring blocks in one ranged read.
        :param fill: ``False`` reads a missed block without inserting it into the block cache
            (a scan with ``cache_blocks=False``); hits are still served from it.
        :param fetcher: a scan's own read-ahead (:class:`ScanFetch`) fetches a missed block.
        """
        cache = self._cache
        if cache is not None:
            rows: list[tuple] | None = cache.get((self._cache_id, i))  # type: ignore[type-arg]
            if rows is not None:
                return rows
        return self._load_block(i, direction, fill, fetcher)

    def _load_block(
        self, i: int, direction: int = 0, fill: bool = True, fetcher: _Fetcher | None = None
    ) -> list[tuple]:  # type: ignore[type-arg]
        """Block ``i`` read, checked (CRC), decoded and (``fill``) put in the block cache,
        without probing the cache first: :meth:`read_block` after a miss, and point lookups
        (:mod:`shale.engine.point`), which probe the cache themselves."""
        cache = self._cache
        start, end = self._offsets[i], self._offsets[i + 1]
        if fetcher is not None:
            raw = fetcher.block(i)
            payload = C.unframe_chunk(raw, self.compression, self.transformer, what="data block")
        else:
            if direction and self._remote and not self._in_window(start, end):
                self._prefetch(i, direction)
            payload = self._chunk(start, end - start, "data block")
        try:
            rows = _block.decode_block(payload, self.version)
        except ShaleError:
            raise
        except Exception as exc:
            raise DataError("malformed SST data block", block=i, error=str(exc)) from exc
        if not rows:
            raise DataError("empty SST data block", block=i)
        if cache is not None and fill:
            cache.put((self._cache_id, i), rows, len(payload) + 64 * len(rows))
        return rows

    def rows(self) -> list[tuple]:  # type: ignore[type-arg]
        """Every row, in stored order."""
        out: list[tuple] = []  # type: ignore[type-arg]
        for i in range(self.block_count):
            out.extend(self.read_block(i))
        return out

    def block_rows(self) -> list[list[tuple]]:  # type: ignore[type-arg]
        """Every row in stored order, one list per data block, all read and decoded in one
        call (:func:`shale.sst.block.decode_chunks`, no block cache): a WAL replay's read."""
        offs = self._offsets
        if len(offs) < 2:
            return []
        whole = self._whole
        if whole is not None:  # decoded in place, no copy of the data blocks
            return _block.decode_chunks(
                whole, offs, self.version, self.compression, self.transformer, 0
            )
        base, stop = offs[0], offs[-1]
        tail_start = self._tail_start
        if base < tail_start < stop:  # the end is in the tail read at open: not again
            data = self._range(base, tail_start) + self._tail[: stop - tail_start]
        else:
            data = self._range(base, stop)
        return _block.decode_chunks(
            data, [o - base for o in offs], self.version, self.compression, self.transformer, 0
        )

    def _start_block(self, key: bytes) -> int:
        # last block whose separator is strictly below key (see the module docstring)
        return max(0, bisect.bisect_left(self._index_keys, key) - 1)

    def iter_rows(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        fill: bool = True,
        fetch: ScanFetch | None = None,
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Rows with ``start <= key < end`` (``None`` = unbounded).

        Ascending: key ascending, seq descending. ``reverse=True``: key descending, and within
        one key still seq descending (newest first), as the merge iterator expects.
        WAL SSTs yield every row in commit order and take no bounds. ``fill=False``: blocks
        read are not inserted into the block cache. ``fetch``: the scan's read-ahead in an
        object store (default :data:`DEFAULT_FETCH`).
        """
        if self.is_wal:
            if start is not None or end is not None or reverse:
                raise InvalidError("WAL SSTs are read whole, in commit order")
            for i in range(self.block_count):
                yield from self.read_block(i, 1, fill)
            return
        own = fetch is not None and fetch != DEFAULT_FETCH and self._remote
        if reverse:
            yield from self._iter_reverse(start, end, fill, fetch if own else None)
            return
        first = 0 if start is None else self._start_block(start)
        fetcher = None
        if own:
            assert fetch is not None
            last = self.block_count - 1 if end is None else self._last_block(end)
            fetcher = _Fetcher(self._read, self._offsets, fetch, 1, first, max(first, last))
        for i in range(first, self.block_count):
            rows = self.read_block(i, 1, fill, fetcher)
            lo = 0
            if start is not None and rows[0][0] < start:
                lo = bisect.bisect_left(rows, (start,))
            if end is not None and rows[-1][0] >= end:
                hi = bisect.bisect_left(rows, (end,), lo)
                yield from rows[lo:hi]
                return
            yield from rows[lo:] if lo else rows

    def _last_block(self, end: bytes) -> int:
        # the last block that may hold a key below end (-1: none)
        return bisect.bisect_left(self._index_keys, end) - 1

    def scan_rows(
        self, start: bytes | None = None, end: bytes | None = None, *, window: int = 1 << 20
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Rows with ``start <= key < end``, ascending, like :meth:`iter_rows`, but read in
        windows of consecutive blocks (see :meth:`scan_blocks`), bypassing the block cache."""
        return itertools.chain.from_iterable(self.scan_blocks(start, end, window=window))

    def scan_blocks(
        self, start: bytes | None = None, end: bytes | None = None, *, window: int = 1 << 20
    ) -> Iterator[list[tuple]]:  # type: ignore[type-arg]
        """The rows of :meth:`scan_rows`, one list per data block (possibly empty at the ends).

        Windows of consecutive blocks (about ``window`` bytes, at least one block per read) are
        read and decoded together (:func:`shale.sst.block.decode_chunks`), bypassing the block
        cache: a compaction's sequential read, with one read and one decoder call per window
        instead of per block, and no Python frame per row (``itertools.chain.from_iterable``
        over these lists iterates in C).
        """
        windows = self._scan_windows(start, end, window, self._range)
        for data, offsets, _version, _start, _end, i in windows:
            blocks = _block.decode_chunks(
                data, offsets, self.version, self.compression, self.transformer, i
            )
            for rows in blocks:
                lo = 0
                if start is not None and rows[0][0] < start:
                    lo = bisect.bisect_left(rows, (start,))
                if end is not None and rows[-1][0] >= end:
                    hi = bisect.bisect_left(rows, (end,), lo)
                    yield rows[lo:hi]
                    return
                yield rows[lo:] if lo else rows

    def scan_windows(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        window: int = 1 << 20,
        plain: bool = False,
        read: Callable[[int, int], bytes] | None = None,
    ) -> Iterator[tuple[bytes, list[int], int, bytes | None, bytes | None, int]]:
        """The stored data blocks that may hold keys in ``[start, end)``, read in windows of
        consecutive blocks (about ``window`` bytes, at least one block per read), bypassing
        the block cache and not decoded: ``(data, offsets, version, start, end,
        first_block)`` per window, ``offsets`` relative to ``data`` (one more than its
        blocks). The compaction kernel's source format (:mod:`shale.sst.compact`);
        :meth:`scan_blocks` decodes them.

        :param plain: blocks of a compressed or transformed SST are unframed (checked,
            decompressed, decoded) and re-framed as plain chunks (``payload || crc32``), the
            only kind the compaction kernel reads.
        :param read: ``read(start, end)`` reads the SST's bytes instead of the store the table
            was opened on (one opened table shared by readers that each read ahead, count and
            stop on their own: the compaction executor's key ranges).
        """
        windows = self._scan_windows(start, end, window, read or self._range)
        if plain and (self.compression != C.NONE or self.transformer is not None):
            return (self._plain_window(w) for w in windows)
        return windows

    def _plain_window(
        self, w: tuple[bytes, list[int], int, bytes | None, bytes | None, int]
    ) -> tuple[bytes, list[int], int, bytes | None, bytes | None, int]:
        data, offsets, version, start, end, first = w
        parts: list[bytes] = []
        plain_offsets = [0]
        for k in range(len(offsets) - 1):
            chunk = data[offsets[k] : offsets[k + 1]]
            try:
                payload = C.unframe_chunk(
                    chunk, self.compression, self.transformer, what="data block"
                )
            except DataError:
                raise
            except Exception as exc:
                raise DataError(
                    "malformed SST data block", block=first + k, error=str(exc)
                ) from exc
            parts += (payload, _CRC.pack(zlib.crc32(payload)))
            plain_offsets.append(plain_offsets[-1] + len(payload) + 4)
        return b"".join(parts), plain_offsets, version, start, end, first

    def _scan_windows(
        self, start: bytes | None, end: bytes | None, window: int, read: Callable[[int, int], bytes]
    ) -> Iterator[tuple[bytes, list[int], int, bytes | None, bytes | None, int]]:
        if self.is_wal:
            raise InvalidError("WAL SSTs are read whole, in commit order")
        offs = self._offsets
        n = self.block_count if end is None else self._last_block(end) + 1
        i = 0 if start is None else self._start_block(start)
        while i < n:
            j = i + 1
            while j < n and offs[j + 1] - offs[i] <= window:
                j += 1
            base, stop = offs[i], offs[j]
            tail_start = self._tail_start
            if base < tail_start < stop:  # the end is in the tail read at open: not again
                data = read(base, tail_start) + self._tail[: stop - tail_start]
            elif base >= tail_start:
                data = self._range(base, stop)
            else:
                data = read(base, stop)
            yield data, [o - base for o in offs[i : j + 1]], self.version, start, end, i
            i = j

    def _iter_reverse(
        self,
        start: bytes | None,
        end: bytes | None,
        fill: bool = True,
        fetch: ScanFetch | None = None,
    ) -> Iterator[tuple]:  # type: ignore[type-arg]
        last = self.block_count - 1 if end is None else self._last_block(end)
        fetcher = None
        if fetch is not None and last >= 0:
            first = 0 if start is None else min(self._start_block(start), last)
            fetcher = _Fetcher(self._read, self._offsets, fetch, -1, first, last)
        group: list[tuple] = []  # type: ignore[type-arg]
        for i in range(last, -1, -1):
            rows = self.read_block(i, -1, fill, fetcher)
            hi = len(rows)
            if end is not None and rows[-1][0] >= end:
                hi = bisect.bisect_left(rows, (end,))
            lo = 0
            done = False
            if start is not None and rows[0][0] < start:
                lo = bisect.bisect_left(rows, (start,))
                done = True
            for j in range(hi - 1, lo - 1, -1):
                r = rows[j]
                if group and group[0][0] != r[0]:
                    yield from reversed(group)
                    group = []
                group.append(r)
            if done:
                break
        if group:
            yield from reversed(group)

    def get_rows(self, key: bytes) -> list[tuple]:  # type: ignore[type-arg]
        """Every version of ``key`` in this SST, newest first (``[]`` when absent)."""
        if self.is_wal:
            return sorted((r for r in self.rows() if r[0] == key), key=lambda r: -r[1])
        info = self.info
        if info.first_entry is not None and key < info.first_entry:
            return []
        if info.last_entry is not None and key > info.last_entry:
            return []
        if not self.may_contain(key):
            return []
        out: list[tuple] = []  # type: ignore[type-arg]
        i = self._start_block(key)
        n = self.block_count
        while i < n:
            rows = self.read_block(i)
            j = bisect.bisect_left(rows, (key,))
            m = len(rows)
            while j < m and rows[j][0] == key:
                out.append(rows[j])
                j += 1
            if j < m:
                break  # a larger key: no more versions
            i += 1  # the key's versions may continue in the next block
        return out


# Rows are tuples starting with the key: ``(key,)`` sorts before every row of ``key`` and after
# every row of a smaller key, so ``bisect_left(rows, (key,))`` finds a key's first row with
# C-level tuple comparisons (no Python key function per probe).
