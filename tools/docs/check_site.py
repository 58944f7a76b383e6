"""Check a built site (``nox -s docs`` runs it after ``mkdocs build --strict``).

- every public name (``__all__``, dunders and submodules aside) of the documented modules has
  its entry on its API reference page;
- every ``shale`` command and every option of the parser is on the CLI reference page.

``python tools/docs/check_site.py [SITE_DIR]``; exits 1 and names what is missing.
"""

from __future__ import annotations

import argparse
import html
import importlib
import pathlib
import re
import sys
import types

#: reference page (under site/reference/) -> the module it documents
REFERENCE = {
    "shale": "shale",
    "aio": "shale.aio",
    "codecs": "shale.codecs",
    "spi": "shale.spi",
    "compactor": "shale_compactor",
    "gc": "shale_gc",
    "minio": "shale_minio",
}


def missing_api(site: pathlib.Path) -> list[str]:
    out = []
    for page, name in REFERENCE.items():
        text = (site / "reference" / page / "index.html").read_text()
        ids = set(re.findall(r'id="([\w.]+)"', text))
        module = importlib.import_module(name)
        for public in module.__all__:
            if public.startswith("__") or isinstance(getattr(module, public), types.ModuleType):
                continue
            if f"{name}.{public}" not in ids:
                out.append(f"reference/{page}: {name}.{public}")
    return out


def _walk(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.Action]]:
    out: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _walk(sub, f"{name} {sub_name}")
        elif not isinstance(action, argparse._HelpAction):
            out.append((name, action))
    return out


def missing_cli(site: pathlib.Path) -> list[str]:
    from shale import cli

    text = html.unescape((site / "reference" / "cli" / "index.html").read_text())
    out = []
    for command, action in _walk(cli.build_parser(), "shale"):
        if f"<code>{command}</code>" not in text:
            out.append(f"reference/cli: command {command!r}")
        for option in action.option_strings:
            if f"<code>{option}</code>" not in text:
                out.append(f"reference/cli: {command} {option}")
    return sorted(set(out))


def main(argv: list[str]) -> int:
    site = pathlib.Path(argv[0] if argv else "site")
    problems = missing_api(site) + missing_cli(site)
    for problem in problems:
        print(f"missing from the site: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
