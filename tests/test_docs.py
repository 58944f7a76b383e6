"""Every ``python`` code block in docs/, the README and the package READMEs runs without error
(the examples stay true), and so does every ``shale`` session marked runnable."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import shlex
import types
from unittest import mock

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _pages() -> list[pathlib.Path]:
    """The docs, the README and every distribution's README."""
    return [
        *sorted(DOCS.rglob("*.md")),
        ROOT / "README.md",
        *sorted(ROOT.glob("packages/*/README.md")),
        *sorted(ROOT.glob("plugins/*/README.md")),
    ]


def _blocks() -> list[tuple[str, str]]:
    out = []
    for page in _pages():
        for i, code in enumerate(BLOCK.findall(page.read_text())):
            out.append((f"{page.relative_to(ROOT)}#{i}", code))
    return out


def test_the_package_readmes_are_covered() -> None:
    names = {name.partition("#")[0] for name, _ in _blocks()}
    assert {"README.md", "packages/shale-minio/README.md"} <= names, names


@pytest.mark.parametrize("name,code", _blocks(), ids=[n for n, _ in _blocks()])
def test_doc_example_runs(
    name: str,
    code: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """A block that uses S3 runs against the test S3 server, named by the ``AWS_*``
    variables (skipped where the server's binary is missing, except under CI)."""
    monkeypatch.chdir(tmp_path)
    if "S3Store" in code or '"s3://' in code:
        for var, value in request.getfixturevalue("s3_server").env().items():
            monkeypatch.setenv(var, value)
    if "class Test" in code:  # a test module example: only check that it compiles
        compile(code, name, "exec")
        return
    with mock.patch.dict(os.environ):  # an example may set variables (an env file loaded)
        exec(compile(code, name, "exec"), {"__name__": "__docs__"})


# -- `shale` sessions -----------------------------------------------------------------------------

#: A ```bash block right after this marker is a `shale` session the test runs line by line.
SESSION = re.compile(r"^<!-- runnable: shale -->\n```bash\n(.*?)^```", re.S | re.M)


def _sessions() -> list[tuple[str, str]]:
    out = []
    for page in _pages():
        for i, block in enumerate(SESSION.findall(page.read_text())):
            out.append((f"{page.relative_to(ROOT)}#session{i}", block))
    return out


def test_the_cli_reference_has_a_runnable_session() -> None:
    assert any(name.startswith("docs/database.md#") for name, _ in _sessions())


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


#: SlateDB settings shale accepts and validates but does not act on (none left).
UNUSED_SETTINGS: tuple[str, ...] = ()


def test_settings_the_engine_ignores_are_documented_as_unused() -> None:
    """A SlateDB setting shale accepts but does not act on must say so in settings.md, and one
    it acts on must not."""
    src = pathlib.Path(__file__).resolve().parent.parent / "packages/shale-core/src/shale"
    engine = "".join(
        p.read_text()
        for p in src.rglob("*.py")
        if p.name not in ("settings.py", "slatedb_settings.py")
    )
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in (DOCS / "settings.md").read_text().splitlines()
        if line.startswith("| `")
    }
    for name in UNUSED_SETTINGS:
        assert name not in engine, f"{name} is used now: update settings.md and this test"
        assert "not used" in rows[name], rows[name]
    for name in ("l0_flush_parallelism",):  # once unused
        assert name in engine, f"{name} is not used: list it in UNUSED_SETTINGS"
        assert "not used" not in rows[name], rows[name]


# -- the site's generated pages -------------------------------------------------------------------


def _tool(name: str) -> types.ModuleType:
    path = ROOT / "tools" / "docs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_lists_every_command_and_option() -> None:
    """The generated reference (tools/docs/cli_reference.py) names every subcommand and option
    of ``shale.cli.build_parser()`` (``nox -s docs`` checks the built HTML the same way)."""
    import argparse

    from shale import cli

    parser = cli.build_parser()
    page = _tool("cli_reference").render(parser)
    todo = [("shale", parser)]
    while todo:
        name, current = todo.pop()
        assert f"`{name}`" in page, name
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in page, (name, option)
