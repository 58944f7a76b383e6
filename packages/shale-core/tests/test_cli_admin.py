"""The Admin-backed ``shale`` commands, ``--json``/``--bytes`` output, and that read-only
commands leave the bucket byte-identical."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import time
from typing import Any

import pytest

import shale
from shale import cli
from shale.admin import Admin
from shale.clock import ManualClock
from shale.db import Db
from shale.meta.seq_tracker import SequenceTracker
from shale.settings import Settings

T0_MS = 1_700_000_000_000


class Run:
    """``run(*argv)`` -> ``(exit code, stdout, stderr)`` of ``shale argv``."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json_lines(self, *argv: str) -> list[Any]:
        code, out, err = self(*argv)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    for name in list(os.environ):
        if name.upper().startswith("SHALE_") and name.upper() not in {
            n.upper() for n in shale.env.NOT_SETTINGS
        }:
            monkeypatch.delenv(name)
    return Run(capsys)


def _settings() -> Settings:
    return Settings(compactor_options=None, garbage_collector_options=None)


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    """A database of 300 keys ``k000``..``k299`` in two L0 SSTs, 3 tracker entries, one
    non-UTF-8 key, written with a manual clock (two minutes between flushes)."""
    path = str(tmp_path / "db")
    clock = ManualClock(T0_MS)
    with Db.open(path, _settings(), clock=clock, store_options={"fsync": False}) as db:
        for i in range(150):
            db.put(b"k%03d" % i, b"value-%d" % i)
        db.flush(memtable=True)
        clock.advance(120_000)
        for i in range(150, 300):
            db.put(b"k%03d" % i, b"value-%d" % i)
        db.put(b"\xff\x00bin", b"\x01\x02")
        db.flush(memtable=True)
        clock.advance(120_000)
    return path


def _digest(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- manifests ---------------------------------------------------------------------------------


def test_manifest_list(run: Run, url: str) -> None:
    rows = run.json_lines("manifest", "list", url, "--json")
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and ids == [v.id for v in Admin(url).list_manifests()]
    assert rows[-1]["l0"] == 2 and rows[0]["l0"] == 0
    assert [r["id"] for r in run.json_lines("manifest", "list", url, "--json", "--from", "2")] == [
        i for i in ids if i >= 2
    ]
    assert [r["id"] for r in run.json_lines("manifest", "list", url, "--json", "--to", "3")] == [
        i for i in ids if i < 3
    ]
    code, out, _ = run("manifest", "list", url)
    assert code == 0 and len(out.splitlines()) == len(ids)
    assert out.splitlines()[-1].startswith(f"{ids[-1]}  writer_epoch=")


def test_manifest_show_json_and_bytes(run: Run, url: str) -> None:
    (doc,) = run.json_lines("manifest", "show", url, "--json")
    assert doc["id"] == Admin(url).read_manifest().id  # type: ignore[union-attr]
    assert {s["first_key"] for s in doc["l0"]} == {"k000", "k150"}
    assert {s["last_key"] for s in doc["l0"]} == {"k149", "\\xff\x00bin"}
    (b64,) = run.json_lines("manifest", "show", url, "--json", "--bytes", "base64")
    assert {base64.b64decode(s["last_key"]) for s in b64["l0"]} == {b"k149", b"\xff\x00bin"}


def test_read_commands_refuse_a_missing_database(run: Run, tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "typo"
    for argv in (
        ("manifest", "list", str(missing)),
        ("manifest", "show", str(missing)),
        ("compactions", "list", str(missing)),
        ("compactions", "show", str(missing)),
        ("checkpoint", "list", str(missing)),
        ("checkpoint", "create", str(missing)),
        ("seq-to-ts", str(missing), "1"),
        ("ts-to-seq", str(missing), "1"),
        ("estimate", str(missing)),
        ("info", str(missing)),
    ):
        code, out, err = run(*argv)
        assert (code, out) == (2, ""), argv
        assert err.startswith("error: data: no database at"), argv
    assert not missing.exists()


# -- compactions ---------------------------------------------------------------------------------


def test_compactions_list_and_show(run: Run, url: str) -> None:
    code, _, err = run("compactions", "show", url)
    assert code == 1 and "no .compactions file" in err
    assert run("compactions", "list", url)[:2] == (0, "")
    pytest.importorskip("shale_compactor")
    submitted = Admin(url).submit_compaction("full")
    versions = run.json_lines("compactions", "list", url, "--json")
    assert versions[-1]["compactions"][0]["id"] == str(submitted.id)
    assert versions[-1]["compactions"][0]["status"] == "submitted"
    (latest,) = run.json_lines("compactions", "show", url, "--json")
    assert latest == versions[-1]
    (one,) = run.json_lines("compactions", "show", url, str(submitted.id), "--json")
    assert one["id"] == str(submitted.id) and len(one["l0_view_ids"]) == 2
    code, _, err = run("compactions", "show", url, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert code == 1 and err.startswith("not found")
    code, _, err = run("compactions", "show", url, "--id", "999")
    assert code == 2 and err.startswith("error: data:")
    code, _, err = run("compactions", "show", url, "nope")
    assert code == 2 and "ULID" in err
    code, out, _ = run("compactions", "list", url)
    assert out.splitlines()[-1].endswith("compactions=1  submitted")


# -- checkpoints ---------------------------------------------------------------------------------


def test_checkpoint_create_source_and_refresh(run: Run, url: str) -> None:
    (first,) = run.json_lines("checkpoint", "create", url, "--name", "a", "--json")
    (second,) = run.json_lines("checkpoint", "create", url, "--json")
    assert second["manifest_id"] == first["manifest_id"] + 1
    (copy,) = run.json_lines("checkpoint", "create", url, "--source", first["id"], "--json")
    assert copy["manifest_id"] == first["manifest_id"] and copy["id"] != first["id"]
    code, _, err = run("checkpoint", "create", url, "--source", first["id"], "--flush")
    assert code == 2 and "exclude" in err

    (refreshed,) = run.json_lines(
        "checkpoint", "refresh", url, first["id"], "--lifetime", "1h", "--json"
    )
    assert refreshed["id"] == first["id"] and refreshed["expire_time"] is not None
    cp = next(c for c in Admin(url).list_checkpoints() if str(c.id) == first["id"])
    assert cp.expire_time_s is not None and abs(cp.expire_time_s - time.time() - 3600) < 60
    code, out, _ = run("checkpoint", "refresh", url, first["id"])
    assert code == 0 and "expires=never" in out
    code, _, err = run("checkpoint", "refresh", url, "nope")
    assert code == 2 and err.startswith("error: invalid: not a checkpoint id")
    listed = json.loads(run("checkpoint", "list", url, "--json")[1])
    assert {c["id"] for c in listed} == {first["id"], second["id"], copy["id"]}


# -- sequence numbers and time -------------------------------------------------------------------


def test_seq_to_ts_and_ts_to_seq(run: Run, url: str) -> None:
    latest = Admin(url).read_manifest()
    assert latest is not None
    tracker = SequenceTracker.decode(latest.manifest.sequence_tracker)
    assert len(tracker) >= 2
    seq, ts = tracker.seqs[-1], tracker.timestamps[-1]
    (doc,) = run.json_lines("seq-to-ts", url, str(seq), "--json")
    assert doc["timestamp"] == ts and doc["time"].endswith("+00:00")
    code, out, _ = run("seq-to-ts", url, str(seq))
    assert code == 0 and out.split("\t")[0] == str(ts)
    code, out, _ = run("seq-to-ts", url, str(seq + 1), "--round-up")
    assert (code, out) == (1, "")
    (doc,) = run.json_lines("ts-to-seq", url, str(ts), "--json")
    assert doc == {"timestamp": ts, "seq": seq}
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    assert run("ts-to-seq", url, iso)[:2] == (0, f"{seq}\n")
    code, out, _ = run("ts-to-seq", url, str(tracker.timestamps[0] - 1))
    assert (code, out) == (1, "")
    with pytest.raises(SystemExit):
        run("ts-to-seq", url, "yesterday")


# -- estimate ----------------------------------------------------------------------------------


def test_estimate(run: Run, url: str) -> None:
    (whole,) = run.json_lines("estimate", url, "--json")
    assert whole["puts"] == 301 and whole["ssts"] == 2
    (pre,) = run.json_lines("estimate", url, "--prefix", "k2", "--json")
    assert 100 <= pre["puts"] < 301 and pre["ssts"] == 1
    (hexed,) = run.json_lines("estimate", url, "--hex", "--start", "ff", "--json")
    assert hexed["puts"] >= 1 and hexed["ssts"] == 1
    code, out, _ = run("estimate", url, "--end", "a")
    assert code == 0 and "entries\t0" in out


# -- info URL ------------------------------------------------------------------------------------


def test_info_url(run: Run, url: str) -> None:
    code, out, _ = run("info", url)
    assert code == 0 and out.startswith(f"database {url}") and "301 puts" in out
    doc = json.loads(run("info", url, "--json")[1])
    assert doc["manifest"]["l0"] == 2 and doc["estimate"]["puts"] == 301
    assert doc["compactions_id"] is None and doc["checkpoints"] == []
    assert run("info")[0] == 0  # without a URL: the installation


# -- get and scan output -------------------------------------------------------------------------


def test_get_and_scan_json_and_bytes(run: Run, url: str) -> None:
    assert run.json_lines("get", url, "k001", "--json") == [{"key": "k001", "value": "value-1"}]
    code, out, _ = run("get", url, "nope", "--json")
    assert code == 1 and json.loads(out) == {"key": "nope", "value": None}
    rows = run.json_lines("scan", url, "--prefix", "k00", "--json", "--bytes", "base64")
    assert [base64.b64decode(r["key"]) for r in rows] == [b"k%03d" % i for i in range(10)]
    assert base64.b64decode(rows[3]["value"]) == b"value-3"
    rows = run.json_lines("scan", url, "--start", "k299", "--json", "--bytes", "hex")
    assert rows == [
        {"key": b"k299".hex(), "value": b"value-299".hex()},
        {"key": "ff0062696e", "value": "0102"},
    ]
    rows = run.json_lines("scan", url, "--start", "k299", "--json", "--keys-only")
    assert rows == [{"key": "k299"}, {"key": "\\xff\x00bin"}]  # NUL is UTF-8
    code, out, _ = run("scan", url, "--start", "k299", "--bytes", "base64")
    assert out.splitlines()[0] == "azI5OQ==\tdmFsdWUtMjk5"


# -- options shared by every command -------------------------------------------------------------


def test_verbose_after_the_subcommand(run: Run, url: str) -> None:
    code, _, err = run("estimate", url, "-v")
    assert code == 0
    code2, _, err2 = run("-v", "checkpoint", "create", url, "-v")
    assert code2 == 0 and "DEBUG" in err2  # -v twice (before and after): debug logging
    assert "DEBUG" not in err


def test_help_documents_exit_codes(run: Run) -> None:
    for argv in (("--help",), ("get", "--help"), ("manifest", "list", "--help")):
        with pytest.raises(SystemExit) as exc:
            run(*argv)
        assert exc.value.code == 0
        out = run.capsys.readouterr().out
        assert "exit status" in out and "1" in out and "2" in out


def test_read_only_commands_leave_the_bucket_byte_identical(
    run: Run, url: str, tmp_path: pathlib.Path
) -> None:
    admin = Admin(url)
    cp = admin.create_checkpoint(name="pin")
    compaction_id = None
    if _has("shale_compactor"):
        compaction_id = str(admin.submit_compaction("full").id)
    latest = admin.read_manifest()
    assert latest is not None
    root = pathlib.Path(url)
    before = _digest(root)
    read_only: list[tuple[str, ...]] = [
        ("get", url, "k001"),
        ("get", url, "k001", "--checkpoint", str(cp.id), "--json"),
        ("scan", url, "--json"),
        ("scan", url, "--reverse", "--limit", "3"),
        ("info", url),
        ("info", url, "--json"),
        ("manifest", "show", url),
        ("manifest", "show", url, "--id", "1", "--json"),
        ("manifest", "list", url, "--json"),
        ("compactions", "list", url),
        ("compactions", "show", url, "--json"),
        ("checkpoint", "list", url, "--json"),
        ("seq-to-ts", url, "1", "--round-up"),
        ("ts-to-seq", url, str(T0_MS // 1000)),
        ("estimate", url, "--prefix", "k1"),
        ("estimate", url, "--checkpoint", str(cp.id), "--json"),
    ]
    if compaction_id is not None:
        read_only += [
            ("compactions", "show", url, compaction_id),
            ("compactor", "status", url),
            ("compactor", "status", url, "--json"),
        ]
    for argv in read_only:
        code, _, err = run(*argv)
        assert code in (0, 1), (argv, err)
        assert _digest(root) == before, argv


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
