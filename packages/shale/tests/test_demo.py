"""``shale demo``: the guided tour of the umbrella distribution, in-process through
``shale.cli.main`` (the subcommand comes from the ``shale_demo`` plugin) and as a subprocess."""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys

import pytest

import shale
from shale import cli
from shale.plugins import get_host
from shale_demo import demo, plugin
from shale_demo.demo import run_demo


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


def test_the_demo_is_a_plugin_loaded_from_its_entry_point() -> None:
    host = get_host()
    assert host.manager.get_plugin("shale_demo") is plugin
    assert "shale_demo" in host.plugin_names()


def test_demo_in_process(tmp_path: pathlib.Path) -> None:
    out = io.StringIO()
    assert run_demo(str(tmp_path / "d"), keys=600, out=out) == 0
    text = out.getvalue()
    assert "verified" in text and "after reopening" in text
    assert "replayed 300 WAL rows" in text
    assert "Compaction" in text and "Garbage collection" in text
    assert (tmp_path / "d" / "manifest").is_dir()
    # a temp directory is removed afterwards
    out = io.StringIO()
    assert run_demo(None, keys=10, out=out) == 0
    assert "removed" in out.getvalue()


@pytest.mark.parametrize("keys", ["0", "1", "2"])
def test_demo_with_very_few_keys(run: Run, keys: str) -> None:
    """``shale demo --keys 0|1|2`` crashed (an assert, a seek backwards, StopIteration)."""
    code, out, err = run("demo", "--keys", keys)
    assert code == 0, err
    assert "after reopening" in out


def test_demo_refuses_a_non_empty_directory(run: Run, tmp_path: pathlib.Path) -> None:
    (tmp_path / "x").write_text("keep me")
    code, _, err = run("demo", "--dir", str(tmp_path))
    assert code == 2 and err.startswith("error: invalid: the demo needs an empty or new directory")
    assert (tmp_path / "x").read_text() == "keep me"


def test_demo_compacts_and_collects_or_says_it_skipped(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    run_demo(str(tmp_path / "a"), keys=50, out=out)
    text = out.getvalue()
    if demo._find("shale_compactor", "Compactor")[0] is not None:
        assert "L0 SSTs + 0 sorted runs -> run" in text and "after compaction" in text
    if demo._find("shale_gc", "GarbageCollector")[0] is not None:
        assert "wal         deleted" in text and "after GC" in text
    assert demo._find("no_such_module_xyz", "X")[1] == "no-such-module-xyz is not installed"
    assert "not implemented yet" in demo._find("shale", "NoSuchClass")[1]
    # without the packages the demo says so and still succeeds
    monkeypatch.setattr(demo, "_find", lambda module, name: (None, f"{module} is not here"))
    out = io.StringIO()
    assert run_demo(str(tmp_path / "b"), keys=50, out=out) == 0
    text = out.getvalue()
    assert "skipped: shale_compactor is not here" in text
    assert "skipped: shale_gc is not here" in text


def test_demo_subprocess(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "shale", "demo", "--dir", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stdout and "Traceback" not in proc.stderr
    assert (target / "wal").is_dir() and any((target / "compacted").iterdir())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shale",
            "scan",
            str(target),
            "--prefix",
            "log:",
            "--limit",
            "2",
            "--merge-operator",
            "concat",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    ops = "".join(f"e{r};" for r in range(10))
    assert proc.stdout.splitlines() == [f"log:00\t{ops}", f"log:01\t{ops}"]
