"""Tests for shale_gc.cli: ``shale gc run URL [--once] [--dry-run] [--min-age] [--json]``."""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any

import pytest

from shale.cli import main
from shale.db import Db
from shale.settings import Settings
from shale_gc import GarbageCollector

SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)


def make_db(path: pathlib.Path) -> None:
    with Db.open(str(path), SETTINGS) as db:
        for r in range(3):
            for i in range(10):
                db.put(b"k%d-%d" % (r, i), b"v%d" % r)
            db.flush(memtable=True)
        db.create_checkpoint(name="keep")
        db.put(b"after", b"a")
        db.flush(memtable=True)
        db.put(b"tail", b"t")


def files(path: pathlib.Path) -> list[str]:
    return sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def age(path: pathlib.Path, seconds: float) -> None:
    """Make every file look ``seconds`` older."""
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_once_prints_the_report(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db"
    make_db(db)
    before = files(db)
    assert main(["gc", "run", str(db), "--once"]) == 0  # default min_age 300 s: all young
    out, err = capsys.readouterr()
    assert files(db) == before
    assert "kept" in out and "younger than min_age" in out and "total: deleted 0" in out
    assert "gc wal: listed" in err
    assert main(["gc", "run", str(db), "--once", "--min-age", "0", "--quiet"]) == 0
    out, err = capsys.readouterr()
    after = files(db)
    assert len(after) < len(before) and err == ""
    assert "manifest: deleted" in out and "pinned by a live checkpoint" in out
    assert "bytes" in out
    with Db.open(str(db), SETTINGS) as d:
        assert d.get(b"k0-3") == b"v0" and d.get(b"tail") == b"t"


def test_dry_run_deletes_nothing_and_matches_the_real_run(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    make_db(db)
    age(db, 3600)
    before = files(db)
    assert main(["gc", "run", str(db), "--once", "--dry-run", "--json", "--quiet"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert files(db) == before and dry["dry_run"] and dry["deleted"] > 0
    assert main(["gc", "run", str(db), "--once", "--json", "--quiet"]) == 0
    real = json.loads(capsys.readouterr().out)

    def keys(report: dict[str, Any]) -> list[str]:
        return sorted(o["key"] for k in report["kinds"].values() for o in k["deleted"])

    assert keys(dry) == keys(real) and dry["bytes_freed"] == real["bytes_freed"]
    assert sorted(set(before) - set(files(db))) == keys(real)


def test_no_database_is_an_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / "nothing"
    assert main(["gc", "run", str(where), "--once", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: data: no database at {where} (no manifest found)\n"), err
    assert not where.exists()


def test_bad_min_age_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["gc", "run", str(tmp_path), "--min-age", "soon"])
    assert exc.value.code == 2


def test_settings_file_and_interval(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    make_db(db)
    age(db, 3600)
    cfg = tmp_path / "shale.json"
    cfg.write_text(
        json.dumps(
            {"garbage_collector_options": {"wal": None, "compacted": None, "compactions": None}}
        )
    )
    assert main(["gc", "run", str(db), "--once", "--json", "--quiet", "--settings", str(cfg)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["kinds"]) == ["manifest"] and report["deleted"] > 0


def test_loop_mode_prints_rounds(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db"
    make_db(db)
    age(db, 3600)
    original = GarbageCollector.run
    seen: list[float] = []

    def run_two_rounds(self: GarbageCollector, stop: Any, **kw: Any) -> None:
        on_report = kw.pop("on_report")

        def report(r: Any) -> None:
            seen.append(time.monotonic())
            on_report(r)
            if len(seen) == 2:
                stop.set()

        original(self, stop, on_report=report, **kw)

    monkeypatch.setattr(GarbageCollector, "run", run_two_rounds)
    assert main(["gc", "run", str(db), "--interval", "0.05", "--min-age", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("total: deleted") == 1  # the second round deleted nothing: not printed
    assert seen[1] - seen[0] >= 0.04


def test_verbose_shows_the_gc_loggers(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``shale -vv`` configures the loggers of every loaded plugin's package, shale_gc's too."""
    db = tmp_path / "db"
    make_db(db)
    capsys.readouterr()
    assert main(["-vv", "gc", "run", str(db), "--once"]) == 0
    _, err = capsys.readouterr()
    assert " shale.gc.collector: gc round root=" in err
    assert main(["gc", "run", str(db), "--once"]) == 0
    _, err = capsys.readouterr()
    assert "shale_gc.collector" not in err  # the handler was removed again


def test_shares_the_database_options_of_every_command(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gc", "run", str(tmp_path / "none"), "--once", "--store-option", "x"]) == 2
    assert "error: invalid: --store-option takes NAME=VALUE" in capsys.readouterr().err
    assert main(["gc", "run", str(tmp_path / "none"), "--once"]) == 2
    assert "error: data: no database at" in capsys.readouterr().err
