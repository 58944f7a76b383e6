"""The package READMEs as site pages (an MkDocs hook).

Each distribution's ``README.md`` (``packages/*/README.md``, ``plugins/*/README.md``) lives
beside its code, where pip and GitHub show it; :func:`on_files` adds a copy of each to the site
as ``packages/<folder>.md``, and :func:`on_page_markdown` points the docs' links to those
READMEs (``../packages/<folder>/README.md``, correct on GitHub) at the copies.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\((?:\.\./)+(?:packages|plugins)/([\w.-]+)/README\.md(#[\w-]*)?\)")
# a package README's link into docs/ (``../../docs/x.md``, correct on GitHub): on the site the
# README is ``packages/<folder>.md``, beside the docs' pages' folder
DOCS_LINK = re.compile(r"\]\(\.\./\.\./docs/([^)]+)\)")


def readmes() -> dict[str, pathlib.Path]:
    """``folder name -> README path`` of every distribution in the checkout."""
    paths = sorted(ROOT.glob("packages/*/README.md")) + sorted(ROOT.glob("plugins/*/README.md"))
    return {p.parent.name: p for p in paths}


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name, path in readmes().items():
        files.append(File.generated(config, f"packages/{name}.md", content=path.read_text()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    depth = page.file.src_uri.count("/")
    up = "../" * depth
    if page.file.src_uri.startswith("packages/"):
        markdown = DOCS_LINK.sub(lambda m: f"](../{m.group(1)})", markdown)
    return LINK.sub(lambda m: f"]({up}packages/{m.group(1)}.md{m.group(2) or ''})", markdown)
