"""The ``shale`` command (run in-process through ``main``) and real subprocesses."""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from typing import Any

import pytest

import shale
from shale import cli
from shale.batch import WriteBatch
from shale.db import Db
from shale.plugins import get_host
from shale.settings import Settings

NOFSYNC = ["--store-option", "fsync=false"]


class Run:
    """``run(*argv)`` -> ``(exit code, stdout, stderr)`` of ``shale argv``."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    for name in list(__import__("os").environ):
        if name.upper().startswith("SHALE_") and name.upper() not in {
            n.upper() for n in shale.env.NOT_SETTINGS
        }:
            monkeypatch.delenv(name)
    return Run(capsys)


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "db")


def put(run: Run, url: str, key: str, value: str, *extra: str) -> None:
    code, out, err = run("put", url, key, value, *NOFSYNC, *extra)
    assert code == 0, err
    assert out.startswith("seq=")


# -- info and parser -------------------------------------------------------------------------


def test_info_still_works(run: Run) -> None:
    code, out, _ = run("info")
    assert code == 0
    assert out.startswith(f"shale {shale.__version__}")
    assert "accelerators:" in out and "shale.local" in out


def test_no_command_prints_help(run: Run) -> None:
    code, out, _ = run()
    assert code == 2 and "COMMAND" in out


def test_usage_errors_exit_2(run: Run, url: str) -> None:
    with pytest.raises(SystemExit) as exc:
        run("put", url, "only-key")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        run("put", url, "k", "v", "--ttl", "0")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        run("manifest")  # a sub-command is required
    assert exc.value.code == 2


# -- put / get / delete / merge --------------------------------------------------------------


def test_put_get_delete(run: Run, url: str) -> None:
    put(run, url, "hello", "wörld")
    code, out, _ = run("get", url, "hello")
    assert (code, out) == (0, "wörld\n")
    code, out, _ = run("put", url, "hello", "again", *NOFSYNC)
    seq = int(out.strip().split("=")[1])
    assert code == 0 and seq >= 2
    code, out, _ = run("delete", url, "hello", *NOFSYNC)
    assert code == 0 and int(out.strip().split("=")[1]) > seq
    code, out, err = run("get", url, "hello")
    assert (code, out) == (1, "")
    assert "not found" in err
    # the data really is in the database
    with Db.open(url, Settings(compactor_options=None, garbage_collector_options=None)) as db:
        assert db.get(b"hello") is None


def test_get_missing_key_exits_1(run: Run, url: str) -> None:
    put(run, url, "a", "1")
    code, out, err = run("get", url, "b")
    assert code == 1 and out == "" and "not found: b" in err


def test_hex_keys_and_values(run: Run, url: str) -> None:
    put(run, url, "00ff10", "ff41fe00", "--hex")
    code, out, _ = run("get", url, "00ff10", "--hex")
    assert (code, out) == (0, "ff41fe00\n")
    code, out, _ = run("get", url, "00FF10", "--hex")  # case-insensitive hex
    assert out == "ff41fe00\n"
    code, out, _ = run("get", url, "\x00\udcff\x10")  # text mode: surrogateescape round trip
    assert code == 0 and out == "\\xffA\\xfe\x00\n"  # non-UTF-8 shown as \xNN
    code, _, err = run("get", url, "zz", "--hex")
    assert code == 2 and err.startswith("error: invalid: key is not valid hex")


def test_ttl_and_include_expired(run: Run, url: str) -> None:
    put(run, url, "t", "short-lived", "--ttl", "30")
    time.sleep(0.05)
    code, _, _ = run("get", url, "t")
    assert code == 1
    code, out, _ = run("get", url, "t", "--include-expired")
    assert (code, out) == (0, "short-lived\n")


def test_durability_remote(run: Run, url: str) -> None:
    put(run, url, "k", "v")
    code, out, _ = run("get", url, "k", "--durability", "remote")
    assert (code, out) == (0, "v\n")


def test_merge(run: Run, url: str) -> None:
    for part in ("a", "b", "c"):
        code, _, err = run("merge", url, "m", part, "--merge-operator", "concat", *NOFSYNC)
        assert code == 0, err
    code, out, _ = run("get", url, "m", "--merge-operator", "concat")
    assert out == "abc\n"
    code, _, err = run("get", url, "m")  # operands but no operator
    assert code == 2 and err.startswith("error: invalid: merge operator missing")
    assert "pass --merge-operator NAME" in err
    code, _, err = run("merge", url, "m", "d", *NOFSYNC)
    assert code == 2 and "no merge operator" in err


def test_merge_operator_from_env(run: Run, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHALE_MERGE_OPERATOR", "concat")
    run("merge", url, "m", "x", *NOFSYNC)
    run("merge", url, "m", "y", *NOFSYNC)
    assert run("get", url, "m") == (0, "xy\n", "")


# -- scan --------------------------------------------------------------------------------------


@pytest.fixture
def filled(url: str) -> str:
    settings = Settings(compactor_options=None, garbage_collector_options=None)
    with Db.open(url, settings, store_options={"fsync": False}) as db:
        batch = WriteBatch()
        for i in range(30):
            batch.put(b"k%02d" % i, b"v%d" % i)
        batch.put(b"other", b"o")
        db.write(batch)
        db.flush(memtable=True)  # half in L0, half in the WAL
        db.delete(b"k05")
        db.put(b"k06", b"new")
    return url


def keys_of(out: str) -> list[str]:
    return [line.split("\t")[0] for line in out.splitlines()]


def test_scan_variants(run: Run, filled: str) -> None:
    code, out, _ = run("scan", filled)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 30 and lines[0] == "k00\tv0" and lines[-1] == "other\to"
    assert "k05" not in keys_of(out) and "k06\tnew" in lines
    out = run("scan", filled, "--start", "k10", "--end", "k13")[1]
    assert keys_of(out) == ["k10", "k11", "k12"]
    assert keys_of(run("scan", filled, "--prefix", "k2")[1]) == [f"k2{i}" for i in range(10)]
    assert keys_of(run("scan", filled, "--reverse", "--limit", "3")[1]) == ["other", "k29", "k28"]
    # prefix and range together: their intersection
    out = run("scan", filled, "--prefix", "k1", "--start", "k17")[1]
    assert keys_of(out) == ["k17", "k18", "k19"]
    assert run("scan", filled, "--prefix", "k1", "--start", "k3")[:2] == (0, "")
    assert run("scan", filled, "--limit", "0")[:2] == (0, "")
    code, out, _ = run("scan", filled, "--keys-only", "--prefix", "6b32", "--hex")
    assert out.split() == [(b"k2%d" % i).hex() for i in range(10)]
    code, out, _ = run("scan", filled, "--prefix", "6b3036", "--hex")
    assert out == "6b3036\t6e6577\n"  # k06 -> new
    assert run("scan", filled, "--prefix", "6b3035", "--hex")[:2] == (0, "")  # k05 deleted


def test_scan_inverted_range(run: Run, filled: str) -> None:
    code, out, err = run("scan", filled, "--start", "k2", "--end", "k1")
    assert code == 2 and out == "" and err.startswith("error: invalid: scan range is inverted")


def test_scan_helpers() -> None:
    assert cli.scan_bounds(None, None, b"ab") == (b"ab", b"ac")
    assert cli.scan_bounds(b"a", b"z", b"m\xff") == (b"m\xff", b"n")
    assert cli.scan_bounds(None, b"b", b"\xff") is None
    assert cli.scan_bounds(None, None, b"\xff\xff") == (b"\xff\xff", None)
    assert cli.scan_bounds(b"q", None, b"a") is None
    assert cli.scan_bounds(None, None, None) == (None, None)


# -- read-only commands on a missing database ---------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "{url}", "k"],
        ["scan", "{url}"],
        ["flush", "{url}"],
        ["manifest", "show", "{url}"],
        ["checkpoint", "list", "{url}"],
        ["checkpoint", "create", "{url}"],
        ["checkpoint", "delete", "{url}", str(uuid.UUID(int=1))],
    ],
)
def test_read_commands_need_a_database(run: Run, url: str, argv: list[str]) -> None:
    code, out, err = run(*[a.format(url=url) for a in argv])
    assert code == 2 and out == ""
    assert err == f"error: data: no database at {url} (no manifest found)\n"
    assert not pathlib.Path(url).exists(), "a read-only command created the directory"


# -- flush and manifest ------------------------------------------------------------------------


def test_flush_and_manifest_show(run: Run, url: str) -> None:
    put(run, url, "b", "2")
    put(run, url, "a", "1")
    summary = json.loads(run("manifest", "show", url)[1])
    assert summary["sorted_runs"] == [] and summary["checkpoints"] == []
    assert summary["writer_epoch"] >= 2
    code, out, _ = run("flush", url, "--memtable", *NOFSYNC)
    assert code == 0 and "l0_ssts=" in out
    code, out, _ = run("manifest", "show", url)
    summary = json.loads(out)
    assert f"l0_ssts={len(summary['l0'])}" in run("flush", url, *NOFSYNC)[1]
    assert set(summary) >= {
        "id",
        "writer_epoch",
        "compactor_epoch",
        "replay_after_wal_id",
        "wal_id_last_seen",
        "last_l0_seq",
        "l0",
        "sorted_runs",
        "checkpoints",
    }
    assert summary["last_l0_seq"] == 2 and summary["replay_after_wal_id"] >= 1
    l0 = summary["l0"]  # the replay on each open may have flushed "b" alone already
    assert min(s["first_key"] for s in l0) == "a" and max(s["last_key"] for s in l0) == "b"
    assert all(len(s["id"]) == 26 for s in l0)
    hexed = json.loads(run("manifest", "show", url, "--hex")[1])
    assert {s["first_key"] for s in hexed["l0"]} <= {"61", "62"}
    first = json.loads(run("manifest", "show", url, "--id", "1")[1])
    assert first["id"] == 1 and first["writer_epoch"] == 0
    code, _, err = run("manifest", "show", url, "--id", "999")
    assert code == 2 and err.startswith("error: data:")
    # nothing in the WAL: a plain flush succeeds too
    assert run("flush", url, *NOFSYNC)[0] == 0


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoints(run: Run, url: str) -> None:
    put(run, url, "k", "v")
    code, out, _ = run("checkpoint", "create", url, "--name", "nightly", "--lifetime", "1h")
    assert code == 0
    cid, manifest = out.split()
    uuid.UUID(cid)
    code, out, _ = run("checkpoint", "create", url)
    cid2 = out.split()[0]
    code, out, _ = run("checkpoint", "create", url, "--flush", "--lifetime", "90", *NOFSYNC)
    cid3 = out.split()[0]
    listed = json.loads(run("checkpoint", "list", url, "--json")[1])
    assert [c["id"] for c in listed] == [cid, cid2, cid3]
    assert listed[0]["name"] == "nightly" and listed[0]["expire_time"] is not None
    assert listed[1]["expire_time"] is None and listed[1]["name"] is None
    assert listed[0]["manifest_id"] == int(manifest.split("=")[1])
    code, out, _ = run("checkpoint", "list", url, "--name", "nightly")
    assert code == 0 and out.count("\n") == 1 and cid in out and "name=nightly" in out
    assert "expires=never" in run("checkpoint", "list", url)[1]
    summary = json.loads(run("manifest", "show", url)[1])
    assert [c["id"] for c in summary["checkpoints"]] == [cid, cid2, cid3]
    # the flushed checkpoint pins an L0 SST holding the key
    assert summary["l0"] and summary["l0"][0]["first_key"] == "k"
    assert run("checkpoint", "delete", url, cid)[:2] == (0, f"deleted {cid}\n")
    listed = json.loads(run("checkpoint", "list", url, "--json")[1])
    assert [c["id"] for c in listed] == [cid2, cid3]
    code, _, err = run("checkpoint", "delete", url, cid)
    assert code == 2 and err.startswith("error: invalid: unknown checkpoint")
    code, _, err = run("checkpoint", "delete", url, "not-a-uuid")
    assert code == 2 and err.startswith("error: invalid: not a checkpoint id")
    code, _, err = run("checkpoint", "create", url, "--lifetime", "soon")
    assert code == 2 and err.startswith("error: invalid:")


def test_detached_checkpoint_does_not_fence_the_writer(run: Run, url: str) -> None:
    settings = Settings(
        compactor_options=None, garbage_collector_options=None, manifest_poll_interval=0.05
    )
    with Db.open(url, settings, store_options={"fsync": False}) as db:
        db.put(b"a", b"1")
        code, _, _ = run("checkpoint", "create", url, "--name", "side")
        assert code == 0
        db.put(b"b", b"2")
        db.flush(memtable=True)  # a manifest update after the CLI's: merged, not fenced
        assert db.close_reason is None
        assert [c.name for c in db.list_checkpoints()] == ["side"]


# -- settings ----------------------------------------------------------------------------------


def test_cli_settings_layers(tmp_path: pathlib.Path) -> None:
    s = cli.cli_settings(environ={})
    assert s.compactor_options is None and s.garbage_collector_options is None
    f = tmp_path / "shale.json"
    f.write_text(
        json.dumps({"compactor_options": {"poll_interval": "2s"}, "flush_interval": "50ms"})
    )
    s = cli.cli_settings(str(f), environ={"SHALE_FLUSH_INTERVAL": "20ms"}, merge_operator="counter")
    assert s.compactor_options is not None and s.compactor_options.poll_interval == 2.0
    assert s.garbage_collector_options is None
    assert s.flush_interval == 0.02 and s.merge_operator == "counter"


def test_bad_settings_are_one_line_errors(
    run: Run, url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("flush_interval = 'soon'\n")
    code, _, err = run("put", url, "k", "v", "--settings", str(bad))
    assert code == 2 and err.startswith("error: invalid: invalid setting:")
    assert err.count("\n") == 1
    good = tmp_path / "good.toml"
    good.write_text("flush_interval = '10ms'\n")
    assert run("put", url, "k", "v", "--settings", str(good), *NOFSYNC)[0] == 0
    monkeypatch.setenv("SHALE_FLUSH_INTERVL", "1s")
    code, _, err = run("get", url, "k")
    assert code == 2 and "did you mean" in err
    monkeypatch.delenv("SHALE_FLUSH_INTERVL")
    code, _, err = run("get", url, "k", "--store-option", "colour=blue")
    assert code == 2 and err.startswith("error: invalid: unknown option for the local store")
    code, _, err = run("get", url, "k", "--store-option", "novalue")
    assert code == 2 and "NAME=VALUE" in err


def test_verbose_logs_to_stderr(run: Run, url: str) -> None:
    code, _, err = run("-v", "put", url, "k", "v", *NOFSYNC)
    assert code == 0 and "opened shale database" in err
    code, _, err = run("put", url, "k", "v", *NOFSYNC)
    assert "opened shale database" not in err  # the handler was removed again


def test_verbose_covers_every_loaded_plugins_package(run: Run, url: str) -> None:
    """``-v`` shows the records of the packages plugins come from, not only ``shale``'s."""
    from shale.cli.options import logger_names

    host = get_host()
    plugin = HelloPlugin()
    host.register(plugin, name="test-hello")
    try:
        names = logger_names()
        assert "shale" in names and HelloPlugin.__module__.split(".")[0] in names
        for name in host.plugin_names():  # every registered plugin's top-level package
            obj = host.manager.get_plugin(name)
            module = getattr(obj, "__name__", None) or type(obj).__module__
            assert module.split(".")[0] in names
    finally:
        host.unregister(plugin)


# -- plugins' subcommands ----------------------------------------------------------------------


class HelloPlugin:
    @shale.hookimpl
    def shale_cli(self, subparsers: Any) -> None:
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--fail", action="store_true")
        p.set_defaults(func=self.hello)

    @staticmethod
    def hello(args: Any) -> int:
        if args.fail:
            raise shale.UnavailableError("no greeting today", why="test")
        print("hello from a plugin")
        return 0


def test_plugin_subcommands_keep_working(run: Run) -> None:
    host = get_host()
    plugin = HelloPlugin()
    host.register(plugin, name="test-hello")
    try:
        assert run("hello") == (0, "hello from a plugin\n", "")
        code, _, err = run("hello", "--fail")
        assert code == 2 and err == "error: unavailable: no greeting today (why='test')\n"
        assert run("info")[0] == 0
    finally:
        host.unregister(plugin)


# -- regression: an engine bug found while writing the CLI ------------------------------------


def test_delete_then_merge_in_one_batch(tmp_path: pathlib.Path) -> None:
    settings = Settings(
        compactor_options=None, garbage_collector_options=None, merge_operator="concat"
    )
    with Db.open(str(tmp_path / "db"), settings, store_options={"fsync": False}) as db:
        db.put(b"k", b"old")
        db.write(WriteBatch().delete(b"k").merge(b"k", b"x"))
        assert db.get(b"k") == b"x"  # was b"oldx": the delete was lost
