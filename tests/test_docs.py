"""Every ``python`` code block in docs/ runs without error (the docs' examples stay true)."""

from __future__ import annotations

import pathlib
import re

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
