"""Read-only access writes nothing; a writer open fences only once it knows it can write.

Covers the read-only open (:class:`shale.DbReader` in its ``follow_latest`` and ``checkpoint``
modes; tests/test_db_reader.py covers the rest), the read-only ``shale`` commands built on it
(``get``, ``scan``, ``manifest show``, ``checkpoint list``), reads of a checkpoint, and the
writability probe of :meth:`shale.Db.open`. Tests run as root, so a read-only directory is
simulated with a ``shale-faults`` store that denies writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import uuid
from typing import Any

import pytest

import shale
from shale import ClosedError, DataError, InvalidError, ShaleError, cli
from shale.batch import WriteBatch
from shale.db import Db
from shale.meta.manifest_store import ManifestStore
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.reader import DbReader
from shale.settings import ReaderOptions, Settings
from shale_faults import FaultRule, FaultyStore

SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    merge_operator="concat",
)
NOFSYNC = ["--store-option", "fsync=false"]
WRITE_OPS = "put,put_if_absent,put_if_match,delete"
#: ``--store-option`` that makes every write of the store fail as "permission denied".
DENY_WRITES = [
    "--store-option",
    "faults=" + json.dumps({"ops": WRITE_OPS, "error": "permanent"}),
]


# -- helpers ---------------------------------------------------------------------------------


def bucket(root: str | pathlib.Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root`` (hidden ones too): ``(size, mtime_ns, sha256)``."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, digest)
    return out


def dirs(root: str | pathlib.Path) -> list[str]:
    return sorted(os.path.relpath(d, root) for d, _, _ in os.walk(root))


def latest(url: str) -> tuple[int, Any]:
    found = ManifestStore(LocalStore(url), "").read_latest()
    assert found is not None
    return found


def make_db(url: str) -> None:
    """A database with rows in L0, rows only in the WAL, a tombstone and merge operands."""
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        batch = WriteBatch()
        for i in range(20):
            batch.put(b"k%02d" % i, b"v%d" % i)
        db.write(batch)
        db.flush(memtable=True)  # in L0
        db.put(b"k03", b"new")  # only in the WAL
        db.delete(b"k04")
        db.merge(b"log", b"a;")
        db.merge(b"log", b"b;")
        db.put(b"wal-only", b"w")


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    for name in list(os.environ):
        if name.upper().startswith("SHALE_") and name.upper() not in {
            n.upper() for n in shale.env.NOT_SETTINGS
        }:
            monkeypatch.delenv(name)
    return Run(capsys)


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "db")


# -- the read-only handle --------------------------------------------------------------------


def test_reader_answers_like_the_writer_and_sees_the_wal(url: str) -> None:
    make_db(url)
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        want_rows = list(db.scan())
        want_rev = list(db.scan(b"k05", b"k15", reverse=True))
        want_kv = db.get_key_value(b"k03")
    after_writer = bucket(url)
    with DbReader.open(url, SETTINGS, mode="follow_latest") as r:
        assert r.get(b"wal-only") == b"w"  # durable in the WAL, not yet in L0
        assert r.get(b"k03") == b"new" and r.get(b"k04") is None
        assert r.get(b"log") == b"a;b;"
        assert list(r.scan()) == want_rows
        assert list(r.scan(b"k05", b"k15", reverse=True)) == want_rev
        assert [k for k, _ in r.scan_prefix(b"k1")] == [b"k%02d" % i for i in range(10, 20)]
        assert r.get_key_value(b"k03") == want_kv
        assert r.get(b"wal-only", durability="remote") == b"w"
        it = r.scan()
        it.seek(b"k10")
        assert next(it)[0] == b"k10"
        with r.snapshot() as snap:
            assert snap.get(b"k03") == b"new"
        assert r.checkpoint is None
        assert r.manifest_id == latest(url)[0]
        assert r.manifest().writer_epoch == latest(url)[1].writer_epoch
        m = r.metrics()
        assert m["last_seq"] == want_kv.seq + 4  # type: ignore[union-attr]
        for name in ("put", "delete", "merge", "write", "flush", "create_checkpoint"):
            assert not hasattr(r, name), name
    assert bucket(url) == after_writer, "the reader wrote to the bucket"
    with pytest.raises(ClosedError):
        r.get(b"k01")
    r.close()  # twice is harmless


def test_reader_on_a_store_that_denies_every_write(tmp_path: pathlib.Path) -> None:
    inner = MemoryStore()
    with Db.open("db", SETTINGS, object_store=inner) as db:
        db.put(b"a", b"1")
        db.flush(memtable=True)
        db.put(b"b", b"2")
    denied = FaultyStore(inner, [FaultRule(ops=WRITE_OPS, error="permanent")])
    with DbReader.open("db", SETTINGS, object_store=denied, mode="follow_latest") as r:
        assert list(r.scan()) == [(b"a", b"1"), (b"b", b"2")]
        r.refresh()
        assert r.get(b"b") == b"2"
    assert denied.injected == 0
    assert not {"put", "put_if_absent", "put_if_match", "delete"} & set(denied.calls)


def test_reader_of_a_missing_database_creates_nothing(tmp_path: pathlib.Path) -> None:
    where = tmp_path / "no" / "such" / "db"
    with pytest.raises(DataError, match="no database at"):
        DbReader.open(str(where), SETTINGS, mode="follow_latest")
    assert not (tmp_path / "no").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no database at"):
        DbReader.open(str(empty), SETTINGS, mode="follow_latest")
    assert list(empty.iterdir()) == []


def test_reader_does_not_fence_a_live_writer_and_refresh_follows_it(url: str) -> None:
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"a", b"1")
        epoch = db.manifest().writer_epoch
        r = DbReader.open(url, SETTINGS, mode="follow_latest")
        assert r.get(b"a") == b"1"
        db.put(b"b", b"2")
        db.flush(memtable=True)
        db.put(b"c", b"3")
        assert r.get(b"b") is None  # a reader is a view as of its open ...
        r.refresh()  # ... until it re-reads the manifest and the WAL
        assert [k for k, _ in r.scan()] == [b"a", b"b", b"c"]
        db.put(b"d", b"4")  # the writer was not fenced
        assert db.close_reason is None
        assert db.refresh_manifest().writer_epoch == epoch
        r.close()


class _GcDuringRead:
    """A store whose first WAL read lets the writer flush L0 and GC delete the WALs below
    the new ``replay_after_wal_id`` -- the race a reader's open must survive."""

    def __init__(self, inner: MemoryStore, db: Db) -> None:
        self.inner, self.db, self.fired = inner, db, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str) -> bytes:
        if "/wal/" in key and not self.fired:
            self.fired = True
            self.db.flush(memtable=True)
            floor = self.db.refresh_manifest().replay_after_wal_id
            for meta in list(self.inner.list("db/wal/")):
                if int(meta.key.rsplit("/", 1)[1].split(".")[0]) < floor:
                    self.inner.delete(meta.key)
        return self.inner.get(key)


def test_reader_open_survives_an_l0_flush_and_wal_gc_meanwhile() -> None:
    inner = MemoryStore()
    with Db.open("db", SETTINGS, object_store=inner) as db:
        for i in range(10):
            db.put(b"k%d" % i, b"v%d" % i)  # ten WAL SSTs, none in L0
        racing = _GcDuringRead(inner, db)
        with DbReader.open("db", SETTINGS, object_store=racing, mode="follow_latest") as r:  # type: ignore[arg-type]
            assert racing.fired
            assert r.manifest().replay_after_wal_id > 0  # it moved to the newer manifest
            assert list(r.scan()) == [(b"k%d" % i, b"v%d" % i) for i in range(10)]
        db.put(b"k0", b"new")
        with DbReader.open("db", SETTINGS, object_store=inner, mode="follow_latest") as r:
            assert r.get(b"k0") == b"new"


def test_reader_snapshot_keeps_its_view_across_refresh(url: str) -> None:
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"k", b"1")
        r = DbReader.open(url, SETTINGS, mode="follow_latest")
        snap = r.snapshot()
        db.put(b"k", b"2")
        db.put(b"j", b"x")
        db.flush(memtable=True)
        r.refresh()
        assert r.get(b"k") == b"2"
        assert snap.get(b"k") == b"1" and list(snap.scan()) == [(b"k", b"1")]
        snap.close()
        r.close()
        with pytest.raises(ClosedError):
            r.snapshot()


def test_reader_engine_refuses_every_write(url: str) -> None:
    make_db(url)
    with DbReader.open(url, SETTINGS, mode="follow_latest") as r:
        # the view is built without a writer, a WAL or a flusher: it has no write path ...
        for name in ("put", "delete", "merge", "write", "flush", "create_checkpoint"):
            assert not hasattr(r, name), name
        # ... and its manifest keeper, the one component that could write, refuses to
        keeper = r._engine.keeper
        for call in (
            lambda: keeper.update(lambda m, _n: m),
            lambda: keeper.refresh(),
        ):
            with pytest.raises(InvalidError, match="read-only"):
                call()
        assert r.get(b"a") is None


def test_reader_of_a_checkpoint_is_frozen(url: str) -> None:
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"k", b"old")
        db.put(b"gone", b"x")
        cp = db.create_checkpoint(name="frozen")
        db.put(b"k", b"new")
        db.delete(b"gone")
        db.flush(memtable=True)
        db.put(b"later", b"y")
    with DbReader.open(url, SETTINGS, checkpoint=cp.id) as r:
        assert r.checkpoint is not None and r.checkpoint.id == cp.id
        assert r.manifest_id == cp.manifest_id
        assert list(r.scan()) == [(b"gone", b"x"), (b"k", b"old")]
        r.refresh()  # a checkpoint does not move
        assert r.get(b"k") == b"old" and r.get(b"later") is None
    with DbReader.open(url, SETTINGS, checkpoint=str(cp.id)) as r:  # a str id works too
        assert r.get(b"k") == b"old"
    with DbReader.open(url, SETTINGS, mode="follow_latest") as r:
        assert list(r.scan()) == [(b"k", b"new"), (b"later", b"y")]
    with pytest.raises(InvalidError, match="unknown checkpoint"):
        DbReader.open(url, SETTINGS, checkpoint=uuid.uuid4())
    with pytest.raises(InvalidError, match="checkpoint"):
        DbReader.open(url, SETTINGS, checkpoint="not-a-uuid")


def test_reader_skip_wal_replay_reads_only_the_manifest(url: str) -> None:
    make_db(url)
    with DbReader.open(
        url, SETTINGS, mode="follow_latest", options=ReaderOptions(skip_wal_replay=True)
    ) as r:
        assert r.get(b"k03") == b"v3" and r.get(b"wal-only") is None


# -- the writer opens only once it knows it can write ----------------------------------------


@pytest.mark.parametrize("prefix", ["wal/", "compacted/", "manifest/", ""])
def test_writer_open_that_cannot_write_changes_nothing(url: str, prefix: str) -> None:
    make_db(url)
    live = Db.open(url, SETTINGS, store_options={"fsync": False})
    live.flush(memtable=True)  # settle: no L0 flush left in the background
    live.put(b"before", b"1")
    before = bucket(url)
    denied = FaultyStore(
        LocalStore(url, fsync=False),
        [FaultRule(ops="put,put_if_absent,put_if_match", prefix=prefix, error="permanent")],
    )
    with pytest.raises(ShaleError):
        Db.open("", SETTINGS, object_store=denied)
    assert bucket(url) == before, "a failed open wrote to the bucket"
    live.put(b"after", b"2")  # the live writer was not fenced
    assert live.close_reason is None
    live.close()
    with DbReader.open(url, SETTINGS, mode="follow_latest") as r:
        assert r.get(b"after") == b"2"


def test_writer_open_of_a_new_database_that_cannot_write_creates_nothing(
    tmp_path: pathlib.Path,
) -> None:
    inner = MemoryStore()
    denied = FaultyStore(
        inner, [FaultRule(ops="put,put_if_absent", prefix="wal/", error="permanent")]
    )
    with pytest.raises(ShaleError):
        Db.open("", SETTINGS, object_store=denied)
    assert list(inner.list("")) == []


def test_writer_open_leaves_no_probe_behind(url: str) -> None:
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"a", b"1")
    names = [os.path.basename(k) for k in bucket(url)]
    assert not [n for n in names if "probe" in n], names


# -- the shale command -----------------------------------------------------------------------


def test_cli_reads_write_nothing(run: Run, url: str) -> None:
    make_db(url)
    before, dirs_before = bucket(url), dirs(url)
    epoch = latest(url)[1].writer_epoch
    assert run("get", url, "wal-only") == (0, "w\n", "")
    assert run("get", url, "k03", "--durability", "remote") == (0, "new\n", "")
    assert run("get", url, "k04")[0] == 1
    code, out, _ = run("scan", url, "--merge-operator", "concat")
    assert code == 0 and "log\ta;b;" in out and "wal-only\tw" in out and "k04" not in out
    code, out, _ = run("scan", url, "--prefix", "k1", "--reverse", "--keys-only")
    assert code == 0 and out.split()[0] == "k19"
    assert json.loads(run("manifest", "show", url)[1])["writer_epoch"] == epoch
    assert run("checkpoint", "list", url)[0] == 0
    assert bucket(url) == before
    assert dirs(url) == dirs_before


def test_cli_reads_without_write_permission(run: Run, url: str) -> None:
    make_db(url)
    before = bucket(url)
    assert run("get", url, "k03", *DENY_WRITES) == (0, "new\n", "")
    assert run("scan", url, "--keys-only", "--prefix", "k0", *DENY_WRITES)[0] == 0
    assert run("manifest", "show", url, *DENY_WRITES)[0] == 0
    assert run("checkpoint", "list", url, *DENY_WRITES)[0] == 0
    code, _, err = run("put", url, "x", "y", *DENY_WRITES)
    assert code == 2 and err.startswith("error: ")
    assert bucket(url) == before  # the failed writer open changed nothing either


def test_cli_reads_do_not_fence_a_live_writer(run: Run, url: str) -> None:
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"a", b"1")
        epoch = db.manifest().writer_epoch
        assert run("get", url, "a") == (0, "1\n", "")
        assert run("scan", url) == (0, "a\t1\n", "")
        db.put(b"b", b"2")
        assert run("get", url, "b") == (0, "2\n", "")
        db.put(b"c", b"3")
        assert db.close_reason is None
        assert db.refresh_manifest().writer_epoch == epoch


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "{url}", "k"],
        ["scan", "{url}"],
        ["flush", "{url}"],
        ["manifest", "show", "{url}"],
        ["checkpoint", "list", "{url}"],
        ["checkpoint", "create", "{url}"],
        ["checkpoint", "create", "{url}", "--flush"],
        ["checkpoint", "delete", "{url}", str(uuid.UUID(int=1))],
    ],
)
def test_cli_mistyped_path_is_an_error_and_creates_nothing(
    run: Run, tmp_path: pathlib.Path, argv: list[str]
) -> None:
    where = str(tmp_path / "typo" / "db")
    code, out, err = run(*[a.format(url=where) for a in argv])
    assert (code, out) == (2, "")
    assert err == f"error: data: no database at {where} (no manifest found)\n"
    assert not (tmp_path / "typo").exists()


def test_cli_reads_a_checkpoint(run: Run, url: str) -> None:
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"k", b"old")
        cp = db.create_checkpoint()
        db.put(b"k", b"new")
        db.put(b"k2", b"x")
    assert run("get", url, "k", "--checkpoint", str(cp.id)) == (0, "old\n", "")
    assert run("get", url, "k2", "--checkpoint", str(cp.id))[0] == 1
    assert run("scan", url, "--checkpoint", str(cp.id)) == (0, "k\told\n", "")
    assert run("get", url, "k") == (0, "new\n", "")
    code, _, err = run("get", url, "k", "--checkpoint", str(uuid.UUID(int=7)))
    assert code == 2 and err.startswith("error: invalid: unknown checkpoint")
    code, _, err = run("scan", url, "--checkpoint", "nope")
    assert code == 2 and err.startswith("error: invalid: not a checkpoint id")


def test_cli_merge_without_operator_suggests_the_flag(run: Run, url: str) -> None:
    assert run("merge", url, "log", "a;", "--merge-operator", "concat", *NOFSYNC)[0] == 0
    for argv in (["get", url, "log"], ["scan", url], ["scan", url, "--keys-only"]):
        code, out, err = run(*argv)
        assert code == 2 and out == ""
        assert err.startswith("error: invalid: merge operator missing")
        assert "--merge-operator" in err, err
    assert run("scan", url, "--merge-operator", "concat") == (0, "log\ta;\n", "")


def test_cli_flush_help_says_it_opens_as_the_writer() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    flush = sub.choices["flush"]  # type: ignore[index]
    assert "writer" in flush.description and "fences" in flush.description
    assert "writer" in parser.format_help().split("flush", 1)[1].split("\n")[0]
