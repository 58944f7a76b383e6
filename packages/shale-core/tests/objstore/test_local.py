"""Tests of shale/objstore/local.py: the contract, file layout, errors, cross-process atomicity."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shale.errors import InvalidError
from shale.objstore.local import LOCK_NAME, TEMP_PREFIX, LocalStore
from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectNotFound,
    PermanentStoreError,
    TransientStoreError,
)
from shale.testing.objstore_contract import ObjectStoreContract


class TestLocalStoreContract(ObjectStoreContract):
    """The contract with fsync on, as users run it."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LocalStore]:
        store = LocalStore(tmp_path / "store")
        yield store
        store.close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- layout -----------------------------------------------------------------------------------


def test_keys_are_files_under_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "r")
    store.put("db/wal/00001.sst", b"wal")
    store.put_if_absent("db/manifest/1.manifest", b"m")
    assert (tmp_path / "r/db/wal/00001.sst").read_bytes() == b"wal"
    assert (tmp_path / "r/db/manifest/1.manifest").read_bytes() == b"m"
    assert store.root == str(tmp_path / "r")
    assert repr(store) == f"LocalStore({str(tmp_path / 'r')!r})"


def test_root_is_created_by_the_first_write_and_must_be_a_directory(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "a/b/c")
    assert not (tmp_path / "a").exists()  # opening creates nothing
    assert list(store.list()) == [] and list(store.list("x/y")) == []
    with pytest.raises(ObjectNotFound):
        store.get("k")
    with pytest.raises(ObjectNotFound):
        store.head("k")
    with pytest.raises(ObjectNotFound):
        store.get_range("k", 0, 1)
    store.delete("k")
    assert not (tmp_path / "a").exists()  # neither does reading or deleting nothing
    store.put("k", b"v")
    assert (tmp_path / "a/b/c").is_dir() and store.get("k") == b"v"
    LocalStore(tmp_path / "d/e", fsync=False).put_if_absent("x/y", b"1")
    assert (tmp_path / "d/e/x/y").read_bytes() == b"1"
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InvalidError):
        LocalStore(tmp_path / "file")
    with pytest.raises(InvalidError):
        LocalStore("")


def test_objects_persist_across_instances(tmp_path: Path) -> None:
    LocalStore(tmp_path).put("k", b"v")
    other = LocalStore(str(tmp_path))
    assert other.get("k") == b"v"
    meta = other.head("k")
    assert LocalStore(tmp_path).head("k") == meta


def test_no_temp_files_left_behind(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/b", b"1")
    store.put("a/b", b"2", durable=False)
    store.put_if_absent("a/c", b"3")
    with pytest.raises(ObjectAlreadyExists):
        store.put_if_absent("a/c", b"4")
    store.put_if_match("a/c", b"5", store.head("a/c").etag or "")
    with pytest.raises(ObjectAlreadyExists):
        store.put_if_match("a/c", b"6", "stale")
    assert _files(tmp_path) == [LOCK_NAME, "a/b", "a/c"]


def test_temp_and_lock_files_are_hidden_from_list(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("d/x", b"1")
    (tmp_path / "d" / f"{TEMP_PREFIX}crashed").write_bytes(b"partial")
    (tmp_path / f"{TEMP_PREFIX}other").write_bytes(b"partial")
    (tmp_path / LOCK_NAME).write_bytes(b"")
    assert [m.key for m in store.list()] == ["d/x"]
    assert [m.key for m in store.list("d/.tmp")] == []
    assert [m.key for m in store.list(".")] == []


@pytest.mark.parametrize(
    "key", [f"{TEMP_PREFIX}x", f"a/{TEMP_PREFIX}x", LOCK_NAME, f"a/{LOCK_NAME}"]
)
def test_reserved_names_are_invalid_keys(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path)
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.delete(key)):
        with pytest.raises(InvalidError, match="reserved"):
            call()


def test_list_ignores_non_regular_files_and_follows_dir_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x").write_bytes(b"linked")
    os.symlink(elsewhere, root / "wal")
    os.mkfifo(root / "fifo")
    (root / "emptydir").mkdir()
    assert [m.key for m in store.list()] == ["wal/x"]
    assert store.get("wal/x") == b"linked"
    with pytest.raises(ObjectNotFound):
        store.head("emptydir")


def test_list_is_lazy_and_survives_concurrent_deletes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, fsync=False)
    for i in range(10):
        store.put(f"k/{i:02d}", b"x")
    it = store.list("k/")
    first = next(it)
    for i in range(1, 10, 2):
        store.delete(f"k/{i:02d}")
    rest = [m.key for m in it]
    assert first.key == "k/00"
    assert rest == ["k/02", "k/04", "k/06", "k/08"]


def test_list_rejects_non_str_prefix(tmp_path: Path) -> None:
    with pytest.raises(InvalidError):
        LocalStore(tmp_path).list(b"x")  # type: ignore[arg-type]


# -- file-system conflicts ----------------------------------------------------------------------


def test_object_and_directory_cannot_share_a_name(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/b", b"1")
    with pytest.raises(PermanentStoreError, match="directory"):
        store.put("a", b"2")
    with pytest.raises(PermanentStoreError, match="directory"):
        store.put_if_absent("a", b"2")
    with pytest.raises(ObjectAlreadyExists):
        store.put_if_match("a", b"2", "x")
    with pytest.raises(PermanentStoreError, match="parent"):
        store.put("a/b/c", b"3")
    with pytest.raises(ObjectNotFound):
        store.get("a")
    with pytest.raises(ObjectNotFound):
        store.get_range("a", 0, 1)
    with pytest.raises(ObjectNotFound):
        store.get("a/b/c")
    store.delete("a")  # a directory is not an object: nothing to delete
    store.delete("a/b/c")
    assert [m.key for m in store.list()] == ["a/b"]
    assert _files(tmp_path) == [LOCK_NAME, "a/b"]


# -- data and arguments ------------------------------------------------------------------------


def test_accepts_bytes_like_data(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a", bytearray(b"abc"))  # type: ignore[arg-type]
    store.put("b", memoryview(b"xyz")[1:])  # type: ignore[arg-type]
    assert store.get("a") == b"abc"
    assert store.get("b") == b"yz"
    with pytest.raises(InvalidError):
        store.put("c", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        store.put_if_match("a", b"x", None)  # type: ignore[arg-type]
    assert _files(tmp_path) == [LOCK_NAME, "a", "b"]


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (0, -1), (1.0, 3), (True, 3)])
def test_get_range_rejects_bad_bounds(tmp_path: Path, start: int, end: int) -> None:
    store = LocalStore(tmp_path)
    store.put("k", b"abc")
    with pytest.raises(InvalidError):
        store.get_range("k", start, end)


# -- durability ----------------------------------------------------------------------------------


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_durable_put_fsyncs_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    store.put("d/first", b"x")  # creates d/
    calls = _count_fsyncs(monkeypatch)
    store.put("d/k", b"x")
    assert len(calls) == 2
    store.put_if_absent("d/k2", b"x")
    assert len(calls) == 4
    store.put_if_match("d/k2", b"y", store.head("d/k2").etag or "")
    assert len(calls) == 6
    store.put("new/dir/k", b"x")  # file, new dirs' parents (new/, root), then new/dir/
    assert len(calls) == 10


def test_no_fsync_when_not_durable_or_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_fsyncs(monkeypatch)
    store = LocalStore(tmp_path / "a")
    store.put("k", b"x", durable=False)
    assert calls == []
    fast = LocalStore(tmp_path / "b", fsync=False)
    assert fast.fsync is False
    fast.put("k", b"x")
    fast.put_if_absent("k2", b"x")
    fast.put_if_match("k2", b"y", fast.head("k2").etag or "")
    assert calls == []


# -- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.EIO, TransientStoreError),
        (errno.ENOSPC, TransientStoreError),
        (errno.EAGAIN, TransientStoreError),
        (errno.EINTR, TransientStoreError),
        (errno.EACCES, PermanentStoreError),
        (errno.EPERM, PermanentStoreError),
        (errno.EROFS, PermanentStoreError),
    ],
)
def test_errors_map_to_store_kinds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, kind: type[Exception]
) -> None:
    store = LocalStore(tmp_path)
    store.put("k", b"v")

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(kind) as info:
        store.put("k", b"new")
    assert "key='k'" in str(info.value)
    assert errno.errorcode[code] in str(info.value)
    monkeypatch.undo()
    assert store.get("k") == b"v"
    assert _files(tmp_path) == [LOCK_NAME, "k"], "the temp file was not cleaned up"


def test_read_errors_map_to_store_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.put("k", b"v")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(PermanentStoreError, match="key='k'"):
        store.head("k")
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(PermanentStoreError):
        store.get_range("k", 0, 1)


def test_put_if_absent_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    store = LocalStore(tmp_path)
    store.put_if_absent("k", b"first")
    with pytest.raises(ObjectAlreadyExists):
        store.put_if_absent("k", b"second")
    assert store.get("k") == b"first"
    assert _files(tmp_path) == [LOCK_NAME, "k"]


def test_put_if_absent_other_link_errors_are_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "link", broken)
    store = LocalStore(tmp_path)
    with pytest.raises(TransientStoreError):
        store.put_if_absent("k", b"x")
    assert _files(tmp_path) == []


# -- cross-process atomicity --------------------------------------------------------------------

_CHILD_PRELUDE = """
import sys
from shale.objstore.local import LocalStore
from shale.objstore.protocol import ObjectAlreadyExists
root, me, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = LocalStore(root, fsync=False)
print("ready", flush=True)
sys.stdin.readline()  # wait until every process is ready, then race
"""

_RACE_PUT_IF_ABSENT = _CHILD_PRELUDE + textwrap.dedent(
    """
    won = []
    for i in range(rounds):
        try:
            store.put_if_absent(f"race/{i:04d}", me.encode() * 1000)
            won.append(str(i))
        except ObjectAlreadyExists:
            pass
    print(" ".join(won), flush=True)
    """
)

_RACE_COUNTER = _CHILD_PRELUDE + textwrap.dedent(
    """
    conflicts = 0
    for _ in range(rounds):
        while True:
            etag = store.head("counter").etag  # etag first, then the bytes it guards
            value = int(store.get("counter"))
            try:
                store.put_if_match("counter", str(value + 1).encode(), etag)
                break
            except ObjectAlreadyExists:
                conflicts += 1
    print(conflicts, flush=True)
    """
)


def _race(script: str, root: Path, procs: int, rounds: int) -> list[str]:
    """Run ``procs`` copies of ``script``, start them together, return their last output lines."""
    env = dict(os.environ)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), f"p{i}", str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(procs)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.strip() == "ready", (line, child.stderr.read() if child.stderr else "")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            outputs.append(out.strip())
        return outputs
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_put_if_absent_race_across_processes(tmp_path: Path) -> None:
    procs, rounds = 4, 40
    outputs = _race(_RACE_PUT_IF_ABSENT, tmp_path, procs, rounds)
    winners: dict[int, list[int]] = {}
    for p, out in enumerate(outputs):
        for won in out.split():
            winners.setdefault(int(won), []).append(p)
    assert sorted(winners) == list(range(rounds))
    store = LocalStore(tmp_path)
    for i, who in winners.items():
        assert len(who) == 1, (i, who)
        assert store.get(f"race/{i:04d}") == f"p{who[0]}".encode() * 1000
    assert [m.key for m in store.list()] == [f"race/{i:04d}" for i in range(rounds)]


def test_put_if_match_counter_across_processes(tmp_path: Path) -> None:
    procs, rounds = 4, 25
    LocalStore(tmp_path).put("counter", b"0")
    outputs = _race(_RACE_COUNTER, tmp_path, procs, rounds)
    assert all(out.isdigit() for out in outputs), outputs
    # Every increment is a compare-and-swap: none may be lost, however they interleave.
    assert LocalStore(tmp_path).get("counter") == str(procs * rounds).encode()


def test_list_skips_names_that_are_not_keys(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("d/ok", b"1")
    (tmp_path / "d" / "back\\slash").write_bytes(b"x")
    os.makedirs(os.fsencode(tmp_path / "d") + b"/bad\xff", exist_ok=True)
    with open(os.fsencode(tmp_path / "d") + b"/bad\xff/file", "wb") as f:
        f.write(b"x")
    assert [m.key for m in store.list()] == ["d/ok"]


def test_pytest_plugin_local_store_fixture(local_store: LocalStore, tmp_path: Path) -> None:
    assert local_store.root == str(tmp_path / "store")
    assert local_store.fsync is False
    assert list(local_store.list()) == []
    local_store.put("k", b"v")
    assert local_store.get("k") == b"v"


def test_open_writer_streams_then_publishes(tmp_path: Path) -> None:
    """open_writer: pieces written in several calls, published by commit like put; nothing is
    visible (nor listed) before the commit; abort leaves nothing behind."""
    store = LocalStore(str(tmp_path / "root"))
    w = store.open_writer("a/b/obj", sync_every=100_000)  # fdatasync every 100 kB on the way
    w.write_parts([b"one", b"", b"two"])
    w.write_parts([bytes(range(256)) * 10 for _ in range(2000)])  # more pieces than IOV_MAX
    assert [m.key for m in store.list("")] == []
    w.commit()
    want = b"onetwo" + bytes(range(256)) * 10 * 2000
    assert store.get("a/b/obj") == want and w.size == len(want)
    with pytest.raises(InvalidError, match="already committed"):
        w.write_parts([b"x"])
    w.abort()  # no-op once committed
    aborted = store.open_writer("a/b/other")
    aborted.write_parts([b"partial"])
    aborted.abort()
    aborted.abort()
    assert [m.key for m in store.list("")] == ["a/b/obj"]
    leftovers = [p.name for p in (tmp_path / "root" / "a" / "b").iterdir()]
    assert leftovers == ["obj"]
    # replacing an existing object
    w = store.open_writer("a/b/obj")
    w.write_parts([b"new"])
    w.commit(durable=False)
    assert store.get("a/b/obj") == b"new"


def test_sweep_staging_removes_only_old_staging_files(tmp_path: Path) -> None:
    import os
    import time as _time

    from shale.objstore.local import TEMP_PREFIX, LocalStore

    store = LocalStore(tmp_path)
    store.put("db/compacted/a.sst", b"x")
    old = tmp_path / "db" / "compacted" / f"{TEMP_PREFIX}dead"
    fresh = tmp_path / "db" / "compacted" / f"{TEMP_PREFIX}live"
    other = tmp_path / "other" / f"{TEMP_PREFIX}elsewhere"
    other.parent.mkdir()
    for f in (old, fresh, other):
        f.write_bytes(b"partial")
    past = _time.time() - 7200
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    assert store.sweep_staging("db", older_than_s=3600) == [f"db/compacted/{TEMP_PREFIX}dead"]
    assert not old.exists() and fresh.exists() and other.exists()  # outside the prefix
    assert store.get("db/compacted/a.sst") == b"x"
    assert [m.key for m in store.list("db/")] == ["db/compacted/a.sst"]
    with pytest.raises(InvalidError):
        store.sweep_staging("db", older_than_s=-1)
