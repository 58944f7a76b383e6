"""The CLI reference page, generated from ``shale.cli.build_parser()`` (an MkDocs hook).

``mkdocs.yml`` lists this file under ``hooks:``; :func:`on_files` adds the generated page
``reference/cli.md`` to the site, so the reference can never drift from the parser: every
command (plugins' too: those installed where the site is built), every option, its help text and
its default. ``python tools/docs/cli_reference.py`` prints the page.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from typing import Any

PAGE = "reference/cli.md"


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split())  # one line: "usage: shale ..."


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            name = ", ".join(f"`{s}`" for s in action.option_strings)
            if action.nargs != 0 and action.metavar is not None:
                name += f" `{action.metavar}`"
            elif action.nargs != 0:
                name += f" `{action.dest.upper()}`"
        else:
            name = f"`{action.metavar or action.dest}`"
        help_text = (action.help or "").replace("%(default)s", str(action.default))
        help_text = help_text.replace("%%", "%").replace("|", "\\|").replace("\n", " ")
        default = ""
        if action.default not in (None, False, argparse.SUPPRESS, [], 0) or (
            action.default == 0 and action.type is not None
        ):
            default = f"`{action.default!r}`"
        if action.choices is not None and not isinstance(action.choices, dict):
            help_text += " (one of: " + ", ".join(f"`{c}`" for c in action.choices) + ")"
        rows.append(f"| {name} | {help_text} | {default} |")
    return rows


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices.items())
    return []


def _section(name: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    out = [f"{'#' * depth} `{name}`", ""]
    if parser.description:
        # reST's "text::" before an indented block: Markdown shows the block as code already
        text = re.sub(r"::$", ":", textwrap.dedent(parser.description).strip(), flags=re.M)
        out += [text, ""]
    out += ["```text", _usage(parser), "```", ""]
    rows = _option_rows(parser)
    if rows:
        out += ["| argument | meaning | default |", "|---|---|---|", *rows, ""]
    for sub_name, sub in _subcommands(parser):
        out += _section(f"{name} {sub_name}", sub, min(depth + 1, 4))
    return out


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference page, in Markdown, for ``parser`` (``shale.cli.build_parser()``)."""
    if parser is None:
        from shale import cli

        parser = cli.build_parser()
    lines = [
        "# `shale` command reference",
        "",
        "Generated from the argument parser (`shale.cli.build_parser()`) when the site is built,",
        "with the plugins installed there (shale-compactor, shale-gc, the demo, ...). The guide",
        "with examples, output formats and exit codes is [the shale command](../cli.md).",
        "",
    ]
    if parser.epilog:
        lines += ["```text", textwrap.dedent(parser.epilog).strip(), "```", ""]
    lines += _section("shale", parser, 2)
    return "\n".join(lines)


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render())
