"""The local-directory object store: shale's embedded default (built-in plugin ``shale.local``).

Key ``a/b/c`` is the file ``<root>/a/b/c``. Invariants, and how they are kept:

- **No partial objects.** Every write goes to a hidden temp file (``.tmp-<random>``) in the
  destination directory, is fsynced when durable, and only then published by a rename or link,
  which POSIX makes atomic. ``list`` never reports temp files.
- **Create-if-absent is atomic across processes.** ``put_if_absent`` publishes the finished temp
  file with ``link(tmp, final)``, which fails with ``EEXIST`` if the name is taken. (``O_EXCL``
  on the final name would be atomic too, but would expose the object while it is written.)
- **Compare-and-swap is atomic across processes on one machine.** ``put_if_match`` takes an
  exclusive ``flock`` on ``<root>/.shale-lock``, checks the etag and renames. Plain ``put`` and
  ``delete`` take the same lock shared around their publish step, so they can never slip between
  a CAS's check and its rename (they still run in parallel with each other). Processes that
  share the directory must all be shale processes for this to hold; ``flock`` is advisory.
- **Etags change on every write.** The etag is ``<inode>-<mtime ns>-<size>`` in hex. Each write
  creates a new inode while the old one is still linked, so consecutive versions never share an
  inode, and the mtime is set from ``time.time_ns()`` (not the kernel's coarse timestamp) before
  publishing, which makes an A-B-A reuse of all three practically impossible.
- **Keys stay inside the root.** Every key goes through :func:`validate_key` (no ``..``, ``.``,
  empty segments, absolute paths, backslashes, NUL) and segments that collide with the store's
  own files (``.tmp-*``, ``.shale-lock``) are rejected. Symlinks an operator places under the
  root are followed on purpose (for example to put ``wal/`` on another disk).

Limits: ``delete`` does not fsync the directory (a crash may resurrect a deleted object, which
SlateDB's GC tolerates) and does not remove directories that become empty (so a concurrent put
never races a directory removal). A crash can leave ``.tmp-*`` files behind; they are invisible
to the store and safe to delete when no writer is running. ``a`` and ``a/b`` cannot both be
objects, as on any file system: writing one while the other exists raises
:class:`PermanentStoreError`.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import shale
from shale.errors import InvalidError
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStoreError,
    PermanentStoreError,
    TransientStoreError,
    check_range,
    validate_key,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: a process-local lock is the best we can do
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "TEMP_PREFIX", "LocalStore", "shale_open_object_store"]

log = logging.getLogger(__name__)

#: Temp files start with this; ``list`` hides them and keys may not use it.
TEMP_PREFIX = ".tmp-"
#: The lock file at the root that serializes compare-and-swap; hidden and reserved.
LOCK_NAME = ".shale-lock"

#: Errors that may go away on retry (I/O hiccups, full disk, too many open files, NFS).
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EIO",
        "EAGAIN",
        "EWOULDBLOCK",
        "EINTR",
        "ENOSPC",
        "EDQUOT",
        "EBUSY",
        "ETIMEDOUT",
        "ENFILE",
        "EMFILE",
        "ENOMEM",
        "ESTALE",
        "ENOLCK",
        "ECONNRESET",
        "ENETDOWN",
        "EHOSTUNREACH",
    )
    if hasattr(errno, name)
)
#: ``link`` failed because the file system has no hard links: fall back to a locked rename.
_NO_LINK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS")
    if hasattr(errno, name)
)

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_UTIME_FD = os.utime in os.supports_fd
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")

#: Options accepted by ``open_store`` for plain paths and ``file://`` URLs.
OPTIONS = frozenset({"fsync"})

# Process-local locks standing in for flock where fcntl does not exist, one per root.
_fallback_locks: dict[str, threading.Lock] = {}
_fallback_guard = threading.Lock()


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _reserved(segment: str) -> bool:
    return segment.startswith(TEMP_PREFIX) or segment == LOCK_NAME


def _listable(name: str) -> bool:
    """Whether a directory entry can be part of a key (others were not written by a store)."""
    if _reserved(name) or "\\" in name:
        return False
    if name.isascii():
        return True
    try:
        name.encode("utf-8")  # undecodable file names arrive as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _map_error(exc: OSError, op: str, key: str) -> ObjectStoreError:
    """Translate an ``OSError`` into the store's error kinds (callers ``raise ... from exc``)."""
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFound("object not found", key=key)
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else "unknown"
    message = f"local store {op} failed: {exc.strerror or exc}"
    if code in _TRANSIENT_ERRNOS:
        return TransientStoreError(message, key=key, errno=name)
    return PermanentStoreError(message, key=key, errno=name)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows; the fd is private to us
    return os.read(fd, size)  # pragma: no cover


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


class LocalStore:
    """An object store kept in a local directory (see the module docstring for guarantees).

    :param root: the directory holding the objects. It is created (with parents) by the first
        write, never by opening or reading: a read of a mistyped path finds nothing and leaves
        no directory behind.
    :param fsync: when false, durable puts skip ``fsync`` (faster; for tests and scratch data).
    :raises InvalidError: ``root`` is empty, or exists but is not a directory.
    """

    #: Reads are served by this machine (page cache, local disk): there is no request latency
    #: for readers to hide behind read-ahead threads (the compaction executor reads
    #: synchronously from such stores; GIL hand-offs to fetch threads cost more than they save).
    serves_locally = True

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        path = os.fspath(root)
        if not isinstance(path, str) or not path:
            raise InvalidError("local store root must be a non-empty str path", root=root)
        self._root = os.path.abspath(path)
        self._fsync = bool(fsync)
        self._lock_path = os.path.join(self._root, LOCK_NAME)
        if os.path.lexists(self._root) and not os.path.isdir(self._root):
            raise InvalidError("local store root is not a directory", root=self._root)

    @property
    def root(self) -> str:
        """The absolute path of the store's directory."""
        return self._root

    @property
    def fsync(self) -> bool:
        """Whether durable writes are fsynced."""
        return self._fsync

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    def enclosing_store(self) -> LocalStore | None:
        """The store of the directory containing this one (``None`` at the file system root).

        Optional in the store protocol: it lets a clone opened by its own directory find the
        databases it was cloned from (:mod:`shale.meta.locator`). Nothing is created.
        """
        parent = os.path.dirname(self._root)
        if parent == self._root or not os.path.isdir(parent):
            return None
        return LocalStore(parent, fsync=self._fsync)

    # -- paths and locks ------------------------------------------------------------------

    def _path(self, key: str) -> str:
        validate_key(key)
        parts = key.split("/")
        for part in parts:
            if _reserved(part):
                raise InvalidError(
                    "object key uses a name reserved by the local store",
                    key=key,
                    reserved=f"{TEMP_PREFIX}*, {LOCK_NAME}",
                )
        path = os.path.join(self._root, *parts)
        # validate_key already confines the key; this guards odd platforms (drive letters, ...).
        if os.path.dirname(os.path.normpath(path))[: len(self._root)] != self._root:
            raise InvalidError("object key escapes the store root", key=key)
        return path

    @contextlib.contextmanager
    def _locked(self, *, shared: bool) -> Iterator[None]:
        """Hold ``<root>/.shale-lock`` shared (put, delete) or exclusive (compare-and-swap).

        Each call opens its own descriptor: ``flock`` locks belong to an open file description,
        so threads of one process exclude each other too.
        """
        if fcntl is None:  # pragma: no cover - not POSIX
            with _fallback_guard:
                lock = _fallback_locks.setdefault(self._root, threading.Lock())
            with lock:
                yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _fsync_dir(self, dirpath: str) -> None:
        fd = os.open(dirpath, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_temp(self, dirpath: str, view: memoryview, sync: bool) -> str:
        tmp = os.path.join(dirpath, TEMP_PREFIX + os.urandom(8).hex())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
        try:
            _write_all(fd, view)
            if _UTIME_FD:
                now = time.time_ns()
                os.utime(fd, ns=(now, now))
            if sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quiet(tmp)
            raise
        os.close(fd)
        return tmp

    def _makedirs(self, dirpath: str, sync: bool) -> None:
        existing = dirpath  # the deepest directory that exists already (the root's parent, ...)
        while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        os.makedirs(dirpath, exist_ok=True)
        if sync:  # the new directory entries must reach the disk too, up to `existing`
            d = dirpath
            while len(d) > len(existing):
                d = os.path.dirname(d)
                self._fsync_dir(d)

    def _stage(self, key: str, data: bytes, sync: bool) -> tuple[str, str, str]:
        """Write ``data`` to a temp file beside ``key``'s file: ``(path, dirpath, tmp)``."""
        path = self._path(key)
        try:
            view = memoryview(data).cast("B")
        except TypeError:
            raise InvalidError(
                "object data must be bytes-like", key=key, type=type(data).__name__
            ) from None
        dirpath = os.path.dirname(path)
        try:
            try:
                tmp = self._write_temp(dirpath, view, sync)
            except FileNotFoundError:
                self._makedirs(dirpath, sync)
                tmp = self._write_temp(dirpath, view, sync)
        except (FileNotFoundError, NotADirectoryError, FileExistsError) as exc:
            raise PermanentStoreError(
                "a parent of the key is an object, or the store root is gone",
                key=key,
                errno=errno.errorcode.get(exc.errno or 0, "unknown"),
            ) from exc
        except OSError as exc:
            raise _map_error(exc, "write", key) from exc
        return path, dirpath, tmp

    def _dir_conflict(self, key: str) -> PermanentStoreError:
        return PermanentStoreError(
            "key names a directory of other objects; a local store cannot hold both", key=key
        )

    # -- writes -----------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` at ``key``, replacing any object there (temp file, then rename).

        :param durable: fsync the file and its directory before returning (unless the store was
            opened with ``fsync=False``).
        :raises InvalidError: bad key or data that is not bytes-like.
        :raises PermanentStoreError: ``key`` is a directory of other objects, or access denied.
        :raises TransientStoreError: I/O error, disk full and the like.
        """
        sync = durable and self._fsync
        path, dirpath, tmp = self._stage(key, data, sync)
        try:
            with self._locked(shared=True):
                os.replace(tmp, path)
        except OSError as exc:
            _unlink_quiet(tmp)
            if os.path.isdir(path):
                raise self._dir_conflict(key) from exc
            raise _map_error(exc, "put", key) from exc
        if sync:
            self._fsync_and_map(dirpath, key)

    def open_writer(self, key: str, *, sync_every: int = 0) -> LocalObjectWriter:
        """Stream an object to ``key``: :meth:`LocalObjectWriter.write_parts` pieces as they
        are produced, then :meth:`~LocalObjectWriter.commit` publishes them like :meth:`put`
        (temp file, fsync, rename), :meth:`~LocalObjectWriter.commit_if_absent` like
        :meth:`put_if_absent` (a large WAL SST), or :meth:`~LocalObjectWriter.abort` drops them.

        An optional capability of object stores (the compaction executor streams output SSTs
        through it, so writing overlaps building; stores without it get one :meth:`put`).

        The pieces go to a ``.tmp-*`` staging file beside the key (hidden from :meth:`list`);
        a process killed before ``commit`` or ``abort`` leaves it behind, as an interrupted
        :meth:`put` would (for longer: a compaction output streams for the whole job).

        :param sync_every: when positive (and the store fsyncs), ``fdatasync`` the file each
            time this many more bytes were written, so the writing thread pays for the disk
            as it goes and the fsync of a durable :meth:`~LocalObjectWriter.commit` is short.

        :raises InvalidError: bad key.
        :raises PermanentStoreError: a parent of the key is an object, or access denied.
        :raises TransientStoreError: I/O error.
        """
        path = self._path(key)
        dirpath = os.path.dirname(path)
        tmp = os.path.join(dirpath, TEMP_PREFIX + os.urandom(8).hex())
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileNotFoundError:
                self._makedirs(dirpath, self._fsync)
                fd = os.open(tmp, flags, 0o666)
        except (FileNotFoundError, NotADirectoryError, FileExistsError) as exc:
            raise PermanentStoreError(
                "a parent of the key is an object, or the store root is gone",
                key=key,
                errno=errno.errorcode.get(exc.errno or 0, "unknown"),
            ) from exc
        except OSError as exc:
            raise _map_error(exc, "write", key) from exc
        sync = sync_every if self._fsync and sync_every > 0 else 0
        return LocalObjectWriter(self, key, path, dirpath, tmp, fd, sync)

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Create ``key`` only if it does not exist: publish the written temp file with ``link``.

        Always durable (unless the store was opened with ``fsync=False``).

        :raises ObjectAlreadyExists: the key exists (another writer won the race).
        """
        sync = self._fsync
        path, dirpath, tmp = self._stage(key, data, sync)
        self._publish_if_absent(tmp, path, dirpath, key, sync)

    def _publish_if_absent(self, tmp: str, path: str, dirpath: str, key: str, sync: bool) -> None:
        """Publish the written (and, if ``sync``, fsynced) temp file ``tmp`` at ``path`` unless
        an object is there: ``link`` (a collision is :class:`ObjectAlreadyExists`), then the
        directory fsync; ``tmp`` is removed in every case."""
        try:
            try:
                os.link(tmp, path)
            except FileExistsError:
                if os.path.isdir(path):
                    raise self._dir_conflict(key) from None
                raise ObjectAlreadyExists("object already exists", key=key) from None
            except OSError as exc:
                if exc.errno not in _NO_LINK_ERRNOS:
                    raise _map_error(exc, "put_if_absent", key) from exc
                log.debug("no hard links under %s; put_if_absent uses a locked rename", self._root)
                self._publish_if_absent_locked(tmp, path, key)
        finally:
            _unlink_quiet(tmp)
        if sync:
            self._fsync_and_map(dirpath, key)

    def _publish_if_absent_locked(self, tmp: str, path: str, key: str) -> None:
        """``put_if_absent`` for file systems without hard links: check and rename under lock."""
        try:
            with self._locked(shared=False):
                if os.path.lexists(path):
                    if os.path.isdir(path):
                        raise self._dir_conflict(key)
                    raise ObjectAlreadyExists("object already exists", key=key)
                os.replace(tmp, path)
        except OSError as exc:
            raise _map_error(exc, "put_if_absent", key) from exc

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        """Overwrite ``key`` only if its etag is still ``etag`` (check and rename under lock).

        Always durable (unless the store was opened with ``fsync=False``).

        :raises ObjectAlreadyExists: the object changed since ``etag`` was read, or is gone.
        """
        if not isinstance(etag, str):
            raise InvalidError("etag must be a str", key=key, type=type(etag).__name__)
        sync = self._fsync
        path, dirpath, tmp = self._stage(key, data, sync)
        try:
            with self._locked(shared=False):
                try:
                    st = os.stat(path)
                except (FileNotFoundError, NotADirectoryError):
                    raise ObjectAlreadyExists(
                        "object is gone; etag precondition failed", key=key, etag=etag
                    ) from None
                current = None if stat.S_ISDIR(st.st_mode) else _etag(st)
                if current != etag:
                    raise ObjectAlreadyExists(
                        "object changed; etag precondition failed",
                        key=key,
                        etag=etag,
                        current=current,
                    )
                os.replace(tmp, path)
        except ObjectStoreError:
            _unlink_quiet(tmp)
            raise
        except OSError as exc:
            _unlink_quiet(tmp)
            raise _map_error(exc, "put_if_match", key) from exc
        if sync:
            self._fsync_and_map(dirpath, key)

    def _fsync_and_map(self, dirpath: str, key: str) -> None:
        try:
            self._fsync_dir(dirpath)
        except OSError as exc:
            raise _map_error(exc, "fsync", key) from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; succeeds if it is already gone (or names a directory, not an object)."""
        path = self._path(key)
        try:
            with self._locked(shared=True):
                os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            if os.path.isdir(path):  # macOS says EPERM when unlinking a directory
                return
            raise _map_error(exc, "delete", key) from exc

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The whole object. :raises ObjectNotFound: the key does not exist."""
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound("object not found", key=key) from None
        except OSError as exc:
            raise _map_error(exc, "get", key) from exc

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object, clipped to its length (``b""`` if empty).

        :raises InvalidError: ``start`` or ``end`` is negative or not an int.
        :raises ObjectNotFound: the key does not exist.
        """
        path = self._path(key)
        check_range(key, start, end)
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound("object not found", key=key) from None
        except OSError as exc:
            if os.path.isdir(path):
                raise ObjectNotFound("object not found", key=key) from None
            raise _map_error(exc, "get_range", key) from exc
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise ObjectNotFound("object not found", key=key)
            chunks: list[bytes] = []
            pos = start
            while pos < end:
                chunk = _pread(fd, end - pos, pos)
                if not chunk:
                    break
                chunks.append(chunk)
                pos += len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except OSError as exc:
            raise _map_error(exc, "get_range", key) from exc
        finally:
            os.close(fd)

    def head(self, key: str) -> ObjectMeta:
        """Size, modification time and etag of one object.

        :raises ObjectNotFound: the key does not exist.
        """
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound("object not found", key=key) from None
        except OSError as exc:
            raise _map_error(exc, "head", key) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound("object not found", key=key)
        return ObjectMeta(key, st.st_size, st.st_mtime_ns / 1e9, _etag(st))

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """Every object whose key starts with ``prefix``, in ascending key order.

        ``prefix`` is a plain string prefix: ``"db/wal/0000"`` matches ``db/wal/00001.sst``.
        Only the directory part of the prefix is walked, lazily, one directory at a time.
        A prefix no valid key can start with yields nothing.

        :raises InvalidError: ``prefix`` is not a str.
        """
        if not isinstance(prefix, str):
            raise InvalidError("list prefix must be a str", type=type(prefix).__name__)
        dir_part, slash, name_prefix = prefix.rpartition("/")
        if slash:
            for part in dir_part.split("/"):
                if part in ("", ".", "..") or "\\" in part or "\x00" in part or _reserved(part):
                    return iter(())
        return self._walk(dir_part, name_prefix)

    def _walk(self, rel_dir: str, name_prefix: str) -> Iterator[ObjectMeta]:
        # Sorting directory names with a "/" suffix yields keys in global order: every key
        # under directory d starts with d + "/", which compares against any sibling name the
        # same way d + "/" does ("a-c" < "a/b" because "-" < "/").
        abs_dir = os.path.join(self._root, *rel_dir.split("/")) if rel_dir else self._root
        try:
            with os.scandir(abs_dir) as it:
                entries = [e for e in it if e.name.startswith(name_prefix) and _listable(e.name)]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _map_error(exc, "list", rel_dir) from exc
        items: list[tuple[str, os.DirEntry[str], bool]] = []
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            items.append((e.name + "/" if is_dir else e.name, e, is_dir))
        items.sort(key=lambda item: item[0])
        base = rel_dir + "/" if rel_dir else ""
        for _, e, is_dir in items:
            key = base + e.name
            if is_dir:
                yield from self._walk(key, "")
                continue
            try:
                st = e.stat()
            except FileNotFoundError:  # deleted while we listed
                continue
            except OSError as exc:
                raise _map_error(exc, "list", key) from exc
            if stat.S_ISREG(st.st_mode):
                yield ObjectMeta(key, st.st_size, st.st_mtime_ns / 1e9, _etag(st))

    def sweep_staging(
        self, prefix: str = "", *, older_than_s: float = 3600.0
    ) -> builtins.list[str]:
        """Delete the staging files (``.tmp-*``) under ``prefix`` whose last write is older than
        ``older_than_s`` seconds: what a process killed during a put or a streamed upload left
        behind (a compaction's can be a whole SST). A live upload writes its staging file as it
        goes, so a fresh one is never touched.

        :returns: the paths deleted, relative to the store root.
        :raises InvalidError: ``older_than_s`` is negative or not a number.
        """
        if not isinstance(older_than_s, (int, float)) or isinstance(older_than_s, bool):
            raise InvalidError("older_than_s must be a number", older_than_s=older_than_s)
        if older_than_s < 0:
            raise InvalidError("older_than_s must be >= 0", older_than_s=older_than_s)
        top = os.path.join(self._root, *[p for p in prefix.split("/") if p])
        cutoff = time.time() - older_than_s
        removed: builtins.list[str] = []
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.stat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed.append(os.path.relpath(path, self._root).replace(os.sep, "/"))
                except FileNotFoundError:
                    continue  # published or removed meanwhile
        return removed

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""


def _root_from_url(url: Any) -> str | None:
    """The directory a plain path or ``file://`` URL names, or ``None`` for other schemes."""
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str):
        return None
    match = _SCHEME.match(url)
    if match is None:
        if not url:
            raise InvalidError("local store path is empty", url=url)
        return url
    if match.group(1).lower() != "file":
        return None
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidError(
            "file URLs take an absolute path and no host: file:///abs/path",
            url=url,
            host=parts.netloc,
        )
    if parts.query or parts.fragment:
        raise InvalidError("file URLs take no query or fragment", url=url)
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise InvalidError("file URLs take an absolute path: file:///abs/path", url=url)
    return path


@shale.hookimpl
def shale_open_object_store(url: str, options: dict[str, Any]) -> LocalStore | None:
    """Open a :class:`LocalStore` for a plain path or a ``file:///abs/path`` URL.

    The directory is created by the first write (not by opening or reading). Options:
    ``fsync`` (bool, default true) -- whether
    durable writes are fsynced. Returns ``None`` for any other scheme.

    :raises InvalidError: a ``file://`` URL with a host, query or relative path, or an unknown
        or ill-typed option.
    """
    root = _root_from_url(url)
    if root is None:
        return None
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise InvalidError(
            "unknown option for the local store", url=url, options=unknown, accepted=sorted(OPTIONS)
        )
    fsync = options.get("fsync", True)
    if not isinstance(fsync, bool):
        raise InvalidError("local store option fsync must be a bool", url=url, fsync=fsync)
    return LocalStore(root, fsync=fsync)


#: Pieces per ``os.writev`` call (Linux's IOV_MAX is 1024).
_IOV_MAX = min(1024, getattr(os, "sysconf", lambda _n: 1024)("SC_IOV_MAX") or 1024)


class LocalObjectWriter:
    """An object being streamed into a :class:`LocalStore` (see :meth:`LocalStore.open_writer`).

    Not thread-safe: one thread at a time (the caller may hand it from thread to thread).
    Writes release the GIL (``os.writev``), so a writer thread overlaps the producer's work.
    """

    def __init__(
        self,
        store: LocalStore,
        key: str,
        path: str,
        dirpath: str,
        tmp: str,
        fd: int,
        sync_every: int = 0,
    ) -> None:
        self._store = store
        self.key = key
        self._path = path
        self._dirpath = dirpath
        self._tmp = tmp
        self._fd: int | None = fd
        #: bytes written so far
        self.size = 0
        self._sync_every = sync_every
        self._synced = 0  # bytes covered by the last fdatasync

    def _check_open(self) -> int:
        if self._fd is None:
            raise InvalidError("object writer already committed or aborted", key=self.key)
        return self._fd

    def write_parts(self, parts: list[bytes]) -> None:
        """Append ``parts`` (bytes-like pieces) to the object, in order.

        :raises TransientStoreError: I/O error, disk full and the like (then :meth:`abort`).
        """
        fd = self._check_open()
        try:
            for i in range(0, len(parts), _IOV_MAX):
                batch = parts[i : i + _IOV_MAX]
                want = sum(len(p) for p in batch)
                done = os.writev(fd, batch)
                if done != want:  # a short write: finish this batch piece by piece
                    rest = memoryview(b"".join(batch)).cast("B")[done:]
                    _write_all(fd, rest)
                self.size += want
            if self._sync_every and self.size - self._synced >= self._sync_every:
                os.fdatasync(fd)
                self._synced = self.size
        except OSError as exc:
            raise _map_error(exc, "write", self.key) from exc

    def fileno(self) -> int:
        """The open file, for a producer that writes the object's next bytes itself (the
        compaction kernel, without the GIL); it reports them with :meth:`wrote`.

        :raises InvalidError: the writer is committed or aborted.
        """
        return self._check_open()

    def wrote(self, n: int) -> None:
        """Account ``n`` bytes the producer wrote to :meth:`fileno` (after the earlier ones);
        :meth:`sync_due` then tells whether the periodic ``fdatasync`` is due."""
        self.size += n

    def sync_due(self) -> bool:
        """Whether ``sync_every`` bytes were written since the last periodic sync."""
        return bool(self._sync_every) and self.size - self._synced >= self._sync_every

    def sync(self, upto: int) -> None:
        """The periodic ``fdatasync``, covering the first ``upto`` bytes (a producer thread
        may go on writing meanwhile).

        :raises TransientStoreError: I/O error.
        """
        try:
            os.fdatasync(self._check_open())
        except OSError as exc:
            raise _map_error(exc, "write", self.key) from exc
        self._synced = max(self._synced, upto)

    def error(self, exc: OSError) -> ObjectStoreError:
        """The store error for ``exc``, raised by a producer writing to :meth:`fileno`."""
        return _map_error(exc, "write", self.key)

    def commit(self, *, durable: bool = True) -> None:
        """Publish the object at its key (replacing any object there), like
        :meth:`LocalStore.put`; the writer is closed afterwards (also when it fails).

        :raises PermanentStoreError: the key is a directory of other objects.
        :raises TransientStoreError: I/O error.
        """
        store = self._store
        sync = durable and store._fsync
        try:
            self._close(sync)
            with store._locked(shared=True):
                os.replace(self._tmp, self._path)
        except OSError as exc:
            _unlink_quiet(self._tmp)
            if os.path.isdir(self._path):
                raise store._dir_conflict(self.key) from exc
            raise _map_error(exc, "put", self.key) from exc
        if sync:
            store._fsync_and_map(self._dirpath, self.key)

    def commit_if_absent(self) -> None:
        """Publish the object at its key only if none is there, like
        :meth:`LocalStore.put_if_absent` (fsync, then ``link``; always durable unless the store
        was opened with ``fsync=False``); the writer is closed afterwards (also when it fails).

        :raises ObjectAlreadyExists: the key exists (another writer won the race).
        :raises PermanentStoreError: the key is a directory of other objects.
        :raises TransientStoreError: I/O error (the object may or may not have appeared when
            it came from the final directory fsync).
        """
        store = self._store
        sync = store._fsync
        try:
            self._close(sync)
        except OSError as exc:
            _unlink_quiet(self._tmp)
            raise _map_error(exc, "put_if_absent", self.key) from exc
        store._publish_if_absent(self._tmp, self._path, self._dirpath, self.key, sync)

    def _close(self, sync: bool) -> None:
        """Stamp the modification time, fsync if ``sync`` and close the file (also when the
        fsync fails); the writer is closed afterwards.

        :raises OSError: from the stamp or the fsync (the caller maps it and drops the file).
        """
        fd = self._check_open()
        self._fd = None
        try:
            if _UTIME_FD:
                now = time.time_ns()
                os.utime(fd, ns=(now, now))
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self) -> None:
        """Drop what was written (no object appears); idempotent, never raises."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            os.close(fd)
        except OSError:
            pass
        _unlink_quiet(self._tmp)
