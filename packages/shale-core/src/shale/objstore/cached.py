"""An object-store wrapper that keeps parts of immutable objects on local disk (SlateDB's
``CachedObjectStore``, ``object_store_cache_options``).

Each cached object is split into fixed-size *parts* (``part_size_bytes``, 4 MiB by default);
a ranged read is served part by part, and a part missing on disk is fetched with one
part-aligned ranged read of the wrapped store (neighbouring missing parts in one request), then
written to disk. The object's size (its ``head``) is cached the same way, so a cold ``head``
is one request per object, ever.

What is cached: only compacted SSTs (keys ``.../compacted/<ulid>.sst``), which SlateDB's layout
never rewrites. Manifests, ``.compactions`` files, WAL SSTs (read once, by replay, as in
SlateDB, whose get policy bypasses them) and listings always go to the wrapped store. Uploads
(``put``) of compacted SSTs are cached when the options ask for it: ``cache_on_flush`` for the
writer's L0 flushes (the flusher marks its puts with :func:`upload_kind`), ``cache_on_compaction``
for everything else under ``compacted/`` (the compactor's outputs); ``cache_puts`` (SlateDB
0.12's name) turns both on.

Invariants and why:

* **A cache file is never served unless it verifies.** Every file (part or head) starts with a
  header: magic, chunk size, payload length, one CRC-32 per 32 KiB chunk of the payload, and a
  CRC of the header itself. A read checks the header, the file's length and the CRC of every
  chunk it touches; a file that fails any check (torn by a crash, truncated, a flipped bit) is
  deleted, counted in ``disk_cache_corrupt_files``, and the bytes are fetched again from the
  wrapped store. A part's payload length must also equal what the object's size implies.
* **Files appear whole or not at all.** A file is written to ``.tmp-<random>`` in its
  directory, fsynced and renamed over its final name. A crash leaves at most a temp file, which
  the next open's scan deletes once it is an hour old (another process may still be writing
  it).
* **The size bound holds for what this process knows.** Every file is accounted (header
  included) in an in-memory LRU index; before a file is admitted the least recently used files
  are deleted until it fits, and a file larger than the whole bound is not cached. The index is
  rebuilt from the directory on open (oldest access time first) and re-synchronised every
  ``scan_interval`` (files other processes sharing the folder wrote or deleted).
* **Cache failures never fail a read or a write.** Disk errors are logged and the wrapped
  store's bytes are returned; a put reaches the wrapped store before the cache sees it.
* **One fetch per missing part at a time.** Concurrent readers of the same object serialise
  their fetches on a per-object lock (one of 64 striped locks) and re-check the disk under it,
  so threads reading the same cold object fetch each part once.

Entries are keyed by ``namespace`` (the database's URL, hashed, when ``Db.open`` wraps the
store) and the object key, so databases may share a folder. Objects must really be immutable:
two databases opened with the same ``seed`` at the same URL after the first was deleted would
produce the same SST ids with different bytes; do not share a cache folder across that.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import secrets
import struct
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shale.errors import InvalidError
from shale.objstore.protocol import ObjectMeta, ObjectStore, validate_key
from shale.settings import ObjectStoreCacheOptions

__all__ = [
    "CHUNK_SIZE",
    "CachedObjectStore",
    "CorruptCacheFile",
    "read_cache_file",
    "upload_kind",
    "wrap_store",
    "write_cache_file",
]

log = logging.getLogger(__name__)

#: Bytes covered by one CRC inside a cache file.
CHUNK_SIZE = 32 * 1024
_MAGIC = b"SHC1"
_FIXED = struct.Struct("<4sIQI")  # magic, chunk size, payload length, chunk count
_U32 = struct.Struct("<I")
_TMP = ".tmp-"
_TMP_MAX_AGE = 3600.0
_HEAD = "head"
_CACHEABLE = re.compile(r"(?:^|/)compacted/[0-9A-HJKMNP-TV-Z]{26}\.sst$")
_STRIPES = 64

#: What the current thread is uploading: ``"flush"`` (an L0 flush) or ``None``.
_UPLOAD_KIND: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "shale_upload_kind", default=None
)


@contextlib.contextmanager
def upload_kind(kind: str) -> Iterator[None]:
    """Mark the puts made inside the block as ``kind`` (``"flush"``: the writer's L0 flush;
    other compacted-SST puts count as compaction outputs) for ``cache_on_flush``."""
    token = _UPLOAD_KIND.set(kind)
    try:
        yield
    finally:
        _UPLOAD_KIND.reset(token)


class CorruptCacheFile(Exception):
    """A cache file failed its checks (internal: the file is deleted and refetched)."""


# -- the file format -------------------------------------------------------------------------


def _header(payload: bytes | memoryview) -> bytes:
    n = (len(payload) + CHUNK_SIZE - 1) // CHUNK_SIZE
    view = memoryview(payload)
    crcs = b"".join(
        _U32.pack(zlib.crc32(view[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE])) for i in range(n)
    )
    head = _FIXED.pack(_MAGIC, CHUNK_SIZE, len(payload), n) + crcs
    return head + _U32.pack(zlib.crc32(head))


def write_cache_file(path: str, payload: bytes | memoryview) -> int:
    """Write ``payload`` with its header to ``path`` atomically (temp file, fsync, rename).

    :return: the file's size in bytes.
    """
    header = _header(payload)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, _TMP + secrets.token_hex(8))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            os.write(fd, header)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(header) + len(payload)


def read_cache_file(path: str, lo: int = 0, hi: int | None = None) -> tuple[bytes, int]:
    """Bytes ``[lo, hi)`` of the payload of cache file ``path`` (``hi=None``: to the end),
    after checking the header, the file's length and the CRC of every chunk read.

    :return: the bytes and the payload's length.
    :raises FileNotFoundError: no such file.
    :raises CorruptCacheFile: any check failed.
    """
    with open(path, "rb") as f:
        fixed = f.read(_FIXED.size)
        if len(fixed) != _FIXED.size:
            raise CorruptCacheFile("short header")
        magic, chunk, length, n = _FIXED.unpack(fixed)
        if magic != _MAGIC or chunk <= 0 or n != (length + chunk - 1) // chunk:
            raise CorruptCacheFile("bad header")
        rest = f.read(4 * n + 4)
        if len(rest) != 4 * n + 4:
            raise CorruptCacheFile("short header")
        if zlib.crc32(fixed + rest[:-4]) != _U32.unpack_from(rest, 4 * n)[0]:
            raise CorruptCacheFile("header checksum mismatch")
        start = _FIXED.size + len(rest)
        if os.fstat(f.fileno()).st_size != start + length:
            raise CorruptCacheFile("file length does not match its header")
        hi = length if hi is None else min(hi, length)
        if lo >= hi:
            return b"", length
        c0, c1 = lo // chunk, (hi - 1) // chunk
        f.seek(start + c0 * chunk)
        data = f.read(min(length, (c1 + 1) * chunk) - c0 * chunk)
        view = memoryview(data)
        for c in range(c0, c1 + 1):
            piece = view[(c - c0) * chunk : (c - c0 + 1) * chunk]
            if zlib.crc32(piece) != _U32.unpack_from(rest, 4 * c)[0]:
                raise CorruptCacheFile("chunk checksum mismatch")
        base = c0 * chunk
        return bytes(view[lo - base : hi - base]), length


# -- the store -------------------------------------------------------------------------------


class CachedObjectStore:
    """An :class:`~shale.objstore.ObjectStore` that caches parts of compacted SSTs on disk.

    :param inner: the wrapped store.
    :param options: the cache's settings (``root_folder`` must be set).
    :param namespace: a name separating this store's entries from other stores' in a shared
        folder (``Db.open`` passes the database's URL); hashed into a directory name.
    :raises InvalidError: ``root_folder`` is unset or cannot be created.
    """

    def __init__(
        self, inner: ObjectStore, options: ObjectStoreCacheOptions, *, namespace: str = ""
    ) -> None:
        if options.root_folder is None:
            raise InvalidError(
                "object_store_cache_options.root_folder must be set to cache on disk",
                field="object_store_cache_options.root_folder",
            )
        self.inner = inner
        self.options = options
        self.part_size = options.part_size_bytes
        self.max_bytes = options.max_cache_size_bytes
        self.root_folder = os.path.abspath(options.root_folder)
        ns = hashlib.sha256(namespace.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        self._base = os.path.join(self.root_folder, ns)
        try:
            os.makedirs(self._base, exist_ok=True)
        except OSError as exc:
            raise InvalidError(
                "cannot create the object-store cache folder",
                field="object_store_cache_options.root_folder",
                path=self.root_folder,
                error=str(exc),
            ) from exc
        self._lock = threading.Lock()  # the index and the counters
        self._index: OrderedDict[str, int] = OrderedDict()  # path -> bytes, LRU first
        self._size = 0
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._counters = dict.fromkeys(
            (
                "disk_cache_reads",
                "disk_cache_reads_local",
                "disk_cache_part_hits",
                "disk_cache_part_misses",
                "disk_cache_head_hits",
                "disk_cache_head_misses",
                "disk_cache_bytes_served",
                "disk_cache_bytes_fetched",
                "disk_cache_inner_gets",
                "disk_cache_evictions",
                "disk_cache_corrupt_files",
                "disk_cache_write_errors",
                "disk_cache_puts_cached",
            ),
            0,
        )
        self._closed = threading.Event()
        self.scan()
        self._scanner: threading.Thread | None = None
        if options.scan_interval is not None:
            self._scanner = threading.Thread(
                target=_scan_loop,
                args=(weakref.ref(self), self._closed, options.scan_interval),
                name="shale-disk-cache-scan",
                daemon=True,
            )
            self._scanner.start()

    # -- paths and the index -----------------------------------------------------------------

    @staticmethod
    def cacheable(key: str) -> bool:
        """Whether ``key`` names an object this cache keeps (a compacted SST)."""
        if not isinstance(key, str) or _CACHEABLE.search(key) is None:
            return False
        validate_key(key)  # no '..' may lead a cache path out of the folder
        return True

    def _dir(self, key: str) -> str:
        return os.path.join(self._base, *key.split("/"))

    def _part_path(self, key: str, part: int) -> str:
        return os.path.join(self._dir(key), f"part-{self.part_size}-{part:09d}")

    def scan(self) -> None:
        """Re-synchronise the index with the folder: learn files written by other processes
        (oldest access first), forget vanished ones, delete stale temp files, then evict down
        to the bound."""
        found: list[tuple[float, str, int]] = []
        now = time.time()
        for dirpath, _dirs, files in os.walk(self.root_folder):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if name.startswith(_TMP):
                    if now - st.st_mtime > _TMP_MAX_AGE:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    continue
                found.append((max(st.st_atime, st.st_mtime), path, st.st_size))
        found.sort()
        with self._lock:
            present = {path for _, path, _ in found}
            for path in [p for p in self._index if p not in present]:
                self._size -= self._index.pop(path)
            known = self._index
            fresh: OrderedDict[str, int] = OrderedDict()
            for _, path, size in found:
                if path not in known:
                    fresh[path] = size
                    self._size += size
            # files we did not know are older than anything this process touched
            fresh.update(known)
            self._index = fresh
        self._evict(0)

    def _evict(self, incoming: int) -> bool:
        """Delete least recently used files until ``incoming`` more bytes fit; False when
        they cannot fit at all (unbounded caches always fit)."""
        limit = self.max_bytes
        if limit is None:
            with self._lock:
                self._size += incoming  # reserved; _save records the file
            return True
        if incoming > limit:
            return False
        victims = []
        with self._lock:
            while self._index and self._size + incoming > limit:
                path, size = self._index.popitem(last=False)
                self._size -= size
                self._counters["disk_cache_evictions"] += 1
                victims.append(path)
            self._size += incoming  # reserved; _save records the file
        for path in victims:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return True

    def _save(self, path: str, payload: bytes | memoryview) -> None:
        """Write one cache file, within the bound; errors are logged, never raised."""
        n = (len(payload) + CHUNK_SIZE - 1) // CHUNK_SIZE
        expected = _FIXED.size + 4 * n + 4 + len(payload)
        if not self._evict(expected):
            return
        try:
            size = write_cache_file(path, payload)
        except OSError as exc:
            with self._lock:
                self._size -= expected
                self._counters["disk_cache_write_errors"] += 1
            log.warning("disk cache: cannot write %s: %s", path, exc)
            return
        with self._lock:
            self._size -= expected
            old = self._index.pop(path, None)
            if old is not None:
                self._size -= old
            self._index[path] = size
            self._size += size

    def _read(self, path: str, lo: int, hi: int | None, length: int | None) -> bytes | None:
        """Bytes of a cache file, or ``None`` (missing, or corrupt: then deleted)."""
        try:
            data, actual = read_cache_file(path, lo, hi)
            if length is not None and actual != length:
                raise CorruptCacheFile("part length does not match the object's size")
        except FileNotFoundError:
            self._forget(path)
            return None
        except (CorruptCacheFile, OSError) as exc:
            log.warning("disk cache: dropping %s: %s", path, exc)
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._forget(path)
            with self._lock:
                self._counters["disk_cache_corrupt_files"] += 1
            return None
        with self._lock:
            if path in self._index:
                self._index.move_to_end(path)
        return data

    def _forget(self, path: str) -> None:
        with self._lock:
            size = self._index.pop(path, None)
            if size is not None:
                self._size -= size

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, n in deltas.items():
                self._counters["disk_cache_" + name] += n

    # -- reads -------------------------------------------------------------------------------

    def _cached_meta(self, key: str) -> ObjectMeta | None:
        raw = self._read(os.path.join(self._dir(key), _HEAD), 0, None, None)
        if raw is None:
            return None
        try:
            d = json.loads(raw)
            meta = ObjectMeta(key, int(d["size"]), float(d["last_modified"]), d.get("etag"))
        except (ValueError, KeyError, TypeError):
            return None
        self._count(head_hits=1)
        return meta

    def _meta(self, key: str) -> ObjectMeta:
        meta = self._cached_meta(key)
        if meta is not None:
            return meta
        with self._stripes[hash(key) % _STRIPES]:  # one head request per object at a time
            meta = self._cached_meta(key)
            if meta is not None:
                return meta
            meta = self.inner.head(key)
            self._count(head_misses=1)
            self._save_head(meta)
        return meta

    def _save_head(self, meta: ObjectMeta) -> None:
        doc = {"size": meta.size, "last_modified": meta.last_modified, "etag": meta.etag}
        self._save(os.path.join(self._dir(meta.key), _HEAD), json.dumps(doc).encode())

    def _part_len(self, size: int, part: int) -> int:
        return min(self.part_size, size - part * self.part_size)

    def _cached_range(self, key: str, size: int, start: int, end: int) -> bytes:
        ps = self.part_size
        first, last = start // ps, (end - 1) // ps
        pieces: dict[int, bytes] = {}
        missing: list[int] = []
        fetched: set[int] = set()
        for p in range(first, last + 1):
            lo, hi = max(start - p * ps, 0), min(end - p * ps, self._part_len(size, p))
            data = self._read(self._part_path(key, p), lo, hi, self._part_len(size, p))
            if data is None:
                missing.append(p)
            else:
                pieces[p] = data
        if missing:
            stripe = self._stripes[hash(key) % _STRIPES]
            with stripe:
                still = []
                for p in missing:
                    lo, hi = max(start - p * ps, 0), min(end - p * ps, self._part_len(size, p))
                    data = self._read(self._part_path(key, p), lo, hi, self._part_len(size, p))
                    if data is None:
                        still.append(p)
                    else:
                        pieces[p] = data
                for run in _runs(still):
                    a, b = run[0], run[-1]
                    got = self.inner.get_range(key, a * ps, min(size, (b + 1) * ps))
                    self._count(inner_gets=1, bytes_fetched=len(got), part_misses=len(run))
                    whole = len(got) == min(size, (b + 1) * ps) - a * ps
                    view = memoryview(got)
                    fetched.update(run)
                    for p in run:
                        part = view[(p - a) * ps : (p - a + 1) * ps]
                        if whole:  # a short object (it changed?) is served, never cached
                            self._save(self._part_path(key, p), part)
                        lo, hi = max(start - p * ps, 0), min(end - p * ps, self._part_len(size, p))
                        pieces[p] = bytes(part[lo:hi])
        local = [p for p in range(first, last + 1) if p not in fetched]
        self._count(
            reads=1,
            reads_local=0 if fetched else 1,
            part_hits=len(local),
            bytes_served=sum(len(pieces[p]) for p in local),
        )
        return b"".join(pieces[p] for p in range(first, last + 1))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``key``, from disk where cached (compacted SSTs)."""
        if not self.cacheable(key):
            return self.inner.get_range(key, start, end)
        size = self._meta(key).size
        end = min(end, size)
        if start >= end:
            return b""
        data = self._cached_range(key, size, start, end)
        return data

    def get(self, key: str) -> bytes:
        """The whole object, from disk where cached (compacted SSTs)."""
        if not self.cacheable(key):
            return self.inner.get(key)
        return self.get_range(key, 0, self._meta(key).size)

    def head(self, key: str) -> ObjectMeta:
        """Metadata of ``key``; a compacted SST's comes from disk once cached (its etag and
        time may be ``None``/synthesised for an object the cache saw uploaded)."""
        if not self.cacheable(key):
            return self.inner.head(key)
        return self._meta(key)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        return self.inner.list(prefix)

    # -- writes ------------------------------------------------------------------------------

    def _caches_put(self) -> bool:
        o = self.options
        if _UPLOAD_KIND.get() == "flush":
            return o.cache_on_flush or o.cache_puts
        return o.cache_on_compaction or o.cache_puts

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Upload, then (per ``cache_on_flush``/``cache_on_compaction``) cache a compacted
        SST's parts and head. The upload's failure is the caller's; the cache's is logged."""
        self.inner.put(key, data, durable=durable)
        if not (self.cacheable(key) and self._caches_put()):
            return
        view = memoryview(data)
        ps = self.part_size
        for p in range((len(data) + ps - 1) // ps):
            self._save(self._part_path(key, p), view[p * ps : (p + 1) * ps])
        self._save_head(ObjectMeta(key, len(data), time.time(), None))
        self._count(puts_cached=1)

    def put_if_absent(self, key: str, data: bytes, **kwargs: Any) -> None:
        self.inner.put_if_absent(key, data, **kwargs)

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self.inner.put_if_match(key, data, etag)

    def delete(self, key: str) -> None:
        """Delete ``key`` from the wrapped store and its cached files."""
        self.inner.delete(key)
        if self.cacheable(key):
            self.evict(key)

    # -- management --------------------------------------------------------------------------

    def evict(self, key: str) -> None:
        """Drop every cached file of ``key`` (not counted as evictions)."""
        directory = self._dir(key)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._forget(path)

    def preload(self, keys: Iterable[str], max_bytes: int | None = None) -> int:
        """Fetch whole objects into the cache, in order, while their sizes fit ``max_bytes``
        (default: the bound); stops at the first that does not fit (so order keys by
        priority), as SlateDB's ``load_files_to_cache``. Failures are logged and skipped.

        :return: the number of objects loaded.
        """
        budget = max_bytes if max_bytes is not None else self.max_bytes
        chosen: list[tuple[str, int]] = []
        for key in keys:
            if not self.cacheable(key):
                continue
            try:
                size = self._meta(key).size
            except Exception as exc:
                log.warning("disk cache preload: head of %s failed: %s", key, exc)
                break
            if budget is not None:
                if size > budget:
                    break
                budget -= size
            chosen.append((key, size))

        def load(item: tuple[str, int]) -> bool:
            try:
                self.get_range(item[0], 0, item[1])
                return True
            except Exception as exc:
                log.warning("disk cache preload: %s failed: %s", item[0], exc)
                return False

        if not chosen:
            return 0
        with ThreadPoolExecutor(max_workers=min(8, len(chosen))) as pool:
            return sum(pool.map(load, chosen))

    def cache_metrics(self) -> dict[str, int]:
        """Counters and gauges: ranged reads of cached objects (``disk_cache_reads``) and those
        served wholly from disk (``disk_cache_reads_local``), part/head hits and misses, bytes
        served from disk and fetched,
        the wrapped store's gets, evictions, corrupt files dropped, write errors, cached puts,
        ``disk_cache_bytes`` (current size) and ``disk_cache_files``."""
        with self._lock:
            out = dict(self._counters)
            out["disk_cache_bytes"] = self._size
            out["disk_cache_files"] = len(self._index)
            return out

    def enclosing_store(self) -> ObjectStore | None:
        """The wrapped store's enclosing store (clone sources are read uncached)."""
        enclosing = getattr(self.inner, "enclosing_store", None)
        return None if enclosing is None else enclosing()

    def stop(self) -> None:
        """Stop the periodic rescans (the wrapped store stays open)."""
        self._closed.set()

    def close(self) -> None:
        """Stop the rescans and close the wrapped store."""
        self._closed.set()
        self.inner.close()

    def __repr__(self) -> str:
        return f"CachedObjectStore({self.inner!r}, root_folder={self.root_folder!r})"


def wrap_store(
    store: ObjectStore, options: ObjectStoreCacheOptions | None, namespace: str
) -> ObjectStore:
    """``store`` wrapped in a :class:`CachedObjectStore` when ``options`` enable the cache
    (the one place ``Db``, ``DbReader`` and ``Admin`` apply ``object_store_cache_options``),
    else ``store`` itself. ``namespace``: the database's URL or prefix."""
    if options is None or not options.enabled:
        return store
    return CachedObjectStore(store, options, namespace=namespace)


def _runs(parts: list[int]) -> list[list[int]]:
    """Consecutive runs of sorted part numbers."""
    out: list[list[int]] = []
    for p in parts:
        if out and out[-1][-1] == p - 1:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _scan_loop(ref: weakref.ref[CachedObjectStore], closed: threading.Event, every: float) -> None:
    while not closed.wait(every):
        store = ref()
        if store is None:
            return
        try:
            store.scan()
        except Exception:  # pragma: no cover - a scan must never kill the thread silently
            log.exception("disk cache rescan failed")
        del store
