"""``shale dump`` / ``shale load`` and the dump format (in-process; real processes, a live
writer and ``kill -9`` are in ``tests/test_dump_processes.py``)."""

from __future__ import annotations

import io
import json
import os
import pathlib
import random
import time
from typing import Any

import pytest

import shale
from shale import cli
from shale.batch import WriteBatch
from shale.cli import dump as dump_mod
from shale.cli.dumpfile import (
    VERSION,
    DumpFormatError,
    DumpReader,
    DumpWriter,
    Header,
    decode_bytes,
    encode_bytes,
)
from shale.db import Db
from shale.reader import DbReader
from shale.settings import Settings

NOFSYNC = ["--store-option", "fsync=false"]
SETTINGS = Settings(compactor_options=None, garbage_collector_options=None, merge_operator="concat")
BIG = bytes(random.Random(7).randrange(256) for _ in range(300_000))


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in list(os.environ):
        if name.upper().startswith("SHALE_") and name.upper() not in {
            n.upper() for n in shale.env.NOT_SETTINGS
        }:
            monkeypatch.delenv(name)

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def contents(url: str, **kw: Any) -> list[tuple[bytes, bytes, int | None]]:
    """Every live key of ``url`` with its value and expire_ts (read-only)."""
    with DbReader.open(url, SETTINGS, mode="follow_latest", store_options={"fsync": False}) as db:
        out = []
        for key, value in db.scan(**kw):
            kv = db.get_key_value(key)
            assert kv is not None and kv.value == value
            out.append((key, value, kv.expire_ts))
        return out


def make_source(url: str, n: int = 0) -> dict[bytes, bytes]:
    """A source with binary keys, an empty value, a TTL, a deleted key, a merged key, a large
    value and ``n`` plain rows; returns the model of its live values."""
    model: dict[bytes, bytes] = {}
    with Db.open(url, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"\x00\xff\x80bin", b"\x00\x01\xfe")
        db.put(b"empty", b"")
        db.put(b"ttl", b"expires later", ttl=3_600_000)
        db.put(b"gone", b"x")
        db.delete(b"gone")
        db.merge(b"merged", b"a;")
        db.merge(b"merged", b"b;")
        db.put(b"big", BIG)
        db.put(b"back\\slash", "ünïcode\n".encode())
        for i in range(0, n, 500):
            wb = WriteBatch()
            for j in range(i, min(n, i + 500)):
                wb.put(b"row-%06d" % j, b"v%d" % j)
                model[b"row-%06d" % j] = b"v%d" % j
            db.write(wb)
        db.flush(memtable=True)  # some rows in L0, some in the WAL below
        db.merge(b"merged", b"c;")
    model.update(
        {
            b"\x00\xff\x80bin": b"\x00\x01\xfe",
            b"empty": b"",
            b"ttl": b"expires later",
            b"merged": b"a;b;c;",
            b"big": BIG,
            b"back\\slash": "ünïcode\n".encode(),
        }
    )
    return model


# -- the format ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["base64", "escaped"])
def test_every_byte_string_round_trips(encoding: str) -> None:
    rnd = random.Random(1)
    samples = [b"", bytes(range(256)), b"\\", b"\\x41", b"\\\\xff", "é€😀".encode()]
    samples += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(40))) for _ in range(500)]
    for data in samples:
        text = encode_bytes(data, encoding)
        assert json.loads(json.dumps(text)) == text
        assert decode_bytes(text, encoding) == data, (data, text)


def test_escaped_text_is_readable() -> None:
    assert encode_bytes(b"user:1", "escaped") == "user:1"
    assert encode_bytes("é".encode(), "escaped") == "é"
    assert encode_bytes(b"a\\b\xff", "escaped") == "a\\\\b\\xff"


@pytest.mark.parametrize(
    "text,encoding",
    [
        ("a\\q", "escaped"),
        ("tail\\", "escaped"),
        ("\\x4", "escaped"),
        ("@@@", "base64"),
        ("YQ", "base64"),
        ("\udcff", "escaped"),
    ],
)
def test_bad_encoded_bytes_are_refused(text: str, encoding: str) -> None:
    with pytest.raises(ValueError):
        decode_bytes(text, encoding)


def test_writer_and_reader_agree() -> None:
    buf = io.BytesIO()
    w = DumpWriter(buf, Header("src", "escaped", last_seq=9, start=b"a", end=b"z"))
    w.row(b"b", b"1")
    w.row(b"c", b"", 123)
    with pytest.raises(shale.InvalidError):
        w.row(b"c", b"again")
    w.finish()
    r = DumpReader(io.BytesIO(buf.getvalue()))
    assert (r.header.version, r.header.last_seq, r.header.start, r.header.end) == (
        VERSION,
        9,
        b"a",
        b"z",
    )
    assert [tuple(row) for row in r] == [(b"b", b"1", None), (b"c", b"", 123)]
    assert r.offset == len(buf.getvalue())


def test_unknown_members_are_ignored() -> None:
    """Later versions may add members: a reader of this version skips what it does not know."""
    lines = [
        {"format": "shale-dump", "version": 1, "encoding": "base64", "source": "s", "new": 1},
        {"key": "YQ==", "value": "", "extra": [1, 2]},
        {"end": True, "rows": 1, "digest": "x"},
    ]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    assert [tuple(r) for r in DumpReader(io.BytesIO(data))] == [(b"a", b"", None)]


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("escape", [False, True])
def test_round_trip(run: Any, tmp_path: pathlib.Path, escape: bool) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    model = make_source(src, n=2_500)
    dump_file = str(tmp_path / "d.jsonl")
    args = ["dump", src, "-o", dump_file, "--merge-operator", "concat", *NOFSYNC]
    code, out, err = run(*args, *(["--escape"] if escape else []))
    assert code == 0, err
    assert json.loads(out)["rows"] == len(model)
    lines = pathlib.Path(dump_file).read_text().splitlines()
    header = json.loads(lines[0])
    assert header["encoding"] == ("escaped" if escape else "base64")
    assert header["last_seq"] > 0 and json.loads(lines[-1]) == {"end": True, "rows": len(model)}

    code, out, err = run("load", dst, "-i", dump_file, "--batch-rows", "100", *NOFSYNC)
    assert code == 0, err
    stats = json.loads(out)
    assert stats["written"] == len(model) and stats["rows"] == len(model)
    # 2,506 rows in batches of 100, the large value's batch cut early by --batch-bytes? no:
    # 300 kB < 4 MiB, so exactly ceil(2506 / 100) batches
    assert stats["batches"] == -(-len(model) // 100)
    got = contents(dst)
    want = contents(src)
    assert got == want
    assert {k: v for k, v, _ in got} == model  # tombstoned key absent, merge resolved
    ttl = dict((k, x) for k, _, x in got)
    assert ttl[b"ttl"] is not None and ttl[b"empty"] is None


def test_batch_bytes_cuts_batches(run: Any, tmp_path: pathlib.Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    with Db.open(src, SETTINGS, store_options={"fsync": False}) as db:
        for i in range(10):
            db.put(b"k%d" % i, b"x" * 1000)
    f = str(tmp_path / "d.jsonl")
    assert run("dump", src, "-o", f, *NOFSYNC)[0] == 0
    code, out, err = run("load", dst, "-i", f, "--batch-bytes", "2500", *NOFSYNC)
    assert code == 0, err
    assert json.loads(out)["batches"] == 4  # 3 rows (3,004 bytes) reach 2,500: 3+3+3+1
    assert len(contents(dst)) == 10


def test_rows_keep_expiry_and_expired_rows_are_skipped(run: Any, tmp_path: pathlib.Path) -> None:
    now = int(time.time() * 1000)
    f = tmp_path / "d.jsonl"
    with f.open("wb") as out:
        w = DumpWriter(out, Header("handmade"))
        w.row(b"a-expired", b"old", now - 1000)
        w.row(b"b-later", b"new", now + 3_600_000)
        w.row(b"c-never", b"forever")
        w.finish()
    # the target's default_ttl must not give the row without expiry one
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"default_ttl": 1000}))
    dst = str(tmp_path / "dst")
    code, out, err = run("load", dst, "-i", str(f), "--settings", str(settings), *NOFSYNC)
    assert code == 0, err
    assert json.loads(out)["skipped_expired"] == 1
    assert contents(dst) == [(b"b-later", b"new", now + 3_600_000), (b"c-never", b"forever", None)]

    kept = str(tmp_path / "kept")
    code, out, err = run("load", kept, "-i", str(f), "--keep-expired", *NOFSYNC)
    assert code == 0 and json.loads(out)["written"] == 3
    assert len(contents(kept)) == 2  # written, but past its TTL
    with DbReader.open(kept, SETTINGS, mode="follow_latest") as db:
        kv = db.get_key_value(b"a-expired", include_expired=True)
        assert kv is not None and kv.expire_ts == now - 1000


def test_dump_a_prefix_and_a_checkpoint(run: Any, tmp_path: pathlib.Path) -> None:
    src = str(tmp_path / "src")
    with Db.open(src, SETTINGS, store_options={"fsync": False}) as db:
        for k in (b"a:1", b"user:1", b"user:2", b"v:1"):
            db.put(k, k)
    code, out, _ = run("checkpoint", "create", src, "--flush")
    cp = out.split()[0]
    with Db.open(src, SETTINGS, store_options={"fsync": False}) as db:
        db.put(b"user:3", b"later")
    f = str(tmp_path / "d.jsonl")
    code, _, err = run("dump", src, "-o", f, "--prefix", "user:", "--checkpoint", cp)
    assert code == 0, err
    with open(f, "rb") as fh:
        r = DumpReader(fh)
        assert (r.header.start, r.header.end, r.header.checkpoint) == (b"user:", b"user;", cp)
        assert [row.key for row in r] == [b"user:1", b"user:2"]
    # a target holding keys outside the dump's range is not in the way
    dst = str(tmp_path / "dst")
    with Db.open(dst, SETTINGS) as db:
        db.put(b"other", b"x")
    code, out, err = run("load", dst, "-i", f)
    assert code == 0, err
    assert [k for k, _, _ in contents(dst)] == [b"other", b"user:1", b"user:2"]


def test_dump_of_a_missing_database_creates_nothing(run: Any, tmp_path: pathlib.Path) -> None:
    code, _, err = run("dump", str(tmp_path / "nothing"))
    assert code == 2 and "no database" in err
    assert not (tmp_path / "nothing").exists()


# -- refusing a target ---------------------------------------------------------------------------


def _dump(run: Any, tmp_path: pathlib.Path, n: int) -> tuple[str, str]:
    src = str(tmp_path / "src")
    with Db.open(src, SETTINGS, store_options={"fsync": False}) as db:
        for i in range(n):
            db.put(b"k%04d" % i, b"v%d" % i)
    f = str(tmp_path / "d.jsonl")
    assert run("dump", src, "-o", f)[0] == 0
    return src, f


def test_load_refuses_a_target_with_keys_in_range(run: Any, tmp_path: pathlib.Path) -> None:
    _src, f = _dump(run, tmp_path, 5)
    dst = str(tmp_path / "dst")
    with Db.open(dst, SETTINGS) as db:
        db.put(b"k0002x", b"mine")
    code, _, err = run("load", dst, "-i", f)
    assert code == 2 and "already holds keys" in err and "k0002x" in err
    assert contents(dst) == [(b"k0002x", b"mine", None)]
    code, out, err = run("load", dst, "-i", f, "--force")
    assert code == 0, err
    assert json.loads(out)["written"] == 5
    assert len(contents(dst)) == 6


# -- bad input -----------------------------------------------------------------------------------


def _lines(run: Any, tmp_path: pathlib.Path, n: int = 9) -> list[bytes]:
    _src, f = _dump(run, tmp_path, n)
    return pathlib.Path(f).read_bytes().splitlines(keepends=True)


def _corrupt(lines: list[bytes], how: str) -> tuple[bytes, int]:
    """Input bytes and the 1-based line the error names."""
    if how == "truncated":
        return b"".join(lines[:6]) + lines[6][:-9], 7
    if how == "bad base64":
        return b"".join(lines[:6]) + b'{"key":"!!!","value":""}\n' + b"".join(lines[7:]), 7
    if how == "bad json":
        return b"".join(lines[:6]) + b'{"key": \n' + b"".join(lines[7:]), 7
    if how == "out of order":
        return b"".join([*lines[:6], lines[2], *lines[7:]]), 7
    if how == "no end line":
        return b"".join(lines[:-1]), len(lines)
    if how == "wrong row count":
        return b"".join(lines[:-1]) + b'{"end":true,"rows":3}\n', len(lines)
    if how == "after the end":
        return b"".join(lines) + lines[1], len(lines) + 1
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "bad base64",
        "bad json",
        "out of order",
        "no end line",
        "wrong row count",
        "after the end",
    ],
)
def test_bad_input_stops_at_the_last_durable_batch(
    run: Any, tmp_path: pathlib.Path, how: str
) -> None:
    data, bad_line = _corrupt(_lines(run, tmp_path), how)
    f = tmp_path / "bad.jsonl"
    f.write_bytes(data)
    dst = str(tmp_path / "dst")
    code, out, err = run("load", dst, "-i", str(f), "--batch-rows", "2")
    assert code == dump_mod.EXIT_BAD_DUMP, err
    assert f"line {bad_line}:" in err and out == ""
    # whole batches of 2 rows before the bad line are durable, nothing after them
    rows_before = min(bad_line - 2, 9)
    durable = rows_before - rows_before % 2
    assert [k for k, _, _ in contents(dst)] == [b"k%04d" % i for i in range(durable)]
    assert "--resume" in err
    # with the whole dump, --resume completes it
    code, out, err = run("load", dst, "-i", str(tmp_path / "d.jsonl"), "--resume")
    assert code == 0, err
    assert json.loads(out)["skipped_resume"] == durable
    assert len(contents(dst)) == 9


@pytest.mark.parametrize(
    "header,message",
    [
        (
            {"format": "shale-dump", "version": 2, "encoding": "base64", "source": "s"},
            "version 2 is newer",
        ),
        ({"format": "other", "version": 1}, "not a shale dump"),
        (
            {"format": "shale-dump", "version": 1, "encoding": "rot13", "source": "s"},
            "unknown encoding",
        ),
    ],
)
def test_a_bad_header_writes_nothing(
    run: Any, tmp_path: pathlib.Path, header: dict[str, Any], message: str
) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(header) + '\n{"end":true,"rows":0}\n')
    dst = tmp_path / "dst"
    code, _, err = run("load", str(dst), "-i", str(f))
    assert code == dump_mod.EXIT_BAD_DUMP and "line 1:" in err and message in err
    assert not dst.exists()  # not even opened


# -- resume --------------------------------------------------------------------------------------


def _partial(run: Any, tmp_path: pathlib.Path, n: int, cut: int) -> tuple[str, str]:
    """A dump of ``n`` rows and a target holding its first ``cut`` rows (a cut-short load)."""
    _src, f = _dump(run, tmp_path, n)
    lines = pathlib.Path(f).read_bytes().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_bytes(b"".join(lines[: cut + 1]))
    dst = str(tmp_path / "dst")
    code, _, err = run("load", dst, "-i", str(part), "--batch-rows", "1")
    assert code == dump_mod.EXIT_BAD_DUMP and "cut short" in err
    return f, dst


def test_resume_skips_what_is_there(run: Any, tmp_path: pathlib.Path) -> None:
    f, dst = _partial(run, tmp_path, 50, 20)
    assert len(contents(dst)) == 20
    code, out, err = run("load", dst, "-i", f, "--resume", "--batch-rows", "7")
    assert code == 0, err
    stats = json.loads(out)
    assert (stats["skipped_resume"], stats["written"], stats["rows"]) == (20, 30, 50)
    assert contents(dst) == contents(str(tmp_path / "src"))
    # resuming a complete load writes nothing
    code, out, _ = run("load", dst, "-i", f, "--resume")
    assert code == 0 and json.loads(out)["written"] == 0


def test_resume_refuses_keys_the_dump_does_not_explain(run: Any, tmp_path: pathlib.Path) -> None:
    f, dst = _partial(run, tmp_path, 30, 10)
    with Db.open(dst, SETTINGS) as db:
        db.put(b"k0003-intruder", b"x")
    code, _, err = run("load", dst, "-i", f, "--resume")
    assert code == 2 and "not match the dump" in err and "unexplained_keys=1" in err
    assert len(contents(dst)) == 11  # nothing written
    code, out, err = run("load", dst, "-i", f, "--resume", "--force")
    assert code == 0, err
    assert json.loads(out)["unexplained"] == 1
    keys = [k for k, _, _ in contents(dst)]
    assert len(keys) == 31 and b"k0003-intruder" in keys


def test_resume_repairs_changed_rows_only_when_forced(run: Any, tmp_path: pathlib.Path) -> None:
    f, dst = _partial(run, tmp_path, 30, 10)
    with Db.open(dst, SETTINGS) as db:
        db.put(b"k0004", b"changed")
        db.delete(b"k0005")
    code, _, err = run("load", dst, "-i", f, "--resume")
    assert code == 2 and "missing_or_different=2" in err
    code, out, err = run("load", dst, "-i", f, "--resume", "--force")
    assert code == 0, err
    assert json.loads(out)["repaired"] == 2
    assert contents(dst) == contents(str(tmp_path / "src"))


def test_resume_of_a_fresh_target_needs_a_database(run: Any, tmp_path: pathlib.Path) -> None:
    _src, f = _dump(run, tmp_path, 3)
    code, _, err = run("load", str(tmp_path / "typo"), "-i", f, "--resume")
    assert code == 2 and "no database" in err


# -- progress and help ---------------------------------------------------------------------------


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_only_on_a_terminal(tmp_path: pathlib.Path, run: Any, tty: bool) -> None:
    _src, f = _dump(run, tmp_path, 40)
    stream = _Tty(tty)
    progress = dump_mod.Progress(stream, total=os.path.getsize(f), interval=0.0)
    with Db.open(str(tmp_path / "dst"), SETTINGS) as db, open(f, "rb") as src:
        dump_mod.load_db(db, DumpReader(src), batch_rows=10, progress=progress)
    text = stream.getvalue()
    if not tty:
        assert text == ""
        return
    assert text.startswith("\r") and text.endswith("\n") and not text.endswith("\n\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert "40 rows" in last and "rows/s" in last and "100.0%" in last


def test_help_documents_exit_codes(run: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("dump", "load"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert "exit codes: 0" in out and "3 bad dump input" in out


def test_load_db_rejects_bad_batch_sizes(tmp_path: pathlib.Path) -> None:
    data = b'{"format":"shale-dump","version":1,"encoding":"base64","source":"s"}\n'
    with Db.open(str(tmp_path / "d"), SETTINGS) as db, pytest.raises(shale.InvalidError):
        dump_mod.load_db(db, DumpReader(io.BytesIO(data)), batch_rows=0)


def test_reader_errors_name_the_line() -> None:
    with pytest.raises(DumpFormatError) as e:
        DumpReader(io.BytesIO(b""))
    assert e.value.line == 1
