"""Every ``python`` code block in docs/ runs without error (the docs' examples stay true)."""

from __future__ import annotations

import os
import pathlib
import re
import shlex

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, code in enumerate(BLOCK.findall(page.read_text())):
            out.append((f"{page.relative_to(DOCS)}#{i}", code))
    return out


@pytest.mark.parametrize("name,code", _blocks(), ids=[n for n, _ in _blocks()])
def test_doc_example_runs(
    name: str, code: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if "class Test" in code:  # a test module example: only check that it compiles
        compile(code, name, "exec")
        return
    exec(compile(code, name, "exec"), {"__name__": "__docs__"})


# -- `shale` sessions -----------------------------------------------------------------------------

#: A ```bash block right after this marker is a `shale` session the test runs line by line.
SESSION = re.compile(r"^<!-- runnable: shale -->\n```bash\n(.*?)^```", re.S | re.M)


def _sessions() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, block in enumerate(SESSION.findall(page.read_text())):
            out.append((f"{page.relative_to(DOCS)}#session{i}", block))
    return out


def test_the_cli_reference_has_a_runnable_session() -> None:
    assert any(name.startswith("database.md#") for name, _ in _sessions())


@pytest.mark.parametrize("name,block", _sessions(), ids=[n for n, _ in _sessions()])
def test_doc_shale_session_runs(
    name: str,
    block: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each line runs through ``shale``'s ``main`` in a fresh directory and exits 0, or 1 when
    its comment says ``exit 1``; ``ID`` stands for the id the last ``checkpoint create``
    printed."""
    from shale import cli

    monkeypatch.chdir(tmp_path)
    from shale import env

    keep = {n.upper() for n in env.NOT_SETTINGS}
    for var in [v for v in os.environ if v.upper().startswith("SHALE_") and v.upper() not in keep]:
        monkeypatch.delenv(var)
    checkpoint_id = None
    for line in block.splitlines():
        if not line.strip():
            continue
        argv = shlex.split(line, comments=True)
        assert argv[0] == "shale", line
        argv = [checkpoint_id if a == "ID" and checkpoint_id else a for a in argv[1:]]
        want = 1 if "# exit 1" in line else 0
        capsys.readouterr()
        code = cli.main(argv)
        out, err = capsys.readouterr()
        assert code == want, f"{line!r} exited {code}: {err.strip()}"
        if argv[:2] == ["checkpoint", "create"]:
            checkpoint_id = out.split()[0]


def test_settings_the_engine_ignores_are_documented_as_unused() -> None:
    """A SlateDB setting shale accepts but does not act on must say so in settings.md."""
    src = pathlib.Path(__file__).resolve().parent.parent / "packages/shale-core/src/shale"
    engine = "".join(p.read_text() for p in src.glob("*.py") if p.name != "settings.py")
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in (DOCS / "settings.md").read_text().splitlines()
        if line.startswith("| `")
    }
    for name in ("l0_flush_parallelism",):
        assert name not in engine, f"{name} is used now: update settings.md and this test"
        assert "not used" in rows[name], rows[name]
